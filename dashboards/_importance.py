"""Hyperparameter importance per family, from Optuna studies rebuilt out of the trials table.

MLflow keeps each trial's config (as strings) and score but not Optuna's distributions, so a
study is rebuilt per family with :func:`optuna.trial.create_trial`, each parameter's distribution
inferred from the values the trials took (numbers -> a float or int range, log-scaled when the
values span two decades or more; anything else -> categorical).  Optuna's evaluators need every
trial to carry every parameter they rate, so a conditional parameter (one that is inactive,
``None``, in some trials, e.g. ``momentum`` only with SGD) is rated on the trials where it is
active, together with the unconditional ones; its row says on how many trials (``n_trials``) and
is flagged ``conditional``.  Unconditional importances sum to 1 per family; a conditional one is
its share within its own subset.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import optuna
import pandas as pd
import plotly.graph_objects as go
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from plotly.subplots import make_subplots

from tagtune.dashboards._style import empty_figure, family_colors
from tagtune.names import Metrics

PARAM_PREFIX = "params_"
IMPORTANCE_COLUMNS = ["family", "param", "importance", "conditional", "n_trials"]
# fANOVA over fewer trials rates noise: a family needs this many finished trials to be rated,
# a conditional parameter this many trials where it is active.
MIN_IMPORTANCE_TRIALS = 5
MIN_CONDITIONAL_TRIALS = 3


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _is_number(v: Any) -> bool:
    return (_is_int(v) or isinstance(v, (float, np.floating))) and not isinstance(v, (bool, np.bool_))


def _plain(v: Any) -> Any:
    """A value Optuna accepts as a categorical choice (None, bool, int, float, str)."""
    if isinstance(v, (np.bool_,)):
        return bool(v)
    if _is_int(v):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return float(v)
    if v is None or isinstance(v, (bool, str)):
        return v
    return str(v)


def infer_distribution(values: list[Any]) -> BaseDistribution:
    """A distribution that holds every value: int or float range (log when they span >= 100x and
    are positive), else categorical over the distinct values."""
    present = [_plain(v) for v in values if not _missing(v)]
    if present and all(_is_number(v) for v in present):
        lo, hi = min(present), max(present)
        log = lo > 0 and hi / lo >= 100
        if all(_is_int(v) for v in present):
            return IntDistribution(int(lo), int(hi), log=log)
        return FloatDistribution(float(lo), float(hi), log=log)
    choices = sorted(set(present), key=lambda v: (type(v).__name__, str(v)))
    return CategoricalDistribution(choices)


def rebuild_study(trials: pd.DataFrame, family: str) -> optuna.Study:
    """The family's finished trials as a maximizing Optuna study (value = best val_mAUC);
    parameters that never vary are left out, inactive conditional ones are absent in that trial."""
    group = trials[(trials["family"] == family)].dropna(subset=[Metrics.BEST_VAL_MAUC])
    cols = [c for c in group.columns if c.startswith(PARAM_PREFIX)]
    dists: dict[str, BaseDistribution] = {}
    for col in cols:
        values = [v for v in group[col] if not _missing(v)]
        if len({repr(_plain(v)) for v in values}) < 2:
            continue
        dists[col[len(PARAM_PREFIX) :]] = infer_distribution(values)
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "A new study created" line per family
    try:
        study = optuna.create_study(direction="maximize", study_name=f"rebuilt/{family}")
    finally:
        optuna.logging.set_verbosity(verbosity)
    for _, row in group.iterrows():
        params = {n: _plain(row[PARAM_PREFIX + n]) for n in dists if not _missing(row[PARAM_PREFIX + n])}
        params = {n: int(v) if isinstance(dists[n], IntDistribution) else v for n, v in params.items()}
        study.add_trial(
            optuna.trial.create_trial(
                params=params,
                distributions={n: dists[n] for n in params},
                value=float(row[Metrics.BEST_VAL_MAUC]),
            )
        )
    return study


def _evaluate(study: optuna.Study, params: list[str], evaluator: Any) -> dict[str, float]:
    try:
        return optuna.importance.get_param_importances(study, evaluator=evaluator, params=params)
    except (ValueError, RuntimeError, ZeroDivisionError, IndexError):
        return {}


def param_importances(trials: pd.DataFrame, evaluator: Any | None = None) -> pd.DataFrame:
    """Per family and parameter: importance (Optuna's fANOVA evaluator, seeded, unless
    ``evaluator`` is given), whether it is ``conditional``, and on how many trials it was rated.
    Families with fewer than ``MIN_IMPORTANCE_TRIALS`` finished trials, or no varying
    parameter, have no rows (too few trials to mean anything)."""
    rows: list[dict[str, Any]] = []
    if trials.empty:
        return pd.DataFrame(columns=IMPORTANCE_COLUMNS)
    for family in dict.fromkeys(trials["family"]):
        make_eval = (
            (lambda: evaluator)
            if evaluator is not None
            else (lambda: optuna.importance.FanovaImportanceEvaluator(seed=0))
        )
        study = rebuild_study(trials, str(family))
        done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        if len(done) < MIN_IMPORTANCE_TRIALS:
            continue
        names = sorted({n for t in done for n in t.params})
        always = [n for n in names if all(n in t.params for t in done)]
        conditional = [n for n in names if n not in always]
        if always:
            for name, value in _evaluate(study, always, make_eval()).items():
                rows.append(
                    {
                        "family": family,
                        "param": name,
                        "importance": float(value),
                        "conditional": False,
                        "n_trials": len(done),
                    }
                )
        for name in conditional:
            subset = [t for t in done if name in t.params]
            if len(subset) < MIN_CONDITIONAL_TRIALS or len({repr(t.params[name]) for t in subset}) < 2:
                continue
            share = _evaluate(study, [*always, name], make_eval()).get(name)
            if share is not None:
                rows.append(
                    {
                        "family": family,
                        "param": name,
                        "importance": float(share),
                        "conditional": True,
                        "n_trials": len(subset),
                    }
                )
    table = pd.DataFrame(rows, columns=IMPORTANCE_COLUMNS)
    return table.sort_values(["family", "importance"], ascending=[True, False], kind="stable").reset_index(drop=True)


def _panel_title(importances: pd.DataFrame, family: str) -> str:
    """``fc1 (rated on 6 trials)``: how many trials the family's importances rest on."""
    plain = importances[(importances["family"] == family) & ~importances["conditional"].astype(bool)]
    return f"{family} (rated on {int(plain['n_trials'].max())} trials)" if len(plain) else family


def importance_figure(importances: pd.DataFrame) -> go.Figure:
    """Horizontal bars per family (one panel each): each hyperparameter's importance for the
    trials' best val_mAUC; conditional parameters hatched and labelled with their trial count."""
    if importances.empty:
        return empty_figure(
            "hyperparameter importance",
            f"needs at least {MIN_IMPORTANCE_TRIALS} finished trials per family with differing hyperparameters "
            "(fewer rate noise)",
        )
    families = list(dict.fromkeys(importances["family"]))
    colors = family_colors(families)
    fig = make_subplots(
        rows=len(families),
        cols=1,
        subplot_titles=[_panel_title(importances, f) for f in families],
        vertical_spacing=min(0.12, 0.5 / max(len(families), 1)),
    )
    for i, family in enumerate(families, start=1):
        part = importances[importances["family"] == family].sort_values("importance")
        labels = [
            f"{p} (conditional, {n} trials)" if c else p
            for p, c, n in zip(part["param"], part["conditional"], part["n_trials"], strict=True)
        ]
        fig.add_trace(
            go.Bar(
                x=part["importance"],
                y=labels,
                orientation="h",
                marker_color=colors[family],
                showlegend=False,
                marker_pattern_shape=["/" if c else "" for c in part["conditional"]],
                text=[f"{v:.2f}" for v in part["importance"]],
                textposition="outside",
                hovertemplate="%{y}: %{x:.3f}<extra></extra>",
            ),
            row=i,
            col=1,
        )
        fig.update_xaxes(range=[0, 1.1], row=i, col=1)
    fig.update_xaxes(
        title_text="importance (fANOVA, sums to 1 over unconditional parameters)", row=len(families), col=1
    )
    fig.update_layout(
        title="Hyperparameter importance per family (Optuna, study rebuilt from MLflow)",
        height=max(300, 60 + sum(110 + 22 * int((importances["family"] == f).sum()) for f in families)),
    )
    return fig
