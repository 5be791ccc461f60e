#!/usr/bin/env python3
"""Cross-check the tree-sitter front-end against libclang on the same files.

Runs `analyze --precise`, then for every .c file libclang
parsed without errors compares what each front-end saw, and prints a table:

  * function recall: libclang's definitions that tree-sitter found;
  * call recall, by where the call is written: in the file, as a macro's
    argument, in a macro's body (tree-sitter cannot see the last: the
    number is what precise mode adds);
  * `->mapping` read recall, and tree-sitter's reads libclang did not see;
  * receiver type agreement: the type tree-sitter's recipe resolves to
    against the configuration's exact type (reads and member calls).

The disagreements go to --disagreements (default crosscheck-disagreements.txt)
for a human to read.

    python bench/crosscheck.py --tree ~/.cache/mappingpass/linux-source-6.1 [--config allmodconfig]
        [--paths fs/ext2 mm] [--work DIR] [--warm-only]

It also times analyze with and without --precise, cold and warm (ratios to
the plain run in the same state, same invocation), and prints the plan's
boundaries (unresolved by reason) with and without --precise.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from mappingpass import graph, index
from mappingpass import rules as rulesmod
from mappingpass.index.precise import crosscheck

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import timed  # noqa: E402  (one way of timing for both benchmarks)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tree", required=True, type=Path)
    ap.add_argument("--paths", nargs="*", default=[], help="directories of the tree (default: the whole tree)")
    ap.add_argument("--config", default="allmodconfig")
    ap.add_argument("--work", type=Path, default=Path("/tmp/mappingpass-crosscheck"),
                    help="where the two databases go (emptied first unless --warm-only)")
    ap.add_argument("--warm-only", action="store_true", help="keep the databases of a previous run")
    ap.add_argument("--disagreements", type=Path, default=Path("crosscheck-disagreements.txt"))
    args = ap.parse_args()
    targets = [str(args.tree / p) for p in args.paths] or [str(args.tree)]
    plain_db, precise_db = args.work / "plain", args.work / "precise"
    if not args.warm_only:
        shutil.rmtree(args.work, ignore_errors=True)
    analyze = [sys.executable, "-m", "mappingpass", "analyze", *targets, "-q"]
    precise = ["--precise", "--config", args.config]
    runs = []
    for label, extra, db in (("analyze (plain)", [], plain_db), ("analyze --precise", precise, precise_db)):
        for state in ("cold", "warm") if not args.warm_only else ("warm",):
            t, rss, _ = timed([*analyze, *extra, "--db", str(db)])
            runs.append((f"{label}, {state}", t, rss))
    base = {state: t for name, t, _ in runs if name.startswith("analyze (plain)") for state in [name.split()[-1]]}
    where = ", ".join(args.paths) or "the whole tree"
    print(f"analyze of {where} ({args.config}; cold includes make <config> prepare)")
    print()
    print("| run | wall s | peak RSS MiB | x plain, same state |")
    print("|---|---:|---:|---:|")
    for name, t, rss in runs:
        print(f"| {name} | {t:.1f} | {rss} | {t / base[name.split()[-1]]:.2f} |")
    store = index.Store(precise_db, create=False)
    table, notes = crosscheck.from_store(store, rulesmod.load(None), graph.type_env)
    store.close()
    print(f"\ncross-check: {len(table['files'])} files parsed by both")
    print()
    print("| measure | tree-sitter found | of libclang's | recall |")
    print("|---|---:|---:|---:|")
    for name, (found, total) in table["rows"].items():
        print(f"| {name} | {found} | {total} | {100 * found / total if total else 100:.1f}% |")
    print()
    for name, value in table["other"].items():
        print(f"- {name}: {value}")
    args.disagreements.write_text("\n".join(notes) + "\n")
    print(f"\n{len(notes)} disagreements listed in {args.disagreements}")
    _boundaries(plain_db, precise_db)
    return 0


def _boundaries(plain_db: Path, precise_db: Path) -> None:
    """The plan's boundaries (unresolved by reason) with and without --precise."""
    counts = []
    for db in (plain_db, precise_db):
        _, _, out = timed([sys.executable, "-m", "mappingpass", "plan", "--db", str(db), "--format", "json", "-q"])
        counts.append(json.loads(out)["summary"])
    print("\nplan, whole summary: without and with --precise")
    print()
    print("| | plain | precise |")
    print("|---|---:|---:|")
    for key in ("functions", "call_sites", "rewrites", "needs_human", "runtime_reads", "unresolved"):
        print(f"| {key} | {counts[0][key]} | {counts[1][key]} |")
    reasons = sorted(set(counts[0]["unresolved_by_reason"]) | set(counts[1]["unresolved_by_reason"]))
    for r in reasons:
        print(f"| unresolved: {r} | {counts[0]['unresolved_by_reason'].get(r, 0)} | "
              f"{counts[1]['unresolved_by_reason'].get(r, 0)} |")


if __name__ == "__main__":
    raise SystemExit(main())
