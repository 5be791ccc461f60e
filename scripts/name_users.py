"""Print, for kernel_build_check.sh, the objects of the untouched .c files
that name what a series changes: a function whose definition or prototype a
patch rewrites, a typedef it rewrites, or a member of a struct of function
pointers (a slot) whose declaration it rewrites. Such a file calls the
function, binds an implementation to the slot or calls through it with the
old signature, and breaks where the tool did not see it (a macro body, a
file outside the analysed paths). Only code x86_64 builds.

    python3 scripts/name_users.py TREE PATCH...   # one object per line, path order
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

SKIP = ("Documentation/", "tools/", "samples/", "scripts/", "usr/")
# a removed line at column 0 that declares or defines NAME( -- a function, or a typedef of one
_DECL = re.compile(r"^-(?![#\s])[A-Za-z_][\w\s*]*?\b([A-Za-z_]\w*)\s*\(")
# a removed member of function-pointer type: `\tint (*writepage)(...`
_SLOT = re.compile(r"^-\s+[A-Za-z_][\w\s*]*\(\s*\*\s*([A-Za-z_]\w*)\s*\)\s*\(")
_NOT_NAMES = {"if", "for", "while", "switch", "return", "sizeof", "typeof", "int", "void", "char", "long",
              "unsigned", "signed", "short", "bool", "static", "inline", "const", "struct", "union", "enum",
              "typedef", "extern"}


def changed(patches: list[Path]) -> tuple[set[str], set[str]]:
    """(names whose declarations the patches rewrite, files they touch)."""
    names: set[str] = set()
    touched: set[str] = set()
    for patch in patches:
        for line in patch.read_text(errors="replace").splitlines():
            if line.startswith("+++ b/"):
                touched.add(line[len("+++ b/"):])
            elif line.startswith("-") and not line.startswith("--- "):
                found = _SLOT.match(line) or _DECL.match(line)
                if found and found.group(1) not in _NOT_NAMES:
                    names.add(found.group(1))
    return names, touched


def users(tree: Path, names: set[str], touched: set[str]) -> list[str]:
    if not names:
        return []
    proc = subprocess.run(["grep", "-rlwF", "--include=*.c", "-f", "-", "."], cwd=tree, check=False,
                          input="\n".join(sorted(names)) + "\n", capture_output=True, text=True,
                          env={**os.environ, "LC_ALL": "C"})
    found = sorted(p.removeprefix("./") for p in proc.stdout.split())
    return [p for p in found if p not in touched and not p.startswith(SKIP)
            and (not p.startswith("arch/") or p.startswith("arch/x86/"))]


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print("usage: name_users.py TREE PATCH...", file=sys.stderr)
        return 2
    names, touched = changed([Path(p) for p in argv[1:]])
    for path in users(Path(argv[0]), names, touched):
        print(path[:-2] + ".o")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
