"""The emit stage (SmPL part): the plan as a Coccinelle semantic patch.

`write_spatch` renders `templates/passdown.cocci.j2` into one .cocci file in
the kernel's scripts/coccinelle form (`virtual patch` / `virtual report`),
and the plan into a JSON file beside it that the patch's python reads: tables
keyed by (file, function) and by the text of each call and read, because
spatch 1.1.1 renumbers positions once a rule has changed a function (they
name a temporary file then), so line-based restrictions only hold before the
first change. The
template says why each rule looks the way it does. `run_spatch` applies
.cocci files with the real spatch, one file a group so that the tables can
tell static functions of the same name apart.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import jinja2

from .. import __version__
from ..index.cparse import TRANSPARENT
from ..output import make_dir, write_atomic
from ..plan import Plan
from ..rules import Rules
from .edits import HelperPlacement, unified_diff

TEMPLATES = Path(__file__).resolve().parent / "templates"
# what coccicheck passes: headers are handled as files of their own, never
# pulled in (a header change must come from its own rules, once)
OPTIONS = "--no-includes --include-headers"
_C_BUILTIN = {"void", "char", "short", "int", "long", "float", "double", "signed", "unsigned",
              "_Bool", "bool", "const", "volatile", "struct", "union", "enum"}


_COMMENT = re.compile(r"/\*.*?\*/|//[^\n]*", re.S)


def _norm(text: str) -> str:
    """The key form of an expression: spatch prints it with its own blanks
    (mp_norm in the template does the same on spatch's side)."""
    return "".join(_COMMENT.sub(" ", text).split())


def _name(node_id: str) -> str:
    """A plan id is `path::name` for a static function, else the name."""
    return node_id.rsplit("::", 1)[-1]


def _spatch_names(name: str, rules: Rules) -> set[str]:
    """The names spatch may know a function by: its own, and for one defined
    by a macro (SYSCALL_DEFINE2(smallfs_sync, ...) is `sys_smallfs_sync` in
    the plan) the macro's first argument, which is what spatch calls it."""
    names = {name}
    for _macro, template in rules.parse.definition_macros:
        pre, _, post = template.partition("{0}")
        if len(name) > len(pre) + len(post) and name.startswith(pre) and name.endswith(post):
            names.add(name[len(pre):len(name) - len(post)])
    return names


def _rows(table: dict | set) -> list[list]:
    """A table as sorted JSON rows: key fields, then the value."""
    if isinstance(table, dict):
        return [[*k, table[k]] for k in sorted(table)]
    return [list(k) for k in sorted(table)]


def _dump(data: dict[str, list | str]) -> str:
    """JSON with one row a line: the same plan gives the same bytes, and a
    change of plan gives a readable diff."""
    parts = []
    for key, value in data.items():
        if isinstance(value, list):
            body = ",\n".join("  " + json.dumps(row) for row in value)
            parts.append(f"{json.dumps(key)}: [\n{body}\n]" if value else f"{json.dumps(key)}: []")
        else:
            parts.append(f"{json.dumps(key)}: {json.dumps(value)}")
    return "{\n" + ",\n".join(parts) + "\n}\n"


def spatch_files(plan: Plan, helper: HelperPlacement | None) -> list[str]:
    """Tree-relative paths the semantic patch changes (the helper's header,
    emit.place_helper's choice, included)."""
    paths = set(plan.files())
    if helper is not None:
        paths.add(helper.header)
    return sorted(paths)


def _tables(plan: Plan, rules: Rules, helper: HelperPlacement | None) -> tuple[dict, list[str]]:
    """The plan as the template's tables, and what they cannot express."""
    pr = rules.plan
    gaps: list[str] = []
    definitions: dict[tuple[str, str], str] = {}
    prototypes: dict[tuple[str, str], str] = {}
    for f in plan.functions:
        for path, _ in f.bodies:
            definitions[(path, f.name)] = f.param_name
        for path, _ in f.prototypes:
            prototypes[(path, f.name)] = f.param_name
    members: set[tuple[str, str, str]] = set()
    typedefs: set[str] = set()
    for s in plan.slots:
        if s.kind == "member":
            if not s.owner:
                gaps.append(f"{s.id}: member of an anonymous struct")
            members |= {(path, s.owner, s.name) for path, _ in s.decls}
        elif s.kind == "typedef":
            # a function-type typedef (filler_t) is a prototype to spatch; a
            # pointer typedef (writepage_t) gets a rule of its own
            prototypes.update({(path, s.name): pr.param_name for path, _ in s.decls})
            typedefs.add(s.name)
        # kind "param": the parameter's type follows its typedef (as in emit.py)

    reads: dict[tuple[str, str, int, str], str] = {}
    for r in plan.rewrites:
        for name in _spatch_names(_name(r.function), rules):
            # by line too: the same text may be a read the plan keeps (a NULL test)
            key = (r.file, name, r.line, _norm(r.from_))
            if reads.setdefault(key, r.to) != r.to:
                gaps.append(f"{r.file}:{r.line}: {r.from_} has two rewrites in {name}")
    calls: dict[tuple[str, str, str, int], str] = {}
    # two calls of one callee in one caller may pass different mappings
    # (ext2_rename: the new directory's page, the moved one's): those are told
    # apart by their arguments (lines are no key: in a body an earlier rule
    # changed, spatch 1.1.1 reports lines that are not the file's)
    by_args: dict[tuple[str, str, str, int, str], str] = {}
    for c in plan.call_sites:
        caller = _name(c.caller)
        texts, args = {c.call}, {c.args}
        # reads are rewritten before calls: a called expression (or an
        # argument) that contains a read (page->mapping->a_ops->x) is also
        # known by its new text
        for r in plan.rewrites:
            if r.file == c.file and _name(r.function) == caller:
                if r.from_ in c.call:
                    texts.add(c.call.replace(r.from_, r.to))
                if r.from_ in c.args:
                    args.add(c.args.replace(r.from_, r.to))
        for name in _spatch_names(caller, rules):
            for text in texts:
                key = (c.file, name, _norm(text), c.nargs)
                if calls.setdefault(key, c.argument) != c.argument:
                    calls[key] = ""  # see by_args
                for a in args:
                    k = (*key, _norm(a))
                    if by_args.setdefault(k, c.argument) != c.argument:
                        gaps.append(f"{c.file}:{c.line}: calls of {c.call}({c.args}) in {name} pass different "
                                    "arguments")
    by_args = {k: v for k, v in by_args.items() if calls.get(k[:4]) == ""}
    tables = {
        "data": {
            "definitions": _rows(definitions),
            "prototypes": _rows(prototypes),
            "members": _rows(members),
            "reads": _rows(reads),
            "calls": _rows(calls),
            "calls_by_args": _rows(by_args),
            "helper_header": helper.header if helper else "",
        },
        # for the template's loops
        "definition_names": sorted(set(definitions.values())),
        "prototype_names": sorted(set(prototypes.values())),
        "owners": sorted({owner for _, owner, _ in members if owner}),
        "typedefs": sorted(typedefs),
    }
    return tables, gaps


def _type_names(param_type: str) -> list[str]:
    """Typedef names in the parameter's type: SmPL must be told they are types."""
    words = re.findall(r"[A-Za-z_]\w*", param_type)
    if words and words[0] in ("struct", "union", "enum"):
        return []
    return [w for w in words if w not in _C_BUILTIN]


def render(plan: Plan, rules: Rules, data_file: str, declarations: tuple = (),
           helper: HelperPlacement | None = None, groups_file: str = "") -> tuple[str, str]:
    """The semantic patch's text, and the text of its data file (the plan's
    tables, read by the patch from beside itself: spatch 1.1.1 spends time
    proportional to the size of @initialize:python@ on every script call, 30 s
    on one btrfs file with the tables inline, 1 s with them in a file).
    declarations: emit.Declaration records, lines added after an anchor line
    of one file (`struct address_space;`, `#include <linux/pagemap.h>`);
    helper: where the helper is defined (emit.place_helper), None for nowhere."""
    pr = rules.plan
    if pr is None:
        raise ValueError(f"{rules.path}: no [plan] section; nothing to emit")
    tables, gaps = _tables(plan, rules, helper)
    s = plan.summary()
    decl = f"{pr.param_type}{'' if pr.param_type.endswith('*') else ' '}{pr.param_name}"
    description = [
        f"Pass `{decl}` down to the functions that read",
        f"the {rules.field} field of struct page or struct folio (directly or through",
        f"an accessor); each read becomes {pr.helper_page}() or {pr.helper_folio}()",
        "with the mapping the caller reached the page through.",
        "",
        f"{s['functions']} functions and {s['slots']} slots gain the parameter, "
        f"{s['call_sites']} call sites pass it,",
        f"{s['rewrites']} reads are rewritten; {s['unresolved']} chains are unresolved "
        "(mappingpass plan",
        "lists them with the argument their call sites pass instead).",
    ]
    description += [f"Not covered: {g}" for g in gaps]
    helper_lines = None
    if helper is not None:
        # SmPL must be told which names in the added code are types: the
        # parameter's, and the kernel's `_t` typedefs (pgoff_t, gfp_t) and bool
        types = set(_type_names(pr.param_type))
        types |= set(re.findall(r"\b(?:[A-Za-z_]\w*_t|bool)\b", pr.helper_definition))
        helper_lines = {"page": pr.helper_page, "folio": pr.helper_folio, "header": helper.header,
                        "lines": pr.helper_definition.strip("\n").split("\n"), "types": sorted(types),
                        "before": helper.before}
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), trim_blocks=True,
                             lstrip_blocks=True, keep_trailing_newline=True,
                             undefined=jinja2.StrictUndefined, autoescape=False)
    text = env.get_template("passdown.cocci.j2").render(
        description=description,
        confidence="High" if not gaps else "Moderate",
        version=__version__,
        rules_name=rules.name,
        options=f"{OPTIONS} --file-groups {groups_file}" if groups_file else OPTIONS,
        groups_file=groups_file,
        data_file=data_file,
        helper=helper_lines,
        declarations=list(declarations),
        param_type=pr.param_type,
        sep="" if pr.param_type.endswith("*") else " ",
        position=pr.position,
        type_names=_type_names(pr.param_type),
        slot_name=pr.param_name,
        definition_names=tables["definition_names"],
        prototype_names=tables["prototype_names"],
        member_owners=tables["owners"],
        pointer_typedefs=tables["typedefs"],
        write_wrappers=sorted(rules.write_wrappers) or ["WRITE_ONCE"],
        transparent=sorted(TRANSPARENT),
        # an accessor's answer already wrapped (folio_mapping_wp_of(f, folio_mapping(f), M))
        accessor_wrappers=sorted(rules.parse.converted),
    )
    return text, _dump(tables["data"])


def write_spatch(plan: Plan, rules: Rules, outdir: Path, declarations: tuple = (),
                 helper: HelperPlacement | None = None) -> list[Path]:
    """Write the plan's semantic patch into outdir: the .cocci file and the
    data file it reads from beside itself. Returns both (the .cocci first)."""
    outdir = make_dir(outdir)
    cocci = outdir / f"{rules.name}_passdown.cocci"
    data = outdir / f"{rules.name}_passdown.json"
    groups = outdir / f"{rules.name}_passdown.groups"
    text, table = render(plan, rules, data.name, declarations, helper, groups.name)
    write_atomic(cocci, text)
    write_atomic(data, table)
    write_atomic(groups, groups_text(spatch_files(plan, helper)))
    return [cocci, data, groups]


def groups_text(files: list[str]) -> str:
    """spatch's --file-groups file: one file a group (blank lines between), so
    that the tables tell static functions of the same name apart."""
    return "\n\n".join(files) + "\n"


def sorted_diff(text: str) -> str:
    """spatch's per-file chunks in path order (-j N prints them as they finish)."""
    chunks = re.split(r"(?m)^(?=diff -u -p )", text)
    head, files = chunks[0], chunks[1:]
    return head + "".join(sorted(files, key=lambda c: c.split("\n", 1)[0]))


def run_spatch(cocci_files: list[Path] | list[str], root: Path, files: list[str], *, mode: str = "patch",
               max_width: int | None = None, jobs: int = 1, timeout: float | None = None,
               extra: tuple[str, ...] = ()) -> tuple[int, str, str]:
    """Apply the .cocci files with real spatch to `files` (relative to root)
    without changing them: (exit code, unified diff with a/ b/ tree-relative
    paths, stderr). Several .cocci files are applied one after the other on a
    scratch copy. mode "report" gives spatch's report lines instead of a diff.
    max_width: spatch's --max-width (default 80: changed lines are re-wrapped);
    extra: more spatch options (--macro-file F for macros it cannot parse)."""
    exe = shutil.which("spatch")
    if exe is None:
        raise FileNotFoundError("spatch not found: apt-get install coccinelle")
    root = Path(root).resolve()
    cocci_files = [Path(c) for c in cocci_files if Path(c).suffix == ".cocci"]  # not their data
    with tempfile.TemporaryDirectory(prefix="mappingpass-spatch-") as tmp:
        groups = Path(tmp) / "groups"
        # one file a group: the tables key static functions by their file
        groups.write_text(groups_text(files))
        base = [exe, "--very-quiet", *OPTIONS.split(), "-D", mode, "--file-groups", str(groups)]
        if max_width:
            base += ["--max-width", str(max_width)]
        if jobs > 1:
            base += ["-j", str(jobs)]
        base += list(extra)
        if len(cocci_files) == 1 or mode != "patch":
            out, err, rc = [], [], 0
            for cocci in cocci_files:
                proc = subprocess.run([*base, "--sp-file", str(Path(cocci).resolve()), "--patch", "."],
                                      cwd=root, capture_output=True, text=True, errors="surrogateescape",
                                      timeout=timeout)
                rc = rc or proc.returncode
                # deterministic whatever -j does to the order
                out.append(sorted_diff(proc.stdout) if mode == "patch"
                           else "".join(sorted(proc.stdout.splitlines(keepends=True))))
                err.append(proc.stderr)
            return rc, "".join(out), "".join(err)
        # several patches: each applies to the previous one's result

        scratch = Path(tmp) / "tree"
        for f in files:
            (scratch / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(root / f, scratch / f)
        errs = []
        for cocci in cocci_files:
            proc = subprocess.run([*base, "--sp-file", str(Path(cocci).resolve()), "--in-place",
                                   "--no-show-diff"], cwd=scratch, capture_output=True, text=True,
                                  errors="surrogateescape", timeout=timeout)
            errs.append(proc.stderr)
            if proc.returncode:
                return proc.returncode, "", "".join(errs)
        texts = {f: ((root / f).read_bytes(), (scratch / f).read_bytes()) for f in files}
        return 0, unified_diff({f: v for f, v in texts.items() if v[0] != v[1]}), "".join(errs)
