"""mappingpass review on a throwaway git repository made from fixtures/minilinux.

Commits (all from the fixture, tag c0):
  bad      new code: kind-1 reads in a function with a provider (MP101), in one
           whose caller has the mapping (MP102 warning) and in one nobody calls
           (MP102 error), and a kind-2 read in mm/ (MP103 note)
  conv     `mappingpass emit --apply --force`: the plan's conversion, as one commit
  half     conv without drivers/blockdev/mydev.c: one writepage implementation
           left without the parameter its slot gained
  pair     c0 plus a line that calls two functions that both gain the parameter;
  partial  (from pair) only the edits of one of them: part of that line's edits
  handmade conv with one argument changed by hand (a hunk the plan does not emit)
  moved    a line with an old read edited (the read itself unchanged)
"""

from __future__ import annotations

import argparse
import io
import json
import re
import shutil
import subprocess
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import jsonschema
import pytest
from conftest import MINILINUX, canonical_analysis, run_cli

from mappingpass import emit as emitmod
from mappingpass import review as reviewmod
from mappingpass.cli import main as cli_main
from mappingpass.cli import review as cmd_review
from mappingpass.index import Store

PLAN_OF_C0: dict = {}  # the plan's summary at c0, filled by the fixture
SCHEMA = json.loads((Path(__file__).parent / "data" / "sarif-schema-2.1.0.json").read_text())


def git(tree: Path, *args: str) -> str:
    proc = subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.org", "-C", str(tree), *args],
                          capture_output=True, text=True, check=True)
    return proc.stdout


def commit(tree: Path, message: str, tag: str) -> None:
    git(tree, "add", "-A")
    git(tree, "commit", "-q", "-m", message)
    git(tree, "tag", tag)


def line_of(text: str, needle: str, after: str = "") -> int:
    start = text.index(after) if after else 0
    return text[:text.index(needle, start)].count("\n") + 1


BAD_HELPER = """/* New: no provider of its own; its caller has the mapping. */
static int tinyfs_is_mapped(struct page *page)
{
\treturn page->mapping->host != NULL;
}

"""
BAD_TAIL = """
/* New: has the file at hand, reads the page's field anyway. */
int tinyfs_peek(struct file *file, struct page *page)
{
\treturn page->mapping == file->f_mapping;
}

/* New: nobody calls it, and it has no provider. */
int tinyfs_lonely(struct page *page)
{
\treturn page->mapping->host != NULL;
}
"""
PAIR = """
/* Two readers without a provider, called on one line by a function with one. */
static int tinyfs_one(struct page *page)
{
\treturn page->mapping->host != NULL;
}

static int tinyfs_two(struct page *page)
{
\treturn page->mapping->host == NULL;
}

int tinyfs_pair(struct file *file, struct page *a, struct page *b)
{
\treturn tinyfs_one(a) + tinyfs_two(b);
}
"""
MM_TAIL = """
/* New core-mm reader: kind 2, handled at run time. */
int vmscan_peek(struct page *page)
{
\treturn page->mapping != NULL;
}
"""


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    work = tmp_path_factory.mktemp("review")
    tree = work / "tree"
    shutil.copytree(MINILINUX, tree)
    git(tree, "init", "-q")
    commit(tree, "base", "c0")

    # bad: new reads
    f = tree / "fs/tinyfs/file.c"
    text = f.read_text()
    text = text.replace("int tinyfs_write_begin(", BAD_HELPER + "int tinyfs_write_begin(", 1)
    text = text.replace("\tlock_page(page);\n\t*pagep = page;",
                        "\tlock_page(page);\n\tif (!tinyfs_is_mapped(page))\n\t\treturn -EIO;\n\t*pagep = page;", 1)
    f.write_text(text + BAD_TAIL)
    (tree / "mm/vmscan.c").write_text((tree / "mm/vmscan.c").read_text() + MM_TAIL)
    commit(tree, "bad reads", "bad")

    # conv: the plan's conversion, applied by emit
    git(tree, "checkout", "-q", "c0")
    emit_db = work / "emitdb"
    code, _, err = run_cli("analyze", str(tree), "--db", str(emit_db), "-q")
    assert code == 0, err
    code, out, err = run_cli("plan", "--db", str(emit_db), "-q", "--format", "json")
    PLAN_OF_C0.update(json.loads(out)["summary"])
    code, _, err = run_cli("emit", "--apply", "--force", "--db", str(emit_db), "-q")
    assert code == 0, err
    commit(tree, "full conversion", "conv")

    # half: every file of the conversion but the driver's
    git(tree, "checkout", "-q", "c0")
    git(tree, "checkout", "conv", "--", ".")
    git(tree, "checkout", "c0", "--", "drivers/blockdev/mydev.c")
    commit(tree, "half conversion", "half")

    # pair, then partial: only the edits that belong to tinyfs_one (its parameter,
    # its read, its argument in tinyfs_pair's line, which tinyfs_two's shares)
    git(tree, "checkout", "-q", "c0")
    (tree / "fs/tinyfs/file.c").write_text((tree / "fs/tinyfs/file.c").read_text() + PAIR)
    commit(tree, "two converted callees on one line", "pair")
    code, _, err = run_cli("analyze", str(tree), "--db", str(emit_db), "-q")
    assert code == 0, err
    from mappingpass.workspace import compute_plan, store_rules

    plan, _ = compute_plan(str(emit_db))
    store = Store(emit_db, create=False)
    facts = {ff.path: ff for ff in store.load_facts()}
    rules = store_rules(store)
    store.close()
    path = "fs/tinyfs/file.c"
    source = (tree / path).read_bytes()
    edits = emitmod.edits_for(plan, facts, rules, {p: (tree / p).read_bytes() for p in facts})[path]
    owner = "fs/tinyfs/file.c::tinyfs_one"
    assert sum(1 for e in edits if e.owner == owner) == 3
    (tree / path).write_bytes(emitmod.apply_edits(source, [e for e in edits if e.owner == owner], path))
    commit(tree, "partial conversion", "partial")

    # handmade: the conversion with one argument that the plan does not emit
    git(tree, "checkout", "-q", "conv")
    d = tree / "fs/smallfs/dir.c"
    d.write_text(d.read_text().replace("smallfs_set_link(new_dir->i_mapping,", "smallfs_set_link(old_dir->i_mapping,"))
    commit(tree, "hand-edited conversion", "handmade")

    # moved: an old read's line edited, the read the same
    git(tree, "checkout", "-q", "c0")
    f = tree / "fs/tinyfs/file.c"
    f.write_text(f.read_text().replace("\treturn page->mapping->host == NULL;\n",
                                       "\treturn page->mapping->host == NULL; /* orphan */\n", 1))
    commit(tree, "comment", "moved")

    git(tree, "checkout", "-q", "c0")
    db = work / "db"
    code, _, err = run_cli("analyze", str(tree), "--db", str(db), "-q")
    assert code == 0, err
    return tree, db


def blob(tree: Path, rev: str, path: str) -> str:
    return git(tree, "show", f"{rev}:{path}")


def run_review(repo, base: str, head: str, **kw) -> reviewmod.Review:
    tree, db = repo
    return reviewmod.review(tree, base, head, db, **kw)


def keyed(review: reviewmod.Review, *rules: str) -> set[tuple[str, int, str, str]]:
    return {(f.file, f.line, f.rule, f.level) for f in review.findings if not rules or f.rule in rules}


def validate_sarif(review: reviewmod.Review) -> dict:
    log = reviewmod.to_sarif(review)
    validator = jsonschema.Draft4Validator(SCHEMA, format_checker=jsonschema.Draft4Validator.FORMAT_CHECKER)
    errors = sorted(validator.iter_errors(log), key=lambda e: list(e.path))
    assert not errors, [f"{list(e.path)}: {e.message}" for e in errors[:5]]
    json.loads(json.dumps(log))
    return log


def cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = cli_main(list(argv))
    return code, out.getvalue(), err.getvalue()


# -- new reads ------------------------------------------------------------------------------
def test_bad_reads(repo):
    tree, _ = repo
    r = run_review(repo, "c0", "bad")
    text = blob(tree, "bad", "fs/tinyfs/file.c")
    mm = blob(tree, "bad", "mm/vmscan.c")
    f = "fs/tinyfs/file.c"
    is_mapped = line_of(text, "return page->mapping->host != NULL;", "tinyfs_is_mapped(struct page")
    peek = line_of(text, "return page->mapping == file->f_mapping;")
    lonely = line_of(text, "return page->mapping->host != NULL;", "int tinyfs_lonely")
    assert keyed(r) == {
        (f, is_mapped, "MP102", "warning"),
        (f, peek, "MP101", "error"),
        (f, lonely, "MP102", "error"),
        ("mm/vmscan.c", line_of(mm, "return page->mapping != NULL;", "vmscan_peek"), "MP103", "note"),
    }
    by = {x.rule + x.level: x for x in r.findings}
    helper = by["MP101error"]
    # an identity test: a membership test, not the context helper
    assert helper.fix == "page_in_mapping(page, file->f_mapping)" and helper.function == "tinyfs_peek"
    assert helper.col == text.splitlines()[peek - 1].index("page->mapping") + 1
    assert helper.end_col == helper.col + len("page->mapping == file->f_mapping")
    passdown = by["MP102warning"]
    assert passdown.verdict == "resolvable"
    # the chain: where the mapping would come from, down to the read
    assert [(s.node, s.why) for s in passdown.chain] == [
        ("tinyfs_write_begin", "passes"), ("fs/tinyfs/file.c::tinyfs_is_mapped", "reads")]
    assert passdown.chain[0].detail.startswith("mapping to ")
    boundary = by["MP102error"]
    assert boundary.verdict == "unresolvable" and "no-callers" in boundary.message
    assert not r.series and not r.hunks
    assert r.files == ("fs/tinyfs/file.c", "mm/vmscan.c")
    validate_sarif(r)


def test_edited_lines_with_old_reads_are_not_new(repo):
    """A read whose line changes but that stays the same read in the same function is not new."""
    r = run_review(repo, "c0", "moved")
    assert r.files == ("fs/tinyfs/file.c",) and r.findings == () and not r.series
    assert run_review(repo, "bad", "bad").files == ()


# -- the conversion as a series ---------------------------------------------------------------
def test_half_converted_slot(repo):
    r = run_review(repo, "c0", "half")
    assert r.series
    tree, _ = repo
    drv = blob(tree, "half", "drivers/blockdev/mydev.c")
    wp = line_of(drv, "static int mydev_writepage(")
    ra = blob(tree, "half", "mm/readahead.c")
    inode = blob(tree, "half", "fs/smallfs/inode.c")
    signature = keyed(r, "MP201", "MP202", "MP203", "MP204")
    assert signature == {
        ("drivers/blockdev/mydev.c", wp, "MP201", "error"),
        ("fs/smallfs/inode.c", line_of(inode, "(filler_t *)smallfs_fill_page"), "MP203", "warning"),
        ("mm/readahead.c", line_of(ra, "DECLARE_FILLER(readahead_fill_zero)"), "MP201", "warning"),
    }
    mismatch = next(f for f in r.findings if f.file == "drivers/blockdev/mydev.c")
    assert "member:address_space_operations.writepage" in mismatch.message
    assert {(x.file, x.line) for x in mismatch.related} >= {("include/linux/fs.h",
                                                              line_of(blob(tree, "half", "include/linux/fs.h"),
                                                                      "(*writepage)"))}
    # every hunk is what emit writes; the driver is the plan's file the range leaves out
    assert r.hunks and all(h.status == "mechanical" for h in r.hunks)
    assert r.plan_files_outside == ("drivers/blockdev/mydev.c",)
    assert not keyed(r, "MP301")
    validate_sarif(r)


def test_correct_conversion(repo):
    r = run_review(repo, "c0", "conv")
    assert r.series and r.hunks and all(h.status == "mechanical" for h in r.hunks)
    assert r.plan_files_outside == () and r.plan_edits_left_out == ()
    assert r.counts()["error"] == 0
    # the hunks that rewrite a read the check refutes (MP302) start at
    # folio_invalidate's: core mm's generic fault path (mm/memory.c, kind 2)
    # calls it with no context; the plan's other unresolved ends keep their reads
    assert {f.rule for f in r.findings} == {"MP201", "MP203", "MP302"}
    # (and the reads it reaches through ->invalidate_folio, whose mapping it passes)
    refuted = {(f.file, f.function) for f in r.findings if f.rule == "MP302"}
    assert refuted == {("mm/truncate.c", "folio_invalidate"), ("fs/tinyfs/file.c", "tinyfs_invalidate_folio"),
                       ("fs/tinyfs/file.c", "tinyfs_walk_folios")}, refuted
    touched = [v for h in r.hunks for v in h.reads]
    assert {v.verdict for v in touched} == {"resolvable", "mixed", "unproven", "unresolvable"}
    assert sum(1 for v in touched if v.side == "base") == PLAN_OF_C0["rewrites"]  # every read the plan rewrites
    # exit codes follow --fail-on
    assert reviewmod.exit_code(r, "error") == 0
    assert reviewmod.exit_code(r, "warning") == 1
    validate_sarif(r)


def test_partial_series_commit_is_mechanical(repo):
    tree, _ = repo
    r = run_review(repo, "pair", "partial")
    assert r.series and r.files == ("fs/tinyfs/file.c",)
    assert r.hunks and all(h.status == "mechanical" for h in r.hunks)
    text = blob(tree, "partial", "fs/tinyfs/file.c")
    # a file beside a page parameter is no evidence: tinyfs_pair would pass its
    # own (it has no callers, so it passes NULL)
    line = line_of(text, "return tinyfs_one(NULL, a) + tinyfs_two(b);")
    shared = [h for h in r.hunks if h.head_start <= line < h.head_start + h.head_lines]
    assert len(shared) == 1 and "part of the plan's edits here (fs/tinyfs/file.c::tinyfs_one)" in shared[0].detail
    assert dict(r.plan_edits_left_out)["fs/tinyfs/file.c"] > 0  # tinyfs_two's, and the rest of the plan
    assert not keyed(r, "MP101", "MP102", "MP201", "MP202", "MP203", "MP204", "MP301")


def test_hand_edited_hunk_needs_review(repo):
    tree, _ = repo
    r = run_review(repo, "c0", "handmade")
    d = blob(tree, "handmade", "fs/smallfs/dir.c")
    line = line_of(d, "smallfs_set_link(old_dir->i_mapping,")
    assert keyed(r, "MP301") == {("fs/smallfs/dir.c", line, "MP301", "warning")}
    bad = [h for h in r.hunks if h.status == "needs-review"]
    assert len(bad) == 1 and "new_dir->i_mapping" in bad[0].detail
    # reviewed on its own, the hand edit is a departure too
    r2 = run_review(repo, "conv", "handmade", series="yes")
    assert keyed(r2, "MP301") == {("fs/smallfs/dir.c", line, "MP301", "warning")}


def test_missing_argument_and_prototype(repo, tmp_path):
    """Take back two call sites' arguments (a direct call, a call through the
    writepage slot) and one prototype's parameter of the conversion."""
    tree, db = repo
    other = tmp_path / "clone"
    git(tree, "clone", "-q", str(tree), str(other))
    git(other, "checkout", "-q", "conv")
    f = other / "fs/smallfs/dir.c"
    f.write_text(f.read_text().replace("commit_chunk(mapping, page, pos,", "commit_chunk(page, pos,"))
    s = other / "fs/smallfs/file.c"
    s.write_text(s.read_text().replace("->writepage(mapping, page, &wbc)", "->writepage(page, &wbc)"))
    h = other / "fs/tinyfs/tinyfs.h"
    text = h.read_text()
    # the prototype as the base has it (the conversion may have re-wrapped it)
    base = subprocess.run(["git", "-C", str(other), "show", "c0:fs/tinyfs/tinyfs.h"], capture_output=True,
                          text=True, check=True).stdout
    proto = re.search(r"[^\n]*tinyfs_flush_batch\([^;]*;", text).group(0)
    h.write_text(text.replace(proto, re.search(r"[^\n]*tinyfs_flush_batch\([^;]*;", base).group(0)))
    commit(other, "broken", "broken")
    r = reviewmod.review(other, "c0", "broken", tmp_path / "db")  # a cold index: analyzed first
    dir_c = (other / "fs/smallfs/dir.c").read_text()
    assert ("fs/smallfs/dir.c", line_of(dir_c, "commit_chunk(page, pos,"), "MP202", "error") in keyed(r)
    file_c = s.read_text()
    assert ("fs/smallfs/file.c", line_of(file_c, "->writepage(page, &wbc)"), "MP202", "error") in keyed(r)
    slot = next(x for x in r.findings if x.file == "fs/smallfs/file.c" and x.rule == "MP202")
    assert "through member:address_space_operations.writepage" in slot.message
    assert slot.message.endswith("smallfs_sync_page can pass `mapping`")  # whose ops it calls
    assert ("fs/tinyfs/tinyfs.h", line_of(h.read_text(), "tinyfs_flush_batch("), "MP204", "error") in keyed(r)
    # those lines are back to the base's: not hunks, but edits of the plan the range leaves out
    assert not keyed(r, "MP301")
    assert {"fs/smallfs/dir.c", "fs/tinyfs/tinyfs.h"} <= set(dict(r.plan_edits_left_out))


# -- states: the patched graph is the built graph -------------------------------------------------
@pytest.mark.parametrize("rev", ["bad", "half", "conv", "partial", "handmade"])
def test_patched_graph_equals_full_build(repo, rev):
    tree, db = repo
    patched = reviewmod.analysis_at(tree, rev, db)
    full = reviewmod.analysis_at(tree, rev, db, full=True)
    assert canonical_analysis(patched) == canonical_analysis(full)


def test_reanalysis_follows_the_change(repo):
    """Only the range's files are read from git; nothing is re-parsed twice; the
    index is not written; the store gets anchored to the commit it holds."""
    tree, db = repo
    before = (db / "index.sqlite").stat().st_mtime_ns, (db / "analysis.pickle").stat().st_mtime_ns
    r = run_review(repo, "c0", "bad")
    assert r.stats["anchored"]  # the work tree is a clean checkout of what the index holds
    again = run_review(repo, "c0", "bad")
    assert again.findings == r.findings
    assert again.stats.get("files_parsed", 0) == 0  # both versions come from the store or the cache
    assert again.stats.get("full_builds", 0) == 0
    after = (db / "index.sqlite").stat().st_mtime_ns, (db / "analysis.pickle").stat().st_mtime_ns
    assert before == after


def test_work_tree_at_head(repo, tmp_path):
    """In CI the work tree is the head and the index may hold another commit."""
    tree, db = repo
    other = tmp_path / "clone"
    git(tree, "clone", "-q", str(tree), str(other))
    git(other, "checkout", "-q", "bad")
    shutil.copytree(db, tmp_path / "db")  # an index of c0 from a cache, for another checkout
    for leftover in (tmp_path / "db").glob("review*"):  # without what earlier reviews kept
        leftover.unlink()
    r = reviewmod.review(other, "c0", "bad", tmp_path / "db")
    assert keyed(r) == keyed(run_review(repo, "c0", "bad"))
    # the index holds the base: remembered, the next review asks git, not the work tree
    assert r.stats["anchored"] and "worktree_check" in r.stats["seconds"]
    again = reviewmod.review(other, "c0", "bad", tmp_path / "db")
    assert keyed(again) == keyed(r) and "worktree_check" not in again.stats["seconds"]


# -- outputs -------------------------------------------------------------------------------
def test_cli_outputs(repo, tmp_path):
    tree, db = repo
    sarif, md = tmp_path / "out.sarif", tmp_path / "out.md"
    code, out, err = cli("review", "--base", "c0", "--head", "bad", str(tree), "--db", str(db),
                         "--sarif", str(sarif), "--markdown", str(md), "--github", "-q")
    assert code == 1, err
    lines = out.splitlines()
    assert len(lines) == 4 and all(ln.startswith(("::error ", "::warning ", "::notice ")) for ln in lines)
    text = blob(tree, "bad", "fs/tinyfs/file.c")
    peek = line_of(text, "return page->mapping == file->f_mapping;")
    assert any(ln.startswith(f"::error file=fs/tinyfs/file.c,line={peek},col=9,title=MP101 read-use-helper::")
               for ln in lines)
    assert all("\n" not in ln for ln in lines) and any("%0A" in ln for ln in lines)  # chains, escaped
    log = json.loads(sarif.read_text())
    jsonschema.Draft4Validator(SCHEMA).validate(log)
    results = log["runs"][0]["results"]
    assert {(x["ruleId"], x["level"]) for x in results} == {
        ("MP101", "error"), ("MP102", "warning"), ("MP102", "error"), ("MP103", "note")}
    fix = next(x for x in results if x["ruleId"] == "MP101")["fixes"][0]
    assert fix["artifactChanges"][0]["replacements"][0]["insertedContent"]["text"] == \
        "page_in_mapping(page, file->f_mapping)"
    flow = next(x for x in results if x["level"] == "warning")["codeFlows"][0]["threadFlows"][0]["locations"]
    assert len(flow) == 2
    summary = md.read_text()
    assert summary.index("| errors | warnings | notes |") < summary.index("### `fs/tinyfs/file.c`") \
        < summary.index("### `mm/vmscan.c`")
    assert "| 2 | 1 | 1 |" in summary
    assert "1. `tinyfs_write_begin` passes" in summary  # the chain, under its finding

    code, out, _ = cli("review", "--base", "c0", "--head", "bad", str(tree), "--db", str(db),
                       "--fail-on", "error", "--format", "json")
    data = json.loads(out)
    assert code == 1 and data["schema"] == "mappingpass.review/1" and data["counts"] == {
        "error": 2, "warning": 1, "note": 1}
    code, out, _ = cli("review", "--base", "c0", "--head", "conv", str(tree), "--db", str(db), "-q")
    assert code == 0 and "series:" in out  # warnings and notes only: below --fail-on error
    code, _, _ = cli("review", "--base", "c0", "--head", "conv", str(tree), "--db", str(db), "-q",
                     "--fail-on", "warning")
    assert code == 1
    code, _, _ = cli("review", "--base", "c0", "--head", "c0", str(tree), "--db", str(db), "-q",
                     "--fail-on", "note")
    assert code == 0


def test_markdown_series_summary(repo):
    r = run_review(repo, "c0", "half")
    md = reviewmod.to_markdown(r)
    assert md.startswith("## mappingpass review")
    assert "| errors | warnings | notes | mechanical hunks | hunks to review |" in md
    assert "`drivers/blockdev/mydev.c`" in md.split("### ")[0]  # plan files the range leaves out
    assert "hunks: " in md and "reads touched: " in md and "resolvable" in md


@pytest.mark.parametrize("argv, words", [
    (["--base", "no-such-rev"], ["no-such-rev", "not a commit"]),
    (["--base", "c0", "--head", "nope"], ["nope", "not a commit"]),
    (["--base", "c0", "--github", "--format", "json"], ["--github", "--format json"]),
])
def test_usage_errors(repo, argv, words):
    tree, db = repo
    code, _, err = cli("review", *argv, str(tree), "--db", str(db))
    assert code == 2 and err.count("\n") == 1 and all(w in err for w in words), err


def test_not_a_git_tree(tmp_path):
    tree = tmp_path / "plain"
    shutil.copytree(MINILINUX, tree)
    code, _, err = cli("review", "--base", "HEAD", str(tree), "--db", str(tmp_path / "db"))
    assert code == 2 and err.count("\n") == 1 and "not inside a git repository" in err
    code, _, err = cli("review", "--base", "HEAD", str(tmp_path / "nope"), "--db", str(tmp_path / "db"))
    assert code == 2 and "no such directory" in err
    with pytest.raises(SystemExit) as exc, redirect_stderr(io.StringIO()):
        cli_main(["review", str(tree)])  # --base is required
    assert exc.value.code == 2


def test_an_index_of_another_repository_is_refused(repo, tmp_path, monkeypatch):
    """Inside one repository, with no PATH and the index of a tree in another:
    one line, exit 2 (review would review the other tree)."""
    tree, _ = repo
    other = tmp_path / "other"
    shutil.copytree(MINILINUX, other)
    git(other, "init", "-q")
    commit(other, "other", "o0")
    db = tmp_path / "db"
    assert run_cli("analyze", str(other), "--db", str(db), "-q")[0] == 0
    monkeypatch.chdir(tree / "fs")
    code, _, err = cli("review", "--base", "c0", "--head", "bad", "--db", str(db))
    assert code == 2 and err.count("\n") == 1 and f"index of {other}" in err and str(tree) in err, err
    monkeypatch.chdir(other)  # in the indexed tree's own repository, PATH is not needed
    assert cli("review", "--base", "o0", "--db", str(db), "-q")[0] == 0


def test_register_adds_the_subcommand():
    parser = argparse.ArgumentParser(prog="mappingpass")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(sp):
        sp.add_argument("--db", default=".mappingpass")
        sp.add_argument("--format", choices=("text", "json"), default="text")
        sp.add_argument("-q", "--quiet", action="store_true")

    cmd_review.register(sub, common)
    args = parser.parse_args(["review", "--base", "main", "linux", "--sarif", "x.sarif", "--fail-on", "warning"])
    assert args.func is cmd_review.cmd_review and args.path == "linux" and args.head == "HEAD"
    assert args.fail_on == "warning" and args.series == "auto"


def test_rules_table_is_documented():
    log = reviewmod.to_sarif(reviewmod.Review("/", "/", "", "a", "b", (), 0, (), False))
    jsonschema.Draft4Validator(SCHEMA).validate(log)
    rules = log["runs"][0]["tool"]["driver"]["rules"]
    assert [r["id"] for r in rules] == list(reviewmod.RULES)
    assert all(r["defaultConfiguration"]["level"] in ("error", "warning", "note") for r in rules)


def test_tree_below_the_git_top(tmp_path):
    """A kernel tree in a subdirectory of the repository: paths in findings are
    the tree's, paths in SARIF and annotations the repository's."""
    top = tmp_path / "repo"
    tree = top / "sub" / "linux"
    shutil.copytree(MINILINUX, tree)
    git(top, "init", "-q")
    commit(top, "base", "t0")
    f = tree / "fs/tinyfs/file.c"
    f.write_text(f.read_text() + BAD_TAIL)
    commit(top, "bad", "t1")
    code, out, err = cli("review", "--base", "t0", "--head", "t1", str(tree / "fs"), "--db", str(tmp_path / "db"),
                         "--github", "-q")
    assert code == 1, err
    peek = line_of(f.read_text(), "return page->mapping == file->f_mapping;")
    assert f"::error file=sub/linux/fs/tinyfs/file.c,line={peek}," in out
    r = reviewmod.review(tree, "t0", "t1", tmp_path / "db")
    assert ("fs/tinyfs/file.c", peek, "MP101", "error") in keyed(r) and r.prefix == "sub/linux/"
    log = validate_sarif(r)
    uris = {x["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] for x in log["runs"][0]["results"]}
    assert uris == {"sub/linux/fs/tinyfs/file.c"}


def test_anchor_to_a_commit_this_clone_lacks(repo, tmp_path):
    """An index anchored (by another job) to a commit this clone does not have:
    the review falls back to comparing the work tree with the index."""
    import sqlite3

    tree, db = repo
    copy = tmp_path / "db"
    shutil.copytree(db, copy)
    store = Store(copy, create=False)
    key = store.content_key()
    store.close()
    conn = sqlite3.connect(copy / "review.sqlite")
    conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    conn.execute("INSERT OR REPLACE INTO meta VALUES ('anchor', ?)", (f"{key} {'1' * 40}",))
    conn.commit()
    conn.close()
    r = reviewmod.review(tree, "c0", "bad", copy)
    assert keyed(r) == keyed(run_review(repo, "c0", "bad"))
