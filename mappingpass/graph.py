"""The graph stage: every file's facts -> one networkx graph of functions and slots.

Nodes
  function  id "name" for an external symbol (all its definitions, `#ifdef`
            twins and per-arch variants are one node with several bodies),
            "path::name" for a static function (static inline ones in a header
            belong to the header).
  slot      "member:struct_tag.member" (a function-pointer member),
            "typedef:filler_t" (a function-pointer typedef),
            "param:function_id#index" (a function-pointer parameter whose type
            is not a typedef).
Edges (attribute `kind`)
  call               function -> function, `sites` = [(path, line, call index)]
  call-through-slot  function -> slot, same `sites`
  binds              function -> slot, `sites` = [(path, line, how, cast)]

Reads are classified here: a `X->mapping` is a read when the receiver's type,
resolved with every file's struct definitions, is one of the rules'
receiver types; one whose receiver type cannot be resolved is kept as a
*candidate* and reported, never counted as a read silently.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import networkx as nx

from . import safepickle, types
from .facts import FileFacts, Function
from .index.cparse import split_cast_argument
from .rules import Rules
from .types import TypeEnv


@dataclass(frozen=True)
class ReadRecord:
    """A classified read: the index's Read plus where it is and what kind."""

    file: str
    line: int
    col: int
    function: str | None
    function_id: str | None
    expr: str
    receiver_text: str
    receiver_type: str  # "struct page *", or the accessor name for accessor reads
    via: str
    access: str
    kind: int | str
    why: str
    start: int
    end: int
    purpose: str = "use"  # facts.Read.purpose
    member: str = ""
    cmp_start: int = -1
    cmp_end: int = -1
    cmp_op: str = ""
    cmp_other: str = ""
    cmp_text: str = ""
    cmp_line: int = 0

    def to_json(self) -> dict:
        return {
            "file": self.file, "line": self.line, "col": self.col, "function": self.function,
            "function_id": self.function_id, "expr": self.expr, "receiver": self.receiver_text,
            "receiver_type": self.receiver_type, "via": self.via, "access": self.access,
            "kind": self.kind, "why": self.why, "purpose": self.purpose,
        }


def edges_in(g: nx.MultiDiGraph, node: str, *kinds: str):
    """(predecessor, kind, edge data) of node's incoming edges of these kinds, sorted."""
    return sorted(((a, k, d) for a, _, k, d in g.in_edges(node, keys=True, data=True)
                   if not kinds or k in kinds), key=lambda e: (e[0], e[1]))


class Site(NamedTuple):
    """Where a call edge comes from: the file, the line and the call's index
    in the file's facts (`calls`, or `macro_calls` for "macro-call" edges)."""

    path: str
    line: int
    index: int


class BindSite(NamedTuple):
    """Where a "binds" edge comes from: how the function is stored ("init",
    "assign", "arg", "register") and the cast it is stored through, if any."""

    path: str
    line: int
    how: str
    cast: str
    table: str = ""  # a file-scope ops table's name (`btree_aops`) for "init"


def home(g: nx.MultiDiGraph, node: str) -> tuple[str, int]:
    """Where a node is: its first definition (functions) or declaration (slots)."""
    d = g.nodes[node]
    places = d.get("bodies") or d.get("decls") or [("", 0)]
    return min(places)


def edges_out(g: nx.MultiDiGraph, node: str, *kinds: str):
    """(successor, kind, edge data) of node's outgoing edges of these kinds, sorted."""
    return sorted(((b, k, d) for _, b, k, d in g.out_edges(node, keys=True, data=True)
                   if not kinds or k in kinds), key=lambda e: (e[0], e[1]))


def callers_of(g: nx.MultiDiGraph, node: str) -> list[tuple[str, str, list]]:
    """(caller, target, sites) of every call that reaches node: calls of it and
    calls through the slots it is bound to."""
    targets = [node] + [s for s, _, _ in edges_out(g, node, "binds")]
    return [(pred, target, sorted(edge["sites"])) for target in targets
            for pred, _, edge in edges_in(g, target, "call", "call-through-slot")]


@dataclass
class Analysis:
    graph: nx.MultiDiGraph
    types: TypeEnv
    # per parsed file: (error nodes, first error lines, recovered functions, call sites,
    # unterminated comments and literals)
    files: dict[str, tuple[int, tuple[int, ...], int, int, tuple[tuple[str, int], ...]]]
    reads: list[ReadRecord]
    candidates: list[ReadRecord]  # receiver type unknown
    unresolved_member_calls: int
    # slot -> names bound to it (initializers, assignments) that no parsed file defines
    unbound: dict[str, list[str]] = field(default_factory=dict)


def function_id(path: str, fn: Function) -> str:
    return f"{path}::{fn.name}" if fn.static else fn.name


def type_env(all_facts: list[FileFacts]) -> TypeEnv:
    """Struct members, typedefs, return types and globals of every file."""
    env = TypeEnv()
    for ff in all_facts:
        for sf in ff.fields:
            env.fields.setdefault(sf.owner, {}).setdefault(sf.name, sf.type)
        for name, t in ff.typedefs:
            env.typedefs.setdefault(name, t)
        for name, t in ff.globals:
            env.globals.setdefault(name, t)
        for fn in ff.functions:
            env.returns.setdefault(fn.name, fn.return_type)
    return env


def missing_types(all_facts: list[FileFacts], chain_from: re.Pattern[str] | None = None) -> set[str]:
    """Struct tags needed to type a read's, a member call's or a binding's
    receiver whose definitions none of these files holds; with chain_from,
    also the structs of those tags that parameters and locals point at (the
    plan follows their members to a mapping; a short list of operation
    descriptors such as iomap_iter, wanted whether or not a read is converted
    yet, so that every state of a tree plans alike)."""
    env = type_env(all_facts)
    if chain_from is not None:
        for ff in all_facts:
            typed = [p.type for fn in ff.functions if fn.definition for p in fn.params]
            typed += [v.type for v in ff.values]
            for t in typed:
                base, depth = types.split(t)
                if depth == 1 and base.startswith("struct ") and chain_from.search(base[7:]):
                    env.resolve(["f", ["t", base, 1], ""])
    for ff in all_facts:
        for r in ff.reads:
            if r.via == "field":
                env.resolve(r.receiver)
        # (the member's own type too: it names the slot, `bio_end_io_t *bi_end_io`)
        for c in ff.calls:
            if c.via == "member" and c.receiver:
                env.resolve(["f", json.loads(c.receiver), c.callee])
        for b in ff.bindings:
            if b.kind == "assign" and b.receiver:
                env.resolve(["f", json.loads(b.receiver), b.member])
            elif b.owner:
                env.resolve(["f", ["t", f"struct {b.owner}", 0], b.member])
    return env.missing


def _tables(g) -> tuple[dict, set, dict, dict]:
    """build()'s name tables, recovered from a built graph."""
    statics: dict[tuple[str, str], str] = {}
    externs: set[str] = set()
    header_statics: dict[str, list[str]] = defaultdict(list)
    slot_owners: dict[str, list[str]] = defaultdict(list)
    for n, d in g.nodes(data=True):
        if d["type"] == "function":
            if d["static"]:
                path = n[: -len(d["name"]) - 2]
                statics[(path, d["name"])] = n
                if path.endswith(".h"):
                    header_statics[d["name"]].append(n)
            else:
                externs.add(n)
        elif d["slot_kind"] == "member":
            slot_owners[d["name"]].append(n)
    return statics, externs, header_statics, slot_owners


def slot_id(s) -> str:
    return f"member:{s.owner}.{s.name}" if s.kind == "member" else f"typedef:{s.name}"


def resolution_words(old: dict[str, FileFacts], new: dict[str, FileFacts],
                     analysis: Analysis | None = None) -> set[str]:
    """Names whose resolution in *other* files may differ when the old facts of
    these files are replaced by the new ones: functions other files can call
    (not statics of a .c file) defined, removed or re-typed, slots added,
    removed or re-typed, struct members, typedefs, globals and return types
    whose types change, and the tags of structs defined for the first time.
    Given the analysis the old facts belong to, a definition that another file
    still provides unchanged does not count. Files that mention one of these
    names are re-resolved by the patch. For files only added (old empty), a
    member slot counts as `->member` and `.member(`, a new struct as `struct tag`
    (split_words), and a .c file's own variables and static functions do not
    count."""
    g = analysis.graph if analysis is not None else None
    paths = set(old) | set(new)

    def defs(facts: dict[str, FileFacts]):
        fns: dict[str, set] = defaultdict(set)
        slots: dict[str, set] = defaultdict(set)
        for path, ff in facts.items():
            for fn in ff.functions:
                if fn.definition and not (fn.static and not path.endswith(".h")):
                    fns[function_id(path, fn)].add(
                        (fn.name, tuple(p.type for p in fn.params), fn.return_type, fn.via_macro))
            for s in ff.slots:
                slots[slot_id(s)].add((s.name, tuple(p.type for p in s.params)))
        return fns, slots

    def kept_elsewhere(node: str, places: str) -> bool:
        """node is defined by a file outside these paths (so it stays)."""
        return g is not None and node in g and any(p[0] not in paths for p in g.nodes[node].get(places, ()))

    words: set[str] = set()
    (fo, so), (fn_, sn) = defs(old), defs(new)
    for a, b, places in ((fo, fn_, "bodies"), (so, sn, "decls")):
        for node in set(a) | set(b):
            before, after = a.get(node), b.get(node)
            if before == after:
                continue
            name = next(iter(after or before))[0]
            if kept_elsewhere(node, places):
                current = tuple(t for _, t in g.nodes[node]["params"])
                if all(sig[1] == current for sig in (after or ())):
                    continue  # another file defines it too, with the same parameters
            if not old and node.startswith("member:"):
                # a member slot added: what may resolve differently is a call
                # through a member of that name (`x->release(`, `ops.sync(`),
                # not every identifier `release`
                words |= {"->" + name, f".{name}("}
            else:
                words.add(name)
    fresh = type_env(list(new.values()))
    if analysis is None:
        gone = type_env(list(old.values()))
        for owner in set(gone.fields) | set(fresh.fields):
            fa, fb = gone.fields.get(owner, {}), fresh.fields.get(owner, {})
            words |= {m for m in set(fa) | set(fb) if fa.get(m) != fb.get(m)}
        for ta, tb in ((gone.typedefs, fresh.typedefs), (gone.globals, fresh.globals),
                       (gone.returns, fresh.returns)):
            words |= {k for k in set(ta) | set(tb) if ta.get(k) != tb.get(k)}
    else:
        env = analysis.types
        for owner, members in fresh.fields.items():
            current = env.fields.get(owner)
            if current is None:
                # a struct seen for the first time: files that name it, or a typedef of it
                words.add(owner.split(" ", 1)[-1] if old else owner)
                words |= {k for k, t in {**env.typedefs, **fresh.typedefs}.items()
                          if types.split(t)[0] == owner}
            elif old:
                words |= {m for m in set(current) | set(members) if current.get(m) != members.get(m)}
            # (files only added keep the types already known: see update)
        if old:
            for ta, tb in ((env.typedefs, fresh.typedefs), (env.globals, fresh.globals),
                           (env.returns, fresh.returns)):
                words |= {k for k, v in tb.items() if ta.get(k) != v}
        else:
            # files only added: names other files can see that were not known
            # (a .c file's variables and static functions are its own)
            visible = {n for fid in fn_ for n, *_ in fn_[fid]}
            shared = type_env([ff for p, ff in new.items() if p.endswith(".h")])
            words |= {k for k in fresh.typedefs if k not in env.typedefs}
            words |= {k for k in shared.globals if k not in env.globals}
            words |= {k for k in fresh.returns if k in visible and k not in env.returns}
    return {w for w in words if w and re.fullmatch(r"(->|struct |union )?[A-Za-z_]\w*|\.[A-Za-z_]\w*\(", w)}


def split_words(words: set[str]) -> tuple[list[str], list[str]]:
    """resolution_words as grep wants them: whole words, and fixed strings
    (`->member`, `struct tag`)."""
    fixed = sorted(w for w in words if not w.isidentifier())
    return sorted(w for w in words if w.isidentifier()), fixed


def empty_analysis() -> Analysis:
    return Analysis(nx.MultiDiGraph(), TypeEnv(), {}, [], [], 0, {})


def build(all_facts: list[FileFacts], rules: Rules) -> Analysis:
    """The analysis of these files (give them in path order: the first
    definition of a struct or a function is the one whose types win)."""
    return update(empty_analysis(), rules, {}, {ff.path: ff for ff in all_facts})


def graph_stats(g: nx.MultiDiGraph) -> dict[str, int]:
    """Counts of nodes and edges by kind (one pass over each, when asked:
    update, which plan calls per round, does not keep them)."""
    nodes = Counter(d["type"] for _, d in g.nodes(data=True))
    edges = Counter(k for _, _, k in g.edges(keys=True))
    return {"functions": nodes["function"], "slots": nodes["slot"], "call_edges": edges["call"],
            "slot_call_edges": edges["call-through-slot"], "bindings": edges["binds"], "twins": edges["twin"],
            "macro_call_edges": edges["macro-call"]}


def update(analysis: Analysis, rules: Rules, old: dict[str, FileFacts], new: dict[str, FileFacts],
           load: Callable[[str], FileFacts | None] | None = None) -> Analysis:
    """Turn the analysis of a set of files into the analysis of that set with
    `old` (the facts it was built with, for some paths) replaced by `new` (a
    path in old but not in new is removed). Mutates and returns `analysis`;
    `build` is this from an empty analysis, so the two cannot drift apart.

    The files' definitions, calls, bindings and reads are taken out and put
    back, resolved with the graph's own name tables. Calls in *other* files to
    a name whose definition changed are only re-resolved if those files are
    passed too (with the same facts in old and new): see `resolution_words`.
    `load(path)` gives the facts of an unchanged file when a node's first
    definition must be re-read from it."""
    u = _Update(analysis, rules, old, new, load)
    for phase in (u.forget_sources, u.forget_unbound, u.drop_old_edges, u.drop_old_places, u.merge_types,
                  u.add_definitions, u.add_twins_and_declarations, u.add_edges, u.add_reads, u.remove_gone):
        phase()
    return analysis


class _Update:
    """graph.update's state and its phases: the graph, its name tables (which
    the phases keep up to date as definitions go and come) and what each
    phase leaves for the next."""

    def __init__(self, analysis: Analysis, rules: Rules, old: dict[str, FileFacts], new: dict[str, FileFacts],
                 load: Callable[[str], FileFacts | None] | None) -> None:
        self.analysis, self.rules, self.old, self.new, self.load = analysis, rules, old, new, load
        self.g, self.env = analysis.graph, analysis.types
        self.paths = set(old) | set(new)
        self.order = sorted(new)
        self.statics, self.externs, self.header_statics, self.slot_owners = _tables(self.g)
        self.touched: set[str] = set()  # nodes whose definitions or declarations these files hold
        self.sources: set[str] = set()  # nodes whose outgoing edges these files made
        self.param_slots: set[str] = set()  # parameter slots that may be left with no edge
        self.emptied: set[str] = set()  # nodes no file defines any more (unless the new files do)
        self.refresh: set[str] = set()  # nodes whose first definition changed
        self.defined: set[str] = set()

    def resolve_function(self, path: str, name: str) -> str | None:
        fid = self.statics.get((path, name))
        if fid is not None:
            return fid
        if name in self.externs:
            return name
        cands = self.header_statics.get(name)
        return sorted(cands)[0] if cands else None

    def declared_function(self, path: str, call) -> str | None:
        """The function a macro-made call calls: the one declared where libclang
        says (of a static stub and an extern under #if, the one built), else
        none of them (`writeq` made by a macro of asm/io.h, not niu.c's own)."""
        where = (call.callee_file, call.callee_line)
        cands = [c for c in (self.statics.get((path, call.callee)),
                             call.callee if call.callee in self.externs else None,
                             *self.header_statics.get(call.callee, ())) if c is not None]
        if not call.callee_file:
            return self.resolve_function(path, call.callee)
        for fid in cands:
            d = self.g.nodes[fid]
            # a static stub is the one called only if its own body is what libclang
            # saw declared (the extern's prototype next to it is not the stub's)
            places = d.get("bodies", ()) if d.get("static") else (*d.get("bodies", ()), *d.get("protos", ()))
            if where in map(tuple, places):
                return fid
        # not a static libclang saw declared: the extern (its prototype may be in
        # a header the index has not parsed), if there is one
        return call.callee if call.callee in self.externs else None

    def member_slot(self, owner_recipe: str, member: str, owner: str = "") -> str | None:
        if not owner and owner_recipe:
            resolved = self.env.resolve(owner_recipe)
            owner = resolved[0].removeprefix("struct ") if resolved is not None else ""
        if owner:
            sid = f"member:{owner}.{member}"
            if sid in self.g:
                return sid
            mtype = self.env.fields.get(f"struct {owner}", {}).get(member)
            if mtype is not None and f"typedef:{types.split(mtype)[0]}" in self.g:
                return f"typedef:{types.split(mtype)[0]}"
        owners = self.slot_owners.get(member, [])
        return owners[0] if len(owners) == 1 else None

    def param_slot(self, fid: str, index: int) -> str | None:
        params = self.g.nodes[fid]["params"]
        if index >= len(params):
            return None
        pname, ptype = params[index]
        base, _ = types.split(ptype)
        if f"typedef:{base}" in self.g:
            return f"typedef:{base}"
        if "(*)" in ptype:
            sid = f"param:{fid}#{index}"
            if sid not in self.g:
                self.g.add_node(sid, type="slot", slot_kind="param", name=f"{self.g.nodes[fid]['name']}#{index}",
                                owner=fid, params=[], decls=[], param_name=pname)
            return sid
        return None

    def add_edge(self, a: str, b: str, kind: str, site: tuple) -> None:
        if self.g.has_edge(a, b, key=kind):
            self.g.edges[a, b, kind]["sites"].append(site)
        else:
            self.g.add_edge(a, b, key=kind, kind=kind, sites=[site])

    def bind_arguments(self, path: str, call, target: str) -> None:
        """A function passed to a function-pointer parameter binds to it."""
        for ai, arg in enumerate(call.args):
            if arg not in self.defined and arg[:1] not in "(&":
                continue
            fname, cast = function_argument(arg)
            if fname is None or fname not in self.defined:
                continue
            bound = self.resolve_function(path, fname)
            if bound is None:
                continue
            sid = self.param_slot(target, ai)
            if sid is not None:
                self.add_edge(bound, sid, "binds", BindSite(path, call.line, "arg", cast))

    def forget_sources(self) -> None:
        """1a. what the old files define, and the nodes whose edges they made."""
        g, old, paths, statics = self.g, self.old, self.paths, self.statics
        externs, touched, sources, resolve_function = self.externs, self.touched, self.sources, self.resolve_function
        # 1. take out what the old facts put in
        for path, ff in old.items():
            for fn in ff.functions:
                fid = (function_id(path, fn) if fn.definition
                       else _prototype_of(path, fn, statics, externs))
                if fid is not None and fid in g:
                    touched.add(fid)
            for s in ff.slots:
                if slot_id(s) in g:
                    touched.add(slot_id(s))
            for call in (*ff.calls, *ff.macro_calls):
                if call.caller is not None:
                    src = resolve_function(path, call.caller)
                    if src is not None:
                        sources.add(src)
                if call.via == "direct":
                    for arg in call.args:
                        fname, _ = function_argument(arg)
                        bound = resolve_function(path, fname) if fname else None
                        if bound is not None:
                            sources.add(bound)
            for b in ff.bindings:
                bound = resolve_function(path, b.function)
                if bound is not None:
                    sources.add(bound)
                    stored = g.nodes[bound].get("unslotted") if bound in g else None
                    if stored:
                        for key in [k for k in stored if k[0] in paths]:
                            del stored[key]

    def forget_unbound(self) -> None:
        """1b. bindings to slots that were never bound to a known function."""
        analysis, old, resolve_function, member_slot = self.analysis, self.old, self.resolve_function, self.member_slot
        unbound = getattr(analysis, "unbound", None)
        if unbound is not None:
            for path, ff in old.items():
                for b in ff.bindings:
                    if resolve_function(path, b.function) is not None:
                        continue
                    sid = (member_slot("", b.member, b.owner) if b.kind == "init"
                           else member_slot(b.receiver, b.member))
                    if sid in unbound and b.function in unbound[sid]:
                        unbound[sid] = [n for n in unbound[sid] if n != b.function]
                        if not unbound[sid]:
                            del unbound[sid]

    def drop_old_edges(self) -> None:
        """1c. the edges the old files made; twin edges of what they define."""
        g, paths, touched, sources = self.g, self.paths, self.touched, self.sources
        param_slots = self.param_slots
        for src in sources:
            if src not in g:
                continue
            for _, dst, key, data in list(g.out_edges(src, keys=True, data=True)):
                kept = [s for s in data["sites"] if s[0] not in paths]
                if len(kept) == len(data["sites"]):
                    continue
                if dst.startswith("param:"):
                    param_slots.add(dst)
                if kept:
                    data["sites"] = kept
                else:
                    g.remove_edge(src, dst, key)
        # twin edges are recomputed for every function these files define
        for n in touched:
            if g.nodes[n]["type"] == "function":
                for u, v, key in [*g.in_edges(n, keys=True), *g.out_edges(n, keys=True)]:
                    if key == "twin":
                        g.remove_edge(u, v, key)

    def drop_old_places(self) -> None:
        """1d. the old files' definitions and declarations, reads and exports."""
        g, analysis, old, new = self.g, self.analysis, self.old, self.new
        paths, statics, externs, header_statics = self.paths, self.statics, self.externs, self.header_statics
        slot_owners, touched, emptied, refresh = self.slot_owners, self.touched, self.emptied, self.refresh
        for n in touched:
            d = g.nodes[n]
            places = "bodies" if d["type"] == "function" else "decls"
            before = d[places]
            d[places] = [p for p in before if p[0] not in paths]
            if d["type"] == "function":
                d["protos"] = [p for p in d["protos"] if p[0] not in paths]
            if not d[places]:
                emptied.add(n)
            elif min(before)[0] in paths:
                refresh.add(n)  # its first definition (whose attributes it carries) changed
        for n in emptied:
            d = g.nodes[n]
            if d["type"] == "function":
                externs.discard(n)
                if d["static"]:
                    path = n[: -len(d["name"]) - 2]
                    statics.pop((path, d["name"]), None)
                    if n in header_statics.get(d["name"], []):
                        header_statics[d["name"]].remove(n)
                d.pop("clashes", None)
                d.pop("exported", None)
            elif d["slot_kind"] == "member" and n in slot_owners.get(d["name"], []):
                slot_owners[d["name"]].remove(n)
        analysis.reads = [r for r in analysis.reads if r.file not in paths]
        analysis.candidates = [r for r in analysis.candidates if r.file not in paths]
        for path in paths:
            analysis.files.pop(path, None)
        still_exported = {name for ff in new.values() for name in ff.exports}
        for ff in old.values():
            for name in ff.exports:
                if name in g and name not in still_exported:
                    g.nodes[name].pop("exported", None)

    def merge_types(self) -> None:
        """2. types: the new files' definitions replace what they defined before;
        files only added (plan's on-demand rounds) add the types not known yet,
        as the first definition wins in a build."""
        env, old, new, order = self.env, self.old, self.new, self.order
        # 2. types: the new files' definitions replace what they defined before;
        # files only added (plan's on-demand rounds) add the types not known yet,
        # as the first definition wins in a build
        if new:
            fresh = type_env([new[p] for p in order])
            if old:
                for owner, members in fresh.fields.items():
                    env.fields[owner] = dict(members)
                env.typedefs.update(fresh.typedefs)
                env.globals.update(fresh.globals)
                env.returns.update(fresh.returns)
            else:
                for owner, members in fresh.fields.items():
                    env.fields.setdefault(owner, dict(members))
                for known, more in ((env.typedefs, fresh.typedefs), (env.globals, fresh.globals),
                                    (env.returns, fresh.returns)):
                    for k, v in more.items():
                        known.setdefault(k, v)

    def add_definitions(self) -> None:
        """3a. the new files' slots and function definitions."""
        g, new, statics, externs = self.g, self.new, self.statics, self.externs
        header_statics, slot_owners, touched, order = self.header_statics, self.slot_owners, self.touched, self.order
        # 3. build()'s passes over the new files
        for path in order:
            ff = new[path]
            for s in ff.slots:
                sid = slot_id(s)
                if sid not in g:
                    g.add_node(sid, type="slot", slot_kind=s.kind, name=s.name, owner=s.owner,
                               params=[(p.name, p.type) for p in s.params], decls=[])
                    if s.kind == "member":
                        slot_owners[s.name].append(sid)
                elif not g.nodes[sid]["decls"]:
                    g.nodes[sid]["params"] = [(p.name, p.type) for p in s.params]
                    if s.kind == "member" and sid not in slot_owners[s.name]:
                        slot_owners[s.name].append(sid)
                g.nodes[sid]["decls"].append((path, s.line))
                touched.add(sid)
            for fn in ff.functions:
                if not fn.definition:
                    continue
                fid = function_id(path, fn)
                if fid not in g:
                    g.add_node(fid, type="function", name=fn.name, static=fn.static, inline=fn.inline,
                               params=[(p.name, p.type) for p in fn.params], bodies=[], protos=[],
                               via_macro=fn.via_macro)
                elif not g.nodes[fid]["bodies"]:
                    g.nodes[fid].update(name=fn.name, static=fn.static, inline=fn.inline,
                                        params=[(p.name, p.type) for p in fn.params], via_macro=fn.via_macro)
                g.nodes[fid]["bodies"].append((path, fn.line))
                touched.add(fid)
                if fn.static:
                    statics[(path, fn.name)] = fid
                    if path.endswith(".h") and fid not in header_statics[fn.name]:
                        header_statics[fn.name].append(fid)
                else:
                    externs.add(fid)

    def add_twins_and_declarations(self) -> None:
        """3b. twins, refreshed first definitions, prototypes, exports, clashes."""
        g, new, load, statics = self.g, self.new, self.load, self.statics
        externs, header_statics, touched, refresh = self.externs, self.header_statics, self.touched, self.refresh
        order = self.order
        # `static inline` stubs in a header (the `#else` of a config option) twin the
        # extern function of the same name: they change together or the stub's
        # configuration no longer builds
        for n in touched:
            d = g.nodes[n]
            if d["type"] != "function" or not d["bodies"]:
                continue
            if d["static"] and n in header_statics.get(d["name"], ()) and d["name"] in externs:
                g.add_edge(n, d["name"], key="twin", kind="twin", sites=[min(d["bodies"])])
            elif not d["static"]:
                for stub in header_statics.get(d["name"], ()):
                    if g.nodes[stub]["bodies"]:
                        g.add_edge(stub, n, key="twin", kind="twin", sites=[min(g.nodes[stub]["bodies"])])
        for n in refresh:
            d = g.nodes[n]
            places = "bodies" if d["type"] == "function" else "decls"
            first_path, first_line = min(d[places])
            ff = new.get(first_path) or (load(first_path) if load else None)
            if ff is None:
                continue
            if d["type"] == "function":
                fn = next((f for f in ff.functions if f.definition and f.name == d["name"] and f.line == first_line),
                          None)
                if fn is not None:
                    d.update(static=fn.static, inline=fn.inline, params=[(p.name, p.type) for p in fn.params],
                             via_macro=fn.via_macro)
            else:
                s = next((s for s in ff.slots if slot_id(s) == n and s.line == first_line), None)
                if s is not None:
                    d["params"] = [(p.name, p.type) for p in s.params]
        for path in order:
            ff = new[path]
            for name in ff.exports:
                if name in externs:
                    g.nodes[name]["exported"] = True
            for fn in ff.functions:
                if not fn.definition:
                    fid = _prototype_of(path, fn, statics, externs)
                    if fid is not None:
                        g.nodes[fid]["protos"].append((path, fn.line))
                        touched.add(fid)
            for fname, local in ff.locals_with_field_name:
                fid = statics.get((path, fname)) or (fname if fname in externs else None)
                if fid is not None:
                    g.nodes[fid].setdefault("clashes", set()).add(local)

    def add_edges(self) -> None:
        """3c. calls (and those macro bodies make), registrations and bindings."""
        g, env, rules, analysis = self.g, self.env, self.rules, self.analysis
        new, statics, externs, order = self.new, self.statics, self.externs, self.order
        resolve_function, member_slot = self.resolve_function, self.member_slot
        self.defined = {name for _, name in statics} | externs
        param_slot, add_edge, bind_arguments = self.param_slot, self.add_edge, self.bind_arguments
        declared_function = self.declared_function
        unbound = getattr(analysis, "unbound", None)
        registrations = {r.name: r for r in (rules.plan.registrations if rules.plan else ())}
        for path in order:
            ff = new[path]
            for ci, call in enumerate(ff.macro_calls):
                # made by a macro's body (precise mode): an edge of its own kind,
                # since no argument list in the file can be edited
                caller = resolve_function(path, call.caller) if call.caller else None
                target = declared_function(path, call) if call.via == "direct" else \
                    member_slot(call.receiver, call.callee) if call.via == "member" else None
                if caller is not None and target is not None:
                    add_edge(caller, target, "macro-call", Site(path, call.line, ci))
                    if call.via == "direct":
                        bind_arguments(path, call, target)
            for ci, call in enumerate(ff.calls):
                if call.caller is None:
                    continue
                caller = resolve_function(path, call.caller)
                if caller is None:
                    continue
                site = Site(path, call.line, ci)
                if call.via == "direct":
                    target = resolve_function(path, call.callee)
                elif call.via == "member":
                    target = member_slot(call.receiver, call.callee)
                else:
                    target = next((param_slot(caller, i) for i, (pname, _) in enumerate(g.nodes[caller]["params"])
                                   if pname == call.callee), None)
                if target is not None:
                    add_edge(caller, target, "call" if g.nodes[target]["type"] == "function"
                             else "call-through-slot", site)
                if call.via == "direct" and target is not None:
                    bind_arguments(path, call, target)
            for call in ff.calls:
                reg = registrations.get(call.callee) if call.via == "direct" and call.caller else None
                if reg is None or reg.arg >= len(call.args):
                    continue
                fname, cast = function_argument(call.args[reg.arg])
                bound = resolve_function(path, fname) if fname else None
                if bound is not None:
                    if reg.slot not in g:
                        g.add_node(reg.slot, type="slot", slot_kind="registration", name=reg.slot.split(":", 1)[-1],
                                   owner="", params=[], decls=[], why=reg.why)
                    add_edge(bound, reg.slot, "binds", BindSite(path, call.line, "register", cast))
            for b in ff.bindings:
                bound = resolve_function(path, b.function)
                sid = member_slot("", b.member, b.owner) if b.kind == "init" else member_slot(b.receiver, b.member)
                if sid is None:
                    if bound is not None:
                        # stored in a member of a struct the index has not seen
                        # (a header parsed for nobody yet): the plan may not change it
                        resolved = env.resolve(b.receiver) if b.receiver else None
                        owner = b.owner or (resolved[0].removeprefix("struct ") if resolved else "?")
                        g.nodes[bound].setdefault("unslotted", {})[(path, b.line)] = f"{owner}.{b.member}"
                    continue
                if bound is not None:
                    add_edge(bound, sid, "binds", BindSite(path, b.line, b.kind, b.cast, b.table))
                elif unbound is not None and b.function not in env.globals:
                    if b.function not in unbound.get(sid, []):
                        unbound[sid] = sorted([*unbound.get(sid, []), b.function])
            analysis.files[path] = (ff.error_nodes, ff.error_lines, ff.recovered, len(ff.calls), ff.unterminated)

    def add_reads(self) -> None:
        """3d. the new files' reads, typed: reads, or candidates of unknown type."""
        env, rules, analysis, new = self.env, self.rules, self.analysis, self.new
        order, resolve_function = self.order, self.resolve_function
        wanted = set(rules.receiver_types)
        for path in order:
            ff = new[path]
            for r in ff.reads:
                fid = resolve_function(path, r.function) if r.function else None
                if r.via == "accessor":
                    rtype, ok = r.receiver, True
                else:
                    resolved = env.resolve(r.receiver)
                    if resolved is None:
                        ok, rtype = None, "?"
                    else:
                        base, depth = resolved
                        rtype = types.normalise(base, depth)
                        ok = base in wanted and depth == (1 if r.op == "->" else 0)
                if ok is False:
                    continue
                kind, why = rules.kind_of(path, r.function)
                rec = ReadRecord(path, r.line, r.col, r.function, fid, r.expr, r.receiver_text, rtype, r.via,
                                 r.access, kind, why, r.start, r.end, r.purpose, r.member, r.cmp_start,
                                 r.cmp_end, r.cmp_op, r.cmp_other, r.cmp_text, r.cmp_line)
                (analysis.reads if ok else analysis.candidates).append(rec)

    def remove_gone(self) -> None:
        """4. what no file defines any more goes, with its edges."""
        g, rules, analysis, touched = self.g, self.rules, self.analysis, self.touched
        param_slots, emptied = self.param_slots, self.emptied
        # 4. what no file defines any more goes, with its edges
        gone = {n for n in emptied if n in g and not g.nodes[n]["bodies" if g.nodes[n]["type"] == "function"
                                                                  else "decls"]}
        if gone:
            param_slots |= {m for m, d in g.nodes(data=True) if d["type"] == "slot" and d["slot_kind"] == "param"
                            and d["owner"] in gone}
            for n in gone:
                param_slots |= {m for m in g.successors(n) if m.startswith("param:")}
                g.remove_node(n)
        for n in param_slots:
            if n in g and (g.degree(n) == 0 or g.nodes[n]["owner"] not in g):
                g.remove_node(n)
        for n in touched:
            if n in g:
                d = g.nodes[n]
                for places in ("bodies", "protos", "decls"):
                    if places in d:
                        d[places].sort()
        analysis.reads.sort(key=lambda r: (r.file, r.line, r.col, r.start))
        if any(k.bound_to is not None for k in rules.kinds):
            analysis.reads = [_classify(r, g, rules) for r in analysis.reads]
        return analysis



def _classify(r: ReadRecord, g, rules: Rules) -> ReadRecord:
    """The read's kind with what its function is registered as (bound to):
    a completion handler is kind 3 because of where it is registered."""
    bound = tuple(s for s, _, _ in edges_out(g, r.function_id, "binds")) if r.function_id in g else ()
    kind, why = rules.kind_of(r.file, r.function, bound)
    return r if (kind, why) == (r.kind, r.why) else dataclasses.replace(r, kind=kind, why=why)



def _prototype_of(path: str, fn: Function, statics: dict, externs: set) -> str | None:
    """The node a prototype declares: an extern one declares the extern
    function even in a header whose `#else` branch defines a stub of the name."""
    if not fn.static and fn.name in externs:
        return fn.name
    return statics.get((path, fn.name)) or (fn.name if fn.name in externs else None)


def function_argument(arg: str) -> tuple[str | None, str]:
    text = arg.strip()
    if text.isidentifier():
        return text, ""
    if text.startswith("&") and text[1:].strip().isidentifier():
        return text[1:].strip(), ""
    split = split_cast_argument(text)
    if split is not None:
        return split[1], split[0]
    return None, ""


GRAPH_VERSION = 11  # bump when Analysis or what build() computes changes


def _cache_key(store, rules: Rules) -> str:
    return f"{GRAPH_VERSION}:{safepickle.code_digest()}:{rules.digest}:{store.content_key()}"


def cached(store, rules: Rules) -> Analysis | None:
    """The cached analysis if the store has not changed since it was built."""
    obj = safepickle.read_keyed(store.db_dir / "analysis.pickle", _cache_key(store, rules))
    if isinstance(obj, Analysis) and all(hasattr(obj, f.name) for f in dataclasses.fields(Analysis)):
        return obj
    return None  # missing or stale cache: rebuild


def load_or_build(store, rules: Rules, all_facts: list[FileFacts] | None = None,
                  keep: bool = True) -> Analysis:
    """The analysis of what the store holds, from the cache next to the store
    when nothing changed since it was built (warm runs, and every command after
    analyze), else built and cached again (written atomically)."""
    analysis = cached(store, rules)
    if analysis is not None:
        return analysis
    # path order, whatever order the facts were gathered in: the graph (and the
    # first definition of a struct that wins) must not depend on it
    facts = sorted(all_facts, key=lambda f: f.path) if all_facts is not None else store.load_facts()
    analysis = build(facts, rules)
    if keep:
        save(store, rules, analysis)
    return analysis


def save(store, rules: Rules, analysis: Analysis) -> None:
    """Cache an analysis of what the store holds now (written atomically)."""
    if getattr(store, "readonly", False):
        return  # a database the user cannot write: nothing is cached
    safepickle.write_keyed(store.db_dir / "analysis.pickle", _cache_key(store, rules), analysis)


def summary(analysis: Analysis) -> dict:
    by_kind: dict[str, int] = defaultdict(int)
    by_subsystem: dict[str, int] = defaultdict(int)
    for r in analysis.reads:
        by_kind[str(r.kind)] += 1
        by_subsystem[r.file.split("/", 1)[0] if "/" in r.file else "."] += 1
    return {
        "reads_by_kind": dict(sorted(by_kind.items())),
        "reads_by_subsystem": dict(sorted(by_subsystem.items(), key=lambda kv: (-kv[1], kv[0]))),
    }


def recipe_json(recipe: list) -> str:
    return json.dumps(recipe, separators=(",", ":"))
