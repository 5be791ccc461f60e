"""check: the plan run in the write-protect model, and mutations it must catch."""

from __future__ import annotations

import argparse
import dataclasses
import json

import pytest
from conftest import MINILINUX, analyze_json, run_cli

from mappingpass import check as checkmod
from mappingpass import rules as rulesmod
from mappingpass.commands import compute_plan
from mappingpass.index import Store


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    db = tmp_path_factory.mktemp("checkdb")
    analyze_json(MINILINUX, db)
    plan, analysis = compute_plan(argparse.Namespace(db=str(db), rules=None, quiet=True), progress=False)
    store = Store(db, create=False)
    facts = {f.path: f for f in store.load_facts()}
    store.close()
    return db, plan, analysis, rulesmod.load(), facts


def verdicts(world, plan=None):
    db, base, analysis, rules, facts = world
    result = checkmod.check(plan or base, analysis, rules, facts)
    return {(v.file, v.line): v for v in result.verdicts}


def test_correct_plan_verdicts(world):
    v = verdicts(world)
    unresolvable = {k for k, x in v.items() if x.verdict == "unresolvable"}
    # exactly the reads behind the plan's unresolved chains: the syscall (and the
    # writepage implementations it reaches through smallfs_sync_page), the kind-2
    # caller of ->invalidate_folio, the exported function, the uncalled one and
    # the two that a macro mentions
    assert unresolvable == {
        ("fs/smallfs/file.c", 43), ("fs/smallfs/inode.c", 41), ("fs/tinyfs/file.c", 7),
        ("fs/tinyfs/file.c", 15), ("fs/tinyfs/file.c", 58), ("fs/tinyfs/file.c", 66),
        ("fs/tinyfs/file.c", 158), ("fs/tinyfs/file.c", 176),
        ("fs/tinyfs/xattr.c", 11), ("fs/tinyfs/xattr.c", 19),
    }
    assert v[("fs/tinyfs/dir.c", 8)].verdict == "resolvable"
    assert v[("fs/tinyfs/file.c", 144)].verdict == "resolvable"  # vmf->page->mapping compare
    assert v[("mm/gup.c", 16)].verdict == "runtime" and "GUP" in v[("mm/gup.c", 16)].covered_by
    assert v[("fs/buffer.c", 12)].verdict == "runtime"
    w = v[("fs/tinyfs/file.c", 158)].witness
    assert [(h.file, h.line, h.argument) for h in w.path] == [("fs/tinyfs/file.c", 169, "NULL")]


def _mutate(plan, file, line, **changes):
    sites = []
    hit = False
    for c in plan.call_sites:
        if c.file == file and c.line == line:
            hit = True
            if changes.get("drop"):
                continue
            c = dataclasses.replace(c, **{k: v for k, v in changes.items() if k != "drop"})
        sites.append(c)
    assert hit, (file, line)
    return dataclasses.replace(plan, call_sites=tuple(sites))


def test_mutation_drop_one_argument(world):
    plan = _mutate(world[1], "fs/tinyfs/dir.c", 24, drop=True)
    v = verdicts(world, plan)[("fs/tinyfs/dir.c", 8)]
    assert v.verdict == "unresolvable"
    assert v.witness.argument == "(no argument)"
    assert "fs/tinyfs/dir.c:24" in v.witness.error
    assert v.witness.path[-1].argument is None


def test_mutation_wrong_provider(world):
    # f_inode->i_mapping instead of f_mapping: wrong for a block device file
    plan = _mutate(world[1], "mm/filemap.c", 64, argument="file->f_inode->i_mapping")
    v = verdicts(world, plan)[("fs/tinyfs/file.c", 21)]
    assert v.verdict == "unresolvable"
    assert v.witness.scenario == "bdev-file"
    assert v.witness.argument == "file->f_inode->i_mapping"
    assert "not an owner" in v.witness.error
    assert [(h.file, h.line) for h in v.witness.path][0] == ("mm/filemap.c", 64)


def test_mutation_pass_page_mapping(world):
    plan = _mutate(world[1], "fs/tinyfs/dir.c", 24, argument="page->mapping")
    v = verdicts(world, plan)[("fs/tinyfs/dir.c", 8)]
    assert v.verdict == "unresolvable"
    assert "write-protection record" in v.witness.error and "circular" in v.witness.error
    assert v.witness.argument == "page->mapping"


def test_mutation_possibly_null_file(world):
    # read_cache_page() is called with a NULL file (fs/smallfs/inode.c:21)
    plan = _mutate(world[1], "mm/filemap.c", 40, argument="file->f_mapping")
    v = verdicts(world, plan)[("fs/smallfs/inode.c", 7)]
    assert v.verdict == "unresolvable"
    assert v.witness.scenario.startswith("NULL file")
    assert "NULL" in v.witness.error and v.witness.argument == "file->f_mapping"


def test_check_cli_json_and_exit_code(world):
    db = world[0]
    code, out, err = run_cli("check", "--db", str(db), "--format", "json", "-q")
    assert code == 1, err
    data = json.loads(out)
    assert data["schema"] == "mappingpass.check/1"
    assert data["summary"]["unresolvable"] == 10 and data["summary"]["runtime"] == 18
    code, out, _ = run_cli("check", "--db", str(db), "-q")
    assert "tinyfs_flush_batch" in out and "scenario" in out
