"""`mappingpass check`: the plan run in the write-protect model."""

from __future__ import annotations

import argparse
import json
import sys

from .. import check as checkmod
from ..workspace import open_store, store_rules
from .common import plan_for


def register(sub, common) -> None:
    c = sub.add_parser("check", help="run the plan in the write-protect model: a verdict per read")
    c.add_argument("--rules", help="rules file (default: the one analyze used)")
    common(c)
    c.set_defaults(func=cmd_check)


def run_check(args: argparse.Namespace):
    plan, analysis = plan_for(args)
    with open_store(args.db, create=False) as store:
        rules = store_rules(store, getattr(args, "rules", None))
        facts = {f.path: f for f in store.load_facts()}
    return checkmod.check(plan, analysis, rules, facts)


def cmd_check(args: argparse.Namespace) -> int:
    result = run_check(args)
    if args.format == "json":
        json.dump(result.to_json(), sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        s = result.summary()
        print(f"check: {s['reads']} reads: {s.get('resolvable', 0)} resolvable, "
              f"{s.get('unresolvable', 0)} unresolvable, {s.get('unproven', 0)} unproven, "
              f"{s.get('never-protected', 0)} never protected, {s.get('runtime', 0)} runtime "
              f"(paths bounded at {s['bounds']['paths_per_read']} per read, depth "
              f"{s['bounds']['depth']}; {s['truncated']} reads hit the bound)")
        for v in result.verdicts:
            if v.verdict == "unproven":
                print(f"\n{v.file}:{v.line} {v.function}: {v.expr}: unproven")
                print(f"  {v.missing}")
            if v.verdict != "unresolvable":
                continue
            w = v.witness
            print(f"\n{v.file}:{v.line} {v.function}: {v.expr}")
            print(f"  scenario {w.scenario}: {w.error}")
            if w.argument not in ("(none)",):
                print(f"  argument {w.argument}" + (f" = {w.value}" if w.value else "")
                      + (f"; the page is {w.owner}'s" if w.owner else ""))
            for hop in w.path:
                print(f"    {hop.file}:{hop.line} {hop.caller} -> {hop.callee} ({hop.argument})")
    return 1 if any(v.verdict == "unresolvable" for v in result.verdicts) else 0
