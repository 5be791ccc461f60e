"""The emit stage (series part): the plan as a `git format-patch` series.

A series a maintainer can review and bisect: every prefix of it builds. The
order is

1. the helper's definition alone (unused static inlines compile);
2. one patch per *core* change: a signature change that crosses subsystems,
   with everything that must change with it (a slot such as
   `address_space_operations.writepage`, all its implementations, every call
   through it), named after its slot or function;
3. one patch per subsystem (top two directories: `fs/ext2`, `mm`,
   `drivers/block`) for the rest: functions whose change stays inside it, and
   the reads it turns into helper calls.

How the edits are grouped (`group`): every `emit.Edit` has an owner, the plan
entity whose signature change needs it. The constraints for a prefix to build:

* same patch: an entity's parameter (definitions, prototypes, the slot's
  declaration) and every argument passed to it (edits with that owner); a
  slot and every function bound to it (initialisers, assignments, functions
  passed as an argument of the slot's type), and two slots whose values are
  passed one for the other (`mapping->a_ops->read_folio` as a `filler_t`);
* same or later patch: a call that passes the caller's *new* parameter
  (`how: parameter`) lands with or after the caller's own change; a read
  rewritten with a function's new parameter lands with or after that
  function's change; every rewrite lands after the helper.

Units are the union-find components of the first kind (a rewrite is a unit
of its own, so that a read can land in its subsystem's patch after a core
signature change); the second kind gives a dependency graph between units
whose cycles (mutual recursion) are merged; units are then batched
(`_batches`, Kahn's algorithm with a ready set per subsystem) in a
topological order that takes each core unit as soon as it is ready and
otherwise the subsystem whose ready units complete it. A subsystem that both
feeds a core change and depends on one gets two patches. The cumulative texts are
computed from the original bytes and the chosen subset of edits, so the last
patch's tree is exactly `emit --diff` (checked).

Known gap, reported and not hidden: a function the plan cannot change
(`macro-definition`, `cast`...) that is bound to a slot which changes keeps
its old signature; its file stops compiling at the slot's patch (the
unresolved list names it, in that patch's message and in the cover letter).
"""

from __future__ import annotations

import email.utils
import hashlib
import os
import re
import sys
import textwrap
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import networkx as nx

from .. import __version__
from ..facts import FileFacts
from ..index.cparse import split_cast_argument
from ..output import make_dir, write_atomic
from ..plan import CallSite, Plan, Rewrite, Step, Unresolved
from ..rules import Rules
from . import edits as emitmod
from .maintainers import maintainers_cc, parse_maintainers

WRAP = 72
LIST_LIMIT = 40  # entries per list in a commit message before "... and N more"


# --------------------------------------------------------------------------
# grouping
# --------------------------------------------------------------------------

# label -> a progress callback (done, total), or None for none
ProgressFactory = Callable[[str], "Callable[[int, int], None] | None"]


def subsystem(path: str) -> str:
    """Top two directories of a path: fs/ext4, mm, drivers/block, include/linux."""
    parts = path.split("/")[:-1]
    return "/".join(parts[:2]) if parts else "."


def _tag(sub: str) -> str:
    """The subject prefix for a subsystem: its last directory (ext2, mm, fs)."""
    return sub.rsplit("/", 1)[-1] if sub != "." else "treewide"


@dataclass
class PatchPlan:
    """One patch of the series before it is written: which edits it carries."""

    key: str  # "helper", "core:<entity>" or a subsystem ("fs/ext2")
    subject: str = ""
    entities: list[str] = field(default_factory=list)  # functions and slots whose signature changes here
    edits: dict[str, list[emitmod.Edit]] = field(default_factory=dict)
    call_sites: list[CallSite] = field(default_factory=list)
    rewrites: list[Rewrite] = field(default_factory=list)
    unresolved: list[Unresolved] = field(default_factory=list)
    helper: bool = False

    @property
    def files(self) -> list[str]:
        return sorted(self.edits)


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}
        self.size: dict[str, int] = {}

    def add(self, x: str) -> None:
        self.parent.setdefault(x, x)

    def find(self, x: str) -> str:
        self.add(x)
        root = x
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[x] != root:
            self.parent[x], x = root, self.parent[x]
        return root

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            if self.size.get(ra, 1) < self.size.get(rb, 1):
                ra, rb = rb, ra
            self.parent[rb] = ra
            self.size[ra] = self.size.get(ra, 1) + self.size.get(rb, 1)


def _function_argument(arg: str) -> str | None:
    text = arg.strip()
    if text.startswith("&"):
        text = text[1:].strip()
    if text.isidentifier():
        return text
    split = split_cast_argument(text)
    return split[1] if split else None


_MEMBER_ARG = re.compile(r"(?:->|\.)\s*([A-Za-z_]\w*)\s*$")


def _bindings(plan: Plan, facts: dict[str, FileFacts], uf: _UnionFind) -> None:
    """Merge every slot with the functions bound to it and with slots passed for it."""
    fids = {f.id for f in plan.functions}
    by_name: dict[str, list[str]] = {}
    for f in plan.functions:
        by_name.setdefault(f.name, []).append(f.id)
    sids = {s.id for s in plan.slots}
    members: dict[str, list[str]] = {}
    for s in plan.slots:
        if s.kind == "member":
            members.setdefault(s.name, []).append(s.id)

    def resolve(path: str, name: str) -> str | None:
        if f"{path}::{name}" in fids:
            return f"{path}::{name}"
        if name in fids:
            return name
        headers = [x for x in by_name.get(name, ()) if x.split("::")[0].endswith(".h")]
        return headers[0] if len(headers) == 1 else None

    def link(step: Step) -> None:
        if step.why not in ("implements", "implemented-by"):
            return
        other = step.next_node
        if step.node in uf.parent and other in uf.parent:
            uf.union(step.node, other)

    for f in plan.functions:
        for step in f.reason:
            link(step)
    for s in plan.slots:
        for step in s.reason:
            link(step)
    for u in plan.unresolved:
        for step in u.chain:
            link(step)

    # parameters: (callee name, index) -> the slot a function passed there binds to
    params: dict[tuple[str, int], set[str]] = {}
    for s in plan.slots:
        if s.kind == "param":
            owner_name = s.owner.split("::")[-1]
            idx = s.id.rsplit("#", 1)[-1]
            if idx.isdigit():
                params.setdefault((owner_name, int(idx)), set()).add(s.id)
    typedefs = {s.name: s.id for s in plan.slots if s.kind == "typedef"}
    if typedefs:
        for ff in facts.values():
            for fn in ff.functions:
                for i, p in enumerate(fn.params):
                    base = p.type.replace("*", " ").replace("const ", " ").split()
                    if base and base[0] in typedefs:
                        params.setdefault((fn.name, i), set()).add(typedefs[base[0]])

    for path in sorted(facts):
        ff = facts[path]
        for b in ff.bindings:
            fid = resolve(path, b.function)
            if fid is None:
                continue
            slots = set()
            if b.kind == "init" and b.owner:
                if f"member:{b.owner}.{b.member}" in sids:
                    slots.add(f"member:{b.owner}.{b.member}")
            elif b.kind in ("init", "assign"):  # struct unknown here: every changed member of that name
                slots.update(members.get(b.member, ()))
            elif b.kind == "arg" and b.member.isdigit():
                slots.update(params.get((b.owner, int(b.member)), ()))
            for sid in slots:
                uf.union(fid, sid)
        for call in ff.calls:
            if call.via != "direct":
                continue
            for i, arg in enumerate(call.args):
                targets = params.get((call.callee, i))
                if not targets:
                    continue
                name = _function_argument(arg)
                fid = resolve(path, name) if name else None
                bound: set[str] = {fid} if fid else set()
                m = _MEMBER_ARG.search(arg)
                if m and not fid:
                    bound.update(members.get(m.group(1), ()))  # a_ops->read_folio passed as a filler_t
                for x in bound:
                    for sid in targets:
                        uf.union(x, sid)


def group(plan: Plan, facts: dict[str, FileFacts], rules: Rules,
          sources: dict[str, bytes], helper: emitmod.HelperPlacement | None = None,
          root: Path | None = None) -> list[PatchPlan]:
    """The series' patches in order, each with the edits it carries; helper:
    where the helper is defined (emit.place_helper), its definition patch 1;
    root: the tree, for the declarations the new code needs (emit.declarations_needed)."""
    edits = emitmod.edits_for(plan, facts, rules, sources, root, helper)
    entities = [f.id for f in plan.functions] + [s.id for s in plan.slots]
    uf = _UnionFind()
    for e in entities:
        uf.add(e)
    _bindings(plan, facts, uf)
    # a header's static inline stub and the extern function of its name (graph
    # twins) change together, whichever of them the plan reached first
    for f in plan.functions:
        if "::" in f.id and f.id.split("::", 1)[0].endswith(".h") and f.name in uf.parent:
            uf.union(f.id, f.name)

    rewrite_at = {(r.file, r.start, r.end): r for r in plan.rewrites}
    site_at = {(c.file, _arg_offset(c, facts, rules)): c for c in plan.call_sites}

    # units: an entity component, or one movable rewrite
    g = nx.DiGraph()  # edge a -> b: a must land no later than b
    unit_edits: dict[str, list[tuple[str, emitmod.Edit]]] = {}
    unit_sites: dict[str, list[CallSite]] = {}
    unit_rewrites: dict[str, list[Rewrite]] = {}
    for path in sorted(edits):
        for e in edits[path]:
            rw = rewrite_at.get((path, e.start, e.end))
            if rw is not None:
                unit = f"rewrite:{path}:{e.start}"
                g.add_node(unit)
                if e.owner:
                    g.add_edge(uf.find(e.owner), unit)
                unit_rewrites.setdefault(unit, []).append(rw)
            else:
                unit = uf.find(e.owner) if e.owner else f"edit:{path}:{e.start}"
                g.add_node(unit)
                site = site_at.get((path, e.start)) if e.start == e.end else None
                if site is not None and site.callee == e.owner:
                    unit_sites.setdefault(unit, []).append(site)
                    if site.how == "parameter" and site.caller in uf.parent:
                        g.add_edge(uf.find(site.caller), unit)
            unit_edits.setdefault(unit, []).append((path, e))
    for e in entities:
        if uf.find(e) in g:
            g.nodes[uf.find(e)].setdefault("entities", []).append(e)
    g.remove_edges_from(nx.selfloop_edges(g))

    # cycles (mutual recursion through new parameters) become one unit
    cond = nx.condensation(g)
    members = cond.graph["mapping"]  # unit -> condensed node
    cnodes: dict[int, list[str]] = {}
    for unit, c in members.items():
        cnodes.setdefault(c, []).append(unit)

    def key_of(c: int) -> str:
        units = cnodes[c]
        subs = {subsystem(p) for u in units for p, _ in unit_edits.get(u, ())}
        subs = {s for s in subs if not s.startswith("include")} or subs
        if len(subs) <= 1:
            return next(iter(subs)) if subs else "."
        ents = sorted(e for u in units for e in g.nodes[u].get("entities", []))
        slots = [e for e in ents if e.startswith(("member:", "typedef:", "param:"))]
        return "core:" + (slots[0] if slots else _most_called(ents, plan))

    keys = {c: key_of(c) for c in cond.nodes}
    batches = _batches(cond, keys, {c: min(cnodes[c]) for c in cond.nodes})

    patches: list[PatchPlan] = []
    if helper is not None and helper.edit is not None:
        patches.append(PatchPlan("helper", edits={helper.header: [helper.edit]}, helper=True))
    for batch in batches:
        p = PatchPlan(keys[batch[0]])
        for c in batch:
            for unit in sorted(cnodes[c]):
                p.entities.extend(g.nodes[unit].get("entities", []))
                for path, e in unit_edits.get(unit, ()):
                    p.edits.setdefault(path, []).append(e)
                p.call_sites.extend(unit_sites.get(unit, ()))
                p.rewrites.extend(unit_rewrites.get(unit, ()))
        p.entities.sort()
        p.call_sites = sorted(set(p.call_sites), key=lambda c: (c.file, c.line, c.col, c.callee))
        p.rewrites.sort(key=lambda r: (r.file, r.start))
        patches.append(p)
    _assign_unresolved(plan, patches)
    _name(plan, rules, patches)
    return patches


def _batches(dag: nx.DiGraph, keys: dict, order: dict) -> list[list]:
    """A topological order of dag cut into batches of one key each: core keys
    ("core:...") one node a batch, as soon as they are ready; otherwise the
    subsystem whose ready nodes (and the nodes of the same subsystem they make
    ready) complete it, else the first by rank. Kahn's algorithm with a
    ready set per key."""
    pending = {c: dag.in_degree(c) for c in dag.nodes}
    ready: dict[str, set] = {}
    left = Counter(keys.values())
    for c in dag.nodes:
        if not pending[c]:
            ready.setdefault(keys[c], set()).add(c)

    def closure(key: str, commit: bool) -> list:
        got: list = []
        count = pending if commit else {}
        queue = sorted(ready.get(key, ()), key=order.get)
        while queue:
            c = queue.pop(0)
            got.append(c)
            for s in dag.successors(c):
                n = count.get(s, pending[s]) - 1
                count[s] = n
                if n == 0:
                    if keys[s] == key:
                        queue.append(s)
                    elif commit:
                        ready.setdefault(keys[s], set()).add(s)
        return got

    out: list[list] = []
    while any(ready.values()):
        cores = sorted(k for k, v in ready.items() if v and k.startswith("core:"))
        if cores:
            c = min(ready[cores[0]], key=order.get)
            ready[cores[0]].discard(c)
            for s in dag.successors(c):
                pending[s] -= 1
                if not pending[s]:
                    ready.setdefault(keys[s], set()).add(s)
            batch = [c]
        else:
            choices = sorted((k for k, v in ready.items() if v), key=_subsystem_rank)
            key = min(choices, key=lambda k: (len(closure(k, False)) < left[k], _subsystem_rank(k)))
            batch = closure(key, True)
            ready[key] = set()
        left.subtract(keys[c] for c in batch)
        out.append(batch)
    assert sum(len(b) for b in out) == dag.number_of_nodes(), "the dependency graph has a cycle"
    return out


def _arg_offset(c: CallSite, facts: dict[str, FileFacts], rules: Rules) -> int:
    """Where emit inserts the argument of call site c (as emit.edits_for does)."""
    if rules.plan is None or rules.plan.position == "first" or c.nargs == 0:
        return c.paren + 1
    ff = facts.get(c.file)
    return next((x.end - 1 for x in (ff.calls if ff else ()) if x.paren == c.paren), -1)


def _most_called(ents: list[str], plan: Plan) -> str:
    calls = Counter(c.callee for c in plan.call_sites)
    return max(ents, key=lambda e: (calls[e], -len(e), e)) if ents else "?"


def _subsystem_rank(key: str) -> tuple:
    top = key.split("/")[0]
    order = {"include": 0, "mm": 1, "fs": 2, "block": 3}
    return (key.count("/"), order.get(top, 9), key)


def _assign_unresolved(plan: Plan, patches: list[PatchPlan]) -> None:
    """Each unresolved chain goes to the patch that changes the entity it
    needed (a call passing NULL, a binding left behind), else to the last patch
    of its file's subsystem; the cover letter lists them all."""
    where = {e: p for p in patches for e in p.entities}
    for u in plan.unresolved:
        target = None
        for step in u.chain[:1]:
            nxt = step.next_node
            target = where.get(nxt) or where.get(step.node)
        if target is None:
            subs = [p for p in patches if p.key == subsystem(u.file)]
            target = subs[-1] if subs else None
        if target is not None:
            target.unresolved.append(u)


def _display(entity: str) -> str:
    if entity.startswith("member:"):
        return "->" + entity.rsplit(".", 1)[-1] + "()"
    if entity.startswith("typedef:"):
        return entity.split(":", 1)[1] + " callbacks"
    if entity.startswith("param:"):
        return entity.split(":", 1)[1].split("::")[-1] + " callbacks"
    return entity.split("::")[-1] + "()"


def _names(items: list[str], limit: int = 2) -> str:
    if len(items) <= limit + 1:
        return " and ".join([", ".join(items[:-1]), items[-1]]) if len(items) > 1 else items[0]
    return f"{', '.join(items[:limit])} and {len(items) - limit} more"


SUBJECT = 72  # a subject's length at most, where names allow (git log --oneline, checkpatch)


def _short(prefix: str, names: list[str]) -> str:
    """prefix + as many of names as keep the subject within SUBJECT ("f(),
    g() and 3 more"); at least one."""
    for limit in (2, 1):
        text = prefix + _names(names, limit)
        if len(text) <= SUBJECT:
            return text
    return prefix + (f"{names[0]} and {len(names) - 1} more" if len(names) > 1 else names[0])


def _name(plan: Plan, rules: Rules, patches: list[PatchPlan]) -> None:
    pr = rules.plan
    assert pr is not None
    used: Counter = Counter()
    for p in patches:
        if p.helper:
            header = next(iter(p.edits))
            p.subject = f"{Path(header).stem}: add {pr.helper_page}() and {pr.helper_folio}()"
        elif p.key.startswith("core:"):
            slots = [e for e in p.entities if e.startswith(("member:", "typedef:", "param:"))]
            main = slots or [p.key.split(":", 1)[1]]
            tag = _core_tag(p, main)
            p.subject = _short(f"{tag}: pass the mapping to ", [_display(e) for e in main])
        else:
            tag = _tag(p.key)
            if p.key.startswith("include"):  # static inlines of headers: name the header
                stems = sorted({Path(f).stem for f in p.files})
                tag = stems[0] if len(stems) == 1 else "include"
            funcs = [e for e in p.entities if not e.startswith(("member:", "typedef:", "param:"))]
            if funcs:
                p.subject = _short(f"{tag}: pass the mapping down to ", [_display(e) for e in funcs])
            else:
                helpers = sorted({r.to.split("(", 1)[0] for r in p.rewrites}) or [pr.helper_page]
                p.subject = f"{tag}: use {_names([h + '()' for h in helpers])} where the mapping is known"
        used[p.subject] += 1
    seen: Counter = Counter()
    for p in patches:
        if used[p.subject] > 1:
            seen[p.subject] += 1
            p.subject = f"{p.subject} (part {seen[p.subject]})"


def _core_tag(p: PatchPlan, main: list[str]) -> str:
    calls = Counter(subsystem(c.file).split("/")[0] for c in p.call_sites
                    if c.callee in main and not c.file.startswith("include/"))
    if calls:
        return max(sorted(calls), key=lambda k: calls[k])
    decls = [f for f in p.files if f.startswith("include/")]
    if decls:
        return Path(decls[0]).stem
    return _tag(subsystem(p.files[0])) if p.files else "treewide"


# --------------------------------------------------------------------------
# texts, diffs, messages
# --------------------------------------------------------------------------

def _blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _git_diff(texts: dict[str, tuple[bytes, bytes]], modes: dict[str, str]) -> str:
    out = []
    for path in sorted(texts):
        old, new = texts[path]
        if old == new:
            continue
        out.append(f"diff --git a/{path} b/{path}\n"
                   f"index {_blob_id(old)}..{_blob_id(new)} {modes.get(path, '100644')}\n"
                   + emitmod.file_diff(path, old, new))
    return "".join(out)


def diffstat(diff: str) -> str:
    """git's --stat: one line per file, then the totals."""
    stats: list[list] = []
    for line in diff.splitlines():
        if line.startswith("diff --git "):
            stats.append([line.split(" b/", 1)[1], 0, 0])
        elif stats and line.startswith("+") and not line.startswith("+++ "):
            stats[-1][1] += 1
        elif stats and line.startswith("-") and not line.startswith("--- "):
            stats[-1][2] += 1
    if not stats:
        return " 0 files changed\n"
    width = max(len(s[0]) for s in stats)
    most = max(s[1] + s[2] for s in stats)
    digits = len(str(most))
    room = max(10, 72 - width - digits - 4)
    scale = min(1.0, room / most) if most else 1.0
    lines = []
    for name, add, rem in stats:
        plus = max(1, round(add * scale)) if add else 0
        minus = max(1, round(rem * scale)) if rem else 0
        lines.append(f" {name.ljust(width)} | {str(add + rem).rjust(digits)} {'+' * plus}{'-' * minus}")
    adds, rems = sum(s[1] for s in stats), sum(s[2] for s in stats)
    total = f" {len(stats)} file{'s' if len(stats) != 1 else ''} changed"
    if adds:
        total += f", {adds} insertion{'s' if adds != 1 else ''}(+)"
    if rems:
        total += f", {rems} deletion{'s' if rems != 1 else ''}(-)"
    return "\n".join(lines) + "\n" + total + "\n"


def chain_lines(chain: tuple[Step, ...], indent: str = "  ") -> list[str]:
    """A reason/chain as text, one step a line, ending in the read."""
    out = []
    for i, step in enumerate(chain):
        pad = indent + "  " * min(i, 1)
        if step.why == "reads":
            out.append(f"{pad}{step.node} reads {step.detail} ({step.file}:{step.line})")
        else:
            out.append(f"{pad}{step.node} {step.why} {step.detail} ({step.file}:{step.line})")
    return out


_HOW = {
    "parameter": "its own new parameter",
    "provider": "from its own parameters",
    "receiver": "the mapping whose operations it calls",
    "unresolved": "cannot supply it",
}


def _wrap(text: str) -> list[str]:
    return textwrap.wrap(text, WRAP, break_long_words=False, break_on_hyphens=False) or [""]


def fold(body: str, width: int = 75) -> str:
    """Lines of a commit message over checkpatch's 75 columns (list entries,
    chains) folded at spaces, the rest indented four more; Cc: and
    Signed-off-by: trailers are left whole."""
    out = []
    for line in body.split("\n"):
        if (len(line) <= width or line.startswith(("Cc: ", "Signed-off-by: ")) or " " not in line.strip()
                or re.match(r"\s+\d+/\d+ ", line)):  # (the cover letter's list of subjects)
            out.append(line)
            continue
        indent = line[:len(line) - len(line.lstrip())]
        out += textwrap.wrap(line.strip(), width, initial_indent=indent, subsequent_indent=indent + "    ",
                             break_long_words=False, break_on_hyphens=False)
    return "\n".join(out)


def _limited(items: list, limit: int = LIST_LIMIT) -> tuple[list, int]:
    return items[:limit], max(0, len(items) - limit)


def message(p: PatchPlan, plan: Plan, rules: Rules, cc: list[str]) -> str:
    """The commit message body (after the subject) for one patch."""
    pr = rules.plan
    assert pr is not None
    field_ = f"page->{rules.field}" if getattr(rules, "field", "") else "page->mapping"
    lines: list[str] = []
    if p.helper:
        lines += _wrap(
            f"Add {pr.helper_page}() and {pr.helper_folio}() to {next(iter(p.edits))}: the "
            f"{rules.field} a page belongs to, seen from the mapping the caller reached it "
            f"through. Once pages can be write protected, {field_} of a protected page "
            "points at the protection record; callers that know their mapping will pass "
            "it to these helpers instead of reading the field.")
        if pr.membership_page:
            lines.append("")
            lines += _wrap(f"Add {pr.membership_page}() and {pr.membership_folio}() as well: the "
                           "identity test (the truncation check `folio->mapping != mapping`) asks "
                           "whether a page belongs to a mapping, and a protected page belongs to "
                           "every owner of its record; reading the context there would make the "
                           "check fail forever.")
        lines.append("")
        lines += _wrap("Until pages can be write protected the helpers return the page's own "
                       "field, so nothing changes; the following patches pass the mapping "
                       "down to every reader and convert the reads. The helpers are unused "
                       "static inlines here, so this patch builds on its own.")
        s = plan.summary()
        lines.append("")
        lines += _wrap(f"Used by {s['rewrites']} reads in {len({r.file for r in plan.rewrites})} "
                       "files later in this series.")
    else:
        ents = p.entities
        slots = [e for e in ents if e.startswith(("member:", "typedef:", "param:"))]
        funcs = [e for e in ents if e not in slots]
        slot_by = {s.id: s for s in plan.slots}
        fn_by = {f.id: f for f in plan.functions}
        lines += _wrap(
            f"Once pages can be write protected, {field_} of a protected page no longer "
            "names the file's address_space, so code that knows the mapping it reached the "
            "page through must pass it down instead of reading the field.")
        lines.append("")
        what = []
        if slots:
            impl = [f for f in funcs if any(
                st.why in ("implements", "implemented-by") for st in fn_by[f].reason)]
            decl = pr.param_type + ("" if pr.param_type.endswith("*") else " ") + pr.param_name
            what.append(f"Add a `{decl}` parameter to "
                        f"{_names([slot_by[s].id.split(':', 1)[1] for s in slots])}"
                        + (f" and the functions bound to {'them' if len(slots) > 1 else 'it'}" if impl else "")
                        + ": a slot's signature, its implementations and every call through it "
                        "must change in one patch for the tree to build.")
        elif funcs:
            what.append(f"Add the mapping parameter to {len(funcs)} function"
                        f"{'s' if len(funcs) != 1 else ''} and pass it at their call sites.")
        if p.rewrites:
            what.append(f"Convert {len(p.rewrites)} read{'s' if len(p.rewrites) != 1 else ''} of "
                        f"{field_} to {pr.helper_page}()/{pr.helper_folio}() with the mapping "
                        "the function now has.")
        for w in what:
            lines += _wrap(w)
        if slots or funcs:
            lines += ["", "Gaining the parameter:"]
            shown, more = _limited(slots + funcs)
            for e in shown:
                if e in slot_by:
                    s = slot_by[e]
                    where = f" ({s.decls[0][0]}:{s.decls[0][1]})" if s.decls else ""
                    lines.append(f"  {e}{where}")
                else:
                    f = fn_by[e]
                    lines.append(f"  {f.name}() ({f.file}:{f.line})")
            if more:
                lines.append(f"  ... and {more} more")
            lines += ["", "Why (each chain ends in the read that needs the mapping):"]
            chains = sorted((slot_by[e].reason if e in slot_by else fn_by[e].reason for e in slots + funcs),
                            key=lambda ch: (-len(ch), ch[0].node if ch else ""))
            kept: list[tuple[Step, ...]] = []
            for ch in chains:  # a chain that ends another one adds nothing
                if ch and not any(k[len(k) - len(ch):] == ch for k in kept):
                    kept.append(ch)
            shown, more = _limited(kept, 12)
            for ch in shown:
                lines += chain_lines(ch)
            if more:
                lines.append(f"  ... and {more} more: `mappingpass explain FUNC` shows each")
        if p.call_sites:
            lines += ["", "Call sites pass:"]
            shown, more = _limited(p.call_sites)
            for c in shown:
                lines.append(f"  {c.file}:{c.line} {c.caller.split('::')[-1]}(): {c.argument}"
                             f" ({_HOW.get(c.how, c.how)})")
            if more:
                lines.append(f"  ... and {more} more")
        if p.rewrites:
            lines += ["", "Reads converted:"]
            shown, more = _limited(p.rewrites)
            for r in shown:
                lines.append(f"  {r.file}:{r.line} {r.function.split('::')[-1]}(): {r.from_} -> {r.to}")
            if more:
                lines.append(f"  ... and {more} more")
        if p.unresolved:
            lines += [""]
            lines += _wrap(f"Unresolved ({len(p.unresolved)}): these chains stop at a boundary; a "
                           f"call there passes {pr.unresolved_argument} (the helper then returns "
                           f"{field_} as today) or, for a function the plan cannot change, a "
                           "human must:")
            for u in p.unresolved:
                lines.append(f"  {u.file}:{u.line} {u.function.split('::')[-1]}: {u.reason}")
                lines += chain_lines(u.chain, "      ")
    lines += ["", f"Generated by mappingpass {__version__} from its plan ({plan.rules} rules)."]
    if cc:
        lines.append("")
        lines += [f"Cc: {addr}" for addr in cc]
    return "\n".join(lines) + "\n"


def cover_letter(plan: Plan, patches: list[PatchPlan], subjects: list[str], stat: str,
                 cc: list[str]) -> str:
    s = plan.summary()
    lines = _wrap("Pass the struct address_space (\"the mapping\") down to every function "
                  "that reads it from page->mapping today, so that pages can later be write "
                  "protected generically (page->mapping of a protected page points at the "
                  "protection record). The series is ordered so that every prefix builds: the "
                  "helper comes first, then each signature change that crosses subsystems "
                  "with all its implementations and callers, then one patch per subsystem.")
    lines += ["", "Plan summary:",
              f"  functions gaining the parameter: {s['functions']}",
              f"  slots gaining it: {s['slots']}",
              f"  call sites changed: {s['call_sites']}",
              f"  reads rewritten to the helper: {s['rewrites']} ({s['identity_rewrites']} identity tests "
              "become membership tests)",
              f"  kind-1 reads left as they are: {sum(s['kept_reads'].values())}"
              + "".join(f"\n    {k}: {n}" for k, n in s["kept_reads"].items()),
              f"  needs a human: {s['needs_human']}",
              f"  kind 2-5 reads left to run time: {s['runtime_reads']}",
              f"  files with edits of the plan: {s['files']}",
              f"  unresolved: {s['unresolved']}"]
    for reason, n in s["unresolved_by_reason"].items():
        lines.append(f"    {reason}: {n}")
    exported = sorted({f.name for f in plan.functions if f.exported})
    if exported:
        lines += [""] + _wrap(f"Interface changes: {len(exported)} exported function"
                              f"{'s' if len(exported) != 1 else ''} gain the mapping parameter "
                              "(in-kernel interfaces are not stable; out-of-tree callers must "
                              f"follow): {', '.join(exported)}.")
    human = plan.needs_human()
    if human:
        lines += ["", "Needs a human (the page's mapping is not decided; NULL is passed, today's behaviour):"]
        shown, more = _limited(human, 20)
        for k in shown:
            lines.append(f"  {k.file}:{k.line} {k.function.split('::')[-1]}: {k.expr}")
        if more:
            lines.append(f"  ... and {more} more")
    if plan.unresolved:
        lines += ["", "Unresolved chains (a boundary stops the propagation; see each patch):"]
        by_reason: dict[str, list[Unresolved]] = {}
        for u in plan.unresolved:
            by_reason.setdefault(u.reason, []).append(u)
        for reason, items in by_reason.items():
            lines.append(f"  {reason}:")
            shown, more = _limited(items, 20)
            for u in shown:
                lines.append(f"    {u.file}:{u.line} {u.function.split('::')[-1]}")
            if more:
                lines.append(f"    ... and {more} more")
        macro = sorted({u.file for u in plan.unresolved if u.reason == "macro-definition"})
        if macro:
            lines.append("")
            lines += _wrap("Known gap: a signature written by a macro is not changed by this "
                           "series; these files need a hand edit of the macro to build once "
                           f"the slot they implement changes: {', '.join(macro)}.")
    lines += ["", "Patches:"]
    for i, subj in enumerate(subjects, 1):
        lines.append(f"  {i}/{len(subjects)} {subj}")
    lines += ["", f"Generated by mappingpass {__version__}."]
    if cc:
        lines.append("")
        lines += [f"Cc: {addr}" for addr in cc]
    return "\n".join(lines) + "\n\n---\n" + stat


def _email(sha: str, author: str, date: datetime, subject: str, body: str, stat: str, diff: str) -> str:
    name, addr = email.utils.parseaddr(author)
    sender = email.utils.formataddr((name, addr), charset="utf-8")
    head = (f"From {sha} Mon Sep 17 00:00:00 2001\n"
            f"From: {sender}\n"
            f"Date: {email.utils.format_datetime(date)}\n"
            f"Subject: {subject}\n"
            "MIME-Version: 1.0\n"
            "Content-Type: text/plain; charset=UTF-8\n"
            "Content-Transfer-Encoding: 8bit\n\n")
    if diff:
        return f"{head}{body}---\n{stat}\n{diff}-- \nmappingpass {__version__}\n\n"
    return f"{head}{body}-- \nmappingpass {__version__}\n\n"


def _slug(subject: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9._]+", "-", subject).strip("-.")
    return slug[:52].rstrip("-.") or "patch"


@dataclass
class Series:
    """The series in memory: patches with their subjects, messages and diffs."""

    patches: list[PatchPlan]
    subjects: list[str]
    messages: list[str]
    diffs: list[str]
    cover: str
    final: dict[str, tuple[bytes, bytes]]  # path -> (old, new), as emit.new_texts gives
    notes: list[str] = field(default_factory=list)  # where the series had to differ from emit --diff


def build_series(plan: Plan, facts: dict[str, FileFacts], rules: Rules, root: Path,
                 digests: dict[str, str], maintainers: Path | None = None,
                 progress: ProgressFactory | None = None) -> Series:
    """Group the plan's edits into patches and render every message and diff.
    maintainers: a MAINTAINERS file; None uses the tree's own when present.
    progress: label -> a (done, total) callback, for the diffs and the
    get_maintainer.pl runs (each can take tens of seconds on a whole tree)."""
    diffs_done = progress("emit --series: diffs") if progress else None
    cc_done = progress("emit --series: get_maintainer.pl") if progress else None
    pr = rules.plan
    if pr is None:
        raise emitmod.EmitError(f"{rules.path}: no [plan] section; nothing to emit")
    sources = emitmod.read_sources(plan, root, digests, rules)
    helper = emitmod.place_helper(plan, facts, rules, root, sources)
    patches = group(plan, facts, rules, sources, helper, root)
    if maintainers is None and (root / "MAINTAINERS").is_file():
        maintainers = root / "MAINTAINERS"
    sections = parse_maintainers(maintainers) if maintainers is not None else []

    modes = {}
    for path in sources:
        try:
            modes[path] = "100755" if os.access(root / path, os.X_OK) else "100644"
        except OSError:
            modes[path] = "100644"
    current = dict(sources)
    applied: dict[str, list[emitmod.Edit]] = {}
    diffs: list[str] = []
    for p in patches:
        texts = {}
        for path in sorted(p.edits):
            applied.setdefault(path, []).extend(p.edits[path])
            new = emitmod.apply_wrapped(sources[path], applied[path], path)
            texts[path] = (current[path], new)
            current[path] = new
        diffs.append(_git_diff(texts, modes))
        if diffs_done:
            diffs_done(len(diffs), len(patches))
    final = {p: (sources[p], current[p]) for p in sources if current[p] != sources[p]}
    expected = emitmod.new_texts(plan, facts, rules, root, digests)
    bad = sorted(p for p in set(final) | set(expected) if final.get(p) != expected.get(p))
    if bad:
        raise emitmod.EmitError(f"series: the last patch differs from emit --diff in {', '.join(bad[:5])}")
    notes = [f"the helper is defined in {helper.header}: {helper.why}"] if helper and helper.why else []
    kept = [(p, d) for p, d in zip(patches, diffs, strict=True) if d]
    patches, diffs = [p for p, _ in kept], [d for _, d in kept]
    subjects = [p.subject for p in patches]
    ccs = maintainers_cc(root, maintainers, sections, list(zip([p.files for p in patches], diffs, strict=True)),
                         cc_done)
    messages = [fold(message(p, plan, rules, cc)) for p, cc in zip(patches, ccs, strict=True)]
    all_cc: list[str] = []
    for cc in ccs:
        all_cc += [a for a in cc if a not in all_cc]
    stat = diffstat(_git_diff(final, modes))
    cover = fold(cover_letter(plan, patches, subjects, stat, all_cc))
    return Series(patches, subjects, messages, diffs, cover, final, notes)


def write_series(plan: Plan, facts: dict[str, FileFacts], rules: Rules, root: Path,
                 digests: dict[str, str], outdir: Path, maintainers: Path | None = None,
                 *, author: str, signoff: bool = True, date: datetime | None = None,
                 quiet: bool = False, progress: ProgressFactory | None = None) -> list[Path]:
    """Write the series as `git format-patch -o outdir --cover-letter` would:
    0000-cover-letter.patch, then 0001-<subject>.patch ... in order, and a
    manifest of them (MANIFEST): the patches of an earlier run it names are
    removed (a shorter re-run leaves no stale patch), a file it does not name
    is never replaced. Returns the paths written, cover letter first.

    author: "Name <email>", the From: of every patch and, with signoff, its
    Signed-off-by: (the CLI takes it from --author or the user's git
    identity); date: default $SOURCE_DATE_EPOCH, else now (one date for the
    whole series). Notes on where the helper went go to stderr unless quiet."""
    if maintainers is not None and not maintainers.is_file():
        raise emitmod.EmitError(f"{maintainers}: no such MAINTAINERS file")
    series = build_series(plan, facts, rules, root, digests, maintainers, progress)
    if not quiet:
        for note in series.notes:
            print(f"emit --series: note: {note}", file=sys.stderr)
    name, addr = email.utils.parseaddr(author)
    if not (name and "@" in addr):
        raise emitmod.EmitError(f"author {author!r}: give it as 'Name <email>'")
    if date is None:
        epoch = os.environ.get("SOURCE_DATE_EPOCH")
        date = (datetime.fromtimestamp(int(epoch), UTC) if epoch and epoch.isdigit()
                else datetime.now(UTC).replace(microsecond=0))
    n = len(series.patches)
    files = [("0000-cover-letter.patch", _email("0" * 40, author, date,
                                                f"[PATCH 0/{n}] pass the mapping down instead of reading "
                                                f"page->{rules.field}", series.cover + "\n", "", ""))]
    for i, (subject, body, diff) in enumerate(zip(series.subjects, series.messages, series.diffs,
                                                  strict=True), 1):
        sha = hashlib.sha1(f"{subject}\n{diff}".encode("utf-8", "surrogateescape")).hexdigest()
        if signoff:  # in the trailer block, after the Cc: lines
            last = body.rstrip("\n").rsplit("\n", 1)[-1]
            body = body.rstrip("\n") + ("\n" if last.startswith("Cc: ") else "\n\n") + f"Signed-off-by: {author}\n"
        files.append((f"{i:04d}-{_slug(subject)}.patch",
                      _email(sha, author, date, f"[PATCH {i}/{n}] {subject}", body, diffstat(diff), diff)))
    return _write_files(make_dir(outdir), files)


MANIFEST = ".mappingpass-series"  # in a series directory: the files emit wrote there


def _write_files(outdir: Path, files: list[tuple[str, str]]) -> list[Path]:
    """Write the series' files; remove those of an earlier series the
    manifest names and this one does not (a shorter re-run leaves no stale
    patch); refuse to replace a file mappingpass did not write."""
    ours = _manifest(outdir)
    names = [name for name, _ in files]
    theirs = sorted(n for n in names if n not in ours and os.path.lexists(outdir / n))
    if theirs:
        raise emitmod.EmitError(f"{outdir / theirs[0]}: exists and mappingpass did not write it; give an empty "
                                "or new directory (or move the file)")
    written = []
    for name, text in files:
        write_atomic(outdir / name, text)
        written.append(outdir / name)
    for stale in sorted(set(ours) - set(names)):
        (outdir / stale).unlink(missing_ok=True)
    write_atomic(outdir / MANIFEST, "".join(f"{n}\n" for n in names))
    return written


def _manifest(outdir: Path) -> set[str]:
    """The file names an earlier run wrote into outdir (plain patch names only:
    a manifest is never a way to delete anything else)."""
    try:
        text = (outdir / MANIFEST).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    return {n for n in text.split("\n") if re.fullmatch(r"\d{4}-[A-Za-z0-9._-]+\.patch", n)}
