"""Real tier, both Debian trees (linux-6.1 and linux-6.12): the plan decided
from the page (tests/test_page_facts.py has each trap on the fixture)."""

from __future__ import annotations

import pytest
from conftest import run_cli

pytestmark = pytest.mark.realtree


@pytest.fixture(scope="module", params=["6.1", "6.12"])
def tree_plan(request, tmp_path_factory):
    from mappingpass.workspace import compute_plan

    tree = request.getfixturevalue("linux_tree" if request.param == "6.1" else "linux612_tree")
    db = tmp_path_factory.mktemp(f"pagefacts-{request.param}")
    code, _, err = run_cli("analyze", str(tree), "--db", str(db), "-q")
    assert code == 0, err
    plan, analysis = compute_plan(str(db))
    return request.param, db, plan


def test_no_function_gains_a_parameter_that_carries_nothing(tree_plan):
    """Every function that gains the parameter (but for a slot's signature) has a
    call that passes a mapping, or a caller stopped at a reported boundary."""
    version, _, plan = tree_plan
    by_callee: dict[str, list] = {}  # by name: a header's static inline twin changes with its extern
    for c in plan.call_sites:
        by_callee.setdefault(c.callee.split("::")[-1], []).append(c)
    boundaries = {u.function for u in plan.unresolved}
    signature_only = plan.signature_only()
    useless = []
    for f in plan.functions:
        sites = by_callee.get(f.name, [])
        if not sites or f.id in signature_only or f.reason[0].why in ("implements", "twin-of"):
            continue
        passes = [c for c in sites if c.how not in ("needs-human", "debug", "never-protected", "unresolved")]
        stopped = [c for c in sites if c.how == "unresolved" and c.caller in boundaries]
        if not passes and not stopped:
            useless.append((f.id, sorted({c.how for c in sites})))
    assert not useless, (version, useless)


def test_pruned_reads_are_reported_with_their_reason(tree_plan):
    version, _, plan = tree_plan
    kept = {k.reason for k in plan.kept}
    # (the trees' assertion-only reads, btrfs's lockdep_assert_held() on a btree
    # page, are never-protected first: the page's origin decides before the text)
    assert {"no-context", "never-protected"} <= kept, (version, kept)
    no_context = {u.function for u in plan.unresolved if u.reason == "no-context"}
    assert no_context and all(u.chain for u in plan.unresolved if u.reason == "no-context")
    gained = {f.id for f in plan.functions}
    assert not no_context & gained
    # never a function whose every read is of a never-protected page, unless a slot forces it
    never_only = {k.function for k in plan.kept if k.reason == "never-protected"}
    rewritten = {w.function for w in plan.rewrites}
    calls_on = {c.caller for c in plan.call_sites if c.how == "parameter"}
    forced = plan.signature_only() | {f.id for f in plan.functions if f.reason[0].why in ("implements", "twin-of")}
    assert not [fid for fid in never_only & gained if fid not in rewritten | calls_on | forced], version


def test_the_plan_is_smaller_than_its_reads_and_asks_few_humans(tree_plan):
    version, _, plan = tree_plan
    s = plan.summary()
    assert s["functions"] <= 360 and s["needs_human"] <= 60, (version, s)
    assert s["signature_only"] > 0


def test_the_rules_accessors_the_code_shows_are_not_needed(tree_plan, tmp_path):
    """Remove from the rules every accessor the tree's code derives (its body
    returns another accessor's answer for its page): the same plan, byte for
    byte, and the tree's own new ones (6.12's folio_flush_mapping) found."""
    import dataclasses
    import json

    from conftest import REPO

    from mappingpass.index import Store, derive_accessors
    from mappingpass.workspace import store_rules

    version, db, _ = tree_plan
    store = Store(db, create=False)
    rules, facts = store_rules(store), store.load_facts()
    store.close()
    roots = rules.roots()
    base = rules.with_accessors({})
    derivable = sorted(a for a in roots
                       if a in derive_accessors(facts, dataclasses.replace(base, accessors=roots - {a})))
    assert {"6.1": ["page_file_mapping", "page_mapping", "page_mapping_file"],
            "6.12": ["page_file_mapping"]}[version] == derivable
    assert [n for n, _ in rules.derived] == {"6.1": ["hugetlb_page_mapping_lock_write"],
                                             "6.12": ["folio_flush_mapping", "hugetlb_folio_mapping_lock_write"]
                                             }[version]
    text = (REPO / "rules" / "mapping.toml").read_text()
    for name in derivable:
        line = next(ln for ln in text.splitlines() if ln.strip().startswith(f'"{name}",'))
        text = text.replace(line + "\n", "")
    fewer = tmp_path / "roots.toml"
    fewer.write_text(text)
    again = tmp_path / "db"
    store = Store(db, create=False)
    root = store.get_meta("root")
    store.close()
    code, _, err = run_cli("analyze", root, "--db", str(again), "--rules", str(fewer), "-q")
    assert code == 0, err
    _, ours, _ = run_cli("plan", "--db", str(db), "--format", "json", "-q")
    _, theirs, _ = run_cli("plan", "--db", str(again), "--format", "json", "-q")
    ours, theirs = json.loads(ours), json.loads(theirs)
    assert {k: v for k, v in theirs.items() if k != "rules"} == {k: v for k, v in ours.items() if k != "rules"}


def test_the_whole_tree_series_passes_checkpatch(tree_plan, tmp_path):
    """Every patch of the whole-tree series: no checkpatch ERROR, no line over
    100 columns (the kernel's own scripts/checkpatch.pl --no-tree)."""
    import shutil
    import subprocess

    from mappingpass.index import Store

    if shutil.which("perl") is None:
        pytest.skip("no perl for checkpatch.pl")
    version, db, _ = tree_plan
    store = Store(db, create=False)
    root = store.get_meta("root")
    store.close()
    code, _, err = run_cli("emit", "--db", str(db), "--series", str(tmp_path / "series"), "-q")
    assert code == 0, err
    patches = sorted((tmp_path / "series").glob("0*.patch"))[1:]  # (not the cover letter)
    assert len(patches) > 50
    found = []
    for patch in patches:
        proc = subprocess.run(["perl", f"{root}/scripts/checkpatch.pl", "--no-tree", "--terse", "--show-types",
                               str(patch)], capture_output=True, text=True, check=False)
        found += [ln for ln in proc.stdout.splitlines() if ": ERROR:" in ln or "LONG_LINE" in ln]
    assert not found, (version, found)


def test_no_edit_follows_a_fault_chain_outside_a_fault_handler(tree_plan):
    """`vmf->vma->vm_file->f_mapping` is only passed where vmf cannot be NULL:
    in a ->fault or ->page_mkwrite handler, or a helper only they call
    (update_mmu_cache() is handed a NULL vmf; linux-6.12's arch files were)."""
    import re

    from mappingpass.graph import edges_in, edges_out
    from mappingpass.workspace import open_analysis

    version, db, plan = tree_plan
    ws = open_analysis(db)
    ws.store.close()
    g = ws.analysis.graph
    handlers = {f"member:vm_operations_struct.{m}" for m in ("fault", "huge_fault", "page_mkwrite", "pfn_mkwrite")}

    def in_a_handler(fid: str, depth: int = 0) -> bool:
        # bound as a handler, or named as one (its vm_operations table may be in
        # a file the index deferred: ext4_page_mkwrite; block_page_mkwrite is
        # the helper every handler calls with its own vmf)
        if any(slot in handlers for slot, _, _ in edges_out(g, fid, "binds")) or \
                re.search(r"(page_mkwrite|_fault)$", g.nodes[fid]["name"]):
            return True
        callers = {pred for pred, _, _ in edges_in(g, fid, "call")}
        return depth < 4 and bool(callers) and all(in_a_handler(c, depth + 1) for c in callers)

    edits = [(c.file, c.line, c.caller, c.argument) for c in plan.call_sites] + \
            [(w.file, w.line, w.function, w.context) for w in plan.rewrites]
    chains = [e for e in edits if "vmf->" in e[3]]
    assert chains, version  # (the page_mkwrite handlers do pass it)
    assert not [e for e in chains if not in_a_handler(e[2])], version


def test_no_edit_passes_a_nullable_provider_a_caller_hands_null(tree_plan):
    """The rules' nullable providers (`file->f_mapping`: read_cache_page()
    and ->read_folio are handed a NULL file) are passed only where no direct
    caller hands that parameter NULL and no slot it is bound to is one the
    rules say callers hand NULL."""
    import re

    from mappingpass.graph import edges_in, edges_out
    from mappingpass.workspace import FactsCache, open_analysis

    version, db, plan = tree_plan
    ws = open_analysis(db)
    g, pr, facts = ws.analysis.graph, ws.rules.plan, FactsCache(ws.store)
    nullable = [re.compile(re.escape(p.expr).replace(re.escape("{p}"), r"(\w+)") + "$")
                for p in pr.providers if p.nullable]
    assert nullable  # the rules name some

    def handed_null(fid: str, index: int) -> bool:
        if any(f"{s}#{index}" in pr.nullable_slots for s, _, _ in edges_out(g, fid, "binds")):
            return True
        for _, _, edge in edges_in(g, fid, "call"):
            for path, _, ci in edge["sites"]:
                ff = facts(path)
                call = ff.calls[ci] if ff is not None and ci < len(ff.calls) else None
                if call is not None and index < len(call.args) and call.args[index].strip() in ("NULL", "0"):
                    return True
        return False

    bad = []
    edits = [(c.file, c.line, c.caller, c.argument) for c in plan.call_sites] + \
            [(w.file, w.line, w.function, w.context) for w in plan.rewrites]
    for file, line, fid, expr in edits:
        for pattern in nullable:
            m = pattern.match(expr)
            params = [p for p, _ in g.nodes[fid]["params"]] if m and fid in g else []
            if m and m.group(1) in params and handed_null(fid, params.index(m.group(1))):
                bad.append((file, line, fid, expr))
    ws.store.close()
    assert not bad, (version, bad)
