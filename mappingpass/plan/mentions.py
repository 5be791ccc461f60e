"""What the index cannot see: mentions of the plan's names in text the
facts do not account for (a macro body, code the parser could not read, a
file outside the analysed paths), and the names whose files plan must parse
on demand."""

from __future__ import annotations

import re
from collections import Counter

from .. import types
from ..facts import FileFacts
from ..graph import Analysis, function_argument
from ..rules import Rules
from .records import Plan

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
