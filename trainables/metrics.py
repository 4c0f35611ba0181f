"""Vectorized multi-label tagging metrics in torch.

Every function runs on the device its tensors live on (CPU or CUDA) and never loops over classes
in Python.  The per-class metrics match scikit-learn exactly, ties included:

* :func:`average_precision` equals ``sklearn.metrics.average_precision_score`` (step-wise AP over
  the distinct score thresholds, so tied scores form one step);
* :func:`roc_auc` equals ``sklearn.metrics.roc_auc_score`` (trapezoidal ROC area, which is the
  Mann-Whitney U statistic with midranks for ties).

:func:`task_metrics` is the one place validation metrics are computed from a model's logits, for
every task (multi-label, binary, single-label); :func:`single_label_metrics` scores probabilities
of single-label clips (a softmax output or an ensemble's).

How the per-class metrics are computed
--------------------------------------
For a positive example with score ``v`` in class ``c`` let ``lt_all`` / ``le_all`` count the
examples of class ``c`` scoring ``< v`` / ``<= v`` and ``lt_pos`` / ``le_pos`` the positives
doing so.  With ``N`` examples and ``P`` positives in the class, the positive contributes

* ``(P - lt_pos) / (N - lt_all)`` to ``AP * P``: the precision at threshold ``v``, which is where
  scikit-learn's step for this positive's run of tied scores sits;
* ``(lt_all - lt_pos) + 0.5 * ((le_all - lt_all) - (le_pos - lt_pos))`` to ``AUC * P * (N - P)``:
  the negatives below it plus half of those tied with it.

Two ways to get the counts, chosen by label density (both exact, both tested against sklearn):

* **search** (sparse labels, the AudioSet case: ~0.5 % positives): sort each column once, values
  only, turn every float32 score into the int64 key ``class * 2**32 + order_key(score)`` so the
  flattened matrix is globally sorted, and answer all positives with one ``torch.searchsorted``.
  The work after the sort is proportional to the number of positives, not to ``N * C``.
* **rank** (dense labels, or float64 scores that are not exact in float32): argsort each column,
  cumulative-sum the sorted targets and find each run of ties with ``cummax``.

On CPU tensors the sorts, and the whole search path, run in NumPy: its SIMD sort is several times
faster than ``torch.sort`` for this shape, and single-threaded NumPy does not pay torch's per-op
thread synchronisation, which gets expensive when other processes load the cores.  On other
devices (CUDA) everything runs in torch on that device; the tests exercise the torch code on CPU.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

__all__ = [
    "accuracy",
    "average_precision",
    "d_prime",
    "f1_at_best_threshold",
    "map_at_k",
    "roc_auc",
    "single_label_metrics",
    "tagging_metrics",
    "task_metrics",
    "to_probabilities",
]

_SQRT2 = math.sqrt(2.0)


# --------------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------------


def _as_float_scores(scores: torch.Tensor) -> torch.Tensor:
    """Return ``scores`` as float32 or float64 without losing precision."""
    if scores.dtype in (torch.float32, torch.float64):
        return scores
    if scores.dtype in (torch.float16, torch.bfloat16):
        return scores.to(torch.float32)
    if scores.is_floating_point() or scores.is_complex():
        raise ValueError(f"unsupported score dtype {scores.dtype}")
    return scores.to(torch.float64)


def _check_scores_targets(scores: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """Validate a ``[N, C]`` (or ``[N]``) score/target pair.

    Returns ``(scores [N, C] float, targets [N, C], was_1d)``.
    """
    if not isinstance(scores, torch.Tensor) or not isinstance(targets, torch.Tensor):
        raise TypeError("scores and targets must be torch tensors")
    if scores.shape != targets.shape:
        raise ValueError(f"scores {tuple(scores.shape)} and targets {tuple(targets.shape)} differ in shape")
    if scores.dim() not in (1, 2):
        raise ValueError(f"expected [N, C] or [N] tensors, got {scores.dim()} dimensions")
    if scores.device != targets.device:
        raise ValueError(f"scores on {scores.device} but targets on {targets.device}")
    was_1d = scores.dim() == 1
    if was_1d:
        scores, targets = scores.unsqueeze(1), targets.unsqueeze(1)
    return _as_float_scores(scores), targets, was_1d


# --------------------------------------------------------------------------------------------
# Sorting and searching
# --------------------------------------------------------------------------------------------


def _use_numpy(device: torch.device) -> bool:
    """Whether to run the sorts (and the search path) in NumPy: CPU tensors; else torch on ``device``."""
    return device.type == "cpu"


def _argsort_columns(scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sort every column of ``scores [N, C]`` ascending; returns ``(values, indices)``, each ``[C, N]``."""
    cols = scores.detach().t().contiguous()
    if _use_numpy(cols.device):
        idx = torch.from_numpy(np.argsort(cols.numpy(), axis=1))
        return cols.gather(1, idx), idx
    values, idx = torch.sort(cols, dim=1)
    return values, idx


def _order_key_from_bits(bits: Any) -> Any:
    """Map float32 bit patterns (int32, NumPy or torch) to int32 keys that sort like the floats.

    Non-negative floats keep their bit pattern; negative ones become minus their magnitude bits,
    so ``-0.0`` and ``0.0`` get the same key, as they compare equal.  NaN must be excluded first.
    """
    sign = bits >> 31  # 0 or -1
    return ((bits & 0x7FFFFFFF) ^ sign) - sign


def _sorted_column_keys(scores: torch.Tensor) -> torch.Tensor:
    """Sorted int64 keys ``class * 2**32 + order_key(score)`` of float32 ``scores [N, C]``, flat (torch).

    Each column is sorted once (values only), so the flattened ``[C, N]`` key matrix is one
    ascending array.  Raises ``ValueError`` on NaN (NaN sorts last).
    """
    c = scores.shape[1]
    values = torch.sort(scores.detach().t(), dim=1).values
    if bool(torch.isnan(values[:, -1]).any()):
        raise ValueError("scores contain NaN")
    bits = values.contiguous().view(torch.int32)
    # All scores positive (the usual probabilities): the bits already sort like the values.
    keys = (bits if bool((values[:, 0] > 0).all()) else _order_key_from_bits(bits)).to(torch.int64)
    keys += (torch.arange(c, dtype=torch.int64, device=scores.device) << 32).unsqueeze(1)
    return keys.reshape(-1)


def _sorted_column_keys_numpy(scores: np.ndarray) -> np.ndarray:
    """NumPy twin of :func:`_sorted_column_keys`: its SIMD sort and integer passes are several
    times faster than torch's on CPU for this shape."""
    c = scores.shape[1]
    arr = scores.T.copy()  # [C, N] C-contiguous, owned
    arr.sort(axis=1)
    if bool(np.isnan(arr[:, -1]).any()):
        raise ValueError("scores contain NaN")
    keys = np.empty(arr.shape, dtype=np.int64)
    bits = arr.view(np.int32)
    keys[...] = bits if bool((arr[:, 0] > 0).all()) else _order_key_from_bits(bits)
    keys += (np.arange(c, dtype=np.int64) << 32)[:, None]
    return keys.reshape(-1)


def _as_exact_float32(scores: torch.Tensor) -> torch.Tensor | None:
    """``scores`` as float32 if that loses nothing, else ``None``."""
    if scores.dtype == torch.float32:
        return scores
    narrow = scores.to(torch.float32)
    exact = narrow.to(scores.dtype) == scores
    return narrow if bool(exact.all()) else None


def _use_rank_path(n: int, c: int, n_positives: int) -> bool:
    """Whether the dense (argsort + cumsum) path is likely cheaper than searching every positive.

    The search path costs a values-only sort plus two binary searches (``log2(N * C)`` steps) per
    positive; the rank path an argsort plus a dozen passes over the ``N x C`` matrix.  Measured on
    CPU for 20k x 527 the two break even near 12 % positives, which this rule reproduces.
    """
    return n_positives * (n * c).bit_length() > 3 * n * c


def _ap_auc_search(
    scores: torch.Tensor, pos_n: torch.Tensor, pos_c: torch.Tensor, n_pos: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sparse path: per-class AP and AUC sums from a values-only sort and a search per positive.

    ``scores`` must be float32.  Every score becomes the int64 key ``class * 2**32 + order_key``,
    so the row-sorted matrix, flattened, is one globally sorted array and a single
    ``searchsorted`` answers "how many examples of class c score < v (or <= v)" for all positives
    at once.  On CPU the whole path runs in NumPy (:func:`_ap_auc_search_numpy`): faster, and free
    of torch's per-op thread synchronisation, which is costly when other processes load the CPU.

    Returns ``(ap_sum [C], a_minus_b [C])``: ``ap_sum`` is the sum over positives of the precision
    at their score, ``a_minus_b`` is ``#(pos > neg) - #(pos < neg)`` over positive/negative pairs.
    """
    if _use_numpy(scores.device):
        return _ap_auc_search_numpy(scores, pos_n, pos_c, n_pos)
    n, c = scores.shape
    device = scores.device
    flat_keys = _sorted_column_keys(scores)  # [C * N] ascending
    row_offset = torch.arange(c, dtype=torch.int64, device=device) << 32
    pos_bits = scores[pos_n, pos_c].contiguous().view(torch.int32)
    pos_keys = _order_key_from_bits(pos_bits).to(torch.int64) + row_offset[pos_c]
    pos_keys, order = torch.sort(pos_keys)  # by class, then score
    pos_c = pos_c[order]
    m = pos_keys.numel()

    # Keys are integers, so "<= v" is "< v + 1".
    queries = torch.cat([pos_keys, pos_keys + 1])
    found_all = torch.searchsorted(flat_keys, queries) - (pos_c * n).repeat(2)
    found_pos = torch.searchsorted(pos_keys, queries) - (torch.cumsum(n_pos, 0) - n_pos)[pos_c].repeat(2)
    lt_all, le_all = found_all[:m], found_all[m:]  # examples of the class scoring < v, <= v
    lt_pos, le_pos = found_pos[:m], found_pos[m:]  # positives of the class scoring < v, <= v

    precision = (n_pos[pos_c] - lt_pos).to(torch.float64) / (n - lt_all).to(torch.float64)
    neg_below = lt_all - lt_pos  # negatives strictly below this positive
    neg_tied = (le_all - lt_all) - (le_pos - lt_pos)
    # Per positive: (#neg below) - (#neg above) = 2 * below + tied - N_neg.
    diff = (2 * neg_below + neg_tied - (n - n_pos[pos_c])).to(torch.float64)
    ap_sum = torch.zeros(c, dtype=torch.float64, device=device).index_add_(0, pos_c, precision)
    a_minus_b = torch.zeros(c, dtype=torch.float64, device=device).index_add_(0, pos_c, diff)
    return ap_sum, a_minus_b


def _ap_auc_search_numpy(
    scores: torch.Tensor, pos_n: torch.Tensor, pos_c: torch.Tensor, n_pos: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """NumPy twin of :func:`_ap_auc_search` for CPU tensors; same arguments and results."""
    n, c = scores.shape
    arr = scores.detach().numpy()
    flat_keys = _sorted_column_keys_numpy(arr)
    pc = pos_c.numpy()
    p = n_pos.numpy()
    pos_keys = _order_key_from_bits(arr[pos_n.numpy(), pc].view(np.int32)).astype(np.int64)
    pos_keys += pc.astype(np.int64) << 32
    order = np.argsort(pos_keys, kind="stable")  # by class, then score
    pos_keys = pos_keys[order]
    pc = pc[order]

    row_start = pc * n
    lt_all = np.searchsorted(flat_keys, pos_keys, side="left") - row_start
    le_all = np.searchsorted(flat_keys, pos_keys, side="right") - row_start
    class_start = (np.cumsum(p) - p)[pc]
    lt_pos = np.searchsorted(pos_keys, pos_keys, side="left") - class_start
    le_pos = np.searchsorted(pos_keys, pos_keys, side="right") - class_start

    p_of = p[pc]
    precision = (p_of - lt_pos) / (n - lt_all)  # int64 / int64 -> float64
    diff = 2 * (lt_all - lt_pos) + (le_all - lt_all) - (le_pos - lt_pos) - (n - p_of)
    ap_sum = np.bincount(pc, weights=precision, minlength=c)
    a_minus_b = np.bincount(pc, weights=diff.astype(np.float64), minlength=c)
    return torch.from_numpy(ap_sum), torch.from_numpy(a_minus_b)


def _ap_auc_rank(scores: torch.Tensor, targets: torch.Tensor, n_pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Dense path: the same sums as :func:`_ap_auc_search` from a full argsort and cumulative sums.

    In ascending order, position ``j`` starts a run of tied scores at ``a_j``; then ``a_j``
    examples and ``tp_excl[a_j]`` positives score strictly below it.  Works for any float dtype.
    """
    n, c = scores.shape
    device = scores.device
    values, idx = _argsort_columns(scores)  # [C, N]
    if bool(torch.isnan(values[:, -1]).any()):
        raise ValueError("scores contain NaN")
    mask = targets.t().gather(1, idx)
    mask = mask if mask.dtype == torch.bool else mask != 0
    t = mask.to(torch.int32)
    lt_pos = torch.cumsum(t, dim=1, dtype=torch.int32).sub_(t)  # positives strictly before j
    sel = mask.reshape(-1).nonzero().squeeze(1)  # flat [C * N] index of every positive, row-major
    rows = torch.div(sel, n, rounding_mode="floor")
    ties = values[:, 1:] == values[:, :-1]
    if bool(ties.any()):
        positions = torch.arange(n, dtype=torch.int64, device=device).expand(c, n)
        first = torch.ones((c, n), dtype=torch.bool, device=device)
        first[:, 1:] = ~ties
        start = torch.cummax(torch.where(first, positions, 0), dim=1).values  # a_j
        lt_pos = lt_pos.gather(1, start)  # positives strictly below x_j
        start_pos = start.reshape(-1)[sel]
    else:
        start_pos = sel - rows * n
    lt_pos_pos = lt_pos.reshape(-1)[sel].to(torch.int64)
    precision = (n_pos[rows] - lt_pos_pos).to(torch.float64) / (n - start_pos).to(torch.float64)
    ap_sum = torch.zeros(c, dtype=torch.float64, device=device).index_add_(0, rows, precision)
    # sum_pos (a_j - lt_pos_j) - sum_neg lt_pos_j  =  sum_pos a_j - sum_all lt_pos_j
    sum_start = torch.zeros(c, dtype=torch.int64, device=device).index_add_(0, rows, start_pos)
    a_minus_b = (sum_start - lt_pos.sum(dim=1, dtype=torch.int64)).to(torch.float64)
    return ap_sum, a_minus_b


def _ap_auc_from_scores(
    scores: torch.Tensor, targets: torch.Tensor, method: str = "auto"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class AP and ROC AUC (float64 ``[C]`` each) of validated ``[N, C]`` inputs.

    ``method`` is ``"auto"``, ``"search"`` (sparse labels; needs scores exactly representable in
    float32) or ``"rank"`` (dense labels, any float dtype); both give the same numbers.
    """
    n, c = scores.shape
    device = scores.device
    nan = torch.full((c,), float("nan"), dtype=torch.float64, device=device)
    if n == 0 or c == 0:
        return nan, nan.clone()

    # Positives, as (example, class) pairs; also checks targets are {0, 1}.
    pos_n, pos_c = targets.nonzero(as_tuple=True)
    if targets.dtype != torch.bool and not bool((targets[pos_n, pos_c] == 1).all()):
        raise ValueError("targets must contain only 0 and 1")
    if pos_c.numel() == 0:
        if bool(torch.isnan(scores).any()):
            raise ValueError("scores contain NaN")
        return nan, nan.clone()
    n_pos = torch.bincount(pos_c, minlength=c)  # [C] int64

    if method not in ("auto", "search", "rank"):
        raise ValueError(f"unknown method {method!r}")
    scores32 = None if method == "rank" else _as_exact_float32(scores)
    if method == "auto":
        method = "rank" if scores32 is None or _use_rank_path(n, c, pos_c.numel()) else "search"
    if method == "search":
        if scores32 is None:
            raise ValueError("the search method needs scores that are exact in float32")
        ap_sum, a_minus_b = _ap_auc_search(scores32, pos_n, pos_c, n_pos)
    else:
        ap_sum, a_minus_b = _ap_auc_rank(scores, targets, n_pos)

    p = n_pos.to(torch.float64)
    pairs = p * (n - p)
    ap = torch.where(n_pos > 0, ap_sum / p.clamp(min=1), nan)
    # AUC = (A + T/2) / pairs = (pairs + A - B) / (2 pairs), A/B/T: pairs pos>neg, pos<neg, tied.
    auc = torch.where((n_pos > 0) & (n_pos < n), 0.5 + 0.5 * a_minus_b / pairs.clamp(min=1), nan)
    return ap, auc


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def average_precision(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-class average precision, identical to ``sklearn.metrics.average_precision_score``.

    Args:
        scores: float ``[N, C]`` (or ``[N]``) scores; higher means more likely positive.
        targets: ``[N, C]`` (or ``[N]``) labels in {0, 1}, bool or numeric.

    Returns:
        float64 ``[C]`` (0-d for 1-D input) on the input's device; NaN for classes without
        positives.  Tied scores form a single threshold, as in scikit-learn.
    """
    scores, targets, was_1d = _check_scores_targets(scores, targets)
    ap, _ = _ap_auc_from_scores(scores, targets)
    return ap[0] if was_1d else ap


def roc_auc(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-class ROC AUC, identical to ``sklearn.metrics.roc_auc_score`` (midranks for ties).

    Args:
        scores: float ``[N, C]`` (or ``[N]``) scores.
        targets: ``[N, C]`` (or ``[N]``) labels in {0, 1}, bool or numeric.

    Returns:
        float64 ``[C]`` (0-d for 1-D input); NaN where a class has no positives or no negatives.
    """
    scores, targets, was_1d = _check_scores_targets(scores, targets)
    _, auc = _ap_auc_from_scores(scores, targets)
    return auc[0] if was_1d else auc


def d_prime(auc: torch.Tensor | float) -> torch.Tensor | float:
    """Sensitivity index ``sqrt(2) * Phi^-1(auc)``; a float in gives a float out, NaN stays NaN."""
    if isinstance(auc, torch.Tensor):
        x = auc if auc.dtype == torch.float64 else auc.to(torch.float64)
        return _SQRT2 * torch.special.ndtri(x)
    return _SQRT2 * float(torch.special.ndtri(torch.tensor(float(auc), dtype=torch.float64)))


def tagging_metrics(scores: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
    """Summary multi-label metrics from one sort of the score matrix.

    Returns:
        ``{"mAP": ..., "mAUC": ..., "dprime": ...}``: mAP is the mean AP over classes with at
        least one positive; mAUC the mean AUC over classes with both positives and negatives;
        dprime is :func:`d_prime` of mAUC.  A mean over no classes is NaN.
    """
    scores, targets, _ = _check_scores_targets(scores, targets)
    ap, auc = _ap_auc_from_scores(scores, targets)
    m_ap = float(torch.nanmean(ap)) if bool((~torch.isnan(ap)).any()) else float("nan")
    m_auc = float(torch.nanmean(auc)) if bool((~torch.isnan(auc)).any()) else float("nan")
    return {"mAP": m_ap, "mAUC": m_auc, "dprime": float(d_prime(m_auc))}


def f1_at_best_threshold(scores: torch.Tensor, targets: torch.Tensor) -> tuple[float, float]:
    """Best F1 of the binary rule ``score >= threshold`` over all distinct score thresholds.

    Args:
        scores: float ``[N]``.
        targets: ``[N]`` labels in {0, 1}.

    Returns:
        ``(best_f1, threshold)``; the threshold is one of the scores, and among equally good
        thresholds the highest is returned.  With no positives every F1 is 0 and the threshold
        is the highest score.
    """
    if scores.dim() != 1 or scores.shape != targets.shape:
        raise ValueError(f"expected two [N] tensors, got {tuple(scores.shape)} and {tuple(targets.shape)}")
    if scores.numel() == 0:
        raise ValueError("f1_at_best_threshold needs at least one example")
    scores = _as_float_scores(scores)
    if bool(torch.isnan(scores).any()):
        raise ValueError("scores contain NaN")
    s_sorted, idx = torch.sort(scores, descending=True)
    t_sorted = targets[idx].to(torch.float64)
    tp = torch.cumsum(t_sorted, 0)
    n = scores.numel()
    # Only the last position of each run of tied scores is a real threshold.
    last = torch.ones(n, dtype=torch.bool, device=scores.device)
    last[:-1] = s_sorted[1:] != s_sorted[:-1]
    predicted = torch.arange(1, n + 1, dtype=torch.float64, device=scores.device)
    f1 = 2.0 * tp / (predicted + tp[-1])  # 2 TP / (TP + FP + TP + FN)
    f1 = torch.where(last, f1, torch.full_like(f1, -1.0))
    best = int(torch.argmax(f1))  # first maximum: the highest threshold among the best
    return float(f1[best]), float(s_sorted[best])


def _check_multiclass(scores: torch.Tensor, labels: torch.Tensor) -> None:
    """Validate ``scores [N, C]`` against integer ``labels [N]``."""
    if scores.dim() != 2 or labels.dim() != 1 or scores.shape[0] != labels.shape[0]:
        raise ValueError(f"expected scores [N, C] and labels [N], got {tuple(scores.shape)} and {tuple(labels.shape)}")
    if labels.is_floating_point() or labels.dtype == torch.bool:
        raise ValueError(f"labels must be integer class indices, got {labels.dtype}")
    if scores.shape[0] == 0:
        raise ValueError("need at least one example")
    if bool(((labels < 0) | (labels >= scores.shape[1])).any()):
        raise ValueError(f"labels must lie in [0, {scores.shape[1]})")


def accuracy(logits_or_probs: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy of ``argmax`` over classes (ties go to the lowest class index)."""
    _check_multiclass(logits_or_probs, labels)
    pred = torch.argmax(logits_or_probs, dim=1)
    return float((pred == labels).to(torch.float64).mean())


def map_at_k(scores: torch.Tensor, labels: torch.Tensor, k: int = 3) -> float:
    """Mean average precision at ``k`` for single-label clips (the FSDKaggle2018 MAP@3).

    Each clip scores ``1 / rank`` of its true label when that rank is ``<= k`` and 0 otherwise;
    the result is the mean over clips.  The rank is the label's position in a stable descending
    sort of the clip's scores: tied classes rank by class index, consistent with :func:`accuracy`.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    _check_multiclass(scores, labels)
    true = scores.gather(1, labels.unsqueeze(1))  # [N, 1]
    class_idx = torch.arange(scores.shape[1], device=scores.device).unsqueeze(0)
    ahead = (scores > true) | ((scores == true) & (class_idx < labels.unsqueeze(1)))
    rank = ahead.sum(dim=1) + 1
    gain = (rank <= k).to(torch.float64) / rank.to(torch.float64)
    return float(gain.mean())


# --------------------------------------------------------------------------------------------
# Validation metrics per task
# --------------------------------------------------------------------------------------------

_EPS = 1e-7


def single_label_metrics(scores: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """accuracy, MAP@3, and one-vs-rest mAP / mAUC / d-prime of scores ``[N, C]`` for one-hot
    (or multi-hot: the first label counts for accuracy and MAP@3) labels ``y [N, C]``."""
    scores = torch.as_tensor(scores)
    y = torch.as_tensor(y).bool()
    labels = y.to(torch.int8).argmax(dim=1)
    out = tagging_metrics(scores, y)
    out["accuracy"] = accuracy(scores, labels)
    out["map3"] = map_at_k(scores, labels, 3)
    return out


def to_probabilities(logits: torch.Tensor, single_label: bool) -> torch.Tensor:
    """Class probabilities (float32) of logits ``[N, C]``: the softmax over the classes for a
    single-label model (one class per clip: a distribution), else each class's sigmoid.

    The one place the rule is written: validation (:func:`task_metrics`), finals, ``tagtune
    predict`` and the registered models all score through it (see
    :mod:`tagtune.trainables.inference`)."""
    return logits.float().softmax(dim=1) if single_label else logits.float().sigmoid()


def task_metrics(logits: torch.Tensor, y: torch.Tensor, task: str) -> dict[str, float]:
    """Validation metrics from whole-clip logits ``[N, C]`` and bool labels ``y [N, C]``.

    ``singlelabel``: softmax scores, :func:`single_label_metrics` and the cross-entropy ``loss``.
    ``multilabel`` / ``binary``: sigmoid scores, :func:`tagging_metrics` (with ``f1``, the F1 at
    the best threshold, for ``binary``) and ``loss``, the binary cross-entropy of the scores
    (clamped to [1e-7, 1 - 1e-7], in float64).
    """
    if task == "singlelabel":
        out = single_label_metrics(to_probabilities(logits, single_label=True), y)
        out["loss"] = float(torch.nn.functional.cross_entropy(logits.float(), y.to(torch.int8).argmax(dim=1)))
        return out
    scores = to_probabilities(logits, single_label=False)
    out = tagging_metrics(scores, y)
    if task == "binary":
        out["f1"] = f1_at_best_threshold(scores[:, 0], y[:, 0])[0]
    p = scores.double().clamp(_EPS, 1 - _EPS)
    t = y.double()
    out["loss"] = float(-(t * p.log() + (1 - t) * (1 - p).log()).mean())
    return out
