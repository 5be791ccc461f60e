"""The benchmark script follows the package's API: its emit rows run on the
fixture (the script itself is not run in CI; a crash there went unseen)."""

from __future__ import annotations

import importlib.util
import shutil

import pytest
from conftest import MINILINUX, REPO, analyze_json


@pytest.mark.skipif(shutil.which("spatch") is None, reason="spatch not installed (apt-get install coccinelle)")
def test_the_benchmarks_emit_rows_run_on_the_fixture(tmp_path):
    spec = importlib.util.spec_from_file_location("bench", REPO / "bench" / "bench.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    db = tmp_path / "db"
    analyze_json(MINILINUX, db)
    (tmp_path / "work").mkdir()
    rows = bench.emit_rows(MINILINUX, db, tmp_path / "work")
    assert [r[0].split(" (")[0] for r in rows] == ["emit --diff whole plan", "emit --spatch whole plan",
                                                   "emit --series whole plan", "spatch applying the SmPL"]
    assert "exit 0" in rows[-1][0]
