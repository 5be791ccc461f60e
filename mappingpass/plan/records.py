"""The plan's records: what gains the parameter and why (`Step` chains),
the call sites and reads it changes, what it keeps and what it cannot
decide. Frozen dataclasses with a JSON form both ways (`Plan.to_json`,
`Plan.from_json`), so later commands read a plan without running the
fixpoint again."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from types import UnionType
from typing import Union, get_args, get_origin, get_type_hints

PLAN_SCHEMA = "mappingpass.plan/1"
CAST_TO = " cast to "  # in a Step's detail: written once here, read once (Step.next_node)


@dataclass(frozen=True)
class Step:
    """One link of a chain: `node` gains the parameter because of `why`."""

    node: str
    why: str  # "reads" | "calls" | "calls-through" | "implements" | "implemented-by" | "bound-to"
    #           | "twin-of" | "mentioned"
    file: str
    line: int
    detail: str  # the read expression ("reads"), else the next node of the chain
    #              ("(filler_t *) cast to NODE" for an implementation bound through a cast)

    @property
    def next_node(self) -> str:
        """The next node of the chain (for "reads": the read expression)."""
        return self.detail.rsplit(CAST_TO, 1)[-1].strip() if CAST_TO in self.detail else self.detail

    @classmethod
    def through_cast(cls, node: str, file: str, line: int, cast: str, target: str) -> Step:
        return cls(node, "implements", file, line, f"({cast}){CAST_TO}{target}")


@dataclass(frozen=True)
class PlanFunction:
    id: str
    name: str
    file: str
    line: int
    bodies: tuple[tuple[str, int], ...]
    prototypes: tuple[tuple[str, int], ...]
    param_name: str
    reason: tuple[Step, ...]  # the chain from this function to a read
    exported: bool = False  # EXPORT_SYMBOL: the cover letter lists the interface change
    page_param: int = -1  # the parameter the page comes through (-1: not known)


@dataclass(frozen=True)
class PlanSlot:
    id: str
    kind: str
    name: str
    owner: str
    decls: tuple[tuple[str, int], ...]
    reason: tuple[Step, ...]


@dataclass(frozen=True)
class CallSite:
    file: str
    line: int
    col: int
    caller: str
    callee: str  # function id or slot id
    via: str  # "direct" | "member" | "pointer"
    call: str  # the called expression as written
    argument: str
    how: str  # "parameter" | "provider" | "lookup" | "carrier" | "receiver" | "never-protected"
    #           | "needs-human" | "unresolved"
    paren: int  # byte offset of the argument list's "(" (for emit)
    nargs: int
    first_arg: int  # byte offset of the first argument, -1 if none
    evidence: str = ""  # where the page passed here comes from, and why this argument
    args: str = ""  # the arguments as written, ", "-joined (tells two calls of one callee apart)


@dataclass(frozen=True)
class Rewrite:
    file: str
    line: int
    col: int
    start: int
    end: int
    function: str
    from_: str
    to: str
    access: str  # "compare" keeps identity tests apart from ordinary reads
    context: str  # the mapping expression passed to the helper ("" for a membership test)
    purpose: str = "use"  # "identity" (a membership test) | "derive" | "use"
    evidence: str = ""  # where the page comes from, and why this mapping


@dataclass(frozen=True)
class Kept:
    """A kind-1 read the plan leaves as it is, and why: a NULL or flag test
    (the record keeps the low bits and is never NULL), a page that is never
    write protected, or a case that needs a human."""

    file: str
    line: int
    function: str
    expr: str
    reason: str  # "null-test" | "flag-test" | "never-protected" | "needs-human" | "debug"
    #              | "assertion" (a condition checked only to catch bugs, no mapping in scope)
    #              | "no-context" (no caller can say its mapping: every one passes NULL)
    evidence: str
    candidates: tuple[str, ...] = ()


@dataclass(frozen=True)
class Unresolved:
    function: str
    file: str
    line: int
    reason: str
    chain: tuple[Step, ...]


@dataclass(frozen=True)
class Plan:
    rules: str
    functions: tuple[PlanFunction, ...]
    slots: tuple[PlanSlot, ...]
    call_sites: tuple[CallSite, ...]
    rewrites: tuple[Rewrite, ...]
    unresolved: tuple[Unresolved, ...]
    runtime_reads: int  # kind 2-5 reads: handled at run time, not passed down
    parsed_on_demand: tuple[str, ...] = field(default=())
    kept: tuple[Kept, ...] = field(default=())  # kind-1 reads left as they are
    needs_human_sites: tuple[Kept, ...] = field(default=())  # call sites whose page's mapping is unclear

    def to_json(self) -> dict:
        def plain(obj):
            d = asdict(obj)
            if "from_" in d:
                d["from"] = d.pop("from_")
            return d

        return {
            "schema": PLAN_SCHEMA,
            "rules": self.rules,
            "summary": self.summary(),
            "functions": [plain(f) for f in self.functions],
            "slots": [plain(s) for s in self.slots],
            "call_sites": [plain(c) for c in self.call_sites],
            "rewrites": [plain(r) for r in self.rewrites],
            "unresolved": [plain(u) for u in self.unresolved],
            "kept": [plain(k) for k in self.kept],
            "needs_human_sites": [plain(k) for k in self.needs_human_sites],
            "parsed_on_demand": list(self.parsed_on_demand),
        }

    @classmethod
    def from_json(cls, data: dict) -> Plan:
        """The plan `to_json` wrote (its summary is recomputed, not read)."""
        def steps(items) -> tuple[Step, ...]:
            return tuple(Step(**s) for s in items)

        def places(items) -> tuple[tuple[str, int], ...]:
            return tuple((p, n) for p, n in items)

        if data.get("schema") != PLAN_SCHEMA:
            raise ValueError(f"not a {PLAN_SCHEMA} plan: {data.get('schema')!r}")
        return cls(
            rules=data["rules"],
            functions=tuple(PlanFunction(**{**f, "bodies": places(f["bodies"]), "prototypes": places(f["prototypes"]),
                                            "reason": steps(f["reason"])}) for f in data["functions"]),
            slots=tuple(PlanSlot(**{**s, "decls": places(s["decls"]), "reason": steps(s["reason"])})
                        for s in data["slots"]),
            call_sites=tuple(CallSite(**c) for c in data["call_sites"]),
            rewrites=tuple(Rewrite(**{k if k != "from" else "from_": v for k, v in r.items()})
                           for r in data["rewrites"]),
            unresolved=tuple(Unresolved(**{**u, "chain": steps(u["chain"])}) for u in data["unresolved"]),
            runtime_reads=data["summary"]["runtime_reads"],
            parsed_on_demand=tuple(data["parsed_on_demand"]),
            kept=tuple(Kept(**{**k, "candidates": tuple(k["candidates"])}) for k in data["kept"]),
            needs_human_sites=tuple(Kept(**{**k, "candidates": tuple(k["candidates"])})
                                    for k in data["needs_human_sites"]),
        )

    def files(self) -> list[str]:
        """Every file the plan changes: call sites, rewrites, the definitions and
        prototypes of what gains the parameter, the declarations of its slots
        (not the helper's header: emit.place_helper decides that)."""
        paths = {c.file for c in self.call_sites} | {r.file for r in self.rewrites}
        paths |= {p for f in self.functions for p, _ in (*f.bodies, *f.prototypes)}
        paths |= {p for s in self.slots if s.kind != "param" for p, _ in s.decls}
        return sorted(paths)

    def needs_human(self) -> list[Kept]:
        """The reads and call sites whose page's mapping a human must decide."""
        return [k for k in self.kept if k.reason == "needs-human"] + list(self.needs_human_sites)

    def signature_only(self) -> set[str]:
        """Functions that take the parameter only because a slot they implement
        does: nothing in them uses it (no read takes it, no call passes it)."""
        param = {f.id: f.param_name for f in self.functions}
        users = {c.caller for c in self.call_sites if c.how == "parameter"}
        users |= {w.function for w in self.rewrites if w.context == param.get(w.function)}
        return {f.id for f in self.functions if f.reason and f.reason[0].why == "implements" and f.id not in users}

    def summary(self) -> dict:
        reasons: dict[str, int] = {}
        for u in self.unresolved:
            reasons[u.reason] = reasons.get(u.reason, 0) + 1
        return {
            "functions": len(self.functions),
            "signature_only": len(self.signature_only()),
            "slots": len(self.slots),
            "call_sites": len(self.call_sites),
            "rewrites": len(self.rewrites),
            "identity_rewrites": sum(1 for r in self.rewrites if r.purpose == "identity"),
            "kept_reads": dict(sorted(Counter(k.reason for k in self.kept).items())),
            "needs_human": len(self.needs_human()),
            "unresolved": len(self.unresolved),
            "unresolved_by_reason": dict(sorted(reasons.items())),
            "runtime_reads": self.runtime_reads,
            "files": len({f for f, _ in _touched(self)}),
        }


def _touched(plan: Plan) -> set[tuple[str, int]]:
    out = {(f.file, f.line) for f in plan.functions}
    out |= {(c.file, c.line) for c in plan.call_sites}
    out |= {(r.file, r.line) for r in plan.rewrites}
    return out


def well_formed(obj: object) -> bool:
    """obj's fields hold what their annotations say, all the way down (a plan
    read back from the cache is checked before it is used)."""
    if not is_dataclass(obj):
        return False
    hints = _hints(type(obj))
    return all(_holds(getattr(obj, f.name), hints[f.name]) for f in fields(obj))


def _hints(cls: type) -> dict:
    if cls not in _HINTS:
        _HINTS[cls] = get_type_hints(cls)
    return _HINTS[cls]


_HINTS: dict[type, dict] = {}


def _holds(value: object, hint) -> bool:
    origin, args = get_origin(hint), get_args(hint)
    if origin is tuple:
        if not isinstance(value, tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_holds(v, args[0]) for v in value)
        return len(value) == len(args) and all(_holds(v, a) for v, a in zip(value, args, strict=True))
    if origin in (Union, UnionType):
        return any(_holds(value, a) for a in args)
    if hint is type(None):
        return value is None
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if is_dataclass(hint):
        return isinstance(value, hint) and well_formed(value)
    return isinstance(value, hint)
