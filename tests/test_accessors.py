"""Accessors found from the code (index/accessors.py): a function whose every
return is its page's field, or another accessor's answer for that page, is an
accessor whatever the rules call it (linux-6.12's folio_flush_mapping(),
which 6.1 named page_mapping_file())."""

from __future__ import annotations

import dataclasses
import json

import pytest
from conftest import MINILINUX, REPO, analyze_json, plan_json, run_cli

from mappingpass import rules as rulesmod
from mappingpass.index import Store, derive_accessors


@pytest.fixture(scope="module")
def analyzed(tmp_path_factory):
    db = tmp_path_factory.mktemp("accessors")
    report = analyze_json(MINILINUX, db)
    _, plan, _ = plan_json(db)
    return db, report, plan


def _facts(db):
    store = Store(db, create=False)
    try:
        return store.load_facts()
    finally:
        store.close()


def test_a_function_returning_another_accessors_answer_is_one(analyzed):
    db, report, _ = analyzed
    assert [d["name"] for d in report["derived_accessors"]] == ["folio_flush_mapping"]
    assert "returns folio_mapping(folio)" in report["derived_accessors"][0]["why"]
    # the rules' accessors that only return the field are found from their bodies too
    rules = rulesmod.load(None)
    fewer = dataclasses.replace(rules, accessors=rules.accessors - {"folio_file_mapping", "page_file_mapping"})
    found = derive_accessors(_facts(db), fewer)
    assert {"folio_file_mapping", "page_file_mapping", "folio_flush_mapping"} <= set(found)
    # folio_mapping() answers NULL for anon pages, from a local it masks: a root
    assert "folio_mapping" not in derive_accessors(_facts(db), fewer.with_accessors({}))


def test_its_calls_are_reads_and_its_body_a_definition(analyzed):
    _, report, plan = analyzed
    reads = {(r["file"], r["line"]): r for r in report["reads"]}
    fs = reads[("fs/pagefs/file.c", 194)]
    assert fs["via"] == "accessor" and fs["kind"] == 1
    assert reads[("mm/vmscan.c", 60)]["kind"] == 2  # cache maintenance: left to run time
    body = reads[("include/linux/pagemap.h", 94)]
    assert body["kind"] == 2 and "accessor" in body["why"]
    assert not [f for f in plan["functions"] if f["name"] == "folio_flush_mapping"]
    assert not [c for c in plan["call_sites"] if c["callee"].endswith("folio_flush_mapping")]
    rewrite = [w for w in plan["rewrites"] if (w["file"], w["line"]) == ("fs/pagefs/file.c", 194)]
    assert [w["to"] for w in rewrite] == ["folio_mapping_wp_of(folio, folio_flush_mapping(folio), mapping)"]


def test_the_rules_need_no_entry_the_code_shows(analyzed, tmp_path):
    """Drop the accessors the code derives from the rules: the same plan."""
    _, _, plan = analyzed
    text = (REPO / "rules" / "mapping.toml").read_text()
    for name in ("folio_file_mapping", "page_file_mapping"):
        line = next(ln for ln in text.splitlines() if ln.strip().startswith(f'"{name}",'))
        text = text.replace(line + "\n", "")
    rules = tmp_path / "roots.toml"
    rules.write_text(text)
    db = tmp_path / "db"
    report = analyze_json(MINILINUX, db, "--rules", str(rules))
    assert {"folio_file_mapping", "page_file_mapping"} <= {d["name"] for d in report["derived_accessors"]}
    _, again, _ = plan_json(db)
    assert {k: v for k, v in again.items() if k != "rules"} == {k: v for k, v in plan.items() if k != "rules"}


def test_a_file_that_starts_calling_one_is_parsed(minilinux_copy, tmp_path):
    db = tmp_path / "db"
    analyze_json(minilinux_copy, db)
    extra = minilinux_copy / "fs" / "pagefs" / "flush.c"
    extra.write_text("#include <linux/pagemap.h>\n\nvoid pagefs_flush_more(struct folio *folio)\n"
                     "{\n\tfolio_flush_mapping(folio)->nrpages++;\n}\n")
    report = analyze_json(minilinux_copy, db)
    assert [r["line"] for r in report["reads"] if r["file"] == "fs/pagefs/flush.c"] == [5]
    # and the same facts as a cold run
    cold = analyze_json(minilinux_copy, tmp_path / "cold")
    assert json.dumps(cold["reads"], sort_keys=True) == json.dumps(report["reads"], sort_keys=True)


def test_a_stored_set_that_is_not_ours_is_derived_again(tmp_path):
    db = tmp_path / "db"
    analyze_json(MINILINUX, db)
    store = Store(db, create=False)
    store.set_meta("derived_accessors", json.dumps(["not", "a", "mapping"]))
    store.commit()
    store.close()
    code, out, err = run_cli("analyze", str(MINILINUX), "--db", str(db), "--format", "json", "-q")
    assert code == 0, err
    assert [d["name"] for d in json.loads(out)["derived_accessors"]] == ["folio_flush_mapping"]
