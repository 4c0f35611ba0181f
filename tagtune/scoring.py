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

from tagtune.tracking import Metrics
from tagtune.trainables.ensemble import combine_scores
from tagtune.trainables.errors import InputError

__all__ = [
    "SINGLE_LABEL_EVAL",
    "AudioSplit",
    "SplitUnavailable",
    "ValidationSplit",
    "evaluate",
    "load_trial_checkpoint",
    "audio_validation_split",
    "score_audio",
    "score_clips",
    "score_ensemble_members",
    "score_trials",
    "validation_split",
]


SINGLE_LABEL_EVAL = Metrics.EVAL_SINGLE_LABEL
"""The eval metrics single-label (audio) models add to ``eval_mAUC/eval_mAP/eval_dprime``."""


class SplitUnavailable(InputError):
    """The search's validation split cannot be rebuilt (other data, or nothing recorded)."""


@dataclass(frozen=True)
class ValidationSplit:
    """A search's validation clips (``[N, T, F]`` of the data's dtype, a writable copy), labels and classes."""

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
    from tagtune.tracking import SearchSpec

    return load_dataset(train, options=SearchSpec.from_params(params).read_options())


def validation_split(parent: Any, dataset: Any | None = None) -> ValidationSplit:
    """The validation split of the search ``parent`` (its MLflow run) in ``dataset`` (default:
    the training data at the path the search recorded), rebuilt from the search's recorded
    ``val_fraction`` and ``seed``; :class:`SplitUnavailable` when the search recorded no split or
    ``dataset`` is not the data it searched on (another clip count)."""
    params, run_id = parent.data.params, parent.info.run_id
    if "val_fraction" not in params or "seed" not in params:
        raise SplitUnavailable(f"search run {run_id} recorded no validation split (val_fraction, seed)")
    ds = _search_data(params, run_id) if dataset is None else dataset
    train_idx, val_idx, _ = ds.splits(float(params["val_fraction"]), int(params["seed"]))
    searched = (int(params.get("n_train", -1)), int(params.get("n_val", -1)))
    if (len(train_idx), len(val_idx)) != searched:
        raise SplitUnavailable(
            f"the data split into {len(train_idx)} training and {len(val_idx)} validation clips but search "
            f"run {run_id} into {searched[0]} and {searched[1]}; pass the search's training data"
        )
    idx = np.sort(val_idx)
    return ValidationSplit(
        x=np.array(ds.x[idx]),
        y=np.asarray(ds.y[idx], dtype=bool),
        class_names=tuple(ds.class_names),
        idx=idx,
    )


def score_clips(model: Any, x: Any, device: Any = None, *, single_label: bool = False) -> np.ndarray:
    """Probabilities ``[N, C]`` (numpy) of a loaded model for raw clips ``x`` ``[N, T, F]`` (scaled
    as its checkpoint records: :func:`tagtune.trainables.trial.load_model`)."""
    import torch

    from tagtune.trainables.loop import predict

    device = device if device is not None else torch.device("cpu")
    clips = x if isinstance(x, torch.Tensor) else torch.from_numpy(x)
    if single_label:
        return predict(model.to(device), clips, device=device, activation="none").softmax(dim=1).cpu().numpy()
    return predict(model.to(device), clips, device=device).cpu().numpy()


def load_trial_checkpoint(client: Any, run_id: str, folder: str | Path) -> Any:
    """The network of run ``run_id``'s logged ``checkpoint`` (downloaded into ``folder``)."""
    from tagtune.trainables.trial import load_model

    local = client.download_artifacts(run_id, "checkpoint", str(folder))
    model, _ = load_model(local)
    return model


def score_trials(
    client: Any, run_ids: Sequence[str], split: ValidationSplit, device: Any = None, *, single_label: bool = False
) -> list[np.ndarray]:
    """Each trial's best checkpoint (trained on the search's training part) scored on ``split``;
    the download's or load's error propagates (``MlflowException``, ``OSError``, ...)."""
    out = []
    with tempfile.TemporaryDirectory(prefix="tagtune-sources-") as work:
        for run_id in run_ids:
            model = load_trial_checkpoint(client, run_id, Path(work) / run_id)
            out.append(score_clips(model, split.x, device, single_label=single_label))
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


# ------------------------------------------------------------------------------------------
# Raw audio (seed 003): whole clips of an AudioDataset through the model's own front end
# ------------------------------------------------------------------------------------------


def score_audio(model: Any, config: Any, data: Any, idx: np.ndarray, device: Any = None) -> np.ndarray:
    """Probabilities ``[len(idx), C]`` (numpy float32) of a loaded audio model (config
    ``config``) for the clips ``idx`` of audio ``data`` (a :class:`TrialData` of an
    :class:`~tagtune.trainables.data.AudioDataset`): whole clips at the config's sample rate, as
    validation scores them; softmax outputs on single-label data, else sigmoid."""
    import torch

    from tagtune.trainables.audio.batches import AudioBatches
    from tagtune.trainables.config import resolve_config
    from tagtune.trainables.loop import model_task, task_labels

    device = device if device is not None else torch.device("cpu")
    cfg = resolve_config(config)
    batches = AudioBatches(cfg, data, task_labels(cfg, data), device)
    logits = batches.predict_logits(model.to(device), torch.from_numpy(np.asarray(idx, dtype=np.int64)).to(device))
    probs = logits.softmax(dim=1) if model_task(cfg, data.single_label) == "singlelabel" else logits.sigmoid()
    return probs.float().cpu().numpy()


@dataclass(frozen=True)
class AudioSplit:
    """A search's validation clips of audio data: the trial data and the validation indices."""

    data: Any
    idx: np.ndarray
    y: np.ndarray
    class_names: tuple[str, ...]


def audio_validation_split(parent: Any, ds: Any) -> AudioSplit:
    """The validation split of the audio search ``parent`` in the :class:`AudioDataset` ``ds``:
    :meth:`AudioDataset.splits` with the search's recorded ``val_fraction`` and ``seed`` (the
    same split the trials validated on); :class:`SplitUnavailable` when the search recorded no
    split or ``ds`` is not its data (another count of training and validation clips)."""
    params, run_id = parent.data.params, parent.info.run_id
    if "val_fraction" not in params or "seed" not in params:
        raise SplitUnavailable(f"search run {run_id} recorded no validation split (val_fraction, seed)")
    data = ds.trial_data(val_fraction=float(params["val_fraction"]), seed=int(params["seed"]))
    searched = (int(params.get("n_train", -1)), int(params.get("n_val", -1)))
    if (len(data.train_idx), len(data.val_idx)) != searched:
        raise SplitUnavailable(
            f"the data split into {len(data.train_idx)} training and {len(data.val_idx)} validation clips "
            f"but search run {run_id} into {searched[0]} and {searched[1]}; pass the search's training data"
        )
    idx = np.sort(np.asarray(data.val_idx))
    return AudioSplit(data, idx, np.asarray(ds.y[idx], dtype=bool), tuple(ds.class_names))
