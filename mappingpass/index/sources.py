"""The tree: where its top is, which files it holds (sorted, skipping the
rules' skip_dirs), what is inside it, and a fast grep over many files."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .store import StoreError


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


def utf8_name(rel: str) -> bool:
    """The name is valid UTF-8 (os.walk gives other bytes as surrogates; the
    index keys files by name as text)."""
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def readable_sources(root: Path, skip_dirs: frozenset[str], under: str = "") -> list[str]:
    """iter_sources without what grep must not open: FIFOs, devices (a `*.c`
    link to /dev/zero) and names that are not UTF-8 (analyze counts them)."""
    out = []
    for rel in iter_sources(root, skip_dirs, under):
        try:
            if utf8_name(rel) and stat.S_ISREG(os.stat(os.path.join(root, rel)).st_mode):
                out.append(rel)
        except OSError:
            continue
    return out


def changed_since(root: Path, rel: str, row) -> bool:
    """The file differs from what the index read (its row's size, mtime and
    digest): stat first, the content only when the stat differs."""
    try:
        st = os.stat(root / rel)
        if row.size == st.st_size and row.mtime == st.st_mtime_ns:
            return False
        return not row.digest or digest_of((root / rel).read_bytes()) != row.digest
    except OSError:
        return True


def digest_of(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=12).hexdigest()


def inside_tree(root: Path | str, path: Path | str) -> bool:
    """Whether path, its links resolved, lies inside the tree at root."""
    top = os.path.realpath(root)
    return os.path.commonpath([top, os.path.realpath(path)]) == top


def link_skip(root: Path, abspath: str) -> str:
    """Why a symlinked source is not indexed under its own name: its target
    lies inside the tree (indexed there, once) or is missing; "" for a link
    out of the tree, whose content is indexed under the link's name."""
    target = os.path.realpath(abspath)
    if not os.path.exists(target):
        return "dangling symlink"
    return "symlink into the tree (indexed at its target)" if inside_tree(root, target) else ""


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


def words_found(root: Path, rels: list[str], words: list[str]) -> set[str]:
    """Which of `words` occur as a whole word in any of the files rels."""
    if not rels or not words:
        return set()
    return _grep(root, rels, sorted(set(words)), "-ohwF")


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


def outside_sources(store, root: Path, skip_dirs: frozenset[str]) -> list[str]:
    """When analyze was given part of a tree (`analyze TREE/fs/ext2
    TREE/mm`), the tree's other .c/.h files, which the index has never
    seen; [] for a whole tree."""
    scope = store.get_json("scope")
    if not (isinstance(scope, list) and len(scope) > 1 and scope[1] != [""]):
        return []
    known = set(store.rows())
    return [rel for rel in readable_sources(root, skip_dirs) if rel not in known]
