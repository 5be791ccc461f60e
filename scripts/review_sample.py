#!/usr/bin/env python3
"""A fixed-seed random sample of a whole-tree plan, for a human (or helper)
review: N functions that gain the parameter and N call sites that change,
each with what the plan says and where to open it in the source.

    mappingpass plan --db DB --format json > plan.json
    scripts/review_sample.py plan.json --seed 24 -n 40 > sample.txt

Functions that take the parameter because a slot they implement does are
not sampled (counted apart: the slot decides, and slots are in the sampled
chains)."""

from __future__ import annotations

import argparse
import json
import random
import sys


def _chain(steps: list[dict]) -> str:
    return " <- ".join(f"{s['node']} {s['why']} {s['detail']} ({s['file']}:{s['line']})" for s in steps)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("plan", help="plan JSON (mappingpass plan --format json)")
    ap.add_argument("--seed", type=int, default=24)
    ap.add_argument("-n", type=int, default=40, help="functions and call sites each")
    args = ap.parse_args(argv)
    try:
        with open(args.plan) as fh:
            plan = json.load(fh)
    except (OSError, ValueError) as exc:
        print(f"review_sample: {args.plan}: {exc}", file=sys.stderr)
        return 2
    rng = random.Random(args.seed)
    # bound to a slot that gains it, or the #else stub of one that is
    forced = {f["id"] for f in plan["functions"] if [s["why"] for s in f["reason"][:2]] in (
        ["implements"], ["implements", "implemented-by"], ["twin-of", "implements"]) or
        (f["reason"] and f["reason"][0]["why"] == "implements")}
    functions = sorted((f for f in plan["functions"] if f["id"] not in forced), key=lambda f: f["id"])
    sites = sorted(plan["call_sites"], key=lambda c: (c["file"], c["line"], c["col"]))
    print(f"FUNCTIONS (each gains `struct address_space *` named as shown; {len(forced)} more take it "
          "because a slot they implement does, and are not sampled):")
    for i, f in enumerate(rng.sample(functions, min(args.n, len(functions))), 1):
        print(f"F{i}. {f['id']} ({f['file']}:{f['line']}) param `{f['param_name']}`; chain: {_chain(f['reason'])}")
    print("\nCALL SITES (what the changed call passes):")
    for i, c in enumerate(rng.sample(sites, min(args.n, len(sites))), 1):
        print(f"S{i}. {c['file']}:{c['line']} in {c['caller']}: {c['call']}({c['args']}) passes "
              f"`{c['argument']}` [{c['how']}] because {c['evidence'][:300]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
