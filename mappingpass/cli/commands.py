"""Subcommands after analyze: plan, explain, check. Registered by cli."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from .. import graph as graphmod
from .. import index as indexmod
from .. import plan as planmod
from ..output import write_atomic


def register(sub, common) -> None:
    p = sub.add_parser("plan", help="the passdown fixpoint: what gains the parameter, what each call passes")
    p.add_argument("--rules", help="rules file (default: the one analyze used)")
    common(p)
    p.set_defaults(func=cmd_plan)

    e = sub.add_parser("explain", help="why FUNC gains the parameter: its chain to a read")
    e.add_argument("function", metavar="FUNC", help="function name, or path::name for a static")
    e.add_argument("--rules", help="rules file (default: the one analyze used)")
    e.add_argument("--dot", metavar="FILE", help="write the chain and callers as Graphviz")
    e.add_argument("--svg", metavar="FILE", help="render it as SVG (needs Graphviz's dot)")
    common(e)
    e.set_defaults(func=cmd_explain)
    register_emit(sub, common)
    register_check(sub, common)


def compute_plan(args: argparse.Namespace, progress: bool = True) -> tuple[planmod.Plan, object]:
    """Run the fixpoint, parsing deferred files that mention a changed name
    (a tree-wide textual prefilter) until no new file turns up."""
    from . import InputError, load_analysis

    store, root, rules, analysis = load_analysis(args.db, getattr(args, "rules", None))
    if rules.plan is None:
        raise InputError(f"{rules.path}: no [plan] section; add one (see rules/mapping.toml)")
    unread = [p for p, note in store.skipped() if note.startswith("unreadable")]
    if unread and not getattr(args, "allow_unread", False):
        raise InputError(f"{len(unread)} files of {root} could not be read ({', '.join(unread[:3])}"
                         f"{', ...' if len(unread) > 3 else ''}): a function or slot the plan changes may "
                         "be used there and break; make them readable and re-run analyze, "
                         "or pass --allow-unread")
    # names already searched for in deferred files, valid while the store is unchanged
    searched: set[str] = set()
    memo = json.loads(store.get_meta("plan_searched") or "{}")
    if memo.get("key") == store.content_key():
        searched = set(memo.get("names", []))
    quiet = not progress or args.quiet
    facts = _FactsCache(store)
    # a warm run on an unchanged store: the rounds found nothing new last time,
    # and the unseen mentions are those found then
    key = _unseen_key(store, rules)
    kept = json.loads(store.get_meta("plan_unseen") or "{}")
    if kept.get("key") == key:
        unseen = {fid: tuple(at) for fid, at in kept["unseen"].items()}
        plan = planmod.make_plan(analysis, rules, facts, tuple(store.paths_with_note("on-demand")), unseen=unseen)
        store.close()
        return plan, analysis
    plan = planmod.make_plan(analysis, rules, facts, sites=False)
    patched = False
    for _ in range(12):
        words, fixed = planmod.changed_names(plan, analysis)
        words, fixed = words - searched, fixed - searched
        if not words and not fixed:
            break
        searched |= words | fixed
        try:
            hits = indexmod.grep_files(root, store.searchable_deferred(), sorted(words), sorted(fixed))
        except indexmod.StoreError as exc:
            raise InputError(str(exc)) from None
        if not hits:
            break
        if not quiet:
            print(f"plan: parsing {len(hits)} deferred files that mention "
                  f"{len(words) + len(fixed)} changed names", file=sys.stderr)
        added = indexmod.parse_deferred(root, rules, store, hits,
                                        progress=None if quiet else _progress_bar("plan"))
        facts.forget(added)  # parsed now: read their facts afresh
        analysis = patch_in(analysis, rules, root, store, added, facts)
        patched = True
        plan = planmod.make_plan(analysis, rules, facts, sites=False)
    if patched:
        graphmod.save(store, rules, analysis)  # for the next command
    unseen = planmod.unseen_mentions(plan, analysis, facts, _texts_mentioning(root, store, plan), rules)
    unseen |= _outside_mentions(root, rules, store, plan, analysis)
    plan = planmod.make_plan(analysis, rules, facts, tuple(store.paths_with_note("on-demand")), unseen=unseen)
    store.set_meta("plan_searched", json.dumps({"key": store.content_key(), "names": sorted(searched)}))
    store.set_meta("plan_unseen", json.dumps({"key": _unseen_key(store, rules),
                                              "unseen": {k: list(v) for k, v in sorted(unseen.items())}}))
    store.commit()
    store.close()
    return plan, analysis


def _texts_mentioning(root: Path, store, plan: planmod.Plan) -> dict[str, bytes]:
    """The bytes of the parsed files that mention a function of the plan."""
    from . import InputError

    names = sorted({f.name for f in plan.functions})
    if not names:
        return {}
    digests = {p: r[2] for p, r in store.rows().items() if r[3] == "parsed"}
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


# bump when what compute_plan keeps as unseen changes (2: outside mentions)
UNSEEN_VERSION = 2


def _unseen_key(store, rules) -> str:
    return f"{UNSEEN_VERSION}:{store.content_key()}:{rules.digest}"


def _outside_mentions(root: Path, rules, store, plan: planmod.Plan, analysis) -> dict:
    """A subset's plan keeps what the rest of the tree names (plan.outside_mentions)."""
    from . import InputError

    outside = store.outside_sources(root, rules.skip_dirs)
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


def _progress_bar(label: str):
    from . import _progress

    return _progress(False, label)


class _FactsCache:
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


def precise_front_end(db: str) -> dict | None:
    """What analyze --precise left in the database (config, files merged), or None."""
    store = indexmod.Store(Path(db), create=False)
    try:
        return json.loads(store.get_meta("precise_summary") or "null")
    finally:
        store.close()


def cmd_plan(args: argparse.Namespace) -> int:
    plan, _ = compute_plan(args)
    front = precise_front_end(args.db)
    if args.format == "json":
        data = plan.to_json()
        if front:
            data["front_end"] = front
        json.dump(data, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        if front:
            print(f"front-end: tree-sitter + libclang ({front['config']}: {front['merged']} .c files; "
                  f"macro-body-call boundaries are precise mode's)")
        print_plan_text(plan)
    return 1 if plan.unresolved or plan.summary()["needs_human"] else 0


def _chain_text(chain) -> str:
    parts = []
    for step in chain:
        if step.why == "reads":
            parts.append(f"{step.node} reads {step.detail} ({step.file}:{step.line})")
        else:
            parts.append(f"{step.node} {step.why} {step.detail} ({step.file}:{step.line})")
    return "\n      ".join(parts)


def print_plan_text(plan: planmod.Plan) -> None:
    s = plan.summary()
    print(f"plan ({plan.rules} rules)")
    print(f"  functions gaining the parameter  {s['functions']}")
    print(f"  slots gaining it                 {s['slots']}")
    print(f"  call sites changed               {s['call_sites']}")
    print(f"  reads rewritten                  {s['rewrites']} ({s['identity_rewrites']} identity tests "
          "become membership tests)")
    kept = ", ".join(f"{n} {k}" for k, n in s["kept_reads"].items()) or "none"
    print(f"  kind-1 reads left as they are    {sum(s['kept_reads'].values())} ({kept})")
    print(f"  needs a human                    {s['needs_human']}")
    print(f"  kind 2-5 reads left to run time  {s['runtime_reads']}")
    print(f"  files with edits of the plan     {s['files']} (emit adds the helper's header and "
          "the declarations a file needs)")
    if plan.parsed_on_demand:
        print(f"  deferred files parsed            {len(plan.parsed_on_demand)}")
    print(f"  unresolved                       {s['unresolved']}")
    by_reason: dict[str, list] = {}
    for u in plan.unresolved:
        by_reason.setdefault(u.reason, []).append(u)
    for reason, items in by_reason.items():
        print(f"\nunresolved: {reason} ({len(items)})")
        for u in items[:50]:
            print(f"  {u.file}:{u.line} {u.function}")
            if u.chain:
                print(f"      {_chain_text(u.chain)}")
        if len(items) > 50:
            print(f"  ... {len(items) - 50} more (--format json lists all)")
    human = plan.needs_human()
    if human:
        print(f"\nneeds a human ({len(human)}): which mapping is the page's?")
        for k in human[:50]:
            print(f"  {k.file}:{k.line} {k.function}: {k.expr}")
            print(f"      {k.evidence}")
            for c in k.candidates[:6]:
                print(f"      candidate: {c}")
        if len(human) > 50:
            print(f"  ... {len(human) - 50} more (--format json lists all)")


def _find(plan: planmod.Plan, analysis, name: str) -> list[str]:
    g = analysis.graph
    if name in g:
        return [name]
    return sorted(n for n, d in g.nodes(data=True) if d.get("name") == name and d["type"] == "function")


def cmd_explain(args: argparse.Namespace) -> int:
    from . import InputError

    plan, analysis = compute_plan(args, progress=False)
    ids = _find(plan, analysis, args.function)
    if not ids:
        raise InputError(f"{args.function}: no such function in the index; "
                         "use path::name for a static function")
    by_id = {f.id: f for f in plan.functions}
    stopped = {u.function: u for u in plan.unresolved}
    out = []
    for fid in ids:
        entry: dict = {"id": fid}
        if fid in by_id:
            f = by_id[fid]
            entry.update(gains=True, param=f.param_name, chain=[vars(s) for s in f.reason])
        else:
            entry["gains"] = False
            if fid in stopped:
                entry["unresolved"] = stopped[fid].reason
                entry["chain"] = [vars(s) for s in stopped[fid].chain]
        entry["callers"] = [
            {"file": c.file, "line": c.line, "caller": c.caller, "argument": c.argument, "how": c.how,
             "evidence": c.evidence}
            for c in plan.call_sites if c.callee == fid
        ]
        entry["reads"] = [{"file": r.file, "line": r.line, "from": r.from_, "to": r.to, "evidence": r.evidence}
                          for r in plan.rewrites if r.function == fid]
        entry["kept"] = [{"file": k.file, "line": k.line, "expr": k.expr, "reason": k.reason,
                          "evidence": k.evidence, "candidates": list(k.candidates)}
                         for k in (*plan.kept, *plan.needs_human_sites) if k.function == fid]
        out.append(entry)
    if args.format == "json":
        json.dump(out, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        for e in out:
            if e["gains"]:
                print(f"{e['id']} gains `{e['param']}` because:")
            elif "unresolved" in e:
                print(f"{e['id']} is a boundary ({e['unresolved']}); it would need the mapping because:")
            else:
                print(f"{e['id']} does not gain the parameter (no read of the mapping reaches it)")
            for s in e.get("chain", []):
                what = f"reads {s['detail']}" if s["why"] == "reads" else f"{s['why']} {s['detail']}"
                print(f"  {s['node']} {what}  ({s['file']}:{s['line']})")
            for r in e["reads"]:
                print(f"read {r['file']}:{r['line']}: {r['from']} -> {r['to']}")
                print(f"  because {r['evidence']}")
            for k in e["kept"]:
                print(f"kept {k['file']}:{k['line']}: {k['expr']}  [{k['reason']}]")
                print(f"  because {k['evidence']}")
                for c in k["candidates"]:
                    print(f"  candidate: {c}")
            if e["callers"]:
                print("callers pass:")
                for c in e["callers"]:
                    print(f"  {c['file']}:{c['line']} {c['caller']}: {c['argument']}  [{c['how']}]")
                    if c["evidence"]:
                        print(f"      because {c['evidence']}")
    if args.dot or args.svg:
        dot = to_dot(out)
        if args.dot:
            write_atomic(args.dot, dot)
        if args.svg:
            exe = shutil.which("dot")
            if exe is None:
                raise InputError("--svg needs Graphviz's dot: apt-get install graphviz "
                                 "(or use --dot FILE and render it elsewhere)")
            subprocess.run([exe, "-Tsvg", "-o", args.svg], input=dot.encode(), check=True)
    return 0


def to_dot(entries: list[dict]) -> str:
    lines = ["digraph explain {", "  rankdir=LR;", "  node [shape=box, fontname=monospace];"]
    edges: set[tuple[str, str, str]] = set()
    nodes: set[str] = set()
    for e in entries:
        nodes.add(e["id"])
        for s in e.get("chain", []):
            nodes.add(s["node"])
            if s["why"] == "reads":
                read = f"read: {s['detail']}\\n{s['file']}:{s['line']}"
                nodes.add(read)
                edges.add((s["node"], read, "reads"))
            else:
                nodes.add(s["detail"])
                edges.add((s["node"], s["detail"], s["why"]))
        for c in e["callers"]:
            nodes.add(c["caller"])
            edges.add((c["caller"], e["id"], f"passes {c['argument']}"))
    for n in sorted(nodes):
        lines.append(f'  "{n}";')
    for a, b, label in sorted(edges):
        lines.append(f'  "{a}" -> "{b}" [label="{label}"];')
    lines.append("}")
    return "\n".join(lines) + "\n"


def register_emit(sub, common) -> None:
    e = sub.add_parser("emit", help="the plan as a diff, a semantic patch, a patch series, or applied")
    e.add_argument("--diff", nargs="?", const="-", metavar="FILE",
                   help="write one unified diff (default: stdout)")
    e.add_argument("--spatch", nargs="?", const=".", metavar="DIR",
                   help="write the Coccinelle semantic patch into DIR (default: .)")
    e.add_argument("--series", metavar="DIR", help="write a git format-patch style series into DIR")
    e.add_argument("--maintainers", metavar="FILE",
                   help="MAINTAINERS file for Cc: lines (default: the tree's own, if any)")
    e.add_argument("--author", metavar="'NAME <EMAIL>'",
                   help="the series' From: and Signed-off-by: (default: $GIT_AUTHOR_NAME and "
                        "$GIT_AUTHOR_EMAIL, else git config user.name and user.email)")
    e.add_argument("--no-signoff", action="store_true", help="no Signed-off-by: lines in the series")
    e.add_argument("--apply", action="store_true",
                   help="change the tree in place, atomically (all files or none)")
    e.add_argument("--force", action="store_true", help="with --apply: also on a dirty git tree")
    e.add_argument("--rules", help="rules file (default: the one analyze used)")
    common(e, formats=False)  # (its outputs have their own formats)
    e.set_defaults(func=cmd_emit)


def cmd_emit(args: argparse.Namespace) -> int:
    from .. import emit as emitmod
    from . import InputError, _load_rules, _open_store

    if not (args.diff or args.apply or args.spatch or args.series):
        raise InputError("emit: say what to emit: --diff [FILE], --spatch [DIR], --series DIR or --apply")
    plan, _ = compute_plan(args)
    store = _open_store(args.db, create=False)
    root = Path(store.get_meta("root"))
    rules = _load_rules(getattr(args, "rules", None) or store.get_meta("rules_path"))
    rows = store.rows()
    paths = sorted({p for p, v in rows.items() if v[3] == "parsed"})
    facts = {f.path: f for f in store.load_facts(paths)}
    store.close()
    try:
        texts = emitmod.new_texts(plan, facts, rules, root, {p: v[2] for p, v in rows.items()})
    except emitmod.EmitError as exc:
        raise InputError(str(exc)) from None
    if args.spatch:
        from ..emit import smpl

        decls, header = emitmod.for_spatch(plan, facts, rules, root, {p: v[2] for p, v in rows.items()})
        for path in smpl.write_spatch(plan, rules, Path(args.spatch), tuple(decls), header):
            if not args.quiet:
                print(f"emit: wrote {path}", file=sys.stderr)
    if args.series:
        from ..emit import series as seriesmod

        maintainers = Path(args.maintainers) if args.maintainers else root / "MAINTAINERS"
        if args.maintainers and not maintainers.is_file():
            raise InputError(f"{maintainers}: no such MAINTAINERS file")
        try:
            written = seriesmod.write_series(plan, facts, rules, root, {p: v[2] for p, v in rows.items()},
                                             Path(args.series), maintainers if maintainers.is_file() else None,
                                             author=_author(args, root), signoff=not args.no_signoff,
                                             quiet=args.quiet)
        except emitmod.EmitError as exc:
            raise InputError(str(exc)) from None
        if not args.quiet:
            print(f"emit: wrote {len(written) - 1} patches and a cover letter into {args.series}",
                  file=sys.stderr)
    if args.diff:
        diff = emitmod.unified_diff(texts)
        if args.diff == "-":
            sys.stdout.write(diff)
        else:
            write_atomic(args.diff, diff)
    if args.apply:
        if not args.force and _git_dirty(root):
            raise InputError(f"{root}: the git tree has uncommitted changes; commit them or pass --force")
        try:
            emitmod.apply_atomically(root, texts)
        except emitmod.EmitError as exc:
            raise InputError(str(exc)) from None
        if not args.quiet:
            print(f"emit: changed {len(texts)} files under {root}", file=sys.stderr)
    return 0


def _author(args: argparse.Namespace, root: Path) -> str:
    """Who sends the series: --author, else git's own order (the GIT_AUTHOR_*
    variables, then user.name and user.email as git config gives them in the
    tree, which includes the global ones)."""
    from . import InputError

    if args.author:
        return args.author
    name, addr = os.environ.get("GIT_AUTHOR_NAME"), os.environ.get("GIT_AUTHOR_EMAIL")
    if not (name and addr) and shutil.which("git"):
        def config(key: str) -> str:
            proc = subprocess.run(["git", "-C", str(root), "config", key], capture_output=True, text=True,
                                  check=False)
            return proc.stdout.strip()
        name, addr = name or config("user.name"), addr or config("user.email")
    if not (name and addr):
        raise InputError("emit --series: who is the author? set git config user.name and user.email "
                         "(git config --global ...), or pass --author 'Name <email>'")
    return f"{name} <{addr}>"


def _git_dirty(root: Path) -> bool:
    if shutil.which("git") is None:
        return False
    proc = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                          capture_output=True, text=True, check=False)
    return proc.returncode == 0 and bool(proc.stdout.strip())


def register_check(sub, common) -> None:
    c = sub.add_parser("check", help="run the plan in the write-protect model: a verdict per read")
    c.add_argument("--rules", help="rules file (default: the one analyze used)")
    common(c)
    c.set_defaults(func=cmd_check)


def run_check(args: argparse.Namespace):
    from .. import check as checkmod
    from . import _load_rules, _open_store

    plan, analysis = compute_plan(args)
    store = _open_store(args.db, create=False)
    rules = _load_rules(getattr(args, "rules", None) or store.get_meta("rules_path"))
    facts = {f.path: f for f in store.load_facts()}
    store.close()
    return checkmod.check(plan, analysis, rules, facts)


def cmd_check(args: argparse.Namespace) -> int:
    result = run_check(args)
    if args.format == "json":
        json.dump(result.to_json(), sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        s = result.summary()
        print(f"check: {s['reads']} reads: {s.get('resolvable', 0)} resolvable, "
              f"{s.get('unresolvable', 0)} unresolvable, {s.get('unproven', 0)} unproven, "
              f"{s.get('never-protected', 0)} never protected, {s.get('runtime', 0)} runtime "
              f"(paths bounded at {s['bounds']['paths_per_read']} per read, depth "
              f"{s['bounds']['depth']}; {s['truncated']} reads hit the bound)")
        for v in result.verdicts:
            if v.verdict == "unproven":
                print(f"\n{v.file}:{v.line} {v.function}: {v.expr}: unproven")
                print(f"  {v.missing}")
            if v.verdict != "unresolvable":
                continue
            w = v.witness
            print(f"\n{v.file}:{v.line} {v.function}: {v.expr}")
            print(f"  scenario {w.scenario}: {w.error}")
            if w.argument not in ("(none)",):
                print(f"  argument {w.argument}" + (f" = {w.value}" if w.value else "")
                      + (f"; the page is {w.owner}'s" if w.owner else ""))
            for hop in w.path:
                print(f"    {hop.file}:{hop.line} {hop.caller} -> {hop.callee} ({hop.argument})")
    return 1 if any(v.verdict == "unresolvable" for v in result.verdicts) else 0
