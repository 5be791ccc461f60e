"""Precise mode's run: the index's parsed .c files through libclang, in
parallel and cached, merged into the facts the graph reads.

Kept in the index's database, as JSON (nothing read back runs code):
- `clang_flags`: each file's clang arguments, keyed by the configuration and
  the Makefiles of its directory (make is not asked again while they stay);
- `clang_facts`: each file's `ClangFacts`, keyed by its content, its flags and
  the versions, with the headers it included (size and mtime): a header that
  changes makes the files that include it parse again.

A merged file's `FileFacts.precise` names the configuration and the clang
facts it holds, so a warm run with nothing changed only stats files.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ... import index as indexmod
from ... import safepickle
from ...rules import Rules
from .. import pool
from ..cparse import Extractor
from . import kbuild
from .merge import MergeCounts, merge
from .records import CLANG_FACTS_VERSION, ClangFacts

_TABLES = """
CREATE TABLE IF NOT EXISTS clang_flags (path TEXT PRIMARY KEY, key TEXT, args TEXT);
CREATE TABLE IF NOT EXISTS clang_facts (path TEXT PRIMARY KEY, key TEXT, deps BLOB, facts BLOB, counts TEXT);
CREATE TABLE IF NOT EXISTS clang_headers (path TEXT PRIMARY KEY, size INTEGER, mtime INTEGER);
"""


@dataclass
class PreciseStats:
    config: str = ""
    build_dir: str = ""
    targets: int = 0  # .c files the index parsed
    compiled: int = 0  # of those, files this configuration compiles (flags from make)
    parsed: int = 0  # by libclang in this run
    reused: int = 0  # clang facts from the cache
    merged: int = 0  # files whose facts are libclang's and tree-sitter's
    failed: list[tuple[str, str]] = field(default_factory=list)  # libclang errors: tree-sitter facts kept
    not_compiled: list[str] = field(default_factory=list)  # no flags: tree-sitter facts kept
    counts: MergeCounts = field(default_factory=MergeCounts)
    seconds: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict:
        c = self.counts
        return {
            "config": self.config, "build_dir": self.build_dir, "targets": self.targets,
            "compiled": self.compiled, "parsed": self.parsed, "reused": self.reused, "merged": self.merged,
            "failed": [{"file": p, "error": e} for p, e in self.failed],
            "not_compiled": self.not_compiled,
            "added": {"macro_body_calls": c.macro_body_calls, "macro_registrations": c.macro_registrations},
            "marked_macro_arg_calls": c.macro_arg_calls, "receivers_settled": c.receivers_settled,
            "clang_only_source_calls": c.clang_only_source_calls, "macro_body_reads": c.macro_body_reads,
            "skipped_range_facts": c.skipped_range_facts, "examples": c.examples,
        }


def mode_key(config_digest: str) -> str:
    """What index.index_tree keeps facts apart by: precise facts never meet a
    plain run's."""
    return f"precise:{config_digest}"


# -- worker side -------------------------------------------------------------------
_INDEX = None
_FIELD = ""
_UNREAD: frozenset[str] = frozenset()


def _init_worker(read_field: str, unread: frozenset[str] = frozenset()) -> None:
    global _INDEX, _FIELD, _UNREAD
    import clang.cindex as ci

    from . import clangfacts
    clangfacts.library()
    _INDEX = ci.Index.create()
    _FIELD, _UNREAD = read_field, unread


def _parse(item: tuple[str, str, list[str], str]) -> tuple[str, str, bytes, bytes]:
    from . import clangfacts
    rel, abspath, args, key = item
    try:
        cf, includes = clangfacts.extract(_INDEX, rel, abspath, args, key, _FIELD, _UNREAD)
    except Exception as exc:  # noqa: BLE001 - one file's failure is counted, not fatal
        cf, includes = ClangFacts(rel, key, 1, f"extractor failed: {type(exc).__name__}: {exc}"), []
    deps = []
    for path in [abspath, *includes]:
        try:
            st = os.stat(path)
            deps.append([path, st.st_size, st.st_mtime_ns])
        except OSError:
            deps.append([path, -1, -1])
    return rel, key, _pack(deps), _pack(cf.to_json())


def _pack(value) -> bytes:
    return zlib.compress(json.dumps(value, separators=(",", ":")).encode(), 1)


def _unpack(blob: bytes):
    return json.loads(zlib.decompress(blob))


# -- parent side -------------------------------------------------------------------
def _versions() -> str:
    import clang.cindex as ci
    return f"{CLANG_FACTS_VERSION}:{getattr(ci, '__version__', '')}:{Path(ci.__file__).stat().st_size}"


class _Fingerprints:
    """(size, mtime) of files, each stat'd once per run."""

    def __init__(self) -> None:
        self.seen: dict[str, tuple[int, int]] = {}

    def get(self, path: str) -> tuple[int, int]:
        got = self.seen.get(path)
        if got is None:
            try:
                st = os.stat(path)
                got = (st.st_size, st.st_mtime_ns)
            except OSError:
                got = (-1, -1)
            self.seen[path] = got
        return got

    def makefiles(self, root: Path, rel: str) -> str:
        parts = rel.split("/")[:-1]
        names = [str(root / "Makefile")]
        for i in range(1, len(parts) + 1):
            d = root.joinpath(*parts[:i])
            names += [str(d / "Makefile"), str(d / "Kbuild")]
        return hashlib.blake2b(repr([self.get(n) for n in names]).encode(), digest_size=8).hexdigest()


def run(root: Path, store: indexmod.Store, rules: Rules, build: kbuild.Build | None,
        commands: dict[str, list[str]] | None, jobs: int,
        progress: Callable[[str], Callable[[int, int], None] | None] = lambda _label: None) -> PreciseStats:
    """Bring the precise facts of the store's parsed .c files up to date.
    Either build (flags from make) or commands (from compile_commands.json)."""
    store.conn.executescript(_TABLES)
    stats = PreciseStats(config=build.config if build else "compile_commands",
                         build_dir=str(build.dir) if build else "")
    started = time.monotonic()
    # the files analyze itself parses (not those plan parsed on demand, which
    # stay tree-sitter's: a second analyze must not change what the first said)
    digests = dict(store.conn.execute(
        "SELECT path, digest FROM files WHERE state='parsed' AND path LIKE '%.c' AND note IN ('', 'non-utf8')"))
    targets = sorted(digests)
    stats.targets = len(targets)
    prints = _Fingerprints()
    flags = commands if commands is not None else _flags(root, store, build, targets, prints, progress)
    stats.seconds["flags"] = round(time.monotonic() - started, 2)
    stats.not_compiled = [p for p in targets if p not in flags]
    compiled = [p for p in targets if p in flags]
    stats.compiled = len(compiled)
    versions = _versions()
    keys = {p: _key(digests[p], flags[p], versions) for p in compiled}
    cached = _valid_cache(store, keys, prints)
    todo = [(p, str(root / p), flags[p], keys[p]) for p in compiled if p not in cached]
    stats.reused = len(compiled) - len(todo)
    t = time.monotonic()
    stats.parsed = _parse_all(store, todo, (rules.parse.field, frozenset(rules.parse.write_wrappers)), jobs,
                              progress("precise"))
    if todo or store.conn.execute("SELECT 1 FROM clang_headers LIMIT 1").fetchone() is None:
        _remember_headers(store)
        store.commit()
    stats.seconds["libclang"] = round(time.monotonic() - t, 2)
    t = time.monotonic()
    _merge_all(root, store, rules, {p: digests[p] for p in compiled}, stats)
    stats.seconds["merge"] = round(time.monotonic() - t, 2)
    store.set_meta("precise_summary", json.dumps({"config": stats.config, "merged": stats.merged}))
    store.commit()
    return stats


def _key(digest: str, args: list[str], versions: str) -> str:
    h = hashlib.blake2b(digest_size=12)
    h.update(f"{digest}\0{versions}\0".encode())
    h.update(json.dumps(args).encode())
    return h.hexdigest()


def _flags(root: Path, store, build: kbuild.Build, targets: list[str], prints: _Fingerprints,
           progress) -> dict[str, list[str]]:
    """Flags from the cache while the configuration and the Makefiles stay;
    make is asked for the rest."""
    rows = {p: (k, a) for p, k, a in store.conn.execute("SELECT path, key, args FROM clang_flags")}
    out: dict[str, list[str]] = {}
    ask: list[str] = []
    want: dict[str, str] = {}
    for p in targets:
        want[p] = f"{build.config_digest}:{prints.makefiles(root, p)}"
        row = rows.get(p)
        if row is not None and row[0] == want[p]:
            if row[1] != "null":
                out[p] = json.loads(row[1])
        else:
            ask.append(p)
    if ask:
        got = kbuild.flags(build, ask, progress("flags"))
        out.update(got)
        store.conn.executemany("INSERT OR REPLACE INTO clang_flags VALUES (?, ?, ?)",
                               [(p, want[p], json.dumps(got.get(p))) for p in ask])
        store.commit()
    return out


def _valid_cache(store, keys: dict[str, str], prints: _Fingerprints) -> set[str]:
    """The files whose cached clang facts still hold: same key, and every
    header they included unchanged. (When no header of any of them changed,
    which the clang_headers table says in one stat per header, the per-file
    lists are not read.)"""
    rows = [(p, k) for p, k in store.conn.execute("SELECT path, key FROM clang_facts") if keys.get(p) == k]
    headers = store.conn.execute("SELECT path, size, mtime FROM clang_headers").fetchall()
    if headers and all(prints.get(p) == (size, mtime) for p, size, mtime in headers):
        return {p for p, _ in rows}
    out: set[str] = set()
    for path, deps in store.conn.execute("SELECT path, deps FROM clang_facts"):
        if keys.get(path) is None:
            continue
        try:
            if all(prints.get(p) == (size, mtime) for p, size, mtime in _unpack(deps)):
                out.add(path)
        except (ValueError, TypeError, zlib.error):
            continue  # a damaged row: parsed again
    return out & {p for p, _ in rows}


def _remember_headers(store) -> None:
    """Every header the cached facts depend on, as they were when parsed."""
    seen: dict[str, tuple[int, int]] = {}
    for (deps,) in store.conn.execute("SELECT deps FROM clang_facts"):
        for p, size, mtime in _unpack(deps):
            seen[p] = (size, mtime)
    store.conn.execute("DELETE FROM clang_headers")
    store.conn.executemany("INSERT INTO clang_headers VALUES (?, ?, ?)", [(p, a, b) for p, (a, b) in seen.items()])


def _parse_all(store, todo: list[tuple], worker_args: tuple, jobs: int, progress) -> int:
    """Parse todo's files with libclang (in parallel), their facts stored as
    they come; how many were parsed."""
    done = 0
    if not todo:
        return done
    todo.sort(key=lambda t: -_size(t[1]))  # biggest first: no giant left for the end

    def keep(res) -> None:
        nonlocal done
        rel, key, deps, blob = res
        store.conn.execute("INSERT OR REPLACE INTO clang_facts VALUES (?, ?, ?, ?, NULL)", (rel, key, deps, blob))
        done += 1
        if progress:
            progress(done, len(todo))

    try:
        # a fresh process every 40 files: libclang's memory does not come back
        for res in pool.run(_parse, todo, jobs=jobs, initializer=_init_worker, initargs=worker_args,
                            serial_below=4, maxtasksperchild=40):
            keep(res)
    finally:
        store.commit()  # what was parsed before ^C is not parsed again
    return done


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _precise_key(paths: list[str], digests: dict[str, str], rows: dict) -> str:
    """Which facts the merged files hold (part of the store's content key)."""
    markers = "\n".join(f"{p}\0{digests[p]}\0{rows[p][0]}" for p in paths)
    return hashlib.blake2b(markers.encode(), digest_size=12).hexdigest()


def _facts_blob(store, path: str) -> bytes:
    return store.conn.execute("SELECT facts FROM clang_facts WHERE path=?", (path,)).fetchone()[0]


def _failure(store, path: str, counts: str | None) -> str:
    """The first libclang error of a file's cached facts, "" for none. A file
    merged before has it in its counts; one parsed in this run, in its facts.
    (Damaged facts say "" here: the merge drops them.)"""
    try:
        if counts is not None:
            return json.loads(counts).get("error", "")
        head = _unpack(_facts_blob(store, path))
        return head["first_error"] if head["errors"] else ""
    except (ValueError, TypeError, KeyError, AttributeError, zlib.error):
        return ""


def _merge_all(root: Path, store, rules: Rules, digests: dict[str, str], stats: PreciseStats) -> None:
    """Merge each compiled file's clang facts into its tree-sitter facts. When
    the files and their clang facts are those of the last merge (the
    database's precise_key), only the counts are read back, not the facts."""
    rows = {p: (key, counts) for p, key, counts in store.conn.execute(
        "SELECT path, key, counts FROM clang_facts") if p in digests}
    errors = {p: e for p in sorted(rows) if (e := _failure(store, p, rows[p][1]))}
    ok = [p for p in sorted(rows) if p not in errors]
    stats.failed = sorted(errors.items())
    stats.merged = len(ok)
    precise_key = _precise_key(ok, digests, rows)
    if store.get_meta("precise_key") == precise_key and all(rows[p][1] for p in ok):
        for p in ok:
            stats.counts.add(MergeCounts(**json.loads(rows[p][1])))
        return
    extractor = Extractor(rules.parse)
    merged_rows, counted, damaged = [], [], set()
    for ts in store.load_facts(ok):
        marker = f"{stats.config}@{rows[ts.path][0]}"
        if ts.precise == marker and rows[ts.path][1]:
            stats.counts.add(MergeCounts(**json.loads(rows[ts.path][1])))
            continue
        if ts.precise:  # merged before, with other clang facts: start again from tree-sitter's
            ts = extractor.extract(ts.path, (root / ts.path).read_bytes(), ts.digest)
        try:
            cf = ClangFacts.from_json(_unpack(_facts_blob(store, ts.path)))
        except (ValueError, TypeError, KeyError, AttributeError, zlib.error) as exc:
            # not what this tool wrote: dropped (parsed again next run), tree-sitter's facts kept
            store.conn.execute("DELETE FROM clang_facts WHERE path=?", (ts.path,))
            merged_rows.append((ts.path, zlib.compress(safepickle.dumps(ts), 1)))
            damaged.add(ts.path)
            stats.failed.append((ts.path, f"the cached libclang facts were damaged ({type(exc).__name__}); "
                                          "parsed again on the next run"))
            stats.merged -= 1
            continue
        merged, counts = merge(ts, cf, marker, rules.parse.field)
        stats.counts.add(counts)
        merged_rows.append((merged.path, zlib.compress(safepickle.dumps(merged), 1)))
        counted.append((json.dumps(dataclasses.asdict(counts)), ts.path))
    counted += [(json.dumps({"error": e}), p) for p, e in errors.items()]
    store.put_facts(merged_rows)
    store.conn.executemany("UPDATE clang_facts SET counts=? WHERE path=?", counted)
    kept = [p for p in ok if p not in damaged]
    store.set_meta("precise_key", _precise_key(kept, digests, rows) if damaged else precise_key)
    store.commit()
    stats.failed.sort()
