"""analyze on bad input and on re-runs: one-line errors, counted skips, caching."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time

import pytest
from conftest import MINILINUX, REPO, analyze_json, emitted_diff, run_cli


def test_missing_path_is_a_one_line_error(tmp_path):
    code, out, err = run_cli("analyze", str(tmp_path / "nope"), "--db", str(tmp_path / "db"))
    assert code == 2
    assert err.count("\n") == 1 and "no such directory" in err and "nope" in err


def test_broken_rules_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('schema = "mappingpass.rules/1"\n[read\nfield = 1\n')
    code, _, err = run_cli("analyze", str(MINILINUX), "--db", str(tmp_path / "db"), "--rules", str(bad))
    assert code == 2 and err.count("\n") == 1 and "bad.toml" in err and "TOML" in err


def test_rules_file_with_bad_entry(tmp_path):
    text = (REPO / "rules" / "mapping.toml").read_text().replace("kind = 5\n", "kind = 9\n", 1)
    bad = tmp_path / "r.toml"
    bad.write_text(text)
    code, _, err = run_cli("analyze", str(MINILINUX), "--db", str(tmp_path / "db"), "--rules", str(bad))
    assert code == 2 and "'kind' in [kind #4] must be an integer from 1 to 5, not 9" in err


def test_a_rules_file_with_200000_relevant_words_is_refused_at_once(tmp_path):
    """Every file is scanned for each relevant word: 200,000 of them took
    hours (and the anchors quadratic time); refused in one line instead,
    duplicates counted once."""
    many = ", ".join(f'"w{i}x"' for i in range(200_000))
    text = (REPO / "rules" / "mapping.toml").read_text().replace("relevant_words = [", f"relevant_words = [{many}, ", 1)
    big = tmp_path / "big.toml"
    big.write_text(text)
    code, _, err = run_cli("analyze", str(MINILINUX), "--db", str(tmp_path / "db"), "--rules", str(big))
    assert code == 2 and err.count("\n") == 1 and "relevant_words has 200010 different words; at most 1000" in err
    twice = (REPO / "rules" / "mapping.toml").read_text().replace(
        "relevant_words = [", "relevant_words = [" + '"->mapping", ' * 2000, 1)
    dup = tmp_path / "dup.toml"
    dup.write_text(twice)
    code, _, err = run_cli("analyze", str(MINILINUX), "--db", str(tmp_path / "db2"), "--rules", str(dup), "-q")
    assert code == 0, err


def test_unreadable_database(tmp_path):
    db = tmp_path / "db"
    db.mkdir()
    (db / "index.sqlite").write_bytes(b"this is not sqlite" * 100)
    code, _, err = run_cli("analyze", str(MINILINUX), "--db", str(db))
    assert code == 2 and "not a mappingpass index" in err and str(db) in err and "delete" not in err


def test_warm_rerun_parses_nothing_and_a_change_reparses_one_file(minilinux_copy, tmp_path):
    db = tmp_path / "db"
    cold = analyze_json(minilinux_copy, db)
    assert cold["files"]["parsed_this_run"] > 0
    warm = analyze_json(minilinux_copy, db)
    assert warm["files"]["parsed_this_run"] == 0
    assert warm["reads"] == cold["reads"]
    target = minilinux_copy / "fs" / "tinyfs" / "dir.c"
    target.write_text(target.read_text() + "\nint extra_reader(struct page *page)\n"
                      "{\n\treturn page->mapping != 0;\n}\n")
    changed = analyze_json(minilinux_copy, db)
    assert changed["files"]["parsed_this_run"] == 1
    new = {(r["file"], r["function"]) for r in changed["reads"]} - {(r["file"], r["function"]) for r in cold["reads"]}
    assert new == {("fs/tinyfs/dir.c", "extra_reader")}


def test_same_content_new_mtime_is_not_reparsed(minilinux_copy, tmp_path):
    db = tmp_path / "db"
    analyze_json(minilinux_copy, db)
    target = minilinux_copy / "mm" / "gup.c"
    target.write_bytes(target.read_bytes())
    assert analyze_json(minilinux_copy, db)["files"]["parsed_this_run"] == 0


def test_garbage_and_non_utf8_files_are_counted_not_fatal(minilinux_copy, tmp_path):
    (minilinux_copy / "fs" / "latin1.c").write_bytes(
        b"/* caf\xe9 */\nint latin_reader(struct page *page)\n{\n\treturn page->mapping != 0;\n}\n"
    )
    (minilinux_copy / "fs" / "garbage.c").write_bytes(b"}}}{{ ->mapping ((( int int int ;;; \x00\xff")
    result = analyze_json(minilinux_copy, tmp_path / "db")
    assert result["files"]["non_utf8"] == 2
    assert ("fs/latin1.c", "latin_reader") in {(r["file"], r["function"]) for r in result["reads"]}
    failed = {f["file"] for f in result["parse_failures"]["files"]}
    assert "fs/garbage.c" in failed


def test_stale_cache_is_rebuilt(tmp_path):
    db = tmp_path / "db"
    first = analyze_json(MINILINUX, db)
    (db / "analysis.pickle").write_bytes(b"\x80\x05garbage")
    assert analyze_json(MINILINUX, db)["reads"] == first["reads"]


def test_console_entry_point_and_text_summary(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "mappingpass", "analyze", str(MINILINUX), "--db", str(tmp_path / "db")],
        capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "reads      101" in proc.stdout
    assert "kind 3" in proc.stdout


def test_analyze_after_plan_says_which_counts_plan_added(tmp_path):
    """plan parses deferred files that name a function it changes: analyze
    run again counts their functions too, and says so (the reads stay)."""
    db = tmp_path / "db"
    before = analyze_json(MINILINUX, db)
    assert before["files"]["parsed_on_demand"] == before["files"]["functions_on_demand"] == 0
    assert run_cli("plan", "--db", str(db), "-q")[0] in (0, 1)
    after = analyze_json(MINILINUX, db)
    f = after["files"]
    assert f["parsed"] - before["files"]["parsed"] == f["parsed_on_demand"] > 0
    assert len(after["functions"]) - len(before["functions"]) == f["functions_on_demand"] > 0
    assert len(after["reads"]) == len(before["reads"])
    code, out, _ = run_cli("analyze", str(MINILINUX), "--db", str(db), "-q")
    assert code == 0 and f"parsed ({f['parsed_on_demand']} of them by plan since, on demand)" in out
    assert f"({f['functions_on_demand']} of them in files plan parsed on demand, which hold no read)" in out


def test_an_unterminated_comment_or_string_is_reported_not_silent(tmp_path):
    """`/*` never closed swallows the functions after it; a string never
    closed merges the next function into this one: analyze names both."""
    tree = tmp_path / "fs"
    tree.mkdir()
    (tree / "a.c").write_text("int f(struct page *page) { return page->mapping != 0; }\n/* unterminated\n"
                              "int g(struct page *page) { return page->mapping != 0; }\n")
    (tree / "b.c").write_text('int h(struct page *page) { char *s = "abc; return page->mapping != 0; }\n'
                              "int k(struct page *page) { return page->mapping != 0; }\n")
    (tree / "c.c").write_text("/* closed */ int m(struct page *page) { return page->mapping != 0; }\n")
    report = analyze_json(tree, tmp_path / "db")
    assert report["parse_failures"]["unterminated"] == [
        {"file": "a.c", "line": 2, "what": "comment"}, {"file": "b.c", "line": 1, "what": "string"}]
    code, out, _ = run_cli("analyze", str(tree), "--db", str(tmp_path / "db"), "-q")
    assert code == 0 and "2 comments or literals never closed" in out and "a.c:2 (comment), b.c:1 (string)" in out


def test_bash_completion_of_commands_and_options(tmp_path):
    """argcomplete answers bash's completion request (README: `eval
    "$(register-python-argcomplete mappingpass)"`): commands, then options."""
    out = tmp_path / "completions"
    for line, want in (("mappingpass em", "emit"), ("mappingpass emit --se", "--series"),
                       ("mappingpass check --fo", "--format")):
        env = {**os.environ, "_ARGCOMPLETE": "1", "COMP_LINE": line, "COMP_POINT": str(len(line)),
               "_ARGCOMPLETE_STDOUT_FILENAME": str(out)}
        proc = subprocess.run([sys.executable, "-m", "mappingpass"], env=env, capture_output=True, text=True,
                              check=False)
        assert proc.returncode == 0, proc.stderr
        assert want in out.read_text().split(), (line, out.read_text())


def test_analyze_does_not_modify_the_tree(minilinux_copy, tmp_path):
    before = {p: p.read_bytes() for p in minilinux_copy.rglob("*") if p.is_file()}
    analyze_json(minilinux_copy, tmp_path / "db")
    after = {p: p.read_bytes() for p in minilinux_copy.rglob("*") if p.is_file()}
    assert before == after


@pytest.mark.parametrize("seed", ["1", "2", "3"])
def test_output_bytes_do_not_depend_on_the_hash_seed_or_jobs(tmp_path, seed):
    """analyze JSON, emit --diff and --series: the same bytes whatever
    PYTHONHASHSEED and -j (the series' dates from SOURCE_DATE_EPOCH)."""
    outs = []
    for run, (hashseed, jobs) in enumerate([("0", "1"), (seed, "2")]):
        env = {**os.environ, "PYTHONHASHSEED": hashseed, "SOURCE_DATE_EPOCH": "1700000000"}
        db, series = tmp_path / f"db{run}", tmp_path / f"series{run}"

        def cli(*args, env=env):
            proc = subprocess.run([sys.executable, "-m", "mappingpass", *args], env=env,
                                  capture_output=True, check=False)
            assert proc.returncode in (0, 1), proc.stderr
            return proc.stdout

        analysis = cli("analyze", str(MINILINUX), "--db", str(db), "-j", jobs, "--format", "json", "-q")
        diff = cli("emit", "--db", str(db), "--diff", "-", "--series", str(series), "-q")
        outs.append((analysis, diff, [p.read_bytes() for p in sorted(series.iterdir())]))
    assert outs[0] == outs[1]


def test_an_index_of_another_version_is_refused_not_planned_empty(tmp_path):
    import sqlite3

    from conftest import MINILINUX, run_cli

    db = tmp_path / "db"
    code, _, err = run_cli("analyze", str(MINILINUX), "--db", str(db), "-q")
    assert code == 0, err
    conn = sqlite3.connect(db / "index.sqlite")
    conn.execute("UPDATE meta SET value='0' WHERE key='facts_version'")
    conn.commit()
    conn.close()
    code, out, err = run_cli("plan", "--db", str(db), "-q")
    assert code == 2 and out == ""
    assert "made by another version" in err and "re-run 'mappingpass analyze" in err and len(err.splitlines()) == 1


def test_a_release_install_runs_from_any_directory(tmp_path):
    """`pip install .` (not -e) into a fresh venv: the rules and the fixture
    tree travel inside the package, and the README's main command works from
    a directory that is not the checkout."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", str(REPO)],
                         capture_output=True, text=True, check=False)
    assert pip.returncode == 0, pip.stderr[-2000:]
    work = tmp_path / "elsewhere"
    work.mkdir()
    tool = str(venv / "bin" / "mappingpass")
    proc = subprocess.run([tool, "analyze", "--db", "db"], cwd=work, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "site-packages/mappingpass/_data/minilinux" in proc.stdout
    assert "reads      101" in proc.stdout
    # the bundled tree ships with its Makefile, which marks its top: no "not a kernel tree" warning
    assert "not inside a kernel tree" not in proc.stderr, proc.stderr
    proc = subprocess.run([tool, "plan", "--db", "db", "-q"], cwd=work, capture_output=True, text=True, check=False)
    assert proc.returncode == 1 and "functions gaining the parameter  55" in proc.stdout, proc.stderr  # 1: unresolved
    proc = subprocess.run([tool, "emit", "--db", "db", "--diff", "out.diff", "-q"], cwd=work,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "+++ b/include/linux/page-flags.h" in (work / "out.diff").read_text()


@pytest.fixture(scope="module")
def fixture_db(tmp_path_factory):
    db = tmp_path_factory.mktemp("outdb") / "db"
    analyze_json(MINILINUX, db)
    return db


@pytest.mark.parametrize("args, first_words", [
    (["emit", "--diff", "/nonexistent/x.diff"], "/nonexistent/x.diff: cannot write (no directory"),
    (["emit", "--spatch", "/proc/x"], "/proc/x: cannot create the directory"),
    (["emit", "--series", "/proc/x"], "/proc/x: cannot create the directory"),
    (["explain", "--dot", "/nonexistent/x.dot", "tinyfs_writepage"], "/nonexistent/x.dot: cannot write"),
])
def test_an_unwritable_output_is_one_line_and_exit_2(fixture_db, args, first_words):
    code, _, err = run_cli(*args, "--db", str(fixture_db), "-q")
    assert code == 2
    assert err.startswith(f"mappingpass: error: {first_words}") and err.count("\n") == 1
    assert "Traceback" not in err


def test_a_failed_write_leaves_the_old_file(fixture_db, tmp_path, monkeypatch):
    """Written through a temporary file and a rename: a failure in between
    leaves what was there, and no temporary file."""
    import os as os_

    from mappingpass import output

    target = tmp_path / "p.diff"
    target.write_text("old\n")

    def broken(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(output.os, "replace", broken)
    code, _, err = run_cli("emit", "--diff", str(target), "--db", str(fixture_db), "-q")
    assert code == 2 and "p.diff: cannot write (No space left on device)" in err
    assert target.read_text() == "old\n" and os_.listdir(tmp_path) == ["p.diff"]


def test_a_diff_of_a_file_with_invalid_utf8_keeps_its_bytes(minilinux_copy, tmp_path):
    path = minilinux_copy / "fs" / "tinyfs" / "file.c"
    # a Latin-1 comment in the context of a rewritten read
    path.write_bytes(path.read_bytes().replace(b"/* Helper: the block", b"/* caf\xe9: the block", 1))
    _, data = emitted_diff(minilinux_copy, tmp_path)
    assert b"+++ b/fs/tinyfs/file.c" in data and b" /* caf\xe9: the block" in data
    subprocess.run(["git", "init", "-q", str(minilinux_copy)], check=True)
    subprocess.run(["git", "-C", str(minilinux_copy), "apply", "--check", str(tmp_path / "emitted.diff")], check=True)


class _Payload:
    """Unpickling this runs a command (what a poisoned CI cache would hold)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os as os_
        return (os_.system, (f"touch {self.marker}",))


def test_a_poisoned_graph_cache_runs_no_code(tmp_path):
    import pickle

    db = tmp_path / "db"
    analyze_json(MINILINUX, db)
    marker = tmp_path / "pwned"
    with open(db / "analysis.pickle", "wb") as fh:  # the payload where the key and graph go
        pickle.dump(_Payload(marker), fh)
        pickle.dump(_Payload(marker), fh)
    code, out, err = run_cli("plan", "--db", str(db), "-q")
    assert code == 1 and "functions gaining the parameter" in out, err  # rebuilt, as if missing
    assert not marker.exists()


def test_the_plan_cache_is_used_only_when_it_is_the_plan(tmp_path):
    """A warm plan reads the plan the last command computed; a cached plan
    under a key of another index, a payload, or a plan whose fields hold the
    wrong types is computed again, with the same answer."""
    import pickle

    from mappingpass import safepickle
    from mappingpass.plan import records

    db = tmp_path / "db"
    analyze_json(MINILINUX, db)
    code, first, _ = run_cli("plan", "--db", str(db), "--format", "json", "-q")
    cache = db / "plan.pickle"
    assert code == 1 and cache.exists()
    with open(cache, "rb") as fh:
        key, plan = safepickle.load(fh), safepickle.load(fh)
    assert records.well_formed(plan)
    bad_line = dataclasses.replace(plan, functions=(dataclasses.replace(plan.functions[0], line="7"),
                                                    *plan.functions[1:]))
    empty = dataclasses.replace(plan, functions=(), call_sites=(), rewrites=())
    marker = tmp_path / "pwned"
    for payload in ((key, bad_line), (key + "x", empty), (key, _Payload(marker)), (_Payload(marker), empty)):
        with open(cache, "wb") as fh:
            pickle.dump(payload[0], fh)
            pickle.dump(payload[1], fh)
        assert run_cli("plan", "--db", str(db), "--format", "json", "-q")[1] == first
        assert not marker.exists()
    with open(cache, "wb") as fh:  # the right key and a well-formed plan: used as it is
        safepickle.dump(key, fh)
        safepickle.dump(empty, fh)
    assert json.loads(run_cli("plan", "--db", str(db), "--format", "json", "-q")[1])["summary"]["functions"] == 0


def test_poisoned_facts_run_no_code_and_are_refused_in_one_line(tmp_path):
    import pickle
    import sqlite3
    import zlib

    db = tmp_path / "db"
    analyze_json(MINILINUX, db)
    (db / "analysis.pickle").unlink()
    marker = tmp_path / "pwned"
    conn = sqlite3.connect(db / "index.sqlite")
    conn.execute("UPDATE files SET facts=? WHERE path='fs/tinyfs/file.c'",
                 (zlib.compress(pickle.dumps(_Payload(marker))),))
    conn.commit()
    conn.close()
    code, _, err = run_cli("plan", "--db", str(db), "-q")
    assert code == 2 and not marker.exists()
    assert err.count("\n") == 1 and "the facts stored for fs/tinyfs/file.c are not this tool's" in err
    # and the advice helps: analyze parses that file again (it kept the damaged row before)
    assert "re-run analyze (it parses that file again)" in err
    report = analyze_json(MINILINUX, db)
    assert report["files"]["parsed_this_run"] == 1
    assert run_cli("plan", "--db", str(db), "-q")[0] in (0, 1)


def _tree_bytes(path):
    return {p.name: p.read_bytes() for p in sorted(path.iterdir()) if p.is_file()}


def test_a_read_only_database_is_read_not_written(tmp_path, monkeypatch):
    """A --db the user cannot write (a shared cache, another user's): plan,
    check and emit work on a copy in memory and write nothing back."""
    from mappingpass.index import store as index

    db = tmp_path / "db"
    analyze_json(MINILINUX, db)
    (db / "analysis.pickle").unlink()  # plan would cache the graph again if it could
    before = _tree_bytes(db)
    real_access = os.access
    monkeypatch.setattr(index.os, "access", lambda p, mode: False if mode == os.W_OK else real_access(p, mode))
    for args in (["plan"], ["check"], ["emit", "--diff", str(tmp_path / "p.diff")]):
        code, _, err = run_cli(*args, "--db", str(db), "-q")
        assert code in (0, 1), (args, err)
        assert "readonly" not in err
    assert _tree_bytes(db) == before


def test_analyze_into_an_index_it_cannot_write_says_so(tmp_path, monkeypatch):
    """analyze into a directory (or an index) it cannot write -- read only,
    immutable, a read-only mount -- says that, not "not a mappingpass index,
    remove this one"."""
    from mappingpass.index import store as index

    db = tmp_path / "db"
    analyze_json(MINILINUX, db)
    real_access = os.access
    monkeypatch.setattr(index.os, "access", lambda p, mode: False if mode == os.W_OK else real_access(p, mode))
    code, _, err = run_cli("analyze", str(MINILINUX), "--db", str(db), "-q")
    assert code == 2 and f"{db / 'index.sqlite'}: cannot write the index here" in err, err
    assert "remove" not in err and "Traceback" not in err
    monkeypatch.undo()

    def no_temp_file(*a, **k):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(index.tempfile, "TemporaryFile", no_temp_file)
    code, _, err = run_cli("analyze", str(MINILINUX), "--db", str(db), "-q")
    assert code == 2 and err.startswith(f"mappingpass: error: {db}: cannot write the index here "
                                        "(Operation not permitted)"), err


def test_db_naming_a_file_says_what_db_is(tmp_path):
    target = tmp_path / "notes.txt"
    target.write_text("mine\n")
    for args in (["analyze", str(MINILINUX)], ["plan"]):
        code, _, err = run_cli(*args, "--db", str(target), "-q")
        assert code == 2 and "not a directory; --db names the directory" in err and "delete" not in err
    assert target.read_text() == "mine\n"


def test_a_second_run_on_one_database_waits_for_the_first(tmp_path):
    import fcntl

    db = tmp_path / "db"
    analyze_json(MINILINUX, db)
    holder = open(db / ".lock", "a")  # noqa: SIM115 - another run holding the database
    fcntl.flock(holder, fcntl.LOCK_EX)
    proc = subprocess.Popen([sys.executable, "-m", "mappingpass", "plan", "--db", str(db), "-q"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # it says so as it starts to wait (however slow its start on a busy machine), then waits
    first = proc.stderr.readline()
    assert first == f"mappingpass: waiting for another run on {db} to finish\n", first
    time.sleep(0.5)
    assert proc.poll() is None  # still waiting
    holder.close()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and err == "", err


def test_an_interrupted_analyze_exits_130_and_keeps_what_it_parsed(minilinux_copy, tmp_path, monkeypatch):
    from mappingpass.index import tree as index

    real_work, calls = index._work, []

    def work(item):
        calls.append(item)
        if len(calls) == 6:
            raise KeyboardInterrupt
        return real_work(item)

    monkeypatch.setattr(index, "_work", work)
    db = tmp_path / "db"
    code, _, err = run_cli("analyze", str(minilinux_copy), "--db", str(db), "-q", "-j", "1")
    assert code == 130 and err == "mappingpass: interrupted\n"
    monkeypatch.setattr(index, "_work", real_work)
    again = analyze_json(minilinux_copy, db)
    assert again["files"]["reused"] == 5  # the five parsed before ^C


def test_sigterm_is_handled_as_ctrl_c(minilinux_copy, tmp_path):
    """A CI runner's timeout sends SIGTERM: one line, exit 143, and what was
    parsed is kept (as with ^C); no worker prints a traceback."""
    import signal

    big = minilinux_copy / "fs" / "many"
    big.mkdir()
    for i in range(4000):  # enough files that the run is still going when the signal comes
        (big / f"f{i}.c").write_text(f"int many_{i}(struct page *page)\n{{\n\treturn page->mapping != 0;\n}}\n")
    db = tmp_path / "db"
    proc = subprocess.Popen([sys.executable, "-m", "mappingpass", "analyze", str(minilinux_copy), "--db", str(db),
                             "-j", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = proc.stderr.readline()  # "analyze: 1/N files": parsing has begun
    assert first.startswith("analyze: 1/"), first
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    if proc.returncode == 0:
        pytest.skip("the run finished before the signal (a fast machine)")
    assert proc.returncode == 143, err
    assert err.splitlines()[-1] == "mappingpass: terminated (SIGTERM); what was done so far is kept", err
    assert "Traceback" not in err
    again = analyze_json(minilinux_copy, db)
    assert again["files"]["reused"] > 0


def _rule_keys(shape, path=()):
    """Every key of the rules schema, with its shape: (path, shape)."""
    from mappingpass import rules_schema as rs

    if isinstance(shape, rs.Table):
        for key, sub in shape.items():
            yield (*path, key), sub
            yield from _rule_keys(sub, (*path, key))
    elif isinstance(shape, list) and isinstance(shape[0], rs.Table):
        yield from _rule_keys(shape[0], (*path, 0))


def _wrong(shape):
    from mappingpass import rules_schema as rs

    if isinstance(shape, (rs.Table, rs.FreeTable)):
        return 7
    if isinstance(shape, list):
        return "not a list"
    if isinstance(shape, (rs.OneOf, rs.Ints)) or shape in (int, bool):
        return "not one of them"
    return 7  # where a string belongs


def _schema_keys():
    from mappingpass import rules_schema as rs
    return [p for p, _ in _rule_keys(rs.SCHEMA)]


@pytest.mark.parametrize("path", _schema_keys(), ids=lambda p: ".".join(map(str, p)))
def test_every_rules_key_is_type_checked(path):
    """A wrong value for any key of the rules is an error naming that key
    (the real rules file with one value replaced)."""
    import copy
    import tomllib

    from mappingpass import rules_schema as rs

    data = tomllib.loads((REPO / "rules" / "mapping.toml").read_text())
    shapes = dict(_rule_keys(rs.SCHEMA))
    mutated = copy.deepcopy(data)
    target = mutated
    for i, step in enumerate(path[:-1]):
        if isinstance(step, int):  # the first entry of a list of tables (one made if none)
            if not target:
                target.append({})
            target = target[0]
        else:
            target = target.setdefault(step, [] if isinstance(shapes[path[:i + 1]], list) else {})
    target[path[-1]] = _wrong(shapes[path])
    bad = rs.check(mutated)
    assert bad is not None and f"'{path[-1]}'" in bad, bad
    assert rs.check(data) is None


def test_an_unknown_rules_key_is_an_error_naming_it(tmp_path):
    text = (REPO / "rules" / "mapping.toml").read_text().replace("scope_kinds = ", "scope_kind = ", 1)
    bad = tmp_path / "r.toml"
    bad.write_text(text)
    code, _, err = run_cli("analyze", str(MINILINUX), "--db", str(tmp_path / "db"), "--rules", str(bad), "-q")
    assert code == 2 and "unknown key 'scope_kind' in [plan]" in err and not (tmp_path / "db").exists()


def test_a_symlinked_source_is_indexed_once_and_apply_keeps_the_link(minilinux_copy, tmp_path):
    link = minilinux_copy / "fs" / "tinyfs" / "file_link.c"
    link.symlink_to("file.c")
    (minilinux_copy / "fs" / "tinyfs" / "dangling.c").symlink_to("nowhere.c")
    db = tmp_path / "db"
    result = analyze_json(minilinux_copy, db)
    assert result["not_indexed"] == {"dangling symlink": 1, "symlink into the tree (indexed at its target)": 1}
    assert not any(r["file"].endswith(("file_link.c", "dangling.c")) for r in result["reads"])
    subprocess.run(["git", "init", "-q", str(minilinux_copy)], check=True)
    diff = tmp_path / "p.diff"
    code, _, err = run_cli("emit", "--db", str(db), "--diff", str(diff), "--apply", "--force", "-q")
    assert code == 0, err
    assert diff.read_text().count("+++ b/fs/tinyfs/file.c\n") == 1
    assert link.is_symlink() and os.readlink(link) == "file.c"


def test_a_symlink_out_of_the_tree_is_not_written_through(minilinux_copy, tmp_path):
    outside = tmp_path / "elsewhere.c"
    real = minilinux_copy / "fs" / "tinyfs" / "file.c"
    outside.write_bytes(real.read_bytes())
    real.unlink()
    real.symlink_to(outside)
    db = tmp_path / "db"
    analyze_json(minilinux_copy, db)
    before = outside.read_bytes()
    code, _, err = run_cli("emit", "--db", str(db), "--apply", "--force", "-q")
    assert code == 2 and "is a symlink to" in err and "outside the tree; nothing was changed" in err
    assert outside.read_bytes() == before and real.is_symlink()


def test_an_unreadable_file_stops_the_plan_unless_allowed(minilinux_copy, tmp_path, monkeypatch):
    from mappingpass.index import tree as index

    real_open = os.open

    def guarded_open(path, *args, **kwargs):
        if str(path).endswith("fs/smallfs/inode.c"):
            raise PermissionError(13, "Permission denied")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(index.os, "open", guarded_open)  # (root reads a chmod 000 file anyway)
    db = tmp_path / "db"
    result = analyze_json(minilinux_copy, db, "-j", "1")
    assert {"file": "fs/smallfs/inode.c", "reason": "unreadable: Permission denied"} in result["skipped"]
    monkeypatch.undo()
    code, _, err = run_cli("plan", "--db", str(db), "-q")
    assert code == 2 and "1 files of" in err and "(fs/smallfs/inode.c)" in err and "--allow-unread" in err
    code, out, _ = run_cli("plan", "--db", str(db), "-q", "--allow-unread")
    assert code == 1 and "functions gaining the parameter" in out


@pytest.mark.parametrize("make", ["empty", "no-c-files"])
def test_a_tree_without_sources_is_an_error(tmp_path, make):
    tree = tmp_path / "tree"
    tree.mkdir()
    if make == "no-c-files":
        (tree / "README").write_text("not a kernel\n")
    code, _, err = run_cli("analyze", str(tree), "--db", str(tmp_path / "db"), "-q")
    assert code == 2 and "no .c or .h files here" in err


def test_a_file_deleted_after_analyze_is_one_line_not_a_grep_failure(minilinux_copy, tmp_path):
    db = tmp_path / "db"
    analyze_json(minilinux_copy, db)
    (minilinux_copy / "fs" / "smallfs" / "dir.c").unlink()  # parsed
    (minilinux_copy / "include" / "linux" / "kthread.h").unlink()  # deferred: plan greps it
    (db / "analysis.pickle").unlink()
    code, out, err = run_cli("plan", "--db", str(db), "-q")
    assert code == 1 and "functions gaining the parameter" in out, err
    code, _, err = run_cli("emit", "--db", str(db), "--diff", str(tmp_path / "p.diff"), "-q")
    assert code == 2 and err.count("\n") == 1
    assert "fs/smallfs/dir.c: cannot read (No such file or directory); re-run analyze" in err
    code, out, err = run_cli("plan", "--db", str(db), "-q")  # and the next command is not stuck
    assert code == 1, err


def test_version_and_help_say_what_each_command_does_and_its_exit_codes(capsys):
    from mappingpass import __version__
    from mappingpass.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out == f"mappingpass {__version__}\n"
    for command in ("analyze", "plan", "explain", "check", "emit", "review"):
        with pytest.raises(SystemExit):
            main([command, "-h"])
        out = capsys.readouterr().out
        assert "exit status: 0 success; 1 found what the command exists to find" in out, command
        assert out.split("\n\n")[1].strip(), command  # a description under the usage
    with pytest.raises(SystemExit):
        main(["-h"])
    assert "The commands, in pipeline order:" in capsys.readouterr().out


@pytest.mark.parametrize("jobs", ["1000", "-3", "two"])
def test_jobs_out_of_range_is_a_usage_error(tmp_path, jobs, capsys):
    from mappingpass.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["analyze", str(MINILINUX), "--db", str(tmp_path / "db"), "-j", jobs])
    assert exc.value.code == 2 and "argument -j/--jobs" in capsys.readouterr().err
    assert not (tmp_path / "db").exists()


def test_emit_has_no_json_format(fixture_db, capsys):
    from mappingpass.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["emit", "--db", str(fixture_db), "--diff", "-", "--format", "json"])
    assert exc.value.code == 2 and "unrecognized arguments: --format json" in capsys.readouterr().err


def test_an_internal_error_is_one_line_and_exit_3(fixture_db, monkeypatch):
    from mappingpass.cli import common

    def broken(*args, **kwargs):
        raise KeyError("a bug of ours")

    monkeypatch.setattr(common.workspace, "compute_plan", broken)
    code, _, err = run_cli("plan", "--db", str(fixture_db), "-q")
    assert code == 3 and err.count("\n") == 1
    assert err.startswith("mappingpass: internal error: KeyError: 'a bug of ours' (a bug: please report it")
    monkeypatch.setenv("MAPPINGPASS_DEBUG", "1")
    with pytest.raises(KeyError):
        run_cli("plan", "--db", str(fixture_db), "-q")


def test_analyze_reports_the_rules_entries_the_tree_does_not_have(tmp_path):
    """Rule drift: an entry naming a function no file of the tree mentions (a
    kernel that renamed it) is listed by analyze, in text and JSON."""
    import json as jsonmod

    rules = tmp_path / "r.toml"
    text = (REPO / "rules" / "mapping.toml").read_text()
    cut = text.index("[plan.context]")
    rules.write_text(text[:cut] + '[[plan.lookup]]\nfunction = "filemap_get_folio_renamed"\narg = 0\n'
                     'why = "a lookup of a newer kernel"\n\n' + text[cut:])
    code, out, err = run_cli("analyze", str(MINILINUX), "--db", str(tmp_path / "db"), "--rules", str(rules),
                             "--format", "json", "-q")
    assert code == 0, err
    drift = jsonmod.loads(out)["rules_drift"]
    assert {"entry": "plan.lookup filemap_get_folio_renamed", "name": "filemap_get_folio_renamed"} in drift
    assert "filemap_get_folio" not in {d["name"] for d in drift}  # the fixture has that one
    code, out, _ = run_cli("analyze", str(MINILINUX), "--db", str(tmp_path / "db"), "--rules", str(rules))
    assert f"rules      {len(drift)} entries name what this tree has nowhere" in out


def test_mappingpass_db_sets_the_index_directory(tmp_path, monkeypatch):
    """`MAPPINGPASS_DB`: every command finds the index without --db, from any directory."""
    db = tmp_path / "index"
    env = {**os.environ, "MAPPINGPASS_DB": str(db)}
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for argv in (["analyze", str(MINILINUX), "-q"], ["plan", "-q"]):
        proc = subprocess.run([sys.executable, "-m", "mappingpass", *argv], cwd=elsewhere, env=env,
                              capture_output=True, text=True, check=False)
        assert proc.returncode in (0, 1), proc.stderr
    assert (db / "index.sqlite").exists() and not (elsewhere / ".mappingpass").exists()
    assert "functions gaining the parameter" in proc.stdout


@pytest.mark.parametrize("old, new, key", [
    ('name = "mapping"\n# When', 'name = "mapping); system(1); (void"\n# When',
     "'name' in [plan.parameter] must be a C identifier"),
    ('type = "struct address_space *"', 'type = "struct address_space *); x("',
     "'type' in [plan.parameter] must be a C type"),
])
def test_rules_values_written_into_c_must_be_c(tmp_path, old, new, key):
    text = (REPO / "rules" / "mapping.toml").read_text()
    assert old in text
    bad = tmp_path / "r.toml"
    bad.write_text(text.replace(old, new, 1))
    code, _, err = run_cli("analyze", str(MINILINUX), "--db", str(tmp_path / "db"), "--rules", str(bad))
    assert code == 2 and err.count("\n") == 1 and key in err, err


def test_what_is_not_a_regular_file_is_a_counted_skip(minilinux_copy, tmp_path):
    """A FIFO named *.c would hang the read, a *.c link to /dev/zero never end
    it, a file name that is not UTF-8 cannot be a key of the index: each is
    skipped and counted, the rest of the tree analysed."""
    os.mkfifo(minilinux_copy / "fs" / "pipe.c")
    (minilinux_copy / "fs" / "zero.c").symlink_to("/dev/zero")
    os.close(os.open(os.path.join(os.fsencode(minilinux_copy), b"fs", b"caf\xe9.c"), os.O_CREAT | os.O_WRONLY))
    proc = subprocess.run([sys.executable, "-m", "mappingpass", "analyze", str(minilinux_copy), "--db",
                           str(tmp_path / "db"), "--format", "json", "-q"], capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    skipped = result["not_indexed"]
    assert skipped.get("not a regular file (a FIFO, device or socket)") == 2, skipped
    assert skipped.get("file name is not UTF-8") == 1, skipped
    assert len(result["reads"]) == 101


def test_rules_other_than_the_index_was_made_with_are_refused(tmp_path):
    """`emit --rules rules/index.toml` on a mapping index used to mix the two
    (a `->mapping` read written as page_index_wp); an edited rules file too."""
    db = tmp_path / "db"
    rules = tmp_path / "mapping.toml"
    rules.write_text((REPO / "rules" / "mapping.toml").read_text())
    assert run_cli("analyze", str(MINILINUX), "--db", str(db), "--rules", str(rules), "-q")[0] == 0
    code, _, err = run_cli("emit", "--db", str(db), "--diff", str(tmp_path / "d"), "--rules",
                           str(REPO / "rules" / "index.toml"), "-q")
    assert code == 2 and err.count("\n") == 1 and "the index was made with other rules" in err, err
    assert not (tmp_path / "d").exists()
    rules.write_text(rules.read_text() + "\n# an edit\n")
    code, _, err = run_cli("plan", "--db", str(db), "-q")
    assert code == 2 and "has changed since" in err and "mappingpass analyze" in err, err


def test_plan_check_and_explain_warn_when_a_file_changed_since_analyze(minilinux_copy, tmp_path):
    db = tmp_path / "db"
    assert run_cli("analyze", str(minilinux_copy), "--db", str(db), "-q")[0] == 0
    assert run_cli("plan", "--db", str(db), "-q")[2] == ""
    target = minilinux_copy / "fs" / "tinyfs" / "file.c"
    target.write_text("/* moved down a line */\n" + target.read_text())
    for argv in (["plan"], ["check"], ["explain", "tinyfs_map_block"]):
        code, _, err = run_cli(*argv, "--db", str(db), "-q")
        assert "warning: 1 files changed since analyze (fs/tinyfs/file.c)" in err, (argv, err)


def test_a_directory_outside_a_kernel_tree_warns(tmp_path):
    (tmp_path / "loose").mkdir()
    (tmp_path / "loose" / "a.c").write_text("int f(struct page *page)\n{\n\treturn page->mapping != 0;\n}\n")
    code, _, err = run_cli("analyze", str(tmp_path / "loose"), "--db", str(tmp_path / "db"), "-q")
    assert code == 0 and "warning:" in err and "is not inside a kernel tree" in err, err
    code, _, err = run_cli("analyze", str(MINILINUX), "--db", str(tmp_path / "db2"), "-q")
    assert code == 0 and err == ""


def test_a_damaged_index_is_refused_or_recomputed_never_trusted(tmp_path):
    """A cache a pull request can write: file rows in a state the tool never
    writes are refused in one line (an empty plan with exit 0 before); meta
    values that are not JSON, or JSON of the wrong shape, are recomputed."""
    import sqlite3

    db = tmp_path / "db"
    analyze_json(MINILINUX, db)
    code, first, _ = run_cli("plan", "--db", str(db), "--format", "json", "-q")
    conn = sqlite3.connect(db / "index.sqlite")
    for key, value in (("plan_unseen", "not json"), ("plan_searched", "[1, 2]"), ("rules_drift", "{")):
        conn.execute("UPDATE meta SET value=? WHERE key=?", (value, key))
    conn.commit()
    (db / "plan.pickle").unlink()
    assert run_cli("plan", "--db", str(db), "--format", "json", "-q")[1] == first
    # what the facts were parsed with, damaged: refused (analyze finds the accessors again)
    conn.execute("UPDATE meta SET value='42' WHERE key='derived_accessors'")
    conn.commit()
    code, _, err = run_cli("plan", "--db", str(db), "-q")
    assert code == 2 and "accessors it found in the code is damaged" in err, err
    assert run_cli("analyze", str(MINILINUX), "--db", str(db), "-q")[0] == 0
    assert run_cli("plan", "--db", str(db), "--format", "json", "-q")[1] == first
    conn.execute("UPDATE files SET state='parsed; DROP' WHERE path LIKE 'fs/%'")
    conn.commit()
    conn.close()
    code, _, err = run_cli("plan", "--db", str(db), "-q")
    assert code == 2 and err.count("\n") == 1 and "the index is damaged" in err and "analyze" in err, err
