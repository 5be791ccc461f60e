"""Shared fixtures: the bundled minilinux tree and Debian's linux-source-6.1."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tarfile
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from mappingpass.cli import main

REPO = Path(__file__).resolve().parent.parent
# the series' author when a test runs `emit --series` (git's own variables:
# CI machines have no git identity)
os.environ.setdefault("GIT_AUTHOR_NAME", "Ada Tester")
os.environ.setdefault("GIT_AUTHOR_EMAIL", "ada@example.org")

MINILINUX = REPO / "fixtures" / "minilinux"
CACHE = Path(os.environ.get("MAPPINGPASS_CACHE", Path.home() / ".cache" / "mappingpass"))


# How the fixture's Makefile checks it: every .c file, a file built only with
# its config option, the other configuration of files that include a stub, and
# every header on its own.
CONFIG_ONLY = {"fs/tinyfs/xattr.c": ["-DCONFIG_TINYFS_XATTR"]}
CONFIG_VARIANTS = [("fs/tinyfs/inode.c", ["-DCONFIG_TINYFS_DEBUG"]),
                   ("fs/tinyfs/dir.c", ["-DCONFIG_TINYFS_XATTR"])]


def compile_jobs(tree: Path, headers: bool = True) -> list[tuple[str, list[str]]]:
    jobs = [(rel, CONFIG_ONLY.get(rel, [])) for rel in
            sorted(str(p.relative_to(tree)) for p in tree.rglob("*.c"))]
    jobs += CONFIG_VARIANTS
    if headers:
        jobs += [(str(p.relative_to(tree)), ["-x", "c"]) for p in sorted(tree.rglob("*.h"))]
    return jobs


def compile_errors(tree: Path, headers: bool = True) -> dict[str, str]:
    """`cc -fsyntax-only -Wall -Werror -I include` over compile_jobs:
    {"file [flags]": stderr} of those that fail."""
    from concurrent.futures import ThreadPoolExecutor

    def one(job):
        path, extra = job
        proc = subprocess.run(["cc", "-fsyntax-only", "-Wall", "-Werror", "-Iinclude", *extra, path],
                              cwd=tree, capture_output=True, text=True, check=False)
        key = " ".join([path, *[f for f in extra if f.startswith("-D")]])
        return (key, proc.stderr) if proc.returncode else None

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        return dict(r for r in pool.map(one, compile_jobs(tree, headers)) if r)


def canonical_analysis(a) -> tuple:
    """An analysis as comparable values: two analyses of the same files are equal
    whether built in one go or patched."""
    g = a.graph
    nodes = {}
    for n, d in g.nodes(data=True):
        d = dict(d)
        for k in ("bodies", "protos", "decls"):
            if k in d:
                d[k] = sorted(d[k])
        if "clashes" in d:
            d["clashes"] = sorted(d["clashes"])
        nodes[n] = d
    # call sites by line and column: the index of a call in its file's facts is
    # not stable between two extractions of the same bytes
    edges = sorted((u, v, k, tuple(sorted((s[0], s[1]) + tuple(s[3:]) for s in d["sites"])))
                   for u, v, k, d in g.edges(keys=True, data=True))
    reads = sorted((r.file, r.start, r.end, r.function_id, r.kind, r.receiver_type) for r in a.reads)
    cands = sorted((r.file, r.start) for r in a.candidates)
    unbound = {k: sorted(v) for k, v in getattr(a, "unbound", {}).items()}
    return nodes, edges, reads, cands, unbound


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def analyze_json(path: Path, db: Path, *extra: str) -> dict:
    code, out, err = run_cli("analyze", str(path), "--db", str(db), "--format", "json", "-q", *extra)
    assert code == 0, err
    return json.loads(out)


def emitted_diff(tree: Path, tmp_path: Path, *extra: str) -> tuple[Path, bytes]:
    """analyze tree into tmp_path/db and emit its diff: (the db, the diff's bytes)."""
    db = tmp_path / "db"
    analyze_json(tree, db, *extra)
    out = tmp_path / "emitted.diff"
    code, _, err = run_cli("emit", "--db", str(db), "--diff", str(out), "-q")
    assert code == 0, err
    return db, out.read_bytes()


def plan_json(db: Path) -> tuple[int, dict, str]:
    code, out, err = run_cli("plan", "--db", str(db), "--format", "json", "-q")
    assert out, err
    return code, json.loads(out), out


@pytest.fixture(scope="session")
def fixture_analysis(tmp_path_factory) -> dict:
    db = tmp_path_factory.mktemp("db")
    return analyze_json(MINILINUX, db)


@pytest.fixture
def minilinux_copy(tmp_path) -> Path:
    dest = tmp_path / "minilinux"
    shutil.copytree(MINILINUX, dest)
    return dest


_REPORTER = None  # pytest's terminal reporter: progress of long steps past the capture


def pytest_configure(config) -> None:
    global _REPORTER
    _REPORTER = config.pluginmanager.get_plugin("terminalreporter")


def say(message: str) -> None:
    """A progress line on the terminal while a test runs (CI is silent
    otherwise: an extraction or a kernel build takes minutes)."""
    if _REPORTER is not None:
        _REPORTER.write_line(f"[tests {time.strftime('%H:%M:%S')}] {message}")


def debian_tree(version: str, env: str) -> Path:
    """linux-<version> from Debian's linux-source-<version>, extracted once into
    the cache (or the tree $env names); skips with the reason when absent."""
    tree = Path(os.environ.get(env, CACHE / f"linux-source-{version}"))
    if (tree / "Makefile").is_file() and (tree / "include" / "linux" / "fs.h").is_file():
        return tree
    tarball = Path(f"/usr/src/linux-source-{version}.tar.xz")
    if not tarball.is_file():
        pytest.skip(f"linux-{version} not available: apt-get install linux-source-{version} "
                    f"(or set {env} to an extracted tree)")
    CACHE.mkdir(parents=True, exist_ok=True)
    say(f"extracting {tarball} into {CACHE} (once: a few minutes)")
    partial = CACHE / f"extracting-{version}"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    if shutil.which("tar"):
        subprocess.run(["tar", "xJf", str(tarball), "-C", str(partial)], check=True)
    else:  # pragma: no cover - tar is in every Debian image
        with tarfile.open(tarball) as tf:
            tf.extractall(partial, filter="data")
    (partial / f"linux-source-{version}").rename(tree)
    shutil.rmtree(partial, ignore_errors=True)
    return tree


@pytest.fixture(scope="session")
def linux_tree() -> Path:
    """linux-6.1 from Debian's linux-source-6.1, extracted once into the cache."""
    return debian_tree("6.1", "MAPPINGPASS_LINUX")


@pytest.fixture(scope="session")
def linux612_tree() -> Path:
    """linux-6.12 from Debian's linux-source-6.12, extracted once into the cache."""
    return debian_tree("6.12", "MAPPINGPASS_LINUX612")


def plan_mutants(plan, analysis, rules, facts):
    """Every argument and context the plan passes, replaced in turn by each
    other in-scope candidate of a provider type, NULL and the raw field:
    (name, mutated plan). The check must refute them (tests/test_check.py,
    the real tier)."""
    import dataclasses

    from mappingpass.plan.context import Context

    ctx = Context(analysis.graph, analysis.types, rules.plan, facts.get)
    reads = {(r.file, r.start): r for r in analysis.reads}
    for c in plan.call_sites:
        if c.how in ("receiver", "unresolved", "needs-human", "debug"):
            continue
        options = {x.expr for x in ctx.candidates(c.caller)} | {"NULL", "page->mapping"}
        for other in sorted(options - {c.argument}):
            sites = tuple(dataclasses.replace(x, argument=other) if x is c else x for x in plan.call_sites)
            yield f"{c.file}:{c.line} {c.argument} -> {other}", dataclasses.replace(plan, call_sites=sites)
    for w in plan.rewrites:
        if w.purpose == "identity":
            continue
        page = reads[(w.file, w.start)].receiver_text
        options = {x.expr for x in ctx.candidates(w.function)} | {"NULL", f"{page}->mapping"}
        for other in sorted(options - {w.context}):
            rewrites = tuple(dataclasses.replace(x, context=other) if x is w else x for x in plan.rewrites)
            yield f"{w.file}:{w.line} {w.context} -> {other}", dataclasses.replace(plan, rewrites=rewrites)
