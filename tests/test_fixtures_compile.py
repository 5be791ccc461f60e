"""The fixture tree is kernel-like C that a real compiler accepts."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from conftest import MINILINUX

SOURCES = sorted(MINILINUX.rglob("*.c"))


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")
@pytest.mark.parametrize("source", SOURCES, ids=lambda p: str(p.relative_to(MINILINUX)))
def test_fixture_compiles(source):
    proc = subprocess.run(
        ["cc", "-fsyntax-only", "-Wall", "-Werror", "-I", str(MINILINUX / "include"), str(source)],
        capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 0, proc.stderr
