"""A search's tables, rebuilt from MLflow alone: trials, learning curves, finals, runtime.

These are what the report's tables and the dashboard's figures are drawn from (the figures are
pure functions of these tables, see :mod:`tagtune.dashboards`).  Every table is a pandas DataFrame:

* ``trials`` and ``history``: ``Trials.table`` and ``Trials.history`` of
  :func:`tagtune.tracking.trials.search_trials` (see there for their columns);
* ``finals``: the newest ``tagtune finalize`` of the search: one row per final model (kind
  ``final``) and ensemble (kind ``ensemble``) with its ``eval_*`` scores, from the same child runs
  (``Trials.runs``);
* ``runtime``: per family, seconds per epoch and per trial (seed 000's Fig. 3);
* ``confusion``: a single-label final's test-split confusion matrix in long form (``true``,
  ``predicted``, ``count``, every pair of classes), logged by ``tagtune finalize`` as
  :data:`CONFUSION_ARTIFACT` and read back by :func:`confusion_from_run`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd
from mlflow import MlflowClient

from tagtune.names import Metrics, Tag
from tagtune.tracking.schema import RunKind, run_kind
from tagtune.tracking.trials import HISTORY_METRICS

__all__ = [
    "CONFUSION_ARTIFACT",
    "CONFUSION_COLUMNS",
    "EVAL_METRICS",
    "FINAL_COLUMNS",
    "HISTORY_METRICS",
    "PER_CLASS_ARTIFACT",
    "RUNTIME_COLUMNS",
    "SINGLE_LABEL_EVAL",
    "confusion_from_run",
    "confusion_table",
    "ensemble_rows",
    "eval_columns",
    "finals_table",
    "per_class_from_run",
    "runtime_table",
    "with_finals",
]

EVAL_METRICS = Metrics.EVAL
SINGLE_LABEL_EVAL = Metrics.EVAL_SINGLE_LABEL
"""Single-label (audio) finals' extra eval metrics: accuracy and MAP@3 on the test split."""
PER_CLASS_ARTIFACT = "eval/per_class.csv"
CONFUSION_ARTIFACT = "eval/confusion.csv"
CONFUSION_COLUMNS = ("true", "predicted", "count")
FINAL_COLUMNS = (
    "run_id",
    "kind",
    "name",
    "family",
    "rank",
    "method",
    "source_run_id",
    "epochs",
    "train_s",
    *EVAL_METRICS,
    *SINGLE_LABEL_EVAL,
    "model_uri",
    "finalize_id",
    "start_time",
)
RUNTIME_COLUMNS = ("family", "trials", "epochs", "mean_epoch_s", "mean_trial_s", "total_trial_s", "final_train_s")
_FINAL_KINDS = (RunKind.FINAL.value, RunKind.ENSEMBLE.value)


def final_name(family: str, rank: int) -> str:
    """A final's name: ``fc1`` for a family's best trial's, ``fc1#2`` for its second's."""
    return family if rank == 1 else f"{family}#{rank}"


def _final_row(run: Any) -> dict[str, Any]:
    """A finished final's or ensemble's row of the finals table."""
    kind = run_kind(run)
    tags, metrics, params = run.data.tags, run.data.metrics, run.data.params
    method = tags.get(Tag.ENSEMBLE_METHOD, "")
    family = tags.get(Tag.FAMILY, "")
    rank = int(tags.get(Tag.RANK, "1"))
    name = f"ensemble-{method}" if kind == RunKind.ENSEMBLE.value else final_name(family, rank)
    return {
        "run_id": run.info.run_id,
        "kind": kind,
        "name": name,
        "family": family,
        "rank": rank,
        "method": method,
        "source_run_id": tags.get(Tag.SOURCE_RUN, ""),
        "epochs": float(params.get("epochs", math.nan)) if "epochs" in params else math.nan,
        "train_s": float(metrics.get("train_seconds", math.nan)),
        **{k: float(metrics.get(k, math.nan)) for k in (*EVAL_METRICS, *SINGLE_LABEL_EVAL)},
        "model_uri": tags.get(Tag.MODEL_URI, ""),
        "finalize_id": tags.get(Tag.FINALIZE_ID, ""),
        "start_time": run.info.start_time or 0,
    }


def finals_table(runs: Sequence[Any]) -> pd.DataFrame:
    """The newest finalize among a search's child ``runs``: final models and ensembles with
    their eval scores."""
    rows = [_final_row(run) for run in runs if run_kind(run) in _FINAL_KINDS and run.info.status == "FINISHED"]
    table = pd.DataFrame(rows, columns=list(FINAL_COLUMNS))
    if table.empty:
        return table
    newest = table.sort_values("start_time")["finalize_id"].iloc[-1]
    table = table[table["finalize_id"] == newest]
    order = {RunKind.FINAL.value: 0, RunKind.ENSEMBLE.value: 1}
    table = table.assign(_o=table["kind"].map(order)).sort_values(["_o", "family", "rank", "method"])
    return table.drop(columns="_o").reset_index(drop=True)


def eval_columns(finals: pd.DataFrame) -> tuple[str, ...]:
    """The eval metrics of ``finals``: ``eval_mAUC/mAP/dprime``, then accuracy and MAP@3 where
    some final has them (single-label data)."""
    extra = tuple(k for k in SINGLE_LABEL_EVAL if k in finals and finals[k].notna().any())
    return extra + tuple(EVAL_METRICS)


def with_finals(summary: pd.DataFrame, finals: pd.DataFrame) -> pd.DataFrame:
    """The per-family summary with each family's final (rank 1) eval scores beside it."""
    out = summary.copy()
    best = None
    if not finals.empty:
        best = finals[(finals["kind"] == RunKind.FINAL.value) & (finals["rank"] == 1)].set_index("family")
    for key in eval_columns(finals):
        out[key] = [
            float(best.loc[f, key]) if best is not None and f in best.index else math.nan for f in out["family"]
        ]
    return out


def ensemble_rows(finals: pd.DataFrame) -> pd.DataFrame:
    """Rows for the report's table: each ensemble's name and eval scores."""
    if finals.empty:
        return pd.DataFrame(columns=["family", *EVAL_METRICS])
    ens = finals[finals["kind"] == RunKind.ENSEMBLE.value]
    return pd.DataFrame({"family": ens["name"], **{k: ens[k] for k in eval_columns(finals)}}).reset_index(drop=True)


def runtime_table(trials: pd.DataFrame, finals: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per family: trials, epochs run, mean seconds per epoch and per trial, total trial seconds,
    and the final's training seconds (seed 000's Fig. 3)."""
    rows = []
    if trials.empty:
        return pd.DataFrame(columns=list(RUNTIME_COLUMNS))
    for family, group in trials.groupby("family", sort=False):
        epochs = group["epochs"].sum()
        total = group["trial_s"].sum(min_count=1)
        final_s = math.nan
        if finals is not None and not finals.empty:
            mine = finals[
                (finals["kind"] == RunKind.FINAL.value) & (finals["family"] == family) & (finals["rank"] == 1)
            ]
            if not mine.empty:
                final_s = float(mine["train_s"].iloc[0])
        rows.append(
            {
                "family": family,
                "trials": len(group),
                "epochs": int(epochs),
                "mean_epoch_s": float(total / epochs) if epochs and not math.isnan(total) else math.nan,
                "mean_trial_s": float(group["trial_s"].mean()),
                "total_trial_s": float(total),
                "final_train_s": final_s,
            }
        )
    return pd.DataFrame(rows, columns=list(RUNTIME_COLUMNS)).sort_values("mean_epoch_s").reset_index(drop=True)


def per_class_from_run(client: MlflowClient, run_id: str) -> pd.DataFrame | None:
    """The per-class AP table (``class, ap, n_pos``) a final or ensemble run logged, if any."""
    import tempfile

    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = client.download_artifacts(run_id, PER_CLASS_ARTIFACT, tmp)
            return pd.read_csv(path)
    except Exception:  # noqa: BLE001 - no such artifact
        return None


def confusion_table(true: Any, predicted: Any, class_names: Sequence[str]) -> pd.DataFrame:
    """The confusion matrix of class indices ``true`` vs ``predicted`` in long form: one row per
    (true, predicted) pair of class names, every pair listed (zeros too), true classes in order."""
    import numpy as np

    n = len(class_names)
    counts = np.zeros((n, n), dtype=np.int64)
    np.add.at(counts, (np.asarray(true, dtype=np.int64), np.asarray(predicted, dtype=np.int64)), 1)
    names = [str(c) for c in class_names]
    return pd.DataFrame(
        {
            "true": np.repeat(names, n),
            "predicted": np.tile(names, n),
            "count": counts.reshape(-1),
        },
        columns=list(CONFUSION_COLUMNS),
    )


def confusion_from_run(client: MlflowClient, run_id: str) -> pd.DataFrame | None:
    """The confusion table (``true, predicted, count``) a single-label final logged, if any."""
    import tempfile

    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = client.download_artifacts(run_id, CONFUSION_ARTIFACT, tmp)
            return pd.read_csv(path, dtype={"true": str, "predicted": str})
    except Exception:  # noqa: BLE001 - no such artifact (multi-label finals log none)
        return None
