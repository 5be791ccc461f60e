"""emit --spatch: the plan as a semantic patch that Debian's spatch parses and
applies, with the same result as our own rewriter (mappingpass.emit)."""

from __future__ import annotations

import difflib
import re
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import MINILINUX, REPO, run_cli

from mappingpass import emit
from mappingpass.emit import smpl
from mappingpass.workspace import compute_plan, load_rules, open_store

pytestmark = pytest.mark.skipif(shutil.which("spatch") is None,
                                reason="spatch not installed (apt-get install coccinelle)")
WIDE = 10_000  # --max-width: no re-wrapping, so that bytes can be compared


def pipeline(src: Path, base: Path, rules: Path | None = None, subpaths: tuple[str, ...] = (),
             copy: bool = True) -> SimpleNamespace:
    """analyze src (a copy of it unless copy=False; only these subpaths when
    given), plan, our own texts (emit) and the semantic patch."""
    tree, db = (base / "tree" if copy else src), base / "db"
    if copy:
        shutil.copytree(src, tree)
    extra = ["--rules", str(rules)] if rules else []
    paths = [str(tree / p) for p in subpaths] or [str(tree)]
    code, _, err = run_cli("analyze", *paths, "--db", str(db), "-q", *extra)
    assert code == 0, err
    plan, _ = compute_plan(str(db))
    store = open_store(str(db), create=False)
    rules_ = load_rules(store.get_meta("rules_path"))
    rows = store.rows()
    facts = {f.path: f for f in store.load_facts(sorted(p for p, v in rows.items() if v[3] == "parsed"))}
    store.close()
    digests = {p: v[2] for p, v in rows.items()}
    ours = emit.new_texts(plan, facts, rules_, tree, digests)
    plain = emit.new_texts(plan, facts, rules_, tree, digests, wrap=False)
    decls, header = emit.for_spatch(plan, facts, rules_, tree, digests)
    decls = tuple(decls)
    cocci = smpl.write_spatch(plan, rules_, base / "smpl", decls, header)
    return SimpleNamespace(base=base, tree=tree, plan=plan, rules=rules_, ours=ours, plain=plain, cocci=cocci,
                           decls=decls,
                           header=header, files=smpl.spatch_files(plan, header))


@pytest.fixture(scope="module")
def fx(tmp_path_factory) -> SimpleNamespace:
    return pipeline(MINILINUX, tmp_path_factory.mktemp("spatch"))


def apply_diff(tree: Path, diff: str) -> dict[str, bytes]:
    """path -> new bytes for a unified diff with a/ b/ paths (spatch's output)."""
    out: dict[str, bytes] = {}
    for chunk in re.split(r"(?m)^(?=--- )", diff)[1:]:
        lines = chunk.splitlines(keepends=True)
        path = lines[1].split()[1].removeprefix("b/")
        old = (tree / path).read_text().splitlines(keepends=True)
        new, at = [], 0
        i = 2
        while i < len(lines):
            m = re.match(r"@@ -(\d+)(?:,(\d+))? \+\d+(?:,\d+)? @@", lines[i])
            if not m:
                break  # the next file's "diff -u -p" line
            start = int(m.group(1)) - (0 if m.group(2) == "0" else 1)
            new += old[at:start]
            at = start
            i += 1
            while i < len(lines) and lines[i][:1] in (" ", "-", "+", "\\"):
                tag, text = lines[i][:1], lines[i][1:]
                if tag in (" ", "-"):
                    assert old[at] == text, f"{path}: context mismatch at line {at + 1}"
                    at += 1
                if tag in (" ", "+"):
                    new.append(text)
                i += 1
        out[path] = "".join(new + old[at:]).encode()
    return out


def tokens(data: bytes) -> list[bytes]:
    return re.findall(rb"\w+|\S", data)


def test_every_file_parses(fx):
    assert [p.name for p in fx.cocci] == ["mapping_passdown.cocci", "mapping_passdown.json",
                                          "mapping_passdown.groups"]
    # without a mode spatch leaves the rules that depend on one unparsed: each
    # mode is checked as well
    for mode in ([], ["-D", "patch"], ["-D", "report"]):
        proc = subprocess.run(["spatch", "--parse-cocci", str(fx.cocci[0]), *mode],
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        assert "parse error" not in proc.stdout + proc.stderr
    text = fx.cocci[0].read_text()
    for shape in ("virtual patch", "virtual report", "// Confidence:", "// Options:", "\n///"):
        assert shape in text
    # deterministic: the same plan gives the same bytes
    again = smpl.write_spatch(fx.plan, fx.rules, fx.base / "again", fx.decls, fx.header)
    assert [p.read_bytes() for p in again] == [p.read_bytes() for p in fx.cocci]


def assert_same_result(fx: SimpleNamespace, exact: bool = True) -> dict[str, bytes]:
    """spatch's result is our rewriter's. exact: at --max-width wide (no
    re-wrapping by spatch), byte for byte our edits before we re-wrap them,
    but where spatch lays out code it adds itself (the helper). Else, at
    spatch's default width, token for token what emit writes: both re-wrap
    the changed lines, each its own way. Returns spatch's new texts."""
    rc, diff, err = smpl.run_spatch(fx.cocci, fx.tree, fx.files, max_width=WIDE if exact else None)
    assert rc == 0, err
    assert diff.startswith("diff -u -p a/")
    theirs = apply_diff(fx.tree, diff)
    assert sorted(theirs) == sorted(fx.ours)
    header = fx.header.header if fx.header else ""
    for path, (_old, new) in (fx.plain if exact else fx.ours).items():
        if exact and path != header:
            assert theirs[path].decode() == new.decode(), path
        else:
            # spatch pretty-prints code it adds (the helper's parameter list
            # joined or re-aligned, one blank line fewer before it)
            assert tokens(theirs[path]) == tokens(new), path
    return theirs


def test_patch_is_our_diff(fx):
    assert_same_result(fx)


def test_patch_at_80_columns_same_tokens(fx):
    assert_same_result(fx, exact=False)


def test_changed_lines_are_wrapped_in_kernel_style(fx):
    """Every line emit changed keeps to 80 columns where the line it replaces
    did (else to that line's width, never over 100), continuations aligned
    after their open parenthesis with tabs then spaces; and where spatch's
    own re-wrap at 80 columns differs from ours, ours is no wider."""
    from mappingpass.emit.wrap import limit_for, width

    rc, diff, err = smpl.run_spatch(fx.cocci, fx.tree, fx.files)
    assert rc == 0, err
    theirs = apply_diff(fx.tree, diff)
    wrapped, over = 0, {"ours": 0, "spatch": 0}
    helper = set(fx.rules.plan.helper_definition.split("\n"))  # ours as written, not an edit
    for path, (old, new) in fx.ours.items():
        plain = fx.plain[path][1].decode().split("\n")
        olds = old.decode().split("\n")
        lines = new.decode().split("\n")
        for line in set(lines) - set(plain) - set(olds):  # continuation lines we made
            assert re.match(r"^\t* {0,7}\S", line), (path, line)
            wrapped += 1
        longest = {ln for ln in plain if ln not in olds and ln not in helper}
        for ln in longest:
            if ln in lines:  # left as it was: within its limit, or no break helps
                original = min(olds, key=lambda o: -difflib.SequenceMatcher(None, o, ln).ratio())
                assert width(ln) <= limit_for(original) or "," not in ln, (path, ln)
        assert max(map(width, lines)) <= max(100, max(map(width, olds))), path
        over["ours"] += sum(width(ln) > 80 for ln in set(lines) - set(olds))
        over["spatch"] += sum(width(ln) > 80 for ln in set(theirs[path].decode().split("\n")) - set(olds))
    assert wrapped > 10 and over["ours"] <= over["spatch"], over
def assert_idempotent(fx: SimpleNamespace, theirs: dict[str, bytes], tmp_path: Path) -> None:
    patched = tmp_path / "patched"
    shutil.copytree(fx.tree, patched)
    for path, data in theirs.items():
        (patched / path).write_bytes(data)
    rc, again, err = smpl.run_spatch(fx.cocci, patched, fx.files, max_width=WIDE)
    assert rc == 0, err
    assert again == ""


def test_second_run_changes_nothing(fx, tmp_path):
    rc, diff, err = smpl.run_spatch(fx.cocci, fx.tree, fx.files, max_width=WIDE)
    assert rc == 0, err
    assert_idempotent(fx, apply_diff(fx.tree, diff), tmp_path)


def test_report_prints_every_place(fx):
    rc, out, err = smpl.run_spatch(fx.cocci, fx.tree, fx.files, mode="report")
    assert rc == 0, err
    got = {(m.group(1), int(m.group(2))) for m in re.finditer(r"(?m)^(\S+):(\d+):\d+-\d+: ", out)}
    p = fx.plan
    want = {(c.file, c.line) for c in p.call_sites} | {(r.file, r.line) for r in p.rewrites}
    want |= {place for f in p.functions for place in (*f.bodies, *f.prototypes)}
    want |= {place for s in p.slots if s.kind != "param" for place in s.decls}
    assert want <= got
    # the only other place: where the helper's definition goes (page-flags.h,
    # which pagemap.h includes, calls it: before the function that does, itself
    # a place the plan changes)
    assert fx.header.header == "include/linux/page-flags.h" and fx.header.before == "folio_test_accountable"
    assert got - want <= {(fx.header.header, 17)}
    assert ("include/linux/page-flags.h:17:19-41: define page_mapping_wp() and folio_mapping_wp() "
            "before this") in out
    assert "fs/tinyfs/file.c:34:6-23: tinyfs_writepage(): pass mapping to tinyfs_page_valid()" in out
    # an identity test becomes a membership test
    assert ("tinyfs_fault(): vmf->page->mapping != vmf->vma->vm_file->f_mapping -> "
            "!page_in_mapping(vmf->page, vmf->vma->vm_file->f_mapping)") in out


SHAPES = """\
#include <linux/fs.h>
#include <linux/pagemap.h>

static struct page *cur_page;

static int syn_noargs(void)
{
	return cur_page->mapping->host != NULL;
}

static int syn_nest(struct page *page, int n)
{
	if (!page->mapping->host)
		return n;
	return n + 1;
}

static int syn_bare()
{
	return syn_noargs();
}

int syn_entry(struct address_space *mapping, struct page *page)
{
	return syn_nest(page, syn_nest(page, 1)) + syn_noargs() + syn_bare();
}
"""


def test_shapes_the_fixture_lacks(tmp_path):
    """Nested calls and calls of two arguments; a page from a global, whose
    origin nothing in scope names, needs a human and no parameter (so (void)
    and () parameter lists no longer arise from a plan)."""
    src = tmp_path / "src"
    (src / "fs" / "syn").mkdir(parents=True)
    shutil.copytree(MINILINUX / "include", src / "include")
    (src / "Makefile").write_text("")
    (src / "fs" / "syn" / "syn.c").write_text(SHAPES)
    fx = pipeline(src, tmp_path / "work")
    assert {c.nargs for c in fx.plan.call_sites} == {2}
    assert [k.reason for k in fx.plan.kept] == ["needs-human"]  # cur_page: a global
    theirs = assert_same_result(fx)
    assert b"syn_nest(mapping, page, syn_nest(mapping, page, 1))" in theirs["fs/syn/syn.c"]
    assert_idempotent(fx, theirs, tmp_path)


@pytest.mark.parametrize("variant", ["last", "index"])
def test_other_rules(variant, tmp_path):
    """The parameter added last; another field (rules/index.toml: a typedef'd
    parameter type, pgoff_t, that SmPL must be told is a type)."""
    if variant == "last":
        rules = tmp_path / "last.toml"
        text = (REPO / "rules" / "mapping.toml").read_text()
        rules.write_text(text.replace('position = "first"', 'position = "last"'))
    else:
        rules = REPO / "rules" / "index.toml"
    fx = pipeline(MINILINUX, tmp_path / "work", rules)
    assert fx.rules.plan.position == ("last" if variant == "last" else "first")
    # index: spatch writes `(loff_t) page_index_wp(...)`, a blank after the
    # cast where the replaced expression starts, so compare tokens there
    theirs = assert_same_result(fx, exact=variant == "last")
    assert_idempotent(fx, theirs, tmp_path)


def test_the_options_line_is_the_command(fx):
    """spatch run by hand as the .cocci's header says (its `// Options:`, the
    groups file beside it, from the top of the tree) gives run_spatch's diff."""
    header = fx.cocci[0].read_text()
    options = re.search(r"(?m)^// Options: (.*)$", header).group(1).split()
    groups = fx.cocci[2]
    assert groups.read_text() == "\n\n".join(fx.files) + "\n"
    options = [str(groups) if o == groups.name else o for o in options]
    proc = subprocess.run(["spatch", "--very-quiet", "-D", "patch", "--sp-file", str(fx.cocci[0]), *options,
                           "--patch", "."], cwd=fx.tree, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    _, expected, _ = smpl.run_spatch(fx.cocci, fx.tree, fx.files)
    assert smpl.sorted_diff(proc.stdout) == expected
