"""The awkward cases the ``check`` stage must get right, played on the model.

Each case builds a world, binds a function's arguments to model objects, evaluates
the context expression a plan would pass (``file->f_mapping``...) and calls the
helper, as ``check`` will. ``CASES`` say what the right helper answers; naive
helpers must fail at least one case, so the cases really discriminate.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from mappingpass.model import (
    EIO,
    AddressSpace,
    BadContext,
    File,
    Folio,
    MappingMismatch,
    ModelError,
    NullDeref,
    OperationRefused,
    UnknownField,
    World,
    WriteProtectRecord,
    evaluate,
    page_gone,
    page_mapping_wp,
)


def shared_with(w: World, folio: Folio) -> WriteProtectRecord:
    """Protect ``folio`` together with an identical page of an unrelated file."""
    other = w.open(w.inode("other")).f_mapping
    return w.write_protect([folio, w.add_to_page_cache(other, 9, folio.data)])


def blockdev(w: World, protect: bool) -> dict[str, object]:
    """A block device node opened on some filesystem: ``f_mapping`` is the bdev's
    page cache, ``f_inode->i_mapping`` the device node inode's own (empty) one."""
    bdev = w.blockdev("sda")
    file = w.open_blockdev(w.inode("dev-sda"), bdev)
    folio = w.read(file, 0)
    if protect:
        shared_with(w, folio)
    return {"file": file, "inode": file.f_inode, "page": folio.page, "bdev": bdev,
            "iocb": w.kiocb(file)}


def stacked(w: World, protect: bool) -> dict[str, object]:
    """A coda-like file whose page cache is the host file's."""
    host = w.open(w.inode("host"))
    file = w.open_stacked(w.inode("coda"), host)
    folio = w.read(file, 0)
    if protect:
        shared_with(w, folio)
    return {"file": file, "inode": file.f_inode, "host": host, "page": folio.page}


def plain(w: World, protect: bool) -> dict[str, object]:
    file = w.open(w.inode("foo"))
    folio = w.read(file, 0)
    if protect:
        record = shared_with(w, folio)
        w.duplicate(record, 1)
        folio = record.replicas[1]  # reached through a NUMA replica
    return {"file": file, "inode": file.f_inode, "page": folio.page, "iocb": w.kiocb(file),
            "vmf": w.fault(w.mmap(file), 0), "mapping": file.f_mapping}


def null_file(w: World, protect: bool) -> dict[str, object]:
    """A callback called with file == NULL (e.g. read_cache_page(mapping, i, filler, NULL))."""
    env = plain(w, protect)
    return {**env, "file": None, "iocb": w.kiocb(None)}


def buffer_head(w: World, protect: bool) -> dict[str, object]:
    """A data page of a file on sda reached through its buffer head (I/O completion)."""
    sda = w.blockdev("sda")
    file = w.open(w.inode("data"))
    folio = w.write(file, 0, b"x")
    (bh,) = w.attach_buffers(folio, sda)
    return {"bh": bh, "file": file}


def metadata_buffer(w: World, protect: bool) -> dict[str, object]:
    """A metadata block read through the block device (``sb_bread``)."""
    sda = w.blockdev("sda")
    folio = w.add_to_page_cache(sda.bd_mapping, 0)
    (bh,) = w.attach_buffers(folio, sda)
    return {"bh": bh}


def stolen(w: World, protect: bool) -> dict[str, object]:
    """splice steals the page into another file while the path still holds the old file."""
    old, new = w.open(w.inode("old")), w.open(w.inode("new"))
    folio = w.read(old, 0)
    w.steal(folio, new.f_mapping, 3)
    return {"file": old, "new": new, "page": folio.page}


def truncated(w: World, protect: bool) -> dict[str, object]:
    """The path looked the page up, then truncation removed it (for this owner)."""
    file = w.open(w.inode("trunc"))
    folio = w.read(file, 0)
    env: dict[str, object] = {"file": file, "page": folio.page}
    if protect:
        env["other"] = shared_with(w, folio).owners[1][0]
    w.truncate(file.f_mapping)
    return env


def not_an_owner(w: World, protect: bool) -> dict[str, object]:
    """A plan passing some unrelated file's mapping."""
    env = plain(w, protect)
    return {**env, "unrelated": w.open(w.inode("unrelated"))}


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[World, bool], dict[str, object]]
    protect: bool
    context: str
    expect: str | None | type[ModelError]  # an env path, None, or the error


CASES = [
    Case("plain file", plain, False, "file->f_mapping", "file->f_mapping"),
    Case("plain file, protected via replica", plain, True, "file->f_mapping", "file->f_mapping"),
    Case("kiocb", plain, True, "iocb->ki_filp->f_mapping", "file->f_mapping"),
    Case("vm_fault", plain, True, "vmf->vma->vm_file->f_mapping", "file->f_mapping"),
    Case("inode provider agrees", plain, True, "inode->i_mapping", "file->f_mapping"),
    Case("&inode->i_data", plain, True, "&inode->i_data", "file->f_mapping"),
    Case("bdev: f_mapping", blockdev, False, "file->f_mapping", "bdev->bd_mapping"),
    Case("bdev: f_mapping, protected", blockdev, True, "iocb->ki_filp->f_mapping",
         "bdev->bd_mapping"),
    Case("bdev: i_mapping", blockdev, False, "file->f_inode->i_mapping", MappingMismatch),
    Case("bdev: i_mapping, protected", blockdev, True, "file_inode(file)->i_mapping",
         MappingMismatch),
    Case("coda: f_mapping", stacked, True, "file->f_mapping", "host->f_mapping"),
    Case("coda: upper i_mapping", stacked, False, "inode->i_mapping", MappingMismatch),
    Case("coda: upper i_mapping, protected", stacked, True, "inode->i_mapping",
         MappingMismatch),
    Case("NULL file", null_file, False, "file->f_mapping", NullDeref),
    Case("NULL ki_filp", null_file, True, "iocb->ki_filp->f_mapping", NullDeref),
    Case("circular, unprotected", plain, False, "page->mapping", "file->f_mapping"),
    Case("circular, protected", plain, True, "page->mapping", BadContext),
    Case("circular accessor, protected", plain, True, "page_mapping(page)", BadContext),
    Case("circular ->host, protected", plain, True, "page->mapping->host->i_mapping",
         UnknownField),
    Case("buffer head: b_mapping", buffer_head, False, "bh->b_mapping", "file->f_mapping"),
    Case("buffer head: bdev mapping", buffer_head, False, "bh->b_bdev->bd_mapping",
         MappingMismatch),
    Case("metadata buffer: bdev mapping", metadata_buffer, False, "bh->b_bdev->bd_mapping",
         "bh->b_bdev->bd_mapping"),
    Case("stolen: old context", stolen, False, "file->f_mapping", MappingMismatch),
    Case("stolen: new context", stolen, False, "new->f_mapping", "new->f_mapping"),
    Case("truncated", truncated, False, "file->f_mapping", None),
    Case("truncated owner, protected", truncated, True, "file->f_mapping", None),
    Case("remaining owner, protected", truncated, True, "other", "other"),
    Case("not an owner", not_an_owner, False, "unrelated->f_mapping", MappingMismatch),
    Case("not an owner, protected", not_an_owner, True, "unrelated->f_mapping",
         MappingMismatch),
]

Helper = Callable[[object, object], object]


def run_case(case: Case, helper: Helper) -> tuple[bool, str]:
    """Play ``case`` with ``helper``; return (passed, what happened)."""
    env = case.build(World(), case.protect)
    page = env.get("page") or evaluate("bh->b_page", env)
    try:
        got: object = helper(page, evaluate(case.context, env))
    except ModelError as err:
        got = err
    if isinstance(case.expect, type):
        return isinstance(got, case.expect), repr(got)
    want = None if case.expect is None else evaluate(case.expect, env)
    assert want is None or isinstance(want, AddressSpace)
    return got is want, f"got {got!r}, want {want!r}"


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_helper_contract(case: Case) -> None:
    passed, what = run_case(case, page_mapping_wp)
    assert passed, what


def naive_raw_field(page: object, context: object) -> object:
    """Today's code: ``page->mapping``."""
    return page.mapping  # type: ignore[attr-defined]


def naive_trust_context(page: object, context: object) -> object:
    """Trust whatever the caller passes."""
    return context


def naive_no_owner_check(page: object, context: object) -> object:
    """Own field when unprotected, the context (unchecked) when protected."""
    own = page.mapping  # type: ignore[attr-defined]
    return context if isinstance(own, WriteProtectRecord) else own


@pytest.mark.parametrize("helper", [naive_raw_field, naive_trust_context, naive_no_owner_check])
def test_naive_helpers_are_caught(helper: Helper) -> None:
    failures = [c.name for c in CASES if not run_case(c, helper)[0]]
    assert failures, f"{helper.__name__} passes every case: the cases do not discriminate"


def test_null_file_names_the_expression() -> None:
    env = null_file(World(), True)
    with pytest.raises(NullDeref) as info:
        evaluate("file->f_mapping", env)
    assert info.value.pointer == "file" and info.value.expr == "file->f_mapping"
    assert "'file' is NULL in 'file->f_mapping'" in str(info.value)


def test_blockdev_file_mappings_differ() -> None:
    env = blockdev(World(), False)
    file = env["file"]
    assert isinstance(file, File)
    assert file.f_mapping is not file.f_inode.i_mapping
    assert file.f_mapping.host is evaluate("bdev->bd_inode", env)
    assert file.f_inode.i_mapping.nrpages == 0 and file.f_mapping.nrpages == 1


def test_buffer_head_io_error_reporting() -> None:
    """The I/O error reaches the file's mapping, read from the buffer head, and never
    the bdev mapping that ``bh->b_bdev`` would suggest."""
    w = World()
    env = buffer_head(w, False)
    bh, file = env["bh"], env["file"]
    folio = evaluate("bh->b_folio", env)
    assert isinstance(folio, Folio) and isinstance(file, File)
    w.start_writeback(folio)
    w.end_buffer_async_write(bh, uptodate=False)  # type: ignore[arg-type]
    assert file.f_mapping.wb_err == -EIO
    assert evaluate("bh->b_bdev->bd_mapping", env).wb_err == 0  # type: ignore[attr-defined]


def test_buffer_head_of_a_protected_page_is_gone() -> None:
    """Protection releases (clean) buffers, so no completion can reach a protected page
    through a stale buffer head: ``bh->b_page`` is NULL."""
    w = World()
    env = buffer_head(w, False)
    folio = evaluate("bh->b_folio", env)
    assert isinstance(folio, Folio)
    with pytest.raises(OperationRefused):  # dirty data: refused
        w.write_protect([folio])
    w.start_writeback(folio)
    w.end_buffer_async_write(env["bh"], uptodate=True)  # type: ignore[arg-type]
    shared_with(w, folio)
    with pytest.raises(NullDeref) as info:
        evaluate("bh->b_page->mapping", env)
    assert info.value.pointer == "bh->b_page"


def test_truncation_check_after_lookup_race() -> None:
    """filemap_fault()-like: look up, then (lock_page) re-check the mapping; truncation
    and a break of protection in between both make the check fail, then the retry
    finds the right page."""
    w = World()
    a, b = w.open(w.inode("a")), w.open(w.inode("b"))
    record = w.write_protect([w.read(a, 0), w.read(b, 0)])
    looked_up = a.f_mapping.i_pages[0]
    assert not page_gone(looked_up, a.f_mapping)
    w.write(b, 0, b"new")  # b breaks protection while a's reader sleeps on the lock
    assert not page_gone(looked_up, a.f_mapping) and page_gone(looked_up, b.f_mapping)
    retry = b.f_mapping.i_pages[0]
    assert page_mapping_wp(retry.page, b.f_mapping) is b.f_mapping and retry is not looked_up
    w.truncate(a.f_mapping)
    assert page_gone(looked_up, a.f_mapping) and record.dissolved
    assert looked_up.mapping is None


def test_steal_mid_path_is_an_error() -> None:
    env = stolen(World(), False)
    with pytest.raises(MappingMismatch, match=r"belongs to address_space\(new\)"):
        page_mapping_wp(env["page"], evaluate("file->f_mapping", env))
    assert page_gone(env["page"], evaluate("file->f_mapping", env))  # type: ignore[arg-type]


def test_reclaim_reaches_every_mapping_of_a_protected_page() -> None:
    w = World()
    files = [w.open(w.inode(f"f{i}")) for i in range(3)]
    record = w.write_protect([w.read(f, i) for i, f in enumerate(files)])
    w.duplicate(record, 1)
    vmas = [w.mmap(f, i, 1, nid=n) for i, f in enumerate(files) for n in (0, 1)]
    for vma in vmas:
        w.fault(vma, vma.vm_pgoff)
    assert {v.ptes[v.vm_pgoff].nid for v in vmas} == {0, 1}
    visited = w.reclaim(record.primary)
    assert [m for m, _ in visited] == [f.f_mapping for f in files]
    assert all(not v.ptes for v in vmas) and all(not f.f_mapping.i_pages for f in files)


def test_gup_for_write_breaks_protection_first() -> None:
    w = World()
    a, b = w.open(w.inode("a")), w.open(w.inode("b"))
    record = w.write_protect([w.read(a, 0), w.read(b, 0)])
    pinned = w.gup(w.mmap(a), 0, write=True)
    assert not pinned.protected and pinned.mapping is a.f_mapping and pinned.write_pins == 1
    assert record.owners == [(b.f_mapping, 0)]
    assert page_mapping_wp(record.primary, b.f_mapping) is b.f_mapping
