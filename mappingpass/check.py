"""The check stage: run the plan in the executable write-protect model.

A verdict is worth what it could have refuted, so nothing in a scenario is the
page's owner because of its type:

* **Adversarial bindings.** Every pointer parameter of the function a path
  starts from is an object of its own: two inodes are two inodes, a file's
  inode is another inode (and in the ``bdev-file`` variant its ``f_mapping``
  is not that inode's ``i_mapping``), a dentry has a parent with an inode of
  its own, a struct the model has no class for (`struct iomap_iter`) gets
  fresh members on first use, typed from the tree's struct definitions.
* **The owner comes from the code.** The interpreter runs, in the model, the
  statements that give the path's functions their pointer locals (facts'
  `values`), in source order: page-cache lookups (rules `[[plan.lookup]]`)
  create a page of the mapping they are given, write protected and shared
  with another file's page, and that mapping is the page's owner; calls of
  functions of the tree are run the same way (their parameters bound to the
  arguments) to their `return`; `d_inode()`, member loads and the model's
  accessors are evaluated. A page handed to `M->a_ops->op(...)` belongs to M
  (the ops contract: the only assumption about ownership). A page that comes
  in as a parameter of the function the path starts from has no owner the
  code shows.
* **Paths follow the page**, not the plan: from the reader up through every
  caller that hands it its page (Context.origin says which argument that is),
  until the page's origin is inside the function (a lookup, a carrier, an ops
  call's receiver) or nothing calls it. Along a path, every argument the plan
  passes is evaluated in the caller's world and bound to the callee's new
  parameter; the reader's helper call is then evaluated and compared with the
  owner.

Verdicts per read: ``resolvable`` (every path, every variant: the helper's
answer is the page's owner), ``unresolvable`` (a witness: the path, the
argument that went wrong, what it evaluated to and the owner), ``unproven``
(the page's origin or an argument could not be interpreted: what is missing),
``runtime`` for kinds 2-5 and for reads only a debug macro reports (the model
operation that covers them), ``never-protected`` (the rule). Identity tests
that became membership tests are checked with the membership helper's
semantics; NULL tests with the record in the field; flag tests with the
field's flag bits (none on a record: the answer before protection stands).
"""

from __future__ import annotations

import fnmatch
import re
from collections import defaultdict
from dataclasses import asdict, dataclass
from enum import StrEnum
from functools import lru_cache

from . import model
from . import types as ctypes
from .ctext import call_head, member_of, parse_call, root_of, strip
from .graph import Analysis, ReadRecord, edges_out, home
from .plan import CallSite, Plan, Rewrite
from .plan.context import Context
from .rules import Rules

CHECK_SCHEMA = "mappingpass.check/3"
MAX_PATHS = 64  # call paths checked per read
MAX_DEPTH = 24  # calls per path
CALL_DEPTH = 3  # nested calls of tree functions interpreted for a local's value

RUNTIME_COVER = {
    2: "reverse-map walk: World.reclaim reaches every owner through the record (rmap_walk_ksm)",
    3: "buffer-head mapping: World.end_buffer_async_write reports through bh->b_mapping",
    4: "debug output: reports page state only (no mapping needed)",
    5: "GUP break: World.gup(write=True) breaks protection before pinning",
}
_SUBSCRIPT = re.compile(r"\[[^\[\]]*\]")
_CAST = re.compile(r"^\(\s*(?:const\s+)?(?:struct|union)?\s*[A-Za-z_]\w*\s*\**\s*\)\s*(?=[A-Za-z_&(])")


@lru_cache(maxsize=65536)  # (pure: the same few thousand expressions, evaluated on every path)
def _clean(text: str) -> str:
    """An expression without what the model's evaluator need not see: casts to a
    pointer type and outer parentheses."""
    e = text.strip()
    while True:
        before = e
        e = _CAST.sub("", e, count=1).strip()
        if e.startswith("(") and e.endswith(")") and parse_call("f" + e) is not None:
            e = e[1:-1].strip()
        if e == before:
            return e


@lru_cache(maxsize=65536)
def _normal(text: str) -> str:
    """text as the evaluator reads it: clean, every subscript the first element."""
    return _SUBSCRIPT.sub("[0]", _clean(text))


@dataclass(frozen=True)
class Hop:
    """One call on a path: `caller` calls `callee` at file:line passing `argument`."""

    file: str
    line: int
    caller: str
    callee: str
    argument: str | None  # None: the call passes no mapping
    how: str = ""  # the plan's "parameter" | "provider" | "lookup" | "receiver" | ...


class Cause(StrEnum):
    """Why a read is unproven: what the interpreter could not follow."""

    PAGE = "page"  # where the page comes from (a structure, an array, a call it does not run)
    ARGUMENT = "argument"  # the mapping handed down or the helper's context
    PLAN_NULL = "plan-null"  # a page it cannot name, with the NULL the plan passes where it could not say
    NULL_PAGE = "null-page"  # the page is NULL at the read on every path it follows
    ENTRY = "entry"  # every path starts at a function nothing in the tree calls
    BOUNDS = "bounds"  # more call paths than the bounds; those checked hold


@dataclass(frozen=True)
class Witness:
    path: tuple[Hop, ...]  # from the function the path starts at down to the reader
    argument: str  # the expression that went wrong
    scenario: str
    error: str
    value: str = ""  # what the argument evaluated to
    owner: str = ""  # the mapping the page belongs to


@dataclass(frozen=True)
class Verdict:
    file: str
    line: int
    function: str | None
    expr: str
    kind: int | str
    verdict: str  # "resolvable" | "mixed" | "unresolvable" | "unproven" | "runtime" | "never-protected"
    #               mixed: resolvable on every path from kind-1 code; the paths from kinds 2-5
    #               (reclaim's LRU, a fault's PTE) reach it with no mapping, which run time covers
    paths: int  # paths checked
    truncated: bool  # more paths than MAX_PATHS / deeper than MAX_DEPTH
    witness: Witness | None
    covered_by: str = ""  # runtime / never-protected / resolvable: what covers it
    missing: str = ""  # unproven: what the interpreter could not follow
    cause: Cause | None = None  # unproven: the kind of thing it could not follow


@dataclass(frozen=True)
class CheckResult:
    verdicts: tuple[Verdict, ...]

    def summary(self) -> dict:
        counts: dict[str, int] = defaultdict(int)
        causes: dict[str, int] = defaultdict(int)
        for v in self.verdicts:
            counts[v.verdict] += 1
            if v.cause is not None:
                causes[str(v.cause)] += 1
        return {"reads": len(self.verdicts), **dict(sorted(counts.items())),
                "unproven_causes": dict(sorted(causes.items())),
                "truncated": sum(1 for v in self.verdicts if v.truncated),
                "bounds": {"paths_per_read": MAX_PATHS, "depth": MAX_DEPTH}}

    def to_json(self) -> dict:
        return {"schema": CHECK_SCHEMA, "summary": self.summary(),
                "verdicts": [asdict(v) for v in self.verdicts]}


class _Failure(Exception):
    """The path is refuted (unresolvable) or cannot be followed (unproven)."""

    def __init__(self, verdict: str, argument: str, error: str, value: str = "", owner: str = "",
                 no_owner: bool = False, null_page: bool = False, cause: Cause = Cause.ARGUMENT,
                 never: str = "", record: bool = False) -> None:
        super().__init__(error)
        self.verdict, self.argument, self.error, self.value, self.owner = verdict, argument, error, value, owner
        self.cause = cause  # unproven: what could not be followed
        self.never = never  # the page at the read is never protected: why (not a failure of the plan)
        self.record = record  # the mapping passed is the protection record: a raw read handed on
        self.no_owner = no_owner  # the page came in as a parameter and nothing says whose it is
        self.null_page = null_page  # the model's page is NULL at the read: not a path the kernel takes


@dataclass(frozen=True)
class _Path:
    hops: tuple[Hop, ...]  # top-down
    top: str  # the function the path starts at
    sites: tuple[tuple, ...]  # graph site of each hop (path, line, call index)
    contract: bool  # the first hop is `M->a_ops->op(page...)`: its page is M's
    pages: tuple[int, ...] = ()  # per hop: the argument that carries the page
    entry: bool = False  # top takes the page as a parameter and nothing in the tree calls it


class _World:
    """One scenario: a model world, the owners of the pages it made, and the
    fresh objects of every binding."""

    def __init__(self, checker: _Checker, variant: str, nulls: set[str]) -> None:
        self.c = checker
        self.variant = variant
        self.nulls = nulls
        self.w = model.World()
        self.owner: dict[int, model.AddressSpace] = {}  # id(folio) -> mapping it was reached through
        self.param_pages: dict[int, str] = {}  # id(folio) -> the parameter it came in as
        self.null_hop: Hop | None = None  # a hop where the plan passes NULL as it could not say
        self.never: dict[int, str] = {}  # id(folio) -> why it is never protected (its mapping's rule)
        self.seq = 0

    def _name(self, hint: str) -> str:
        self.seq += 1
        return f"{hint}#{self.seq}"

    # -- fresh objects ----------------------------------------------------------
    def fresh(self, ctype: str, hint: str) -> object:
        base, depth = self.c.env.canonical(*ctypes.split(ctypes.normalise(ctype)))
        if depth == 0 and base.startswith(("struct ", "union ")) and base not in ("struct page", "struct folio"):
            depth = 1  # an embedded struct (`obj->base.filp`, `bi->vfs_inode`): an object of its own
        if depth != 1:
            return model.Unknown(f"{hint}: {ctype}")
        name = self._name(hint)
        if base == "struct address_space":
            return self.w.inode(f"{name}.host").i_mapping
        if base == "struct inode":
            return self.w.inode(name)
        if base == "struct file":
            return self.file(name)
        if base == "struct kiocb":
            return self.w.kiocb(self.file(f"{name}.ki_filp"), name)
        if base == "struct dentry":
            parent = model.Dentry(f"{name}.d_parent", self.w.inode(f"{name}.d_parent.d_inode"))
            return model.Dentry(name, self.w.inode(f"{name}.d_inode"), parent)
        if base == "struct readahead_control":
            return model.ReadaheadControl(name, self.w.inode(f"{name}.mapping.host").i_mapping)
        if base == "struct vm_fault":
            vma = self.w.mmap(self.file(f"{name}.vma.vm_file"))
            vmf = model.VmFault(name, vma, 0)
            vmf.page = self.page_of(vma.vm_file.f_mapping, "page").page  # the fault's page is the file's
            return vmf
        if base in ("struct page", "struct folio"):
            folio = self.w.add_to_page_cache(self.w.inode(f"{name}.unknown-owner").i_mapping, 0)
            self.param_pages[id(folio)] = hint
            return folio.page if base == "struct page" else folio
        members = self.c.env.fields.get(base)
        if members is None:
            # a struct defined in a file the index deferred: a member gets the
            # type every analysed struct with a member of that name agrees on
            return model.Opaque(name, base, _ANY, lambda m: self._untyped_member(name, base, m))
        return model.Opaque(name, base, frozenset(members),
                            lambda m: self.fresh(members[m], f"{name}->{m}"))

    def _untyped_member(self, name: str, base: str, member: str) -> object:
        ctype = self.c.member_types().get(member)
        if ctype is None:
            return model.Unknown(f"{name}->{member}: {base} is not defined in the analysed files, and the "
                                 f"structs that are do not agree on the type of a member {member}")
        return self.fresh(ctype, f"{name}->{member}")

    def file(self, name: str) -> model.File:
        inode = self.w.inode(f"{name}.f_inode")
        if self.variant == "bdev-file":
            return self.w.open_blockdev(inode, self.w.blockdev(f"{name}.bdev"), name)
        return self.w.open(inode, name)

    def page_of(self, mapping: object, what: str) -> model.Folio:
        """A page-cache page of mapping, write protected and shared with another
        file's page: its owner is mapping. Unless the mapping is one the rules
        say user space never maps (never_protected: the btree inode's, found
        by the member chain the model reached it by): then a page of its own."""
        if not isinstance(mapping, model.AddressSpace):
            raise _Failure("unproven", what, f"the lookup's mapping is {mapping!r}, not an address_space",
                           cause=Cause.PAGE)
        index = len(mapping.i_pages)
        if why := self.c.never_mapping(mapping, what):
            folio = self.w.add_to_page_cache(mapping, index)
            self.owner[id(folio)], self.never[id(folio)] = mapping, why
            return folio
        folio = self.w.add_to_page_cache(mapping, index, b"same")
        other = self.w.add_to_page_cache(self.w.inode(self._name("other")).i_mapping, 0, b"same")
        self.w.write_protect([folio, other])
        self.owner[id(folio)] = mapping
        return folio

    def bind(self, fid: str, nulls: set[str] = frozenset()) -> dict[str, object]:
        env: dict[str, object] = {}
        params = self.c.g.nodes[fid]["params"]
        for pname, ptype in params:
            if pname:
                env[pname] = None if pname in nulls else self.fresh(ptype, f"{self.c.short(fid)}:{pname}")
        for tie in self.c.ties(fid):  # what every caller of the operation guarantees
            if max(tie.param, tie.source) < len(params) and (name := params[tie.param][0]) and name not in nulls \
                    and env.get(params[tie.source][0]) is not None:
                got = self.c._safe(self, fid, tie.expr.format(p=params[tie.source][0]), env)
                env[name] = got if not isinstance(got, model.Unknown) else env[name]
        return env


class _Checker:
    def __init__(self, plan: Plan, analysis: Analysis, rules: Rules, facts: dict) -> None:
        self.plan = plan
        self.g = analysis.graph
        self.env = analysis.types
        self.rules = rules
        self.pr = rules.plan
        self.ctx = Context(self.g, analysis.types, self.pr, facts.get)
        self.facts = facts
        self.gains = {f.id: f for f in plan.functions}
        self.slots = {s.id for s in plan.slots}
        self.sites: dict[tuple[str, int, str], CallSite] = {(c.file, c.line, c.callee): c for c in plan.call_sites}
        self.rewrites: dict[tuple[str, int], Rewrite] = {(w.file, w.start): w for w in plan.rewrites}
        self.rewrites_by_line: dict[tuple[str, int], list[Rewrite]] = defaultdict(list)
        self.rewrites_in: dict[str, list[Rewrite]] = defaultdict(list)
        for w in plan.rewrites:
            self.rewrites_by_line[(w.file, w.line)].append(w)
            self.rewrites_in[w.file].append(w)
        self.kept = {(k.file, k.line, k.expr): k for k in plan.kept}
        self.unresolved = {u.function: u for u in plan.unresolved}
        self.lookups = {lk.function: lk for lk in self.pr.lookups}
        self.null_args: dict[tuple[str, int], tuple[str, int]] = {}
        self.reads = sorted(analysis.reads, key=lambda r: (r.file, r.line, r.col))
        self.read_at = {(r.file, r.start): r for r in analysis.reads}
        self._event_cache: dict[str, tuple[list, dict, str]] = {}
        self._member_types: dict[str, str] | None = None
        self._fills: dict[tuple[str, int], bool] = {}  # (function, parameter) -> stores through it
        self._called: dict[tuple[str, str], str | None] = {}  # (function, name) -> the function it calls
        self.function_names = {d["name"] for _, d in self.g.nodes(data=True) if d["type"] == "function"}

    def member_types(self) -> dict[str, str]:
        """member name -> its type, where every analysed struct with a member
        of that name gives it the same type (`filp`: `struct file *`)."""
        if self._member_types is None:
            seen: dict[str, set[str]] = defaultdict(set)
            for members in self.env.fields.values():
                for m, t in members.items():
                    seen[m].add(ctypes.normalise(t))
            self._member_types = {m: next(iter(ts)) for m, ts in seen.items() if len(ts) == 1}
        return self._member_types

    def never_mapping(self, mapping: model.AddressSpace, what: str) -> str:
        """Why pages of mapping are never protected, by the rules' never_protected
        patterns on the way the model reached it (its host's member chain,
        `...->btree_inode#5`) or on the lookup's text (`NODE_MAPPING(sbi)`); ""."""
        reached = mapping.host.name if mapping.host is not None else mapping.name
        for rule in self.pr.never_protected:
            if rule.pattern.search(reached) or rule.pattern.search(what):
                return f"a never-protected mapping (`{rule.pattern.pattern}`: {rule.why})"
        return ""

    def function_called(self, fid: str, name: str) -> str | None:
        """Context.function_called, kept per (function, name): the graph does not
        change while check runs (it does between the plan's rounds)."""
        key = (fid, name)
        if key not in self._called:
            self._called[key] = self.ctx.function_called(fid, name)
        return self._called[key]

    def ties(self, fid: str) -> list:
        """The rules' slot ties of the operations fid implements."""
        slots = {s for s, _, _ in edges_out(self.g, fid, "binds")}
        return [t for t in self.pr.slot_ties if t.slot in slots]

    @staticmethod
    def short(fid: str) -> str:
        return fid.split("::")[-1]

    def note_null_arguments(self) -> None:
        for ff in self.facts.values():
            for call in ff.calls:
                if call.via != "direct":
                    continue
                for i, arg in enumerate(call.args):
                    if arg.strip() in ("NULL", "0", "(void *)0"):
                        for fid in (f"{ff.path}::{call.callee}", call.callee):
                            if fid in self.g and self.g.nodes[fid]["type"] == "function":
                                self.null_args.setdefault((fid, i), (ff.path, call.line))
                                break

    # -- paths: the page's way up -------------------------------------------------
    def hop(self, pred: str, target: str, site: tuple, call) -> Hop:
        cs = self.sites.get((site[0], call.line, target))
        return Hop(site[0], call.line, pred, target, cs.argument if cs else None, cs.how if cs else "")

    def paths(self, reader: str, page_expr: str) -> tuple[list[_Path], bool]:
        """The page's ways up from reader, each dispatch through a slot kept to
        the filesystem of the implementation it reached (see _feasible) while
        they are enumerated, so that the bound is spent on feasible paths; all
        of them when no path is feasible."""
        out, truncated = self._paths(reader, page_expr, prune=True)
        if out:
            return out, truncated
        return self._paths(reader, page_expr, prune=False)

    def _paths(self, reader: str, page_expr: str, prune: bool) -> tuple[list[_Path], bool]:
        out: list[_Path] = []
        truncated = False
        stack: list[tuple[str, str, tuple, tuple, tuple]] = [(reader, page_expr, (), (), ())]
        while stack:
            fid, expr, hops, sites, pages = stack.pop()
            origin = self.ctx.origin(fid, expr)
            callers = list(self.ctx.callers(fid)) if origin.kind == "parameter" else []
            if not callers:
                entry = origin.kind == "parameter" and bool(hops)  # (exported: its callers are elsewhere)
                out.extend(self._data_paths(fid, hops, sites, pages, reader)
                           or [_Path(hops, fid, sites, False, pages, entry)])
                continue
            fences = self._fences(hops, reader) if prune else ()
            own = self._fs_of(home(self.g, fid)[0]) if prune else ""
            for pred, target, site, call in callers:
                through = (*fences, own) if own and self.g.nodes[target]["type"] == "slot" else fences
                if through and not self._may_call(pred, through):
                    continue  # another filesystem's code calling through the slot: not this page's way
                if len(out) >= MAX_PATHS:
                    return self._feasible(out, reader), True
                up = ((self.hop(pred, target, site, call), *hops), (site, *sites), (origin.param, *pages))
                contract = pred not in self.gains and self.ctx.call_receiver(pred, call) is not None
                if contract:
                    out.append(_Path(up[0], pred, up[1], True, up[2]))
                elif len(hops) >= MAX_DEPTH or any(h.caller == pred for h in hops) or pred == fid:
                    truncated = truncated or len(hops) >= MAX_DEPTH
                    if len(hops) < MAX_DEPTH:
                        out.append(_Path(up[0], pred, up[1], False, up[2]))  # recursion: start here
                elif origin.param < len(call.args):
                    stack.append((pred, member_of(call.args[origin.param], origin.path), *up))
                else:  # the call does not pass the page (a macro's call, varargs)
                    out.append(_Path(hops, fid, sites, False, pages))
        return self._feasible(out, reader), truncated

    def _feasible(self, paths: list[_Path], reader: str) -> list[_Path]:
        """The paths a page can take: a call through an address-space
        operation reaches the implementations of the filesystem whose code
        the page came through (jfs's release_metapage -> write_one_page ->
        ->writepage reaches jfs's, not ceph's); generic code (mm/, fs/*.c) and
        the stacking filesystems (rules `stacking_paths`) say nothing. All of
        them when none is feasible (the model cannot tell)."""
        kept = [p for p in paths if self._one_filesystem(p, reader)]
        return kept or paths

    def _fences(self, hops: tuple, reader: str) -> tuple[str, ...]:
        """The filesystems of the implementations the partial path (hops, down
        to reader) reached through a slot: its callers must be theirs or generic."""
        if not hops:
            return ()
        below = [h.caller for h in hops[1:]] + [reader]
        return tuple(fs for hop, impl in zip(hops, below, strict=True)
                     if self.g.nodes[hop.callee]["type"] == "slot"
                     and (fs := self._fs_of(home(self.g, impl)[0])))

    def _may_call(self, pred: str, fences: tuple[str, ...]) -> bool:
        where = home(self.g, pred)[0]
        mine = self._fs_of(where)
        return not mine or all(mine == fs for fs in fences) \
            or any(fnmatch.fnmatch(where, g) for g in self.pr.stacking_paths)

    def _fs_of(self, path: str) -> str:
        """`fs/gfs2` of fs/gfs2/log.c, a file the rules say is a filesystem of its
        own (`mm/shmem.c`: rules filesystem_files), or the one whose page caches
        code there uses (drivers/gpu/drm: shmem, rules backed_by); "" for generic code."""
        if path in self.pr.filesystem_files:
            return path
        for pattern, fs in self.pr.backed_by:
            if fnmatch.fnmatch(path, pattern):
                return fs
        parts = path.split("/")
        return "/".join(parts[:2]) if len(parts) > 2 and parts[0] == "fs" else ""

    def _one_filesystem(self, path: _Path, reader: str) -> bool:
        chain = [h.caller for h in path.hops] + [reader]
        for i, hop in enumerate(path.hops):
            if self.g.nodes[hop.callee]["type"] != "slot":
                continue
            theirs = self._fs_of(home(self.g, chain[i + 1])[0])
            for f in chain[:i + 1] if theirs else ():
                where = home(self.g, f)[0]
                mine = self._fs_of(where)
                if mine and mine != theirs and not any(fnmatch.fnmatch(where, g) for g in self.pr.stacking_paths):
                    return False
        return True

    def _data_paths(self, fid: str, hops: tuple, sites: tuple, pages: tuple, reader: str) -> list[_Path]:
        """The page is made in fid, which also takes callback data (`void *data`:
        write_cache_pages(mapping, wbc, fn, data) hands it to fn): start one
        call higher, at each direct caller, so that data is what they pass --
        and only at callers that pass, for the function pointer the path goes
        through, the function it goes into (iomap_writepages passes
        iomap_do_writepage, never __writepage)."""
        params = [n for n, _ in self.g.nodes[fid]["params"]]
        if not any(ctypes.normalise(t) == "void *" and n for n, t in self.g.nodes[fid]["params"]) or not hops:
            return []
        first = self.facts[sites[0][0]].calls[sites[0][2]]
        through = params.index(first.callee) if first.via == "pointer" and first.callee in params else -1
        into = self.g.nodes[hops[1].caller if len(hops) > 1 else reader]["name"]
        out = []
        for pred, target, site, call in self.ctx.callers(fid):
            if target != fid or pred == fid or any(h.caller == pred for h in hops) or len(out) >= MAX_PATHS // 2:
                continue
            if 0 <= through < len(call.args):
                passed = re.sub(r"^\(.*?\)\s*|^&\s*", "", call.args[through].strip())
                if passed in self.function_names and passed != into:
                    continue  # that caller hands another function: no such path
            out.append(_Path((self.hop(pred, fid, site, call), *hops), pred, (site, *sites), False, (-1, *pages)))
        return out

    # -- the interpreter ------------------------------------------------------------
    def evaluate(self, world: _World, fid: str, text: str, env: dict, depth: int = 0) -> object:
        """text in fid's world; Unknown when it cannot be interpreted."""
        e = _normal(text)
        deref = _DEREF.match(e)
        if deref:  # `*foliop`: what the caller's `&folio` points at (bound as "*foliop")
            return env.get(f"*{deref.group(1)}", model.Unknown(f"{e}: nothing is known to be stored there"))
        call = parse_call(e)
        if call is not None and call[0] not in model.FUNCTIONS:
            return self._call(world, fid, call, env, depth)
        head = call_head(e) if call is None else None
        if head is not None and head[0] not in model.FUNCTIONS:  # `EXT4_SB(sb)->s_buddy_cache`
            inner = {**env, "__mp_call": self._call(world, fid, head[:2], env, depth)}
            return self.evaluate(world, fid, f"__mp_call{head[2]}", inner, depth)
        try:
            return model.evaluate(e, env)
        except model.NullDeref:
            raise
        except model.ModelError as exc:
            return model.Unknown(f"{text}: {exc}")

    def _call(self, world: _World, fid: str, call, env: dict, depth: int) -> object:
        name, args = call
        if name == "READ_ONCE" and args:
            return self.evaluate(world, fid, args[0], env, depth)
        lk = self.lookups.get(name)
        if lk is not None and lk.fills < 0 and lk.arg < len(args):
            arg = self.evaluate(world, fid, args[lk.arg], env, depth)
            mapping = {"mapping": lambda a: a, "inode": lambda a: getattr(a, "i_mapping", a),
                       "file": lambda a: getattr(a, "f_mapping", a),
                       "rac": lambda a: getattr(a, "mapping", a)}[lk.of](arg)
            if isinstance(mapping, model.Unknown):
                return mapping
            folio = world.page_of(mapping, f"{name}({', '.join(args)})")
            returns = self.env.returns.get(name, "")  # (writeback_iter returns a folio: its name does not say)
            return folio if ("struct folio" in returns if returns else "folio" in name) else folio.page
        callee = self.function_called(fid, name) if fid in self.g else None
        if callee is None or depth >= CALL_DEPTH or not self.g.nodes[callee].get("bodies"):
            return model.Unknown(f"{name}() is not interpreted")
        inner = {}
        for i, (pname, ptype) in enumerate(self.g.nodes[callee]["params"]):
            if i < len(args):
                _local_holder(env, args[i], ptype)
            if pname:
                inner[pname] = (self._safe(world, fid, args[i], env, depth + 1) if i < len(args)
                                else world.fresh(ptype, pname))
        self.run_locals(world, callee, inner, depth + 1)
        for i, a in enumerate(args):  # out-parameters: `f(..., &page)` with `*res_page = page` in f
            pname = self.g.nodes[callee]["params"][i][0] if i < len(self.g.nodes[callee]["params"]) else None
            if not pname or f"*{pname}" not in inner:
                continue
            if a.strip().startswith("&") and (root := root_of(a.strip()[1:].strip())):
                env[root] = inner[f"*{pname}"]
            elif strip(a).isidentifier():  # handed on: ext2_find_entry's foliop to ext2_get_folio
                env[f"*{strip(a)}"] = inner[f"*{pname}"]
        for v in self.ctx.values(callee):
            if v.name == "return":
                got = self._safe(world, callee, v.value, inner, depth + 1)
                if isinstance(got, model.Page | model.Folio):
                    return got
        returns = self.env.returns.get(self.g.nodes[callee]["name"], "")
        base, level = self.env.canonical(*ctypes.split(ctypes.normalise(returns))) if returns else ("", 0)
        if level == 1 and base.startswith("struct ") and base not in _MAY_NAME_A_MAPPING:
            # an object the callee makes or finds (`obj = i915_gem_object_create_shmem(...)`):
            # fresh, so nothing about it is the same as anything else by accident
            return world.fresh(returns, f"{name}()")
        return model.Unknown(f"{name}() returns no page the interpreter could follow")

    def _safe(self, world: _World, fid: str, text: str, env: dict, depth: int = 0) -> object:
        try:
            return self.evaluate(world, fid, text, env, depth)
        except (model.ModelError, _Failure) as exc:
            return model.Unknown(f"{text}: {exc}")

    def run_locals(self, world: _World, fid: str, env: dict, depth: int = 0) -> None:
        """Give fid's pointer locals their values, in source order (a loop's last
        assignment wins); batches filled by a lookup hold one page of its mapping."""
        events, pointer_locals, file = self._events(fid)
        for item in events:
            if not hasattr(item, "value"):
                if self.ctx.lookup_of(fid, item) is not None:
                    self._fill(world, fid, item, env, pointer_locals, depth)
                elif depth < CALL_DEPTH:
                    self._call(world, fid, (item.callee, list(item.args)), env, depth)
                continue
            v = item
            if "." in v.name:  # `fio.page = page`, `{ .page = page }`: a member of a local struct
                self._store_member(world, fid, v, env, depth)
                continue
            if v.name.endswith("[]"):  # `pages[i] = find_or_create_page(...)`: the array holds it
                self._store_element(world, fid, v, env, depth)
                continue
            text = v.value
            for w in self.rewrites_by_line.get((file, v.line), ()):
                if w.from_ in text and w.purpose != "identity":
                    env["__mp_helper"] = self._helper(world, fid, w, env)  # the rewritten read's answer
                    text = text.replace(w.from_, "__mp_helper")
            env[v.name] = self._safe(world, fid, text, env, depth)  # (out-parameters land in env too)
            env.pop("__mp_helper", None)

    def _store_element(self, world: _World, fid: str, v, env: dict, depth: int) -> None:
        """An element of a page array given a page: every element is it (a
        loop's last store wins), in the caller's list when the array is one
        it handed down (prepare_pages(inode, pages, ...))."""
        value = self._safe(world, fid, v.value, env, depth)
        if not isinstance(value, model.Page | model.Folio):
            return
        array = env.get(v.name[:-2])
        if isinstance(array, list):
            array[:] = [value] * 32
        else:
            env[v.name[:-2]] = [value] * 32

    def _store_member(self, world: _World, fid: str, v, env: dict, depth: int) -> None:
        local, member = v.name.split(".", 1)
        obj = env.get(local)
        if obj is None:
            obj = env[local] = _new_local(local)
        if isinstance(obj, model.Opaque):
            obj.assign(member, self._safe(world, fid, v.value, env, depth))

    def _events(self, fid: str) -> tuple[list, dict, str]:
        """What run_locals interprets in fid, in source order (kept per function):
        the values of its pointer locals, the lookups that fill a batch, the
        calls that store a page through `&local`."""
        if fid in self._event_cache:
            return self._event_cache[fid]
        fills = [(c.start, c) for c in self.ctx.calls(fid) if (lk := self.ctx.lookup_of(fid, c)) is not None
                 and 0 <= lk.fills < len(c.args)]
        values = [(v.start, v) for v in (*self.ctx.values(fid), *self.ctx.elements(fid)) if v.name != "return"]
        starts = {at for at, _ in values}
        fills += [(c.start, c) for c in self.ctx.calls(fid) if c.start not in starts and self._stores_out(fid, c)]
        pointer_locals = {v.name: v.type for _, v in values}
        file = min(self.g.nodes[fid]["bodies"])[0] if self.g.nodes[fid].get("bodies") else ""
        events = [item for _, item in sorted(fills + values, key=lambda x: (x[0], not hasattr(x[1], "value")))]
        self._event_cache[fid] = (events, pointer_locals, file)
        return self._event_cache[fid]

    def _stores_out(self, fid: str, c) -> bool:
        """A call of a tree function that stores a page through a `&local`
        argument, or members into a struct it is handed (`&pgio`, or a pointer
        fid was handed itself: nfs_pageio_init_write(&pgio, inode) passes it on
        to nfs_pageio_init, which sets `desc->pg_inode = inode`)."""
        if c.via != "direct" or c.callee in self.lookups:
            return False
        callee = self.function_called(fid, c.callee)
        if callee is None:
            return False
        params = {n for n, t in self.g.nodes[fid]["params"] if n and _holder(t)}
        theirs = self.g.nodes[callee]["params"]
        handed = [i for i, a in enumerate(c.args) if a.strip().startswith("&") or strip(a) in params
                  or (i < len(theirs) and _page_array(theirs[i][1]) and strip(a).isidentifier())]
        return any(self._fills_param(callee, i) for i in handed)

    def _fills_param(self, fid: str, k: int, depth: int = 0) -> bool:
        """fid stores through its parameter k (`*pagep = page`, `desc->pg_inode
        = inode`), itself or in a function it hands the parameter on to."""
        if (fid, k) not in self._fills:
            self._fills[(fid, k)] = False  # (recursion: not while it is being asked)
            self._fills[(fid, k)] = self._stores_through(fid, k, depth)
        return self._fills[(fid, k)]

    def _stores_through(self, fid: str, k: int, depth: int) -> bool:
        params = self.g.nodes[fid]["params"]
        name = params[k][0] if k < len(params) else ""
        if not name:
            return False
        stored = (*self.ctx.values(fid), *self.ctx.elements(fid))  # (member stores are elements)
        if any(v.name in (f"*{name}", f"{name}[]") or v.name.startswith(f"{name}.") for v in stored):
            return True
        for c in self.ctx.calls(fid) if depth < CALL_DEPTH else ():
            callee = self.function_called(fid, c.callee) if c.via == "direct" else None
            if callee is not None and callee != fid and any(
                    strip(a) == name and self._fills_param(callee, i, depth + 1) for i, a in enumerate(c.args)):
                return True
        return False

    def _fill(self, world: _World, fid: str, c, env: dict, pointer_locals: dict, depth: int) -> None:
        """A lookup that stores its pages in an argument: `&page` (one page), a
        batch `&fbatch` (members holding pages) or an array `pages`."""
        lk = self.ctx.lookup_of(fid, c)
        if lk.arg >= len(c.args):
            return
        target = root_of(strip(c.args[lk.fills]))
        value = self._safe(world, fid, c.args[lk.arg], env, depth)
        member = {"inode": "i_mapping", "file": "f_mapping", "rac": "mapping"}.get(lk.of)
        mapping = getattr(value, member, None) if member else value
        if not target:
            return
        if not isinstance(mapping, model.AddressSpace):
            env[target] = model.Unknown(f"{c.callee}() looked up in {c.args[lk.arg]}, which is {mapping!r}")
            return
        folio = world.page_of(mapping, c.callee)
        params = dict(self.g.nodes[fid]["params"])
        base = ctypes.split(pointer_locals.get(target, "") or params.get(target, "")
                            or self._filled_type(fid, c, lk.fills))[0]
        item = folio if "folio" in (base or c.callee) else folio.page
        if base in ("struct page", "struct folio"):
            env[target] = item
        elif c.args[lk.fills].strip().startswith("&") or base.startswith("struct "):
            # a batch, here or through a pointer to the caller's (`fbatch` of filemap_get_pages)
            env[target] = model.Opaque(target, "batch", _ANY, lambda _m, i=item: [i] * 32)
        else:
            env[target] = [item] * 32

    def _filled_type(self, fid: str, c, k: int) -> str:
        """What argument k of a filling lookup points at, from the callee's
        parameter type (`struct page **pagep` of ->write_begin: a page), for a
        local the index recorded no value for (`struct page *page;`)."""
        callee = self.function_called(fid, c.callee) if c.via == "direct" else None
        if callee is None:  # a call through a slot: the slot's own parameters
            callee = next((s for s, _, _ in edges_out(self.g, fid, "call-through-slot")
                           if self.g.nodes[s]["name"] == c.callee), None)
        params = self.g.nodes[callee]["params"] if callee in self.g else []
        if k >= len(params):
            return ""
        base, depth = ctypes.split(ctypes.normalise(params[k][1]))
        if depth == 2 and base in ("struct page", "struct folio"):
            return ctypes.normalise(base, depth - 1)
        # a batch (`struct folio_batch *fbatch` of find_lock_entries): its name says what it holds
        return base if depth == 1 and base not in ("struct page", "struct folio") else ""

    def _helper(self, world: _World, fid: str, w: Rewrite, env: dict) -> object:
        """What a rewritten read in a local's initializer gives (the helper's answer)."""
        read = self.read_at.get((w.file, w.start))
        try:
            page = self.evaluate(world, fid, read.receiver_text, env) if read else None
            return model.page_mapping_wp(page, self.evaluate(world, fid, w.context, env))
        except (model.ModelError, _Failure, AttributeError) as exc:
            return model.Unknown(f"{w.to}: {exc}")

    # -- one path ---------------------------------------------------------------------
    def run_path(self, path: _Path, read: ReadRecord, rewrite: Rewrite, variant: str, nulls: set[str]) -> None:
        world = _World(self, variant, nulls)
        fid, env = self._walk(world, path, read, nulls, plan_arguments=True)
        self._judge(world, fid, read, rewrite, env, path)

    def _walk(self, world: _World, path: _Path, read: ReadRecord, nulls: set[str],
              plan_arguments: bool) -> tuple[str, dict]:
        """Run the path in world from its top down to the reader: (reader, its
        env). With plan_arguments, each mapping the plan passes is bound to the
        callee's new parameter and checked against the page's owner."""
        env = world.bind(path.top, nulls)
        self.run_locals(world, path.top, env)
        fid = path.top
        for i, (hop, site) in enumerate(zip(path.hops, path.sites, strict=True)):
            call = self.facts[site[0]].calls[site[2]]
            target = path.hops[i + 1].caller if i + 1 < len(path.hops) else read.function_id
            inner = self._bind_call(world, fid, target, call, env, site[0], contract=path.contract and i == 0)
            if plan_arguments and target in self.gains:
                value = inner[self.gains[target].param_name] = self._argument(world, fid, hop, env)
                if value is None and hop.how in _PLAN_GAVE_UP:
                    world.null_hop = hop
                self._owner_check(world, hop, inner, target, path.pages[i] if i < len(path.pages) else -1, value)
            self.run_locals(world, target, inner)
            fid, env = target, inner
        return fid, env

    def _bind_call(self, world: _World, caller: str, callee: str, call, env: dict, file: str,
                   contract: bool) -> dict:
        inner: dict[str, object] = {}
        receiver = self.ctx.call_receiver(caller, call) if contract else None
        owner = self._safe(world, caller, receiver, env) if receiver else None
        for i, (pname, ptype) in enumerate(self.g.nodes[callee]["params"]):
            if not pname:
                continue
            if i < len(call.args):
                _local_holder(env, call.args[i], ptype)
            value = self._arg_value(world, caller, call, i, env, file) if i < len(call.args) \
                else world.fresh(ptype, pname)
            if isinstance(value, model.Page | model.Folio) and id(model.as_folio(value)) in world.param_pages \
                    and isinstance(owner, model.AddressSpace):
                # the ops contract: a page handed to M->a_ops->op() is a page of M
                folio = world.page_of(owner, f"{receiver}->a_ops")
                value = folio.page if isinstance(value, model.Page) else folio
            inner[pname] = value
            arg = call.args[i].strip() if i < len(call.args) else ""
            if arg.startswith("&") and (root := root_of(arg[1:].strip())) == arg[1:].strip() and root in env:
                inner[f"*{pname}"] = env[root]  # `f(..., &folio)`: f's `*foliop` is the caller's folio
        return inner

    def _arg_value(self, world: _World, caller: str, call, i: int, env: dict, file: str) -> object:
        """Argument i of a call as the plan leaves it: a read in it is the helper's answer."""
        text = call.args[i]
        start, end = call.arg_spans[i]
        for w in self.rewrites_in.get(file, ()):
            if start <= w.start and w.end <= end and w.purpose != "identity" and w.from_ in text:
                env["__mp_helper"] = self._helper(world, caller, w, env)
                text = text.replace(w.from_, "__mp_helper")
        value = self._safe(world, caller, text, env)
        env.pop("__mp_helper", None)
        return value

    def _owner_check(self, world: _World, hop: Hop, inner: dict, callee: str, k: int, value: object) -> None:
        """The first argument that goes wrong: the mapping passed with a page
        whose owner is known must be that owner."""
        params = self.g.nodes[callee]["params"]
        page = inner.get(params[k][0]) if 0 <= k < len(params) and params[k][0] else None
        if not isinstance(page, model.Page | model.Folio):
            return
        owner = world.owner.get(id(model.as_folio(page)))
        if owner is None or isinstance(value, model.Unknown) or id(model.as_folio(page)) in world.never:
            return  # (a page never protected: its field is right whatever is passed)
        try:
            got = model.page_mapping_wp(page, value)
        except model.ModelError as exc:
            raise _Failure("unresolvable", hop.argument or "", f"{hop.file}:{hop.line}: {exc}",
                           repr(value), repr(owner), record=isinstance(value, model.WriteProtectRecord)) from None
        if got is not owner:
            raise _Failure("unresolvable", hop.argument or "",
                           f"{hop.file}:{hop.line}: {hop.argument} is not the page's mapping", repr(value), repr(owner))

    def _argument(self, world: _World, caller: str, hop: Hop, env: dict) -> object:
        if hop.argument is None:
            raise _Failure("unresolvable", "(no argument)",
                           f"{hop.file}:{hop.line}: {hop.caller} calls {hop.callee} without passing the mapping")
        try:
            return self.evaluate(world, caller, hop.argument, env)
        except model.NullDeref as exc:
            raise _Failure("unresolvable", hop.argument, f"{hop.file}:{hop.line}: {exc}") from None

    def _judge(self, world: _World, fid: str, read: ReadRecord, rewrite: Rewrite, env: dict, path: _Path) -> None:
        page = self._safe(world, fid, read.receiver_text, env)
        if page is None:  # the read would oops: a branch or out-parameter the model does not follow
            raise _Failure("unproven", read.receiver_text, f"the page {read.receiver_text} is NULL on this path",
                           null_page=True, cause=Cause.NULL_PAGE)
        if not isinstance(page, model.Page | model.Folio):
            self._null_for_any_page(world, fid, read, rewrite, env, page)
            raise _Failure("unproven", read.receiver_text, f"the page {read.receiver_text} is {page!r}",
                           cause=Cause.PAGE)
        folio = model.as_folio(page)
        if why := world.never.get(id(folio)):
            raise _Failure("never-protected", read.receiver_text, why, never=why)
        owner = world.owner.get(id(folio))
        if owner is None:  # (on a path from an entry nothing calls, the entry's caller is outside the tree)
            self._null_for_any_page(world, fid, read, rewrite, env, page, no_owner=True)
            param = world.param_pages.get(id(folio), "?")
            raise _Failure("unproven", read.receiver_text,
                           f"the page comes in as {param}, and nothing in the code says whose page it is"
                           + (" (nothing calls it)" if not path.hops else ""), no_owner=True, cause=Cause.PAGE)
        try:
            ctx = self.evaluate(world, fid, rewrite.context, env)
        except model.NullDeref as exc:
            raise _Failure("unresolvable", rewrite.context, str(exc), "NULL", repr(owner)) from None
        if isinstance(ctx, model.Unknown):
            raise _Failure("unproven", rewrite.context, f"{rewrite.context} is not known ({ctx.name})")
        try:
            got = model.page_mapping_wp(page, ctx)
        except model.ModelError as exc:
            raise _Failure("unresolvable", rewrite.context, str(exc), repr(ctx), repr(owner),
                           record=isinstance(ctx, model.WriteProtectRecord)) from None
        if got is not owner:
            raise _Failure("unresolvable", rewrite.context,
                           f"the helper returned {got!r}, not {owner!r} the page was reached through",
                           repr(ctx), repr(owner))

    def _null_for_any_page(self, world: _World, fid: str, read: ReadRecord, rewrite: Rewrite, env: dict,
                           page: object, no_owner: bool = False) -> None:
        """A page the model cannot name, with the NULL the plan passes on the
        path where it could not say whose page it is (a pipe buffer's page,
        stolen by splice; the helper's answer from there on is unknown too):
        NULL is wrong for every page-cache page of a file, but the page may be
        one that is never protected, so this is named, not a witness."""
        hop = world.null_hop
        if hop is None:
            return
        anyone = world.w.add_to_page_cache(world.w.inode(world._name("any-file")).i_mapping, 0)
        try:
            model.page_mapping_wp(anyone, None)
        except model.ModelError as exc:
            # not a witness: the page may be one never protected (a btree node's, a pinned one)
            raise _Failure("unproven", hop.argument or "NULL",
                           f"{hop.file}:{hop.line}: the plan passes NULL ({hop.how}) for a page the model cannot "
                           f"name ({page!r}); were it a page-cache page of a file: {exc}", cause=Cause.PLAN_NULL,
                           no_owner=no_owner) \
                from None

    def variants(self, top: str, path: _Path, rewrite: Rewrite) -> list[tuple[str, set[str]]]:
        """plain; bdev-file where a file's f_mapping or f_inode is used on the path
        (a file whose f_mapping is not its inode's i_mapping); NULL for a nullable
        provider some caller passes NULL."""
        params = self.g.nodes[top]["params"]
        out: list[tuple[str, set[str]]] = [("plain", set())]
        used = " ".join([rewrite.context, *(h.argument or "" for h in path.hops)])
        if "f_mapping" in used or "f_inode" in used or "file_inode" in used:
            out.append(("bdev-file", set()))
        nullable = {ctypes.normalise(p.type) for p in self.pr.providers if p.nullable}
        for i, (name, ptype) in enumerate(params):
            if name and ctypes.normalise(ptype) in nullable and (top, i) in self.null_args:
                path, line = self.null_args[(top, i)]
                out.append((f"NULL {name} (as {path}:{line} passes)", {name}))
        return out

    # -- verdicts -----------------------------------------------------------------------
    def verdict(self, r: ReadRecord) -> Verdict:
        head = (r.file, r.line, r.function, r.expr, r.kind)
        if r.kind not in self.pr.scope_kinds:
            return Verdict(*head, "runtime", 0, False, None, RUNTIME_COVER.get(r.kind, "no model operation"))
        kept = self.kept.get((r.file, r.line, r.expr))
        if kept is not None and kept.reason not in ("needs-human", "no-context", "assertion"):
            return self._kept(head, kept)
        rewrite = self.rewrites.get((r.file, r.cmp_start if r.purpose == "identity" else r.start))
        if rewrite is not None and rewrite.purpose == "identity":
            return Verdict(*head, "resolvable", 0, False, None, _MEMBERSHIP)
        if r.function_id is not None and rewrite is None and kept is not None and kept.reason == "no-context":
            tops = self._outside_only(r)
            if tops:
                return Verdict(*head, "runtime", 0, False, None,
                               f"every path into it starts in code of kinds 2-5 ({', '.join(tops)}), which has "
                               "no mapping to pass: the raw read is run time's, as theirs are")
        if r.function_id is not None and rewrite is None and kept is not None and kept.reason in _KEPT_RAW:
            paths, truncated = self.paths(r.function_id, r.receiver_text)
            whys = {self._never_page(path, r) for path in paths}
            if paths and not truncated and "" not in whys:  # the raw field is the page's own mapping
                return Verdict(*head, "never-protected", len(paths), False, None,
                               f"the page is never protected on every path: {'; '.join(sorted(whys))}")
        if r.function_id is None or rewrite is None:
            reason = self.unresolved.get(r.function_id or "")
            why = f"not rewritten: {reason.reason}" if reason else "not rewritten"
            if kept is not None and kept.reason == "needs-human":
                why = f"not rewritten: needs a human ({'; '.join(kept.candidates) or 'no candidate'})"
            elif kept is not None:  # left as it is: a protected page's field is its record
                why = f"not rewritten ({kept.reason}): {kept.evidence}"
            return Verdict(*head, "unresolvable", 0, False, Witness((), "(none)", "plain", f"{r.function}: {why}"))
        paths, truncated = self.paths(r.function_id, r.receiver_text)
        unproven: _Failure | None = None
        entries: set[str] = set()  # tops nothing in the tree calls, whose page the tree cannot say
        outside: dict[str, tuple] = {}  # kind 2-5 top -> (path, variant, failure) of its first failing path
        never = ""  # why the pages of the paths into never-protected ops tables are never protected
        held = 0  # path variants on which the helper returned the owner
        null_paths: set[str] = set()  # tops of the paths whose page the model has NULL at the read
        for path in paths:
            for variant, nulls in self.variants(path.top, path, rewrite):
                try:
                    self.run_path(path, r, rewrite, variant.split(" ")[0], nulls)
                    held += 1
                except _Failure as f:
                    if f.null_page:
                        null_paths.add(self.short(path.top))
                        continue
                    if why := f.never or self._never_path(path, r.function_id):
                        never = never or why
                        continue  # a metadata inode's page: never protected, the field is right
                    if not self._kind1(path.top) and (f.verdict == "unproven" or f.value in _NO_MAPPING
                                                      or f.record):
                        # code the plan does not convert had no mapping to give (NULL, or its raw
                        # field read handed on): run time's
                        outside.setdefault(self.short(path.top), (path, variant, f))
                    elif f.verdict == "unresolvable":  # (a wrong mapping is wrong whatever the top)
                        return Verdict(*head, "unresolvable", len(paths), truncated,
                                       Witness(path.hops, f.argument, variant, f.error, f.value, f.owner))
                    elif path.entry and f.no_owner:
                        entries.add(self.short(path.top))
                    else:
                        unproven = unproven or f
        if never and not (held or outside or entries or unproven):
            return Verdict(*head, "never-protected", len(paths), truncated, None,
                           f"every path reaches it through {never}")
        inside = {p.top for p in paths if self._kind1(p.top)}
        if outside:
            first, (path, variant, f) = min(outside.items(), key=lambda kv: kv[0])
            if unproven is None and len(entries) < len(inside):
                return Verdict(*head, "mixed", len(paths), truncated, None,
                               f"the helper returned the page's owner on every path from kind-1 code; the paths "
                               f"from {', '.join(sorted(outside))} (kinds 2-5: no mapping there) are run time's",
                               missing=f"{first}: {f.error}")
            # nothing from kind-1 code says otherwise: the first such failure stands
            if f.verdict == "unresolvable":
                return Verdict(*head, "unresolvable", len(paths), truncated,
                               Witness(path.hops, f.argument, variant, f.error, f.value, f.owner))
            unproven = unproven or f
        if not held and not outside and not never and null_paths and unproven is None:
            unproven = _Failure("unproven", r.receiver_text, f"the page {r.receiver_text} is NULL at the read on every "
                                "path the model follows (a branch or out-parameter it does not follow)",
                                cause=Cause.NULL_PAGE)
        if unproven is not None or len(entries) == len({p.top for p in paths}):
            missing = unproven.error if unproven is not None else \
                f"every path starts at a function nothing in the tree calls ({', '.join(sorted(entries))})"
            cause = unproven.cause if unproven is not None else Cause.ENTRY
            return Verdict(*head, "unproven", len(paths), truncated, None, missing=missing, cause=cause)
        more = (f"; not checked: the paths from {', '.join(sorted(entries))}, which nothing in the tree calls "
                "(their callers are outside it)") if entries else ""
        if never:
            more += f"; the paths into {never} carry pages that are never protected"
        if null_paths:
            more += (f"; not checked: the paths from {', '.join(sorted(null_paths))}, on which the model's page is "
                     "NULL at the read (a branch or out-parameter it does not follow)")
        if truncated:  # the paths not enumerated may carry another page (a fault's, reclaim's)
            return Verdict(*head, "unproven", len(paths), truncated, None, missing=(
                f"more call paths than the bounds ({MAX_PATHS} paths, {MAX_DEPTH} calls deep): the "
                f"{len(paths)} checked hold" + more), cause=Cause.BOUNDS)
        return Verdict(*head, "resolvable", len(paths), truncated, None,
                       "the helper returned the page's owner on every path and variant" + more)

    def _never_page(self, path: _Path, read: ReadRecord) -> str:
        """Why the page the path brings to the read is never protected (the
        model made it in a never-protected mapping, or the path goes through a
        never-protected ops table), "" when it may be protected or is unknown."""
        if why := self._never_path(path, read.function_id):
            return why
        world = _World(self, "plain", set())
        fid, env = self._walk(world, path, read, set(), plan_arguments=False)
        page = self._safe(world, fid, read.receiver_text, env)
        return world.never.get(id(model.as_folio(page)), "") if isinstance(page, model.Page | model.Folio) else ""

    def _guarded_never(self, site: tuple) -> str:
        """Why the call at site hands on a page never protected: a condition
        around it the rules name (never_protected_guard: `!is_data_inode()`)
        holds there, as one of the conjuncts of an if's condition; ""."""
        for cond in self.facts[site[0]].calls[site[2]].guards:
            for conj in _conjuncts(cond):
                for rule in self.pr.never_protected_guards:
                    if rule.pattern.search(conj):
                        return f"a call under `{cond}` ({rule.why})"
        return ""

    def _never_path(self, path: _Path, reader: str) -> str:
        """"<tables>: <why>" when the path calls through a slot into an
        implementation every binding of which is in an ops table the rules say
        only metadata inodes use (never_protected_ops), or through a call under
        a guard the rules name (never_protected_guard): its pages are never
        protected, whatever the caller passes. "" otherwise."""
        if not path.hops:  # a page the function finds itself: under a guard at every call of it?
            return self._every_call_guarded(path.top)
        for site in path.sites:
            if why := self._guarded_never(site):
                return why
        chain = [h.caller for h in path.hops[1:]] + [reader]
        for hop, impl in zip(path.hops, chain, strict=True):
            if self.g.nodes[hop.callee]["type"] == "slot" and (why := self.ctx.never_bindings(impl)):
                return why
        return ""

    def _every_call_guarded(self, fid: str) -> str:
        """Why every call of fid hands it pages never protected: each one is
        under a condition the rules name (btrfs's btree_csum_one_bio(), called
        only under `!is_data_inode(inode)`); "" when one is not, or nothing calls it."""
        whys = [self._guarded_never(site) for _, _, site, _ in self.ctx.callers(fid)]
        return whys[0] if whys and all(whys) else ""

    def _outside_only(self, r: ReadRecord) -> list[str]:
        """The tops of every call path to r when none is kind-1 code, else []."""
        paths, truncated = self.paths(r.function_id, r.receiver_text)
        tops = sorted({self.short(p.top) for p in paths})
        if truncated or not paths or any(self._kind1(p.top) or not p.hops for p in paths):
            return []
        return tops

    def _kind1(self, fid: str) -> bool:
        """fid is code the plan converts (a path from it is the plan's to get right)."""
        kind, _ = self.rules.kind_of(home(self.g, fid)[0], self.g.nodes[fid]["name"])
        return kind in self.pr.scope_kinds

    def _kept(self, head: tuple, kept) -> Verdict:
        if kept.reason == "never-protected":
            return Verdict(*head, "never-protected", 0, False, None, kept.evidence)
        if kept.reason == "debug":
            return Verdict(*head, "runtime", 0, False, None, f"{RUNTIME_COVER[4]}; {kept.evidence}")
        if kept.reason == "null-test":
            return Verdict(*head, "resolvable", 0, False, None, _NULL_TEST)
        if kept.reason == "flag-test":
            return Verdict(*head, "resolvable", 0, False, None, _FLAG_TEST)
        raise ValueError(f"{head[0]}:{head[1]}: the plan keeps a read for a reason check does not know: {kept.reason}")


class _Everything(frozenset):
    def __contains__(self, item: object) -> bool:
        return True


_ANY = _Everything()
# a failure's value when no mapping reached the hop (NULL, or a call that passes none)
_NO_MAPPING = frozenset({"", "None", "NULL"})
# reads the plan leaves as they are because nothing can say whose page it is
_KEPT_RAW = frozenset({"no-context", "needs-human"})
# call sites where the plan says it could not name the page's mapping
_PLAN_GAVE_UP = frozenset({"unresolved", "needs-human"})
_DEREF = re.compile(r"^\*\s*(\w+)$")
# what an uninterpreted call's result may be the page's own mapping through: a
# fresh one would make a false "unresolvable" where the callee in fact returns it
_MAY_NAME_A_MAPPING = frozenset({"struct address_space", "struct inode", "struct file", "struct page",
                                 "struct folio", "struct dentry", "struct kiocb", "struct readahead_control",
                                 "struct vm_fault", "struct buffer_head"})


def _holder(ctype: str) -> bool:
    """A parameter a callee can store a page or a mapping through: `struct
    folio **`, or a pointer to a struct that is not a page (a descriptor)."""
    base, depth = ctypes.split(ctypes.normalise(ctype))
    return depth == 2 or (depth == 1 and base.startswith(("struct ", "union "))
                          and base not in ("struct page", "struct folio", "struct address_space", "struct inode"))


def _local_holder(env: dict, arg: str, ptype: str) -> None:
    """What a callee may store into for its caller, made before the call so
    that the caller sees it after: `f(&fbatch)` of a local struct nothing
    assigned yet (f takes a pointer to a struct, not `struct folio **`), an
    object of its own; `f(pages)` of a page array the model has no value for
    (kmalloc_array()), a list of its own."""
    base, depth = ctypes.split(ctypes.normalise(ptype))
    if arg.lstrip().startswith("&"):
        name = arg.strip()[1:].strip()
        if depth == 1 and base.startswith(("struct ", "union ")) and base not in ("struct page", "struct folio") \
                and name.isidentifier() and name not in env:
            env[name] = _new_local(name)
        return
    name = strip(arg)
    if _page_array(ptype) and name.isidentifier() and not isinstance(env.get(name), list) \
            and not isinstance(env.get(name), model.Page | model.Folio):
        env[name] = []


def _conjuncts(cond: str) -> list[str]:
    """The terms of a condition that all hold where it is true (`a && !b`);
    none for one with `||` (which term holds, the model cannot say)."""
    if "||" in cond or (cond.startswith("!(") and "&&" in cond):  # (not (a && b): no term holds)
        return []
    return [" ".join(c.split()) for c in cond.split("&&")]


def _page_array(ctype: str) -> bool:
    base, depth = ctypes.split(ctypes.normalise(ctype))
    return depth == 2 and base in ("struct page", "struct folio")


def _new_local(name: str) -> model.Opaque:
    return model.Opaque(name, "local", _ANY, lambda m: model.Unknown(f"{name}.{m} is never given a value"))


def _membership_holds() -> bool:
    """The membership helper's contract in the model: a protected page belongs
    to every owner of its record and to nothing else."""
    w = model.World()
    a, b, c = (w.inode(n).i_mapping for n in "abc")
    fa, fb = w.add_to_page_cache(a, 0, b"x"), w.add_to_page_cache(b, 0, b"x")
    plain = w.add_to_page_cache(c, 1, b"y")
    w.write_protect([fa, fb])
    return (model.folio_in_mapping(fa, a) and model.folio_in_mapping(fa, b) and not model.folio_in_mapping(fa, c)
            and model.folio_in_mapping(plain, c) and not model.folio_in_mapping(plain, a))


def _null_test_holds() -> bool:
    """A NULL test on the field: a protected page's field is the record, never NULL."""
    w = model.World()
    fa = w.add_to_page_cache(w.inode("a").i_mapping, 0, b"x")
    fb = w.add_to_page_cache(w.inode("b").i_mapping, 0, b"x")
    w.write_protect([fa, fb])
    return fa.mapping is not None


def _flag_test_holds() -> bool:
    """A flag test on the field answers for a protected file page as it did
    before protection: the record's pointer carries no PAGE_MAPPING_* bits."""
    w = model.World()
    fa = w.add_to_page_cache(w.inode("a").i_mapping, 0, b"x")
    fb = w.add_to_page_cache(w.inode("b").i_mapping, 0, b"x")
    before = model.folio_mapping_flags(fa)
    w.write_protect([fa, fb])
    return fa.protected and model.folio_mapping_flags(fa) == before == 0


_MEMBERSHIP = ("membership test: in the model a protected page belongs to every owner of its record"
               if _membership_holds() else "MODEL REFUTES the membership helper")
_FLAG_TEST = ("flag test kept: in the model a protected file page's field carries no PAGE_MAPPING_* bits, so "
              "the test answers as before protection" if _flag_test_holds() else "MODEL REFUTES the flag test")
_NULL_TEST = ("NULL test kept: in the model a protected page's field is its record, never NULL"
              if _null_test_holds() else "MODEL REFUTES the NULL test")


def check(plan: Plan, analysis: Analysis, rules: Rules, facts: dict) -> CheckResult:
    if rules.plan is None:
        raise ValueError(f"{rules.path}: no [plan] section")
    checker = _Checker(plan, analysis, rules, facts)
    checker.note_null_arguments()
    return CheckResult(tuple(checker.verdict(r) for r in checker.reads))
