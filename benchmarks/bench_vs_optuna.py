"""tagtune's search against the same trial configs run as a plain single-process Optuna loop.

    python benchmarks/bench_vs_optuna.py [--family fc2] [--trials 8] [--epochs 3] [--data PATH]

1. tagtune runs a search (Ray Tune, one Optuna study, MLflow from the driver callback).
2. The configs its trials ran are read back from MLflow and enqueued, in the same order, into a
   plain Optuna study whose objective calls the same training function (torch using every core),
   logged with optuna-integration's MLflowCallback: what a user would otherwise write.
Reported: the wall-time ratio (target <= 1.1 on one machine), per-trial overhead, and search
efficiency = sum of the trials' training seconds / (wall seconds x concurrent slots) (target >= 0.85).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import optuna
import torch
from _common import BAL_TRAIN, machine, print_table
from mlflow import MlflowClient

from tagtune.search import CheckedSearchSpec, prepare_data, run_search
from tagtune.search_spaces import load_space
from tagtune.tracking import parent_filter
from tagtune.trainables.loop import fit


def _typed(value: str):
    import yaml

    return yaml.safe_load(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", default="fc2")
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--data", default=str(BAL_TRAIN))
    args = parser.parse_args()
    slots = os.cpu_count() or 1
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        spec = CheckedSearchSpec(
            train=args.data,
            families=[args.family],
            trials_per_family=args.trials,
            max_epochs=args.epochs,
            scheduler="none",  # the same configs, each for every epoch, on both sides
            experiment="tagtune",
            tracking_uri=f"sqlite:///{tmp}/tagtune.db",
            storage_path=f"{tmp}/ray",
        )
        t = time.perf_counter()
        start_epoch = time.time()
        outcome = run_search(spec, echo=lambda line: None)
        tagtune_wall = time.perf_counter() - t
        client = MlflowClient(outcome.tracking_uri)
        runs = client.search_runs(
            [outcome.experiment_id],
            filter_string=parent_filter(outcome.parent_run_id),
            order_by=["attributes.start_time ASC"],
        )
        train_seconds = sum(m.value for r in runs for m in client.get_metric_history(r.info.run_id, "epoch_seconds"))
        # where the rest goes: before the first trial starts (Ray, data, MLflow), and the end of
        # the search where fewer trials than slots are left
        startup = min(r.info.start_time for r in runs) / 1000 - start_epoch
        ends = sorted(r.info.end_time / 1000 for r in runs)
        tail = sum(ends[-1] - e for e in ends[-slots:])
        space = load_space(args.family)
        names = {p.name for p in space.params}
        configs = [{k: _typed(v) for k, v in r.data.params.items() if k in names} for r in runs]

        from optuna_integration.mlflow import MLflowCallback

        torch.set_num_threads(slots)
        data = prepare_data(spec)
        study = optuna.create_study(direction="maximize")
        for cfg in configs:
            study.enqueue_trial(cfg)

        def objective(trial: optuna.Trial) -> float:
            consts = space.sample(trial)
            result = fit({"family": args.family, **trial.params, **consts}, data, max_epochs=args.epochs)
            return result.best["val_mAUC"]

        callback = MLflowCallback(tracking_uri=f"sqlite:///{tmp}/optuna.db", metric_name="val_mAUC")
        t = time.perf_counter()
        study.optimize(objective, n_trials=len(configs), callbacks=[callback])
        optuna_wall = time.perf_counter() - t
    n = len(configs)
    print(f"\n# {args.family}, {n} trials x {args.epochs} epochs on {args.data}\n# {machine()}, {slots} slots\n")
    print_table(
        ["what", "value", "target"],
        [
            ["tagtune wall s (Ray Tune + MLflow callback)", tagtune_wall, ""],
            ["plain Optuna loop wall s (MLflowCallback)", optuna_wall, ""],
            ["wall-time ratio tagtune / Optuna", tagtune_wall / optuna_wall, "<= 1.1"],
            ["tagtune overhead per trial, s", (tagtune_wall * slots - train_seconds) / n, ""],
            ["search efficiency", train_seconds / (tagtune_wall * slots), ">= 0.85"],
            ["  startup before the first trial, s (Ray, data, MLflow)", startup, ""],
            ["  idle slot-seconds while the last trials finish", tail, ""],
            ["  efficiency from the first trial's start", train_seconds / ((tagtune_wall - startup) * slots), ""],
        ],
    )


if __name__ == "__main__":
    main()
