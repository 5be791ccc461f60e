#!/usr/bin/env python3
"""Benchmark mappingpass analyze against Universal Ctags and spatch on linux-6.1.

Prints a table: wall time and peak RSS of each run, and the ratios that the
targets are stated in (measured in the same run, because these machines are
noisy), then the recall figures:
  * function recall against `ctags --kinds-c=f` (analyze --scope all);
  * read recall against spatch's type-aware finder (every spatch read must be
    ours; reads we report that spatch does not are listed).

    python bench/bench.py --tree ~/.cache/mappingpass/linux-source-6.1 [--quick] [--whole]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
from test_realtree import SPATCH_FINDER  # noqa: E402  (one finder for tests and benchmark)


def timed(cmd: list[str], cwd: Path | None = None) -> tuple[float, int, str]:
    """Wall seconds, peak RSS (MiB, the process and its waited children) and stdout."""
    start = time.monotonic()
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.monotonic() - start
        out.seek(0)
        text = out.read().decode(errors="replace")
    if os.waitstatus_to_exitcode(status) not in (0, 1):
        raise SystemExit(f"bench: {' '.join(cmd[:3])}... failed with {status}")
    return elapsed, usage.ru_maxrss // 1024, text


def analyze(tree: Path, dirs: list[str], db: Path, *extra: str) -> tuple[float, int, dict]:
    cmd = [sys.executable, "-m", "mappingpass", "analyze", *[str(tree / d) for d in dirs],
           "--db", str(db), "--format", "json", "-q", *extra]
    t, rss, out = timed(cmd)
    return t, rss, json.loads(out)


def mp(command: str, db: Path) -> tuple[float, int, dict]:
    t, rss, out = timed([sys.executable, "-m", "mappingpass", command, "--db", str(db), "--format", "json", "-q"])
    return t, rss, json.loads(out)


def spatch_reads(tree: Path, dirs: list[str], workdir: Path) -> tuple[float, int, set]:
    cocci = workdir / "finder.cocci"
    cocci.write_text(SPATCH_FINDER)
    found: set = set()
    total_t, peak = 0.0, 0
    for d in dirs:
        t, rss, out = timed(["spatch", "--very-quiet", "-j", str(os.cpu_count() or 1),
                             "--sp-file", str(cocci), "--dir", d], cwd=tree)
        total_t += t
        peak = max(peak, rss)
        for line in out.splitlines():
            if line.startswith("READ "):
                path, lineno = line[5:].rsplit(":", 1)
                found.add((path.removeprefix("./"), int(lineno)))
    return total_t, peak, found


def ctags_functions(tree: Path, dirs: list[str]) -> tuple[float, int, dict]:
    t, rss, out = timed(["ctags", "-x", "--kinds-c=f", "--languages=C", "-R", *dirs], cwd=tree)
    funcs = {}
    for row in out.splitlines():
        name, _kind, line, path = row.split(None, 4)[:4]
        funcs[(path, name)] = int(line)
    return t, rss, funcs


def emit_rows(tree: Path, db: Path, work: Path) -> list[tuple[str, str, str, str]]:
    """emit of the whole plan (diff, semantic patch, series) beside real spatch
    applying that semantic patch to the same files."""
    from mappingpass.emit import smpl

    # (the series needs an author: the user's git identity, else this one)
    os.environ.setdefault("GIT_AUTHOR_NAME", "mappingpass bench")
    os.environ.setdefault("GIT_AUTHOR_EMAIL", "bench@localhost")
    base = [sys.executable, "-m", "mappingpass", "emit", "--db", str(db), "-q"]
    dt, drss, _ = timed([*base, "--diff", str(work / "whole.diff")])
    st, srss, _ = timed([*base, "--spatch", str(work / "smpl")])
    wt, wrss, _ = timed([*base, "--series", str(work / "series")])
    # the plan's files, as emit --spatch lists them for --file-groups
    files = (work / "smpl" / "mapping_passdown.groups").read_text().split()
    cocci = sorted((work / "smpl").glob("*.cocci"))
    started = time.monotonic()
    rc, _, _ = smpl.run_spatch(cocci, tree, files, max_width=10_000, jobs=os.cpu_count() or 1)
    sp = time.monotonic() - started
    return [
        ("emit --diff whole plan", f"{dt:.1f}", f"{drss}", f"{dt / sp:.3f} x spatch apply"),
        ("emit --spatch whole plan", f"{st:.1f}", f"{srss}", ""),
        ("emit --series whole plan", f"{wt:.1f}", f"{wrss}", ""),
        (f"spatch applying the SmPL ({len(files)} files, -j{os.cpu_count()}, exit {rc})", f"{sp:.1f}", "-", "1.00"),
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tree", type=Path, default=Path.home() / ".cache/mappingpass/linux-source-6.1")
    ap.add_argument("--quick", action="store_true", help="fs/ only (skips the fs mm block include row)")
    ap.add_argument("--whole", action="store_true", help="also analyze the whole tree")
    args = ap.parse_args()
    tree = args.tree.resolve()
    if not (tree / "include/linux/fs.h").is_file():
        print(f"bench: {tree} is not a linux tree (apt-get install linux-source-6.1, extract it)",
              file=sys.stderr)
        return 2
    for tool in ("spatch", "ctags"):
        if shutil.which(tool) is None:
            print(f"bench: {tool} not installed (apt-get install coccinelle universal-ctags)", file=sys.stderr)
            return 2
    rows: list[tuple[str, str, str, str]] = []
    notes: list[str] = []
    sets = [["fs"]] + ([] if args.quick else [["fs", "mm", "block", "include"]])
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for dirs in sets:
            label = " ".join(d + "/" for d in dirs)
            db = work / ("db-" + "-".join(dirs))
            cold_t, cold_rss, result = analyze(tree, dirs, db)
            warm_t, warm_rss, _ = analyze(tree, dirs, db)
            sp_t, sp_rss, sp_found = spatch_reads(tree, dirs, work)
            ct_t, ct_rss, _ = ctags_functions(tree, dirs)
            rows += [
                (f"analyze {label} cold", f"{cold_t:.1f}", f"{cold_rss}", f"{cold_t / sp_t:.2f} x spatch"),
                (f"analyze {label} warm", f"{warm_t:.1f}", f"{warm_rss}", f"{warm_t / sp_t:.3f} x spatch"),
                (f"spatch finder {label}", f"{sp_t:.1f}", f"{sp_rss}", "1.00"),
                (f"ctags {label}", f"{ct_t:.1f}", f"{ct_rss}", f"{cold_t / ct_t:.1f} x ctags (analyze cold)"),
            ]
            ours = {(r["file"], r["line"]) for r in result["reads"]}
            missed = sorted(sp_found - ours)
            extra = sorted(ours - sp_found)
            recall = 1 - len(missed) / max(len(sp_found), 1)
            notes.append(f"read recall vs spatch on {label}: {recall:.2%} ({len(sp_found)} spatch reads, "
                         f"{len(missed)} missed, {len(extra)} reads only we report)")
            notes += [f"  missed: {f}:{ln}" for f, ln in missed[:20]]
            for f, ln in extra:
                r = next(x for x in result["reads"] if (x["file"], x["line"]) == (f, ln))
                notes.append(f"  only ours: {f}:{ln} {r['expr']} ({r['via']}, receiver {r['receiver_type']})")
        # function recall: every file parsed
        dirs = ["fs", "mm", "block"]
        all_t, all_rss, full = analyze(tree, dirs, work / "db-all", "--scope", "all")
        ct_t, _, funcs = ctags_functions(tree, dirs)
        names = {(f["file"], f["name"]) for f in full["functions"]}
        lines = {(f["file"], f["line"]) for f in full["functions"]}
        missed_f = sorted(k for k, ln in funcs.items() if k not in names and (k[0], ln) not in lines)
        rows.append(("analyze fs/ mm/ block/ --scope all", f"{all_t:.1f}", f"{all_rss}", f"{all_t / ct_t:.1f} x ctags"))
        notes.append(f"function recall vs ctags on fs/ mm/ block/: {1 - len(missed_f) / len(funcs):.3%} "
                     f"({len(funcs)} ctags functions, {len(missed_f)} missed)")
        notes += [f"  missed: {f}:{funcs[(f, n)]} {n}" for f, n in missed_f[:30]]
        if args.whole:
            db = work / "db-whole"
            t, rss, whole = analyze(tree, ["."], db)
            rows.append(("analyze whole tree cold", f"{t:.1f}", f"{rss}", f"{len(whole['reads'])} reads"))
            pt, prss, plan = mp("plan", db)
            rows.append(("plan whole tree (cold: parses on demand)", f"{pt:.1f}", f"{prss}",
                         f"analyze+plan {t + pt:.1f} s"))
            pt2, prss2, _ = mp("plan", db)
            rows.append(("plan whole tree warm", f"{pt2:.1f}", f"{prss2}", ""))
            t2, rss2, _ = analyze(tree, ["."], db)
            rows.append(("analyze whole tree warm", f"{t2:.1f}", f"{rss2}", ""))
            ct, crss, checked = mp("check", db)
            rows.append(("check whole tree", f"{ct:.1f}", f"{crss}", ""))
            rows += emit_rows(tree, db, work)
            s = plan["summary"]
            notes.append(f"plan of the whole tree: {s['functions']} functions and {s['slots']} slots gain the "
                         f"parameter, {s['call_sites']} call sites, {s['rewrites']} reads rewritten "
                         f"({s['identity_rewrites']} identity tests become membership tests), "
                         f"{sum(s['kept_reads'].values())} kind-1 reads kept, {s['needs_human']} need a human, "
                         f"{s['files']} files, {len(plan['parsed_on_demand'])} deferred files parsed on demand")
            notes.append("  unresolved by reason: " + ", ".join(
                f"{k} {v}" for k, v in s["unresolved_by_reason"].items()))
            c = checked["summary"]
            notes.append(f"check of the whole tree: {c['reads']} reads: {c.get('resolvable', 0)} resolvable, "
                         f"{c.get('unresolvable', 0)} unresolvable, {c.get('unproven', 0)} unproven, "
                         f"{c.get('never-protected', 0)} never protected, {c.get('runtime', 0)} runtime; "
                         f"{c['truncated']} reads hit the path bound")
    width = max(len(r[0]) for r in rows)
    print(f"{'run':<{width}}  {'seconds':>8}  {'peak MiB':>8}  ratio")
    for name, t, rss, ratio in rows:
        print(f"{name:<{width}}  {t:>8}  {rss:>8}  {ratio}")
    print()
    print("\n".join(notes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
