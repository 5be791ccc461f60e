"""The index stage: a tree of C files -> per-file facts in a SQLite store.

Extraction runs in parallel over files (`jobs` processes). The store is keyed
by path and content digest: a warm re-run stats every file, re-reads only
those whose size or mtime changed, and re-parses only those whose content
changed. Files whose text cannot hold a read, a provider or a slot signature
(the rules' `relevant_regex`) are recorded as *deferred*: `plan` parses them on
demand when they mention a name the fixpoint changes.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import multiprocessing
import os
import pickle
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from .. import facts as factsmod
from .. import safepickle
from ..errors import UserError
from ..facts import FileFacts
from ..rules import ParseConfig, Rules
from .cparse import Extractor

STORE_SCHEMA = 3
MAX_FILE_BYTES = 16 * 1024 * 1024  # bigger .c/.h files are generated register tables


class FileRow(NamedTuple):
    """What the store knows of one file without reading its facts."""

    size: int
    mtime: int
    digest: str
    state: str  # "parsed", "deferred" (parsed on demand) or "skipped"


class StoreError(UserError):
    """The database cannot be opened or was written by an incompatible version."""


@dataclass
class IndexStats:
    files: int = 0  # .c/.h files under the paths given
    context: int = 0  # headers of include/ outside them, indexed for context (parsed on demand)
    parsed: int = 0  # parsed in this run
    reused: int = 0  # facts taken from the store unchanged
    deferred: int = 0
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> count
    skipped_files: list[tuple[str, str]] = field(default_factory=list)
    non_utf8: int = 0
    seconds: float = 0.0


def find_tree_top(path: Path) -> Path:
    """The kernel tree that contains path (a directory with include/linux and a
    Makefile), so that `analyze linux/fs` still matches rules written for
    tree-relative paths and finds the struct definitions in linux/include."""
    path = path.resolve()
    for candidate in (path, *path.parents):
        if (candidate / "include" / "linux").is_dir() and (candidate / "Makefile").is_file():
            return candidate
    return path


def iter_sources(root: Path, skip_dirs: frozenset[str], under: str = "") -> Iterator[str]:
    """Paths (relative to root) of every .c/.h file under root/under, sorted,
    skipping the rules' skip_dirs."""
    out: list[str] = []
    root_s = str(root)
    for dirpath, dirnames, filenames in os.walk(os.path.join(root_s, under) if under else root_s):
        rel_dir = os.path.relpath(dirpath, root_s)
        dirnames[:] = sorted(
            d for d in dirnames
            if d not in skip_dirs and not d.startswith(".")
            and (os.path.join(rel_dir, d) if rel_dir != "." else d) not in skip_dirs
        )
        for name in filenames:
            if name.endswith((".c", ".h")):
                out.append(name if rel_dir == "." else os.path.join(rel_dir, name))
    out.sort()
    yield from out


# -- worker side -----------------------------------------------------------------
_EXTRACTOR: Extractor | None = None
_WORDS: tuple[bytes, ...] = ()
_ALL = False


def _init_worker(config: ParseConfig, words: tuple[bytes, ...], parse_all: bool) -> None:
    global _EXTRACTOR, _WORDS, _ANCHORS, _ALL
    if multiprocessing.parent_process() is not None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # ^C is the parent's to handle, in one line
    _EXTRACTOR = Extractor(config)
    _WORDS = words
    _ANCHORS = anchors(words)
    _ALL = parse_all


def anchors(words: tuple[bytes, ...]) -> tuple[bytes, ...]:
    """Identifier parts that every relevant word contains ("mapping" for
    "->mapping" and "page_mapping("), so that most files, which contain none,
    are rejected after a few substring scans instead of one per word."""
    parts = {max(re.findall(rb"[A-Za-z_]\w*", w) or [w], key=len) for w in words}
    return tuple(sorted(p for p in parts if not any(q != p and q in p for q in parts)))


_ANCHORS: tuple[bytes, ...] = ()


def _relevant(data: bytes) -> bool:
    if not any(a in data for a in _ANCHORS):
        return False
    return any(w in data for w in _WORDS)


def digest_of(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=12).hexdigest()


def inside_tree(root: Path | str, path: Path | str) -> bool:
    """Whether path, its links resolved, lies inside the tree at root."""
    top = os.path.realpath(root)
    return os.path.commonpath([top, os.path.realpath(path)]) == top


def _link_skip(root: Path, abspath: str) -> str:
    """Why a symlinked source is not indexed under its own name: its target
    lies inside the tree (indexed there, once) or is missing; "" for a link
    out of the tree, whose content is indexed under the link's name."""
    target = os.path.realpath(abspath)
    if not os.path.exists(target):
        return "dangling symlink"
    return "symlink into the tree (indexed at its target)" if inside_tree(root, target) else ""


def _work(item: tuple) -> tuple:
    """(abs path, rel path, size, mtime, context[, known digest]) -> (rel, size,
    mtime, digest, state, blob, note). Context files (headers outside the
    analyzed paths) are only parsed on demand; a file whose content has the
    known digest (touched, not changed) is not parsed again: state "same"."""
    abspath, rel, size, mtime, context = item[:5]
    known = item[5] if len(item) > 5 else ""
    if len(item) > 6:  # could not even stat it
        return rel, size, mtime, "", "skipped", None, f"unreadable: {item[6]}"
    if size > MAX_FILE_BYTES:
        return rel, size, mtime, "", "skipped", None, f"larger than {MAX_FILE_BYTES >> 20} MiB"
    try:
        with open(abspath, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        return rel, size, mtime, "", "skipped", None, f"unreadable: {exc.strerror}"
    digest = digest_of(data)
    if known and digest == known:
        return rel, size, mtime, digest, "same", None, ""
    if context or (not _ALL and not _relevant(data)):
        return rel, size, mtime, digest, "deferred", None, _deferred_note(data)
    return _extract(rel, size, mtime, digest, data, not data.isascii() and not _is_utf8(data))


NO_DECLARATIONS = "no-declarations"


def _deferred_note(data: bytes) -> str:
    """A file with neither `{` nor `;` declares, defines and calls nothing
    outside macro bodies (amdgpu's register headers: 400 MB of #defines, a
    third of the kernel's bytes): the searches for callers and struct
    definitions skip it."""
    return NO_DECLARATIONS if b"{" not in data and b";" not in data else ""


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _extract(rel: str, size: int, mtime: int, digest: str, data: bytes, non_utf8: bool) -> tuple:
    try:
        facts = _EXTRACTOR.extract(rel, data, digest)
    except Exception as exc:  # noqa: BLE001 - a front-end bug must not end the run
        return rel, size, mtime, digest, "skipped", None, f"extractor failed: {type(exc).__name__}: {exc}"
    blob = zlib.compress(safepickle.dumps(facts), 1)
    return rel, size, mtime, digest, "parsed", blob, "non-utf8" if non_utf8 else ""


def grep_files(root: Path, rels: list[str], words: list[str], fixed: list[str] = ()) -> list[str]:
    """The files among rels that contain one of `words` as a whole word or one
    of the `fixed` strings anywhere (`->writepage`, which -w cannot express).

    GNU grep's fixed-string matcher scans the whole kernel in about a second,
    which Python's regex alternation over thousands of names cannot."""
    found: set[str] = set()
    for patterns, flags in ((words, "-lwF"), (list(fixed), "-lF")):
        if rels and patterns:
            found |= _grep(root, rels, sorted(set(patterns)), flags)
    return sorted(found)


# bytes, not characters: a fifth faster than a UTF-8 locale, and identifiers are ASCII
_C_LOCALE = {**os.environ, "LC_ALL": "C"}


def _grep(root: Path, rels: list[str], patterns: list[str], flags: str) -> set[str]:
    with tempfile.NamedTemporaryFile("w", suffix=".patterns", delete=False) as fh:
        fh.write("\n".join(patterns) + "\n")
        patterns_file = fh.name
    found: set[str] = set()
    jobs = max(1, os.cpu_count() or 1)
    size = max(1, min(4000, -(-len(rels) // jobs)))
    chunks = [rels[i:i + size] for i in range(0, len(rels), size)]
    try:
        # one grep per core at a time: the scan is CPU-bound with many patterns
        for i in range(0, len(chunks), jobs):
            procs = [
                subprocess.Popen(["grep", flags, "--no-messages", "-f", patterns_file, "--", *chunk],
                                 cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_C_LOCALE)
                for chunk in chunks[i:i + jobs]
            ]
            for proc in procs:
                out, err = proc.communicate()
                # (2 with nothing said: a file gone since analyze, which --no-messages hides)
                if proc.returncode > 1 and err.strip():
                    raise StoreError(f"grep failed in {root}: {err.decode(errors='replace').strip()}")
                found.update(out.decode(errors="surrogateescape").splitlines())
    finally:
        os.unlink(patterns_file)
    return found


def parse_deferred(root: Path, rules: Rules, store: Store, rels: list[str], jobs: int = 0,
                   progress: Callable[[int, int], None] | None = None,
                   why: str = "on-demand") -> list[str]:
    """Parse deferred files now (in parallel) and keep their facts, noting why;
    returns those parsed."""
    if not rels:
        return []
    items = []
    for rel in rels:
        try:
            st = os.stat(root / rel)
        except OSError:
            continue
        items.append((str(root / rel), rel, st.st_size, st.st_mtime_ns, False))
    rows = [r[:6] + (why if r[4] == "parsed" and not r[6] else r[6],)
            for r in _run(items, rules, jobs or os.cpu_count() or 1, True, progress, len(items))]
    store.put(rows)
    store.commit()
    return [r[0] for r in rows if r[4] == "parsed"]


def expand_types(root: Path, rules: Rules, store: Store, tags: list[str]) -> list[str]:
    """Parse the deferred files that define the given struct/union tags."""
    deferred = store.searchable_deferred()
    names = [t.split(" ", 1)[1] for t in tags]
    hits = grep_files(root, [p for p in deferred if p.endswith(".h")] or deferred, names)
    pattern = re.compile(
        rb"\b(?:struct|union)\s+(?:" + b"|".join(re.escape(n.encode()) for n in names) + rb")\s*\{"
    )
    defining = [p for p in hits if pattern.search((root / p).read_bytes())]
    return parse_deferred(root, rules, store, defining, why="types")


# -- store -----------------------------------------------------------------------
def _in_memory(path: Path) -> sqlite3.Connection:
    """A copy in memory of a database opened read-only: commands that cache
    what they learn (plan's on-demand files) work, and write nothing back."""
    # (immutable: a WAL database needs a writable -shm file otherwise)
    src = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
    mem = sqlite3.connect(":memory:")
    src.backup(mem)
    src.close()
    return mem


class Store:
    """SQLite fact store: one row per file, its facts compressed (safepickle)."""

    def __init__(self, db_dir: Path, create: bool = True) -> None:
        self.db_dir = db_dir
        self._content_key: str | None = None
        self._outside: list[str] | None = None  # see outside_sources
        self.reset = False  # the facts were made by another version and dropped
        self.readonly = False  # a database this user cannot write: worked on in memory
        path = db_dir / "index.sqlite"
        if db_dir.exists() and not db_dir.is_dir():
            raise StoreError(f"{db_dir}: not a directory; --db names the directory where mappingpass "
                             "keeps its index (analyze makes it)")
        if not create and not path.exists():
            raise StoreError(f"{path}: no index here; run 'mappingpass analyze PATH --db {db_dir}' first")
        try:
            if create:
                db_dir.mkdir(parents=True, exist_ok=True)
            if not create and not (os.access(path, os.W_OK) and os.access(db_dir, os.W_OK)):
                self.conn = _in_memory(path)
                self.readonly = True
            else:
                self._lock(db_dir)
                self.conn = sqlite3.connect(path, timeout=60)
                self.conn.execute("PRAGMA journal_mode=WAL")
                self.conn.execute("PRAGMA synchronous=NORMAL")
            self.conn.executescript(
                """
                CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
                CREATE TABLE IF NOT EXISTS files (
                    path TEXT PRIMARY KEY, size INTEGER, mtime INTEGER, digest TEXT,
                    state TEXT, facts BLOB, note TEXT);
                """
            )
            version = self.get_meta("store_schema")
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"{path}: not a mappingpass index ({exc}); point --db at another directory, "
                             "or remove this one if mappingpass made it") from None
        if version is None:
            self.set_meta("store_schema", str(STORE_SCHEMA))
            self.set_meta("facts_version", str(factsmod.FACTS_VERSION))
        elif version != str(STORE_SCHEMA) or self.get_meta("facts_version") != str(factsmod.FACTS_VERSION):
            # a stale cache from another version: start over rather than misread it
            self.reset = True
            self.conn.execute("DELETE FROM files")
            self.set_meta("store_schema", str(STORE_SCHEMA))
            self.set_meta("facts_version", str(factsmod.FACTS_VERSION))
            self.conn.commit()

    LOCK_WAIT = 600  # seconds a run waits for another one on the same database

    def _lock(self, db_dir: Path) -> None:
        """One run at a time on a database: a second one waits (and says so),
        then gives up in one line."""
        self._lockfile = open(db_dir / ".lock", "a")  # noqa: SIM115 - released by close()
        deadline = time.monotonic() + self.LOCK_WAIT
        said = False
        while True:
            try:
                fcntl.flock(self._lockfile, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    self._lockfile.close()
                    raise StoreError(f"{db_dir}: another mappingpass run is still using it after "
                                     f"{self.LOCK_WAIT} s; wait for it or use another --db") from None
                if not said:
                    print(f"mappingpass: waiting for another run on {db_dir} to finish", file=sys.stderr)
                    said = True
                time.sleep(0.2)

    def get_meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        self._content_key = None
        self.conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def rows(self) -> dict[str, FileRow]:
        return {
            r[0]: FileRow(r[1], r[2], r[3], r[4])
            for r in self.conn.execute("SELECT path, size, mtime, digest, state FROM files")
        }

    def put(self, rows: list[tuple]) -> None:
        self._content_key = None
        self.conn.executemany("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?, ?)", rows)

    def clear(self) -> None:
        self._content_key = None
        self.conn.execute("DELETE FROM files")

    def delete(self, paths: list[str]) -> None:
        self._content_key = None
        self.conn.executemany("DELETE FROM files WHERE path=?", [(p,) for p in paths])

    def put_facts(self, rows: list[tuple[str, bytes]]) -> None:
        """New facts (compressed safepickle) for files already parsed, their
        content unchanged: precise mode's merged facts."""
        self._content_key = None
        self.conn.executemany("UPDATE files SET facts=? WHERE path=? AND state='parsed'",
                              [(blob, path) for path, blob in rows])

    def touch(self, updates: list[tuple[int, str]]) -> None:
        self.conn.executemany("UPDATE files SET mtime=? WHERE path=?", updates)

    def load_facts(self, paths: list[str] | None = None) -> list[FileFacts]:
        """Facts of every parsed file (or of the given paths), in path order.
        Stored pickled (several times faster than rebuilding dataclasses from
        JSON) and read back by safepickle, which builds only record types."""
        if paths is None:
            rows = self.conn.execute("SELECT path, facts FROM files WHERE state='parsed' ORDER BY path")
        else:
            rows = (row for p in sorted(paths) for row in self.conn.execute(
                "SELECT path, facts FROM files WHERE state='parsed' AND path=?", (p,)))
        return [self._facts(path, blob) for path, blob in rows]

    def _facts(self, path: str, blob: bytes) -> FileFacts:
        try:
            facts = safepickle.loads(zlib.decompress(blob))
        except (pickle.UnpicklingError, zlib.error, EOFError, ValueError, TypeError, AttributeError,
                IndexError, KeyError) as exc:
            facts = exc
        if not isinstance(facts, FileFacts) or facts.path != path:
            why = f": {facts}" if isinstance(facts, Exception) else ""
            raise StoreError(f"{self.db_dir}: the facts stored for {path} are not this tool's{why}; "
                             f"remove the cache directory {self.db_dir} (mappingpass made it) and re-run analyze")
        return facts

    def paths_in_state(self, state: str) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT path FROM files WHERE state=? ORDER BY path", (state,))]

    def searchable_deferred(self) -> list[str]:
        """Deferred files that can hold a declaration (see _deferred_note)."""
        return [r[0] for r in self.conn.execute(
            "SELECT path FROM files WHERE state='deferred' AND note IS NOT ? ORDER BY path", (NO_DECLARATIONS,))]

    def outside_sources(self, root: Path, skip_dirs: frozenset[str]) -> list[str]:
        """When analyze was given part of a tree (`analyze TREE/fs/ext2
        TREE/mm`), the tree's other .c/.h files, which the index has never
        seen; [] for a whole tree."""
        if self._outside is None:
            scope = json.loads(self.get_meta("scope") or "null")
            subset = isinstance(scope, list) and len(scope) > 1 and scope[1] != [""]
            known = set(self.rows()) if subset else set()
            self._outside = [rel for rel in iter_sources(root, skip_dirs) if rel not in known] if subset else []
        return self._outside

    def skipped(self) -> list[tuple[str, str]]:
        return list(self.conn.execute("SELECT path, note FROM files WHERE state='skipped' ORDER BY path"))

    def state_counts(self) -> dict[str, int]:
        return dict(self.conn.execute("SELECT state, COUNT(*) FROM files GROUP BY state"))

    def paths_with_note(self, note: str) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT path FROM files WHERE note=? ORDER BY path", (note,))]

    def count_notes(self, note: str) -> int:
        return self.conn.execute("SELECT COUNT(*) FROM files WHERE note=?", (note,)).fetchone()[0]

    def content_key(self) -> str:
        """Changes whenever any file's facts change: the key of cached analyses.
        Remembered until this store writes a file row (a quarter of a second
        on the whole tree, asked for several times per command)."""
        if self._content_key is not None:
            return self._content_key
        h = hashlib.blake2b(digest_size=16)
        # (precise mode merges new facts into unchanged files: its key says which)
        h.update(f"{self.get_meta('scope')}\0{self.get_meta('precise_key')}\n".encode())
        for path, digest, state in self.conn.execute(
            "SELECT path, digest, state FROM files ORDER BY path"
        ):
            h.update(f"{path}\0{digest}\0{state}\n".encode())
        self._content_key = h.hexdigest()
        return self._content_key

    def commit(self) -> None:
        self.conn.commit()

    def close(self) -> None:
        self.conn.close()
        lock = getattr(self, "_lockfile", None)
        if lock is not None:
            lock.close()  # (closing the file releases the lock)
            self._lockfile = None


def index_tree(
    root: Path,
    subpaths: list[str],
    rules: Rules,
    store: Store,
    jobs: int,
    parse_all: bool = False,
    progress: Callable[[int, int], None] | None = None,
    mode: str = "",
) -> IndexStats:
    """Bring the store up to date with the files under root/subpaths ("" for
    the whole tree). Returns what was done. mode keeps facts made another way
    apart (precise mode's merged facts: `precise.driver.mode_key`)."""
    started = time.monotonic()
    stats = IndexStats()
    subpaths = sorted(set(subpaths)) or [""]
    scope = [str(root.resolve()), subpaths, rules.digest, parse_all] + ([mode] if mode else [])
    scope_key = json.dumps(scope)
    if store.get_meta("scope") != scope_key:
        # another tree, rules, scope or mode: facts may differ (relevance, blanking)
        store.clear()
        store.set_meta("scope", scope_key)
        store.set_meta("precise_key", "")
        store.set_meta("precise_summary", "null")
    known = store.rows()
    todo: list[tuple[str, str, int, int]] = []
    touch: list[tuple[int, str]] = []
    seen: set[str] = set()
    wanted: list[tuple[str, bool]] = [
        (rel, False) for under in subpaths for rel in iter_sources(root, rules.skip_dirs, under)
    ]
    if "" not in subpaths and "include" not in subpaths and (root / "include").is_dir():
        inside = {rel for rel, _ in wanted}
        wanted += [(rel, True) for rel in iter_sources(root, rules.skip_dirs, "include")
                   if rel.endswith(".h") and rel not in inside]
    for rel, context in wanted:
        if rel in seen:
            continue
        seen.add(rel)
        abspath = os.path.join(root, rel)
        if os.path.islink(abspath):
            why = _link_skip(root, abspath)
            if why:  # the same file under its real path, or nothing at all
                stats.skipped[why] = stats.skipped.get(why, 0) + 1
                continue
        try:
            st = os.stat(abspath)
        except OSError as exc:
            todo.append((abspath, rel, 0, 0, context, "", exc.strerror))
            continue
        old = known.get(rel)
        if old is not None and old.size == st.st_size and old.mtime == st.st_mtime_ns:
            stats.reused += 0 if context else 1
            stats.files += 0 if context else 1
            stats.context += 1 if context else 0
            continue
        todo.append((abspath, rel, st.st_size, st.st_mtime_ns, context, old.digest if old else ""))
        stats.files += 0 if context else 1
        stats.context += 1 if context else 0
    gone = [p for p in known if p not in seen]
    store.delete(gone)
    total = len(todo)
    results: list[tuple] = []
    try:
        _run(todo, rules, jobs, parse_all, progress, total, results)
    except KeyboardInterrupt:
        _keep(store, known, results)  # what was parsed before ^C is not parsed again
        raise
    new_rows = []
    for rel, size, mtime, digest, state, blob, note in results:
        old = known.get(rel)
        if old is not None and old.digest == digest and digest:
            touch.append((mtime, rel))  # same content, new mtime: nothing to parse
            stats.reused += 1
            continue
        new_rows.append((rel, size, mtime, digest, state, blob, note))
    store.put(new_rows)
    store.touch(touch)
    store.commit()
    for _rel, _size, _mtime, _digest, state, _blob, note in new_rows:
        if state == "parsed":
            stats.parsed += 1
        elif state == "skipped":
            reason = note.split(":")[0]
            stats.skipped[reason] = stats.skipped.get(reason, 0) + 1
    stats.deferred = store.state_counts().get("deferred", 0)
    stats.skipped_files = store.skipped()
    stats.non_utf8 = store.count_notes("non-utf8")
    stats.seconds = time.monotonic() - started
    return stats


def _keep(store: Store, known: dict, results: list[tuple]) -> None:
    rows = [r for r in results if r[4] != "same" and not (known.get(r[0]) and known[r[0]].digest == r[3])]
    store.put(rows)
    store.commit()


def _run(todo, rules: Rules, jobs: int, parse_all: bool, progress, total: int,
         out: list[tuple] | None = None) -> list[tuple]:
    """Extract the facts of todo's files, in parallel; results go into out
    as they come (an interrupted run keeps what it had)."""
    out = [] if out is None else out
    if not todo:
        return out
    # biggest files first so that the last worker is not left with a giant
    todo = sorted(todo, key=lambda t: -t[2])
    initargs = (rules.parse, rules.relevant_words, parse_all)
    if jobs <= 1 or len(todo) < 8:
        _init_worker(*initargs)
        for i, item in enumerate(todo):
            out.append(_work(item))
            if progress:
                progress(i + 1, total)
        return out
    ctx = multiprocessing.get_context("fork" if sys.platform != "win32" else "spawn")
    with ctx.Pool(jobs, initializer=_init_worker, initargs=initargs) as pool:
        for i, res in enumerate(pool.imap_unordered(_work, todo, chunksize=8)):
            out.append(res)
            if progress:
                progress(i + 1, total)
    return out
