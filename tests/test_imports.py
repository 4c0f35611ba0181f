"""The import structure of the tagtune package: no import cycles, no reach into another
package's private modules or names.

Read from the source with ``ast`` (nothing is imported), over every module of the installed
``tagtune`` package (the folders ``pyproject.toml``'s package-dir table maps, read from there:
tagtune/, trainables/, tracking/, dashboards/, search_spaces/).  An import of ``a.b.c`` is an
edge to ``a.b.c`` and, when the importer is not inside it, to the package ``a.b`` whose
``__init__`` runs first.  Imports under ``if TYPE_CHECKING:`` are not edges.

The ``ALLOWED_*`` sets are empty: an exception added there has to say why, in a comment.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _setuptools_config() -> tuple[list[str], dict[str, str]]:
    """pyproject's package list and its package-dir table (import name -> folder), where the
    mapping of the top-level folders to ``tagtune.*`` is written once."""
    import tomllib

    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    return list(tool["packages"]), dict(tool["package-dir"])


PACKAGE_DIRS = {name: ROOT / folder for name, folder in _setuptools_config()[1].items()}

# Module-level cycles anywhere in tagtune (each as the sorted modules of one cycle).
ALLOWED_MODULE_CYCLES: set[tuple[str, ...]] = set()
# Cycles counting function-level imports too (before issue 11: cli <-> demo, and one knot of
# trainables: loop <-> audio, data._cache <-> data._dataset, data <-> data._dataset, ...).
ALLOWED_LAZY_CYCLES: set[tuple[str, ...]] = set()
# (importer, imported) pairs that reach into another package's private module or name.
ALLOWED_PRIVATE: set[tuple[str, str]] = set()


@dataclass(frozen=True)
class Import:
    """One import statement's target, resolved to a module of the package where it is one."""

    importer: str
    module: str
    """The imported module (``from m import submodule`` names the submodule)."""
    name: str | None
    """The imported name when it is not a module (``from m import name``), else ``None``."""
    top_level: bool


def _modules() -> dict[str, Path]:
    """Every module of the package: dotted name -> file."""
    out: dict[str, Path] = {}
    for pkg, folder in PACKAGE_DIRS.items():
        for file in sorted(folder.rglob("*.py")):
            rel = file.relative_to(folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            name = ".".join([pkg, *parts])
            if any(part.startswith(".") for part in rel.parts):
                continue
            out.setdefault(name, file)
    return out


MODULES = _modules()


def _is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def _package_of(name: str) -> str:
    """The package a module belongs to (a package ``__init__`` belongs to itself)."""
    return name if _is_package(name) else name.rpartition(".")[0]


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(body: list[ast.stmt], top_level: bool):
    """(statement, whether it runs at import time) for every import, skipping TYPE_CHECKING."""
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node, top_level
        elif isinstance(node, ast.If) and _is_type_checking(node):
            yield from _walk(node.orelse, top_level)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            yield from _walk(node.body, False)
        elif isinstance(node, ast.ClassDef):
            yield from _walk(node.body, top_level)
        else:
            for field in ("body", "orelse", "finalbody", "handlers"):
                inner = getattr(node, field, None)
                if isinstance(inner, list):
                    yield from _walk([n for n in inner if isinstance(n, ast.AST)], top_level)


def _resolve(importer: str, node: ast.ImportFrom) -> str:
    """The absolute module of a ``from ... import`` (relative imports resolved)."""
    if not node.level:
        return node.module or ""
    base = _package_of(importer).split(".")
    base = base[: len(base) - node.level + 1]
    return ".".join([*base, node.module] if node.module else base)


def _imports(name: str) -> list[Import]:
    """Every import of module ``name`` that targets the package."""
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    out: list[Import] = []
    for node, top in _walk(tree.body, True):
        if isinstance(node, ast.Import):
            out += [Import(name, a.name, None, top) for a in node.names if a.name in MODULES]
            continue
        module = _resolve(name, node)
        if module not in MODULES:
            continue
        for alias in node.names:
            sub = f"{module}.{alias.name}"
            if sub in MODULES:
                out.append(Import(name, sub, None, top))
            else:
                out.append(Import(name, module, alias.name, top))
    return out


IMPORTS = {name: _imports(name) for name in MODULES}


def _edges(top_level_only: bool, within: str = "tagtune") -> dict[str, set[str]]:
    """importer -> imported modules (and the packages entered on the way), inside ``within``."""
    graph: dict[str, set[str]] = {n: set() for n in MODULES if n == within or n.startswith(within + ".")}
    for importer in graph:
        for imp in IMPORTS[importer]:
            if top_level_only and not imp.top_level:
                continue
            parts = imp.module.split(".")
            targets = {imp.module}
            for i in range(1, len(parts)):
                parent = ".".join(parts[:i])
                if not (importer == parent or importer.startswith(parent + ".")):
                    targets.add(parent)  # its __init__ runs before the module
            graph[importer] |= {t for t in targets if t in graph and t != importer}
    return graph


def _cycles(graph: dict[str, set[str]]) -> set[tuple[str, ...]]:
    """The strongly connected components with more than one module (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: set[tuple[str, ...]] = set()
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.add(tuple(sorted(component)))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _private_reaches() -> set[tuple[str, str]]:
    """(importer, target) where the target is a private module, or a private name, of a package
    the importer is not in."""
    out: set[tuple[str, str]] = set()
    for importer, imports in IMPORTS.items():
        for imp in imports:
            parts = imp.module.split(".")
            for i, part in enumerate(parts):
                if part.startswith("_") and not part.startswith("__"):
                    owner = ".".join(parts[:i])
                    if not (importer == owner or importer.startswith(owner + ".")):
                        out.add((importer, imp.module))
                    break
            if imp.name and imp.name.startswith("_") and not imp.name.startswith("__"):
                if _package_of(imp.module) != _package_of(importer):
                    out.add((importer, f"{imp.module}.{imp.name}"))
    return out


def test_the_checker_sees_the_package():
    assert "tagtune.trainables.loop" in MODULES and "tagtune.trainables.data._source" in MODULES
    loop = {i.module for i in IMPORTS["tagtune.trainables.loop"]}
    assert "tagtune.trainables.batches" in loop and "tagtune.trainables.data" in loop
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == {("a", "b", "c")}


def test_no_module_level_import_cycles():
    cycles = _cycles(_edges(top_level_only=True))
    assert cycles - ALLOWED_MODULE_CYCLES == set(), "\n".join(" <-> ".join(c) for c in cycles)


def test_no_import_cycles_counting_function_level_imports():
    cycles = _cycles(_edges(top_level_only=False))
    assert cycles - ALLOWED_LAZY_CYCLES == set(), "\n".join(" <-> ".join(c) for c in cycles)


def test_no_package_imports_another_packages_private_modules():
    reaches = _private_reaches()
    assert reaches - ALLOWED_PRIVATE == set(), "\n".join(f"{a} imports {b}" for a, b in sorted(reaches))


def _planted_offenders(monkeypatch: pytest.MonkeyPatch) -> dict[str, set]:
    """A made-up package with one offender of each kind, in place of the real one: x._p and y.b
    import each other at module level, y.b imports x.a inside a function (closing a lazy cycle
    through x.a -> y.b) and reaches into x's private module x._p."""
    files = {"tagtune": "tagtune/__init__.py", "tagtune.x": "x/__init__.py", "tagtune.y": "y/__init__.py"}
    files |= {"tagtune.x.a": "x/a.py", "tagtune.x._p": "x/_p.py", "tagtune.y.b": "y/b.py"}
    imports = {name: [] for name in files}
    imports["tagtune.x.a"] = [Import("tagtune.x.a", "tagtune.y.b", None, True)]
    imports["tagtune.x._p"] = [Import("tagtune.x._p", "tagtune.y.b", None, True)]
    imports["tagtune.y.b"] = [
        Import("tagtune.y.b", "tagtune.x._p", None, True),
        Import("tagtune.y.b", "tagtune.x.a", None, False),
    ]
    monkeypatch.setattr(sys.modules[__name__], "MODULES", {k: Path(v) for k, v in files.items()})
    monkeypatch.setattr(sys.modules[__name__], "IMPORTS", imports)
    return {
        "cycles": _cycles(_edges(top_level_only=True)),
        "lazy": _cycles(_edges(top_level_only=False)),
        "private": _private_reaches(),
    }


@pytest.mark.parametrize("allowed", ["cycles", "lazy", "private"])
def test_the_allow_lists_hold_only_live_offenders(allowed, monkeypatch):
    """An entry that no longer offends is deleted from its list (so the lists only shrink). The
    lists are empty today, so the check is also run on a planted offender of each kind: each
    detector finds its own (and only it), and an entry naming something else is stale."""
    allow_list, live = {
        "cycles": (ALLOWED_MODULE_CYCLES, _cycles(_edges(top_level_only=True))),
        "lazy": (ALLOWED_LAZY_CYCLES, _cycles(_edges(top_level_only=False))),
        "private": (ALLOWED_PRIVATE, _private_reaches()),
    }[allowed]
    assert allow_list <= live, f"stale allow-list entries: {sorted(allow_list - live)}"

    planted = _planted_offenders(monkeypatch)[allowed]
    expected = {
        "cycles": {("tagtune.x._p", "tagtune.y.b")},
        "lazy": {("tagtune.x._p", "tagtune.x.a", "tagtune.y.b")},
        "private": {("tagtune.y.b", "tagtune.x._p")},
    }
    assert planted == expected[allowed]
    stale = {("tagtune.x.a", "tagtune.y")} if allowed == "private" else {("tagtune.x", "tagtune.y")}
    assert not stale <= planted  # an entry for an offender that is gone would fail the check above


# -- packaging: one import name ------------------------------------------------------------------


def test_every_package_folder_installs_under_the_one_name_tagtune():
    """pyproject lists every folder holding an ``__init__.py`` as a ``tagtune.*`` package, so a
    new subpackage cannot be left out of the wheel, and nothing installs beside ``tagtune``."""
    packages, package_dir = _setuptools_config()
    assert all(p == "tagtune" or p.startswith("tagtune.") for p in packages)
    assert set(package_dir) <= set(packages)
    on_disk = {
        ".".join([name, *init.parent.relative_to(folder).parts])
        for name, folder in PACKAGE_DIRS.items()
        for init in folder.rglob("__init__.py")
    }
    assert set(packages) == on_disk


def test_the_wheel_installs_one_top_level_name(tmp_path):
    import subprocess
    import sys
    import zipfile

    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(ROOT),
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
        ],
        check=True,
    )
    (wheel,) = tmp_path.glob("tagtune-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"tagtune"}
    assert "tagtune/tracking/schema.py" in names and "tagtune/search_spaces/fc1.yaml" in names


def test_each_mapped_folder_says_its_import_name():
    """The ``__init__`` docstring of every folder pyproject maps names the package it installs as."""
    for name, folder in PACKAGE_DIRS.items():
        doc = ast.get_docstring(ast.parse((folder / "__init__.py").read_text(encoding="utf-8"))) or ""
        assert f"``{name}``" in doc, f"{folder}/__init__.py: say the import name ``{name}`` in the docstring"
