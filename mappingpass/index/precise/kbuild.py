"""A configured kernel build out of the source tree, and each file's flags.

`prepare()` runs `make O=DIR <config>` and `make O=DIR prepare` (generated
headers, no compilation; seconds) and never writes into the source tree.
`flags()` asks make for the command that would compile each file
(`make -n -k O=DIR path/x.o ...`, many targets per run) and turns gcc's
command line into clang's (`clang_args`). `compile_commands()` reads the
flags of a tree the user built (`compile_commands.json`, as
`scripts/clang-tools/gen_compile_commands.py` writes it).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ...errors import UserError

CONFIGS = ("allmodconfig", "defconfig")
ARCH = "x86_64"
ARCH_DIR = "x86"
MARKER = ".mappingpass-prepared"
# gcc options clang rejects (or reads differently) on the kernel's command line
GCC_ONLY = frozenset({
    "-mpreferred-stack-boundary=3", "-mindirect-branch=thunk-extern", "-mindirect-branch-register",
    "-mindirect-branch-cs-prefix", "-mfunction-return=thunk-extern", "-fno-allow-store-data-races",
    "-fconserve-stack", "-falign-jumps=1", "-fno-ipa-cp-clone", "-mskip-rax-setup", "-fno-ipa-sra",
    "-mrecord-mcount", "-fno-stack-clash-protection", "-fmin-function-alignment=16",
})
GCC_ONLY_PREFIXES = ("-Werror", "-Wp,", "-fplugin", "-fsanitize-coverage", "-fconserve", "-mabi=",
                     "--param", "-fno-var-tracking", "-Wimplicit-fallthrough=", "-Wframe-larger-than")
CLANG_EXTRA = ("--target=x86_64-linux-gnu", "-Wno-unknown-warning-option", "-ferror-limit=0", "-w")
_PATH_OPTIONS = ("-I", "-include", "-isystem", "-iquote", "-imacros")
_COMMAND = re.compile(r"(?:^|;)\s*(\S*(?:gcc|cc|clang)(?:-\d+)?\s.*?\s-c\s+-o\s+(\S+)\s+(\S+\.c))\s*(?:;|$)")
_BATCH = 300  # targets per make run


class KbuildError(UserError):
    """The configured build cannot be made or read: one line, what to do."""


@dataclass(frozen=True)
class Build:
    tree: Path
    dir: Path
    config: str  # "allmodconfig", "defconfig" or the path of a config file
    config_digest: str  # of DIR/.config: what every file's flags depend on


def default_build_dir(db_dir: Path, config: str) -> Path:
    name = config if config in CONFIGS else "config-" + _digest(Path(config).read_bytes())[:12]
    return db_dir / f"build-{name}"


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=12).hexdigest()


def _make(tree: Path, build_dir: Path, *args: str, jobs: int = 1, check: bool = True) -> subprocess.CompletedProcess:
    cmd = ["make", "-s", f"-j{jobs}", "-C", str(tree), f"O={build_dir}", f"ARCH={ARCH}", *args]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, errors="replace",
                              env={**os.environ, "LC_ALL": "C"})
    except FileNotFoundError:
        raise KbuildError("make: not found; install make (Debian: apt-get install make)") from None
    if check and done.returncode != 0:
        last = [ln for ln in (done.stderr or done.stdout).splitlines() if ln.strip()][-3:]
        raise KbuildError(f"{tree}: 'make O={build_dir} {' '.join(args)}' failed: {' | '.join(last)}")
    return done


def check_tree(tree: Path, build_dir: Path) -> None:
    if not (tree / "Makefile").is_file() or not (tree / "scripts" / "Kbuild.include").is_file():
        raise KbuildError(f"{tree}: not a kernel source tree (no Makefile and scripts/Kbuild.include); "
                          "--precise needs the top of one")
    if os.path.realpath(build_dir).startswith(os.path.realpath(tree) + os.sep):
        raise KbuildError(f"{build_dir}: inside the source tree; --build-dir must be outside it "
                          "(precise mode never writes into the tree)")
    if (tree / ".config").exists() or (tree / "include" / "config").is_dir():
        raise KbuildError(f"{tree}: the tree is configured in place (it has .config or include/config), and "
                          "make cannot build it out of tree; run 'make mrproper' there, or build it and pass "
                          "--compile-commands")


def prepare(tree: Path, build_dir: Path, config: str, jobs: int,
            say: Callable[[str], None] = lambda _m: None) -> Build:
    """The configured build in build_dir, made once and reused while its
    configuration and the tree's top Makefile stay the same."""
    tree = tree.resolve()
    check_tree(tree, build_dir)
    if config not in CONFIGS and not Path(config).is_file():
        raise KbuildError(f"{config}: no such config file; give allmodconfig, defconfig or a .config file")
    wanted = {"tree": str(tree), "config": config if config in CONFIGS else _digest(Path(config).read_bytes()),
              "makefile": _digest((tree / "Makefile").read_bytes())}
    marker = build_dir / MARKER
    dot_config = build_dir / ".config"
    try:
        if marker.is_file() and dot_config.is_file() and json.loads(marker.read_text()).get("want") == wanted:
            return Build(tree, build_dir, config, _digest(dot_config.read_bytes()))
        build_dir.mkdir(parents=True, exist_ok=True)
    except (OSError, ValueError) as exc:
        raise KbuildError(f"{build_dir}: cannot use it as the build directory ({exc})") from None
    say(f"precise: configuring {tree.name} ({config}) in {build_dir}")
    if config in CONFIGS:
        _make(tree, build_dir, config)
    else:
        try:
            shutil.copyfile(config, dot_config)
        except OSError as exc:
            raise KbuildError(f"{build_dir}: cannot write .config there ({exc.strerror})") from None
        _make(tree, build_dir, "olddefconfig")
    say("precise: make prepare (generated headers, no compilation)")
    _make(tree, build_dir, "prepare", jobs=jobs)
    try:
        build = Build(tree, build_dir, config, _digest(dot_config.read_bytes()))
        marker.write_text(json.dumps({"want": wanted, "config_digest": build.config_digest}) + "\n")
    except OSError as exc:
        raise KbuildError(f"{build_dir}: make left no usable .config there ({exc})") from None
    return build


def clang_args(command: str, cwd: Path) -> list[str] | None:
    """gcc's command line for one object -> clang's arguments (the source and
    the output left out, relative paths made absolute); None if it cannot be
    split."""
    try:
        argv = shlex.split(command)
    except ValueError:
        return None
    out: list[str] = []
    skip_next = False
    pending_path = ""
    for arg in argv[1:]:
        if skip_next:
            skip_next = False
            continue
        if pending_path:
            out += [pending_path, _absolute(arg, cwd)]
            pending_path = ""
            continue
        if arg == "-o":
            skip_next = True
            continue
        if arg == "-c" or arg.endswith(".c") and not arg.startswith("-"):
            continue
        if arg in GCC_ONLY or arg.startswith(GCC_ONLY_PREFIXES):
            continue
        if arg in _PATH_OPTIONS:
            pending_path = arg
            continue
        if arg.startswith("-I") and len(arg) > 2:
            arg = "-I" + _absolute(arg[2:], cwd)
        out.append(arg)
    return out + list(CLANG_EXTRA)


def _absolute(path: str, cwd: Path) -> str:
    return path if os.path.isabs(path) else os.path.normpath(os.path.join(cwd, path))


def flags(build: Build, rels: list[str], progress: Callable[[int, int], None] | None = None) -> dict[str, list[str]]:
    """clang's arguments for each .c file of rels that this configuration
    compiles (files it does not compile are left out)."""
    found: dict[str, list[str]] = {}
    # (make compiles any file it is asked for, with the configuration's flags;
    # another architecture's files would only fail)
    rels = [r for r in rels if not r.startswith("arch/") or r.startswith(f"arch/{ARCH_DIR}/")]
    wanted = set(rels)
    tree = str(build.tree) + os.sep
    for i in range(0, len(rels), _BATCH):
        batch = rels[i:i + _BATCH]
        done = _make(build.tree, build.dir, "-n", "-k", *[r[:-2] + ".o" for r in batch], check=False)
        for line in done.stdout.splitlines():
            for m in _COMMAND.finditer(line):
                src = m.group(3)
                rel = src[len(tree):] if src.startswith(tree) else src
                if rel in found or rel not in wanted:
                    continue
                args = clang_args(m.group(1), build.dir)
                if args is not None:
                    found[rel] = args
        if progress:
            progress(min(i + _BATCH, len(rels)), len(rels))
    return found


def compile_commands(path: Path, tree: Path) -> dict[str, list[str]]:
    """clang's arguments per tree-relative .c file from a compile_commands.json."""
    try:
        entries = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise KbuildError(f"{path}: cannot read it as compile_commands.json ({exc})") from None
    if not isinstance(entries, list):
        raise KbuildError(f"{path}: not a compile_commands.json (a list of entries expected)")
    tree_s = str(tree.resolve()) + os.sep
    found: dict[str, list[str]] = {}
    for entry in entries:
        if not isinstance(entry, dict) or "file" not in entry or "directory" not in entry:
            continue
        cwd = Path(entry["directory"])
        src = _absolute(entry["file"], cwd)
        if not src.startswith(tree_s) or not src.endswith(".c"):
            continue
        command = entry.get("command") or shlex.join(entry.get("arguments") or [])
        args = clang_args(command, cwd)
        if args is not None:
            if "-nostdinc" not in args:
                args += _compiler_headers()
            found.setdefault(src[len(tree_s):], args)
    return found


_HEADERS: list[str] | None = None


def _compiler_headers() -> list[str]:
    """The compiler's own headers (stddef.h ...), which the libclang wheel
    does not ship: gcc's, for a build that does not pass -nostdinc."""
    global _HEADERS
    if _HEADERS is None:
        _HEADERS = []
        for cc in ("gcc", "cc"):
            try:
                out = subprocess.run([cc, "-print-file-name=include"], capture_output=True, text=True).stdout.strip()
            except OSError:
                continue
            if out and os.path.isfile(os.path.join(out, "stddef.h")):
                _HEADERS = ["-isystem", out]
                break
    return list(_HEADERS)
