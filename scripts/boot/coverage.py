#!/usr/bin/env python3
"""Which of a series' rewritten reads a boot ran: kernel_boot_check.sh's
coverage report.

The context check makes the series' page_mapping_wp() print "kboot-cover:
FUNC+off/size" the first time each inlined copy runs (scripts/boot/
context-check.sed). This joins those lines with the plan: per directory, the
functions holding a read rewritten to page_mapping_wp()/folio_mapping_wp()
(the calls the recorder sees), those built into this kernel (System.map) and
those the workload ran, and the same for the reads themselves (an inlined
copy is one rewritten read: the distinct addresses in a function that ran,
at most its reads); then the functions built but never reached, so a
workload can be aimed at them.

    coverage.py --plan plan.json --log serial.log.txt --system-map System.map

Functions are matched by name (a static's name may stand for two functions of
that name in different files: both count as run). Identity tests and the
accessor forms (page_in_mapping(), page_mapping_wp_of()) do not call the
helper and are not measured; changed call sites are not measured either (the
helper sees only the function that reads)."""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import defaultdict

COVER = re.compile(r"kboot-cover: ([A-Za-z_][\w.]*)\+(0x[0-9a-f]+)")
HELPERS = ("page_mapping_wp(", "folio_mapping_wp(")


def area(path: str) -> str:
    """fs/ext2 of fs/ext2/dir.c, mm of mm/filemap.c, include of a header."""
    parts = path.split("/")
    return "/".join(parts[:2]) if parts[0] == "fs" and len(parts) > 2 else parts[0]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--plan", required=True)
    ap.add_argument("--log", required=True, help="the patched kernel's serial log")
    ap.add_argument("--system-map", required=True)
    args = ap.parse_args(argv)
    try:
        with open(args.plan) as fh:
            rewrites = json.load(fh)["rewrites"]
        with open(args.log, errors="replace") as fh:
            # each inlined copy of the helper (one per rewritten read) prints its own address once
            copies = {(m.group(1).split(".")[0], m.group(2)) for m in COVER.finditer(fh.read())}
        ran = {name for name, _ in copies}
        with open(args.system_map) as fh:
            built = {parts[2].split(".")[0] for line in fh if len(parts := line.split()) == 3
                     and parts[1] in "tT"}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"coverage: {exc}", file=sys.stderr)
        return 2
    functions: dict[str, set[str]] = defaultdict(set)  # area -> function names
    reads: dict[str, int] = defaultdict(int)  # function name -> its rewritten reads
    for w in rewrites:
        if w["to"].lstrip("!").startswith(HELPERS) and w["function"]:
            name = w["function"].split("::")[-1]
            functions[area(w["file"])].add(name)
            reads[name] += 1
    copies_of: dict[str, int] = defaultdict(int)
    for name, _ in copies:
        copies_of[name] += 1
    totals = [0] * 6
    not_reached: list[str] = []
    print("coverage   rewritten to page_mapping_wp()/folio_mapping_wp(): functions, then reads (each "
          "inlined copy of the helper that ran), ran / built into this kernel (in System.map, or ran "
          "inlined) / in the plan")
    for where in sorted(functions):
        names = functions[where]
        here_ran = names & ran
        here_built = {n for n in names if n in built} | here_ran
        row = [len(here_ran), len(here_built), len(names),
               sum(min(copies_of[n], reads[n]) for n in here_ran), sum(reads[n] for n in here_built),
               sum(reads[n] for n in names)]
        totals = [a + b for a, b in zip(totals, row, strict=True)]
        if here_built:
            print(f"  {where:<14} {row[0]:>3} / {row[1]:>3} / {row[2]:>3}   "
                  f"reads {row[3]:>3} / {row[4]:>3} / {row[5]:>3}")
        not_reached += [f"{where}:{n}" for n in sorted(here_built - here_ran)]
    built_dirs = len(functions) - sum(1 for w in functions if not ({n for n in functions[w] if n in built}))
    print(f"  {'total':<14} {totals[0]:>3} / {totals[1]:>3} / {totals[2]:>3}   reads {totals[3]:>3} / "
          f"{totals[4]:>3} / {totals[5]:>3}  ({built_dirs} of {len(functions)} directories built)")
    if not_reached:
        shown = ", ".join(not_reached[:40])
        print(f"  built, never reached: {shown}{', ...' if len(not_reached) > 40 else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
