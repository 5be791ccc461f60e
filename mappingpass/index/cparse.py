"""The C front-end: tree-sitter-c over one file's bytes -> `FileFacts`.

Parsing (tree-sitter), normalising (blanking annotation macros, type text,
type recipes) and the records themselves (`facts`) are kept apart. Kernel
macro soup is handled in three ways: annotation macros named in the rules are
blanked before parsing (same length, so offsets and lines stay true);
functions tree-sitter wraps in ERROR nodes are still found (queries match
inside them); and a body left at file scope after a macro-made header
(`SYSCALL_DEFINE2(...) {`) is recovered as a function when the rules name the
macro. What cannot be recovered is counted in `error_nodes`.
"""

from __future__ import annotations

import bisect
import json
import re

import tree_sitter_c
from tree_sitter import Language, Node, Parser, Query, QueryCursor

from .. import types
from ..facts import Binding, Call, FileFacts, Function, Param, Read, Slot, StructField, Value
from ..rules import ParseConfig

LANGUAGE = Language(tree_sitter_c.language())

_QUERY_TEXT = """
(function_definition) @fn
(call_expression) @call
(field_expression field: (field_identifier) @field.name (#eq? @field.name "{field}")) @field
(initializer_pair designator: (field_designator)
  value: [(identifier) (cast_expression) (pointer_expression)]) @init
(assignment_expression left: (field_expression)
  right: [(identifier) (cast_expression) (pointer_expression)]) @assign
(struct_specifier name: (type_identifier) body: (field_declaration_list)) @struct
(union_specifier name: (type_identifier) body: (field_declaration_list)) @struct
(type_definition) @typedef
(ERROR) @error
(init_declarator value: (_)) @value
(assignment_expression left: (identifier)) @value
(assignment_expression left: (pointer_expression argument: (identifier))) @value
(assignment_expression left: (subscript_expression argument: (identifier))) @value
(return_statement) @value
(assignment_expression left: (field_expression argument: (identifier))) @store
(init_declarator declarator: (identifier) value: (initializer_list)) @store
"""
_LOCALS_QUERY_TEXT = "(declaration) @decl (parameter_declaration) @decl"

# Macros that are "calls" whose value is the value of their first argument, for
# type recipes (`READ_ONCE(page->mapping)` has the type of `page->mapping`).
TRANSPARENT = {"READ_ONCE", "rcu_dereference", "rcu_dereference_protected", "smp_load_acquire"}
_PREPROC_CONTAINERS = {
    "preproc_if", "preproc_ifdef", "preproc_else", "preproc_elif", "preproc_elifdef",
    "linkage_specification", "declaration_list", "ERROR",
}
_EXPORT = re.compile(rb"^\s*EXPORT_SYMBOL(?:_GPL)?(?:_NS(?:_GPL)?)?\s*\(\s*(\w+)", re.M)
# every byte but newline becomes a space: blanking keeps lines and offsets
_TO_SPACES = bytes(10 if b == 10 else 32 for b in range(256))
_CAST_ARG = re.compile(r"^\(\s*([^()]*?)\s*\)\s*&?\s*([A-Za-z_]\w*)$")
_IDENT_RE = re.compile(r"^[A-Za-z_]\w*$")
# a member store worth recording: an access path or a call, not a constant (`LONG_MAX`, `0`)
_STORED = re.compile(r"^&?\s*(?![A-Z0-9_]+$)[A-Za-z_]\w*(?:\s*(?:->|\.)\s*\w+|\s*\[[^\[\]]*\])*(?:\s*\(.*\))?$",
                     re.S)


def _source_order(node: Node) -> tuple[int, int]:
    return node.start_byte, -node.end_byte


class Extractor:
    """One per process: holds the parser and compiled queries."""

    def __init__(self, config: ParseConfig) -> None:
        self.config = config
        self.parser = Parser(LANGUAGE)
        self.query = Query(LANGUAGE, _QUERY_TEXT.replace("{field}", config.field))
        self.locals_query = Query(LANGUAGE, _LOCALS_QUERY_TEXT)
        self.def_macros = dict(config.definition_macros)
        words = "|".join(re.escape(w) for w in sorted(config.blank_words, key=len, reverse=True))
        calls = "|".join(re.escape(w) for w in sorted(config.blank_calls, key=len, reverse=True))
        parts = []
        if calls:
            # one level of nested parentheses covers __attribute__((x(y))) and __printf(1, 2)
            parts.append(rb"\b(?:" + calls.encode() + rb")\s*\((?:[^()]|\((?:[^()]|\([^()]*\))*\))*\)")
        if words:
            parts.append(rb"\b(?:" + words.encode() + rb")\b")
        self.blank_re = re.compile(b"|".join(parts)) if parts else None

    def blank(self, source: bytes) -> bytes:
        if self.blank_re is None:
            return source
        return self.blank_re.sub(lambda m: m.group(0).translate(_TO_SPACES), source)

    def extract(self, path: str, source: bytes, digest: str) -> FileFacts:
        text = self.blank(source)
        tree = self.parser.parse(text)
        return _FileWalker(self, path, text, tree.root_node, digest, len(source)).run()


def _span(node: Node | None) -> tuple[int, int]:
    return (node.start_byte, node.end_byte) if node is not None else (-1, -1)


def _txt(node: Node) -> str:
    return node.text.decode("utf-8", "replace")


def _declarator_info(node: Node | None) -> tuple[str | None, int, Node | None]:
    """Name, pointer depth (arrays count as pointers) and, for a (pointer to)
    function, its parameter_list node."""
    depth = 0
    fn_params: Node | None = None
    while node is not None:
        t = node.type
        if t in ("identifier", "field_identifier", "type_identifier", "primitive_type"):
            return _txt(node), depth, fn_params
        if t in ("pointer_declarator", "abstract_pointer_declarator"):
            if fn_params is None:
                depth += 1
            node = node.child_by_field_name("declarator")
        elif t in ("array_declarator", "abstract_array_declarator"):
            depth += 1
            node = node.child_by_field_name("declarator")
        elif t in ("function_declarator", "abstract_function_declarator"):
            fn_params = node.child_by_field_name("parameters")
            node = node.child_by_field_name("declarator")
        elif t in ("init_declarator", "attributed_declarator"):
            node = node.child_by_field_name("declarator") or (
                node.named_children[0] if node.named_children else None
            )
        elif t == "parenthesized_declarator":
            node = node.named_children[0] if node.named_children else None
        else:
            return None, depth, fn_params
    return None, depth, fn_params


def _base_type(type_node: Node | None) -> str:
    if type_node is None:
        return "int"
    if type_node.type in ("struct_specifier", "union_specifier", "enum_specifier"):
        name = type_node.child_by_field_name("name")
        kw = type_node.type.split("_")[0]
        return f"{kw} {_txt(name)}" if name is not None else f"{kw} <anonymous>"
    return types.normalise(_txt(type_node))


def _params(plist: Node | None) -> tuple[Param, ...]:
    if plist is None:
        return ()
    out: list[Param] = []
    for child in plist.named_children:
        if child.type == "variadic_parameter":
            out.append(Param(None, "..."))
        elif child.type == "parameter_declaration":
            base = _base_type(child.child_by_field_name("type"))
            name, depth, fnp = _declarator_info(child.child_by_field_name("declarator"))
            if fnp is not None:
                inner = ", ".join(p.type for p in _params(fnp))
                out.append(Param(name, f"{base} (*)({inner})"))
            elif base == "void" and depth == 0 and name is None:
                continue  # f(void)
            else:
                out.append(Param(name, types.normalise(base, depth)))
    return tuple(out)


def _function_declarator(node: Node | None) -> tuple[Node | None, int]:
    """The function_declarator inside a definition's declarator, with the
    pointer depth of the return type."""
    depth = 0
    while node is not None:
        if node.type == "function_declarator":
            inner = node.child_by_field_name("declarator")
            # `int (*f(void))(int)`: a function returning a function pointer
            if inner is not None and inner.type == "parenthesized_declarator":
                return _function_declarator(inner.named_children[0]) if inner.named_children else (None, 0)
            return node, depth
        if node.type == "pointer_declarator":
            depth += 1
        elif node.type not in ("parenthesized_declarator", "attributed_declarator"):
            return None, 0
        node = (
            node.child_by_field_name("declarator")
            if node.type != "parenthesized_declarator"
            else (node.named_children[0] if node.named_children else None)
        )
    return None, 0


class _FileWalker:
    def __init__(
        self, ex: Extractor, path: str, text: bytes, root: Node, digest: str, size: int
    ) -> None:
        self.ex = ex
        self.cfg = ex.config
        self.path = path
        self.text = text
        self.root = root
        self.digest = digest
        self.size = size
        self.functions: list[Function] = []
        self.spans: list[tuple[int, int, str]] = []  # (body start, end, name), definitions only
        self.scopes: dict[int, dict[str, str]] = {}  # function start -> name -> type
        self.nested: dict[int, set[str]] = {}  # function -> locals declared in an inner block
        self.globals: dict[str, str] = {}
        self.recovered = 0

    # -- driver -------------------------------------------------------------
    def run(self) -> FileFacts:
        # source order, whatever order the query returns captures in (it varies from
        # run to run): the first of two definitions under #if is the one that wins
        caps = {name: sorted(nodes, key=_source_order)
                for name, nodes in QueryCursor(self.ex.query).captures(self.root).items()}
        self._top_level(self.root)
        for node in caps.get("fn", ()):
            self._definition(node)
        self.functions.sort(key=lambda f: (f.start, f.name))
        self.spans = sorted(
            (f.start, f.end, f.name, i) for i, f in enumerate(self.functions) if f.definition
        )
        self._starts = [s[0] for s in self.spans]
        slots: list[Slot] = []
        fields: list[StructField] = []
        typedefs: list[tuple[str, str]] = []
        for node in caps.get("struct", ()):
            owner = f"{node.type.split('_')[0]} {_txt(node.child_by_field_name('name'))}"
            self._struct_body(owner, node.child_by_field_name("body"), slots, fields)
        for node in caps.get("typedef", ()):
            self._typedef(node, slots, fields, typedefs)
        # source order, whatever order the query returns captures in: call
        # indexes are part of graph sites
        calls, reads = self._calls(sorted(caps.get("call", ()), key=lambda n: (n.start_byte, n.end_byte)))
        reads.extend(self._field_reads(caps.get("field", ())))
        bindings = self._bindings(caps.get("init", ()), caps.get("assign", ()))
        values = self._values(sorted(caps.get("value", ()), key=lambda n: n.start_byte))
        values += self._member_stores(sorted(caps.get("store", ()), key=lambda n: n.start_byte))
        errors = caps.get("error", ())
        missing = 0
        if self.root.has_error and not errors:
            missing = 1  # only MISSING nodes: count the file once
        clashes = self._clashes()
        reads.sort(key=lambda r: (r.start, r.expr))
        return FileFacts(
            path=self.path,
            digest=self.digest,
            size=self.size,
            functions=tuple(self.functions),
            calls=tuple(calls),
            slots=tuple(slots),
            bindings=tuple(bindings),
            reads=tuple(reads),
            fields=tuple(fields),
            typedefs=tuple(typedefs),
            globals=tuple(sorted(self.globals.items())),
            locals_with_field_name=tuple(clashes),
            exports=tuple(sorted({m.decode() for m in _EXPORT.findall(self.text)})),
            values=tuple(v for v in values if not v.name.endswith("[]") and "." not in v.name),
            elements=tuple(v for v in values if v.name.endswith("[]") or "." in v.name),
            error_nodes=len(errors) + missing,
            error_lines=tuple(sorted({e.start_point[0] + 1 for e in errors})[:8]),
            recovered=self.recovered,
            unterminated=_unterminated(self.root, errors),
        )

    def enclosing(self, offset: int) -> tuple[str, int] | None:
        """(name, index in self.functions) of the definition containing offset."""
        i = bisect.bisect_right(self._starts, offset) - 1
        for j in range(i, max(i - 3, -1), -1):  # nested only when recovery went odd
            start, end, name, idx = self.spans[j]
            if start <= offset < end:
                return name, idx
        return None

    # -- file scope ---------------------------------------------------------
    def _top_level(self, node: Node) -> None:
        children = node.children
        for i, child in enumerate(children):
            t = child.type
            if t in _PREPROC_CONTAINERS:
                self._top_level(child)
            elif t == "declaration":
                self._file_declaration(child)
            elif t == "compound_statement" and i > 0:
                self._recover_macro_definition(children[i - 1], child)

    def _file_declaration(self, node: Node) -> None:
        base = _base_type(node.child_by_field_name("type"))
        storage = {_txt(c) for c in node.children if c.type == "storage_class_specifier"}
        for decl in node.children_by_field_name("declarator"):
            fdecl, depth = _function_declarator(decl)
            if fdecl is not None and fdecl.child_by_field_name("declarator") is not None:
                name_node = fdecl.child_by_field_name("declarator")
                if name_node.type != "identifier":
                    continue
                self.functions.append(
                    Function(
                        name=_txt(name_node),
                        line=node.start_point[0] + 1,
                        end_line=node.end_point[0] + 1,
                        start=node.start_byte,
                        end=node.end_byte,
                        body_start=-1,
                        static="static" in storage,
                        inline="inline" in storage or "__inline__" in storage,
                        params=_params(fdecl.child_by_field_name("parameters")),
                        return_type=types.normalise(base, depth),
                        definition=False,
                        params_span=_span(fdecl.child_by_field_name("parameters")),
                    )
                )
                continue
            name, depth, fnp = _declarator_info(decl)
            if name is not None and fnp is None:
                self.globals[name] = types.normalise(base, depth)

    def _recover_macro_definition(self, header: Node, body: Node) -> None:
        """`SYSCALL_DEFINE2(name, ...) { ... }` at file scope: tree-sitter sees a
        call statement followed by a bare block."""
        call = header
        while call is not None and call.type in ("expression_statement", "ERROR") and call.named_children:
            call = call.named_children[-1] if call.type == "ERROR" else call.named_children[0]
        if call is None or call.type != "call_expression":
            return
        macro = _txt(call.child_by_field_name("function"))
        template = self.ex.def_macros.get(macro)
        args = [a for a in call.child_by_field_name("arguments").named_children if a.type != "comment"]
        if not args or args[0].type != "identifier":
            return
        if template is None:
            # an unknown macro that makes a function around this body
            # (DECLARE_FILLER(name) { ... }): known by name, parameters unknown
            template, args = "{0}", args[:1]
        self.recovered += 1
        self.functions.append(
            Function(
                name=template.format(_txt(args[0])),
                line=header.start_point[0] + 1,
                end_line=body.end_point[0] + 1,
                start=header.start_byte,
                end=body.end_byte,
                body_start=body.start_byte,
                static=False,
                inline=False,
                params=_macro_params(args[1:]),
                return_type="long",
                definition=True,
                via_macro=macro,
            )
        )

    def _definition(self, node: Node) -> None:
        declarator = node.child_by_field_name("declarator")
        fdecl, depth = _function_declarator(declarator)
        body = node.child_by_field_name("body")
        if body is None:
            return
        if fdecl is None:
            self._macro_typed_definition(node, declarator, body)
            return
        name_node = fdecl.child_by_field_name("declarator")
        if name_node is None or name_node.type != "identifier":
            return
        name = _txt(name_node)
        params = _params(fdecl.child_by_field_name("parameters"))
        via = ""
        template = self.ex.def_macros.get(name)
        if template is not None:
            # `SYSCALL_DEFINE0(sync) {` parses as a definition of SYSCALL_DEFINE0
            plist = fdecl.child_by_field_name("parameters")
            first = plist.named_children[0] if plist is not None and plist.named_children else None
            if first is None:
                return
            via, name, params = name, template.format(_txt(first).split()[-1]), ()
        storage = {_txt(c) for c in node.children if c.type == "storage_class_specifier"}
        if node.parent is not None and node.parent.type == "ERROR":
            self.recovered += 1
        self.functions.append(
            Function(
                name=name,
                line=node.start_point[0] + 1,
                end_line=node.end_point[0] + 1,
                start=node.start_byte,
                end=node.end_byte,
                body_start=body.start_byte,
                static="static" in storage,
                inline="inline" in storage or "__inline__" in storage,
                params=params,
                return_type=types.normalise(_base_type(node.child_by_field_name("type")), depth),
                definition=True,
                via_macro=via,
                params_span=_span(fdecl.child_by_field_name("parameters")) if not via else (-1, -1),
            )
        )

    def _macro_typed_definition(self, node: Node, declarator: Node | None, body: Node) -> None:
        """`DECLARE_FILLER(name) { ... }` parses as a definition whose type is the
        macro and whose declarator is `(name)`."""
        type_node = node.child_by_field_name("type")
        if (declarator is None or declarator.type != "parenthesized_declarator" or type_node is None
                or type_node.type != "type_identifier" or not declarator.named_children
                or declarator.named_children[0].type != "identifier"):
            return
        macro, first = _txt(type_node), _txt(declarator.named_children[0])
        self.recovered += 1
        self.functions.append(
            Function(
                name=self.ex.def_macros.get(macro, "{0}").format(first),
                line=node.start_point[0] + 1,
                end_line=node.end_point[0] + 1,
                start=node.start_byte,
                end=node.end_byte,
                body_start=body.start_byte,
                static=False,
                inline=False,
                params=(),
                return_type="int",
                definition=True,
                via_macro=macro,
            )
        )

    # -- structs and typedefs --------------------------------------------------
    def _struct_body(
        self, owner: str, body: Node | None, slots: list[Slot], fields: list[StructField]
    ) -> None:
        if body is None:
            return
        for decl in body.named_children:
            if decl.type != "field_declaration":
                continue
            type_node = decl.child_by_field_name("type")
            declarators = decl.children_by_field_name("declarator")
            if (
                not declarators
                and type_node is not None
                and type_node.type in ("struct_specifier", "union_specifier")
                and type_node.child_by_field_name("body") is not None
            ):
                # anonymous struct/union: its members are members of the owner
                self._struct_body(owner, type_node.child_by_field_name("body"), slots, fields)
                continue
            base = _base_type(type_node)
            for d in declarators:
                name, depth, fnp = _declarator_info(d)
                if name is None:
                    continue
                if fnp is not None:
                    params = _params(fnp)
                    # (owner is a typedef's name for an anonymous struct: no tag)
                    slots.append(
                        Slot("member", owner.split(" ", 1)[-1], name, params,
                             decl.start_point[0] + 1, decl.start_byte, decl.end_byte, True, _span(fnp))
                    )
                    fields.append(StructField(owner, name, f"{base} (*)()"))
                else:
                    fields.append(StructField(owner, name, types.normalise(base, depth)))

    def _typedef(
        self, node: Node, slots: list[Slot], fields: list[StructField],
        typedefs: list[tuple[str, str]],
    ) -> None:
        type_node = node.child_by_field_name("type")
        base = _base_type(type_node)
        for d in node.children_by_field_name("declarator"):
            name, depth, fnp = _declarator_info(d)
            if name is None:
                continue
            if fnp is not None:
                pointer = d.type != "function_declarator"
                slots.append(
                    Slot("typedef", "", name, _params(fnp), node.start_point[0] + 1,
                         node.start_byte, node.end_byte, pointer, _span(fnp))
                )
            elif base.endswith("<anonymous>") and type_node is not None:
                # typedef struct { ... } foo_t;  -> foo_t is the struct's only name
                self._struct_body(name, type_node.child_by_field_name("body"), slots, fields)
                typedefs.append((name, types.normalise(name, depth)))
            else:
                typedefs.append((name, types.normalise(base, depth)))

    # -- scopes and recipes -------------------------------------------------
    def scope(self, fn_index: int) -> dict[str, str]:
        """Parameters and locals of a function: name -> type (built on demand)."""
        scope = self.scopes.get(fn_index)
        if scope is not None:
            return scope
        fn = self.functions[fn_index]
        scope = {p.name: p.type for p in fn.params if p.name}
        nested: set[str] = set()
        cursor = QueryCursor(self.ex.locals_query)
        cursor.set_byte_range(fn.body_start, fn.end)
        decls = sorted((n for nodes in cursor.captures(self.root).values() for n in nodes), key=_source_order)
        for decl in decls:
            base = _base_type(decl.child_by_field_name("type"))
            for d in decl.children_by_field_name("declarator"):
                name, depth, fnp = _declarator_info(d)
                if name is not None and name not in scope:
                    scope[name] = f"{base} (*)()" if fnp is not None else types.normalise(base, depth)
                    if _block_start(decl) != fn.body_start:
                        nested.add(name)
        self.scopes[fn_index] = scope
        self.nested[fn_index] = nested
        return scope

    def recipe(self, node: Node, scope: dict[str, str]) -> list:
        t = node.type
        if t == "identifier":
            name = _txt(node)
            declared = scope.get(name) or self.globals.get(name)
            if declared is not None:
                base, depth = types.split(declared)
                return ["t", base, depth]
            return ["v", name]
        if t == "field_expression":
            return ["f", self.recipe(node.child_by_field_name("argument"), scope),
                    _txt(node.child_by_field_name("field"))]
        if t == "subscript_expression":
            return ["i", self.recipe(node.child_by_field_name("argument"), scope)]
        if t == "pointer_expression":
            op = node.child_by_field_name("operator")
            inner = self.recipe(node.child_by_field_name("argument"), scope)
            return ["a", inner] if op is not None and op.type == "&" else ["d", inner]
        if t == "parenthesized_expression" and node.named_children:
            return self.recipe(node.named_children[0], scope)
        if t == "cast_expression":
            td = node.child_by_field_name("type")
            base = _base_type(td.child_by_field_name("type"))
            _, depth, _ = _declarator_info(td.child_by_field_name("declarator"))
            return ["t", base, depth]
        if t == "call_expression":
            fn = node.child_by_field_name("function")
            if fn.type == "identifier":
                name = _txt(fn)
                args = node.child_by_field_name("arguments").named_children
                if name in TRANSPARENT and args:
                    return self.recipe(args[0], scope)
                return ["c", name]
        return ["?"]

    def recipe_text(self, node: Node, fn_index: int | None) -> str:
        scope = self.scope(fn_index) if fn_index is not None else {}
        return json.dumps(self.recipe(node, scope), separators=(",", ":"))

    # -- calls, reads, bindings ---------------------------------------------
    def _calls(self, nodes: list[Node]) -> tuple[list[Call], list[Read]]:
        calls: list[Call] = []
        reads: list[Read] = []
        accessors = self.cfg.accessors
        for node in nodes:
            fn = node.child_by_field_name("function")
            argl = node.child_by_field_name("arguments")
            if fn is None or argl is None or argl.type != "argument_list":
                continue
            where = self.enclosing(node.start_byte)
            caller, idx = where if where else (None, None)
            receiver = ""
            t = fn.type
            if t == "identifier":
                callee = _txt(fn)
                via = "direct"
                if idx is not None and any(p.name == callee for p in self.functions[idx].params):
                    via = "pointer"
            elif t == "field_expression":
                via = "member"
                callee = _txt(fn.child_by_field_name("field"))
                receiver = self.recipe_text(fn.child_by_field_name("argument"), idx)
            elif t == "parenthesized_expression" and fn.named_children:
                inner = fn.named_children[0]
                if inner.type == "pointer_expression":
                    inner = inner.child_by_field_name("argument")
                if inner.type == "identifier":
                    via, callee = "pointer", _txt(inner)
                elif inner.type == "field_expression":
                    via, callee = "member", _txt(inner.child_by_field_name("field"))
                    receiver = self.recipe_text(inner.child_by_field_name("argument"), idx)
                else:
                    continue
            else:
                continue
            args = [a for a in argl.named_children if a.type != "comment"]
            line = node.start_point[0] + 1
            calls.append(
                Call(caller, line, fn.start_point[1] + 1, node.start_byte, node.end_byte, via,
                     callee, receiver, tuple(_txt(a) for a in args),
                     tuple((a.start_byte, a.end_byte) for a in args), argl.start_byte,
                     _txt(fn) if via != "direct" else callee, guards=_guards(node))
            )
            if via == "direct" and callee in accessors and not self._in_converted(node):
                reads.append(
                    Read(caller, line, fn.start_point[1] + 1, node.start_byte, node.end_byte,
                         _txt(node), "accessor", callee, _txt(args[0]) if args else "",
                         _access(node), "->", *_purpose(node))
                )
        return calls, reads

    def _in_converted(self, node: Node) -> bool:
        """node is an argument of one of the helpers that wrap an accessor's answer."""
        parent = node.parent
        if parent is None or parent.type != "argument_list" or parent.parent is None:
            return False
        fn = parent.parent.child_by_field_name("function")
        return fn is not None and _txt(fn) in self.cfg.converted

    def _field_reads(self, nodes: list[Node]) -> list[Read]:
        reads: list[Read] = []
        wanted = self.cfg.field
        for node in nodes:
            name = node.child_by_field_name("field")
            if name is None or name.text.decode() != wanted:
                continue
            if _is_write(node, self.cfg.write_wrappers):
                continue
            where = self.enclosing(node.start_byte)
            caller, idx = where if where else (None, None)
            recv = node.child_by_field_name("argument")
            # READ_ONCE(page->mapping) is one read: rewriting only the inner part
            # would take the address of an rvalue
            outer = _transparent_wrapper(node) or node
            reads.append(
                Read(caller, node.start_point[0] + 1, node.start_point[1] + 1, outer.start_byte,
                     outer.end_byte, _txt(outer), "field", self.recipe_text(recv, idx), _txt(recv),
                     _access(node), node.child_by_field_name("operator").type, *_purpose(node))
            )
        return reads

    def _values(self, nodes: list[Node]) -> list[Value]:
        """What pointer locals are given (initializers, `x = ...`), what
        out-parameters are given (`*res = ...`, named "*res") and what functions
        returning a pointer return, inside function bodies."""
        out: list[Value] = []
        for node in nodes:
            where = self.enclosing(node.start_byte)
            if where is None:
                continue
            fname, idx = where
            if node.type == "return_statement":
                name, ctype = "return", self.functions[idx].return_type
                expr = node.named_children[0] if node.named_children else None
            elif node.type == "init_declarator":
                name, _, _ = _declarator_info(node.child_by_field_name("declarator"))
                ctype = self.scope(idx).get(name or "", "")
                expr = node.child_by_field_name("value")
            else:
                left = node.child_by_field_name("left")
                if left.type == "pointer_expression":  # `*res_page = page`: an out-parameter
                    if left.child_by_field_name("operator").type != "*":
                        continue
                    inner = _txt(left.child_by_field_name("argument"))
                    base, depth = types.split(self.scope(idx).get(inner, ""))
                    name, ctype = f"*{inner}", types.normalise(base, depth - 1) if depth > 1 else ""
                elif left.type == "subscript_expression":  # `pages[i] = page`: an array's element
                    inner = _txt(left.child_by_field_name("argument"))
                    base, depth = types.split(self.scope(idx).get(inner, ""))
                    name, ctype = f"{inner}[]", types.normalise(base, depth - 1) if depth > 1 else ""
                else:
                    name = _txt(left)
                    ctype = self.scope(idx).get(name, "")
                expr = node.child_by_field_name("right")
            if expr is None or not name or not _struct_pointer(ctype):
                continue
            top = name.lstrip("*") not in self.nested.get(idx, ())
            out.append(Value(fname, name, ctype, _txt(expr)[:240], node.start_point[0] + 1, expr.start_byte, top))
        return out

    def _member_stores(self, nodes: list[Node]) -> list[Value]:
        """What a local's members are given inside function bodies (`fio.page =
        page`, `struct f2fs_io_info fio = { .page = page }`, `req->page = p`),
        named "fio.page", when the value is an access path or a call: where a
        page handed on inside a structure comes from."""
        out: list[Value] = []
        for node in nodes:
            where = self.enclosing(node.start_byte)
            if where is None:
                continue
            fname, idx = where
            if node.type == "assignment_expression":
                left = node.child_by_field_name("left")
                pairs = [(_txt(left.child_by_field_name("argument")), left.child_by_field_name("field"),
                          node.child_by_field_name("right"))]
            else:
                local = _txt(node.child_by_field_name("declarator"))
                pairs = [(local, _designated(p), p.child_by_field_name("value"))
                         for p in node.child_by_field_name("value").named_children if p.type == "initializer_pair"]
            for local, member, expr in pairs:
                if member is None or expr is None or member.type != "field_identifier" or \
                        local not in self.scope(idx) or not _STORED.match(_txt(expr)):
                    continue
                top = local not in self.nested.get(idx, ())
                out.append(Value(fname, f"{local}.{_txt(member)}", "", _txt(expr)[:240], node.start_point[0] + 1,
                                 expr.start_byte, top))
        return out

    def _bindings(self, inits: list[Node], assigns: list[Node]) -> list[Binding]:
        out: list[Binding] = []
        for node in inits:
            value = node.child_by_field_name("value")
            fname, cast = _function_value(value)
            if fname is None:
                continue
            designators = node.children_by_field_name("designator")
            member_node = designators[-1].named_children[-1] if designators[-1].named_children else None
            if member_node is None or member_node.type != "field_identifier":
                continue
            owner = table = ""
            ilist = node.parent
            holder = ilist.parent if ilist is not None else None
            if holder is not None and holder.type == "init_declarator":
                decl = holder.parent
                if decl is not None and decl.type == "declaration":
                    owner = _base_type(decl.child_by_field_name("type"))
                    table = _txt(holder.child_by_field_name("declarator"))
            where = self.enclosing(node.start_byte)
            out.append(
                Binding("init", fname, node.start_point[0] + 1, owner.removeprefix("struct "),
                        _txt(member_node), "", cast, where[0] if where else None,
                        table=table if where is None and _IDENT_RE.match(table) else "")
            )
        for node in assigns:
            value = node.child_by_field_name("right")
            fname, cast = _function_value(value)
            if fname is None:
                continue
            where = self.enclosing(node.start_byte)
            idx = where[1] if where else None
            if idx is not None and fname in self.scope(idx):
                continue  # a local or parameter, not a function
            left = node.child_by_field_name("left")
            out.append(
                Binding("assign", fname, node.start_point[0] + 1, "",
                        _txt(left.child_by_field_name("field")),
                        self.recipe_text(left.child_by_field_name("argument"), idx), cast,
                        where[0] if where else None)
            )
        return out

    def _clashes(self) -> list[tuple[str, str]]:
        """Functions that already declare a parameter or local named like the
        parameter the plan may add (`struct address_space *mapping = ...`)."""
        out: set[tuple[str, str]] = set()
        names = self.cfg.clash_names
        if not names:
            return []
        for i, fn in enumerate(self.functions):
            if not fn.definition:
                continue
            for p in fn.params:
                if p.name in names:
                    out.add((fn.name, p.name))
            body = self.text[fn.body_start:fn.end] if fn.body_start >= 0 else b""
            if any(n.encode() in body for n in names):
                for n in names & self.scope(i).keys():
                    out.add((fn.name, n))
        return sorted(out)


# a condition `!` applies to without parentheses: a name, a member, a call
_SIMPLE_CONDITION = re.compile(r"[A-Za-z_][\w.>-]*(\s*\([^()]*\))?")


def _guards(node: Node) -> tuple[str, ...]:
    """The conditions of the if statements a call is inside, innermost first,
    up to its function; `!(cond)` where it is in the else branch."""
    out: list[str] = []
    child, parent = node, node.parent
    while parent is not None and parent.type != "function_definition" and len(out) < 4:
        if parent.type == "if_statement":
            cond = parent.child_by_field_name("condition")
            # (a call in the condition itself is not guarded by it)
            if cond is not None and not cond.start_byte <= child.start_byte < cond.end_byte:
                text = " ".join(_txt(cond).split())
                if text.startswith("(") and text.endswith(")"):
                    text = text[1:-1].strip()
                alt = parent.child_by_field_name("alternative")
                if alt is not None and alt.start_byte <= child.start_byte < alt.end_byte:
                    text = f"!{text}" if _SIMPLE_CONDITION.fullmatch(text) else f"!({text})"
                out.append(text[:200])
        child, parent = parent, parent.parent
    return tuple(out)


def _unterminated(root: Node, errors) -> tuple[tuple[str, int], ...]:
    """The comments and literals the file never closes: an ERROR that starts
    with `/*` and has no `*/` (tree-sitter swallows the rest of the file or
    the code up to some later `*/`), a MISSING closing quote."""
    out: list[tuple[str, int]] = []
    for e in errors:
        text = e.text or b""
        if text.startswith(b"/*") and b"*/" not in text:
            out.append(("comment", e.start_point[0] + 1))
    if root.has_error:
        stack = [root]
        while stack:
            n = stack.pop()
            if n.is_missing and n.type in ('"', "'"):
                out.append(("string" if n.type == '"' else "char", n.start_point[0] + 1))
            elif n.has_error:
                stack.extend(n.children)
    return tuple(sorted(set(out), key=lambda u: (u[1], u[0])))


def _designated(pair: Node) -> Node | None:
    """The member an initializer pair names (`.page = ...`), if one."""
    designator = pair.child_by_field_name("designator")
    return designator.named_children[-1] if designator is not None and designator.named_children else None


def _macro_params(args: list[Node]) -> tuple[Param, ...]:
    """SYSCALL_DEFINEn(name, type1, arg1, type2, arg2, ...)."""
    texts = [_txt(a) for a in args]
    return tuple(
        Param(texts[i + 1], types.normalise(texts[i].replace("*", " *")).replace(" *", " *"))
        for i in range(0, len(texts) - 1, 2)
    )


def _function_value(node: Node | None) -> tuple[str | None, str]:
    """An initializer or right-hand side that may name a function:
    `fn`, `&fn`, `(filler_t *)fn`."""
    if node is None:
        return None, ""
    t = node.type
    if t == "identifier":
        return _txt(node), ""
    if t == "pointer_expression" and node.child_by_field_name("operator").type == "&":
        inner = node.child_by_field_name("argument")
        return (_txt(inner), "") if inner.type == "identifier" else (None, "")
    if t == "cast_expression":
        inner, _ = _function_value(node.child_by_field_name("value"))
        return inner, types.normalise(_txt(node.child_by_field_name("type")))
    return None, ""


def split_cast_argument(text: str) -> tuple[str, str] | None:
    """`(filler_t *)fn` -> ("filler_t *", "fn"), for the graph stage."""
    m = _CAST_ARG.match(text.strip())
    return (m.group(1), m.group(2)) if m else None


def _is_write(node: Node, wrappers: frozenset[str]) -> bool:
    parent = node.parent
    while parent is not None and parent.type == "parenthesized_expression":
        node, parent = parent, parent.parent
    if parent is None:
        return False
    t = parent.type
    if t == "assignment_expression" and parent.child_by_field_name("left") == node:
        return True
    if t == "update_expression":
        return True
    if t == "pointer_expression" and parent.child_by_field_name("operator").type == "&":
        return True  # &page->mapping: cmpxchg targets and the like
    if t == "argument_list":
        call = parent.parent
        fn = call.child_by_field_name("function") if call is not None else None
        first = [c for c in parent.named_children if c.type != "comment"]
        if fn is not None and _txt(fn) in wrappers and first and first[0] == node:
            return True
    return False


def _transparent_wrapper(node: Node) -> Node | None:
    """The READ_ONCE(...) call whose only argument is node, if any."""
    parent = node.parent
    if parent is None or parent.type != "argument_list" or len(parent.named_children) != 1:
        return None
    call = parent.parent
    fn = call.child_by_field_name("function") if call is not None else None
    return call if fn is not None and _txt(fn) in TRANSPARENT else None


def _block_start(node: Node) -> int:
    """Start of the compound statement a declaration is in (-1 at file scope)."""
    parent = node.parent
    while parent is not None and parent.type != "compound_statement":
        parent = parent.parent
    return parent.start_byte if parent is not None else -1


def _struct_pointer(ctype: str) -> bool:
    base, depth = types.split(ctype) if ctype else ("", 0)
    return depth >= 1 and base.startswith(("struct ", "union "))


_NULLS = ("0", "NULL", "(void *)0")


def _purpose(node: Node) -> tuple[str, str, int, int, str, str, str, int]:
    """What the code does with a read's value: (purpose, member, cmp_start,
    cmp_end, cmp_op, cmp_other, cmp_text, cmp_line); see facts.Read."""
    parent = node.parent
    while parent is not None:
        if parent.type == "parenthesized_expression":
            node, parent = parent, parent.parent
        elif parent.type == "argument_list" and parent.parent is not None and \
                _txt(parent.parent.child_by_field_name("function")) in TRANSPARENT:
            node, parent = parent.parent, parent.parent.parent
        else:
            break
    none = ("use", "", -1, -1, "", "", "", 0)
    if parent is None:
        return none
    t = parent.type
    if t == "binary_expression":
        op = parent.child_by_field_name("operator").type
        left = parent.child_by_field_name("left")
        other = parent.child_by_field_name("right" if left == node else "left")
        if op in ("==", "!="):
            if other is None or other.type == "null" or _txt(other) in _NULLS:
                return ("null-test", *none[1:])
            return ("identity", "", parent.start_byte, parent.end_byte, op, _txt(other), _txt(parent),
                    parent.start_point[0] + 1)
        if op in ("&&", "||"):
            return ("null-test", *none[1:])
        if op in ("&", "|", "^"):
            return ("flag-test", *none[1:])
    if t == "unary_expression" and parent.child_by_field_name("operator").type == "!":
        return ("null-test", *none[1:])
    if t == "cast_expression":
        target = _txt(parent.child_by_field_name("type"))
        if "*" not in target and target != "void":
            return ("flag-test", *none[1:])  # (unsigned long)page->mapping & PAGE_MAPPING_ANON
    if t in ("if_statement", "while_statement", "conditional_expression") and \
            parent.child_by_field_name("condition") in (node, node.parent):
        return ("null-test", *none[1:])
    if t == "parenthesized_expression" or (t == "condition_clause"):
        return ("null-test", *none[1:])
    if t == "field_expression" and parent.child_by_field_name("argument") == node:
        return ("derive", _txt(parent.child_by_field_name("field")), -1, -1, "", "", "", 0)
    return none


def _access(node: Node) -> str:
    """How a read is used: an identity comparison, a dereference, or any use."""
    parent = node.parent
    while parent is not None and parent.type == "parenthesized_expression":
        node, parent = parent, parent.parent
    if parent is None:
        return "use"
    if parent.type == "call_expression" and _txt(parent.child_by_field_name("function")) in TRANSPARENT:
        return _access(parent)
    if parent.type == "argument_list" and parent.parent is not None:
        fn = parent.parent.child_by_field_name("function")
        if fn is not None and _txt(fn) in TRANSPARENT:
            return _access(parent.parent)
    if parent.type == "binary_expression":
        op = parent.child_by_field_name("operator")
        if op is not None and op.type in ("==", "!="):
            other = parent.child_by_field_name("right" if parent.child_by_field_name("left") == node else "left")
            if other is not None and other.type != "null" and _txt(other) not in ("0", "NULL"):
                return "compare"
    if parent.type == "field_expression" and parent.child_by_field_name("argument") == node:
        return "deref"
    return "use"
