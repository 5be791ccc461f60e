"""The shape of a rules file: every table, every key, the type of each value
and, where the values are few, which ones. rules.load checks a file against
it before reading anything, so that a typo (`scope_kind`), a wrong type
(`paths = "mm/**"`) or an unknown value is an error naming the key, not a
silently different plan."""

from __future__ import annotations

from typing import Any


class Table(dict):
    """A table with a fixed set of keys: {key: shape}."""


class FreeTable:
    """A table whose keys are names (macro names), all values of one shape."""

    def __init__(self, value: Any) -> None:
        self.value = value


class OneOf:
    """A string from a fixed set."""

    def __init__(self, *values: str) -> None:
        self.values = values


class Ints:
    """An integer within [lo, hi]."""

    def __init__(self, lo: int, hi: int) -> None:
        self.lo, self.hi = lo, hi


KIND = Ints(1, 5)
STRS = [str]
SCHEMA = Table(
    schema=str, name=str,
    read=Table(field=str, accessors=STRS, receiver_types=STRS, write_wrappers=STRS),
    index=Table(relevant_words=STRS, skip_dirs=STRS),
    cparse=Table(blank_words=STRS, blank_calls=STRS, definition_macros=FreeTable(str)),
    kind=[Table(kind=KIND, why=str, paths=STRS, functions=str, bound_to=str, accessors=bool)],
    plan=Table(
        parameter=Table(type=str, name=str, clash_name=str, position=OneOf("first", "last")),
        unresolved_argument=str,
        scope_kinds=[KIND],
        helper=Table(page=str, folio=str, page_of=str, folio_of=str, header=str, fallback_headers=STRS,
                     definition=str),
        membership=Table(page=str, folio=str, page_of=str, folio_of=str),
        provider=[Table(type=str, expr=str, why=str, nullable=bool, weak=bool, not_in=STRS)],
        receiver_provider=[Table(struct=str, strip=str)],
        boundary=Table(functions=str, paths=STRS, exported=bool, slots=str, mention_macros=str),
        lookup=[Table(function=str, arg=Ints(0, 15), of=OneOf("mapping", "inode", "file", "rac"),
                      fills=Ints(-1, 15), why=str)],
        carrier=[Table(type=str, mapping=str, why=str, never_protected=bool)],
        never_protected=[Table(mapping=str, why=str)],
        never_protected_ops=[Table(table=str, why=str)],
        never_protected_guard=[Table(condition=str, why=str)],
        never_source=[Table(function=str, why=str)],
        registration=[Table(name=str, arg=Ints(0, 15), slot=str, why=str)],
        slot_tie=[Table(slot=str, param=Ints(0, 15), source=Ints(0, 15), expr=str, why=str)],
        context=Table(page_converters=STRS, chain_depth=Ints(0, 4), chain_skip=STRS, chain_from=str,
                      nullable_slots=STRS, debug_macros=FreeTable([Ints(-1, 15)]), debug_calls=str,  # -1: all
                      slot_groups=[STRS], assertion_macros=STRS,
                      page_locks=STRS, same_page_members=STRS,
                      buffer_page_members=STRS, stacking_paths=STRS,
                      filesystem_files=STRS, backed_by=FreeTable(str)),
    ),
)

_NAMES = {str: "a string", bool: "true or false", int: "an integer"}


def check(data: dict) -> str | None:
    """The first way data departs from SCHEMA, as one line naming the key, or None."""
    return _check(data, SCHEMA, "top level", None)


def _check(value: Any, shape: Any, table: str, key: str | None) -> str | None:
    """table: where value sits ("plan.lookup #3"); key: its key there (None for
    a table itself, or an item of a list of tables)."""
    here = f"'{key}' in [{table}]" if key is not None else f"[{table}]"
    inner = f"{table}.{key}" if key is not None and table != "top level" else (key or table)
    if isinstance(shape, Table):
        if not isinstance(value, dict):
            return f"{here} must be a table"
        for k in value:
            if k not in shape:
                return f"unknown key '{k}' in [{inner}] (known: {', '.join(sorted(shape))})"
        for k, sub in shape.items():
            if k in value and (bad := _check(value[k], sub, inner, k)):
                return bad
        return None
    if isinstance(shape, FreeTable):
        if not isinstance(value, dict):
            return f"{here} must be a table"
        for k, sub in value.items():
            if bad := _check(sub, shape.value, inner, k):
                return bad
        return None
    if isinstance(shape, list):
        if not isinstance(value, list):
            return f"{here} must be a list" + (" of tables ([[...]])" if isinstance(shape[0], Table) else "")
        for i, item in enumerate(value):
            if isinstance(shape[0], Table):
                bad = _check(item, shape[0], f"{inner} #{i + 1}", None)
            else:
                bad = _check(item, shape[0], table, f"{key}[{i}]")
            if bad:
                return bad
        return None
    if isinstance(shape, OneOf):
        if value not in shape.values:
            return f"{here} must be one of {', '.join(repr(v) for v in shape.values)}, not {value!r}"
        return None
    if isinstance(shape, Ints):
        if not isinstance(value, int) or isinstance(value, bool) or not shape.lo <= value <= shape.hi:
            return f"{here} must be an integer from {shape.lo} to {shape.hi}, not {value!r}"
        return None
    if not isinstance(value, shape) or (shape is int and isinstance(value, bool)):
        return f"{here} must be {_NAMES.get(shape, shape.__name__)}, not {value!r}"
    return None
