"""``tagtune repeat``: a search's best configs trained again with other seeds (issue 26).

A search trains each config once, with one seed, so two configs within the seed-to-seed noise
cannot be told apart.  :func:`repeat_best` takes each family's ``top_k`` trials that ran every
epoch, trains each again ``seeds`` times (seeds: the trial's own ``+1000``, ``+2000``, ...) on the
search's own training and validation split for the search's ``--max-epochs``, and logs each as a
``repeat`` run under the search run (tagged with the trial it repeats).  ``tagtune report`` then
shows each repeated config's spread: the trial's score and the repeats', their mean, standard
deviation, minimum and maximum (seed 000's max/min/mean over runs, with the noise visible).  Run
again, it trains only the seeds not yet logged.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from tagtune import tracking
from tagtune.errors import InputError
from tagtune.names import Metrics, Tag

SEED_STEP = 1000
"""A repeat's seed: the trial's seed plus ``k * SEED_STEP`` (as ``finalize --seeds``)."""


def repeat_seeds(seed: int, n: int) -> list[int]:
    """The seeds of ``n`` repeats of a trial trained with ``seed``."""
    return [seed + SEED_STEP * k for k in range(1, n + 1)]


def _best_rows(trials: Any, family: str, top_k: int) -> list[Any]:
    """The family's ``top_k`` trials that ran every epoch, best validation mAUC first."""
    return tracking.rank_by_family([r for r in trials.rows if r.full_length]).get(family, [])[:top_k]


def repeat_best(
    experiment: str,
    tracking_uri: str | None,
    *,
    run_id: str | None = None,
    top_k: int = 1,
    seeds: int = 2,
    echo: Callable[[str], None] = print,
) -> list[str]:
    """Train each family's ``top_k`` full-length trials again with ``seeds`` other seeds; the
    new ``repeat`` runs' ids (see the module)."""
    from tagtune.search import CheckedSearchSpec, prepare_data

    if top_k < 1 or seeds < 1:
        raise InputError(f"--top-k and --seeds must be at least 1, got {top_k} and {seeds}")
    client, uri = tracking.open_store(tracking_uri, experiment)
    exp = tracking.find_experiment(client, uri, experiment)
    parent = tracking.latest_search_run(client, exp, run_id)
    spec = CheckedSearchSpec.from_params(parent.data.params, experiment=experiment, tracking_uri=uri)
    trials = tracking.search_trials(client, exp.experiment_id, parent.info.run_id, spec.spaces_dir)
    done = {
        (r.data.tags.get(Tag.REPEAT_OF), r.data.params.get("seed"))
        for r in trials.runs
        if tracking.run_kind(r) == tracking.RunKind.REPEAT.value and r.info.status == "FINISHED"
    }
    planned = [
        (row, seed)
        for family in spec.families
        for row in _best_rows(trials, family, top_k)
        for seed in repeat_seeds(int(row.config().get("seed", spec.seed)), seeds)
        if (row.run_id, str(seed)) not in done
    ]
    if not planned:
        echo("nothing to repeat: every planned seed is logged (or no trial ran every epoch)")
        return []
    echo(f"repeating {len(planned)} trainings of the best configs of {parent.info.run_id[:8]} ...")
    data = prepare_data(spec)
    return [
        _repeat_one(client, exp.experiment_id, parent.info.run_id, row, seed, data, spec, echo) for row, seed in planned
    ]


def _repeat_one(
    client: Any,
    experiment_id: str,
    parent_id: str,
    row: Any,
    seed: int,
    data: Any,
    spec: Any,
    echo: Callable[[str], None],
) -> str:
    """One repeat: the trial's config with ``seed``, trained and logged as a ``repeat`` run."""
    from tagtune.trainables.config import resolve_config
    from tagtune.trainables.loop import fit

    full = resolve_config({**row.config(), "family": row.family, "seed": seed})
    tags = {Tag.FAMILY: row.family, Tag.REPEAT_OF: row.run_id}
    name = f"repeat-{row.family}-{row.run_id[:8]}-seed{seed}"
    with tracking.open_run(
        client,
        experiment_id,
        kind=tracking.RunKind.REPEAT,
        run_name=name,
        tags=tags,
        params=dict(sorted(full.items())),
        parent_run_id=parent_id,
    ) as run:

        def on_epoch(metrics: dict[str, float], improved: bool, model: Any) -> None:
            run.log(metrics={k: v for k, v in metrics.items() if k != "epoch"}, step=int(metrics["epoch"]))

        best = fit(full, data, max_epochs=spec.max_epochs, on_epoch=on_epoch).best
        echo(
            f"{name}: best val_mAUC {best[Metrics.VAL_MAUC]:.4f} (the trial's {row.best_mAUC:.4f}) "
            f"at epoch {int(best['epoch'])}"
        )
        return str(run.run_id)


def seed_spread(trials: Any) -> Any:
    """Per repeated trial: family, trial run, seeds, the trial's and the repeats' best validation
    mAUC, their mean, std, min and max (a pandas DataFrame; empty without repeats)."""
    import numpy as np
    import pandas as pd

    columns = ["family", "trial", "seeds", "trial_mAUC", "mean_mAUC", "std_mAUC", "min_mAUC", "max_mAUC"]
    rows = {r.run_id: r for r in trials.rows}
    repeats: dict[str, list[float]] = {}
    for run in trials.runs:
        if tracking.run_kind(run) != tracking.RunKind.REPEAT.value or run.info.status != "FINISHED":
            continue
        value = float(run.data.metrics.get(Metrics.BEST_VAL_MAUC, math.nan))
        if math.isfinite(value) and run.data.tags.get(Tag.REPEAT_OF) in rows:
            repeats.setdefault(run.data.tags[Tag.REPEAT_OF], []).append(value)
    out = []
    for trial_id, values in repeats.items():
        row = rows[trial_id]
        every = np.array([row.best_mAUC, *values])
        out.append(
            [row.family, trial_id[:8], len(every), row.best_mAUC, every.mean(), every.std(), every.min(), every.max()]
        )
    return pd.DataFrame(out, columns=columns).sort_values(["family", "mean_mAUC"], ascending=[True, False])
