"""What every command after analyze starts from, and the plan they share.

`open_analysis` opens the index (store), its tree, the rules and the cached
graph; `compute_plan` runs the passdown fixpoint with its rounds of on-demand
parsing (deferred files that mention a name the plan changes) and the search
for mentions the index cannot see; `load_inputs` is what emit, check and
review read. Plain arguments in, records out, `InputError` (a `UserError`)
for what the user can fix: the CLI and the review bot call the same code.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from . import graph as graphmod
from . import index as indexmod
from . import plan as planmod
from . import rules as rulesmod
from . import safepickle
from .errors import InputError
from .facts import FileFacts
from .index.cparse import Extractor

# label -> a progress callback (done, total), or None for none
ProgressFactory = Callable[[str], "Callable[[int, int], None] | None"]


class Workspace(NamedTuple):
    store: indexmod.Store
    root: Path
    rules: rulesmod.Rules
    analysis: graphmod.Analysis


class EmitInputs(NamedTuple):
    plan: planmod.Plan
    facts: dict[str, FileFacts]  # every parsed file's facts
    rules: rulesmod.Rules
    root: Path
    digests: dict[str, str]  # path -> content digest at analyze time


def open_store(db: str | Path, create: bool) -> indexmod.Store:
    try:
        return indexmod.Store(Path(db), create=create)
    except indexmod.StoreError as exc:
        raise InputError(str(exc)) from None


def load_rules(path: str | None) -> rulesmod.Rules:
    try:
        return rulesmod.load(path)
    except rulesmod.RulesError as exc:
        raise InputError(str(exc)) from None


def store_rules(store, rules_path: str | None = None) -> rulesmod.Rules:
    """The rules the store's facts were made with: the file's, and the
    accessors analyze derived from the tree's code."""
    rules = load_rules(rules_path or store.get_meta("rules_path"))
    if indexmod.accessors_damaged(store):
        raise InputError(f"{store.db_dir}: the index's record of the accessors it found in the code is damaged; "
                         "run 'mappingpass analyze' again (it finds them again)")
    made_with = _scope_rules_digest(store)
    if made_with and made_with != (rules.source_digest or rules.digest):
        how = (f"--rules {rules_path} is not the rules file it was made with ({store.get_meta('rules_path')})"
               if rules_path else f"{rules.path} has changed since")
        raise InputError(f"{store.db_dir}: the index was made with other rules: {how}; run 'mappingpass analyze' "
                         "with these rules (into another --db to keep this index)")
    return rules.with_accessors(indexmod.stored_accessors(store))


def _scope_rules_digest(store) -> str:
    """The digest of the rules file analyze made the index with ("" if the
    index does not say)."""
    scope = store.get_json("scope")
    return scope[2] if isinstance(scope, list) and len(scope) > 2 and isinstance(scope[2], str) else ""


def build_analysis(root: Path, rules: rulesmod.Rules, store, expand: bool,
                   log: Callable[[str], None] | None = None) -> tuple[rulesmod.Rules, graphmod.Analysis]:
    """What analyze (and review on a cold index) build after indexing: the
    accessors derived from the code (files that call a new one parsed again),
    the struct definitions that type a receiver from deferred headers
    (expand), and the graph, cached. Returns the rules with the accessors."""
    facts = store.load_facts()
    try:
        rules, facts = indexmod.apply_accessors(root, rules, store, facts, log)
    except indexmod.StoreError as exc:
        raise InputError(str(exc)) from None
    if expand:
        for _ in range(4):
            tags = sorted(graphmod.missing_types(facts, rules.plan.chain_from if rules.plan else None))
            if tags and log:
                log(f"analyze: looking for {len(tags)} struct types in the deferred headers")
            added = indexmod.expand_types(root, rules, store, tags) if tags else []
            if not added:
                break
            facts += store.load_facts(added)
    if log:
        log(f"analyze: the call graph of {len(facts)} files")
    return rules, graphmod.load_or_build(store, rules, facts)


def open_analysis(db: str | Path, rules_path: str | None = None) -> Workspace:
    """The store, its root, rules and graph (built or from the cache)."""
    store = open_store(db, create=False)
    try:
        return _analysis_of(store, db, rules_path)
    except BaseException:
        store.close()  # (an error must not keep the index locked)
        raise


def _analysis_of(store, db: str | Path, rules_path: str | None) -> Workspace:
    root = store.get_meta("root")
    if root is None:
        raise InputError(f"{db}: the index is empty; run 'mappingpass analyze PATH --db {db}'")
    counts = store.state_counts()
    damaged = sorted(set(counts) - {"parsed", "deferred", "skipped"})
    if damaged:
        raise InputError(f"{db}: the index is damaged ({sum(counts[s] for s in damaged)} file rows in a state "
                          f"mappingpass never writes: {', '.join(map(repr, damaged[:3]))}); remove {db} (mappingpass "
                          f"made it) and run 'mappingpass analyze {root} --db {db}' again")
    if store.reset or not counts:
        raise InputError(f"{db}: the index was made by another version of mappingpass and holds no facts "
                         f"now; re-run 'mappingpass analyze {root} --db {db}'")
    rules = store_rules(store, rules_path)
    return Workspace(store, Path(root), rules, graphmod.load_or_build(store, rules))


class FactsCache:
    """path -> FileFacts, read from the store on first use."""

    def __init__(self, store) -> None:
        self.store = store
        self.cache: dict = {}

    def forget(self, paths) -> None:
        for p in paths:
            self.cache.pop(p, None)

    def __call__(self, path: str):
        if path not in self.cache:
            found = self.store.load_facts([path])
            self.cache[path] = found[0] if found else None
        return self.cache[path]


# bump when what compute_plan keeps as unseen changes (2: outside mentions,
# 3: functions no caller can pass a mapping to are pruned first)
UNSEEN_VERSION = 3


def _unseen_key(store, rules) -> str:
    # the code too: another version's rounds may have searched for other names
    return f"{UNSEEN_VERSION}:{store.content_key()}:{rules.digest}:{safepickle.code_digest()}"


def _plan_key(store, rules) -> str:
    return _unseen_key(store, rules)


def _cached_plan(store, rules) -> planmod.Plan | None:
    """The plan computed last time, if the store, the rules and the code are
    the same (warm plan, emit, check: the fixpoint is run once)."""
    obj = safepickle.read_keyed(store.db_dir / "plan.pickle", _plan_key(store, rules))
    if isinstance(obj, planmod.Plan) and planmod.well_formed(obj):
        return obj
    return None  # missing, stale or foreign: computed again


def _save_plan(store, rules, plan: planmod.Plan) -> None:
    if getattr(store, "readonly", False):
        return
    try:
        safepickle.write_keyed(store.db_dir / "plan.pickle", _plan_key(store, rules), plan)
    except OSError:
        pass  # a full disk: the plan is only not cached


def stale_files(db: str | Path, paths) -> list[str]:
    """Which of paths (relative to the indexed tree) changed since analyze
    read them: their line numbers and edits may no longer be right."""
    wanted = sorted(set(paths))
    store = open_store(db, create=False)
    try:
        root, rows = Path(store.get_meta("root") or "."), store.rows_of(wanted)
    finally:
        store.close()
    return [rel for rel in wanted if rel in rows and indexmod.changed_since(root, rel, rows[rel])]


def _refuse_unread(store, root: Path, allow_unread: bool) -> None:
    unread = [p for p, note in store.skipped() if note.startswith("unreadable")]
    if unread and not allow_unread:
        raise InputError(f"{len(unread)} files of {root} could not be read ({', '.join(unread[:3])}"
                         f"{', ...' if len(unread) > 3 else ''}): a function or slot the plan changes may "
                         "be used there and break; make them readable and re-run analyze, "
                         "or pass --allow-unread")


def compute_plan(db: str | Path, rules_path: str | None = None, *, allow_unread: bool = False,
                 log: Callable[[str], None] | None = None,
                 progress: ProgressFactory | None = None) -> tuple[planmod.Plan, graphmod.Analysis]:
    """Run the fixpoint, parsing deferred files that mention a changed name
    (a tree-wide textual prefilter) until no new file turns up."""
    store, root, rules, analysis = open_analysis(db, rules_path)
    try:  # (closed on every way out: an error must not keep the index locked)
        return _plan_on(store, root, rules, analysis, allow_unread, log, progress)
    finally:
        store.close()


def _plan_on(store, root: Path, rules, analysis, allow_unread: bool, log, progress):
    if rules.plan is None:
        raise InputError(f"{rules.path}: no [plan] section; add one (see rules/mapping.toml)")
    _refuse_unread(store, root, allow_unread)
    facts = FactsCache(store)
    # a warm run on an unchanged store: the rounds found nothing new last time,
    # and the unseen mentions are those found then
    kept = store.get_json("plan_unseen", {})
    if kept.get("key") == _unseen_key(store, rules):
        plan = _cached_plan(store, rules)
        if plan is None:
            unseen = {fid: tuple(at) for fid, at in kept["unseen"].items()}
            plan = planmod.make_plan(analysis, rules, facts, tuple(store.paths_with_note("on-demand")),
                                     unseen=unseen)
            _save_plan(store, rules, plan)
        return plan, analysis
    if log:
        log("plan: the fixpoint, in rounds that parse the deferred files naming what it changes")
    plan, analysis, searched = _on_demand_rounds(store, root, rules, analysis, facts, log, progress)
    if log:
        log(f"plan: {len(plan.functions)} functions change; searching the tree for mentions the index cannot see")
    unseen = planmod.unseen_mentions(plan, analysis, facts, texts_mentioning(root, store, plan), rules)
    unseen |= _outside_mentions(root, rules, store, plan, analysis)
    plan = planmod.make_plan(analysis, rules, facts, tuple(store.paths_with_note("on-demand")), unseen=unseen)
    store.set_meta("plan_searched", json.dumps({"key": store.content_key(), "names": sorted(searched)}))
    store.set_meta("plan_unseen", json.dumps({"key": _unseen_key(store, rules),
                                              "unseen": {k: list(v) for k, v in sorted(unseen.items())}}))
    store.commit()
    _save_plan(store, rules, plan)
    return plan, analysis


def _on_demand_rounds(store, root: Path, rules, analysis, facts: FactsCache, log, progress):
    """Rounds of the fixpoint without call sites, each parsing the deferred
    files that mention a name the last round changed: (plan, analysis, names
    searched)."""
    # names already searched for in deferred files, valid while the store is unchanged
    searched: set[str] = set()
    memo = store.get_json("plan_searched", {})
    if memo.get("key") == store.content_key():
        searched = set(memo.get("names", []))
    state = {"analysis": analysis, "patched": False}

    def parse_more(words: set[str], fixed: set[str]) -> bool:
        words, fixed = words - searched, fixed - searched
        if not words and not fixed:
            return False
        searched.update(words | fixed)
        try:
            hits = indexmod.grep_files(root, store.searchable_deferred(), sorted(words), sorted(fixed))
        except indexmod.StoreError as exc:
            raise InputError(str(exc)) from None
        if not hits:
            return False
        if log:
            log(f"plan: parsing {len(hits)} deferred files that mention {len(words) + len(fixed)} changed names")
        added = indexmod.parse_deferred(root, rules, store, hits, progress=progress("plan") if progress else None)
        facts.forget(added)  # parsed now: read their facts afresh
        state["analysis"] = patch_in(state["analysis"], rules, root, store, added, facts)
        state["patched"] = True
        return True

    plan = planmod.plan_with_rounds(lambda: state["analysis"], rules, facts, parse_more)
    analysis = state["analysis"]
    patched = state["patched"]
    if patched:
        graphmod.save(store, rules, analysis)  # for the next command
    return plan, analysis, searched


def deferred_definitions(db: str | Path, name: str) -> list[tuple[str, int]]:
    """(file, line) of each definition of function `name` in the files the
    index deferred (parsed here, in memory, and not stored): explain's answer
    for a function of a file that holds no read and names nothing the plan
    changes (the plan parses those on demand)."""
    with open_store(db, create=False) as store:  # (not held while the files are parsed)
        root, rules = Path(store.get_meta("root") or "."), store_rules(store)
        deferred = store.paths_in_state("deferred")
    try:
        hits = indexmod.grep_files(root, deferred, [name]) if name.isidentifier() else []
    except indexmod.StoreError as exc:
        raise InputError(str(exc)) from None
    extractor = Extractor(rules.parse)
    found = []
    for path in hits:
        try:
            with open(root / path, "rb") as fh:
                data = fh.read(indexmod.MAX_FILE_BYTES + 1)
        except OSError:
            continue  # gone since the grep
        if len(data) > indexmod.MAX_FILE_BYTES:
            continue
        facts = extractor.extract(path, data, indexmod.digest_of(data))
        found += [(path, f.line) for f in facts.functions if f.name == name and f.definition]
    return sorted(found)


def texts_mentioning(root: Path, store, plan: planmod.Plan) -> dict[str, bytes]:
    """The bytes of the parsed files that mention a function of the plan."""
    names = sorted({f.name for f in plan.functions})
    if not names:
        return {}
    digests = {p: r.digest for p, r in store.rows().items() if r.state == "parsed"}
    try:
        hits = indexmod.grep_files(root, sorted(digests), names)
    except indexmod.StoreError as exc:
        raise InputError(str(exc)) from None
    texts = {}
    for path in hits:
        try:
            data = (root / path).read_bytes()
        except OSError as exc:
            raise InputError(f"{root / path}: cannot read ({exc.strerror}); re-run analyze") from None
        if indexmod.digest_of(data) != digests[path]:
            raise InputError(f"{root / path}: changed since analyze; re-run 'mappingpass analyze'")
        texts[path] = data
    return texts


def _outside_mentions(root: Path, rules, store, plan: planmod.Plan, analysis) -> dict:
    """A subset's plan keeps what the rest of the tree names (plan.outside_mentions)."""
    outside = indexmod.outside_sources(store, root, rules.skip_dirs)
    names = sorted(planmod.outside_names(plan, analysis))
    if not (outside and names):
        return {}
    try:
        hits = indexmod.grep_files(root, outside, names)
    except indexmod.StoreError as exc:
        raise InputError(str(exc)) from None
    texts = {}
    for path in hits:
        try:
            texts[path] = (root / path).read_bytes()
        except OSError:
            continue  # gone since the grep: nothing to keep for it
    return planmod.outside_mentions(plan, analysis, texts)


def patch_in(analysis, rules, root: Path, store, added: list[str], facts) -> graphmod.Analysis:
    """The analysis with the files just parsed added (graph.update), instead of
    a build from every file's facts: files already in the graph that mention a
    name the new files define or re-type (a callee, a slot, a struct) are
    resolved again from their facts."""
    new = {p: ff for p in added if (ff := facts(p)) is not None}
    words = graphmod.resolution_words({}, new, analysis)
    old: dict = {}
    if words:
        parsed = [p for p in store.paths_in_state("parsed") if p not in new]
        for p in indexmod.grep_files(root, parsed, *graphmod.split_words(words)):
            ff = facts(p)
            if ff is not None:
                old[p] = new[p] = ff
    return graphmod.update(analysis, rules, old, new, load=facts)


def load_inputs(db: str | Path, rules_path: str | None = None, *, allow_unread: bool = False,
                log: Callable[[str], None] | None = None,
                progress: ProgressFactory | None = None) -> EmitInputs:
    """The plan and every parsed file's facts: what emit, check and review read."""
    plan, _ = compute_plan(db, rules_path, allow_unread=allow_unread, log=log, progress=progress)
    with open_store(db, create=False) as store:
        root = Path(store.get_meta("root"))
        rules = store_rules(store, rules_path)
        rows = store.rows()
        paths = sorted(p for p, r in rows.items() if r.state == "parsed")
        facts = {f.path: f for f in store.load_facts(paths)}
    return EmitInputs(plan, facts, rules, root, {p: r.digest for p, r in rows.items()})


def precise_front_end(db: str | Path) -> dict | None:
    """What analyze --precise left in the database (config, files merged), or None."""
    store = open_store(db, create=False)
    try:
        return store.get_json("precise_summary")
    finally:
        store.close()
