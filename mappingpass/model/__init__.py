"""An executable model of the write-protect runtime, independent of any parser.

Generic page write protection merges identical file pages of several
``(mapping, index)`` owners into one read-only page, as KSM does for anonymous
memory; the page's ``mapping`` field then points at the :class:`WriteProtectRecord`
instead of an address_space, so every reader must get its mapping from context.
This package models just enough of the kernel to check that claim:

* :mod:`.objects` -- address_space, inode, file, block device, kiocb, folio/page,
  buffer_head, VMA, vm_fault, dentry, readahead_control, the protection record,
  and for the ``check`` interpreter an opaque struct and an unknown value;
* :mod:`.world` -- :class:`World`: creates objects and runs the operations (page
  cache, write protection, break, truncation, reclaim, splice steal, writeback and
  I/O errors), each named after the kernel code it stands for;
* :mod:`.helper` -- ``page_mapping_wp()``/``folio_mapping_wp()`` and their contract,
  the membership tests ``page_in_mapping()``/``folio_in_mapping()`` and the
  flag bits of the field (``folio_mapping_flags()``);
* :mod:`.expr` -- :func:`evaluate`, C access paths (``iocb->ki_filp->f_mapping``)
  over model objects, for the ``check`` stage.
"""

from .errors import (
    BadContext,
    EvalError,
    EvalSyntaxError,
    HelperError,
    MappingMismatch,
    ModelError,
    NotInterpreted,
    NullDeref,
    OperationRefused,
    ProtectionViolation,
    UnknownField,
    UnknownName,
)
from .expr import FUNCTIONS, evaluate, parse, unparse
from .helper import (
    PAGE_MAPPING_FLAGS,
    folio_in_mapping,
    folio_mapping_flags,
    folio_mapping_wp,
    folio_owners,
    is_write_protected,
    page_gone,
    page_in_mapping,
    page_mapping_flags,
    page_mapping_wp,
)
from .objects import (
    PG,
    VMA,
    AddressSpace,
    BlockDevice,
    BufferHead,
    Dentry,
    File,
    Folio,
    Inode,
    Kiocb,
    Opaque,
    Page,
    ReadaheadControl,
    Struct,
    Unknown,
    VmFault,
    WriteProtectRecord,
    as_folio,
)
from .world import EIO, World, mapping_set_error

__all__ = [
    "EIO",
    "FUNCTIONS",
    "PAGE_MAPPING_FLAGS",
    "PG",
    "VMA",
    "AddressSpace",
    "BadContext",
    "BlockDevice",
    "BufferHead",
    "Dentry",
    "EvalError",
    "EvalSyntaxError",
    "File",
    "Folio",
    "HelperError",
    "Inode",
    "Kiocb",
    "MappingMismatch",
    "ModelError",
    "NotInterpreted",
    "NullDeref",
    "Opaque",
    "OperationRefused",
    "Page",
    "ProtectionViolation",
    "ReadaheadControl",
    "Struct",
    "UnknownField",
    "UnknownName",
    "Unknown",
    "VmFault",
    "World",
    "WriteProtectRecord",
    "as_folio",
    "evaluate",
    "folio_in_mapping",
    "folio_mapping_flags",
    "folio_mapping_wp",
    "folio_owners",
    "is_write_protected",
    "mapping_set_error",
    "page_gone",
    "page_in_mapping",
    "page_mapping_flags",
    "page_mapping_wp",
    "parse",
    "unparse",
]
