"""The passdown fixpoint: from the reads that need the mapping, up the call
graph and through slots, to the functions that gain the parameter, what each
call passes and what each read becomes (`make_plan` -> `records.Plan`)."""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from ..ctext import member_of, strip
from ..facts import Call
from ..graph import Analysis, ReadRecord, edges_in, edges_out, home
from ..rules import PlanRules, Rules
from .context import Context, Decision, Origin
from .mentions import changed_names
from .records import CallSite, Kept, Plan, PlanFunction, PlanSlot, Rewrite, Step, Unresolved

# a mapping expression that is itself a read of the field (never passed as context)
_READ_TEXT = re.compile(r"(->|\.)\s*mapping\s*$|\b(page|folio)_\w*mapping\w*\s*\(")
# what a changed call passes when its caller cannot say the page's mapping (the
# unresolved argument, NULL). Not "unresolved": a caller stopped where a human
# decides is reported so; only _NEVER_PASSES stops count as passing nothing.
_PASSES_NOTHING = ("needs-human", "debug")
_PRUNE_REASONS = ("no-context", "never-protected")
# callers stopped for these reasons keep their signature in any plan of this
# tree, so they have no mapping to pass on (unlike a caller stopped because
# the analyzed part of the tree ends, whose mapping a whole-tree plan passes).
# slot-boundary: bound to a slot the rules keep (ocfs2's journal-access
# typedef); without it, whether a callee is pruned would depend on whether
# the file that binds its callers to the slot happened to be parsed
_NEVER_PASSES = (*_PRUNE_REASONS, "exported", "syscall", "macro-body-call", "slot-boundary",
                 "macro-definition", "unknown-slot", "kind-2", "kind-3", "kind-4", "kind-5")


@dataclass(frozen=True)
class Pruned:
    """Why a function or slot does not gain the parameter although it reads:
    every call of it passes NULL (`no-context`), or a mapping of pages that are
    never write protected (`never-protected`)."""

    reason: str  # "no-context" | "never-protected"
    evidence: str
    first: tuple[str, int, str]  # (file, line, caller) of the first such call
    candidates: tuple[str, ...] = ()  # what the callers that need a human have in scope


class _Fixpoint:
    def __init__(self, analysis: Analysis, rules: Rules, facts,
                 unseen: dict[str, tuple[str, int, str]] | None = None) -> None:
        if rules.plan is None:
            raise ValueError(f"{rules.path}: no [plan] section; this rules file only analyzes")
        self.a = analysis
        self.g = analysis.graph
        self.rules = rules
        self.pr: PlanRules = rules.plan
        self.gains: dict[str, Step] = {}  # function or slot -> why it gains the parameter
        self.stopped: dict[str, tuple[str, Step]] = {}  # boundary -> (reason, why it was needed)
        self.unresolved: list[Unresolved] = []
        self.queue: deque[tuple[str, Step, int, str]] = deque()
        # function -> (file, line, text) of a mention of its name that no record
        # explains (a macro body, code the parser could not read): see unseen_mentions
        self.unseen = unseen or {}
        self._twins: dict[str, list[str]] = {}
        # function or slot -> why no caller can say its mapping (prune): it keeps its signature
        self.pruned: dict[str, Pruned] = {}
        self._fixed = self._fixed_slots()  # (every run: the rules and the unseen mentions hold)
        self.frozen = self._frozen_slots()
        self.file_facts = facts if callable(facts) else facts.get  # path -> FileFacts | None
        self.ctx = Context(self.g, analysis.types, self.pr, self.file_facts, self.in_scope)
        self.page_param: dict[str, int] = {}  # node -> parameter its page comes through
        self.page_path: dict[str, str] = {}  # node -> member path from that parameter to the page
        self.decisions: dict[tuple[str, int], Decision] = {}  # read (file, start) -> decision
        self._sites: dict[tuple, Decision] = {}
        self._in_scope: dict[str, bool] = {}
        self.kept: list[Kept] = []
        self._reads: dict[tuple[str, int], tuple[Kept | None, Decision | None]] = {}  # read -> its outcome

    def restart(self, pruned: dict[str, Pruned]) -> None:
        """Forget the last run's results (not the context's caches) and keep
        the pruned nodes from gaining the parameter in the next one."""
        self.pruned.update(pruned)
        self.gains, self.stopped, self.page_param, self.page_path, self.decisions = {}, {}, {}, {}, {}
        self.unresolved, self.kept = [], []
        self.queue.clear()
        self.frozen = self._frozen_slots()

    def _frozen_slots(self) -> dict[str, tuple[str, str]]:
        """The fixed slots and the pruned ones ("no-context", the slot), with
        every slot that shares an implementation with a pruned one."""
        frozen = dict(self._fixed)
        todo = []
        for node, why in sorted(self.pruned.items()):
            if self.g.nodes[node]["type"] == "slot" and node not in frozen:
                frozen[node] = (why.reason, node)
                todo.append(node)
        self._close(frozen, todo)
        return frozen

    def _fixed_slots(self) -> dict[str, tuple[str, str]]:
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
        self._close(frozen, sorted(frozen))
        return frozen

    def _close(self, frozen: dict[str, tuple[str, str]], todo: list[str]) -> None:
        """Freeze, with the same reason, every slot sharing an implementation
        with one in todo."""
        while todo:
            slot = todo.pop()
            for impl, _, _ in edges_in(self.g, slot, "binds"):
                for member in self.twins(impl):
                    for other, _, _ in edges_out(self.g, member, "binds"):
                        if other not in frozen:
                            frozen[other] = frozen[slot]
                            todo.append(other)

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
        call = self._call(site)
        k = self.page_param.get(target, -1)
        key = (site, target, k, self.page_path.get(target, ""))
        if key in self._sites:
            return self._sites[key]
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
            origin = self.ctx.origin(pred, member_of(call.args[k], self.page_path.get(target, "")))
            if strip(call.args[k]) in ("NULL", "0") and not self.page_path.get(target):
                origin = self.ctx.when_handed_null(target, k, call.args) or origin
        # (a call inside an assertion is not: WARN_ON(jbd2_journal_invalidate_folio(...))
        # does the work it reports on)
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
        for member in group:
            if member in self.pruned:
                return self.pruned[member].reason
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
    def need(self, node: str, why: Step, param: int = -1, path: str = "") -> None:
        """node must gain the parameter; its page comes through `param<path>`."""
        self.queue.append((node, why, param, path))

    def run(self) -> None:
        while self.queue:
            node, why, param, path = self.queue.popleft()
            if node in self.gains:
                continue
            if node in self.stopped:
                # a slot that gains forces its implementations, whatever stopped
                # them as callers (a kind-3 block_invalidate_folio in an aops
                # table must take the slot's parameter for the table to build)
                if why.why != "implements" or self.boundary(node, why) is not None:
                    continue
                del self.stopped[node]
            self.page_path[node] = path
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
                self.need(twin, Step(twin, "twin-of", file, line, fid), param, self.page_path[fid])
        for succ, _, _ in edges_out(self.g, fid, "binds"):
            self.need(succ, Step(succ, "implemented-by", file, line, fid), param, self.page_path[fid])
        for pred, _, edge in edges_in(self.g, fid, "call"):
            for site in sorted(edge["sites"]):
                d = self.site_decision(pred, site, fid)
                if d.kind == "pass-down":
                    self.need(pred, Step(pred, "calls", site[0], site[1], fid), d.param, d.path)

    def _slot(self, sid: str, why: Step, param: int) -> None:
        if sid in self.pruned:
            self.stopped[sid] = (self.pruned[sid].reason, why)
            return
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
                        self.need(other, Step(other, "same-type-as", *self.home(sid), sid), param, self.page_path[sid])
        for pred, kind, edge in edges_in(self.g, sid, "binds", "call-through-slot"):
            if kind == "binds":
                site = min(edge["sites"])
                self.need(pred, Step(pred, "implements", site[0], site[1], sid), param, self.page_path[sid])
                continue
            for site in sorted(edge["sites"]):
                if self._receiver_argument(site, pred) is not None:
                    continue  # the call names its mapping: M->a_ops->x(M, ...)
                d = self.site_decision(pred, site, sid)
                if d.kind == "pass-down":
                    self.need(pred, Step(pred, "calls-through", site[0], site[1], sid), d.param, d.path)

    def _receiver_argument(self, site: tuple, caller: str) -> str | None:
        """`M->a_ops->op(...)` passes M; so does `aops->op(...)` after `aops = M->a_ops`."""
        found = self._receiver(site, caller)
        if found is None or _READ_TEXT.search(found):
            return None  # `folio->mapping->a_ops->x(...)`: the field handed back, not a context
        if not self.in_scope(caller) and found in self.ctx.from_reads(caller):
            # `mapping = folio_mapping(folio)` then `mapping->a_ops->x(...)` in code
            # whose reads stay as they are (reclaim): the field handed back too
            return None
        return found

    def _receiver(self, site: tuple, caller: str) -> str | None:
        """M of a call `M->a_ops->op(...)` at site, as written (Context.call_receiver)."""
        call = self._call(site)
        return self.ctx.call_receiver(caller, call) if call is not None else None

    def _call(self, site: tuple) -> Call | None:
        ff = self.file_facts(site[0])
        if ff is None or site[2] >= len(ff.calls):
            return None
        return ff.calls[site[2]]

    # -- seeds and results -----------------------------------------------------
    def seed(self) -> int:
        """Decide every read; the reads that need the mapping from their
        callers start the worklist. Returns the reads left to run time."""
        runtime = 0
        for r in sorted(self.a.reads, key=lambda r: (r.file, r.line, r.col)):
            if r.kind not in self.pr.scope_kinds:
                runtime += 1
                continue
            if r.function_id is None:
                self.unresolved.append(Unresolved(r.function or "", r.file, r.line, "no-function", ()))
                continue
            key = (r.file, r.start)
            if key not in self._reads:  # (what a read needs does not change when the plan prunes)
                self._reads[key] = self._read_outcome(r)
            kept, d = self._reads[key]
            if kept is not None:
                self.kept.append(kept)
            if d is None:
                continue
            self.decisions[key] = d
            if d.kind == "pass-down":
                self.need(r.function_id, Step(r.function_id, "reads", r.file, r.line, r.expr), d.param, d.path)
        return runtime

    def _read_outcome(self, r: ReadRecord) -> tuple[Kept | None, Decision | None]:
        """What one kind-1 read is: kept as it is (and why), and/or decided."""
        fid = r.function_id or ""
        if r.purpose == "null-test":
            d = self._truncation_check(fid, r)
            if d is not None:
                return None, d  # the page's lookup mapping tells whether it is still there
        if r.purpose in ("null-test", "flag-test"):
            why = ("a NULL test: a protected page's field points at the record, never NULL"
                   if r.purpose == "null-test" else
                   "a flag test: the record keeps the low bits (anon, KSM, movable) of the word")
            return Kept(r.file, r.line, fid, r.expr, r.purpose, why), None
        if r.purpose == "identity" and self.pr.membership_page:
            return None, None  # a membership test needs no context (rewrites)
        debug = self.ctx.in_debug(fid, r.file, r.start)
        if debug:
            return Kept(r.file, r.line, fid, r.expr, "debug",
                        f"inside {debug}(): only reported, the page's own field will do"), None
        assertion = self.ctx.in_assertion(fid, r.file, r.start, r.end)
        if assertion.startswith("="):  # ASSERT(page->mapping): a NULL test
            return Kept(r.file, r.line, fid, r.expr, "null-test", f"the whole condition of {assertion[1:]}(): "
                        "a NULL test, and a protected page's field points at the record, never NULL"), None
        d = self.ctx.decide(fid, self.ctx.origin(fid, r.receiver_text), r.start)
        if assertion and d.kind in ("pass-down", "needs-human"):
            return Kept(r.file, r.line, fid, r.expr, "assertion",
                        f"inside {assertion}(): a condition checked only to catch bugs, "
                        f"with no mapping in scope; {d.evidence}", d.candidates), None
        if d.kind in ("needs-human", "never-protected"):
            return Kept(r.file, r.line, fid, r.expr, d.kind, d.evidence, d.candidates), d
        return None, d

    def prunable(self) -> dict[str, Pruned]:
        """The functions and slots the last run gave the parameter whose every
        changed call passes NULL or a never-protected mapping: the parameter
        would carry nothing. (A function bound to a slot, a twin and a slot of a
        slot group follow their slot or group: never pruned alone.)"""
        grouped = {s for g in self.pr.slot_groups for s in g}
        out: dict[str, Pruned] = {}
        for node in sorted(self.gains):
            if self.gains[node].why in ("implements", "same-type-as") or node in out:
                continue
            if self.g.nodes[node]["type"] == "function":
                # twins change together; a function bound to a slot follows it,
                # unless every binding is in an ops table of never-protected pages
                members = [m for m in self.twins(node) if m in self.gains]
                if any(edges_out(self.g, m, "binds") and not self.ctx.never_bindings(m) for m in members):
                    continue
                kinds: tuple[str, ...] = ("call",)
            elif node in grouped:
                continue
            else:
                members, kinds = [node], ("call-through-slot",)
            passed = [(site, pred, self.site_argument(pred, kind, site, m)) for m in members
                      for pred, kind, edge in edges_in(self.g, m, *kinds) for site in sorted(edge["sites"])
                      if self._call(site) is not None]
            # callers that could not say the mapping anyway (_passes_nothing)
            hows = {"needs-human" if how == "unresolved" and self._passes_nothing(site, pred, node)
                    else how for site, pred, (_, how, _) in passed}
            if passed and hows <= {*_PASSES_NOTHING, "never-protected"}:
                why = self._pruned(passed, "never-protected" in hows and hows <= {"never-protected", "debug"})
                out.update((m, why) for m in members)
        return out

    def _passes_nothing(self, site: tuple, pred: str, target: str) -> bool:
        """An "unresolved" call whose caller could not say the mapping anyway:
        a caller stopped (pruned before, or at a boundary: exported, a macro's
        signature, kind 2: it keeps its signature, so it has no mapping to
        pass), code the plan does not convert that cannot name the page's
        mapping, or a call through a slot whose receiver is the field read
        back (`mapping = folio_mapping(folio); mapping->a_ops->x(folio)`)."""
        return self._stopped_for_good(pred) or self._raw_receiver(site, pred) or \
            self.site_decision(pred, site, target).kind == "needs-human"

    def _stopped_for_good(self, node: str) -> bool:
        return node in self.stopped and self.stopped[node][0].split(":", 1)[0] in _NEVER_PASSES

    def _raw_receiver(self, site: tuple, caller: str) -> bool:
        found = self._receiver(site, caller)
        return found is not None and found in self.ctx.from_reads(caller)

    def _pruned(self, passed: list, never: bool) -> Pruned:
        (site, pred, _), n = passed[0], len(passed)
        said = "; ".join(f"{p} at {s[0]}:{s[1]}: {how}, {ev[:120]}" for s, p, (_, how, ev) in passed[:3])
        more = f" (and {n - 3} more)" if n > 3 else ""
        if never:
            return Pruned("never-protected", f"every call hands it a page that is never protected: {said}{more}",
                          (site[0], site[1], pred))
        cands = sorted({x for s, p, (_, how, _) in passed if how == "needs-human"
                        for x in (f"{c.expr} ({c.evidence})" for c in self.ctx.candidates(p))})
        return Pruned("no-context", f"no caller can say its mapping, every call passes "
                      f"{self.pr.unresolved_argument}: {said}{more}", (site[0], site[1], pred), tuple(cands))

    def _truncation_check(self, fid: str, r: ReadRecord) -> Decision | None:
        """`if (!folio->mapping)` after the function looked the folio up in a
        mapping and locked it: the truncation check. A protected page's field
        is never NULL, so only the mapping it was looked up in can say whether
        the page is gone from it: the read takes the helper with that mapping
        (which answers NULL for a mapping the page left), not kept."""
        locks = self.pr.page_locks
        page = strip(r.receiver_text, self.pr.page_converters)
        if not locks or not any(c.callee in locks and c.start < r.start and c.args and
                                strip(c.args[0], self.pr.page_converters) == page for c in self.ctx.calls(fid)):
            return None
        d = self.ctx.decide(fid, self.ctx.origin(fid, r.receiver_text), r.start)
        if d.kind != "context" or d.how != "lookup":
            return None
        return Decision(d.kind, d.expr, evidence=f"the truncation check after locking: {d.evidence}", how=d.how)

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
        if d.kind == "needs-human" and not self.in_scope(pred):
            # reclaim, migration, the block layer: code the plan does not
            # convert, covered at run time (its kind), not a question for a human
            kind, _ = self.rules.kind_of(self.home(pred)[0], self.g.nodes[pred]["name"])
            return self.pr.unresolved_argument, "unresolved", f"{d.evidence}; the caller is kind-{kind} code"
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
            if reason.split(":", 1)[0] == "never-protected":
                continue  # its reads are kept (pruned_reads): nothing is unresolved
            if reason.startswith("no-context:"):  # an implementation of a pruned slot
                slot = reason.split(":", 1)[1]
                at = self.why_pruned(node, slot).first
                reason, chain = "no-context", (Step(node, "bound-to", file, line, slot),
                                               Step(slot, "callers-pass-nothing", *at), *chain)
            elif reason == "no-context":
                chain = (Step(node, "callers-pass-nothing", *self.pruned[node].first), *chain)
            elif reason.startswith("slot-boundary:"):
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
                    if site.cast:  # bound through a cast that hides the changed signature
                        unresolved.append(Unresolved(
                            pred, site[0], site[1], "cast",
                            (Step.through_cast(pred, site.path, site.line, site.cast, node),
                             *self.chain(node))))
        unresolved.sort(key=lambda u: (u.reason, u.file, u.line, u.function))
        call_sites = tuple(self.call_sites()) if sites else ()
        human = tuple(Kept(c.file, c.line, c.caller, c.call, "needs-human", c.evidence,
                           self._site_candidates(c)) for c in call_sites if c.how == "needs-human")
        kept = tuple(sorted([*self.kept, *self.pruned_reads()], key=lambda k: (k.file, k.line, k.expr)))
        return Plan(self.rules.name, tuple(functions), tuple(slots), call_sites,
                    tuple(self.rewrites()) if sites else (), tuple(unresolved), runtime, parsed, kept, human)

    def why_pruned(self, node: str, slot: str = "") -> Pruned:
        """node's own pruning, or that of the slot it is bound to (a slot frozen
        because it shares an implementation with a pruned one: that one's)."""
        if not slot:
            return self.pruned[node]
        return self.pruned[slot] if slot in self.pruned else self.pruned[self.frozen[slot][1]]

    def pruned_reads(self) -> list[Kept]:
        """The reads that needed the mapping from callers that cannot say it:
        kept, with the reason their function (or its slot) was pruned."""
        out = []
        for r in self.a.reads:
            d = self.decisions.get((r.file, r.start))
            stop = self.stopped.get(r.function_id or "")
            if d is None or d.kind != "pass-down" or stop is None:
                continue
            reason, _, slot = stop[0].partition(":")
            if reason in _PRUNE_REASONS:
                why = self.why_pruned(r.function_id, slot)
                out.append(Kept(r.file, r.line, r.function_id, r.expr, reason,
                                f"{d.evidence}; {'its slot ' + slot + ': ' if slot else ''}{why.evidence}",
                                why.candidates))
        return out

    def _macro_call_step(self, node: str) -> Step:
        """Where a macro's body calls node (precise mode), the first such call."""
        members = self.twins(node) if self.g.nodes[node]["type"] == "function" else [node]
        pred, site = min((p, s) for m in members for p, _, e in edges_in(self.g, m, "macro-call")
                         for s in e["sites"])
        ff = self.file_facts(site[0])
        macro = ff.macro_calls[site.index].macro if ff is not None and site.index < len(ff.macro_calls) else "?"
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
    fp, runtime = _converged(analysis, rules, facts, unseen)
    return fp.finish(runtime, parsed_on_demand, sites)


def _converged(analysis: Analysis, rules: Rules, facts, unseen=None) -> tuple[_Fixpoint, int]:
    fp = _Fixpoint(analysis, rules, facts, unseen)
    runtime = fp.seed()
    fp.run()
    while pruned := fp.prunable():
        # functions no caller can pass a mapping to keep their signature, and so
        # may the callers that gained the parameter only for them: again
        fp.restart(pruned)
        runtime = fp.seed()
        fp.run()
    return fp, runtime


def plan_with_rounds(analysis_of: Callable[[], Analysis], rules: Rules, facts,
                     parse_more: Callable[[set[str], set[str]], bool], rounds: int = 12) -> Plan:
    """The fixpoint without call sites, again after each round in which
    parse_more(words, fixed) -- parse the deferred files that mention a name
    the plan changes, or one it pruned, and patch them into the analysis --
    found something. One loop for plan (files on disk) and review (a
    revision's files); analysis_of() is the analysis as it stands after the
    last round. The names pruned are searched too: a caller in a file not
    parsed yet may pass what every parsed caller cannot, so the plan must not
    depend on which files an earlier command happened to parse."""
    for done in range(rounds + 1):
        fp, runtime = _converged(analysis_of(), rules, facts)
        plan = fp.finish(runtime, (), sites=False)
        if done == rounds:
            break
        words, fixed = changed_names(plan, analysis_of())
        for node in fp.pruned:
            d = fp.g.nodes[node]
            if d["type"] == "function":
                words.add(d["name"])
            else:
                fixed |= {f"->{d['name']}", f".{d['name']}"}
        if not parse_more(words, fixed):
            break
    return plan
