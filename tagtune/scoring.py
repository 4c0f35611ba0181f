"""Scoring a search's models: its validation split, a checkpoint or an ensemble scored on clips,
and the scores' metrics with a per-class table.

One rule for everyone (``tagtune finalize`` choosing ensemble members, the report's per-class
AP, ``tagtune predict``): the validation split of a search is rebuilt from what the search
recorded (its ``val_fraction`` and ``seed``, on data with as many clips as it trained and
validated on); when that cannot be done, :func:`validation_split` refuses with
:class:`SplitUnavailable` (an :class:`~tagtune.trainables.errors.InputError` that says why),
and never guesses a fraction or a seed.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tagtune.trainables.ensemble import combine_scores
from tagtune.trainables.errors import InputError

__all__ = [
    "SplitUnavailable",
    "ValidationSplit",
    "evaluate",
    "load_trial_checkpoint",
    "score_clips",
    "score_ensemble_members",
    "score_trials",
    "validation_split",
]


class SplitUnavailable(InputError):
    """The search's validation split cannot be rebuilt (other data, or nothing recorded)."""


@dataclass(frozen=True)
class ValidationSplit:
    """A search's validation clips (uint8 ``[N, T, F]``, a writable copy), labels and classes."""

    x: np.ndarray
    y: np.ndarray
    class_names: tuple[str, ...]
    idx: np.ndarray


def _search_data(params: dict[str, str], run_id: str) -> Any:
    """The search's training data, read from the path it recorded."""
    from tagtune.trainables.data import load_dataset

    train = params.get("train")
    if not train or not Path(train).exists():
        raise SplitUnavailable(
            f"search run {run_id}: its training data {train or '(not recorded)'} is gone; restore it at that path"
        )
    return load_dataset(train)


def validation_split(parent: Any, dataset: Any | None = None) -> ValidationSplit:
    """The validation split of the search ``parent`` (its MLflow run) in ``dataset`` (default:
    the training data at the path the search recorded), rebuilt from the search's recorded
    ``val_fraction`` and ``seed``; :class:`SplitUnavailable` when the search recorded no split or
    ``dataset`` is not the data it searched on (another clip count)."""
    from tagtune.trainables.data import split_indices

    params, run_id = parent.data.params, parent.info.run_id
    if "val_fraction" not in params or "seed" not in params:
        raise SplitUnavailable(f"search run {run_id} recorded no validation split (val_fraction, seed)")
    ds = _search_data(params, run_id) if dataset is None else dataset
    n_searched = int(params.get("n_train", -1)) + int(params.get("n_val", -1))
    if n_searched != ds.n_clips:
        raise SplitUnavailable(
            f"the data has {ds.n_clips} clips but search run {run_id} split {n_searched}; "
            "pass the search's training data"
        )
    idx = np.sort(split_indices(ds.n_clips, float(params["val_fraction"]), int(params["seed"]))[1])
    return ValidationSplit(
        x=np.array(ds.x[idx], dtype=np.uint8),
        y=np.asarray(ds.y[idx], dtype=bool),
        class_names=tuple(ds.class_names),
        idx=idx,
    )


def score_clips(model: Any, x: Any, device: Any = None) -> np.ndarray:
    """Probabilities ``[N, C]`` (numpy) of a loaded model for uint8 clips ``x`` ``[N, T, F]``."""
    import torch

    from tagtune.trainables.loop import predict

    device = device if device is not None else torch.device("cpu")
    clips = x if isinstance(x, torch.Tensor) else torch.from_numpy(x)
    return predict(model.to(device), clips, device=device).cpu().numpy()


def load_trial_checkpoint(client: Any, run_id: str, folder: str | Path) -> Any:
    """The network of run ``run_id``'s logged ``checkpoint`` (downloaded into ``folder``)."""
    from tagtune.trainables.trial import load_model

    local = client.download_artifacts(run_id, "checkpoint", str(folder))
    model, _ = load_model(local)
    return model


def score_trials(client: Any, run_ids: Sequence[str], split: ValidationSplit, device: Any = None) -> list[np.ndarray]:
    """Each trial's best checkpoint (trained on the search's training part) scored on ``split``;
    the download's or load's error propagates (``MlflowException``, ``OSError``, ...)."""
    out = []
    with tempfile.TemporaryDirectory(prefix="tagtune-sources-") as work:
        for run_id in run_ids:
            model = load_trial_checkpoint(client, run_id, Path(work) / run_id)
            out.append(score_clips(model, split.x, device))
    return out


def score_ensemble_members(
    scores: Sequence[np.ndarray], weights: Sequence[float], method: str, y: np.ndarray, class_names: tuple[str, ...]
) -> tuple[dict[str, float], pd.DataFrame]:
    """An ensemble of members' ``scores`` (see :func:`tagtune.trainables.ensemble.combine_scores`)
    scored against ``y`` as :func:`evaluate` does."""
    return evaluate(combine_scores(scores, weights, method), y, class_names)


def evaluate(
    scores: np.ndarray, y: np.ndarray, class_names: tuple[str, ...], prefix: str = "eval_"
) -> tuple[dict[str, float], pd.DataFrame]:
    """``<prefix>mAUC/mAP/dprime`` of scores ``[N, C]`` against bool labels, and the per-class
    table (``class, ap, auc, n_pos``)."""
    import torch

    from tagtune.trainables.metrics import average_precision, roc_auc, tagging_metrics

    s, t = torch.from_numpy(np.array(scores, dtype=np.float32)), torch.from_numpy(np.array(y, dtype=bool))
    summary = tagging_metrics(s, t)
    per_class = pd.DataFrame(
        {
            "class": list(class_names),
            "ap": average_precision(s, t).numpy(),
            "auc": roc_auc(s, t).numpy(),
            "n_pos": t.sum(0).numpy().astype(int),
        }
    )
    return {f"{prefix}{k}": float(v) for k, v in summary.items()}, per_class
