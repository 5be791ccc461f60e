"""Real tier, boot check: the fs+mm series of linux-6.1 (ext2, ext4, minix and
mm/) boots under QEMU and runs the filesystem workload exactly as the
unpatched kernel does on a slice of the filesystem matrix (each with its own
verdict and the host's fsck), with every context its helper is handed checked
against the page's own mapping; and two mutants of it are caught: one that
hands ext2_delete_entry() the wrong directory's mapping on a rename (no crash:
the context check's WARNING), one that takes the mapping from the rename's
target inode, NULL for a new name (an oops). Needs QEMU and a kernel build:
minutes, not seconds (scripts/kernel_boot_check.sh installs what it needs;
the unpatched kernel and its verdict are cached). Runs with MAPPINGPASS_BOOT=1
(.ci/run sets it)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from conftest import REPO, run_cli, say

pytestmark = [pytest.mark.realtree, pytest.mark.boot,
              pytest.mark.skipif(not os.environ.get("MAPPINGPASS_BOOT"),
                                 reason="boot check: set MAPPINGPASS_BOOT=1 (builds and boots two kernels)")]

SCRIPT = REPO / "scripts" / "kernel_boot_check.sh"
DIRS = ("fs/ext2", "fs/ext4", "fs/minix", "mm")
# the CI's slice of the filesystem matrix (--matrix runs all of scripts/boot/filesystems):
# the series' filesystems, a FAT one the series leaves as it is, a read-only image
MATRIX = ("ext2", "ext4", "minix", "tmpfs", "vfat", "iso9660")
# ext2_rename() removes the old entry from the old directory's page
RIGHT = "+\text2_delete_entry(old_dir->i_mapping, old_de, old_page, old_page_addr);\n"
MUTANTS = {
    "wrong-directory": (RIGHT.replace("old_dir->i_mapping", "new_dir->i_mapping"),
                        "page_mapping_wp: the caller's mapping is not the page's"),
    "null-inode": (RIGHT.replace("old_dir->i_mapping", "d_inode(new_dentry)->i_mapping"),
                   "BUG: kernel NULL pointer dereference"),
}


def boot_check(tmp_path: Path, name: str, *args: str) -> tuple[int, str]:
    out = tmp_path / name
    say(f"boot check {name}: build (tinyconfig-based; the unpatched one is cached) and boot under QEMU, minutes")
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
    code, out, err = run_cli("plan", "--db", str(db), "--format", "json", "-q")
    assert code in (0, 1), err
    (base / "plan.json").write_text(out)
    return base


def test_the_fs_mm_series_boots_and_its_mutants_do_not(fs_mm, tmp_path):
    code, report = boot_check(tmp_path, "series", "--series", str(fs_mm / "series"),
                              "--plan", str(fs_mm / "plan.json"), "--fs", ",".join(MATRIX))
    assert code == 0, report
    assert "unpatched  PASS" in report and "patched    PASS" in report
    # a verdict per filesystem: both kernels, and the host's fsck of the patched boot's image
    verdicts = {line.split()[0]: line.split("/") for line in report.splitlines()
                if line.startswith("  ") and line.split()[0] in MATRIX}
    assert set(verdicts) == set(MATRIX), report
    for name, (base, patched, fsck) in verdicts.items():
        assert base.split()[1] == "PASS" and patched.strip() == "PASS", report
        assert fsck.strip() == ("-" if name in ("tmpfs", "iso9660") else "ok"), report
    assert "contexts   checked: page_mapping_wp() in include/linux/pagemap.h" in report
    # coverage: the workload ran readers in ext2, ext4, minix and mm/
    ran = {line.split()[0]: int(line.split()[1]) for line in report.splitlines()
           if line.startswith("  ") and line.split()[0] in ("fs/ext2", "fs/ext4", "fs/minix", "mm")}
    assert set(ran) == {"fs/ext2", "fs/ext4", "fs/minix", "mm"} and all(ran.values()), report
    diff = (fs_mm / "fs.diff").read_text()
    assert diff.count(RIGHT) == 1
    for name, (wrong, symptom) in MUTANTS.items():
        mutant = tmp_path / f"{name}.diff"
        mutant.write_text(diff.replace(RIGHT, wrong))
        code, report = boot_check(tmp_path, name, "--diff", str(mutant))
        assert code == 1, report
        assert "patched    FAIL" in report and symptom in report, report
        assert "ext2_rename" in report  # the trace names the mutated caller
