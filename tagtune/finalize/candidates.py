"""Candidates: the finals to train (each family's ``top_k`` best trials) and the ensembles'
members and weights, chosen on the search's validation split (each candidate trial's checkpoint,
trained on the search's training part, scores it), never on eval.

The pool is honest: a trial that never left chance, or that trails its family's best trial by
more than ``--pool-margin`` val mAUC, is no candidate (:func:`honest_pool`); a member of an
ensemble must be good on its own, not only useful for flattening the others' scores on a small
split.  Members and weights then come from bagged selection (``--selection bagged``, the
default: :func:`tagtune.trainables.ensemble.bagged_weights`) or plain forward selection
(``greedy``)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from mlflow.exceptions import MlflowException

from tagtune.finalize.registry import Session
from tagtune.finalize.spec import LeftOut, Planned, full_config
from tagtune.scoring import SplitUnavailable, score_trials, validation_split
from tagtune.tracking import TrialRow, Trials, at_chance, final_name, rank_by_family
from tagtune.trainables.ensemble import select_weights
from tagtune.trainables.inference import FinalsData


def top_trials(rows: list[TrialRow], k: int) -> dict[str, list[TrialRow]]:
    """Each family's ``k`` completed trials with the highest best val_mAUC, best first
    (:meth:`Trials.top` of a search's rows)."""
    return {f: rs[:k] for f, rs in rank_by_family(rows).items()}


def ranked(by_family: dict[str, list[TrialRow]]) -> list[Planned]:
    """``(family, rank, trial)`` for each family's trials, best first (rank 1)."""
    return [(f, rank, row) for f, rows in by_family.items() for rank, row in enumerate(rows, start=1)]


@dataclass(frozen=True)
class Pick:
    """An ensemble's members chosen on validation: source trial run -> weight, and the val mAP."""

    weights: dict[str, float]
    val_map: float


def honest_pool(pool: list[Planned], margin: float) -> tuple[list[Planned], list[LeftOut]]:
    """The candidates worth an ensemble vote: not at chance, and within ``margin`` val mAUC of
    their family's best trial; and the ones left out, each with its reason."""
    best: dict[str, float] = {}
    for family, _, row in pool:
        if not at_chance(row.best_mAUC):
            best[family] = max(best.get(family, -math.inf), row.best_mAUC)
    keep: list[Planned] = []
    out: list[LeftOut] = []
    for family, rank, row in pool:
        name, gap = final_name(family, rank), best.get(family, math.inf) - row.best_mAUC
        if at_chance(row.best_mAUC):
            out.append(LeftOut(name, row.run_id, f"never left chance: val mAUC {row.best_mAUC:.4f}"))
        elif gap > margin:
            out.append(LeftOut(name, row.run_id, f"trails {family}'s best by {gap:.4f} val mAUC > {margin:g}"))
        else:
            keep.append((family, rank, row))
    return keep, out


def validation_scores(
    session: Session, fd: FinalsData, rows: list[TrialRow]
) -> tuple[list[np.ndarray], np.ndarray] | None:
    """Each trial's best checkpoint (trained on the search's training part) scored on the
    search's validation split, with that split's labels: what ensemble members and weights are
    chosen on.  None when the split cannot be rebuilt (other --train data) or a checkpoint is
    missing; the ensembles then take every final, weighted by the trials' val_mAUC."""
    try:
        split = validation_split(session.parent, fd.searched)
    except SplitUnavailable as exc:
        session.say(f"ensemble weights: {exc}; they come from the trials' val_mAUC")
        return None
    scores = []
    for row in rows:
        try:
            scores += score_trials(session.client, [row.run_id], split, session.device)
        except (MlflowException, OSError, ValueError, KeyError) as exc:
            session.say(f"ensemble weights: no checkpoint for trial {row.run_id[:8]} ({exc}); using val_mAUC")
            return None
    return scores, split.y


def choose_members(session: Session, trials: Trials, fd: FinalsData) -> tuple[list[Planned], dict[str, Pick]]:
    """The ensemble pool (each family's ``ensemble_pool`` best multi-label trials, less those
    :func:`honest_pool` leaves out) and, per method, the members and weights chosen on
    validation (none without a split)."""
    spec = session.spec
    pool = [
        (f, r, row)
        for f, r, row in ranked(trials.top(max(spec.top_k, spec.ensemble_pool)))
        if full_config(row, f)["target_class"] is None
    ]
    pool, session.left_out = honest_pool(pool, spec.pool_margin)
    if session.left_out:
        session.say("ensemble pool leaves out: " + "; ".join(map(str, session.left_out)))
    val = validation_scores(session, fd, [row for _, _, row in pool]) if len(pool) > 1 else None
    picks: dict[str, Pick] = {}
    if val is not None:
        for method in fd.methods:
            weights, val_map = select_weights(val[0], val[1], method, spec.selection, seed=spec.seed)
            chosen = {row.run_id: w for (_, _, row), w in zip(pool, weights, strict=True) if w > 0}
            picks[method] = Pick(chosen, val_map)
    return pool, picks


def plan_finals(session: Session, trials: Trials, fd: FinalsData) -> tuple[list[Planned], dict[str, Pick]]:
    """The finals to train (each family's ``top_k`` best, then ensemble members beyond them) and
    the ensembles' picks."""
    plan = ranked(trials.top(session.spec.top_k))
    if not session.spec.ensembles:
        return plan, {}
    pool, picks = choose_members(session, trials, fd)
    planned = {row.run_id for _, _, row in plan}
    extra = [p for p in pool if p[2].run_id not in planned and any(p[2].run_id in pk.weights for pk in picks.values())]
    if extra:
        session.say("ensemble members beyond each family's best: " + ", ".join(f"{f} #{r}" for f, r, _ in extra))
    return plan + extra, picks
