"""The two front-ends side by side: what tree-sitter saw of each file
libclang parsed without errors, against what libclang saw (the benchmark's
cross-check table, bench/crosscheck.py, and the real-tree test).

Rows are (found by tree-sitter, seen by libclang): function recall, call
recall by where the call is written (in the file, as a macro's argument, in
a macro's body, which tree-sitter cannot see), `->mapping` read recall, and
receiver-type agreement (tree-sitter's recipe resolved with the tree's types
against the configuration's exact type). Each disagreement is a line of
`notes` for a human to read.
"""

from __future__ import annotations

import json
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path

from ... import types
from ..cparse import Extractor
from .merge import call_index, counted_call, in_ranges, pair_call, pair_read, read_index
from .records import ClangFacts


def from_store(store, rules, type_env: Callable) -> tuple[dict, list[str]]:
    """The cross-check of a database made by `analyze --precise`; type_env
    (the graph stage's `graph.type_env`) resolves tree-sitter's recipes."""
    clang = {p: ClangFacts.from_json(json.loads(zlib.decompress(b)))
             for p, b in store.conn.execute("SELECT path, facts FROM clang_facts")}
    root = Path(store.get_meta("root"))
    extractor = Extractor(rules.parse)
    plain = {}
    for ff in store.load_facts():
        # merged files: tree-sitter's own facts again, from the source
        plain[ff.path] = extractor.extract(ff.path, (root / ff.path).read_bytes(), ff.digest) if ff.precise else ff
    env = type_env(list(plain.values()))
    return compare(plain, {p: c for p, c in clang.items() if p in plain and not c.errors}, env, rules)


def compare(plain: dict, clang: dict, env, rules) -> tuple[dict, list[str]]:
    rows: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    other: Counter = Counter()
    notes: list[str] = []
    wanted = set(rules.receiver_types)
    for path in sorted(clang):
        ts, cf = plain[path], clang[path]
        ts_defs = {f.name for f in ts.functions if f.definition}
        for f in cf.functions:
            key = "functions (written in the file)" if f.origin == "source" else "functions (made by a macro)"
            rows[key][1] += 1
            if f.name in ts_defs:
                rows[key][0] += 1
            elif f.origin == "source":
                notes.append(f"{path}:{f.line}: function {f.name}: libclang only")
        clang_defs = {f.name for f in cf.functions}
        for f in ts.functions:
            if f.definition and f.name not in clang_defs and not in_ranges(f.line, cf.skipped):
                other["tree-sitter definitions libclang did not see (outside #if branches not built)"] += 1
                notes.append(f"{path}:{f.line}: function {f.name}: tree-sitter only")
        _calls(path, ts, cf, env, rows, other, notes)
        _reads(path, ts, cf, env, wanted, rows, other, notes)
        other["#if branches this configuration does not build"] += len(cf.skipped)
    return {"files": sorted(clang), "rows": dict(rows), "other": dict(other)}, notes


def _resolved(env, recipe: str) -> str:
    got = env.resolve(recipe) if recipe else None
    return types.normalise(got[0], got[1]) if got else "?"


def _calls(path, ts, cf, env, rows, other, notes) -> None:
    index = call_index(ts.calls)
    defined = {f.name for f in ts.functions if f.definition}
    for cc in cf.calls:
        if not counted_call(cc, defined):
            continue
        key = {"source": "calls written in the file", "macro-arg": "calls written as a macro's argument",
               "macro-body": "calls made in a macro's body"}[cc.origin]
        rows[key][1] += 1
        i = pair_call(index, cc)
        if i is None:
            if cc.origin != "macro-body":
                notes.append(f"{path}:{cc.line}: call {cc.callee}() in {cc.caller}: libclang only ({cc.origin})")
            continue
        c = ts.calls[i]
        rows[key][0] += 1
        if c.via == "member" and cc.receiver:
            ts_type = _resolved(env, c.receiver)
            rows["member-call receiver types agreeing"][1] += 1
            if ts_type == cc.receiver:
                rows["member-call receiver types agreeing"][0] += 1
            else:
                notes.append(f"{path}:{cc.line}: {c.fn_text}(): receiver {ts_type} (tree-sitter) "
                             f"vs {cc.receiver} (libclang)")


def _reads(path, ts, cf, env, wanted, rows, other, notes) -> None:
    ts_reads = [r for r in ts.reads if r.via == "field"]
    by_line = read_index(ts.reads)
    seen = set()
    for cr in cf.reads:
        i = pair_read(ts.reads, by_line, cr)
        hit = ts.reads[i] if i is not None else None
        if hit is not None:
            seen.add(hit.start)
        base, _ = types.split(cr.receiver)
        if base not in wanted:
            continue  # another struct's ->mapping (seen, so not "tree-sitter only")
        key = "->mapping reads (page, folio) in the file" if cr.origin != "macro-body" \
            else "->mapping reads in a macro's body"
        rows[key][1] += 1
        if hit is None:
            if cr.origin != "macro-body":
                notes.append(f"{path}:{cr.line}: read ->{cr.member} in {cr.function}: libclang only")
            continue
        rows[key][0] += 1
        rows["read receiver types agreeing"][1] += 1
        ts_type = _resolved(env, hit.receiver)
        if ts_type == cr.receiver:
            rows["read receiver types agreeing"][0] += 1
        else:
            notes.append(f"{path}:{cr.line}: {hit.expr}: receiver {ts_type} (tree-sitter) vs {cr.receiver} (libclang)")
    for r in ts_reads:
        if r.start not in seen and not in_ranges(r.line, cf.skipped) and \
                types.split(_resolved(env, r.receiver))[0] in wanted | {"?"}:
            other["tree-sitter ->mapping reads libclang did not see (outside #if branches not built)"] += 1
            notes.append(f"{path}:{r.line}: {r.expr} in {r.function}: tree-sitter only")


