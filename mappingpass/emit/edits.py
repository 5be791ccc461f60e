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

from ..errors import UserError
from ..facts import FileFacts
from ..index import digest_of, inside_tree
from ..plan import Plan
from ..rules import Rules
from .wrap import rewrap_edited


class EmitError(UserError):
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
              sources: dict[str, bytes], root: Path | None = None,
              helper: HelperPlacement | None = None) -> dict[str, list[Edit]]:
    """The edits of every file the plan changes; given the tree's root, also the
    declarations the new code needs where a file cannot see them (see
    declarations_needed), with the helper where `helper` (else place_helper)
    puts it. The helper's own definition is not among them (helper.edit)."""
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
    if root is not None:
        helper = helper or place_helper(plan, facts, rules, root, sources)
        for d in declarations_needed(rules, root, sources, out, helper.header if helper else ""):
            add(d.path, Edit(d.offset, d.offset, d.line + "\n", d.why, d.owner))
    return out


def for_spatch(plan: Plan, facts: dict[str, FileFacts], rules: Rules, root: Path,
               digests: dict[str, str]) -> tuple[list[Declaration], HelperPlacement | None]:
    """What the semantic patch needs of emit: the declarations emit adds for
    this plan, and where the helper is defined."""
    sources = read_sources(plan, root, digests, rules)
    helper = place_helper(plan, facts, rules, root, sources)
    decls = declarations_needed(rules, root, sources, edits_for(plan, facts, rules, sources),
                                helper.header if helper else "")
    return decls, helper


@dataclass(frozen=True)
class Declaration:
    """A line the new code of a file needs before it: `struct address_space;`
    in a header whose prototypes gain the parameter but that sees no
    declaration of the struct, or `#include <linux/pagemap.h>` in a file that
    calls the helper but does not include its header. It goes right after
    `anchor` (the last #include before the first edit, else the include
    guard's #define), where the semantic patch puts it too."""

    path: str
    anchor: str
    line: str
    offset: int
    why: str
    owner: str


_INCLUDE = re.compile(rb'^[ \t]*#[ \t]*include[ \t]*([<"])([^>"\n]+)[>"]', re.M)
_ANCHOR = re.compile(rb'^(#include [<"][^>"\n]+[>"]|#define \w+)[ \t]*\n', re.M)


class _Includes:
    """What a file includes, transitively, resolved the way an x86 build
    resolves it (include/, arch/x86/include/, their uapi/, and the file's own
    directory for "..."); conditional includes count."""

    def __init__(self, root: Path, sources: dict[str, bytes]) -> None:
        self.root = root
        self.sources = sources
        self.direct: dict[str, list[str]] = {}
        self.texts: dict[str, bytes] = {}

    def text(self, path: str) -> bytes:
        if path not in self.texts:
            try:
                self.texts[path] = self.sources.get(path) or (self.root / path).read_bytes()
            except OSError:
                self.texts[path] = b""
        return self.texts[path]

    def includes(self, path: str) -> list[str]:
        if path not in self.direct:
            out = []
            here = os.path.dirname(path)
            for kind, name in _INCLUDE.findall(self.text(path)):
                name = name.decode("utf-8", "replace")
                cands = ([os.path.normpath(os.path.join(here, name))] if kind == b'"' else [])
                cands += [f"{d}/{name}" for d in ("include", "arch/x86/include", "include/uapi",
                                                  "arch/x86/include/uapi")]
                found = next((c for c in cands if (self.root / c).is_file()), None)
                if found is not None:
                    out.append(found)
            self.direct[path] = out
        return self.direct[path]

    def closure(self, path: str) -> set[str]:
        seen, todo = {path}, [path]
        while todo:
            for inc in self.includes(todo.pop()):
                if inc not in seen:
                    seen.add(inc)
                    todo.append(inc)
        return seen


def declarations_needed(rules: Rules, root: Path, sources: dict[str, bytes],
                        edits: dict[str, list[Edit]], header: str) -> list[Declaration]:
    """header: where the helper is defined (HelperPlacement.header), "" for nowhere."""
    pr = rules.plan
    inc = _Includes(root, sources)
    out: list[Declaration] = []
    m = re.match(r"(struct|union)\s+(\w+)", pr.param_type)
    declares = (re.compile(rb"\b" + m.group(1).encode() + rb"\s+" + m.group(2).encode()
                           + rb"\s*(?:;|\{|\*\s*\w+\s*[;,=\[])") if m else None)
    # (place_helper chose a header no caller of the helper is included by)
    for path in sorted(edits):
        source = sources[path]
        params = [e for e in edits[path] if e.why.startswith("parameter of")]
        reads = [e for e in edits[path] if e.why.startswith("read in")]
        if not (params or reads):
            continue
        sees = inc.closure(path)
        wanted = []
        if declares is not None and path.endswith(".h") and params:
            first = min(params, key=lambda e: e.start)
            if not declares.search(source[:first.start]) and not any(
                    declares.search(inc.text(h)) for h in sees - {path}):
                wanted.append((first, f"{m.group(0)};", f"declare {m.group(0)} for {first.owner}"))
        if header and reads and header not in sees:
            first = min(reads, key=lambda e: e.start)
            name = header.removeprefix("include/")
            wanted.append((first, f"#include <{name}>", f"the helper for {first.why.removeprefix('read in ')}"))
        for first, line, why in wanted:
            anchors = list(_ANCHOR.finditer(source[:first.start]))
            includes = [a for a in anchors if a.group(1).startswith(b"#include")]
            a = includes[-1] if includes else anchors[0] if anchors else None  # else the guard's #define
            if a is not None:
                out.append(Declaration(path, a.group(1).decode(), line, a.end(), why, first.owner))
    return out


def apply_wrapped(source: bytes, edits: list[Edit], path: str) -> bytes:
    """apply_edits, then the lines the edits made too long re-wrapped in
    kernel style (wrap.rewrap_edited): what emit writes."""
    return rewrap_edited(source, apply_edits(source, edits, path), [(e.start, e.end, e.text) for e in edits])


def apply_edits(source: bytes, edits: list[Edit], path: str) -> bytes:
    text = bytearray(source)
    # from the end backwards; at one offset a replacement goes before an insertion
    # (several insertions at one offset keep their order in `edits`)
    unique = list(dict.fromkeys(edits))
    ordered = sorted(range(len(unique)), reverse=True,
                     key=lambda i: (unique[i].start, unique[i].end != unique[i].start, unique[i].end, i))
    last_start = len(source) + 1
    for e in (unique[i] for i in ordered):
        if e.end > last_start and e.end != e.start:
            raise EmitError(f"{path}: overlapping edits at byte {e.start} ({e.why})")
        text[e.start:e.end] = e.text.encode()
        last_start = e.start
    return bytes(text)


@dataclass(frozen=True)
class HelperPlacement:
    """Where the helper is defined: `header`, the first of the rules' homes
    (`[plan.helper] header`, then `fallback_headers`) that every file calling
    it already sees or may include without a cycle; `edit` adds the
    definition (None when the header defines it already: a re-run on a
    patched tree); `why` says why the preferred header was passed over."""

    header: str
    edit: Edit | None
    why: str = ""
    # the function the definition goes before when the header's own reads
    # call it ("": before the include guard's #endif)
    before: str = ""


def place_helper(plan: Plan, facts: dict[str, FileFacts], rules: Rules, root: Path,
                 sources: dict[str, bytes]) -> HelperPlacement | None:
    """The helper's home for this plan, from the include graph; None when the
    plan changes nothing or the rules name no header present in the tree."""
    pr = rules.plan
    assert pr is not None
    if not (pr.helper_header and pr.helper_definition.strip() and (plan.rewrites or plan.functions)):
        return None
    inc = _Includes(root, sources)
    users = sorted({r.file for r in plan.rewrites})
    passed_over: list[str] = []
    for home in (pr.helper_header, *pr.helper_fallback_headers):
        if not (root / home).is_file():
            continue
        below = inc.closure(home)
        # a caller the home includes cannot include it back
        stuck = [u for u in users if u in below and home not in inc.closure(u)]
        if not stuck:
            text = inc.text(home)
            uses = sorted(r.start for r in plan.rewrites if r.file == home)
            fn = _enclosing(facts.get(home), uses[0]) if uses else None
            edit = helper_definition_edit(rules, text, _above_comment(text, fn.start) if fn else None)
            before = fn.name if fn is not None and edit is not None else ""
            return HelperPlacement(home, edit, "; ".join(passed_over), before)
        passed_over.append(f"{home} includes {stuck[0]}, which calls the helper")
    if passed_over:
        raise EmitError("no header can define the helper: " + "; ".join(passed_over)
                        + " (add a lower one to [plan.helper] fallback_headers)")
    return None


def _enclosing(ff: FileFacts | None, offset: int):
    """The function definition of ff around a byte offset, or None."""
    if ff is None:
        return None
    return next((f for f in ff.functions if f.definition and f.start <= offset < f.end), None)


def _above_comment(source: bytes, start: int) -> int:
    """The offset of the comment lines right above the line at start (with no
    blank line between), else of that line: where spatch puts code it adds
    before a function."""
    at = source.rfind(b"\n", 0, start) + 1
    while at > 0:
        prev = source.rfind(b"\n", 0, at - 1) + 1
        line = source[prev:at].strip()
        if line.endswith(b"*/"):
            opened = source.rfind(b"/*", 0, prev + source[prev:at].rfind(b"*/"))
            if opened < 0:
                break
            at = source.rfind(b"\n", 0, opened) + 1
        elif line.startswith(b"//"):
            at = prev
        else:
            break
    return at


def helper_definition_edit(rules: Rules, original: bytes, before: int | None) -> Edit | None:
    """The edit that adds the helper's definition to its header: at `before`
    when the header's own reads call it (the kernel's pagemap.h does: the
    start of the first function that calls it, above that function's
    comment), else before the include guard's #endif. None when the header
    defines it already."""
    pr = rules.plan
    assert pr is not None
    defined = re.compile(rb"\b" + re.escape(pr.helper_page.encode()) + rb"\s*\(\s*(?:const\s+)?struct\b[^;{]*\)\s*\{")
    if defined.search(original):
        return None
    definition = pr.helper_definition.strip("\n") + "\n"
    why = f"definition of {pr.helper_page}"
    if before is not None:
        return Edit(before, before, definition + "\n", why, "")
    m = list(re.finditer(rb"^#endif[^\n]*\n?\Z", original, re.M))
    at = m[-1].start() if m else len(original)
    return Edit(at, at, "\n" + definition + "\n", why, "")


def read_sources(plan: Plan, root: Path, digests: dict[str, str], rules: Rules) -> dict[str, bytes]:
    """The original bytes of every file the plan names; a file whose content
    changed since analyze (its digest differs) stops emit before anything is written."""
    paths = set(plan.files())
    pr = rules.plan
    if pr is not None and (plan.rewrites or plan.functions):  # the helper's possible homes
        paths |= {h for h in (pr.helper_header, *pr.helper_fallback_headers) if h and (root / h).is_file()}
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
              digests: dict[str, str], wrap: bool = True) -> dict[str, tuple[bytes, bytes]]:
    """path -> (old bytes, new bytes) for every file the plan changes; wrap:
    changed lines re-wrapped (False: as the edits leave them, which is what
    the semantic patch writes at spatch's --max-width wide)."""
    sources = read_sources(plan, root, digests, rules)
    helper = place_helper(plan, facts, rules, root, sources)
    edits = edits_for(plan, facts, rules, sources, root, helper)
    if helper is not None and helper.edit is not None:  # first, as in the series' patch 1
        edits[helper.header] = [helper.edit, *edits.get(helper.header, [])]
    apply = apply_wrapped if wrap else apply_edits
    result = {path: (sources[path], apply(sources[path], e, path)) for path, e in edits.items()}
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


def _opcodes(a: list[str], b: list[str]) -> list[tuple[str, int, int, int, int]]:
    """difflib's opcodes of the lines between the common head and tail (the
    matcher is quadratic on long files, and the edits are few and local)."""
    head = 0
    while head < min(len(a), len(b)) and a[head] == b[head]:
        head += 1
    tail = 0
    while tail < min(len(a), len(b)) - head and a[-1 - tail] == b[-1 - tail]:
        tail += 1
    ops = [("equal", 0, head, 0, head)] if head else []
    middle = difflib.SequenceMatcher(None, a[head:len(a) - tail], b[head:len(b) - tail], autojunk=False)
    for tag, i1, i2, j1, j2 in middle.get_opcodes():
        if tag == "equal" and ops and ops[-1][0] == "equal":
            ops[-1] = ("equal", ops[-1][1], head + i2, ops[-1][3], head + j2)
        else:
            ops.append((tag, head + i1, head + i2, head + j1, head + j2))
    if tail:
        if ops and ops[-1][0] == "equal":
            ops[-1] = ("equal", ops[-1][1], len(a), ops[-1][3], len(b))
        else:
            ops.append(("equal", len(a) - tail, len(a), len(b) - tail, len(b)))
    return ops


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
        ops = _opcodes(a, b)
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
            target = Path(os.path.realpath(root / path))  # through a symlink: the link stays a link
            if not inside_tree(root, target):
                raise EmitError(f"{root / path} is a symlink to {target}, outside the tree; "
                                "nothing was changed")
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".mp")
            staged.append((target, tmp))  # (before the write: a full disk must not leave it behind)
            with os.fdopen(fd, "wb") as fh:
                fh.write(new)
            os.chmod(tmp, target.stat().st_mode & 0o7777)
    except (OSError, EmitError) as exc:
        for _, tmp in staged:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, EmitError):
            raise
        raise EmitError(f"cannot write to the tree ({exc}); nothing was changed") from None
    done: list[Path] = []
    try:
        for target, tmp in staged:
            os.replace(tmp, target)
            done.append(target)
    except OSError as exc:
        originals = {Path(os.path.realpath(root / p)): old for p, (old, _new) in texts.items()}
        for target in done:
            target.write_bytes(originals[target])
        for _target, tmp in staged[len(done):]:
            if os.path.exists(tmp):
                os.unlink(tmp)
        raise EmitError(f"cannot replace {target} ({exc}); the tree was restored") from None
