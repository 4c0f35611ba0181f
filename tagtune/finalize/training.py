"""Training: one final on all of its training clips for the epochs its trial peaked at,
scored on the held-out clips, logged, and (a family's best) registered."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tagtune.finalize.registry import Session, log_outputs, register_final
from tagtune.finalize.spec import Member, Planned, Say, full_config, labels_for
from tagtune.names import Metrics
from tagtune.scoring import evaluate
from tagtune.tracking import RunKind, Tag, TrialRow, Trials
from tagtune.tracking.tables import confusion_table
from tagtune.trainables.inference import FinalsData, checkpoint_probabilities


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
            Metrics.TRAIN_LOSS: metrics.get(Metrics.TRAIN_LOSS),
            Metrics.FIT_MAUC: metrics.get(Metrics.VAL_MAUC),
            Metrics.FIT_MAP: metrics.get(Metrics.VAL_MAP),
            Metrics.EPOCH_SECONDS: metrics.get(Metrics.EPOCH_SECONDS),
        }
        self.run.log(metrics={k: v for k, v in logged.items() if isinstance(v, (int, float))}, step=step)
        self.say(
            f"    {self.family} epoch {step}/{self.epochs}: train_loss {metrics[Metrics.TRAIN_LOSS]:.4f} "
            f"fit_mAUC {metrics[Metrics.VAL_MAUC]:.4f} ({metrics[Metrics.EPOCH_SECONDS]:.1f} s)"
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
        "n_train": str(fd.n_train),
        "n_eval": str(fd.n_eval),
        "train": os.path.abspath(spec.train),
        "eval": os.path.abspath(spec.eval) if spec.eval is not None else fd.test_from,
        "source_val_mAUC": f"{row.best_mAUC:.6f}",
    }


def _fit_and_score(
    session: Session, run: Any, full: Any, fd: FinalsData, planned: Planned, epochs: int, work: str
) -> Member:
    """Train the final, save and reload its checkpoint, score eval, log the outputs."""
    from tagtune.trainables.checkpoint import load_model, model_meta, save_model
    from tagtune.trainables.loop import fit

    family, rank, row = planned
    log = EpochLog(run, family, epochs, session.say)
    start = time.perf_counter()
    fit(full, fd.data, max_epochs=epochs, device=session.device, on_epoch=log)
    train_s = time.perf_counter() - start
    if log.state is None:
        raise RuntimeError(f"final {family} #{rank}: training stopped before epoch {epochs}")
    folder = Path(work) / f"{family}-{rank}"
    save_model(folder, log.state, model_meta(full, fd.data, log.metrics))
    model, meta = load_model(folder)
    scores = checkpoint_probabilities(model, meta, fd.test, session.device)
    y, names = labels_for(full, fd.eval_y, fd.class_names)
    metrics, per_class, confusion = scored(fd, scores, y, names)
    log_outputs(session.client, run.run_id, folder, per_class, metrics | {"train_seconds": train_s}, confusion)
    return Member(family, rank, row, run.run_id, epochs, folder, scores, metrics)


def train_final(session: Session, trials: Trials, fd: FinalsData, planned: Planned, work: str) -> Member | None:
    """Train, score, log and (rank 1) register one final; None when its training diverged."""
    from tagtune.trainables.loop import TrainingDiverged

    family, rank, row = planned
    full = full_config(row, family)
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
    session.say(f"final {family} #{rank}: {scores_line(member.metrics)}{uri}")
    return member


def scored(
    fd: FinalsData, scores: np.ndarray, y: np.ndarray, names: tuple[str, ...]
) -> tuple[dict[str, float], pd.DataFrame, pd.DataFrame | None]:
    """Eval metrics and per-class table of ``scores``; on single-label data also accuracy,
    MAP@3 and the confusion matrix."""
    single = fd.single_label and y.shape[1] == len(fd.class_names)
    metrics, per_class = evaluate(scores, y, names, single_label=single)
    confusion = None
    if single:
        confusion = confusion_table(y.argmax(axis=1), np.asarray(scores).argmax(axis=1), names)
    return metrics, per_class, confusion


def scores_line(m: dict[str, float]) -> str:
    """``eval_accuracy 0.9867 eval_map3 ... eval_mAUC ... eval_mAP ...`` (accuracy where scored)."""
    keys = [k for k in (Metrics.EVAL_ACCURACY, Metrics.EVAL_MAP3) if k in m] + [Metrics.EVAL_MAUC, Metrics.EVAL_MAP]
    dprime = f" eval_dprime {m[Metrics.EVAL_DPRIME]:.3f}" if Metrics.EVAL_DPRIME in m else ""
    return " ".join(f"{k} {m[k]:.4f}" for k in keys) + dprime
