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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException

from tagtune.trainables.errors import InputError
from tagtune.tracking import find_experiment, latest_search_run, open_store
from tagtune.tracking._store import TAG_FAMILY, TAG_KIND, TAG_PARENT, _safe
from tagtune.tracking.export import _typed
from tagtune.tracking.registry import ENSEMBLE_METHODS, combine_scores, log_tagger
from tagtune.tracking.summary import TrialRow, trial_rows
from tagtune.tracking.tables import (
    PER_CLASS_ARTIFACT,
    TAG_FINALIZE,
    TAG_METHOD,
    TAG_MODEL,
    TAG_RANK,
    TAG_SOURCE,
    best_step,
    finals_table,
)

FIT_SLICE = 2048
"""At most this many training clips are scored each epoch as ``fit_*`` (not a held-out score)."""
MIN_WEIGHT = 0.01


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
                raise InputError(f"{flag} {path}: no such file or folder; pass a folder of *.tfrecord, "
                                 "an .h5 file or a tagtune cache")


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


@dataclass
class FinalizeOutcome:
    """Where the finals went: the parent run, the store, and the finals table."""

    parent_run_id: str
    tracking_uri: str
    finals: pd.DataFrame
    members: list[Member] = field(default_factory=list)


def top_trials(rows: list[TrialRow], k: int) -> dict[str, list[TrialRow]]:
    """Each family's ``k`` completed trials with the highest best val_mAUC, best first."""
    out: dict[str, list[TrialRow]] = {}
    for r in rows:
        if r.status == "FINISHED" and not math.isnan(r.best_mAUC):
            out.setdefault(r.family, []).append(r)
    return {f: sorted(rs, key=lambda r: -r.best_mAUC)[:k] for f, rs in out.items()}


def ensemble_weights(val_mauc: list[float]) -> list[float]:
    """Weights of ensemble members from their search mAUC: ``max(mAUC - 0.5, 0.01)``, normalized."""
    raw = [max((v if math.isfinite(v) else 0.5) - 0.5, MIN_WEIGHT) for v in val_mauc]
    total = sum(raw)
    return [w / total for w in raw]


def greedy_weights(
    val_scores: list[np.ndarray], y_val: np.ndarray, method: str, rounds: int | None = None
) -> tuple[list[float], float]:
    """Ensemble weights chosen on validation: Caruana et al. (2004) forward selection with
    replacement.  Each round adds the member whose extra vote most raises the ensemble's
    validation mAP; it stops when no member raises it (or after ``rounds``, default
    ``2 x members``).  Returns the normalized vote counts (a weak member may get 0) and the
    validation mAP they reach."""
    import torch

    from tagtune.trainables.metrics import tagging_metrics

    targets = torch.from_numpy(np.asarray(y_val, dtype=bool))
    counts = np.zeros(len(val_scores))
    best = -math.inf
    for _ in range(rounds or 2 * len(val_scores)):
        trials = []
        for i in range(len(val_scores)):
            votes = counts.copy()
            votes[i] += 1
            mixed = combine_scores(val_scores, votes, method)
            trials.append(tagging_metrics(torch.from_numpy(mixed), targets)["mAP"])
        i = int(np.nanargmax(trials))
        if not trials[i] > best:
            break
        counts[i] += 1
        best = trials[i]
    return list(counts / counts.sum()), best


def fit_slice(n: int, seed: int, size: int = FIT_SLICE) -> np.ndarray:
    """A seeded, sorted slice of at most ``size`` of ``n`` clips (all of them when fewer)."""
    if n <= size:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False))


def eval_scores(scores: np.ndarray, y: np.ndarray, class_names: tuple[str, ...]) -> tuple[dict[str, float], pd.DataFrame]:
    """``eval_mAUC/mAP/dprime`` of scores ``[N, C]`` against bool labels, and the per-class table
    (``class, ap, auc, n_pos``)."""
    import torch

    from tagtune.trainables.metrics import average_precision, roc_auc, tagging_metrics

    s, t = torch.from_numpy(np.array(scores, dtype=np.float32)), torch.from_numpy(np.array(y, dtype=bool))
    summary = tagging_metrics(s, t)
    per_class = pd.DataFrame({
        "class": list(class_names),
        "ap": average_precision(s, t).numpy(),
        "auc": roc_auc(s, t).numpy(),
        "n_pos": t.sum(0).numpy().astype(int),
    })
    return {f"eval_{k}": float(v) for k, v in summary.items()}, per_class


def _labels_for(cfg: dict[str, Any], y: np.ndarray, class_names: tuple[str, ...]) -> tuple[np.ndarray, tuple[str, ...]]:
    """The labels a model of ``cfg`` predicts: all classes, or the binary task's one column."""
    target = cfg.get("target_class")
    if target is None:
        return y, class_names
    if target not in class_names:
        raise InputError(f"target_class {target!r} of the config is not a class of --eval; check the data")
    col = class_names.index(target)
    return y[:, col : col + 1], (str(target),)


def _load(path: str, flag: str) -> Any:
    from tagtune.trainables.data import load_dataset

    try:
        return load_dataset(path)
    except InputError as exc:
        raise InputError(f"{flag} {path}: {exc}") from None


def finalize(spec: FinalizeSpec, echo: Callable[[str], None] | None = None) -> FinalizeOutcome:
    """Retrain, score on eval, log, register and ensemble (see the module docstring)."""
    import torch

    from tagtune.trainables.config import resolve_config
    from tagtune.trainables.loop import TrainingDiverged, TrialData, fit, pick_device, predict
    from tagtune.trainables.trial import load_model, model_meta, save_model

    say = echo or (lambda line: print(line, file=sys.stderr, flush=True))
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    spec.check()
    client, uri = open_store(spec.tracking_uri)
    exp = find_experiment(client, uri, spec.experiment)
    parent = latest_search_run(client, exp, spec.run_id)
    parent_id = parent.info.run_id
    rows = trial_rows(client, exp.experiment_id, parent_id)
    chosen = top_trials(rows, spec.top_k)
    if not chosen:
        raise InputError(f"search run {parent_id} of {spec.experiment!r} has no completed trial to finalize; "
                         "run `tagtune search` first")

    t0 = time.perf_counter()
    train_ds, eval_ds = _load(spec.train, "--train"), _load(spec.eval, "--eval")
    if tuple(train_ds.class_names) != tuple(eval_ds.class_names):
        raise InputError(f"--eval {spec.eval} has {eval_ds.n_classes} classes that differ from --train's "
                         f"{train_ds.n_classes}; pass the eval split of the same data set")
    if train_ds.x.shape[1:] != eval_ds.x.shape[1:]:
        raise InputError(f"--eval {spec.eval} clips are {eval_ds.x.shape[1:]} but --train clips are "
                         f"{train_ds.x.shape[1:]}; pass the eval split of the same data set")
    searched = parent.data.params.get("n_classes")
    if searched is not None and int(searched) != train_ds.n_classes:
        raise InputError(f"--train {spec.train} has {train_ds.n_classes} classes but the search trained on "
                         f"{searched}; pass the search's training data")
    say(f"data: {train_ds.n_clips} training clips (all of them), {eval_ds.n_clips} eval clips, "
        f"{train_ds.n_classes} classes ({time.perf_counter() - t0:.1f} s)")
    data = TrialData(
        x=np.asarray(train_ds.x), y=np.asarray(train_ds.y), train_idx=np.arange(train_ds.n_clips),
        val_idx=fit_slice(train_ds.n_clips, spec.seed), class_names=tuple(train_ds.class_names),
    )
    eval_x = torch.from_numpy(np.array(eval_ds.x, dtype=np.uint8))  # a writable copy of the mmap
    eval_y = np.asarray(eval_ds.y, dtype=bool)
    class_names = tuple(train_ds.class_names)
    device = pick_device(spec.device)
    finalize_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    max_search_epochs = int(parent.data.params.get("max_epochs", "10"))
    members: list[Member] = []
    parent_metrics: list[Metric] = []
    parent_tags: list[RunTag] = [RunTag(TAG_FINALIZE, finalize_id)]

    plan = ranked(chosen)
    picks: dict[str, tuple[dict[str, float], float]] = {}  # method -> (source run -> weight, val mAP)
    if spec.ensembles:
        pool = [(f, r, row) for f, r, row in ranked(top_trials(rows, max(spec.top_k, spec.ensemble_pool)))
                if resolve_config({**_config(row), "family": f})["target_class"] is None]
        val = _validation_scores(client, parent, train_ds, [row for _, _, row in pool], device, say) if len(pool) > 1 else None
        if val is not None:
            for method in ENSEMBLE_METHODS:
                weights, val_map = greedy_weights(val[0], val[1], method)
                picks[method] = ({row.run_id: w for (_, _, row), w in zip(pool, weights) if w > 0}, val_map)
            planned = {row.run_id for _, _, row in plan}
            extra = [p for p in pool if p[2].run_id not in planned and any(p[2].run_id in w for w, _ in picks.values())]
            if extra:
                say("ensemble members beyond each family's best: " + ", ".join(f"{f} #{r}" for f, r, _ in extra))
            plan += extra

    with tempfile.TemporaryDirectory(prefix="tagtune-finals-") as work:
        for family, rank, row in plan:
            full = resolve_config({**_config(row), "family": family})
            history = client.get_metric_history(row.run_id, "val_mAUC")
            epochs = best_step((m.step, m.value) for m in history) or max_search_epochs
            if spec.max_epochs is not None:
                epochs = min(epochs, spec.max_epochs)
            say(f"final {family} #{rank} (trial run {row.run_id[:8]}, val_mAUC {row.best_mAUC:.4f}): "
                f"{epochs} epochs on {train_ds.n_clips} clips")
            run = client.create_run(
                exp.experiment_id, run_name=f"final-{family}" + (f"-{rank}" if rank > 1 else ""),
                tags={TAG_PARENT: parent_id, TAG_KIND: "final", TAG_FAMILY: family, TAG_RANK: str(rank),
                      TAG_SOURCE: row.run_id, TAG_FINALIZE: finalize_id},
            )
            rid = run.info.run_id
            client.log_batch(rid, params=[Param(k, str(v)[:6000]) for k, v in sorted(full.items())] + [
                Param("epochs", str(epochs)), Param("n_train", str(train_ds.n_clips)),
                Param("n_eval", str(eval_ds.n_clips)), Param("train", os.path.abspath(spec.train)),
                Param("eval", os.path.abspath(spec.eval)), Param("source_val_mAUC", f"{row.best_mAUC:.6f}"),
            ])
            last: dict[str, Any] = {}

            def on_epoch(metrics: dict[str, float], improved: bool, model: Any, rid: str = rid,
                         epochs: int = epochs, last: dict[str, Any] = last, family: str = family) -> None:
                step = int(metrics["epoch"])
                now = int(time.time() * 1000)
                logged = {"train_loss": metrics.get("train_loss"), "fit_mAUC": metrics.get("val_mAUC"),
                          "fit_mAP": metrics.get("val_mAP"), "epoch_seconds": metrics.get("epoch_seconds")}
                client.log_batch(rid, metrics=[Metric(k, float(v), now, step) for k, v in logged.items()
                                               if isinstance(v, (int, float))])
                say(f"    {family} epoch {step}/{epochs}: train_loss {metrics['train_loss']:.4f} "
                    f"fit_mAUC {metrics['val_mAUC']:.4f} ({metrics['epoch_seconds']:.1f} s)")
                if step == epochs:
                    last["state"] = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
                    last["metrics"] = dict(metrics)

            status = "FAILED"
            try:
                start = time.perf_counter()
                fit(full, data, max_epochs=epochs, device=device, on_epoch=on_epoch)
                train_s = time.perf_counter() - start
                folder = Path(work) / f"{family}-{rank}"
                save_model(folder, last["state"], model_meta(full, data, last["metrics"]))
                model, _ = load_model(folder)
                scores = predict(model.to(device), eval_x, device=device).cpu().numpy()
                y, names = _labels_for(full, eval_y, class_names)
                metrics, per_class = eval_scores(scores, y, names)
                _log_outputs(client, rid, folder, per_class, metrics | {"train_seconds": train_s})
                member = Member(family, rank, row, rid, epochs, folder, scores, metrics)
                if rank == 1 and full.get("target_class") is None:
                    name = _safe(f"{spec.experiment}-{family}") if spec.register else None
                    logged = log_tagger(uri, rid, [folder], class_names=class_names, n_frames=data.shape[0],
                                        n_features=data.shape[1], registered_name=name,
                                        extra_metadata={"family": family, "source_run": row.run_id})
                    member.model_uri = logged.registered_uri or logged.run_uri
                    client.set_tag(rid, TAG_MODEL, member.model_uri)
                    parent_tags.append(RunTag(f"tagtune.final.{family}", member.model_uri))
                    now = int(time.time() * 1000)
                    parent_metrics += [Metric(f"final_{family}_{k}", v, now, 0) for k, v in metrics.items()]
                members.append(member)
                status = "FINISHED"
                say(f"final {family} #{rank}: eval_mAUC {metrics['eval_mAUC']:.4f} eval_mAP "
                    f"{metrics['eval_mAP']:.4f} eval_dprime {metrics['eval_dprime']:.3f}"
                    + (f" -> {member.model_uri}" if member.model_uri else ""))
            except TrainingDiverged as exc:  # this config diverged on 100%: the other finals go on
                client.set_tag(rid, "tagtune.error", str(exc)[:500])
                say(f"final {family} #{rank} FAILED: {exc}")
            finally:
                client.set_terminated(rid, status)

        multi = [m for m in members if m.scores.shape[1] == len(class_names)]
        if spec.ensembles and len(multi) >= 2:
            for method in ENSEMBLE_METHODS:
                if method in picks:
                    chosen_w, val_map = picks[method]
                    ens = [m for m in multi if m.source.run_id in chosen_w]
                    weights = [chosen_w[m.source.run_id] for m in ens]
                    how = f"chosen on the search's validation split (val mAP {val_map:.4f})"
                else:
                    ens, val_map = multi, math.nan
                    weights = ensemble_weights([m.source.best_mAUC for m in multi])
                    how = "from the trials' val_mAUC"
                if ens:
                    parent_metrics += _ensemble(client, uri, exp.experiment_id, parent_id, finalize_id, spec, ens,
                                                weights, how, val_map, method, eval_y, class_names, data.shape,
                                                parent_tags, say)
    client.log_batch(parent_id, metrics=parent_metrics, tags=parent_tags)
    return FinalizeOutcome(parent_id, uri, finals_table(client, exp.experiment_id, parent_id), members)


def _validation_scores(
    client: MlflowClient, parent: Any, train_ds: Any, rows: list[TrialRow], device: Any,
    say: Callable[[str], None],
) -> tuple[list[np.ndarray], np.ndarray] | None:
    """Each trial's best checkpoint (trained on the search's 80%) scored on the search's
    validation split, rebuilt from the search's seed and fraction, with that split's labels: what
    ensemble members and weights are chosen on.  None when the split cannot be rebuilt (other
    --train data) or a checkpoint is missing; the ensembles then take every final, weighted by
    the trials' val_mAUC."""
    import torch

    from tagtune.trainables.data import split_indices
    from tagtune.trainables.loop import predict
    from tagtune.trainables.trial import load_model

    params = parent.data.params
    n_searched = int(params.get("n_train", -1)) + int(params.get("n_val", -1))
    if n_searched != train_ds.n_clips or "val_fraction" not in params:
        say("ensemble weights: --train is not the search's data, so they come from the trials' val_mAUC")
        return None
    val_idx = np.sort(split_indices(train_ds.n_clips, float(params["val_fraction"]), int(params["seed"]))[1])
    x_val = torch.from_numpy(np.array(train_ds.x[val_idx], dtype=np.uint8))
    out = []
    with tempfile.TemporaryDirectory(prefix="tagtune-sources-") as work:
        for row in rows:
            try:
                folder = client.download_artifacts(row.run_id, "checkpoint", str(Path(work) / row.run_id))
                model, _ = load_model(folder)
            except (MlflowException, OSError, ValueError, KeyError) as exc:
                say(f"ensemble weights: no checkpoint for trial {row.run_id[:8]} ({exc}); using val_mAUC")
                return None
            out.append(predict(model.to(device), x_val, device=device).cpu().numpy())
    return out, np.asarray(train_ds.y[val_idx], dtype=bool)


def _config(row: TrialRow) -> dict[str, Any]:
    """A trial's logged params, typed back from MLflow's strings."""
    return {k: _typed(v) for k, v in row.params.items()}


def ranked(by_family: dict[str, list[TrialRow]]) -> list[tuple[str, int, TrialRow]]:
    """``(family, rank, trial)`` for each family's trials, best first (rank 1)."""
    return [(f, rank, row) for f, rows in by_family.items() for rank, row in enumerate(rows, start=1)]


def _log_outputs(client: MlflowClient, run_id: str, checkpoint: Path | None, per_class: pd.DataFrame,
                 metrics: dict[str, float]) -> None:
    """A final's or ensemble's eval metrics, per-class table and (for finals) checkpoint."""
    now = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()])
    with tempfile.TemporaryDirectory() as tmp:
        per_class.to_csv(Path(tmp) / Path(PER_CLASS_ARTIFACT).name, index=False)
        client.log_artifacts(run_id, tmp, str(Path(PER_CLASS_ARTIFACT).parent))
    if checkpoint is not None:
        client.log_artifacts(run_id, str(checkpoint), "checkpoint")


def _ensemble(
    client: MlflowClient, uri: str, experiment_id: str, parent_id: str, finalize_id: str, spec: FinalizeSpec,
    members: list[Member], weights: list[float], how: str, val_map: float, method: str, eval_y: np.ndarray,
    class_names: tuple[str, ...], shape: tuple[int, int, int], parent_tags: list[RunTag],
    say: Callable[[str], None],
) -> list[Metric]:
    """Score, log and register one ensemble of the finals; returns the parent run's metrics."""
    names = [f"{m.family}#{m.rank}" if m.rank > 1 else m.family for m in members]
    run = client.create_run(
        experiment_id, run_name=f"ensemble-{method}",
        tags={TAG_PARENT: parent_id, TAG_KIND: "ensemble", TAG_METHOD: method, TAG_FINALIZE: finalize_id},
    )
    rid = run.info.run_id
    client.log_batch(rid, params=[
        Param("ensemble_method", method), Param("members", ",".join(names)),
        Param("member_runs", ",".join(m.run_id for m in members)),
        Param("member_weights", ",".join(f"{x:.4f}" for x in weights)), Param("weights_from", how),
    ])
    status = "FAILED"
    try:
        scores = combine_scores([m.scores for m in members], weights, method)
        metrics, per_class = eval_scores(scores, eval_y, class_names)
        # val_mAP: what the member weights reach on the search's validation split (the score to
        # choose between ensembles by; eval is only reported)
        _log_outputs(client, rid, None, per_class, metrics | ({"val_mAP": val_map} if math.isfinite(val_map) else {}))
        name = _safe(f"{spec.experiment}-ensemble-{method}") if spec.register else None
        logged = log_tagger(uri, rid, [m.checkpoint for m in members], class_names=class_names, n_frames=shape[0],
                            n_features=shape[1], weights=weights, method=method, registered_name=name,
                            extra_metadata={"members": names})
        model_uri = logged.registered_uri or logged.run_uri
        client.set_tag(rid, TAG_MODEL, model_uri)
        parent_tags.append(RunTag(f"tagtune.final.ensemble-{method}", model_uri))
        status = "FINISHED"
    finally:
        client.set_terminated(rid, status)
    say(f"ensemble {method} of {', '.join(f'{n} {x:.2f}' for n, x in zip(names, weights))} (weights {how}): eval_mAUC {metrics['eval_mAUC']:.4f} "
        f"eval_mAP {metrics['eval_mAP']:.4f} -> {model_uri}")
    now = int(time.time() * 1000)
    return [Metric(f"ensemble_{method}_{k}", v, now, 0) for k, v in metrics.items()]
