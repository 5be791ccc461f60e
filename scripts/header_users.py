"""Print, for kernel_build_check.sh --header-users N, the objects of up to N
untouched .c files that include each touched header, in path order:
`#include <linux/x.h>` anywhere in the tree for include/linux/x.h, `#include
"x.h"` in the header's own directory for a subsystem's private header. Only
code x86_64 builds (other architectures, tools and samples are left out)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SKIP = ("Documentation/", "tools/", "samples/", "scripts/", "usr/")


def users(tree: Path, header: str) -> list[str]:
    if header.startswith("include/"):
        pattern, where = f"#include <{header[len('include/'):]}>", "."
    else:
        pattern, where = f'#include "{Path(header).name}"', str(Path(header).parent)
    proc = subprocess.run(["grep", "-rlF", "--include=*.c", pattern, where], cwd=tree,
                          capture_output=True, text=True, check=False)
    found = sorted(p.removeprefix("./") for p in proc.stdout.split())
    return [p for p in found if not p.startswith(SKIP)
            and (not p.startswith("arch/") or p.startswith("arch/x86/"))]


def main(argv: list[str]) -> int:
    tree, n, files = Path(argv[0]), int(argv[1]), argv[2:]
    touched = set(files)
    for header in sorted(f for f in files if f.endswith(".h")):
        for path in [p for p in users(tree, header) if p not in touched][:n]:
            print(path[:-2] + ".o")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
