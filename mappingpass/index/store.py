"""The index's SQLite store: one row per file (its size, mtime, content
digest, state and facts, compressed safepickle), the database's meta keys,
and the lock that keeps one run at a time on it."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import pickle
import sqlite3
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import NamedTuple

from .. import facts as factsmod
from .. import safepickle
from ..errors import UserError
from ..facts import FileFacts

STORE_SCHEMA = 3


class FileRow(NamedTuple):
    """What the store knows of one file without reading its facts."""

    size: int
    mtime: int
    digest: str
    state: str  # "parsed", "deferred" (parsed on demand) or "skipped"


class StoreError(UserError):
    """The database cannot be opened or was written by an incompatible version."""


NO_DECLARATIONS = "no-declarations"


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
                _must_write(db_dir, path)
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

    def rows_of(self, paths: list[str]) -> dict[str, FileRow]:
        """rows() of these paths only (a few hundred of 55,000)."""
        out: dict[str, FileRow] = {}
        for i in range(0, len(paths), 500):
            chunk = paths[i:i + 500]
            marks = ",".join("?" * len(chunk))
            for r in self.conn.execute(f"SELECT path, size, mtime, digest, state FROM files WHERE path IN ({marks})",
                                       chunk):
                out[r[0]] = FileRow(r[1], r[2], r[3], r[4])
        return out

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
            advice = f"remove the cache directory {self.db_dir} (mappingpass made it) and re-run analyze"
            if not self.readonly:  # analyze parses it again: its row no longer matches the file
                self.conn.execute("UPDATE files SET size=-1, mtime=-1, digest='' WHERE path=?", (path,))
                self.conn.commit()
                advice = "re-run analyze (it parses that file again)"
            raise StoreError(f"{self.db_dir}: the facts stored for {path} are not this tool's{why}; {advice}")
        return facts

    def paths_in_state(self, state: str) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT path FROM files WHERE state=? ORDER BY path", (state,))]

    def searchable_deferred(self) -> list[str]:
        """Deferred files that can hold a declaration (see _deferred_note)."""
        return [r[0] for r in self.conn.execute(
            "SELECT path FROM files WHERE state='deferred' AND note IS NOT ? ORDER BY path", (NO_DECLARATIONS,))]

    def skipped(self) -> list[tuple[str, str]]:
        return list(self.conn.execute("SELECT path, note FROM files WHERE state='skipped' ORDER BY path"))

    def get_json(self, key: str, default=None):
        """A meta value written as JSON; default when it is missing, is not
        JSON or is not of default's type (an edited or damaged cache entry is
        recomputed, never trusted)."""
        text = self.get_meta(key)
        if text is None:
            return default
        try:
            value = json.loads(text)
        except ValueError:
            return default
        return default if default is not None and not isinstance(value, type(default)) else value

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

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()  # (on every way out: an error must not keep the index locked)

    def close(self) -> None:
        self.conn.close()
        lock = getattr(self, "_lockfile", None)
        if lock is not None:
            lock.close()  # (closing the file releases the lock)
            self._lockfile = None


def _must_write(db_dir: Path, path: Path) -> None:
    """analyze writes the index: a directory or index it cannot write (read
    only, immutable, a read-only mount) is said as such, not as a damaged index."""
    where, why = db_dir, ""
    try:
        with tempfile.TemporaryFile(dir=db_dir):
            pass
    except OSError as exc:
        why = exc.strerror
    if not why and path.exists() and not os.access(path, os.W_OK):
        where, why = path, os.strerror(errno.EACCES)
    if why:
        raise StoreError(f"{where}: cannot write the index here ({why}); "
                         "analyze needs a directory it can write: point --db at another one")
