"""Warm starts: an earlier search's finished trials as the first trials of each family's study.

``tagtune search --warm-start EXPERIMENT`` reads the newest search of ``EXPERIMENT`` (same MLflow
store) back from MLflow and turns each of its finished trials into an Optuna trial
(``optuna.trial.create_trial`` with today's space's distributions), added to the family's new
study before TPE samples (``Study.add_trials``): completed trials with their best validation
mAUC, trials stopped early as PRUNED with their per-epoch values.  The earlier search must have
run on the same data (``--train``, validation split and seed).  Values today's space cannot take
(a parameter it no longer searches, a value outside its range or choices) are dropped and said so.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import optuna
from mlflow import MlflowClient

from tagtune.errors import InputError
from tagtune.names import Metrics
from tagtune.search_spaces import SearchSpace, load_space
from tagtune.tracking import (
    Tag,
    find_experiment,
    latest_search_run,
    recorded_spaces_dir,
    search_spec,
    search_trials,
)

_SAME_DATA = ("train", "val_fraction", "seed")


def warm_trials(
    client: MlflowClient,
    tracking_uri: str,
    experiment: str,
    spec: Any,
    spaces: Mapping[str, SearchSpace],
    say: Callable[[str], None],
    metric: str = Metrics.BEST_VAL_MAUC,
) -> tuple[dict[str, list[optuna.trial.FrozenTrial]], str]:
    """Per family of ``spaces``, the Optuna trials of the newest search of ``experiment``; and
    the earlier search's run id.  InputError when there is none or it ran on other data."""
    try:
        exp = find_experiment(client, tracking_uri, experiment)
        parent = latest_search_run(client, exp, None)
    except InputError as exc:
        raise InputError(f"--warm-start {experiment}: {exc}") from None
    earlier = search_spec(parent, experiment=experiment)
    _check_same_data(experiment, earlier, spec)
    trials = search_trials(client, exp.experiment_id, parent.info.run_id, recorded_spaces_dir(parent))
    runs = {r.info.run_id: r for r in trials.trial_runs}
    out: dict[str, list[optuna.trial.FrozenTrial]] = {}
    dropped: dict[str, int] = {}
    skipped = 0
    for row in trials.rows:
        space = spaces.get(row.family)
        if space is None:
            continue
        if not row.completed:
            skipped += 1
            continue
        frozen, left_out = _frozen_trial(row, space, trials, runs, earlier.spaces_dir)
        for name in left_out:
            dropped[name] = dropped.get(name, 0) + 1
        out.setdefault(row.family, []).append(frozen)
    _say_what_was_added(say, experiment, parent.info.run_id, out, dropped, skipped)
    return out, parent.info.run_id


def _check_same_data(experiment: str, earlier: Any, spec: Any) -> None:
    """InputError unless the earlier search ran on this search's data, split and seed."""
    then, now = earlier.to_params(), spec.to_params()
    for field in _SAME_DATA:
        if then[field] != now[field]:
            raise InputError(
                f"--warm-start {experiment}: its search ran with {field} {then[field]}, this one "
                f"with {now[field]}; warm-start from a search on the same data and split"
            )


def _frozen_trial(
    row: Any, space: SearchSpace, trials: Any, runs: Mapping[str, Any], spaces_dir: str | None
) -> tuple[optuna.trial.FrozenTrial, list[str]]:
    """One finished trial of the earlier search as an Optuna trial of today's ``space`` (PRUNED
    when it was stopped early), and the parameters today's space cannot take."""
    searched_then = _searched(row.family, spaces_dir)
    config = row.config()
    params, dists, outside = space.distributions({k: v for k, v in config.items() if k in searched_then})
    today = {p.name for p in space.params if p.kind != "const"}
    common: dict[str, Any] = {
        "params": params,
        "distributions": dists,
        "intermediate_values": _running_max(trials.curves[row.run_id].get(Metrics.VAL_MAUC, [])),
        "user_attrs": {"tagtune_warm_start_run": row.run_id},
    }
    if runs[row.run_id].data.tags.get(Tag.STOPPED_EARLY) == "True":
        frozen = optuna.trial.create_trial(state=optuna.trial.TrialState.PRUNED, **common)
    else:
        frozen = optuna.trial.create_trial(value=row.best_mAUC, **common)
    return frozen, sorted(set(outside) | (searched_then - today))


def _say_what_was_added(
    say: Callable[[str], None],
    experiment: str,
    run_id: str,
    out: Mapping[str, list[Any]],
    dropped: Mapping[str, int],
    skipped: int,
) -> None:
    counts = ", ".join(f"{f} {len(ts)}" for f, ts in out.items()) or "none"
    say(f"warm start from {experiment} (search run {run_id[:8]}): finished trials added: {counts}")
    if dropped:
        say(
            "warm start: dropped values today's space cannot take: "
            + ", ".join(f"{name} ({n} trial{'s' if n > 1 else ''})" for name, n in sorted(dropped.items()))
        )
    if skipped:
        say(f"warm start: {skipped} trial(s) of the earlier search did not finish with a score and were left out")


def _searched(family: str, spaces_dir: str | None) -> set[str]:
    """The parameters the earlier search sampled for ``family`` (its recorded space)."""
    try:
        return {p.name for p in load_space(family, spaces_dir).params if p.kind != "const"}
    except InputError:  # its --spaces folder is gone: take today's packaged space
        return {p.name for p in load_space(family).params if p.kind != "const"}


def _running_max(curve: list[tuple[int, float]]) -> dict[int, float]:
    """Per epoch the best value so far (what the search reported as its intermediate values)."""
    best = -math.inf
    out: dict[int, float] = {}
    for step, value in sorted(curve):
        if math.isfinite(value):
            best = max(best, value)
        if math.isfinite(best):
            out[int(step)] = best
    return out
