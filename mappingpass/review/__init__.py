"""The review stage: what a git range adds to or breaks in the passdown, for a PR bot.

    review(PATH, base, head, db) -> Review

Re-analysis follows the size of the change. The index (`--db`) holds the facts
of one state S of the tree and its cached graph. A revision R differs from S
in a set of files: the range's files, plus whatever S and R disagree on (known
from git when S was anchored to a commit by an earlier review, else from the
work tree, stat first and content digest second, as `index_tree` does). Only
those files are read from git and parsed (or taken from the store when their
digest matches, or from the review's own cache), and the cached graph is
*patched*: their old contributions removed, the new ones resolved with the
graph's own name tables and added (`graph.update`, the function `graph.build`
itself is made of). Files that merely mention a name whose
definition changed are re-resolved from their stored facts; deferred files
that call or bind a changed function or slot are parsed on demand, as `plan`
does. The review never writes the store (so the graph cache stays valid); it
analyzes a cold, empty store first, as `analyze` would.

What it reports (rules in `RULES`, findings as frozen `Finding` records):

* kind-1 reads that are new or changed in the range: in a function that can
  supply the mapping (MP101: use the helper, with the fix), or that cannot
  (MP102: the chain of functions that would need the parameter, from the plan
  run on just those reads, and the check verdict); new reads of kinds 2-5 and
  unclassified ones as notes (MP103, MP104);
* signatures that became inconsistent: a function bound to a slot where one
  has the mapping parameter and the other not (MP201), a call through a
  changed slot or of a changed function that does not pass it (MP202), a
  binding through a cast that hides a changed signature (MP203), a prototype
  that disagrees with its definition (MP204);
* for a generated series (the helper appears, or functions gain the
  parameter): every hunk compared with what the plan computed on the base
  would emit for those lines (any subset of the plan's edit groups counts as
  mechanical, so every commit of a series can be checked), with the check
  verdict of every read it touches (MP301 departs from the plan, MP302
  mechanical but the read stays unresolvable).

Outputs: `to_sarif` (SARIF 2.1.0), `github_annotations`, `to_markdown`,
`to_text`; `Review.to_json` (schema `mappingpass.review/1`).
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import os
import pickle
import re
import sqlite3
import subprocess
import time
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

from .. import __version__, safepickle
from .. import check as checkmod
from .. import emit as emitmod
from .. import graph as graphmod
from .. import index as indexmod
from .. import plan as planmod
from .. import rules as rulesmod
from .. import types as ctypes
from ..emit.wrap import rewrap_edited
from ..errors import UserError
from ..facts import FACTS_VERSION, FileFacts
from ..graph import Analysis, ReadRecord, edges_in, edges_out
from ..index.cparse import Extractor
from ..plan import Plan, Step
from ..rules import Rules

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


# -- git ---------------------------------------------------------------------------
class _Git:
    def __init__(self, root: Path) -> None:
        self.root = root
        try:
            proc = subprocess.run(["git", "-C", str(root), "rev-parse", "--show-toplevel", "--show-prefix"],
                                  capture_output=True, text=True, check=False)
        except OSError:
            raise ReviewError("git is not installed; review needs it (apt-get install git)") from None
        if proc.returncode != 0:
            raise ReviewError(f"{root}: not inside a git repository; review compares two commits of one")
        lines = proc.stdout.split("\n")
        self.top = lines[0]
        self.prefix = lines[1] if len(lines) > 1 else ""

    def run(self, *args: str, data: bytes | None = None) -> bytes:
        proc = subprocess.run(["git", "-c", "core.quotepath=off", "-C", str(self.root), *args],
                              input=data, capture_output=True, check=False)
        if proc.returncode != 0:
            msg = proc.stderr.decode(errors="replace").strip().splitlines()
            raise ReviewError(f"git {args[0]} failed in {self.root}: {msg[-1] if msg else proc.returncode}")
        return proc.stdout

    def commit(self, rev: str) -> str:
        proc = subprocess.run(["git", "-C", str(self.root), "rev-parse", "--verify", "--quiet", "--end-of-options",
                               f"{rev}^{{commit}}"], capture_output=True, text=True, check=False)
        if proc.returncode != 0 or not proc.stdout.strip():
            raise ReviewError(f"{rev}: not a commit in {self.top}; give a branch, tag or commit id")
        return proc.stdout.strip()

    def exists(self, rev: str) -> bool:
        proc = subprocess.run(["git", "-C", str(self.root), "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"],
                              capture_output=True, check=False)
        return proc.returncode == 0

    def changed(self, a: str, b: str | None = None) -> list[tuple[str, str]]:
        """(status letter, path relative to the tree's top) of files that differ
        between a and b (or a and the work tree), under the tree's top."""
        out = self.run("diff", "--name-status", "--no-renames", "-z", "--relative", a,
                       *([b] if b else []), "--", ".")
        parts = out.decode("utf-8", "surrogateescape").split("\0")
        return [(parts[i][:1], parts[i + 1]) for i in range(0, len(parts) - 1, 2)]

    def untracked(self) -> list[str]:
        out = self.run("ls-files", "--others", "--exclude-standard", "-z", "--", ".")
        return [p for p in out.decode("utf-8", "surrogateescape").split("\0") if p]

    def head(self) -> str | None:
        try:
            return self.run("rev-parse", "--verify", "HEAD").decode().strip()
        except ReviewError:
            return None

    def blobs(self, rev: str, paths: Iterable[str]) -> dict[str, bytes | None]:
        """Contents of the files at rev (None where the file does not exist there)."""
        paths = sorted(set(paths))
        if not paths:
            return {}
        spec = "".join(f"{rev}:{self.prefix}{p}\n" for p in paths).encode("utf-8", "surrogateescape")
        out = self.run("cat-file", "--batch", data=spec)
        result: dict[str, bytes | None] = {}
        pos = 0
        for p in paths:
            nl = out.index(b"\n", pos)
            header = out[pos:nl].split()
            pos = nl + 1
            if len(header) == 3 and header[1] in (b"blob", b"tree", b"commit", b"tag"):
                size = int(header[2])
                result[p] = out[pos:pos + size] if header[1] == b"blob" else None
                pos += size + 1
            else:
                result[p] = None  # "<spec> missing"
        return result


# -- the review's own cache: facts of file versions and on-demand searches ---------------
class _Cache:
    def __init__(self, db_dir: Path, version: str) -> None:
        self.version = version
        self.conn = sqlite3.connect(db_dir / "review.sqlite")
        self.conn.executescript(
            """
            CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS facts (path TEXT, digest TEXT, version TEXT, facts BLOB,
                                              PRIMARY KEY (path, digest, version));
            CREATE TABLE IF NOT EXISTS searched (key TEXT, name TEXT, hits TEXT, PRIMARY KEY (key, name));
            """
        )

    def get_meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        self.conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))
        self.conn.commit()

    def facts(self, path: str, digest: str) -> FileFacts | None | bool:
        """Cached facts; None for a version cached as not parsed; False if unknown."""
        row = self.conn.execute("SELECT facts FROM facts WHERE path=? AND digest=? AND version=?",
                                (path, digest, self.version)).fetchone()
        if row is None:
            return False
        return safepickle.loads(zlib.decompress(row[0])) if row[0] else None

    def put_facts(self, items: list[tuple[str, str, FileFacts | None]]) -> None:
        self.conn.executemany(
            "INSERT OR REPLACE INTO facts VALUES (?, ?, ?, ?)",
            [(p, d, self.version,
              zlib.compress(safepickle.dumps(f), 1) if f else b"")
             for p, d, f in items])
        self.conn.commit()

    def searched(self, key: str) -> dict[str, list[str]]:
        return {n: json.loads(h) for n, h in
                self.conn.execute("SELECT name, hits FROM searched WHERE key=?", (key,))}

    def put_searched(self, key: str, names: Iterable[str], hits: list[str]) -> None:
        text = json.dumps(sorted(hits))
        self.conn.executemany("INSERT OR REPLACE INTO searched VALUES (?, ?, ?)",
                              [(key, n, text) for n in names])
        self.conn.commit()

    def close(self) -> None:
        self.conn.close()


_EXTRACTOR: Extractor | None = None


def _init_extractor(config) -> None:
    global _EXTRACTOR
    _EXTRACTOR = Extractor(config)


def _extract_one(item: tuple[str, bytes, str]) -> FileFacts | None:
    path, data, digest = item
    try:
        return _EXTRACTOR.extract(path, data, digest)
    except Exception:  # noqa: BLE001 - a front-end bug on one file must not end the review
        return None


# -- states of the tree --------------------------------------------------------------
def _state(row) -> str:
    return row.state if row is not None else ""


def _is_source(rel: str, skip_dirs: frozenset[str]) -> bool:
    if not rel.endswith((".c", ".h")):
        return False
    parts = rel.split("/")[:-1]
    for i, part in enumerate(parts):
        if part in skip_dirs or part.startswith(".") or "/".join(parts[: i + 1]) in skip_dirs:
            return False
    return True


class _State:
    """The tree at one revision: the store's facts with some files replaced."""

    def __init__(self, ctx: _Context, rev: str, label: str) -> None:
        self.ctx = ctx
        self.rev = rev
        self.label = label
        self.files: dict[str, FileFacts | None] = {}  # path -> facts at rev (None: absent/deferred)
        self.data: dict[str, bytes | None] = {}  # bytes at rev of the files read from git
        self.extra: dict[str, FileFacts] = {}  # deferred files parsed on demand
        self.analysis: Analysis | None = None

    def facts(self, path: str) -> FileFacts | None:
        if path in self.files:
            return self.files[path]
        if path in self.extra:
            return self.extra[path]
        return self.ctx.stored(path)

    def facts_dict(self, paths: Iterable[str]) -> dict[str, FileFacts]:
        out = {}
        for p in paths:
            ff = self.facts(p)
            if ff is not None:
                out[p] = ff
        return out


class _Context:
    def __init__(self, root: Path, git: _Git, store: indexmod.Store, rules: Rules, jobs: int,
                 log: Callable[[str], None]) -> None:
        self.root = root
        self.git = git
        self.store = store
        self.rules = rules
        self.jobs = jobs or os.cpu_count() or 1
        self.log = log
        self.rows = store.rows()
        self.key = store.content_key()
        self.cache = _Cache(store.db_dir, f"{rules.digest}:{FACTS_VERSION}")
        self._stored: dict[str, FileFacts | None] = {}
        scope = json.loads(store.get_meta("scope") or "null") or [None, [""], None, False]
        self.subpaths: list[str] = list(scope[1]) or [""]
        self.parse_all = bool(scope[3])
        self.stats: Counter = Counter()
        self.timing: dict[str, float] = {}
        self._drift: set[str] | None = None
        self._all_facts: dict[str, FileFacts] | None = None
        self._anchor_ok: bool | None = None
        self._untracked: set[str] | None = None
        self.parsed_count = sum(1 for r in self.rows.values() if r.state == "parsed")

    # facts ----------------------------------------------------------------------
    def stored(self, path: str) -> FileFacts | None:
        if path not in self._stored:
            found = self.store.load_facts([path]) if path in self.rows else []
            self._stored[path] = found[0] if found else None
        return self._stored[path]

    def preload(self, paths: Iterable[str]) -> None:
        want = [p for p in paths if p not in self._stored and _state(self.rows.get(p)) == "parsed"]
        if want:
            for ff in self.store.load_facts(want):
                self._stored[ff.path] = ff
        for p in want:
            self._stored.setdefault(p, None)

    def in_scope(self, rel: str) -> bool:
        if rel in self.rows:
            return True
        if not _is_source(rel, self.rules.skip_dirs):
            return False
        if "" in self.subpaths:
            return True
        if any(rel.startswith(s.rstrip("/") + "/") for s in self.subpaths):
            return True
        return rel.startswith("include/") and rel.endswith(".h")

    def extract(self, items: dict[str, tuple[bytes, bool]]) -> dict[str, FileFacts | None]:
        """path -> (bytes, parse even if not relevant) -> facts (None: deferred or skipped).
        The store's facts when its digest matches, else the review cache, else parsed."""
        out: dict[str, FileFacts | None] = {}
        todo: list[tuple[str, bytes, str]] = []
        self.preload(items)
        for path, (data, force) in sorted(items.items()):
            digest = indexmod.digest_of(data)
            row = self.rows.get(path)
            if row is not None and row.digest == digest and row.state == "parsed":
                out[path] = self.stored(path)
                self.stats["facts_from_store"] += 1
                continue
            if len(data) > indexmod.MAX_FILE_BYTES:
                out[path] = None
                continue
            if not (force or self.parse_all or any(w in data for w in self.rules.relevant_words)):
                out[path] = None
                continue
            cached = self.cache.facts(path, digest)
            if cached is not False:
                out[path] = cached
                self.stats["facts_from_cache"] += 1
                continue
            todo.append((path, data, digest))
        if todo:
            started = time.monotonic()
            results = list(indexmod.pool.run(_extract_one, todo, jobs=self.jobs, initializer=_init_extractor,
                                             initargs=(self.rules.parse,), chunksize=2, ordered=True))
            for (path, _data, _digest), ff in zip(todo, results, strict=True):
                out[path] = ff
            self.cache.put_facts([(p, d, ff) for (p, _, d), ff in zip(todo, results, strict=True)])
            self.stats["files_parsed"] += len(todo)
            self.timing["parse"] = self.timing.get("parse", 0.0) + time.monotonic() - started
        return out

    # where the store and a revision differ ----------------------------------------------
    def anchor(self) -> str | None:
        """The commit whose files the store holds, if an earlier review saw it."""
        value = self.cache.get_meta("anchor")
        if not value:
            return None
        key, commit = value.split(" ", 1)
        if key != self.key:
            return None
        if self._anchor_ok is None:  # a clone without that commit (another job's checkout)
            self._anchor_ok = self.git.exists(commit)
        return commit if self._anchor_ok else None

    def drift(self) -> set[str]:
        """Files where the work tree and the store differ (stat, then content)."""
        if self._drift is not None:
            return self._drift
        started = time.monotonic()
        wanted: list[str] = [rel for under in self.subpaths
                             for rel in indexmod.iter_sources(self.root, self.rules.skip_dirs, under)]
        if "" not in self.subpaths and "include" not in self.subpaths and (self.root / "include").is_dir():
            wanted += [rel for rel in indexmod.iter_sources(self.root, self.rules.skip_dirs, "include")
                       if rel.endswith(".h")]
        seen: set[str] = set()
        drift: set[str] = set()
        for rel in wanted:
            if rel in seen:
                continue
            seen.add(rel)
            row = self.rows.get(rel)
            if row is None:
                drift.add(rel)
                continue
            try:
                st = os.stat(self.root / rel)
            except OSError:
                drift.add(rel)
                continue
            if row.size == st.st_size and row.mtime == st.st_mtime_ns:
                continue
            try:
                same = bool(row.digest) and indexmod.digest_of((self.root / rel).read_bytes()) == row.digest
            except OSError:
                same = False
            if not same:
                drift.add(rel)
        drift |= {p for p in self.rows if p not in seen}
        self._drift = drift
        self.timing["worktree_check"] = time.monotonic() - started
        return drift

    def overrides(self, rev: str) -> set[str]:
        """Files whose content at rev may differ from the store's."""
        anchor = self.anchor()
        if anchor is not None:
            names = {p for _, p in self.git.changed(anchor, rev)}
        else:
            if self._untracked is None:
                self._untracked = set(self.git.untracked())
            names = self.drift() | {p for _, p in self.git.changed(rev)} | self._untracked
        return {p for p in names if self.in_scope(p)}

    def maybe_anchor(self, known: dict[str, dict[str, bytes | None]]) -> None:
        """Remember which commit the store holds, so that later reviews ask git
        instead of checking the work tree: the work tree's commit when the work
        tree is clean and the store matches it; else one of the `known`
        revisions (rev -> files read at it, the base in practice: an index of
        the base in CI, the head checked out) when the store and the work tree
        differ in exactly the files that differ between that revision and the
        work tree's commit, and the store holds that revision's versions."""
        if self.anchor() is not None:
            return
        head = self.git.head()
        if head is None:
            return
        if self._untracked is None:
            self._untracked = set(self.git.untracked())
        dirty = [p for _, p in self.git.changed("HEAD")] + sorted(self._untracked)
        if any(_is_source(p, self.rules.skip_dirs) for p in dirty):
            return
        drift = self.drift()
        if not drift:
            self.cache.set_meta("anchor", f"{self.key} {head}")
            return
        for rev, blobs in known.items():
            if {p for _, p in self.git.changed(rev, head) if self.in_scope(p)} != drift:
                continue
            data = dict(blobs)
            data.update(self.git.blobs(rev, [p for p in drift if p not in data]))
            if all((self.rows.get(p) is None) == (data.get(p) is None)
                   and (data.get(p) is None or self.rows[p][2] == indexmod.digest_of(data[p]))
                   for p in drift):
                self.cache.set_meta("anchor", f"{self.key} {rev}")
                return

    # states ---------------------------------------------------------------------------
    def state(self, rev: str, label: str, range_files: set[str]) -> _State:
        st = _State(self, rev, label)
        paths = self.overrides(rev) | range_files
        started = time.monotonic()
        st.data = self.git.blobs(rev, paths)
        items = {p: (d, p in range_files or _state(self.rows.get(p)) == "parsed")
                 for p, d in st.data.items() if d is not None}
        facts = self.extract(items)
        st.files = {p: facts.get(p) for p in paths}
        self.timing[f"read_{label}"] = time.monotonic() - started
        return st

    def build(self, st: _State) -> None:
        """The state's analysis: the cached graph of the store, patched."""
        started = time.monotonic()
        analysis = graphmod.cached(self.store, self.rules)
        if analysis is None:
            self.log("review: building the graph of the index (no cache yet)")
            analysis = graphmod.load_or_build(self.store, self.rules)
            analysis = graphmod.cached(self.store, self.rules) or analysis
        self.timing[f"load_graph_{st.label}"] = time.monotonic() - started
        old = {p: self.stored(p) for p in st.files}
        old = {p: f for p, f in old.items() if f is not None}
        new = {p: f for p, f in st.files.items() if f is not None}
        old, new = self._with_reresolved(st, old, new, analysis)
        if self._too_big(old, new):
            self.rebuild(st)
            return
        started = time.monotonic()
        st.analysis = graphmod.update(analysis, self.rules, old, new, load=st.facts)
        self.stats[f"reresolved_{st.label}"] = len(set(old) & set(new) - set(st.files))
        self.timing[f"patch_{st.label}"] = time.monotonic() - started

    def rebuild(self, st: _State) -> None:
        """The state's analysis built from all its facts (graph.build), when
        the change is too big for a patch to pay."""
        started = time.monotonic()
        if self._all_facts is None:
            self._all_facts = {ff.path: ff for ff in self.store.load_facts()}
        facts = dict(self._all_facts)
        for p, ff in {**st.files, **st.extra}.items():
            if ff is None:
                facts.pop(p, None)
            else:
                facts[p] = ff
        st.analysis = graphmod.build([facts[p] for p in sorted(facts)], self.rules)
        self.stats["full_builds"] += 1
        self.timing[f"build_{st.label}"] = time.monotonic() - started

    def _too_big(self, old: dict, new: dict) -> bool:
        """Patching costs per file touched, a build per file of the tree: past a
        quarter of the tree a build is cheaper."""
        return len(set(old) | set(new)) > max(PATCH_LIMIT, self.parsed_count // 4)

    def _with_reresolved(self, st: _State, old: dict, new: dict, analysis: Analysis) -> tuple[dict, dict]:
        """old/new plus, with the same facts on both sides, the state's other
        files that mention a name whose resolution the change affects."""
        changed_old = {p: f for p, f in old.items() if new.get(p) is not f}
        changed_new = {p: f for p, f in new.items() if old.get(p) is not f}
        words = graphmod.resolution_words(changed_old, changed_new, analysis)
        if not words:
            return old, new
        patching = set(old) | set(new)
        # files as the work tree has them: the store's (where the state keeps them) and on-demand ones
        on_disk = [p for p, r in self.rows.items()
                   if r.state == "parsed" and p not in st.files and p not in st.extra and p not in patching]
        on_disk += [p for p in st.extra if p not in patching]
        whole, fixed = graphmod.split_words(words)
        hits = set(indexmod.grep_files(self.root, sorted(on_disk), whole, fixed)) if on_disk else set()
        # files the state took from git: searched in memory
        alternatives = [re.escape(f.encode()) for f in fixed]
        if whole:
            alternatives.append(rb"\b(?:" + b"|".join(re.escape(w.encode()) for w in whole) + rb")\b")
        pattern = re.compile(b"|".join(alternatives))
        hits |= {p for p, ff in st.files.items()
                 if ff is not None and p not in patching and pattern.search(st.data.get(p) or b"")}
        self.preload(hits)
        old, new = dict(old), dict(new)
        for p in hits:
            ff = st.facts(p)
            if ff is not None:
                old[p] = new[p] = ff
        return old, new

    def texts_mentioning(self, st: _State, names: set[str]) -> dict[str, bytes]:
        """The bytes at the state's revision of its parsed files that mention
        one of names (for plan.unseen_mentions)."""
        if not names:
            return {}
        on_disk = {p for p, r in self.rows.items() if r.state == "parsed" and p not in st.files}
        on_disk |= {p for p in st.extra if p not in st.files}
        texts: dict[str, bytes] = {}
        for p in indexmod.grep_files(self.root, sorted(on_disk), sorted(names)) if on_disk else []:
            try:
                texts[p] = (self.root / p).read_bytes()
            except OSError:
                continue
        pattern = re.compile(rb"\b(?:" + b"|".join(re.escape(n.encode()) for n in sorted(names)) + rb")\b")
        for p, data in st.data.items():
            if data is not None and st.files.get(p) is not None and pattern.search(data):
                texts[p] = data
        return texts

    def _base_key(self, st: _State) -> str:
        h = hashlib.blake2b(digest_size=16)
        h.update(f"{self.key}|{self.rules.digest}|{graphmod.GRAPH_VERSION}|"
                 f"{FACTS_VERSION}".encode())
        for p in sorted(st.files):
            data = st.data.get(p)
            h.update(f"\0{p}\0{indexmod.digest_of(data) if data is not None else '-'}".encode())
        return h.hexdigest()

    def load_base(self, st: _State) -> Plan | None:
        """The analysis (deferred files parsed on demand included) and the plan
        of this state, from the last review that computed them: reviews of pull
        requests against the same base share them."""
        started = time.monotonic()
        try:
            with open(self.store.db_dir / "review-base.pickle", "rb") as fh:
                if safepickle.load(fh) != self._base_key(st):
                    return None
                st.analysis, st.extra, plan = safepickle.load(fh)
        except (OSError, EOFError, pickle.UnpicklingError, AttributeError, TypeError, ValueError):
            return None
        self.stats["base_from_cache"] = 1
        self.timing[f"load_graph_{st.label}"] = time.monotonic() - started
        return plan

    def save_base(self, st: _State, plan: Plan) -> None:
        path = self.store.db_dir / "review-base.pickle"
        tmp = path.with_suffix(".tmp")
        try:
            with open(tmp, "wb") as fh:
                safepickle.dump(self._base_key(st), fh)
                safepickle.dump((st.analysis, st.extra, plan), fh)
            os.replace(tmp, path)
        except OSError:
            pass  # a cache only

    def on_demand(self, st: _State, words: set[str], fixed: set[str], searched: set[str]) -> list[str]:
        """Parse the deferred files that mention these names (the tree-wide
        prefilter `plan` uses) and patch them into the state; returns them."""
        words, fixed = words - searched, fixed - searched
        if not words and not fixed:
            return []
        searched |= words | fixed
        memo = self.cache.searched(self.key)
        known = {n for n in words | fixed if n in memo}
        hits: set[str] = {h for n in known for h in memo[n]}
        todo_w, todo_f = sorted(words - known), sorted(fixed - known)
        if todo_w or todo_f:
            deferred = self.store.searchable_deferred()
            started = time.monotonic()
            found = indexmod.grep_files(self.root, deferred, todo_w, todo_f) if deferred else []
            self.timing["grep"] = self.timing.get("grep", 0.0) + time.monotonic() - started
            self.cache.put_searched(self.key, todo_w + todo_f, found)
            hits |= set(found)
        hits = {h for h in hits if h not in st.files and h not in st.extra}
        if not hits:
            return []
        data: dict[str, tuple[bytes, bool]] = {}
        for p in sorted(hits):
            try:
                data[p] = ((self.root / p).read_bytes(), True)
            except OSError:
                continue
        facts = {p: f for p, f in self.extract(data).items() if f is not None}
        if not facts:
            return []
        st.extra.update(facts)
        old, new = self._with_reresolved(st, {}, dict(facts), st.analysis)
        if self._too_big(old, new):
            self.rebuild(st)
        else:
            graphmod.update(st.analysis, self.rules, old, new, load=st.facts)
        self.stats[f"on_demand_{st.label}"] += len(facts)
        return sorted(facts)


# -- diffs ---------------------------------------------------------------------------------
def _lines(data: bytes | None) -> list[bytes]:
    return data.splitlines(keepends=True) if data else []


def _opcodes(a: list[bytes], b: list[bytes]) -> list[tuple[str, int, int, int, int]]:
    return [op for op in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes() if op[0] != "equal"]


def _head_line(blocks, line: int, default: int) -> int:
    """The head line that base line `line` became in these change blocks."""
    for _, b1, b2, h1, h2 in blocks:
        if b1 < line <= b2:
            return h1 + min(line - 1 - b1, max(h2 - h1 - 1, 0)) + 1
    return default


def _has_mapping(params, param_type: str) -> bool:
    want = ctypes.normalise(param_type)
    return any(ctypes.normalise(t) == want for _, t in params)


def _signatures(facts: dict[str, FileFacts]) -> tuple[dict[str, tuple], dict[str, tuple]]:
    fns: dict[str, tuple] = {}
    slots: dict[str, tuple] = {}
    for path, ff in facts.items():
        for fn in ff.functions:
            if fn.definition:
                fns.setdefault(graphmod.function_id(path, fn),
                               tuple((p.name, ctypes.normalise(p.type)) for p in fn.params))
        for s in ff.slots:
            slots.setdefault(graphmod.slot_id(s), tuple((p.name, ctypes.normalise(p.type)) for p in s.params))
    return fns, slots


# -- the review ----------------------------------------------------------------------------
def review(path: str | Path, base: str, head: str | None = None, db: str | Path = ".mappingpass",
           rules_path: str | None = None, series: str = "auto", jobs: int = 0,
           log: Callable[[str], None] | None = None) -> Review:
    """Review the range base..head of the git tree at path (see the module doc)."""
    started = time.monotonic()
    log = log or (lambda _msg: None)
    given = Path(path)
    if not given.exists():
        raise ReviewError(f"{given}: no such directory; give the top of a kernel tree in a git repository")
    if not given.is_dir():
        raise ReviewError(f"{given}: not a directory; give the top of a kernel tree in a git repository")
    if series not in ("auto", "yes", "no"):
        raise ReviewError(f"--series {series}: say auto, yes or no")
    root = indexmod.find_tree_top(given)
    git = _Git(root)
    base_sha = git.commit(base)
    head_sha = git.commit(head or "HEAD")
    store, rules = _open_index(Path(db), root, rules_path, jobs, log)
    timing: dict[str, float] = {"open": time.monotonic() - started}
    ctx = None
    try:
        ctx = _Context(root, git, store, rules, jobs, log)
        try:
            reviewer = _Reviewer(ctx, base_sha, head_sha, series)
            result = reviewer.run()
            ctx.maybe_anchor({base_sha: reviewer.basest.data, head_sha: reviewer.headst.data})
        except indexmod.StoreError as exc:  # grep failed in the tree
            raise ReviewError(str(exc)) from None
        timing.update(ctx.timing)
        timing["total"] = time.monotonic() - started
        stats = {**dict(ctx.stats), "anchored": ctx.anchor() is not None,
                 "seconds": {k: round(v, 3) for k, v in sorted(timing.items())}}
        return dataclasses.replace(result, root=str(root), git_top=git.top, prefix=git.prefix, stats=stats)
    finally:
        if ctx is not None:
            ctx.cache.close()
        store.close()


def analysis_at(path: str | Path, rev: str, db: str | Path = ".mappingpass", rules_path: str | None = None,
                full: bool = False) -> Analysis:
    """The analysis of the tree at a revision, as review computes it: the
    index's cached graph patched with the files that differ (or, full=True,
    graph.build over the same facts)."""
    root = indexmod.find_tree_top(Path(path))
    git = _Git(root)
    sha = git.commit(rev)
    store, rules = _open_index(Path(db), root, rules_path, 0, lambda _msg: None)
    try:
        ctx = _Context(root, git, store, rules, 0, lambda _msg: None)
        st = ctx.state(sha, "at", set())
        if full:
            ctx.rebuild(st)
        else:
            ctx.build(st)
        ctx.cache.close()
        return st.analysis
    finally:
        store.close()


def _open_index(db: Path, root: Path, rules_path: str | None, jobs: int,
                log: Callable[[str], None]) -> tuple[indexmod.Store, Rules]:
    fresh = not (db / "index.sqlite").exists()
    try:
        store = indexmod.Store(db, create=True)
    except indexmod.StoreError as exc:
        raise ReviewError(str(exc)) from None
    try:
        rules = rulesmod.load(rules_path or store.get_meta("rules_path"))
    except rulesmod.RulesError as exc:
        store.close()
        raise ReviewError(str(exc)) from None
    if rules.plan is None:
        store.close()
        raise ReviewError(f"{rules.path}: no [plan] section; review needs the plan's rules")
    if fresh or store.get_meta("root") is None or not store.state_counts():
        # a cold index: analyze the work tree as `mappingpass analyze` does
        log(f"review: no index in {db}; analyzing {root} first")
        indexmod.index_tree(root, [""], rules, store, jobs or os.cpu_count() or 1)
        store.set_meta("root", str(root.resolve()))
        store.set_meta("rules_path", str(Path(rules.path).resolve()))
        store.commit()
        facts = store.load_facts()
        for _ in range(4):  # struct definitions that type a receiver, from deferred headers
            tags = sorted(graphmod.missing_types(facts, rules.plan.chain_from if rules.plan else None))
            added = indexmod.expand_types(root, rules, store, tags) if tags else []
            if not added:
                break
            facts += store.load_facts(added)
        graphmod.load_or_build(store, rules, facts)
    return store, rules


class _Reviewer:
    def __init__(self, ctx: _Context, base: str, head: str, series: str) -> None:
        self.ctx = ctx
        self.rules = ctx.rules
        self.pr = ctx.rules.plan
        self.base = base
        self.head = head
        self.series_mode = series
        self.findings: list[Finding] = []
        self.seen: set[tuple] = set()

    def add(self, f: Finding) -> None:
        ident = (f.rule, f.file, f.line, f.key or f.message)
        if ident not in self.seen:
            self.seen.add(ident)
            self.findings.append(f)

    # -- driver ------------------------------------------------------------------
    def run(self) -> Review:
        ctx = self.ctx
        changes = ctx.git.changed(self.base, self.head)
        self.range = sorted({p for _, p in changes if _is_source(p, self.rules.skip_dirs)})
        other = len({p for _, p in changes} - set(self.range))
        range_set = set(self.range)
        self.headst = ctx.state(self.head, "head", range_set)
        self.basest = ctx.state(self.base, "base", range_set)
        self.added: dict[str, set[int]] = {}
        self.removed: dict[str, set[int]] = {}
        for p in self.range:
            b, h = _lines(self.basest.data.get(p)), _lines(self.headst.data.get(p))
            ops = _opcodes(b, h)
            self.added[p] = {j + 1 for _, _, _, j1, j2 in ops for j in range(j1, j2)}
            self.removed[p] = {i + 1 for _, i1, i2, _, _ in ops for i in range(i1, i2)}
        base_range = {p: f for p in self.range if (f := self.basest.files.get(p)) is not None}
        head_range = {p: f for p in self.range if (f := self.headst.files.get(p)) is not None}
        bf, bs = _signatures(base_range)
        hf, hs = _signatures(head_range)
        self.changed_fns = {k for k in hf if bf.get(k) != hf[k]}
        self.changed_slots = {k for k in hs if bs.get(k) != hs[k]}
        self.lost = {k for k in bf if k in hf and _has_mapping(bf[k], self.pr.param_type)
                     and not _has_mapping(hf[k], self.pr.param_type)}
        self.lost |= {k for k in bs if k in hs and _has_mapping(bs[k], self.pr.param_type)
                      and not _has_mapping(hs[k], self.pr.param_type)}
        # what existed and gained the parameter (a new function that takes a mapping gained nothing)
        self.gained_fns = {k for k in self.changed_fns if k in bf and _has_mapping(hf[k], self.pr.param_type)
                           and not _has_mapping(bf[k], self.pr.param_type)}
        self.gained_slots = {k for k in self.changed_slots if k in bs and _has_mapping(hs[k], self.pr.param_type)
                             and not _has_mapping(bs[k], self.pr.param_type)}

        ctx.build(self.headst)
        if self.changed_fns or self.changed_slots:
            # callers and implementations of what changed, in files not parsed up front
            # (only what existed before: unchanged files cannot call what is new)
            words = {k.rsplit("::", 1)[-1] for k in self.changed_fns if k in bf}
            words |= {k.split(":", 1)[1] for k in self.changed_slots if k.startswith("typedef:") and k in bs}
            fixed = {f"{sep}{k.rsplit('.', 1)[1]}" for k in self.changed_slots if k.startswith("member:")
                     and k in bs for sep in ("->", ".")}
            started = time.monotonic()
            ctx.on_demand(self.headst, words, fixed, set())
            ctx.timing["on_demand_head"] = time.monotonic() - started

        started = time.monotonic()
        self.reads()
        self.signatures()
        ctx.timing["findings"] = time.monotonic() - started
        helpers = (self.pr.helper_page.encode(), self.pr.helper_folio.encode())
        is_series = self.series_mode == "yes" or (self.series_mode == "auto" and (
            bool(self.gained_fns or self.gained_slots) or any(
                any(h in line for h in helpers)
                for p in self.range for j, line in enumerate(_lines(self.headst.data.get(p)), 1)
                if j in self.added[p])))
        hunks: list[Hunk] = []
        outside: tuple[str, ...] = ()
        left_out: tuple[tuple[str, int], ...] = ()
        if is_series:
            started = time.monotonic()
            hunks, outside, left_out = self.series()
            ctx.timing["series"] = time.monotonic() - started
        findings = sorted(self.findings, key=lambda f: (f.file, f.line, f.col, f.rule, f.message))
        return Review("", "", "", self.base, self.head, tuple(self.range), other, tuple(findings),
                      is_series, tuple(hunks), outside, left_out)

    # -- reads ---------------------------------------------------------------------
    def reads(self) -> None:
        a = self.headst.analysis
        scope = self.pr.scope_kinds
        gone = Counter()
        for p in self.range:
            ff = self.basest.files.get(p)
            if ff is not None:
                gone.update((r.function, r.expr) for r in ff.reads if r.line in self.removed[p])
        helpers = {self.pr.helper_page, self.pr.helper_folio, self.pr.membership_page, self.pr.membership_folio}
        touched = [r for r in a.reads if r.file in self.added and r.line in self.added[r.file]
                   and r.function not in helpers]
        new: list[ReadRecord] = []
        for r in touched:
            if gone[(r.function, r.expr)] > 0:
                gone[(r.function, r.expr)] -= 1  # moved or re-indented, not new
            else:
                new.append(r)
        # a function that gained the parameter in this range must use it for every read
        stale = [r for r in a.reads if r.function_id in self.gained_fns and r.kind in scope and r not in new]
        self.head_reads_touched = touched
        for r in new:
            if r.kind in scope:
                continue
            where = f"{r.file}:{r.line}"
            if r.kind == "other":
                self.add(Finding("MP104", "note", r.file, r.line, r.col,
                                 f"new read `{r.expr}` in {r.function or 'file scope'}: no kind rule matches "
                                 f"{r.file}; add one to {Path(self.rules.path).name}",
                                 r.function_id, f"{r.function_id}|{r.expr}"))
            else:
                cover = checkmod.RUNTIME_COVER.get(r.kind, "")
                self.add(Finding("MP103", "note", r.file, r.line, r.col,
                                 f"new kind-{r.kind} read `{r.expr}` in {r.function} ({r.why}); handled at run "
                                 f"time: {cover}", r.function_id, f"{r.function_id}|{r.expr}",
                                 verdict="runtime", related=(Related(r.file, r.line, where),)))
        target = [r for r in new if r.kind in scope] + stale
        # the head's reads the series hunks touch get verdicts too
        extra = [r for r in touched if r.kind in scope and r not in target]
        self.head_verdicts: dict[tuple[str, int], checkmod.Verdict] = {}
        if not target and not extra:
            return
        sub = dataclasses.replace(a, reads=target + extra)
        plan = planmod.make_plan(sub, self.rules, self.headst.facts)
        result = checkmod.check(plan, sub, self.rules, self._check_facts(self.headst, plan, sub.reads))
        verdicts = {(v.file, v.line, v.expr): v for v in result.verdicts}
        for r in sub.reads:
            v = verdicts.get((r.file, r.line, r.expr))
            if v is not None:
                self.head_verdicts[(r.file, r.start)] = v
        gains = {f.id: f for f in plan.functions}
        stopped = {u.function: u for u in plan.unresolved}
        rewrites = {(w.file, w.start): w for w in plan.rewrites}
        kept = {(k.file, k.line, k.expr): k for k in plan.kept if k.reason != "needs-human"}
        for r in target:
            if (r.file, r.line, r.expr) in kept:
                continue  # a NULL or flag test, a never-protected page: nothing to change
            v = verdicts.get((r.file, r.line, r.expr))
            verdict = v.verdict if v else ""
            w = rewrites.get((r.file, r.cmp_start if r.purpose == "identity" else r.start))
            if w is not None and w.purpose == "identity":
                fixable = w.from_.startswith(r.expr) and "\n" not in w.from_
                self.add(Finding(
                    "MP101", "error", r.file, r.line, r.col,
                    f"`{w.from_}` is an identity test: for a write protected page it is never true; "
                    f"test membership with `{w.to}`", r.function_id, f"{r.function_id}|{r.expr}",
                    verdict=verdict, fix=w.to if fixable else "",
                    end_col=r.col + len(w.from_) if fixable else 0))
                continue
            why = "the function gained the mapping in this range; " if r in stale else ""
            if w is not None and r.function_id not in gains:
                self.add(Finding(
                    "MP101", "error", r.file, r.line, r.col,
                    f"{why}{r.function} has the mapping (`{w.context}`): read it with "
                    f"`{w.to}` instead of `{r.expr}`",
                    r.function_id, f"{r.function_id}|{r.expr}", verdict=verdict,
                    fix=w.to if "\n" not in r.expr else "",
                    end_col=r.col + len(r.expr) if "\n" not in r.expr else 0))
                continue
            chain = self._chain(plan, r, gains, stopped)
            fid = r.function_id
            if fid is None:
                msg = f"`{r.expr}` is read outside a function; the mapping cannot be passed to it"
            elif fid in stopped:
                u = stopped[fid]
                msg = (f"{r.function} cannot supply the mapping and cannot gain it: it is a boundary "
                       f"({u.reason}); `{r.expr}` stays as it is")
            else:
                n = sum(1 for f in gains.values() if f.reason and f.reason[-1].node == fid)
                msg = (f"{r.function} cannot supply the mapping for `{r.expr}`: it would have to be passed "
                       f"down ({n} function{'s' if n != 1 else ''} would gain the parameter)")
            if v is not None and v.verdict == "unresolvable" and v.witness is not None:
                msg += f"; check: unresolvable ({v.witness.error})"
            elif v is not None and v.verdict == "resolvable":
                msg += "; check: every caller can supply it"
            level = "error" if fid is None or fid in stopped or verdict == "unresolvable" else "warning"
            self.add(Finding("MP102", level, r.file, r.line, r.col, why + msg, fid,
                             f"{fid}|{r.expr}", chain, verdict=verdict))

    def _chain(self, plan: Plan, r: ReadRecord, gains, stopped) -> tuple[Step, ...]:
        """Where the mapping would come from (or where it cannot), down to the read."""
        fid = r.function_id
        for u in plan.unresolved:
            if u.chain and u.chain[-1].why == "reads" and u.chain[-1].node == fid:
                return (Step(u.function, "stops the passdown:", u.file, u.line, u.reason), *u.chain)
        for c in plan.call_sites:
            f = gains.get(c.callee)
            if c.how in ("provider", "receiver", "lookup", "carrier") and f is not None and f.reason \
                    and f.reason[-1].node == fid:
                return (Step(c.caller, "passes", c.file, c.line, f"{c.argument} to {c.callee}"), *f.reason)
        if fid in gains:
            return gains[fid].reason
        return (Step(fid or "(file scope)", "reads", r.file, r.line, r.expr),)

    def _check_facts(self, st: _State, plan: Plan, reads: list[ReadRecord]) -> dict[str, FileFacts]:
        """The files check needs: those with calls into the functions on the paths
        (for the callers that pass NULL), not the whole tree."""
        g = st.analysis.graph
        nodes = {f.id for f in plan.functions} | {r.function_id for r in reads if r.function_id}
        # check follows a page up through its callers (checkmod.MAX_DEPTH calls):
        # the bodies and call sites of every function on the way
        files: set[str] = set()
        frontier = {n for n in nodes if n in g}
        seen = set(frontier)
        for _ in range(checkmod.MAX_DEPTH):
            up = set()
            for n in frontier:
                files |= {p for p, _ in g.nodes[n].get("bodies", ())}
                for pred, _, sites in graphmod.callers_of(g, n):
                    files |= {s[0] for s in sites}
                    up.add(pred)
            frontier = up - seen
            seen |= up
            if not frontier:
                break
        self.ctx.preload(files)
        return st.facts_dict(files)

    # -- signatures ------------------------------------------------------------------
    def signatures(self) -> None:
        st = self.headst
        g = st.analysis.graph
        pt = self.pr.param_type
        binds: set[tuple[str, str, tuple]] = set()
        for sid in self.changed_slots:
            if sid in g:
                for fn, _, data in edges_in(g, sid, "binds"):
                    binds |= {(fn, sid, s) for s in data["sites"]}
        for fid in self.changed_fns:
            if fid in g:
                for sid, _, data in edges_out(g, fid, "binds"):
                    binds |= {(fid, sid, s) for s in data["sites"]}
        calls: set[tuple[str, str, tuple]] = set()
        for t in self.changed_fns | self.changed_slots:
            if t in g:
                for caller, _, data in edges_in(g, t, "call", "call-through-slot"):
                    calls |= {(caller, t, s) for s in data["sites"]}
        # new bindings and calls on the range's changed lines, whatever they bind or call
        for p in self.range:
            ff = st.files.get(p)
            if ff is None:
                continue
            lines = self.added[p]
            names = {b.function for b in ff.bindings if b.line in lines}
            names |= {graphmod.function_argument(a)[0] for c in ff.calls if c.line in lines for a in c.args}
            names |= {c.caller for c in ff.calls if c.line in lines and c.caller}
            for name in names - {None}:
                for fid in (f"{p}::{name}", name):
                    if fid not in g or g.nodes[fid]["type"] != "function":
                        continue
                    for dst, kind, data in edges_out(g, fid, "binds", "call", "call-through-slot"):
                        for s in data["sites"]:
                            if s[0] == p and s[1] in lines:
                                (binds if kind == "binds" else calls).add((fid, dst, s))
        protos: set[tuple[str, str, int]] = set()
        for fid in self.changed_fns:
            if fid in g:
                protos |= {(fid, path, line) for path, line in g.nodes[fid]["protos"]}
        for p in self.range:
            ff = st.files.get(p)
            for fn in (ff.functions if ff is not None else ()):
                if not fn.definition and fn.line in self.added[p]:
                    for fid in (f"{p}::{fn.name}", fn.name):
                        if fid in g and g.nodes[fid]["type"] == "function":
                            protos.add((fid, p, fn.line))
                            break
        for fid, path, line in sorted(protos):
            self._prototype(g, fid, path, line, pt)
        for fn, sid, site in sorted(binds):
            self._binding(g, fn, sid, site, pt)
        for caller, target, site in sorted(calls):
            self._call(g, caller, target, site, pt)

    def _prototype(self, g, fid: str, path: str, line: int, pt: str) -> None:
        d = g.nodes[fid]
        ff = self.headst.facts(path)
        proto = next((f for f in (ff.functions if ff is not None else ())
                      if not f.definition and f.name == d["name"] and f.line == line), None)
        if proto is None or (d.get("via_macro") and not d["params"]):
            return
        f_has = _has_mapping(d["params"], pt)
        p_has = _has_mapping([(x.name, x.type) for x in proto.params], pt)
        if f_has == p_has:
            return
        body = graphmod.home(g, fid)
        self.add(Finding("MP204", "error", path, line, 0,
                         f"the prototype of {d['name']} {'lacks' if f_has else 'has'} `{pt}`, which its definition "
                         f"({body[0]}:{body[1]}) {'takes' if f_has else 'does not take'}",
                         fid, f"{fid}|proto|{path}", related=(Related(body[0], body[1], f"{d['name']} defined"),)))

    def _binding(self, g, fn: str, sid: str, site: tuple, pt: str) -> None:
        sd, fd = g.nodes[sid], g.nodes[fn]
        if sd["slot_kind"] == "param":
            return  # an anonymous function-pointer parameter: its signature is the owner's text
        s_has, f_has = _has_mapping(sd["params"], pt), _has_mapping(fd["params"], pt)
        macro = fd.get("via_macro") and not fd["params"]
        cast = site.cast
        fpath, fline = graphmod.home(g, fn)
        slot_at = graphmod.home(g, sid)
        related = (Related(site[0], site[1], f"{fd['name']} bound to {sid} ({site[2]})"),
                   Related(slot_at[0], slot_at[1], f"{sid} declared"))
        changed = "changed in this range" if (sid in self.changed_slots or fn in self.changed_fns) else "bound here"
        if cast:
            level = "error" if s_has != f_has and not macro else "warning"
            if macro:
                detail = ""
            elif s_has == f_has:
                detail = (f"; both {'take' if s_has else 'lack'} the mapping: check the parameters behind "
                          "the cast by hand")
            else:
                detail = (f"; {sid} {'takes' if s_has else 'does not take'} the mapping but {fd['name']} "
                          f"{'does not' if s_has else 'does'}")
            self.add(Finding("MP203", level, site[0], site[1], 0,
                             f"{fd['name']} is bound to {sid} through the cast ({cast}), which hides the "
                             f"signature {changed}{detail}", fn, f"{fn}|{sid}|cast", related=related))
            return
        if macro:
            if s_has and (sid in self.gained_slots or fn in self.changed_fns):
                self.add(Finding("MP201", "warning", fpath, fline, 0,
                                 f"{fd['name']} is bound to {sid}, which gained `{pt}` in this range, but its "
                                 f"signature is written by the macro {fd['via_macro']}: change the macro",
                                 fn, f"{fn}|{sid}", related=related))
            return
        if s_has == f_has:
            return
        if s_has:
            msg = (f"{fd['name']} is bound to {sid}, which takes `{pt}`"
                   f"{' since this range' if sid in self.gained_slots else ''}, but {fd['name']} does not")
        else:
            msg = (f"{fd['name']} takes `{pt}`{' since this range' if fn in self.gained_fns else ''} but is bound "
                   f"to {sid}, which does not")
        self.add(Finding("MP201", "error", fpath, fline, 0, msg, fn, f"{fn}|{sid}", related=related))

    def _call(self, g, caller: str, target: str, site: tuple, pt: str) -> None:
        td = g.nodes[target]
        if td["type"] == "slot" and td["slot_kind"] == "param":
            return
        if td["type"] == "function" and td.get("via_macro") and not td["params"]:
            return
        params = td["params"]
        if any(t.strip() == "..." for _, t in params):
            return
        ff = self.headst.facts(site[0])
        if ff is None or site[2] >= len(ff.calls):
            return
        call = ff.calls[site[2]]
        n, nargs = len(params), len(call.args)
        name = td["name"]
        via = f" through {target}" if td["type"] == "slot" else ""
        related = (Related(*graphmod.home(g, target), f"{target} declared"),)
        if _has_mapping(params, pt) and nargs == n - 1:
            supply = self._supply(caller, call)
            hint = f"; {caller} can pass `{supply}`" if supply else ""
            since = " since this range" if target in self.gained_fns | self.gained_slots else ""
            self.add(Finding("MP202", "error", site[0], call.line, call.col,
                             f"{caller} calls {name}{via} with {nargs} arguments: it does not pass the mapping "
                             f"{name} takes{since}{hint}", caller, f"{caller}|{target}|{call.fn_text or call.callee}",
                             related=related))
        elif target in self.lost and nargs == n + 1:
            self.add(Finding("MP202", "error", site[0], call.line, call.col,
                             f"{caller} calls {name}{via} with {nargs} arguments: it still passes the mapping, "
                             f"which {name} no longer takes", caller,
                             f"{caller}|{target}|{call.fn_text or call.callee}", related=related))

    def _supply(self, caller: str, call) -> str | None:
        """What the plan would pass at this call (plan's own Context): the
        mapping whose operations are called, else the caller's best candidate."""
        st = self.headst
        if getattr(self, "_head_ctx", None) is None:
            self._head_ctx = planmod.Context(st.analysis.graph, st.analysis.types, self.pr, st.facts)
        found = self._head_ctx.call_receiver(caller, call)
        if found is not None:
            return found
        cands = [c for c in self._head_ctx.candidates(caller) if not c.never]
        return cands[0].expr if cands else None

    # -- the series ----------------------------------------------------------------------
    def series(self) -> tuple[list[Hunk], tuple[str, ...], tuple[tuple[str, int], ...]]:
        ctx = self.ctx
        st = self.basest
        plan = ctx.load_base(st)
        if plan is None:
            ctx.build(st)
            searched: set[str] = set()
            memo = json.loads(ctx.store.get_meta("plan_searched") or "{}")
            if memo.get("key") == ctx.key:
                searched |= set(memo.get("names", []))  # already parsed into the store by `plan`
            plan = planmod.make_plan(st.analysis, self.rules, st.facts, sites=False)
            for _ in range(12):
                words, fixed = planmod.changed_names(plan, st.analysis)
                if not ctx.on_demand(st, words, fixed, searched):
                    break
                plan = planmod.make_plan(st.analysis, self.rules, st.facts, sites=False)
            names = {f.name for f in plan.functions}
            unseen = planmod.unseen_mentions(plan, st.analysis, st.facts, ctx.texts_mentioning(st, names),
                                             self.rules)
            plan = planmod.make_plan(st.analysis, self.rules, st.facts, unseen=unseen)
            ctx.save_base(st, plan)
        helper = self._helper_home(plan)
        expected = self._expected_edits(plan, helper)
        plan_files = set(plan.files())
        if helper is not None:
            plan_files.add(helper.header)
        outside = tuple(sorted(p for p in plan_files if p not in set(self.range)
                               and (ctx.root / p).is_file()))
        # verdicts of the base reads the hunks replace
        base_touched = [r for r in st.analysis.reads if r.file in self.removed and r.line in self.removed[r.file]]
        base_verdicts: dict[tuple[str, int], checkmod.Verdict] = {}
        if base_touched:
            sub = dataclasses.replace(st.analysis, reads=base_touched)
            result = checkmod.check(plan, sub, self.rules, self._check_facts(st, plan, base_touched))
            by = {(v.file, v.line, v.expr): v for v in result.verdicts}
            for r in base_touched:
                if (r.file, r.line, r.expr) in by:
                    base_verdicts[(r.file, r.start)] = by[(r.file, r.line, r.expr)]
        hunks: list[Hunk] = []
        left_out: list[tuple[str, int]] = []
        for p in self.range:
            file_hunks, unused = self._file_hunks(p, expected.get(p, []), base_touched, base_verdicts)
            hunks += file_hunks
            if unused:
                left_out.append((p, unused))
        for h in hunks:
            if h.status == "needs-review":
                self.add(Finding("MP301", "warning", h.file, h.at, 0,
                                 f"hunk -{h.base_start},{h.base_lines} +{h.head_start},{h.head_lines} "
                                 f"departs from the plan: {h.detail}", None,
                                 f"hunk|{h.file}|{h.detail}"))
            else:
                bad = [v for v in h.reads if v.verdict == "unresolvable"]
                for v in bad:
                    self.add(Finding("MP302", "note", h.file, max(v.at, 1), 0,
                                     f"mechanical hunk rewrites `{v.expr}` in {v.function} ({v.file}:{v.line}), "
                                     f"which stays unresolvable: {v.why}", v.function,
                                     f"hunk-read|{v.function}|{v.expr}", verdict="unresolvable"))
        return hunks, outside, tuple(left_out)

    def _helper_home(self, plan: Plan) -> emitmod.HelperPlacement | None:
        data = {p: d for p, d in self.basest.data.items() if d is not None}
        try:
            return emitmod.place_helper(plan, self.basest.files, self.rules, self.ctx.root, data)
        except emitmod.EmitError:
            return None  # emit says why; the review still matches the rest

    def _expected_edits(self, plan: Plan, helper: emitmod.HelperPlacement | None) -> dict[str, list[emitmod.Edit]]:
        st = self.basest
        out: dict[str, list[emitmod.Edit]] = {}
        for p in self.range:
            data, ff = st.data.get(p), st.files.get(p)
            if data is None or ff is None:
                continue
            sub = dataclasses.replace(
                plan, call_sites=tuple(c for c in plan.call_sites if c.file == p),
                rewrites=tuple(r for r in plan.rewrites if r.file == p))
            try:
                edits = emitmod.edits_for(sub, {p: ff}, self.rules, {p: data}, self.ctx.root,
                                          helper).get(p, [])
            except (KeyError, StopIteration, IndexError, emitmod.EmitError):
                edits = []
            if helper is not None and helper.edit is not None and p == helper.header:
                edits = [helper.edit, *edits]
            out[p] = edits
        return out

    def _file_hunks(self, p: str, edits: list[emitmod.Edit], base_touched: list[ReadRecord],
                    base_verdicts: dict) -> tuple[list[Hunk], int]:
        bdata, hdata = self.basest.data.get(p), self.headst.data.get(p)
        a, b = _lines(bdata), _lines(hdata)
        offsets = [0]
        for line in a:
            offsets.append(offsets[-1] + len(line))
        expected_text = bdata
        if bdata is not None and edits:
            try:
                expected_text = emitmod.apply_wrapped(bdata, edits, p)
            except emitmod.EmitError:
                expected_text = bdata
        e_ops = {(i1, i2, tuple(_lines(expected_text)[j1:j2]))
                 for _, i1, i2, j1, j2 in _opcodes(a, _lines(expected_text))}
        matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
        used: set[int] = set()
        hunks: list[Hunk] = []
        for group in matcher.get_grouped_opcodes(3):
            blocks = [op for op in group if op[0] != "equal"]
            if not blocks:
                continue
            statuses, details = [], []
            for _, i1, i2, j1, j2 in blocks:
                ok, why, took = self._block(p, bdata, a, b, offsets, edits, e_ops, i1, i2, j1, j2)
                statuses.append(ok)
                details.append(why)
                used |= took
            i1, i2 = blocks[0][1], blocks[-1][2]
            j1, j2 = blocks[0][3], blocks[-1][4]
            # the header as a unified diff (context included) shows it
            ci1, ci2, cj1, cj2 = group[0][1], group[-1][2], group[0][3], group[-1][4]
            reads = [ReadVerdict("base", r.file, r.line, r.function, r.expr, r.kind,
                                 v.verdict if (v := base_verdicts.get((r.file, r.start))) else
                                 ("runtime" if r.kind not in self.pr.scope_kinds else ""),
                                 v.witness.error if v is not None and v.witness is not None else "",
                                 _head_line(blocks, r.line, j1 + 1))
                     for r in base_touched if r.file == p and i1 < r.line <= i2]
            reads += [ReadVerdict("head", r.file, r.line, r.function, r.expr, r.kind,
                                  v.verdict if (v := self.head_verdicts.get((r.file, r.start))) else
                                  ("runtime" if r.kind not in self.pr.scope_kinds else ""),
                                  v.witness.error if v is not None and v.witness is not None else "",
                                  r.line)
                      for r in self.head_reads_touched if r.file == p and j1 < r.line <= j2]
            status = "mechanical" if all(statuses) else "needs-review"
            detail = "; ".join(d for d, ok in zip(details, statuses, strict=True) if d and (not ok or
                                                                                         status == "mechanical"))
            hunks.append(Hunk(p, ci1 + 1 if ci2 > ci1 else ci1, ci2 - ci1, cj1 + 1 if cj2 > cj1 else cj1,
                              cj2 - cj1, status, detail, tuple(reads), max(j1 + 1 if j2 > j1 else j1, 1)))
        return hunks, len([e for k, e in enumerate(edits) if k not in used])

    def _block(self, p, bdata, a, b, offsets, edits, e_ops, i1, i2, j1, j2) -> tuple[bool, str, set[int]]:
        """Does the change of base lines [i1, i2) into head lines [j1, j2) match
        (a subset of) the plan's edits there?"""
        target = b"".join(b[j1:j2])
        lo, hi = offsets[i1], offsets[i2]
        inside = [k for k, e in enumerate(edits)
                  if lo <= e.start and e.end <= hi and (e.start < hi or i1 == i2 or e.start == e.end == hi
                                                          and i2 == len(a))]
        if bdata is not None and inside:
            region = bdata[lo:hi]
            groups: dict[str, list[int]] = defaultdict(list)
            for k in inside:
                owner = edits[k].owner or f"#{k}"
                groups[owner].append(k)
            keys = sorted(groups)
            sizes = range(len(keys), 0, -1) if len(keys) <= MAX_SUBSET_GROUPS else [len(keys)]
            for size in sizes:
                for subset in combinations(keys, size):
                    chosen = [k for key in subset for k in groups[key]]
                    shifted = [dataclasses.replace(edits[k], start=edits[k].start - lo, end=edits[k].end - lo)
                               for k in chosen]
                    try:
                        result = emitmod.apply_edits(region, shifted, p)
                    except emitmod.EmitError:
                        continue
                    # as emit writes it (changed lines re-wrapped), or as a human might
                    if target in (result, rewrap_edited(region, result, [(e.start, e.end, e.text) for e in shifted])):
                        whole = size == len(keys)
                        return True, ("" if whole else
                                      f"part of the plan's edits here ({', '.join(subset)})"), set(chosen)
        if (i1, i2, tuple(b[j1:j2])) in e_ops:
            return True, "", set(inside)
        if not inside:
            what = "the plan changes nothing here"
        else:
            want = emitmod.apply_wrapped(bdata[lo:hi], [dataclasses.replace(edits[k], start=edits[k].start - lo,
                                                                          end=edits[k].end - lo)
                                                      for k in inside], p) if bdata is not None else b""
            first = want.decode("utf-8", "replace").strip().splitlines()
            what = f"the plan writes `{first[0].strip()}`" if first else "the plan deletes these lines"
        where = f"line {j1 + 1}" if j2 - j1 <= 1 else f"lines {j1 + 1}-{j2}"
        return False, f"{where}: {what}", set()


# -- outputs ---------------------------------------------------------------------------------
def _uri(review: Review, file: str) -> str:
    return f"{review.prefix}{file}"


def _region(line: int, col: int = 0, end_col: int = 0) -> dict:
    r: dict = {"startLine": max(int(line), 1)}
    if col and col > 0:
        r["startColumn"] = int(col)
        if end_col and end_col > col:
            r["endColumn"] = int(end_col)
    return r


def _physical(review: Review, file: str, line: int, col: int = 0, end_col: int = 0) -> dict:
    return {"artifactLocation": {"uri": _uri(review, file), "uriBaseId": "SRCROOT"},
            "region": _region(line, col, end_col)}


def _step_text(s: Step) -> str:
    if s.why == "reads":
        return f"{s.node} reads {s.detail}"
    return f"{s.node} {s.why} {s.detail}"


def to_sarif(review: Review) -> dict:
    """The review as a SARIF 2.1.0 log (one run; hunks in the run's properties)."""
    rule_ids = list(RULES)
    rules = [{
        "id": r.id, "name": r.name,
        "shortDescription": {"text": r.short},
        "fullDescription": {"text": r.help},
        "help": {"text": r.help},
        "defaultConfiguration": {"level": r.level},
        "properties": {"tags": ["mappingpass", "page-mapping"]},
    } for r in RULES.values()]
    results = []
    for f in review.findings:
        res: dict = {
            "ruleId": f.rule, "ruleIndex": rule_ids.index(f.rule), "level": f.level,
            "message": {"text": f.message},
            "locations": [{"physicalLocation": _physical(review, f.file, f.line, f.col, f.end_col)}],
            "partialFingerprints": {"mappingpassFinding/v1": hashlib.sha256(
                f"{f.rule}|{f.file}|{f.key or f.message}".encode()).hexdigest()[:32]},
        }
        if f.function:
            res["locations"][0]["logicalLocations"] = [{"name": f.function.rsplit("::", 1)[-1],
                                                        "fullyQualifiedName": f.function, "kind": "function"}]
        related = [r for r in f.related if r.file and r.line > 0]
        if related:
            res["relatedLocations"] = [{"id": i, "physicalLocation": _physical(review, r.file, r.line),
                                        "message": {"text": r.message}} for i, r in enumerate(related)]
        steps = [s for s in f.chain if s.file and s.line > 0]
        if steps:
            res["codeFlows"] = [{"threadFlows": [{"locations": [
                {"location": {"physicalLocation": _physical(review, s.file, s.line),
                              "message": {"text": _step_text(s)}}} for s in steps]}]}]
        props: dict = {}
        if f.verdict:
            props["verdict"] = f.verdict
        if f.chain:
            props["chain"] = [_step_text(s) for s in f.chain]
        if props:
            res["properties"] = props
        if f.fix and f.col and f.end_col:
            res["fixes"] = [{"description": {"text": f"use {f.fix}"},
                             "artifactChanges": [{"artifactLocation": {"uri": _uri(review, f.file),
                                                                       "uriBaseId": "SRCROOT"},
                                                  "replacements": [{"deletedRegion": _region(f.line, f.col,
                                                                                              f.end_col),
                                                                    "insertedContent": {"text": f.fix}}]}]}]
        results.append(res)
    top = Path(review.git_top).resolve() if review.git_top else Path(review.root)
    return {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "mappingpass", "version": __version__,
                                "semanticVersion": __version__, "rules": rules}},
            "originalUriBaseIds": {"SRCROOT": {"uri": top.as_uri() + "/"}},
            "invocations": [{"executionSuccessful": True,
                             "commandLine": f"mappingpass review --base {review.base} --head {review.head}"}],
            "results": results,
            "properties": {"base": review.base, "head": review.head, "series": review.series,
                           "counts": review.counts(), "hunkCounts": review.hunk_counts(),
                           "hunks": [dataclasses.asdict(h) for h in review.hunks],
                           "planFilesOutside": list(review.plan_files_outside)},
        }],
    }


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def github_annotations(review: Review) -> str:
    """GitHub workflow commands, one line per finding."""
    kinds = {"error": "error", "warning": "warning", "note": "notice"}
    out = []
    for f in review.findings:
        props = [f"file={_escape_property(_uri(review, f.file))}", f"line={max(f.line, 1)}"]
        if f.col:
            props.append(f"col={f.col}")
        props.append(f"title={_escape_property(f'{f.rule} {f.name}')}")
        text = f.message
        if f.chain:
            text += "\n" + "\n".join(f"  {_step_text(s)} ({s.file}:{s.line})" for s in f.chain)
        out.append(f"::{kinds[f.level]} {','.join(props)}::{_escape_data(text)}")
    return "\n".join(out) + ("\n" if out else "")


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def to_markdown(review: Review) -> str:
    """A PR comment: counts first, then findings grouped by file, each with its chain."""
    c = review.counts()
    short = f"`{review.base[:12]}`..`{review.head[:12]}`"
    lines = ["## mappingpass review", "",
             f"{short}: {len(review.files)} C file{'s' if len(review.files) != 1 else ''} changed"
             + (f" ({review.other_files} other)" if review.other_files else ""), "",
             "| errors | warnings | notes |" + (" mechanical hunks | hunks to review |" if review.series else ""),
             "|---:|---:|---:|" + ("---:|---:|" if review.series else ""),
             f"| {c['error']} | {c['warning']} | {c['note']} |"
             + (f" {review.hunk_counts()['mechanical']} | {review.hunk_counts()['needs-review']} |"
                if review.series else ""), ""]
    if review.series:
        lines.append("This range is a mapping-passdown series: each hunk was compared with what "
                     "`mappingpass emit` produces from the base.")
        if review.plan_files_outside:
            shown = ", ".join(f"`{p}`" for p in review.plan_files_outside[:20])
            more = len(review.plan_files_outside) - 20
            lines.append(f"The plan also changes {len(review.plan_files_outside)} files this range does not "
                         f"touch: {shown}{f' and {more} more' if more > 0 else ''}.")
        lines.append("")
    if not review.findings and not review.hunks:
        lines.append("No findings.")
    icons = {"error": ":x:", "warning": ":warning:", "note": ":information_source:"}
    by_file: dict[str, list[Finding]] = defaultdict(list)
    for f in review.findings:
        by_file[f.file].append(f)
    hunks_by_file: dict[str, list[Hunk]] = defaultdict(list)
    for h in review.hunks:
        hunks_by_file[h.file].append(h)
    for file in sorted(set(by_file) | set(hunks_by_file)):
        lines += [f"### `{_uri(review, file)}`", ""]
        for f in by_file.get(file, []):
            where = f" in `{f.function.rsplit('::', 1)[-1]}`" if f.function else ""
            lines.append(f"- {icons[f.level]} **{f.level}** `{f.rule} {f.name}` line {f.line}{where}: "
                         f"{_md(f.message)}")
            if f.verdict:
                lines.append(f"  - check: **{f.verdict}**")
            if f.fix:
                lines.append(f"  - fix: `{f.fix}`")
            for i, s in enumerate(f.chain, 1):
                lines.append(f"  {i}. `{s.node}` {s.why} `{_md(s.detail)}` ({s.file}:{s.line})")
            for r in f.related:
                lines.append(f"  - see {r.file}:{r.line}: {_md(r.message)}")
        if hunks_by_file.get(file):
            hs = hunks_by_file[file]
            verdicts = Counter(v.verdict or "unchecked" for h in hs for v in h.reads)
            shown = [h for h in hs if h.status != "mechanical"
                     or any(v.verdict == "unresolvable" for v in h.reads)]
            summary = (f"{len(hs)} hunk{'s' if len(hs) != 1 else ''}: "
                       f"{sum(1 for h in hs if h.status == 'mechanical')} mechanical, "
                       f"{sum(1 for h in hs if h.status != 'mechanical')} to review")
            if verdicts:
                summary += "; reads touched: " + ", ".join(f"{n} {k}" for k, n in sorted(verdicts.items()))
            lines += (["", summary] if by_file.get(file) else [summary])
            if shown:
                lines += ["", "| hunk | status | reads touched (check) |", "|---|---|---|"]
            for h in shown:
                reads = "; ".join(f"{v.side} `{_md(v.expr)}` in {v.function}: {v.verdict or '-'}"
                                  for v in h.reads) or "-"
                status = h.status + (f": {_md(h.detail)}" if h.detail else "")
                lines.append(f"| -{h.base_start},{h.base_lines} +{h.head_start},{h.head_lines} | {status} | "
                             f"{reads} |")
            left = dict(review.plan_edits_left_out).get(file)
            if left:
                lines.append(f"\nThe plan has {left} more edit{'s' if left != 1 else ''} in this file that the "
                             "range does not make.")
        lines.append("")
    text = "\n".join(lines).rstrip() + "\n"
    if len(text) > MARKDOWN_LIMIT:
        cut = text.rfind("\n", 0, MARKDOWN_LIMIT - 200)
        text = (text[:cut] + "\n\n*(cut here: the comment would be too long for GitHub; the SARIF file "
                "and `--format json` hold every finding)*\n")
    return text


def to_text(review: Review) -> str:
    c = review.counts()
    out = [f"review {review.base[:12]}..{review.head[:12]}: {len(review.files)} C files changed; "
           f"{c['error']} errors, {c['warning']} warnings, {c['note']} notes"]
    if review.series:
        hc = review.hunk_counts()
        out.append(f"series: {hc['mechanical']} hunks mechanical, {hc['needs-review']} need review"
                   + (f"; the plan also changes {len(review.plan_files_outside)} files outside the range"
                      if review.plan_files_outside else ""))
    for f in review.findings:
        out.append(f"{f.file}:{f.line}: {f.level} [{f.rule} {f.name}] {f.message}")
        for s in f.chain:
            out.append(f"    {_step_text(s)} ({s.file}:{s.line})")
    for h in review.hunks:
        if h.status != "mechanical":
            out.append(f"{h.file}: hunk -{h.base_start},{h.base_lines} +{h.head_start},{h.head_lines}: "
                       f"{h.status}: {h.detail}")
    secs = review.stats.get("seconds", {}).get("total")
    if secs is not None:
        out.append(f"time {secs:.2f} s")
    return "\n".join(out) + "\n"
