"""What every command shares: the progress bar, the exit codes, -j, and
the plan as the workspace computes it for the command's arguments."""

from __future__ import annotations

import argparse
import os
import sys
import time

from .. import workspace

EXIT_CODES = """\
exit status: 0 success; 1 found what the command exists to find (unresolved
reads, unresolvable verdicts, review findings at the --fail-on level); 2 a
usage or input error, in one line naming the file and what to do; 3 an
internal error (a bug: please report it); 130 interrupted (^C); 143 terminated (SIGTERM)."""


def progress(quiet: bool, label: str, unit: str = "files"):
    if quiet:
        return None
    tty = sys.stderr.isatty()
    state = {"last": time.monotonic()}

    def report(done: int, total: int) -> None:
        now = time.monotonic()
        if done not in (1, total) and now - state["last"] < (0.1 if tty else 5.0):
            return  # (the first step says the phase has begun)
        state["last"] = now
        if tty:
            width = 30
            filled = width * done // max(total, 1)
            sys.stderr.write(f"\r{label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
            if done == total:
                sys.stderr.write("\n")
        else:
            sys.stderr.write(f"{label}: {done}/{total} {unit}\n")
        sys.stderr.flush()

    return report


def jobs_arg(text: str) -> int:
    """-j: 0 (all cores) or 1 to 4 x the cores."""
    cores = os.cpu_count() or 1
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= n <= 4 * cores:
        raise argparse.ArgumentTypeError(f"must be from 1 to {4 * cores} (0: all {cores} cores)")
    return n


def say(quiet: bool):
    """A log line on stderr, or nothing with -q."""
    return (lambda _m: None) if quiet else (lambda m: print(m, file=sys.stderr))


def workspace_args(args: argparse.Namespace, show_progress: bool = True) -> dict:
    """The workspace's keyword arguments for a command's --rules,
    --allow-unread and -q: what compute_plan and load_inputs both take."""
    quiet = args.quiet or not show_progress
    return {"rules_path": getattr(args, "rules", None), "allow_unread": getattr(args, "allow_unread", False),
            "log": None if quiet else say(False),
            "progress": None if quiet else lambda label: progress(False, label)}


def plan_for(args: argparse.Namespace, show_progress: bool = True):
    """workspace.compute_plan for a command's --db, --rules, --allow-unread, -q;
    a warning (even with -q) when a file the plan changes or reads has changed
    since analyze: its line numbers may be stale (emit refuses such a file)."""
    plan, analysis = workspace.compute_plan(args.db, **workspace_args(args, show_progress))
    stale = workspace.stale_files(args.db, [*plan.files(), *(r.file for r in analysis.reads)])
    if stale:
        print(f"mappingpass: warning: {len(stale)} files changed since analyze ({', '.join(stale[:3])}"
              f"{', ...' if len(stale) > 3 else ''}): their line numbers may be stale; re-run "
              "'mappingpass analyze'", file=sys.stderr)
    return plan, analysis


def inputs_for(args: argparse.Namespace) -> workspace.EmitInputs:
    """workspace.load_inputs for a command's --db, --rules, --allow-unread, -q."""
    return workspace.load_inputs(args.db, **workspace_args(args))
