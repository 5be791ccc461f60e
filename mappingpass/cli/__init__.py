"""The command line: `main(argv) -> int`, one module per command
(analyze, plan and explain, emit, check, review), each with `register(sub,
common)` and a `cmd_*` function of the parsed arguments.

Exit codes (EXIT_CODES, shown by every -h): 0 success, 1 found what the
command exists to find (unresolved reads, unresolvable verdicts), 2 usage or
input error with a one-line message naming the file and what to do (any
`errors.UserError`, caught here once), 3 an internal error, 130 interrupted, 143 terminated (SIGTERM).
"""

from __future__ import annotations

import argparse
import gc
import os
import signal
import sys

import argcomplete

from .. import __version__
from ..errors import UserError
from . import analyze, check, emit, plan, review
from .common import EXIT_CODES

DESCRIPTION = """\
Pass struct address_space (the mapping) down to every Linux kernel function
that reads it from page->mapping, so that pages can be write protected.

The commands, in pipeline order:
  analyze  index a tree (or directories of one) into --db
  plan     the passdown fixpoint: what gains the parameter, what each call passes
  explain  why a function gains it (its chain to a read)
  check    the plan run in the write-protect model: a verdict per read
  emit     the plan as a diff, a Coccinelle semantic patch, a patch series, or applied
  review   a git range reviewed against the plan (the PR bot)
Each takes --db DIR (default ./.mappingpass); 'mappingpass COMMAND -h' for its options."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mappingpass", description=DESCRIPTION, epilog=EXIT_CODES,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"mappingpass {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(sp: argparse.ArgumentParser, formats: bool = True) -> None:
        sp.add_argument("--db", default=os.environ.get("MAPPINGPASS_DB") or ".mappingpass",
                        help="results directory (default $MAPPINGPASS_DB, else ./.mappingpass)")
        if formats:
            sp.add_argument("--format", choices=("text", "json"), default="text",
                            help="text for people (default), json for tools (schemas in README.md)")
        sp.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
        if sp.prog.split()[-1] != "analyze":
            sp.add_argument("--allow-unread", action="store_true",
                            help="plan even though analyze could not read some files (a function or "
                                 "slot the plan changes may be used there, unchanged)")

    # one module per command, in pipeline order
    for command in (analyze, plan, emit, check, review):
        command.register(sub, common)
    helps = {c.dest: c.help for c in sub._choices_actions}
    for name, sp in sub.choices.items():  # every command: its purpose and exit codes in -h
        sp.description = sp.description or helps.get(name, "")
        sp.epilog = EXIT_CODES
        sp.formatter_class = argparse.RawDescriptionHelpFormatter
    return p


def main(argv: list[str] | None = None) -> int:
    # Millions of small fact records and no reference cycles worth collecting:
    # the cyclic collector would otherwise rescan them all again and again
    # (a third of plan's time on the whole tree).
    gc.disable()
    try:
        return _main(argv)
    finally:
        gc.enable()


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled as ^C is (the work done so far is kept), exit 143."""


def _terminate(_signum, _frame) -> None:
    raise Terminated()


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    if argv is None:  # the console command: bash asks it for completions (and it exits)
        argcomplete.autocomplete(parser)
    args = parser.parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        return args.func(args)
    except UserError as exc:
        print(f"mappingpass: error: {exc}", file=sys.stderr)
        return 2
    except Terminated:
        print("mappingpass: terminated (SIGTERM); what was done so far is kept", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("mappingpass: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # a bug of ours: say so in one line, exit 3
        if os.environ.get("MAPPINGPASS_DEBUG"):
            raise
        print(f"mappingpass: internal error: {type(exc).__name__}: {exc} (a bug: please report it with "
              "the command; MAPPINGPASS_DEBUG=1 shows the traceback)", file=sys.stderr)
        return 3
    finally:
        signal.signal(signal.SIGTERM, previous)


def console_main() -> None:
    """The `mappingpass` command: main, then exit without tearing down the
    interpreter's objects one by one (a whole-tree graph takes seconds to
    free, for nothing: the process ends). Output is flushed first."""
    code = main()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:
        pass
    os._exit(code)


if __name__ == "__main__":
    console_main()
