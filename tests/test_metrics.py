"""Tests for :mod:`tagtune.trainables.metrics` against scikit-learn and hand-worked examples."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, f1_score, roc_auc_score

import tagtune.trainables.metrics as metrics_module
from tagtune.trainables.metrics import (
    _ap_auc_from_scores,
    accuracy,
    average_precision,
    d_prime,
    f1_at_best_threshold,
    map_at_k,
    roc_auc,
    tagging_metrics,
)

METHODS = ["auto", "search", "rank"]


@pytest.fixture(params=["numpy", "torch"])
def sort_backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test with the NumPy code used for CPU tensors, and again with the torch code used on CUDA."""
    if request.param == "torch":
        monkeypatch.setattr(metrics_module, "_use_numpy", lambda device: False)
    return request.param


def _random_problem(
    seed: int, n: int, c: int, density: float, decimals: int | None, dtype: np.dtype = np.float32
) -> tuple[np.ndarray, np.ndarray]:
    """Random scores (optionally rounded, to force ties) and {0, 1} targets with fixed seed."""
    rng = np.random.default_rng(seed)
    targets = rng.random((n, c)) < density
    scores = rng.random((n, c)).astype(dtype)
    # Make scores mildly informative so AP/AUC are not all near chance.
    scores = (scores + 0.3 * targets).astype(dtype)
    if decimals is not None:
        scores = np.round(scores, decimals).astype(dtype)
    return scores, targets


def _sklearn_ap_auc(scores: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-class AP and AUC from scikit-learn; NaN where our definition says undefined."""
    c = scores.shape[1]
    ap = np.full(c, np.nan)
    auc = np.full(c, np.nan)
    for j in range(c):
        y, s = targets[:, j], scores[:, j]
        if y.any():
            ap[j] = average_precision_score(y, s)
            if not y.all():
                auc[j] = roc_auc_score(y, s)
    return ap, auc


def _assert_matches(ours: torch.Tensor, ref: np.ndarray) -> None:
    """Same NaN pattern, and equal to 1e-6 elsewhere."""
    got = ours.cpu().numpy()
    assert got.dtype == np.float64
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    np.testing.assert_allclose(got[~np.isnan(ref)], ref[~np.isnan(ref)], rtol=0, atol=1e-6)


# --------------------------------------------------------------------------------------------
# AP / AUC against scikit-learn
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    ("seed", "n", "c", "density", "decimals"),
    [
        (0, 400, 17, 0.05, None),  # sparse, essentially no ties
        (1, 400, 17, 0.3, None),
        (2, 300, 9, 0.5, 1),  # heavy ties: 11-ish distinct values
        (3, 300, 9, 0.2, 2),
        (4, 50, 6, 0.9, 1),  # mostly positives
        (5, 1000, 4, 0.01, 2),
        (6, 7, 3, 0.5, 0),  # tiny, almost everything tied
    ],
)
def test_ap_auc_match_sklearn(
    seed: int, n: int, c: int, density: float, decimals: int | None, method: str, sort_backend: str
) -> None:
    scores, targets = _random_problem(seed, n, c, density, decimals)
    ref_ap, ref_auc = _sklearn_ap_auc(scores, targets)
    ap, auc = _ap_auc_from_scores(torch.from_numpy(scores), torch.from_numpy(targets), method)
    _assert_matches(ap, ref_ap)
    _assert_matches(auc, ref_auc)


@pytest.mark.parametrize("method", METHODS)
def test_all_equal_columns_and_degenerate_classes(method: str, sort_backend: str) -> None:
    rng = np.random.default_rng(7)
    n = 60
    targets = rng.random((n, 5)) < 0.3
    scores = rng.random((n, 5)).astype(np.float32)
    scores[:, 0] = 0.25  # one constant column: AP = prevalence, AUC = 0.5
    targets[:, 1] = False  # no positives: NaN AP and AUC
    targets[:, 2] = True  # no negatives: AP = 1, AUC NaN
    targets[:5, 3] = True  # make sure column 3 has positives
    scores[:, 4] = np.round(scores[:, 4] * 3) / 3  # four distinct values
    ap, auc = _ap_auc_from_scores(torch.from_numpy(scores), torch.from_numpy(targets), method)
    assert math.isnan(ap[1]) and math.isnan(auc[1])
    assert ap[2] == pytest.approx(1.0) and math.isnan(auc[2])
    assert ap[0] == pytest.approx(targets[:, 0].mean()) and auc[0] == pytest.approx(0.5)
    ref_ap, ref_auc = _sklearn_ap_auc(scores, targets)
    _assert_matches(ap, ref_ap)
    _assert_matches(auc, ref_auc)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("decimals", [None, 1])
def test_negative_logits_and_signed_zero(method: str, decimals: int | None, sort_backend: str) -> None:
    rng = np.random.default_rng(12)
    targets = rng.random((400, 8)) < 0.1
    scores = (rng.normal(size=(400, 8)) + targets).astype(np.float32)
    if decimals is not None:
        scores = np.round(scores, decimals).astype(np.float32)
    scores[:40, 0] = -0.0  # -0.0 and 0.0 must tie
    scores[40:80, 0] = 0.0
    targets[:3, 0] = targets[40:43, 0] = True
    ref_ap, ref_auc = _sklearn_ap_auc(scores, targets)
    ap, auc = _ap_auc_from_scores(torch.from_numpy(scores), torch.from_numpy(targets), method)
    _assert_matches(ap, ref_ap)
    _assert_matches(auc, ref_auc)


def test_search_method_needs_float32_exact_scores() -> None:
    scores, targets = _random_problem(13, 100, 3, 0.2, None, np.float32)
    exact64 = torch.from_numpy(scores.astype(np.float64))  # float64 holding float32 values
    ref_ap, ref_auc = _sklearn_ap_auc(scores, targets)
    ap, auc = _ap_auc_from_scores(exact64, torch.from_numpy(targets), "search")
    _assert_matches(ap, ref_ap)
    _assert_matches(auc, ref_auc)
    with pytest.raises(ValueError, match="float32"):
        _ap_auc_from_scores(exact64 + 1e-12, torch.from_numpy(targets), "search")


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_other_score_dtypes(dtype: torch.dtype) -> None:
    scores, targets = _random_problem(8, 200, 5, 0.2, None, np.float64)
    s = torch.from_numpy(scores).to(dtype)
    ref_ap, ref_auc = _sklearn_ap_auc(s.to(torch.float64).numpy(), targets)
    _assert_matches(average_precision(s, torch.from_numpy(targets)), ref_ap)
    _assert_matches(roc_auc(s, torch.from_numpy(targets)), ref_auc)


def test_float64_scores_are_not_rounded_to_float32() -> None:
    # 1 + 1e-12 and 1 are distinct in float64 but tie in float32.
    scores = torch.tensor([1.0, 1.0 + 1e-12], dtype=torch.float64)
    targets = torch.tensor([0, 1])
    assert float(roc_auc(scores, targets)) == 1.0
    assert float(average_precision(scores, targets)) == 1.0


@pytest.mark.parametrize("target_dtype", [torch.bool, torch.float32, torch.int64, torch.uint8])
def test_target_dtypes(target_dtype: torch.dtype) -> None:
    scores, targets = _random_problem(9, 150, 4, 0.3, 1)
    ref_ap, ref_auc = _sklearn_ap_auc(scores, targets)
    t = torch.from_numpy(targets).to(target_dtype)
    _assert_matches(average_precision(torch.from_numpy(scores), t), ref_ap)
    _assert_matches(roc_auc(torch.from_numpy(scores), t), ref_auc)


def test_infinite_scores(sort_backend: str) -> None:
    scores = np.array([[np.inf], [np.inf], [1.0], [-np.inf], [0.0], [-np.inf]], dtype=np.float32)
    targets = np.array([[1], [0], [1], [1], [0], [0]], dtype=bool)
    finite = np.clip(scores, -1e30, 1e30)[:, 0]  # same order and ties; sklearn rejects infinity
    for method in METHODS:
        ap, auc = _ap_auc_from_scores(torch.from_numpy(scores), torch.from_numpy(targets), method)
        assert float(ap[0]) == pytest.approx(average_precision_score(targets[:, 0], finite), abs=1e-12)
        assert float(auc[0]) == pytest.approx(roc_auc_score(targets[:, 0], finite), abs=1e-12)


def test_tiny_hand_example() -> None:
    # Ranking (desc): 0.9 pos, 0.8 neg, 0.7 pos, 0.1 neg.
    # AP = (1/1 + 2/3) / 2 = 5/6; AUC: pos 0.9 beats 2 negs, pos 0.7 beats 1 -> 3/4.
    scores = torch.tensor([[0.9], [0.8], [0.7], [0.1]])
    targets = torch.tensor([[1], [0], [1], [0]])
    assert float(average_precision(scores, targets)[0]) == pytest.approx(5 / 6)
    assert float(roc_auc(scores, targets)[0]) == pytest.approx(3 / 4)


def test_tied_hand_example() -> None:
    # Scores 0.5 (pos), 0.5 (neg), 0.2 (pos): one threshold at 0.5 with precision 1/2, recall 1/2,
    # then 0.2 with precision 2/3, recall 1 -> AP = 1/2 * 1/2 + 1/2 * 2/3 = 7/12.
    # AUC: pos 0.5 ties the neg (1/2), pos 0.2 loses (0) -> 1/4.
    scores = torch.tensor([0.5, 0.5, 0.2])
    targets = torch.tensor([True, False, True])
    assert float(average_precision(scores, targets)) == pytest.approx(7 / 12)
    assert float(roc_auc(scores, targets)) == pytest.approx(1 / 4)


def test_one_dimensional_input_gives_scalar() -> None:
    scores = torch.tensor([0.1, 0.4, 0.35, 0.8])
    targets = torch.tensor([0, 0, 1, 1])
    ap = average_precision(scores, targets)
    auc = roc_auc(scores, targets)
    assert ap.shape == () and auc.shape == ()
    assert float(ap) == pytest.approx(average_precision_score(targets.numpy(), scores.numpy()))
    assert float(auc) == pytest.approx(roc_auc_score(targets.numpy(), scores.numpy()))


def test_empty_and_all_negative() -> None:
    assert torch.isnan(average_precision(torch.zeros(0, 3), torch.zeros(0, 3))).all()
    assert torch.isnan(roc_auc(torch.rand(5, 3), torch.zeros(5, 3))).all()
    result = tagging_metrics(torch.rand(5, 3), torch.zeros(5, 3))
    assert all(math.isnan(v) for v in result.values())


def test_input_validation(sort_backend: str) -> None:
    with pytest.raises(ValueError, match="shape"):
        average_precision(torch.rand(4, 2), torch.zeros(4, 3))
    with pytest.raises(ValueError, match="0 and 1"):
        roc_auc(torch.rand(4, 2), torch.full((4, 2), 2.0))
    scores = torch.rand(4, 2)
    scores[0, 0] = float("nan")
    targets = torch.tensor([[1, 0], [0, 1], [1, 1], [0, 0]])
    for method in METHODS:
        with pytest.raises(ValueError, match="NaN"):
            _ap_auc_from_scores(scores, targets, method)
    with pytest.raises(ValueError, match="NaN"):
        average_precision(scores, torch.zeros(4, 2))
    with pytest.raises(ValueError, match="method"):
        _ap_auc_from_scores(torch.rand(4, 2), torch.ones(4, 2), "bogus")


# --------------------------------------------------------------------------------------------
# tagging_metrics and d_prime
# --------------------------------------------------------------------------------------------


def test_tagging_metrics_means_exclude_undefined_classes() -> None:
    scores, targets = _random_problem(10, 500, 12, 0.05, 2)
    targets[:, 3] = False  # no positives: excluded from both means
    targets[:, 5] = True  # no negatives: in mAP, not in mAUC
    ref_ap, ref_auc = _sklearn_ap_auc(scores, targets)
    result = tagging_metrics(torch.from_numpy(scores), torch.from_numpy(targets))
    assert set(result) == {"mAP", "mAUC", "dprime"}
    assert all(isinstance(v, float) for v in result.values())
    assert result["mAP"] == pytest.approx(np.nanmean(ref_ap), abs=1e-6)
    assert result["mAUC"] == pytest.approx(np.nanmean(ref_auc), abs=1e-6)
    assert result["dprime"] == pytest.approx(d_prime(result["mAUC"]))


@pytest.mark.parametrize(
    ("auc", "expected"),
    [(0.5, 0.0), (0.76025, 1.0), (0.23975, -1.0), (0.9213504, 2.0)],
)
def test_d_prime_known_values(auc: float, expected: float) -> None:
    assert d_prime(auc) == pytest.approx(expected, abs=1e-4)
    out = d_prime(torch.tensor([auc]))
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float64
    assert float(out[0]) == pytest.approx(expected, abs=1e-4)


def test_d_prime_nan_and_extremes() -> None:
    assert math.isnan(d_prime(float("nan")))
    assert d_prime(1.0) == math.inf and d_prime(0.0) == -math.inf


# --------------------------------------------------------------------------------------------
# F1 at the best threshold
# --------------------------------------------------------------------------------------------


def _brute_force_f1(scores: np.ndarray, targets: np.ndarray) -> tuple[float, float]:
    """Best F1 over every distinct score as threshold; the highest threshold wins ties."""
    best, best_thr = -1.0, math.nan
    for thr in sorted(set(scores.tolist()), reverse=True):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            f1 = f1_score(targets, scores >= thr, zero_division=0.0)
        if f1 > best + 1e-12:
            best, best_thr = f1, thr
    return best, best_thr


@pytest.mark.parametrize(
    ("seed", "n", "density", "decimals"),
    [(0, 50, 0.3, None), (1, 200, 0.1, 1), (2, 100, 0.6, 2), (3, 20, 0.5, 0), (4, 30, 0.0, 1)],
)
def test_f1_matches_brute_force(seed: int, n: int, density: float, decimals: int | None) -> None:
    rng = np.random.default_rng(seed)
    targets = (rng.random(n) < density).astype(np.int64)
    scores = rng.random(n) + 0.4 * targets
    if decimals is not None:
        scores = np.round(scores, decimals)
    f1, thr = f1_at_best_threshold(torch.from_numpy(scores), torch.from_numpy(targets))
    ref_f1, ref_thr = _brute_force_f1(scores, targets)
    assert f1 == pytest.approx(ref_f1, abs=1e-12)
    assert thr == ref_thr


def test_f1_hand_example() -> None:
    # Threshold 0.6 predicts the top three (two correct): P = 2/3, R = 1 -> F1 = 0.8.
    scores = torch.tensor([0.9, 0.2, 0.6, 0.7])
    targets = torch.tensor([1, 0, 0, 1])
    assert f1_at_best_threshold(scores, targets) == (pytest.approx(1.0), pytest.approx(0.7))
    targets = torch.tensor([1, 0, 1, 0])
    f1, thr = f1_at_best_threshold(scores, targets)
    assert f1 == pytest.approx(0.8) and thr == pytest.approx(0.6)


# --------------------------------------------------------------------------------------------
# Accuracy and MAP@k
# --------------------------------------------------------------------------------------------


def test_map_at_3_hand_example() -> None:
    scores = torch.tensor(
        [
            [0.9, 0.5, 0.3, 0.1],  # true 0 ranked 1st -> 1
            [0.9, 0.5, 0.3, 0.1],  # true 1 ranked 2nd -> 1/2
            [0.9, 0.5, 0.3, 0.1],  # true 2 ranked 3rd -> 1/3
            [0.9, 0.5, 0.3, 0.1],  # true 3 ranked 4th -> 0
        ]
    )
    labels = torch.tensor([0, 1, 2, 3])
    assert map_at_k(scores, labels) == pytest.approx((1 + 1 / 2 + 1 / 3 + 0) / 4)  # 0.458333...
    assert map_at_k(scores, labels, k=1) == pytest.approx(0.25)
    assert map_at_k(scores, labels, k=4) == pytest.approx((1 + 1 / 2 + 1 / 3 + 1 / 4) / 4)
    assert accuracy(scores, labels) == pytest.approx(0.25)


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_map_at_k_matches_loop(k: int) -> None:
    rng = np.random.default_rng(k)
    scores = np.round(rng.random((300, 7)), 1)  # plenty of ties: broken by class index
    labels = rng.integers(0, 7, 300)
    expected = 0.0
    for row, label in zip(scores, labels, strict=False):
        ranking = np.argsort(-row, kind="stable")
        hits = np.nonzero(ranking[:k] == label)[0]
        expected += 1.0 / (hits[0] + 1) if hits.size else 0.0
    expected /= len(labels)
    assert map_at_k(torch.from_numpy(scores), torch.from_numpy(labels), k) == pytest.approx(expected)
    if k == 1:
        assert accuracy(torch.from_numpy(scores), torch.from_numpy(labels)) == pytest.approx(expected)


def test_accuracy() -> None:
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [1.0, 1.0, 5.0], [0.5, 0.2, 0.1]])
    labels = torch.tensor([0, 2, 2, 1])
    assert accuracy(logits, labels) == pytest.approx(0.5)
    assert accuracy(torch.softmax(logits, 1), labels) == pytest.approx(0.5)


def test_multiclass_validation() -> None:
    with pytest.raises(ValueError):
        accuracy(torch.rand(3, 2), torch.tensor([0, 1]))
    with pytest.raises(ValueError):
        map_at_k(torch.rand(3, 2), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError):
        map_at_k(torch.rand(3, 2), torch.tensor([0, 1, 1]), k=0)
    with pytest.raises(ValueError):
        accuracy(torch.rand(2, 2), torch.tensor([0.0, 1.0]))


# --------------------------------------------------------------------------------------------
# Device
# --------------------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("method", METHODS)
def test_cuda_matches_cpu(method: str) -> None:
    scores, targets = _random_problem(11, 2000, 40, 0.05, 2)
    s, t = torch.from_numpy(scores), torch.from_numpy(targets)
    ap_cpu, auc_cpu = _ap_auc_from_scores(s, t, method)
    ap_gpu, auc_gpu = _ap_auc_from_scores(s.cuda(), t.cuda(), method)
    assert ap_gpu.device.type == "cuda"
    torch.testing.assert_close(ap_gpu.cpu(), ap_cpu, equal_nan=True, rtol=0, atol=1e-9)
    torch.testing.assert_close(auc_gpu.cpu(), auc_cpu, equal_nan=True, rtol=0, atol=1e-9)
    f1_cpu = f1_at_best_threshold(s[:, 0], t[:, 0])
    assert f1_at_best_threshold(s[:, 0].cuda(), t[:, 0].cuda()) == pytest.approx(f1_cpu)
    labels = torch.from_numpy(np.argmax(scores[:, :5] + np.arange(5) * 0.01, axis=1))
    assert map_at_k(s[:, :5].cuda(), labels.cuda()) == pytest.approx(map_at_k(s[:, :5], labels))


# --------------------------------------------------------------------------------------------
# Validation metrics per task (one implementation for the loop, audio and ensembles)
# --------------------------------------------------------------------------------------------


def test_task_metrics_per_task():
    from tagtune.trainables.metrics import single_label_metrics, task_metrics

    rng = np.random.default_rng(0)
    logits = torch.from_numpy(rng.normal(0, 3, (40, 4)).astype(np.float32))
    y = torch.from_numpy(rng.random((40, 4)) < 0.4)
    multi = task_metrics(logits, y, "multilabel")
    scores = logits.sigmoid()
    assert multi == {
        **tagging_metrics(scores, y),
        "loss": pytest.approx(float(torch.nn.functional.binary_cross_entropy(scores.double(), y.double())), rel=1e-9),
    }
    binary = task_metrics(logits[:, :1], y[:, :1], "binary")
    assert binary["f1"] == f1_at_best_threshold(scores[:, 0], y[:, 0])[0]
    one_hot = torch.nn.functional.one_hot(torch.from_numpy(rng.integers(0, 4, 40)), 4).bool()
    single = task_metrics(logits, one_hot, "singlelabel")
    assert single == {
        **single_label_metrics(logits.softmax(dim=1), one_hot),
        "loss": pytest.approx(float(torch.nn.functional.cross_entropy(logits, one_hot.int().argmax(1)))),
    }
    assert single["accuracy"] == accuracy(logits, one_hot.int().argmax(1))
