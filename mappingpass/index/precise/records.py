"""What libclang says of one translation unit, as plain frozen records.

Offsets, lines and columns are those of the file itself (for code a macro
made: of the macro's invocation). Types are the canonical C types of the
configuration parsed (typedefs followed), normalised as `mappingpass.types`
does: `"struct page *"`.

`origin` of a call, read or binding: `"source"` (written in the file),
`"macro-arg"` (written in the file, as an argument of a macro) or
`"macro-body"` (written in a macro's definition; `macro` names the macro the
file invokes).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

CLANG_FACTS_VERSION = 6


@dataclass(frozen=True)
class CFunction:
    name: str
    line: int
    end_line: int
    static: bool
    params: tuple[str, ...]  # normalised types
    return_type: str
    origin: str
    macro: str = ""


@dataclass(frozen=True)
class CCall:
    caller: str
    line: int
    col: int
    start: int
    end: int
    via: str  # "direct" | "member" | "pointer" (as in facts.Call)
    callee: str
    receiver: str  # for "member": the struct the member belongs to ("struct address_space_operations")
    origin: str
    macro: str = ""
    # per argument: the function it names (`fn`, `&fn`, `(cast)fn`), else ""
    fn_args: tuple[str, ...] = ()
    # for "direct": where the declaration the configuration calls is (tree-relative
    # file and line): of two definitions under #if, the one built
    callee_file: str = ""
    callee_line: int = 0


@dataclass(frozen=True)
class CRead:
    function: str
    line: int
    col: int  # of the member name
    start: int  # byte offset of the member name
    member: str
    receiver: str  # type of the expression the member is read from: "struct page *"
    op: str  # "->" or "."
    origin: str
    macro: str = ""


@dataclass(frozen=True)
class CBinding:
    kind: str  # "assign" (`x->member = fn`)
    function: str
    line: int
    owner: str  # struct tag ("work_struct")
    member: str
    receiver: str  # type of the assigned-to struct expression ("struct work_struct *")
    context: str
    origin: str
    macro: str = ""


@dataclass(frozen=True)
class ClangFacts:
    path: str
    key: str  # digest of the content, the flags and the versions (the cache key)
    errors: int  # error diagnostics; a file with any keeps its tree-sitter facts
    first_error: str
    functions: tuple[CFunction, ...] = ()
    calls: tuple[CCall, ...] = ()
    reads: tuple[CRead, ...] = ()
    bindings: tuple[CBinding, ...] = ()
    skipped: tuple[tuple[int, int], ...] = ()  # first and last lines of #if branches not built
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ClangFacts:
        def many(kind, items):
            return tuple(kind(**{k: tuple(v) if isinstance(v, list) else v for k, v in x.items()}) for x in items)

        return cls(path=data["path"], key=data["key"], errors=data["errors"], first_error=data["first_error"],
                   functions=many(CFunction, data["functions"]), calls=many(CCall, data["calls"]),
                   reads=many(CRead, data["reads"]), bindings=many(CBinding, data["bindings"]),
                   skipped=tuple(tuple(s) for s in data["skipped"]), seconds=data["seconds"])
