"""emit --series on a copy of fixtures/minilinux: a git format-patch series
that `git am` applies, whose every prefix compiles, whose last patch is
emit --diff, with commit messages made from the plan."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import CACHE, MINILINUX, analyze_json, compile_errors, run_cli

from mappingpass import emit as emitmod
from mappingpass import workspace
from mappingpass.emit import maintainers, series

pytestmark = pytest.mark.skipif(shutil.which("git") is None or shutil.which("cc") is None,
                                reason="needs git and a C compiler (apt-get install git build-essential)")

DATE = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
AUTHOR = "Series Test <series@example.org>"
GIT_ENV = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org",
           "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}

MAINTAINERS = """\
List of maintainers
===================

Descriptions of section entries and preferred order
---------------------------------------------------

	M: *Mail* patches to: FullName <address@domain>
	F: *Files* and directories wildcard patterns.

Maintainers List
----------------

BLOCKDEV DRIVER
M:	Dev Owner <dev@example.org>
S:	Maintained
F:	drivers/blockdev/

DRM DRIVERS
M:	Gpu Person <gpu@example.org>
L:	dri-devel@example.org
S:	Maintained
F:	drivers/gpu/

MEMORY MANAGEMENT
M:	Mm Person <mm@example.org>
L:	linux-mm@example.org
S:	Maintained
F:	include/linux/pagemap.h
F:	include/linux/page-flags.h
F:	mm/
X:	mm/gup.c

CTXFS FILESYSTEM
M:	Ctx Person <ctx@example.org>
S:	Maintained
F:	fs/ctxfs/

SMALLFS FILESYSTEM
M:	Small Person <small@example.org>
S:	Odd Fixes
F:	fs/smallfs

PAGEFS FILESYSTEM
M:	Page Person <page@example.org>
S:	Maintained
F:	fs/pagefs/

TINYFS FILESYSTEM
M:	Tiny Person <tiny@example.org>
L:	tinyfs-devel@example.org (moderated for non-subscribers)
S:	Maintained
F:	fs/tinyfs/*.c
F:	fs/tinyfs/*.h

VFS
M:	Vfs Person <vfs@example.org>
L:	linux-fsdevel@example.org
S:	Maintained
F:	include/linux/fs.h

THE REST
M:	Top Person <top@example.org>
L:	linux-kernel@example.org
S:	Buried alive in reporters
F:	*
F:	*/
"""


def git(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                          env=GIT_ENV, check=check)


def git_repo(tree: Path) -> Path:
    git(tree, "init", "-q", "-b", "main")
    git(tree, "add", "-A")
    git(tree, "commit", "-q", "-m", "minilinux")
    return tree


def compile_failures(tree: Path) -> set[str]:
    """Files (with their config flags) that do not compile as the fixture's Makefile checks them."""
    return set(compile_errors(tree))


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A git repo of the fixture copy, its analysis, and the series written for it."""
    base = tmp_path_factory.mktemp("series")
    tree = base / "minilinux"
    shutil.copytree(MINILINUX, tree)
    git_repo(tree)
    db = base / "db"
    analyze_json(tree, db)
    plan, facts, rules, root, digests = workspace.load_inputs(str(db))
    out = base / "out"
    paths = series.write_series(plan, facts, rules, root, digests, out, None, author=AUTHOR, date=DATE)
    return {"tree": tree, "db": db, "plan": plan, "facts": facts, "rules": rules, "root": root,
            "digests": digests, "out": out, "paths": paths, "base": base}


@pytest.fixture(scope="module")
def applied(made, tmp_path_factory):
    """A clone of the repo with the series applied one patch at a time by git am,
    and the files that fail to compile after each prefix (index 0: none applied)."""
    work = tmp_path_factory.mktemp("am") / "tree"
    subprocess.run(["git", "clone", "-q", str(made["tree"]), str(work)], check=True, env=GIT_ENV)
    failures = [compile_failures(work)]
    for patch in made["paths"][1:]:
        proc = git(work, "am", "-q", str(patch), check=False)
        assert proc.returncode == 0, f"git am {patch.name}: {proc.stdout}{proc.stderr}"
        failures.append(compile_failures(work))
    return work, failures


def test_series_files_and_headers(made):
    paths = made["paths"]
    n = len(paths) - 1
    assert paths[0].name == "0000-cover-letter.patch"
    assert n >= 4
    for i, p in enumerate(paths):
        assert p.name.startswith(f"{i:04d}-") and p.suffix == ".patch"
        text = p.read_text()
        first = text.splitlines()[0]
        assert re.fullmatch(r"From [0-9a-f]{40} Mon Sep 17 00:00:00 2001", first)
        assert f"\nFrom: {AUTHOR}\n" in text
        assert "\nDate: Tue, 02 Jan 2024 03:04:05 +0000\n" in text
        assert f"\nSubject: [PATCH {i}/{n}] " in text
        if i:
            head, _, rest = text.partition("\n---\n")
            assert re.search(r"^ \d+ files? changed", rest, re.M), p.name
            assert "\ndiff --git a/" in rest and "\n--- a/" in rest and "\n+++ b/" in rest
            assert re.search(r"^index [0-9a-f]{40}\.\.[0-9a-f]{40} 100644$", rest, re.M)
    assert sorted(made["out"].glob("*.patch")) == paths


def test_git_am_applies_and_every_prefix_compiles(made, applied):
    """Every prefix compiles, except the file whose signature a macro writes
    (readahead_fill_zero, DECLARE_FILLER): the plan reports it unresolved with
    reason macro-definition, and it breaks exactly from the patch that changes
    the slot it implements (filler_t) on; nothing else ever breaks."""
    work, failures = applied
    plan = made["plan"]
    macro = {u.file for u in plan.unresolved if u.reason == "macro-definition"}
    assert macro == {"mm/readahead.c"}
    assert failures[0] == set()  # the pristine fixture compiles
    patches = [p.read_text() for p in made["paths"][1:]]
    filler = next(i for i, t in enumerate(patches, 1) if "typedef int filler_t(struct address_space" in t)
    for k, failed in enumerate(failures):
        expected = macro if k >= filler else set()
        assert failed == expected, f"after patch {k}: {sorted(failed)}"
    log = git(work, "log", "--format=%s", f"main~{len(patches)}..main").stdout.splitlines()
    assert len(log) == len(patches)


def test_last_patch_is_emit_diff(made, applied, tmp_path):
    work, _ = applied
    diff = tmp_path / "emit.diff"
    code, _, err = run_cli("emit", "--db", str(made["db"]), "--diff", str(diff), "-q")
    assert code == 0, err
    other = tmp_path / "emitted"
    shutil.copytree(MINILINUX, other)
    proc = subprocess.run(["git", "apply", str(diff)], cwd=other, capture_output=True, text=True,
                          env=GIT_ENV, check=False)
    assert proc.returncode == 0, proc.stderr
    files = sorted(p.relative_to(other) for p in other.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(work) for p in work.rglob("*")
                           if p.is_file() and ".git" not in p.relative_to(work).parts)
    for rel in files:
        assert (work / rel).read_bytes() == (other / rel).read_bytes(), rel


def test_order_helper_first_then_slots_then_subsystems(made):
    s = series.build_series(made["plan"], made["facts"], made["rules"], made["root"], made["digests"])
    first = s.patches[0]
    # page-flags.h, which pagemap.h includes, calls the helper: defined there
    assert first.helper and first.files == ["include/linux/page-flags.h"]
    assert first.subject == "page-flags: add page_mapping_wp() and folio_mapping_wp()"
    assert "+page_mapping_wp(const struct page *page, struct address_space *mapping)" in s.diffs[0]
    assert [line for line in s.diffs[0].splitlines() if line.startswith("-") and not line.startswith("---")] == []
    where = {e: i for i, p in enumerate(s.patches) for e in p.entities}
    # a slot, all its implementations and every call through it: one patch
    wp = where["member:address_space_operations.writepage"]
    for impl in ("tinyfs_writepage", "fs/smallfs/inode.c::smallfs_writepage",
                 "fs/smallfs/inode.c::smallfs_writepage_nobh", "drivers/blockdev/mydev.c::mydev_writepage"):
        assert where[impl] == wp
    assert {(c.file, c.line) for c in s.patches[wp].call_sites} >= {
        ("mm/vmscan.c", 20), ("mm/page-writeback.c", 43), ("fs/smallfs/file.c", 49)}
    assert s.patches[wp].key.startswith("core:")
    # read_folio implementations are passed as fillers: the two slots travel together
    assert where["member:address_space_operations.read_folio"] == where["typedef:filler_t"]
    # every entity is in exactly one patch, every edit too
    ents = [e for p in s.patches for e in p.entities]
    plan = made["plan"]
    assert sorted(ents) == sorted([f.id for f in plan.functions] + [x.id for x in plan.slots])
    # core patches precede the per-subsystem ones, each of which stays in its subsystem
    # (a subsystem patch may come first when a slot's calls pass its new
    # parameter: mm's folio_invalidate before ->invalidate_folio)
    keys = [p.key for p in s.patches[1:]]
    # (the reads of a header's static inlines: a patch of their header's own)
    for p in s.patches[1:]:
        if p.key.startswith("include/"):
            assert {series.subsystem(f) for f in p.files} == {p.key}
        elif not p.key.startswith("core:"):
            assert {series.subsystem(f) for f in p.files if not f.startswith("include/")} == {p.key}
    assert {k for k in keys if not k.startswith("core:")} == {"fs/ctxfs", "fs/tinyfs", "fs/smallfs", "fs/pagefs", "mm",
                                                              "include/linux"}
    assert keys.index("mm") < keys.index("core:member:address_space_operations.invalidate_folio")
    # a callee that receives its caller's new parameter never lands before that caller
    for c in plan.call_sites:
        if c.how == "parameter":
            assert where[c.caller] <= where[c.callee], c
    # a read that uses a function's new parameter never lands before it
    patch_of_rewrite = {(r.file, r.start): i for i, p in enumerate(s.patches) for r in p.rewrites}
    assert len(patch_of_rewrite) == len(plan.rewrites)
    for r in plan.rewrites:
        if r.function in where:
            assert where[r.function] <= patch_of_rewrite[(r.file, r.start)]


def test_cover_letter_counts_match_plan(made):
    cover = made["paths"][0].read_text()
    s = made["plan"].summary()
    n = len(made["paths"]) - 1

    def count(label: str) -> int:
        m = re.search(rf"^  {re.escape(label)}: (\d+)", cover, re.M)
        assert m, label
        return int(m.group(1))

    assert count("functions gaining the parameter") == s["functions"] == 55
    assert count("slots gaining it") == s["slots"]
    assert count("call sites changed") == s["call_sites"]
    assert count("reads rewritten to the helper") == s["rewrites"]
    assert count("unresolved") == s["unresolved"]
    for reason, k in s["unresolved_by_reason"].items():
        assert re.search(rf"^    {re.escape(reason)}: {k}$", cover, re.M), reason
    subjects = [re.search(r"^Subject: \[PATCH \d+/\d+\] (.*)$", p.read_text(), re.M).group(1)
                for p in made["paths"][1:]]
    for i, subj in enumerate(subjects, 1):
        assert f"  {i}/{n} {subj}\n" in cover
    assert "mm/readahead.c" in cover  # the known gap is said, not hidden


def test_commit_messages_carry_the_chains(made, applied):
    work, _ = applied
    plan = made["plan"]
    n = len(made["paths"]) - 1
    bodies = git(work, "log", "--reverse", "--format=%B%x00", f"main~{n}..main").stdout.split("\x00")
    raw = [b.strip() for b in bodies if b.strip()]
    assert len(raw) == n
    # (long entries are folded at 75 columns: compared with blanks collapsed)
    bodies = [" ".join(b.split()) for b in raw]
    subjects = [b.splitlines()[0] for b in raw]
    allmsg = "\n".join(bodies)
    # every chain's read is named, with where it is: as its chain, or (a patch shows 12
    # chains and names how many more `mappingpass explain` shows) in the reads it rewrites
    for f in plan.functions:
        last = f.reason[-1]
        assert last.why == "reads"
        chain = f"{last.node} reads {last.detail} ({last.file}:{last.line})"
        read = f"{last.file}:{last.line} {last.node.split('::')[-1]}(): {last.detail} ->"
        assert chain in allmsg or (read in allmsg and "more: `mappingpass explain FUNC` shows each" in allmsg), f.id
    wp = next(b for b, subject in zip(bodies, subjects, strict=True) if "->writepage()" in subject)
    assert ("member:address_space_operations.writepage implemented-by "
            "fs/smallfs/inode.c::smallfs_writepage_nobh (fs/smallfs/inode.c:38)") in wp
    assert "mm/vmscan.c:20 pageout(): mapping (the mapping whose operations it calls)" in wp
    # unresolved chains are reported in the patch that needs them
    tiny = next(b for b in bodies if "fs/tinyfs/dir.c:19 tinyfs_add_link: no-callers" in b)
    assert "tinyfs_add_link calls fs/tinyfs/dir.c::commit_chunk" in tiny
    filler = next(b for b, subject in zip(bodies, subjects, strict=True) if "filler_t" in subject)
    assert "mm/readahead.c:9 readahead_fill_zero: macro-definition" in filler
    assert "Cc:" not in allmsg  # the fixture has no MAINTAINERS file


def test_maintainers_give_cc_lines(made, tmp_path):
    mfile = tmp_path / "MAINTAINERS"
    mfile.write_text(MAINTAINERS)
    out = tmp_path / "out"
    paths = series.write_series(made["plan"], made["facts"], made["rules"], made["root"], made["digests"],
                                out, mfile, author=AUTHOR, date=DATE)
    texts = {p.name: p.read_text() for p in paths}

    def cc(text: str) -> list[str]:
        body = text.split("\n---\n", 1)[0]
        return re.findall(r"^Cc: (.*)$", body, re.M)

    helper = next(t for n, t in texts.items() if n.startswith("0001-"))
    assert cc(helper) == ["Mm Person <mm@example.org>", "linux-mm@example.org", "linux-kernel@example.org"]
    tiny = [t for n, t in texts.items() if "tinyfs-pass" in n]
    assert tiny and all(cc(t) == ["Tiny Person <tiny@example.org>", "tinyfs-devel@example.org",
                                  "linux-kernel@example.org"] for t in tiny)
    small = [t for n, t in texts.items() if "smallfs-pass" in n]
    assert small and all(cc(t)[0] == "Small Person <small@example.org>" for t in small)
    wp = next(t for n, t in texts.items() if "writepage" in n)
    assert set(cc(wp)) == {"Dev Owner <dev@example.org>", "Mm Person <mm@example.org>",
                           "Small Person <small@example.org>", "Tiny Person <tiny@example.org>",
                           "Vfs Person <vfs@example.org>", "linux-mm@example.org", "tinyfs-devel@example.org",
                           "linux-fsdevel@example.org", "linux-kernel@example.org",
                           "Gpu Person <gpu@example.org>", "dri-devel@example.org"}
    assert not any("Top Person" in t for t in texts.values())  # THE REST: its list, not its people
    cover = texts["0000-cover-letter.patch"]
    assert "Cc: Dev Owner <dev@example.org>" in cover
    # the tree's own MAINTAINERS is used when none is given
    shutil.copy(mfile, made["root"] / "MAINTAINERS")
    try:
        s = series.build_series(made["plan"], made["facts"], made["rules"], made["root"], made["digests"])
        assert "Cc: Tiny Person <tiny@example.org>" in "\n".join(s.messages)
    finally:
        (made["root"] / "MAINTAINERS").unlink()


def test_maintainers_patterns(tmp_path):
    (tmp_path / "fs" / "tinyfs").mkdir(parents=True)
    mfile = tmp_path / "MAINTAINERS"
    mfile.write_text(MAINTAINERS)
    sections = maintainers.parse_maintainers(mfile)
    assert [s.title for s in sections] == ["BLOCKDEV DRIVER", "DRM DRIVERS", "MEMORY MANAGEMENT", "CTXFS FILESYSTEM",
                                           "SMALLFS FILESYSTEM", "PAGEFS FILESYSTEM", "TINYFS FILESYSTEM", "VFS",
                                           "THE REST"]
    by = {s.title: s for s in sections}
    assert by["MEMORY MANAGEMENT"].match("mm/filemap.c") == "mm/"
    assert by["MEMORY MANAGEMENT"].match("mm/gup.c") is None  # X: excludes
    assert by["TINYFS FILESYSTEM"].match("fs/tinyfs/file.c") == "fs/tinyfs/*.c"
    assert by["TINYFS FILESYSTEM"].match("fs/tinyfs/sub/x.c") is None  # `*` stays at its depth
    assert by["TINYFS FILESYSTEM"].lists == ["tinyfs-devel@example.org"]
    # a directory named without its slash covers what is below it (checked against the tree)
    assert by["SMALLFS FILESYSTEM"].match("fs/smallfs/inode.c", tmp_path) is None  # not a directory here
    (tmp_path / "fs" / "smallfs").mkdir()
    assert by["SMALLFS FILESYSTEM"].match("fs/smallfs/inode.c", tmp_path) == "fs/smallfs"
    assert by["THE REST"].match("anything/at/all.c") == "catch-all"
    # a file no section but THE REST names: its people too
    assert maintainers.cc_for(sections, ["mm/gup.c"]) == ["Top Person <top@example.org>", "linux-kernel@example.org"]
    assert maintainers.cc_for(sections, ["README"]) == ["Top Person <top@example.org>", "linux-kernel@example.org"]


def test_real_maintainers_file():
    """The kernel's own MAINTAINERS, when the linux-6.1 tree is already extracted."""
    tree = Path(os.environ.get("MAPPINGPASS_LINUX", CACHE / "linux-source-6.1"))
    if not (tree / "MAINTAINERS").is_file():
        pytest.skip("no extracted linux-6.1 tree (the realtree tier extracts it)")
    sections = maintainers.parse_maintainers(tree / "MAINTAINERS")
    assert len(sections) > 2000
    cc = maintainers.cc_for(sections, ["fs/ext2/inode.c"], tree)
    assert "Jan Kara <jack@suse.com>" in cc and "linux-ext4@vger.kernel.org" in cc
    assert "linux-kernel@vger.kernel.org" in cc
    assert not any("Torvalds" in a for a in cc)


def test_series_is_deterministic(made, tmp_path):
    again = series.write_series(made["plan"], made["facts"], made["rules"], made["root"], made["digests"],
                                tmp_path / "again", None, author=AUTHOR, date=DATE)
    assert [p.name for p in again] == [p.name for p in made["paths"]]
    for a, b in zip(again, made["paths"], strict=True):
        assert a.read_bytes() == b.read_bytes()
    # a re-run into the same directory leaves no stale patch of an earlier run
    # behind (the manifest names it), and never deletes or replaces the user's
    out = tmp_path / "again"
    manifest = out / series.MANIFEST
    (out / "0099-stale.patch").write_text("x")
    manifest.write_text(manifest.read_text() + "0099-stale.patch\n../../etc/passwd\n")
    (out / "0098-mine.patch").write_text("mine")
    series.write_series(made["plan"], made["facts"], made["rules"], made["root"], made["digests"],
                        out, None, author=AUTHOR, date=DATE)
    assert not (out / "0099-stale.patch").exists() and (out / "0098-mine.patch").read_text() == "mine"
    first = again[1].name
    manifest.write_text("".join(f"{p.name}\n" for p in again if p.name != first))  # as if the user wrote it
    with pytest.raises(emitmod.EmitError, match=f"{first}: exists and mappingpass did not write it"):
        series.write_series(made["plan"], made["facts"], made["rules"], made["root"], made["digests"],
                            out, None, author=AUTHOR, date=DATE)


def test_changed_tree_is_refused(made, tmp_path):
    tree = tmp_path / "t"
    shutil.copytree(made["tree"], tree, ignore=shutil.ignore_patterns(".git"))
    (tree / "fs" / "tinyfs" / "dir.c").write_text((tree / "fs" / "tinyfs" / "dir.c").read_text() + "\n")
    from mappingpass.emit import EmitError
    with pytest.raises(EmitError, match="changed since analyze"):
        series.write_series(made["plan"], made["facts"], made["rules"], tree, made["digests"],
                            tmp_path / "o", None, author=AUTHOR)


def test_helper_definition_precedes_its_uses_in_its_header(made):
    """The kernel's pagemap.h has reads of its own (folio_inode()...): the
    definition goes before the first function that calls it, above that
    function's comment (where spatch adds code before a function), not before
    the header's #endif."""
    from mappingpass.emit.edits import _above_comment, helper_definition_edit

    rules = made["rules"]
    src = (b"#ifndef _H\n#define _H\n#include <linux/mm.h>\n\nint g(void);\n\n"
           b"/*\n * f - the inode\n */\n// of a folio\n"
           b"static inline struct inode *f(struct folio *folio)\n{\n\treturn folio->mapping->host;\n}\n"
           b"#endif /* _H */\n")
    fn_start = src.index(b"static inline")
    assert _above_comment(src, fn_start) == src.index(b"/*\n * f")
    assert _above_comment(src, src.index(b"int g")) == src.index(b"int g")  # a blank line above
    e = helper_definition_edit(rules, src, _above_comment(src, fn_start))
    assert e.start == src.index(b"/*\n * f") and e.text.endswith("}\n\n")
    plain = helper_definition_edit(rules, src, None)
    assert plain.start == src.index(b"#endif /* _H */")
    done = src[:plain.start] + plain.text.encode() + src[plain.start:]
    assert helper_definition_edit(rules, done, None) is None  # already defined


def test_twins_in_two_subsystems_land_in_one_patch(tmp_path):
    """The stub (in include/linux/) and its extern function (in fs/tinyfs/)
    change in the same commit: every prefix of the series still compiles in
    both configurations (as dax_lock_page in dax.h and fs/dax.c must)."""
    tree = tmp_path / "minilinux"
    shutil.copytree(MINILINUX, tree)
    own = tree / "fs/tinyfs/tinyfs.h"
    text = own.read_text()
    start = text.index("/* xattr.c is built with CONFIG_TINYFS_XATTR only")
    end = text.index("#endif", text.index("static inline int tinyfs_xattr_page")) + len("#endif\n")
    # the stub reads the field too (as dax.h's dax_lock_page does): the plan
    # reaches it on its own, not only as the extern's twin
    block = text[start:end].replace("\treturn 0;", "\treturn page->mapping->host ? 1 : 0;")
    assert "page->mapping" in block
    own.write_text(text[:start] + text[end:])
    pagemap = tree / "include/linux/pagemap.h"
    text = pagemap.read_text()
    cut = text.rindex("#endif")
    pagemap.write_text(text[:cut] + block + "\n" + text[cut:])
    assert compile_failures(tree) == set()
    git_repo(tree)
    db = tmp_path / "db"
    analyze_json(tree, db)
    plan, facts, rules, root, digests = workspace.load_inputs(str(db))
    stub = "include/linux/pagemap.h::tinyfs_xattr_page"
    assert {stub, "tinyfs_xattr_page"} <= {f.id for f in plan.functions}
    assert next(f for f in plan.functions if f.id == stub).reason[0].why == "reads"
    paths = series.write_series(plan, facts, rules, root, digests, tmp_path / "out", None,
                                author=AUTHOR, date=DATE, quiet=True)
    carrying = [p.name for p in paths[1:] if re.search(r"(?m)^\+.*tinyfs_xattr_page\(struct address_space",
                                                        p.read_text())]
    assert len(carrying) == 1, carrying
    for patch in paths[1:]:
        proc = git(tree, "am", "-q", str(patch), check=False)
        assert proc.returncode == 0, proc.stderr
        assert compile_failures(tree) <= {"mm/readahead.c"}, patch.name


def test_the_author_is_the_users_git_identity_and_signs_off(made, tmp_path, monkeypatch):
    monkeypatch.delenv("GIT_AUTHOR_NAME")
    monkeypatch.delenv("GIT_AUTHOR_EMAIL")
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.gitconfig
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    out = tmp_path / "s"
    code, _, err = run_cli("emit", "--db", str(made["db"]), "--series", str(out), "-q")
    assert code == 2 and "who is the author? set git config user.name and user.email" in err
    subprocess.run(["git", "-C", str(made["tree"]), "config", "user.name", "Grace Hopper"], check=True)
    subprocess.run(["git", "-C", str(made["tree"]), "config", "user.email", "grace@example.org"], check=True)
    code, _, err = run_cli("emit", "--db", str(made["db"]), "--series", str(out), "-q")
    assert code == 0, err
    patches = sorted(out.glob("0*.patch"))
    for p in patches:
        text = p.read_text()
        assert "\nFrom: Grace Hopper <grace@example.org>\n" in text
        body = text.split("\n---\n", 1)[0]
        if p.name.startswith("0000-"):
            assert "Signed-off-by:" not in body
        else:  # the last trailer: after the Cc: lines, in one block
            assert body.rstrip("\n").endswith("\nSigned-off-by: Grace Hopper <grace@example.org>"), p.name
    code, _, err = run_cli("emit", "--db", str(made["db"]), "--series", str(out), "-q",
                           "--author", "Linus T <lt@example.org>", "--no-signoff")
    assert code == 0, err
    assert all("Signed-off-by" not in p.read_text() and "From: Linus T <lt@example.org>" in p.read_text()
               for p in sorted(out.glob("0*.patch")))
