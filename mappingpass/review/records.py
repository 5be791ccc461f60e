"""The review's records: the rules (finding kinds), findings, read verdicts,
hunk verdicts and the review itself, with their JSON form."""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass, field

from ..errors import UserError
from ..plan import Step

REVIEW_SCHEMA = "mappingpass.review/1"
LEVELS = ("none", "note", "warning", "error")
MAX_SUBSET_GROUPS = 10  # edit groups tried in every combination when matching a hunk
PATCH_LIMIT = 200  # files a patch may touch before a full build is cheaper (or a quarter of the tree)
MARKDOWN_LIMIT = 60000  # GitHub refuses comments over 65536 characters


class ReviewError(UserError):
    """Bad input (not a git tree, unknown revision, unusable index): one line, exit 2."""


# -- rules and records -------------------------------------------------------------
@dataclass(frozen=True)
class Rule:
    id: str
    name: str
    level: str  # default level; some findings raise or lower it (see the help)
    short: str
    help: str


RULES: dict[str, Rule] = {r.id: r for r in (
    Rule("MP101", "read-use-helper", "error",
         "new read of page->mapping in a function that has the mapping at hand",
         "A kind-1 read added or changed by this range sits in a function that can supply the mapping "
         "(a provider parameter such as a file, inode, kiocb or the mapping itself). Call the helper "
         "with that mapping instead; the finding carries the replacement."),
    Rule("MP102", "read-needs-passdown", "warning",
         "new read of page->mapping in a function that cannot supply the mapping",
         "A kind-1 read added or changed by this range sits in a function with no provider: the mapping "
         "would have to be passed down to it. The chain shows the functions that would gain the "
         "parameter and where the mapping would come from. Error when the check finds no caller that "
         "can supply it (a boundary: syscall, exported symbol, no callers, kind 2-5 caller)."),
    Rule("MP103", "read-runtime", "note",
         "new read of page->mapping of kind 2-5 (handled at run time)",
         "Core mm, block completion, debugging and GUP readers are not passed the mapping; the "
         "write-protect runtime covers them. Listed so that a reviewer sees them."),
    Rule("MP104", "read-unclassified", "note",
         "new read of page->mapping that no kind rule matches",
         "Add a kind rule for this path or function to the rules file."),
    Rule("MP201", "slot-signature-mismatch", "error",
         "a function bound to a slot disagrees with it about the mapping parameter",
         "A slot (ops-table member or function-pointer typedef) and a function bound to it must both "
         "take the mapping or both not; this range changed one of them. Warning when the function's "
         "signature is written by a macro whose parameters cannot be seen."),
    Rule("MP202", "call-missing-argument", "error",
         "a call does not pass the mapping its callee now takes",
         "A call through a slot, or of a function, whose signature changed in this range, with one "
         "argument too few (or one too many after the parameter was removed)."),
    Rule("MP203", "cast-hides-signature", "warning",
         "a function bound through a cast to a slot whose signature changed",
         "The cast hides the compiler's check of the changed signature. Error when the function and the "
         "slot disagree about the mapping parameter."),
    Rule("MP204", "prototype-mismatch", "error",
         "a prototype disagrees with its definition about the mapping parameter",
         "A function's definition and one of its prototypes (usually in a header) must change together; "
         "this range changed one of them."),
    Rule("MP301", "hunk-departs-from-plan", "warning",
         "a hunk of the series differs from what the plan emits",
         "The hunk is not what `mappingpass emit` produces from the base for these lines (nor any part "
         "of it): review it by hand."),
    Rule("MP302", "hunk-unresolvable-read", "note",
         "a mechanical hunk rewrites a read the check cannot resolve",
         "The hunk is what the plan emits, but the read it touches is unresolvable in the model (a "
         "caller passes NULL or no mapping): behaviour stays as today for write protected pages."),
)}


@dataclass(frozen=True)
class Related:
    file: str
    line: int
    message: str


@dataclass(frozen=True)
class Finding:
    rule: str
    level: str  # "error" | "warning" | "note"
    file: str
    line: int
    col: int
    message: str
    function: str | None = None
    key: str = ""  # what the finding is about, without line numbers (fingerprints)
    chain: tuple[Step, ...] = ()
    related: tuple[Related, ...] = ()
    verdict: str = ""  # check verdict of the read: resolvable | unresolvable | runtime
    fix: str = ""  # replacement text for [col, end_col) of line (MP101)
    end_col: int = 0

    @property
    def name(self) -> str:
        return RULES[self.rule].name

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d["name"] = self.name
        return d


@dataclass(frozen=True)
class ReadVerdict:
    side: str  # "base" (the read the hunk replaces) | "head" (a read the hunk adds)
    file: str
    line: int
    function: str | None
    expr: str
    kind: int | str
    verdict: str
    why: str = ""  # the witness's error for unresolvable reads
    at: int = 0  # the line in the head where the hunk rewrote or added it


@dataclass(frozen=True)
class Hunk:
    file: str
    base_start: int
    base_lines: int
    head_start: int
    head_lines: int
    status: str  # "mechanical" | "needs-review"
    detail: str
    reads: tuple[ReadVerdict, ...] = ()
    at: int = 0  # first changed line in the head (where findings about the hunk point)


@dataclass(frozen=True)
class Review:
    root: str
    git_top: str
    prefix: str  # the tree's top relative to the git top ("" or "linux/")
    base: str
    head: str
    files: tuple[str, ...]  # .c/.h files the range changes
    other_files: int  # other files the range changes
    findings: tuple[Finding, ...]
    series: bool
    hunks: tuple[Hunk, ...] = ()
    plan_files_outside: tuple[str, ...] = ()  # series: files the base plan changes, the range not
    plan_edits_left_out: tuple[tuple[str, int], ...] = ()  # series: (file, edits) in range files
    stats: dict = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        c = Counter(f.level for f in self.findings)
        return {lv: c.get(lv, 0) for lv in ("error", "warning", "note")}

    def hunk_counts(self) -> dict[str, int]:
        c = Counter(h.status for h in self.hunks)
        return {"mechanical": c.get("mechanical", 0), "needs-review": c.get("needs-review", 0)}

    def to_json(self) -> dict:
        return {
            "schema": REVIEW_SCHEMA,
            "root": self.root, "git_top": self.git_top, "prefix": self.prefix,
            "base": self.base, "head": self.head,
            "files": list(self.files), "other_files": self.other_files,
            "counts": self.counts(),
            "findings": [f.to_json() for f in self.findings],
            "series": self.series,
            "hunk_counts": self.hunk_counts(),
            "hunks": [dataclasses.asdict(h) for h in self.hunks],
            "plan_files_outside": list(self.plan_files_outside),
            "plan_edits_left_out": [{"file": f, "edits": n} for f, n in self.plan_edits_left_out],
            "stats": self.stats,
        }


def exit_code(review: Review, fail_on: str = "error") -> int:
    """1 when a finding is at or above `fail_on` (error | warning | note), else 0."""
    floor = LEVELS.index(fail_on)
    return 1 if any(LEVELS.index(f.level) >= floor for f in review.findings) else 0
