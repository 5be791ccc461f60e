"""`mappingpass review`: the PR bot's command.

    mappingpass review --base REV [--head REV] [PATH] [--sarif FILE] [--markdown FILE]
                       [--github] [--fail-on error|warning|note] [--series auto|yes|no]

Exit 0 when no finding is at or above --fail-on, 1 when one is, 2 on usage or
input errors (not a git tree, unknown revision, unusable index or rules) with
a one-line message.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from .. import review as reviewmod
from ..errors import InputError
from ..index import Store, StoreError
from ..output import write_atomic
from .common import jobs_arg, progress


def register(sub, common) -> None:
    r = sub.add_parser("review", help="PR bot: what a git range adds or breaks (SARIF, markdown, annotations)")
    r.add_argument("path", nargs="?", metavar="PATH",
                   help="the kernel tree, in a git repository (default: the tree the index holds, "
                        "else the current directory)")
    r.add_argument("--base", required=True, metavar="REV", help="the revision the change starts from")
    r.add_argument("--head", default="HEAD", metavar="REV", help="the revision under review (default HEAD)")
    r.add_argument("--rules", help="rules file (default: the one analyze used)")
    r.add_argument("--sarif", metavar="FILE", help="write the findings as SARIF 2.1.0")
    r.add_argument("--markdown", metavar="FILE", help="write a markdown summary for a PR comment")
    r.add_argument("--github", action="store_true",
                   help="print GitHub workflow annotations (::error file=...,line=...::message)")
    r.add_argument("--fail-on", choices=("error", "warning", "note"), default="error",
                   help="exit 1 when a finding is at or above this level (default: error)")
    r.add_argument("--series", choices=("auto", "yes", "no"), default="auto",
                   help="compare every hunk with what the plan emits: auto (when the range adds the helper "
                        "or functions gain the parameter), yes, no")
    r.add_argument("-j", "--jobs", type=jobs_arg, default=0, help="parallel parsers (default 0: all cores)")
    common(r)
    r.set_defaults(func=cmd_review)


def cmd_review(args: argparse.Namespace) -> int:
    if args.github and args.format == "json":
        raise InputError("--github and --format json both write to stdout; use one of them "
                         "(--sarif FILE keeps the machine-readable form)")
    path = args.path
    if path is None:
        path = _indexed_root(args.db) or "."
        _refuse_another_repository(args.db, path)
    quiet = args.quiet

    def log(msg: str) -> None:
        if not quiet:
            print(msg, file=sys.stderr)

    try:
        result = reviewmod.review(path, args.base, args.head, args.db, args.rules, args.series,
                                  args.jobs, log, progress(quiet, "review: analyze"))
    except reviewmod.ReviewError as exc:
        raise InputError(str(exc)) from None
    for target, text in ((args.sarif, lambda: json.dumps(reviewmod.to_sarif(result), indent=1) + "\n"),
                         (args.markdown, lambda: reviewmod.to_markdown(result))):
        if target:
            try:
                write_atomic(target, text())
            except OSError as exc:
                raise InputError(f"{target}: cannot write ({exc.strerror})") from None
    if args.github:
        sys.stdout.write(reviewmod.github_annotations(result))
    if args.format == "json":
        json.dump(result.to_json(), sys.stdout, indent=1)
        sys.stdout.write("\n")
    elif not args.github or not quiet:
        sys.stdout.write(reviewmod.to_text(result))
    return reviewmod.exit_code(result, args.fail_on)


def _indexed_root(db: str) -> str | None:
    """The tree an existing index holds, so that `review --base X` works from anywhere."""
    if not (Path(db) / "index.sqlite").exists():
        return None
    try:
        store = Store(Path(db), create=False)
    except StoreError:
        return None
    try:
        return store.get_meta("root")
    finally:
        store.close()


def _git_top(path: str | Path) -> Path | None:
    proc = subprocess.run(["git", "-C", str(path), "rev-parse", "--show-toplevel"], capture_output=True,
                          text=True, check=False)
    return Path(proc.stdout.strip()).resolve() if proc.returncode == 0 and proc.stdout.strip() else None


def _refuse_another_repository(db: str, indexed: str) -> None:
    """Run inside one repository with the index of a tree in another, review
    would silently review that other tree."""
    here = _git_top(".")
    if here is None or indexed == ".":
        return
    there = _git_top(indexed) if Path(indexed).is_dir() else None
    if there != here:
        raise InputError(f"{db} is the index of {indexed}, but the current directory is in the repository "
                         f"{here}: give the tree to review as PATH, or --db with an index of this one")
