"""Seed 003's ensemble: a weighted geometric mean of several models' outputs, normalized.

``y = exp(sum_e p_e log y_e)``, then each row divided by its sum (its l1 norm), so the result is
a probability distribution per clip and is scored like one model's softmax output
(:func:`single_label_metrics`).  Weights are normalized to sum to 1 (a proper weighted mean; the
seed's 1.5 : 1 for log-mel : waveform).  Rescaling all weights by one factor changes no ranking,
so accuracy and MAP@3 would be the same with unnormalized weights.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from tagtune.trainables.errors import InputError
from tagtune.trainables.metrics import accuracy, map_at_k, tagging_metrics

_EPS = 1e-7


def geometric_mean_ensemble(
    outputs: Sequence[Tensor | np.ndarray], weights: Sequence[float] | None = None
) -> Tensor:
    """Weighted geometric mean of probability matrices ``[N, C]`` (float64), rows summing to 1."""
    if not outputs:
        raise InputError("an ensemble needs at least one member")
    stack = torch.stack([torch.as_tensor(o, dtype=torch.float64) for o in outputs])
    if stack.dim() != 3:
        raise InputError(f"ensemble members must be [N, C] probability matrices, got shape {tuple(stack.shape[1:])}")
    w = torch.ones(len(outputs), dtype=torch.float64) if weights is None else torch.as_tensor(weights, dtype=torch.float64)
    if w.shape != (len(outputs),) or bool((w < 0).any()) or float(w.sum()) <= 0:
        raise InputError(
            f"ensemble weights must be {len(outputs)} non-negative numbers with a positive sum, got {w.tolist()}"
        )
    w = (w / w.sum()).to(stack.device)
    log_mean = torch.einsum("e,enc->nc", w, stack.clamp(min=_EPS).log())
    # exp after subtracting each row's max: the same after normalization, and never underflows.
    p = (log_mean - log_mean.amax(dim=1, keepdim=True)).exp()
    return p / p.sum(dim=1, keepdim=True)


def single_label_metrics(scores: Tensor, y: Tensor) -> dict[str, float]:
    """accuracy, MAP@3, and one-vs-rest mAP / mAUC / d-prime of scores ``[N, C]`` for one-hot
    (or multi-hot: the first label counts for accuracy and MAP@3) labels ``y [N, C]``."""
    scores = torch.as_tensor(scores)
    y = torch.as_tensor(y).bool()
    labels = y.to(torch.int8).argmax(dim=1)
    out = tagging_metrics(scores, y)
    out["accuracy"] = accuracy(scores, labels)
    out["map3"] = map_at_k(scores, labels, 3)
    return out


def score_ensemble(
    outputs: Sequence[Tensor | np.ndarray], y: Tensor | np.ndarray, weights: Sequence[float] | None = None
) -> dict[str, float]:
    """:func:`geometric_mean_ensemble` of ``outputs`` scored against ``y`` like one model."""
    return single_label_metrics(geometric_mean_ensemble(outputs, weights), torch.as_tensor(np.asarray(y)))
