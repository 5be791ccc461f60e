#!/usr/bin/env python3
"""A fixed-seed random sample of check's verdicts on a whole tree, for a human
(or helper) review: N verdicts of each class asked for, each with what check
says (the witness path, what covers it, what is missing) and where to open it.

    mappingpass check --db DB --format json > check.json
    scripts/check_sample.py check.json --seed 23 -n 15 > sample.txt

The reviewer's question per class: resolvable -- does the helper get the
page's owner on every way the page reaches the read?  unresolvable -- is the
witness a path the kernel can take, with a page that may be protected?
unproven -- what would it take, and what is the truth?"""

from __future__ import annotations

import argparse
import json
import random
import sys

CLASSES = ("resolvable", "unresolvable", "unproven", "mixed", "never-protected")


def _hops(path: list[dict]) -> str:
    return " -> ".join(f"{h['caller'].split('::')[-1]} ({h['file']}:{h['line']}, passes {h['argument']})"
                       for h in path)


def describe(v: dict) -> str:
    lines = [f"{v['file']}:{v['line']} {v['function']} `{v['expr']}` (kind {v['kind']}): {v['verdict']}"
             f" over {v['paths']} paths{' (truncated)' if v['truncated'] else ''}"]
    if v.get("witness"):
        w = v["witness"]
        lines.append(f"  witness [{w['scenario']}]: {w['error']}")
        if w["path"]:
            lines.append(f"  path: {_hops(w['path'])}")
    if v.get("covered_by"):
        lines.append(f"  covered by: {v['covered_by']}")
    if v.get("missing"):
        lines.append(f"  missing ({v.get('cause')}): {v['missing']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("check", help="check JSON (mappingpass check --format json)")
    ap.add_argument("--seed", type=int, default=23)
    ap.add_argument("-n", type=int, default=15, help="verdicts per class")
    ap.add_argument("--classes", default="resolvable,unresolvable,unproven",
                    help=f"comma-separated, of {', '.join(CLASSES)}")
    args = ap.parse_args(argv)
    try:
        with open(args.check) as fh:
            verdicts = json.load(fh)["verdicts"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"check_sample: {args.check}: {exc}", file=sys.stderr)
        return 2
    rng = random.Random(args.seed)
    for cls in args.classes.split(","):
        pool = sorted((v for v in verdicts if v["verdict"] == cls), key=lambda v: (v["file"], v["line"], v["expr"]))
        picked = rng.sample(pool, min(args.n, len(pool)))
        print(f"## {cls}: {len(picked)} of {len(pool)} (seed {args.seed})\n")
        for i, v in enumerate(picked, 1):
            print(f"{cls[0].upper()}{i}. {describe(v)}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
