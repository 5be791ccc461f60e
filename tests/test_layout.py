"""The package's layout holds: imports run one way (the stages in pipeline
order), no module reaches into another's private names, no import cycle, and
no function longer than a screen or two (120 lines)."""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
from conftest import REPO

PKG = REPO / "mappingpass"
# the stages, lowest first; a module imports only lower stages, its own
# stage's modules and the records and services of stage 0
STAGES = {
    "facts": 0, "types": 0, "errors": 0, "output": 0, "resources": 0, "safepickle": 0, "rules": 0,
    "rules_schema": 0, "model": 0, "ctext": 0,
    "index": 1, "graph": 2, "plan": 3, "emit": 4, "check": 4, "workspace": 4, "review": 5, "cli": 6,
    "__main__": 7, "__init__": 0,
}


def _modules() -> dict[str, tuple[Path, bool]]:
    out = {}
    for path in sorted(PKG.rglob("*.py")):
        parts = list(path.relative_to(PKG).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        if is_pkg:
            parts = parts[:-1]
        out[".".join(parts)] = (path, is_pkg)
    return out


def _imports(name: str, path: Path, is_pkg: bool, modules) -> list[tuple[str, list[str], int]]:
    """(imported module, names taken from it, line) for the package's own imports."""
    base = name.split(".") if name else []
    if not is_pkg:
        base = base[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.ImportFrom) or node.level == 0:
            continue
        up = base[: len(base) - (node.level - 1)] if node.level > 1 else base
        target = ".".join([*up, *(node.module.split(".") if node.module else [])])
        names = [a.name for a in node.names]
        for n in names:  # `from . import graph`: a module
            sub = f"{target}.{n}" if target else n
            if sub in modules:
                found.append((sub, [], node.lineno))
        if target in modules or target == "":
            found.append((target, [n for n in names if f"{target}.{n}".strip(".") not in modules], node.lineno))
    return found


def _stage(module: str) -> int:
    return STAGES[module.split(".")[0]] if module else 0


def test_imports_run_one_way_and_keep_private_names_private():
    modules = _modules()
    graph = nx.DiGraph()
    wrong, private = [], []
    for name, (path, is_pkg) in modules.items():
        graph.add_node(name)
        for target, names, line in _imports(name, path, is_pkg, modules):
            graph.add_edge(name, target)
            same_stage = target.split(".")[0] == name.split(".")[0]
            if not same_stage and _stage(target) >= _stage(name) and _stage(target) != 0:
                wrong.append(f"{path.relative_to(REPO)}:{line}: {name} (stage {_stage(name)}) imports {target} "
                             f"(stage {_stage(target)})")
            own = target == name or (is_pkg and target.startswith(name + ".")) or \
                target.rsplit(".", 1)[0] == name.rsplit(".", 1)[0] and False
            private += [f"{path.relative_to(REPO)}:{line}: {n} from {target}" for n in names
                        if n.startswith("_") and not n.startswith("__") and not own]
    assert not wrong, wrong
    assert not private, private
    cycles = [c for c in nx.simple_cycles(graph) if len(c) > 1]
    # (a package's __init__ re-exporting its modules is no cycle of stages)
    cycles = [c for c in cycles if len({m.split(".")[0] for m in c}) > 1]
    assert not cycles, cycles


def test_no_private_attribute_of_another_module():
    found = []
    for path in sorted(PKG.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and \
                    node.value.id.endswith("mod") and node.attr.startswith("_") and not node.attr.startswith("__"):
                found.append(f"{path.relative_to(REPO)}:{node.lineno}: {node.value.id}.{node.attr}")
    assert not found, found


def test_no_function_over_120_lines():
    long = []
    for path in sorted(PKG.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 120:
                long.append(f"{path.relative_to(REPO)}:{node.lineno}: {node.name} "
                            f"({node.end_lineno - node.lineno + 1} lines)")
    assert not long, long
