"""The tool's own caches in --db (facts, the graph, review's base state),
written with pickle and read back by a loader that builds nothing but the
package's record types (dataclasses and NamedTuples) and networkx's graph classes: a crafted
or foreign file can at worst be refused, never run code (a CI cache that a
pull request can write is restored into --db)."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import os
import pickle
import sys
from pathlib import Path
from typing import IO, Any

# what a networkx MultiDiGraph pickles: the graph and the views it caches
_NETWORKX = {
    ("networkx.classes.multidigraph", "MultiDiGraph"),
    ("networkx.classes.digraph", "DiGraph"),
    ("networkx.classes.graph", "Graph"),
    ("networkx.classes.coreviews", "AdjacencyView"),
    ("networkx.classes.coreviews", "MultiAdjacencyView"),
    ("networkx.classes.reportviews", "NodeView"),
    ("networkx.classes.reportviews", "DiDegreeView"),
    ("networkx.classes.reportviews", "DiMultiDegreeView"),
    ("networkx.classes.reportviews", "InMultiEdgeView"),
    ("networkx.classes.reportviews", "OutMultiEdgeView"),
    ("networkx.classes.reportviews", "OutEdgeView"),
    ("networkx.classes.reportviews", "InEdgeView"),
}


class CacheError(pickle.UnpicklingError):
    """A cache file holds something other than the tool's records."""


class _Loader(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _NETWORKX:
            return super().find_class(module, name)
        loaded = sys.modules.get(module) if module.startswith("mappingpass.") else None
        cls = getattr(loaded, name, None)
        if isinstance(cls, type) and (dataclasses.is_dataclass(cls)
                                      or issubclass(cls, tuple) and hasattr(cls, "_fields")):
            return cls  # a dataclass or a NamedTuple
        raise CacheError(f"{module}.{name} is not one of the tool's record types")


def dumps(obj: Any) -> bytes:
    return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)


def dump(obj: Any, fh: IO[bytes]) -> None:
    pickle.dump(obj, fh, protocol=pickle.HIGHEST_PROTOCOL)


def loads(blob: bytes) -> Any:
    return _Loader(io.BytesIO(blob)).load()


def load(fh: IO[bytes]) -> Any:
    return _Loader(fh).load()


def read_keyed(path: Path, key: str) -> Any:
    """The object a cache file holds under key (write_keyed), or None when
    the file is missing, was written under another key, or holds anything
    other than the tool's records (then the cache is computed again)."""
    try:
        with open(path, "rb") as fh:
            return load(fh) if load(fh) == key else None
    except (OSError, EOFError, pickle.UnpicklingError, AttributeError, TypeError, ValueError, IndexError,
            KeyError):
        return None


def write_keyed(path: Path, key: str, obj: Any) -> None:
    """Write a cache file atomically (a temporary file, then a rename); on an
    OSError the temporary file is removed and the error raised."""
    tmp = path.with_suffix(".tmp")
    try:
        with open(tmp, "wb") as fh:
            dump(key, fh)
            dump(obj, fh)
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


@functools.cache
def code_digest() -> str:
    """What this copy of mappingpass's code is, part of every cache key: what
    another version (or an edited checkout) cached is computed again."""
    h = hashlib.blake2b(digest_size=16)
    package = Path(__file__).parent
    for path in sorted(package.rglob("*.py")):
        h.update(f"{path.relative_to(package)}\0".encode())
        h.update(path.read_bytes())
    return h.hexdigest()
