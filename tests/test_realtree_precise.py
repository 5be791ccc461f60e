"""Real tier, precise mode: fs/ext2 and mm of linux-6.1 under defconfig, the
configured build made out of the tree (make O=DIR defconfig prepare, in the
cache so that it is made once)."""

from __future__ import annotations

import json
import os
import zlib
from pathlib import Path

import pytest
from conftest import CACHE, analyze_json, plan_json

from mappingpass import graph, index
from mappingpass import rules as rulesmod

pytest.importorskip("clang.cindex")
pytestmark = pytest.mark.realtree


def _tree_state(tree: Path) -> list[str]:
    """What a build in the tree would leave at its top."""
    return sorted(p for p in (".config", "include/config", "include/generated", "arch/x86/include/generated")
                  if (tree / p).exists())


@pytest.fixture(scope="module")
def precise_db(linux_tree, tmp_path_factory) -> tuple[Path, dict]:
    before = _tree_state(linux_tree)
    db = tmp_path_factory.mktemp("precise")
    result = analyze_json(linux_tree / "fs" / "ext2", db, "--precise", "--config", "defconfig",
                          "--build-dir", str(CACHE / "precise-build-defconfig"))
    result_mm = analyze_json(linux_tree / "mm", tmp_path_factory.mktemp("precise-mm"), "--precise", "--config",
                             "defconfig", "--build-dir", str(CACHE / "precise-build-defconfig"))
    assert _tree_state(linux_tree) == before  # nothing written into the source tree
    return db, result, result_mm


def test_ext2_parses_cleanly_under_defconfig(precise_db):
    _, result, _ = precise_db
    p = result["precise"]
    assert p["config"] == "defconfig" and p["failed"] == [] and p["not_compiled"] == []
    assert p["merged"] == p["targets"] >= 1
    assert p["added"]["macro_body_calls"] > 0 and p["skipped_range_facts"] > 0


def test_precise_facts_agree_with_tree_sitter(precise_db):
    db, _, _ = precise_db
    from mappingpass.index.precise import crosscheck

    store = index.Store(db, create=False)
    table, notes = crosscheck.from_store(store, rulesmod.load(None), graph.type_env)
    rows = table["rows"]
    found, total = rows["functions (written in the file)"]
    assert found == total > 10, notes
    found, total = rows["calls written in the file"]
    assert found >= 0.98 * total, [n for n in notes if "call" in n]
    found, total = rows["->mapping reads (page, folio) in the file"]
    assert found == total >= 3, notes
    found, total = rows["read receiver types agreeing"]
    assert found == total, notes
    assert rows["calls made in a macro's body"][1] > 0  # what only libclang sees
    # a call made in a macro's body, kept apart from the file's own calls
    dir_c = store.load_facts(["fs/ext2/dir.c"])[0]
    assert any(c.callee == "_printk" and c.macro == "printk" for c in dir_c.macro_calls)
    assert all(c.origin != "macro-body" for c in dir_c.calls)


def test_mm_registrations_made_by_macros(precise_db):
    _, _, result = precise_db
    p = result["precise"]
    assert p["added"]["macro_registrations"] > 0
    assert any("init_wait() stores autoremove_wake_function in wait_queue_entry.func" in e for e in p["examples"])


def test_warm_precise_run_parses_nothing(precise_db, linux_tree):
    db, first, _ = precise_db
    again = analyze_json(linux_tree / "fs" / "ext2", db, "--precise", "--config", "defconfig",
                         "--build-dir", str(CACHE / "precise-build-defconfig"))
    assert again["precise"]["parsed"] == 0 and again["precise"]["reused"] == first["precise"]["merged"]
    assert again["reads"] == first["reads"]


def test_clang_cache_is_json(precise_db):
    db, _, _ = precise_db
    store = index.Store(db, create=False)
    for _path, blob in store.conn.execute("SELECT path, facts FROM clang_facts"):
        assert isinstance(json.loads(zlib.decompress(blob)), dict)  # nothing that could run code
    assert os.path.isdir(CACHE / "precise-build-defconfig" / "include" / "generated")


def test_plan_runs_on_precise_facts(precise_db):
    db, _, _ = precise_db
    code, plan, _ = plan_json(db)
    assert code in (0, 1) and plan["summary"]["functions"] >= 1
