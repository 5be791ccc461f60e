"""The libclang front-end: one configured translation unit -> `ClangFacts`.

Only precise mode imports this module (and with it libclang). It walks the
definitions of the file itself, not of its headers: the headers keep their
tree-sitter facts (each would be seen once per file that includes it, under
that file's flags).

Where a piece of code came from is told by two locations libclang gives for
it: the *expansion* location (for code a macro made, the macro's invocation)
and the *file* location (for a macro's argument, where the argument is
written). Code inside a macro invocation whose two locations are the same was
written in the macro's body.
"""

from __future__ import annotations

import bisect
import ctypes
import re
import time

import clang.cindex as ci

from ... import types
from .records import CBinding, CCall, CFunction, ClangFacts, CRead

K = ci.CursorKind
_ASSIGN = 22  # CXBinaryOperator_Assign (clang-c/Index.h, LLVM >= 17)
_ADDRESS_OF = 5  # CXUnaryOperator_AddrOf
_STRIP = {K.UNEXPOSED_EXPR, K.PAREN_EXPR, K.CSTYLE_CAST_EXPR}
# (the detailed record lists the macro invocations written in the file)
_OPTIONS = ci.TranslationUnit.PARSE_DETAILED_PROCESSING_RECORD


class _RangeList(ctypes.Structure):
    _fields_ = [("count", ctypes.c_uint), ("ranges", ctypes.POINTER(ci.SourceRange))]


def _bind(lib) -> None:
    """The few entry points the Python bindings of LLVM 18 do not wrap."""
    loc_out = [ci.SourceLocation, ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_uint),
               ctypes.POINTER(ctypes.c_uint), ctypes.POINTER(ctypes.c_uint)]
    lib.clang_getFileLocation.argtypes = loc_out
    lib.clang_getFileLocation.restype = None
    lib.clang_getCursorBinaryOperatorKind.argtypes = [ci.Cursor]
    lib.clang_getCursorBinaryOperatorKind.restype = ctypes.c_int
    lib.clang_getCursorUnaryOperatorKind.argtypes = [ci.Cursor]
    lib.clang_getCursorUnaryOperatorKind.restype = ctypes.c_int
    lib.clang_getSkippedRanges.argtypes = [ci.TranslationUnit, ci.File]
    lib.clang_getSkippedRanges.restype = ctypes.POINTER(_RangeList)
    lib.clang_disposeSourceRangeList.argtypes = [ctypes.POINTER(_RangeList)]
    lib.clang_Location_isFromMainFile.argtypes = [ci.SourceLocation]
    lib.clang_Location_isFromMainFile.restype = ctypes.c_int


_LIB = None
_UNKNOWN_ARGUMENT = re.compile(r"unknown argument: '(.+)'")
_REJECTED: set[str] = set()


def library():
    global _LIB
    if _LIB is None:
        _LIB = ci.conf.lib
        _bind(_LIB)
    return _LIB


def _file_location(lib, loc) -> tuple[int, int, int]:
    """(line, column, offset) where the code is written in the file: for a
    macro's argument, the argument; for a macro's body, the invocation."""
    f, line, col, off = ctypes.c_void_p(), ctypes.c_uint(), ctypes.c_uint(), ctypes.c_uint()
    lib.clang_getFileLocation(loc, ctypes.byref(f), ctypes.byref(line), ctypes.byref(col), ctypes.byref(off))
    return line.value, col.value, off.value


def _strip(cur):
    while cur is not None and cur.kind in _STRIP:
        kids = list(cur.get_children())
        if not kids:
            return cur
        cur = kids[-1]
    return cur


def _named_base(member_ref):
    """The expression a member is read from, past the members C11 anonymous
    structs and unions add (`page->mapping` is `page-><anon>.<anon>.mapping`)."""
    base = next(iter(member_ref.get_children()), None)
    while base is not None and base.kind == K.MEMBER_REF_EXPR and (not base.spelling or "(anonymous" in base.spelling):
        base = next(iter(base.get_children()), None)
    return _strip(base) if base is not None and base.kind in _STRIP else base


def _type_text(t) -> str:
    """Canonical type as `types.normalise` writes it: `const struct page *` -> `struct page *`."""
    t = t.get_canonical()
    depth = 0
    while t.kind == ci.TypeKind.POINTER:
        depth += 1
        t = t.get_pointee().get_canonical()
    return types.normalise(t.spelling, depth)


class _Walker:
    def __init__(self, tu, path: str, read_field: str, unread_macros: frozenset[str] = frozenset()) -> None:
        self.tu, self.lib, self.field = tu, library(), read_field
        self.main = tu.spelling
        self.root = self.main[: -len(path)] if self.main.endswith(path) else "\0"
        with open(self.main, "rb") as fh:
            self.text = fh.read()
        self.calls: list[CCall] = []
        self.reads: list[CRead] = []
        self.bindings: list[CBinding] = []
        self.functions: list[CFunction] = []
        self.macros: list[tuple[int, int, str]] = []  # (start, end, name) of macro invocations in the file
        self.seen: set[tuple] = set()
        self.unread_macros = unread_macros  # WRITE_ONCE(page->mapping, x): a store, whatever typeof makes of it

    # -- where code came from ---------------------------------------------------
    def origin(self, cur, callee: str = "") -> tuple[str, str, tuple[int, int, int]]:
        """(origin, macro, (line, column, offset) where it is written); for a
        call, callee tells a macro's argument from its body."""
        loc = cur.location
        exp = loc.offset
        written = (loc.line, loc.column, exp)
        i = bisect.bisect_right(self.macros, (exp, 1 << 62, "")) - 1
        if i < 0 or not (self.macros[i][0] <= exp < self.macros[i][1]):
            return "source", "", written
        name = self.macros[i][2]
        if callee and name == callee:
            return "source", "", written  # `#define readl readl`: the call is the file's own
        at = _file_location(self.lib, loc)
        if callee and self.written_at(at[2], callee):
            return "macro-arg", name, at
        if not callee and (at[2] != exp or exp != self.macros[i][0]):
            return "macro-arg", name, at
        # the innermost macro written at that place (INODE_PKEY() inside reiserfs_panic()'s
        # arguments): the name written there, which libclang may not list as an expansion
        named = re.match(rb"[A-Za-z_]\w*", self.text[at[2]:at[2] + 80])
        if at[2] != exp and named is not None:
            return "macro-body", named.group().decode(), at
        return "macro-body", name, written

    def tree_location(self, decl) -> tuple[str, int]:
        """(tree-relative file, line) of a declaration, ("", 0) outside the tree."""
        loc = decl.location
        name = loc.file.name if loc.file is not None else ""
        if not name.startswith(self.root):
            return "", 0
        return name[len(self.root):], loc.line

    def written_at(self, offset: int, callee: str) -> bool:
        """The file's text at offset names callee before its "(": the call is
        written there (as a macro's argument), not made by a macro's body."""
        head = self.text[offset:offset + 160].split(b"(", 1)[0]
        return callee.encode() in re.findall(rb"[A-Za-z_]\w*", head)

    def collect_macros(self, top) -> None:
        for cur in top:
            if cur.kind == K.MACRO_INSTANTIATION and self.lib.clang_Location_isFromMainFile(cur.location):
                ext = cur.extent
                self.macros.append((ext.start.offset, ext.end.offset, cur.spelling))
        self.macros.sort()

    # -- the file's functions ----------------------------------------------------
    def run(self) -> None:
        top = [c for c in self.tu.cursor.get_children() if self.lib.clang_Location_isFromMainFile(c.location)]
        self.collect_macros(top)
        for cur in top:
            if cur.kind == K.FUNCTION_DECL and cur.is_definition():
                self.function(cur)

    def function(self, fn) -> None:
        origin, macro, _ = self.origin(fn)
        name = fn.spelling
        self.functions.append(CFunction(
            name, fn.location.line, fn.extent.end.line, fn.storage_class == ci.StorageClass.STATIC,
            tuple(_type_text(a.type) for a in fn.get_arguments()), _type_text(fn.result_type), origin, macro))
        written: set[int] = set()  # offsets of `x->mapping` stored to or whose address is taken: no reads
        for cur in fn.walk_preorder():
            kind = cur.kind
            if kind == K.CALL_EXPR:
                self.call(name, cur)
            elif kind == K.MEMBER_REF_EXPR and cur.spelling == self.field:
                if cur.location.offset not in written:
                    self.read(name, cur)
            elif kind == K.BINARY_OPERATOR and self.lib.clang_getCursorBinaryOperatorKind(cur) == _ASSIGN:
                self.assign(name, cur, written)
            elif kind == K.UNARY_OPERATOR and self.lib.clang_getCursorUnaryOperatorKind(cur) == _ADDRESS_OF:
                operand = _strip(next(iter(cur.get_children()), None))
                if operand is not None and operand.kind == K.MEMBER_REF_EXPR:
                    written.add(operand.location.offset)

    def call(self, caller: str, cur) -> None:
        kids = list(cur.get_children())
        if not kids:
            return
        fn = _strip(kids[0])
        receiver = ""
        declared = ("", 0)
        if fn.kind == K.DECL_REF_EXPR:
            ref = fn.referenced
            if ref is None:
                return
            via = "direct" if ref.kind == K.FUNCTION_DECL else "pointer"
            callee = fn.spelling
            if via == "direct":
                declared = self.tree_location(ref)
        elif fn.kind == K.MEMBER_REF_EXPR:
            via, callee = "member", fn.spelling
            base = _named_base(fn)
            if base is not None:
                receiver = _type_text(base.type)
        else:
            return
        origin, macro, (line, col, start) = self.origin(cur, callee)
        once = (caller, start, callee)
        if once in self.seen:
            return  # a macro that expands its argument several times (per-cpu ops, _Generic)
        self.seen.add(once)
        self.calls.append(CCall(caller, line, col, start, cur.extent.end.offset, via, callee, receiver,
                                origin, macro, tuple(_function_named(a) for a in kids[1:]), *declared))

    def read(self, function: str, cur) -> None:
        base = _named_base(cur)
        if base is None:
            return
        rtype = _type_text(base.type)
        origin, macro, (line, col, offset) = self.origin(cur)
        if (function, offset) in self.seen or macro in self.unread_macros:
            return
        self.seen.add((function, offset))
        op = "->" if rtype.endswith("*") else "."
        self.reads.append(CRead(function, line, col, offset, cur.spelling, rtype, op, origin, macro))

    def assign(self, context: str, cur, written: set[int]) -> None:
        kids = list(cur.get_children())
        if len(kids) != 2:
            return
        left, right = _strip(kids[0]), kids[1]
        if left.kind == K.MEMBER_REF_EXPR:
            written.add(left.location.offset)
        target = _function_named(right)
        if not target or left.kind != K.MEMBER_REF_EXPR:
            return
        base = _named_base(left)
        rtype = _type_text(base.type) if base is not None else ""
        origin, macro, (line, _, _) = self.origin(cur)
        owner = rtype.rstrip(" *").removeprefix("struct ").removeprefix("union ")
        self.bindings.append(CBinding("assign", target, line, owner, left.spelling, rtype,
                                      context, origin, macro))

    def skipped(self) -> tuple[tuple[int, int], ...]:
        f = self.tu.get_file(self.main)
        ranges = self.lib.clang_getSkippedRanges(self.tu, f)
        try:
            return tuple((ranges.contents.ranges[i].start.line, ranges.contents.ranges[i].end.line)
                         for i in range(ranges.contents.count))
        finally:
            self.lib.clang_disposeSourceRangeList(ranges)


def _function_named(cur) -> str:
    """The function an argument or right-hand side names (`fn`, `&fn`, `(t)fn`), else ""."""
    cur = _strip(cur)
    if cur is not None and cur.kind == K.UNARY_OPERATOR:
        kids = list(cur.get_children())
        cur = _strip(kids[0]) if len(kids) == 1 else None
    if cur is not None and cur.kind == K.DECL_REF_EXPR:
        ref = cur.referenced
        if ref is not None and ref.kind == K.FUNCTION_DECL:
            return cur.spelling
    return ""


def extract(index, path: str, abspath: str, args: list[str], key: str, read_field: str,
            unread_macros: frozenset[str] = frozenset()) -> tuple[ClangFacts, list[str]]:
    """Parse abspath with args (absolute paths) and extract its facts; also
    the headers it included (what the cached facts depend on)."""
    started = time.monotonic()
    for _ in range(8):
        args = [a for a in args if a not in _REJECTED]
        try:
            tu = index.parse(abspath, args=args, options=_OPTIONS)
        except ci.TranslationUnitLoadError as exc:
            return ClangFacts(path, key, 1, f"libclang could not parse it: {exc}"), []
        rejected = {m.group(1) for d in tu.diagnostics for m in [_UNKNOWN_ARGUMENT.match(d.spelling)] if m}
        if not rejected:
            break
        # a gcc option kbuild added that clang does not know: drop it here and for the files to come
        _REJECTED.update(rejected)
    includes = sorted({inc.include.name for inc in tu.get_includes()})
    errors = [d for d in tu.diagnostics if d.severity >= ci.Diagnostic.Error]
    if errors:
        d = errors[0]
        where = f"{d.location.file.name}:{d.location.line}: " if d.location.file else ""
        return ClangFacts(path, key, len(errors), f"{where}{d.spelling}",
                          seconds=round(time.monotonic() - started, 3)), includes
    walker = _Walker(tu, path, read_field, unread_macros)
    walker.run()
    facts = ClangFacts(path, key, 0, "", tuple(walker.functions), tuple(walker.calls), tuple(walker.reads),
                       tuple(walker.bindings), walker.skipped(), round(time.monotonic() - started, 3))
    return facts, includes
