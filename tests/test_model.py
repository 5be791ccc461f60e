"""Unit tests and a hypothesis state machine for mappingpass.model."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
)

from mappingpass import model
from mappingpass.model import (
    EIO,
    PG,
    AddressSpace,
    BadContext,
    EvalError,
    EvalSyntaxError,
    Folio,
    HelperError,
    MappingMismatch,
    NullDeref,
    OperationRefused,
    ProtectionViolation,
    UnknownField,
    UnknownName,
    World,
    WriteProtectRecord,
    evaluate,
    folio_mapping_wp,
    folio_owners,
    is_write_protected,
    page_gone,
    page_mapping_wp,
    parse,
    unparse,
)


@pytest.fixture
def w() -> World:
    return World()


def two_files(w: World) -> tuple[AddressSpace, AddressSpace]:
    return w.open(w.inode("a")).f_mapping, w.open(w.inode("b")).f_mapping


# -- objects and page cache -------------------------------------------------------


def test_identity_and_names(w: World) -> None:
    a = w.inode("a")
    f1, f2 = w.open(a), w.open(a)
    assert f1 != f2 and f1.f_mapping is f2.f_mapping is a.i_data is a.i_mapping
    assert a.i_data.host is a
    folio = w.add_to_page_cache(a.i_mapping, 3, b"x")
    assert repr(a) == "inode(a)" and repr(a.i_mapping) == "address_space(a)"
    assert repr(f1) == "file(a)" and repr(folio).startswith("folio(a:3#")
    assert folio.page.folio is folio and folio.page.mapping is a.i_mapping
    folio.page.mapping = None  # the page's field is the folio's field
    assert folio.mapping is None


def test_add_to_page_cache(w: World) -> None:
    a, _ = two_files(w)
    folio = w.add_to_page_cache(a, 2, b"x")
    assert a.i_pages == {2: folio} and folio.mapping is a and folio.index == 2
    assert PG.UPTODATE in folio.flags and not folio.dirty and not folio.protected
    with pytest.raises(OperationRefused):
        w.add_to_page_cache(a, 2, b"y")
    assert folio_owners(folio) == [(a, 2)]


# -- the helper on unprotected pages ----------------------------------------------


def test_helper_unprotected_returns_own_field(w: World) -> None:
    a, b = two_files(w)
    folio = w.add_to_page_cache(a, 0)
    assert page_mapping_wp(folio.page, a) is a
    assert folio_mapping_wp(folio, a) is a
    with pytest.raises(MappingMismatch, match=r"address_space\(b\)"):
        page_mapping_wp(folio.page, b)
    with pytest.raises(BadContext):
        page_mapping_wp(folio.page, None)
    with pytest.raises(BadContext):
        page_mapping_wp(folio.page, w.files[0])  # a file is not an address_space


def test_helper_rejects_record_context(w: World) -> None:
    a, b = two_files(w)
    record = w.write_protect([w.add_to_page_cache(a, 0), w.add_to_page_cache(b, 0)])
    with pytest.raises(BadContext, match="circular"):
        page_mapping_wp(record.primary.page, record)
    plain = w.add_to_page_cache(a, 1)
    with pytest.raises(BadContext):
        page_mapping_wp(plain.page, record)


# -- write protection -------------------------------------------------------------


def test_write_protect_merges(w: World) -> None:
    a, b = two_files(w)
    c = w.open(w.inode("c")).f_mapping
    fa, fb = w.add_to_page_cache(a, 0, b"same"), w.add_to_page_cache(b, 5, b"same")
    vma = w.mmap(w.files[1], 5, 1)
    w.fault(vma, 5)
    assert vma.ptes[5] is fb
    record = w.write_protect([fa, fb.page])
    assert fa.mapping is record and fa.page.mapping is record and is_write_protected(fa)
    assert record.owners == [(a, 0), (b, 5)] and record.primary is fa
    assert a.i_pages[0] is fa and b.i_pages[5] is fa
    assert fb.mapping is None  # the merged-away copy is freed
    assert vma.ptes[5] is fa  # replace_page
    assert page_mapping_wp(fa.page, a) is a and page_mapping_wp(fa.page, b) is b
    with pytest.raises(MappingMismatch, match="not an owner"):
        page_mapping_wp(fa.page, c)
    assert page_gone(fb, b)  # a reader still holding the old copy retries
    assert folio_owners(fa) == [(a, 0), (b, 5)] and folio_owners(fb) == []


def test_write_protect_into_existing_record(w: World) -> None:
    a, b = two_files(w)
    record = w.write_protect([w.add_to_page_cache(a, 0, b"z")])
    fb = w.add_to_page_cache(b, 1, b"z")
    assert w.write_protect([fb], into=record) is record
    assert record.owners == [(a, 0), (b, 1)] and b.i_pages[1] is record.primary
    with pytest.raises(OperationRefused, match="content"):
        w.write_protect([w.add_to_page_cache(b, 2, b"other")], into=record)


@pytest.mark.parametrize("state", ["dirty", "writeback", "pinned", "content", "buffers",
                                   "protected", "duplicate"])
def test_write_protect_refusals_change_nothing(w: World, state: str) -> None:
    a, b = two_files(w)
    fa, fb = w.add_to_page_cache(a, 0, b"s"), w.add_to_page_cache(b, 0, b"s")
    if state == "dirty":
        w.mark_dirty(fb)
    elif state == "writeback":
        w.mark_dirty(fb)
        w.start_writeback(fb)
    elif state == "pinned":
        w.gup(w.mmap(w.files[1]), 0)
    elif state == "content":
        fb.data = b"t"
    elif state == "buffers":
        w.attach_buffers(fb, w.blockdev("sda"))[0].b_count = 1
    elif state == "protected":
        w.write_protect([fb])
    elif state == "duplicate":
        fb = fa
    before = (dict(a.i_pages), dict(b.i_pages), fa.mapping, fb.mapping, list(w.records))
    with pytest.raises(OperationRefused):
        w.write_protect([fa, fb])
    assert (dict(a.i_pages), dict(b.i_pages), fa.mapping, fb.mapping, list(w.records)) == before


def test_clean_buffers_are_released_on_protect(w: World) -> None:
    a, b = two_files(w)
    fa, fb = w.add_to_page_cache(a, 0), w.add_to_page_cache(b, 0)
    (bh,) = w.attach_buffers(fa, w.blockdev("sda"))
    w.write_protect([fa, fb])
    assert fa.buffers == [] and bh.b_page is None
    with pytest.raises(NullDeref):
        evaluate("bh->b_page->mapping", {"bh": bh})
    with pytest.raises(OperationRefused):
        w.attach_buffers(fa, w.bdevs[0])


def test_protected_page_cannot_be_dirtied_or_written_back(w: World) -> None:
    a, _ = two_files(w)
    record = w.write_protect([w.add_to_page_cache(a, 0)])
    with pytest.raises(ProtectionViolation):
        w.mark_dirty(record.primary)
    with pytest.raises(ProtectionViolation):
        w.start_writeback(record.primary)


def test_duplicate_per_node(w: World) -> None:
    a, b = two_files(w)
    record = w.write_protect([w.add_to_page_cache(a, 0, b"d"), w.add_to_page_cache(b, 0, b"d")])
    replica = w.duplicate(record, 1)
    assert w.duplicate(record, 1) is replica and replica.nid == 1 and replica.data == b"d"
    assert replica.mapping is record and replica.protected
    assert page_mapping_wp(replica.page, b) is b
    vma0, vma1 = w.mmap(w.files[0], nid=0), w.mmap(w.files[1], nid=1)
    assert w.fault(vma0, 0).page is record.primary.page
    assert w.fault(vma1, 0).page is replica.page
    assert w.read(w.files[1], 0, nid=1) is replica


def test_break_protection(w: World) -> None:
    a, b = two_files(w)
    record = w.write_protect([w.add_to_page_cache(a, 0, b"q"), w.add_to_page_cache(b, 0, b"q")])
    old = record.primary
    vmas = [w.mmap(w.files[0]), w.mmap(w.files[0]), w.mmap(w.files[1])]
    for vma in vmas:
        w.fault(vma, 0)
    vmf = w.fault(vmas[0], 0, write=True)  # do_wp_page
    private = vmf.page.folio
    assert private is not old and private.mapping is a and a.i_pages[0] is private
    assert private.dirty and private.data == b"q" and not private.protected
    assert record.owners == [(b, 0)]
    assert 0 not in vmas[1].ptes  # the other VMA of `a` no longer maps the shared copy
    assert vmas[2].ptes[0] is old
    assert page_mapping_wp(old.page, a) is None and page_gone(old, a)
    assert page_mapping_wp(old.page, b) is b
    (last,) = w.unprotect(record)
    assert last.mapping is b and record.dissolved and record not in w.records
    assert old.mapping is None and w.records == []
    with pytest.raises(OperationRefused):
        w.break_protection(b, 0)


def test_write_syscall_breaks_protection(w: World) -> None:
    a, b = two_files(w)
    record = w.write_protect([w.add_to_page_cache(a, 0), w.add_to_page_cache(b, 0)])
    folio = w.write(w.files[1], 0, b"new")
    assert folio.mapping is b and folio.dirty and folio.data == b"new"
    assert record.owners == [(a, 0)] and record.primary.data == b""


def test_gup_for_write_breaks_and_read_pin_does_not(w: World) -> None:
    a, b = two_files(w)
    record = w.write_protect([w.add_to_page_cache(a, 0), w.add_to_page_cache(b, 0)])
    va, vb = w.mmap(w.files[0]), w.mmap(w.files[1])
    pinned = w.gup(va, 0)
    assert pinned is record.primary and pinned.pins == 1 and pinned.write_pins == 0
    wpinned = w.gup(vb, 0, write=True)
    assert wpinned.mapping is b and not wpinned.protected and wpinned.write_pins == 1
    with pytest.raises(OperationRefused):
        w.write_protect([wpinned], into=record)
    w.unpin(wpinned, write=True)
    with pytest.raises(OperationRefused):
        w.unpin(wpinned)
    with pytest.raises(OperationRefused, match="pinned"):
        w.reclaim(pinned)


def test_truncate_unprotected_and_protected(w: World) -> None:
    a, b = two_files(w)
    plain = w.add_to_page_cache(a, 1)
    w.mark_dirty(plain)
    (bh,) = w.attach_buffers(plain, w.blockdev("sda"))
    record = w.write_protect([w.add_to_page_cache(a, 0), w.add_to_page_cache(b, 0)])
    shared = record.primary
    assert w.truncate(a) == [shared, plain]
    assert a.i_pages == {} and plain.mapping is None and not plain.dirty and bh.b_page is None
    assert page_mapping_wp(plain.page, a) is None and page_gone(plain, a)
    assert page_mapping_wp(shared.page, a) is None and page_gone(shared, a)
    assert page_mapping_wp(shared.page, b) is b and not page_gone(shared, b)
    w.truncate(b)
    assert shared.mapping is None and record.dissolved and page_gone(shared, b)


def test_one_mapping_owning_a_page_at_two_indices(w: World) -> None:
    """Two identical blocks of one file share a record: the index disambiguates."""
    a, _ = two_files(w)
    record = w.write_protect([w.add_to_page_cache(a, 0, b"0"), w.add_to_page_cache(a, 7, b"0")])
    page = record.primary.page
    assert page_mapping_wp(page, a, 0) is a and page_mapping_wp(page, a, 7) is a
    with pytest.raises(MappingMismatch, match=r"\[3\] is not an owner"):
        page_mapping_wp(page, a, 3)
    w.truncate(a, 5)
    assert page_gone(page, a, 7) and page_mapping_wp(page, a, 7) is None
    assert not page_gone(page, a, 0) and page_mapping_wp(page, a) is a  # any index
    plain = w.add_to_page_cache(a, 2)
    assert page_mapping_wp(plain.page, a, 2) is a
    with pytest.raises(MappingMismatch):
        page_mapping_wp(plain.page, a, 3)


def test_truncate_from_start(w: World) -> None:
    a, _ = two_files(w)
    folios = [w.add_to_page_cache(a, i) for i in range(4)]
    assert w.truncate(a, 2) == folios[2:]
    assert list(a.i_pages) == [0, 1]


def test_reclaim_reaches_every_owner(w: World) -> None:
    a, b = two_files(w)
    c = w.open(w.inode("c")).f_mapping
    record = w.write_protect([w.add_to_page_cache(m, i, b"r") for m, i in ((a, 0), (b, 2), (c, 1))])
    w.duplicate(record, 1)
    vmas = [w.mmap(f, 0, 3, nid=n) for f in w.files for n in (0, 1)]
    slot = {a: 0, b: 2, c: 1}
    for vma in vmas:
        w.fault(vma, slot[vma.vm_file.f_mapping])
    assert sum(len(v.ptes) for v in vmas) == 6
    assert w.reclaim(w.duplicate(record, 1)) == [(a, 0), (b, 2), (c, 1)]
    assert all(not v.ptes for v in vmas) and not a.i_pages and not b.i_pages and not c.i_pages
    assert all(f.mapping is None for f in record.replicas.values())


def test_reclaim_unprotected(w: World) -> None:
    a, _ = two_files(w)
    folio = w.add_to_page_cache(a, 0)
    w.mark_dirty(folio)
    with pytest.raises(OperationRefused):
        w.reclaim(folio)
    w.start_writeback(folio)
    w.end_writeback(folio)
    vma = w.mmap(w.files[0])
    w.fault(vma, 0)
    assert w.reclaim(folio) == [(a, 0)]
    assert folio.mapping is None and not vma.ptes and not a.i_pages


def test_steal_moves_the_page(w: World) -> None:
    a, b = two_files(w)
    folio = w.add_to_page_cache(a, 0, b"p")
    assert w.steal(folio, b, 4) is folio
    assert folio.mapping is b and folio.index == 4 and b.i_pages == {4: folio} and not a.i_pages
    with pytest.raises(MappingMismatch):
        page_mapping_wp(folio.page, a)
    record = w.write_protect([folio])
    with pytest.raises(OperationRefused):
        w.steal(record.primary, a, 0)


def test_writeback_error_without_buffers(w: World) -> None:
    a, _ = two_files(w)
    folio = w.write(w.files[0], 0, b"x")
    w.start_writeback(folio)
    assert folio.writeback and not folio.dirty
    w.end_writeback(folio, -EIO)
    assert a.wb_err == -EIO and not folio.writeback and PG.ERROR in folio.flags


def test_buffer_io_error_goes_to_the_buffer_heads_mapping(w: World) -> None:
    a, _ = two_files(w)
    assoc = w.open(w.inode("dir")).f_mapping
    sda = w.blockdev("sda")
    folio = w.write(w.files[0], 0, b"x")
    bh1, bh2 = w.attach_buffers(folio, sda, 2)
    bh2.b_assoc_map = assoc
    assert bh1.b_mapping is a and bh1.dirty and bh1.b_bdev is sda
    w.start_writeback(folio)
    with pytest.raises(OperationRefused):
        w.end_writeback(folio)
    w.end_buffer_async_write(bh1, uptodate=True)
    assert folio.writeback and a.wb_err == 0
    w.end_buffer_async_write(bh2, uptodate=False)
    assert not folio.writeback and bh2.write_io_error
    assert a.wb_err == -EIO and assoc.wb_err == -EIO and sda.bd_mapping.wb_err == 0
    with pytest.raises(OperationRefused):
        w.end_buffer_async_write(bh2, uptodate=True)


# -- the evaluator ----------------------------------------------------------------


@pytest.fixture
def env(w: World) -> dict[str, object]:
    inode = w.inode("foo")
    file = w.open(inode)
    folio = w.add_to_page_cache(inode.i_mapping, 0)
    (bh,) = w.attach_buffers(folio, w.blockdev("sda"))
    vma = w.mmap(file)
    vmf = w.fault(vma, 0)
    return {"file": file, "inode": inode, "folio": folio, "page": folio.page, "bh": bh,
            "iocb": w.kiocb(file), "mapping": inode.i_mapping, "vma": vma, "vmf": vmf,
            "pages": [folio.page], "bdev": w.bdevs[0], "bd": w.bdevs[0].bd_mapping}


@pytest.mark.parametrize("expr, expected", [
    ("file->f_mapping", "mapping"),
    ("iocb->ki_filp->f_mapping", "mapping"),
    ("inode->i_mapping", "mapping"),
    ("&inode->i_data", "mapping"),
    ("inode->i_data", "mapping"),
    ("mapping", "mapping"),
    ("page->mapping", "mapping"),
    ("bh->b_page->mapping", "mapping"),
    ("bh->b_folio->mapping", "mapping"),
    ("bh->b_mapping", "mapping"),
    ("(&folio->page)->mapping", "mapping"),
    ("folio->page.mapping", "mapping"),
    ("vma->vm_file->f_mapping", "mapping"),
    ("vmf->vma->vm_file->f_mapping", "mapping"),
    ("vmf->page->mapping", "mapping"),
    ("pages[0]->mapping", "mapping"),
    ("file_inode(file)->i_mapping", "mapping"),
    ("page_folio(page)->mapping", "mapping"),
    ("folio_mapping(folio)", "mapping"),
    ("mapping->host", "inode"),
    ("file->f_inode", "inode"),
    ("&folio->page", "page"),
    ("folio_page(folio, 0)", "page"),
    ("bh->b_page", "page"),
    ("page_folio(bh->b_page)", "folio"),
    ("NULL", None),
    ("page->index", 0),
    ("bdev->bd_inode->i_mapping", "bd"),
    ("bh->b_bdev->bd_mapping", "bd"),
])
def test_evaluate_paths(env: dict[str, object], expr: str, expected: object) -> None:
    want = env[expected] if isinstance(expected, str) else expected
    assert evaluate(expr, env) is want


def test_evaluate_protected_page_mapping_is_the_record(w: World) -> None:
    a, b = two_files(w)
    record = w.write_protect([w.add_to_page_cache(a, 0), w.add_to_page_cache(b, 0)])
    assert evaluate("page->mapping", {"page": record.primary.page}) is record
    assert isinstance(evaluate("folio->mapping", {"folio": record.primary}), WriteProtectRecord)


@pytest.mark.parametrize("expr, pointer", [
    ("file->f_mapping", "file"),
    ("file->f_inode->i_mapping", "file"),
    ("iocb->ki_filp->f_mapping", "iocb->ki_filp"),
    ("(&folio->page)->mapping", "folio"),
    ("file_inode(file)", "file"),
    ("NULL->mapping", "NULL"),
    ("pages[0]", "pages"),
])
def test_null_deref_names_the_expression(w: World, expr: str, pointer: str) -> None:
    env = {"file": None, "iocb": w.kiocb(None), "folio": None, "pages": None}
    with pytest.raises(NullDeref) as info:
        evaluate(expr, env)
    assert info.value.pointer == pointer and info.value.expr in expr
    assert pointer in str(info.value)


def test_null_deref_reports_the_faulting_access(w: World) -> None:
    with pytest.raises(NullDeref) as info:
        evaluate("iocb->ki_filp->f_mapping", {"iocb": w.kiocb(None)})
    assert info.value.expr == "iocb->ki_filp->f_mapping"


@pytest.mark.parametrize("expr, error", [
    ("file->i_mapping", UnknownField),
    ("file->__class__", UnknownField),
    ("file->lower", UnknownField),  # model bookkeeping is not a kernel field
    ("nope", UnknownName),
    ("frob(file)", UnknownName),
    ("file_inode(file, file)", EvalError),
    ("&file->f_mapping", EvalError),
    ("&file", EvalError),
    ("file->", EvalSyntaxError),
    ("file->f_mapping)", EvalSyntaxError),
    ("file - f_mapping", EvalSyntaxError),
    ("page->index->x", EvalError),
    ("pages[3]", EvalError),
    ("page_folio(file)", EvalError),
])
def test_evaluate_errors(env: dict[str, object], expr: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        evaluate(expr, env)


def test_unknown_field_message_is_clear(env: dict[str, object]) -> None:
    with pytest.raises(UnknownField, match=r"file\(foo\) has no field 'i_mapping'.*f_mapping"):
        evaluate("file->i_mapping", env)


@pytest.mark.parametrize("text", ["(&folio->page)->mapping", "iocb->ki_filp->f_mapping",
                                  "&inode->i_data", "pages[i]->mapping", "page_folio(page)->index",
                                  "inode->i_data.host"])
def test_parse_unparse_roundtrip(text: str) -> None:
    assert unparse(parse(text)) == text
    assert parse(unparse(parse(text))) == parse(text)


# -- hypothesis: random operation sequences ---------------------------------------

NPAGES = 3
FILES = st.integers(0, 4)
MAPS = st.integers(0, 3)
INDEX = st.integers(0, NPAGES - 1)
DATA = st.sampled_from([b"a", b"b"])
NODE = st.integers(0, 1)


class WriteProtectMachine(RuleBasedStateMachine):
    """Random sequences of every operation; the invariants hold after each step."""

    def __init__(self) -> None:
        super().__init__()
        self.w = w = World()
        self.files = [w.open(w.inode(f"f{i}")) for i in range(3)]
        self.bdev = w.blockdev("sda")
        self.files.append(w.open_blockdev(w.inode("dev-sda"), self.bdev))
        self.files.append(w.open_stacked(w.inode("coda"), self.files[0]))
        self.maps = [f.f_mapping for f in self.files[:4]]
        self.vmas = [w.mmap(f, 0, NPAGES, nid=i % 2) for i, f in enumerate(self.files)]
        self.pins: list[tuple[Folio, bool]] = []

    # helpers
    def slot(self, mi: int, index: int) -> Folio | None:
        return self.maps[mi].i_pages.get(index)

    def state(self) -> object:
        """Everything a refused operation must leave unchanged."""
        return ([dict(m.i_pages) for m in self.w.mappings],
                [(f.mapping, f.index, frozenset(f.flags), f.pins) for f in self.w.folios],
                [dict(v.ptes) for v in self.w.vmas], list(self.w.records))

    # rules
    @initialize(contents=st.lists(DATA, min_size=4 * NPAGES, max_size=4 * NPAGES))
    def populate(self, contents: list[bytes]) -> None:
        for k, data in enumerate(contents):
            self.w.add_to_page_cache(self.maps[k // NPAGES], k % NPAGES, data)

    @rule(data=DATA, picks=st.lists(st.integers(0, 4 * NPAGES), min_size=2, max_size=4))
    def protect_identical(self, data: bytes, picks: list[int]) -> None:
        """Merge some of the mergeable folios with this content (KSM's scan)."""
        candidates = [f for m in self.maps for f in m.i_pages.values()
                      if f.data == data and not (f.protected or f.dirty or f.writeback or f.pins)]
        chosen = list({id(c): c for c in (candidates[p % len(candidates)] for p in picks
                                          if candidates)}.values())
        if not chosen:
            return
        owners = [(f.mapping, f.index) for f in chosen]
        record = self.w.write_protect(chosen)
        event(f"protected {len(owners)} owner(s)")
        assert record.owners == owners
        for mapping, _ in owners:
            assert page_mapping_wp(record.primary.page, mapping) is mapping

    @rule(mi=MAPS, index=INDEX, data=DATA)
    def add(self, mi: int, index: int, data: bytes) -> None:
        if self.slot(mi, index) is None:
            folio = self.w.add_to_page_cache(self.maps[mi], index, data)
            assert page_mapping_wp(folio.page, self.maps[mi]) is self.maps[mi]

    @rule(fi=FILES, index=INDEX, nid=NODE)
    def read(self, fi: int, index: int, nid: int) -> None:
        mapping = self.files[fi].f_mapping
        folio = self.w.read(self.files[fi], index, nid=nid)
        assert page_mapping_wp(folio.page, mapping) is mapping

    @rule(fi=FILES, index=INDEX, data=DATA)
    def write(self, fi: int, index: int, data: bytes) -> None:
        mapping = self.files[fi].f_mapping
        before = mapping.i_pages.get(index)
        try:
            folio = self.w.write(self.files[fi], index, data)
        except OperationRefused:
            assert before is not None and before.writeback
            return
        assert mapping.i_pages[index] is folio and folio.mapping is mapping
        assert folio.dirty and folio.data == data and not folio.protected

    @rule(slots=st.lists(st.tuples(MAPS, INDEX), min_size=1, max_size=3, unique=True))
    def protect(self, slots: list[tuple[int, int]]) -> None:
        folios = [f for mi, i in slots if (f := self.slot(mi, i)) is not None]
        if not folios:
            return
        refusable = (len({id(f) for f in folios}) < len(folios) or any(
            f.protected or f.dirty or f.writeback or f.pins or f.data != folios[0].data
            for f in folios))
        owners = [(f.mapping, f.index) for f in folios]
        before = self.state()
        try:
            record = self.w.write_protect(folios)
        except OperationRefused:
            assert refusable
            assert self.state() == before
            return
        assert not refusable
        event(f"protected {len(owners)} owner(s)")
        assert record.owners == owners and record.primary.mapping is record
        assert all(m.i_pages[i] is record.primary for m, i in owners)

    @rule(ri=st.integers(0, 3), mi=MAPS, index=INDEX)
    def join(self, ri: int, mi: int, index: int) -> None:
        folio = self.slot(mi, index)
        if not self.w.records or folio is None:
            return
        record = self.w.records[ri % len(self.w.records)]
        before = self.state()
        try:
            self.w.write_protect([folio], into=record)
        except OperationRefused:
            assert folio.protected or folio.dirty or folio.writeback or folio.pins or (
                folio.data != record.data)
            assert self.state() == before
            return
        assert self.maps[mi].i_pages[index] is record.primary and record.owns(self.maps[mi])

    @rule(ri=st.integers(0, 3), nid=NODE)
    def duplicate(self, ri: int, nid: int) -> None:
        if self.w.records:
            record = self.w.records[ri % len(self.w.records)]
            assert self.w.duplicate(record, nid).mapping is record

    @rule(pick=st.integers(0, 20))
    def break_protection(self, pick: int) -> None:
        owners = [(r, m, i) for r in self.w.records for m, i in r.owners]
        if not owners:
            return
        record, mapping, index = owners[pick % len(owners)]
        old = mapping.i_pages[index]
        folio = self.w.break_protection(mapping, index)
        event("break protection")
        assert folio.mapping is mapping and folio.index == index and not folio.protected
        assert mapping.i_pages[index] is folio and (mapping, index) not in record.owners
        assert page_mapping_wp(folio.page, mapping) is mapping
        # the old protected page is gone for this owner (at this index)
        assert page_mapping_wp(old.page, mapping, index) is None and page_gone(old, mapping, index)
        assert page_mapping_wp(old.page, mapping) is (mapping if record.owns(mapping) else None)

    @rule(vi=FILES, pgoff=INDEX, write=st.booleans())
    def fault(self, vi: int, pgoff: int, write: bool) -> None:
        vma = self.vmas[vi]
        try:
            vmf = self.w.fault(vma, pgoff, write=write)
        except OperationRefused:
            assert write and vma.vm_file.f_mapping.i_pages[pgoff].writeback
            return
        folio = vmf.page.folio
        assert vma.ptes[pgoff] is folio
        if write:
            assert folio.dirty and not folio.protected
        elif (record := folio.record) is not None:
            assert folio is record.page_for(vma.nid)

    @rule(vi=FILES, pgoff=INDEX, write=st.booleans())
    def gup(self, vi: int, pgoff: int, write: bool) -> None:
        try:
            folio = self.w.gup(self.vmas[vi], pgoff, write=write)
        except OperationRefused:
            return
        assert not (write and folio.protected)
        self.pins.append((folio, write))

    @rule()
    def unpin(self) -> None:
        if not self.pins:
            return
        folio, write = self.pins.pop(0)
        self.w.unpin(folio, write=write)

    @rule(mi=MAPS, index=INDEX)
    def attach_buffers(self, mi: int, index: int) -> None:
        folio = self.slot(mi, index)
        if folio is not None and not folio.protected and not folio.buffers:
            bhs = self.w.attach_buffers(folio, self.bdev, 2)
            assert all(bh.b_mapping is self.maps[mi] for bh in bhs)

    @rule(mi=MAPS, index=INDEX)
    def start_writeback(self, mi: int, index: int) -> None:
        folio = self.slot(mi, index)
        if folio is not None and folio.dirty and not folio.writeback:
            self.w.start_writeback(folio)
            assert folio.writeback and not folio.dirty

    @rule(mi=MAPS, index=INDEX, error=st.booleans())
    def end_writeback(self, mi: int, index: int, error: bool) -> None:
        mapping, folio = self.maps[mi], self.slot(mi, index)
        if folio is None or not folio.writeback:
            return
        mapping.wb_err = 0
        in_flight = [bh for bh in folio.buffers if bh.async_write]
        for bh in in_flight:
            self.w.end_buffer_async_write(bh, uptodate=not error)
        if not in_flight:
            self.w.end_writeback(folio, -EIO if error else 0)
        assert not folio.writeback
        assert mapping.wb_err == (-EIO if error else 0)

    @rule(mi=MAPS, start=INDEX)
    def truncate(self, mi: int, start: int) -> None:
        mapping = self.maps[mi]
        indices = sorted(i for i in mapping.i_pages if i >= start)
        staying = {i: [(m, j) for m, j in folio_owners(mapping.i_pages[i])
                       if not (m is mapping and j >= start)] for i in indices}
        removed = self.w.truncate(mapping, start)
        assert len(removed) == len(indices) and all(i < start for i in mapping.i_pages)
        for index, folio in zip(indices, removed, strict=True):
            event(f"truncated, protected={folio.record is not None}")
            # the truncation check of a reader that looked the page up at index
            assert page_gone(folio, mapping, index)
            assert page_mapping_wp(folio.page, mapping, index) is None
            for other, j in staying[index]:  # the other owners still have it
                assert page_mapping_wp(folio.page, other, j) is other
                assert not page_gone(folio, other, j)

    @rule(pick=st.integers(0, 20))
    def reclaim(self, pick: int) -> None:
        cached = [f for m in self.maps for f in m.i_pages.values()]
        if not cached:
            return
        folio = cached[pick % len(cached)]
        owners = folio_owners(folio)
        protected = folio.protected
        pages = list(folio.record.replicas.values()) if folio.record else [folio]
        before = self.state()
        try:
            visited = self.w.reclaim(folio)
        except OperationRefused:
            assert any(p.pins for p in pages) or folio.dirty or folio.writeback or any(
                bh.b_count for bh in folio.buffers)
            assert self.state() == before
            return
        event(f"reclaimed {len(owners)} owner(s), protected={protected}")
        assert visited == owners  # the reverse map reached every owner mapping
        for page in pages:
            assert page.mapping is None
            assert not any(f is page for v in self.w.vmas for f in v.ptes.values())
            assert not any(f is page for m in self.w.mappings for f in m.i_pages.values())

    @rule(mi=MAPS, index=INDEX, to=MAPS, to_index=INDEX)
    def steal(self, mi: int, index: int, to: int, to_index: int) -> None:
        folio, old, new = self.slot(mi, index), self.maps[mi], self.maps[to]
        if folio is None or folio.protected or folio.dirty or folio.writeback or folio.pins:
            return
        if to_index in new.i_pages:
            return
        self.w.steal(folio, new, to_index)
        assert page_mapping_wp(folio.page, new) is new
        if new is not old:
            with pytest.raises(MappingMismatch):
                page_mapping_wp(folio.page, old)
            assert page_gone(folio, old)

    # invariants
    @invariant()
    def page_cache_slots_are_owned(self) -> None:
        for mapping in self.w.mappings:
            for index, folio in mapping.i_pages.items():
                if (record := folio.record) is not None:
                    assert (mapping, index) in record.owners and folio is record.primary
                else:
                    assert folio.mapping is mapping and folio.index == index
                assert page_mapping_wp(folio.page, mapping, index) is mapping

    @invariant()
    def helper_never_returns_a_non_owner(self) -> None:
        for folio in self.w.folios:
            if not folio.protected:  # unprotected: exactly today's behaviour
                assert page_mapping_wp(folio.page, folio.mapping) is folio.mapping
            owner_maps = [m for m, _ in folio_owners(folio)]
            for mapping in self.w.mappings:
                try:
                    got = page_mapping_wp(folio.page, mapping)
                except HelperError:
                    assert not any(m is mapping for m in owner_maps)
                    continue
                assert got is None or (got is mapping and any(m is mapping for m in owner_maps))
                assert (got is mapping) == any(m is mapping for m in owner_maps)

    @invariant()
    def protected_pages_are_clean_and_unpinned_for_write(self) -> None:
        for folio in self.w.folios:
            if (record := folio.record) is not None:
                assert record in self.w.records and not record.dissolved and record.owners
                assert not (folio.dirty or folio.writeback or folio.write_pins or folio.buffers)
                assert folio.data == record.data
        for record in self.w.records:
            assert all(r.mapping is record for r in record.replicas.values())

    @invariant()
    def mapped_pages_belong_to_the_vma_mapping(self) -> None:
        for vma in self.w.vmas:
            mapping = vma.vm_file.f_mapping
            for pgoff, folio in vma.ptes.items():
                assert page_mapping_wp(folio.page, mapping) is mapping
                slot = mapping.i_pages[pgoff]
                assert folio is slot or (folio.record is not None and folio.record is slot.record)


TestWriteProtectMachine = WriteProtectMachine.TestCase
TestWriteProtectMachine.settings = settings(
    max_examples=120, stateful_step_count=30, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


# -- what the check interpreter needs: dentries, carriers, opaque structs, membership ----------


def test_dentry_parent_and_d_inode(w: World) -> None:
    from mappingpass.model import Dentry

    parent = Dentry("dir", w.inode("dir"))
    child = Dentry("name", w.inode("child"), parent)
    env = {"dentry": child}
    assert evaluate("d_inode(dentry->d_parent)", env) is parent.d_inode
    assert evaluate("d_inode(dentry)->i_mapping", env) is child.d_inode.i_mapping
    assert evaluate("dentry->d_parent->d_inode->i_mapping", env) is not child.d_inode.i_mapping
    with pytest.raises(EvalError):
        evaluate("d_inode(dentry->d_inode)", env)  # an inode is not a dentry


def test_readahead_control_carries_its_mapping(w: World) -> None:
    from mappingpass.model import ReadaheadControl

    mapping = w.inode("f").i_mapping
    rac = ReadaheadControl("rac", mapping)
    assert evaluate("rac->mapping", {"rac": rac}) is mapping
    assert evaluate("rac->file", {"rac": rac}) is None  # in-kernel readers have no file
    with pytest.raises(NullDeref):
        evaluate("rac->file->f_mapping", {"rac": rac})


def test_opaque_struct_members_are_fresh_and_stable(w: World) -> None:
    from mappingpass.model import Opaque

    made: list[str] = []

    def make(member: str) -> object:
        made.append(member)
        return w.inode(f"iter->{member}")

    it = Opaque("iter", "struct iomap_iter", frozenset({"inode", "private"}), make)
    first = evaluate("iter->inode", {"iter": it})
    assert evaluate("iter->inode", {"iter": it}) is first and made == ["inode"]  # one object a member
    assert evaluate("iter->private", {"iter": it}) is not first
    with pytest.raises(UnknownField):
        evaluate("iter->pos", {"iter": it})  # not a member of its C type


def test_unknown_values_are_neither_right_nor_wrong() -> None:
    from mappingpass.model import NotInterpreted, Unknown

    with pytest.raises(NotInterpreted):
        evaluate("x->i_mapping", {"x": Unknown("an unknown function's result")})
    assert not issubclass(NotInterpreted, HelperError)  # never a refutation


def test_membership_is_ownership_of_the_record(w: World) -> None:
    from mappingpass.model import folio_in_mapping, page_in_mapping

    a, b = two_files(w)
    c = w.inode("c").i_mapping
    fa, fb = w.add_to_page_cache(a, 0, b"x"), w.add_to_page_cache(b, 3, b"x")
    plain = w.add_to_page_cache(c, 1, b"y")
    # the truncation check before protection: the page's own field
    assert folio_in_mapping(fa, a) and not folio_in_mapping(fa, b)
    w.write_protect([fa, fb])
    # after: every owner of the record, whatever the page's field says now
    assert isinstance(fa.mapping, WriteProtectRecord)
    assert folio_in_mapping(fa, a) and folio_in_mapping(fa, b) and page_in_mapping(fa.page, b)
    assert not folio_in_mapping(fa, c) and not folio_in_mapping(fa, fa.mapping)
    assert folio_in_mapping(plain, c) and not folio_in_mapping(plain, None)
    # the context helper's view of the same identity test loops: a protected
    # page's field never equals the mapping
    assert fa.mapping is not a
    w.truncate(b)
    assert not folio_in_mapping(fa, b) and folio_in_mapping(fa, a)  # b left the record


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(owners=st.integers(min_value=2, max_value=5), others=st.integers(min_value=0, max_value=3))
def test_membership_holds_for_exactly_the_owners(owners: int, others: int) -> None:
    w = World()
    mine = [w.inode(f"o{i}").i_mapping for i in range(owners)]
    strangers = [w.inode(f"s{i}").i_mapping for i in range(others)]
    folios = [w.add_to_page_cache(m, i, b"same") for i, m in enumerate(mine)]
    w.write_protect(folios)
    record = folios[0].mapping
    assert isinstance(record, WriteProtectRecord)
    for f in record.replicas.values():  # the merged page every owner's slot points at
        assert all(page_in_mapping_of(f, m) for m in mine)
        assert not any(page_in_mapping_of(f, m) for m in strangers)


def page_in_mapping_of(folio: Folio, mapping: AddressSpace) -> bool:
    from mappingpass.model import folio_in_mapping

    return folio_in_mapping(folio, mapping)


def test_flag_bits_of_a_protected_file_page_are_those_of_a_file_page():
    """A flag test (folio_test_anon(), PageMovable()) on a protected page: the
    record's pointer carries no PAGE_MAPPING_* bits, so it still says "file
    page"; a field holding something the model cannot tag is an error."""
    w = World()
    fa = w.add_to_page_cache(w.inode("a").i_mapping, 0, b"x")
    fb = w.add_to_page_cache(w.inode("b").i_mapping, 0, b"x")
    assert model.folio_mapping_flags(fa) == 0
    w.write_protect([fa, fb])
    assert fa.protected and model.page_mapping_flags(fa.page) == 0
    assert not model.folio_mapping_flags(fa) & model.PAGE_MAPPING_FLAGS
    fa.mapping = object()
    with pytest.raises(model.BadContext):
        model.folio_mapping_flags(fa)
