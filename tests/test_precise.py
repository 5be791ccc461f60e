"""Precise mode (`analyze --precise`) on the fixture: fixtures/precise laid
over a copy of fixtures/minilinux, flags from a compile_commands.json (plain
`cc -Iinclude`), so that no kernel build is needed. The real-tree test of the
configured build (make O=DIR defconfig prepare) is in test_realtree.py."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import MINILINUX, REPO, analyze_json, plan_json, run_cli

from mappingpass.index.precise import kbuild

pytest.importorskip("clang.cindex")

OVERLAY = REPO / "fixtures" / "precise"


def _compile_commands(tree: Path) -> Path:
    def flags(rel: str) -> list[str]:
        return ["-DCONFIG_MACROFS_TRACE"] if rel.startswith("fs/macrofs/") else []

    entries = [{"directory": str(tree), "file": str(p.relative_to(tree)),
                "arguments": ["cc", "-Iinclude", *flags(str(p.relative_to(tree))), "-c", str(p.relative_to(tree)),
                              "-o", "/dev/null"]}
               for p in sorted(tree.rglob("*.c")) if p.name != "xattr.c"]  # (xattr.c: its config is off)
    out = tree.parent / "compile_commands.json"
    out.write_text(json.dumps(entries, indent=1))
    return out


@pytest.fixture
def macro_tree(tmp_path) -> tuple[Path, Path]:
    tree = tmp_path / "linux"
    shutil.copytree(MINILINUX, tree)
    shutil.copytree(OVERLAY / "fs", tree / "fs", dirs_exist_ok=True)
    return tree, _compile_commands(tree)


def _precise(tree: Path, cc: Path, db: Path) -> dict:
    return analyze_json(tree, db, "--compile-commands", str(cc))


def _reads(result: dict, path: str) -> dict[int, dict]:
    return {r["line"]: r for r in result["reads"] if r["file"] == path}


def test_overlay_compiles(macro_tree):
    tree, _ = macro_tree
    for extra in ([], ["-DCONFIG_MACROFS_DEBUG"], ["-DCONFIG_MACROFS_TRACE"]):
        done = subprocess.run(["cc", "-fsyntax-only", "-Wall", "-Werror", "-Iinclude", *extra,
                               "fs/macrofs/macrofs.c"], cwd=tree, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr


def test_precise_adds_what_macros_make(macro_tree, tmp_path):
    tree, cc = macro_tree
    plain = analyze_json(tree, tmp_path / "plain")
    precise = _precise(tree, cc, tmp_path / "precise")
    p = precise["precise"]
    assert p["failed"] == [] and p["not_compiled"] == ["fs/tinyfs/xattr.c"]
    assert p["merged"] == p["compiled"] == p["targets"] - 1
    assert p["added"]["macro_body_calls"] >= 1 and p["macro_call_edges"] >= 1
    assert "fs/macrofs/macrofs.c:52: macrofs_bio_prep() stores macrofs_read_done in bio.bi_end_io" in p["examples"]
    # the read whose receiver only a macro's body types: a candidate without, a read with
    read = "macrofs_page_of(ref)->mapping"
    assert [c["expr"] for c in plain["candidates"] if c["file"] == "fs/macrofs/macrofs.c"] == [read]
    assert _reads(precise, "fs/macrofs/macrofs.c")[35]["receiver_type"] == "struct page *"
    assert not [c for c in precise["candidates"] if c["file"] == "fs/macrofs/macrofs.c"]
    # registered by a macro as a bio completion: kind 3 (path rules alone say kind 1)
    assert _reads(plain, "fs/macrofs/macrofs.c")[46]["kind"] == 1
    assert _reads(precise, "fs/macrofs/macrofs.c")[46]["kind"] == 3
    # the #if branch the flags do not build keeps tree-sitter's read
    assert 62 in _reads(precise, "fs/macrofs/macrofs.c") and p["skipped_range_facts"] >= 1
    # everything else agrees: same functions, same reads elsewhere
    assert [f["id"] for f in plain["functions"]] == [f["id"] for f in precise["functions"]]
    others = [{k: v for k, v in r.items() if k != "why"} for r in plain["reads"] if r["file"] != "fs/macrofs/macrofs.c"]
    assert others == [{k: v for k, v in r.items() if k != "why"} for r in precise["reads"]
                      if r["file"] != "fs/macrofs/macrofs.c"]


def test_plan_keeps_a_function_a_macro_body_calls(macro_tree, tmp_path):
    tree, cc = macro_tree
    analyze_json(tree, tmp_path / "plain")
    _precise(tree, cc, tmp_path / "precise")
    _, plain, _ = plan_json(tmp_path / "plain")
    _, precise, _ = plan_json(tmp_path / "precise")
    by_fn = {u["function"]: u for u in precise["unresolved"]}
    u = by_fn["fs/macrofs/macrofs.c::macrofs_flush_page"] if "fs/macrofs/macrofs.c::macrofs_flush_page" in by_fn \
        else by_fn["macrofs_flush_page"]
    assert u["reason"] == "macro-body-call"
    assert u["chain"][0]["why"] == "called-in-macro"
    assert u["chain"][0]["detail"] == "macrofs_flush() in macrofs_sync_page"  # (the first caller by name)
    assert [x["reason"] for x in plain["unresolved"] if x["function"] == u["function"]] == ["no-callers"]
    counts = precise["summary"]["unresolved_by_reason"]
    assert counts["macro-body-call"] == 1
    assert counts["no-callers"] == plain["summary"]["unresolved_by_reason"]["no-callers"] - 1
    assert precise["summary"]["runtime_reads"] == plain["summary"]["runtime_reads"] + 1
    # which front-end made the facts, said once
    assert precise["front_end"] == {"config": "compile_commands", "merged": 24} and "front_end" not in plain
    _, text, _ = run_cli("plan", "--db", str(tmp_path / "precise"), "-q")
    assert text.startswith("front-end: tree-sitter + libclang (compile_commands: 24 .c files")
    assert "unresolved: macro-body-call (1)" in text


def test_macro_traps_of_the_real_tree(macro_tree, tmp_path):
    """Three traps linux-6.1 showed: a macro's body calls the extern the
    configuration builds, not the static stub next to its prototype
    (__init_work); a call to an identity macro (`#define readl readl`) is the
    file's own; a macro-body call inside another macro's argument names the
    inner macro (INODE_PKEY inside reiserfs_panic)."""
    from mappingpass import graph, index
    from mappingpass.workspace import store_rules

    tree, cc = macro_tree
    db = tmp_path / "db"
    _precise(tree, cc, db)
    store = index.Store(db, create=False)
    ff = store.load_facts(["fs/macrofs/macrofs.c"])[0]
    g = graph.load_or_build(store, store_rules(store)).graph
    into_extern = [a for a, _, k in g.in_edges("macrofs_trace", keys=True) if k == "macro-call"]
    stub = "fs/macrofs/macrofs.h::macrofs_trace"
    assert into_extern == ["macrofs_writepage"]
    assert stub not in g or not [k for _, _, k in g.in_edges(stub, keys=True) if k == "macro-call"]
    assert [(c.origin, c.macro) for c in ff.calls if c.callee == "macrofs_io"] == [("source", "")]
    inner = [c for c in ff.macro_calls if c.caller == "macrofs_sync_page" and c.callee == "macrofs_flush_page"]
    assert [c.macro for c in inner] == ["macrofs_flush"]


def test_warm_run_reuses_and_says_the_same(macro_tree, tmp_path):
    tree, cc = macro_tree
    first = _precise(tree, cc, tmp_path / "db")
    second = _precise(tree, cc, tmp_path / "db")
    assert second["precise"]["parsed"] == 0 and second["precise"]["reused"] == first["precise"]["parsed"]
    strip = [k for k in ("parsed", "reused")]
    a = {k: v for k, v in first["precise"].items() if k not in strip}
    b = {k: v for k, v in second["precise"].items() if k not in strip}
    assert a == b
    assert {k: v for k, v in first.items() if k not in ("files", "precise")} == \
           {k: v for k, v in second.items() if k not in ("files", "precise")}


def test_a_changed_header_parses_its_includers_again(macro_tree, tmp_path):
    tree, cc = macro_tree
    db = tmp_path / "db"
    _precise(tree, cc, db)
    header = tree / "fs" / "macrofs" / "macrofs.h"
    header.write_text(header.read_text().replace("unsigned long cookie;", "unsigned long cookie, spare;"))
    again = _precise(tree, cc, db)
    assert again["precise"]["parsed"] == 1  # macrofs.c, the one file including it


def test_plain_analyze_after_precise_gives_plain_facts(macro_tree, tmp_path):
    tree, cc = macro_tree
    fresh = analyze_json(tree, tmp_path / "fresh")
    db = tmp_path / "db"
    _precise(tree, cc, db)
    after = analyze_json(tree, db)
    assert "precise" not in after
    assert {k: v for k, v in after.items() if k != "files"} == {k: v for k, v in fresh.items() if k != "files"}


def test_libclang_is_imported_only_in_precise_mode(tmp_path):
    code = ("import sys; from mappingpass.cli import main; "
            f"main(['analyze', {str(MINILINUX)!r}, '--db', {str(tmp_path / 'db')!r}, '-q', '--format', 'json']); "
            f"main(['plan', '--db', {str(tmp_path / 'db')!r}, '-q', '--format', 'json']); "
            "sys.stderr.write(str(sorted(m for m in sys.modules "
            "if m.startswith(('clang', 'mappingpass.index.precise')))))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stderr.strip().splitlines()[-1] == "[]", done.stderr


@pytest.mark.parametrize("content, says", [
    ("{not json", "cannot read it as compile_commands.json"),
    ('{"a": 1}', "not a compile_commands.json"),
    ("[]", "no .c file of"),
])
def test_bad_compile_commands(tmp_path, content, says):
    cc = tmp_path / "cc.json"
    cc.write_text(content)
    code, _, err = run_cli("analyze", str(MINILINUX), "--db", str(tmp_path / "db"), "-q", "--compile-commands", str(cc))
    assert code == 2 and says in err and len(err.strip().splitlines()) == 1, err


def test_clang_args_from_a_kbuild_command_line(tmp_path):
    command = ("gcc -Wp,-MMD,fs/ext2/.dir.o.d -nostdinc -I./arch/x86/include/generated -I/src/include "
               "-include /src/include/linux/kconfig.h -D__KERNEL__ -Werror=implicit-int "
               "-mpreferred-stack-boundary=3 -fconserve-stack -O2 -I /src/fs -I ./fs "
               "-DKBUILD_MODNAME='\"ext2\"' -c -o fs/ext2/dir.o /src/fs/ext2/dir.c")
    args = kbuild.clang_args(command, tmp_path)
    assert args[:3] == ["-nostdinc", f"-I{tmp_path}/arch/x86/include/generated", "-I/src/include"]
    assert ["-include", "/src/include/linux/kconfig.h"] == args[3:5]
    assert ["-I", "/src/fs", "-I", f"{tmp_path}/fs"] == args[7:11]
    assert '-DKBUILD_MODNAME="ext2"' in args and "-O2" in args
    for gone in ("-Wp,-MMD,fs/ext2/.dir.o.d", "-Werror=implicit-int", "-mpreferred-stack-boundary=3",
                 "-fconserve-stack", "-c", "-o", "fs/ext2/dir.o", "/src/fs/ext2/dir.c"):
        assert gone not in args
    assert args[-4:] == list(kbuild.CLANG_EXTRA)


def _fake_tree(path: Path) -> Path:
    (path / "scripts").mkdir(parents=True)
    (path / "Makefile").write_text("all:\n")
    (path / "scripts" / "Kbuild.include").write_text("\n")
    (path / "include" / "linux").mkdir(parents=True)
    (path / "include" / "linux" / "fs.h").write_text("struct page { void *mapping; };\n")
    return path


@pytest.mark.parametrize("case, says", [
    ("configured", "configured in place"),
    ("inside", "inside the source tree"),
    ("not-kernel", "not a kernel source tree"),
    ("no-config", "no such config file"),
])
def test_precise_refuses_what_it_cannot_build(tmp_path, case, says):
    tree = _fake_tree(tmp_path / "linux")
    build, config = tmp_path / "build", "defconfig"
    if case == "configured":
        (tree / ".config").write_text("CONFIG_X=y\n")
    elif case == "inside":
        build = tree / "out"
    elif case == "not-kernel":
        (tree / "scripts" / "Kbuild.include").unlink()
    else:
        config = str(tmp_path / "missing.config")
    code, _, err = run_cli("analyze", str(tree), "--db", str(tmp_path / "db"), "-q", "--precise",
                           "--config", config, "--build-dir", str(build))
    assert code == 2 and says in err and len(err.strip().splitlines()) == 1, err
    assert sorted(p.name for p in tree.iterdir()) == sorted(["Makefile", "scripts", "include"] +
                                                            ([".config"] if case == "configured" else []))


@pytest.mark.parametrize("blob", [
    b"not zlib",
    json.dumps({"path": "fs/macrofs/macrofs.c", "__reduce__": "os.system"}).encode(),
])
def test_a_damaged_clang_cache_row_is_parsed_again(macro_tree, tmp_path, blob):
    import sqlite3
    import zlib

    tree, cc = macro_tree
    db = tmp_path / "db"
    first = _precise(tree, cc, db)
    conn = sqlite3.connect(db / "index.sqlite")
    conn.execute("UPDATE clang_facts SET facts=?, counts=NULL WHERE path='fs/macrofs/macrofs.c'",
                 (blob if blob == b"not zlib" else zlib.compress(blob),))
    conn.commit()
    conn.close()
    conn = sqlite3.connect(db / "index.sqlite")
    conn.execute("DELETE FROM meta WHERE key='precise_key'")
    conn.commit()
    conn.close()
    damaged = _precise(tree, cc, db)
    assert [f["file"] for f in damaged["precise"]["failed"]] == ["fs/macrofs/macrofs.c"]
    assert "damaged" in damaged["precise"]["failed"][0]["error"]
    # tree-sitter's facts for it: the macro-typed read is a candidate again
    assert [c["expr"] for c in damaged["candidates"] if c["file"] == "fs/macrofs/macrofs.c"]
    again = _precise(tree, cc, db)
    assert again["precise"]["failed"] == [] and again["precise"]["parsed"] == 1
    assert again["reads"] == first["reads"]
