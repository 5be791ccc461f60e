"""The plan stage: the passdown fixpoint over the graph (README.md, "plan").

    add_mapping_parameter(func):
        add a mapping parameter to func
        for each caller of func:
            pass the mapping at that call site
            if caller can already supply it: continue
            add_mapping_parameter(caller)

made precise: "can already supply it" is `context.Context`'s question --
where the page the read (or the call) is about came from, and which
expression in scope denotes its mapping: a lookup or a carrier names it, a
provider of the best rank stands for a page parameter, several of one rank
need a human, none means the function gains the parameter *for that page
parameter*, and each caller answers the same question for the page it passes.
Identity tests become membership tests, NULL and flag tests stay, pages of
never-protected mappings need nothing. A function that gains the parameter
while bound to a slot makes the slot gain it, hence every function bound to
the slot and every call through it; recursion ends on the `gains` set;
boundaries (syscalls, exported symbols when the rules say so, functions
nobody calls or registers, callers in kind 2-5 code) stop the propagation and
are reported as unresolved with their chain.

The result is a `Plan` of plain, sorted records with a JSON form
(`Plan.to_json`, schema `mappingpass.plan/1`). Same analysis and rules, same
bytes."""

from .context import Context, Decision, Origin
from .fixpoint import make_plan, plan_with_rounds
from .mentions import accounted, changed_names, mentions, outside_mentions, outside_names, unseen_mentions
from .records import PLAN_SCHEMA, CallSite, Kept, Plan, PlanFunction, PlanSlot, Rewrite, Step, Unresolved, well_formed

__all__ = ["PLAN_SCHEMA", "CallSite", "Context", "Decision", "Kept", "Origin", "Plan", "PlanFunction", "PlanSlot",
           "Rewrite", "Step", "Unresolved", "accounted", "changed_names", "make_plan", "mentions", "plan_with_rounds",
           "well_formed",
           "outside_mentions", "outside_names", "unseen_mentions"]
