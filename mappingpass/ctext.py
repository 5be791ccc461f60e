"""C expressions as text: the argument lists, access paths and page
expressions the index keeps as strings, taken apart the same way by every
stage above it (the index's accessor derivation, plan's origins, check)."""

from __future__ import annotations

import re
from functools import lru_cache

IDENT = re.compile(r"[A-Za-z_]\w*")
LOCAL_WORD = re.compile(r"(?<!->)(?<!\.)(?<![\w])[A-Za-z_]\w*")  # not a member after -> or .
PATH = re.compile(r"^[A-Za-z_]\w*(?:\s*(?:->|\.)\s*[A-Za-z_]\w*|\s*\[[^\[\]]*\])*$")
CAST = re.compile(r"^\(\s*(?:const\s+)?(?:struct|union)?\s*[A-Za-z_]\w*\s*\**\s*\)\s*")


def split_args(text: str) -> list[str]:
    """Top-level comma-separated arguments of `(a, f(b, c))` without the parentheses."""
    out, depth, cur = [], 0, []
    for ch in text:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == "," and depth == 0:
            out.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    if "".join(cur).strip():
        out.append("".join(cur).strip())
    return out


def member_of(arg: str, path: str) -> str:
    """The page a caller hands over when the callee's page is `param<path>`
    and the caller passes arg for param: `&fio` and "->page" give `fio.page`."""
    a = arg.strip()
    if not path:
        return a
    if path.startswith("*"):  # what the parameter points at: `&folio` gives `folio`
        pointee = a[1:].strip() if a.startswith("&") else f"(*{a})"
        return member_of(pointee, path[1:]) if path[1:] else pointee
    if a.startswith("&") and PATH.match(a[1:].strip()) and path.startswith("->"):
        return f"{a[1:].strip()}.{path[2:]}"
    return f"{a}{path}" if PATH.match(a) else a


@lru_cache(maxsize=65536)
def strip(expr: str, converters: frozenset[str] = frozenset(), keep_member: bool = False) -> str:
    """The page expression without what does not change which page it is:
    parentheses, casts, `&`, READ_ONCE and the rules' converters
    (`page_folio(p)`, `&folio->page`; keep_member: not the trailing `->page`)."""
    e = expr.strip()
    while True:
        before = e
        if e.startswith("&"):
            e = e[1:].strip()
        m = CAST.match(e)
        if m and e[m.end():]:
            e = e[m.end():].strip()
        if e.startswith("(") and _closing(e, 0) == len(e) - 1:
            e = e[1:-1].strip()
        call = parse_call(e)
        if call and (call[0] in converters or call[0] == "READ_ONCE") and call[1]:
            e = call[1][0]
        if not keep_member and not e.endswith(("->mapping", ".mapping")):
            e = re.sub(r"\s*(->|\.)\s*page$", "", e)
        if e == before:
            return e


def _closing(text: str, at: int) -> int:
    depth = 0
    for i in range(at, len(text)):
        if text[i] == "(":
            depth += 1
        elif text[i] == ")":
            depth -= 1
            if depth == 0:
                return i
    return -1


def parse_call(expr: str) -> tuple[str, list[str]] | None:
    """`name(args...)` -> (name, args); None for anything else."""
    found = _parse_call(expr)
    return (found[0], list(found[1])) if found is not None else None


@lru_cache(maxsize=65536)
def _parse_call(expr: str) -> tuple[str, tuple[str, ...]] | None:
    m = re.match(r"^([A-Za-z_]\w*)\s*\(", expr)
    if not m:
        return None
    end = _closing(expr, m.end() - 1)
    if end != len(expr) - 1:
        return None
    return m.group(1), tuple(split_args(expr[m.end():end]))


def call_head(expr: str) -> tuple[str, list[str], str] | None:
    """`name(args...)->rest` -> (name, args, "->rest"): a member path from a
    call's result (`EXT4_SB(sb)->s_buddy_cache`); None for anything else."""
    m = re.match(r"^([A-Za-z_]\w*)\s*\(", expr)
    if not m:
        return None
    end = _closing(expr, m.end() - 1)
    if end < 0 or end >= len(expr) - 1:
        return None
    rest = expr[end + 1:].strip()
    if not re.match(r"^(->|\.)\s*[A-Za-z_]", rest):
        return None
    return m.group(1), list(split_args(expr[m.end():end])), rest


def root_of(expr: str) -> str | None:
    """The variable an access path starts from (`bh->b_page` -> `bh`)."""
    return expr.split("-", 1)[0].split(".", 1)[0].split("[", 1)[0].strip() if PATH.match(expr) else None


def substitute(text: str, names: dict[str, str]) -> str:
    """text with each identifier in names replaced (parenthesised unless simple)."""
    def repl(m: re.Match) -> str:
        word = m.group(0)
        if word not in names:
            return word
        value = names[word]
        return value if PATH.match(value) or parse_call(value) else f"({value})"
    return IDENT.sub(repl, text)
