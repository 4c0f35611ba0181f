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
from tagtune.finalize.spec import Member, Planned, Say, full_config, labels_for, seed_mean
from tagtune.finalize.techniques import choose_technique
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
    suffix: str = ""  # "_seed1", ... for a final's other seeds: their curves beside the first's
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
        self.run.log(metrics={k + self.suffix: v for k, v in logged.items() if isinstance(v, (int, float))}, step=step)
        self.say(
            f"    {self.family}{self.suffix.replace('_', ' ')} epoch {step}/{self.epochs}: "
            f"train_loss {metrics[Metrics.TRAIN_LOSS]:.4f} "
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


def seed_list(full: Any, n: int) -> list[int]:
    """The seeds of a final's ``n`` trainings: the trial's own, then ``+1000``, ``+2000``, ..."""
    base = int(full["seed"])
    return [base + 1000 * k for k in range(n)]


def checkpoint_artifact(k: int) -> str:
    """Where a final run keeps its ``k``-th seed's checkpoint (``checkpoint``, ``checkpoint-seed1``...)."""
    return "checkpoint" if k == 0 else f"checkpoint-seed{k}"


def _train_seed(
    session: Session, run: Any, full: Any, fd: FinalsData, planned: Planned, epochs: int, folder: Path, k: int
) -> float:
    """Train one seed of a final and save its last epoch's checkpoint in ``folder``; its seconds."""
    from tagtune.trainables.checkpoint import model_meta, save_model
    from tagtune.trainables.config import resolve_config
    from tagtune.trainables.loop import fit

    family, rank, _ = planned
    cfg = full if k == 0 else resolve_config({**dict(full.items()), "seed": seed_list(full, k + 1)[k]})
    log = EpochLog(run, family, epochs, session.say, suffix="" if k == 0 else f"_seed{k}")
    start = time.perf_counter()
    fit(cfg, fd.data, max_epochs=epochs, device=session.device, on_epoch=log)
    if log.state is None:
        raise RuntimeError(f"final {family} #{rank}: training stopped before epoch {epochs}")
    save_model(folder, log.state, model_meta(cfg, fd.data, log.metrics))
    return time.perf_counter() - start


def score_checkpoints(
    session: Session, full: Any, fd: FinalsData, folders: list[Path]
) -> tuple[list[np.ndarray], dict[str, float], pd.DataFrame, pd.DataFrame | None]:
    """Each seed's checkpoint scored on the eval clips, and the metrics of their mean (with each
    seed's eval mAUC/mAP and, for several seeds, their spread)."""
    from tagtune.trainables.checkpoint import load_model

    probs = []
    for folder in folders:
        model, meta = load_model(folder)
        probs.append(checkpoint_probabilities(model, meta, fd.test, session.device))
    y, names = labels_for(full, fd.eval_y, fd.class_names)
    metrics, per_class, confusion = scored(fd, seed_mean(probs), y, names)
    if len(probs) > 1:
        each = [scored(fd, p, y, names)[0] for p in probs]
        for key in (Metrics.EVAL_MAUC, Metrics.EVAL_MAP):
            values = np.array([m[key] for m in each])
            metrics |= {f"{key}_seed{k}": float(v) for k, v in enumerate(values)}
            metrics |= {f"{key}_seed_mean": float(values.mean()), f"{key}_seed_std": float(values.std())}
    return probs, metrics, per_class, confusion


def _fit_and_score(
    session: Session, run: Any, full: Any, fd: FinalsData, planned: Planned, epochs: int, work: str
) -> Member:
    """Train the final (one model per seed), save and reload the checkpoints, score eval, log."""
    family, rank, row = planned
    folders = [Path(work) / f"{family}-{rank}-seed{k}" for k in range(session.spec.seeds)]
    train_s = sum(_train_seed(session, run, full, fd, planned, epochs, f, k) for k, f in enumerate(folders))
    probs, metrics, per_class, confusion = score_checkpoints(session, full, fd, folders)
    log_outputs(session.client, run.run_id, None, per_class, metrics | {"train_seconds": train_s}, confusion)
    for k, folder in enumerate(folders):
        session.client.log_artifacts(run.run_id, str(folder), checkpoint_artifact(k))
    return Member(family, rank, row, run.run_id, epochs, folders, probs, metrics)


def reuse_final(session: Session, fd: FinalsData, planned: Planned, done: Any, work: str) -> Member:
    """A final an interrupted finalize already trained and logged (``done``, its FINISHED run):
    its checkpoints downloaded and scored again, nothing retrained or registered again."""
    family, rank, row = planned
    n = done.data.tags.get(Tag.SEEDS, "0").count(",") + 1
    folders = []
    for k in range(n):
        into = Path(work) / f"{family}-{rank}-seed{k}"
        into.mkdir(parents=True, exist_ok=True)
        folders.append(Path(session.client.download_artifacts(done.info.run_id, checkpoint_artifact(k), str(into))))
    full = full_config(row, family)
    probs, metrics, _, _ = score_checkpoints(session, full, fd, folders)
    epochs = int(done.data.params.get("epochs", "0"))
    member = Member(family, rank, row, done.info.run_id, epochs, folders, probs, metrics)
    member.model_uri = done.data.tags.get(Tag.MODEL_URI, "")
    if member.model_uri:
        session.model(member.name, member.run_id, member.model_uri, metrics, f"final_{family}")
    session.say(f"final {family} #{rank}: kept from the interrupted finalize (run {done.info.run_id[:8]})")
    return member


def train_final(session: Session, trials: Trials, fd: FinalsData, planned: Planned, work: str) -> Member | None:
    """Train, score, log and (rank 1) register one final; None when its training diverged.
    A final the interrupted finalize being resumed already logged is reused, not retrained."""
    from tagtune.trainables.loop import TrainingDiverged

    family, rank, row = planned
    done = session.resumed.get((row.run_id, rank))
    if done is not None:
        return reuse_final(session, fd, planned, done, work)
    choice = choose_technique(session, row, full_config(row, family), _final_epochs(session, trials, row))
    full, epochs = choice.config, choice.epochs
    seeds = seed_list(full, session.spec.seeds)
    session.say(
        f"final {family} #{rank} (trial run {row.run_id[:8]}, val_mAUC {row.best_mAUC:.4f}): "
        f"{epochs} epochs on {fd.n_train} clips" + (f", seeds {', '.join(map(str, seeds))}" if len(seeds) > 1 else "")
    )
    tags = {Tag.FAMILY: family, Tag.RANK: str(rank), Tag.SOURCE_RUN: row.run_id, Tag.SEEDS: ",".join(map(str, seeds))}
    if choice.scores:
        tags[Tag.TECHNIQUE] = choice.technique
    run_name = f"final-{family}" + (f"-{rank}" if rank > 1 else "")
    params = _final_params(session, full, epochs, fd, row) | choice.params()
    with session.open(RunKind.FINAL, run_name, tags, params) as run:
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
