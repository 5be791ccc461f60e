"""MAINTAINERS: who is Cc'd on each patch. The tree's own
scripts/get_maintainer.pl when it runs (with a fixed perl hash seed: its
order of equal-rank addresses varies otherwise), else our reading of the
MAINTAINERS file's F:/X:/N:/K: patterns (`cc_for`)."""

from __future__ import annotations

import email.utils
import functools
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

_TAG = re.compile(r"^([A-Z]):\s*(.*?)\s*$")
GET_MAINTAINER = ("--no-git", "--no-git-fallback", "--no-rolestats")
# get_maintainer.pl orders addresses of equal rank by perl's hash order, which
# perl randomises per process: a fixed seed makes the same series the same bytes
_PERL_ENV = {**os.environ, "PERL_HASH_SEED": "0", "PERL_PERTURB_KEYS": "0"}
# get_maintainer.pl leaves these out of its default output (--git-chief-penguins)
PENGUIN_CHIEFS = ("Linus Torvalds <torvalds@linux-foundation.org>",)


@dataclass
class Section:
    """One MAINTAINERS entry: title, M:/R: people, L: lists, F:/X:/N: patterns."""

    title: str
    maintainers: list[str] = field(default_factory=list)
    lists: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    excludes: list[str] = field(default_factory=list)
    regexes: list[str] = field(default_factory=list)

    def match(self, path: str, root: Path | None = None, dirs: dict | None = None) -> str | None:
        """The pattern that makes `path` belong to this section: "catch-all" for
        `F: *` / `F: */` (THE REST), the pattern otherwise; None if it does not."""
        if any(_file_match(path, x, root, dirs) for x in self.excludes):
            return None
        best = None
        for pat in self.files:
            if _file_match(path, pat, root, dirs):
                if pat.strip() not in ("*", "*/"):
                    return pat
                best = "catch-all"
        for rx in self.regexes:
            try:
                if re.search(rx, path):
                    return rx
            except re.error:
                continue
        return best


def parse_maintainers(path: Path) -> list[Section]:
    """Sections of a kernel MAINTAINERS file (the format get_maintainer.pl reads):
    a title line, then `X:<tab>value` lines, sections separated by blank lines.
    The preamble's indented descriptions of the tags are not sections."""
    sections: list[Section] = []
    current: Section | None = None
    title: str | None = None
    for raw in path.read_text(encoding="utf-8", errors="replace").splitlines():
        line = raw.rstrip()
        if not line:
            current, title = None, None
            continue
        m = _TAG.match(line)
        if m is None:
            title = line.strip()
            current = None
            continue
        tag, value = m.groups()
        if current is None:
            current = Section(title or "")
            sections.append(current)
        if tag in ("M", "R"):
            current.maintainers.append(value)
        elif tag == "L":
            current.lists.append(value.split()[0] if value else value)
        elif tag == "F":
            current.files.append(value)
        elif tag == "X":
            current.excludes.append(value)
        elif tag == "N":
            current.regexes.append(value)
    return [s for s in sections if s.files or s.regexes]


@functools.cache
def _pattern(pattern: str) -> tuple[str, re.Pattern[str], int]:
    """(literal prefix, regex, depth) of an F:/X: pattern."""
    rx = "".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern)
    return re.split(r"[*?]", pattern, maxsplit=1)[0], re.compile(rx), pattern.count("/")


def _file_match(path: str, pattern: str, root: Path | None, dirs: dict | None = None) -> bool:
    """get_maintainer.pl's file_match_pattern: `*` and `?` are wildcards; a
    trailing `/` (or a pattern naming a directory of the tree at root) covers
    everything below; any other pattern matches files at the same depth only.
    dirs: a cache of the directory checks, for one batch of matches."""
    pattern = pattern.strip()
    if not pattern:
        return False
    below = pattern.endswith("/")
    if not below and root is not None and "*" not in pattern and path.startswith(pattern):
        if dirs is None or pattern not in dirs:
            isdir = (root / pattern).is_dir()
            if dirs is None:
                dirs = {}
            dirs[pattern] = isdir
        if dirs[pattern]:
            pattern, below = pattern + "/", True
    prefix, rx, depth = _pattern(pattern)
    if not path.startswith(prefix) or not rx.match(path):
        return False
    return below or path.count("/") == depth


def maintainers_cc(root: Path, maintainers: Path | None, sections: list[Section],
                   patches: list[tuple[list[str], str]],
                   progress: Callable[[int, int], None] | None = None) -> list[list[str]]:
    """The Cc: addresses of each patch (its files, its diff): from the tree's
    own scripts/get_maintainer.pl run on the diff, as kernel developers and b4
    get them, when the MAINTAINERS file is the tree's and perl is there; else
    (or where it fails) from cc_for, our reading of MAINTAINERS."""
    script = root / "scripts" / "get_maintainer.pl"
    own = maintainers is not None and maintainers.resolve() == (root / "MAINTAINERS").resolve()
    if not (own and script.is_file() and shutil.which("perl")):
        return [cc_for(sections, files, root) for files, _diff in patches]

    def one(patch: tuple[list[str], str]) -> list[str]:
        files, diff = patch
        with tempfile.NamedTemporaryFile("wb", suffix=".patch") as fh:  # (it reads no stdin)
            fh.write(diff.encode("utf-8", "surrogateescape"))
            fh.flush()
            proc = subprocess.run(["perl", str(script), *GET_MAINTAINER, fh.name], cwd=root, env=_PERL_ENV,
                                  capture_output=True, text=True, check=False, errors="surrogateescape")
        found = [ln.strip() for ln in proc.stdout.splitlines() if "@" in ln]
        return found if proc.returncode == 0 and found else cc_for(sections, files, root)

    out: list[list[str]] = []
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        for cc in pool.map(one, patches):  # (in order)
            out.append(cc)
            if progress:
                progress(len(out), len(patches))
    return out


def cc_for(sections: list[Section], files: list[str], root: Path | None = None) -> list[str]:
    """Cc: addresses for a patch touching `files`: the M:/R: people and L:
    lists of every section that names one of them. A section that matches a
    file only through the catch-all (`THE REST`: `F: *`) contributes its lists,
    and its people only for a file no other section names (as get_maintainer.pl's
    default output does). Ordered as in the file."""
    full: set[int] = set()
    lists_only: set[int] = set()
    dirs: dict[str, bool] = {}
    by_top: dict[str, list[int]] = {}  # first path component of a pattern's literal part -> sections
    for i, s in enumerate(sections):
        tops = {p.strip().split("/", 1)[0] if "/" in p.strip() else "" for p in s.files}
        if s.regexes or any(not t or "*" in t or "?" in t for t in tops):
            tops = {""}
        for t in tops:
            by_top.setdefault(t, []).append(i)
    for f in files:
        candidates = sorted(set(by_top.get(f.split("/", 1)[0], ())) | set(by_top.get("", ())))
        hits = [(i, sections[i].match(f, root, dirs)) for i in candidates]
        hits = [(i, h) for i, h in hits if h is not None]
        specific = [i for i, h in hits if h != "catch-all"]
        full.update(specific)
        for i, h in hits:
            if h == "catch-all":
                (lists_only if specific else full).add(i)
    people: list[str] = []
    lists: list[str] = []
    for i, s in enumerate(sections):
        if i in full:
            people.extend(s.maintainers)
        if i in full or i in lists_only:
            lists.extend(s.lists)
    out: list[str] = []
    for addr in [_quoted(a) for a in people if a not in PENGUIN_CHIEFS] + lists:
        if addr and addr not in out:
            out.append(addr)
    return out


def _quoted(addr: str) -> str:
    """A person's address as get_maintainer.pl writes it: a name with RFC 5322
    specials, such as `Matthew Wilcox (Oracle)`, in quotes."""
    name, mail = email.utils.parseaddr(addr)
    if name and re.search(r'[()<>@,;:\\".\[\]]', name) and not name.startswith('"'):
        return f'"{name}" <{mail}>'
    return addr
