"""Seconds per epoch and clips per second of every family (default config) on bal_train's 80% split.

    python benchmarks/bench_epochs.py [--families fc1,fc2,lstm,gcnn] [--epochs 2] [--device cpu|cuda]

The first epoch includes warm-up; the table reports the median of the epochs after it (or the
only one).  Validation (and its vectorized metrics) is included in each epoch's time.
"""

from __future__ import annotations

import argparse
import statistics

import torch
from _common import BAL_TRAIN, machine, print_table

from tagtune.trainables.data import load_dataset, split_indices
from tagtune.trainables.loop import TrialData, fit
from tagtune.trainables.models import list_families


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", default=",".join(list_families("embeddings")))
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--device", default=None)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    ds = load_dataset(BAL_TRAIN)
    tr, va = split_indices(ds.n_clips, 0.2, 0)
    data = TrialData(ds.x, ds.y, tr, va, ds.class_names)
    rows = []
    for family in args.families.split(","):
        result = fit({"family": family}, data, max_epochs=args.epochs, device=args.device)
        secs = [h["epoch_seconds"] for h in result.history]
        steady = statistics.median(secs[1:] or secs)
        rows.append([family, steady, len(tr) / steady, result.best["val_mAUC"], len(secs)])
        print(f"{family}: {steady:.2f} s/epoch", flush=True)
    print(f"\n# seconds per epoch, bal_train 80% split ({len(tr)} clips), default configs\n# {machine()}\n")
    print_table(["family", "s/epoch", "clips/s", "val mAUC", "epochs"], rows)


if __name__ == "__main__":
    main()
