"""A start that does not depend on one data set's tuned defaults: a small portfolio of configs
per family chosen across tasks, leave-one-task-out (issue 24).

:func:`select_portfolio` is the pure rule: from each candidate config's validation score on each
task, greedily pick ``k`` configs that together do best across the tasks (each task's scores
min-max normalized, so an easy task does not outweigh a hard one; a set of configs scores a task
by its best member).  :func:`leave_one_task_out` picks, for every task, the portfolio learned on
the other tasks only, so no task is scored with configs learned on itself.
``benchmarks/learn_portfolio.py`` trains the candidates on ``benchmarks/_tasks.py``'s tasks and
writes the packaged portfolio (``search_spaces/portfolio.yaml``); :func:`load_portfolio` reads it
(or a user's file) for ``tagtune search --portfolio``, which runs its configs first.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tagtune.errors import InputError

PACKAGED = "packaged"
"""``--portfolio`` without a file: the packaged ``search_spaces/portfolio.yaml``."""

Scores = Mapping[str, Mapping[str, float]]
"""config name -> task name -> validation score (higher is better; missing or NaN: not run)."""


def _normalized(scores: Scores, tasks: Sequence[str]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {c: {} for c in scores}
    for task in tasks:
        values = {c: s[task] for c, s in scores.items() if task in s and math.isfinite(s[task])}
        if not values:
            continue
        low, high = min(values.values()), max(values.values())
        for config, value in values.items():
            out[config][task] = 1.0 if high == low else (value - low) / (high - low)
    return out


def select_portfolio(scores: Scores, k: int, exclude_task: str | None = None) -> list[str]:
    """``k`` config names (fewer if there are fewer candidates), greedily: each adds the most to
    the mean over tasks (``exclude_task`` left out) of the best normalized score among the
    configs picked so far; ties go to the name that sorts first."""
    if k < 1:
        raise ValueError(f"a portfolio needs at least one config, got k={k}")
    tasks = sorted({t for s in scores.values() for t in s if t != exclude_task})
    norm = _normalized(scores, tasks)
    picked: list[str] = []
    best = dict.fromkeys(tasks, 0.0)
    for _ in range(min(k, len(scores))):

        def gain(config: str) -> float:
            return sum(max(best[t], norm[config].get(t, 0.0)) for t in tasks) / max(1, len(tasks))

        choice = max(sorted(c for c in scores if c not in picked), key=gain)
        picked.append(choice)
        for t in tasks:
            best[t] = max(best[t], norm[choice].get(t, 0.0))
    return picked


def leave_one_task_out(scores: Scores, k: int) -> dict[str, list[str]]:
    """Per task, the portfolio :func:`select_portfolio` learns from every other task."""
    tasks = sorted({t for s in scores.values() for t in s})
    return {task: select_portfolio(scores, k, exclude_task=task) for task in tasks}


def portfolio_path(value: str) -> Path:
    """The portfolio file ``--portfolio`` names (:data:`PACKAGED`: the packaged one)."""
    if value == PACKAGED:
        from tagtune.search_spaces import DEFAULT_DIR

        return Path(DEFAULT_DIR) / "portfolio.yaml"
    return Path(value)


def load_portfolio(value: str, families: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    """family -> the sampled parameters of each of its portfolio configs, in order, for the
    ``families`` of a search (a family the file lacks gets none: its first trial is then its
    registered defaults).  The file maps a family to a list of ``{name, params}`` entries."""
    import yaml

    path = portfolio_path(value)
    where = f"--portfolio {path}"
    if not path.is_file():
        raise InputError(f"{where}: no such file; pass a YAML file of family: [{{params: {{...}}}}, ...]")
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise InputError(f"{where}: not valid YAML ({str(exc).splitlines()[0]}); fix the file") from None
    if not isinstance(doc, dict):
        raise InputError(f"{where}: expected a mapping of family -> list of configs, got {type(doc).__name__}")
    out: dict[str, list[dict[str, Any]]] = {}
    for family in families:
        entries = doc.get(family) or []
        if not isinstance(entries, list) or not all(
            isinstance(e, dict) and isinstance(e.get("params"), dict) for e in entries
        ):
            raise InputError(f"{where}: {family} must be a list of {{name, params: {{...}}}} entries")
        out[family] = [dict(e["params"]) for e in entries]
    return out
