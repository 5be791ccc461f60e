"""Writing output files, one writer for every output: a regular file (or a
new one) is replaced atomically (a temporary file beside it, then a rename),
so that a failure leaves the old file or none, never a partial one, and never
a temporary file; a symlink is written through (the link stays a link); a
device or FIFO is written into, not replaced (`--diff /dev/stdout`); a
directory is refused. Text is written as UTF-8 with the source's undecodable
bytes given back as they were (surrogateescape)."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from .errors import UserError


class OutputError(UserError):
    """An output file that cannot be written; the message names it and why."""


def write_atomic(path: Path | str, data: str | bytes) -> None:
    path = Path(path)
    blob = data.encode("utf-8", "surrogateescape") if isinstance(data, str) else data
    target = Path(os.path.realpath(path)) if path.is_symlink() else path
    try:
        mode = os.stat(target).st_mode
    except FileNotFoundError:
        mode = None
    except OSError as exc:
        raise OutputError(f"{path}: cannot write ({exc.strerror})") from None
    if mode is not None and stat.S_ISDIR(mode):
        raise OutputError(f"{path}: is a directory; give a file name")
    if mode is not None and not stat.S_ISREG(mode):
        _write_into(path, target, blob)  # a device or a FIFO: written, never replaced
        return
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"{path}: cannot write (no directory {parent})")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=parent)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write ({exc.strerror})") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(blob)
        os.chmod(tmp, stat.S_IMODE(mode) if mode is not None else 0o644)
        os.replace(tmp, target)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise OutputError(f"{path}: cannot write ({exc.strerror})") from None


def _write_into(path: Path, target: Path, blob: bytes) -> None:
    try:
        with open(target, "wb") as fh:
            fh.write(blob)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write ({exc.strerror})") from None


def make_dir(path: Path | str) -> Path:
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise OutputError(f"{path}: exists and is not a directory") from None
    except OSError as exc:
        raise OutputError(f"{path}: cannot create the directory ({exc.strerror})") from None
    return path
