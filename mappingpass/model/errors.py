"""Exceptions of the write-protect model.

Three families, so callers (tests, the ``check`` stage) can tell them apart:

* :class:`OperationRefused` -- the kernel would refuse or skip the operation in
  this state (``-EBUSY``/``-EEXIST``/"not mergeable"); nothing changed.
* :class:`ProtectionViolation` -- the caller tried to do something that must never
  happen to a write-protected page (dirty it, start writeback on it): a model bug
  or a missing break of protection on the path.
* :class:`HelperError` -- ``page_mapping_wp()`` was given a context mapping that
  cannot be right for the page: the witness the ``check`` stage reports.
* :class:`EvalError` -- an access path could not be evaluated (NULL dereference,
  unknown field, syntax); :class:`NotInterpreted` when it touched a value the
  interpreter could not compute (an :class:`~.objects.Unknown`).
"""

from __future__ import annotations


class ModelError(Exception):
    """Base class of every error raised by :mod:`mappingpass.model`."""


class OperationRefused(ModelError):
    """The operation is not allowed in the current state; the world is unchanged."""


class ProtectionViolation(ModelError):
    """A write-protected page would be dirtied, written back or pinned for write."""


class HelperError(ModelError):
    """``page_mapping_wp()`` / ``folio_mapping_wp()`` rejected its context mapping."""


class MappingMismatch(HelperError):
    """The context mapping does not own the page.

    For an unprotected page: the page's own ``mapping`` field is another (non-NULL)
    address_space, e.g. the page was stolen by splice, or the caller passed the
    inode's ``i_mapping`` where the file's ``f_mapping`` was needed. For a protected
    page: the context is not, and never was, one of the record's owners.
    """


class BadContext(HelperError):
    """The context is not an address_space at all.

    Raised for a write-protection record (the argument was derived from
    ``page->mapping`` itself, which is circular once the page is protected), for
    any other object, and for a NULL context where the page has a mapping.
    """


class EvalError(ModelError):
    """An access path could not be evaluated over the model objects."""


class EvalSyntaxError(EvalError):
    """The expression is not in the small C subset :func:`evaluate` understands."""


class UnknownName(EvalError):
    """An identifier (or function) is not bound in the environment."""


class UnknownField(EvalError):
    """A member access names a field the model object does not have."""


class NullDeref(EvalError):
    """A NULL pointer was dereferenced while evaluating an access path.

    ``expr`` is the access that faulted (``file->f_mapping``), ``pointer`` the
    sub-expression that was NULL (``file``).
    """

    def __init__(self, expr: str, pointer: str) -> None:
        super().__init__(f"NULL pointer dereference: {pointer!r} is NULL in {expr!r}")
        self.expr = expr
        self.pointer = pointer


class NotInterpreted(EvalError):
    """An access path used a value the interpreter could not compute (an
    :class:`~mappingpass.model.objects.Unknown`): the result is not known, which
    is neither right nor wrong (``check`` says "unproven")."""
