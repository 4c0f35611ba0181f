"""The work behind the CLI's report, export and train commands (no argument parsing here)."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tagtune.errors import InputError
from tagtune.names import Metrics
from tagtune.tracking import (
    RunKind,
    SearchSpec,
    Tag,
    find_experiment,
    get_or_create_experiment,
    latest_search_run,
    open_run,
    open_store,
    read_config,
    recorded_spaces_dir,
    search_trials,
    write_configs,
)


def report(
    experiment: str,
    tracking_uri: str | None,
    run_id: str | None = None,
    log: bool = True,
    html: str | None = None,
) -> tuple[str, Any]:
    """The report of a search (the newest, or ``run_id``): Markdown and the per-family DataFrame.

    The Markdown holds two tables: per family the max/min/mean validation mAUC over the trials
    (with the finals' eval scores and the ensembles once ``tagtune finalize`` ran), and runtime
    per family.  The DataFrame is :func:`tagtune.tracking.summary.family_summary` plus ``eval_*`` columns.
    With ``log``, the tables are logged on the search's parent run (``report/``, ``tables/``).
    With ``html``, the dashboard is written there and logged on the parent run (``dashboard/``).
    """
    from tagtune.report import collect, report_markdown, write_dashboard

    client, uri = open_store(tracking_uri)
    exp = find_experiment(client, uri, experiment)
    parent = latest_search_run(client, exp, run_id)
    trials = search_trials(client, exp.experiment_id, parent.info.run_id, recorded_spaces_dir(parent))
    if not len(trials):
        raise InputError(f"search run {parent.info.run_id} of {experiment!r} has no trials yet")
    data = collect(client, exp, parent, per_class=html is not None, trials=trials)
    table = data.summary
    markdown = report_markdown(data)
    if log:
        with tempfile.TemporaryDirectory() as tmp:
            table.to_csv(Path(tmp) / "family_summary.csv", index=False)
            (Path(tmp) / "family_summary.md").write_text(markdown + "\n")
            client.log_artifacts(parent.info.run_id, tmp, "report")
        with tempfile.TemporaryDirectory() as tmp:
            data.runtime.to_csv(Path(tmp) / "runtime.csv", index=False)
            if data.health is not None:
                data.health.to_csv(Path(tmp) / "search_health.csv", index=False)
            if data.has_finals:
                data.finals.to_csv(Path(tmp) / "finals.csv", index=False)
            client.log_artifacts(parent.info.run_id, tmp, "tables")
    if html is not None:
        write_dashboard(client, data, html)
    return markdown, table


def export(experiment: str, tracking_uri: str | None, out_dir: str, run_id: str | None = None) -> list[Path]:
    """Write each family's best config of a search as YAML into ``out_dir``."""
    client, uri = open_store(tracking_uri)
    exp = find_experiment(client, uri, experiment)
    parent = latest_search_run(client, exp, run_id)
    best = search_trials(client, exp.experiment_id, parent.info.run_id).best()
    if not best:
        raise InputError(f"experiment {experiment!r} has no completed trial to export")
    return write_configs(best, experiment, out_dir)


def train(
    config_path: str,
    train_path: str,
    *,
    max_epochs: int,
    experiment: str,
    tracking_uri: str | None,
    val_fraction: float = SearchSpec.val_fraction,
    seed: int = SearchSpec.seed,
    echo: Callable[[str], None] = print,
    options: Any = None,
) -> tuple[str, dict[str, float]]:
    """Retrain one config on ``train_path`` and log it as an MLflow run; returns (run id, best).
    ``options``: how ``train_path`` is read (a ``ReadOptions``: ``--feature-key`` ...)."""
    from tagtune import search
    from tagtune.trainables.checkpoint import model_meta, save_model
    from tagtune.trainables.config import resolve_config
    from tagtune.trainables.loop import fit

    config = read_config(config_path)
    try:
        full = resolve_config(config)
    except InputError as exc:
        raise InputError(f"--config {config_path}: {exc}") from None
    if max_epochs < 1:
        raise InputError(f"--max-epochs must be at least 1, got {max_epochs}")
    if not Path(train_path).exists():
        raise InputError(f"--train {train_path}: no such file or folder")
    client, uri = open_store(tracking_uri)
    keys = (
        {k: getattr(options, k) for k in ("feature_key", "label_key", "group_key", "task")}
        if options is not None
        else {}
    )
    spec = search.CheckedSearchSpec(train_path, [full["family"]], val_fraction=val_fraction, seed=seed, **keys)
    data = search.prepare_data(spec)
    exp = get_or_create_experiment(client, uri, experiment)
    with open_run(
        client,
        exp.experiment_id,
        kind=RunKind.TRAIN,
        run_name=f"train-{full['family']}-{time.strftime('%Y%m%d-%H%M%S')}",
        tags={Tag.FAMILY: full["family"], Tag.CONFIG_FILE: os.path.abspath(config_path)},
        params=dict(sorted(full.items())),
    ) as run:
        rid = run.run_id

        def on_epoch(metrics: dict[str, float], improved: bool, model: Any) -> None:
            step = int(metrics["epoch"])
            run.log(metrics={k: v for k, v in metrics.items() if k != "epoch"}, step=step)
            echo(
                f"epoch {step}/{max_epochs}: val_mAUC {metrics[Metrics.VAL_MAUC]:.4f} "
                f"val_mAP {metrics[Metrics.VAL_MAP]:.4f} ({metrics[Metrics.EPOCH_SECONDS]:.1f} s)"
            )

        result = fit(full, data, max_epochs=max_epochs, on_epoch=on_epoch)
        with tempfile.TemporaryDirectory() as tmp:
            save_model(tmp, result.best_state, model_meta(full, data, result.best))
            client.log_artifacts(rid, tmp, "checkpoint")
    return rid, result.best
