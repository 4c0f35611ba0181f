"""The anytime view of a search: best validation mAUC so far against wall time.

Built from each epoch's ``val_mAUC`` and the time MLflow logged it (``WALL_KEY`` of the trials'
curves), relative to the search run's start: per family and overall (``family == "all"``), one
row each time the best so far rises.  :func:`anytime_summary` reads it at 25 %, 50 % and 100 % of
the search's wall time.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from tagtune.names import Metrics, Tag
from tagtune.tracking.trials import WALL_KEY, Trials

ANYTIME_COLUMNS = ("family", "seconds", Metrics.BEST_VAL_MAUC)
OVERALL = "all"
FRACTIONS = (0.25, 0.5, 1.0)


def anytime_table(trials: Trials, start_ms: int) -> pd.DataFrame:
    """Rows ``family, seconds, best_val_mAUC`` where a family's (and the search's) best rises."""
    events: list[tuple[float, str, float]] = []
    for run in trials.trial_runs:
        family = run.data.tags.get(Tag.FAMILY, "")
        for ts, value in trials.curves[run.info.run_id].get(WALL_KEY, []):
            if math.isfinite(value):
                events.append(((ts - start_ms) / 1000.0, family, value))
    events.sort()
    best: dict[str, float] = {}
    rows: list[dict[str, Any]] = []
    for seconds, family, value in events:
        for key in (family, OVERALL):
            if value > best.get(key, -math.inf):
                best[key] = value
                rows.append({"family": key, "seconds": max(0.0, seconds), Metrics.BEST_VAL_MAUC: value})
    return pd.DataFrame(rows, columns=list(ANYTIME_COLUMNS))


def best_at(anytime: pd.DataFrame, family: str, seconds: float) -> float:
    """The family's best val_mAUC reached by ``seconds`` (NaN before its first epoch)."""
    mine = anytime[(anytime["family"] == family) & (anytime["seconds"] <= seconds + 1e-9)]
    return float(mine[Metrics.BEST_VAL_MAUC].max()) if len(mine) else math.nan


def anytime_summary(anytime: pd.DataFrame, wall_seconds: float) -> pd.DataFrame:
    """Per family and overall: best val_mAUC at 25/50/100 % of ``wall_seconds`` and the seconds
    it took to reach its final best."""
    rows: list[dict[str, Any]] = []
    families = [f for f in dict.fromkeys(anytime["family"]) if f != OVERALL] + [OVERALL]
    for family in families:
        mine = anytime[anytime["family"] == family]
        if mine.empty:
            continue
        row: dict[str, Any] = {"family": family}
        for frac in FRACTIONS:
            row[f"at_{int(frac * 100)}%"] = best_at(anytime, family, frac * wall_seconds)
        row["final_best"] = float(mine[Metrics.BEST_VAL_MAUC].max())
        row["reached_at_s"] = float(mine.loc[mine[Metrics.BEST_VAL_MAUC].idxmax(), "seconds"])
        rows.append(row)
    return pd.DataFrame(rows)
