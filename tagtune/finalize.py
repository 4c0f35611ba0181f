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

Each ``tagtune finalize`` is a run under the search's parent run (``tagtune.kind=finalize``,
named ``finals``, then ``finals v2`` for a second finalize of the same search, with
``tagtune.finalize_version``), and its finals and ensembles are runs under that one, so the MLflow
UI lists a search's trials and, in a row of their own, each finalize's models.
Each final is a run (tags ``tagtune.kind=final``,
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

Raw audio (seed 003, ``--train`` an audio CSV or its folder): the finals retrain on the search's
training and validation clips (the CSV's test clips are never trained on), for the epochs at
which their trials peaked, and are scored on the data set's held-out test split: the clips the
CSV marks ``test`` (FSDD's official split), or every clip of ``--eval`` when that is another
audio CSV of the same classes; without either, finalize refuses (exit 2) and names ``--eval``.
Single-label data add ``eval_accuracy`` and ``eval_map3`` (MAP@3) to ``eval_mAUC/eval_mAP`` and
log the test split's confusion matrix (``eval/confusion.csv``).  The ensemble is seed 003's
weighted geometric mean (rows normalized to a distribution), its members and weights chosen on
the search's validation split exactly as for embeddings (greedy selection on validation mAP).
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import Metric, RunTag
from mlflow.exceptions import MlflowException

from tagtune.scoring import (
    SplitUnavailable,
    audio_validation_split,
    evaluate,
    load_trial_checkpoint,
    score_audio,
    score_clips,
    score_trials,
    validation_split,
)
from tagtune.tracking import (
    PER_CLASS_ARTIFACT,
    RunKind,
    Tag,
    TrialRow,
    Trials,
    child_runs,
    dataset_input,
    finals_table,
    find_experiment,
    latest_search_run,
    open_run,
    open_store,
    rank_by_family,
    recorded_spaces_dir,
    search_spec,
    search_trials,
    to_params,
)
from tagtune.tracking.registry import log_tagger, registered_model_name
from tagtune.tracking.tables import CONFUSION_ARTIFACT, confusion_table
from tagtune.trainables.ensemble import (
    ENSEMBLE_METHODS,
    combine_scores,
    ensemble_weights,
    greedy_weights,
)
from tagtune.trainables.errors import InputError

__all__ = [
    "AUDIO_ENSEMBLE_METHODS",
    "AUDIO_FIT_SLICE",
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
AUDIO_FIT_SLICE = 512
"""The same for raw audio, where scoring whole clips costs a good part of an epoch."""
AUDIO_ENSEMBLE_METHODS = ("geomean",)
"""Seed 003's ensemble of audio finals: the weighted geometric mean."""

Say = Callable[[str], None]
Planned = tuple[str, int, TrialRow]
"""``(family, rank, trial)``: one final to train (rank 1: the family's best trial)."""


@dataclass
class FinalizeSpec:
    """What ``tagtune finalize`` does; :meth:`check` validates it before anything runs."""

    experiment: str
    train: str
    eval: str | None = None
    """Embeddings: the eval split (required).  Audio: optional, another audio CSV of test files;
    by default the clips --train's CSV marks ``test``."""
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
            if path is not None and not Path(path).exists():
                raise InputError(
                    f"{flag} {path}: no such file or folder; pass a folder of *.tfrecord, "
                    "an .h5 file, a tagtune cache, or an audio CSV (or its folder)"
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
    eval_x: Any  # torch [N, T, F] of the data's dtype, a writable copy of the mmap
    eval_y: np.ndarray
    searched: Any = None
    """The search's data set (its validation split picks ensemble members), when ``train`` is
    only its train + validation part (data with their own test split); else ``train``."""
    test_from: str = ""

    kind = "embeddings"
    methods = ENSEMBLE_METHODS

    @property
    def single_label(self) -> bool:
        return bool(self.train.single_label)

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.train.class_names)

    @property
    def n_train(self) -> int:
        return int(self.train.n_clips)

    @property
    def n_eval(self) -> int:
        return int(self.eval.n_clips)

    def score(self, model: Any, config: Any, device: Any) -> np.ndarray:
        """A final's probabilities on the eval clips (softmax on single-label data)."""
        return score_clips(model, self.eval_x, device, single_label=self.single_label)

    def validation(self, session: Session, rows: list[TrialRow]) -> tuple[list[np.ndarray], np.ndarray] | None:
        """The trials' scores on the search's validation split, and its labels (see
        :func:`_validation_scores`)."""
        searched = self.searched if self.searched is not None else self.train
        return _validation_scores(session, searched, rows, single_label=self.single_label)

    def combine(self, scores: list[np.ndarray], weights: list[float], method: str) -> np.ndarray:
        return combine_scores(scores, weights, method, single_label=self.single_label)


@dataclass
class AudioFinalsData:
    """Raw audio finals: the search's training and validation clips (a fit slice scored each
    epoch) and the held-out test clips they are scored on."""

    train: Any  # AudioDataset of --train
    data: Any  # TrialData: train + validation clips, the fit slice as its "validation"
    test: Any  # TrialData whose clips ``test_idx`` are scored (--train's, or --eval's)
    test_idx: np.ndarray
    eval_y: np.ndarray
    test_from: str
    """Where the test clips come from, e.g. ``test split of .../fsdd_meta.csv``."""

    kind = "audio"
    methods = AUDIO_ENSEMBLE_METHODS

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.train.class_names)

    @property
    def single_label(self) -> bool:
        return bool(self.train.single_label)

    @property
    def n_train(self) -> int:
        return len(self.data.train_idx)

    @property
    def n_eval(self) -> int:
        return len(self.test_idx)

    def score(self, model: Any, config: Any, device: Any) -> np.ndarray:
        """A final's probabilities on the test clips (whole clips, softmax when single-label)."""
        return score_audio(model, config, self.test, self.test_idx, device)

    def validation(self, session: Session, rows: list[TrialRow]) -> tuple[list[np.ndarray], np.ndarray] | None:
        """Each trial's best checkpoint scored on the search's validation clips, with their labels;
        None when the split cannot be rebuilt or a checkpoint is missing."""
        try:
            split = audio_validation_split(session.parent, self.train)
        except SplitUnavailable as exc:
            session.say(f"ensemble weights: {exc}; they come from the trials' val_mAUC")
            return None
        scores = []
        with tempfile.TemporaryDirectory(prefix="tagtune-sources-") as work:
            for row in rows:
                try:
                    model = load_trial_checkpoint(session.client, row.run_id, Path(work) / row.run_id)
                except (MlflowException, OSError, ValueError, KeyError) as exc:
                    session.say(f"ensemble weights: no checkpoint for trial {row.run_id[:8]} ({exc}); using val_mAUC")
                    return None
                cfg = _full_config(row, row.family)
                scores.append(score_audio(model, cfg, split.data, split.idx, session.device))
        return scores, split.y

    def combine(self, scores: list[np.ndarray], weights: list[float], method: str) -> np.ndarray:
        """Seed 003's weighted geometric mean, each row a distribution on single-label data."""
        return combine_scores(scores, weights, method, single_label=self.single_label)


Finals = FinalsData | AudioFinalsData


def _load(path: str, flag: str, options: Any = None) -> Any:
    from tagtune.trainables.data import load_dataset

    try:
        return load_dataset(path, options=options)
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

    from tagtune.trainables.data import InputScaling, check_finite
    from tagtune.trainables.loop import TrialData

    t0 = time.perf_counter()
    searched = None
    options = search_spec(parent).read_options()  # --train read as the search read it
    if spec.eval is None:  # finalize refuses embeddings without --eval unless they hold a test split
        searched = _load(spec.train, "--train", options)
        parts = own_test_split(searched)
        assert parts is not None  # finalize checked that --train has a test split
        train_ds, eval_ds = parts
        test_from = f"test split of {spec.train}"
    else:
        train_ds, eval_ds = _load(spec.train, "--train", options), _load(spec.eval, "--eval", options)
        test_from = f"--eval {spec.eval}"
    _check_data(spec, parent, train_ds, eval_ds)
    check_finite(train_ds.x, train_ds.ids, f"--train {spec.train}")
    check_finite(eval_ds.x, eval_ds.ids, test_from)
    say(
        f"data: {train_ds.n_clips} training clips (all of them), {eval_ds.n_clips} eval clips "
        f"({test_from}), {train_ds.n_classes} classes ({time.perf_counter() - t0:.1f} s)"
    )
    x = np.asarray(train_ds.x)
    data = TrialData(
        x=x,
        y=np.asarray(train_ds.y),
        train_idx=np.arange(train_ds.n_clips),
        val_idx=fit_slice(train_ds.n_clips, spec.seed),
        class_names=tuple(train_ds.class_names),
        single_label=train_ds.single_label,
        scaling=InputScaling.fit(x),
        read_keys=train_ds.read_keys,
    )
    eval_x = torch.from_numpy(np.array(eval_ds.x))
    return FinalsData(train_ds, eval_ds, data, eval_x, np.asarray(eval_ds.y, dtype=bool), searched, test_from)


def own_test_split(ds: Any) -> tuple[Any, Any] | None:
    """(the train + validation clips, the test clips) of an embedding data set with its own
    split; None when it marks no clip ``test``."""
    import dataclasses

    from tagtune.trainables.data import TEST, split_of

    if getattr(ds, "split", None) is None:
        return None
    names = split_of(ds.split, ds.source)
    test = names == TEST
    if not test.any() or test.all():
        return None

    def part(mask: np.ndarray) -> Any:
        idx = np.flatnonzero(mask)
        fields: dict[str, np.ndarray | None] = {
            "x": np.asarray(ds.x[idx]),
            "y": np.asarray(ds.y[idx]),
            "lengths": np.asarray(ds.lengths[idx]),
        }
        fields["ids"] = np.asarray(ds.ids)[idx]
        for name in ("groups", "split"):
            value = getattr(ds, name, None)
            fields[name] = None if value is None else np.asarray(value)[idx]
        return dataclasses.replace(ds, **fields)

    return part(~test), part(test)


def _audio_test(spec: FinalizeSpec, ds: Any) -> tuple[Any, np.ndarray, str]:
    """(the dataset the test clips come from, their indices, where from): the clips --train's
    CSV marks ``test``, or those of --eval when that is another audio CSV (its ``test`` clips
    where it marks some, else all of them); InputError when there is no test split."""
    from tagtune.trainables.data import find_csv, open_source

    csv = ds.table.csv_path
    other: Any = None
    if spec.eval is not None:
        try:
            source = open_source(spec.eval)
        except InputError as exc:
            raise InputError(f"--eval {spec.eval}: {exc}") from None
        if source.kind != "audio":
            raise InputError(
                f"--eval {spec.eval} holds embeddings but --train {spec.train} holds audio files; "
                "pass --eval an audio CSV of test files with the same classes (or leave it out)"
            )
        if find_csv(spec.eval).resolve() != csv:
            other = source.read()
    if other is None:
        idx = np.flatnonzero(ds.table.split == "test")
        if idx.size == 0:
            raise InputError(
                f"--train {spec.train}: {csv.name} marks no clip as test (no split column with test rows), "
                "so nothing is held out to score the finals on; pass --eval a CSV of test files "
                "with the same classes, or add a split column (train/test)"
            )
        return ds, idx, f"test split of {csv}"
    if tuple(other.class_names) != tuple(ds.class_names):
        raise InputError(
            f"--eval {spec.eval} has classes {', '.join(other.class_names[:5])}... that differ from "
            f"--train's {', '.join(ds.class_names[:5])}...; pass test files of the same classes"
        )
    marked = np.flatnonzero(other.table.split == "test")
    idx = marked if marked.size else np.arange(other.n_clips)
    return other, idx, f"{'test split' if marked.size else 'all clips'} of {other.table.csv_path}"


def load_audio_finals(spec: FinalizeSpec, source: Any, say: Say) -> AudioFinalsData:
    """--train's audio clips (train + validation for the finals) and the test clips they are
    scored on; refuses (InputError naming --eval) where there is no held-out test split."""
    from tagtune.trainables.data import TrialData

    t0 = time.perf_counter()
    ds = source.read()
    test_ds, test_idx, test_from = _audio_test(spec, ds)
    train, val, _ = ds.splits()
    pool = np.sort(np.concatenate([train, val]))
    data = TrialData(
        clips=ds,
        y=ds.y,
        train_idx=pool,
        val_idx=pool[fit_slice(len(pool), spec.seed, AUDIO_FIT_SLICE)],
        class_names=ds.class_names,
        verified=ds.verified,
        single_label=ds.single_label,
    )
    test = data
    if test_ds is not ds:
        test = TrialData(
            clips=test_ds,
            y=test_ds.y,
            train_idx=test_idx,
            val_idx=test_idx,
            class_names=ds.class_names,
            single_label=ds.single_label,
        )
    say(
        f"data: {len(pool)} training clips (the search's train + validation), {len(test_idx)} test clips "
        f"({test_from}), {ds.n_classes} classes, {'single' if ds.single_label else 'multi'}-label "
        f"({time.perf_counter() - t0:.1f} s)"
    )
    y = np.asarray(test_ds.y[test_idx], dtype=bool)
    return AudioFinalsData(ds, data, test, test_idx, y, test_from)


def _check_audio_search(spec: FinalizeSpec, parent: Any, fd: AudioFinalsData) -> None:
    """--train is the audio data the search ran on (its classes and its clip count)."""
    params = parent.data.params
    searched = params.get("n_classes")
    if searched is not None and int(searched) != fd.train.n_classes:
        raise InputError(
            f"--train {spec.train} has {fd.train.n_classes} classes but the search trained on "
            f"{searched}; pass the search's training data"
        )
    if "n_train" in params and "n_val" in params:
        n = int(params["n_train"]) + int(params["n_val"])
        if n != fd.n_train:
            raise InputError(
                f"--train {spec.train} has {fd.n_train} training and validation clips but the search "
                f"split {n}; pass the search's training data"
            )


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
    version: int = 1  # this finalize's number among the search's finalizes (1, 2, ...)
    group_id: str = ""  # this finalize's own run (under the search), the finals' parent
    inputs: list[Any] = field(default_factory=list)  # the data, as dataset inputs of each run

    def __post_init__(self) -> None:
        self.parent_tags.append(RunTag(Tag.FINALIZE_ID, self.finalize_id))
        self.parent_tags.append(RunTag(Tag.FINALIZE_VERSION, str(self.version)))

    @property
    def parent_id(self) -> str:
        return str(self.parent.info.run_id)

    @contextmanager
    def open(self, kind: RunKind, run_name: str, tags: dict[str, Any], params: dict[str, Any]) -> Iterator[Any]:
        """A run of this finalize (see :func:`tagtune.tracking.open_run`): its own ``finalize``
        run under the search, then each final's or ensemble's under that one; each with the
        data as dataset inputs (the UI's Datasets)."""
        with open_run(
            self.client,
            self.experiment_id,
            kind=kind,
            # a re-run's runs are told apart from the earlier ones' in the UI: "final-fc1 v2"
            run_name=run_name if self.version == 1 else f"{run_name} v{self.version}",
            params=params,
            tags={**tags, Tag.FINALIZE_ID: self.finalize_id, Tag.FINALIZE_VERSION: str(self.version)},
            parent_run_id=self.group_id or self.parent_id,
        ) as run:
            if self.inputs:
                self.client.log_inputs(run.run_id, datasets=self.inputs)
            yield run

    def model(self, name: str, run_id: str, model_uri: str, metrics: dict[str, float], prefix: str) -> None:
        """Record a logged model: its URI on its run and the parent's tag, its metrics on the parent."""
        self.client.set_tag(run_id, Tag.MODEL_URI, model_uri)
        self.parent_tags.append(RunTag(Tag.final_model(name), model_uri))
        now = int(time.time() * 1000)
        self.parent_metrics += [Metric(f"{prefix}_{k}", v, now, 0) for k, v in metrics.items()]

    def flush(self) -> None:
        self.client.log_batch(self.parent_id, metrics=self.parent_metrics, tags=self.parent_tags)


def _log_outputs(
    client: MlflowClient,
    run_id: str,
    checkpoint: Path | None,
    per_class: pd.DataFrame,
    metrics: dict[str, float],
    confusion: pd.DataFrame | None = None,
) -> None:
    """A final's or ensemble's eval metrics, per-class table, confusion matrix (single-label
    data) and (for finals) checkpoint."""
    now = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()])
    with tempfile.TemporaryDirectory() as tmp:
        per_class.to_csv(Path(tmp) / Path(PER_CLASS_ARTIFACT).name, index=False)
        if confusion is not None:
            confusion.to_csv(Path(tmp) / Path(CONFUSION_ARTIFACT).name, index=False)
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


def _scored(
    fd: Finals, scores: np.ndarray, y: np.ndarray, names: tuple[str, ...]
) -> tuple[dict[str, float], pd.DataFrame, pd.DataFrame | None]:
    """Eval metrics and per-class table of ``scores``; on single-label data also accuracy,
    MAP@3 and the confusion matrix."""
    single = fd.single_label and y.shape[1] == len(fd.class_names)
    metrics, per_class = evaluate(scores, y, names, single_label=single)
    confusion = None
    if single:
        confusion = confusion_table(y.argmax(axis=1), np.asarray(scores).argmax(axis=1), names)
    return metrics, per_class, confusion


def _validation_scores(
    session: Session, train_ds: Any, rows: list[TrialRow], *, single_label: bool = False
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
            scores += score_trials(session.client, [row.run_id], split, session.device, single_label=single_label)
        except (MlflowException, OSError, ValueError, KeyError) as exc:
            session.say(f"ensemble weights: no checkpoint for trial {row.run_id[:8]} ({exc}); using val_mAUC")
            return None
    return scores, split.y


def choose_members(session: Session, trials: Trials, fd: Finals) -> tuple[list[Planned], dict[str, Pick]]:
    """The ensemble pool (each family's ``ensemble_pool`` best multi-label trials) and, per
    method, the members and weights greedy selection picks on validation (none without a split)."""
    spec = session.spec
    pool = [
        (f, r, row)
        for f, r, row in ranked(trials.top(max(spec.top_k, spec.ensemble_pool)))
        if _full_config(row, f)["target_class"] is None
    ]
    val = fd.validation(session, [row for _, _, row in pool]) if len(pool) > 1 else None
    picks: dict[str, Pick] = {}
    if val is not None:
        for method in fd.methods:
            weights, val_map = greedy_weights(val[0], val[1], method)
            chosen = {row.run_id: w for (_, _, row), w in zip(pool, weights, strict=True) if w > 0}
            picks[method] = Pick(chosen, val_map)
    return pool, picks


def plan_finals(session: Session, trials: Trials, fd: Finals) -> tuple[list[Planned], dict[str, Pick]]:
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


def _final_params(session: Session, full: Any, epochs: int, fd: Finals, row: TrialRow) -> dict[str, str]:
    spec = session.spec
    return {
        **{k: str(v)[:6000] for k, v in sorted(full.items())},
        "epochs": str(epochs),
        "n_train": str(fd.n_train),
        "n_eval": str(fd.n_eval),
        "train": os.path.abspath(spec.train),
        "eval": os.path.abspath(spec.eval) if spec.eval is not None else fd.test_from,
        "source_val_mAUC": f"{row.best_mAUC:.6f}",
    }


def _fit_and_score(
    session: Session, run: Any, full: Any, fd: Finals, planned: Planned, epochs: int, work: str
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
    scores = fd.score(model, full, session.device)
    y, names = _labels_for(full, fd.eval_y, fd.class_names)
    metrics, per_class, confusion = _scored(fd, scores, y, names)
    _log_outputs(session.client, run.run_id, folder, per_class, metrics | {"train_seconds": train_s}, confusion)
    return Member(family, rank, row, run.run_id, epochs, folder, scores, metrics)


def register_final(session: Session, member: Member, fd: Finals) -> None:
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


def train_final(session: Session, trials: Trials, fd: Finals, planned: Planned, work: str) -> Member | None:
    """Train, score, log and (rank 1) register one final; None when its training diverged."""
    from tagtune.trainables.loop import TrainingDiverged

    family, rank, row = planned
    full = _full_config(row, family)
    epochs = _final_epochs(session, trials, row)
    session.say(
        f"final {family} #{rank} (trial run {row.run_id[:8]}, val_mAUC {row.best_mAUC:.4f}): "
        f"{epochs} epochs on {fd.n_train} clips"
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
    uri = f" -> {member.model_uri}" if member.model_uri else ""
    session.say(f"final {family} #{rank}: {_scores_line(member.metrics)}{uri}")
    return member


def _scores_line(m: dict[str, float]) -> str:
    """``eval_accuracy 0.9867 eval_map3 ... eval_mAUC ... eval_mAP ...`` (accuracy where scored)."""
    keys = [k for k in ("eval_accuracy", "eval_map3") if k in m] + ["eval_mAUC", "eval_mAP"]
    dprime = f" eval_dprime {m['eval_dprime']:.3f}" if "eval_dprime" in m else ""
    return " ".join(f"{k} {m[k]:.4f}" for k in keys) + dprime


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


def recipes(
    members: list[Member], picks: dict[str, Pick], n_classes: int, methods: tuple[str, ...] = ENSEMBLE_METHODS
) -> list[Recipe]:
    """Per method, the ensemble of the finals: the members picked on validation, or (no pick)
    every multi-label final weighted by its trial's val_mAUC; none with fewer than two finals."""
    multi = [m for m in members if m.scores.shape[1] == n_classes]
    if len(multi) < 2:
        return []
    out = []
    for method in methods:
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


def log_ensemble(session: Session, fd: Finals, recipe: Recipe) -> None:
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
        scores = fd.combine([m.scores for m in members], weights, method)
        metrics, per_class, confusion = _scored(fd, scores, fd.eval_y, fd.class_names)
        # val_mAP: what the member weights reach on the search's validation split (the score to
        # choose between ensembles by; eval is only reported)
        extra = {"val_mAP": recipe.val_map} if math.isfinite(recipe.val_map) else {}
        _log_outputs(session.client, run.run_id, None, per_class, metrics | extra, confusion)
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
        f"(weights {recipe.how}): {_scores_line(metrics)} -> {model_uri}"
    )


# ------------------------------------------------------------------------------------------
# finalize
# ------------------------------------------------------------------------------------------


def _open_train(spec: FinalizeSpec, options: Any = None) -> Any:
    """--train opened (its format sniffed): embeddings or audio; ``options``: how the search read it."""
    from tagtune.trainables.data import open_source

    try:
        return open_source(spec.train, options=options)
    except InputError as exc:
        raise InputError(f"--train {spec.train}: {exc}") from None


def _own_test(source: Any) -> Any:
    """:func:`own_test_split` of an opened embedding source (None without a test split)."""
    return own_test_split(source.read())


def _dataset_inputs(spec: FinalizeSpec, fd: Any) -> list[Any]:
    """The finals' data as MLflow dataset inputs: all of --train (context training) and the
    eval clips (context evaluation).  Embeddings only (audio finals read a CSV of files)."""
    if not isinstance(fd, FinalsData):
        return []
    classes = len(fd.class_names)
    return [
        dataset_input(spec.train, fd.train, "training", {"train_clips": fd.train.n_clips, "classes": classes}),
        dataset_input(
            spec.eval or spec.train, fd.eval, "evaluation", {"eval_clips": fd.eval.n_clips, "classes": classes}
        ),
    ]


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
    earlier = {
        run.data.tags.get(Tag.FINALIZE_ID)
        for run in trials.runs
        if run.data.tags.get(Tag.KIND) in (RunKind.FINAL, RunKind.ENSEMBLE, RunKind.FINALIZE)
    }
    session = Session(spec, client, uri, exp.experiment_id, parent, pick_device(spec.device), say)
    session.version = len(earlier - {None}) + 1
    session.parent_tags[-1] = RunTag(Tag.FINALIZE_VERSION, str(session.version))
    return session, trials


def finalize(spec: FinalizeSpec, echo: Say | None = None) -> FinalizeOutcome:
    """Retrain, score on eval, log, register and ensemble (see the module docstring)."""
    say = echo or (lambda line: print(line, file=sys.stderr, flush=True))
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    spec.check()
    fd: Finals
    source = _open_train(spec)
    if source.kind == "audio":  # the test split is checked before the store is opened
        fd = load_audio_finals(spec, source, say)
        session, trials = _open_search(spec, say)
        _check_audio_search(spec, session.parent, fd)
    else:
        session, trials = _open_search(spec, say)
        if spec.eval is None:  # read as the search read it (--feature-key, --label-key, --task, ...)
            source = _open_train(spec, search_spec(session.parent).read_options())
            if _own_test(source) is None:
                raise InputError(
                    f"--eval is required: --train {spec.train} holds embeddings with no test split of their own; "
                    "pass their eval split"
                )
        fd = load_finals_data(spec, session.parent, say)
    plan, picks = plan_finals(session, trials, fd)
    session.inputs = _dataset_inputs(spec, fd)
    members: list[Member] = []
    with (
        session.open(RunKind.FINALIZE, "finals", {}, to_params(spec, exclude=("tracking_uri",))) as group,
        tempfile.TemporaryDirectory(prefix="tagtune-finals-") as work,
    ):
        session.group_id = group.run_id
        for planned in plan:
            member = train_final(session, trials, fd, planned, work)
            if member is not None:
                members.append(member)
        if spec.ensembles:
            for recipe in recipes(members, picks, len(fd.class_names), fd.methods):
                log_ensemble(session, fd, recipe)
    session.flush()
    runs = child_runs(session.client, session.experiment_id, session.parent_id)
    return FinalizeOutcome(session.parent_id, session.uri, finals_table(runs), members)
