"""Loading and validating a rules file (`rules/*.toml`).

The rules are the kernel knowledge: which field is read, through which
accessors, which files to parse up front, the kind of each reader, and (for
the plan) the providers, the new parameter and the helper. A broken rules
file is an input error with a one-line message, never a traceback.
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from .cparse import ParseConfig

DEFAULT_RULES = Path(__file__).resolve().parent.parent / "rules" / "mapping.toml"


class RulesError(Exception):
    """A rules file that cannot be used; the message names the file and the entry."""


@dataclass(frozen=True)
class KindRule:
    kind: int
    why: str
    paths: tuple[str, ...]
    functions: re.Pattern[str] | None

    def matches(self, path: str, function: str | None) -> bool:
        if self.paths and not any(_glob(path, g) for g in self.paths):
            return False
        if self.functions is not None and not (function and self.functions.match(function)):
            return False
        return True


@dataclass(frozen=True)
class Provider:
    """A parameter type that can supply the mapping, and how."""

    type: str  # normalised parameter type, "struct file *"
    expr: str  # template with {p} for the parameter name: "{p}->f_mapping"
    why: str
    nullable: bool  # callers are known to pass NULL for this parameter sometimes


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

    def kind_of(self, path: str, function: str | None) -> tuple[int | str, str]:
        for rule in self.kinds:
            if rule.matches(path, function):
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


def _regex(text: str, where: str, flags: int = 0) -> re.Pattern:
    try:
        return re.compile(text, flags)
    except re.error as exc:
        raise RulesError(f"bad regex in {where}: {exc}") from None


def load(path: str | Path | None = None) -> Rules:
    rules_path = Path(path) if path is not None else DEFAULT_RULES
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
    read = _need(data, "read", dict, "top level")
    field = _need(read, "field", str, "read")
    accessors = frozenset(_need(read, "accessors", list, "read"))
    wrappers = frozenset(read.get("write_wrappers", []))
    index = _need(data, "index", dict, "top level")
    words = _need(index, "relevant_words", list, "index")
    if not words or not all(isinstance(w, str) and w for w in words):
        raise RulesError("[index] relevant_words must be a list of non-empty strings")
    cp = data.get("cparse", {})
    plan_rules = _plan(data["plan"]) if "plan" in data else None
    parse = ParseConfig(
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
        kind = _need(entry, "kind", int, where)
        if kind not in (1, 2, 3, 4, 5):
            raise RulesError(f"{where}: kind must be 1..5")
        funcs = entry.get("functions")
        kinds.append(
            KindRule(kind, _need(entry, "why", str, where), tuple(entry.get("paths", [])),
                     _regex(funcs, where) if funcs else None)
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
        expr = _need(entry, "expr", str, where)
        if "{p}" not in expr:
            raise RulesError(f"{where}: expr must use {{p}} for the parameter")
        providers.append(
            Provider(_need(entry, "type", str, where), expr, _need(entry, "why", str, where),
                     bool(entry.get("nullable", False)))
        )
    boundary = plan.get("boundary", {})
    position = param.get("position", "first")
    if position not in ("first", "last"):
        raise RulesError("[plan.parameter] position must be \"first\" or \"last\"")
    funcs = boundary.get("functions")
    receivers = tuple(
        ReceiverProvider(_need(e, "struct", str, "plan.receiver_provider"),
                         _need(e, "strip", str, "plan.receiver_provider"))
        for e in plan.get("receiver_provider", [])
    )
    return PlanRules(
        param_type=_need(param, "type", str, "plan.parameter"),
        param_name=_need(param, "name", str, "plan.parameter"),
        clash_name=param.get("clash_name", "ctx_" + param["name"]),
        position=position,
        unresolved_argument=plan.get("unresolved_argument", "NULL"),
        helper_page=_need(helper, "page", str, "plan.helper"),
        helper_folio=_need(helper, "folio", str, "plan.helper"),
        helper_header=helper.get("header", ""),
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
