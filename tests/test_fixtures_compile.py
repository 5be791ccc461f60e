"""The fixture tree is kernel-like C that a real compiler accepts."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from conftest import MINILINUX, compile_jobs


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")
@pytest.mark.parametrize("job", compile_jobs(MINILINUX), ids=lambda j: " ".join([j[0], *j[1]]))
def test_fixture_compiles(job):
    path, extra = job
    proc = subprocess.run(["cc", "-fsyntax-only", "-Wall", "-Werror", "-Iinclude", *extra, path],
                          cwd=MINILINUX, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
