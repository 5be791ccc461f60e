"""Real tier, boot check: the fs+mm series of linux-6.1 (ext2, ext4, minix and
mm/) boots under QEMU and runs the filesystem workload exactly as the
unpatched kernel does, and a mutant of it that passes a context evaluated
through a NULL file (`file->f_mapping` where read_mapping_folio() passes no
file: directory and symlink reads) is caught. Needs QEMU and a kernel build:
minutes, not seconds (scripts/kernel_boot_check.sh installs what it needs;
the unpatched kernel is cached). Run with MAPPINGPASS_BOOT=1, or with the
`boot` marker selected explicitly."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from conftest import REPO, run_cli

pytestmark = [pytest.mark.realtree, pytest.mark.boot,
              pytest.mark.skipif(not os.environ.get("MAPPINGPASS_BOOT"),
                                 reason="boot check: set MAPPINGPASS_BOOT=1 (builds and boots two kernels)")]

SCRIPT = REPO / "scripts" / "kernel_boot_check.sh"
DIRS = ("fs/ext2", "fs/ext4", "fs/minix", "mm")
# filemap_read_folio() calls its filler with the mapping it was given; the
# mutant takes it from the file instead, which is NULL on read_mapping_folio()
# paths (ext2 and minix directories, page-based symlinks)
RIGHT = "+\terror = filler(mapping, file, folio);\n"
WRONG = "+\terror = filler(file->f_mapping, file, folio);\n"


def boot_check(tmp_path: Path, name: str, *args: str) -> tuple[int, str]:
    out = tmp_path / name
    proc = subprocess.run(["bash", str(SCRIPT), *args, "--out", str(out)],
                          capture_output=True, text=True, check=False, timeout=3600)
    report = (out / "report.txt").read_text() if (out / "report.txt").is_file() else proc.stderr
    return proc.returncode, report


@pytest.fixture(scope="module")
def fs_mm(linux_tree, tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("boot")
    db = base / "db"
    code, _, err = run_cli("analyze", *[str(linux_tree / d) for d in DIRS], "--db", str(db), "-q")
    assert code == 0, err
    code, _, err = run_cli("emit", "--db", str(db), "--series", str(base / "series"),
                           "--diff", str(base / "fs.diff"), "-q")
    assert code == 0, err
    return base


def test_the_fs_mm_series_boots_and_the_mutant_does_not(fs_mm, tmp_path):
    code, report = boot_check(tmp_path, "series", "--series", str(fs_mm / "series"))
    assert code == 0, report
    assert "unpatched  PASS" in report and "patched    PASS" in report
    diff = (fs_mm / "fs.diff").read_text()
    assert diff.count(RIGHT) == 1
    mutant = tmp_path / "mutant.diff"
    mutant.write_text(diff.replace(RIGHT, WRONG))
    code, report = boot_check(tmp_path, "mutant", "--diff", str(mutant))
    assert code == 1, report
    assert "patched    FAIL" in report
    assert "BUG: kernel NULL pointer dereference" in report or "Oops" in report
