"""`mappingpass emit`: the plan as a diff, a semantic patch, a series, or applied."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

from .. import emit as emitmod
from ..emit import series as seriesmod
from ..emit import smpl
from ..errors import InputError
from ..output import write_atomic
from ..resources import fixture_tree
from .common import inputs_for, progress


def register(sub, common) -> None:
    e = sub.add_parser("emit", help="the plan as a diff, a semantic patch, a patch series, or applied")
    e.add_argument("--diff", nargs="?", const="-", metavar="FILE",
                   help="write one unified diff (default: stdout)")
    e.add_argument("--spatch", nargs="?", const=".", metavar="DIR",
                   help="write the Coccinelle semantic patch into DIR (default: .)")
    e.add_argument("--series", metavar="DIR", help="write a git format-patch style series into DIR")
    e.add_argument("--maintainers", metavar="FILE",
                   help="MAINTAINERS file for Cc: lines (default: the tree's own, if any)")
    e.add_argument("--author", metavar="'NAME <EMAIL>'",
                   help="the series' From: and Signed-off-by: (default: $GIT_AUTHOR_NAME and "
                        "$GIT_AUTHOR_EMAIL, else git config user.name and user.email)")
    e.add_argument("--no-signoff", action="store_true", help="no Signed-off-by: lines in the series")
    e.add_argument("--apply", action="store_true",
                   help="change the tree in place, atomically (all files or none)")
    e.add_argument("--force", action="store_true", help="with --apply: also on a dirty git tree")
    e.add_argument("--rules", help="rules file (default: the one analyze used)")
    common(e, formats=False)  # (its outputs have their own formats)
    e.set_defaults(func=cmd_emit)


def cmd_emit(args: argparse.Namespace) -> int:
    if not (args.diff or args.apply or args.spatch or args.series):
        raise InputError("emit: say what to emit: --diff [FILE], --spatch [DIR], --series DIR or --apply")
    plan, facts, rules, root, digests = inputs_for(args)
    try:
        texts = emitmod.new_texts(plan, facts, rules, root, digests)
    except emitmod.EmitError as exc:
        raise InputError(str(exc)) from None
    if args.spatch:

        decls, header = emitmod.for_spatch(plan, facts, rules, root, digests)
        for path in smpl.write_spatch(plan, rules, Path(args.spatch), tuple(decls), header):
            if not args.quiet:
                print(f"emit: wrote {path}", file=sys.stderr)
    if args.series:

        maintainers = Path(args.maintainers) if args.maintainers else root / "MAINTAINERS"
        if args.maintainers and not maintainers.is_file():
            raise InputError(f"{maintainers}: no such MAINTAINERS file")
        try:
            written = seriesmod.write_series(plan, facts, rules, root, digests,
                                             Path(args.series), maintainers if maintainers.is_file() else None,
                                             author=_author(args, root), signoff=not args.no_signoff,
                                             quiet=args.quiet,
                                             progress=lambda label: progress(args.quiet, label, "patches"))
        except emitmod.EmitError as exc:
            raise InputError(str(exc)) from None
        if not args.quiet:
            print(f"emit: wrote {len(written) - 1} patches and a cover letter into {args.series}",
                  file=sys.stderr)
    if args.diff:
        diff = emitmod.unified_diff(texts)
        if args.diff == "-":
            sys.stdout.write(diff)
        else:
            write_atomic(args.diff, diff)
    if args.apply:
        if root.resolve() == fixture_tree().resolve():
            raise InputError(f"{root}: the bundled fixture is mappingpass's own test data and is never changed; "
                             f"copy it (cp -r {root} /tmp/minilinux), analyze the copy and apply there")
        if not args.force and _git_dirty(root):
            raise InputError(f"{root}: the git tree has uncommitted changes; commit them or pass --force")
        try:
            emitmod.apply_atomically(root, texts)
        except emitmod.EmitError as exc:
            raise InputError(str(exc)) from None
        if not args.quiet:
            print(f"emit: changed {len(texts)} files under {root}", file=sys.stderr)
    return 0


def _author(args: argparse.Namespace, root: Path) -> str:
    """Who sends the series: --author, else git's own order (the GIT_AUTHOR_*
    variables, then user.name and user.email as git config gives them in the
    tree, which includes the global ones)."""
    if args.author:
        return args.author
    name, addr = os.environ.get("GIT_AUTHOR_NAME"), os.environ.get("GIT_AUTHOR_EMAIL")
    source = "$GIT_AUTHOR_NAME and $GIT_AUTHOR_EMAIL"
    if not (name and addr) and shutil.which("git"):
        def config(key: str) -> str:
            proc = subprocess.run(["git", "-C", str(root), "config", key], capture_output=True, text=True,
                                  check=False)
            return proc.stdout.strip()
        name, addr = name or config("user.name"), addr or config("user.email")
        source = "git config user.name and user.email"
    if not (name and addr):
        raise InputError("emit --series: who is the author? set git config user.name and user.email "
                         "(git config --global ...), or pass --author 'Name <email>'")
    if not args.quiet:  # (the identity goes into every From: and Signed-off-by: line)
        print(f"emit --series: author {name} <{addr}> (from {source}; --author to choose another)",
              file=sys.stderr)
    return f"{name} <{addr}>"


def _git_dirty(root: Path) -> bool:
    if shutil.which("git") is None:
        return False
    proc = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                          capture_output=True, text=True, check=False)
    return proc.returncode == 0 and bool(proc.stdout.strip())
