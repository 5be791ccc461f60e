"""The check stage: run the plan in the executable write-protect model.

For each kind-1 read and each call path that reaches it (bounded; the bound
is reported), a scenario is built in `mappingpass.model`: a page write
protected and shared by two mappings, reached through one of them (the
*owner*); the entry function's parameters bound to model objects of that
owner; every argument expression the plan passes along the path evaluated in
the model; and the helper asked for the page's mapping in the reader's
context. The helper must return the owner. Scenarios come in variants that
catch the known traps: a file whose `f_mapping` differs from its inode's
`i_mapping` (block device files), and a NULL file where some caller of the
entry passes NULL.

Verdicts per read: `resolvable`, `unresolvable` (with a witness: the path,
the argument that went wrong, the scenario and the model's error) or
`runtime` for kinds 2-5 (with the model operation that covers them).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass

from . import model
from . import types as ctypes
from .graph import Analysis, ReadRecord, edges_in, edges_out
from .plan import CallSite, Plan
from .rules import Rules

CHECK_SCHEMA = "mappingpass.check/1"
MAX_PATHS = 64  # call paths checked per read
MAX_DEPTH = 24  # call sites per path

RUNTIME_COVER = {
    2: "reverse-map walk: World.reclaim reaches every owner through the record (rmap_walk_ksm)",
    3: "buffer-head mapping: World.end_buffer_async_write reports through bh->b_mapping",
    4: "debug output: reports page state only (no mapping needed)",
    5: "GUP break: World.gup(write=True) breaks protection before pinning",
}


@dataclass(frozen=True)
class Hop:
    """One call on a path: `caller` calls `callee` at file:line passing `argument`."""

    file: str
    line: int
    caller: str
    callee: str
    argument: str | None  # None: the call passes no mapping (the plan missed it)
    how: str = ""  # the plan's "parameter" | "provider" | "receiver" | "unresolved"


@dataclass(frozen=True)
class Witness:
    path: tuple[Hop, ...]  # from the entry down to the reader
    argument: str  # the expression that went wrong
    scenario: str
    error: str


@dataclass(frozen=True)
class Verdict:
    file: str
    line: int
    function: str | None
    expr: str
    kind: int | str
    verdict: str  # "resolvable" | "unresolvable" | "runtime"
    paths: int  # paths checked
    truncated: bool  # more paths than MAX_PATHS / deeper than MAX_DEPTH
    witness: Witness | None
    covered_by: str = ""


@dataclass(frozen=True)
class CheckResult:
    verdicts: tuple[Verdict, ...]

    def summary(self) -> dict:
        counts: dict[str, int] = defaultdict(int)
        for v in self.verdicts:
            counts[v.verdict] += 1
        return {"reads": len(self.verdicts), **dict(sorted(counts.items())),
                "truncated": sum(1 for v in self.verdicts if v.truncated),
                "bounds": {"paths_per_read": MAX_PATHS, "depth": MAX_DEPTH}}

    def to_json(self) -> dict:
        return {"schema": CHECK_SCHEMA, "summary": self.summary(),
                "verdicts": [asdict(v) for v in self.verdicts]}


class _Scenario:
    """A protected page shared by `a` (the owner the path reached it through) and `b`."""

    def __init__(self, variant: str) -> None:
        self.variant = variant
        w = model.World()
        self.world = w
        node = w.inode("a")
        if variant == "bdev-file":
            # the page lives in the block device's page cache; the file's own
            # inode (the device node) has an empty i_mapping of its own
            bdev = w.blockdev("sda")
            self.file = w.open_blockdev(node, bdev)
        else:
            self.file = w.open(node)
        self.owner = self.file.f_mapping
        other = w.inode("b")
        fa = w.add_to_page_cache(self.owner, 0, b"same")
        fb = w.add_to_page_cache(other.i_mapping, 0, b"same")
        w.write_protect([fa, fb])
        self.folio = fa
        self.page = fa.page
        self.inode = self.owner.host if variant == "bdev-file" else node
        disk = w.blockdev("disk")
        self.bh = model.BufferHead("bh", self.folio, disk, 0, self.owner)
        vma = w.mmap(self.file)
        self.vmf = model.VmFault("vmf", vma, 0, self.page)

    def bind(self, params: list[tuple[str | None, str]], null_params: set[str]) -> dict[str, object]:
        """Model objects for a function's parameters, by type."""
        env: dict[str, object] = {}
        for name, ptype in params:
            if not name:
                continue
            base, depth = ctypes.split(ctypes.normalise(ptype))
            value: object = None
            if depth == 1:
                value = {
                    "struct address_space": self.owner,
                    "struct file": self.file,
                    "struct inode": self.inode,
                    "struct kiocb": self.world.kiocb(self.file),
                    "struct vm_fault": self.vmf,
                    "struct page": self.page,
                    "struct folio": self.folio,
                    "struct buffer_head": self.bh,
                }.get(base)
            if name in null_params:
                value = None
            if value is not None or name in null_params:
                env[name] = value
        return env


class _Checker:
    def __init__(self, plan: Plan, analysis: Analysis, rules: Rules) -> None:
        self.plan = plan
        self.g = analysis.graph
        self.rules = rules
        self.pr = rules.plan
        self.gains = {f.id: f for f in plan.functions}
        self.slots = {s.id for s in plan.slots}
        self.sites: dict[tuple[str, int, str], CallSite] = {
            (c.file, c.line, c.callee): c for c in plan.call_sites
        }
        self.unresolved = {u.function: u for u in plan.unresolved}
        # callers that pass NULL at a position: (callee id, parameter index)
        self.null_args: dict[tuple[str, int], tuple[str, int]] = {}

    def note_null_arguments(self, facts) -> None:
        for ff in facts.values():
            for call in ff.calls:
                if call.via != "direct":
                    continue
                for i, arg in enumerate(call.args):
                    if arg.strip() in ("NULL", "0", "(void *)0"):
                        for fid in (f"{ff.path}::{call.callee}", call.callee):
                            if fid in self.g and self.g.nodes[fid]["type"] == "function":
                                self.null_args.setdefault((fid, i), (ff.path, call.line))
                                break

    # -- paths ------------------------------------------------------------------
    def into(self, node: str) -> list[Hop]:
        """Every call that reaches node: direct calls and calls through the slots it implements."""
        targets = [node] + [s for s, _, _ in edges_out(self.g, node, "binds") if s in self.slots]
        hops: list[Hop] = []
        for target in targets:
            for pred, _kind, edge in edges_in(self.g, target, "call", "call-through-slot"):
                for path, line, _ci in edge["sites"]:
                    site = self.sites.get((path, line, target))
                    hops.append(Hop(path, line, pred, target, site.argument if site else None,
                                    site.how if site else ""))
        return sorted(set(hops), key=lambda h: (h.file, h.line, h.caller))

    def paths(self, reader: str) -> tuple[list[list[Hop]], bool]:
        """Paths from an entry (a caller that supplies the mapping itself) down
        to reader, each as its list of hops; a reader with its own provider is
        its own entry (the empty path)."""
        if reader not in self.gains:
            return [[]], False
        out: list[list[Hop]] = []
        truncated = False
        stack: list[tuple[str, list[Hop]]] = [(reader, [])]
        while stack:
            node, below = stack.pop()
            hops = self.into(node)
            if not hops:
                out.append(below)  # nobody calls it: the plan reported this chain
                continue
            for hop in hops:
                path = [hop, *below]
                if len(out) >= MAX_PATHS:
                    truncated = True
                    break
                if hop.caller in self.gains:  # it gets its own mapping from its callers
                    if len(path) >= MAX_DEPTH or any(h.caller == hop.caller for h in below):
                        truncated = truncated or len(path) >= MAX_DEPTH
                        continue  # recursion: the cycle adds nothing new
                    stack.append((hop.caller, path))
                else:
                    out.append(path)
        return out, truncated

    # -- evaluation -------------------------------------------------------------
    def run_path(self, path: list[Hop], reader: str, context_expr: str | None,
                 variant: str, null_params: set[str]) -> Witness | None:
        sc = _Scenario(variant)
        entry = path[0].caller if path else reader
        env = sc.bind(self.g.nodes[entry]["params"], null_params)
        value: object = None
        where = entry
        for hop in path:
            if hop.argument is None:
                return Witness(tuple(path), "(no argument)", variant,
                               f"{hop.file}:{hop.line}: {hop.caller} calls {hop.callee} "
                               "without passing the mapping")
            try:
                value = model.evaluate(hop.argument, env)
            except model.UnknownName:
                if hop.how != "receiver":
                    return Witness(tuple(path), hop.argument, variant,
                                   f"{hop.file}:{hop.line}: {hop.argument} is not a parameter of {hop.caller}")
                # `M->a_ops->op(M, ...)` through a local M: the ops called are the
                # page's own mapping's (the receiver-provider rule's claim)
                value = sc.owner
            except model.ModelError as exc:
                return Witness(tuple(path), hop.argument, variant, f"{hop.file}:{hop.line}: {exc}")
            try:  # name the first argument that goes wrong, not only the read
                if model.page_mapping_wp(sc.page, value) is not sc.owner:
                    raise model.MappingMismatch(f"{value!r} is not {sc.owner!r}")
            except model.ModelError as exc:
                return Witness(tuple(path), hop.argument, variant, f"{hop.file}:{hop.line}: {exc}")
            callee = hop.callee if self.g.nodes[hop.callee]["type"] == "function" else None
            target = callee or self._implementation(path, hop)
            env = sc.bind(self.g.nodes[target]["params"], set()) if target else {}
            if target in self.gains:
                env[self.gains[target].param_name] = value
                witness = self._clash_local(target, env, sc, path, variant)
                if witness is not None:
                    return witness
            where = target or hop.callee
        if context_expr is None:
            return Witness(tuple(path), "(none)", variant, f"{where} has no mapping to pass to the helper")
        try:
            ctx = model.evaluate(context_expr, env)
            got = model.page_mapping_wp(sc.page, ctx)
        except model.ModelError as exc:
            return Witness(tuple(path), context_expr, variant, str(exc))
        if got is not sc.owner:
            return Witness(tuple(path), context_expr, variant,
                           f"the helper returned {got!r}, not {sc.owner!r} the page was reached through")
        return None

    def _clash_local(self, fid: str, env: dict, sc: _Scenario, path: list[Hop],
                     variant: str) -> Witness | None:
        """A function that took the clash name already had a local named like the
        parameter, `struct address_space *mapping = page->mapping;`, which the plan
        rewrote to the helper: the local holds the helper's answer."""
        name = self.gains[fid].param_name
        if name == self.pr.param_name:
            return None
        try:
            env[self.pr.param_name] = model.page_mapping_wp(sc.page, env[name])
        except model.ModelError as exc:
            return Witness(tuple(path), name, variant, f"{fid}: local {self.pr.param_name}: {exc}")
        return None

    def _implementation(self, path: list[Hop], hop: Hop) -> str | None:
        i = path.index(hop)
        if i + 1 < len(path):
            return path[i + 1].caller
        return self.reader

    def variants(self, entry: str) -> list[tuple[str, set[str]]]:
        params = self.g.nodes[entry]["params"]
        out: list[tuple[str, set[str]]] = [("plain", set())]
        if any(ctypes.split(ctypes.normalise(t))[0] == "struct file" for _, t in params):
            out.append(("bdev-file", set()))
        nullable = {p.type for p in self.pr.providers if p.nullable}
        for i, (name, ptype) in enumerate(params):
            if name and ctypes.normalise(ptype) in nullable and (entry, i) in self.null_args:
                path, line = self.null_args[(entry, i)]
                out.append((f"NULL {name} (as {path}:{line} passes)", {name}))
        return out

    def verdict(self, r: ReadRecord) -> Verdict:
        if r.kind not in self.pr.scope_kinds:
            return Verdict(r.file, r.line, r.function, r.expr, r.kind, "runtime", 0, False, None,
                           RUNTIME_COVER.get(r.kind, "no model operation"))
        fid = r.function_id
        rewrite = next((w for w in self.plan.rewrites if w.file == r.file and w.start == r.start), None)
        if fid is None or rewrite is None:
            reason = self.unresolved.get(fid or "")
            why = f"not rewritten: {reason.reason}" if reason else "not rewritten"
            return Verdict(r.file, r.line, r.function, r.expr, r.kind, "unresolvable", 0, False,
                           Witness((), "(none)", "plain", f"{fid or r.function}: {why}"))
        self.reader = fid
        paths, truncated = self.paths(fid)
        if fid in self.gains and paths == [[]]:
            # it gains the parameter only to follow a slot nobody calls in the tree
            return Verdict(r.file, r.line, r.function, r.expr, r.kind, "resolvable", 0, False, None,
                           "no call path in the tree")
        for path in paths:
            entry = path[0].caller if path else fid
            for variant, nulls in self.variants(entry):
                witness = self.run_path(path, fid, rewrite.context, variant.split(" ")[0], nulls)
                if witness is not None:
                    witness = Witness(witness.path, witness.argument, variant, witness.error)
                    return Verdict(r.file, r.line, r.function, r.expr, r.kind, "unresolvable",
                                   len(paths), truncated, witness)
        return Verdict(r.file, r.line, r.function, r.expr, r.kind, "resolvable", len(paths),
                       truncated, None)


def check(plan: Plan, analysis: Analysis, rules: Rules, facts: dict) -> CheckResult:
    if rules.plan is None:
        raise ValueError(f"{rules.path}: no [plan] section")
    checker = _Checker(plan, analysis, rules)
    checker.note_null_arguments(facts)
    verdicts = [checker.verdict(r) for r in sorted(analysis.reads, key=lambda r: (r.file, r.line, r.col))]
    return CheckResult(tuple(verdicts))
