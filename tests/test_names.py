"""Metric names and tag keys are spelled once: in :mod:`tagtune.names` (``Metrics``, ``Tag``; the run
schema's package :mod:`tagtune.tracking` exports both).  Everywhere else in the package they are read from
there, so a string literal equal to one of them (outside docstrings and the text of f-strings) is
an error.  Read from the source with ``ast``, over every module ``test_imports`` sees."""

from __future__ import annotations

import ast

from test_imports import MODULES

from tagtune.names import Metrics, Tag

HOMES = {"tagtune.names"}
NAMES = Metrics.names() | {v for k, v in vars(Tag).items() if k.isupper() and isinstance(v, str)}


def _literals(source: str) -> list[tuple[int, str]]:
    """(line, value) of every string literal that is code: not a docstring, not the text of an
    f-string (the expressions inside one are code)."""
    tree = ast.parse(source)
    skip: set[int] = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body:
            first = body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                skip.add(id(first.value))
        if isinstance(node, ast.JoinedStr):
            skip |= {id(v) for v in node.values if isinstance(v, ast.Constant)}
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip
    ]


def _offenders(modules: dict[str, str]) -> list[str]:
    return [
        f"{module}:{line}: {value!r}"
        for module, source in modules.items()
        if module not in HOMES
        for line, value in _literals(source)
        if value in NAMES
    ]


def test_names_are_read_from_the_schema():
    sources = {name: path.read_text(encoding="utf-8") for name, path in MODULES.items()}
    offenders = _offenders(sources)
    assert not offenders, "use tagtune.names.Metrics / Tag:\n" + "\n".join(offenders)


def test_the_check_finds_a_planted_literal():
    planted = {
        "tagtune.x": '"""Doc naming val_mAUC."""\n'
        "def f(m):\n"
        '    """best_val_mAUC in a docstring is prose."""\n'
        '    return m["val_mAUC"], f"val_mAUC {m[\'best_val_mAP\']}", m.get("tagtune.family")\n',
        "tagtune.names": 'VAL_MAUC = "val_mAUC"\n',
    }
    assert sorted(_offenders(planted)) == [
        "tagtune.x:4: 'best_val_mAP'",
        "tagtune.x:4: 'tagtune.family'",
        "tagtune.x:4: 'val_mAUC'",
    ]
