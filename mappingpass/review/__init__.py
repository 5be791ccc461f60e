"""The review stage: what a git range adds to or breaks in the passdown, for a PR bot.

    review(PATH, base, head, db) -> Review

Re-analysis follows the size of the change. The index (`--db`) holds the facts
of one state S of the tree and its cached graph. A revision R differs from S
in a set of files: the range's files, plus whatever S and R disagree on (known
from git when S was anchored to a commit by an earlier review, else from the
work tree, stat first and content digest second, as `index_tree` does). Only
those files are read from git and parsed (or taken from the store when their
digest matches, or from the review's own cache), and the cached graph is
*patched*: their old contributions removed, the new ones resolved with the
graph's own name tables and added (`graph.update`, the function `graph.build`
itself is made of). Files that merely mention a name whose
definition changed are re-resolved from their stored facts; deferred files
that call or bind a changed function or slot are parsed on demand, as `plan`
does. The review never writes the store (so the graph cache stays valid); it
analyzes a cold, empty store first, as `analyze` would.

What it reports (rules in `RULES`, findings as frozen `Finding` records):

* kind-1 reads that are new or changed in the range: in a function that can
  supply the mapping (MP101: use the helper, with the fix), or that cannot
  (MP102: the chain of functions that would need the parameter, from the plan
  run on just those reads, and the check verdict); new reads of kinds 2-5 and
  unclassified ones as notes (MP103, MP104);
* signatures that became inconsistent: a function bound to a slot where one
  has the mapping parameter and the other not (MP201), a call through a
  changed slot or of a changed function that does not pass it (MP202), a
  binding through a cast that hides a changed signature (MP203), a prototype
  that disagrees with its definition (MP204);
* for a generated series (the helper appears, or functions gain the
  parameter): every hunk compared with what the plan computed on the base
  would emit for those lines (any subset of the plan's edit groups counts as
  mechanical, so every commit of a series can be checked), with the check
  verdict of every read it touches (MP301 departs from the plan, MP302
  mechanical but the read stays unresolvable).

Outputs: `to_sarif` (SARIF 2.1.0), `github_annotations`, `to_markdown`,
`to_text`; `Review.to_json` (schema `mappingpass.review/1`)."""

from .findings import analysis_at, review
from .records import (
    LEVELS,
    REVIEW_SCHEMA,
    RULES,
    Finding,
    Hunk,
    ReadVerdict,
    Related,
    Review,
    ReviewError,
    Rule,
    exit_code,
)
from .report import github_annotations, to_markdown, to_sarif, to_text

__all__ = ["LEVELS", "REVIEW_SCHEMA", "RULES", "Finding", "Hunk", "ReadVerdict", "Related", "Review", "ReviewError",
           "Rule", "analysis_at", "exit_code", "github_annotations", "review", "to_markdown", "to_sarif", "to_text"]
