"""Loading and validating a rules file (`rules/*.toml`).

The rules are the kernel knowledge: which field is read, through which
accessors, which files to parse up front, the kind of each reader, and (for
the plan) the providers, the new parameter and the helper. A broken rules
file is an input error with a one-line message, never a traceback.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import re
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path

from . import rules_schema
from .errors import UserError
from .resources import default_rules


class RulesError(UserError):
    """A rules file that cannot be used; the message names the file and the entry."""


@dataclass(frozen=True)
class ParseConfig:
    """What the front-end needs from the rules."""

    field: str
    accessors: frozenset[str]
    write_wrappers: frozenset[str]
    clash_names: frozenset[str]
    blank_words: tuple[str, ...]
    blank_calls: tuple[str, ...]
    definition_macros: tuple[tuple[str, str], ...]
    # helpers that wrap an accessor's answer once converted
    # (folio_mapping_wp_of(folio, folio_mapping(folio), M)): the accessor call
    # inside is not a read of its own
    converted: frozenset[str] = frozenset()


@dataclass(frozen=True)
class KindRule:
    kind: int
    why: str
    paths: tuple[str, ...]
    functions: re.Pattern[str] | None
    # slot ids the read's function is bound to (registered as): completion
    # handlers are kind 3 because of where they are registered, not their name
    bound_to: re.Pattern[str] | None = None
    # the function is an accessor, the rules' own or one derived from the code
    # (`accessors = true`): the accessor definitions
    accessors: bool = False

    def matches(self, path: str, function: str | None, bound: tuple[str, ...] = (),
                accessors: frozenset[str] = frozenset()) -> bool:
        if self.paths and not any(_glob(path, g) for g in self.paths):
            return False
        if self.functions is not None or self.accessors:
            named = bool(function and self.functions is not None and self.functions.match(function))
            if not (named or (self.accessors and function in accessors)):
                return False
        if self.bound_to is not None and not any(self.bound_to.search(s) for s in bound):
            return False
        return True


@dataclass(frozen=True)
class Lookup:
    """A function whose result (or the batch it fills) holds pages of a mapping
    given as one of its arguments."""

    function: str
    arg: int  # the argument that names the mapping
    of: str  # "mapping" (the argument is one), "inode" (->i_mapping), "file" (->f_mapping),
    #          "rac" (a readahead_control: ->mapping)
    fills: int  # the argument (a batch, an array) the pages are stored in; -1: the result
    why: str


@dataclass(frozen=True)
class Carrier:
    """A structure that records the mapping of the pages it holds."""

    type: str  # "struct vm_fault *"
    mapping: str  # template with {p}: "{p}->vma->vm_file->f_mapping"
    never_protected: bool
    why: str


@dataclass(frozen=True)
class NeverProtected:
    """A mapping whose pages user space can never map (so never write protected)."""

    pattern: re.Pattern[str]  # matched against the mapping expression
    why: str


@dataclass(frozen=True)
class Registration:
    """A macro or function that stores a function as a callback."""

    name: str
    arg: int
    slot: str  # slot id the function is bound to
    why: str


@dataclass(frozen=True)
class SlotTie:
    """What every caller of an operation guarantees about two of its
    arguments: check binds an implementation's parameter `param` to `expr` of
    parameter `source` (`{p}->f_mapping`) where a path starts at it."""

    slot: str  # slot id
    param: int
    source: int
    expr: str  # uses {p}: the source parameter
    why: str


@dataclass(frozen=True)
class Provider:
    """A parameter type that can supply the mapping, and how."""

    type: str  # normalised parameter type, "struct file *"
    expr: str  # template with {p} for the parameter name: "{p}->f_mapping"
    why: str
    nullable: bool  # callers are known to pass NULL for this parameter sometimes
    # a page parameter beside it is not evidence that the page is its (an inode
    # beside a page may be the inode a directory entry points to): the plan
    # passes the mapping down instead, and callers decide from where the page came
    weak: bool = False
    # path globs of code where the type does not name the mapping (a vm_fault
    # in core mm's generic fault path may be a special mapping's, with no file)
    not_in: tuple[str, ...] = ()


@dataclass(frozen=True)
class ReceiverProvider:
    """`M->a_ops->member(...)`: calls through this struct pass `M`."""

    struct: str
    strip: str


@dataclass(frozen=True)
class PlanRules:
    param_type: str
    param_name: str
    clash_name: str
    position: str  # "first" | "last"
    unresolved_argument: str
    helper_page: str
    helper_folio: str
    helper_header: str
    helper_definition: str
    receiver_providers: tuple[ReceiverProvider, ...]
    scope_kinds: tuple[int, ...]
    providers: tuple[Provider, ...]
    boundary_functions: re.Pattern[str] | None
    boundary_paths: tuple[str, ...]
    exported_is_boundary: bool
    changeable_slots: re.Pattern[str] | None  # None: every slot may change
    # macros whose arguments name a function without using it (trace events)
    mention_macros: re.Pattern[str] | None = None
    membership_page: str = ""  # identity tests: page_in_mapping(page, M)
    membership_folio: str = ""
    # reads and identity tests through an accessor keep its answer:
    # folio_mapping_wp_of(folio, folio_mapping(folio), M), folio_in_mapping_of(...)
    helper_page_of: str = ""
    helper_folio_of: str = ""
    # headers that may define the helper when `helper_header` cannot (a header
    # it includes calls the helper): tried in order, chosen from the include graph
    helper_fallback_headers: tuple[str, ...] = ()
    membership_page_of: str = ""
    membership_folio_of: str = ""
    lookups: tuple[Lookup, ...] = ()
    carriers: tuple[Carrier, ...] = ()
    never_protected: tuple[NeverProtected, ...] = ()
    registrations: tuple[Registration, ...] = ()
    slot_ties: tuple[SlotTie, ...] = ()  # what the callers of an operation guarantee (check's bindings)
    page_converters: frozenset[str] = frozenset()  # page_folio(p), folio_page(f, n): the same page
    chain_depth: int = 2  # member chains to a provider: struct hops before the provider's own member
    chain_skip: frozenset[str] = frozenset()  # members never followed (b_assoc_map: another mapping)
    chain_from: re.Pattern[str] | None = None  # struct tags member chains start from
    # macro -> indexes of its arguments that only report (-1: all): f2fs_bug_on's sbi
    debug_macros: dict[str, tuple[int, ...]] = field(default_factory=dict)
    debug_calls: re.Pattern[str] | None = None  # calls whose every argument is only recorded (trace_*)
    nullable_slots: frozenset[str] = frozenset()  # "slot#index": callers hand that argument NULL
    slot_groups: tuple[tuple[str, ...], ...] = ()  # slots of one type: they change together
    # ops tables installed only on inodes user space cannot map: table -> why
    never_protected_ops: dict[str, str] = field(default_factory=dict)  # table name or glob -> why
    # conditions under which a call's page is never protected (`!is_data_inode(inode)`)
    never_protected_guards: tuple[NeverProtected, ...] = ()
    # functions whose result holds pages (or buffers) never write protected: function -> why
    never_sources: dict[str, str] = field(default_factory=dict)
    # macros whose arguments are conditions checked only to catch bugs (BUG_ON, WARN_ON...)
    assertion_macros: frozenset[str] = frozenset()
    # filesystems that call the operations of another filesystem's mappings (path globs)
    stacking_paths: tuple[str, ...] = ()
    # files outside fs/ that are a filesystem of their own (mm/shmem.c)
    filesystem_files: frozenset[str] = frozenset()
    # code outside fs/ whose page caches are one filesystem's: path glob -> that filesystem
    backed_by: tuple[tuple[str, str], ...] = ()
    # members of a buffer head that hold its page (bh->b_page): a page of unknown origin there
    # is not taken from an inode in scope
    buffer_page_members: frozenset[str] = frozenset()
    # members that lead to another structure of the same page (bh->b_this_page)
    same_page_members: frozenset[str] = frozenset()
    # calls that lock a page (its first argument): a NULL test after one is the truncation check
    page_locks: frozenset[str] = frozenset()

    def never_protected_table(self, table: str) -> str:
        """Why the pages of an ops table are never protected ("" if they may be):
        the table is named in never_protected_ops, or matches a glob there."""
        if table in self.never_protected_ops:
            return self.never_protected_ops[table]
        return next((why for pattern, why in self.never_protected_ops.items()
                     if "*" in pattern and table and fnmatch.fnmatchcase(table, pattern)), "")


@dataclass(frozen=True)
class Rules:
    path: str
    digest: str
    name: str
    field: str
    receiver_types: tuple[str, ...]
    accessors: frozenset[str]
    write_wrappers: frozenset[str]
    relevant_words: tuple[bytes, ...]
    skip_dirs: frozenset[str]
    parse: ParseConfig
    kinds: tuple[KindRule, ...]
    plan: PlanRules | None
    # accessors found from the code (index.accessors), name -> why; digest
    # then covers them, source_digest is the rules file's alone
    derived: tuple[tuple[str, str], ...] = ()
    source_digest: str = ""

    def with_accessors(self, derived: dict[str, str]) -> Rules:
        """These rules with the accessors derived from a tree's code added:
        what the index parses with and the plan reads by."""
        base = self.source_digest or self.digest
        names = self.roots() | frozenset(derived)
        words = tuple(w for w in self.relevant_words if w not in self._derived_words())
        words += tuple(f"{n}(".encode() for n in sorted(derived))  # a call of one is a read
        key = hashlib.sha256(json.dumps(sorted(derived)).encode()).hexdigest()[:8]
        return replace(self, accessors=names, parse=replace(self.parse, accessors=names), relevant_words=words,
                       derived=tuple(sorted(derived.items())), source_digest=base,
                       digest=f"{base}+{key}" if derived else base)

    def _derived_words(self) -> set[bytes]:
        return {f"{n}(".encode() for n, _ in self.derived}

    def roots(self) -> frozenset[str]:
        """The rules file's own accessors."""
        return self.accessors - {name for name, _ in self.derived}

    def named(self) -> list[tuple[str, str]]:
        """(entry, name) of every function, macro or table a rules entry names
        by the tree's own spelling: what a newer tree may have renamed."""
        out = [(f"read.accessors {a}", a) for a in sorted(self.roots())]
        pr = self.plan
        if pr is not None:
            out += [(f"plan.lookup {lk.function}", lk.function) for lk in pr.lookups]
            out += [(f"plan.never_source {n}", n) for n in pr.never_sources]
            out += [(f"plan.registration {r.name}", r.name) for r in pr.registrations]
            out += [(f"plan.never_protected_ops {t}", t) for t in pr.never_protected_ops if "*" not in t]
            out += [(f"plan.context.{key} {n}", n) for key, names in (
                ("page_converters", pr.page_converters), ("page_locks", pr.page_locks),
                ("assertion_macros", pr.assertion_macros), ("debug_macros", pr.debug_macros.keys()))
                for n in sorted(names)]
        return out

    def kind_of(self, path: str, function: str | None, bound: tuple[str, ...] = ()) -> tuple[int | str, str]:
        for rule in self.kinds:
            if rule.matches(path, function, bound, self.accessors):
                return rule.kind, rule.why
        return "other", "no kind rule matched"


def _glob(path: str, pattern: str) -> bool:
    if pattern.endswith("/**"):
        return path.startswith(pattern[:-2])
    return fnmatch.fnmatchcase(path, pattern)


def _need(table: dict, key: str, kind: type, where: str):
    if key not in table:
        raise RulesError(f"missing '{key}' in [{where}]")
    value = table[key]
    if not isinstance(value, kind):
        raise RulesError(f"'{key}' in [{where}] must be a {kind.__name__}")
    return value


_C_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_C_TYPE = re.compile(r"(?:(?:const|struct|union|enum|unsigned|signed)\s+)*[A-Za-z_][A-Za-z0-9_]*(?:\s*\*)*")


def _template(table: dict, key: str, where: str) -> str:
    """An expression of the rules written around `{p}`, the parameter it applies to."""
    text = _need(table, key, str, where)
    if "{p}" not in text:
        raise RulesError(f"{where}: {key} must use {{p}} for the parameter")
    return text


def _c_name(table: dict, key: str, where: str, default: str | None = None) -> str:
    """A rules value written into C as a name (a parameter, a helper): it
    must be a C identifier, or the diff would carry whatever it says."""
    value = _need(table, key, str, where) if default is None else table.get(key, default)
    if not isinstance(value, str) or not _C_IDENT.fullmatch(value):
        raise RulesError(f"'{key}' in [{where}] must be a C identifier, not {value!r}")
    return value


def _optional_name(table: dict, key: str, where: str) -> str:
    return _c_name(table, key, where, "") if table.get(key, "") != "" else ""


def _c_type(table: dict, key: str, where: str) -> str:
    value = _need(table, key, str, where)
    if not _C_TYPE.fullmatch(value.strip()):
        raise RulesError(f"'{key}' in [{where}] must be a C type (`struct address_space *`), not {value!r}")
    return value


def _regex(text: str, where: str, flags: int = 0) -> re.Pattern:
    try:
        return re.compile(text, flags)
    except re.error as exc:
        raise RulesError(f"bad regex in {where}: {exc}") from None


MAX_RELEVANT_WORDS = 1000


def load(path: str | Path | None = None) -> Rules:
    rules_path = Path(path) if path is not None else default_rules()
    try:
        raw = rules_path.read_bytes()
    except OSError as exc:
        raise RulesError(f"{rules_path}: cannot read rules file ({exc.strerror})") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise RulesError(f"{rules_path}: not valid TOML ({exc})") from None
    try:
        return _build(rules_path, raw, data)
    except RulesError as exc:
        raise RulesError(f"{rules_path}: {exc}") from None


def _build(rules_path: Path, raw: bytes, data: dict) -> Rules:
    if data.get("schema") != "mappingpass.rules/1":
        raise RulesError("schema must be \"mappingpass.rules/1\"")
    bad = rules_schema.check(data)
    if bad:
        raise RulesError(bad)
    read = _need(data, "read", dict, "top level")
    field = _need(read, "field", str, "read")
    accessors = frozenset(_need(read, "accessors", list, "read"))
    wrappers = frozenset(read.get("write_wrappers", []))
    index = _need(data, "index", dict, "top level")
    words = _need(index, "relevant_words", list, "index")
    if not words or not all(isinstance(w, str) and w for w in words):
        raise RulesError("[index] relevant_words must be a list of non-empty strings")
    words = list(dict.fromkeys(words))
    if len(words) > MAX_RELEVANT_WORDS:
        # every file is scanned for each word: a list this long is a mistake, and would take hours
        raise RulesError(f"[index] relevant_words has {len(words)} different words; at most "
                         f"{MAX_RELEVANT_WORDS}: they are the texts that make a file worth parsing")
    cp = data.get("cparse", {})
    plan_rules = _plan(data["plan"]) if "plan" in data else None
    wrappers_of = frozenset(n for n in (plan_rules.helper_page_of, plan_rules.helper_folio_of,
                                        plan_rules.membership_page_of, plan_rules.membership_folio_of)
                            if n) if plan_rules else frozenset()
    parse = ParseConfig(
        converted=wrappers_of,
        field=field,
        accessors=accessors,
        write_wrappers=wrappers,
        clash_names=frozenset([plan_rules.param_name] if plan_rules else []),
        blank_words=tuple(cp.get("blank_words", [])),
        blank_calls=tuple(cp.get("blank_calls", [])),
        definition_macros=tuple(sorted(cp.get("definition_macros", {}).items())),
    )
    kinds = []
    for i, entry in enumerate(data.get("kind", [])):
        where = f"kind #{i + 1}"
        kind = _need(entry, "kind", int, where)  # (its range: rules_schema)
        funcs = entry.get("functions")
        bound = entry.get("bound_to")
        kinds.append(
            KindRule(kind, _need(entry, "why", str, where), tuple(entry.get("paths", [])),
                     _regex(funcs, where) if funcs else None, _regex(bound, where) if bound else None,
                     bool(entry.get("accessors", False)))
        )
    return Rules(
        path=str(rules_path),
        digest=hashlib.sha256(raw).hexdigest()[:16],
        name=data.get("name", rules_path.stem),
        field=field,
        receiver_types=tuple(_need(read, "receiver_types", list, "read")),
        accessors=accessors,
        write_wrappers=wrappers,
        relevant_words=tuple(w.encode() for w in words),
        skip_dirs=frozenset(index.get("skip_dirs", [])),
        parse=parse,
        kinds=tuple(kinds),
        plan=plan_rules,
    )


def _plan(plan: dict) -> PlanRules:
    param = _need(plan, "parameter", dict, "plan")
    helper = _need(plan, "helper", dict, "plan")
    providers = []
    for i, entry in enumerate(plan.get("provider", [])):
        where = f"plan.provider #{i + 1}"
        expr = _template(entry, "expr", where)
        providers.append(
            Provider(_need(entry, "type", str, where), expr, _need(entry, "why", str, where),
                     bool(entry.get("nullable", False)), bool(entry.get("weak", False)),
                     tuple(entry.get("not_in", [])))
        )
    boundary = plan.get("boundary", {})
    position = param.get("position", "first")  # (first or last: rules_schema)
    funcs = boundary.get("functions")
    receivers = tuple(
        ReceiverProvider(_need(e, "struct", str, "plan.receiver_provider"),
                         _need(e, "strip", str, "plan.receiver_provider"))
        for e in plan.get("receiver_provider", [])
    )
    ctx = _context_rules(plan)
    return PlanRules(
        **ctx,
        param_type=_c_type(param, "type", "plan.parameter"),
        param_name=_c_name(param, "name", "plan.parameter"),
        clash_name=_c_name(param, "clash_name", "plan.parameter", "ctx_" + param["name"]),
        position=position,
        unresolved_argument=plan.get("unresolved_argument", "NULL"),
        helper_page=_c_name(helper, "page", "plan.helper"),
        helper_folio=_c_name(helper, "folio", "plan.helper"),
        helper_header=helper.get("header", ""),
        helper_fallback_headers=tuple(helper.get("fallback_headers", [])),
        helper_definition=helper.get("definition", ""),
        receiver_providers=receivers,
        scope_kinds=tuple(plan.get("scope_kinds", [1])),
        providers=tuple(providers),
        boundary_functions=_regex(funcs, "[plan.boundary] functions") if funcs else None,
        boundary_paths=tuple(boundary.get("paths", [])),
        exported_is_boundary=bool(boundary.get("exported", True)),
        changeable_slots=_regex(boundary["slots"], "[plan.boundary] slots") if "slots" in boundary else None,
        mention_macros=(_regex(boundary["mention_macros"], "[plan.boundary] mention_macros")
                        if "mention_macros" in boundary else None),
    )


def _context_rules(plan: dict) -> dict:
    """[plan.membership], [[plan.lookup]], [[plan.carrier]], [[plan.never_protected]],
    [[plan.registration]], [[plan.slot_tie]] and [plan.context]: where pages come from."""
    member = plan.get("membership", {})
    lookups = []
    for i, e in enumerate(plan.get("lookup", [])):
        where = f"plan.lookup #{i + 1}"
        of = e.get("of", "mapping")  # (which values: rules_schema)
        lookups.append(Lookup(_need(e, "function", str, where), _need(e, "arg", int, where), of,
                              int(e.get("fills", -1)), _need(e, "why", str, where)))
    carriers = []
    for i, e in enumerate(plan.get("carrier", [])):
        where = f"plan.carrier #{i + 1}"
        mapping = _template(e, "mapping", where)
        carriers.append(Carrier(_need(e, "type", str, where), mapping, bool(e.get("never_protected", False)),
                                _need(e, "why", str, where)))
    never = _never_protected(plan, "never_protected", "mapping")
    regs = tuple(
        Registration(_need(e, "name", str, f"plan.registration #{i + 1}"),
                     _need(e, "arg", int, f"plan.registration #{i + 1}"),
                     _need(e, "slot", str, f"plan.registration #{i + 1}"),
                     _need(e, "why", str, f"plan.registration #{i + 1}"))
        for i, e in enumerate(plan.get("registration", [])))
    ties = []
    for i, e in enumerate(plan.get("slot_tie", [])):
        where = f"plan.slot_tie #{i + 1}"
        expr = _template(e, "expr", where)
        ties.append(SlotTie(_need(e, "slot", str, where), _need(e, "param", int, where),
                            _need(e, "source", int, where), expr, _need(e, "why", str, where)))
    context = plan.get("context", {})
    helper = plan.get("helper", {})
    return dict(
        membership_page=_optional_name(member, "page", "plan.membership"),
        membership_folio=_optional_name(member, "folio", "plan.membership"),
        membership_page_of=_optional_name(member, "page_of", "plan.membership"),
        membership_folio_of=_optional_name(member, "folio_of", "plan.membership"),
        helper_page_of=_optional_name(helper, "page_of", "plan.helper"),
        helper_folio_of=_optional_name(helper, "folio_of", "plan.helper"),
        lookups=tuple(lookups), carriers=tuple(carriers), never_protected=never, registrations=regs,
        slot_ties=tuple(ties),
        page_converters=frozenset(context.get("page_converters", [])),
        chain_depth=int(context.get("chain_depth", 2)),
        chain_skip=frozenset(context.get("chain_skip", [])),
        chain_from=_regex(context["chain_from"], "[plan.context] chain_from") if "chain_from" in context else None,
        nullable_slots=frozenset(context.get("nullable_slots", [])),
        debug_macros=_debug_macros(context.get("debug_macros", {})),
        debug_calls=_regex(context["debug_calls"], "[plan.context] debug_calls") if "debug_calls" in context else None,
        slot_groups=tuple(tuple(g) for g in context.get("slot_groups", [])),
        never_protected_ops={_need(e, "table", str, f"plan.never_protected_ops #{i + 1}"):
                             _need(e, "why", str, f"plan.never_protected_ops #{i + 1}")
                             for i, e in enumerate(plan.get("never_protected_ops", []))},
        never_protected_guards=_never_protected(plan, "never_protected_guard", "condition"),
        never_sources={_need(e, "function", str, f"plan.never_source #{i + 1}"):
                       _need(e, "why", str, f"plan.never_source #{i + 1}")
                       for i, e in enumerate(plan.get("never_source", []))},
        assertion_macros=frozenset(context.get("assertion_macros", [])),
        page_locks=frozenset(context.get("page_locks", [])),
        same_page_members=frozenset(context.get("same_page_members", [])),
        buffer_page_members=frozenset(context.get("buffer_page_members", [])),
        stacking_paths=tuple(context.get("stacking_paths", [])),
        filesystem_files=frozenset(context.get("filesystem_files", [])),
        backed_by=tuple(sorted(context.get("backed_by", {}).items())),
    )


def _never_protected(plan: dict, table: str, key: str) -> tuple[NeverProtected, ...]:
    """[[plan.<table>]]: a pattern (`key`) of what says a page is never
    protected, and why."""
    out = []
    for i, e in enumerate(plan.get(table, [])):
        where = f"plan.{table} #{i + 1}"
        out.append(NeverProtected(_regex(_need(e, key, str, where), where), _need(e, "why", str, where)))
    return tuple(out)


def _debug_macros(table: dict) -> dict[str, tuple[int, ...]]:
    """(rules_schema has checked it maps macros to lists of argument indexes)"""
    return {k: tuple(v) for k, v in table.items()}
