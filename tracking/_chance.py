"""Which trials never left chance, and the likely cause when most sampled trials did not.

A trial "never left chance" when its best validation mAUC (0.5 for a model that ranks at random)
stayed below ``CHANCE + CHANCE_MARGIN``.  Used by the report (its per-family counts and cause),
by ``benchmarks/bench_spaces.py`` and by the test that trains a few configs of every packaged space.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Mapping, Sequence
from typing import Any

from tagtune.names import Metrics

CHANCE = 0.5
#: how far above chance a trial's best val mAUC must get to count as having learned something
CHANCE_MARGIN = 0.05
#: learning rates below / above these are named as a likely cause ("lr < 3e-4")
LOW_LR, HIGH_LR = 3e-4, 3e-3


def at_chance(score: float | None, margin: float = CHANCE_MARGIN) -> bool:
    """Whether a trial's best val mAUC ``score`` never left chance (a missing or NaN score counts)."""
    if score is None or not isinstance(score, (int, float)) or math.isnan(score):
        return True
    return score < CHANCE + margin


def _features(params: Mapping[str, Any]) -> list[str]:
    """The readable facts of one trial's params that may explain a stuck trial."""
    out: list[str] = []
    for name, value in params.items():
        if name in ("family", "seed"):
            continue
        if name == "lr":
            try:
                lr = float(value)
            except (TypeError, ValueError):
                continue
            if lr < LOW_LR:
                out.append(f"lr < {LOW_LR:g}")
            elif lr > HIGH_LR:
                out.append(f"lr > {HIGH_LR:g}")
        elif name == "optimizer":
            out.append(str(value))
        elif isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
            out.append(f"{name} {value}")
    return out


def likely_cause(stuck: Sequence[Mapping[str, Any]], others: Sequence[Mapping[str, Any]] = ()) -> str | None:
    """One line naming what most of the ``stuck`` trials' params share and the other trials'
    params (``others``) have less of, e.g. ``"7 of 9 used sgd"``; None when nothing stands out
    (no value shared by more than half of them)."""
    if not stuck:
        return None
    counts = collections.Counter(f for p in stuck for f in set(_features(p)))
    other = collections.Counter(f for p in others for f in set(_features(p)))
    best: tuple[float, str] | None = None
    for feature, n in sorted(counts.items()):
        share = n / len(stuck)
        if share <= 0.5:
            continue
        lift = share - (other[feature] / len(others) if others else 0.0)
        if lift <= 0:
            continue
        if best is None or (lift, n) > (best[0], counts[best[1]]):
            best = (lift, feature)
    if best is None:
        return None
    return f"{counts[best[1]]} of {len(stuck)} used {best[1]}"


HEALTH_COLUMNS = ("family", "sampled", "beat_first", "at_chance", "first_mAUC", "best_sampled_mAUC", "cause")


def _params_of(row: Mapping[str, Any]) -> dict[str, Any]:
    """A trials-table row's searched params (its ``params_<name>`` columns that are set)."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        if not str(key).startswith("params_") or value is None:
            continue
        if isinstance(value, float) and math.isnan(value):
            continue
        out[str(key)[len("params_") :]] = value
    return out


def search_health(trials: Any) -> Any:
    """How the search went, per family, from the report's trials table (columns ``family``,
    ``number``, ``first``, ``status``, ``best_val_mAUC`` and ``params_<name>``): the sampled trials
    with a score (those not ``first``: the registered defaults or a start portfolio's configs;
    where no trial of a family is marked, as in a warm start or an older store, all after its
    ``number`` 0), how many of them beat the best first trial, how many never left chance
    (:func:`at_chance`), and, when most of them are at chance, the likely cause
    (:func:`likely_cause`).  A pandas DataFrame with :data:`HEALTH_COLUMNS`."""
    import pandas as pd

    rows: list[dict[str, Any]] = []
    if trials is None or len(trials) == 0 or Metrics.BEST_VAL_MAUC not in trials:
        return pd.DataFrame(columns=list(HEALTH_COLUMNS))
    scored = trials[trials[Metrics.BEST_VAL_MAUC].notna()]
    if "status" in scored:
        scored = scored[scored["status"] == "FINISHED"]
    for family in dict.fromkeys(trials["family"]):
        mine = scored[scored["family"] == family].sort_values("number")
        marked = mine["first"].eq(True) if "first" in mine else None
        if marked is None or not marked.any():
            marked = mine["number"] == 0
        first, sampled = mine[marked], mine[~marked]
        first_score = float(first[Metrics.BEST_VAL_MAUC].max()) if len(first) else math.nan
        records = sampled.to_dict("records")
        stuck = [r for r in records if at_chance(float(r[Metrics.BEST_VAL_MAUC]))]
        moved = [r for r in records if not at_chance(float(r[Metrics.BEST_VAL_MAUC]))]
        cause = None
        if records and len(stuck) * 2 > len(records):
            cause = likely_cause([_params_of(r) for r in stuck], [_params_of(r) for r in moved])
        rows.append(
            {
                "family": family,
                "sampled": len(records),
                "beat_first": sum(float(r[Metrics.BEST_VAL_MAUC]) > first_score for r in records)
                if not math.isnan(first_score)
                else 0,
                "at_chance": len(stuck),
                "first_mAUC": first_score,
                "best_sampled_mAUC": max((float(r[Metrics.BEST_VAL_MAUC]) for r in records), default=math.nan),
                "cause": cause or "",
            }
        )
    return pd.DataFrame(rows, columns=list(HEALTH_COLUMNS))
