"""``tagtune finalize``: retrain each family's best config(s) on all training data, score on eval,
register the models, and ensemble them (seed 001's protocol).

The search tunes on an 80/20 split of the training data; the finals retrain each family's best
trial (or its top K) on **100%** of it and are scored once on the held-out eval split.

How long a final trains: the search's validation mAUC picked the trial's best epoch, and with no
held-out clips left there is nothing to pick an epoch by, so a final trains for exactly that many
epochs (the step of the trial's highest ``val_mAUC``) and keeps the weights of its last epoch.
``--max-epochs`` caps it.  :func:`tagtune.trainables.loop.fit` still wants a validation split each epoch:
it gets a seeded slice of at most 2048 of the *training* clips, logged as ``fit_mAUC``/``fit_mAP``
(how well the model fits clips it trains on, a sanity check, not a held-out score), and it does
not choose the weights.

Each final is a run under the search's parent run (tags ``tagtune.kind=final``,
``tagtune.family``, ``tagtune.source_run``) with ``eval_mAUC``, ``eval_mAP``, ``eval_dprime``, its
checkpoint, a per-class AP table, and an MLflow pyfunc model; each family's final (rank 1) is
registered as ``<experiment>-<family>``.  With two or more finals, two ensembles are scored and
logged the same way (``tagtune.kind=ensemble``): the weighted mean of the members' probabilities
and their weighted geometric mean.  Members and weights are chosen on the search's validation
split, never on eval: the candidates are each family's ``ensemble_pool`` best trials; each scores
the validation clips with its trial checkpoint (trained on the 80%), greedy forward selection with
replacement (Caruana et al. 2004) picks the votes that maximize validation mAP, and a picked trial
that is not already a final is retrained as one (rank > 1, not registered on its own).  When that
split cannot be rebuilt (--train is not the search's data), every final is a member, weighted
``max(val_mAUC - 0.5, 0.01)`` of its trial, normalized.  The parent run gets ``final_<family>_eval_*`` and
``ensemble_<method>_eval_*`` metrics and a ``tagtune.final.<name>`` tag with each model URI.
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import Metric, RunTag
from mlflow.exceptions import MlflowException

from tagtune.scoring import SplitUnavailable, evaluate, score_clips, score_trials, validation_split
from tagtune.tracking import (
    PER_CLASS_ARTIFACT,
    RunKind,
    Tag,
    TrialRow,
    Trials,
    child_runs,
    finals_table,
    find_experiment,
    latest_search_run,
    open_run,
    open_store,
    rank_by_family,
    recorded_spaces_dir,
    search_trials,
)
from tagtune.tracking.registry import log_tagger, registered_model_name
from tagtune.trainables.ensemble import ENSEMBLE_METHODS, combine_scores, ensemble_weights, greedy_weights
from tagtune.trainables.errors import InputError

__all__ = [
    "FIT_SLICE",
    "FinalizeOutcome",
    "FinalizeSpec",
    "Member",
    "ensemble_weights",
    "finalize",
    "fit_slice",
    "greedy_weights",
    "ranked",
    "top_trials",
]

FIT_SLICE = 2048
"""At most this many training clips are scored each epoch as ``fit_*`` (not a held-out score)."""

Say = Callable[[str], None]
Planned = tuple[str, int, TrialRow]
"""``(family, rank, trial)``: one final to train (rank 1: the family's best trial)."""


@dataclass
class FinalizeSpec:
    """What ``tagtune finalize`` does; :meth:`check` validates it before anything runs."""

    experiment: str
    train: str
    eval: str
    top_k: int = 1
    max_epochs: int | None = None
    tracking_uri: str | None = None
    run_id: str | None = None
    register: bool = True
    ensembles: bool = True
    ensemble_pool: int = 3
    seed: int = 0
    device: str | None = None

    def check(self) -> None:
        """Flags in range and both data paths present."""
        if self.top_k < 1:
            raise InputError(f"--top-k must be at least 1, got {self.top_k}")
        if self.ensemble_pool < 1:
            raise InputError(f"--ensemble-pool must be at least 1, got {self.ensemble_pool}")
        if self.max_epochs is not None and self.max_epochs < 1:
            raise InputError(f"--max-epochs must be at least 1, got {self.max_epochs}")
        for flag, path in (("--train", self.train), ("--eval", self.eval)):
            if not Path(path).exists():
                raise InputError(
                    f"{flag} {path}: no such file or folder; pass a folder of *.tfrecord, "
                    "an .h5 file or a tagtune cache"
                )


@dataclass
class Member:
    """One trained final: where it came from, its eval scores and its checkpoint folder."""

    family: str
    rank: int
    source: TrialRow
    run_id: str
    epochs: int
    checkpoint: Path
    scores: np.ndarray
    metrics: dict[str, float]
    model_uri: str = ""

    @property
    def name(self) -> str:
        """``fc1`` for a family's best, ``fc1#2`` for its second."""
        return f"{self.family}#{self.rank}" if self.rank > 1 else self.family


@dataclass
class FinalizeOutcome:
    """Where the finals went: the parent run, the store, and the finals table."""

    parent_run_id: str
    tracking_uri: str
    finals: pd.DataFrame
    members: list[Member] = field(default_factory=list)


def top_trials(rows: list[TrialRow], k: int) -> dict[str, list[TrialRow]]:
    """Each family's ``k`` completed trials with the highest best val_mAUC, best first
    (:meth:`Trials.top` of a search's rows)."""
    return {f: rs[:k] for f, rs in rank_by_family(rows).items()}


def ranked(by_family: dict[str, list[TrialRow]]) -> list[Planned]:
    """``(family, rank, trial)`` for each family's trials, best first (rank 1)."""
    return [(f, rank, row) for f, rows in by_family.items() for rank, row in enumerate(rows, start=1)]


def fit_slice(n: int, seed: int, size: int = FIT_SLICE) -> np.ndarray:
    """A seeded, sorted slice of at most ``size`` of ``n`` clips (all of them when fewer)."""
    if n <= size:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False))


def _full_config(row: TrialRow, family: str) -> Any:
    """The trial's full, checked training config."""
    from tagtune.trainables.config import resolve_config

    return resolve_config({**row.config(), "family": family})


def _labels_for(cfg: Any, y: np.ndarray, class_names: tuple[str, ...]) -> tuple[np.ndarray, tuple[str, ...]]:
    """The labels a model of ``cfg`` predicts: all classes, or the binary task's one column."""
    target = cfg.get("target_class")
    if target is None:
        return y, class_names
    if target not in class_names:
        raise InputError(f"target_class {target!r} of the config is not a class of --eval; check the data")
    col = class_names.index(target)
    return y[:, col : col + 1], (str(target),)


# ------------------------------------------------------------------------------------------
# Data
# ------------------------------------------------------------------------------------------


@dataclass
class FinalsData:
    """What the finals train and are scored on: all of --train (a fit slice scored each epoch)
    and the eval clips with their labels."""

    train: Any
    eval: Any
    data: Any  # TrialData: every training clip, the fit slice as its "validation"
    eval_x: Any  # torch uint8 [N, T, F], a writable copy of the mmap
    eval_y: np.ndarray

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.train.class_names)


def _load(path: str, flag: str) -> Any:
    from tagtune.trainables.data import load_dataset

    try:
        return load_dataset(path)
    except InputError as exc:
        raise InputError(f"{flag} {path}: {exc}") from None


def _check_data(spec: FinalizeSpec, parent: Any, train_ds: Any, eval_ds: Any) -> None:
    """--eval is the eval split of --train's data set, and --train the search's data."""
    if tuple(train_ds.class_names) != tuple(eval_ds.class_names):
        raise InputError(
            f"--eval {spec.eval} has {eval_ds.n_classes} classes that differ from --train's "
            f"{train_ds.n_classes}; pass the eval split of the same data set"
        )
    if train_ds.x.shape[1:] != eval_ds.x.shape[1:]:
        raise InputError(
            f"--eval {spec.eval} clips are {eval_ds.x.shape[1:]} but --train clips are "
            f"{train_ds.x.shape[1:]}; pass the eval split of the same data set"
        )
    searched = parent.data.params.get("n_classes")
    if searched is not None and int(searched) != train_ds.n_classes:
        raise InputError(
            f"--train {spec.train} has {train_ds.n_classes} classes but the search trained on "
            f"{searched}; pass the search's training data"
        )


def load_finals_data(spec: FinalizeSpec, parent: Any, say: Say) -> FinalsData:
    """Read --train and --eval, check they fit the search, and say what was read."""
    import torch

    from tagtune.trainables.loop import TrialData

    t0 = time.perf_counter()
    train_ds, eval_ds = _load(spec.train, "--train"), _load(spec.eval, "--eval")
    _check_data(spec, parent, train_ds, eval_ds)
    say(
        f"data: {train_ds.n_clips} training clips (all of them), {eval_ds.n_clips} eval clips, "
        f"{train_ds.n_classes} classes ({time.perf_counter() - t0:.1f} s)"
    )
    data = TrialData(
        x=np.asarray(train_ds.x),
        y=np.asarray(train_ds.y),
        train_idx=np.arange(train_ds.n_clips),
        val_idx=fit_slice(train_ds.n_clips, spec.seed),
        class_names=tuple(train_ds.class_names),
    )
    eval_x = torch.from_numpy(np.array(eval_ds.x, dtype=np.uint8))
    return FinalsData(train_ds, eval_ds, data, eval_x, np.asarray(eval_ds.y, dtype=bool))


# ------------------------------------------------------------------------------------------
# Logging: one finalize's runs and what the search's parent run gets
# ------------------------------------------------------------------------------------------


@dataclass
class Session:
    """One finalize in progress: its store, search, device, and the parent run's metrics and
    tags, logged in one batch at the end (:meth:`flush`)."""

    spec: FinalizeSpec
    client: MlflowClient
    uri: str
    experiment_id: str
    parent: Any
    device: Any
    say: Say
    finalize_id: str = field(default_factory=lambda: f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}")
    parent_metrics: list[Metric] = field(default_factory=list)
    parent_tags: list[RunTag] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.parent_tags.append(RunTag(Tag.FINALIZE_ID, self.finalize_id))

    @property
    def parent_id(self) -> str:
        return str(self.parent.info.run_id)

    def open(self, kind: RunKind, run_name: str, tags: dict[str, Any], params: dict[str, Any]) -> Any:
        """A final's or ensemble's run under the search (see :func:`tagtune.tracking.open_run`)."""
        return open_run(
            self.client,
            self.experiment_id,
            kind=kind,
            run_name=run_name,
            params=params,
            tags={**tags, Tag.FINALIZE_ID: self.finalize_id},
            parent_run_id=self.parent_id,
        )

    def model(self, name: str, run_id: str, model_uri: str, metrics: dict[str, float], prefix: str) -> None:
        """Record a logged model: its URI on its run and the parent's tag, its metrics on the parent."""
        self.client.set_tag(run_id, Tag.MODEL_URI, model_uri)
        self.parent_tags.append(RunTag(Tag.final_model(name), model_uri))
        now = int(time.time() * 1000)
        self.parent_metrics += [Metric(f"{prefix}_{k}", v, now, 0) for k, v in metrics.items()]

    def flush(self) -> None:
        self.client.log_batch(self.parent_id, metrics=self.parent_metrics, tags=self.parent_tags)


def _log_outputs(
    client: MlflowClient, run_id: str, checkpoint: Path | None, per_class: pd.DataFrame, metrics: dict[str, float]
) -> None:
    """A final's or ensemble's eval metrics, per-class table and (for finals) checkpoint."""
    now = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()])
    with tempfile.TemporaryDirectory() as tmp:
        per_class.to_csv(Path(tmp) / Path(PER_CLASS_ARTIFACT).name, index=False)
        client.log_artifacts(run_id, tmp, str(Path(PER_CLASS_ARTIFACT).parent))
    if checkpoint is not None:
        client.log_artifacts(run_id, str(checkpoint), "checkpoint")


# ------------------------------------------------------------------------------------------
# Candidates: the finals to train and the ensembles' members, chosen on validation
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pick:
    """An ensemble's members chosen on validation: source trial run -> weight, and the val mAP."""

    weights: dict[str, float]
    val_map: float


def _validation_scores(
    session: Session, train_ds: Any, rows: list[TrialRow]
) -> tuple[list[np.ndarray], np.ndarray] | None:
    """Each trial's best checkpoint (trained on the search's 80%) scored on the search's
    validation split, with that split's labels: what ensemble members and weights are chosen
    on.  None when the split cannot be rebuilt (other --train data) or a checkpoint is missing;
    the ensembles then take every final, weighted by the trials' val_mAUC."""
    try:
        split = validation_split(session.parent, train_ds)
    except SplitUnavailable:
        session.say("ensemble weights: --train is not the search's data, so they come from the trials' val_mAUC")
        return None
    scores = []
    for row in rows:
        try:
            scores += score_trials(session.client, [row.run_id], split, session.device)
        except (MlflowException, OSError, ValueError, KeyError) as exc:
            session.say(f"ensemble weights: no checkpoint for trial {row.run_id[:8]} ({exc}); using val_mAUC")
            return None
    return scores, split.y


def choose_members(session: Session, trials: Trials, train_ds: Any) -> tuple[list[Planned], dict[str, Pick]]:
    """The ensemble pool (each family's ``ensemble_pool`` best multi-label trials) and, per
    method, the members and weights greedy selection picks on validation (none without a split)."""
    spec = session.spec
    pool = [
        (f, r, row)
        for f, r, row in ranked(trials.top(max(spec.top_k, spec.ensemble_pool)))
        if _full_config(row, f)["target_class"] is None
    ]
    val = _validation_scores(session, train_ds, [row for _, _, row in pool]) if len(pool) > 1 else None
    picks: dict[str, Pick] = {}
    if val is not None:
        for method in ENSEMBLE_METHODS:
            weights, val_map = greedy_weights(val[0], val[1], method)
            chosen = {row.run_id: w for (_, _, row), w in zip(pool, weights, strict=True) if w > 0}
            picks[method] = Pick(chosen, val_map)
    return pool, picks


def plan_finals(session: Session, trials: Trials, train_ds: Any) -> tuple[list[Planned], dict[str, Pick]]:
    """The finals to train (each family's ``top_k`` best, then ensemble members beyond them) and
    the ensembles' picks."""
    plan = ranked(trials.top(session.spec.top_k))
    if not session.spec.ensembles:
        return plan, {}
    pool, picks = choose_members(session, trials, train_ds)
    planned = {row.run_id for _, _, row in plan}
    extra = [p for p in pool if p[2].run_id not in planned and any(p[2].run_id in pk.weights for pk in picks.values())]
    if extra:
        session.say("ensemble members beyond each family's best: " + ", ".join(f"{f} #{r}" for f, r, _ in extra))
    return plan + extra, picks


# ------------------------------------------------------------------------------------------
# Training: one final on all of --train, scored on eval, registered when it is a family's best
# ------------------------------------------------------------------------------------------


@dataclass
class EpochLog:
    """``fit``'s ``on_epoch`` for a final: logs ``fit_*`` metrics, says a line, and keeps the
    weights and metrics of the last epoch (a final keeps its last epoch, not its best)."""

    run: Any
    family: str
    epochs: int
    say: Say
    state: dict[str, Any] | None = None
    metrics: dict[str, float] = field(default_factory=dict)

    def __call__(self, metrics: dict[str, float], improved: bool, model: Any) -> None:
        step = int(metrics["epoch"])
        logged = {
            "train_loss": metrics.get("train_loss"),
            "fit_mAUC": metrics.get("val_mAUC"),
            "fit_mAP": metrics.get("val_mAP"),
            "epoch_seconds": metrics.get("epoch_seconds"),
        }
        self.run.log(metrics={k: v for k, v in logged.items() if isinstance(v, (int, float))}, step=step)
        self.say(
            f"    {self.family} epoch {step}/{self.epochs}: train_loss {metrics['train_loss']:.4f} "
            f"fit_mAUC {metrics['val_mAUC']:.4f} ({metrics['epoch_seconds']:.1f} s)"
        )
        if step == self.epochs:
            self.state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
            self.metrics = dict(metrics)


def _final_epochs(session: Session, trials: Trials, row: TrialRow) -> int:
    """The step of the trial's highest val_mAUC (the search's max epochs without one), capped."""
    epochs = trials.best_epoch(row.run_id) or int(session.parent.data.params.get("max_epochs", "10"))
    return min(epochs, session.spec.max_epochs) if session.spec.max_epochs is not None else epochs


def _final_params(session: Session, full: Any, epochs: int, fd: FinalsData, row: TrialRow) -> dict[str, str]:
    spec = session.spec
    return {
        **{k: str(v)[:6000] for k, v in sorted(full.items())},
        "epochs": str(epochs),
        "n_train": str(fd.train.n_clips),
        "n_eval": str(fd.eval.n_clips),
        "train": os.path.abspath(spec.train),
        "eval": os.path.abspath(spec.eval),
        "source_val_mAUC": f"{row.best_mAUC:.6f}",
    }


def _fit_and_score(
    session: Session, run: Any, full: Any, fd: FinalsData, planned: Planned, epochs: int, work: str
) -> Member:
    """Train the final, save and reload its checkpoint, score eval, log the outputs."""
    from tagtune.trainables.loop import fit
    from tagtune.trainables.trial import load_model, model_meta, save_model

    family, rank, row = planned
    log = EpochLog(run, family, epochs, session.say)
    start = time.perf_counter()
    fit(full, fd.data, max_epochs=epochs, device=session.device, on_epoch=log)
    train_s = time.perf_counter() - start
    if log.state is None:
        raise RuntimeError(f"final {family} #{rank}: training stopped before epoch {epochs}")
    folder = Path(work) / f"{family}-{rank}"
    save_model(folder, log.state, model_meta(full, fd.data, log.metrics))
    model, _ = load_model(folder)
    scores = score_clips(model, fd.eval_x, session.device)
    y, names = _labels_for(full, fd.eval_y, fd.class_names)
    metrics, per_class = evaluate(scores, y, names)
    _log_outputs(session.client, run.run_id, folder, per_class, metrics | {"train_seconds": train_s})
    return Member(family, rank, row, run.run_id, epochs, folder, scores, metrics)


def register_final(session: Session, member: Member, fd: FinalsData) -> None:
    """Log a family's best final as a pyfunc model (registered as ``<experiment>-<family>``)."""
    spec, family = session.spec, member.family
    name = registered_model_name(spec.experiment, family) if spec.register else None
    logged = log_tagger(
        session.uri,
        member.run_id,
        [member.checkpoint],
        class_names=fd.class_names,
        n_frames=fd.data.shape[0],
        n_features=fd.data.shape[1],
        registered_name=name,
        extra_metadata={"family": family, "source_run": member.source.run_id},
    )
    member.model_uri = logged.registered_uri or logged.run_uri
    session.model(family, member.run_id, member.model_uri, member.metrics, f"final_{family}")


def train_final(session: Session, trials: Trials, fd: FinalsData, planned: Planned, work: str) -> Member | None:
    """Train, score, log and (rank 1) register one final; None when its training diverged."""
    from tagtune.trainables.loop import TrainingDiverged

    family, rank, row = planned
    full = _full_config(row, family)
    epochs = _final_epochs(session, trials, row)
    session.say(
        f"final {family} #{rank} (trial run {row.run_id[:8]}, val_mAUC {row.best_mAUC:.4f}): "
        f"{epochs} epochs on {fd.train.n_clips} clips"
    )
    tags = {Tag.FAMILY: family, Tag.RANK: str(rank), Tag.SOURCE_RUN: row.run_id}
    run_name = f"final-{family}" + (f"-{rank}" if rank > 1 else "")
    with session.open(RunKind.FINAL, run_name, tags, _final_params(session, full, epochs, fd, row)) as run:
        try:
            member = _fit_and_score(session, run, full, fd, planned, epochs, work)
        except TrainingDiverged as exc:  # this config diverged on 100%: the other finals go on
            run.fail(str(exc))
            session.say(f"final {family} #{rank} FAILED: {exc}")
            return None
        if rank == 1 and full.get("target_class") is None:
            register_final(session, member, fd)
    m = member.metrics
    session.say(
        f"final {family} #{rank}: eval_mAUC {m['eval_mAUC']:.4f} eval_mAP {m['eval_mAP']:.4f} "
        f"eval_dprime {m['eval_dprime']:.3f}" + (f" -> {member.model_uri}" if member.model_uri else "")
    )
    return member


# ------------------------------------------------------------------------------------------
# Ensembles
# ------------------------------------------------------------------------------------------


@dataclass
class Recipe:
    """One ensemble to score: its method, members and weights, and where the weights came from."""

    method: str
    members: list[Member]
    weights: list[float]
    how: str
    val_map: float = math.nan


def recipes(members: list[Member], picks: dict[str, Pick], n_classes: int) -> list[Recipe]:
    """Per method, the ensemble of the finals: the members picked on validation, or (no pick)
    every multi-label final weighted by its trial's val_mAUC; none with fewer than two finals."""
    multi = [m for m in members if m.scores.shape[1] == n_classes]
    if len(multi) < 2:
        return []
    out = []
    for method in ENSEMBLE_METHODS:
        if method in picks:
            pick = picks[method]
            ens = [m for m in multi if m.source.run_id in pick.weights]
            out.append(
                Recipe(
                    method,
                    ens,
                    [pick.weights[m.source.run_id] for m in ens],
                    f"chosen on the search's validation split (val mAP {pick.val_map:.4f})",
                    pick.val_map,
                )
            )
        else:
            out.append(
                Recipe(
                    method, multi, ensemble_weights([m.source.best_mAUC for m in multi]), "from the trials' val_mAUC"
                )
            )
    return [r for r in out if r.members]


def log_ensemble(session: Session, fd: FinalsData, recipe: Recipe) -> None:
    """Score, log and register one ensemble of the finals."""
    method, members, weights = recipe.method, recipe.members, recipe.weights
    names = [m.name for m in members]
    params = {
        "ensemble_method": method,
        "members": ",".join(names),
        "member_runs": ",".join(m.run_id for m in members),
        "member_weights": ",".join(f"{x:.4f}" for x in weights),
        "weights_from": recipe.how,
    }
    with session.open(RunKind.ENSEMBLE, f"ensemble-{method}", {Tag.ENSEMBLE_METHOD: method}, params) as run:
        scores = combine_scores([m.scores for m in members], weights, method)
        metrics, per_class = evaluate(scores, fd.eval_y, fd.class_names)
        # val_mAP: what the member weights reach on the search's validation split (the score to
        # choose between ensembles by; eval is only reported)
        extra = {"val_mAP": recipe.val_map} if math.isfinite(recipe.val_map) else {}
        _log_outputs(session.client, run.run_id, None, per_class, metrics | extra)
        name = registered_model_name(session.spec.experiment, f"ensemble-{method}") if session.spec.register else None
        logged = log_tagger(
            session.uri,
            run.run_id,
            [m.checkpoint for m in members],
            class_names=fd.class_names,
            n_frames=fd.data.shape[0],
            n_features=fd.data.shape[1],
            weights=weights,
            method=method,
            registered_name=name,
            extra_metadata={"members": names},
        )
        model_uri = logged.registered_uri or logged.run_uri
        session.model(f"ensemble-{method}", run.run_id, model_uri, metrics, f"ensemble_{method}")
    session.say(
        f"ensemble {method} of {', '.join(f'{n} {x:.2f}' for n, x in zip(names, weights, strict=True))} "
        f"(weights {recipe.how}): eval_mAUC {metrics['eval_mAUC']:.4f} "
        f"eval_mAP {metrics['eval_mAP']:.4f} -> {model_uri}"
    )


# ------------------------------------------------------------------------------------------
# finalize
# ------------------------------------------------------------------------------------------


def _open_search(spec: FinalizeSpec, say: Say) -> tuple[Session, Trials]:
    """The store, the search and its trials; InputError when there is nothing to finalize."""
    from tagtune.trainables.loop import pick_device

    client, uri = open_store(spec.tracking_uri)
    exp = find_experiment(client, uri, spec.experiment)
    parent = latest_search_run(client, exp, spec.run_id)
    trials = search_trials(client, exp.experiment_id, parent.info.run_id, recorded_spaces_dir(parent))
    if not trials.best():
        raise InputError(
            f"search run {parent.info.run_id} of {spec.experiment!r} has no completed trial to "
            "finalize; run `tagtune search` first"
        )
    return Session(spec, client, uri, exp.experiment_id, parent, pick_device(spec.device), say), trials


def finalize(spec: FinalizeSpec, echo: Say | None = None) -> FinalizeOutcome:
    """Retrain, score on eval, log, register and ensemble (see the module docstring)."""
    say = echo or (lambda line: print(line, file=sys.stderr, flush=True))
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    spec.check()
    session, trials = _open_search(spec, say)
    fd = load_finals_data(spec, session.parent, say)
    plan, picks = plan_finals(session, trials, fd.train)
    members: list[Member] = []
    with tempfile.TemporaryDirectory(prefix="tagtune-finals-") as work:
        for planned in plan:
            member = train_final(session, trials, fd, planned, work)
            if member is not None:
                members.append(member)
        if spec.ensembles:
            for recipe in recipes(members, picks, len(fd.class_names)):
                log_ensemble(session, fd, recipe)
    session.flush()
    runs = child_runs(session.client, session.experiment_id, session.parent_id)
    return FinalizeOutcome(session.parent_id, session.uri, finals_table(runs), members)
