"""Shared fixtures: the bundled minilinux tree and Debian's linux-source-6.1."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tarfile
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from mappingpass.cli import main

REPO = Path(__file__).resolve().parent.parent
MINILINUX = REPO / "fixtures" / "minilinux"
LINUX_TARBALL = Path("/usr/src/linux-source-6.1.tar.xz")
CACHE = Path(os.environ.get("MAPPINGPASS_CACHE", Path.home() / ".cache" / "mappingpass"))


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def analyze_json(path: Path, db: Path, *extra: str) -> dict:
    code, out, err = run_cli("analyze", str(path), "--db", str(db), "--format", "json", "-q", *extra)
    assert code == 0, err
    return json.loads(out)


@pytest.fixture(scope="session")
def fixture_analysis(tmp_path_factory) -> dict:
    db = tmp_path_factory.mktemp("db")
    return analyze_json(MINILINUX, db)


@pytest.fixture
def minilinux_copy(tmp_path) -> Path:
    dest = tmp_path / "minilinux"
    shutil.copytree(MINILINUX, dest)
    return dest


@pytest.fixture(scope="session")
def linux_tree() -> Path:
    """linux-6.1 from Debian's linux-source-6.1, extracted once into the cache."""
    tree = Path(os.environ.get("MAPPINGPASS_LINUX", CACHE / "linux-source-6.1"))
    if (tree / "Makefile").is_file() and (tree / "include" / "linux" / "fs.h").is_file():
        return tree
    if not LINUX_TARBALL.is_file():
        pytest.skip("linux-6.1 not available: apt-get install linux-source-6.1 "
                    "(or set MAPPINGPASS_LINUX to an extracted tree)")
    CACHE.mkdir(parents=True, exist_ok=True)
    partial = CACHE / "extracting"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    if shutil.which("tar"):
        subprocess.run(["tar", "xJf", str(LINUX_TARBALL), "-C", str(partial)], check=True)
    else:  # pragma: no cover - tar is in every Debian image
        with tarfile.open(LINUX_TARBALL) as tf:
            tf.extractall(partial, filter="data")
    (partial / "linux-source-6.1").rename(tree)
    shutil.rmtree(partial, ignore_errors=True)
    return tree
