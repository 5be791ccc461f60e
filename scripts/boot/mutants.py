#!/usr/bin/env python3
"""Plant one wrong mapping per filesystem the boot reached: the mutants of
kernel_boot_check.sh's filesystem matrix.

For each fs/X whose rewritten reads ran in a boot of the series (the
"kboot-cover:" lines of its serial log), take the first such function (by
name, and a name no other file's function has) and its rewritten read's
added line nearest the read's line in the tree, and
hand its helper a mapping that is not the page's own: the page pointer
itself, cast (`page_mapping_wp(page, (struct address_space *)(page))`). It is
never NULL and never the page's mapping, so the context check must warn, while
that filesystem's workload runs, and nothing else changes (the helper still
returns the page's field). Writes the mutated diff and, a line each, the
filesystem, file, line and function of every mutant.

    mutants.py --plan plan.json --diff series.diff --log serial-patched.log.txt \\
        --out mutants.diff > mutants.txt
    mutants.py --caught mutants.txt --log serial-patched.log.txt   # after booting mutants.diff

--caught says which mutants the boot of mutants.diff caught: a WARNING (the
context check's) or an oops whose RIP is in the mutated function; exit 1 if
any was not.
"""

from __future__ import annotations

import argparse
import json
import re
import sys

from coverage import COVER, area  # (scripts/boot/coverage.py, beside this file)

HELPER = re.compile(r"\b(page_mapping_wp|folio_mapping_wp)\(")


def split_args(text: str, start: int) -> tuple[list[str], int] | None:
    """The arguments of the call whose `(` is at start, and the offset of its `)`."""
    depth, args, last = 0, [], start + 1
    for i in range(start, len(text)):
        c = text[i]
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                args.append(text[last:i])
                return args, i
        elif c == "," and depth == 1:
            args.append(text[last:i])
            last = i + 1
    return None


def mutate(to: str) -> str | None:
    """`folio_mapping_wp(folio, mapping)` -> the same call with the page as its mapping."""
    m = HELPER.search(to)
    got = split_args(to, m.end() - 1) if m else None
    if got is None or len(got[0]) != 2:
        return None
    (page, _), end = got
    return f"{to[:m.end()]}{page.strip()}, (struct address_space *)({page.strip()}){to[end:]}"


def added_lines(diff: list[str]) -> dict[str, list[tuple[int, int]]]:
    """file -> (index in diff, line in the new file) of each added line."""
    out: dict[str, list[tuple[int, int]]] = {}
    current, line = None, 0
    for i, text in enumerate(diff):
        if text.startswith("+++ "):
            current = text[4:].strip().removeprefix("b/")
        elif text.startswith("@@ ") and (m := re.match(r"@@ -\d+(?:,\d+)? \+(\d+)", text)):
            line = int(m.group(1))
        elif text.startswith("+") and current:
            out.setdefault(current, []).append((i, line))
            line += 1
        elif text.startswith(" "):
            line += 1
    return out


def caught(mutants: str, log: str) -> int:
    """Each mutant (a line of mutants.txt) caught by the boot whose log is given."""
    with open(mutants) as fh:
        planted = [line.split() for line in fh if line.strip()]
    with open(log, errors="replace") as fh:
        text = fh.read()
    missed = 0
    for fs, where, name, *_ in planted:
        name = name.rstrip(":")
        # (gcc's clones keep the name: ext2_commit_chunk.constprop.0)
        hit = re.search(rf"^(WARNING: .* at \S+ |RIP: \S+:){re.escape(name)}(\.\w+)*\+0x", text, re.M)
        missed += hit is None
        print(f"{'caught' if hit else 'MISSED'}  {fs:<12} {name} ({where})")
    print(f"caught {len(planted) - missed} of {len(planted)}")
    return 1 if missed else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--caught", metavar="MUTANTS", help="say which mutants of MUTANTS the boot in --log caught")
    for name in ("--plan", "--diff", "--out"):
        ap.add_argument(name)
    ap.add_argument("--log", required=True)
    args = ap.parse_args(argv)
    if args.caught:
        try:
            return caught(args.caught, args.log)
        except (OSError, ValueError) as exc:
            print(f"mutants: {exc}", file=sys.stderr)
            return 2
    if not (args.plan and args.diff and args.out):
        ap.error("--plan, --diff and --out are required (or --caught)")
    try:
        with open(args.plan) as fh:
            rewrites = json.load(fh)["rewrites"]
        with open(args.diff) as fh:
            diff = fh.read().split("\n")
        with open(args.log, errors="replace") as fh:
            ran = {m.group(1).split(".")[0] for m in COVER.finditer(fh.read())}
    except (OSError, ValueError, KeyError) as exc:
        print(f"mutants: {exc}", file=sys.stderr)
        return 2
    added = added_lines(diff)
    files_of: dict[str, set[str]] = {}  # (a static's name may be another file's function too)
    for w in rewrites:
        files_of.setdefault((w["function"] or "").split("::")[-1], set()).add(w["file"])
    done: set[str] = set()
    for w in sorted(rewrites, key=lambda w: (w["file"], (w["function"] or "").split("::")[-1], w["line"])):
        fs = area(w["file"]) if area(w["file"]).startswith("fs/") else ""  # (fs/*.c: generic)
        name = (w["function"] or "").split("::")[-1]
        if not fs or fs in done or name not in ran or len(files_of[name]) > 1 or not HELPER.search(w["to"]):
            continue
        wrong = mutate(w["to"])
        # the added line with the rewrite nearest its line in the tree (the series shifts lines a little)
        at = sorted((abs(line - w["line"]), i) for i, line in added.get(w["file"], []) if w["to"] in diff[i])
        if wrong is None or not at or at[0][0] > 40 or diff[at[0][1]].count(w["to"]) != 1:
            continue
        i = at[0][1]
        diff[i] = diff[i].replace(w["to"], wrong)
        done.add(fs)
        print(f"{fs} {w['file']}:{w['line']} {name}: {wrong}")
    with open(args.out, "w") as fh:
        fh.write("\n".join(diff))
    return 0 if done else 1


if __name__ == "__main__":
    sys.exit(main())
