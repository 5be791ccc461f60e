"""The git repository under review: revisions, changed files, blobs."""

from __future__ import annotations

import subprocess
from collections.abc import Iterable
from pathlib import Path

from .records import ReviewError


# -- git ---------------------------------------------------------------------------
class Git:
    def __init__(self, root: Path) -> None:
        self.root = root
        try:
            proc = subprocess.run(["git", "-C", str(root), "rev-parse", "--show-toplevel", "--show-prefix"],
                                  capture_output=True, text=True, check=False)
        except OSError:
            raise ReviewError("git is not installed; review needs it (apt-get install git)") from None
        if proc.returncode != 0:
            raise ReviewError(f"{root}: not inside a git repository; review compares two commits of one")
        lines = proc.stdout.split("\n")
        self.top = lines[0]
        self.prefix = lines[1] if len(lines) > 1 else ""

    def run(self, *args: str, data: bytes | None = None) -> bytes:
        proc = subprocess.run(["git", "-c", "core.quotepath=off", "-C", str(self.root), *args],
                              input=data, capture_output=True, check=False)
        if proc.returncode != 0:
            msg = proc.stderr.decode(errors="replace").strip().splitlines()
            raise ReviewError(f"git {args[0]} failed in {self.root}: {msg[-1] if msg else proc.returncode}")
        return proc.stdout

    def commit(self, rev: str) -> str:
        proc = subprocess.run(["git", "-C", str(self.root), "rev-parse", "--verify", "--quiet", "--end-of-options",
                               f"{rev}^{{commit}}"], capture_output=True, text=True, check=False)
        if proc.returncode != 0 or not proc.stdout.strip():
            raise ReviewError(f"{rev}: not a commit in {self.top}; give a branch, tag or commit id")
        return proc.stdout.strip()

    def exists(self, rev: str) -> bool:
        proc = subprocess.run(["git", "-C", str(self.root), "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"],
                              capture_output=True, check=False)
        return proc.returncode == 0

    def changed(self, a: str, b: str | None = None) -> list[tuple[str, str]]:
        """(status letter, path relative to the tree's top) of files that differ
        between a and b (or a and the work tree), under the tree's top."""
        out = self.run("diff", "--name-status", "--no-renames", "-z", "--relative", a,
                       *([b] if b else []), "--", ".")
        parts = out.decode("utf-8", "surrogateescape").split("\0")
        return [(parts[i][:1], parts[i + 1]) for i in range(0, len(parts) - 1, 2)]

    def untracked(self) -> list[str]:
        out = self.run("ls-files", "--others", "--exclude-standard", "-z", "--", ".")
        return [p for p in out.decode("utf-8", "surrogateescape").split("\0") if p]

    def head(self) -> str | None:
        try:
            return self.run("rev-parse", "--verify", "HEAD").decode().strip()
        except ReviewError:
            return None

    def blobs(self, rev: str, paths: Iterable[str]) -> dict[str, bytes | None]:
        """Contents of the files at rev (None where the file does not exist there)."""
        paths = sorted(set(paths))
        if not paths:
            return {}
        spec = "".join(f"{rev}:{self.prefix}{p}\n" for p in paths).encode("utf-8", "surrogateescape")
        out = self.run("cat-file", "--batch", data=spec)
        result: dict[str, bytes | None] = {}
        pos = 0
        for p in paths:
            nl = out.index(b"\n", pos)
            header = out[pos:nl].split()
            pos = nl + 1
            if len(header) == 3 and header[1] in (b"blob", b"tree", b"commit", b"tag"):
                size = int(header[2])
                result[p] = out[pos:pos + size] if header[1] == b"blob" else None
                pos += size + 1
            else:
                result[p] = None  # "<spec> missing"
        return result
