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
import os
import pickle
from collections import defaultdict
from dataclasses import dataclass, field

import networkx as nx

from . import types
from .cparse import split_cast_argument
from .facts import Call, FileFacts, Function
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

    def to_json(self) -> dict:
        return {
            "file": self.file, "line": self.line, "col": self.col, "function": self.function,
            "function_id": self.function_id, "expr": self.expr, "receiver": self.receiver_text,
            "receiver_type": self.receiver_type, "via": self.via, "access": self.access,
            "kind": self.kind, "why": self.why,
        }


def edges_in(g: nx.MultiDiGraph, node: str, *kinds: str):
    """(predecessor, kind, edge data) of node's incoming edges of these kinds, sorted."""
    return sorted(((a, k, d) for a, _, k, d in g.in_edges(node, keys=True, data=True)
                   if not kinds or k in kinds), key=lambda e: (e[0], e[1]))


def edges_out(g: nx.MultiDiGraph, node: str, *kinds: str):
    """(successor, kind, edge data) of node's outgoing edges of these kinds, sorted."""
    return sorted(((b, k, d) for _, b, k, d in g.out_edges(node, keys=True, data=True)
                   if not kinds or k in kinds), key=lambda e: (e[0], e[1]))


@dataclass
class Analysis:
    graph: nx.MultiDiGraph
    types: TypeEnv
    # per parsed file: (error nodes, first error lines, recovered functions, call sites)
    files: dict[str, tuple[int, tuple[int, ...], int, int]]
    reads: list[ReadRecord]
    candidates: list[ReadRecord]  # receiver type unknown
    unresolved_member_calls: int
    stats: dict[str, int] = field(default_factory=dict)
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


def missing_types(all_facts: list[FileFacts]) -> set[str]:
    """Struct tags needed to type a read's, a member call's or a binding's
    receiver whose definitions none of these files holds."""
    env = type_env(all_facts)
    for ff in all_facts:
        for r in ff.reads:
            if r.via == "field":
                env.resolve(r.receiver)
        for c in ff.calls:
            if c.via == "member":
                env.resolve(c.receiver)
        for b in ff.bindings:
            if b.kind == "assign":
                env.resolve(b.receiver)
            elif b.owner:
                env.resolve(["f", ["t", f"struct {b.owner}", 0], b.member])
    return env.missing


def build(all_facts: list[FileFacts], rules: Rules) -> Analysis:
    env = type_env(all_facts)
    g = nx.MultiDiGraph()
    files = {f.path: (f.error_nodes, f.error_lines, f.recovered, len(f.calls)) for f in all_facts}
    statics: dict[tuple[str, str], str] = {}  # (path, name) -> id
    externs: set[str] = set()
    header_statics: dict[str, list[str]] = defaultdict(list)  # name -> ids in headers
    slot_owners: dict[str, list[str]] = defaultdict(list)  # member name -> slot ids

    # 1. types, functions, slots
    for ff in all_facts:
        for s in ff.slots:
            sid = f"member:{s.owner}.{s.name}" if s.kind == "member" else f"typedef:{s.name}"
            if sid not in g:
                g.add_node(sid, type="slot", slot_kind=s.kind, name=s.name, owner=s.owner,
                           params=[(p.name, p.type) for p in s.params], decls=[])
                if s.kind == "member":
                    slot_owners[s.name].append(sid)
            g.nodes[sid]["decls"].append((ff.path, s.line))
        for fn in ff.functions:
            if not fn.definition:
                continue
            fid = function_id(ff.path, fn)
            if fid not in g:
                g.add_node(fid, type="function", name=fn.name, static=fn.static, inline=fn.inline,
                           params=[(p.name, p.type) for p in fn.params], bodies=[], protos=[],
                           via_macro=fn.via_macro)
            g.nodes[fid]["bodies"].append((ff.path, fn.line))
            if fn.static:
                statics[(ff.path, fn.name)] = fid
                if ff.path.endswith(".h"):
                    header_statics[fn.name].append(fid)
            else:
                externs.add(fid)
    exported: set[str] = set()
    for ff in all_facts:
        exported.update(ff.exports)
        for fn in ff.functions:
            if not fn.definition:
                fid = statics.get((ff.path, fn.name)) or (fn.name if fn.name in externs else None)
                if fid is not None:
                    g.nodes[fid]["protos"].append((ff.path, fn.line))
        for fname, local in ff.locals_with_field_name:
            fid = statics.get((ff.path, fname)) or (fname if fname in externs else None)
            if fid is not None:
                g.nodes[fid].setdefault("clashes", set()).add(local)
    for fid in externs & exported:
        g.nodes[fid]["exported"] = True

    def resolve_function(path: str, name: str) -> str | None:
        fid = statics.get((path, name))
        if fid is not None:
            return fid
        if name in externs:
            return name
        cands = header_statics.get(name)
        if cands:
            return sorted(cands)[0]
        return None

    def member_slot(owner_recipe: str, member: str, owner: str = "") -> str | None:
        if not owner and owner_recipe:
            resolved = env.resolve(owner_recipe)
            owner = resolved[0].removeprefix("struct ") if resolved is not None else ""
        if owner:
            sid = f"member:{owner}.{member}"
            if sid in g:
                return sid
            # `bio_end_io_t *bi_end_io;`: a member typed by a function typedef is
            # that typedef's slot
            mtype = env.fields.get(f"struct {owner}", {}).get(member)
            if mtype is not None and f"typedef:{types.split(mtype)[0]}" in g:
                return f"typedef:{types.split(mtype)[0]}"
        owners = slot_owners.get(member, [])
        return owners[0] if len(owners) == 1 else None

    def param_slot(fid: str, index: int) -> str | None:
        params = g.nodes[fid]["params"]
        if index >= len(params):
            return None
        pname, ptype = params[index]
        base, _ = types.split(ptype)
        if f"typedef:{base}" in g:
            return f"typedef:{base}"
        if "(*)" in ptype:
            sid = f"param:{fid}#{index}"
            if sid not in g:
                g.add_node(sid, type="slot", slot_kind="param", name=f"{g.nodes[fid]['name']}#{index}",
                           owner=fid, params=[], decls=[], param_name=pname)
            return sid
        return None

    def add_edge(a: str, b: str, kind: str, site: tuple) -> None:
        if g.has_edge(a, b, key=kind):
            g.edges[a, b, kind]["sites"].append(site)
        else:
            g.add_edge(a, b, key=kind, kind=kind, sites=[site])

    # 2. calls, bindings
    unbound: dict[str, set[str]] = defaultdict(set)
    defined = {d["name"] for _, d in g.nodes(data=True) if d["type"] == "function"}
    unresolved_member = 0
    for ff in all_facts:
        for ci, call in enumerate(ff.calls):
            if call.caller is None:
                continue
            caller = resolve_function(ff.path, call.caller)
            if caller is None:
                continue
            site = (ff.path, call.line, ci)
            target = _call_target(call, caller, g, resolve_function, member_slot, param_slot, ff.path)
            if target is None:
                if call.via == "member":
                    unresolved_member += 1
            else:
                add_edge(caller, target, "call" if g.nodes[target]["type"] == "function"
                         else "call-through-slot", site)
            # functions passed as arguments bind to the callee's parameter slot
            if call.via == "direct" and target is not None:
                callee = target
                for ai, arg in enumerate(call.args):
                    if arg not in defined and arg[:1] not in "(&":
                        continue  # cheap test first: most arguments name no function
                    fname, cast = _function_argument(arg)
                    if fname is None or fname not in defined:
                        continue
                    bound = resolve_function(ff.path, fname)
                    if bound is None:
                        continue
                    sid = param_slot(callee, ai)
                    if sid is not None:
                        add_edge(bound, sid, "binds", (ff.path, call.line, "arg", cast))
        for b in ff.bindings:
            bound = resolve_function(ff.path, b.function)
            if b.kind == "init":
                sid = member_slot("", b.member, b.owner)
            else:
                sid = member_slot(b.receiver, b.member)
            if sid is None:
                continue
            if bound is not None:
                add_edge(bound, sid, "binds", (ff.path, b.line, b.kind, b.cast))
            elif b.function not in env.globals:
                # a function defined in a file not parsed yet: plan looks for it
                # when the slot changes
                unbound[sid].add(b.function)

    # 3. reads
    reads: list[ReadRecord] = []
    candidates: list[ReadRecord] = []
    wanted = set(rules.receiver_types)
    for ff in all_facts:
        for r in ff.reads:
            fid = resolve_function(ff.path, r.function) if r.function else None
            if r.via == "accessor":
                rtype = r.receiver
                ok: bool | None = True
            else:
                resolved = env.resolve(r.receiver)
                arrow = r.op == "->"
                if resolved is None:
                    ok, rtype = None, "?"
                else:
                    base, depth = resolved
                    rtype = types.normalise(base, depth)
                    ok = base in wanted and depth == (1 if arrow else 0)
            if ok is False:
                continue
            kind, why = rules.kind_of(ff.path, r.function)
            rec = ReadRecord(ff.path, r.line, r.col, r.function, fid, r.expr, r.receiver_text,
                             rtype, r.via, r.access, kind, why, r.start, r.end)
            (reads if ok else candidates).append(rec)
    stats = {
        "functions": sum(1 for _, d in g.nodes(data=True) if d["type"] == "function"),
        "slots": sum(1 for _, d in g.nodes(data=True) if d["type"] == "slot"),
        "call_edges": sum(1 for *_, d in g.edges(data=True) if d["kind"] == "call"),
        "slot_call_edges": sum(1 for *_, d in g.edges(data=True) if d["kind"] == "call-through-slot"),
        "bindings": sum(1 for *_, d in g.edges(data=True) if d["kind"] == "binds"),
    }
    return Analysis(g, env, files, reads, candidates, unresolved_member, stats,
                    {k: sorted(v) for k, v in sorted(unbound.items())})


def _call_target(call: Call, caller: str, g, resolve_function, member_slot, param_slot, path):
    if call.via == "direct":
        return resolve_function(path, call.callee)
    if call.via == "member":
        return member_slot(call.receiver, call.callee)
    # through a parameter: its type is a typedef slot or a parameter slot
    params = g.nodes[caller]["params"]
    for i, (pname, _ptype) in enumerate(params):
        if pname == call.callee:
            return param_slot(caller, i)
    return None


def _function_argument(arg: str) -> tuple[str | None, str]:
    text = arg.strip()
    if text.isidentifier():
        return text, ""
    if text.startswith("&") and text[1:].strip().isidentifier():
        return text[1:].strip(), ""
    split = split_cast_argument(text)
    if split is not None:
        return split[1], split[0]
    return None, ""


GRAPH_VERSION = 5  # bump when Analysis or what build() computes changes


def _cache_key(store, rules: Rules) -> str:
    return f"{GRAPH_VERSION}:{rules.digest}:{store.content_key()}"


def cached(store, rules: Rules) -> Analysis | None:
    """The cached analysis if the store has not changed since it was built."""
    try:
        with open(store.db_dir / "analysis.pickle", "rb") as fh:
            if pickle.load(fh) == _cache_key(store, rules):
                obj = pickle.load(fh)
                if isinstance(obj, Analysis) and all(
                    hasattr(obj, f.name) for f in dataclasses.fields(Analysis)
                ):
                    return obj
    except (OSError, EOFError, pickle.UnpicklingError, AttributeError, TypeError, ValueError):
        pass  # missing or stale cache: rebuild
    return None


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
    cache = store.db_dir / "analysis.pickle"
    tmp = cache.with_suffix(".tmp")
    with open(tmp, "wb") as fh:
        pickle.dump(_cache_key(store, rules), fh, protocol=pickle.HIGHEST_PROTOCOL)
        pickle.dump(analysis, fh, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, cache)


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
