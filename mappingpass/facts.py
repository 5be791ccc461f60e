"""Per-file facts: what the index stage extracts from one C file.

These are the records the index hands to the graph stage. They are frozen,
hold only plain values, and round-trip through JSON (`to_json` /
`FileFacts.from_json`), which is also how the index store keeps them.

Types are kept as normalised text (`"struct page *"`, `"filler_t *"`); the
type of an expression whose type is only known with other files' help (a
member of a struct defined in a header) is kept as a *recipe* (see
`mappingpass.types`) and resolved by the graph stage.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

FACTS_VERSION = 20


@dataclass(frozen=True)
class Param:
    name: str | None
    type: str  # normalised, e.g. "struct page *"; "..." for varargs


@dataclass(frozen=True)
class Function:
    name: str
    line: int
    end_line: int
    start: int  # byte span of the whole definition (or prototype)
    end: int
    body_start: int  # byte offset of the body's "{" (-1 for prototypes)
    static: bool
    inline: bool
    params: tuple[Param, ...]
    return_type: str
    definition: bool  # False for a prototype
    via_macro: str = ""  # "SYSCALL_DEFINE2" for macro-made definitions
    params_span: tuple[int, int] = (-1, -1)  # bytes of "(" ... ")" of the parameter list


@dataclass(frozen=True)
class Call:
    caller: str | None  # enclosing function, None at file scope
    line: int
    col: int
    start: int
    end: int
    via: str  # "direct" | "member" | "pointer"
    callee: str  # function name, member name, or pointer variable name
    receiver: str  # type recipe of the member's struct (for "member"), else ""
    args: tuple[str, ...]
    arg_spans: tuple[tuple[int, int], ...]
    paren: int  # byte offset of "(" of the argument list
    fn_text: str = ""  # the called expression as written: "mapping->a_ops->writepage"
    # precise mode (libclang): "source", "macro-arg" (written as a macro's
    # argument) or "macro-body" (written in the body of `macro`, which the file
    # invokes: no argument list in the file to edit; kept in FileFacts.macro_calls)
    origin: str = "source"
    macro: str = ""
    # precise mode, macro-body calls: where the declaration called is (of two
    # definitions under #if, the one the configuration builds)
    callee_file: str = ""
    callee_line: int = 0
    # the conditions of the if statements around the call, innermost first
    # ("!(cond)" in an else branch): what a path through it knows
    guards: tuple[str, ...] = ()


@dataclass(frozen=True)
class Slot:
    kind: str  # "member" | "typedef"
    owner: str  # struct tag ("address_space_operations") for members, "" for typedefs
    name: str  # member name or typedef name
    params: tuple[Param, ...]
    line: int
    start: int  # byte span of the member or typedef declaration
    end: int
    pointer: bool  # typedef of a pointer-to-function (writepage_t) vs function type (filler_t)
    params_span: tuple[int, int] = (-1, -1)


@dataclass(frozen=True)
class Binding:
    kind: str  # "init" (designated initializer) | "assign" | "arg"
    function: str  # the identifier bound (checked against known functions later)
    line: int
    owner: str  # struct tag for init/assign ("" if unknown); callee name for "arg"
    member: str  # member name for init/assign; argument index (as text) for "arg"
    receiver: str  # type recipe of the assigned-to struct for "assign", else ""
    cast: str  # cast type text if the function was cast ("filler_t *"), else ""
    context: str | None  # enclosing function, None at file scope
    macro: str = ""  # precise mode: the macro whose body makes it (INIT_WORK's `->func = f`)
    table: str = ""  # "init" at file scope: the variable initialised (`btree_aops`)


@dataclass(frozen=True)
class Read:
    function: str | None
    line: int
    col: int
    start: int
    end: int
    expr: str  # the read's text, e.g. "bh->b_page->mapping" or "page_mapping(page)"
    via: str  # "field" | "accessor"
    receiver: str  # type recipe of the receiver for "field"; accessor name for "accessor"
    receiver_text: str  # source text of the receiver (the page expression)
    access: str  # "compare" (identity test), "deref" (->member of it), "use"
    op: str = "->"  # "->" or "." for field reads
    # what the code does with the value (see plan): "identity" (== / != another
    # mapping), "null-test", "flag-test" (the low bits: anon, KSM, movable),
    # "derive" (only ->host, ->a_ops ... of it), "use"
    purpose: str = "use"
    member: str = ""  # for "derive": the member read from the mapping
    # for "identity": the comparison's byte span, its operator and the other side
    cmp_start: int = -1
    cmp_end: int = -1
    cmp_op: str = ""
    cmp_other: str = ""
    cmp_text: str = ""
    cmp_line: int = 0


@dataclass(frozen=True)
class Value:
    """A value a function gives a pointer local (its initializer or an
    assignment `x = ...`) or returns (name "return"): what the plan follows to
    find where a page, or a mapping, came from."""

    function: str
    name: str  # the local or parameter, "*param" for an out-parameter (`*res = ...`), or "return"
    type: str  # its declared type, normalised
    value: str  # the expression's text
    line: int
    start: int  # byte offset of the expression
    top: bool = True  # the local is declared in the function body's own block (in scope everywhere)


@dataclass(frozen=True)
class StructField:
    owner: str  # "struct page", "union foo"
    name: str
    type: str


@dataclass(frozen=True)
class FileFacts:
    path: str
    digest: str
    size: int
    functions: tuple[Function, ...] = ()
    calls: tuple[Call, ...] = ()
    slots: tuple[Slot, ...] = ()
    bindings: tuple[Binding, ...] = ()
    reads: tuple[Read, ...] = ()
    fields: tuple[StructField, ...] = ()
    typedefs: tuple[tuple[str, str], ...] = ()  # (name, normalised type)
    globals: tuple[tuple[str, str], ...] = ()  # (name, normalised type), file scope
    locals_with_field_name: tuple[tuple[str, str], ...] = field(default=())
    # (function, name) of locals/params named like the field: name clashes for the plan
    exports: tuple[str, ...] = ()  # EXPORT_SYMBOL*(name) at file scope
    values: tuple[Value, ...] = ()  # values of pointer locals and returns, in source order
    elements: tuple[Value, ...] = ()  # pointers stored in array elements (`pages[i] = ...`, named "pages[]")
    error_nodes: int = 0  # ERROR/MISSING nodes tree-sitter reported
    error_lines: tuple[int, ...] = ()  # first lines of the first few errors
    recovered: int = 0  # functions recovered from inside error nodes
    # a comment or literal never closed ("comment"/"string"/"char", line): what follows
    # it is lost in the token, or merged into the code before it
    unterminated: tuple[tuple[str, int], ...] = ()
    precise: str = ""  # the configuration libclang parsed it under (precise mode), else ""
    # precise mode: calls a macro's body makes, apart from `calls` (whose spans
    # every later stage reads): their span is the macro's invocation, args the
    # functions they name, no argument spans, paren -1
    macro_calls: tuple[Call, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return _to_plain(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FileFacts:
        return cls(
            path=data["path"],
            digest=data["digest"],
            size=data["size"],
            functions=tuple(
                Function(**{**f, "params": tuple(Param(**p) for p in f["params"]),
                            "params_span": tuple(f["params_span"])})
                for f in data["functions"]
            ),
            calls=tuple(
                Call(
                    **{
                        **c,
                        "args": tuple(c["args"]),
                        "arg_spans": tuple(tuple(s) for s in c["arg_spans"]),
                        "guards": tuple(c.get("guards", ())),
                    }
                )
                for c in data["calls"]
            ),
            slots=tuple(
                Slot(**{**s, "params": tuple(Param(**p) for p in s["params"]),
                        "params_span": tuple(s["params_span"])})
                for s in data["slots"]
            ),
            bindings=tuple(Binding(**b) for b in data["bindings"]),
            reads=tuple(Read(**r) for r in data["reads"]),
            fields=tuple(StructField(**f) for f in data["fields"]),
            typedefs=tuple(tuple(t) for t in data["typedefs"]),
            globals=tuple(tuple(g) for g in data["globals"]),
            locals_with_field_name=tuple(tuple(x) for x in data["locals_with_field_name"]),
            exports=tuple(data["exports"]),
            values=tuple(Value(**v) for v in data.get("values", ())),
            error_nodes=data["error_nodes"],
            error_lines=tuple(data["error_lines"]),
            recovered=data["recovered"],
            unterminated=tuple(tuple(u) for u in data.get("unterminated", ())),
            precise=data.get("precise", ""),
            macro_calls=tuple(Call(**{**c, "args": tuple(c["args"]), "arg_spans": ()})
                              for c in data.get("macro_calls", ())),
        )


def _to_plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: _to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (tuple, list)):
        return [_to_plain(x) for x in obj]
    return obj


def dumps(facts: FileFacts) -> bytes:
    return json.dumps(facts.to_json(), separators=(",", ":")).encode()


def loads(blob: bytes) -> FileFacts:
    return FileFacts.from_json(json.loads(blob))
