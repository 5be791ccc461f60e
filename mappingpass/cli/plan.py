"""`mappingpass plan` and `mappingpass explain`."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys

from .. import plan as planmod
from ..errors import InputError
from ..output import write_atomic
from ..workspace import deferred_definitions, precise_front_end
from .common import plan_for


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


def cmd_plan(args: argparse.Namespace) -> int:
    plan, _ = plan_for(args)
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
    print(f"  functions gaining the parameter  {s['functions']} ({s['signature_only']} only for the signature "
          "of a slot they implement)")
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


def _explain_unparsed(args: argparse.Namespace) -> int:
    """A function of a file the index deferred (vfs_read in fs/read_write.c):
    found by parsing those files that name it, here and now."""
    name = args.function.split("::")[-1]
    where = deferred_definitions(args.db, name)
    if args.function != name:
        where = [w for w in where if w[0] == args.function.split("::")[0]]
    if not where:
        raise InputError(f"{args.function}: no such function in the tree; use path::name for a static function")
    out = [{"id": args.function, "gains": False, "deferred": True, "file": f, "line": line,
            "callers": [], "reads": [], "kept": []} for f, line in where]
    if args.format == "json":
        json.dump(out, sys.stdout, indent=1)
        sys.stdout.write("\n")
        return 0
    for e in out:
        print(f"{name} ({e['file']}:{e['line']}) does not gain the parameter: its file holds no read of the "
              "mapping and names no function the plan changes (the index parsed it only now, for this answer)")
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    plan, analysis = plan_for(args, show_progress=False)
    ids = _find(plan, analysis, args.function)
    if not ids:
        return _explain_unparsed(args)
    by_id = {f.id: f for f in plan.functions}
    stopped = {u.function: u for u in plan.unresolved}
    out = []
    for fid in ids:
        entry: dict = {"id": fid}
        if fid in by_id:
            f = by_id[fid]
            entry.update(gains=True, param=f.param_name, chain=[vars(s) for s in f.reason],
                         signature_only=fid in plan.signature_only())
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
            if e.get("signature_only"):
                print(f"{e['id']} gains `{e['param']}` only for its slot's signature (nothing in it uses it):")
            elif e["gains"]:
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
