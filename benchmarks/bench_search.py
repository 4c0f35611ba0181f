"""tagtune's search against its peers: equal wall-clock budgets, same tasks, same splits.

    python benchmarks/bench_search.py [--budget 2m] [--tasks audioset,speech,fsdd-hear,float512]
        [--systems tagtune,portfolio,no-defaults,random,optuna,ray,hear] [--seeds 0]
        [--out benchmarks/out/search] [--portfolios benchmarks/out/portfolios] [--full] [--quick]

Tasks: ``benchmarks/_tasks.py`` (data built once under ``benchmarks/out/tasks``).  Each system
gets ``--budget`` of search wall time per task and seed on the task's one validation split
(tagtune's seeded 20 % of ``--train``, or the HEAR folder's own ``valid``), searching the task's
families with tagtune's search spaces and its one training function
(``tagtune.trainables.loop.fit``) at most the task's ``max_epochs`` per trial, so only the search
differs (system 6 has its own protocol, as the kit has):

1. ``tagtune``: ``tagtune search`` with its default flags (``--time-budget``, ``--max-epochs``,
   ``--seed``, ``--families`` and the task's ``--spaces`` / ``--task`` only);
1b. ``portfolio``: the same with ``--portfolio <the task's leave-one-task-out portfolio>``
   (``learn_portfolio.py --loto-dir``: the configs learned on the *other* tasks run first);
1c. ``patience``: the same with ``--patience 5`` (a trial whose validation mAUC has not improved
   for 5 epochs ends, its epochs go to other trials);
2. ``no-defaults``: the same with ``--no-defaults-first``;
3. ``random``: random search through tagtune, ``--sampler random --no-defaults-first``;
4. ``optuna``: a plain Optuna loop as a user writes it: one study, the family a categorical and
   each family's space sampled define-by-run, ``TPESampler(seed)``,
   ``HyperbandPruner(min_resource=1, max_resource=max_epochs, reduction_factor=3)`` on the
   epoch's ``val_mAUC``, optuna-integration's ``MLflowCallback``; one trial at a time with every
   core (``torch.set_num_threads``); a trial running when the budget ends stops at its next epoch;
5. ``ray``: Ray Tune's own ``OptunaSearch`` (the same define-by-run space, seeded) +
   ``ASHAScheduler(max_t=max_epochs)`` (Ray's defaults otherwise: grace 1, reduction factor 4) +
   ``MLflowLoggerCallback``, ``TuneConfig(time_budget_s=budget)``, 1 CPU per trial as tagtune;
6. ``hear``: hear-eval-kit's downstream protocol, RE-CREATED here (the kit does not install on
   Python 3.11): a 16-point grid (Adam; lr 1e-4, 3.2e-4, 1e-3, 3.2e-3; 1 or 2 hidden layers of
   1024; xavier uniform or normal init; dropout 0.1, BatchNorm1d before the dropout and ReLU, no
   embedding normalization, batch 1024; the kit's ``FullyConnectedPrediction``), 8 points drawn
   (``random.shuffle`` of the grid, seeded, first 8), each trained on the raw per-clip embedding
   (AudioSet: the 10 x 128 uint8 sequence / 255, flattened) for up to 500 epochs with validation
   every 3 epochs and early stopping after 20 checks without improvement of the task's validation
   score (the kit's primary score: mAP for multi-label and the binary task, top-1 accuracy for
   single-label), the best check's weights kept; the grid point with the best validation score is
   selected.  Its points run in turn with every core until the budget ends.

The test split is scored only for the config each system selects (its trial with the best
validation mAUC, the objective of systems 1-5; system 6 by its own score): that config is
RETRAINED, with the trial's seed, on the same training split for the epochs at which the
trial reached its best validation score, and scored on the held-out test set, the same way for
every system (tagtune's fit is deterministic on CPU for a seed, so this rebuilds the selected
trial's model rather than a new one).  Test metrics: mAP (AudioSet), F1 at the best threshold
(Speech vs rest), accuracy (FSDD, generated).

Reported per task and system: best validation mAUC reached by 25 / 50 / 100 % of the budget
(from each system's own start), the test score, trials started, and the share of sampled trials
(a tagtune default config is not sampled) that never left chance (best validation mAUC below
0.55).  With several seeds: mean and spread (min-max).  A summary: tagtune's default test score
against the best peer's (systems 4-6) per task.  Tables are printed and written to
``--out``/results.md, the raw figures to ``--out``/results.json.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import torch
from _common import machine
from _tasks import TASKS, Task, TaskData

from tagtune.search_spaces import load_space
from tagtune.trainables.loop import fit

SYSTEMS = ("tagtune", "portfolio", "patience", "no-defaults", "random", "optuna", "ray", "hear")
TAGTUNE_SYSTEMS = ("tagtune", "portfolio", "patience", "no-defaults", "random")
PATIENCE = 5
LABELS = {
    "tagtune": "1 tagtune (default flags)",
    "portfolio": "1b tagtune --portfolio (learned on the other tasks)",
    "patience": f"1c tagtune --patience {PATIENCE}",
    "no-defaults": "2 tagtune --no-defaults-first",
    "random": "3 tagtune --sampler random --no-defaults-first",
    "optuna": "4 Optuna loop: TPE + HyperbandPruner + MLflowCallback",
    "ray": "5 Ray Tune: OptunaSearch + ASHAScheduler + MLflowLoggerCallback",
    "hear": "6 hear-eval-kit protocol (re-created)",
}
PEERS = ("optuna", "ray", "hear")
PORTFOLIOS = Path(__file__).resolve().parent / "out" / "portfolios"
CHANCE_MAUC = 0.55
FRACTIONS = (0.25, 0.5, 1.0)


@dataclasses.dataclass
class TrialRecord:
    """One trial of a system: its config, when it started, its validation curve."""

    config: dict[str, Any]
    start: float  # seconds since the system's start
    events: list[tuple[float, float]]  # (seconds since the start, val_mAUC) per epoch / check
    sampled: bool = True
    selection: float = math.nan  # the score the system selects by (val mAUC; hear: its own)
    best_epoch: int = 0  # the epoch of the selection score's best

    @property
    def best_val(self) -> float:
        return max((v for _, v in self.events), default=math.nan)


@dataclasses.dataclass
class SystemRun:
    system: str
    trials: list[TrialRecord]
    budget: float
    test: float = math.nan
    selected: dict[str, Any] | None = None

    def best_at(self, fraction: float) -> float:
        """The best validation mAUC by ``fraction`` of the budget; at 1.0 the search's final best
        (an epoch running when the budget ended counts: each system lets it finish)."""
        cut = fraction * self.budget + 1e-9 if fraction < 1 else math.inf
        vals = [v for t in self.trials for s, v in t.events if s <= cut and not math.isnan(v)]
        return max(vals, default=math.nan)

    def chance_share(self) -> float:
        sampled = [t for t in self.trials if t.sampled and t.events]
        if not sampled:
            return math.nan
        return sum(t.best_val < CHANCE_MAUC for t in sampled) / len(sampled)

    def best_trial(self) -> TrialRecord | None:
        done = [t for t in self.trials if t.events and not math.isnan(t.selection)]
        return max(done, key=lambda t: t.selection) if done else None


# ------------------------------------------------------------------------------------------
# the data every in-process system shares
# ------------------------------------------------------------------------------------------


def _spec(task: Task, data: TaskData, seed: int):
    from tagtune.search import CheckedSearchSpec

    return CheckedSearchSpec(
        train=str(data.train),
        families=list(task.families),
        seed=seed,
        spaces_dir=str(data.spaces_dir) if data.spaces_dir else None,
        task=task.read_task,
    )


def _allowed(family: str) -> set[str]:
    from tagtune.trainables.config import TRAIN_DEFAULTS
    from tagtune.trainables.models import get_family

    return set(TRAIN_DEFAULTS) | set(get_family(family).hparams) | {"family"}


# ------------------------------------------------------------------------------------------
# systems 1-3: tagtune search, its own command line parsed in-process (one Ray for all)
# ------------------------------------------------------------------------------------------


def run_tagtune(
    system: str, task: Task, data: TaskData, seed: int, budget: float, work: Path, portfolios: Path | None = None
) -> SystemRun:
    from mlflow import MlflowClient

    from tagtune.cli import build_parser, read_options_from_args, search_spec_from_args
    from tagtune.families import try_open
    from tagtune.names import Tag
    from tagtune.search import run_search
    from tagtune.tracking import search_trials

    argv = ["search", "--train", str(data.train), "--families", ",".join(task.families)]
    argv += ["--time-budget", f"{budget:g}s", "--max-epochs", str(task.max_epochs), "--seed", str(seed)]
    argv += ["--experiment", system, "--tracking-uri", f"sqlite:///{work}/tagtune.db"]
    argv += ["--storage-path", str(work / "ray")]
    if data.spaces_dir:
        argv += ["--spaces", str(data.spaces_dir)]
    if task.read_task:
        argv += ["--task", task.read_task]
    if system == "portfolio":
        loto = (portfolios or PORTFOLIOS) / f"{task.name}.yaml"
        if not loto.is_file():
            raise SystemExit(f"{loto}: no such file; run learn_portfolio.py --loto-dir {loto.parent} first")
        argv += ["--portfolio", str(loto)]
    elif system == "patience":
        argv += ["--patience", str(PATIENCE)]
    elif system == "no-defaults":
        argv += ["--no-defaults-first"]
    elif system == "random":
        argv += ["--sampler", "random", "--no-defaults-first"]
    args = build_parser().parse_args(argv)
    source = try_open(args.train, read_options_from_args(args))
    spec = search_spec_from_args(args, source)
    outcome = run_search(spec, echo=lambda line: None, source=source)
    client = MlflowClient(outcome.tracking_uri)
    t0 = client.get_run(outcome.parent_run_id).info.start_time / 1000
    trials = search_trials(client, outcome.experiment_id, outcome.parent_run_id)
    rows = {r.run_id: r for r in trials.rows}
    records: list[TrialRecord] = []
    for run in sorted(trials.trial_runs, key=lambda r: r.info.start_time):
        row = rows.get(run.info.run_id)
        if row is None:
            continue
        hist = sorted(client.get_metric_history(run.info.run_id, "val_mAUC"), key=lambda m: m.step)
        events = [(m.timestamp / 1000 - t0, float(m.value)) for m in hist]
        cfg = {k: v for k, v in row.config().items() if k in _allowed(row.family)}
        cfg["family"] = row.family
        default = run.data.tags.get(Tag.FIRST_TRIAL) == "True"  # the defaults or a portfolio's config
        best_epoch = max(hist, key=lambda m: m.value).step if hist else 0
        records.append(
            TrialRecord(cfg, run.info.start_time / 1000 - t0, events, not default, row.best_mAUC, int(best_epoch))
        )
    return SystemRun(system, records, budget)


# ------------------------------------------------------------------------------------------
# system 4: a plain Optuna loop
# ------------------------------------------------------------------------------------------


@dataclasses.dataclass
class DefineByRun:
    """The search space as a user of Optuna writes it: the family a categorical, then the
    family's tagtune space sampled define-by-run; returns the constants (Optuna records the
    rest, Ray's OptunaSearch merges both).  A class, so that Ray can pickle it."""

    families: tuple[str, ...]
    spaces: dict[str, Any]
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __call__(self, trial: optuna.Trial) -> dict[str, Any]:
        family = trial.suggest_categorical("family", list(self.families))
        return {**self.extra, **self.spaces[family].sample(trial)}


def _define_by_run(task: Task, spaces: dict[str, Any], extra: dict[str, Any] | None = None) -> DefineByRun:
    return DefineByRun(tuple(task.families), spaces, dict(extra or {}))


def run_optuna(task: Task, data: TaskData, seed: int, budget: float, work: Path, trial_data: Any) -> SystemRun:
    from optuna_integration.mlflow import MLflowCallback

    spaces = {f: load_space(f, data.spaces_dir) for f in task.families}
    sample = _define_by_run(task, spaces)
    torch.set_num_threads(os.cpu_count() or 1)
    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.HyperbandPruner(min_resource=1, max_resource=task.max_epochs, reduction_factor=3),
    )
    callback = MLflowCallback(tracking_uri=f"sqlite:///{work}/optuna.db", metric_name="val_mAUC")
    records: list[TrialRecord] = []
    t0 = time.perf_counter()

    def objective(trial: optuna.Trial) -> float:
        consts = sample(trial)
        cfg = {"seed": seed, **trial.params, **consts}
        rec = TrialRecord(cfg, time.perf_counter() - t0, [])
        records.append(rec)

        def on_epoch(metrics: dict[str, float], improved: bool, model: Any) -> None:
            rec.events.append((time.perf_counter() - t0, metrics["val_mAUC"]))
            if improved:
                rec.selection, rec.best_epoch = metrics["val_mAUC"], int(metrics["epoch"])
            trial.report(metrics["val_mAUC"], int(metrics["epoch"]))
            if time.perf_counter() - t0 >= budget or trial.should_prune():
                raise optuna.TrialPruned

        fit(cfg, trial_data, max_epochs=task.max_epochs, device="cpu", on_epoch=on_epoch)
        return rec.selection

    study.optimize(
        objective,
        timeout=budget,
        callbacks=[callback],
        catch=(FloatingPointError,),  # a diverged trial (tagtune's TrainingDiverged) fails, the loop goes on
    )
    return SystemRun("optuna", records, budget)


# ------------------------------------------------------------------------------------------
# system 5: Ray Tune's OptunaSearch + ASHAScheduler + MLflowLoggerCallback
# ------------------------------------------------------------------------------------------


def _ray_trainable(config: dict[str, Any], data: Any, max_epochs: int) -> None:
    from ray import tune

    torch.set_num_threads(1)

    def on_epoch(metrics: dict[str, float], improved: bool, model: Any) -> None:
        tune.report({**metrics, "wall": time.time()})

    fit(config, data, max_epochs=max_epochs, device="cpu", on_epoch=on_epoch)


def run_ray(task: Task, data: TaskData, seed: int, budget: float, work: Path, trial_data: Any) -> SystemRun:
    from ray import tune
    from ray.air.integrations.mlflow import MLflowLoggerCallback
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    spaces = {f: load_space(f, data.spaces_dir) for f in task.families}
    space = _define_by_run(task, spaces, {"seed": seed})

    tuner = tune.Tuner(
        tune.with_resources(
            tune.with_parameters(_ray_trainable, data=trial_data, max_epochs=task.max_epochs), {"cpu": 1}
        ),
        tune_config=tune.TuneConfig(
            search_alg=OptunaSearch(space=space, metric="best_val_mAUC", mode="max", seed=seed),
            scheduler=ASHAScheduler(metric="best_val_mAUC", mode="max", max_t=task.max_epochs),
            num_samples=-1,
            time_budget_s=budget,
        ),
        run_config=tune.RunConfig(
            name="ray-peer",
            storage_path=str(work / "ray-peer"),
            callbacks=[MLflowLoggerCallback(tracking_uri=f"sqlite:///{work}/ray.db", experiment_name="ray-peer")],
            verbose=0,
        ),
    )
    t0 = time.time()
    results = tuner.fit()
    records: list[TrialRecord] = []
    for result in results:
        if result.error is not None:
            print(f"ray peer: a trial failed: {str(result.error)[-300:]}", file=sys.stderr)
        df = result.metrics_dataframe
        if df is None or df.empty or "val_mAUC" not in df:
            records.append(TrialRecord(dict(result.config or {}), math.nan, []))
            continue
        events = [(float(w) - t0, float(v)) for w, v in zip(df["wall"], df["val_mAUC"], strict=True)]
        best = int(df["val_mAUC"].astype(float).idxmax())
        start = events[0][0] - float(df["epoch_seconds"].iloc[0])
        records.append(
            TrialRecord(
                dict(result.config),
                start,
                events,
                True,
                float(df["val_mAUC"].max()),
                int(df["epoch"].iloc[best]),
            )
        )
    return SystemRun("ray", records, budget)


# ------------------------------------------------------------------------------------------
# system 6: hear-eval-kit's downstream protocol, re-created
# ------------------------------------------------------------------------------------------

HEAR_GRID = {
    "hidden_layers": [1, 2],
    "hidden_dim": [1024],
    "dropout": [0.1],
    "lr": [3.2e-3, 1e-3, 3.2e-4, 1e-4],
    "patience": [20],
    "max_epochs": [500],
    "check_val_every_n_epoch": [3],
    "batch_size": [1024],
    "norm_after_activation": [False],
    "initialization": ["xavier_uniform", "xavier_normal"],
    "optim": ["adam"],
}
HEAR_GRID_POINTS = 8


def hear_grid(seed: int) -> list[dict[str, Any]]:
    """The grid's points in sklearn's ParameterGrid order, shuffled, the first 8 (as the kit)."""
    keys = sorted(HEAR_GRID)
    points: list[dict[str, Any]] = [{}]
    for k in keys:
        points = [{**p, k: v} for p in points for v in HEAR_GRID[k]]
    random.Random(seed).shuffle(points)
    return points[:HEAR_GRID_POINTS]


class HearMLP(torch.nn.Module):
    """The kit's ``FullyConnectedPrediction`` (hidden_norm BatchNorm1d, norm before activation)."""

    def __init__(self, nfeatures: int, nlabels: int, conf: dict[str, Any]) -> None:
        super().__init__()
        init = getattr(torch.nn.init, conf["initialization"] + "_")
        layers: list[torch.nn.Module] = []
        curdim, last = nfeatures, "linear"
        for _ in range(conf["hidden_layers"]):
            linear = torch.nn.Linear(curdim, conf["hidden_dim"])
            init(linear.weight, gain=torch.nn.init.calculate_gain(last))
            layers += [
                linear,
                torch.nn.BatchNorm1d(conf["hidden_dim"]),
                torch.nn.Dropout(conf["dropout"]),
                torch.nn.ReLU(),
            ]
            curdim, last = conf["hidden_dim"], "relu"
        self.hidden = torch.nn.Sequential(*layers) if layers else torch.nn.Identity()
        self.projection = torch.nn.Linear(curdim, nlabels)
        init(self.projection.weight, gain=torch.nn.init.calculate_gain(last))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projection(self.hidden(x))


@dataclasses.dataclass
class HearData:
    x: np.ndarray  # raw per-clip embeddings, float32 [N, D]
    y: np.ndarray  # bool [N, C] (the binary task: [N, 1])
    train_idx: np.ndarray
    val_idx: np.ndarray
    multiclass: bool


def hear_features(x: np.ndarray) -> np.ndarray:
    """The raw embedding as a per-clip float vector (uint8 AudioSet: / 255, the sequence flattened)."""
    x = np.asarray(x)
    out = x.astype(np.float32) / np.float32(255.0) if x.dtype == np.uint8 else x.astype(np.float32)
    return out.reshape(len(out), -1)


def hear_data(task: Task, trial_data: Any) -> HearData:
    from tagtune.trainables.techniques import resolve_target_class

    y = np.asarray(trial_data.y, dtype=bool)
    if task.label_kind == "binary":
        col = resolve_target_class("Speech", trial_data.class_names)
        y = y[:, col : col + 1]
    return HearData(
        hear_features(trial_data.clips.x),
        y,
        np.asarray(trial_data.train_idx),
        np.asarray(trial_data.val_idx),
        task.label_kind == "multiclass",
    )


def _hear_score(logits: torch.Tensor, y: torch.Tensor, multiclass: bool) -> dict[str, float]:
    from tagtune.trainables.metrics import accuracy, tagging_metrics

    probs = logits.softmax(1) if multiclass else logits.sigmoid()
    m = tagging_metrics(probs, y)
    return {"mAUC": m["mAUC"], "primary": accuracy(logits, y.float().argmax(1)) if multiclass else m["mAP"]}


def hear_train(
    conf: dict[str, Any],
    d: HearData,
    seed: int,
    *,
    epochs: int | None = None,
    on_check: Callable[[int, dict[str, float]], bool] | None = None,
) -> tuple[HearMLP, int, float]:
    """Train one grid point: validation every 3 epochs, early stopping after ``patience`` checks
    without improvement of the primary score, the best check's weights kept.  ``epochs``: train
    exactly that long and keep the last weights (the retrain of a selected point).
    ``on_check(epoch, scores)`` returning True stops it (the budget).  Returns the model, the best
    epoch and the best primary score."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    x = torch.from_numpy(d.x)
    y = torch.from_numpy(d.y)
    model = HearMLP(x.shape[1], y.shape[1], conf)
    opt = torch.optim.Adam(model.parameters(), lr=conf["lr"])
    loss_fn = torch.nn.CrossEntropyLoss() if d.multiclass else torch.nn.BCEWithLogitsLoss()
    best, best_epoch, best_state, bad = -math.inf, 0, None, 0
    n_epochs = epochs if epochs is not None else conf["max_epochs"]
    for epoch in range(1, n_epochs + 1):
        model.train()
        order = d.train_idx[rng.permutation(len(d.train_idx))]
        for i in range(0, len(order), conf["batch_size"]):
            idx = torch.from_numpy(order[i : i + conf["batch_size"]])
            xb, yb = x[idx], y[idx]
            if len(idx) < 2:  # BatchNorm needs two
                continue
            out = model(xb)
            loss = loss_fn(out, yb.float().argmax(1)) if d.multiclass else loss_fn(out, yb.float())
            opt.zero_grad()
            loss.backward()
            opt.step()
        if epochs is not None or epoch % conf["check_val_every_n_epoch"]:
            continue
        model.eval()
        with torch.no_grad():
            scores = _hear_score(model(x[torch.from_numpy(d.val_idx)]), y[torch.from_numpy(d.val_idx)], d.multiclass)
        stop = on_check(epoch, scores) if on_check else False
        if scores["primary"] > best:
            best, best_epoch, bad = scores["primary"], epoch, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            bad += 1
        if stop or bad >= conf["patience"]:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    return model.eval(), best_epoch if epochs is None else n_epochs, best


def run_hear(task: Task, data: TaskData, seed: int, budget: float, work: Path, trial_data: Any) -> SystemRun:
    d = hear_data(task, trial_data)
    torch.set_num_threads(os.cpu_count() or 1)
    records: list[TrialRecord] = []
    t0 = time.perf_counter()
    for conf in hear_grid(seed):
        if time.perf_counter() - t0 >= budget:
            break
        rec = TrialRecord({**conf, "hear": True}, time.perf_counter() - t0, [])
        records.append(rec)

        def on_check(epoch: int, scores: dict[str, float], rec: TrialRecord = rec) -> bool:
            now = time.perf_counter() - t0
            rec.events.append((now, scores["mAUC"]))
            if not scores["primary"] <= rec.selection:  # nan at first
                rec.selection, rec.best_epoch = scores["primary"], epoch
            return now >= budget

        hear_train(conf, d, seed, on_check=on_check)
    return SystemRun("hear", records, budget)


# ------------------------------------------------------------------------------------------
# the test score of a selected config
# ------------------------------------------------------------------------------------------


def load_test(task: Task, data: TaskData) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """The held-out test clips (raw x, bool y) and the class names."""
    from tagtune.trainables.data import ReadOptions, load_dataset

    options = ReadOptions(task=task.read_task)
    if data.test is None:
        from tagtune.finalize import own_test_split

        parts = own_test_split(load_dataset(data.train, options=options))
        assert parts is not None, f"{data.train} has no test split"
        ds = parts[1]
    else:
        ds = load_dataset(data.test, options=options)
    return np.asarray(ds.x), np.asarray(ds.y, dtype=bool), tuple(ds.class_names)


def _task_score(task: Task, scores: np.ndarray, y: np.ndarray) -> float:
    from tagtune.trainables.metrics import accuracy, f1_at_best_threshold, tagging_metrics

    s, t = torch.from_numpy(np.asarray(scores, dtype=np.float32)), torch.from_numpy(y)
    if task.metric == "accuracy":
        return float(accuracy(s, t.float().argmax(1)))
    if task.metric == "f1":
        return float(f1_at_best_threshold(s[:, 0], t[:, 0])[0])
    return float(tagging_metrics(s, t)["mAP"])


def test_score(
    task: Task, run: SystemRun, trial_data: Any, test: tuple[np.ndarray, np.ndarray, tuple[str, ...]]
) -> float:
    """Retrain the system's selected config (its trial's seed, for its best epoch count) on the
    same training split and score the test set with the task's metric."""
    from tagtune.trainables.checkpoint import load_model, model_meta, save_model
    from tagtune.trainables.inference import checkpoint_probabilities
    from tagtune.trainables.techniques import resolve_target_class

    best = run.best_trial()
    if best is None:
        return math.nan
    x_test, y_test, names = test
    if task.label_kind == "binary":
        col = resolve_target_class("Speech", names)
        y_test = y_test[:, col : col + 1]
    epochs = max(1, best.best_epoch)
    run.selected = {**best.config, "epochs": epochs}
    torch.set_num_threads(os.cpu_count() or 1)
    if best.config.get("hear"):
        d = hear_data(task, trial_data)
        model, _, _ = hear_train(best.config, d, int(best.config.get("seed", 0)), epochs=epochs)
        with torch.no_grad():
            logits = model(torch.from_numpy(hear_features(x_test)))
        scores = (logits.softmax(1) if d.multiclass else logits.sigmoid()).numpy()
        return _task_score(task, scores, y_test)
    cfg = {k: v for k, v in best.config.items() if k in _allowed(best.config["family"])}
    result = fit(cfg, trial_data, max_epochs=epochs, device="cpu")
    with tempfile.TemporaryDirectory(prefix="bench-search-") as tmp:
        save_model(tmp, result.best_state, model_meta(cfg, trial_data, result.best))
        model, meta = load_model(tmp)
    return _task_score(task, checkpoint_probabilities(model, meta, x_test), y_test)


# ------------------------------------------------------------------------------------------
# tables
# ------------------------------------------------------------------------------------------


def _fmt(values: list[float], digits: int = 3) -> str:
    vals = [v for v in values if not (isinstance(v, float) and math.isnan(v))]
    if not vals:
        return "-"
    mean = sum(vals) / len(vals)
    if len(vals) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ({min(vals):.{digits}f}-{max(vals):.{digits}f})"


def _by_system(records: list[dict[str, Any]], task: str) -> dict[str, list[dict[str, Any]]]:
    """The result records of ``task``, by system in the table's order (one record per seed)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for system in SYSTEMS:
        reps = [r for r in records if r["task"] == task and r["system"] == system]
        if reps:
            out[system] = reps
    return out


def task_table(task: Task, records: list[dict[str, Any]]) -> str:
    """One task's Markdown table from its result records (mean and min-max over seeds)."""
    head = [
        "system",
        "best val mAUC @25%",
        "@50%",
        "@100%",
        f"test {task.metric} of the selected config",
        "trials started",
        "sampled trials at chance",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for system, reps in _by_system(records, task.name).items():
        cells = [LABELS[system]]
        cells += [_fmt([float(r["best_val_mAUC"][i]) for r in reps], 4) for i in range(len(FRACTIONS))]
        cells.append(_fmt([float(r["test"]) for r in reps], 4))
        cells.append(_fmt([float(r["trials"]) for r in reps], 1))
        cells.append(_fmt([float(r["chance_share"]) for r in reps], 2))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summary_rows(records: list[dict[str, Any]], tasks: list[str]) -> tuple[str, list[dict[str, Any]]]:
    """tagtune's default test score (mean over seeds) against the best peer's, per task."""
    head = [
        "task",
        "metric",
        "tagtune default test",
        "best peer",
        "best peer test",
        "ratio tagtune / best peer",
        "at least the best peer",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    rows = []
    for name in tasks:
        runs = _by_system(records, name)
        if "tagtune" not in runs:
            continue
        mine = float(np.nanmean([float(r["test"]) for r in runs["tagtune"]]))
        peers = {p: float(np.nanmean([float(r["test"]) for r in runs[p]])) for p in PEERS if p in runs}
        peers = {p: v for p, v in peers.items() if not math.isnan(v)}
        if not peers:
            continue
        peer = max(peers, key=lambda p: peers[p])
        ratio = mine / peers[peer] if peers[peer] else math.nan
        ok = mine >= peers[peer]
        rows.append({"task": name, "tagtune": mine, "peer": peer, "peer_test": peers[peer], "ratio": ratio, "ok": ok})
        cells = [
            name,
            TASKS[name].metric,
            f"{mine:.4f}",
            LABELS[peer],
            f"{peers[peer]:.4f}",
            f"{ratio:.3f}",
            "yes" if ok else "no",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines), rows


SUMMARY = "### summary: tagtune's default search against the best peer (test score of the selected config)"


def render(records: list[dict[str, Any]], tasks: list[str]) -> str:
    """Every task's table and the summary, as Markdown."""
    parts = []
    for name in tasks:
        if any(r["task"] == name for r in records):
            parts.append(f"### {name}: {TASKS[name].description}\n\n{task_table(TASKS[name], records)}\n")
    summary, _ = summary_rows(records, tasks)
    return "\n".join(parts) + f"\n{SUMMARY}\n\n{summary}\n"


# ------------------------------------------------------------------------------------------


def parse_budget(text: str) -> float:
    from tagtune.tracking import parse_duration

    return float(parse_duration(text))


def _init_ray() -> None:
    import ray

    if not ray.is_initialized():
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
        ray.init(include_dashboard=False, logging_level="ERROR", log_to_driver=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--budget", default=None, help="search wall time per system, task and seed (default: 2m; --quick: 5s)"
    )
    parser.add_argument(
        "--tasks", default=None, help=f"comma-separated (default: {','.join(TASKS)}; with --quick: float512)"
    )
    parser.add_argument("--systems", default=",".join(SYSTEMS), help=f"comma-separated (default: {','.join(SYSTEMS)})")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds (split, samplers, training), e.g. 0,1")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "out" / "search"))
    parser.add_argument(
        "--portfolios", default=str(PORTFOLIOS), help="the portfolio system's <task>.yaml files (learn_portfolio.py)"
    )
    parser.add_argument(
        "--data-root", default=None, help="where the tasks' data are built (default: benchmarks/out/tasks)"
    )
    parser.add_argument(
        "--full", action="store_true", help="all of bal_train and eval (default: the documented subsample)"
    )
    parser.add_argument(
        "--render",
        nargs="+",
        metavar="JSON",
        default=None,
        help="print the tables of earlier runs' results.json files (several: seeds pooled) and exit",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: small generated data of each task's kind, a 5 s budget unless --budget, at most 3 epochs",
    )
    args = parser.parse_args(argv)
    if args.tasks is None:
        args.tasks = "float512" if args.quick else ",".join(TASKS)
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    for name in tasks:
        if name not in TASKS:
            parser.error(f"--tasks: unknown task {name!r}; choose from {', '.join(TASKS)}")
    for name in systems:
        if name not in SYSTEMS:
            parser.error(f"--systems: unknown system {name!r}; choose from {', '.join(SYSTEMS)}")
    if args.render:
        records = [r for path in args.render for r in json.loads(Path(path).read_text())]
        print(render(records, [t for t in tasks if any(r["task"] == t for r in records)]))
        return 0
    seeds = [int(s) for s in args.seeds.split(",")]
    budget = parse_budget(args.budget or ("5s" if args.quick else "2m"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    root = Path(args.data_root) if args.data_root else Path(__file__).resolve().parent / "out" / "tasks"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    t_all = time.perf_counter()
    _init_ray()
    from tagtune.search import prepare_data

    raw: list[dict[str, Any]] = []
    for name in tasks:
        task = TASKS[name]
        if args.quick:
            task = dataclasses.replace(task, max_epochs=min(task.max_epochs, 3))
        data = task.build(root, full=args.full, quick=args.quick)
        test = load_test(task, data)
        for k, seed in enumerate(seeds):
            trial_data = prepare_data(_spec(task, data, seed))
            # the order rotates with the seed, so that no system always runs first (load drifts)
            for system in systems[k % len(systems) :] + systems[: k % len(systems)]:
                t = time.perf_counter()
                with tempfile.TemporaryDirectory(prefix=f"bench-search-{system}-") as tmp:
                    work = Path(tmp)
                    if system in TAGTUNE_SYSTEMS:
                        run = run_tagtune(system, task, data, seed, budget, work, Path(args.portfolios))
                    else:
                        runner = {"optuna": run_optuna, "ray": run_ray, "hear": run_hear}[system]
                        run = runner(task, data, seed, budget, work, trial_data)
                search_s = time.perf_counter() - t
                run.test = test_score(task, run, trial_data, test)
                raw.append(
                    {
                        "task": name,
                        "system": system,
                        "seed": seed,
                        "budget_s": budget,
                        "search_wall_s": search_s,
                        "best_val_mAUC": [run.best_at(f) for f in FRACTIONS],
                        "test": run.test,
                        "metric": task.metric,
                        "trials": len(run.trials),
                        "chance_share": run.chance_share(),
                        "selected": run.selected,
                        "trial_best_val": [t.best_val for t in run.trials],
                    }
                )
                print(
                    f"[{time.perf_counter() - t_all:6.0f} s] {name} seed {seed} {system}: {len(run.trials)} trials, "
                    f"best val mAUC {run.best_at(1.0):.4f}, test {task.metric} {run.test:.4f} "
                    f"(search {search_s:.0f} s)",
                    file=sys.stderr,
                    flush=True,
                )
                (out / "results.json").write_text(json.dumps(raw, indent=1, default=str))
        print(f"\n### {name}: {task.description}\n\n{task_table(TASKS[name], raw)}\n", flush=True)
    summary, _ = summary_rows(raw, tasks)
    head = (
        f"# bench_search: {len(tasks)} tasks x {len(systems)} systems, budget {budget:g} s per system, task and seed, "
        f"seeds {','.join(map(str, seeds))}\n\n"
        f"Command: `python benchmarks/bench_search.py {' '.join(argv if argv is not None else sys.argv[1:])}`; "
        f"started {started}, {time.perf_counter() - t_all:.0f} s in all; {machine()}, {os.cpu_count()} CPUs.\n"
    )
    (out / "results.md").write_text(head + "\n" + render(raw, tasks))
    print(f"{SUMMARY}\n")
    print(summary)
    print(f"\nwritten: {out / 'results.md'}, {out / 'results.json'}")
    with contextlib.suppress(Exception):
        import ray

        ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
