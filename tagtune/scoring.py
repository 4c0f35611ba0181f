"""Scoring a search's models: its validation split, trial checkpoints scored on clips, and
the scores' metrics with a per-class table.

One rule for everyone (``tagtune finalize`` choosing ensemble members, the report's per-class
AP): the validation split of a search is rebuilt from what the search recorded (its
``val_fraction`` and ``seed``, on data with as many clips as it trained and validated on); when
that cannot be done, :func:`validation_split` refuses with :class:`SplitUnavailable` (an
:class:`~tagtune.errors.InputError` that says why), and never guesses a fraction or a
seed.  Clips of either data kind are scored through :mod:`tagtune.trainables.inference` (the
kind's split and probabilities, softmax or sigmoid as the checkpoint says).
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tagtune.tracking import Metrics
from tagtune.trainables.ensemble import combine_scores
from tagtune.trainables.inference import ClipSet, SplitUnavailable, checkpoint_probabilities
from tagtune.trainables.inference import validation_split as rebuild_split

__all__ = [
    "SINGLE_LABEL_EVAL",
    "ClipSet",
    "SplitUnavailable",
    "evaluate",
    "load_trial_checkpoint",
    "score_ensemble_members",
    "score_trials",
    "validation_split",
]


SINGLE_LABEL_EVAL = Metrics.EVAL_SINGLE_LABEL
"""The eval metrics single-label (audio) models add to ``eval_mAUC/eval_mAP/eval_dprime``."""


def _search_data(params: dict[str, str], run_id: str) -> Any:
    """The search's training data, read from the path it recorded."""
    from tagtune.trainables.data import load_dataset

    train = params.get("train")
    if not train or not Path(train).exists():
        raise SplitUnavailable(
            f"search run {run_id}: its training data {train or '(not recorded)'} is gone; restore it at that path"
        )
    from tagtune.tracking import SearchSpec

    return load_dataset(train, options=SearchSpec.from_params(params).read_options())


def validation_split(parent: Any, dataset: Any | None = None) -> ClipSet:
    """The validation split of the search ``parent`` (its MLflow run) in ``dataset`` (embeddings
    or audio; default: the training data at the path the search recorded), rebuilt from the
    search's recorded ``val_fraction`` and ``seed``; :class:`SplitUnavailable` when the search
    recorded no split or ``dataset`` is not the data it searched on (another clip count)."""
    params, run_id = parent.data.params, parent.info.run_id
    if "val_fraction" not in params or "seed" not in params:  # before reading the data
        raise SplitUnavailable(f"search run {run_id} recorded no validation split (val_fraction, seed)")
    ds = _search_data(params, run_id) if dataset is None else dataset
    return rebuild_split(params, ds, f"search run {run_id}")


def load_trial_checkpoint(client: Any, run_id: str, folder: str | Path) -> tuple[Any, dict[str, Any]]:
    """The network and ``model.json`` of run ``run_id``'s logged ``checkpoint`` (downloaded into
    ``folder``)."""
    from tagtune.trainables.checkpoint import load_model

    local = client.download_artifacts(run_id, "checkpoint", str(folder))
    return load_model(local)


def score_trials(client: Any, run_ids: Sequence[str], split: ClipSet, device: Any = None) -> list[np.ndarray]:
    """Each trial's best checkpoint (trained on the search's training part) scored on ``split``
    (:func:`tagtune.trainables.inference.checkpoint_probabilities`); the download's or load's
    error propagates (``MlflowException``, ``OSError``, ...)."""
    out = []
    with tempfile.TemporaryDirectory(prefix="tagtune-sources-") as work:
        for run_id in run_ids:
            model, meta = load_trial_checkpoint(client, run_id, Path(work) / run_id)
            out.append(checkpoint_probabilities(model, meta, split, device))
    return out


def score_ensemble_members(
    scores: Sequence[np.ndarray], weights: Sequence[float], method: str, y: np.ndarray, class_names: tuple[str, ...]
) -> tuple[dict[str, float], pd.DataFrame]:
    """An ensemble of members' ``scores`` (see :func:`tagtune.trainables.ensemble.combine_scores`)
    scored against ``y`` as :func:`evaluate` does."""
    return evaluate(combine_scores(scores, weights, method), y, class_names)


def evaluate(
    scores: np.ndarray,
    y: np.ndarray,
    class_names: tuple[str, ...],
    prefix: str = "eval_",
    *,
    single_label: bool = False,
) -> tuple[dict[str, float], pd.DataFrame]:
    """``<prefix>mAUC/mAP/dprime`` of scores ``[N, C]`` against bool labels (with
    ``single_label`` also ``<prefix>accuracy`` and ``<prefix>map3``, MAP@3), and the per-class
    table (``class, ap, auc, n_pos``)."""
    import torch

    from tagtune.trainables.metrics import average_precision, roc_auc, single_label_metrics, tagging_metrics

    s, t = torch.from_numpy(np.array(scores, dtype=np.float32)), torch.from_numpy(np.array(y, dtype=bool))
    summary = single_label_metrics(s, t) if single_label else tagging_metrics(s, t)
    per_class = pd.DataFrame(
        {
            "class": list(class_names),
            "ap": average_precision(s, t).numpy(),
            "auc": roc_auc(s, t).numpy(),
            "n_pos": t.sum(0).numpy().astype(int),
        }
    )
    return {f"{prefix}{k}": float(v) for k, v in summary.items()}, per_class
