"""Ensembles of several models' probabilities: the weighted mean, the weighted geometric mean, and
greedy forward selection of the members' weights.

One implementation of each:

* :func:`combine_scores`: ``mean`` (the weighted arithmetic mean) or ``geomean`` (the weighted
  geometric mean ``exp(sum_i w_i log p_i)``, unnormalized: a tagger's scores are per-class
  probabilities, not a distribution), weights normalized to sum 1.  What ``tagtune finalize`` and
  the registered ensemble models use.
* :func:`geometric_mean_ensemble`: seed 003's ensemble, the same weighted geometric mean with each
  row divided by its sum (its l1 norm), so it is a probability distribution per clip and is scored
  like one model's softmax output (:func:`single_label_metrics`); rescaling all weights by one
  factor changes no ranking, so accuracy and MAP@3 would be the same with unnormalized weights.
* :func:`greedy_weights`: Caruana et al. (2004) forward selection with replacement on validation
  mAP; :func:`bagged_weights`: the same selection repeated on bootstrap resamples of the
  validation clips, each over a random half of the members (Caruana et al. 2006's bagged
  ensemble selection), the bags' weights averaged, so that one small, noisy validation split
  cannot make a member look useful; :func:`ensemble_weights`: weights from the members' search
  scores, where there is no validation split to select on.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from tagtune.errors import InputError

if TYPE_CHECKING:
    from torch import Tensor

ENSEMBLE_METHODS = ("mean", "geomean")
SELECTIONS = ("bagged", "greedy")
"""How finalize chooses an ensemble's members and weights on validation (the first: the default)."""
BAGS = 20
BAG_MEMBERS = 0.5
EPS = 1e-7
MIN_WEIGHT = 0.01


def _stack(scores: Sequence[Any]) -> np.ndarray:
    """Members' probability matrices as one float64 array ``[E, N, C]``."""
    if not scores:
        raise InputError("an ensemble needs at least one member")
    arrays = []
    for s in scores:
        if hasattr(s, "detach"):  # a torch tensor, wherever it lives
            s = s.detach().to("cpu").double().numpy()
        arrays.append(np.asarray(s, dtype=np.float64))
    stack = np.stack(arrays)
    if stack.ndim != 3:
        raise InputError(f"ensemble members must be [N, C] probability matrices, got shape {stack.shape[1:]}")
    return stack


def normalized_weights(n: int, weights: Sequence[float] | np.ndarray | None) -> np.ndarray:
    """``weights`` (default: equal) as float64 summing to 1; InputError unless ``n`` non-negative
    numbers with a positive sum."""
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (n,) or not np.all(w >= 0) or w.sum() <= 0:
        raise InputError(f"ensemble weights must be {n} non-negative numbers with a positive sum, got {w.tolist()}")
    return w / w.sum()


def weighted_geomean(
    scores: Sequence[Any], weights: Sequence[float] | np.ndarray | None = None, *, normalize: bool = False
) -> np.ndarray:
    """The weighted geometric mean ``exp(sum_i w_i log p_i)`` of probability matrices ``[N, C]``
    (float64; probabilities clipped to ``[EPS, 1]``), each row divided by its sum with
    ``normalize`` (computed after subtracting the row's max, so it never underflows)."""
    stack = _stack(scores)
    w = normalized_weights(len(stack), weights)
    log_mean = np.tensordot(w, np.log(np.clip(stack, EPS, 1.0)), axes=1)
    if not normalize:
        return np.exp(log_mean)
    p = np.exp(log_mean - log_mean.max(axis=1, keepdims=True))
    return p / p.sum(axis=1, keepdims=True)


def combine_scores(
    scores: Sequence[np.ndarray],
    weights: Sequence[float] | np.ndarray | None = None,
    method: str = "mean",
    *,
    single_label: bool = False,
) -> np.ndarray:
    """Ensemble probabilities ``[N, C]`` (float32): the (weighted) arithmetic mean, or the weighted
    geometric mean ``exp(sum_i w_i log p_i)`` (seed 003), with weights normalized to sum 1.  For
    ``single_label`` models the geometric mean's rows are renormalized to distributions (seed 003),
    so finalize's scores and a registered ensemble's answers are the same numbers."""
    if method not in ENSEMBLE_METHODS:
        raise InputError(f"unknown ensemble method {method!r}; choose from: {', '.join(ENSEMBLE_METHODS)}")
    if method == "geomean":
        return weighted_geomean(scores, weights, normalize=single_label).astype(np.float32)
    stack = _stack(scores)
    w = normalized_weights(len(stack), weights)
    return np.tensordot(w, stack, axes=1).astype(np.float32)


def geometric_mean_ensemble(outputs: Sequence[Any], weights: Sequence[float] | np.ndarray | None = None) -> Tensor:
    """Weighted geometric mean of probability matrices ``[N, C]`` (float64), rows summing to 1."""
    import torch

    return torch.from_numpy(weighted_geomean(outputs, weights, normalize=True))


def score_ensemble(
    outputs: Sequence[Any], y: Any, weights: Sequence[float] | np.ndarray | None = None
) -> dict[str, float]:
    """:func:`geometric_mean_ensemble` of ``outputs`` scored against ``y`` like one model."""
    import torch

    from tagtune.trainables.metrics import single_label_metrics

    return single_label_metrics(geometric_mean_ensemble(outputs, weights), torch.as_tensor(np.asarray(y)))


def ensemble_weights(val_mauc: list[float]) -> list[float]:
    """Weights of ensemble members from their search mAUC: ``max(mAUC - 0.5, 0.01)``, normalized
    (NaN counts as chance, 0.5)."""
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
    counts, best = _greedy_counts([np.asarray(s) for s in val_scores], np.asarray(y_val, dtype=bool), method, rounds)
    return list(counts / counts.sum()), best


def _val_map(val_scores: list[np.ndarray], targets: Any, votes: np.ndarray, method: str) -> float:
    import torch

    from tagtune.trainables.metrics import tagging_metrics

    mixed = combine_scores(val_scores, votes, method)
    return tagging_metrics(torch.from_numpy(mixed), targets)["mAP"]


def _greedy_counts(
    val_scores: list[np.ndarray], y_val: np.ndarray, method: str, rounds: int | None = None
) -> tuple[np.ndarray, float]:
    """Forward selection's vote counts per member and the validation mAP they reach."""
    import torch

    targets = torch.from_numpy(y_val)
    counts = np.zeros(len(val_scores))
    best = -math.inf
    for _ in range(rounds or 2 * len(val_scores)):
        trials = []
        for i in range(len(val_scores)):
            votes = counts.copy()
            votes[i] += 1
            trials.append(_val_map(val_scores, targets, votes, method))
        i = int(np.nanargmax(trials))
        if not trials[i] > best:
            break
        counts[i] += 1
        best = trials[i]
    return counts, best


def bagged_weights(
    val_scores: list[np.ndarray],
    y_val: np.ndarray,
    method: str,
    bags: int = BAGS,
    share: float = BAG_MEMBERS,
    seed: int = 0,
) -> tuple[list[float], float]:
    """Bagged ensemble selection (Caruana et al. 2006) that validation noise cannot fool as
    easily: ``bags`` times, forward selection (:func:`greedy_weights`) runs on a bootstrap
    resample of the validation clips over a random ``share`` of the members (at least two); each
    bag's normalized votes are summed and the total normalized.  A member that only helps on a
    few lucky clips is picked in few bags, so its weight stays small.  Returns the weights and
    the validation mAP they reach on the whole split."""
    import torch

    scores = [np.asarray(s) for s in val_scores]
    y = np.asarray(y_val, dtype=bool)
    n, m = len(y), len(scores)
    rng = np.random.default_rng(seed)
    k = min(m, max(2, math.ceil(share * m)))
    total = np.zeros(m)
    for _ in range(bags):
        members = np.sort(rng.choice(m, size=k, replace=False))
        clips = rng.integers(0, n, size=n)
        counts, _ = _greedy_counts([scores[i][clips] for i in members], y[clips], method)
        if counts.sum() > 0:
            total[members] += counts / counts.sum()
    if total.sum() <= 0:  # no bag picked anything (no positives resampled): plain selection
        return greedy_weights(scores, y, method)
    weights = total / total.sum()
    return list(weights), _val_map(scores, torch.from_numpy(y), weights, method)


def select_weights(
    val_scores: list[np.ndarray], y_val: np.ndarray, method: str, selection: str = SELECTIONS[0], seed: int = 0
) -> tuple[list[float], float]:
    """Members' weights chosen on validation by ``selection`` (``bagged`` or ``greedy``)."""
    if selection == "greedy":
        return greedy_weights(val_scores, y_val, method)
    if selection == "bagged":
        return bagged_weights(val_scores, y_val, method, seed=seed)
    raise InputError(f"unknown ensemble selection {selection!r}; choose from: {', '.join(SELECTIONS)}")
