"""The kernel objects of the write-protect model.

Every object compares by identity (``eq=False``), as kernel pointers do, and has a
short readable ``repr`` (``file(sda)``, ``address_space(foo)``) for witness
messages. ``C_FIELDS`` lists the members :func:`mappingpass.model.evaluate` may read
under their kernel names; ``C_EMBEDDED`` the members that are embedded structs, whose
address (``&inode->i_data``, ``&folio->page``) may be taken. Python attributes not in
``C_FIELDS`` are model bookkeeping (the page cache, page tables, pin counts...).

Objects are created through :class:`mappingpass.model.World`, which keeps them
consistent; constructing them directly is fine for small unit tests.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import ClassVar


class PG(Enum):
    """The folio flags the model needs (``PG_*`` in include/linux/page-flags.h)."""

    UPTODATE = "uptodate"
    DIRTY = "dirty"
    WRITEBACK = "writeback"
    ERROR = "error"


class Struct:
    """Base of the model objects: identity semantics, readable name, C field table."""

    KIND: ClassVar[str] = "struct"
    C_FIELDS: ClassVar[frozenset[str]] = frozenset()
    C_EMBEDDED: ClassVar[frozenset[str]] = frozenset()
    name: str

    def __repr__(self) -> str:
        return f"{self.KIND}({self.name})"


@dataclass(eq=False, repr=False)
class AddressSpace(Struct):
    """``struct address_space``: one page cache (``i_pages``) and its file VMAs (``i_mmap``).

    ``host`` is the inode it belongs to. ``wb_err`` stands for the errseq ``wb_err``
    that ``mapping_set_error()`` advances: the last error reported, 0 if none.
    """

    KIND: ClassVar[str] = "address_space"
    C_FIELDS: ClassVar[frozenset[str]] = frozenset({"host", "nrpages"})
    name: str
    host: Inode | None = None
    i_pages: dict[int, Folio] = field(default_factory=dict)
    i_mmap: list[VMA] = field(default_factory=list)
    wb_err: int = 0

    @property
    def nrpages(self) -> int:
        return len(self.i_pages)


@dataclass(eq=False, repr=False)
class Inode(Struct):
    """``struct inode``: ``i_data`` is its own embedded address_space, ``i_mapping``
    the one its page cache really lives in (normally ``&i_data``; coda points it at
    the host inode's)."""

    KIND: ClassVar[str] = "inode"
    C_FIELDS: ClassVar[frozenset[str]] = frozenset({"i_mapping", "i_data"})
    C_EMBEDDED: ClassVar[frozenset[str]] = frozenset({"i_data"})
    name: str
    i_data: AddressSpace = field(init=False)
    i_mapping: AddressSpace = field(init=False)

    def __post_init__(self) -> None:
        self.i_data = AddressSpace(self.name, host=self)
        self.i_mapping = self.i_data


@dataclass(eq=False, repr=False)
class BlockDevice(Struct):
    """``struct block_device``: its page cache is its own inode's (``bd_inode->i_mapping``,
    ``bd_mapping`` in later kernels), not the device node's on the filesystem."""

    KIND: ClassVar[str] = "block_device"
    C_FIELDS: ClassVar[frozenset[str]] = frozenset({"bd_inode", "bd_mapping"})
    name: str
    bd_inode: Inode

    @property
    def bd_mapping(self) -> AddressSpace:
        return self.bd_inode.i_mapping


@dataclass(eq=False, repr=False)
class File(Struct):
    """``struct file``. ``f_mapping`` is fixed at open and may differ from
    ``f_inode->i_mapping``: a block device node's file uses the bdev's mapping, a
    stacked (coda-like) file the lower file's. ``lower`` is model-only: the file a
    stacked file forwards its I/O to."""

    KIND: ClassVar[str] = "file"
    C_FIELDS: ClassVar[frozenset[str]] = frozenset({"f_mapping", "f_inode"})
    name: str
    f_inode: Inode
    f_mapping: AddressSpace
    lower: File | None = None


@dataclass(eq=False, repr=False)
class Kiocb(Struct):
    """``struct kiocb``: the I/O control block of read_iter/write_iter."""

    KIND: ClassVar[str] = "kiocb"
    C_FIELDS: ClassVar[frozenset[str]] = frozenset({"ki_filp"})
    name: str
    ki_filp: File | None


@dataclass(eq=False, repr=False)
class Folio(Struct):
    """``struct folio`` (order 0: KSM-style merging works on base pages).

    ``mapping`` is an :class:`AddressSpace` while the folio is in a page cache, None
    once it left it (truncated, reclaimed, freed), and the
    :class:`WriteProtectRecord` once it is write protected -- exactly the field the
    refactoring stops trusting. ``index`` is meaningless for a protected folio (its
    owners carry their own indices). ``pins``/``write_pins`` count
    ``pin_user_pages()`` references (``FOLL_WRITE`` ones in ``write_pins``).
    """

    KIND: ClassVar[str] = "folio"
    C_FIELDS: ClassVar[frozenset[str]] = frozenset({"mapping", "index", "flags", "page"})
    C_EMBEDDED: ClassVar[frozenset[str]] = frozenset({"page"})
    name: str
    mapping: AddressSpace | WriteProtectRecord | None
    index: int
    data: bytes = b""
    nid: int = 0
    flags: set[PG] = field(default_factory=set)
    buffers: list[BufferHead] = field(default_factory=list)
    pins: int = 0
    write_pins: int = 0
    page: Page = field(init=False)

    def __post_init__(self) -> None:
        self.page = Page(self)

    @property
    def record(self) -> WriteProtectRecord | None:
        """The protection record, like ``folio_stable_node()`` for a KSM folio."""
        return self.mapping if isinstance(self.mapping, WriteProtectRecord) else None

    @property
    def protected(self) -> bool:
        """``PageKsm()``'s analogue: the mapping field points at a record."""
        return self.record is not None

    @property
    def dirty(self) -> bool:
        return PG.DIRTY in self.flags

    @property
    def writeback(self) -> bool:
        return PG.WRITEBACK in self.flags


class Page(Struct):
    """``struct page``: the head (and only) page of a :class:`Folio`.

    Its fields are the folio's (same memory in the kernel): reading or writing
    ``page.mapping`` reads or writes ``folio.mapping``.
    """

    KIND: ClassVar[str] = "page"
    C_FIELDS: ClassVar[frozenset[str]] = frozenset({"mapping", "index", "flags"})

    def __init__(self, folio: Folio) -> None:
        self.folio = folio

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.folio.name

    @property
    def mapping(self) -> AddressSpace | WriteProtectRecord | None:
        return self.folio.mapping

    @mapping.setter
    def mapping(self, value: AddressSpace | WriteProtectRecord | None) -> None:
        self.folio.mapping = value

    @property
    def index(self) -> int:
        return self.folio.index

    @property
    def flags(self) -> set[PG]:
        return self.folio.flags


def as_folio(obj: Page | Folio) -> Folio:
    """``page_folio()``, accepting a folio as well so callers need not care."""
    return obj.folio if isinstance(obj, Page) else obj


@dataclass(eq=False, repr=False)
class BufferHead(Struct):
    """``struct buffer_head``: one block of a folio on ``b_bdev``.

    ``b_mapping`` is the proposal's addition (not in 6.1): the address_space the
    buffers were attached for, so I/O completion can report errors without reading
    ``b_page->mapping``. For a data buffer it is the file's mapping, for metadata
    read through the block device (``sb_bread``) the bdev's mapping -- in the first
    case different from ``b_bdev->bd_mapping``.
    """

    KIND: ClassVar[str] = "buffer_head"
    C_FIELDS: ClassVar[frozenset[str]] = frozenset(
        {"b_page", "b_folio", "b_bdev", "b_blocknr", "b_assoc_map", "b_mapping"}
    )
    name: str
    b_folio: Folio | None
    b_bdev: BlockDevice
    b_blocknr: int
    b_mapping: AddressSpace | None
    b_assoc_map: AddressSpace | None = None
    dirty: bool = False
    uptodate: bool = True
    async_write: bool = False
    write_io_error: bool = False
    b_count: int = 0

    @property
    def b_page(self) -> Page | None:
        return self.b_folio.page if self.b_folio is not None else None


@dataclass(eq=False, repr=False)
class WriteProtectRecord(Struct):
    """The write-protection record: KSM's ``struct ksm_stable_node`` for file pages.

    Several ``(mapping, index)`` owners share one read-only content; ``replicas``
    holds one protected folio per NUMA node (all with ``mapping`` = this record).
    ``departed`` remembers owners that left (truncation, break of protection) so the
    helper can answer "gone" to them rather than "wrong context". It has no C fields:
    ``page->mapping->host`` on a protected page is an evaluation error, which is the
    point.
    """

    KIND: ClassVar[str] = "wp_record"
    TAG: ClassVar[int] = 0  # low bits of the pointer stored in page->mapping (none: see folio_mapping_flags)
    name: str
    data: bytes
    owners: list[tuple[AddressSpace, int]] = field(default_factory=list)
    departed: list[tuple[AddressSpace, int]] = field(default_factory=list)
    replicas: dict[int, Folio] = field(default_factory=dict)
    primary_nid: int = 0
    dissolved: bool = False

    @property
    def primary(self) -> Folio:
        """The replica the owners' page-cache slots point at."""
        return self.replicas[self.primary_nid]

    def page_for(self, nid: int) -> Folio:
        """The replica to map on node ``nid`` (the primary if there is none)."""
        return self.replicas.get(nid, self.primary)

    def owns(self, mapping: AddressSpace, index: int | None = None) -> bool:
        """Is ``mapping`` (at ``index``, if given) one of the owners?"""
        return any(m is mapping and index in (None, i) for m, i in self.owners)

    def has_departed(self, mapping: AddressSpace, index: int | None = None) -> bool:
        """Did ``mapping`` (at ``index``, if given) own the page and leave it?"""
        return not self.owns(mapping, index) and any(
            m is mapping and index in (None, i) for m, i in self.departed
        )

    def join(self, mapping: AddressSpace, index: int) -> None:
        self.owners.append((mapping, index))
        self.departed = [o for o in self.departed if o != (mapping, index)]

    def leave(self, mapping: AddressSpace, index: int) -> None:
        self.owners.remove((mapping, index))
        self.departed.append((mapping, index))


@dataclass(eq=False, repr=False)
class VMA(Struct):
    """``struct vm_area_struct`` of a shared file mapping of ``npages`` pages.

    ``ptes`` stands for its page table: file page index -> mapped folio.
    """

    KIND: ClassVar[str] = "vma"
    C_FIELDS: ClassVar[frozenset[str]] = frozenset({"vm_file", "vm_pgoff"})
    name: str
    vm_file: File
    vm_pgoff: int = 0
    npages: int = 1
    nid: int = 0
    ptes: dict[int, Folio] = field(default_factory=dict)

    def covers(self, index: int) -> bool:
        return self.vm_pgoff <= index < self.vm_pgoff + self.npages


@dataclass(eq=False, repr=False)
class VmFault(Struct):
    """``struct vm_fault``: what a fault handler is given (and ``vmf->page`` it found)."""

    KIND: ClassVar[str] = "vm_fault"
    C_FIELDS: ClassVar[frozenset[str]] = frozenset({"vma", "pgoff", "page"})
    name: str
    vma: VMA
    pgoff: int
    page: Page | None = None


@dataclass(eq=False, repr=False)
class Dentry(Struct):
    """``struct dentry``: a name in a directory. ``d_parent`` is the directory's own
    dentry (itself for a root), ``d_inode`` the inode the name refers to: a
    directory entry's inode and its parent directory's are different inodes, with
    different page caches."""

    KIND: ClassVar[str] = "dentry"
    C_FIELDS: ClassVar[frozenset[str]] = frozenset({"d_inode", "d_parent"})
    name: str
    d_inode: Inode | None
    d_parent: Dentry | None = None


@dataclass(eq=False, repr=False)
class ReadaheadControl(Struct):
    """``struct readahead_control``: a readahead request carries the mapping it reads
    into (and the file, NULL for in-kernel readers such as verity)."""

    KIND: ClassVar[str] = "readahead_control"
    C_FIELDS: ClassVar[frozenset[str]] = frozenset({"mapping", "file"})
    name: str
    mapping: AddressSpace
    file: File | None = None


class Unknown(Struct):
    """A value the ``check`` interpreter could not compute (an unknown function's
    result, an expression outside the evaluator's subset). Using it raises
    :class:`~.errors.NotInterpreted`: unknown is neither right nor wrong."""

    KIND: ClassVar[str] = "unknown"

    def __init__(self, why: str) -> None:
        self.name = why


class Opaque(Struct):
    """A struct the model has no class for (``struct iomap_iter``, a filesystem's
    private info): its members are created on first use by ``make(member)``,
    one fresh object each, so two members are never the same object by accident.
    ``C_FIELDS`` is per object: the members its C type has."""

    KIND: ClassVar[str] = "struct"

    def __init__(self, name: str, tag: str, members: frozenset[str],
                 make: Callable[[str], object]) -> None:
        self.name = name
        self.tag = tag
        self.C_FIELDS = members  # type: ignore[misc]
        self._make = make
        self._values: dict[str, object] = {}

    def __getattr__(self, member: str) -> object:
        # (Python's own dunders and this object's bookkeeping are not C members;
        # `__lruvec` is)
        dunder = member.startswith("__") and member.endswith("__")
        if dunder or member in ("_make", "_values") or member not in self.__dict__.get("C_FIELDS", ()):
            raise AttributeError(member)
        values = self.__dict__["_values"]
        if member not in values:
            values[member] = self._make(member)
        return values[member]

    def assign(self, member: str, value: object) -> None:
        """`x.member = value` (a local struct's member, a designated initializer)."""
        self.__dict__["_values"][member] = value

    def __repr__(self) -> str:
        return f"{self.tag}({self.name})"
