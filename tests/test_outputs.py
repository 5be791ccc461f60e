"""Outputs never destroy what they are pointed at (issue: hardening, second
pass): a symlink is written through, a device written into, a directory
refused, the bundled fixture never applied to, and a failed --apply leaves no
temporary file in the tree."""

from __future__ import annotations

import errno
import os
import shutil
import stat
from pathlib import Path

import pytest
from conftest import MINILINUX, run_cli

from mappingpass.emit import edits
from mappingpass.output import OutputError, write_atomic


@pytest.fixture(scope="module")
def db(tmp_path_factory) -> Path:
    where = tmp_path_factory.mktemp("outputs")
    tree = where / "tree"
    shutil.copytree(MINILINUX, tree)
    assert run_cli("analyze", str(tree), "--db", str(where / "db"), "-q")[0] == 0
    return where / "db"


def test_a_symlink_is_written_through(db, tmp_path):
    target = tmp_path / "real.diff"
    target.write_text("old")
    link = tmp_path / "link.diff"
    link.symlink_to(target)
    code, _, err = run_cli("emit", "--db", str(db), "--diff", str(link), "-q")
    assert code == 0, err
    assert link.is_symlink() and target.read_text().startswith("diff --git ")


def test_a_fifo_is_written_into_not_replaced(db, tmp_path):
    """(A FIFO of our own, not /dev/null: a regression must not replace a
    device node of the machine.)"""
    import threading

    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    code, _, err = run_cli("emit", "--db", str(db), "--diff", str(fifo), "-q")
    reader.join(10)  # (a daemon: a regression that replaced the FIFO cannot hang the run)
    assert code == 0, err
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and got and got[0].startswith(b"diff --git ")


def test_a_directory_is_refused(db, tmp_path):
    code, _, err = run_cli("emit", "--db", str(db), "--diff", str(tmp_path), "-q")
    assert code == 2 and "is a directory" in err and tmp_path.is_dir()
    with pytest.raises(OutputError, match="is a directory"):
        write_atomic(tmp_path, "x")


def test_a_regular_file_keeps_its_mode_and_no_temporary_file(tmp_path):
    out = tmp_path / "x.txt"
    out.write_text("old")
    out.chmod(0o600)
    write_atomic(out, "new")
    assert out.read_text() == "new" and stat.S_IMODE(out.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["x.txt"]


def test_the_bundled_fixture_is_never_applied_to(tmp_path, monkeypatch):
    """(On a copy standing in for the bundled fixture: a regression must not
    rewrite the real one.)"""
    from mappingpass.cli import emit as emit_cli

    bundled = tmp_path / "minilinux"
    shutil.copytree(MINILINUX, bundled)
    monkeypatch.setattr(emit_cli, "fixture_tree", lambda: bundled)
    db = tmp_path / "db"
    assert run_cli("analyze", str(bundled), "--db", str(db), "-q")[0] == 0
    before = {p: p.read_bytes() for p in bundled.rglob("*.[ch]")}
    code, _, err = run_cli("emit", "--db", str(db), "--apply", "--force", "-q")
    assert code == 2 and err.count("\n") == 1 and "bundled fixture" in err and "copy it" in err, err
    assert {p: p.read_bytes() for p in bundled.rglob("*.[ch]")} == before


def test_a_failed_apply_leaves_no_temporary_file(tmp_path, monkeypatch):
    tree = tmp_path / "t"
    tree.mkdir()
    for name in ("a.c", "b.c"):
        (tree / name).write_text("int x;\n")
    real = os.fdopen

    class Full:
        def __init__(self, fd):
            self.fh = real(fd, "wb")

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(edits.os, "fdopen", lambda fd, mode: Full(fd))
    with pytest.raises(edits.EmitError, match="nothing was changed"):
        edits.apply_atomically(tree, {"a.c": (b"int x;\n", b"int y;\n"), "b.c": (b"int x;\n", b"int z;\n")})
    assert sorted(p.name for p in tree.iterdir()) == ["a.c", "b.c"]
    assert (tree / "a.c").read_text() == "int x;\n"


def test_boot_coverage_joins_the_serial_log_with_the_plan(tmp_path):
    """scripts/boot/coverage.py: per directory, the functions with a read
    rewritten to the helper that ran / were built / are in the plan, and
    the ones built but never reached; identity tests are not measured."""
    import json
    import subprocess
    import sys

    from conftest import REPO

    plan = {"rewrites": [
        {"file": "fs/ext2/dir.c", "function": "fs/ext2/dir.c::ext2_check_page", "to": "page_mapping_wp(page, m)"},
        {"file": "fs/ext2/dir.c", "function": "ext2_get_page", "to": "folio_mapping_wp(folio, m)"},
        {"file": "fs/ext2/inode.c", "function": "ext2_writepage", "to": "page_mapping_wp(page, m)"},
        {"file": "fs/ext2/inode.c", "function": "ext2_truncate", "to": "!page_in_mapping(page, m)"},
        {"file": "mm/filemap.c", "function": "filemap_fault", "to": "folio_mapping_wp(folio, m)"},
        {"file": "fs/f2fs/data.c", "function": "f2fs_write_begin", "to": "page_mapping_wp(page, m)"}]}
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    (tmp_path / "serial.txt").write_text("[ 1.0] kboot-cover: ext2_check_page.isra.0+0x1a/0x80\n"
                                         "[ 1.1] kboot-cover: filemap_fault+0x20/0x300\n"
                                         "[ 1.2] kboot-cover: filemap_fault+0x20/0x300\n")
    (tmp_path / "System.map").write_text("ffffffff81000000 T ext2_check_page.isra.0\n"
                                         "ffffffff81000100 t ext2_writepage\n"
                                         "ffffffff81000200 T filemap_fault\n"
                                         "ffffffff81000300 D ext2_get_page\n")
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "boot" / "coverage.py"),
                           "--plan", str(tmp_path / "plan.json"), "--log", str(tmp_path / "serial.txt"),
                           "--system-map", str(tmp_path / "System.map")], capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    rows = {line.split()[0]: line.split()[1:6:2] for line in proc.stdout.splitlines() if line.startswith("  f")
            or line.startswith("  mm") or line.startswith("  total")}
    assert rows["fs/ext2"] == ["1", "2", "3"]  # ext2_get_page is data, not text: not built here
    assert rows["mm"] == ["1", "1", "1"] and "fs/f2fs" not in rows
    assert rows["total"] == ["2", "3", "5"]
    assert "built, never reached: fs/ext2:ext2_writepage" in proc.stdout
