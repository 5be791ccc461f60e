"""The plan stage's question: through which mapping was this page reached,
and which expression in scope denotes it?

For a function and a page expression in it, `Context.origin` says where the
page comes from inside the function:

* ``parameter``: one of the function's parameters (directly, or through
  locals: `page = bh->b_page`) -- the mapping must come from the caller;
* ``lookup``: a page-cache lookup on a mapping (`filemap_get_folio(M, ...)`,
  a batch filled by `filemap_get_folios(M, ..., &fbatch)`, or a function of
  the tree that returns such a page: its *summary*), with the expression M;
* ``carrier``: a structure that records the mapping of the pages it holds
  (`vmf->page`: the VMA's file; an extent buffer's pages: the btree inode);
* ``unknown``: anything else (a page allocated here, a global, an unknown
  function), with what was seen.

`Context.candidates` lists the expressions in scope that can supply a
mapping: parameters and locals of provider types (rules `[[plan.provider]]`,
in the rules' order of preference), carriers, and member chains of
parameters and locals (`rac->mapping`, `iter->inode->i_mapping`).
`Context.decide` joins the two: a lookup or a carrier names the mapping; a
page from a parameter takes the best candidate when exactly one expression
has the best rank, asks a human when several do, and needs the mapping
passed down when there is none. Kernel knowledge (lookups, carriers,
never-protected mappings) is rules data; this module only follows the code.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field, replace

from .. import types
from ..ctext import LOCAL_WORD as _LOCAL_WORD
from ..ctext import PATH as _PATH
from ..ctext import member_of, parse_call, root_of, strip, substitute
from ..facts import Call, Value
from ..graph import callers_of, edges_out
from ..rules import Lookup, PlanRules

_NOT_PAGES = {"NULL", "0", "ERR_PTR", "ERR_CAST", "PTR_ERR"}
MAX_DEPTH = 6  # locals and summaries followed per question


@dataclass(frozen=True)
class Origin:
    kind: str  # "parameter" | "lookup" | "carrier" | "never" (a never_source's result) | "unknown"
    param: int = -1  # parameter: its index
    mapping: str = ""  # lookup / carrier: the mapping, as an expression in the function
    evidence: str = ""  # what the code shows: "filemap_get_folio(mapping, index) at line 12"
    never: str = ""  # the rule's reason when these pages are never write protected
    path: str = ""  # parameter: the member path from it to the page ("->page" of `fio->page`)
    buffer: bool = False  # unknown: the page of a buffer head (rules buffer_page_members)


@dataclass(frozen=True)
class Candidate:
    expr: str  # the mapping expression: "dir->i_mapping"
    rank: int  # lower is preferred: carriers, then providers in the rules' order, then chains
    evidence: str  # "parameter struct inode *dir"
    never: str = ""
    weak: bool = False  # not evidence for a page parameter's mapping (rules: provider weak)
    after: int = -1  # a local: the byte offset of its value (usable only after it)


@dataclass(frozen=True)
class Decision:
    """What a read (or the page argument of a call) gets."""

    kind: str  # "context" | "pass-down" | "needs-human" | "never-protected"
    expr: str = ""  # the mapping expression ("context"), the parameter index ("pass-down")
    param: int = -1  # "pass-down": the parameter the page comes through
    evidence: str = ""
    candidates: tuple[str, ...] = field(default=())
    how: str = ""  # "context": what names the mapping, "lookup" | "carrier" | "provider"
    path: str = ""  # "pass-down": the member path from the parameter to the page (Origin.path)


class Context:
    """Origins and candidates for the functions of one analysis.

    graph: the analysis graph (function nodes with `params`, `bodies`);
    env: its TypeEnv (struct members for member chains); facts: path ->
    FileFacts | None."""

    def __init__(self, graph, env, pr: PlanRules, facts, in_scope=None) -> None:
        """in_scope(fid): whether fid is code the plan converts (carriers such as
        a vm_fault name a file's mapping only there: core mm faults on anonymous
        and special mappings too, whose vm_file is NULL or not a page cache)."""
        self.in_scope = in_scope or (lambda fid: True)
        self.g = graph
        self.env = env
        self.pr = pr
        self.facts = facts
        self.lookups = {lk.function: lk for lk in pr.lookups}
        self.carriers = {types.normalise(c.type): c for c in pr.carriers}
        self.providers = [(types.normalise(p.type), p) for p in pr.providers]
        self._values: dict[str, list[Value]] = {}
        self._elements: dict[str, list[Value]] = {}
        self._calls: dict[str, list[Call]] = {}
        self._summary: dict[str, Origin | None] = {}
        self._chains: dict[str, list[tuple[str, int]]] = {}
        self._nullable: dict[tuple[str, int], bool] = {}
        self._cands: dict[str, list[Candidate]] = {}
        self._debug: dict[tuple[str, str], list[Call]] = {}
        self._never_tables: dict[str, str] = {}
        self._never_param: dict[tuple[str, int, str], str] = {}
        self._fills: dict[str, Lookup | None] = {}

    # -- what the index recorded for a function ------------------------------
    def _body_facts(self, fid: str):
        d = self.g.nodes[fid]
        for path in sorted({p for p, _ in d.get("bodies", ())}):
            ff = self.facts(path)
            if ff is not None:
                yield ff, d["name"]

    def values(self, fid: str) -> list[Value]:
        if fid not in self._values:
            self._values[fid] = [v for ff, name in self._body_facts(fid) for v in ff.values if v.function == name]
        return self._values[fid]

    def elements(self, fid: str) -> list[Value]:
        if fid not in self._elements:
            self._elements[fid] = [v for ff, name in self._body_facts(fid) for v in ff.elements
                                   if v.function == name]
        return self._elements[fid]

    def calls(self, fid: str) -> list[Call]:
        if fid not in self._calls:
            self._calls[fid] = [c for ff, name in self._body_facts(fid) for c in ff.calls if c.caller == name]
        return self._calls[fid]

    def params(self, fid: str) -> list[tuple[str | None, str]]:
        return self.g.nodes[fid]["params"]

    # -- where a page comes from ----------------------------------------------
    def origin(self, fid: str, expr: str, depth: int = 0, seen: frozenset = frozenset()) -> Origin:
        """Where the page expr denotes in fid comes from (see the module doc)."""
        found = self._origin(fid, expr, depth, seen)
        if found.kind == "unknown" and self.pr.buffer_page_members:
            member = re.search(r"(?:->|\.)\s*(\w+)$", strip(expr, self.pr.page_converters, keep_member=True))
            if member and member.group(1) in self.pr.buffer_page_members:
                return replace(found, buffer=True)
        return found

    def _origin(self, fid: str, expr: str, depth: int, seen: frozenset) -> Origin:
        e = strip(expr, self.pr.page_converters)
        if depth > MAX_DEPTH:
            return Origin("unknown", evidence=f"{e}: followed too far")
        call = parse_call(e)
        if call is not None:
            return self._call_origin(fid, call, depth, seen)
        deref = _DEREF.match(e)
        if deref:  # `folio = *foliop`: the page the caller's `&folio` points at
            for i, (pname, ptype) in enumerate(self.params(fid)):
                if pname == deref.group(1):
                    return Origin("parameter", param=i, path="*",
                                  evidence=f"{e}: what parameter {i} ({ptype} {pname}) points at")
        root = root_of(e)
        if root is None:
            return Origin("unknown", evidence=f"{e}: not an access path")
        kept = strip(expr, self.pr.page_converters, keep_member=True)
        path = kept[len(root):].strip() if kept.startswith(root) else ""
        if root not in seen and path[:1] in ("[", "-", "."):
            # `pages[i] = lookup(M, ...)`, `fio.page = page`, `{ .page = page }` here
            member = re.match(r"^(?:->|\.)\s*(\w+)", path)
            stored = self._stored(fid, f"{root}.{member.group(1)}" if member else f"{root}[]", depth, seen | {root})
            if stored is not None:
                return stored
        params = self.params(fid)
        for i, (pname, ptype) in enumerate(params):
            if pname == root:
                carrier = self.carriers.get(types.normalise(ptype)) if self.in_scope(fid) else None
                if carrier is not None and e != root:
                    return Origin("carrier", mapping=carrier.mapping.format(p=root),
                                  evidence=f"{e}: pages of {carrier.type.rstrip(' *')} {root} ({carrier.why})",
                                  never=carrier.why if carrier.never_protected else "")
                never = self.never_tables(fid, i, path, depth)
                return Origin("parameter", param=i, evidence=f"{e}: parameter {i} ({ptype} {root})", never=never,
                              path=path)
        if root in seen:
            return Origin("unknown", evidence=f"{e}: {root} is assigned from itself")
        vals = [v for v in self.values(fid) if v.name == root]
        if vals and all(v.value.strip() in _NOT_PAGES or (parse_call(v.value) or ("",))[0] in _NOT_PAGES
                        for v in vals):
            filled = self._filled(fid, root, depth)  # `page = NULL;` then `f(..., &page)`
            if filled is not None:
                return filled
        if vals:
            carrier = self.carriers.get(types.normalise(vals[0].type)) if self.in_scope(fid) else None
            if carrier is not None and e != root:
                return Origin("carrier", mapping=carrier.mapping.format(p=root),
                              evidence=f"{e}: pages of {carrier.type.rstrip(' *')} {root}",
                              never=carrier.why if carrier.never_protected else "")
            # (`bh = jh2bh(jh); bh->b_folio`: the page is jh's ->b_bh->b_folio)
            found = [_then(self.origin(fid, v.value, depth + 1, seen | {root}), path)
                     for v in vals if (parse_call(v.value) or ("", []))[0] not in _NOT_PAGES
                     and v.value.strip() not in _NOT_PAGES and not self._walks_same_page(root, v.value)]
            return _agree(found, f"{root} = {' / '.join(v.value for v in vals)[:160]}")
        filled = self._filled(fid, root, depth)
        if filled is not None:
            return filled
        return Origin("unknown", evidence=f"{e}: {root} is neither a parameter nor a local given a page")

    def _walks_same_page(self, root: str, value: str) -> bool:
        """`bh = bh->b_this_page`: the next buffer of the same page (rules
        same_page_members), which says nothing new about where the page is from."""
        m = re.fullmatch(rf"{re.escape(root)}\s*->\s*(\w+)", value.strip())
        return m is not None and m.group(1) in self.pr.same_page_members

    def _stored(self, fid: str, name: str, depth: int, seen: frozenset) -> Origin | None:
        """The pages fid itself stores in an array (name "pages[]") or a
        member of a local ("fio.page"), when every store agrees where they
        come from."""
        stores = [v for v in self.elements(fid) if v.name == name and v.value.strip() not in _NOT_PAGES]
        if not stores:
            return None
        found = _agree([self.origin(fid, v.value, depth + 1, seen) for v in stores],
                       f"{name} = {' / '.join(v.value for v in stores)[:160]}")
        return found if found.kind != "unknown" else None

    def _call_origin(self, fid: str, call: tuple[str, list[str]], depth: int, seen: frozenset) -> Origin:
        name, args = call
        text = f"{name}({', '.join(args)})"
        never = self.pr.never_sources.get(name)
        if never is not None:
            return Origin("never", evidence=f"{text}: {never}", never=never)
        lk = self.lookups.get(name)
        if lk is not None and lk.fills < 0:
            if lk.arg >= len(args):
                return Origin("unknown", evidence=f"{text}: fewer arguments than the lookup rule says")
            return self._lookup_origin(lk, args[lk.arg], text, fid)
        callee = self.function_called(fid, name)
        if callee is None:
            return Origin("unknown", evidence=f"{text}: {name}() is not a known lookup or function")
        summary = self.summary(callee)
        if summary is None or summary.kind == "unknown":
            why = summary.evidence if summary is not None else "its result could not be followed"
            return Origin("unknown", evidence=f"{text}: {why}")
        if summary.kind == "parameter":
            if summary.param >= len(args):
                return Origin("unknown", evidence=f"{text}: returns its argument {summary.param}, not passed")
            return self.origin(fid, member_of(args[summary.param], summary.path), depth + 1, seen)
        return self._in_caller(summary, callee, args, f"{text}: {summary.evidence}")

    def when_handed_null(self, callee: str, k: int, args) -> Origin | None:
        """The origin, in a call's terms, of the page callee works on when the
        call hands it NULL for its page parameter k and the callee then looks
        the page up itself in another parameter (`ext4_mpage_readpages(inode,
        rac, NULL)`, inside `folio = readahead_folio(rac)`); None otherwise."""
        params = self.params(callee)
        if k >= len(params) or not params[k][0]:
            return None
        found = [self.origin(callee, v.value) for v in self.values(callee) if v.name == params[k][0]]
        looked = {o.mapping: o for o in found if o.kind == "lookup" and o.mapping and not o.never}
        if len(looked) != 1:
            return None
        got = next(iter(looked.values()))
        name = self.g.nodes[callee]["name"] if callee in self.g else callee
        return self._in_caller(got, callee, args, f"handed NULL, {name}() looks its page up itself: {got.evidence}")

    def _in_caller(self, got: Origin, callee: str, args, evidence: str) -> Origin:
        """A callee's lookup or carrier origin in the terms of a call passing
        args; the never-protected mapping may only show there
        (f2fs_grab_cache_page(NODE_MAPPING(sbi), ...) looks up `mapping`)."""
        names = {p: args[j] for j, (p, _) in enumerate(self.params(callee)) if p and j < len(args)}
        mapping = substitute(got.mapping, names)
        return Origin(got.kind, mapping=mapping, evidence=evidence, never=got.never or self.never(mapping))

    def _lookup_origin(self, lk, arg: str, text: str, fid: str = "") -> Origin:
        arg = arg.strip()
        params = [p for p, _ in self.params(fid)] if fid else []
        if arg in params:  # a lookup in a mapping (inode, file) the callers hand over
            never = self.never_tables(fid, params.index(arg))
            if never:
                return Origin("lookup", mapping=arg, evidence=f"{text}: {lk.why}; {arg}: {never}", never=never)
        mapping = {"mapping": arg, "inode": f"{arg}->i_mapping", "file": f"{arg}->f_mapping",
                   "rac": f"{arg}->mapping"}[lk.of]
        if not _PATH.match(arg) and lk.of != "mapping":
            mapping = {"inode": f"({arg})->i_mapping", "file": f"({arg})->f_mapping",
                       "rac": f"({arg})->mapping"}[lk.of]
        return Origin("lookup", mapping=mapping, evidence=f"{text}: {lk.why}", never=self.never_in(fid, mapping))

    def never_in(self, fid: str, mapping: str) -> str:
        """Why the mapping expression is never protected, its locals read
        through to their one value (`mapping = META_MAPPING(sbi)`), or ""."""
        if (why := self.never(mapping)) or not fid:
            return why
        value = self.in_params(fid, mapping)
        why = self.never(value) if value and value != mapping else ""
        return f"{mapping} is {value}: {why}" if why else ""

    def lookup_of(self, fid: str, c: Call) -> Lookup | None:
        """The lookup rule of a call: the rules' own, or one derived from the
        callee's body -- a function that hands its argument to a lookup that
        fills it, with the mapping it was given (6.1's
        pagevec_lookup_range_tag(&pvec, mapping, ...) passes pvec->pages to
        find_get_pages_range_tag(mapping, ..., pages))."""
        lk = self.lookups.get(c.callee)
        if lk is not None or c.via != "direct":
            return lk
        callee = self.function_called(fid, c.callee)
        return self.derived_fill(callee) if callee is not None else None

    def derived_fill(self, fid: str, depth: int = 0) -> Lookup | None:
        if fid in self._fills:
            return self._fills[fid]
        self._fills[fid] = None  # cycle guard
        names = [p for p, _ in self.params(fid)]
        found = None
        for c in self.calls(fid) if depth < 3 else ():
            lk = self.lookups.get(c.callee) or (self._derived_of(fid, c, depth) if c.via == "direct" else None)
            if lk is None or not 0 <= lk.fills < len(c.args) or lk.arg >= len(c.args):
                continue
            into = root_of(strip(c.args[lk.fills]))
            of = strip(c.args[lk.arg])
            if into in names and of in names and into != of:
                found = Lookup(self.g.nodes[fid]["name"], names.index(of), lk.of, names.index(into),
                               f"{self.g.nodes[fid]['name']}() fills its argument through {c.callee}(): {lk.why}")
                break
        self._fills[fid] = found
        return found

    def _derived_of(self, fid: str, c: Call, depth: int) -> Lookup | None:
        callee = self.function_called(fid, c.callee)
        return self.derived_fill(callee, depth + 1) if callee is not None and callee != fid else None

    def _filled(self, fid: str, root: str, depth: int = 0) -> Origin | None:
        """A batch or array the function passes to a lookup that fills it, or a
        local whose address it passes to a function of the tree that stores a
        page there (`ext2_find_entry(dir, name, &page)`: `*res_page = page`)."""
        for c in self.calls(fid):
            lk = self.lookup_of(fid, c)
            if lk is not None and 0 <= lk.fills < len(c.args) and lk.arg < len(c.args):
                if strip(c.args[lk.fills]) == root:
                    return self._lookup_origin(lk, c.args[lk.arg],
                                               f"{c.callee}({', '.join(c.args)}) at line {c.line}", fid)
                continue
            if lk is not None or f"&{root}" not in [a.replace(" ", "") for a in c.args]:
                continue
            callee = self.function_called(fid, c.callee)
            if callee is None:
                continue
            i = [a.replace(" ", "") for a in c.args].index(f"&{root}")
            if i >= len(self.params(callee)) or not self.params(callee)[i][0]:
                continue
            out = self.out_summary(callee, self.params(callee)[i][0])
            if out is None or out.kind == "unknown":
                continue
            text = f"{c.callee}({', '.join(c.args)}) at line {c.line}"
            if out.kind == "parameter":
                return self.origin(fid, c.args[out.param], depth + 1) if out.param < len(c.args) else None
            return self._in_caller(out, callee, c.args, f"{text}: {out.evidence}")
        return None

    def out_summary(self, fid: str, param: str) -> Origin | None:
        """Where the page a function stores in `*param` comes from, in its
        parameters' terms (as summary does for what it returns)."""
        key = f"{fid}#*{param}"
        if key in self._summary:
            return self._summary[key]
        self._summary[key] = None  # cycle guard
        stores = [v for v in (*self.values(fid), *self.elements(fid))
                  if v.name in (f"*{param}", f"{param}[]") and v.value.strip() not in _NOT_PAGES]
        found = [self.origin(fid, v.value, 1) for v in stores] + self._forwarded(fid, param)
        out = _agree(found, f"{self.g.nodes[fid]['name']}() stores in *{param}") if found else None
        if out is not None and out.kind in ("lookup", "carrier"):
            mapping = self.in_params(fid, out.mapping)
            out = None if mapping is None else Origin(
                out.kind, mapping=mapping, evidence=f"{self.g.nodes[fid]['name']}() stores in *{param} "
                f"{out.evidence}", never=out.never)
        self._summary[key] = out
        return out

    def _forwarded(self, fid: str, param: str) -> list[Origin]:
        """What the functions fid hands its out-parameter on to store there
        (`ocfs2_read_block(ci, blk, bh, ...)` passes `bh` to ocfs2_read_blocks,
        which stores `bhs[i] = sb_getblk(...)`), in fid's terms."""
        out = []
        for c in self.calls(fid):
            args = [a.strip() for a in c.args]
            if param not in args or c.callee in self.lookups:
                continue
            callee = self.function_called(fid, c.callee)
            i = args.index(param)
            if callee is None or i >= len(self.params(callee)) or not self.params(callee)[i][0]:
                continue
            got = self.out_summary(callee, self.params(callee)[i][0])
            if got is None or got.kind == "unknown":
                continue
            if got.kind == "parameter":
                continue  # (a page of the callee's own parameter: not a store of a new page)
            out.append(self._in_caller(got, callee, c.args, f"{c.callee}() at line {c.line}: {got.evidence}"))
        return out

    def function_called(self, fid: str, name: str) -> str | None:
        """The function fid calls by this name (the graph resolved it: a
        static of the file, a header's static inline, or the extern)."""
        for callee in self.g.successors(fid):
            d = self.g.nodes[callee]
            if d["type"] == "function" and d["name"] == name:
                return callee
        return name if name in self.g and self.g.nodes[name]["type"] == "function" else None

    def summary(self, fid: str) -> Origin | None:
        """Where the page a function returns comes from, in its parameters' terms."""
        if fid in self._summary:
            return self._summary[fid]
        self._summary[fid] = Origin("unknown", evidence="recursive")  # cycle guard
        rets = [v for v in self.values(fid) if v.name == "return"
                and (parse_call(v.value) or ("", []))[0] not in _NOT_PAGES and v.value.strip() not in _NOT_PAGES]
        found = [self.origin(fid, v.value, 1) for v in rets]
        out = _agree(found, f"{self.g.nodes[fid]['name']}() returns {' / '.join(v.value for v in rets)[:120]}") \
            if found else None
        if out is not None and out.kind in ("lookup", "carrier"):
            mapping = self.in_params(fid, out.mapping)
            if mapping is None:
                out = Origin("unknown", evidence=f"{self.g.nodes[fid]['name']}() returns {out.evidence}, "
                             f"but {out.mapping} is not known in its parameters' terms")
            else:
                out = Origin(out.kind, mapping=mapping,
                             evidence=f"{self.g.nodes[fid]['name']}() returns {out.evidence}", never=out.never)
        self._summary[fid] = out
        return out

    def in_params(self, fid: str, expr: str, depth: int = 0) -> str | None:
        """expr with fid's pointer locals replaced by their values until only
        parameters (and globals) remain; None when a local has no single value."""
        if depth > 4:
            return None
        params = {p for p, _ in self.params(fid) if p}
        vals: dict[str, set[str]] = {}
        for v in self.values(fid):
            if v.name != "return" and not v.name.startswith("*"):
                vals.setdefault(v.name, set()).add(v.value.strip())
        failed = False

        def repl(m: re.Match) -> str:
            nonlocal failed
            word = m.group(0)
            if word in params or word not in vals:
                return word
            if len(vals[word]) != 1:
                failed = True
                return word
            inner = self.in_params(fid, next(iter(vals[word])), depth + 1)
            if inner is None:
                failed = True
                return word
            return inner if _PATH.match(inner) or parse_call(inner) else f"({inner})"
        out = _LOCAL_WORD.sub(repl, expr)
        return None if failed else out

    # -- what can supply the mapping ------------------------------------------
    def never(self, mapping: str) -> str:
        for rule in self.pr.never_protected:
            if rule.pattern.search(mapping):
                return rule.why
        return ""

    def never_tables(self, fid: str, param: int, path: str = "", depth: int = 0) -> str:
        """Why a function's page (or mapping) parameter is never protected:
        it is called through ops tables only inodes user space cannot map use
        (btrfs's btree_aops; rules never_protected_ops), or not through a
        slot at all, and directly only with never-protected pages or
        mappings (btree_writepages -> btree_write_cache_pages(mapping)).
        "" otherwise: the plan asks the callers."""
        key = (fid, param, path)
        if key in self._never_param:
            return self._never_param[key]
        if depth > MAX_DEPTH:
            return ""
        bound = bool(edges_out(self.g, fid, "binds"))
        why = self.never_bindings(fid) if bound else ""
        self._never_param[key] = ""  # cycle guard
        if bound and not why:
            return ""
        direct = [(caller, call) for caller, target, _, call in self.callers(fid) if target == fid]
        if not bound and (not direct or not self.pr.never_protected_ops):
            return ""
        for caller, call in direct:
            got = self.origin(caller, member_of(call.args[param], path), depth + 1) if param < len(call.args) \
                else None
            if got is None or not got.never:
                return ""
            why = why or (f"every call hands it one that is never protected ({self.g.nodes[caller]['name']}: "
                          f"{got.evidence[:120]} -- {got.never[:200]})")
        self._never_param[key] = why
        return why

    def never_bindings(self, fid: str) -> str:
        """"<tables>: <why>" when every binding of fid is in such an ops table, else ""."""
        if fid in self._never_tables:
            return self._never_tables[fid]
        tables = self.pr.never_protected_ops
        found: dict[str, str] = {}
        ok = bool(tables)
        for _, _, edge in edges_out(self.g, fid, "binds") if ok else ():
            for site in edge["sites"]:
                why = self.pr.never_protected_table(site.table)
                if not why:
                    ok = False
                found[site.table] = why
        out = f"{', '.join(sorted(found))}: {'; '.join(sorted(set(found.values())))}" if ok and found else ""
        self._never_tables[fid] = out
        return out

    def candidates(self, fid: str) -> list[Candidate]:
        """Expressions in fid's scope that denote a mapping, best first."""
        if fid in self._cands:
            return self._cands[fid]
        out: dict[str, Candidate] = {}
        chain_rank = len(self.providers) + 1

        def add(c: Candidate) -> None:
            if c.expr not in out or c.rank < out[c.expr].rank:
                out[c.expr] = c

        scope: list[tuple[str, str, str, int]] = []  # (name, type, evidence, usable after)
        for i, (pname, ptype) in enumerate(self.params(fid)):
            if pname:
                scope.append((pname, types.normalise(ptype), f"parameter {ptype} {pname}" +
                              ("" if not self.nullable_param(fid, i) else " (may be NULL)"), -1))
                if "(may be NULL)" in scope[-1][2] and types.normalise(ptype) in self.carriers:
                    scope.pop()  # a carrier some caller passes NULL for carries nothing there
        tainted = self.from_reads(fid)
        by_name: dict[str, list[Value]] = {}
        for v in self.values(fid):
            if v.name != "return" and not v.name.startswith("*"):
                by_name.setdefault(v.name, []).append(v)
        params = {p for p, _ in self.params(fid)}
        for name, vals in sorted(by_name.items()):
            if name in params or name in tainted or len({v.value for v in vals}) != 1 or not vals[0].top:
                continue  # (a local of an inner block is not in scope at every call)
            scope.append((name, types.normalise(vals[0].type), f"local {name} = {vals[0].value} (line {vals[0].line})",
                          vals[0].start))
        for name, ptype, evidence, after in scope:
            carrier = self.carriers.get(ptype) if self.in_scope(fid) else None
            if carrier is not None and "(may be NULL)" not in evidence:
                expr = carrier.mapping.format(p=name)
                add(Candidate(expr, 0, f"{evidence}: {carrier.why}",
                              carrier.why if carrier.never_protected else self.never(expr), False, after))
                continue
            if "(may be NULL)" in evidence:
                continue  # a nullable provider some caller passes NULL for
            hit = False
            for rank, (ptype2, prov) in enumerate(self.providers, start=1):
                if ptype == ptype2 and not self._excluded(prov, fid):
                    expr = prov.expr.format(p=name)
                    add(Candidate(expr, rank, f"{evidence}: {prov.why}", self.never(expr), prov.weak, after))
                    hit = True
            base, depth = types.split(ptype)
            chain_from = self.pr.chain_from
            if hit or depth != 1 or chain_from is None or not chain_from.search(base.split(" ", 1)[-1]):
                continue
            for suffix, pi in self.chains(base):
                expr = self.providers[pi][1].expr.format(p=f"{name}{suffix}")
                # an operation descriptor's own inode or mapping (chain_from) names the file
                add(Candidate(expr, chain_rank + pi, f"member chain of {evidence}", self.never(expr), False, after))
        cands = sorted(out.values(), key=lambda c: (c.rank, c.expr))
        self._cands[fid] = cands
        return cands

    def _excluded(self, prov, fid: str) -> bool:
        """The provider's rule says its type names no mapping in fid's file."""
        if not prov.not_in:
            return False
        paths = {p for p, _ in self.g.nodes[fid].get("bodies", ())} if fid in self.g else set()
        return any(fnmatch.fnmatch(p, glob) for p in paths for glob in prov.not_in)

    def from_reads(self, fid: str) -> set[str]:
        """Locals whose value comes from the field being replaced
        (`mapping = page->mapping`, then `inode = mapping->host`)."""
        field_re = re.compile(r"(->|\.)\s*mapping\b|\b(page|folio)_\w*mapping\w*\s*\(")
        tainted: set[str] = set()
        changed = True
        vals = [v for v in self.values(fid) if v.name != "return" and not v.name.startswith("*")]
        while changed:
            changed = False
            for v in vals:
                if v.name in tainted:
                    continue
                if field_re.search(v.value) or (root_of(strip(v.value)) or "") in tainted:
                    tainted.add(v.name)
                    changed = True
        return tainted

    def chains(self, base: str, depth: int | None = None) -> list[tuple[str, int]]:
        """(member chain, provider index) from a struct to a provider type:
        `->fs_info->btree_inode` (an inode), at most chain_depth hops."""
        depth = self.pr.chain_depth if depth is None else depth
        key = f"{base}#{depth}"
        if key in self._chains:
            return self._chains[key]
        self._chains[key] = []
        out: list[tuple[str, int]] = []
        tag = base.split(" ", 1)[-1]
        for member, mtype in sorted(self.env.fields.get(base, {}).items()):
            if member in self.pr.chain_skip or f"{tag}.{member}" in self.pr.chain_skip:
                continue
            mt = types.normalise(mtype)
            mbase, mdepth = types.split(mt)
            if mdepth != 1:
                continue
            pi = next((i for i, (t, _) in enumerate(self.providers) if t == mt), None)
            if pi is not None:
                out.append((f"->{member}", pi))
            elif depth > 1 and mbase.startswith("struct ") and mbase not in ("struct page", "struct folio") \
                    and mt not in self.carriers:
                out.extend((f"->{member}{rest}", i) for rest, i in self.chains(mbase, depth - 1))
        self._chains[key] = out
        return out

    def nullable_param(self, fid: str, index: int, depth: int = 0) -> bool:
        """Some caller may pass NULL for parameter `index` of fid: a call passes
        NULL (or 0), or passes a parameter of its own that may be NULL; through
        the slots fid is bound to as well. Only for the rules' nullable providers."""
        ptype = types.normalise(self.params(fid)[index][1]) if index < len(self.params(fid)) else ""
        if not any(t == ptype and p.nullable for t, p in self.providers) and ptype not in self.carriers:
            return False  # (carriers too: ext4_read_folio passes a NULL readahead_control)
        if any(f"{s}#{index}" in self.pr.nullable_slots for s, _, _ in edges_out(self.g, fid, "binds")):
            return True
        key = (fid, index)
        if key in self._nullable:
            return self._nullable[key]
        self._nullable[key] = False  # cycle guard
        result = depth < 8 and any(self._passes_null(caller, call, index, depth)
                                   for caller, _, _, call in self.callers(fid))
        self._nullable[key] = result
        return result

    def _passes_null(self, caller: str, call: Call, index: int, depth: int) -> bool:
        if index >= len(call.args):
            return False
        arg = call.args[index].strip()
        if arg in ("NULL", "0", "(void *)0"):
            return True
        for j, (pname, _) in enumerate(self.params(caller)):
            if pname == arg:
                return self.nullable_param(caller, j, depth + 1)
        return False

    def callers(self, fid: str):
        """(caller, target, graph site, call) of every call that reaches fid,
        directly or through a slot it is bound to."""
        for pred, target, sites in callers_of(self.g, fid):
            for site in sites:
                ff = self.facts(site[0])
                if ff is not None and site[2] < len(ff.calls):
                    yield pred, target, site, ff.calls[site[2]]

    def call_receiver(self, caller: str, call: Call) -> str | None:
        """M of `M->a_ops->op(...)`, also through an ops local `aops = M->a_ops`
        (rules [[plan.receiver_provider]])."""
        if call.via != "member" or not call.receiver:
            return None
        for rp in self.pr.receiver_providers:
            owner = self.env.resolve(call.receiver)
            if owner is None or owner[0] != f"struct {rp.struct}":
                continue
            receiver = call.fn_text[: call.fn_text.rfind(call.callee)].rstrip()
            receiver = receiver.removesuffix("->").removesuffix(".").rstrip()
            found = self.receiver_mapping(caller, receiver, rp.strip)
            if found is not None:
                return found
        return None

    def in_debug(self, fid: str, path: str, offset: int) -> str:
        """The debug macro (rules' debug_macros) one of whose report-only
        arguments holds offset in fid, or "" (f2fs_bug_on's sbi, the folio
        VM_BUG_ON_FOLIO dumps; never a condition, which runs for real)."""
        macros = self.pr.debug_macros
        if not macros and self.pr.debug_calls is None:
            return ""
        pattern = self.pr.debug_calls
        for c in self._debug_calls(path, self.g.nodes[fid]["name"]):
            if not c.paren < offset < c.end:
                continue
            if pattern is not None and pattern.search(c.callee):
                return c.callee  # a tracepoint: every argument is only recorded
            if c.callee not in macros:
                continue  # (an assertion macro: in_assertion)
            args = macros[c.callee]
            if any((i in args or -1 in args) and s <= offset < e for i, (s, e) in enumerate(c.arg_spans)):
                return c.callee
        return ""

    def in_assertion(self, fid: str, path: str, offset: int, end: int = -1) -> str:
        """The assertion macro (rules' assertion_macros: BUG_ON, WARN_ON,
        lockdep_assert_held...) whose arguments hold offset in fid, or "";
        with end, "=" + the macro when [offset, end) is a whole argument of it
        (`ASSERT(page->mapping)`: only whether the field is set is asked)."""
        if not self.pr.assertion_macros:
            return ""
        for c in self._debug_calls(path, self.g.nodes[fid]["name"]):
            if c.callee in self.pr.assertion_macros and c.paren < offset < c.end:
                whole = any(s == offset and e == end for s, e in c.arg_spans)
                return f"={c.callee}" if whole else c.callee
        return ""

    def _debug_calls(self, path: str, name: str) -> list[Call]:
        """The calls of report-only and assertion macros and tracepoints in one
        function (kept)."""
        key = (path, name)
        if key not in self._debug:
            ff = self.facts(path)
            pattern = self.pr.debug_calls
            listed = self.pr.assertion_macros | self.pr.debug_macros.keys()
            self._debug[key] = [c for c in (ff.calls if ff is not None else ()) if c.caller == name and (
                c.callee in listed or (pattern is not None and pattern.search(c.callee)))]
        return self._debug[key]

    # -- the decision -----------------------------------------------------------
    def decide(self, fid: str, origin: Origin, at: int = -1) -> Decision:
        """What the page's mapping is in fid, given where the page came from;
        at: the byte offset of the use (a local counts only once it has its value)."""
        if origin.never:
            return Decision("never-protected", origin.mapping, evidence=f"{origin.evidence}; never protected: "
                            f"{origin.never}")
        if origin.kind in ("lookup", "carrier"):
            return Decision("context", origin.mapping, evidence=origin.evidence, how=origin.kind)
        cands = [c for c in self.candidates(fid) if at < 0 or c.after < at]
        if origin.buffer:
            # most buffer heads whose origin the plan cannot follow are the block
            # device's (metadata read with sb_bread, ext4_bread, ocfs2_read_block):
            # an inode or file in scope is no evidence for their page
            return Decision("needs-human", evidence=f"{origin.evidence}; a buffer head's page from where the "
                            "plan cannot follow: an inode in scope is no evidence (most such buffers are the "
                            "block device's)", candidates=tuple(f"{c.expr} ({c.evidence})" for c in cands))
        if origin.kind != "parameter":
            # a page from somewhere the plan cannot follow: only what names a
            # mapping directly may stand for it, never a member chain or a
            # carrier (an extent buffer in scope says nothing of a bio's pages)
            cands = [c for c in cands if 0 < c.rank <= len(self.providers)]
        listed = tuple(f"{c.expr} ({c.evidence})" for c in cands)
        weak = [c for c in cands if c.weak]
        # an inode beside a page parameter is weak evidence, and none at all beside
        # a page from where the plan cannot follow (f2fs's dn.node_page is the node
        # inode's page, not the inode in scope: the boot's context check caught it)
        cands = [c for c in cands if not c.weak]
        if cands:
            best = [c for c in cands if c.rank == cands[0].rank]
            if len(best) == 1:
                c = best[0]
                if c.never:
                    return Decision("never-protected", c.expr, evidence=f"{origin.evidence}; {c.evidence}; "
                                    f"never protected: {c.never}")
                if origin.kind == "parameter":
                    return Decision("context", c.expr, evidence=f"{origin.evidence}; provider: {c.evidence}",
                                    how="provider")
                if c.rank > 1 and len({self._same(fid, x.expr) for x in cands}) > 1:
                    # the page's origin is not followed, no mapping itself is in scope
                    # and several inodes or files are (ext4's move_extent: the
                    # original file and the donor): a rank is no evidence of which
                    return Decision("needs-human", evidence=f"{origin.evidence}; {len(cands)} mappings in scope "
                                    "and the page's origin not followed", candidates=listed)
                return Decision("context", c.expr, evidence=f"{origin.evidence}; the only provider in scope "
                                f"(page origin not followed): {c.evidence}", candidates=listed, how="provider")
            return Decision("needs-human", evidence=f"{origin.evidence}; {len(best)} candidates of the same rank",
                            candidates=listed)
        if origin.kind == "parameter":
            for c in weak:
                same = self.derived_from_page(fid, origin.param, c)
                if same:
                    return Decision("context", c.expr, evidence=f"{origin.evidence}; {c.evidence}; {same}",
                                    how="provider")
            why = (f"; not taken from {', '.join(c.expr for c in weak)}: an inode or file beside a page "
                   "parameter is no evidence that the page is its") if weak else ""
            return Decision("pass-down", param=origin.param, evidence=origin.evidence + why, path=origin.path)
        if weak:
            return Decision("needs-human", evidence=f"{origin.evidence}; only an inode or file in scope, which "
                            "says nothing of a page from where the plan cannot follow", candidates=listed)
        return Decision("needs-human", evidence=f"{origin.evidence}; no provider in scope", candidates=())

    def derived_from_page(self, fid: str, page: int, cand: Candidate, depth: int = 0) -> str:
        """Evidence that a weak candidate (an inode parameter beside the page
        parameter) is the page's own: every caller passes, for it, the host of
        the page it passes (`inode = folio->mapping->host`, `folio_inode(folio)`),
        or its own such pair of parameters. "" otherwise."""
        root = root_of(cand.expr)
        at = next((i for i, (p, _) in enumerate(self.params(fid)) if p == root), -1)
        callers = list(self.callers(fid))
        if at < 0 or not callers or depth > 3 or any(target != fid for _, target, _, _ in callers):
            return ""
        for caller, _, _, call in callers:
            if max(page, at) >= len(call.args):
                return ""
            pg = strip(call.args[page], self.pr.page_converters)
            arg = call.args[at].strip()
            vals = {v.value.strip() for v in self.values(caller) if v.name == arg}
            text = vals.pop() if len(vals) == 1 else arg
            # (or through an accessor: `inode = folio_file_mapping(folio)->host`)
            if re.fullmatch(rf"(\(\s*)?{re.escape(pg)}(\s*\))?\s*->\s*mapping\s*->\s*host|folio_inode\(\s*"
                            rf"{re.escape(pg)}\s*\)|\w*mapping\w*\(\s*{re.escape(pg)}\s*\)\s*->\s*host", text):
                continue
            if self._looked_up_in(caller, call.args[page], arg):
                continue
            names = [p for p, _ in self.params(caller)]
            if arg in names and pg in names and self.derived_from_page(
                    caller, names.index(pg), Candidate(f"{arg}->i_mapping", 0, ""), depth + 1):
                continue
            return ""
        return (f"every caller passes {root} as the host of the page it passes, or the inode it "
                f"looked the page up in ({callers[0][0]} at {callers[0][2][0]}:{callers[0][2][1]})")

    def _looked_up_in(self, caller: str, page: str, inode: str) -> bool:
        """The caller's page comes from a lookup in inode's own page cache
        (`ufs_find_entry(dir, ..., &folio)`, then `f(dir, folio)`)."""
        got = self.origin(caller, page)
        if got.kind != "lookup" or not got.mapping or got.never:
            return False
        mapping = re.sub(r"\s+", "", self._same(caller, got.mapping))
        inode = re.sub(r"\s+", "", inode)
        return mapping in (f"{inode}->i_mapping", f"({inode})->i_mapping")

    def _same(self, fid: str, expr: str) -> str:
        """expr with a local replaced by its one value (`mapping` given
        `inode->i_mapping`): two candidates that name one mapping are one."""
        if expr.isidentifier():
            vals = {v.value.strip() for v in self.values(fid) if v.name == expr}
            if len(vals) == 1:
                return vals.pop()
        return expr

    def receiver_mapping(self, fid: str, receiver: str, strip_suffix: str) -> str | None:
        """`M->a_ops` -> M, also through an ops local `aops = M->a_ops`."""
        receiver = receiver.strip()
        if receiver.endswith(strip_suffix):
            return receiver[: -len(strip_suffix)].strip()
        if receiver.isidentifier():
            vals = {v.value.strip() for v in self.values(fid) if v.name == receiver}
            if len(vals) == 1:
                value = vals.pop()
                if value.endswith(strip_suffix):
                    return value[: -len(strip_suffix)].strip()
        return None


_DEREF = re.compile(r"^\*\s*(\w+)$")

def _then(origin: Origin, path: str) -> Origin:
    """origin of a value, for the page at `value<path>`: a parameter's page
    path grows by path (other origins name the mapping already)."""
    return replace(origin, path=origin.path + path) if origin.kind == "parameter" and path else origin


def _agree(found: list[Origin], what: str) -> Origin:
    """One origin from several assignments: they must agree."""
    if not found:
        return Origin("unknown", evidence=f"{what}: no page assigned")
    kinds = {(o.kind, o.param, o.mapping) for o in found}
    if len(kinds) == 1:
        return found[0]
    return Origin("unknown", evidence=f"{what}: assigned pages of different origins "
                  f"({'; '.join(sorted({o.evidence for o in found}))[:200]})")
