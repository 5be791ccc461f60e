"""check: the plan run in the write-protect model, and the mutants it must kill."""

from __future__ import annotations

import dataclasses
import json

import pytest
from conftest import MINILINUX, analyze_json, plan_mutants, run_cli

from mappingpass import check as checkmod
from mappingpass import model
from mappingpass.index import Store
from mappingpass.workspace import compute_plan, store_rules


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    db = tmp_path_factory.mktemp("checkdb")
    analyze_json(MINILINUX, db)
    plan, analysis = compute_plan(str(db))
    store = Store(db, create=False)
    facts = {f.path: f for f in store.load_facts()}
    rules = store_rules(store)
    store.close()
    return db, plan, analysis, rules, facts


def verdicts(world, plan=None):
    db, base, analysis, rules, facts = world
    result = checkmod.check(plan or base, analysis, rules, facts)
    return {(v.file, v.line): v for v in result.verdicts}


def test_verdicts_of_the_plan(world):
    v = verdicts(world)
    # proven on every path: the page's owner comes from a lookup the interpreter ran
    for key in [("fs/ctxfs/dir.c", 19), ("fs/ctxfs/file.c", 17), ("fs/ctxfs/file.c", 50),
                ("fs/smallfs/dir.c", 9), ("fs/smallfs/file.c", 8)]:
        assert v[key].verdict == "resolvable", (key, v[key])
    # the page comes in as a parameter of a function nothing calls: whose, the code does not say
    assert v[("fs/ctxfs/file.c", 42)].verdict == "unproven"
    assert "nothing in the code says whose page it is" in v[("fs/ctxfs/file.c", 42)].missing
    # a flag test: a record's pointer carries no PAGE_MAPPING_* bits in the model
    assert v[("fs/ctxfs/file.c", 112)].verdict == "resolvable"
    assert "PAGE_MAPPING_*" in v[("fs/ctxfs/file.c", 112)].covered_by
    assert v[("fs/ctxfs/file.c", 107)].verdict == "resolvable"  # a NULL test kept
    assert v[("fs/ctxfs/file.c", 31)].verdict == "resolvable"  # the membership test
    assert "every owner of its record" in v[("fs/ctxfs/file.c", 31)].covered_by
    assert v[("fs/ctxfs/meta.c", 7)].verdict == "never-protected"
    assert v[("mm/gup.c", 16)].verdict == "runtime" and "GUP" in v[("mm/gup.c", 16)].covered_by
    # not rewritten: a boundary or a human's decision
    assert v[("fs/ctxfs/dir.c", 67)].verdict == "unresolvable"
    assert "needs a human" in v[("fs/ctxfs/dir.c", 67)].witness.error


def _mutate(plan, file, line, **changes):
    sites, hit = [], False
    for c in plan.call_sites:
        if c.file == file and c.line == line:
            hit = True
            if changes.get("drop"):
                continue
            c = dataclasses.replace(c, **{k: v for k, v in changes.items() if k != "drop"})
        sites.append(c)
    assert hit, (file, line)
    return dataclasses.replace(plan, call_sites=tuple(sites))


def test_the_linked_inode_is_refuted_with_the_directory_as_owner(world):
    plan = _mutate(world[1], "fs/ctxfs/dir.c", 41, argument="inode->i_mapping")
    v = verdicts(world, plan)[("fs/ctxfs/dir.c", 19)]
    assert v.verdict == "unresolvable"
    w = v.witness
    assert w.argument == "inode->i_mapping"
    assert "ctxfs_add_link:inode" in w.value  # the inode being linked ...
    assert "d_parent.d_inode" in w.owner  # ... is not the directory the page was looked up in
    assert [(h.file, h.line) for h in w.path] == [("fs/ctxfs/dir.c", 41)]


def test_mutation_drop_one_argument(world):
    plan = _mutate(world[1], "fs/ctxfs/dir.c", 41, drop=True)
    v = verdicts(world, plan)[("fs/ctxfs/dir.c", 19)]
    assert v.verdict == "unresolvable" and v.witness.argument == "(no argument)"
    assert "fs/ctxfs/dir.c:41" in v.witness.error


def test_mutation_pass_page_mapping(world):
    plan = _mutate(world[1], "fs/ctxfs/dir.c", 41, argument="page->mapping")
    v = verdicts(world, plan)[("fs/ctxfs/dir.c", 19)]
    assert v.verdict == "unresolvable"
    assert "write-protection record" in v.witness.error and "circular" in v.witness.error


def test_mutation_inode_mapping_of_a_block_device_file(world):
    # ctxfs_read looked the page up in file->f_mapping: its inode's i_mapping is
    # another page cache for a block device file
    plan = _mutate(world[1], "fs/ctxfs/file.c", 73, argument="file->f_inode->i_mapping")
    v = verdicts(world, plan)[("fs/ctxfs/file.c", 50)]
    assert v.verdict == "unresolvable" and v.witness.scenario == "bdev-file"


def test_mutation_null_where_a_file_may_be_null(world):
    plan = _mutate(world[1], "fs/ctxfs/file.c", 64, argument="NULL")
    v = verdicts(world, plan)[("fs/ctxfs/file.c", 50)]
    assert v.verdict == "unresolvable" and "NULL context" in v.witness.error


def test_every_mutant_of_a_proven_read_is_killed(world):
    base = verdicts(world)
    proven = {k for k, v in base.items() if v.verdict == "resolvable" and v.paths}
    killed, survivors = 0, []
    _, base_plan, analysis, rules, facts = world
    for name, plan in plan_mutants(base_plan, analysis, rules, facts):
        after = verdicts(world, plan)
        if any(after[k].verdict != "resolvable" for k in proven):
            killed += 1
        elif any(base[k].verdict != after[k].verdict for k in base):
            killed += 1  # it broke a read that was not proven anyway
        else:
            survivors.append(name)
    # mutants that change nothing a proven read depends on (a site on a path
    # the check cannot prove) are not counted against it; the equivalent ones
    # are named with why
    relevant = {s for s in survivors if _on_proven_path(world, s, proven)}
    assert killed > 10
    assert relevant == set(EQUIVALENT) | set(UNCHECKED), sorted(relevant)
    # and each unchecked one is on a path the verdict itself names as not checked
    assert "not checked: the paths from pagefs_pick," in base[("fs/pagefs/check.c", 98)].covered_by


# sites on a path the verdict names as not checked: pagefs_pick's folio comes
# from a function check cannot follow (NULL in the model), so what it passes
# there is not judged
UNCHECKED = {
    "fs/pagefs/check.c:106 mapping -> NULL",
    "fs/pagefs/check.c:106 mapping -> page->mapping",
}


EQUIVALENT = {
    # `mapping = inode->i_mapping`: the same object
    "fs/ctxfs/file.c:17 mapping -> inode->i_mapping",
    # btree_shed_folio's folios are the btree inode's, never protected: their
    # field is their owner, so handing it down is the same as handing NULL
    "fs/pagefs/check.c:34 NULL -> page->mapping",
}


def _on_proven_path(world, name: str, proven) -> bool:
    """Whether the mutated site or rewrite lies on a path of a proven read."""
    file, line = name.split(" ")[0].split(":")
    plan = world[1]
    if any(w.file == file and w.line == int(line) for w in plan.rewrites):
        return (file, int(line)) in proven
    site = next(c for c in plan.call_sites if c.file == file and c.line == int(line))
    reader = {f.id for f in plan.functions if f.id == site.callee}
    return bool(reader) and any(k for k in proven if any(
        w.file == k[0] and w.line == k[1] and w.function in reader for w in plan.rewrites))


def test_check_cli_json_and_exit_code(world):
    db = world[0]
    code, out, err = run_cli("check", "--db", str(db), "--format", "json", "-q")
    assert code == 1, err
    data = json.loads(out)
    assert data["schema"] == "mappingpass.check/3"
    s = data["summary"]
    assert s["reads"] == sum(s.get(k, 0) for k in ("resolvable", "mixed", "unresolvable", "unproven", "runtime",
                                                   "never-protected"))
    # ctxfs's extent-buffer pages (2), pagefs's device buffers, metadata table, meta inode (2),
    # a symlink's page, the btree inode's folio handed over in a request, a page under
    # `!is_data_inode()`, a page found by a function every call of which is under it
    assert s["unproven"] > 0 and s["never-protected"] == 13
    assert sum(s["unproven_causes"].values()) == s["unproven"]
    code, out, _ = run_cli("check", "--db", str(db), "-q")
    assert "unproven" in out and "ctxfs_move_page" in out


def _checker(world):
    db, plan, analysis, rules, facts = world
    return checkmod._Checker(plan, analysis, rules, facts)  # noqa: SLF001 - the paths themselves


def _read(checker, file, line):
    return next(r for r in checker.reads if r.file == file and r.line == line)


def test_an_ops_call_of_one_filesystem_reaches_its_own_implementations(world):
    c = _checker(world)
    r = _read(c, "fs/tinyfs/file.c", 7)  # tinyfs_map_block, under tinyfs_writepage (->writepage)
    tops = {p.top for p in c.paths(r.function_id, r.receiver_text)[0]}
    # smallfs's sys_smallfs_sync calls ->writepage of smallfs's own mappings: never tinyfs_writepage
    assert "sys_smallfs_sync" not in tops
    assert {"mm/vmscan.c::pageout", "mm/page-writeback.c::__writepage"} <= tops  # generic code: any fs


def test_a_page_made_where_callback_data_comes_in_starts_at_the_callers(world):
    c = _checker(world)
    # write_cache_pages(mapping, wbc, writepage, data) looks the page up and hands it,
    # with data, to `writepage`: the path starts at a caller, and only at one that passes
    # the function the path goes into (generic_writepages passes __writepage)
    (pred, target, site, call), = [x for x in c.ctx.callers("mm/page-writeback.c::__writepage")]
    hop = c.hop(pred, target, site, call)
    into_writepage = c._data_paths(pred, (hop,), (site,), (0,), "mm/page-writeback.c::__writepage")  # noqa: SLF001
    assert [p.top for p in into_writepage] == ["generic_writepages"]
    assert c._data_paths(pred, (hop,), (site,), (0,), "tinyfs_writepage") == []  # noqa: SLF001


def test_a_path_from_a_function_nothing_calls_is_named_not_guessed(world):
    c = _checker(world)
    v = c.verdict(_read(c, "fs/tinyfs/file.c", 176))  # tinyfs_debug_orphan: nobody calls it
    assert v.verdict != "resolvable"


def test_which_code_is_a_filesystem_of_its_own(world):
    c = _checker(world)
    assert c._fs_of("fs/gfs2/log.c") == "fs/gfs2"  # noqa: SLF001
    assert c._fs_of("fs/buffer.c") == c._fs_of("mm/filemap.c") == ""  # generic: any filesystem  # noqa: SLF001
    assert c._fs_of("mm/shmem.c") == "mm/shmem.c"  # rules filesystem_files: tmpfs  # noqa: SLF001
    # the block device's and the swap cache's own operations (rules filesystem_files)
    assert c._fs_of("block/fops.c") == "block/fops.c" and c._fs_of("mm/page_io.c") == "mm/page_io.c"  # noqa: SLF001
    # a graphics driver's buffer objects are shmem files (rules backed_by)
    assert c._fs_of("drivers/gpu/drm/i915/gem/i915_gem_shmem.c") == "mm/shmem.c"  # noqa: SLF001


def test_a_driver_whose_pages_are_shmem_reaches_no_disk_filesystem(world):
    """gem_shmem_writeback() calls ->writepage on its buffer object's mapping,
    a shmem file's: a path from it into tinyfs_writepage is not one the kernel
    takes (i915's __shmem_writeback into f2fs's, on linux-6.1). Without the
    rule, the path is there."""
    c = _checker(world)
    r = _read(c, "fs/tinyfs/file.c", 7)  # tinyfs_map_block, under tinyfs_writepage (->writepage)
    assert "gem_shmem_writeback" not in {p.top for p in c.paths(r.function_id, r.receiver_text)[0]}
    db, plan, analysis, rules, facts = world
    unruled = dataclasses.replace(rules, plan=dataclasses.replace(rules.plan, backed_by=()))
    bare = checkmod._Checker(plan, analysis, unruled, facts)  # noqa: SLF001
    assert "gem_shmem_writeback" in {p.top for p in bare.paths(r.function_id, r.receiver_text)[0]}


def _refuted_with_null(world, site: int, read: int) -> None:
    """The call at fs/pagefs/check.c:site passing NULL instead makes the read
    at :read unresolvable: the verdict could have been refuted."""
    wrong = verdicts(world, _mutate(world[1], "fs/pagefs/check.c", site, argument="NULL"))
    assert wrong[("fs/pagefs/check.c", read)].verdict == "unresolvable"


def test_paths_from_kind_2_code_make_a_read_mixed(world):
    """pagefs_settle_folio: the folio a lookup found (kind-1 code, the plan
    passes its mapping) and one reclaim took off a list (mm/vmscan.c passes
    NULL): resolvable from kind-1 code, the reclaim path is run time's."""
    v = verdicts(world)[("fs/pagefs/check.c", 8)]
    assert v.verdict == "mixed", v
    assert "reclaim_settle" in v.covered_by and "reclaim_next_folio" in v.missing
    # the same plan with the lookup's caller passing NULL: kind-1 code decides
    _refuted_with_null(world, 15, 8)


def test_a_path_into_a_never_protected_ops_table_is_not_a_witness(world):
    """pagefs_shed_folio is reached through ->invalidate_folio into the btree's
    own table (rules never_protected_ops), which passes NULL: those folios are
    never protected, so NULL is right there; the lookup's path is checked."""
    v = verdicts(world)[("fs/pagefs/check.c", 21)]
    assert v.verdict == "resolvable" and "btree_aops" in v.covered_by, v
    _refuted_with_null(world, 28, 21)


def test_an_object_a_function_returns_is_a_fresh_one_with_typed_members(world):
    """obj = pagefs_object_create(): a fresh object; its embedded base is a
    struct the index deferred, whose `filp` takes the type every analysed
    struct agrees on (struct file *): the lookup in its f_mapping is followed."""
    v = verdicts(world)[("fs/pagefs/check.c", 66)]
    assert v.verdict == "resolvable", v
    c = _checker(world)
    w = checkmod._World(c, "plain", set())  # noqa: SLF001
    obj = w.fresh("struct pagefs_object *", "obj")
    assert isinstance(obj.base.filp, model.File)
    assert isinstance(obj.base.size, model.Unknown)  # a number: nothing the model follows
    _refuted_with_null(world, 75, 66)


def test_a_folio_handed_down_by_reference(world):
    """pagefs_peek_slot reads `*foliop`, the caller's `&folio` from a lookup:
    plan follows the page to the caller, check binds `*foliop` to it."""
    v = verdicts(world)[("fs/pagefs/check.c", 83)]
    assert v.verdict == "resolvable", v


def test_a_path_whose_page_the_model_has_as_null_is_named_not_checked(world):
    """pagefs_pick's folio is stored by a function check cannot follow (NULL
    in the model: the kernel would oops on that path): the verdict rests on
    pagefs_pick_index's path and says which path it did not check."""
    v = verdicts(world)[("fs/pagefs/check.c", 98)]
    assert v.verdict == "resolvable" and "not checked: the paths from pagefs_pick," in v.covered_by, v
    _refuted_with_null(world, 113, 98)


def test_a_read_only_kind_2_to_5_code_reaches_is_run_times(world):
    """pagefs_bh_submitting is called only from fs/buffer.c (kind 3), which has
    no mapping: its raw read is run time's, like the kind-3 reads, not a
    witness against the plan."""
    v = verdicts(world)
    assert v[("fs/pagefs/buf.c", 102)].verdict == "runtime"
    assert "submit_bh_hooked" in v[("fs/pagefs/buf.c", 102)].covered_by
    # (a read that needs a human stays a question for one)
    assert v[("fs/ctxfs/dir.c", 67)].verdict == "unresolvable"


def test_the_bound_is_spent_on_paths_the_page_can_take(world, monkeypatch):
    """tinyfs_writepage's read: smallfs's own ->writepage call is pruned while
    the paths are enumerated, so two feasible paths fit a bound of two; left
    for the end, it took a place and truncated them."""
    c = _checker(world)
    r = _read(c, "fs/tinyfs/file.c", 7)
    monkeypatch.setattr(checkmod, "MAX_PATHS", 2)
    paths, truncated = c.paths(r.function_id, r.receiver_text)
    assert not truncated and {p.top for p in paths} == {"mm/vmscan.c::pageout", "mm/page-writeback.c::__writepage"}
    assert c._paths(r.function_id, r.receiver_text, prune=False)[1]  # noqa: SLF001


def test_a_batch_filled_through_the_callers_pointer(world):
    """pagefs_batch_last fills the batch its caller declared (`&fbatch`) and
    reads its last folio: the lookup's mapping is the owner."""
    v = verdicts(world)[("fs/pagefs/check.c", 132)]
    assert v.verdict == "resolvable", v
    _refuted_with_null(world, 142, 132)


def test_a_null_the_plan_passes_for_a_page_nobody_names_is_named(world):
    """pagefs_steal hands on a pipe buffer's page (a call the model does not
    run) and the plan passes NULL there: wrong for any file's page, but the
    page may be one never protected, so the read is unproven with that cause;
    the lookup's path is still checked."""
    v = verdicts(world)[("fs/pagefs/check.c", 158)]
    assert v.verdict == "unproven" and v.cause == checkmod.Cause.PLAN_NULL, v
    assert "check.c:163" in v.missing and "needs-human" in v.missing
    _refuted_with_null(world, 170, 158)


def test_unproven_reads_are_counted_by_cause(world):
    db, plan, analysis, rules, facts = world
    result = checkmod.check(plan, analysis, rules, facts)
    summary = result.summary()
    assert sum(summary["unproven_causes"].values()) == summary["unproven"]
    assert all(v.cause is not None for v in result.verdicts if v.verdict == "unproven")
    assert all(v.cause is None for v in result.verdicts if v.verdict != "unproven")
    assert json.loads(json.dumps(result.to_json()))["verdicts"]


def test_a_kept_read_for_a_reason_check_does_not_know_is_an_error(world):
    db, plan, analysis, rules, facts = world
    kept = [dataclasses.replace(k, reason="new-reason") if k.reason == "flag-test" else k for k in plan.kept]
    with pytest.raises(ValueError, match="new-reason"):
        checkmod.check(dataclasses.replace(plan, kept=tuple(kept)), analysis, rules, facts)


def test_an_operations_arguments_are_tied_as_its_callers_tie_them(world):
    """pagefs_write_begin looks the page up in `mapping` and pagefs_fill_page
    takes its context from `file->f_mapping`: every ->write_begin caller
    passes file->f_mapping with the file (rules slot_tie), so that holds;
    with the file and the mapping two files' (no tie) it is refuted."""
    db, plan, analysis, rules, facts = world
    assert verdicts(world)[("fs/pagefs/check.c", 179)].verdict == "resolvable"
    untied = dataclasses.replace(rules, plan=dataclasses.replace(rules.plan, slot_ties=()))
    v = {(v.file, v.line): v for v in checkmod.check(plan, analysis, untied, facts).verdicts}
    assert v[("fs/pagefs/check.c", 179)].verdict == "unresolvable"
    c = _checker(world)
    env = checkmod._World(c, "plain", set()).bind("fs/pagefs/check.c::pagefs_write_begin")  # noqa: SLF001
    assert env["mapping"] is env["file"].f_mapping
    env = checkmod._World(c, "plain", set()).bind("fs/pagefs/check.c::pagefs_write_begin", {"file"})  # noqa: SLF001
    assert env["file"] is None and isinstance(env["mapping"], model.AddressSpace)  # NULL file: nothing to tie


def test_a_folio_of_a_never_protected_mapping_handed_over_in_a_request(world):
    """pagefs_read_node's folio comes from a callee that fills a request
    (`req->folio = filemap_get_folio(fs_info->btree_inode->i_mapping, ...)`):
    the plan cannot name the mapping and keeps the read; check follows the
    request to the btree inode (rules never_protected) on every path."""
    v = verdicts(world)[("fs/pagefs/check.c", 214)]
    assert v.verdict == "never-protected" and "btree_inode" in v.covered_by, v
    c = _checker(world)
    r = _read(c, "fs/pagefs/check.c", 214)
    (path,), _ = c.paths(r.function_id, r.receiver_text)
    assert "btree_inode" in c._never_page(path, r)  # noqa: SLF001


def test_a_raw_field_kind_2_code_hands_on_is_run_times(world):
    """reclaim_settle_mapped (mm/vmscan.c, kind 2) looks a folio up and hands
    pagefs_settle_mapped its raw folio_mapping(): for a protected folio that
    is the record, wrong for the helper -- but kind-2 code has no mapping to
    give, so the path is run time's and pagefs_settle_folio stays mixed."""
    v = verdicts(world)[("fs/pagefs/check.c", 8)]
    assert v.verdict == "mixed" and "reclaim_settle_mapped" in v.covered_by, v
    c = _checker(world)
    r = _read(c, "fs/pagefs/check.c", 8)
    rewrite = c.rewrites[(r.file, r.start)]
    path = next(p for p in c.paths(r.function_id, r.receiver_text)[0] if p.top.endswith("reclaim_settle_mapped"))
    with pytest.raises(checkmod._Failure) as failed:  # noqa: SLF001
        c.run_path(path, r, rewrite, "plain", set())
    assert failed.value.verdict == "unresolvable" and failed.value.record


def test_a_page_array_a_callee_fills_for_its_caller(world):
    """pagefs_write_pages declares `struct page *pages[4]` and hands it to
    pagefs_grab_pages, which stores looked-up pages in it (btrfs's
    prepare_pages): the caller's array holds the lookup's pages."""
    v = verdicts(world)[("fs/pagefs/check.c", 246)]
    assert v.verdict == "resolvable", v
    _refuted_with_null(world, 254, 246)


def test_a_lookup_returns_what_its_type_says(world):
    """writeback_iter() (a rules lookup) returns a folio, which its name does
    not say: `&folio->page` of its result is the looked-up page."""
    v = verdicts(world)[("fs/pagefs/check.c", 261)]
    assert v.verdict == "resolvable", v
    _refuted_with_null(world, 270, 261)


def test_a_call_under_a_condition_the_rules_name_hands_on_a_never_protected_page(world):
    """pagefs_end_read calls pagefs_meta_validate only under
    `!is_data_inode(inode)` (rules never_protected_guard, btrfs's metadata
    read completion), with a page nothing names (so the plan keeps the read:
    an inode in scope is no evidence): the read is never-protected there;
    without the rule, the raw read is wrong for a page that may be protected."""
    db, plan, analysis, rules, facts = world
    v = verdicts(world)[("fs/pagefs/check.c", 281)]
    assert v.verdict == "never-protected" and "!is_data_inode(inode)" in v.covered_by, v
    unguarded = dataclasses.replace(rules, plan=dataclasses.replace(rules.plan, never_protected_guards=()))
    v = {(v.file, v.line): v for v in checkmod.check(plan, analysis, unguarded, facts).verdicts}
    assert v[("fs/pagefs/check.c", 281)].verdict == "unresolvable"
    # pagefs_meta_csum finds its page itself (btrfs's btree_csum_one_bio), and every call
    # of it is under the guard: never-protected; without the rule, the raw read is wrong
    assert verdicts(world)[("fs/pagefs/check.c", 298)].verdict == "never-protected"
    assert v[("fs/pagefs/check.c", 298)].verdict == "unresolvable"
    assert checkmod._conjuncts("likely(uptodate) && !is_data_inode(inode)")[1] == "!is_data_inode(inode)"  # noqa: SLF001
    assert checkmod._conjuncts("!(a && !is_data_inode(inode))") == []  # noqa: SLF001
    assert checkmod._conjuncts("a || !is_data_inode(inode)") == []  # noqa: SLF001
