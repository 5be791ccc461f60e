"""C type text and type *recipes*.

A recipe says how to compute the type of an expression once every file's
struct definitions are known: the index stage sees one file at a time, so
`bh->b_page` is kept as "the `b_page` member of whatever `bh` is" and
resolved later by `TypeEnv.resolve`. Recipes are JSON lists:

    ["t", base, depth]        a known type: base "struct page", pointer depth 1
    ["v", name]               an identifier not declared in the file's function
    ["f", recipe, member]     recipe->member or recipe.member
    ["i", recipe]             recipe[index]
    ["a", recipe]             &recipe
    ["d", recipe]             *recipe
    ["c", function]           the return type of a call
    ["?"]                     unknown
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import lru_cache

_QUALIFIERS = re.compile(r"\b(const|volatile|restrict|__restrict|register|static|extern|inline)\b")
_SPACES = re.compile(r"\s+")

UNKNOWN = '["?"]'


@lru_cache(maxsize=65536)  # (pure, and asked the same few thousand types millions of times)
def normalise(base_text: str, depth: int = 0) -> str:
    """`const struct page ` + 1 -> `struct page *`."""
    base = _SPACES.sub(" ", _QUALIFIERS.sub(" ", base_text)).strip()
    return base + (" " + "*" * depth if depth else "")


@lru_cache(maxsize=65536)
def split(type_text: str) -> tuple[str, int]:
    """`struct page **` -> ("struct page", 2)."""
    stripped = type_text.rstrip("* ")
    return stripped, type_text.count("*", len(stripped))


def known(type_text: str) -> str:
    base, depth = split(type_text)
    return json.dumps(["t", base, depth], separators=(",", ":"))


@dataclass
class TypeEnv:
    """Tree-wide tables the graph stage fills from every file's facts."""

    fields: dict[str, dict[str, str]] = field(default_factory=dict)  # "struct x" -> member -> type
    typedefs: dict[str, str] = field(default_factory=dict)
    returns: dict[str, str] = field(default_factory=dict)  # function -> return type
    globals: dict[str, str] = field(default_factory=dict)
    # struct tags whose definition was needed but not seen: the index parses the
    # deferred files that define them (see index.expand_types)
    missing: set[str] = field(default_factory=set)

    def canonical(self, base: str, depth: int) -> tuple[str, int]:
        """Follow typedefs (`pgoff_t`, `foo_t` -> `struct foo`), at most a few hops."""
        for _ in range(8):
            target = self.typedefs.get(base)
            if target is None:
                break
            tb, td = split(target)
            base, depth = tb, depth + td
        return base, depth

    def resolve(self, recipe: str | list) -> tuple[str, int] | None:
        node = json.loads(recipe) if isinstance(recipe, str) else recipe
        return self._resolve(node)

    def _resolve(self, node: list) -> tuple[str, int] | None:
        tag = node[0]
        if tag == "t":
            return self.canonical(node[1], node[2])
        if tag == "v":
            t = self.globals.get(node[1])
            return self.canonical(*split(t)) if t else None
        if tag == "c":
            t = self.returns.get(node[1])
            return self.canonical(*split(t)) if t else None
        if tag in ("f", "i", "a", "d"):
            inner = self._resolve(node[1])
            if inner is None:
                return None
            base, depth = inner
            if tag == "i" or tag == "d":
                return (base, depth - 1) if depth > 0 else None
            if tag == "a":
                return base, depth + 1
            members = self.fields.get(base)
            if members is None:
                if base.startswith(("struct ", "union ")):
                    self.missing.add(base)
                return None
            member_type = members.get(node[2])
            return self.canonical(*split(member_type)) if member_type else None
        return None
