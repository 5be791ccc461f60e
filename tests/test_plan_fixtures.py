"""Fixture tier for plan, explain and emit --diff on fixtures/minilinux."""

from __future__ import annotations

import difflib
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import MINILINUX, analyze_json, canonical_analysis, compile_errors, emitted_diff, plan_json, run_cli

from mappingpass import graph as graphmod
from mappingpass import index as indexmod
from mappingpass.workspace import store_rules

GOLDEN = Path(__file__).parent / "golden" / "minilinux.plan.json"


@pytest.fixture(scope="module")
def planned(tmp_path_factory):
    db = tmp_path_factory.mktemp("plandb")
    analyze_json(MINILINUX, db)
    code, plan, raw = plan_json(db)
    return db, code, plan, raw


def test_on_demand_rounds_patch_the_graph_as_a_build_would(planned):
    """plan adds the files it parses on demand to the cached graph (graph.update)
    rather than rebuilding it: the result is the graph built from all facts."""
    db, _, plan, _ = planned
    assert plan["parsed_on_demand"]
    store = indexmod.Store(db, create=False)
    rules = store_rules(store)
    patched = graphmod.cached(store, rules)
    assert patched is not None
    full = graphmod.build(store.load_facts(), rules)
    assert canonical_analysis(patched) == canonical_analysis(full)


def test_the_plan_does_not_depend_on_what_was_parsed_up_front(planned, tmp_path):
    """Same tree, same rules, same plan: parsing every file up front (--scope
    all) gives the plan that the on-demand rounds reach (pagefs_tally_folio's
    caller that knows the folio's mapping is in a file analyze defers)."""
    _, _, plan, _ = planned
    assert "fs/pagefs/tally_scan.c" in plan["parsed_on_demand"]
    site = next(c for c in plan["call_sites"] if c["caller"] == "pagefs_tally_index")
    assert (site["callee"], site["argument"], site["how"]) == ("pagefs_tally_folio", "inode->i_mapping", "lookup")
    analyze_json(MINILINUX, tmp_path / "all", "--scope", "all")
    _, whole, _ = plan_json(tmp_path / "all")
    assert whole["parsed_on_demand"] == []
    assert {k: v for k, v in whole.items() if k != "parsed_on_demand"} == \
        {k: v for k, v in plan.items() if k != "parsed_on_demand"}


def test_on_demand_rounds_resolve_calls_into_the_new_files(minilinux_copy, tmp_path):
    """A parsed file calls a function that only a file parsed on demand defines:
    after the round the call is an edge, as in a full build."""
    (minilinux_copy / "fs/tinyfs/namei.c").write_text(
        '#include "tinyfs.h"\n\nint tinyfs_namei_count(void)\n{\n\treturn 1;\n}\n\n'
        "int tinyfs_rmdir(struct inode *dir, struct page *page)\n{\n"
        "\treturn tinyfs_delete_entry(page, 0) + dir->i_nlink;\n}\n")
    with open(minilinux_copy / "fs/tinyfs/file.c", "a") as fh:
        fh.write("\nint tinyfs_namei_count(void);\n\nint tinyfs_count_files(void)\n{\n"
                 "\treturn tinyfs_namei_count();\n}\n")
    db = tmp_path / "db"
    analyze_json(minilinux_copy, db)
    _, plan, _ = plan_json(db)
    assert "fs/tinyfs/namei.c" in plan["parsed_on_demand"]
    store = indexmod.Store(db, create=False)
    rules = store_rules(store)
    patched = graphmod.cached(store, rules)
    assert "tinyfs_count_files" in [a for a, _, _ in graphmod.edges_in(patched.graph, "tinyfs_namei_count", "call")]
    assert canonical_analysis(patched) == canonical_analysis(graphmod.build(store.load_facts(), rules))


def test_files_that_declare_nothing_are_not_searched(minilinux_copy, tmp_path):
    """A deferred file with neither `{` nor `;` (register headers: only
    #defines) cannot call or define a function: the on-demand search skips it."""
    (minilinux_copy / "fs/tinyfs/regs.h").write_text(
        "#define TINYFS_REG_UNLINK 0x10 /* tinyfs_delete_entry */\n")
    (minilinux_copy / "fs/tinyfs/proto.h").write_text(
        "int tinyfs_delete_entry(struct page *page, unsigned int slot);\n")
    db = tmp_path / "db"
    analyze_json(minilinux_copy, db)
    _, plan, _ = plan_json(db)
    assert "fs/tinyfs/proto.h" in plan["parsed_on_demand"]
    assert "fs/tinyfs/regs.h" not in plan["parsed_on_demand"]
    store = indexmod.Store(db, create=False)
    assert store.paths_with_note(indexmod.NO_DECLARATIONS) == ["fs/tinyfs/regs.h"]


def test_plan_matches_golden(planned):
    """The whole plan, reviewed by hand once; regenerate only on purpose with
    MAPPINGPASS_REGEN_GOLDEN=1."""
    _, code, plan, raw = planned
    assert code == 1  # there are unresolved chains
    if os.environ.get("MAPPINGPASS_REGEN_GOLDEN"):
        GOLDEN.write_text(raw)
    assert plan == json.loads(GOLDEN.read_text())


def test_plan_is_deterministic(planned, tmp_path):
    db0, _, _, raw = planned
    assert plan_json(db0)[2] == raw  # a warm re-run (nothing left to parse on demand)
    db = tmp_path / "db"
    analyze_json(MINILINUX, db, "-j", "1")
    assert plan_json(db)[2] == raw


def _by(plan, key, **match):
    return [x for x in plan[key] if all(x[k] == v for k, v in match.items())]


def test_slot_gains_parameter_for_every_implementation(planned):
    _, _, plan, _ = planned
    gained = {f["id"] for f in plan["functions"]}
    slots = {s["id"] for s in plan["slots"]}
    assert "member:address_space_operations.writepage" in slots
    # tinyfs_writepage reads; the driver's writepage never reads but must follow the slot
    assert {"tinyfs_writepage", "drivers/blockdev/mydev.c::mydev_writepage"} <= gained
    # a call through the slot from a mapping passes that mapping
    site = _by(plan, "call_sites", file="mm/vmscan.c", line=20)[0]
    assert (site["argument"], site["how"]) == ("mapping", "receiver")
    site = _by(plan, "call_sites", file="mm/filemap.c", line=64)[0]
    assert site["argument"] == "file->f_mapping"


def test_providers_and_new_parameters_at_call_sites(planned):
    _, _, plan, _ = planned
    args = {(c["file"], c["line"], c["callee"]): (c["argument"], c["how"]) for c in plan["call_sites"]}
    # an inode beside a page parameter is no evidence that the page is its:
    # tinyfs_add_link passes its own (nobody calls it: NULL, reported)
    assert args[("fs/tinyfs/dir.c", 24, "fs/tinyfs/dir.c::commit_chunk")] == ("NULL", "unresolved")
    # the page's own lookup says: smallfs_get_page(inode, ...) reads inode's page cache
    assert args[("fs/smallfs/file.c", 31, "fs/smallfs/file.c::smallfs_copy_page")] == (
        "inode->i_mapping", "lookup")
    assert args[("fs/smallfs/dir.c", 38, "smallfs_set_link")] == ("new_dir->i_mapping", "lookup")
    assert args[("fs/tinyfs/file.c", 121, "tinyfs_check_page")] == ("mapping", "provider")  # write_end's mapping
    # recursion and mutual recursion pass the new parameter along
    assert args[("fs/tinyfs/file.c", 60, "fs/tinyfs/file.c::tinyfs_walk_folios")] == ("mapping", "parameter")
    assert args[("fs/tinyfs/file.c", 88, "fs/tinyfs/file.c::tinyfs_split_a")] == ("mapping", "parameter")
    # never page->mapping itself (a readahead request's rac->mapping is not a page's field)
    assert not [c for c in plan["call_sites"] if "->mapping" in c["argument"].replace("f_mapping", "")
                .replace("i_mapping", "").replace("rac->mapping", "")]


def test_name_clash_takes_the_other_name(planned):
    _, _, plan, _ = planned
    fn = {f["id"]: f for f in plan["functions"]}
    # `struct address_space *mapping = page->mapping;` already in the body
    assert fn["tinyfs_releasepage"]["param_name"] == "wp_mapping"
    rw = _by(plan, "rewrites", file="fs/tinyfs/file.c", line=133)[0]
    assert rw["to"] == "page_mapping_wp(page, wp_mapping)"


def test_identity_comparisons_kept_apart(planned):
    _, _, plan, _ = planned
    compare = {(r["file"], r["line"]) for r in plan["rewrites"] if r["access"] == "compare"}
    assert ("fs/tinyfs/file.c", 144) in compare  # vmf->page->mapping != mapping
    assert plan["summary"]["identity_rewrites"] == len(compare)


def test_unresolved_reasons(planned):
    _, _, plan, _ = planned
    got = {(u["reason"], u["function"]) for u in plan["unresolved"]}
    assert got == {
        ("cast", "fs/smallfs/inode.c::smallfs_fill_page"),
        ("macro-definition", "readahead_fill_zero"),
        # functions that would pass their own mapping down, but nobody calls them
        ("no-callers", "tinyfs_add_link"),
        ("no-callers", "tinyfs_unlink"),
        ("no-callers", "tinyfs_label_page"),
        ("no-callers", "tinyfs_sync_batch"),  # exported: no boundary by default (rules)
        ("no-callers", "tinyfs_debug_orphan"),
        ("no-callers", "folio_mark_dirty"),
        ("no-callers", "clear_page_dirty_for_io"),
        ("kind-2", "do_generic_fault"),  # mm/memory.c: core mm calls folio_invalidate with no context
        ("slot-boundary", "fs/ctxfs/file.c::ctxfs_flusher"),  # a kthread function
        ("unseen-mention", "fs/tinyfs/xattr.c::tinyfs_xattr_check"),
        ("unseen-mention", "fs/tinyfs/xattr.c::tinyfs_xattr_sync"),
        # fs/pagefs (tests/test_page_facts.py): no caller can say the page's mapping
        ("no-context", "fs/pagefs/file.c::pagefs_page_ino"),
        ("no-context", "fs/pagefs/file.c::pagefs_is_dirty_writeback"),
        ("no-context", "fs/pagefs/file.c::pagefs_move_one"),
        ("no-context", "pagefs_bh_submitting"),
        ("no-context", "fs/pagefs/check.c::pagefs_node_check"),  # check: the btree inode's (test_check.py)
        ("no-callers", "pagefs_read_inline"),  # (an entry point: a read_folio nobody binds)
        ("no-callers", "pagefs_tally_any"),  # exported, nothing in the tree calls it
        # a page nothing names beside an inode (no evidence): its only caller passes NULL
        ("no-context", "fs/pagefs/check.c::pagefs_meta_validate"),
    }
    # a macro body calls one, a macro is handed the other: both keep their signature
    check = _by(plan, "unresolved", function="fs/tinyfs/xattr.c::tinyfs_xattr_check")[0]
    assert check["chain"][0]["why"] == "mentioned" and check["chain"][0]["line"] == 14
    assert "#define tinyfs_xattr_ok" in check["chain"][0]["detail"]
    sync = _by(plan, "unresolved", function="fs/tinyfs/xattr.c::tinyfs_xattr_sync")[0]
    assert sync["chain"][0]["detail"] == "TINYFS_DEFER(d, tinyfs_xattr_sync);"
    # the syscall looks its page up itself: nothing to pass through its ABI
    site = _by(plan, "call_sites", file="fs/smallfs/file.c", line=63)[0]
    assert (site["caller"], site["argument"], site["how"]) == ("sys_smallfs_sync", "file->f_inode->i_mapping",
                                                               "lookup")


def test_explain_text_and_dot(planned, tmp_path):
    db, *_ = planned
    dot = tmp_path / "x.dot"
    code, out, err = run_cli("explain", "tinyfs_split_a", "--db", str(db), "--dot", str(dot))
    assert code == 0, err
    assert "tinyfs_split_a gains `mapping` because:" in out
    assert "reads page->mapping" in out
    assert "tinyfs_write_begin: mapping  [lookup]" in out
    assert "because read_cache_page(mapping, pos >> PAGE_SHIFT, tinyfs_read_folio, file)" in out
    text = dot.read_text()
    assert text.startswith("digraph explain {") and '"tinyfs_write_begin" -> ' in text


def test_explain_unknown_function(planned):
    db, *_ = planned
    code, _, err = run_cli("explain", "no_such_function", "--db", str(db))
    assert code == 2 and "no such function" in err


def test_explain_a_function_of_a_file_the_index_deferred(planned):
    """d_inode is defined in include/linux/dcache.h, which analyze deferred
    (no read in it, nothing the plan changes named): explain parses it on
    demand and says where it is and why it does not gain, not "no such
    function"; a static one by path::name, the JSON form saying so."""
    db, *_ = planned
    code, out, err = run_cli("explain", "d_inode", "--db", str(db), "-q")
    assert code == 0, err
    assert out.startswith("d_inode (include/linux/dcache.h:12) does not gain the parameter: its file holds no read")
    code, out, err = run_cli("explain", "include/linux/dcache.h::d_inode", "--db", str(db), "-q", "--format", "json")
    assert code == 0 and json.loads(out)[0] | {"callers": []} == {
        "id": "include/linux/dcache.h::d_inode", "gains": False, "deferred": True, "file": "include/linux/dcache.h",
        "line": 12, "callers": [], "reads": [], "kept": []}
    code, _, err = run_cli("explain", "fs/nowhere.c::d_inode", "--db", str(db), "-q")
    assert code == 2 and "no such function in the tree" in err


def test_plan_without_analyze_is_an_input_error(tmp_path):
    code, _, err = run_cli("plan", "--db", str(tmp_path / "empty"))
    assert code == 2 and "run 'mappingpass analyze" in err


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")
def test_patched_fixture_compiles_and_reaches_the_fixpoint(minilinux_copy, tmp_path):
    db = tmp_path / "db"
    analyze_json(minilinux_copy, db)
    code, plan, _ = plan_json(db)
    diff = tmp_path / "p.diff"
    code, _, err = run_cli("emit", "--db", str(db), "--diff", str(diff), "-q")
    assert code == 0, err
    subprocess.run(["git", "init", "-q", str(minilinux_copy)], check=True)
    subprocess.run(["git", "-C", str(minilinux_copy), "apply", "--check", str(diff)], check=True)
    subprocess.run(["git", "-C", str(minilinux_copy), "apply", str(diff)], check=True)
    # the only file that does not compile is the one whose signature a macro
    # writes, and the plan says so
    macro_files = {u["file"] for u in plan["unresolved"] if u["reason"] == "macro-definition"}
    errors = compile_errors(minilinux_copy, headers=False)
    assert set(errors) == macro_files == {"mm/readahead.c"}
    assert "read_cache_page" in errors["mm/readahead.c"]
    # analyze + plan on the patched tree: nothing left to change
    db2 = tmp_path / "db2"
    analyze_json(minilinux_copy, db2)
    _, again, _ = plan_json(db2)
    assert again["functions"] == [] and again["slots"] == [] and again["call_sites"] == []
    assert again["rewrites"] == []
    left = {(u["reason"], u["function"]) for u in again["unresolved"]}
    first = {(u["reason"], u["function"]) for u in plan["unresolved"]}
    # what stays is what the first plan could not do: the boundaries, whose
    # reads are still there (the converted ones are gone)
    assert left <= first and {r for r, _ in left} <= {"no-callers", "unseen-mention", "slot-boundary",
                                                         "no-context"}
    assert ("unseen-mention", "fs/tinyfs/xattr.c::tinyfs_xattr_check") in left


def test_emit_apply_is_atomic_and_refuses_a_dirty_tree(minilinux_copy, tmp_path):
    db = tmp_path / "db"
    analyze_json(minilinux_copy, db)
    subprocess.run(["git", "init", "-q", str(minilinux_copy)], check=True)
    (minilinux_copy / "dirty.txt").write_text("x")
    subprocess.run(["git", "-C", str(minilinux_copy), "add", "dirty.txt"], check=True)
    code, _, err = run_cli("emit", "--db", str(db), "--apply", "-q")
    assert code == 2 and "uncommitted changes" in err
    before = (minilinux_copy / "fs" / "tinyfs" / "dir.c").read_bytes()
    # a file that changed since analyze stops emit before anything is written
    gup = minilinux_copy / "fs" / "smallfs" / "dir.c"
    gup.write_text(gup.read_text() + "\n")
    code, _, err = run_cli("emit", "--db", str(db), "--apply", "--force", "-q")
    assert code == 2 and "changed since analyze" in err
    assert (minilinux_copy / "fs" / "tinyfs" / "dir.c").read_bytes() == before
    analyze_json(minilinux_copy, db)
    code, _, err = run_cli("emit", "--db", str(db), "--apply", "--force", "-q")
    assert code == 0, err
    assert b"commit_chunk(struct address_space *mapping" in (minilinux_copy / "fs/tinyfs/dir.c").read_bytes()


def test_a_second_rule_set_needs_no_code(tmp_path):
    """rules/index.toml runs the same pipeline for page->index."""
    from conftest import REPO

    db = tmp_path / "db"
    result = analyze_json(MINILINUX, db, "--rules", str(REPO / "rules" / "index.toml"))
    exprs = {r["expr"] for r in result["reads"]}
    assert exprs and all("index" in e for e in exprs)
    code, plan, _ = plan_json(db)
    assert plan["rules"] == "index"
    assert all("page_index_wp" in r["to"] or "folio_index_wp" in r["to"] for r in plan["rewrites"])
    assert all(f["param_name"] in ("index", "wp_index") for f in plan["functions"])


def test_emit_spatch_and_series_from_the_cli(planned, tmp_path):
    db, *_ = planned
    code, _, err = run_cli("emit", "--db", str(db), "--spatch", str(tmp_path / "cocci"),
                           "--series", str(tmp_path / "series"), "-q")
    assert code == 0, err
    cocci = sorted((tmp_path / "cocci").glob("*.cocci"))
    assert cocci and cocci[0].read_text().startswith("// SPDX-License-Identifier")
    patches = sorted((tmp_path / "series").glob("*.patch"))
    assert patches[0].name == "0000-cover-letter.patch" and len(patches) > 3
    assert "Subject: [PATCH 1/" in patches[1].read_text()
    code, _, err = run_cli("emit", "--db", str(db), "-q")
    assert code == 2 and "say what to emit" in err


def test_emit_diff_is_minimal(minilinux_copy, tmp_path):
    """Every line the diff removes is a line the change rewrites: no `{` or blank
    line re-written for a matcher's heuristic (the series uses the same diff)."""
    _, data = emitted_diff(minilinux_copy, tmp_path)
    text = data.decode()
    diff = tmp_path / "emitted.diff"
    subprocess.run(["git", "init", "-q", str(minilinux_copy)], check=True)
    before = {p: (minilinux_copy / p).read_text().splitlines()
              for p in re.findall(r"(?m)^diff --git a/(\S+)", text)}
    subprocess.run(["git", "-C", str(minilinux_copy), "apply", str(diff)], check=True)
    for path, old in before.items():
        new = (minilinux_copy / path).read_text().splitlines()
        part = text.split(f"diff --git a/{path} ", 1)[1].split("\ndiff --git ", 1)[0]
        removed = [ln for ln in part.splitlines() if ln.startswith("-") and not ln.startswith("---")]
        if len(old) == len(new):
            assert len(removed) == sum(a != b for a, b in zip(old, new, strict=True)), path
        assert all(ln[1:].strip() not in ("", "{", "}") for ln in removed), path


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")
def test_slot_with_an_unseen_implementation_keeps_its_signature(minilinux_copy, tmp_path):
    """An aops implementation named where the index sees no binding (through a
    macro) cannot change, so neither can its slot nor anything bound to it:
    the patched tree still compiles."""
    with open(minilinux_copy / "fs/tinyfs/file.c", "a") as fh:
        fh.write("\n#define TINYFS_WRITEPAGE_FN\ttinyfs_writepage\n"
                 "int (*tinyfs_default_writepage)(struct page *, struct writeback_control *) =\n"
                 "\tTINYFS_WRITEPAGE_FN;\n")
    db = tmp_path / "db"
    analyze_json(minilinux_copy, db)
    code, plan, _ = plan_json(db)
    slot = "member:address_space_operations.writepage"
    assert slot not in {s["id"] for s in plan["slots"]}
    assert _by(plan, "unresolved", function="tinyfs_writepage")[0]["reason"] == "unseen-mention"
    other = _by(plan, "unresolved", function="fs/smallfs/inode.c::smallfs_writepage_nobh")[0]
    assert other["reason"] == "unseen-slot"
    assert [(s["why"], s["detail"]) for s in other["chain"][:2]] == [
        ("bound-to", slot), ("implemented-by", "tinyfs_writepage")]
    assert not {f["id"] for f in plan["functions"]} & {"tinyfs_writepage", "fs/smallfs/inode.c::smallfs_writepage_nobh",
                                                        "drivers/blockdev/mydev.c::mydev_writepage"}
    diff = tmp_path / "p.diff"
    code, _, err = run_cli("emit", "--db", str(db), "--diff", str(diff), "-q")
    assert code == 0, err
    subprocess.run(["git", "init", "-q", str(minilinux_copy)], check=True)
    subprocess.run(["git", "-C", str(minilinux_copy), "apply", str(diff)], check=True)
    assert set(compile_errors(minilinux_copy)) <= {"mm/readahead.c"}


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")
def test_slots_sharing_an_implementation_with_a_kept_slot_are_kept(minilinux_copy, tmp_path):
    """tinyfs_hook_fill is bound both to a member the rules keep
    (tinyfs_hooks.fill) and to filler_t, which the rules let change: filler_t
    cannot change then, and the fillers that need it stop there (as gfs2's
    quota_sync shares gfs2_quota_sync with quotad_check_timeo's callback)."""
    with open(minilinux_copy / "fs/tinyfs/file.c", "a") as fh:
        fh.write("""
struct tinyfs_hooks {
	int (*fill)(struct file *file, struct folio *folio);
};

static int tinyfs_hook_fill(struct file *file, struct folio *folio)
{
	return file && folio->mapping ? 0 : 1;
}

static const struct tinyfs_hooks tinyfs_hooks = {
	.fill = tinyfs_hook_fill,
};

struct page *tinyfs_hooked_page(struct address_space *mapping, struct file *file)
{
	if (tinyfs_hooks.fill(file, NULL))
		return NULL;
	return read_cache_page(mapping, 0, tinyfs_hook_fill, file);
}
""")
    db = tmp_path / "db"
    analyze_json(minilinux_copy, db)
    _, plan, _ = plan_json(db)
    slots = {s["id"] for s in plan["slots"]}
    assert not slots & {"member:tinyfs_hooks.fill", "typedef:filler_t"}
    filler = _by(plan, "unresolved", function="fs/smallfs/inode.c::smallfs_fill_page")[0]
    assert filler["reason"] == "slot-boundary"
    assert [(s["why"], s["detail"]) for s in filler["chain"][:2]] == [
        ("bound-to", "typedef:filler_t"), ("shares-implementations-with", "member:tinyfs_hooks.fill")]
    diff = tmp_path / "p.diff"
    code, _, err = run_cli("emit", "--db", str(db), "--diff", str(diff), "-q")
    assert code == 0, err
    subprocess.run(["git", "init", "-q", str(minilinux_copy)], check=True)
    subprocess.run(["git", "-C", str(minilinux_copy), "apply", str(diff)], check=True)
    # nothing changes filler_t now: mm/readahead.c's macro-made filler builds too
    assert compile_errors(minilinux_copy) == {}


XFER_H = """/* A transport's ops: a raw function-pointer member the plan may not change. */
#ifndef _LINUX_XFER_H
#define _LINUX_XFER_H

struct page;

struct xfer_ops {
	int (*flush)(struct page *page);
};

#endif /* _LINUX_XFER_H */
"""
FLUSH_C = """/* tinyfs: a page flusher a transport also stores as a callback. */
#include "tinyfs.h"

int tinyfs_flush_cb(struct page *page)
{
	return page->mapping->host != NULL;
}

int tinyfs_flush_index(struct address_space *mapping, pgoff_t index)
{
	struct folio *folio = filemap_get_folio(mapping, index);

	if (!folio)
		return 0;
	return tinyfs_flush_cb(&folio->page);
}
"""
XFER_C = """/* A driver that stores tinyfs_flush_cb in an ops struct of its header. */
#include <linux/xfer.h>

int tinyfs_flush_cb(struct page *page);

const struct xfer_ops tinyfs_xfer = {
	.flush = tinyfs_flush_cb,
};
"""


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")
def test_a_function_stored_in_an_unseen_struct_member_keeps_its_signature(minilinux_copy, tmp_path):
    """The driver's file is parsed on demand and its struct's header never:
    the binding names no known slot, so the function keeps its signature
    (else the initializer no longer builds, as net/rds's flush_mrs did)."""
    (minilinux_copy / "include/linux/xfer.h").write_text(XFER_H)
    (minilinux_copy / "fs/tinyfs/flush.c").write_text(FLUSH_C)
    (minilinux_copy / "drivers/xfer").mkdir()
    (minilinux_copy / "drivers/xfer/x.c").write_text(XFER_C)
    assert compile_errors(minilinux_copy, headers=False) == {}
    db = tmp_path / "db"
    analyze_json(minilinux_copy, db)
    _, plan, _ = plan_json(db)
    (u,) = [u for u in plan["unresolved"] if u["function"] == "tinyfs_flush_cb"]
    assert u["reason"] == "unknown-slot"
    assert u["chain"][0] == {**u["chain"][0], "why": "stored-in", "file": "drivers/xfer/x.c",
                             "detail": "xfer_ops.flush"}
    assert "drivers/xfer/x.c" in plan["parsed_on_demand"]
    code, _, err = run_cli("emit", "--db", str(db), "--apply", "--force", "-q")
    assert code == 0, err
    assert set(compile_errors(minilinux_copy, headers=False)) == {"mm/readahead.c"}


def test_the_helper_lives_where_every_caller_sees_it(tmp_path):
    """pagemap.h includes page-flags.h (through mm.h), whose static inline
    calls the helper: the helper is defined in page-flags.h, before that
    function, and a header that sees neither includes page-flags.h. Without
    a lower header in the rules, emit says so instead of writing a diff that
    does not build (#15's first cause)."""
    from conftest import REPO

    _, data = emitted_diff(MINILINUX, tmp_path)
    text = data.decode()
    flags = text.split("+++ b/include/linux/page-flags.h\n", 1)[1].split("\ndiff --git", 1)[0]
    assert flags.index("+page_mapping_wp(const struct page *page, struct address_space *mapping)") < flags.index(
        "+static inline bool folio_test_accountable(")
    assert "+page_mapping_wp(const struct page *page, struct address_space *mapping)" not in text.split(
        "+++ b/include/linux/pagemap.h\n", 1)[1].split("\ndiff --git", 1)[0]
    inline = text.split("+++ b/fs/tinyfs/xattr_inline.h\n", 1)[1].split("\ndiff --git", 1)[0]
    assert "+#include <linux/page-flags.h>" in inline
    rules = tmp_path / "mapping.toml"
    rules.write_text(re.sub(r"(?m)^fallback_headers = .*\n", "", (REPO / "rules" / "mapping.toml").read_text()))
    db2 = tmp_path / "db2"
    analyze_json(MINILINUX, db2, "--rules", str(rules))
    code, _, err = run_cli("emit", "--db", str(db2), "--diff", str(tmp_path / "q.diff"), "-q")
    assert code == 2
    assert ("no header can define the helper: include/linux/pagemap.h includes "
            "include/linux/page-flags.h, which calls the helper") in err
    assert not (tmp_path / "q.diff").exists()


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")
def test_a_series_of_part_of_the_tree_leaves_the_rest_building(minilinux_copy, tmp_path):
    """analyze TREE/fs/tinyfs: ->writepage is called from mm/ and implemented
    in fs/smallfs and drivers/, which the index never saw; a series of tinyfs
    alone that changed the slot would break them (the fs+mm series of
    linux-6.1 did: fs/libfs.c's simple_read_folio). What the rest of the tree
    names keeps its signature, the mention its evidence, and the patched tree
    compiles as the unpatched one does."""
    db = tmp_path / "db"
    analyze_json(minilinux_copy / "fs" / "tinyfs", db)
    _, plan, _ = plan_json(db)
    assert "member:address_space_operations.writepage" not in {s["id"] for s in plan["slots"]}
    outside = [st for u in plan["unresolved"] if u["reason"] in ("unseen-slot", "unseen-mention")
               for st in u["chain"] if "outside the analysed paths" in st["detail"]]
    assert outside and not any(st["file"].startswith("fs/tinyfs/") for st in outside)
    assert any(st["node"] == "member:address_space_operations.writepage" for st in outside)
    before = compile_errors(minilinux_copy, headers=False)
    code, _, err = run_cli("emit", "--db", str(db), "--apply", "--force", "-q")
    assert code == 0, err
    assert set(compile_errors(minilinux_copy, headers=False)) <= set(before)


def test_a_vm_fault_in_core_mm_names_no_file(planned):
    """mm/memory.c's generic fault path (kind 2) serves VMAs with no file: the
    vm_fault provider is scoped to the code the plan converts (a file's own
    ->fault), so the call there passes no context instead of evaluating
    vmf->vma->vm_file->f_mapping (a NULL vm_file for a special mapping)."""
    _, _, plan, _ = planned
    (site,) = [c for c in plan["call_sites"] if c["caller"] == "do_generic_fault"]
    assert site["callee"] == "folio_invalidate" and site["argument"] == "NULL"
    # in a file's own ->fault the vm_fault does name the mapping
    inside = [r for r in plan["rewrites"] if "vmf->vma->vm_file->f_mapping" in r["to"]]
    assert inside and all(r["file"].startswith("fs/") for r in inside)


def test_rewrapping_from_the_edits_is_rewrapping_from_a_diff(minilinux_copy, tmp_path):
    """emit re-wraps the lines its edits changed (wrap.rewrap_edited, no diff
    of the texts); finding those lines from a line diff instead gives the
    same bytes on every file of the fixture's plan."""
    from mappingpass import emit
    from mappingpass.workspace import load_inputs

    db = tmp_path / "db"
    analyze_json(minilinux_copy, db)
    plan, facts, rules, root, digests = load_inputs(str(db))
    sources = emit.read_sources(plan, root, digests, rules)
    helper = emit.place_helper(plan, facts, rules, root, sources)
    edits = emit.edits_for(plan, facts, rules, sources, root, helper)
    if helper is not None and helper.edit is not None:
        edits[helper.header] = [helper.edit, *edits.get(helper.header, [])]
    wrapped = 0
    for path, file_edits in edits.items():
        plain = emit.apply_edits(sources[path], file_edits, path)
        ours = emit.apply_wrapped(sources[path], file_edits, path)
        assert ours == _rewrap_by_diff(sources[path], plain), path
        wrapped += ours != plain
    assert wrapped >= 5


def _rewrap_by_diff(old: bytes, new: bytes) -> bytes:
    """The oracle: new (old with edits applied) with every line the edits
    changed wrapped, the changed lines found from a line diff of the two texts
    (inserted lines, the helper's definition and declarations, stay)."""
    from mappingpass.emit.wrap import limit_for, tidy, wrap_line

    if old == new:
        return new
    a = old.decode("utf-8", "surrogateescape").split("\n")
    b = new.decode("utf-8", "surrogateescape").split("\n")
    out: list[str] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag == "equal" or tag == "insert" or tag == "delete":
            out += b[j1:j2]
            continue
        for j, i in _pairs(a, b, i1, i2, j1, j2):
            if i is None or b[j] == a[i]:
                out.append(b[j])
            else:
                out += wrap_line(tidy(b[j]), limit_for(a[i]))
    return "\n".join(out).encode("utf-8", "surrogateescape")


def _pairs(a: list[str], b: list[str], i1: int, i2: int, j1: int, j2: int) -> list[tuple[int, int | None]]:
    """Each new line of a replaced block with the old line it changes (None:
    inserted): one to one when the counts agree, else by similarity, in order."""
    if i2 - i1 == j2 - j1:
        return [(j1 + k, i1 + k) for k in range(j2 - j1)]
    out: list[tuple[int, int | None]] = []
    i = i1
    for j in range(j1, j2):
        best = None
        for k in range(i, i2):
            if difflib.SequenceMatcher(None, a[k], b[j], autojunk=False).ratio() > 0.6:
                best = k
                break
        out.append((j, best))
        if best is not None:
            i = best + 1
    return out


def test_a_plan_reads_back_from_its_json(planned):
    """Plan.from_json(plan.to_json()) is the same plan: later commands can read
    a plan instead of running the fixpoint again."""
    _, _, plan_data, _ = planned
    from mappingpass.plan import Plan

    again = Plan.from_json(plan_data)
    assert json.loads(json.dumps(again.to_json())) == plan_data
    assert Plan.from_json(json.loads(json.dumps(again.to_json()))) == again
    casts = [s for u in again.unresolved for s in u.chain if " cast to " in s.detail]
    assert casts and all(s.next_node == s.detail.split(" cast to ")[1] for s in casts)
