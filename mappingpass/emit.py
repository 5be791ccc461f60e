"""The emit stage (diff part): our own rewriter from a plan to new file texts.

Edits are byte-offset insertions and replacements taken from the plan and the
index's facts (parameter-list spans, call parentheses, read spans); they are
applied to the original bytes from the end of the file backwards, so that no
edit moves another. The result is a set of new file contents, a unified diff
(`git apply` form, `a/` and `b/` prefixes), or an atomic in-place apply.
"""

from __future__ import annotations

import difflib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .facts import FileFacts
from .plan import Plan
from .rules import Rules


class EmitError(Exception):
    """The tree changed since analyze, or an edit does not fit the text."""


@dataclass(frozen=True)
class Edit:
    start: int
    end: int  # == start for an insertion
    text: str
    why: str
    # the plan entity whose change needs this edit (a function or slot id, or
    # "" for a rewrite that only uses a provider): edits with the same owner
    # must land in the same commit for every prefix of a series to build
    owner: str = ""


def _param_edit(span: tuple[int, int], source: bytes, decl: str, position: str, why: str,
                owner: str) -> Edit:
    lo, hi = span
    inside = source[lo + 1:hi - 1]
    if not inside.strip() or inside.strip() == b"void":
        return Edit(lo + 1, hi - 1, decl, why, owner)
    if position == "first":
        return Edit(lo + 1, lo + 1, decl + _sep(source, lo + 1), why, owner)
    return Edit(hi - 1, hi - 1, ", " + decl, why, owner)


def _sep(source: bytes, at: int) -> str:
    """", " before what follows on the line, "," before a line break (no
    trailing blank for checkpatch)."""
    return "," if source[at:at + 1] in (b"\n", b"\r") else ", "


def _arg_edit(paren: int, nargs: int, end_paren: int | None, arg: str, position: str,
              owner: str, source: bytes) -> Edit:
    why = f"argument for {owner}"
    if nargs == 0:
        return Edit(paren + 1, paren + 1, arg, why, owner)
    if position == "first":
        return Edit(paren + 1, paren + 1, arg + _sep(source, paren + 1), why, owner)
    assert end_paren is not None
    return Edit(end_paren, end_paren, ", " + arg, why, owner)


def edits_for(plan: Plan, facts: dict[str, FileFacts], rules: Rules,
              sources: dict[str, bytes]) -> dict[str, list[Edit]]:
    pr = rules.plan
    assert pr is not None
    out: dict[str, list[Edit]] = {}

    def add(path: str, edit: Edit) -> None:
        out.setdefault(path, []).append(edit)

    decl_type = pr.param_type
    sep = "" if decl_type.endswith("*") else " "
    for f in plan.functions:
        decl = f"{decl_type}{sep}{f.param_name}"
        places = {(p, line) for p, line in f.bodies} | {(p, line) for p, line in f.prototypes}
        for path, line in sorted(places):
            ff = facts.get(path)
            if ff is None:
                continue
            for fn in ff.functions:
                if fn.name == f.name and fn.line == line and fn.params_span[0] >= 0:
                    add(path, _param_edit(fn.params_span, sources[path], decl, pr.position,
                                          f"parameter of {f.id}", f.id))
    for s in plan.slots:
        if s.kind == "param":
            continue  # the owning function's parameter type is a function pointer: follows its typedef
        for path, line in s.decls:
            ff = facts.get(path)
            if ff is None:
                continue
            for slot in ff.slots:
                if slot.name == s.name and slot.line == line and slot.params_span[0] >= 0:
                    decl = f"{decl_type}{sep}{pr.param_name}"
                    add(path, _param_edit(slot.params_span, sources[path], decl, pr.position,
                                          f"parameter of {s.id}", s.id))
    for c in plan.call_sites:
        end_paren = None
        if pr.position == "last":
            ff = facts[c.file]
            end_paren = next(x.end - 1 for x in ff.calls if x.paren == c.paren)
        add(c.file, _arg_edit(c.paren, c.nargs, end_paren, c.argument, pr.position, c.callee,
                              sources[c.file]))
    gains = {f.id for f in plan.functions}
    for r in plan.rewrites:
        add(r.file, Edit(r.start, r.end, r.to, f"read in {r.function}",
                         r.function if r.function in gains else ""))
    return out


def apply_edits(source: bytes, edits: list[Edit], path: str) -> bytes:
    text = bytearray(source)
    # from the end backwards; at one offset a replacement goes before an insertion
    ordered = sorted(set(edits), key=lambda e: (e.start, e.end != e.start, e.end), reverse=True)
    last_start = len(source) + 1
    for e in ordered:
        if e.end > last_start and e.end != e.start:
            raise EmitError(f"{path}: overlapping edits at byte {e.start} ({e.why})")
        text[e.start:e.end] = e.text.encode()
        last_start = e.start
    return bytes(text)


def _helper_edit(rules: Rules, original: bytes, source: bytes) -> bytes:
    """Add the helper's definition to its header, before the include guard's
    #endif, unless the original header already defines it (a re-run on a
    patched tree); calls of it that the plan adds to the header do not count."""
    pr = rules.plan
    defined = re.compile(rb"\b" + re.escape(pr.helper_page.encode()) + rb"\s*\(\s*struct\b[^;{]*\)\s*\{")
    if defined.search(original):
        return source
    definition = pr.helper_definition.strip("\n") + "\n"
    m = list(re.finditer(rb"^#endif[^\n]*\n?\Z", source, re.M))
    at = m[-1].start() if m else len(source)
    # the header's own rewritten reads call it (the kernel's pagemap.h does):
    # define it before the first call, after the last #include above it
    calls = [source.find(name.encode() + b"(") for name in (pr.helper_page, pr.helper_folio)]
    first = min((c for c in calls if c >= 0), default=at)
    if first < at:
        includes = list(re.finditer(rb"^[ \t]*#[ \t]*include[^\n]*\n", source[:first], re.M))
        at = includes[-1].end() if includes else source.rfind(b"\n", 0, first) + 1
        return source[:at] + b"\n" + definition.encode() + source[at:]
    return source[:at] + b"\n" + definition.encode() + b"\n" + source[at:]


def read_sources(plan: Plan, root: Path, digests: dict[str, str]) -> dict[str, bytes]:
    """The original bytes of every file the plan names; a file whose content
    changed since analyze (its digest differs) stops emit before anything is written."""
    from .index import digest_of

    paths = {c.file for c in plan.call_sites} | {r.file for r in plan.rewrites}
    paths |= {p for f in plan.functions for p, _ in (*f.bodies, *f.prototypes)}
    paths |= {p for s in plan.slots for p, _ in s.decls}
    sources: dict[str, bytes] = {}
    for path in sorted(paths):
        try:
            data = (root / path).read_bytes()
        except OSError as exc:
            raise EmitError(f"{root / path}: cannot read ({exc.strerror}); re-run analyze") from None
        if digests.get(path) and digest_of(data) != digests[path]:
            raise EmitError(f"{root / path}: changed since analyze; re-run 'mappingpass analyze'")
        sources[path] = data
    return sources


def new_texts(plan: Plan, facts: dict[str, FileFacts], rules: Rules, root: Path,
              digests: dict[str, str]) -> dict[str, tuple[bytes, bytes]]:
    """path -> (old bytes, new bytes) for every file the plan changes."""
    sources = read_sources(plan, root, digests)
    result: dict[str, tuple[bytes, bytes]] = {}
    for path, edits in edits_for(plan, facts, rules, sources).items():
        new = apply_edits(sources[path], edits, path)
        result[path] = (sources[path], new)
    header = rules.plan.helper_header
    if header and (plan.rewrites or plan.functions) and (root / header).is_file():
        old = result.get(header, (None, None))[0] or (root / header).read_bytes()
        current = result.get(header, (old, old))[1]
        result[header] = (old, _helper_edit(rules, old, current))
    return {p: v for p, v in result.items() if v[0] != v[1]}


def _range(start: int, length: int) -> str:
    """A hunk range as unified diffs write it (difflib's convention)."""
    first = start + 1
    if length == 1:
        return f"{first}"
    if not length:
        first -= 1
    return f"{first},{length}"


def _grouped(ops: list[tuple], n: int) -> list[list[tuple]]:
    """Opcodes cut into hunks with n lines of context (SequenceMatcher.get_grouped_opcodes)."""
    if not ops:
        ops = [("equal", 0, 1, 0, 1)]
    if ops[0][0] == "equal":
        tag, i1, i2, j1, j2 = ops[0]
        ops[0] = tag, max(i1, i2 - n), i2, max(j1, j2 - n), j2
    if ops[-1][0] == "equal":
        tag, i1, i2, j1, j2 = ops[-1]
        ops[-1] = tag, i1, min(i2, i1 + n), j1, min(j2, j1 + n)
    nn = n + n
    groups, group = [], []
    for tag, i1, i2, j1, j2 in ops:
        if tag == "equal" and i2 - i1 > nn:
            group.append((tag, i1, min(i2, i1 + n), j1, min(j2, j1 + n)))
            groups.append(group)
            group = []
            i1, j1 = max(i1, i2 - n), max(j1, j2 - n)
        group.append((tag, i1, i2, j1, j2))
    if group and not (len(group) == 1 and group[0][0] == "equal"):
        groups.append(group)
    return groups


def file_diff(path: str, old: bytes, new: bytes) -> str:
    """One file's unified diff, minimal: difflib's matcher without its
    "popular line" heuristic (which treats `{` and blank lines of a long file
    as junk and rewrites them needlessly)."""
    a = old.decode("utf-8", "surrogateescape").splitlines(keepends=True)
    b = new.decode("utf-8", "surrogateescape").splitlines(keepends=True)
    out = [f"--- a/{path}\n", f"+++ b/{path}\n"]

    def line(prefix: str, text: str) -> None:
        out.append(prefix + text if text.endswith("\n") else prefix + text + "\n\\ No newline at end of file\n")

    if len(a) == len(b):
        # the usual case: every edit stays inside its lines (parameters,
        # arguments, reads); a line-by-line comparison is the minimal diff and
        # is linear, where the matcher is slow on long files
        ops, i = [], 0
        while i < len(a):
            j = i
            same = a[i] == b[i]
            while j < len(a) and (a[j] == b[j]) == same:
                j += 1
            ops.append(("equal" if same else "replace", i, j, i, j))
            i = j
    else:
        ops = difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes()
    for group in _grouped(ops, 3):
        i1, i2, j1, j2 = group[0][1], group[-1][2], group[0][3], group[-1][4]
        out.append(f"@@ -{_range(i1, i2 - i1)} +{_range(j1, j2 - j1)} @@\n")
        for tag, x1, x2, y1, y2 in group:
            if tag == "equal":
                for t in a[x1:x2]:
                    line(" ", t)
                continue
            for t in a[x1:x2]:
                line("-", t)
            for t in b[y1:y2]:
                line("+", t)
    return "".join(out)


def unified_diff(texts: dict[str, tuple[bytes, bytes]]) -> str:
    """The changes as one `git apply`-able diff (`diff --git` headers, file_diff hunks)."""
    return "".join(f"diff --git a/{path} b/{path}\n" + file_diff(path, old, new)
                   for path, (old, new) in sorted(texts.items()) if old != new)


def apply_atomically(root: Path, texts: dict[str, tuple[bytes, bytes]]) -> None:
    """Write every file or none: all new contents go to temporary files first,
    then each is renamed over its original (rename is atomic per file); if a
    rename fails, the files already replaced are restored."""
    staged: list[tuple[Path, str]] = []
    try:
        for path, (_old, new) in sorted(texts.items()):
            target = root / path
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".mp")
            with os.fdopen(fd, "wb") as fh:
                fh.write(new)
            os.chmod(tmp, target.stat().st_mode & 0o7777)
            staged.append((target, tmp))
    except OSError as exc:
        for _, tmp in staged:
            os.unlink(tmp)
        raise EmitError(f"cannot write to the tree ({exc}); nothing was changed") from None
    done: list[Path] = []
    try:
        for target, tmp in staged:
            os.replace(tmp, target)
            done.append(target)
    except OSError as exc:
        for target in done:
            rel = str(target.relative_to(root))
            target.write_bytes(texts[rel][0])
        for _target, tmp in staged[len(done):]:
            if os.path.exists(tmp):
                os.unlink(tmp)
        raise EmitError(f"cannot replace {target} ({exc}); the tree was restored") from None
