"""Sizes a reader can take in: no function or method of the package over 60 lines, no module
over 600 (counted from the source with ``ast``, decorators and docstrings included).

``python tests/test_sizes.py`` lists the largest functions and modules."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

from test_imports import MODULES

MAX_FUNCTION_LINES = 60
MAX_MODULE_LINES = 600


def function_lengths() -> list[tuple[int, str]]:
    """(lines, ``module:qualified.name``) of every function and method, longest first."""
    out: list[tuple[int, str]] = []

    def visit(node: ast.AST, prefix: str, module: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    first = min([child.lineno, *(d.lineno for d in child.decorator_list)])
                    out.append((child.end_lineno - first + 1, f"{module}:{name}"))  # type: ignore[operator]
                visit(child, name + ".", module)
            else:
                visit(child, prefix, module)

    for module, path in MODULES.items():
        visit(ast.parse(path.read_text(encoding="utf-8")), "", module)
    return sorted(out, reverse=True)


def module_lengths() -> list[tuple[int, str]]:
    """(lines, module) of every module, longest first."""
    return sorted(((len(p.read_text(encoding="utf-8").splitlines()), m) for m, p in MODULES.items()), reverse=True)


def test_no_function_over_the_limit():
    long = [f"{name}: {n} lines" for n, name in function_lengths() if n > MAX_FUNCTION_LINES]
    assert not long, "\n".join(long)


def test_no_module_over_the_limit():
    long = [f"{name}: {n} lines" for n, name in module_lengths() if n > MAX_MODULE_LINES]
    assert not long, "\n".join(long)


def test_the_count_sees_nested_functions_and_methods():
    names = {name for _, name in function_lengths()}
    assert "tagtune.search:run_search" in names
    assert any(name.startswith("tagtune.tune.schedulers:StopRule.") for name in names)


if __name__ == "__main__":
    top = int(sys.argv[1]) if len(sys.argv) > 1 else 15
    print("largest functions:")
    for n, name in function_lengths()[:top]:
        print(f"  {n:4d}  {name}")
    print("largest modules:")
    for n, name in module_lengths()[:top]:
        print(f"  {n:4d}  {name} ({Path(str(MODULES[name])).relative_to(Path(__file__).resolve().parents[1])})")
