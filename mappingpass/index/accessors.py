"""Accessors found from the code, not from one release's names.

An accessor is a function that returns its page argument's field: every
`return` of it gives NULL, `page->mapping` of a page parameter (through
casts, READ_ONCE and the page converters), another accessor's answer for
that page, or a local given only such values. 6.12's

    static inline struct address_space *folio_flush_mapping(struct folio *folio)
    {
            if (unlikely(folio_test_swapcache(folio)))
                    return NULL;
            return folio_mapping(folio);
    }

is one: a call of it is a read of the field like `folio_mapping()`'s, and its
body is an accessor's definition, not a reader. The rules keep the roots
(`folio_mapping()`, whose swap and anon answers are not the field); the rest
composes across files to a fixpoint.

`derive_accessors` is pure (facts in, names out); `apply_accessors` parses
again the files whose reads change with the set, and keeps the set in the
index so that every later parse (warm analyze, plan's on-demand files) uses
it."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path

from ..ctext import parse_call, strip
from ..facts import FileFacts, Function, Value
from ..rules import Rules
from .sources import grep_files
from .store import Store
from .tree import parse_deferred

META_KEY = "derived_accessors"
_NULLS = {"NULL", "0", "((void *)0)"}
_MAX_ROUNDS = 4


def derive_accessors(all_facts: Iterable[FileFacts], rules: Rules) -> dict[str, str]:
    """name -> why of the functions the code shows to be accessors, beyond
    the rules' own (rules.roots())."""
    converters = rules.plan.page_converters if rules.plan else frozenset()
    pages = {f"{t} *" for t in rules.receiver_types}
    defs: dict[str, list[tuple[str, Function, list[Value]]]] = {}
    for ff in all_facts:
        values: dict[str, list[Value]] = {}
        for v in ff.values:
            values.setdefault(v.function, []).append(v)
        for fn in ff.functions:
            if fn.definition and "address_space *" in fn.return_type and any(p.type in pages for p in fn.params):
                defs.setdefault(fn.name, []).append((ff.path, fn, values.get(fn.name, [])))
    known = set(rules.roots())
    found: dict[str, str] = {}
    pr = rules.plan
    # the refactoring's own helpers answer the context, not the field
    ours = {pr.helper_page, pr.helper_folio, *rules.parse.converted} if pr else set()
    changed = True
    while changed:
        changed = False
        for name in sorted(defs):
            if name in known or name in ours:
                continue
            whys = [_returns_field(path, fn, vals, rules.field, known, pages, converters)
                    for path, fn, vals in defs[name]]
            # (a stub under #else that only returns NULL agrees, whether parsed yet or not)
            if all(w is not None for w in whys) and any(whys):
                known.add(name)
                found[name] = next(w for w in whys if w)
                changed = True
    return found


def _returns_field(path: str, fn: Function, values: list[Value], field: str, known: set[str],
                   pages: set[str], converters: frozenset[str]) -> str | None:
    """Why fn returns its page's field; "" when it only returns NULL, None
    when some return is not the field."""
    params = {p.name for p in fn.params if p.type in pages and p.name}
    returns = [v for v in values if v.name == "return"]
    every_param = {p.name for p in fn.params}
    by_local: dict[str, list[str]] = {}
    for v in values:
        # (not a parameter given a value: what the callers pass is returned too)
        if v.name != "return" and v.name not in every_param:
            by_local.setdefault(v.name, []).append(v.value)

    def is_page(expr: str) -> bool:
        """expr is a page parameter, or a local given only that (`folio = page_folio(page)`)."""
        e = strip(expr, converters)
        if e in params:
            return True
        given = by_local.get(e, [])
        return len(given) == 1 and strip(given[0], converters) in params

    def field_of_page(expr: str, depth: int = 0) -> bool:
        e = strip(expr, converters)
        if e in _NULLS:
            return True
        m = re.fullmatch(rf"(.+?)\s*(?:->|\.)\s*{re.escape(field)}", e)
        if m:
            return is_page(m.group(1))
        call = parse_call(e)
        if call:
            return call[0] in known and bool(call[1]) and is_page(call[1][0])
        if e in by_local and depth < 3:
            return all(field_of_page(x, depth + 1) for x in by_local[e])
        return False

    if not returns or not all(field_of_page(v.value) for v in returns):
        return None
    real = [v for v in returns if strip(v.value, converters) not in _NULLS]
    return f"{path}:{fn.line}: returns {real[-1].value}" if real else ""


def stored_accessors(store: Store) -> dict[str, str]:
    """The derived accessors the index's facts were parsed with ({} when the
    record is damaged: analyze derives them again; see accessors_damaged)."""
    found = store.get_json(META_KEY, {})
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in found.items()):
        return {}  # not what apply_accessors writes: derive again
    return found


def accessors_damaged(store: Store) -> bool:
    """The index holds a record of its derived accessors that is not one
    apply_accessors writes: what its facts were parsed with is unknown."""
    raw = store.get_meta(META_KEY)
    return raw is not None and not stored_accessors(store) and raw.strip() != "{}"


def apply_accessors(root: Path, rules: Rules, store: Store, facts: list[FileFacts],
                    log=None) -> tuple[Rules, list[FileFacts]]:
    """Derive the accessors from facts, and parse again every file that names
    one that joined or left the set since its facts were made (its calls of
    it are reads now, or no longer): (rules with them, the facts updated)."""
    applied = stored_accessors(store)
    for _ in range(_MAX_ROUNDS):
        found = derive_accessors(facts, rules)
        changed = sorted(set(found) ^ set(applied))
        if not changed and found == applied:
            break
        effective = rules.with_accessors(found)
        store.set_meta(META_KEY, json.dumps(found, sort_keys=True))
        store.commit()
        applied = found
        if not changed:
            continue
        candidates = store.paths_in_state("parsed") + store.searchable_deferred()
        hits = grep_files(root, sorted(candidates), changed)
        if log and hits:
            log(f"analyze: {len(changed)} accessors found from the code ({', '.join(changed[:3])}"
                f"{', ...' if len(changed) > 3 else ''}): parsing {len(hits)} files that call them")
        # (no note: analyze's own files, as a cold run with these accessors parses them)
        again = set(parse_deferred(root, effective, store, hits, why=""))
        facts = [ff for ff in facts if ff.path not in again] + store.load_facts(sorted(again))
    return rules.with_accessors(applied), facts
