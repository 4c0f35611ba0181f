"""Early stopping against none and against the plain-Optuna peer, each on the same time budget.

    python benchmarks/bench_early_stop.py [--budget 30m] [--families fc2,attention] [--max-epochs 20]

On bal_train (its seeded 20 % validation split), the same families, seeds and search spaces, at
most ``--max-epochs`` per trial, one run after the other on this machine, each for ``--budget``
of wall time (the clock starts once the data are read):

1. tagtune with early stopping (``--scheduler``, default asha: per family, grace 2, rf 3);
2. tagtune without (``--scheduler none``: today's behaviour, every trial runs all its epochs);
3. the peer a user would write: one Optuna study per family (TPE with the same seeds and each
   family's defaults enqueued first, as tagtune does) with ``optuna.pruners.HyperbandPruner``, in
   a plain loop (families in turn, one trial at a time using every core), logged with
   optuna-integration's ``MLflowCallback``; a trial running when the budget ends stops at its
   next epoch.

Reported per run: best validation mAUC (over both families) at 25 %, 50 % and 100 % of the
budget, trials started, epochs trained, and the wall time to reach run 2's final best.
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
from typing import Any

import optuna
import torch
from _common import BAL_TRAIN, machine, print_table
from mlflow import MlflowClient

from tagtune.search import CheckedSearchSpec, prepare_data, run_search
from tagtune.search_spaces import load_space
from tagtune.tracking import anytime_table, parse_duration, search_trials
from tagtune.trainables.config import resolve_config
from tagtune.trainables.loop import fit

Events = list[tuple[float, float]]  # (seconds since the start, val_mAUC) per epoch trained


def _tagtune(args: argparse.Namespace, tmp: str, scheduler: str, budget: float) -> tuple[Events, int, int, int]:
    spec = CheckedSearchSpec(
        train=args.data,
        families=args.families.split(","),
        trials_per_family=None,
        time_budget=budget,
        max_epochs=args.max_epochs,
        experiment=f"tagtune-{scheduler}",
        tracking_uri=f"sqlite:///{tmp}/tagtune.db",
        storage_path=f"{tmp}/ray-{scheduler}",
        seed=args.seed,
        cpus_per_trial=args.cpus_per_trial,
        gpus_per_trial=0.0,
        scheduler=scheduler,
    )
    outcome = run_search(spec, echo=lambda line: None)
    client = MlflowClient(outcome.tracking_uri)
    parent = client.get_run(outcome.parent_run_id)
    trials = search_trials(client, outcome.experiment_id, outcome.parent_run_id)
    table = anytime_table(trials, int(parent.info.start_time))
    overall = table[table["family"] == "all"]
    events = list(zip(overall["seconds"], overall["best_val_mAUC"], strict=True))
    epochs = sum(len(trials.curves[r.info.run_id].get("val_mAUC", [])) for r in trials.trial_runs)
    stopped = sum(r.stopped for r in trials.rows)
    return events, len(trials.trial_runs), epochs, stopped


class _BudgetSpent(Exception):
    pass


def _peer(args: argparse.Namespace, tmp: str, budget: float) -> tuple[Events, int, int, int]:
    from optuna_integration.mlflow import MLflowCallback

    families = args.families.split(",")
    spec = CheckedSearchSpec(train=args.data, families=families, seed=args.seed)
    data = prepare_data(spec)
    torch.set_num_threads(os.cpu_count() or 1)
    spaces = {f: load_space(f) for f in families}
    studies: dict[str, optuna.Study] = {}
    callbacks: dict[str, Any] = {}
    for i, family in enumerate(families):
        studies[family] = optuna.create_study(
            study_name=f"peer-{family}",
            direction="maximize",
            sampler=optuna.samplers.TPESampler(seed=args.seed + i, n_startup_trials=10),
            pruner=optuna.pruners.HyperbandPruner(min_resource=1, max_resource=args.max_epochs, reduction_factor=3),
        )
        studies[family].enqueue_trial(spaces[family].fixed_params(resolve_config({"family": family})))
        callbacks[family] = MLflowCallback(tracking_uri=f"sqlite:///{tmp}/peer.db", metric_name="best_val_mAUC")
    events: Events = []
    counts = {"trials": 0, "epochs": 0}
    t0 = time.perf_counter()

    def objective(family: str, trial: optuna.Trial) -> float:
        consts = spaces[family].sample(trial)
        best = -math.inf

        def on_epoch(metrics: dict[str, float], improved: bool, model: Any) -> None:
            nonlocal best
            counts["epochs"] += 1
            best = max(best, metrics["val_mAUC"])
            events.append((time.perf_counter() - t0, metrics["val_mAUC"]))
            trial.report(best, int(metrics["epoch"]))
            if time.perf_counter() - t0 >= budget:
                raise _BudgetSpent
            if trial.should_prune():
                raise optuna.TrialPruned

        try:
            fit(
                {"family": family, "seed": args.seed, **trial.params, **consts},
                data,
                max_epochs=args.max_epochs,
                device="cpu",
                on_epoch=on_epoch,
            )
        except _BudgetSpent:
            raise optuna.TrialPruned from None
        return best

    turn = 0
    while time.perf_counter() - t0 < budget:
        family = families[turn % len(families)]
        turn += 1
        counts["trials"] += 1
        studies[family].optimize(lambda t, f=family: objective(f, t), n_trials=1, callbacks=[callbacks[family]])
    best_so_far: Events = []
    best = -math.inf
    for seconds, value in sorted(events):
        if value > best:
            best = value
            best_so_far.append((seconds, value))
    pruned = sum(t.state == optuna.trial.TrialState.PRUNED for st in studies.values() for t in st.trials)
    return best_so_far, counts["trials"], counts["epochs"], pruned


def _best_at(events: Events, seconds: float) -> float:
    return max((v for s, v in events if s <= seconds), default=math.nan)


def _reach(events: Events, target: float) -> float:
    return next((s for s, v in events if v >= target - 1e-12), math.nan)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", default="30m", help="wall time of each run, e.g. 6m, 30m, 2h (default: 30m)")
    parser.add_argument("--families", default="fc2,attention")
    parser.add_argument("--max-epochs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cpus-per-trial", type=float, default=1.0)
    parser.add_argument("--scheduler", default="asha", choices=("asha", "hyperband"), help="run 1's scheduler")
    parser.add_argument(
        "--runs",
        default="early,none,peer",
        help="which runs, in order: early (--scheduler), asha, hyperband, none, peer (default: %(default)s)",
    )
    parser.add_argument("--target", type=float, default=None, help="the mAUC to reach without a `none` run")
    parser.add_argument("--data", default=str(BAL_TRAIN))
    args = parser.parse_args()
    budget = parse_duration(args.budget, "--budget")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    results: dict[str, tuple[Events, int, int, int]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for run in args.runs.split(","):
            if run in ("early", "asha", "hyperband"):
                kind = args.scheduler if run == "early" else run
                results[f"tagtune, early stopping ({kind})"] = _tagtune(args, tmp, kind, budget)
            elif run == "none":
                results["tagtune, no early stopping"] = _tagtune(args, tmp, "none", budget)
            elif run == "peer":
                results["Optuna loop, TPE + HyperbandPruner, MLflowCallback"] = _peer(args, tmp, budget)
            else:
                parser.error(f"--runs: unknown run {run!r}")
    no_stop = results.get("tagtune, no early stopping", ([], 0, 0, 0))[0]
    target = max((v for _, v in no_stop), default=args.target if args.target is not None else math.nan)
    rows = []
    for name, (events, n_trials, epochs, stopped) in results.items():
        reach = _reach(events, target)
        rows.append(
            [
                name,
                *(_best_at(events, f * budget) for f in (0.25, 0.5, 1.0)),
                n_trials,
                stopped,
                epochs,
                f"{reach:.0f} s ({reach / budget:.0%})" if math.isfinite(reach) else "not reached",
            ]
        )
    print(
        f"\n# {args.families} on {args.data} (20 % validation), at most {args.max_epochs} epochs per trial, "
        f"{budget:.0f} s each, seed {args.seed}\n# {machine()}\n"
    )
    print_table(
        [
            "run",
            "best val mAUC @25%",
            "@50%",
            "@100%",
            "trials started",
            "stopped / pruned",
            "epochs trained",
            f"reach {target:.4f}",
        ],
        rows,
    )


if __name__ == "__main__":
    main()
