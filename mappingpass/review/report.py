"""The review as SARIF 2.1.0, GitHub annotations, markdown and text."""

from __future__ import annotations

import dataclasses
import hashlib
from collections import Counter, defaultdict
from pathlib import Path

from .. import __version__
from ..plan import Step
from .records import MARKDOWN_LIMIT, RULES, Finding, Hunk, Review


# -- outputs ---------------------------------------------------------------------------------
def _uri(review: Review, file: str) -> str:
    return f"{review.prefix}{file}"


def _region(line: int, col: int = 0, end_col: int = 0) -> dict:
    r: dict = {"startLine": max(int(line), 1)}
    if col and col > 0:
        r["startColumn"] = int(col)
        if end_col and end_col > col:
            r["endColumn"] = int(end_col)
    return r


def _physical(review: Review, file: str, line: int, col: int = 0, end_col: int = 0) -> dict:
    return {"artifactLocation": {"uri": _uri(review, file), "uriBaseId": "SRCROOT"},
            "region": _region(line, col, end_col)}


def _step_text(s: Step) -> str:
    if s.why == "reads":
        return f"{s.node} reads {s.detail}"
    return f"{s.node} {s.why} {s.detail}"


def to_sarif(review: Review) -> dict:
    """The review as a SARIF 2.1.0 log (one run; hunks in the run's properties)."""
    rule_ids = list(RULES)
    rules = [{
        "id": r.id, "name": r.name,
        "shortDescription": {"text": r.short},
        "fullDescription": {"text": r.help},
        "help": {"text": r.help},
        "defaultConfiguration": {"level": r.level},
        "properties": {"tags": ["mappingpass", "page-mapping"]},
    } for r in RULES.values()]
    results = []
    for f in review.findings:
        res: dict = {
            "ruleId": f.rule, "ruleIndex": rule_ids.index(f.rule), "level": f.level,
            "message": {"text": f.message},
            "locations": [{"physicalLocation": _physical(review, f.file, f.line, f.col, f.end_col)}],
            "partialFingerprints": {"mappingpassFinding/v1": hashlib.sha256(
                f"{f.rule}|{f.file}|{f.key or f.message}".encode()).hexdigest()[:32]},
        }
        if f.function:
            res["locations"][0]["logicalLocations"] = [{"name": f.function.rsplit("::", 1)[-1],
                                                        "fullyQualifiedName": f.function, "kind": "function"}]
        related = [r for r in f.related if r.file and r.line > 0]
        if related:
            res["relatedLocations"] = [{"id": i, "physicalLocation": _physical(review, r.file, r.line),
                                        "message": {"text": r.message}} for i, r in enumerate(related)]
        steps = [s for s in f.chain if s.file and s.line > 0]
        if steps:
            res["codeFlows"] = [{"threadFlows": [{"locations": [
                {"location": {"physicalLocation": _physical(review, s.file, s.line),
                              "message": {"text": _step_text(s)}}} for s in steps]}]}]
        props: dict = {}
        if f.verdict:
            props["verdict"] = f.verdict
        if f.chain:
            props["chain"] = [_step_text(s) for s in f.chain]
        if props:
            res["properties"] = props
        if f.fix and f.col and f.end_col:
            res["fixes"] = [{"description": {"text": f"use {f.fix}"},
                             "artifactChanges": [{"artifactLocation": {"uri": _uri(review, f.file),
                                                                       "uriBaseId": "SRCROOT"},
                                                  "replacements": [{"deletedRegion": _region(f.line, f.col,
                                                                                              f.end_col),
                                                                    "insertedContent": {"text": f.fix}}]}]}]
        results.append(res)
    top = Path(review.git_top).resolve() if review.git_top else Path(review.root)
    return {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "mappingpass", "version": __version__,
                                "semanticVersion": __version__, "rules": rules}},
            "originalUriBaseIds": {"SRCROOT": {"uri": top.as_uri() + "/"}},
            "invocations": [{"executionSuccessful": True,
                             "commandLine": f"mappingpass review --base {review.base} --head {review.head}"}],
            "results": results,
            "properties": {"base": review.base, "head": review.head, "series": review.series,
                           "counts": review.counts(), "hunkCounts": review.hunk_counts(),
                           "hunks": [dataclasses.asdict(h) for h in review.hunks],
                           "planFilesOutside": list(review.plan_files_outside)},
        }],
    }


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def github_annotations(review: Review) -> str:
    """GitHub workflow commands, one line per finding."""
    kinds = {"error": "error", "warning": "warning", "note": "notice"}
    out = []
    for f in review.findings:
        props = [f"file={_escape_property(_uri(review, f.file))}", f"line={max(f.line, 1)}"]
        if f.col:
            props.append(f"col={f.col}")
        props.append(f"title={_escape_property(f'{f.rule} {f.name}')}")
        text = f.message
        if f.chain:
            text += "\n" + "\n".join(f"  {_step_text(s)} ({s.file}:{s.line})" for s in f.chain)
        out.append(f"::{kinds[f.level]} {','.join(props)}::{_escape_data(text)}")
    return "\n".join(out) + ("\n" if out else "")


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def to_markdown(review: Review) -> str:
    """A PR comment: counts first, then findings grouped by file, each with its chain."""
    c = review.counts()
    short = f"`{review.base[:12]}`..`{review.head[:12]}`"
    lines = ["## mappingpass review", "",
             f"{short}: {len(review.files)} C file{'s' if len(review.files) != 1 else ''} changed"
             + (f" ({review.other_files} other)" if review.other_files else ""), "",
             "| errors | warnings | notes |" + (" mechanical hunks | hunks to review |" if review.series else ""),
             "|---:|---:|---:|" + ("---:|---:|" if review.series else ""),
             f"| {c['error']} | {c['warning']} | {c['note']} |"
             + (f" {review.hunk_counts()['mechanical']} | {review.hunk_counts()['needs-review']} |"
                if review.series else ""), ""]
    if review.series:
        lines.append("This range is a mapping-passdown series: each hunk was compared with what "
                     "`mappingpass emit` produces from the base.")
        if review.plan_files_outside:
            shown = ", ".join(f"`{p}`" for p in review.plan_files_outside[:20])
            more = len(review.plan_files_outside) - 20
            lines.append(f"The plan also changes {len(review.plan_files_outside)} files this range does not "
                         f"touch: {shown}{f' and {more} more' if more > 0 else ''}.")
        lines.append("")
    if not review.findings and not review.hunks:
        lines.append("No findings.")
    icons = {"error": ":x:", "warning": ":warning:", "note": ":information_source:"}
    by_file: dict[str, list[Finding]] = defaultdict(list)
    for f in review.findings:
        by_file[f.file].append(f)
    hunks_by_file: dict[str, list[Hunk]] = defaultdict(list)
    for h in review.hunks:
        hunks_by_file[h.file].append(h)
    for file in sorted(set(by_file) | set(hunks_by_file)):
        lines += [f"### `{_uri(review, file)}`", ""]
        for f in by_file.get(file, []):
            where = f" in `{f.function.rsplit('::', 1)[-1]}`" if f.function else ""
            lines.append(f"- {icons[f.level]} **{f.level}** `{f.rule} {f.name}` line {f.line}{where}: "
                         f"{_md(f.message)}")
            if f.verdict:
                lines.append(f"  - check: **{f.verdict}**")
            if f.fix:
                lines.append(f"  - fix: `{f.fix}`")
            for i, s in enumerate(f.chain, 1):
                lines.append(f"  {i}. `{s.node}` {s.why} `{_md(s.detail)}` ({s.file}:{s.line})")
            for r in f.related:
                lines.append(f"  - see {r.file}:{r.line}: {_md(r.message)}")
        if hunks_by_file.get(file):
            hs = hunks_by_file[file]
            verdicts = Counter(v.verdict or "unchecked" for h in hs for v in h.reads)
            shown = [h for h in hs if h.status != "mechanical"
                     or any(v.verdict == "unresolvable" for v in h.reads)]
            summary = (f"{len(hs)} hunk{'s' if len(hs) != 1 else ''}: "
                       f"{sum(1 for h in hs if h.status == 'mechanical')} mechanical, "
                       f"{sum(1 for h in hs if h.status != 'mechanical')} to review")
            if verdicts:
                summary += "; reads touched: " + ", ".join(f"{n} {k}" for k, n in sorted(verdicts.items()))
            lines += (["", summary] if by_file.get(file) else [summary])
            if shown:
                lines += ["", "| hunk | status | reads touched (check) |", "|---|---|---|"]
            for h in shown:
                reads = "; ".join(f"{v.side} `{_md(v.expr)}` in {v.function}: {v.verdict or '-'}"
                                  for v in h.reads) or "-"
                status = h.status + (f": {_md(h.detail)}" if h.detail else "")
                lines.append(f"| -{h.base_start},{h.base_lines} +{h.head_start},{h.head_lines} | {status} | "
                             f"{reads} |")
            left = dict(review.plan_edits_left_out).get(file)
            if left:
                lines.append(f"\nThe plan has {left} more edit{'s' if left != 1 else ''} in this file that the "
                             "range does not make.")
        lines.append("")
    text = "\n".join(lines).rstrip() + "\n"
    if len(text) > MARKDOWN_LIMIT:
        cut = text.rfind("\n", 0, MARKDOWN_LIMIT - 200)
        text = (text[:cut] + "\n\n*(cut here: the comment would be too long for GitHub; the SARIF file "
                "and `--format json` hold every finding)*\n")
    return text


def to_text(review: Review) -> str:
    c = review.counts()
    out = [f"review {review.base[:12]}..{review.head[:12]}: {len(review.files)} C files changed; "
           f"{c['error']} errors, {c['warning']} warnings, {c['note']} notes"]
    if review.series:
        hc = review.hunk_counts()
        out.append(f"series: {hc['mechanical']} hunks mechanical, {hc['needs-review']} need review"
                   + (f"; the plan also changes {len(review.plan_files_outside)} files outside the range"
                      if review.plan_files_outside else ""))
    for f in review.findings:
        out.append(f"{f.file}:{f.line}: {f.level} [{f.rule} {f.name}] {f.message}")
        for s in f.chain:
            out.append(f"    {_step_text(s)} ({s.file}:{s.line})")
    for h in review.hunks:
        if h.status != "mechanical":
            out.append(f"{h.file}: hunk -{h.base_start},{h.base_lines} +{h.head_start},{h.head_lines}: "
                       f"{h.status}: {h.detail}")
    secs = review.stats.get("seconds", {}).get("total")
    if secs is not None:
        out.append(f"time {secs:.2f} s")
    return "\n".join(out) + "\n"
