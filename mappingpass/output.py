"""Writing output files: atomically (a temporary file beside the target, then
a rename), so that a failure leaves the old file or none, never a partial one;
text is written as UTF-8 with the source's undecodable bytes given back as
they were (surrogateescape)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import UserError


class OutputError(UserError):
    """An output file that cannot be written; the message names it and why."""


def write_atomic(path: Path | str, data: str | bytes) -> None:
    path = Path(path)
    blob = data.encode("utf-8", "surrogateescape") if isinstance(data, str) else data
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"{path}: cannot write (no directory {parent})")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write ({exc.strerror})") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(blob)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise OutputError(f"{path}: cannot write ({exc.strerror})") from None


def make_dir(path: Path | str) -> Path:
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{path}: cannot create the directory ({exc.strerror})") from None
    return path
