"""The operations of the write-protect runtime, on a :class:`World` of model objects.

Each method's docstring names the kernel behaviour it stands for. Operations either
complete or raise :class:`OperationRefused` before changing anything (or
:class:`ProtectionViolation` when the caller tried to write a protected page).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable

from .errors import OperationRefused, ProtectionViolation
from .helper import page_mapping_wp
from .objects import (
    PG,
    VMA,
    AddressSpace,
    BlockDevice,
    BufferHead,
    File,
    Folio,
    Inode,
    Kiocb,
    Page,
    VmFault,
    WriteProtectRecord,
    as_folio,
)

EIO = 5


def mapping_set_error(mapping: AddressSpace, error: int) -> None:
    """``mapping_set_error()``: record a writeback error (negative errno) on ``mapping``
    for the next fsync()/close() of its files (errseq_set on ``wb_err``)."""
    if error:
        mapping.wb_err = error


class World:
    """Creates the model objects and runs kernel operations on them.

    Keeps every inode, file, block device, folio, VMA ever created and the live
    protection records, so scenarios are easy to build and invariants easy to sweep.
    """

    def __init__(self) -> None:
        self.inodes: list[Inode] = []
        self.files: list[File] = []
        self.bdevs: list[BlockDevice] = []
        self.folios: list[Folio] = []
        self.vmas: list[VMA] = []
        self.records: list[WriteProtectRecord] = []
        self._seq = itertools.count(1)

    @property
    def mappings(self) -> list[AddressSpace]:
        """Every address_space: each inode's embedded ``i_data``."""
        return [inode.i_data for inode in self.inodes]

    # -- objects --------------------------------------------------------------

    def inode(self, name: str) -> Inode:
        """``new_inode()``: an inode whose ``i_mapping`` is its own ``i_data``."""
        inode = Inode(name)
        self.inodes.append(inode)
        return inode

    def open(self, inode: Inode, name: str | None = None) -> File:
        """``do_dentry_open()``: ``f_mapping = inode->i_mapping``."""
        return self._file(name or inode.name, inode, inode.i_mapping)

    def blockdev(self, name: str) -> BlockDevice:
        """A block device with its own (bdev filesystem) inode and page cache."""
        bdev = BlockDevice(name, self.inode(f"bdev:{name}"))
        self.bdevs.append(bdev)
        return bdev

    def open_blockdev(self, node: Inode, bdev: BlockDevice, name: str | None = None) -> File:
        """``blkdev_open()``: ``filp->f_mapping = bdev->bd_inode->i_mapping`` while
        ``file_inode(filp)`` stays the device node's inode, whose ``i_mapping`` is an
        empty page cache of its own: ``f_mapping != f_inode->i_mapping``."""
        return self._file(name or node.name, node, bdev.bd_mapping)

    def open_stacked(self, inode: Inode, lower: File, name: str | None = None) -> File:
        """``coda_open()``-like stacking: the upper file's page cache is the lower
        (host) file's, so ``f_mapping`` is ``lower->f_mapping`` while ``f_inode`` is the
        upper inode with its own ``i_mapping``."""
        file = self._file(name or inode.name, inode, lower.f_mapping)
        file.lower = lower
        return file

    def kiocb(self, file: File | None, name: str | None = None) -> Kiocb:
        """``init_sync_kiocb()``: ``ki_filp = file``."""
        return Kiocb(name or f"iocb{next(self._seq)}", file)

    def mmap(self, file: File, pgoff: int = 0, npages: int = 1, nid: int = 0) -> VMA:
        """``mmap_region()`` with ``MAP_SHARED``: the VMA joins ``f_mapping->i_mmap``
        (``vma_link`` / ``__vma_link_file``), which is how rmap walks find it."""
        vma = VMA(f"vma{next(self._seq)}:{file.name}", file, pgoff, npages, nid)
        file.f_mapping.i_mmap.append(vma)
        self.vmas.append(vma)
        return vma

    def _file(self, name: str, inode: Inode, mapping: AddressSpace) -> File:
        file = File(name, inode, mapping)
        self.files.append(file)
        return file

    def _new_folio(self, mapping: AddressSpace, index: int, data: bytes, nid: int) -> Folio:
        folio = Folio(f"{mapping.name}:{index}#{next(self._seq)}", mapping, index, data, nid)
        folio.flags.add(PG.UPTODATE)
        self.folios.append(folio)
        return folio

    # -- page cache -------------------------------------------------------------

    def add_to_page_cache(
        self, mapping: AddressSpace, index: int, data: bytes = b"", *, nid: int = 0
    ) -> Folio:
        """``filemap_add_folio()``: a new clean, uptodate folio at ``index``
        (``-EEXIST`` if the slot is taken)."""
        if index in mapping.i_pages:
            raise OperationRefused(f"{mapping!r} already has a folio at index {index}")
        folio = self._new_folio(mapping, index, data, nid)
        mapping.i_pages[index] = folio
        return folio

    def read(self, file: File, index: int, *, nid: int = 0) -> Folio:
        """``filemap_read()``: the folio that serves a read of ``index`` (read in if
        absent). A protected page is read as it is (the replica of ``nid``)."""
        mapping = file.f_mapping
        folio = mapping.i_pages.get(index) or self.add_to_page_cache(mapping, index, nid=nid)
        record = folio.record
        return record.page_for(nid) if record is not None else folio

    def write(self, file: File, index: int, data: bytes) -> Folio:
        """``generic_perform_write()``: ``->write_begin`` finds the folio (breaking
        write protection first, as ``do_wp_page`` would), copies the data in and
        ``->write_end`` dirties it. The kernel waits for writeback
        (``folio_wait_stable``); the model refuses instead."""
        mapping = file.f_mapping
        folio = mapping.i_pages.get(index)
        if folio is not None and folio.writeback:
            raise OperationRefused(f"{folio!r} is under writeback")
        if folio is None:
            folio = self.add_to_page_cache(mapping, index)
        elif folio.protected:
            folio = self.break_protection(mapping, index)
        folio.data = data
        self.mark_dirty(folio)
        return folio

    def mark_dirty(self, folio: Folio | Page) -> None:
        """``folio_mark_dirty()`` (``__set_page_dirty_buffers`` dirties the buffers
        too). Dirtying a protected folio is a :class:`ProtectionViolation`: every
        writer must break protection first."""
        folio = as_folio(folio)
        if folio.protected:
            raise ProtectionViolation(f"dirtying write-protected {folio!r}")
        if not isinstance(folio.mapping, AddressSpace):
            raise OperationRefused(f"{folio!r} is not in a page cache")
        folio.flags.add(PG.DIRTY)
        for bh in folio.buffers:
            bh.dirty = True

    def attach_buffers(
        self, folio: Folio | Page, bdev: BlockDevice, count: int = 1, first_block: int = 0
    ) -> list[BufferHead]:
        """``folio_create_empty_buffers()`` (``create_empty_buffers``): buffer heads
        on ``bdev``; the model also records the folio's mapping in ``b_mapping``."""
        folio = as_folio(folio)
        mapping = folio.mapping
        if not isinstance(mapping, AddressSpace):
            raise OperationRefused(f"{folio!r} is protected or not in a page cache")
        if folio.buffers:
            raise OperationRefused(f"{folio!r} already has buffers")
        folio.buffers = [
            BufferHead(f"{folio.name}/bh{i}", folio, bdev, first_block + i, mapping,
                       dirty=folio.dirty)
            for i in range(count)
        ]
        return list(folio.buffers)

    # -- writeback and I/O errors -------------------------------------------------

    def start_writeback(self, folio: Folio | Page) -> None:
        """``folio_clear_dirty_for_io()`` + ``folio_start_writeback()``; dirty buffers
        become async writes (``mark_buffer_async_write`` in
        ``__block_write_full_folio``)."""
        folio = as_folio(folio)
        if folio.protected:
            raise ProtectionViolation(f"writeback of write-protected {folio!r}")
        if not folio.dirty or folio.writeback:
            raise OperationRefused(f"{folio!r} is not dirty or already under writeback")
        folio.flags.discard(PG.DIRTY)
        folio.flags.add(PG.WRITEBACK)
        for bh in folio.buffers:
            bh.async_write, bh.dirty = bh.dirty, False

    def end_writeback(self, folio: Folio | Page, error: int = 0) -> None:
        """``folio_end_writeback()`` from a bufferless bio completion (``mpage_end_io``,
        iomap): on error ``mapping_set_error(folio->mapping)``, which is safe because
        a folio under writeback is never protected."""
        folio = as_folio(folio)
        if not folio.writeback:
            raise OperationRefused(f"{folio!r} is not under writeback")
        if any(bh.async_write for bh in folio.buffers):
            raise OperationRefused(f"{folio!r} has buffers in flight: end_buffer_async_write")
        assert isinstance(folio.mapping, AddressSpace | None), "writeback of a protected folio"
        if error:
            folio.flags.add(PG.ERROR)
            if folio.mapping is not None:
                mapping_set_error(folio.mapping, error)
        folio.flags.discard(PG.WRITEBACK)

    def end_buffer_async_write(self, bh: BufferHead, uptodate: bool) -> None:
        """``end_buffer_async_write()``: on failure ``mark_buffer_write_io_error()``
        reports ``-EIO`` to the page's mapping -- taken from the buffer head,
        ``page_mapping_wp(bh->b_page, bh->b_mapping)``, not from ``b_page->mapping``
        -- and to ``b_assoc_map``. The last buffer in flight ends the folio's
        writeback."""
        folio = bh.b_folio
        if folio is None or not bh.async_write:
            raise OperationRefused(f"{bh!r} has no write in flight")
        bh.async_write = False
        if not uptodate:
            bh.write_io_error, bh.uptodate = True, False
            folio.flags.add(PG.ERROR)
            mapping = page_mapping_wp(folio.page, bh.b_mapping)
            if mapping is not None:
                mapping_set_error(mapping, -EIO)
            if bh.b_assoc_map is not None:
                mapping_set_error(bh.b_assoc_map, -EIO)
        if not any(b.async_write for b in folio.buffers):
            folio.flags.discard(PG.WRITEBACK)

    # -- write protection ---------------------------------------------------------

    def write_protect(
        self, folios: Iterable[Folio | Page], *, into: WriteProtectRecord | None = None
    ) -> WriteProtectRecord:
        """KSM merge for file pages (``try_to_merge_one_page`` + ``stable_tree_insert``
        / ``stable_tree_append``): identical, clean, unpinned page-cache folios become
        one read-only folio whose ``mapping`` is the record; every owner's page-cache
        slot and PTEs point at it (``replace_page``), the other folios are freed.
        With ``into``, the folios join an existing record (a stable-tree hit).
        Refused (nothing changes) for a dirty, writeback, pinned, protected, absent
        folio, busy buffers, or different contents (``pages_identical``)."""
        items = [as_folio(f) for f in folios]
        if into is not None and into.dissolved:
            raise OperationRefused(f"{into!r} is dissolved")
        if len({id(f) for f in items}) != len(items) or (into is None and not items):
            raise OperationRefused("write_protect needs distinct folios")
        data = into.data if into is not None else items[0].data
        for folio in items:
            self._check_mergeable(folio, data)
        record = into
        if record is None:
            primary = items.pop(0)
            mapping, index = primary.mapping, primary.index
            assert isinstance(mapping, AddressSpace)
            record = WriteProtectRecord(f"wp{next(self._seq)}", data, primary_nid=primary.nid)
            record.replicas[primary.nid] = primary
            self._release_buffers(primary)
            primary.mapping = record
            record.join(mapping, index)
            self.records.append(record)
        for folio in items:
            mapping, index = folio.mapping, folio.index
            assert isinstance(mapping, AddressSpace)
            self._release_buffers(folio)
            record.join(mapping, index)
            mapping.i_pages[index] = record.primary
            for vma in mapping.i_mmap:
                if vma.ptes.get(index) is folio:
                    vma.ptes[index] = record.page_for(vma.nid)
            folio.mapping = None
        return record

    def _check_mergeable(self, folio: Folio, data: bytes) -> None:
        mapping = folio.mapping
        why = None
        if not isinstance(mapping, AddressSpace) or mapping.i_pages.get(folio.index) is not folio:
            why = "is protected or not in a page cache"
        elif folio.dirty or folio.writeback:
            why = "is dirty or under writeback"
        elif folio.pins:
            why = "is pinned (page_maybe_dma_pinned)"
        elif PG.UPTODATE not in folio.flags:
            why = "is not uptodate"
        elif any(bh.dirty or bh.async_write or bh.b_count for bh in folio.buffers):
            why = "has busy buffers"
        elif folio.data != data:
            why = "differs in content"
        if why:
            raise OperationRefused(f"cannot write-protect {folio!r}: it {why}")

    def _release_buffers(self, folio: Folio) -> None:
        """``filemap_release_folio()`` / ``try_to_free_buffers()``."""
        for bh in folio.buffers:
            bh.b_folio = None
        folio.buffers = []

    def duplicate(self, record: WriteProtectRecord, nid: int) -> Folio:
        """A read-only replica of the protected content on NUMA node ``nid`` (KSM's
        per-node stable trees, ``merge_across_nodes=0``); faults on that node map it."""
        if record.dissolved:
            raise OperationRefused(f"{record!r} is dissolved")
        if nid not in record.replicas:
            folio = Folio(f"{record.name}@node{nid}", record, record.primary.index,
                          record.data, nid, {PG.UPTODATE})
            self.folios.append(folio)
            record.replicas[nid] = folio
        return record.replicas[nid]

    def break_protection(self, mapping: AddressSpace, index: int, *, nid: int | None = None
                         ) -> Folio:
        """``do_wp_page()`` -> ``wp_page_copy()`` on a protected file page (break COW,
        like ``break_ksm()``): the owner ``(mapping, index)`` leaves the record and gets
        a private copy whose ``mapping`` is its own again. Its PTEs on the protected
        page are zapped (``unmap_mapping_range``) so no VMA keeps reading the shared
        copy. The record dissolves with its last owner."""
        current = mapping.i_pages.get(index)
        record = current.record if current is not None else None
        if current is None or record is None:
            raise OperationRefused(f"{mapping!r}[{index}] is not write protected")
        folio = self._new_folio(mapping, index, record.data,
                                current.nid if nid is None else nid)
        self._unmap(mapping, index)
        record.leave(mapping, index)
        mapping.i_pages[index] = folio
        if not record.owners:
            self._dissolve(record)
        return folio

    def unprotect(self, record: WriteProtectRecord) -> list[Folio]:
        """Break protection for every owner (``break_ksm`` over all rmap items, as
        ``unmerge_ksm_pages`` does): each gets its own private folio back."""
        return [self.break_protection(m, i) for m, i in list(record.owners)]

    def _dissolve(self, record: WriteProtectRecord) -> None:
        """``remove_node_from_stable_tree()``: the replicas are freed."""
        for folio in record.replicas.values():
            folio.mapping = None
        record.dissolved = True
        self.records.remove(record)

    def _unmap(self, mapping: AddressSpace, index: int) -> None:
        """``unmap_mapping_range()`` for one page: zap its PTEs in ``mapping->i_mmap``."""
        for vma in mapping.i_mmap:
            vma.ptes.pop(index, None)

    # -- faults and GUP -----------------------------------------------------------

    def fault(self, vma: VMA, pgoff: int, *, write: bool = False) -> VmFault:
        """``handle_mm_fault()`` on a shared file mapping: ``filemap_fault()`` maps the
        page-cache folio (for a protected one, the replica of the VMA's node); a write
        fault breaks protection first (``do_wp_page``) and dirties the folio
        (``do_shared_fault`` -> ``->page_mkwrite``)."""
        if not vma.covers(pgoff):
            raise OperationRefused(f"{vma!r} does not cover page {pgoff}")
        mapping = vma.vm_file.f_mapping
        folio = mapping.i_pages.get(pgoff)
        if write and folio is not None and folio.writeback:
            raise OperationRefused(f"{folio!r} is under writeback")
        if folio is None:
            folio = self.add_to_page_cache(mapping, pgoff, nid=vma.nid)
        if (record := folio.record) is not None:
            if write:
                folio = self.break_protection(mapping, pgoff, nid=vma.nid)
            else:
                folio = record.page_for(vma.nid)
        if write:
            self.mark_dirty(folio)
        vma.ptes[pgoff] = folio
        return VmFault(f"vmf:{vma.name}:{pgoff}", vma, pgoff, folio.page)

    def gup(self, vma: VMA, pgoff: int, *, write: bool = False) -> Folio:
        """``pin_user_pages()`` (``FOLL_PIN``, plus ``FOLL_WRITE`` when ``write``):
        faults the page in as the access would, so a write pin breaks protection
        first and a protected folio is never pinned for write."""
        folio = self.fault(vma, pgoff, write=write).page.folio  # type: ignore[union-attr]
        folio.pins += 1
        if write:
            folio.write_pins += 1
        return folio

    def unpin(self, folio: Folio | Page, *, write: bool = False) -> None:
        """``unpin_user_page()``."""
        folio = as_folio(folio)
        if folio.pins == 0 or (write and folio.write_pins == 0):
            raise OperationRefused(f"{folio!r} is not pinned that way")
        folio.pins -= 1
        if write:
            folio.write_pins -= 1

    # -- leaving the page cache ---------------------------------------------------

    def truncate(self, mapping: AddressSpace, start: int = 0) -> list[Folio]:
        """``truncate_inode_pages_range()`` from ``start``: each folio's PTEs are zapped
        (``unmap_mapping_range``); a protected folio loses this owner (KSM's
        ``remove_rmap_item_from_tree``) and stays for the others; an unprotected one
        is waited for (``folio_wait_writeback``), cleaned (``folio_cancel_dirty``),
        loses its buffers (``block_invalidate_folio``) and gets ``mapping = NULL``
        (``filemap_remove_folio``). Returns the folios removed."""
        removed = []
        for index in sorted(i for i in mapping.i_pages if i >= start):
            folio = mapping.i_pages.pop(index)
            self._unmap(mapping, index)
            if (record := folio.record) is not None:
                record.leave(mapping, index)
                if not record.owners:
                    self._dissolve(record)
            else:
                folio.flags -= {PG.DIRTY, PG.WRITEBACK}
                self._release_buffers(folio)
                folio.mapping = None
            removed.append(folio)
        return removed

    def reclaim(self, folio: Folio | Page) -> list[tuple[AddressSpace, int]]:
        """``shrink_folio_list()``: ``try_to_unmap()`` through the reverse map, then
        ``__remove_mapping()``. For a protected folio the reverse map is the record's
        (``rmap_walk_ksm``): it reaches every owner, zaps the PTEs of every owner's
        VMAs on any replica and empties every owner's slot; the record dissolves.
        Refused for pinned, dirty, writeback folios or busy buffers. Returns the
        ``(mapping, index)`` owners the walk reached."""
        folio = as_folio(folio)
        record = folio.record
        if record is None:
            mapping = folio.mapping
            self._check_removable(folio)
            assert isinstance(mapping, AddressSpace)
            self._unmap(mapping, folio.index)
            del mapping.i_pages[folio.index]
            self._release_buffers(folio)
            folio.mapping = None
            return [(mapping, folio.index)]
        if any(replica.pins for replica in record.replicas.values()):
            raise OperationRefused(f"{record!r} has a pinned replica")
        visited = []
        for mapping, index in list(record.owners):  # rmap_walk_ksm
            visited.append((mapping, index))
            self._unmap(mapping, index)
            del mapping.i_pages[index]
            record.leave(mapping, index)
        self._dissolve(record)
        return visited

    def steal(self, folio: Folio | Page, new_mapping: AddressSpace, new_index: int) -> Folio:
        """splice's ``page_cache_pipe_buf_try_steal()`` (``remove_mapping``) followed by
        the receiver inserting the same folio in its own file (fuse's
        ``fuse_try_move_page`` -> ``replace_page_cache_folio``): the page leaves one
        mapping for another while a path may still hold the old one."""
        folio = as_folio(folio)
        self._check_removable(folio)
        if new_index in new_mapping.i_pages:
            raise OperationRefused(f"{new_mapping!r} already has a folio at {new_index}")
        old = folio.mapping
        assert isinstance(old, AddressSpace)
        self._unmap(old, folio.index)
        del old.i_pages[folio.index]
        self._release_buffers(folio)
        folio.mapping, folio.index = new_mapping, new_index
        new_mapping.i_pages[new_index] = folio
        return folio

    def _check_removable(self, folio: Folio) -> None:
        mapping = folio.mapping
        if not isinstance(mapping, AddressSpace) or mapping.i_pages.get(folio.index) is not folio:
            raise OperationRefused(f"{folio!r} is protected or not in a page cache")
        if folio.dirty or folio.writeback or folio.pins:
            raise OperationRefused(f"{folio!r} is dirty, under writeback or pinned")
        if any(bh.dirty or bh.async_write or bh.b_count for bh in folio.buffers):
            raise OperationRefused(f"{folio!r} has busy buffers")
