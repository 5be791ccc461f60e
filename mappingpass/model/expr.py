"""A tiny evaluator of C access paths over model objects, for the ``check`` stage.

Grammar (a small C subset; whitespace is free)::

    expr    := '&' expr | postfix
    postfix := primary ( '->' IDENT | '.' IDENT | '[' expr ']' )*
    primary := IDENT | IDENT '(' [expr (',' expr)*] ')' | INT | '(' expr ')'

* ``NULL`` is None; other identifiers are looked up in ``env``.
* ``a->b`` and ``a.b`` read the kernel field ``b`` (``C_FIELDS`` of the model
  class); both are accepted whatever ``a`` is, the compiler already checks C types.
  ``page->mapping`` is the raw field: for a protected page it yields the record.
* ``&a->b`` is allowed for embedded structs only (``&folio->page``,
  ``&inode->i_data``) and yields that object; the address of a pointer field has no
  meaning in the model. A NULL base raises :class:`NullDeref` here too. ``&x`` of a
  local struct (an :class:`Opaque` bound to ``x``) is that object.
* Calls: the pure accessors in :data:`FUNCTIONS` (``file_inode``, ``page_folio``,
  ``folio_page``, and the ``page_mapping`` family, which return the raw field like
  ``page->mapping`` so a circular derivation is caught the same way).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

from .errors import EvalError, EvalSyntaxError, NotInterpreted, NullDeref, UnknownField, UnknownName
from .objects import Dentry, File, Folio, Opaque, Page, Struct, Unknown


@dataclass(frozen=True)
class Name:
    id: str


@dataclass(frozen=True)
class Num:
    value: int


@dataclass(frozen=True)
class Member:
    base: Node
    field: str
    arrow: bool


@dataclass(frozen=True)
class AddrOf:
    operand: Node


@dataclass(frozen=True)
class Index:
    base: Node
    index: Node


@dataclass(frozen=True)
class Call:
    func: str
    args: tuple[Node, ...]


Node = Name | Num | Member | AddrOf | Index | Call

_TOKEN = re.compile(r"\s*(?:(->|[A-Za-z_]\w*|\d+|[&().\[\],])|(\S))")


def unparse(node: Node) -> str:
    """Canonical C text of ``node`` (used in error messages)."""
    match node:
        case Name(id):
            return id
        case Num(value):
            return str(value)
        case Member(base, field, arrow):
            return f"{_operand(base)}{'->' if arrow else '.'}{field}"
        case AddrOf(operand):
            return f"&{unparse(operand)}"
        case Index(base, index):
            return f"{_operand(base)}[{unparse(index)}]"
        case Call(func, args):
            return f"{func}({', '.join(unparse(a) for a in args)})"
    raise TypeError(node)


def _operand(node: Node) -> str:
    text = unparse(node)
    return f"({text})" if isinstance(node, AddrOf) else text


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens: list[str] = []
        for m in _TOKEN.finditer(text):
            if m.group(2):
                raise EvalSyntaxError(f"unexpected {m.group(2)!r} in {text!r}")
            self.tokens.append(m.group(1))
        self.pos = 0

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self, expected: str | None = None) -> str:
        tok = self.peek()
        if tok is None or (expected is not None and tok != expected):
            want = repr(expected) if expected else "more input"
            raise EvalSyntaxError(f"expected {want}, got {tok!r} in {self.text!r}")
        self.pos += 1
        return tok

    def ident(self) -> str:
        tok = self.take()
        if not (tok[0].isalpha() or tok[0] == "_"):
            raise EvalSyntaxError(f"expected a field name, got {tok!r} in {self.text!r}")
        return tok

    def parse(self) -> Node:
        node = self.expr()
        if self.peek() is not None:
            raise EvalSyntaxError(f"unexpected {self.peek()!r} in {self.text!r}")
        return node

    def expr(self) -> Node:
        if self.peek() == "&":
            self.take()
            return AddrOf(self.expr())
        return self.postfix()

    def postfix(self) -> Node:
        node = self.primary()
        while (tok := self.peek()) in ("->", ".", "["):
            self.take()
            if tok == "[":
                node = Index(node, self.expr())
                self.take("]")
            else:
                node = Member(node, self.ident(), tok == "->")
        return node

    def primary(self) -> Node:
        tok = self.take()
        if tok == "(":
            node = self.expr()
            self.take(")")
            return node
        if tok.isdigit():
            return Num(int(tok))
        if not (tok[0].isalpha() or tok[0] == "_"):
            raise EvalSyntaxError(f"unexpected {tok!r} in {self.text!r}")
        if self.peek() != "(":
            return Name(tok)
        self.take("(")
        args: list[Node] = []
        while self.peek() != ")":
            if args:
                self.take(",")
            args.append(self.expr())
        self.take(")")
        return Call(tok, tuple(args))


@lru_cache(maxsize=4096)
def parse(expr: str) -> Node:
    """Parse ``expr`` into a small AST (raises :class:`EvalSyntaxError`)."""
    return _Parser(expr).parse()


def _deref(value: object, node: Node, pointer: Node) -> Struct:
    if value is None:
        raise NullDeref(unparse(node), unparse(pointer))
    if isinstance(value, Unknown):
        raise NotInterpreted(f"{unparse(pointer)!r} is not known ({value.name}) in {unparse(node)!r}")
    if not isinstance(value, Struct):
        raise EvalError(f"{unparse(pointer)!r} is {value!r}, not a struct, in {unparse(node)!r}")
    return value


def _file_inode(node: Call, file: object) -> object:
    obj = _deref(file, node, node.args[0])
    if not isinstance(obj, File):
        raise EvalError(f"{unparse(node.args[0])!r} is {obj!r}, not a file")
    return obj.f_inode


def _page_folio(node: Call, page: object) -> object:
    obj = _deref(page, node, node.args[0])
    if not isinstance(obj, Page | Folio):
        raise EvalError(f"{unparse(node.args[0])!r} is {obj!r}, not a page")
    return obj.folio if isinstance(obj, Page) else obj


def _folio_page(node: Call, folio: object, n: object) -> object:
    obj = _deref(folio, node, node.args[0])
    if not isinstance(obj, Folio) or n != 0:
        raise EvalError(f"{unparse(node)!r}: model folios are order 0, only page 0 exists")
    return obj.page


def _d_inode(node: Call, dentry: object) -> object:
    obj = _deref(dentry, node, node.args[0])
    if not isinstance(obj, Dentry):
        raise EvalError(f"{unparse(node.args[0])!r} is {obj!r}, not a dentry")
    return obj.d_inode


def _raw_mapping(node: Call, page: object) -> object:
    obj = _deref(page, node, node.args[0])
    if not isinstance(obj, Page | Folio):
        raise EvalError(f"{unparse(node.args[0])!r} is {obj!r}, not a page or folio")
    return obj.mapping


FUNCTIONS: dict[str, Callable[..., object]] = {
    "file_inode": _file_inode,
    "d_inode": _d_inode,
    "page_folio": _page_folio,
    "folio_page": _folio_page,
    "page_mapping": _raw_mapping,
    "folio_mapping": _raw_mapping,
    "page_file_mapping": _raw_mapping,
    "folio_file_mapping": _raw_mapping,
}
"""Accessor functions :func:`evaluate` knows: name -> f(call_node, *args)."""


def _member(node: Member, env: Mapping[str, object]) -> tuple[Struct, object]:
    base = _deref(_eval(node.base, env), node, node.base)
    if node.field not in base.C_FIELDS:  # per object for Opaque structs
        known = ", ".join(sorted(base.C_FIELDS)) or "none"
        raise UnknownField(
            f"{base.KIND} {base!r} has no field {node.field!r} in {unparse(node)!r} "
            f"(model fields: {known})"
        )
    return base, getattr(base, node.field)


def _eval(node: Node, env: Mapping[str, object]) -> object:
    match node:
        case Num(value):
            return value
        case Name("NULL"):
            return None
        case Name(id):
            if id not in env:
                raise UnknownName(f"{id!r} is not bound (known: {', '.join(sorted(env))})")
            return env[id]
        case Member():
            return _member(node, env)[1]
        case AddrOf(Member() as member):
            base, value = _member(member, env)
            if member.field not in type(base).C_EMBEDDED:
                raise EvalError(
                    f"cannot take the address of {unparse(member)!r}: only embedded "
                    "structs (&folio->page, &inode->i_data) have one in the model"
                )
            return value
        case AddrOf(Name(id)) if isinstance(env.get(id), Opaque):
            return env[id]  # a local struct (`&fio`): the model has no pointers but the objects
        case AddrOf():
            raise EvalError(f"cannot take the address of {unparse(node.operand)!r} in the model")
        case Index(base_node, index_node):
            base = _eval(base_node, env)
            index = _eval(index_node, env)
            if base is None:
                raise NullDeref(unparse(node), unparse(base_node))
            if not isinstance(base, Sequence) or not isinstance(index, int):
                raise EvalError(f"cannot index {base!r} with {index!r} in {unparse(node)!r}")
            if not 0 <= index < len(base):
                raise EvalError(f"index {index} out of range in {unparse(node)!r}")
            return base[index]
        case Call(func, args):
            fn = FUNCTIONS.get(func)
            if fn is None:
                raise UnknownName(f"unknown function {func!r} in {unparse(node)!r}")
            if fn.__code__.co_argcount - 1 != len(args):
                raise EvalError(f"wrong number of arguments in {unparse(node)!r}")
            return fn(node, *(_eval(a, env) for a in args))
    raise TypeError(node)


def evaluate(expr: str, env: Mapping[str, object]) -> object:
    """Evaluate the C access path ``expr`` with identifiers bound by ``env``.

    Raises :class:`NullDeref` (naming the access and the NULL pointer),
    :class:`UnknownField`, :class:`UnknownName`, :class:`EvalSyntaxError` or
    :class:`EvalError`.
    """
    return _eval(parse(expr), env)
