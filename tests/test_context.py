"""plan: the mapping from the context (fixtures/minilinux/fs/ctxfs, one case a trap).

Each test names the trap a kernel reviewer would catch and asserts what the
plan does about it, with the evidence explain prints."""

from __future__ import annotations

import pytest
from conftest import MINILINUX, analyze_json, plan_json, run_cli


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    db = tmp_path_factory.mktemp("ctxdb")
    analyze_json(MINILINUX, db)
    code, plan, _ = plan_json(db)
    return db, plan


def _site(plan, file, line):
    found = [c for c in plan["call_sites"] if c["file"] == file and c["line"] == line]
    assert len(found) == 1, (file, line, found)
    return found[0]


def _rewrite(plan, file, line):
    found = [r for r in plan["rewrites"] if r["file"] == file and r["line"] == line]
    assert len(found) == 1, (file, line, found)
    return found[0]


def _kept(plan, file, line):
    return [k for k in plan["kept"] if k["file"] == file and k["line"] == line]


def test_directory_page_gets_the_directory_mapping_not_the_child_inode(ctx):
    _, plan = ctx
    # ctxfs_add_link(dentry, inode): the page was looked up in dir = d_inode(dentry->d_parent)
    site = _site(plan, "fs/ctxfs/dir.c", 41)
    assert (site["argument"], site["how"]) == ("dir->i_mapping", "lookup")
    assert "ctxfs_get_page(dir, 0)" in site["evidence"] and "filemap_get_folio(mapping, n)" in site["evidence"]
    assert "inode" not in site["argument"].replace("i_mapping", "")


def test_of_two_inodes_beside_a_page_the_one_every_caller_looked_it_up_in_says(ctx):
    _, plan = ctx
    # ctxfs_set_link(dir, inode, page): either inode could be meant, but its only
    # caller, ctxfs_rename, passes the dir it looked the page up in
    site = _site(plan, "fs/ctxfs/dir.c", 49)
    assert (site["argument"], site["how"]) == ("dir->i_mapping", "provider")
    assert "looked the page up in" in site["evidence"]
    assert "fs/ctxfs/dir.c::ctxfs_set_link" not in {f["id"] for f in plan["functions"]}
    assert not [c for c in plan["call_sites"] if (c["file"], c["line"]) == ("fs/ctxfs/dir.c", 60)]


def test_page_from_a_lookup_on_a_local_mapping_needs_no_parameter(ctx):
    _, plan = ctx
    rw = _rewrite(plan, "fs/ctxfs/file.c", 17)
    assert rw["to"] == "folio_mapping_wp(folio, mapping)"
    assert rw["evidence"].startswith("filemap_get_folio(mapping, index)")
    assert "ctxfs_touch" not in {f["name"] for f in plan["functions"]}


def test_truncation_check_becomes_a_membership_test(ctx):
    _, plan = ctx
    rw = _rewrite(plan, "fs/ctxfs/file.c", 31)
    assert (rw["from"], rw["to"]) == ("folio->mapping != mapping", "!folio_in_mapping(folio, mapping)")
    assert rw["purpose"] == "identity" and rw["context"] == ""
    # no identity test anywhere is handed to the context helper
    helper = "_mapping_wp("
    assert not [r for r in plan["rewrites"] if r["purpose"] == "identity" and helper in r["to"]]
    assert "ctxfs_lock_index" not in {f["name"] for f in plan["functions"]}


def test_args_struct_carries_the_mapping(ctx):
    _, plan = ctx
    rw = _rewrite(plan, "fs/ctxfs/file.c", 42)
    assert rw["context"] == "iter->inode->i_mapping"
    assert "member chain of parameter struct iomap_iter * iter" in rw["evidence"]


def test_metadata_pages_are_never_protected(ctx):
    _, plan = ctx
    (through_eb,) = _kept(plan, "fs/ctxfs/meta.c", 7)
    (beside_eb,) = _kept(plan, "fs/ctxfs/meta.c", 13)
    for k in (through_eb, beside_eb):
        assert k["reason"] == "never-protected" and "btree inode" in k["evidence"]
    assert not [r for r in plan["rewrites"] if r["file"] == "fs/ctxfs/meta.c"]
    assert not [f for f in plan["functions"] if f["file"] == "fs/ctxfs/meta.c"]


def test_nullable_file_cannot_name_the_mapping(ctx):
    _, plan = ctx
    fns = {f["name"]: f for f in plan["functions"]}
    # ctxfs_read_sync passes NULL for the file: ctxfs_fill gains the mapping instead
    assert fns["ctxfs_fill"]["param_name"] == "wp_mapping"  # it has a local `mapping`
    assert fns["ctxfs_fill"]["exported"] is True  # EXPORT_SYMBOL is no boundary (the cover letter lists it)
    assert (_site(plan, "fs/ctxfs/file.c", 64)["argument"], _site(plan, "fs/ctxfs/file.c", 73)["argument"]) == \
        ("mapping", "file->f_mapping")
    # the read_folio slot: its file is NULL for read_mapping_folio() callers (rules
    # nullable_slots), so it gains the parameter and never uses file->f_mapping
    assert "member:address_space_operations.read_folio" in {s["id"] for s in plan["slots"]}
    rw = _rewrite(plan, "fs/tinyfs/file.c", 21)
    assert rw["context"] == "mapping"


def test_work_and_thread_callbacks_are_registrations_not_uncalled(ctx):
    _, plan = ctx
    (u,) = [u for u in plan["unresolved"] if u["function"] == "fs/ctxfs/file.c::ctxfs_flusher"]
    assert u["reason"] == "slot-boundary"
    assert u["chain"][0] == {**u["chain"][0], "why": "bound-to", "detail": "registration:kthread"}


def test_completion_handler_is_kind_3_by_registration(tmp_path):
    data = analyze_json(MINILINUX, tmp_path / "db")
    (read,) = [r for r in data["reads"] if r["file"] == "fs/ctxfs/file.c" and r["line"] == 94]
    assert read["kind"] == 3 and "completion" in read["why"]


def test_ops_local_resolves_to_the_mapping_it_was_loaded_from(ctx):
    _, plan = ctx
    # `aops = mapping->a_ops; aops->read_folio(file, folio)` passes mapping
    assert _site(plan, "mm/filemap.c", 75)["argument"] == "mapping"
    # `aops = folio->mapping->a_ops` is a read: never passed on as a context
    site = _site(plan, "mm/truncate.c", 11)
    assert (site["argument"], site["how"]) == ("mapping", "parameter")


def test_null_and_flag_tests_are_kept(ctx):
    _, plan = ctx
    assert [k["reason"] for k in _kept(plan, "fs/ctxfs/file.c", 107)] == ["null-test"]
    assert [k["reason"] for k in _kept(plan, "fs/ctxfs/file.c", 112)] == ["flag-test"]
    assert not {"ctxfs_truncated", "ctxfs_is_anon"} & {f["name"] for f in plan["functions"]}


def test_two_mappings_and_a_page_of_neither_need_a_human(ctx):
    db, plan = ctx
    (k,) = _kept(plan, "fs/ctxfs/dir.c", 67)
    assert k["reason"] == "needs-human"
    assert [c.split(" ")[0] for c in k["candidates"]] == ["from", "to"]
    # (and fs/pagefs/buf.c's buffer kept in a global: tests/test_page_facts.py; and
    # fs/pagefs/check.c's pipe buffer page and the page pagefs_meta_csum finds itself:
    # tests/test_check.py)
    assert plan["summary"]["needs_human"] == 4
    code, out, _ = run_cli("plan", "--db", str(db))
    assert code == 1 and "needs a human (4)" in out and "candidate: from" in out


def test_explain_prints_the_evidence(ctx):
    db, _ = ctx
    code, out, err = run_cli("explain", "fs/ctxfs/dir.c::ctxfs_commit_chunk", "--db", str(db))
    assert code == 0, err
    assert "fs/ctxfs/dir.c:41 ctxfs_add_link: dir->i_mapping  [lookup]" in out
    assert "because ctxfs_get_page(dir, 0): ctxfs_get_page() returns filemap_get_folio(mapping, n)" in out
    assert "because page: parameter 0" in out


@pytest.mark.parametrize("bad, words", [
    ('[[plan.lookup]]\nfunction = "f"\narg = 0\nof = "dentry"\nwhy = "x"\n',
     "'of' in [plan.lookup #{n}] must be one of 'mapping', 'inode', 'file', 'rac'"),
    ('[[plan.carrier]]\ntype = "struct x *"\nmapping = "x->m"\nwhy = "x"\n', "mapping must use {p}"),
    ('[[plan.never_protected]]\nmapping = "(unclosed"\nwhy = "x"\n', "bad regex"),
    ('[[plan.registration]]\nname = "INIT_WORK"\nslot = "s"\nwhy = "x"\n', "missing 'arg'"),
])
def test_context_rules_are_checked(tmp_path, bad, words):
    from conftest import REPO

    from mappingpass import rules as rulesmod

    text = (REPO / "rules" / "mapping.toml").read_text()
    cut = text.index("[plan.context]")
    path = tmp_path / "r.toml"
    path.write_text(text[:cut] + bad + "\n" + text[cut:])
    with pytest.raises(rulesmod.RulesError) as err:
        rulesmod.load(path)
    words = words.replace("{n}", str(text.count("[[plan.lookup]]") + 1))  # (the one added last)
    assert words in str(err.value) and str(path) in str(err.value)


def test_reads_through_an_accessor_keep_its_answer(ctx):
    _, plan = ctx
    # page_file_mapping() answers for swap cache too: wrapped, not replaced by the raw field
    rw = _rewrite(plan, "fs/tinyfs/file.c", 112)
    assert rw["to"] == "page_mapping_wp_of(page, page_file_mapping(page), mapping)"
    ident = _rewrite(plan, "fs/tinyfs/file.c", 47)
    assert ident["to"] == "!folio_in_mapping_of(folio, folio_mapping(folio), mapping)"


def test_a_const_page_keeps_its_qualifier(ctx):
    _, plan = ctx
    # the helpers take const pages (the patched fixture compiles with -Werror)
    site = _site(plan, "fs/ctxfs/file.c", 127)
    assert (site["callee"], site["argument"], site["how"]) == ("fs/ctxfs/file.c::ctxfs_const_peek", "mapping",
                                                                "lookup")
    assert _rewrite(plan, "fs/ctxfs/file.c", 118)["to"] == "page_mapping_wp(page, mapping)"
