"""The per-family table of a search, rebuilt from MLflow alone (works for any past search).

Its rows are :class:`tagtune.tracking.trials.TrialRow` as :func:`tagtune.tracking.trials.search_trials`
reads them (``Trials.rows``)."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from tagtune.tracking.trials import TrialRow, rank_by_family

__all__ = ["SUMMARY_COLUMNS", "TASK_COLUMNS", "TrialRow", "best_trials", "family_summary", "to_markdown"]

#: Columns :func:`family_summary` adds when some trial has them (binary task; single-label data).
TASK_COLUMNS = ("best_f1", "best_accuracy", "best_map3")
SUMMARY_COLUMNS = (
    "family",
    "trials",
    "completed",
    "stopped",
    "failed",
    "max_mAUC",
    "min_mAUC",
    "mean_mAUC",
    "std_mAUC",
    "best_mAP",
    "mean_epoch_s",
)


def family_summary(rows: list[TrialRow]) -> pd.DataFrame:
    """Per family: trials (completed: ran every epoch; stopped: stopped early by a rule or the
    time budget; failed), the max of the trials' best val_mAUC over every scored trial (stopped
    ones included), min/mean/std over the completed ones only (a stopped trial's score is cut at
    its stop; with no completed trial, over the stopped ones), the best val_mAP, and mean seconds
    per epoch (seed 000's Fig. 3 and Fig. 4)."""
    table: list[dict[str, Any]] = []
    families = sorted({r.family for r in rows}, key=lambda f: [r.family for r in rows].index(f))
    for family in families:
        mine = [r for r in rows if r.family == family]
        done = [r for r in mine if r.status == "FINISHED" and not math.isnan(r.best_mAUC)]
        full = [r for r in done if not r.stopped] or done
        auc = pd.Series([r.best_mAUC for r in full], dtype=float)
        epoch_s = pd.Series([r.mean_epoch_seconds for r in mine], dtype=float).dropna()
        table.append(
            {
                "family": family,
                "trials": len(mine),
                "completed": sum(not r.stopped for r in done),
                "stopped": sum(r.stopped for r in done),
                "failed": sum(r.status == "FAILED" for r in mine),
                "max_mAUC": max((r.best_mAUC for r in done), default=math.nan),
                "min_mAUC": auc.min() if len(auc) else math.nan,
                "mean_mAUC": auc.mean() if len(auc) else math.nan,
                "std_mAUC": auc.std(ddof=0) if len(auc) else math.nan,
                "best_mAP": max((r.best_mAP for r in done), default=math.nan),
                "mean_epoch_s": epoch_s.mean() if len(epoch_s) else math.nan,
            }
        )
    columns = list(SUMMARY_COLUMNS)
    if any(not math.isnan(r.best_f1) for r in rows):  # the binary task (seed 002) reports F1
        for entry in table:
            entry["best_f1"] = max(
                (r.best_f1 for r in rows if r.family == entry["family"] and r.status == "FINISHED"), default=math.nan
            )
        columns.append("best_f1")
    for column in ("best_accuracy", "best_map3"):  # single-label data (seed 003) report these
        if any(not math.isnan(getattr(r, column)) for r in rows):
            for entry in table:
                values = [getattr(r, column) for r in rows if r.family == entry["family"] and r.status == "FINISHED"]
                entry[column] = max((v for v in values if not math.isnan(v)), default=math.nan)
            columns.append(column)
    frame = pd.DataFrame(table, columns=columns)
    return frame.sort_values("max_mAUC", ascending=False, na_position="last").reset_index(drop=True)


def best_trials(rows: list[TrialRow]) -> dict[str, TrialRow]:
    """Each family's completed trial with the highest best val_mAUC (``Trials.best`` of a search)."""
    return {f: rs[0] for f, rs in rank_by_family(rows).items()}


def to_markdown(frame: pd.DataFrame) -> str:
    """A GitHub-style Markdown table (4 decimals for scores, 2 for seconds)."""
    header = "| " + " | ".join(frame.columns) + " |"
    sep = "|" + "|".join("---" for _ in frame.columns) + "|"
    lines = [header, sep]
    for _, row in frame.iterrows():
        cells = []
        for col in frame.columns:
            v = row[col]
            if isinstance(v, float):
                cells.append("" if math.isnan(v) else (f"{v:.2f}" if col.endswith("_s") else f"{v:.4f}"))
            else:
                cells.append(str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
