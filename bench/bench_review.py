#!/usr/bin/env python3
"""Benchmark `mappingpass review`: a review of a small change with a warm index
against a cold analyze of the same tree.

linux-6.1 (Debian's linux-source-6.1, extracted) is not a git repository, so
the benchmark copies a few of its directories into a temporary directory,
commits them, runs a cold `analyze` (timed), commits a change to three files
(a new function reading page->mapping in each), and times `review` of that
commit with the warm index: the first review (which reads and parses the three
files) and a second one (files cached), then the same range with the series
comparison forced (the plan of the base, parsing deferred files on demand the
first time). Prints a table.

    python bench/bench_review.py [--tree ~/.cache/mappingpass/linux-source-6.1] [--dirs fs mm include block]
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

# three kind-1 files and a function name that exists nowhere in linux-6.1
CHANGED = ["fs/ext2/dir.c", "fs/nilfs2/page.c", "fs/buffer.c"]
NEW_READER = """
/* mappingpass review benchmark: a new reader of page->mapping. */
int mappingpass_bench_reader_{n}(struct page *page)
{{
\treturn page->mapping != NULL;
}}
"""


def run(cmd: list[str], cwd: Path | None = None) -> tuple[float, str]:
    start = time.monotonic()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    elapsed = time.monotonic() - start
    if proc.returncode not in (0, 1):
        raise SystemExit(f"bench_review: {' '.join(cmd[:4])}... failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return elapsed, proc.stdout


def git(tree: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=bench", "-c", "user.email=bench@example.org", "-C", str(tree), *args],
                   check=True, capture_output=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tree", type=Path, default=Path.home() / ".cache/mappingpass/linux-source-6.1")
    ap.add_argument("--dirs", nargs="+", default=["fs", "mm", "include", "block"],
                    help="directories of the tree to copy (default: fs mm include block)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary copy and print where it is")
    args = ap.parse_args()
    src = args.tree.resolve()
    if not (src / "include/linux/fs.h").is_file():
        print(f"bench_review: {src} is not a linux tree (apt-get install linux-source-6.1 and extract it)",
              file=sys.stderr)
        return 2
    if shutil.which("git") is None:
        print("bench_review: git is not installed", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="mappingpass-bench-review-"))
    try:
        tree = work / "linux"
        tree.mkdir()
        shutil.copy2(src / "Makefile", tree / "Makefile")
        for d in args.dirs:
            shutil.copytree(src / d, tree / d, symlinks=True)
        git(tree, "init", "-q")
        git(tree, "add", "-A")
        git(tree, "commit", "-q", "-m", "linux-6.1 (part)")
        files = sum(1 for _ in tree.rglob("*.[ch]"))
        py = [sys.executable, "-m"]
        db = work / "db"
        cold, _ = run([*py, "mappingpass", "analyze", str(tree), "--db", str(db), "-q"])
        warm_analyze, _ = run([*py, "mappingpass", "analyze", str(tree), "--db", str(db), "-q"])
        changed = [p for p in CHANGED if (tree / p).is_file()]
        for n, p in enumerate(changed):
            with open(tree / p, "a") as fh:
                fh.write(NEW_READER.format(n=n))
        git(tree, "commit", "-q", "-am", "new readers")
        review = [*py, "mappingpass", "review", "--base", "HEAD~1", "--head", "HEAD", str(tree),
                  "--db", str(db), "-q", "--format", "json"]
        first, out = run(review)
        result = json.loads(out)
        second, _ = run(review)
        series_first, _ = run([*review, "--series", "yes"])
        series_second, out2 = run([*review, "--series", "yes"])
        series = json.loads(out2)
        rows = [
            (f"analyze cold ({files} .c/.h files: {' '.join(args.dirs)})", cold),
            ("analyze warm (nothing changed)", warm_analyze),
            (f"review of a {len(changed)}-file commit, warm index (first)", first),
            (f"review of a {len(changed)}-file commit, warm index (again)", second),
            ("  same with --series yes (first: base plan, deferred files on demand)", series_first),
            ("  same with --series yes (again)", series_second),
        ]
        width = max(len(r[0]) for r in rows)
        print(f"{'run':<{width}}  {'seconds':>8}  vs cold analyze")
        for name, t in rows:
            print(f"{name:<{width}}  {t:>8.2f}  {t / cold:>6.1%}")
        c = result["counts"]
        print(f"\nreview found {c['error']} errors, {c['warning']} warnings, {c['note']} notes in "
              f"{len(result['files'])} files; inside the review: "
              + ", ".join(f"{k} {v:.2f} s" for k, v in result["stats"]["seconds"].items() if v >= 0.05))
        print("series run: " + ", ".join(f"{k} {v:.2f} s" for k, v in series["stats"]["seconds"].items()
                                         if v >= 0.05))
        print(f"(seconds are wall time of the whole command, Python start-up included; {os.cpu_count()} cores)")
        if args.keep:
            print(f"kept {work}")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
