"""Re-wrapping the lines an edit made longer, in kernel style
(Documentation/process/coding-style.rst: 80 columns preferred; a long
argument or parameter list continues on the next line aligned after its open
parenthesis, with tabs then spaces).

A changed line keeps to 80 columns where the original fit in 80, else to the
original's width; never more than 100. It is broken after a comma of the
outermost parenthesis that has commas; the pieces are laid out greedily."""

from __future__ import annotations

import bisect
import re

PREFERRED = 80
HARD = 100
TAB = 8


def width(line: str) -> int:
    """Display columns of a line, tabs at every 8th column."""
    col = 0
    for ch in line:
        col = (col // TAB + 1) * TAB if ch == "\t" else col + 1
    return col


def limit_for(original: str) -> int:
    return min(HARD, max(PREFERRED, width(original)))


def _indent_to(col: int) -> str:
    return "\t" * (col // TAB) + " " * (col % TAB)


def _scan(line: str) -> tuple[list[tuple[int, int]], dict[int, list[int]]]:
    """The open parentheses of line as (index, depth), and for each of them
    the indexes of the commas directly inside it; strings, character
    literals and comments skipped."""
    opens: list[tuple[int, int]] = []
    commas: dict[int, list[int]] = {}
    stack: list[int] = []
    i, n = 0, len(line)
    while i < n:
        ch = line[i]
        if ch in "\"'":
            j = i + 1
            while j < n and line[j] != ch:
                j += 2 if line[j] == "\\" else 1
            i = j + 1
            continue
        if line.startswith("/*", i):
            end = line.find("*/", i + 2)
            i = n if end < 0 else end + 2
            continue
        if line.startswith("//", i):
            break
        if ch == "(":
            opens.append((i, len(stack)))
            commas[i] = []
            stack.append(i)
        elif ch == ")" and stack:
            stack.pop()
        elif ch == "," and stack:
            commas[stack[-1]].append(i)
        elif line.startswith(("&&", "||"), i) and stack:
            commas[stack[-1]].append(i + 1)  # a condition breaks after its operator
            i += 1
        i += 1
    return opens, commas


def wrap_line(line: str, limit: int) -> list[str]:
    """line (no newline) as one or more lines within limit, broken after the
    commas (or && and ||) of one parenthesis: the outermost whose layout fits,
    else the one that overflows least; a line no break shortens stays."""
    if width(line) <= limit:
        return [line]
    opens, commas = _scan(line)
    best, best_over = [line], width(line) - limit
    split = _after_assignment(line, limit)
    if split is not None:
        best, best_over = split, max(width(x) for x in split) - limit
        if best_over <= 0:
            return best
    for paren, _depth in sorted(opens, key=lambda o: (o[1], o[0])):
        col = width(line[:paren + 1])
        if not commas[paren] or col > limit - 12:
            continue
        out = _layout(line, commas[paren], col, limit)
        widest = max(width(x) for x in out)
        over = widest - limit
        if over <= 0:
            return out
        if over < best_over and widest <= HARD:
            best, best_over = out, over
    if max(width(x) for x in best) > HARD:  # the last resort: over 100 columns otherwise
        best = _after_paren(line, opens, limit, best, best_over)
    return best


def _after_paren(line: str, opens: list[tuple[int, int]], limit: int, best: list[str],
                 best_over: int) -> list[str]:
    """No comma to break at that helps (the one argument of nested calls):
    break after an open parenthesis, the rest one tab deeper, the outermost
    that fits (else best, or the one that overflows least)."""
    deeper = _indent_to(width(line[:len(line) - len(line.lstrip())]) + TAB)  # (tabs first, then spaces)
    for paren, _depth in sorted(opens, key=lambda o: (o[1], o[0])):
        head, rest = line[:paren + 1], line[paren + 1:].strip()
        if not head.strip() or not rest or rest.startswith(")"):
            continue
        out = [head.rstrip(), deeper + rest]
        widest = max(width(x) for x in out)
        over = widest - limit
        if over < best_over and widest <= HARD:
            best, best_over = out, over
        if over <= 0:
            break
    return best


def _after_assignment(line: str, limit: int) -> list[str] | None:
    """`lhs =` then the right-hand side one tab deeper on the next line (the
    kernel's way with a long initialiser), if the line is an assignment."""
    depth, i = 0, 0
    while i < len(line):
        ch = line[i]
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch in "\"'/":
            return None  # strings and comments: leave such lines to the parenthesis rule
        elif ch == "=" and depth == 0 and line[i - 1:i] not in ("=", "!", "<", ">") and line[i + 1:i + 2] != "=":
            head, rest = line[:i + 1], line[i + 1:].strip()
            indent = line[:len(line) - len(line.lstrip())]
            tail = indent + "\t" + rest
            if not rest or width(tail) > limit and width(head) > limit:
                return None
            return [head.rstrip(), tail]
        i += 1
    return None


def _layout(line: str, breaks: list[int], col: int, limit: int) -> list[str]:
    """Greedy: as many pieces a line as fit, continuations indented to col."""
    pieces, start = [], 0
    for at in breaks:
        pieces.append(line[start:at + 1])
        start = at + 1
    pieces.append(line[start:])
    out, current = [], pieces[0]
    for piece in pieces[1:]:
        if width((current + piece).rstrip()) <= limit or not current.strip():
            current += piece
        else:
            out.append(current.rstrip())
            current = _indent_to(col) + piece.lstrip()
    out.append(current)
    return out


_POINTER = re.compile(r"\b((?:struct|union|enum)\s+\w+)\s*\*[ \t]*")


def tidy(line: str) -> str:
    """A changed line's pointer declarations as checkpatch wants them
    (`struct inode * inode`, `struct page*` -> `struct inode *inode`,
    `struct page *`): an ERROR on every line a patch touches otherwise."""
    return _POINTER.sub(lambda m: m.group(1) + " *", line)


def rewrap_edited(old: bytes, new: bytes, edits: list[tuple[int, int, str]]) -> bytes:
    """new (old with the edits (start, end, text) applied) with every line the
    edits changed wrapped to its limit (limit_for the line it replaced). The
    changed lines are those the edits start on; an edit whose text has a
    newline inserts whole lines (the helper's definition, a declaration),
    which stay as they are. No diff of the two texts is needed (a whole-tree
    series applies thousands of edits to fs.h, patch after patch)."""
    if not edits:
        return new
    edits = list(dict.fromkeys(edits))  # (apply_edits applies a repeated edit once)
    starts = [0]
    for i, byte in enumerate(old):
        if byte == 10:
            starts.append(i + 1)
    olds = old.decode("utf-8", "surrogateescape").split("\n")
    lines = new.decode("utf-8", "surrogateescape").split("\n")
    added = sorted((e[0], e[2].count("\n") - old.count(b"\n", e[0], e[1])) for e in edits)
    changed = sorted({bisect.bisect_right(starts, e[0]) - 1 for e in edits if "\n" not in e[2]}, reverse=True)
    for i in changed:  # bottom up: a wrapped line's new lines do not move the ones above
        j = i + sum(n for at, n in added if at <= starts[i] and n)
        if lines[j] != olds[i]:
            lines[j:j + 1] = wrap_line(tidy(lines[j]), limit_for(olds[i]))
    return "\n".join(lines).encode("utf-8", "surrogateescape")
