"""The helper every rewritten ``page->mapping`` read calls, and its contract.

``page_mapping_wp(page, mapping)`` replaces ``page->mapping`` in a function that
now receives the mapping it works on as a parameter:

* unprotected page: returns the page's own ``mapping`` field, so nothing changes
  for pages that are never protected. NULL (the page was truncated or freed) is
  returned whatever the context: that is the answer the truncation check
  ``if (page_mapping_wp(page, mapping) != mapping)`` expects. A context that
  disagrees with a non-NULL field is a bug: :class:`MappingMismatch` is *raised*
  (the model raises rather than returning a sentinel, so a wrong context can never
  be mistaken for an ordinary "page gone").
* protected page: returns the context mapping, which must be one of the record's
  owners. A former owner (left by truncation or by breaking protection) gets NULL:
  for it the page is gone, as an unprotected truncated page would be. A mapping
  that never owned the page raises :class:`MappingMismatch`.
* the context must be an address_space: a record (derived from ``page->mapping``,
  circular once protected), another object, or NULL where the page has a mapping
  raise :class:`BadContext`.

A mapping may own one protected page at several indices (two zero-filled
blocks of one file merge into one record), so ``(page, mapping)`` alone cannot say
*which* slot a caller means. Callers that know it (every truncation check looked the
page up at an index) pass ``index``: ownership is then checked for ``(mapping,
index)``; a protected page's own ``index`` field is meaningless. Without ``index``
any index of ``mapping`` counts.

The model is stricter than the kernel helper needs to be: after a splice steal
moved the page to another mapping, the kernel's truncation check simply sees
"gone"; the model raises, because a path still carrying the old mapping is what
the ``check`` stage must report. :func:`page_gone` is the lenient form of the
truncation check.
"""

from __future__ import annotations

from .errors import BadContext, MappingMismatch
from .objects import AddressSpace, Folio, Page, WriteProtectRecord, as_folio


def folio_mapping_wp(
    folio: Folio | Page, context: object, index: int | None = None
) -> AddressSpace | None:
    """The mapping ``folio`` belongs to as seen from ``context`` (see module doc)."""
    folio = as_folio(folio)
    own = folio.mapping
    if isinstance(context, WriteProtectRecord):
        raise BadContext(
            f"context for {folio!r} is {context!r}, a write-protection record: the "
            "argument was derived from page->mapping, which is circular once protected"
        )
    if context is not None and not isinstance(context, AddressSpace):
        raise BadContext(f"context for {folio!r} is {context!r}, not an address_space")
    if not isinstance(own, WriteProtectRecord):
        if own is None or (own is context and index in (None, folio.index)):
            return own
        if context is None:
            raise BadContext(f"NULL context for {folio!r}, which belongs to {own!r}")
        where = "" if index is None else f"[{index}]"
        raise MappingMismatch(
            f"{folio!r} belongs to {own!r}[{folio.index}], not to the context {context!r}{where}"
        )
    if context is None:
        raise BadContext(f"NULL context for protected {folio!r} ({own!r})")
    if own.owns(context, index):
        return context
    if own.has_departed(context, index):
        return None
    owners = ", ".join(f"{m!r}[{i}]" for m, i in own.owners) or "none"
    where = "" if index is None else f"[{index}]"
    raise MappingMismatch(
        f"{context!r}{where} is not an owner of protected {folio!r} ({own!r}; owners: {owners})"
    )


def page_mapping_wp(
    page: Page | Folio, context: object, index: int | None = None
) -> AddressSpace | None:
    """``page_mapping_wp()``: :func:`folio_mapping_wp` of the page's folio."""
    return folio_mapping_wp(as_folio(page), context, index)


def folio_in_mapping(folio: Folio | Page, mapping: object) -> bool:
    """``folio_in_mapping()``, the identity test's replacement (the truncation check
    ``if (!folio_in_mapping(folio, mapping))``): does the folio belong to ``mapping``?
    For an unprotected folio, its own field is ``mapping``; for a protected one,
    ``mapping`` is one of the record's owners. It needs no context: a page is in
    every page cache that owns its record."""
    folio = as_folio(folio)
    own = folio.mapping
    if isinstance(own, WriteProtectRecord):
        return isinstance(mapping, AddressSpace) and own.owns(mapping)
    return own is mapping


def page_in_mapping(page: Page | Folio, mapping: object) -> bool:
    """``page_in_mapping()``: :func:`folio_in_mapping` of the page's folio."""
    return folio_in_mapping(as_folio(page), mapping)


def page_gone(page: Page | Folio, mapping: AddressSpace, index: int | None = None) -> bool:
    """The truncation check ``page_mapping_wp(page, mapping) != mapping``, done after
    ``lock_page()`` by readers that looked the page up earlier (filemap_fault,
    find_lock_entries, ...). Lenient like the kernel: a page that moved to another
    mapping is gone, not an error. A bad context still raises :class:`BadContext`."""
    try:
        return folio_mapping_wp(page, mapping, index) is not mapping
    except MappingMismatch:
        return True


def folio_owners(folio: Folio | Page) -> list[tuple[AddressSpace, int]]:
    """Every ``(mapping, index)`` whose page cache holds ``folio``: the record's owners
    for a protected folio, the folio's own slot for an unprotected one, else none."""
    folio = as_folio(folio)
    if (record := folio.record) is not None:
        return list(record.owners)
    mapping = folio.mapping
    if isinstance(mapping, AddressSpace) and mapping.i_pages.get(folio.index) is folio:
        return [(mapping, folio.index)]
    return []


PAGE_MAPPING_ANON = 0x1
PAGE_MAPPING_MOVABLE = 0x2
PAGE_MAPPING_KSM = PAGE_MAPPING_ANON | PAGE_MAPPING_MOVABLE
PAGE_MAPPING_FLAGS = PAGE_MAPPING_KSM


def folio_mapping_flags(folio: Folio | Page) -> int:
    """``(unsigned long)folio->mapping & PAGE_MAPPING_FLAGS``, the flag tests
    (``folio_test_anon()``, ``PageMovable()``, ``folio_test_ksm()``). The model's
    pages are file pages, so an address_space gives 0. A protection record is
    a slab object, aligned, and the runtime never tags the pointer it stores:
    its bits are 0 too, so every flag test on a protected file page answers as
    it did before protection (a file page, not anon, not movable, not KSM's)."""
    own = as_folio(folio).mapping
    if isinstance(own, WriteProtectRecord):
        return own.TAG
    if own is None or isinstance(own, AddressSpace):
        return 0
    raise BadContext(f"{folio!r}'s mapping field holds {own!r}, which has no flag bits in the model")


def page_mapping_flags(page: Page | Folio) -> int:
    """:func:`folio_mapping_flags` of the page's folio."""
    return folio_mapping_flags(as_folio(page))


def is_write_protected(page: Page | Folio) -> bool:
    """``PageKsm()``'s analogue: the mapping field points at a protection record."""
    return as_folio(page).protected
