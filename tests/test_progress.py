"""Every long step says so on stderr: analyze, plan, emit --series and a
review on a cold index, run as a user runs them (stderr a pipe, not a
terminal), print a line as each phase begins; with -q they print nothing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from conftest import MINILINUX

ENV = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org",
       "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org"}


def _run(*argv: str, cwd=None) -> tuple[int, str]:
    proc = subprocess.run([sys.executable, "-m", "mappingpass", *argv], capture_output=True, text=True,
                          env=ENV, cwd=cwd, check=False)
    return proc.returncode, proc.stderr


def test_each_long_phase_announces_itself(tmp_path):
    db = tmp_path / "db"
    code, err = _run("analyze", str(MINILINUX), "--db", str(db))
    assert code == 0, err
    assert "analyze: " in err and "/" in err.split("analyze: ", 1)[1].splitlines()[0]  # analyze: N/M files
    assert "analyze: the accessors the code defines, then the call graph" in err
    code, err = _run("plan", "--db", str(db))
    assert code == 1 and "plan: the fixpoint" in err and "searching the tree for mentions" in err, err
    code, err = _run("emit", "--db", str(db), "--series", str(tmp_path / "series"))
    assert code == 0, err
    assert "emit --series: diffs: 1/" in err and "emit: wrote" in err, err
    assert "emit --series: author t <t@example.org> (from $GIT_AUTHOR_NAME and $GIT_AUTHOR_EMAIL" in err
    for argv in (("analyze", str(MINILINUX), "--db", str(tmp_path / "db2"), "-q"), ("plan", "--db", str(db), "-q"),
                 ("emit", "--db", str(db), "--series", str(tmp_path / "s2"), "-q")):
        assert _run(*argv)[1] == "", argv


def test_a_review_on_a_cold_index_shows_its_analysis(tmp_path):
    tree = tmp_path / "tree"
    shutil.copytree(MINILINUX, tree)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", "-C", str(tree)]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "base"], check=True)
    f = tree / "fs/tinyfs/file.c"
    f.write_text(f.read_text() + "\nint tinyfs_lonely(struct page *page)\n{\n\treturn page->mapping != 0;\n}\n")
    subprocess.run([*git, "commit", "-q", "-am", "a read"], check=True)
    code, err = _run("review", str(tree), "--base", "HEAD~1", "--db", str(tmp_path / "db"))
    assert code in (0, 1), err
    lines = err.splitlines()
    assert lines[0].startswith("review: no index in")
    assert any(ln.startswith("review: analyze: 1/") for ln in lines), lines
    assert "review: building the graph of the new index" in lines
    assert any(ln.startswith("review: 1 changed files") for ln in lines), lines


def test_long_test_steps_print_a_progress_line_past_the_capture(monkeypatch):
    """conftest.say writes through pytest's terminal reporter (a captured
    print would stay silent until the test ends, minutes later in CI)."""
    import conftest

    lines: list[str] = []

    class Reporter:
        def write_line(self, line: str) -> None:
            lines.append(line)

    monkeypatch.setattr(conftest, "_REPORTER", Reporter())
    conftest.say("extracting linux-source-6.1")
    assert len(lines) == 1 and lines[0].startswith("[tests ") and lines[0].endswith("] extracting linux-source-6.1")
    monkeypatch.setattr(conftest, "_REPORTER", None)
    conftest.say("nothing to write to")  # outside pytest's terminal: a no-op
    assert len(lines) == 1
