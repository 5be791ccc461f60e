"""Fixture tier: exact facts `analyze` extracts from fixtures/minilinux."""

from __future__ import annotations

import pytest
from conftest import MINILINUX

# Every read in the fixture: (file, line, expression, kind, access); a read wrapped in
# READ_ONCE() is the whole call (it is rewritten as one). Checked by
# hand against the sources; fixtures/minilinux/README.md lists the same reads.
# (file, line, expression, kind, access, purpose): purpose is what the code does
# with the value (null-test and flag-test reads stay as they are; identity tests
# become membership tests)
EXPECTED_READS = {
    ("fs/buffer.c", 12, "bh->b_page->mapping", 3, "use", "use"),
    ("fs/buffer.c", 57, "bio->bi_io_vec[i].bv_page->mapping", 3, "use", "use"),
    ("fs/ctxfs/dir.c", 19, "page->mapping", 1, "deref", "derive"),
    ("fs/ctxfs/dir.c", 67, "page->mapping", 1, "deref", "derive"),
    ("fs/ctxfs/file.c", 17, "folio->mapping", 1, "deref", "derive"),
    ("fs/ctxfs/file.c", 31, "folio->mapping", 1, "compare", "identity"),
    ("fs/ctxfs/file.c", 42, "page->mapping", 1, "deref", "derive"),
    ("fs/ctxfs/file.c", 50, "page->mapping", 1, "use", "use"),
    ("fs/ctxfs/file.c", 81, "page->mapping", 1, "deref", "derive"),
    ("fs/ctxfs/file.c", 94, "page->mapping", 3, "use", "null-test"),
    ("fs/ctxfs/file.c", 107, "page->mapping", 1, "use", "null-test"),
    ("fs/ctxfs/file.c", 112, "page->mapping", 1, "use", "flag-test"),
    ("fs/ctxfs/file.c", 118, "page->mapping", 1, "deref", "derive"),
    ("fs/ctxfs/meta.c", 7, "eb->pages[0]->mapping", 1, "deref", "derive"),
    ("fs/ctxfs/meta.c", 13, "page->mapping", 1, "deref", "derive"),
    ("fs/smallfs/dir.c", 9, "page->mapping", 1, "use", "use"),
    ("fs/smallfs/file.c", 8, "page->mapping", 1, "deref", "derive"),
    ("fs/smallfs/file.c", 43, "page->mapping", 1, "use", "use"),
    ("fs/smallfs/inode.c", 7, "folio->mapping", 1, "use", "use"),
    ("fs/smallfs/inode.c", 41, "folio_file_mapping(page_folio(page))", 1, "deref", "derive"),
    ("fs/tinyfs/dir.c", 8, "page->mapping", 1, "deref", "derive"),
    ("fs/tinyfs/file.c", 7, "page->mapping", 1, "deref", "derive"),
    ("fs/tinyfs/file.c", 15, "READ_ONCE(page->mapping)", 1, "deref", "derive"),
    ("fs/tinyfs/file.c", 21, "folio->mapping", 1, "deref", "derive"),
    ("fs/tinyfs/file.c", 47, "folio_mapping(folio)", 1, "compare", "identity"),
    ("fs/tinyfs/file.c", 58, "folio->mapping", 1, "deref", "derive"),
    ("fs/tinyfs/file.c", 66, "(&folio->page)->mapping", 1, "use", "use"),
    ("fs/tinyfs/file.c", 86, "page->mapping", 1, "deref", "derive"),
    ("fs/tinyfs/file.c", 112, "page_file_mapping(page)", 1, "deref", "derive"),
    ("fs/tinyfs/file.c", 133, "page->mapping", 1, "use", "use"),
    ("fs/tinyfs/file.c", 144, "vmf->page->mapping", 1, "compare", "identity"),
    ("fs/tinyfs/file.c", 158, "pages[i]->mapping", 1, "deref", "derive"),
    ("fs/tinyfs/file.c", 176, "page->mapping", 1, "deref", "derive"),
    ("fs/tinyfs/inode.c", 40, "page->mapping", 1, "use", "use"),
    ("fs/tinyfs/inode.c", 52, "page->mapping", 1, "use", "null-test"),
    ("fs/tinyfs/xattr.c", 11, "page->mapping", 1, "deref", "derive"),
    ("fs/tinyfs/xattr.c", 19, "page->mapping", 1, "deref", "derive"),
    ("fs/tinyfs/xattr.c", 31, "page->mapping", 1, "use", "use"),
    ("fs/tinyfs/xattr_inline.h", 10, "page->mapping", 1, "use", "use"),
    ("include/linux/pagemap.h", 26, "folio->mapping", 2, "use", "use"),
    ("include/linux/pagemap.h", 35, "READ_ONCE(page->mapping)", 2, "use", "use"),
    ("include/linux/pagemap.h", 44, "folio->mapping", 2, "use", "use"),
    ("include/linux/pagemap.h", 49, "page->mapping", 2, "use", "use"),
    ("include/linux/pagemap.h", 94, "folio_mapping(folio)", 2, "use", "use"),  # an accessor found from the code
    ("mm/debug.c", 6, "page_mapping(page)", 4, "use", "use"),
    ("mm/debug.c", 9, "page->mapping", 4, "use", "use"),
    ("mm/debug.c", 20, "folio->mapping", 4, "use", "use"),
    ("mm/filemap.c", 81, "folio_mapping(folio)", 1, "use", "use"),
    ("mm/gup.c", 16, "page->mapping", 5, "use", "null-test"),
    ("mm/page-writeback.c", 23, "page->mapping", 1, "compare", "identity"),
    ("mm/page-writeback.c", 69, "page->mapping", 1, "use", "use"),
    ("include/linux/page-flags.h", 19, "folio->mapping", 1, "use", "use"),
    ("mm/readahead.c", 27, "p->mapping", 1, "compare", "identity"),
    ("mm/truncate.c", 8, "folio->mapping", 1, "deref", "derive"),
    ("mm/truncate.c", 40, "page->mapping", 1, "compare", "identity"),
    ("mm/vmscan.c", 7, "folio->mapping", 2, "use", "use"),
    ("mm/vmscan.c", 29, "folio_mapping(folio)", 2, "use", "use"),
    ("mm/vmscan.c", 43, "folio_mapping(folio)", 2, "use", "use"),
    ("mm/vmscan.c", 60, "folio_flush_mapping(folio)", 2, "use", "use"),
    ("mm/vmscan.c", 82, "folio_mapping(folio)", 2, "use", "use"),
    ("fs/pagefs/file.c", 7, "page->mapping", 1, "deref", "derive"),
    ("fs/pagefs/file.c", 27, "page->mapping", 1, "deref", "derive"),
    ("fs/pagefs/file.c", 41, "page->mapping", 1, "deref", "derive"),
    ("fs/pagefs/file.c", 50, "bh->b_page->mapping", 1, "deref", "derive"),
    ("fs/pagefs/file.c", 59, "folio->mapping", 1, "deref", "derive"),
    ("fs/pagefs/file.c", 71, "folio->mapping", 1, "deref", "derive"),
    ("fs/pagefs/file.c", 87, "folio->mapping", 1, "deref", "derive"),
    ("fs/pagefs/file.c", 93, "folio->mapping", 1, "deref", "derive"),
    ("fs/pagefs/file.c", 106, "folio->mapping", 1, "deref", "derive"),
    ("fs/pagefs/file.c", 122, "folio->mapping", 1, "use", "null-test"),
    ("fs/pagefs/file.c", 130, "page->mapping", 1, "use", "use"),
    ("fs/pagefs/file.c", 136, "folio->mapping", 1, "deref", "derive"),
    ("fs/pagefs/file.c", 154, "page->mapping", 1, "deref", "derive"),
    ("fs/pagefs/file.c", 166, "folio->mapping", 1, "deref", "derive"),
    ("fs/pagefs/meta.c", 7, "folio->mapping", 1, "deref", "derive"),
    ("fs/pagefs/buf.c", 7, "bh->b_page->mapping", 1, "deref", "derive"),
    ("fs/pagefs/buf.c", 61, "folio->mapping", 1, "deref", "derive"),
    ("fs/pagefs/buf.c", 85, "page->mapping", 1, "deref", "derive"),
    ("fs/pagefs/buf.c", 102, "bh->b_page->mapping", 1, "deref", "derive"),
    ("fs/pagefs/file.c", 178, "folio->mapping", 1, "deref", "derive"),
    ("fs/pagefs/file.c", 194, "folio_flush_mapping(folio)", 1, "deref", "derive"),
    ("fs/pagefs/file.c", 200, "folio->mapping", 1, "deref", "derive"),
    ("fs/pagefs/file.c", 219, "folio->mapping", 1, "deref", "derive"),
    ("fs/pagefs/file.c", 235, "folio->mapping", 1, "deref", "derive"),
    ("fs/pagefs/file.c", 240, "folio_file_mapping(folio)", 1, "deref", "derive"),
    ("fs/pagefs/meta.c", 18, "page->mapping", 1, "deref", "derive"),
    ("fs/pagefs/check.c", 8, "folio->mapping", 1, "deref", "derive"),
    ("fs/pagefs/check.c", 21, "folio->mapping", 1, "deref", "derive"),
    ("fs/pagefs/check.c", 66, "folio->mapping", 1, "deref", "derive"),
    ("fs/pagefs/check.c", 83, "folio->mapping", 1, "deref", "derive"),
    ("fs/pagefs/check.c", 98, "folio->mapping", 1, "deref", "derive"),
    ("fs/pagefs/check.c", 119, "folio->mapping", 1, "deref", "derive"),
    ("fs/pagefs/check.c", 132, "folio->mapping", 1, "deref", "derive"),
    ("fs/pagefs/check.c", 158, "page->mapping", 1, "deref", "derive"),
    ("fs/pagefs/check.c", 179, "page->mapping", 1, "deref", "derive"),
    ("fs/pagefs/check.c", 214, "folio->mapping", 1, "deref", "derive"),
    ("fs/pagefs/check.c", 246, "page->mapping", 1, "deref", "derive"),
    ("fs/pagefs/check.c", 261, "page->mapping", 1, "deref", "derive"),
    ("fs/pagefs/check.c", 281, "page->mapping", 1, "deref", "derive"),
    ("fs/pagefs/check.c", 298, "pagefs_bio_first(bio)->mapping", 1, "deref", "derive"),
    ("fs/pagefs/tally.c", 10, "folio->mapping", 1, "deref", "derive"),
}


def test_reads_exact(fixture_analysis):
    got = {(r["file"], r["line"], r["expr"], r["kind"], r["access"], r["purpose"])
           for r in fixture_analysis["reads"]}
    assert got == EXPECTED_READS


def test_writes_and_other_structs_are_not_reads(fixture_analysis):
    lines = {(r["file"], r["line"]) for r in fixture_analysis["reads"] + fixture_analysis["candidates"]}
    assert ("mm/truncate.c", 18) not in lines  # folio->mapping = NULL
    assert ("mm/truncate.c", 53) not in lines  # WRITE_ONCE(page->mapping, NULL)
    assert not [ln for f, ln in lines if f.startswith("drivers/")]  # struct mydev's own field


def test_macro_made_function_read_is_a_candidate_not_dropped(fixture_analysis):
    # DECLARE_FILLER(readahead_fill_zero) hides the function and its parameter
    cands = {(r["file"], r["line"], r["expr"]) for r in fixture_analysis["candidates"]}
    assert cands == {("mm/readahead.c", 11, "folio->mapping")}


def test_reads_name_their_function(fixture_analysis):
    by_line = {(r["file"], r["line"]): r for r in fixture_analysis["reads"]}
    assert by_line[("fs/tinyfs/file.c", 144)]["function"] == "tinyfs_fault"
    assert by_line[("fs/tinyfs/dir.c", 8)]["function_id"] == "fs/tinyfs/dir.c::commit_chunk"
    assert by_line[("fs/smallfs/dir.c", 9)]["function_id"] == "fs/smallfs/dir.c::commit_chunk"
    assert by_line[("fs/buffer.c", 12)]["receiver_type"] == "struct page *"
    assert by_line[("fs/tinyfs/file.c", 66)]["receiver_type"] == "struct page *"


def _functions(analysis):
    return {(f["file"], f["name"]): f for f in analysis["functions"]}


@pytest.mark.parametrize(
    "file,name,line,static",
    [
        ("fs/tinyfs/dir.c", "commit_chunk", 6, True),
        ("fs/smallfs/dir.c", "commit_chunk", 7, True),
        ("fs/tinyfs/file.c", "tinyfs_page_valid", 13, True),  # __always_inline __must_check
        ("fs/tinyfs/file.c", "tinyfs_finish_page", 109, True),  # __releases() after params
        ("fs/smallfs/inode.c", "smallfs_init_ops", 74, True),  # __init
        ("fs/smallfs/inode.c", "smallfs_init", 80, False),  # __init
        ("fs/smallfs/file.c", "sys_smallfs_sync", 53, False),  # SYSCALL_DEFINE2
        ("fs/tinyfs/file.c", "tinyfs_walk_folios", 54, True),
        ("mm/filemap.c", "read_cache_page", 30, False),
        ("include/linux/pagemap.h", "page_mapping", 33, True),
    ],
)
def test_function_definitions(fixture_analysis, file, name, line, static):
    fn = _functions(fixture_analysis)[(file, name)]
    assert fn["line"] == line
    assert fn["static"] is static


def test_ifdef_twins_are_one_node_with_two_bodies(fixture_analysis):
    twins = [f for f in fixture_analysis["functions"] if f["name"] == "tinyfs_check_page"]
    assert sorted(f["line"] for f in twins) == [38, 50]
    assert {f["id"] for f in twins} == {"tinyfs_check_page"}


def test_static_name_clash_gives_two_nodes(fixture_analysis):
    ids = {f["id"] for f in fixture_analysis["functions"] if f["name"] == "commit_chunk"}
    assert ids == {"fs/tinyfs/dir.c::commit_chunk", "fs/smallfs/dir.c::commit_chunk"}


def _slots(analysis):
    return {s["id"]: s for s in analysis["slots"]}


def test_slots_and_their_parameters(fixture_analysis):
    slots = _slots(fixture_analysis)
    assert slots["typedef:filler_t"]["params"] == ["struct file *", "struct folio *"]
    assert slots["typedef:writepage_t"]["params"] == ["struct page *", "struct writeback_control *", "void *"]
    assert slots["member:address_space_operations.releasepage"]["params"] == ["struct page *", "int"]
    assert slots["member:address_space_operations.writepage"]["decls"] == [
        {"file": "include/linux/fs.h", "line": 52}
    ]


def test_bindings(fixture_analysis):
    slots = _slots(fixture_analysis)
    # ops table in tinyfs/inode.c binds functions defined in tinyfs/file.c
    assert "tinyfs_read_folio" in slots["member:address_space_operations.read_folio"]["bound"]
    # designated initializers, assignments through a pointer and through a struct
    writepage = slots["member:address_space_operations.writepage"]["bound"]
    assert set(writepage) == {
        "tinyfs_writepage", "fs/smallfs/inode.c::smallfs_writepage",
        "fs/smallfs/inode.c::smallfs_writepage_nobh", "drivers/blockdev/mydev.c::mydev_writepage",
    }
    assert "fs/smallfs/inode.c::smallfs_dirty_folio" in slots["member:address_space_operations.dirty_folio"]["bound"]
    # a function passed through a cast binds to the parameter's typedef slot
    assert "fs/smallfs/inode.c::smallfs_fill_page" in slots["typedef:filler_t"]["bound"]
    assert "mm/page-writeback.c::__writepage" in slots["typedef:writepage_t"]["bound"]
    assert "fs/buffer.c::end_buffer_async_write" in slots["member:buffer_head.b_end_io"]["bound"]


def test_header_stub_twins_the_extern_function(tmp_path):
    """A `static inline` stub under `#else` in a header and the extern function
    it stands in for are two nodes joined by a twin edge; calls go to the extern."""
    from mappingpass import graph as graphmod
    from mappingpass import index as indexmod
    from mappingpass import rules as rulesmod

    rules = rulesmod.load()
    store = indexmod.Store(tmp_path / "db")
    indexmod.index_tree(MINILINUX, [""], rules, store, jobs=1, parse_all=True)
    g = graphmod.build(store.load_facts(), rules).graph
    stub = "fs/tinyfs/tinyfs.h::tinyfs_xattr_page"
    assert g.nodes[stub]["static"] and not g.nodes["tinyfs_xattr_page"]["static"]
    assert g.has_edge(stub, "tinyfs_xattr_page", "twin")
    callers = [a for a, _, _ in graphmod.edges_in(g, "tinyfs_xattr_page", "call")]
    assert callers == ["tinyfs_label_page"]
    assert not graphmod.edges_in(g, stub, "call")
    # the extern prototype beside the stub declares the extern function
    assert g.nodes["tinyfs_xattr_page"]["protos"] == [("fs/tinyfs/tinyfs.h", 40)]
    assert g.nodes[stub]["protos"] == []


def test_summary_counts(fixture_analysis):
    a = fixture_analysis
    assert a["schema"] == "mappingpass.analyze/1"
    assert a["files"]["total"] == 47
    assert a["files"]["skipped"] == 0
    assert a["reads_by_kind"] == {"1": 84, "2": 10, "3": 3, "4": 3, "5": 1}
    assert a["calls"]["slot_call_edges"] >= 10


def test_a_typedef_of_an_anonymous_struct_with_a_function_pointer(tmp_path):
    """`typedef struct { int (*startup)(void *); } kthread_hooks_t;` (the
    fixture's kthread.h): the member is a slot of the typedef's name, and the
    file is parsed, not skipped as "extractor failed"."""
    from mappingpass import rules as rulesmod
    from mappingpass.index.cparse import Extractor

    path = MINILINUX / "include" / "linux" / "kthread.h"
    facts = Extractor(rulesmod.load(None).parse).extract("include/linux/kthread.h", path.read_bytes(), "d")
    (slot,) = [s for s in facts.slots if s.name == "startup"]
    assert (slot.kind, slot.owner, [p.name for p in slot.params]) == ("member", "kthread_hooks_t", ["data"])
    assert ("kthread_hooks_t", "startup", "int (*)()") in {(f.owner, f.name, f.type) for f in facts.fields}


def test_a_call_knows_the_conditions_around_it():
    """Call.guards: the conditions of the if statements around a call,
    innermost first, negated in an else branch (`!name(args)` for a simple
    one); a call in a condition is not guarded by it."""
    from mappingpass import rules as rulesmod
    from mappingpass.index.cparse import Extractor

    src = (b"void f(struct inode *inode, int ok) {\n"
           b" if (likely(ok)) { if (is_data_inode(inode)) { a(); } else { if (g(1)) h(); } }\n"
           b" if (x && y) k(); else m();\n}\n")
    facts = Extractor(rulesmod.load().parse).extract("a.c", src, "d")
    guards = {c.callee: c.guards for c in facts.calls}
    assert guards["a"] == ("is_data_inode(inode)", "likely(ok)")
    assert guards["g"] == ("!is_data_inode(inode)", "likely(ok)")
    assert guards["h"] == ("g(1)", "!is_data_inode(inode)", "likely(ok)")
    assert guards["k"] == ("x && y",) and guards["m"] == ("!(x && y)",)
