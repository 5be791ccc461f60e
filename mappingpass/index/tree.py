"""Bringing the store up to date with a tree: which files to parse now,
which to defer, the parallel extraction (through `pool`), and the on-demand
parses plan and the graph ask for later."""

from __future__ import annotations

import json
import os
import re
import stat
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .. import safepickle
from ..rules import ParseConfig, Rules
from . import pool
from .cparse import Extractor
from .sources import digest_of, grep_files, iter_sources, link_skip, utf8_name
from .store import NO_DECLARATIONS, Store

MAX_FILE_BYTES = 16 * 1024 * 1024  # bigger .c/.h files are generated register tables


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


# -- worker side -----------------------------------------------------------------
_EXTRACTOR: Extractor | None = None


_WORDS: tuple[bytes, ...] = ()


_ALL = False


def _init_worker(config: ParseConfig, words: tuple[bytes, ...], parse_all: bool) -> None:
    global _EXTRACTOR, _WORDS, _ANCHORS, _ALL
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
        # (non-blocking and checked again: a file replaced by a FIFO since the walk)
        with os.fdopen(os.open(abspath, os.O_RDONLY | os.O_NONBLOCK), "rb") as fh:
            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                return rel, size, mtime, "", "skipped", None, NOT_REGULAR
            data = fh.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        return rel, size, mtime, "", "skipped", None, f"unreadable: {exc.strerror}"
    if len(data) > MAX_FILE_BYTES:  # (grown since the walk)
        return rel, size, mtime, "", "skipped", None, f"larger than {MAX_FILE_BYTES >> 20} MiB"
    digest = digest_of(data)
    if known and digest == known:
        return rel, size, mtime, digest, "same", None, ""
    if context or (not _ALL and not _relevant(data)):
        return rel, size, mtime, digest, "deferred", None, _deferred_note(data)
    return _extract(rel, size, mtime, digest, data, not data.isascii() and not _is_utf8(data))


NOT_REGULAR = "not a regular file (a FIFO, device or socket)"
NON_UTF8_NAME = "file name is not UTF-8"


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
    # (the rules file's digest: the accessors derived from the tree come and go with it)
    scope = [str(root.resolve()), subpaths, rules.source_digest or rules.digest, parse_all] + ([mode] if mode else [])
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
        if not utf8_name(rel):
            stats.skipped[NON_UTF8_NAME] = stats.skipped.get(NON_UTF8_NAME, 0) + 1
            continue
        abspath = os.path.join(root, rel)
        if os.path.islink(abspath):
            why = link_skip(root, abspath)
            if why:  # the same file under its real path, or nothing at all
                stats.skipped[why] = stats.skipped.get(why, 0) + 1
                continue
        try:
            st = os.stat(abspath)
        except OSError as exc:
            todo.append((abspath, rel, 0, 0, context, "", exc.strerror))
            continue
        if not stat.S_ISREG(st.st_mode):  # a FIFO would hang the read, /dev/zero never end it
            stats.skipped[NOT_REGULAR] = stats.skipped.get(NOT_REGULAR, 0) + 1
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
    for i, res in enumerate(pool.run(_work, todo, jobs=jobs, initializer=_init_worker, initargs=initargs,
                                     chunksize=8)):
        out.append(res)
        if progress:
            progress(i + 1, total)
    return out
