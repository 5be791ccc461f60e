"""plan: decided from the page, not from the read's text (fixtures/minilinux/fs/pagefs).

Each test names a trap a kernel reviewer caught in the whole-tree plan and
asserts what the plan does now: which functions do not gain the parameter,
which reads are kept and with what evidence."""

from __future__ import annotations

import pytest
from conftest import MINILINUX, analyze_json, plan_json, run_cli


@pytest.fixture(scope="module")
def plan(tmp_path_factory):
    db = tmp_path_factory.mktemp("pagefacts")
    analyze_json(MINILINUX, db)
    _, found, _ = plan_json(db)
    return db, found


def _functions(plan) -> set[str]:
    return {f["id"] for f in plan["functions"]}


def _kept(plan, file, line) -> dict:
    found = [k for k in plan["kept"] if k["file"] == file and k["line"] == line]
    assert len(found) == 1, (file, line, found)
    return found[0]


def _sites_in(plan, file) -> list[dict]:
    return [c for c in plan["call_sites"] if c["file"] == file]


def test_an_assertion_makes_no_parameter_climb(plan):
    _, p = plan
    kept = _kept(p, "fs/pagefs/file.c", 7)  # WARN_ON(page->mapping->host != inode)
    assert kept["reason"] == "assertion" and "WARN_ON()" in kept["evidence"]
    assert not {"fs/pagefs/file.c::pagefs_check_owner", "fs/pagefs/file.c::pagefs_set_size",
                "pagefs_write_end"} & _functions(p)
    assert not [w for w in p["rewrites"] if w["file"] == "fs/pagefs/file.c" and w["line"] == 7]


def test_callers_that_can_only_pass_null_give_no_parameter(plan):
    _, p = plan
    # pagefs_page_ino's only caller hands it a page nothing in scope names
    assert "fs/pagefs/file.c::pagefs_page_ino" not in _functions(p)
    kept = _kept(p, "fs/pagefs/file.c", 27)
    assert kept["reason"] == "no-context"
    assert "every call passes NULL" in kept["evidence"] and "pagefs_spare_ino" in kept["evidence"]
    unresolved = [u for u in p["unresolved"] if u["function"] == "fs/pagefs/file.c::pagefs_page_ino"]
    assert [u["reason"] for u in unresolved] == ["no-context"]
    assert unresolved[0]["chain"][0]["why"] == "callers-pass-nothing"
    # no call passes NULL for it: none changes
    assert not [c for c in _sites_in(p, "fs/pagefs/file.c") if c["callee"].endswith("pagefs_page_ino")]


def test_a_block_device_buffer_is_never_protected(plan):
    _, p = plan
    direct = _kept(p, "fs/pagefs/file.c", 50)  # bh = sb_bread(sb, 1); bh->b_page->mapping
    assert direct["reason"] == "never-protected" and "sb_bread(sb, 1)" in direct["evidence"]
    # ... and a function called only with such pages keeps its signature
    assert "fs/pagefs/file.c::pagefs_block_size" not in _functions(p)
    helper = _kept(p, "fs/pagefs/file.c", 41)
    assert helper["reason"] == "never-protected" and "every call hands it one that is never protected" \
        in helper["evidence"] and "sb_bread(sb, 1)" in helper["evidence"]
    assert not [u for u in p["unresolved"] if "pagefs_block_size" in u["function"]]


def test_an_ops_table_of_metadata_inodes_justifies_nothing(plan):
    _, p = plan
    # btree_releasepage is reached only through btree_aops: its page is never protected
    kept = _kept(p, "fs/pagefs/meta.c", 18)
    assert kept["reason"] == "never-protected" and "btree_aops" in kept["evidence"]
    # pagefs_meta_drop is called only from the btree table's implementation
    assert "pagefs_meta_drop" not in _functions(p)
    assert _kept(p, "fs/pagefs/meta.c", 7)["reason"] == "never-protected"
    # the implementations still follow their slots' signatures (other tables need them)
    btree = {f["id"]: f for f in p["functions"] if f["id"].startswith("fs/pagefs/meta.c::btree_")}
    assert {f["reason"][0]["why"] for f in btree.values()} == {"implements"}
    assert not [w for w in p["rewrites"] if w["file"] == "fs/pagefs/meta.c"]


def test_a_slot_whose_caller_hands_back_the_field_gains_nothing(plan):
    _, p = plan
    # folio_check_dirty_writeback: mapping = folio_mapping(folio); mapping->a_ops->is_dirty_writeback(folio)
    assert "member:address_space_operations.is_dirty_writeback" not in {s["id"] for s in p["slots"]}
    assert not _sites_in(p, "mm/vmscan.c") or all(
        c["callee"] != "member:address_space_operations.is_dirty_writeback" for c in _sites_in(p, "mm/vmscan.c"))
    kept = _kept(p, "fs/pagefs/file.c", 59)
    assert kept["reason"] == "no-context" and "is_dirty_writeback" in kept["evidence"]


def test_check_refutes_what_the_plan_leaves_for_no_context(plan):
    db, _ = plan
    import json
    code, out, err = run_cli("check", "--db", str(db), "--format", "json", "-q")
    verdicts = {(v["file"], v["line"]): v for v in json.loads(out)["verdicts"]}
    no_context = verdicts[("fs/pagefs/file.c", 27)]
    assert no_context["verdict"] == "unresolvable" and "no-context" in no_context["witness"]["error"]
    assert verdicts[("fs/pagefs/file.c", 50)]["verdict"] == "never-protected"


def test_pages_stored_in_an_array_keep_their_lookup(plan):
    _, p = plan
    # pagefs_prepare: folios[i] = filemap_get_folio(inode->i_mapping, i); pagefs_touch_folio(folios[i])
    site = [c for c in p["call_sites"] if c["file"] == "fs/pagefs/file.c" and c["line"] == 81]
    assert [(c["argument"], c["how"]) for c in site] == [("inode->i_mapping", "lookup")]
    assert "pagefs_prepare" not in _functions(p)  # the array parameter is no page parameter


def test_an_inode_every_caller_derives_from_the_page_is_evidence(plan):
    _, p = plan
    # pagefs_map_one: inode = folio->mapping->host; pagefs_map_folio(inode, folio)
    rw = [w for w in p["rewrites"] if w["file"] == "fs/pagefs/file.c" and w["line"] == 87]
    assert [w["to"] for w in rw] == ["folio_mapping_wp(folio, inode->i_mapping)"]
    assert "every caller passes inode as the host of the page it passes" in rw[0]["evidence"]
    assert "fs/pagefs/file.c::pagefs_map_folio" not in _functions(p)


def test_a_lookup_wrapper_on_a_private_inode_is_never_protected(plan):
    _, p = plan
    # pagefs_grab(mapping) looks up `mapping`; the caller hands it META_MAPPING(inode)
    kept = _kept(p, "fs/pagefs/file.c", 106)
    assert kept["reason"] == "never-protected" and "META_MAPPING(inode)" in kept["evidence"]
    assert "fs/pagefs/file.c::pagefs_meta_count" not in _functions(p)


def test_a_null_test_after_lookup_and_lock_is_the_truncation_check(plan):
    _, p = plan
    # pagefs_lock_index: folio = filemap_get_folio(mapping, index); lock_page(&folio->page); if (!folio->mapping)
    rw = [w for w in p["rewrites"] if w["file"] == "fs/pagefs/file.c" and w["line"] == 122]
    assert [(w["to"], w["purpose"]) for w in rw] == [("folio_mapping_wp(folio, mapping)", "null-test")]
    assert rw[0]["evidence"].startswith("the truncation check after locking")
    # without a lock first, a NULL test stays as it is (ctxfs_truncated)
    assert [k["reason"] for k in p["kept"] if k["file"] == "fs/ctxfs/file.c" and k["line"] == 107] == ["null-test"]


def test_a_caller_in_code_the_plan_does_not_convert_asks_no_human(plan):
    _, p = plan
    # mm/vmscan.c (kind 2) hands folio_invalidate() a folio nothing in scope names
    site = [c for c in p["call_sites"] if c["file"] == "mm/vmscan.c" and c["line"] == 54]
    assert [(c["argument"], c["how"]) for c in site] == [("NULL", "unresolved")]
    assert site[0]["evidence"].endswith("the caller is kind-2 code")
    assert not [k for k in p["needs_human_sites"] if k["file"] == "mm/vmscan.c"]


def test_an_implementation_that_only_follows_its_slot_is_labelled(plan):
    db, p = plan
    assert p["summary"]["signature_only"] >= 2
    code, out, err = run_cli("explain", "fs/pagefs/meta.c::btree_releasepage", "--db", str(db), "-q")
    assert code == 0, err
    assert "only for its slot's signature (nothing in it uses it)" in out.splitlines()[0]
    code, out, _ = run_cli("plan", "--db", str(db), "-q")
    assert "only for the signature of a slot they implement" in out.splitlines()[1]


def _site_at(p, file, line) -> dict:
    found = [c for c in p["call_sites"] if c["file"] == file and c["line"] == line]
    assert len(found) == 1, (file, line, found)
    return found[0]


def test_a_buffer_head_of_unknown_origin_takes_no_inode_in_scope(plan):
    _, p = plan
    # pagefs_touch_last(inode): pagefs_buf_dirty(pagefs_last_bh), a buffer kept in a global
    site = _site_at(p, "fs/pagefs/buf.c", 15)
    assert (site["argument"], site["how"]) == ("NULL", "needs-human")
    assert "a buffer head's page from where the plan cannot follow" in site["evidence"]


def test_the_buffers_of_a_looked_up_page_walked(plan):
    _, p = plan
    # head = page_buffers(&folio->page); bh = head; ... bh = bh->b_this_page
    site = _site_at(p, "fs/pagefs/buf.c", 27)
    assert (site["argument"], site["how"]) == ("mapping", "lookup")


def test_a_buffer_stored_through_a_forwarded_out_parameter_is_never_protected(plan):
    _, p = plan
    # pagefs_dir_block: pagefs_read_block(sb, blk, &bh) -> pagefs_read_blocks(..., bh): bhs[i] = sb_bread(...)
    site = _site_at(p, "fs/pagefs/buf.c", 54)
    assert (site["argument"], site["how"]) == ("NULL", "never-protected")
    assert "pagefs_read_blocks() at line 46: sb_bread(sb, blk + i)" in site["evidence"]


def test_a_lookup_in_a_mapping_only_a_metadata_table_hands_over(plan):
    _, p = plan
    # hfs_btree_aops.dirty_folio(mapping) -> pagefs_meta_write_cache(mapping): filemap_get_folio(mapping, 0)
    kept = _kept(p, "fs/pagefs/buf.c", 61)
    assert kept["reason"] == "never-protected" and "hfs_btree_aops" in kept["evidence"]
    assert "fs/pagefs/buf.c::pagefs_meta_flush_one" not in _functions(p)


def test_the_page_write_begin_stores_is_of_its_mapping(plan):
    _, p = plan
    # mapping->a_ops->write_begin(NULL, mapping, pos, 1, &page, &fsdata); pagefs_page_count(page)
    site = _site_at(p, "fs/pagefs/buf.c", 95)
    assert (site["argument"], site["how"]) == ("mapping", "lookup")
    assert "->write_begin stores in its page argument" in site["evidence"]


def test_a_read_that_is_a_whole_assertion_is_a_null_test(plan):
    _, p = plan
    kept = _kept(p, "fs/pagefs/file.c", 130)  # WARN_ON(page->mapping)
    assert kept["reason"] == "null-test" and "the whole condition of WARN_ON()" in kept["evidence"]


def test_a_call_inside_an_assertion_is_real_code(plan):
    _, p = plan
    # WARN_ON(pagefs_drop_folio(folio)): the call runs whatever the assertion reports
    inside = _site_at(p, "fs/pagefs/file.c", 141)
    assert (inside["argument"], inside["how"]) == ("mapping", "parameter")
    outer = _site_at(p, "fs/pagefs/file.c", 146)
    assert (outer["argument"], outer["how"]) == ("mapping", "lookup")


def test_a_page_of_unknown_origin_with_several_files_in_scope_asks_a_human(plan):
    _, p = plan
    # pagefs_move_kept(file, donor): a page kept aside; file->f_mapping or donor->i_mapping?
    kept = _kept(p, "fs/pagefs/file.c", 154)
    assert kept["reason"] == "no-context" and "only an inode or file in scope" in kept["evidence"]
    assert {c.split(" ")[0] for c in kept["candidates"]} == {"file->f_mapping", "donor->i_mapping"}
    # ... but the mapping itself in scope (a folio allocated and added to it) is taken
    site = _site_at(p, "fs/pagefs/file.c", 171)
    assert (site["argument"], site["how"]) == ("mapping", "provider")



def test_a_caller_that_keeps_its_signature_passes_nothing(plan):
    _, p = plan
    # submit_bh_hooked is the block layer's (kind 3): it keeps its signature,
    # so the hook it alone calls would be handed NULL for ever; it keeps its own
    assert not {"pagefs_bh_submitting", "submit_bh_hooked"} & _functions(p)
    kept = _kept(p, "fs/pagefs/buf.c", 102)
    assert kept["reason"] == "no-context" and "submit_bh_hooked" in kept["evidence"]
    assert not [c for c in p["call_sites"] if c["callee"] == "pagefs_bh_submitting"]


def test_a_lookup_in_a_local_holding_a_private_mapping(plan):
    _, p = plan
    # mapping = META_MAPPING(inode); filemap_get_folio(mapping, 1): the local's value says it
    assert "fs/pagefs/file.c::pagefs_meta_dirty" not in _functions(p)
    kept = _kept(p, "fs/pagefs/file.c", 178)
    assert kept["reason"] == "never-protected" and "META_MAPPING" in kept["evidence"]


def test_the_writeback_iterator_is_a_lookup(plan):
    _, p = plan
    # while ((folio = writeback_iter(mapping, wbc, folio, &error))) pagefs_write_folio(folio);
    site = [c for c in _sites_in(p, "fs/pagefs/file.c") if c["callee"].endswith("pagefs_write_folio")]
    assert [(c["argument"], c["how"]) for c in site] == [("mapping", "lookup")]
    assert "writeback_iter(mapping" in site[0]["evidence"]


def test_a_callee_handed_null_looks_its_page_up_itself(plan):
    _, p = plan
    # pagefs_read_pages(rac, NULL): then `folio = readahead_folio(rac)`, rac->mapping's
    sites = {c["line"]: c for c in _sites_in(p, "fs/pagefs/file.c") if c["callee"].endswith("pagefs_read_pages")}
    assert (sites[224]["argument"], sites[224]["how"]) == ("rac->mapping", "lookup")
    assert sites[224]["evidence"].startswith("handed NULL")
    assert (sites[229]["argument"], sites[229]["how"]) == ("mapping", "lookup")


def test_an_inode_every_caller_takes_from_the_page_through_an_accessor(plan):
    _, p = plan
    # inode = folio_file_mapping(folio)->host; pagefs_inline_data(inode, folio)
    assert "fs/pagefs/file.c::pagefs_inline_data" not in _functions(p)
    rw = [w for w in p["rewrites"] if (w["file"], w["line"]) == ("fs/pagefs/file.c", 235)]
    assert [w["context"] for w in rw] == ["inode->i_mapping"]


def test_an_ops_table_of_symlinks_carries_pages_never_protected(plan):
    """`*_symlink_aops` (rules never_protected_ops, a glob): a symlink's
    ->read_folio keeps its read as it is; it takes the parameter only for
    the slot's signature."""
    _, p = plan
    k = _kept(p, "fs/pagefs/check.c", 119)
    assert k["reason"] == "never-protected" and "pagefs_symlink_aops: installed on symlinks only" in k["evidence"]
    assert not [w for w in p["rewrites"] if (w["file"], w["line"]) == ("fs/pagefs/check.c", 119)]
    fn = next(f for f in p["functions"] if f["id"] == "fs/pagefs/check.c::pagefs_symlink_read_folio")
    assert fn["reason"][0]["why"] == "implements"
