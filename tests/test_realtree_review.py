"""Real tier: review tells what plan tells, on a git repository made from
part of linux-6.1 (the top Makefile and Kconfig, include/, mm/, fs/ext2,
fs/minix, fs/'s own files, block/'s headers): the series mappingpass emits
for fs/ext2 fs/minix mm, applied with `git am`, reviews clean; and a read
added to a helper whose callers analyze deferred gets the same findings on a
fresh index as after `plan` has run on it."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from conftest import run_cli

pytestmark = pytest.mark.realtree

PARTS = ["Makefile", "Kconfig", "include", "mm", "fs/ext2", "fs/minix"]
GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@example.org"]


def _git(tree: Path, *args: str) -> str:
    return subprocess.run([*GIT, "-C", str(tree), *args], capture_output=True, text=True, check=True).stdout


@pytest.fixture(scope="module")
def repo(linux_tree, tmp_path_factory) -> Path:
    tree = tmp_path_factory.mktemp("review61") / "linux"
    tree.mkdir()
    fs_files = sorted(p.relative_to(linux_tree).as_posix() for p in (linux_tree / "fs").glob("*.[ch]"))
    block_headers = sorted(p.relative_to(linux_tree).as_posix() for p in (linux_tree / "block").glob("*.h"))
    tar = subprocess.Popen(["tar", "cf", "-", *PARTS, *fs_files, *block_headers], cwd=linux_tree,
                           stdout=subprocess.PIPE)
    subprocess.run(["tar", "xf", "-"], cwd=tree, stdin=tar.stdout, check=True)
    assert tar.wait() == 0
    _git(tree, "init", "-q")
    _git(tree, "add", "-A")
    _git(tree, "commit", "-q", "-m", "base")
    _git(tree, "tag", "base")
    return tree


def _review(tree: Path, db: Path, base: str, head: str) -> dict:
    code, out, err = run_cli("review", str(tree), "--base", base, "--head", head, "--db", str(db),
                             "--format", "json", "-q")
    assert code in (0, 1), err
    return json.loads(out)


def test_our_own_series_reviews_clean(repo, tmp_path):
    db = tmp_path / "db"
    code, _, err = run_cli("analyze", str(repo / "fs/ext2"), str(repo / "fs/minix"), str(repo / "mm"),
                           "--db", str(db), "-q")
    assert code == 0, err
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org"}
    series = tmp_path / "series"
    subprocess.run(["python3", "-m", "mappingpass", "emit", "--db", str(db), "--series", str(series), "-q"],
                   env=env, check=True)
    _git(repo, "checkout", "-q", "-b", "series", "base")
    patches = sorted(str(p) for p in series.glob("0*.patch") if not p.name.startswith("0000-"))
    assert patches
    _git(repo, "am", "-q", *patches)
    r = _review(repo, db, "base", "series")
    loud = [f for f in r["findings"] if f["level"] in ("warning", "error")]
    assert not loud, loud
    assert r["series"] and r["hunks"] and r["plan_files_outside"] == []
    assert {h["status"] for h in r["hunks"]} == {"mechanical"}


def test_a_fresh_index_reviews_as_after_plan(repo, tmp_path):
    """ext2_prepare_chunk() reads its page's host; its callers' callers are in
    files a fresh index defers (plan parses them on demand)."""
    _git(repo, "checkout", "-q", "-b", "readcase", "base")
    path = repo / "fs/ext2/dir.c"
    text = path.read_text()
    head = "static int ext2_prepare_chunk(struct page *page, loff_t pos, unsigned len)\n{\n"
    assert head in text
    path.write_text(text.replace(head, head + "\tstruct inode *host = page->mapping->host;\n\n"
                                 "\tif (!host)\n\t\treturn -EIO;\n", 1))
    _git(repo, "commit", "-q", "-am", "ext2: read the host")
    db = tmp_path / "db"
    fresh = _review(repo, db, "base", "readcase")
    assert run_cli("plan", "--db", str(db), "-q")[0] in (0, 1)
    after = _review(repo, db, "base", "readcase")

    def said(r: dict) -> list:
        return [(f["rule"], f["file"], f["line"], f["message"], f.get("chain")) for f in r["findings"]]

    assert said(fresh) == said(after)
    assert [f for f in said(fresh) if f[0] == "MP102" and f[1] == "fs/ext2/dir.c"], said(fresh)
