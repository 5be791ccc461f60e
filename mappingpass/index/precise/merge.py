"""Tree-sitter facts + libclang facts of one file -> the facts the graph reads.

Tree-sitter's facts stay the base: they carry the byte spans emit edits, and
they cover every `#if` branch, built by this configuration or not (a call in
a branch not built must still be edited). libclang adds what only the
preprocessor shows and settles what only the configuration knows:

- calls made in a macro's body (`page_folio` -> `_compound_head`), kept apart
  in `macro_calls` (no argument list in the file: no edit can reach them, and
  no stage that reads call spans sees them);
- functions a macro's body stores in a struct (`INIT_WORK(&w, fn)` is
  `w.func = fn`), added as bindings with the macro's name;
- the receiver type of every member call and `->mapping` read both see,
  replaced by the configuration's exact type;
- calls written as a macro's argument are marked "macro-arg".

What each side saw that the other did not is counted (`MergeCounts`) for the
analyze report and the benchmark's cross-check.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from dataclasses import dataclass, field

from ... import types
from ...facts import Binding, Call, FileFacts, Read
from .records import ClangFacts

# a compiler's own functions are no kernel functions: never callers or callees
_COMPILER_NAMES = ("__builtin_", "__compiletime_assert_", "__sanitizer_")


@dataclass
class MergeCounts:
    macro_body_calls: int = 0  # added
    macro_registrations: int = 0  # bindings added
    macro_arg_calls: int = 0  # marked
    receivers_settled: int = 0  # receiver recipes replaced by an exact type
    clang_only_source_calls: int = 0  # libclang saw, tree-sitter did not (not added: no spans)
    macro_body_reads: int = 0  # `->mapping` read in a macro's body (not planned: no span to rewrite)
    skipped_range_facts: int = 0  # tree-sitter facts in #if branches this configuration does not build
    examples: list[str] = field(default_factory=list)

    def add(self, other: MergeCounts) -> None:
        for f in dataclasses.fields(self):
            if f.name != "examples":
                setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        self.examples += other.examples[: max(0, 20 - len(self.examples))]


def in_ranges(line: int, ranges: tuple[tuple[int, int], ...]) -> bool:
    return any(a <= line <= b for a, b in ranges)


# -- which tree-sitter record is libclang's (merge and the cross-check pair alike)
def call_index(calls: tuple[Call, ...]) -> dict[tuple, list[int]]:
    index: dict[tuple, list[int]] = defaultdict(list)
    for i, c in enumerate(calls):
        index[(c.caller, c.line, c.callee)].append(i)
    return index


def counted_call(cc, defined: set[str]) -> bool:
    """A call of a function of the file to a kernel function (not a compiler's)."""
    return cc.caller in defined and not cc.callee.startswith(_COMPILER_NAMES)


def pair_call(index: dict[tuple, list[int]], cc) -> int | None:
    """The tree-sitter call (its index) that is libclang's call cc, taken out
    of index; None for a call made in a macro's body, which tree-sitter cannot
    see, or one it missed."""
    if cc.origin == "macro-body":
        return None
    hits = index.get((cc.caller, cc.line, cc.callee))
    return hits.pop(0) if hits else None


def read_index(reads: tuple[Read, ...]) -> dict[tuple, list[int]]:
    index: dict[tuple, list[int]] = defaultdict(list)
    for i, r in enumerate(reads):
        if r.via == "field":
            index[(r.function, r.line)].append(i)
    return index


def pair_read(reads, index: dict[tuple, list[int]], cr) -> int | None:
    """The tree-sitter field read (its index) whose span holds libclang's read
    cr (or the only one of its line), None if none."""
    same_line = index.get((cr.function, cr.line), ())
    return next((i for i in same_line if reads[i].start <= cr.start < reads[i].end or len(same_line) == 1), None)


def merge(ts: FileFacts, cf: ClangFacts, config: str, read_field: str) -> tuple[FileFacts, MergeCounts]:
    counts = MergeCounts()
    defined = {f.name for f in ts.functions if f.definition}
    calls, made = _merge_calls(ts, cf, defined, counts)
    reads = list(ts.reads)
    by_line = read_index(ts.reads)
    for cr in cf.reads:
        if cr.member != read_field:
            continue
        if cr.origin == "macro-body":
            counts.macro_body_reads += 1
            counts.examples.append(f"{ts.path}:{cr.line}: {cr.function} reads ->{read_field} in {cr.macro}()")
            continue
        i = pair_read(reads, by_line, cr)
        exact = types.known(cr.receiver)
        if i is not None and reads[i].receiver != exact:
            reads[i] = dataclasses.replace(reads[i], receiver=exact)
            counts.receivers_settled += 1
    bindings = list(ts.bindings)
    written = {(b.function, b.line, b.member) for b in ts.bindings}
    for cb in cf.bindings:
        if cb.origin != "macro-body" or (cb.function, cb.line, cb.member) in written or cb.context not in defined:
            continue
        bindings.append(Binding("assign", cb.function, cb.line, "", cb.member, types.known(cb.receiver), "",
                                cb.context, cb.macro))
        counts.macro_registrations += 1
        counts.examples.append(f"{ts.path}:{cb.line}: {cb.macro}() stores {cb.function} in {cb.owner}.{cb.member}")
    counts.skipped_range_facts = sum(
        in_ranges(x.line, cf.skipped) for group in (ts.calls, ts.reads, ts.functions, ts.bindings) for x in group)
    return dataclasses.replace(ts, calls=tuple(calls), reads=tuple(reads), bindings=tuple(bindings),
                               precise=config, macro_calls=tuple(made)), counts


def _merge_calls(ts: FileFacts, cf: ClangFacts, defined: set[str],
                 counts: MergeCounts) -> tuple[list[Call], list[Call]]:
    calls, made = list(ts.calls), []
    index = call_index(ts.calls)
    for cc in cf.calls:
        if not counted_call(cc, defined):
            continue
        if cc.origin == "macro-body":
            made.append(Call(cc.caller, cc.line, cc.col, cc.start, cc.start, cc.via, cc.callee,
                             types.known(cc.receiver) if cc.receiver else "", cc.fn_args, (), -1,
                             f"{cc.macro}(...)", "macro-body", cc.macro, cc.callee_file, cc.callee_line))
            counts.macro_body_calls += 1
            continue
        i = pair_call(index, cc)
        if i is None:
            counts.clang_only_source_calls += 1
            continue
        c = calls[i]
        new = c
        if cc.origin == "macro-arg":
            new = dataclasses.replace(new, origin="macro-arg", macro=cc.macro)
            counts.macro_arg_calls += 1
        if c.via == "member" and cc.receiver and c.receiver != types.known(cc.receiver):
            new = dataclasses.replace(new, receiver=types.known(cc.receiver))
            counts.receivers_settled += 1
        calls[i] = new
    return calls, made
