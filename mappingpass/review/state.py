"""The review's state of one revision: its files' facts (from the index,
the review's own cache or parsed now through the worker pool), its graph and
the plan of the base, with rounds of on-demand parsing."""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path

from .. import graph as graphmod
from .. import index as indexmod
from .. import plan as planmod
from .. import safepickle
from ..facts import FACTS_VERSION, FileFacts
from ..graph import Analysis
from ..index.cparse import Extractor
from ..plan import Plan
from ..rules import Rules
from .git import Git
from .records import PATCH_LIMIT


# -- the review's own cache: facts of file versions and on-demand searches ---------------
class ReviewCache:
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


def is_source(rel: str, skip_dirs: frozenset[str]) -> bool:
    if not rel.endswith((".c", ".h")):
        return False
    parts = rel.split("/")[:-1]
    for i, part in enumerate(parts):
        if part in skip_dirs or part.startswith(".") or "/".join(parts[: i + 1]) in skip_dirs:
            return False
    return True


class RevisionState:
    """The tree at one revision: the store's facts with some files replaced."""

    def __init__(self, ctx: ReviewContext, rev: str, label: str) -> None:
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


class ReviewContext:
    def __init__(self, root: Path, git: Git, store: indexmod.Store, rules: Rules, jobs: int,
                 log: Callable[[str], None]) -> None:
        self.root = root
        self.git = git
        self.store = store
        self.rules = rules
        self.jobs = jobs or os.cpu_count() or 1
        self.log = log
        self.rows = store.rows()
        self.key = store.content_key()
        self.cache = ReviewCache(store.db_dir, f"{rules.digest}:{FACTS_VERSION}")
        self._stored: dict[str, FileFacts | None] = {}
        scope = store.get_json("scope") or [None, [""], None, False]
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
        if not is_source(rel, self.rules.skip_dirs):
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
                             for rel in indexmod.readable_sources(self.root, self.rules.skip_dirs, under)]
        if "" not in self.subpaths and "include" not in self.subpaths and (self.root / "include").is_dir():
            wanted += [rel for rel in indexmod.readable_sources(self.root, self.rules.skip_dirs, "include")
                       if rel.endswith(".h")]
        seen: set[str] = set()
        drift: set[str] = set()
        for rel in wanted:
            if rel in seen:
                continue
            seen.add(rel)
            row = self.rows.get(rel)
            if row is None or indexmod.changed_since(self.root, rel, row):
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
        if any(is_source(p, self.rules.skip_dirs) for p in dirty):
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
    def state(self, rev: str, label: str, range_files: set[str]) -> RevisionState:
        st = RevisionState(self, rev, label)
        paths = self.overrides(rev) | range_files
        started = time.monotonic()
        st.data = self.git.blobs(rev, paths)
        items = {p: (d, p in range_files or _state(self.rows.get(p)) == "parsed")
                 for p, d in st.data.items() if d is not None}
        facts = self.extract(items)
        st.files = {p: facts.get(p) for p in paths}
        self.timing[f"read_{label}"] = time.monotonic() - started
        return st

    def build(self, st: RevisionState) -> None:
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

    def rebuild(self, st: RevisionState) -> None:
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

    def _with_reresolved(self, st: RevisionState, old: dict, new: dict, analysis: Analysis) -> tuple[dict, dict]:
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

    def texts_mentioning(self, st: RevisionState, names: set[str]) -> dict[str, bytes]:
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

    def outside_mentions(self, st: RevisionState, plan: Plan) -> dict:
        """An index of part of a tree: what the rest of the tree (on disk,
        the range's files aside) names of the plan's changes keeps its
        signature, as `plan` decides (plan.outside_mentions)."""
        outside = [p for p in indexmod.outside_sources(self.store, self.root, self.rules.skip_dirs)
                   if p not in st.files]
        names = sorted(planmod.outside_names(plan, st.analysis))
        if not (outside and names):
            return {}
        texts: dict[str, bytes] = {}
        for p in indexmod.grep_files(self.root, outside, names):
            try:
                texts[p] = (self.root / p).read_bytes()
            except OSError:
                continue
        return planmod.outside_mentions(plan, st.analysis, texts)

    def _base_key(self, st: RevisionState) -> str:
        h = hashlib.blake2b(digest_size=16)
        h.update(f"{self.key}|{self.rules.digest}|{graphmod.GRAPH_VERSION}|"
                 f"{FACTS_VERSION}|{safepickle.code_digest()}".encode())
        for p in sorted(st.files):
            data = st.data.get(p)
            h.update(f"\0{p}\0{indexmod.digest_of(data) if data is not None else '-'}".encode())
        return h.hexdigest()

    def load_base(self, st: RevisionState) -> Plan | None:
        """The analysis (deferred files parsed on demand included) and the plan
        of this state, from the last review that computed them: reviews of pull
        requests against the same base share them."""
        started = time.monotonic()
        kept = safepickle.read_keyed(self.store.db_dir / "review-base.pickle", self._base_key(st))
        if not (isinstance(kept, tuple) and len(kept) == 3):
            return None
        st.analysis, st.extra, plan = kept
        self.stats["base_from_cache"] = 1
        self.timing[f"load_graph_{st.label}"] = time.monotonic() - started
        return plan

    def save_base(self, st: RevisionState, plan: Plan) -> None:
        try:
            safepickle.write_keyed(self.store.db_dir / "review-base.pickle", self._base_key(st),
                                   (st.analysis, st.extra, plan))
        except OSError:
            pass  # a cache only

    def on_demand(self, st: RevisionState, words: set[str], fixed: set[str], searched: set[str]) -> list[str]:
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
