"""What a range adds or breaks: the reads it adds, the signatures and
bindings it changes, and its hunks against what the plan emits."""

from __future__ import annotations

import dataclasses
import difflib
import os
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from itertools import combinations
from pathlib import Path

from .. import check as checkmod
from .. import emit as emitmod
from .. import graph as graphmod
from .. import index as indexmod
from .. import plan as planmod
from .. import rules as rulesmod
from .. import types as ctypes
from .. import workspace
from ..emit.wrap import rewrap_edited
from ..errors import InputError
from ..facts import FileFacts
from ..graph import Analysis, ReadRecord, edges_in, edges_out
from ..plan import Plan, Step
from ..rules import Rules
from .git import Git
from .records import MAX_SUBSET_GROUPS, Finding, Hunk, ReadVerdict, Related, Review, ReviewError
from .state import ReviewContext, RevisionState, is_source


# -- diffs ---------------------------------------------------------------------------------
def _lines(data: bytes | None) -> list[bytes]:
    return data.splitlines(keepends=True) if data else []


def _opcodes(a: list[bytes], b: list[bytes]) -> list[tuple[str, int, int, int, int]]:
    return [op for op in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes() if op[0] != "equal"]


def _head_line(blocks, line: int, default: int) -> int:
    """The head line that base line `line` became in these change blocks."""
    for _, b1, b2, h1, h2 in blocks:
        if b1 < line <= b2:
            return h1 + min(line - 1 - b1, max(h2 - h1 - 1, 0)) + 1
    return default


def _has_mapping(params, param_type: str) -> bool:
    want = ctypes.normalise(param_type)
    return any(ctypes.normalise(t) == want for _, t in params)


def _signatures(facts: dict[str, FileFacts]) -> tuple[dict[str, tuple], dict[str, tuple]]:
    fns: dict[str, tuple] = {}
    slots: dict[str, tuple] = {}
    for path, ff in facts.items():
        for fn in ff.functions:
            if fn.definition:
                fns.setdefault(graphmod.function_id(path, fn),
                               tuple((p.name, ctypes.normalise(p.type)) for p in fn.params))
        for s in ff.slots:
            slots.setdefault(graphmod.slot_id(s), tuple((p.name, ctypes.normalise(p.type)) for p in s.params))
    return fns, slots


# -- the review ----------------------------------------------------------------------------
def review(path: str | Path, base: str, head: str | None = None, db: str | Path = ".mappingpass",
           rules_path: str | None = None, series: str = "auto", jobs: int = 0,
           log: Callable[[str], None] | None = None,
           progress: Callable[[int, int], None] | None = None) -> Review:
    """Review the range base..head of the git tree at path (see the module doc).
    log: a line per phase; progress: (done, total) of a cold index's files."""
    started = time.monotonic()
    log = log or (lambda _msg: None)
    given = Path(path)
    if not given.exists():
        raise ReviewError(f"{given}: no such directory; give the top of a kernel tree in a git repository")
    if not given.is_dir():
        raise ReviewError(f"{given}: not a directory; give the top of a kernel tree in a git repository")
    if series not in ("auto", "yes", "no"):
        raise ReviewError(f"--series {series}: say auto, yes or no")
    root = indexmod.find_tree_top(given)
    git = Git(root)
    base_sha = git.commit(base)
    head_sha = git.commit(head or "HEAD")
    store, rules = _open_index(Path(db), root, rules_path, jobs, log, progress)
    timing: dict[str, float] = {"open": time.monotonic() - started}
    ctx = None
    try:
        ctx = ReviewContext(root, git, store, rules, jobs, log)
        try:
            reviewer = _Reviewer(ctx, base_sha, head_sha, series)
            result = reviewer.run()
            ctx.maybe_anchor({base_sha: reviewer.basest.data, head_sha: reviewer.headst.data})
        except indexmod.StoreError as exc:  # grep failed in the tree
            raise ReviewError(str(exc)) from None
        timing.update(ctx.timing)
        timing["total"] = time.monotonic() - started
        stats = {**dict(ctx.stats), "anchored": ctx.anchor() is not None,
                 "seconds": {k: round(v, 3) for k, v in sorted(timing.items())}}
        return dataclasses.replace(result, root=str(root), git_top=git.top, prefix=git.prefix, stats=stats)
    finally:
        if ctx is not None:
            ctx.cache.close()
        store.close()


def analysis_at(path: str | Path, rev: str, db: str | Path = ".mappingpass", rules_path: str | None = None,
                full: bool = False) -> Analysis:
    """The analysis of the tree at a revision, as review computes it: the
    index's cached graph patched with the files that differ (or, full=True,
    graph.build over the same facts)."""
    root = indexmod.find_tree_top(Path(path))
    git = Git(root)
    sha = git.commit(rev)
    store, rules = _open_index(Path(db), root, rules_path, 0, lambda _msg: None)
    try:
        ctx = ReviewContext(root, git, store, rules, 0, lambda _msg: None)
        st = ctx.state(sha, "at", set())
        if full:
            ctx.rebuild(st)
        else:
            ctx.build(st)
        ctx.cache.close()
        return st.analysis
    finally:
        store.close()


def _open_index(db: Path, root: Path, rules_path: str | None, jobs: int,
                log: Callable[[str], None],
                progress: Callable[[int, int], None] | None = None) -> tuple[indexmod.Store, Rules]:
    fresh = not (db / "index.sqlite").exists()
    try:
        store = indexmod.Store(db, create=True)
    except indexmod.StoreError as exc:
        raise ReviewError(str(exc)) from None
    try:
        rules = rulesmod.load(rules_path or store.get_meta("rules_path"))
        rules = rules.with_accessors(indexmod.stored_accessors(store))  # as the facts were made
    except rulesmod.RulesError as exc:
        store.close()
        raise ReviewError(str(exc)) from None
    if rules.plan is None:
        store.close()
        raise ReviewError(f"{rules.path}: no [plan] section; review needs the plan's rules")
    if fresh or store.get_meta("root") is None or not store.state_counts():
        # a cold index: analyze the work tree as `mappingpass analyze` does
        log(f"review: no index in {db}; analyzing {root} first")
        indexmod.index_tree(root, [""], rules, store, jobs or os.cpu_count() or 1, progress=progress)
        store.set_meta("root", str(root.resolve()))
        store.set_meta("rules_path", str(Path(rules.path).resolve()))
        store.commit()
        try:
            log("review: building the graph of the new index")
            rules, _ = workspace.build_analysis(root, rules, store, True, log)
        except InputError as exc:
            store.close()
            raise ReviewError(str(exc)) from None
    return store, rules


class _Reviewer:
    def __init__(self, ctx: ReviewContext, base: str, head: str, series: str) -> None:
        self.ctx = ctx
        self.rules = ctx.rules
        self.pr = ctx.rules.plan
        self.base = base
        self.head = head
        self.series_mode = series
        self.findings: list[Finding] = []
        self.seen: set[tuple] = set()

    def add(self, f: Finding) -> None:
        ident = (f.rule, f.file, f.line, f.key or f.message)
        if ident not in self.seen:
            self.seen.add(ident)
            self.findings.append(f)

    # -- driver ------------------------------------------------------------------
    def run(self) -> Review:
        ctx = self.ctx
        changes = ctx.git.changed(self.base, self.head)
        self.range = sorted({p for _, p in changes if is_source(p, self.rules.skip_dirs)})
        other = len({p for _, p in changes} - set(self.range))
        range_set = set(self.range)
        self.headst = ctx.state(self.head, "head", range_set)
        self.basest = ctx.state(self.base, "base", range_set)
        self.added: dict[str, set[int]] = {}
        self.removed: dict[str, set[int]] = {}
        for p in self.range:
            b, h = _lines(self.basest.data.get(p)), _lines(self.headst.data.get(p))
            ops = _opcodes(b, h)
            self.added[p] = {j + 1 for _, _, _, j1, j2 in ops for j in range(j1, j2)}
            self.removed[p] = {i + 1 for _, i1, i2, _, _ in ops for i in range(i1, i2)}
        base_range = {p: f for p in self.range if (f := self.basest.files.get(p)) is not None}
        head_range = {p: f for p in self.range if (f := self.headst.files.get(p)) is not None}
        bf, bs = _signatures(base_range)
        hf, hs = _signatures(head_range)
        self.changed_fns = {k for k in hf if bf.get(k) != hf[k]}
        self.changed_slots = {k for k in hs if bs.get(k) != hs[k]}
        self.lost = {k for k in bf if k in hf and _has_mapping(bf[k], self.pr.param_type)
                     and not _has_mapping(hf[k], self.pr.param_type)}
        self.lost |= {k for k in bs if k in hs and _has_mapping(bs[k], self.pr.param_type)
                      and not _has_mapping(hs[k], self.pr.param_type)}
        # what existed and gained the parameter (a new function that takes a mapping gained nothing)
        self.gained_fns = {k for k in self.changed_fns if k in bf and _has_mapping(hf[k], self.pr.param_type)
                           and not _has_mapping(bf[k], self.pr.param_type)}
        self.gained_slots = {k for k in self.changed_slots if k in bs and _has_mapping(hs[k], self.pr.param_type)
                             and not _has_mapping(bs[k], self.pr.param_type)}

        ctx.build(self.headst)
        if self.changed_fns or self.changed_slots:
            # callers and implementations of what changed, in files not parsed up front
            # (only what existed before: unchanged files cannot call what is new)
            words = {k.rsplit("::", 1)[-1] for k in self.changed_fns if k in bf}
            words |= {k.split(":", 1)[1] for k in self.changed_slots if k.startswith("typedef:") and k in bs}
            fixed = {f"{sep}{k.rsplit('.', 1)[1]}" for k in self.changed_slots if k.startswith("member:")
                     and k in bs for sep in ("->", ".")}
            started = time.monotonic()
            ctx.on_demand(self.headst, words, fixed, set())
            ctx.timing["on_demand_head"] = time.monotonic() - started

        started = time.monotonic()
        ctx.log(f"review: {len(self.range)} changed files; the reads and signatures they change")
        self.reads()
        self.signatures()
        ctx.timing["findings"] = time.monotonic() - started
        helpers = (self.pr.helper_page.encode(), self.pr.helper_folio.encode())
        is_series = self.series_mode == "yes" or (self.series_mode == "auto" and (
            bool(self.gained_fns or self.gained_slots) or any(
                any(h in line for h in helpers)
                for p in self.range for j, line in enumerate(_lines(self.headst.data.get(p)), 1)
                if j in self.added[p])))
        hunks: list[Hunk] = []
        outside: tuple[str, ...] = ()
        left_out: tuple[tuple[str, int], ...] = ()
        if is_series:
            started = time.monotonic()
            ctx.log("review: the base's plan, each hunk compared with what it emits")
            hunks, outside, left_out = self.series()
            ctx.timing["series"] = time.monotonic() - started
        findings = sorted(self.findings, key=lambda f: (f.file, f.line, f.col, f.rule, f.message))
        return Review("", "", "", self.base, self.head, tuple(self.range), other, tuple(findings),
                      is_series, tuple(hunks), outside, left_out)

    # -- reads ---------------------------------------------------------------------
    def reads(self) -> None:
        a = self.headst.analysis
        scope = self.pr.scope_kinds
        gone = Counter()
        for p in self.range:
            ff = self.basest.files.get(p)
            if ff is not None:
                gone.update((r.function, r.expr) for r in ff.reads if r.line in self.removed[p])
        helpers = {self.pr.helper_page, self.pr.helper_folio, self.pr.membership_page, self.pr.membership_folio}
        touched = [r for r in a.reads if r.file in self.added and r.line in self.added[r.file]
                   and r.function not in helpers]
        new: list[ReadRecord] = []
        for r in touched:
            if gone[(r.function, r.expr)] > 0:
                gone[(r.function, r.expr)] -= 1  # moved or re-indented, not new
            else:
                new.append(r)
        # a function that gained the parameter in this range must use it for every read
        stale = [r for r in a.reads if r.function_id in self.gained_fns and r.kind in scope and r not in new]
        self.head_reads_touched = touched
        for r in new:
            if r.kind in scope:
                continue
            where = f"{r.file}:{r.line}"
            if r.kind == "other":
                self.add(Finding("MP104", "note", r.file, r.line, r.col,
                                 f"new read `{r.expr}` in {r.function or 'file scope'}: no kind rule matches "
                                 f"{r.file}; add one to {Path(self.rules.path).name}",
                                 r.function_id, f"{r.function_id}|{r.expr}"))
            else:
                cover = checkmod.RUNTIME_COVER.get(r.kind, "")
                self.add(Finding("MP103", "note", r.file, r.line, r.col,
                                 f"new kind-{r.kind} read `{r.expr}` in {r.function} ({r.why}); handled at run "
                                 f"time: {cover}", r.function_id, f"{r.function_id}|{r.expr}",
                                 verdict="runtime", related=(Related(r.file, r.line, where),)))
        target = [r for r in new if r.kind in scope] + stale
        # the head's reads the series hunks touch get verdicts too
        extra = [r for r in touched if r.kind in scope and r not in target]
        self.head_verdicts: dict[tuple[str, int], checkmod.Verdict] = {}
        if not target and not extra:
            return
        plan = self._plan(self.headst, lambda: dataclasses.replace(self.headst.analysis, reads=target + extra))
        sub = dataclasses.replace(self.headst.analysis, reads=target + extra)
        result = checkmod.check(plan, sub, self.rules, self._check_facts(self.headst, plan, sub.reads))
        verdicts = {(v.file, v.line, v.expr): v for v in result.verdicts}
        for r in sub.reads:
            v = verdicts.get((r.file, r.line, r.expr))
            if v is not None:
                self.head_verdicts[(r.file, r.start)] = v
        gains = {f.id: f for f in plan.functions}
        stopped = {u.function: u for u in plan.unresolved}
        rewrites = {(w.file, w.start): w for w in plan.rewrites}
        kept = {(k.file, k.line, k.expr): k for k in plan.kept if k.reason != "needs-human"}
        for r in target:
            if (r.file, r.line, r.expr) in kept:
                continue  # a NULL or flag test, a never-protected page: nothing to change
            v = verdicts.get((r.file, r.line, r.expr))
            verdict = v.verdict if v else ""
            w = rewrites.get((r.file, r.cmp_start if r.purpose == "identity" else r.start))
            if w is not None and w.purpose == "identity":
                fixable = w.from_.startswith(r.expr) and "\n" not in w.from_
                self.add(Finding(
                    "MP101", "error", r.file, r.line, r.col,
                    f"`{w.from_}` is an identity test: for a write protected page it is never true; "
                    f"test membership with `{w.to}`", r.function_id, f"{r.function_id}|{r.expr}",
                    verdict=verdict, fix=w.to if fixable else "",
                    end_col=r.col + len(w.from_) if fixable else 0))
                continue
            why = "the function gained the mapping in this range; " if r in stale else ""
            if w is not None and r.function_id not in gains:
                self.add(Finding(
                    "MP101", "error", r.file, r.line, r.col,
                    f"{why}{r.function} has the mapping (`{w.context}`): read it with "
                    f"`{w.to}` instead of `{r.expr}`",
                    r.function_id, f"{r.function_id}|{r.expr}", verdict=verdict,
                    fix=w.to if "\n" not in r.expr else "",
                    end_col=r.col + len(r.expr) if "\n" not in r.expr else 0))
                continue
            chain = self._chain(plan, r, gains, stopped)
            fid = r.function_id
            if fid is None:
                msg = f"`{r.expr}` is read outside a function; the mapping cannot be passed to it"
            elif fid in stopped:
                u = stopped[fid]
                msg = (f"{r.function} cannot supply the mapping and cannot gain it: it is a boundary "
                       f"({u.reason}); `{r.expr}` stays as it is")
            else:
                n = sum(1 for f in gains.values() if f.reason and f.reason[-1].node == fid)
                msg = (f"{r.function} cannot supply the mapping for `{r.expr}`: it would have to be passed "
                       f"down ({n} function{'s' if n != 1 else ''} would gain the parameter)")
            if v is not None and v.verdict == "unresolvable" and v.witness is not None:
                msg += f"; check: unresolvable ({v.witness.error})"
            elif v is not None and v.verdict == "resolvable":
                msg += "; check: every caller can supply it"
            level = "error" if fid is None or fid in stopped or verdict == "unresolvable" else "warning"
            self.add(Finding("MP102", level, r.file, r.line, r.col, why + msg, fid,
                             f"{fid}|{r.expr}", chain, verdict=verdict))

    def _chain(self, plan: Plan, r: ReadRecord, gains, stopped) -> tuple[Step, ...]:
        """Where the mapping would come from (or where it cannot), down to the read."""
        fid = r.function_id
        for u in plan.unresolved:
            if u.chain and u.chain[-1].why == "reads" and u.chain[-1].node == fid:
                return (Step(u.function, "stops the passdown:", u.file, u.line, u.reason), *u.chain)
        for c in plan.call_sites:
            f = gains.get(c.callee)
            if c.how in ("provider", "receiver", "lookup", "carrier") and f is not None and f.reason \
                    and f.reason[-1].node == fid:
                return (Step(c.caller, "passes", c.file, c.line, f"{c.argument} to {c.callee}"), *f.reason)
        if fid in gains:
            return gains[fid].reason
        return (Step(fid or "(file scope)", "reads", r.file, r.line, r.expr),)

    def _check_facts(self, st: RevisionState, plan: Plan, reads: list[ReadRecord]) -> dict[str, FileFacts]:
        """The files check needs: those with calls into the functions on the paths
        (for the callers that pass NULL), not the whole tree."""
        g = st.analysis.graph
        nodes = {f.id for f in plan.functions} | {r.function_id for r in reads if r.function_id}
        # check follows a page up through its callers (checkmod.MAX_DEPTH calls):
        # the bodies and call sites of every function on the way
        files: set[str] = set()
        frontier = {n for n in nodes if n in g}
        seen = set(frontier)
        for _ in range(checkmod.MAX_DEPTH):
            up = set()
            for n in frontier:
                files |= {p for p, _ in g.nodes[n].get("bodies", ())}
                for pred, _, sites in graphmod.callers_of(g, n):
                    files |= {s[0] for s in sites}
                    up.add(pred)
            frontier = up - seen
            seen |= up
            if not frontier:
                break
        self.ctx.preload(files)
        return st.facts_dict(files)

    # -- signatures ------------------------------------------------------------------
    def signatures(self) -> None:
        st = self.headst
        g = st.analysis.graph
        pt = self.pr.param_type
        binds: set[tuple[str, str, tuple]] = set()
        for sid in self.changed_slots:
            if sid in g:
                for fn, _, data in edges_in(g, sid, "binds"):
                    binds |= {(fn, sid, s) for s in data["sites"]}
        for fid in self.changed_fns:
            if fid in g:
                for sid, _, data in edges_out(g, fid, "binds"):
                    binds |= {(fid, sid, s) for s in data["sites"]}
        calls: set[tuple[str, str, tuple]] = set()
        for t in self.changed_fns | self.changed_slots:
            if t in g:
                for caller, _, data in edges_in(g, t, "call", "call-through-slot"):
                    calls |= {(caller, t, s) for s in data["sites"]}
        # new bindings and calls on the range's changed lines, whatever they bind or call
        for p in self.range:
            ff = st.files.get(p)
            if ff is None:
                continue
            lines = self.added[p]
            names = {b.function for b in ff.bindings if b.line in lines}
            names |= {graphmod.function_argument(a)[0] for c in ff.calls if c.line in lines for a in c.args}
            names |= {c.caller for c in ff.calls if c.line in lines and c.caller}
            for name in names - {None}:
                for fid in (f"{p}::{name}", name):
                    if fid not in g or g.nodes[fid]["type"] != "function":
                        continue
                    for dst, kind, data in edges_out(g, fid, "binds", "call", "call-through-slot"):
                        for s in data["sites"]:
                            if s[0] == p and s[1] in lines:
                                (binds if kind == "binds" else calls).add((fid, dst, s))
        protos: set[tuple[str, str, int]] = set()
        for fid in self.changed_fns:
            if fid in g:
                protos |= {(fid, path, line) for path, line in g.nodes[fid]["protos"]}
        for p in self.range:
            ff = st.files.get(p)
            for fn in (ff.functions if ff is not None else ()):
                if not fn.definition and fn.line in self.added[p]:
                    for fid in (f"{p}::{fn.name}", fn.name):
                        if fid in g and g.nodes[fid]["type"] == "function":
                            protos.add((fid, p, fn.line))
                            break
        for fid, path, line in sorted(protos):
            self._prototype(g, fid, path, line, pt)
        for fn, sid, site in sorted(binds):
            self._binding(g, fn, sid, site, pt)
        for caller, target, site in sorted(calls):
            self._call(g, caller, target, site, pt)

    def _prototype(self, g, fid: str, path: str, line: int, pt: str) -> None:
        d = g.nodes[fid]
        ff = self.headst.facts(path)
        proto = next((f for f in (ff.functions if ff is not None else ())
                      if not f.definition and f.name == d["name"] and f.line == line), None)
        if proto is None or (d.get("via_macro") and not d["params"]):
            return
        f_has = _has_mapping(d["params"], pt)
        p_has = _has_mapping([(x.name, x.type) for x in proto.params], pt)
        if f_has == p_has:
            return
        body = graphmod.home(g, fid)
        self.add(Finding("MP204", "error", path, line, 0,
                         f"the prototype of {d['name']} {'lacks' if f_has else 'has'} `{pt}`, which its definition "
                         f"({body[0]}:{body[1]}) {'takes' if f_has else 'does not take'}",
                         fid, f"{fid}|proto|{path}", related=(Related(body[0], body[1], f"{d['name']} defined"),)))

    def _binding(self, g, fn: str, sid: str, site: tuple, pt: str) -> None:
        sd, fd = g.nodes[sid], g.nodes[fn]
        if sd["slot_kind"] == "param":
            return  # an anonymous function-pointer parameter: its signature is the owner's text
        s_has, f_has = _has_mapping(sd["params"], pt), _has_mapping(fd["params"], pt)
        macro = fd.get("via_macro") and not fd["params"]
        cast = site.cast
        fpath, fline = graphmod.home(g, fn)
        slot_at = graphmod.home(g, sid)
        related = (Related(site[0], site[1], f"{fd['name']} bound to {sid} ({site[2]})"),
                   Related(slot_at[0], slot_at[1], f"{sid} declared"))
        changed = "changed in this range" if (sid in self.changed_slots or fn in self.changed_fns) else "bound here"
        if cast:
            level = "error" if s_has != f_has and not macro else "warning"
            if macro:
                detail = ""
            elif s_has == f_has:
                detail = (f"; both {'take' if s_has else 'lack'} the mapping: check the parameters behind "
                          "the cast by hand")
            else:
                detail = (f"; {sid} {'takes' if s_has else 'does not take'} the mapping but {fd['name']} "
                          f"{'does not' if s_has else 'does'}")
            self.add(Finding("MP203", level, site[0], site[1], 0,
                             f"{fd['name']} is bound to {sid} through the cast ({cast}), which hides the "
                             f"signature {changed}{detail}", fn, f"{fn}|{sid}|cast", related=related))
            return
        if macro:
            if s_has and (sid in self.gained_slots or fn in self.changed_fns):
                self.add(Finding("MP201", "warning", fpath, fline, 0,
                                 f"{fd['name']} is bound to {sid}, which gained `{pt}` in this range, but its "
                                 f"signature is written by the macro {fd['via_macro']}: change the macro",
                                 fn, f"{fn}|{sid}", related=related))
            return
        if s_has == f_has:
            return
        if s_has:
            msg = (f"{fd['name']} is bound to {sid}, which takes `{pt}`"
                   f"{' since this range' if sid in self.gained_slots else ''}, but {fd['name']} does not")
        else:
            msg = (f"{fd['name']} takes `{pt}`{' since this range' if fn in self.gained_fns else ''} but is bound "
                   f"to {sid}, which does not")
        self.add(Finding("MP201", "error", fpath, fline, 0, msg, fn, f"{fn}|{sid}", related=related))

    def _call(self, g, caller: str, target: str, site: tuple, pt: str) -> None:
        td = g.nodes[target]
        if td["type"] == "slot" and td["slot_kind"] == "param":
            return
        if td["type"] == "function" and td.get("via_macro") and not td["params"]:
            return
        params = td["params"]
        if any(t.strip() == "..." for _, t in params):
            return
        ff = self.headst.facts(site[0])
        if ff is None or site[2] >= len(ff.calls):
            return
        call = ff.calls[site[2]]
        n, nargs = len(params), len(call.args)
        name = td["name"]
        via = f" through {target}" if td["type"] == "slot" else ""
        related = (Related(*graphmod.home(g, target), f"{target} declared"),)
        if _has_mapping(params, pt) and nargs == n - 1:
            supply = self._supply(caller, call)
            hint = f"; {caller} can pass `{supply}`" if supply else ""
            since = " since this range" if target in self.gained_fns | self.gained_slots else ""
            self.add(Finding("MP202", "error", site[0], call.line, call.col,
                             f"{caller} calls {name}{via} with {nargs} arguments: it does not pass the mapping "
                             f"{name} takes{since}{hint}", caller, f"{caller}|{target}|{call.fn_text or call.callee}",
                             related=related))
        elif target in self.lost and nargs == n + 1:
            self.add(Finding("MP202", "error", site[0], call.line, call.col,
                             f"{caller} calls {name}{via} with {nargs} arguments: it still passes the mapping, "
                             f"which {name} no longer takes", caller,
                             f"{caller}|{target}|{call.fn_text or call.callee}", related=related))

    def _supply(self, caller: str, call) -> str | None:
        """What the plan would pass at this call (plan's own Context): the
        mapping whose operations are called, else the caller's best candidate."""
        st = self.headst
        if getattr(self, "_head_ctx", None) is None:
            self._head_ctx = planmod.Context(st.analysis.graph, st.analysis.types, self.pr, st.facts)
        found = self._head_ctx.call_receiver(caller, call)
        if found is not None:
            return found
        cands = [c for c in self._head_ctx.candidates(caller) if not c.never]
        return cands[0].expr if cands else None

    # -- the series ----------------------------------------------------------------------
    def series(self) -> tuple[list[Hunk], tuple[str, ...], tuple[tuple[str, int], ...]]:
        ctx = self.ctx
        st = self.basest
        plan = ctx.load_base(st)
        if plan is None:
            ctx.build(st)
            plan = self._plan(st, lambda: st.analysis)
            ctx.save_base(st, plan)
        helper = self._helper_home(plan)
        expected = self._expected_edits(plan, helper)
        plan_files = set(plan.files())
        if helper is not None:
            plan_files.add(helper.header)
        outside = tuple(sorted(p for p in plan_files if p not in set(self.range)
                               and (ctx.root / p).is_file()))
        # verdicts of the base reads the hunks replace
        base_touched = [r for r in st.analysis.reads if r.file in self.removed and r.line in self.removed[r.file]]
        base_verdicts: dict[tuple[str, int], checkmod.Verdict] = {}
        if base_touched:
            sub = dataclasses.replace(st.analysis, reads=base_touched)
            result = checkmod.check(plan, sub, self.rules, self._check_facts(st, plan, base_touched))
            by = {(v.file, v.line, v.expr): v for v in result.verdicts}
            for r in base_touched:
                if (r.file, r.line, r.expr) in by:
                    base_verdicts[(r.file, r.start)] = by[(r.file, r.line, r.expr)]
        hunks: list[Hunk] = []
        left_out: list[tuple[str, int]] = []
        for p in self.range:
            file_hunks, unused = self._file_hunks(p, expected.get(p, []), base_touched, base_verdicts)
            hunks += file_hunks
            if unused:
                left_out.append((p, unused))
        for h in hunks:
            if h.status == "needs-review":
                self.add(Finding("MP301", "warning", h.file, h.at, 0,
                                 f"hunk -{h.base_start},{h.base_lines} +{h.head_start},{h.head_lines} "
                                 f"departs from the plan: {h.detail}", None,
                                 f"hunk|{h.file}|{h.detail}"))
            else:
                bad = [v for v in h.reads if v.verdict == "unresolvable"]
                for v in bad:
                    self.add(Finding("MP302", "note", h.file, max(v.at, 1), 0,
                                     f"mechanical hunk rewrites `{v.expr}` in {v.function} ({v.file}:{v.line}), "
                                     f"which stays unresolvable: {v.why}", v.function,
                                     f"hunk-read|{v.function}|{v.expr}", verdict="unresolvable"))
        return hunks, outside, tuple(left_out)

    def _plan(self, st: RevisionState, analysis_of: Callable[[], Analysis]) -> Plan:
        """The plan of a revision as `mappingpass plan` computes it
        (workspace.compute_plan): rounds that parse the deferred files naming
        a changed name, then the functions that keep their signature because
        code the index cannot see (a macro body, the rest of a partly
        analysed tree) names them."""
        ctx = self.ctx
        searched: set[str] = set()
        memo = ctx.store.get_json("plan_searched", {})
        if memo.get("key") == ctx.key:
            searched |= set(memo.get("names", []))  # already parsed into the store by `plan`
        plan = planmod.plan_with_rounds(analysis_of, self.rules, st.facts,
                                        lambda words, fixed: bool(ctx.on_demand(st, words, fixed, searched)))
        names = {f.name for f in plan.functions}
        unseen = planmod.unseen_mentions(plan, analysis_of(), st.facts, ctx.texts_mentioning(st, names), self.rules)
        unseen |= ctx.outside_mentions(st, plan)
        return planmod.make_plan(analysis_of(), self.rules, st.facts, unseen=unseen)

    def _helper_home(self, plan: Plan) -> emitmod.HelperPlacement | None:
        data = {p: d for p, d in self.basest.data.items() if d is not None}
        try:
            return emitmod.place_helper(plan, self.basest.files, self.rules, self.ctx.root, data)
        except emitmod.EmitError:
            return None  # emit says why; the review still matches the rest

    def _expected_edits(self, plan: Plan, helper: emitmod.HelperPlacement | None) -> dict[str, list[emitmod.Edit]]:
        st = self.basest
        out: dict[str, list[emitmod.Edit]] = {}
        for p in self.range:
            data, ff = st.data.get(p), st.files.get(p)
            if data is None or ff is None:
                continue
            sub = dataclasses.replace(
                plan, call_sites=tuple(c for c in plan.call_sites if c.file == p),
                rewrites=tuple(r for r in plan.rewrites if r.file == p))
            try:
                edits = emitmod.edits_for(sub, {p: ff}, self.rules, {p: data}, self.ctx.root,
                                          helper).get(p, [])
            except (KeyError, StopIteration, IndexError, emitmod.EmitError):
                edits = []
            if helper is not None and helper.edit is not None and p == helper.header:
                edits = [helper.edit, *edits]
            out[p] = edits
        return out

    def _file_hunks(self, p: str, edits: list[emitmod.Edit], base_touched: list[ReadRecord],
                    base_verdicts: dict) -> tuple[list[Hunk], int]:
        bdata, hdata = self.basest.data.get(p), self.headst.data.get(p)
        a, b = _lines(bdata), _lines(hdata)
        offsets = [0]
        for line in a:
            offsets.append(offsets[-1] + len(line))
        expected_text = bdata
        if bdata is not None and edits:
            try:
                expected_text = emitmod.apply_wrapped(bdata, edits, p)
            except emitmod.EmitError:
                expected_text = bdata
        e_ops = {(i1, i2, tuple(_lines(expected_text)[j1:j2]))
                 for _, i1, i2, j1, j2 in _opcodes(a, _lines(expected_text))}
        matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
        used: set[int] = set()
        hunks: list[Hunk] = []
        for group in matcher.get_grouped_opcodes(3):
            blocks = [op for op in group if op[0] != "equal"]
            if not blocks:
                continue
            statuses, details = [], []
            for _, i1, i2, j1, j2 in blocks:
                ok, why, took = self._block(p, bdata, a, b, offsets, edits, e_ops, i1, i2, j1, j2)
                statuses.append(ok)
                details.append(why)
                used |= took
            i1, i2 = blocks[0][1], blocks[-1][2]
            j1, j2 = blocks[0][3], blocks[-1][4]
            # the header as a unified diff (context included) shows it
            ci1, ci2, cj1, cj2 = group[0][1], group[-1][2], group[0][3], group[-1][4]
            reads = [ReadVerdict("base", r.file, r.line, r.function, r.expr, r.kind,
                                 v.verdict if (v := base_verdicts.get((r.file, r.start))) else
                                 ("runtime" if r.kind not in self.pr.scope_kinds else ""),
                                 v.witness.error if v is not None and v.witness is not None else "",
                                 _head_line(blocks, r.line, j1 + 1))
                     for r in base_touched if r.file == p and i1 < r.line <= i2]
            reads += [ReadVerdict("head", r.file, r.line, r.function, r.expr, r.kind,
                                  v.verdict if (v := self.head_verdicts.get((r.file, r.start))) else
                                  ("runtime" if r.kind not in self.pr.scope_kinds else ""),
                                  v.witness.error if v is not None and v.witness is not None else "",
                                  r.line)
                      for r in self.head_reads_touched if r.file == p and j1 < r.line <= j2]
            status = "mechanical" if all(statuses) else "needs-review"
            detail = "; ".join(d for d, ok in zip(details, statuses, strict=True) if d and (not ok or
                                                                                         status == "mechanical"))
            hunks.append(Hunk(p, ci1 + 1 if ci2 > ci1 else ci1, ci2 - ci1, cj1 + 1 if cj2 > cj1 else cj1,
                              cj2 - cj1, status, detail, tuple(reads), max(j1 + 1 if j2 > j1 else j1, 1)))
        return hunks, len([e for k, e in enumerate(edits) if k not in used])

    def _block(self, p, bdata, a, b, offsets, edits, e_ops, i1, i2, j1, j2) -> tuple[bool, str, set[int]]:
        """Does the change of base lines [i1, i2) into head lines [j1, j2) match
        (a subset of) the plan's edits there?"""
        target = b"".join(b[j1:j2])
        lo, hi = offsets[i1], offsets[i2]
        inside = [k for k, e in enumerate(edits)
                  if lo <= e.start and e.end <= hi and (e.start < hi or i1 == i2 or e.start == e.end == hi
                                                          and i2 == len(a))]
        if bdata is not None and inside:
            region = bdata[lo:hi]
            groups: dict[str, list[int]] = defaultdict(list)
            for k in inside:
                owner = edits[k].owner or f"#{k}"
                groups[owner].append(k)
            keys = sorted(groups)
            sizes = range(len(keys), 0, -1) if len(keys) <= MAX_SUBSET_GROUPS else [len(keys)]
            for size in sizes:
                for subset in combinations(keys, size):
                    chosen = [k for key in subset for k in groups[key]]
                    shifted = [dataclasses.replace(edits[k], start=edits[k].start - lo, end=edits[k].end - lo)
                               for k in chosen]
                    try:
                        result = emitmod.apply_edits(region, shifted, p)
                    except emitmod.EmitError:
                        continue
                    # as emit writes it (changed lines re-wrapped), or as a human might
                    if target in (result, rewrap_edited(region, result, [(e.start, e.end, e.text) for e in shifted])):
                        whole = size == len(keys)
                        return True, ("" if whole else
                                      f"part of the plan's edits here ({', '.join(subset)})"), set(chosen)
        if (i1, i2, tuple(b[j1:j2])) in e_ops:
            return True, "", set(inside)
        if not inside:
            what = "the plan changes nothing here"
        else:
            want = emitmod.apply_wrapped(bdata[lo:hi], [dataclasses.replace(edits[k], start=edits[k].start - lo,
                                                                          end=edits[k].end - lo)
                                                      for k in inside], p) if bdata is not None else b""
            first = want.decode("utf-8", "replace").strip().splitlines()
            what = f"the plan writes `{first[0].strip()}`" if first else "the plan deletes these lines"
        where = f"line {j1 + 1}" if j2 - j1 <= 1 else f"lines {j1 + 1}-{j2}"
        return False, f"{where}: {what}", set()
