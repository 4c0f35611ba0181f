"""Trials per hour with 1, 4 and 8 trials sharing one GPU (fractional GPUs), on bal_train.

    python benchmarks/bench_gpu_packing.py [--trials 8] [--epochs 5] [--family fc2]

Needs a CUDA GPU; it says so and exits 2 without one.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time

import torch
from _common import BAL_TRAIN, machine, print_table

from tagtune.search import CheckedSearchSpec, run_search


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--family", default="fc2")
    parser.add_argument("--packing", default="1,4,8", help="trials per GPU to compare")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("bench_gpu_packing: no CUDA GPU here; run it on a machine with one", file=sys.stderr)
        return 2
    rows = []
    for per_gpu in (int(k) for k in args.packing.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            spec = CheckedSearchSpec(
                train=str(BAL_TRAIN),
                families=[args.family],
                trials_per_family=args.trials,
                max_epochs=args.epochs,
                experiment=f"pack{per_gpu}",
                tracking_uri=f"sqlite:///{tmp}/m.db",
                storage_path=f"{tmp}/ray",
                gpus_per_trial=1.0 / per_gpu,
                cpus_per_trial=1.0,
                max_concurrent=per_gpu,
            )
            t = time.perf_counter()
            run_search(spec, echo=lambda line: None)
            wall = time.perf_counter() - t
        rows.append([per_gpu, args.trials, wall, args.trials * 3600 / wall])
    print(f"# {args.family}, {args.epochs} epochs per trial, bal_train\n# {machine()}\n")
    print_table(["trials per GPU", "trials", "wall s", "trials/hour"], rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
