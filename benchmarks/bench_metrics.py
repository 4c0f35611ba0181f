"""Benchmark :func:`tagtune.trainables.metrics.tagging_metrics` against scikit-learn's per-class loop.

Builds a random AudioSet-eval-sized problem (20,371 clips x 527 classes, ~0.5 % positives), times
``tagging_metrics`` (median of 5 runs, after one warm-up) and the scikit-learn loop of
``average_precision_score`` + ``roc_auc_score`` over classes (one run), checks that the per-class
values agree to 1e-6, and prints a small table.  Exit status 1 if they disagree.

    .venv/bin/python benchmarks/bench_metrics.py [--n 20371] [--c 527] [--density 0.005] [--threads 1]

Both wall-clock and process CPU seconds are printed: on a shared, busy machine the wall-clock
figures of torch's multi-threaded ops suffer more than single-threaded scikit-learn, and
``--threads 1`` (what Ray workers get by default) gives the steadier comparison.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import average_precision_score, roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tagtune.trainables.metrics import average_precision, roc_auc, tagging_metrics  # noqa: E402


def make_problem(n: int, c: int, density: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Float32 sigmoid scores mildly correlated with sparse bool targets, with per-class prevalence."""
    rng = np.random.default_rng(seed)
    prevalence = rng.lognormal(mean=0.0, sigma=1.0, size=c)
    prevalence *= density / prevalence.mean()
    targets = rng.random((n, c)) < np.clip(prevalence, 0.0, 0.5)
    logits = rng.normal(size=(n, c)) + 1.5 * targets - 3.0
    scores = (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)
    return torch.from_numpy(scores), torch.from_numpy(targets)


def sklearn_per_class(scores: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-class AP and AUC with scikit-learn; NaN where a class lacks positives (or negatives)."""
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


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20371)
    parser.add_argument("--c", type=int, default=527)
    parser.add_argument("--density", type=float, default=0.005)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    args = parser.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    scores, targets = make_problem(args.n, args.c, args.density, args.seed)
    print(
        f"problem: {args.n} x {args.c}, {int(targets.sum())} positives ({float(targets.float().mean()):.3%}), "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    )

    tagging_metrics(scores, targets)  # warm-up
    walls, cpus = [], []
    for _ in range(args.repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        ours = tagging_metrics(scores, targets)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    ours_wall, ours_cpu = statistics.median(walls), statistics.median(cpus)

    wall, cpu = time.perf_counter(), time.process_time()
    ref_ap, ref_auc = sklearn_per_class(scores.numpy(), targets.numpy())
    ref_wall, ref_cpu = time.perf_counter() - wall, time.process_time() - cpu

    ap = average_precision(scores, targets).numpy()
    auc = roc_auc(scores, targets).numpy()
    same_nan = bool(np.array_equal(np.isnan(ap), np.isnan(ref_ap)) and np.array_equal(np.isnan(auc), np.isnan(ref_auc)))
    err_ap = float(np.nanmax(np.abs(ap - ref_ap)))
    err_auc = float(np.nanmax(np.abs(auc - ref_auc)))
    err_map = abs(ours["mAP"] - float(np.nanmean(ref_ap)))
    err_mauc = abs(ours["mAUC"] - float(np.nanmean(ref_auc)))
    agree = same_nan and max(err_ap, err_auc, err_map, err_mauc) <= 1e-6

    print(f"{'':28s}{'wall s':>9s}{'CPU s':>9s}")
    print(f"{'tagging_metrics (median ' + str(args.repeats) + ')':28s}{ours_wall:9.4f}{ours_cpu:9.4f}")
    print(f"{'sklearn per-class (1 run)':28s}{ref_wall:9.4f}{ref_cpu:9.4f}")
    print(f"{'speed-up':28s}{ref_wall / ours_wall:8.1f}x{ref_cpu / ours_cpu:8.1f}x   (target >= 20x)")
    print(f"our wall-clock runs: min {min(walls):.4f} s, max {max(walls):.4f} s")
    print(f"1-min load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    print(f"mAP {ours['mAP']:.6f}  mAUC {ours['mAUC']:.6f}  d' {ours['dprime']:.4f}")
    print(f"max |diff| per-class AP {err_ap:.1e}, AUC {err_auc:.1e}; NaN pattern equal: {same_nan}")
    print("agree to 1e-6:", "yes" if agree else "NO")
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
