"""`mappingpass analyze`: index a tree (and, with --precise, parse it with
libclang under a configuration), build the graph, report."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from .. import graph as graphmod
from .. import index as indexmod
from ..errors import InputError
from ..resources import fixture_tree
from ..workspace import build_analysis, load_rules, open_store
from .common import jobs_arg, progress, say

ANALYZE_SCHEMA = "mappingpass.analyze/1"
DRIFT_VERSION = 1  # bump when what rules_drift reports changes (its kept copy is then recomputed)


def register(sub, common) -> None:
    a = sub.add_parser("analyze", help="index a tree: functions, calls, slots and mapping reads")
    a.add_argument("paths", nargs="*", metavar="PATH", default=[str(fixture_tree())],
                   help="a kernel tree, or directories inside one (file paths in the results "
                        "are relative to the tree's top); default: the bundled fixtures/minilinux")
    a.add_argument("-j", "--jobs", type=jobs_arg, default=0, help="parallel parsers (default 0: all cores)")
    a.add_argument("--rules", help="rules file (default: the bundled rules/mapping.toml)")
    a.add_argument("--scope", choices=("auto", "all"), default="auto",
                   help="auto: parse files that can hold a read up front, the rest on demand; "
                        "all: parse every file")
    p_ = a.add_argument_group("precise mode (libclang over a configured tree; see README)")
    p_.add_argument("--precise", action="store_true",
                    help="also parse the .c files with libclang under a kernel configuration: calls and "
                         "registrations macros make, exact receiver types")
    p_.add_argument("--config", default="allmodconfig", metavar="allmodconfig|defconfig|FILE",
                    help="the configuration (default allmodconfig; FILE: a .config)")
    p_.add_argument("--build-dir", metavar="DIR",
                    help="where 'make O=DIR <config> prepare' runs (default: inside --db; never the tree)")
    p_.add_argument("--compile-commands", metavar="FILE",
                    help="take each file's flags from a compile_commands.json of a tree you built "
                         "(implies --precise; no make run)")
    common(a)
    a.set_defaults(func=cmd_analyze)


def cmd_analyze(args: argparse.Namespace) -> int:
    for given in args.paths:
        if not Path(given).exists():
            raise InputError(f"{given}: no such directory; give the top of a kernel tree")
        if not Path(given).is_dir():
            raise InputError(f"{given}: not a directory; give the top of a kernel tree")
    root = indexmod.find_tree_top(Path(args.paths[0]))
    if not ((root / "include" / "linux").is_dir() and (root / "Makefile").is_file()):
        # (even with -q: the kind rules and the struct definitions are the tree's)
        print(f"mappingpass: warning: {args.paths[0]} is not inside a kernel tree (no directory above it has "
              "include/linux and a Makefile): paths are taken from it, so the kind rules and the headers "
              "may not apply", file=sys.stderr)
    subpaths = []
    for given in args.paths:
        resolved = Path(given).resolve()
        if resolved != root and root not in resolved.parents:
            raise InputError(f"{given}: not inside the tree {root}; analyze one tree at a time")
        rel = str(resolved.relative_to(root))
        subpaths.append("" if rel == "." else rel)
    rules = load_rules(args.rules)
    jobs = args.jobs or os.cpu_count() or 1
    precise = _precise_setup(args, root, jobs) if args.precise or args.compile_commands else None
    store = open_store(args.db, create=True)
    rules = rules.with_accessors(indexmod.stored_accessors(store))  # (what the store's facts were made with)
    stats = indexmod.index_tree(
        root, subpaths, rules, store, jobs, parse_all=args.scope == "all",
        progress=progress(args.quiet, "analyze"), mode=precise[0] if precise else "",
    )
    if stats.files == 0:
        store.close()
        raise InputError(f"{', '.join(args.paths)}: no .c or .h files here; give the top of a kernel tree "
                         "or directories inside one")
    store.set_meta("root", str(root.resolve()))
    store.set_meta("rules_path", str(Path(rules.path).resolve()))
    store.commit()
    precise_stats = None
    if precise:
        from ..index.precise import driver

        if graphmod.cached(store, rules) is None:
            # the derived accessors first: their parses must not replace libclang's facts
            rules, _ = indexmod.apply_accessors(root, rules, store, store.load_facts(), say(args.quiet))

        precise_stats = driver.run(root, store, rules, precise[1], precise[2], jobs,
                                   lambda label: progress(args.quiet, label))
    started = time.monotonic()
    analysis = graphmod.cached(store, rules)
    if analysis is None:
        say(args.quiet)("analyze: the accessors the code defines, then the call graph")
        rules, analysis = build_analysis(root, rules, store, args.scope == "auto", say(args.quiet))
    graph_seconds = time.monotonic() - started
    result = analyze_report(root, store, stats, analysis, graph_seconds, precise_stats)
    result["parameter"] = rules.plan.param_name if rules.plan else ""  # what kind 1 passes down
    result["rules_drift"] = rules_drift(root, rules, store)
    result["derived_accessors"] = [{"name": n, "why": why} for n, why in rules.derived]
    if precise_stats is not None:
        result["seconds"]["precise"] = precise_stats.seconds
    store.close()
    if args.format == "json":
        # (no timings: the same tree gives the same bytes; the text report has them)
        json.dump({k: v for k, v in result.items() if k != "seconds"}, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        print_analyze_text(result)
    return 0


def _precise_setup(args: argparse.Namespace, root: Path, jobs: int) -> tuple:
    """(index mode, build, compile commands) for --precise: the configured
    build made (or found) out of the tree, or the user's compile_commands.json."""
    try:
        import clang.cindex  # noqa: F401 - precise mode's one dependency, said in one line if missing

        from ..index.precise import driver, kbuild
    except ImportError as exc:
        raise InputError(f"--precise needs libclang's Python bindings ({exc}); "
                         "pip install 'libclang==18.1.1'") from None
    try:
        if args.compile_commands:
            commands = kbuild.compile_commands(Path(args.compile_commands), root)
            if not commands:
                raise InputError(f"{args.compile_commands}: no .c file of {root} in it")
            digest = indexmod.digest_of(json.dumps(commands, sort_keys=True).encode())
            return driver.mode_key("cc-" + digest), None, commands
        build_dir = Path(args.build_dir) if args.build_dir else kbuild.default_build_dir(Path(args.db), args.config)
        build = kbuild.prepare(root, build_dir.resolve(), args.config, jobs, say(args.quiet))
    except kbuild.KbuildError as exc:
        raise InputError(str(exc)) from None
    return driver.mode_key(build.config_digest), build, None


def rules_drift(root: Path, rules, store) -> list[dict]:
    """The rules entries that name a function, macro or table no file of the
    tree mentions (a renamed accessor, a lookup a newer kernel dropped): one
    grep of the whole tree, kept in the index for its content and the rules."""
    key = f"{DRIFT_VERSION}:{store.content_key()}:{rules.digest}"
    kept = store.get_json("rules_drift", {})
    if kept.get("key") == key and isinstance(kept.get("drift"), list):
        return [d for d in kept["drift"] if isinstance(d, dict) and set(d) == {"entry", "name"}]
    named = rules.named()
    found = indexmod.words_found(root, indexmod.readable_sources(root, rules.skip_dirs),
                                 sorted({n for _, n in named}))
    drift = [{"entry": entry, "name": name} for entry, name in named if name not in found]
    store.set_meta("rules_drift", json.dumps({"key": key, "drift": drift}))
    store.commit()
    return drift


def analyze_report(root: Path, store, stats: indexmod.IndexStats, analysis, graph_seconds: float,
                   precise_stats=None) -> dict:
    states = store.state_counts()
    failures = [
        {"file": path, "error_nodes": errors, "lines": list(lines)}
        for path, (errors, lines, _rec, _calls, _open) in sorted(analysis.files.items()) if errors
    ]
    unterminated = [{"file": path, "line": line, "what": what}
                    for path, v in sorted(analysis.files.items()) for what, line in v[4]]
    functions = [
        {"name": d["name"], "id": n, "file": path, "line": line, "static": d["static"]}
        for n, d in analysis.graph.nodes(data=True) if d["type"] == "function"
        for path, line in d["bodies"]
    ]
    functions.sort(key=lambda f: (f["file"], f["line"], f["name"]))
    on_demand = set(store.paths_with_note("on-demand"))
    slots = [
        {"id": n, "kind": d["slot_kind"], "name": d["name"], "owner": d["owner"],
         "params": [t for _, t in d["params"]],
         "bound": [a for a, _, _ in graphmod.edges_in(analysis.graph, n, "binds")],
         "decls": [{"file": p, "line": ln} for p, ln in d["decls"]]}
        for n, d in sorted(analysis.graph.nodes(data=True)) if d["type"] == "slot"
    ]
    calls = sum(v[3] for v in analysis.files.values())
    summary = graphmod.summary(analysis)
    counts = graphmod.graph_stats(analysis.graph)
    report = {
        "schema": ANALYZE_SCHEMA,
        "root": str(root.resolve()),
        "files": {
            "total": stats.files,
            "context": stats.context,
            "parsed": states.get("parsed", 0),
            "deferred": states.get("deferred", 0),
            "skipped": states.get("skipped", 0),
            # parsed by plan since analyze (deferred files that name a function it changes):
            # their functions, calls and slots count here too, their reads are none
            "parsed_on_demand": len(on_demand),
            "functions_on_demand": sum(1 for f in functions if f["file"] in on_demand),
            "parsed_this_run": stats.parsed,
            "reused": stats.reused,
            "non_utf8": stats.non_utf8,
        },
        "skipped": [{"file": p, "reason": n} for p, n in stats.skipped_files],
        # files not indexed: symlinks into the tree or dangling, FIFOs and devices, names that
        # are not UTF-8: reason -> count
        "not_indexed": dict(sorted(stats.skipped.items())),
        "parse_failures": {
            "files_with_errors": len(failures),
            "error_nodes": sum(f["error_nodes"] for f in failures),
            "recovered_functions": sum(v[2] for v in analysis.files.values()),
            # a comment or literal never closed: what follows it is not what the compiler sees
            "unterminated": unterminated,
            "files": failures,
        },
        "functions": functions,
        "calls": {
            "sites": calls,
            "call_edges": counts["call_edges"],
            "slot_call_edges": counts["slot_call_edges"],
            "unresolved_member_calls": analysis.unresolved_member_calls,
        },
        "slots": slots,
        "bindings": counts["bindings"],
        "reads": [r.to_json() for r in analysis.reads],
        "candidates": [r.to_json() for r in analysis.candidates],
        "reads_by_kind": summary["reads_by_kind"],
        "reads_by_subsystem": summary["reads_by_subsystem"],
        "seconds": {"index": round(stats.seconds, 3), "graph": round(graph_seconds, 3)},
    }
    if precise_stats is not None:
        report["precise"] = {
            **precise_stats.to_json(), "macro_call_edges": counts["macro_call_edges"],
            # (headers: tree-sitter's facts, counted once analyze parsed those its types need)
            "headers_tree_sitter": store.conn.execute(
                "SELECT COUNT(*) FROM files WHERE state='parsed' AND path LIKE '%.h'").fetchone()[0],
        }
    return report


def print_analyze_text(r: dict) -> None:
    f = r["files"]
    pf = r["parse_failures"]
    print(f"tree       {r['root']}")
    context = f" (and {f['context']} headers of include/ for context)" if f["context"] else ""
    by_plan = f" ({f['parsed_on_demand']} of them by plan since, on demand)" if f["parsed_on_demand"] else ""
    print(f"files      {f['total']} .c/.h{context}: "
          f"{f['parsed']} parsed{by_plan}, {f['deferred']} deferred (parsed on demand by plan), "
          f"{f['skipped']} skipped; this run parsed {f['parsed_this_run']}, reused {f['reused']}")
    if f["non_utf8"]:
        print(f"           {f['non_utf8']} files have non-UTF-8 bytes (parsed as bytes)")
    for s in r["skipped"][:10]:
        print(f"  skipped  {s['file']}: {s['reason']}")
    if r["not_indexed"]:
        print("  not indexed  " + ", ".join(f"{n} {why}" for why, n in r["not_indexed"].items()))
    print(f"parse      {pf['files_with_errors']} files with tree-sitter errors "
          f"({pf['error_nodes']} error nodes), {pf['recovered_functions']} functions recovered")
    if pf["unterminated"]:
        print(f"           {len(pf['unterminated'])} comments or literals never closed, so what follows them "
              "is not analysed as code: " + ", ".join(f"{u['file']}:{u['line']} ({u['what']})"
                                                       for u in pf["unterminated"][:5])
              + (", ..." if len(pf["unterminated"]) > 5 else ""))
    in_plans = f" ({f['functions_on_demand']} of them in files plan parsed on demand, which hold no read)" \
        if f["functions_on_demand"] else ""
    print(f"functions  {len(r['functions'])}{in_plans}")
    c = r["calls"]
    print(f"calls      {c['sites']} sites, {c['call_edges']} direct edges, "
          f"{c['slot_call_edges']} through slots ({c['unresolved_member_calls']} member calls "
          "with no known slot)")
    print(f"slots      {len(r['slots'])} ({r['bindings']} bindings)")
    print(f"reads      {len(r['reads'])} ({len(r['candidates'])} candidates with an unknown receiver type)")
    names = {"1": f"fs/vfs: pass the {r.get('parameter') or 'mapping'} down", "2": "core mm: record walks",
             "3": "block completion", "4": "debugging", "5": "GUP write",
             "other": "no kind rule"}
    for kind, n in r["reads_by_kind"].items():
        print(f"  kind {kind:<5} {n:6}  {names.get(kind, '')}")
    top = list(r["reads_by_subsystem"].items())[:12]
    if top:
        print("  by subsystem: " + ", ".join(f"{k} {v}" for k, v in top))
    if "precise" in r:
        print_precise_text(r["precise"])
    derived = r.get("derived_accessors", [])
    if derived:
        names = ", ".join(d["name"] for d in derived[:6]) + (", ..." if len(derived) > 6 else "")
        print(f"accessors  {len(derived)} found from the code (their calls are reads): {names}")
    drift = r.get("rules_drift", [])
    if drift and Path(r["root"]) == fixture_tree().resolve():
        print(f"rules      {len(drift)} entries name what this tree has nowhere (the bundled fixture is not "
              "a kernel: expected)")
    elif drift:
        print(f"rules      {len(drift)} entries name what this tree has nowhere (renamed or removed?):")
        for d in drift[:8]:
            print(f"  {d['entry']}")
        if len(drift) > 8:
            print(f"  ... and {len(drift) - 8} more (--format json lists them all)")
    s = r["seconds"]
    extra = "".join(f", {k} {v:.1f} s" for k, v in s.get("precise", {}).items())
    print(f"time       index {s['index']:.1f} s{extra}, graph {s['graph']:.1f} s")


def print_precise_text(p: dict) -> None:
    where = f" in {p['build_dir']}" if p["build_dir"] else ""
    print(f"precise    {p['config']}{where}: {p['merged']} of {p['targets']} .c files with libclang's facts "
          f"(parsed {p['parsed']}, reused {p['reused']}); tree-sitter only: {len(p['failed'])} with libclang "
          f"errors, {len(p['not_compiled'])} this configuration does not compile, "
          f"{p['headers_tree_sitter']} headers")
    print(f"           added {p['added']['macro_body_calls']} calls made in macro bodies, "
          f"{p['added']['macro_registrations']} registrations made by macros; "
          f"{p['receivers_settled']} receiver types settled, {p['marked_macro_arg_calls']} calls in macro "
          f"arguments; kept {p['skipped_range_facts']} tree-sitter facts in #if branches not built")
    print(f"           {p['macro_call_edges']} call edges from macro bodies (a function they reach "
          "keeps its signature: macro-body-call)")
    if p["macro_body_reads"] or p["clang_only_source_calls"]:
        print(f"           not used: {p['macro_body_reads']} ->mapping reads in macro bodies (no span to "
              f"rewrite), {p['clang_only_source_calls']} calls only libclang saw in the file")
    for f in p["failed"][:5]:
        print(f"  libclang {f['file']}: {f['error']}")
