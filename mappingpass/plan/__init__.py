"""The plan stage: the passdown fixpoint over the graph (README.md, "plan").

    add_mapping_parameter(func):
        add a mapping parameter to func
        for each caller of func:
            pass the mapping at that call site
            if caller can already supply it: continue
            add_mapping_parameter(caller)

made precise: "can already supply it" is `context.Context`'s question --
where the page the read (or the call) is about came from, and which
expression in scope denotes its mapping: a lookup or a carrier names it, a
provider of the best rank stands for a page parameter, several of one rank
need a human, none means the function gains the parameter *for that page
parameter*, and each caller answers the same question for the page it passes.
Identity tests become membership tests, NULL and flag tests stay, pages of
never-protected mappings need nothing. A function that gains the parameter
while bound to a slot makes the slot gain it, hence every function bound to
the slot and every call through it; recursion ends on the `gains` set;
boundaries (syscalls, exported symbols when the rules say so, functions
nobody calls or registers, callers in kind 2-5 code) stop the propagation and
are reported as unresolved with their chain.

The result is a `Plan` of plain, sorted records with a JSON form
(`Plan.to_json`, schema `mappingpass.plan/1`). Same analysis and rules, same
bytes.
"""

from __future__ import annotations

import re
from collections import Counter, deque
from dataclasses import asdict, dataclass, field

from .. import types
from ..facts import Call, FileFacts
from ..graph import Analysis, ReadRecord, edges_in, edges_out, function_argument, home
from ..rules import PlanRules, Rules
from .context import Context, Decision, Origin

PLAN_SCHEMA = "mappingpass.plan/1"
# a mapping expression that is itself a read of the field (never passed as context)
_READ_TEXT = re.compile(r"(->|\.)\s*mapping\s*$|\b(page|folio)_\w*mapping\w*\s*\(")


@dataclass(frozen=True)
class Step:
    """One link of a chain: `node` gains the parameter because of `why`."""

    node: str
    why: str  # "reads" | "calls" | "calls-through" | "implements" | "implemented-by" | "bound-to"
    #           | "twin-of" | "mentioned"
    file: str
    line: int
    detail: str  # the read expression ("reads"), else the next node of the chain


@dataclass(frozen=True)
class PlanFunction:
    id: str
    name: str
    file: str
    line: int
    bodies: tuple[tuple[str, int], ...]
    prototypes: tuple[tuple[str, int], ...]
    param_name: str
    reason: tuple[Step, ...]  # the chain from this function to a read
    exported: bool = False  # EXPORT_SYMBOL: the cover letter lists the interface change
    page_param: int = -1  # the parameter the page comes through (-1: not known)


@dataclass(frozen=True)
class PlanSlot:
    id: str
    kind: str
    name: str
    owner: str
    decls: tuple[tuple[str, int], ...]
    reason: tuple[Step, ...]


@dataclass(frozen=True)
class CallSite:
    file: str
    line: int
    col: int
    caller: str
    callee: str  # function id or slot id
    via: str  # "direct" | "member" | "pointer"
    call: str  # the called expression as written
    argument: str
    how: str  # "parameter" | "provider" | "lookup" | "carrier" | "receiver" | "never-protected"
    #           | "needs-human" | "unresolved"
    paren: int  # byte offset of the argument list's "(" (for emit)
    nargs: int
    first_arg: int  # byte offset of the first argument, -1 if none
    evidence: str = ""  # where the page passed here comes from, and why this argument
    args: str = ""  # the arguments as written, ", "-joined (tells two calls of one callee apart)


@dataclass(frozen=True)
class Rewrite:
    file: str
    line: int
    col: int
    start: int
    end: int
    function: str
    from_: str
    to: str
    access: str  # "compare" keeps identity tests apart from ordinary reads
    context: str  # the mapping expression passed to the helper ("" for a membership test)
    purpose: str = "use"  # "identity" (a membership test) | "derive" | "use"
    evidence: str = ""  # where the page comes from, and why this mapping


@dataclass(frozen=True)
class Kept:
    """A kind-1 read the plan leaves as it is, and why: a NULL or flag test
    (the record keeps the low bits and is never NULL), a page that is never
    write protected, or a case that needs a human."""

    file: str
    line: int
    function: str
    expr: str
    reason: str  # "null-test" | "flag-test" | "never-protected" | "needs-human"
    evidence: str
    candidates: tuple[str, ...] = ()


@dataclass(frozen=True)
class Unresolved:
    function: str
    file: str
    line: int
    reason: str
    chain: tuple[Step, ...]


@dataclass(frozen=True)
class Plan:
    rules: str
    functions: tuple[PlanFunction, ...]
    slots: tuple[PlanSlot, ...]
    call_sites: tuple[CallSite, ...]
    rewrites: tuple[Rewrite, ...]
    unresolved: tuple[Unresolved, ...]
    runtime_reads: int  # kind 2-5 reads: handled at run time, not passed down
    parsed_on_demand: tuple[str, ...] = field(default=())
    kept: tuple[Kept, ...] = field(default=())  # kind-1 reads left as they are
    needs_human_sites: tuple[Kept, ...] = field(default=())  # call sites whose page's mapping is unclear

    def to_json(self) -> dict:
        def plain(obj):
            d = asdict(obj)
            if "from_" in d:
                d["from"] = d.pop("from_")
            return d

        return {
            "schema": PLAN_SCHEMA,
            "rules": self.rules,
            "summary": self.summary(),
            "functions": [plain(f) for f in self.functions],
            "slots": [plain(s) for s in self.slots],
            "call_sites": [plain(c) for c in self.call_sites],
            "rewrites": [plain(r) for r in self.rewrites],
            "unresolved": [plain(u) for u in self.unresolved],
            "kept": [plain(k) for k in self.kept],
            "needs_human_sites": [plain(k) for k in self.needs_human_sites],
            "parsed_on_demand": list(self.parsed_on_demand),
        }

    def files(self) -> list[str]:
        """Every file the plan changes: call sites, rewrites, the definitions and
        prototypes of what gains the parameter, the declarations of its slots
        (not the helper's header: emit.place_helper decides that)."""
        paths = {c.file for c in self.call_sites} | {r.file for r in self.rewrites}
        paths |= {p for f in self.functions for p, _ in (*f.bodies, *f.prototypes)}
        paths |= {p for s in self.slots if s.kind != "param" for p, _ in s.decls}
        return sorted(paths)

    def needs_human(self) -> list[Kept]:
        """The reads and call sites whose page's mapping a human must decide."""
        return [k for k in self.kept if k.reason == "needs-human"] + list(self.needs_human_sites)

    def summary(self) -> dict:
        reasons: dict[str, int] = {}
        for u in self.unresolved:
            reasons[u.reason] = reasons.get(u.reason, 0) + 1
        return {
            "functions": len(self.functions),
            "slots": len(self.slots),
            "call_sites": len(self.call_sites),
            "rewrites": len(self.rewrites),
            "identity_rewrites": sum(1 for r in self.rewrites if r.purpose == "identity"),
            "kept_reads": dict(sorted(Counter(k.reason for k in self.kept).items())),
            "needs_human": len(self.needs_human()),
            "unresolved": len(self.unresolved),
            "unresolved_by_reason": dict(sorted(reasons.items())),
            "runtime_reads": self.runtime_reads,
            "files": len({f for f, _ in _touched(self)}),
        }


def _touched(plan: Plan) -> set[tuple[str, int]]:
    out = {(f.file, f.line) for f in plan.functions}
    out |= {(c.file, c.line) for c in plan.call_sites}
    out |= {(r.file, r.line) for r in plan.rewrites}
    return out


class _Fixpoint:
    def __init__(self, analysis: Analysis, rules: Rules, facts,
                 unseen: dict[str, tuple[str, int, str]] | None = None) -> None:
        if rules.plan is None:
            raise ValueError(f"{rules.path}: no [plan] section; this rules file only analyzes")
        self.a = analysis
        self.g = analysis.graph
        self.rules = rules
        self.pr: PlanRules = rules.plan
        self.facts = facts
        self.gains: dict[str, Step] = {}  # function or slot -> why it gains the parameter
        self.stopped: dict[str, tuple[str, Step]] = {}  # boundary -> (reason, why it was needed)
        self.unresolved: list[Unresolved] = []
        self.queue: deque[tuple[str, Step]] = deque()
        # function -> (file, line, text) of a mention of its name that no record
        # explains (a macro body, code the parser could not read): see unseen_mentions
        self.unseen = unseen or {}
        self._twins: dict[str, list[str]] = {}
        self.frozen = self._frozen_slots()
        get = facts if callable(facts) else facts.get
        self.ctx = Context(self.g, analysis.types, self.pr, get, self.in_scope)
        self.page_param: dict[str, int] = {}  # node -> parameter its page comes through
        self.decisions: dict[tuple[str, int], Decision] = {}  # read (file, start) -> decision
        self._sites: dict[tuple, Decision] = {}
        self._in_scope: dict[str, bool] = {}
        self.kept: list[Kept] = []

    def _frozen_slots(self) -> dict[str, tuple[str, str]]:
        """slot -> (reason, cause) for the slots that cannot change: those the
        rules keep ("slot-boundary", the slot), those with an implementation
        that keeps its signature ("unseen-slot", the function), and every slot
        that shares an implementation with one of them (a function bound to
        two slots follows both or neither)."""
        frozen: dict[str, tuple[str, str]] = {}
        fixed = self.pr.changeable_slots
        if fixed is not None:
            for n, d in sorted(self.g.nodes(data=True)):
                if d["type"] == "slot" and not fixed.search(n):
                    frozen[n] = ("slot-boundary", n)
        for fid in sorted(self.unseen):
            if fid in self.g and self.g.nodes[fid]["type"] == "slot":
                frozen.setdefault(fid, ("unseen-slot", fid))  # named outside the analysed paths
            elif fid in self.g:
                for member in self.twins(fid):
                    for slot, _, _ in edges_out(self.g, member, "binds"):
                        frozen.setdefault(slot, ("unseen-slot", fid))
        todo = sorted(frozen)
        while todo:
            slot = todo.pop()
            for impl, _, _ in edges_in(self.g, slot, "binds"):
                for member in self.twins(impl):
                    for other, _, _ in edges_out(self.g, member, "binds"):
                        if other not in frozen:
                            frozen[other] = frozen[slot]
                            todo.append(other)
        return frozen

    # -- what a function can supply ------------------------------------------
    def param_name(self, fid: str) -> str:
        clashes = self.g.nodes[fid].get("clashes", set())
        return self.pr.clash_name if self.pr.param_name in clashes else self.pr.param_name

    def in_scope(self, fid: str) -> bool:
        """fid is code of the kinds the plan converts (kind 1)."""
        if fid not in self._in_scope:
            kind, _ = self.rules.kind_of(self.home(fid)[0], self.g.nodes[fid]["name"])
            self._in_scope[fid] = kind in self.pr.scope_kinds
        return self._in_scope[fid]

    def site_decision(self, pred: str, site: tuple, target: str) -> Decision:
        """What the call at site (in pred) passes for target's page: the
        mapping of the page it passes, followed in pred."""
        key = (site, target)
        if key in self._sites:
            return self._sites[key]
        call = self._call(site)
        k = self.page_param.get(target, -1)
        debug = self.ctx.in_debug(pred, site[0], call.start) if call is not None else ""
        if debug:
            d = Decision("debug", evidence=f"inside {debug}(): only reported, the page's own field will do")
            self._sites[key] = d
            return d
        if call is None or k < 0 or k >= len(call.args):
            # which argument is the page is not known: the caller's providers
            # decide, and without one the caller passes its own down
            origin = Origin("parameter" if not self.ctx.candidates(pred) else "unknown",
                            evidence="the callee's page argument is not known")
        else:
            origin = self.ctx.origin(pred, call.args[k])
        d = self.ctx.decide(pred, origin, call.start if call is not None else -1)
        self._sites[key] = d
        return d

    def home(self, node: str) -> tuple[str, int]:
        return home(self.g, node)

    # -- boundaries -------------------------------------------------------------
    def twins(self, fid: str) -> list[str]:
        """fid and the functions that must keep its signature: a header's
        `static inline` stub and the extern function it stands in for.
        (Asked for every function the fixpoint meets, several times: kept.)"""
        if fid in self._twins:
            return self._twins[fid]
        group, todo = {fid}, [fid]
        while todo:
            node = todo.pop()
            for other in [a for a, _, _ in edges_in(self.g, node, "twin")] + \
                         [b for b, _, _ in edges_out(self.g, node, "twin")]:
                if other not in group:
                    group.add(other)
                    todo.append(other)
        members = sorted(group)
        for member in members:
            self._twins[member] = members
        return members

    def boundary(self, fid: str, why: Step) -> str | None:
        """Why fid cannot gain the parameter, if it cannot. Twins are decided
        together: a boundary of one holds for all."""
        d = self.g.nodes[fid]
        if why.why == "twin-of":
            return None  # decided with the twin that needed it
        group = self.twins(fid)
        for member in group:
            if member in self.unseen:
                return "unseen-mention"
            if edges_in(self.g, member, "macro-call"):
                return "macro-body-call"  # a macro's body calls it: a human changes the macro
            md = self.g.nodes[member]
            if self.pr.boundary_functions is not None and self.pr.boundary_functions.search(md["name"]):
                return "syscall"
            if md.get("via_macro"):
                # the signature is written by a macro: a human changes the macro
                return "syscall" if "SYSCALL" in md["via_macro"] else "macro-definition"
            if md.get("unslotted"):
                # stored in a function-pointer member of a struct the index has
                # not seen: that member's type would not change with it
                return "unknown-slot"
        if why.why == "implements":
            return None  # a slot's implementation must follow the slot's signature
        bound = False
        for member in group:
            for slot, _, _ in edges_out(self.g, member, "binds"):
                bound = True
                if slot in self.frozen:
                    return f"{self.frozen[slot][0]}:{slot}"
            if self.pr.exported_is_boundary and self.g.nodes[member].get("exported"):
                return "exported"
        path = self.home(fid)[0]
        kind, _ = self.rules.kind_of(path, d["name"])
        if kind in (2, 3, 4, 5) and kind not in self.pr.scope_kinds:
            return f"kind-{kind}"
        if not bound and not any(self._has_callers(m) for m in group):
            return "no-callers"
        return None

    def _has_callers(self, fid: str) -> bool:
        return bool(edges_in(self.g, fid, "call"))

    # -- the worklist -------------------------------------------------------
    def need(self, node: str, why: Step, param: int = -1) -> None:
        self.queue.append((node, why, param))

    def run(self) -> None:
        while self.queue:
            node, why, param = self.queue.popleft()
            if node in self.gains:
                continue
            if node in self.stopped:
                # a slot that gains forces its implementations, whatever stopped
                # them as callers (a kind-3 block_invalidate_folio in an aops
                # table must take the slot's parameter for the table to build)
                if why.why != "implements" or self.boundary(node, why) is not None:
                    continue
                del self.stopped[node]
            if self.g.nodes[node]["type"] == "function":
                self._function(node, why, param)
            else:
                self._slot(node, why, param)

    def _function(self, fid: str, why: Step, param: int) -> None:
        reason = self.boundary(fid, why)
        if reason is not None:
            self.stopped[fid] = (reason, why)
            return
        self.gains[fid] = why
        self.page_param[fid] = param
        file, line = self.home(fid)
        for twin in self.twins(fid):
            if twin != fid:
                self.need(twin, Step(twin, "twin-of", file, line, fid), param)
        for succ, _, _ in edges_out(self.g, fid, "binds"):
            self.need(succ, Step(succ, "implemented-by", file, line, fid), param)
        for pred, _, edge in edges_in(self.g, fid, "call"):
            for site in sorted(edge["sites"]):
                d = self.site_decision(pred, site, fid)
                if d.kind == "pass-down":
                    self.need(pred, Step(pred, "calls", site[0], site[1], fid), d.param)

    def _slot(self, sid: str, why: Step, param: int) -> None:
        if sid in self.frozen:
            self.stopped[sid] = (self.frozen[sid][0], why)
            return
        if edges_in(self.g, sid, "macro-call"):
            self.stopped[sid] = ("macro-body-call", why)
            return
        self.gains[sid] = why
        self.page_param[sid] = param
        for group in self.pr.slot_groups:
            if sid in group:
                for other in group:
                    if other != sid and other in self.g:
                        self.need(other, Step(other, "same-type-as", *self.home(sid), sid), param)
        for pred, kind, edge in edges_in(self.g, sid, "binds", "call-through-slot"):
            if kind == "binds":
                site = min(edge["sites"])
                self.need(pred, Step(pred, "implements", site[0], site[1], sid), param)
                continue
            for site in sorted(edge["sites"]):
                if self._receiver_argument(site, pred) is not None:
                    continue  # the call names its mapping: M->a_ops->x(M, ...)
                d = self.site_decision(pred, site, sid)
                if d.kind == "pass-down":
                    self.need(pred, Step(pred, "calls-through", site[0], site[1], sid), d.param)

    def _receiver_argument(self, site: tuple, caller: str) -> str | None:
        """`M->a_ops->op(...)` passes M; so does `aops->op(...)` after `aops = M->a_ops`."""
        call = self._call(site)
        found = self.ctx.call_receiver(caller, call) if call is not None else None
        if found is not None and not _READ_TEXT.search(found):
            return found  # (`folio->mapping->a_ops->x(...)` is a read: not a context)
        return None

    def _call(self, site: tuple) -> Call | None:
        ff = self.facts(site[0]) if callable(self.facts) else self.facts.get(site[0])
        if ff is None or site[2] >= len(ff.calls):
            return None
        return ff.calls[site[2]]

    # -- seeds and results -----------------------------------------------------
    def seed(self) -> int:
        runtime = 0
        for r in sorted(self.a.reads, key=lambda r: (r.file, r.line, r.col)):
            if r.kind not in self.pr.scope_kinds:
                runtime += 1
                continue
            fid = r.function_id
            if fid is None:
                self.unresolved.append(Unresolved(r.function or "", r.file, r.line, "no-function", ()))
                continue
            if r.purpose in ("null-test", "flag-test"):
                why = ("a NULL test: a protected page's field points at the record, never NULL"
                       if r.purpose == "null-test" else
                       "a flag test: the record keeps the low bits (anon, KSM, movable) of the word")
                self.kept.append(Kept(r.file, r.line, fid, r.expr, r.purpose, why))
                continue
            if r.purpose == "identity" and self.pr.membership_page:
                continue  # a membership test needs no context (rewrites)
            debug = self.ctx.in_debug(fid, r.file, r.start)
            if debug:
                self.kept.append(Kept(r.file, r.line, fid, r.expr, "debug",
                                      f"inside {debug}(): only reported, the page's own field will do"))
                continue
            d = self.ctx.decide(fid, self.ctx.origin(fid, r.receiver_text), r.start)
            self.decisions[(r.file, r.start)] = d
            if d.kind == "pass-down":
                self.need(fid, Step(fid, "reads", r.file, r.line, r.expr), d.param)
            elif d.kind in ("needs-human", "never-protected"):
                self.kept.append(Kept(r.file, r.line, fid, r.expr, d.kind, d.evidence, d.candidates))
        return runtime

    def chain(self, node: str) -> tuple[Step, ...]:
        out: list[Step] = []
        seen: set[str] = set()
        while node in self.gains and node not in seen:
            seen.add(node)
            step = self.gains[node]
            out.append(step)
            if step.why == "reads":
                break
            node = step.detail  # the callee, slot or implementation that needed it
        return tuple(out)

    def site_argument(self, pred: str, kind: str, site: tuple, target: str) -> tuple[str, str, str]:
        """(argument, how, evidence) of one call the plan changes."""
        if kind == "call-through-slot":
            arg = self._receiver_argument(site, pred)
            if arg is not None:
                return arg, "receiver", f"the mapping whose operations are called ({arg})"
        d = self.site_decision(pred, site, target)
        if d.kind == "context":
            return d.expr, d.how, d.evidence
        if d.kind == "never-protected":
            return d.expr or self.pr.unresolved_argument, "never-protected", d.evidence
        if d.kind == "pass-down" and pred in self.gains:
            return self.param_name(pred), "parameter", f"{d.evidence}; passed down by the callers of {pred}"
        if d.kind == "needs-human":
            return self.pr.unresolved_argument, "needs-human", d.evidence
        if d.kind == "debug":
            return self.pr.unresolved_argument, "debug", d.evidence
        return self.pr.unresolved_argument, "unresolved", d.evidence

    def call_sites(self) -> list[CallSite]:
        out: list[CallSite] = []
        for target in self.gains:
            for pred, kind, edge in edges_in(self.g, target, "call", "call-through-slot"):
                for site in edge["sites"]:
                    call = self._call(site)
                    if call is None:
                        continue
                    arg, how, evidence = self.site_argument(pred, kind, site, target)
                    first = call.arg_spans[0][0] if call.arg_spans else -1
                    out.append(CallSite(site[0], call.line, call.col, pred, target, call.via,
                                        call.fn_text or call.callee, arg, how, call.paren,
                                        len(call.args), first, evidence, ", ".join(call.args)))
        out.sort(key=lambda c: (c.file, c.line, c.col, c.callee))
        return out

    def rewrites(self) -> list[Rewrite]:
        out: list[Rewrite] = []
        for r in self.a.reads:
            if r.kind not in self.pr.scope_kinds or r.function_id is None:
                continue
            if r.purpose == "identity" and self.pr.membership_page and r.cmp_start >= 0:
                out.append(self.membership(r))
                continue
            d = self.decisions.get((r.file, r.start))
            if d is None:
                continue
            if d.kind == "context":
                ctx, evidence = d.expr, d.evidence
            elif d.kind == "pass-down" and r.function_id in self.gains:
                ctx = self.param_name(r.function_id)
                evidence = f"{d.evidence}; passed down by the callers of {r.function_id}"
            else:
                continue
            out.append(Rewrite(r.file, r.line, r.col, r.start, r.end, r.function_id, r.expr,
                               self.helper_call(r, ctx), r.access, ctx, r.purpose, evidence))
        out.sort(key=lambda w: (w.file, w.start))
        return out

    def membership(self, r: ReadRecord) -> Rewrite:
        """`page->mapping != M` -> `!page_in_mapping(page, M)`: an identity test
        asks whether the page belongs to M, protected or not."""
        call = self.helper_call(r, r.cmp_other, membership=True)
        to = call if r.cmp_op == "==" else f"!{call}"
        return Rewrite(r.file, r.cmp_line or r.line, r.col, r.cmp_start, r.cmp_end, r.function_id or "", r.cmp_text, to,
                       r.access, "", "identity", f"identity test against {r.cmp_other}: membership, no context")

    def helper_call(self, r: ReadRecord, ctx: str, membership: bool = False) -> str:
        pr = self.pr
        page_helper = pr.membership_page if membership else pr.helper_page
        folio_helper = pr.membership_folio if membership else pr.helper_folio
        if r.via == "accessor":
            # keep the accessor's answer (NULL for anon, the swap space for swap cache)
            page_of = pr.membership_page_of if membership else pr.helper_page_of
            folio_of = pr.membership_folio_of if membership else pr.helper_folio_of
            folio = r.receiver_type.startswith("folio")
            if page_of:
                accessor = r.cmp_text[:len(r.expr)] if membership and r.cmp_text.startswith(r.expr) else r.expr
                return f"{folio_of if folio else page_of}({r.receiver_text}, {accessor}, {ctx})"
            helper = folio_helper if folio else page_helper
            return f"{helper}({r.receiver_text}, {ctx})"
        base = r.receiver_type.rstrip("* ")
        helper = folio_helper if base == "struct folio" else page_helper
        receiver = r.receiver_text
        if r.receiver_type.endswith("*"):
            return f"{helper}({receiver}, {ctx})"
        return f"{helper}(&{receiver}, {ctx})"  # folio->page.mapping

    def finish(self, runtime: int, parsed: tuple[str, ...], sites: bool = True) -> Plan:
        functions, slots = [], []
        for node in sorted(self.gains):
            d = self.g.nodes[node]
            if d["type"] == "function":
                file, line = self.home(node)
                functions.append(PlanFunction(node, d["name"], file, line, tuple(sorted(d["bodies"])),
                                              tuple(sorted(d["protos"])), self.param_name(node),
                                              self.chain(node), bool(d.get("exported")),
                                              self.page_param.get(node, -1)))
            else:
                slots.append(PlanSlot(node, d["slot_kind"], d["name"], d["owner"],
                                      tuple(sorted(d["decls"])), self.chain(node)))
        unresolved = list(self.unresolved)
        for node, (reason, why) in self.stopped.items():
            file, line = self.home(node)
            chain = (why, *self.chain(why.detail))
            if reason.startswith("slot-boundary:"):
                # bound to an ops table the rules keep unchanged (or to a slot
                # that shares an implementation with one)
                reason, slot = reason.split(":", 1)
                cause = self.frozen[slot][1]
                shared = (Step(slot, "shares-implementations-with", *self.home(slot), cause),) if cause != slot else ()
                chain = (Step(node, "bound-to", file, line, slot), *shared, *chain)
            elif reason == "unknown-slot":
                (path, line), member = min(
                    (k, v) for m in self.twins(node) for k, v in self.g.nodes[m].get("unslotted", {}).items())
                chain = (Step(node, "stored-in", path, line, member), *chain)
            elif reason == "macro-body-call":
                chain = (self._macro_call_step(node), *chain)
            elif reason == "unseen-mention":
                at = next(self.unseen[m] for m in self.twins(node) if m in self.unseen)
                chain = (Step(node, "mentioned", *at), *chain)
            elif reason.startswith("unseen-slot"):
                # an implementation of the slot keeps its signature (unseen-mention)
                slot = reason.split(":", 1)[1] if ":" in reason else node
                impl = self.frozen[slot][1]
                steps = (Step(node, "bound-to", file, line, slot),) if slot != node else ()
                reason = "unseen-slot"
                if impl == slot:  # the slot itself is named outside the analysed paths
                    chain = (*steps, Step(slot, "mentioned", *self.unseen[slot]), *chain)
                else:
                    chain = (*steps, Step(slot, "implemented-by", *self.home(impl), impl),
                             Step(impl, "mentioned", *self.unseen[impl]), *chain)
            unresolved.append(Unresolved(node, file, line, reason, chain))
        for node in sorted(self.gains):
            for pred, _, edge in edges_in(self.g, node, "binds"):
                for site in edge["sites"]:
                    if site[3]:  # bound through a cast that hides the changed signature
                        unresolved.append(Unresolved(
                            pred, site[0], site[1], "cast",
                            (Step(pred, "implements", site[0], site[1], f"({site[3]}) cast to {node}"),
                             *self.chain(node))))
        unresolved.sort(key=lambda u: (u.reason, u.file, u.line, u.function))
        call_sites = tuple(self.call_sites()) if sites else ()
        human = tuple(Kept(c.file, c.line, c.caller, c.call, "needs-human", c.evidence,
                           self._site_candidates(c)) for c in call_sites if c.how == "needs-human")
        kept = tuple(sorted(self.kept, key=lambda k: (k.file, k.line, k.expr)))
        return Plan(self.rules.name, tuple(functions), tuple(slots), call_sites,
                    tuple(self.rewrites()) if sites else (), tuple(unresolved), runtime, parsed, kept, human)

    def _macro_call_step(self, node: str) -> Step:
        """Where a macro's body calls node (precise mode), the first such call."""
        members = self.twins(node) if self.g.nodes[node]["type"] == "function" else [node]
        pred, site = min((p, s) for m in members for p, _, e in edges_in(self.g, m, "macro-call")
                         for s in e["sites"])
        ff = self.facts(site[0]) if callable(self.facts) else self.facts.get(site[0])
        macro = ff.macro_calls[site[2]].macro if ff is not None and site[2] < len(ff.macro_calls) else "?"
        return Step(node, "called-in-macro", site[0], site[1], f"{macro}() in {pred}")

    def _site_candidates(self, c: CallSite) -> tuple[str, ...]:
        return tuple(f"{x.expr} ({x.evidence})" for x in self.ctx.candidates(c.caller))


def make_plan(analysis: Analysis, rules: Rules, facts,
              parsed_on_demand: tuple[str, ...] = (), sites: bool = True,
              unseen: dict[str, tuple[str, int, str]] | None = None) -> Plan:
    """facts: a mapping path -> FileFacts, or a function path -> FileFacts | None
    (the index's call records are read only for the call sites the plan changes).
    sites=False leaves out call sites and rewrites: what the on-demand rounds need.
    unseen: functions that must keep their signature (unseen_mentions)."""
    fp = _Fixpoint(analysis, rules, facts, unseen)
    runtime = fp.seed()
    fp.run()
    return fp.finish(runtime, parsed_on_demand, sites)


# comments and string or character literals: their words are not mentions
_NOT_CODE = re.compile(rb'/\*.*?\*/|//[^\n]*|"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'', re.S)
_IDENT = re.compile(rb"[A-Za-z_]\w*")


def _blank(m: re.Match) -> bytes:
    return b"\n" * m.group(0).count(b"\n")  # keep the line numbers


def _enclosing_call(code: bytes, at: int) -> bytes:
    """The name before the innermost `(` open around offset at, within the
    statement (b"" when there is none)."""
    depth = 0
    for i in range(at - 1, max(-1, at - 4000), -1):
        ch = code[i:i + 1]
        if ch == b")":
            depth += 1
        elif ch == b"(":
            if depth == 0:
                m = re.search(rb"([A-Za-z_]\w*)\s*$", code[max(0, i - 80):i])
                return m.group(1) if m else b""
            depth -= 1
        elif ch in (b";", b"{", b"}") and depth == 0:
            return b""
    return b""


def mentions(data: bytes, names: set[str], skip_macros: re.Pattern[str] | None = None) -> dict[str, list[int]]:
    """Lines where each of names is mentioned as an identifier in code (not
    in a comment or string, not as a member after `.` or `->`, not as an
    argument of a macro skip_macros matches)."""
    code = _NOT_CODE.sub(lambda m: b" " + _blank(m), data)
    want = {n.encode() for n in names}
    found: dict[str, list[int]] = {}
    line, at = 1, 0
    for m in _IDENT.finditer(code):
        word = m.group(0)
        if word not in want:
            continue
        before = code[max(0, m.start() - 2):m.start()].rstrip()
        if before.endswith((b".", b"->")):
            continue
        if skip_macros is not None:
            macro = _enclosing_call(code, m.start())
            if macro and skip_macros.search(macro.decode()):
                continue
        line += code.count(b"\n", at, m.start())
        at = m.start()
        found.setdefault(word.decode(), []).append(line)
    return found


def accounted(ff: FileFacts, names: set[str], functions: set[str],
              registrations: dict[str, int] | None = None) -> Counter:
    """How many mentions of each name the file's records explain: definitions
    and prototypes, direct calls, the function named as an argument of a call
    of one of `functions` (the graph binds it to that parameter; handed to a
    macro or an unseen function it stays unexplained), bindings in
    initializers and assignments, EXPORT_SYMBOL."""
    out: Counter = Counter()
    registrations = registrations or {}
    for fn in ff.functions:
        if fn.name in names:
            out[fn.name] += 1
    for c in ff.calls:
        # a call outside any function is one in code the parser lost its way
        # in (the graph has no edge for it)
        if c.via == "direct" and c.callee in names and c.caller is not None:
            out[c.callee] += 1
        if c.via != "direct" or c.callee not in functions:
            continue
        for arg in c.args:
            if arg[:1] in "(&" or arg in names:
                fname = function_argument(arg)[0]
                if fname in names:
                    out[fname] += 1
    for b in ff.bindings:
        if b.function in names:
            out[b.function] += 1
    for c in ff.calls:  # INIT_WORK(&w, fn): a registration (graph binds it)
        arg = registrations.get(c.callee, -1) if c.via == "direct" and c.caller is not None else -1
        if 0 <= arg < len(c.args) and function_argument(c.args[arg])[0] in names:
            out[function_argument(c.args[arg])[0]] += 1
    for name in ff.exports:
        if name in names:
            out[name] += 1
    return out


def outside_names(plan: Plan, analysis: Analysis) -> dict[str, list[str]]:
    """name -> the functions and slots of the plan a file outside the
    analysed paths could name: every function but the static ones of a .c
    file (no other file can call those), every slot (its member or typedef)."""
    g = analysis.graph
    out: dict[str, list[str]] = {}
    for f in plan.functions:
        d = g.nodes[f.id] if f.id in g else {}
        if not (d.get("static") and f.file.endswith(".c")):
            out.setdefault(f.name, []).append(f.id)
    for sl in plan.slots:
        out.setdefault(sl.name, []).append(sl.id)
    return out


def outside_mentions(plan: Plan, analysis: Analysis, texts: dict[str, bytes]) -> dict[str, tuple[str, int, str]]:
    """When analyze was given part of a tree: the functions and slots of the
    plan that a file outside the analysed paths names (a caller, an
    implementation, a call through the slot). The series would leave that
    file as it is and break it, so they keep their signatures (reasons
    unseen-mention, unseen-slot), the first such mention their evidence.
    texts: path -> bytes of the outside files that mention one of
    outside_names() (a word grep's hits)."""
    names = outside_names(plan, analysis)
    out: dict[str, tuple[str, int, str]] = {}
    pattern = re.compile(rb"\b(" + b"|".join(re.escape(n.encode()) for n in sorted(names)) + rb")\b") if names else None
    for path in sorted(texts):
        code = _NOT_CODE.sub(lambda m: b" " + _blank(m), texts[path])
        for m in pattern.finditer(code) if pattern else ():
            for node in names[m.group(1).decode()]:
                if node not in out:
                    line = code.count(b"\n", 0, m.start()) + 1
                    out[node] = (path, line, f"{m.group(1).decode()} (outside the analysed paths)")
    return out


def unseen_mentions(plan: Plan, analysis: Analysis, facts, texts: dict[str, bytes],
                    rules: Rules | None = None) -> dict[str, tuple[str, int, str]]:
    """The functions of the plan whose name is mentioned where no record of
    the index explains it: in a macro body (`#define for_each_x(...)
    fn(...)`), as a value handed to a macro (`INIT_WORK(&w, fn)`), in a
    positional initializer, in code the parser could not read. Changing the
    signature would break that mention unseen, so the plan keeps such
    functions as they are and reports them (reason `unseen-mention`).
    texts: path -> bytes of every parsed file that mentions a changed name;
    facts: path -> FileFacts (a mapping or a function)."""
    g = analysis.graph
    get = facts if callable(facts) else facts.get
    by_name: dict[str, list[str]] = {}
    for f in plan.functions:
        by_name.setdefault(f.name, []).append(f.id)
    names = set(by_name)
    functions = {d["name"] for _, d in g.nodes(data=True) if d["type"] == "function"}
    registrations = {r.name: r.arg for r in (rules.plan.registrations if rules and rules.plan else ())}
    out: dict[str, tuple[str, int, str]] = {}
    for path in sorted(texts):
        ff = get(path)
        if ff is None:
            continue
        seen = mentions(texts[path], names, rules.plan.mention_macros if rules and rules.plan else None)
        if not seen:
            continue
        known = accounted(ff, names, functions, registrations)
        statics_here = {fn.name for fn in ff.functions if fn.static and fn.definition}
        for name, lines in sorted(seen.items()):
            if len(lines) <= known[name]:
                continue
            # whose name it is here: the file's own static, else the extern,
            # else a header's static inline
            fid = f"{path}::{name}" if name in statics_here else name
            if fid not in by_name[name]:
                in_headers = [i for i in by_name[name] if i.split("::")[0].endswith(".h")]
                if fid in g or name in statics_here or len(in_headers) != 1:
                    continue
                fid = in_headers[0]
            explained = {fn.line for fn in ff.functions if fn.name == name}
            explained |= {c.line for c in ff.calls if c.callee == name}
            explained |= {b.line for b in ff.bindings if b.function == name}
            line = next((ln for ln in lines if ln not in explained), lines[-1])
            text = texts[path].split(b"\n")[line - 1].decode("utf-8", "replace").strip()
            out.setdefault(fid, (path, line, text[:120]))
    return out


def changed_names(plan: Plan, analysis: Analysis) -> tuple[set[str], set[str]]:
    """What in a deferred file may add a caller or a binding: whole words (the
    changed functions and typedefs, and functions that take a changed typedef
    or parameter slot as an argument) and fixed strings (`->member`,
    `.member` of changed slot members)."""
    words = {f.name for f in plan.functions}
    # "nobody calls it" holds only once the files that might call it are parsed
    words |= {analysis.graph.nodes[u.function]["name"] for u in plan.unresolved
              if u.reason == "no-callers" and u.function in analysis.graph}
    for s in plan.slots:  # implementations defined in files not parsed yet
        words.update(analysis.unbound.get(s.id, ()))
    fixed: set[str] = set()
    g = analysis.graph
    typedefs = {s.name for s in plan.slots if s.kind == "typedef"}
    for s in plan.slots:
        if s.kind == "param":
            words.add(g.nodes[s.owner]["name"])
        elif s.kind == "typedef":
            words.add(s.name)
        else:
            fixed |= {f"->{s.name}", f".{s.name}"}
    if typedefs:
        for _node, d in g.nodes(data=True):
            if d["type"] == "function" and any(types.split(t)[0] in typedefs for _, t in d["params"]):
                words.add(d["name"])
    return words, fixed
