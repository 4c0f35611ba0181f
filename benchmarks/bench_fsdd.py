"""FSDD quality through the commands: `tagtune search` then `tagtune finalize` on seed 003's system.

    python benchmarks/bench_fsdd.py [--max-epochs 12] [--trials-per-family 1] [--top-k 1]
                                    [--cpus-per-trial 1] [--seed 0] [--out bench-fsdd]

The same functions the CLI calls, in process: ``run_search`` searches ``densenet_audio`` on
FSDD (its first trial runs the family's defaults; the validation split is a seeded 20% of the
2700 ``train`` clips and picks each trial's best epoch), then ``finalize`` retrains each chosen
trial on all 2700 train + validation clips for the epochs its trial peaked at and scores the
official ``test`` split once (300 clips, index 0-4 of every speaker and digit): accuracy, MAP@3,
mAUC, mAP; with two or more finals (``--trials-per-family 2 --top-k 2``) also seed 003's
weighted geometric-mean ensemble, its members and weights chosen on the validation split.
Everything is logged in ``<out>/mlflow.db`` (experiment ``bench-fsdd``); the models are logged
but not registered (``--register`` registers them).  Wall and process CPU time are printed.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

from _common import SHARED, machine, print_table

from tagtune.finalize import FinalizeSpec, finalize
from tagtune.search import CheckedSearchSpec, run_search

FSDD = SHARED / "fsdd"
EXPERIMENT = "bench-fsdd"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--data", default=str(FSDD))
    parser.add_argument("--max-epochs", type=int, default=12)
    parser.add_argument("--trials-per-family", type=int, default=1)
    parser.add_argument("--top-k", type=int, default=1, help="finals: the search's K best trials")
    parser.add_argument("--cpus-per-trial", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--spaces", default=None, help="a search-space folder (default: the shipped spaces)")
    parser.add_argument("--out", default="bench-fsdd", help="folder for the MLflow store and Ray's state")
    parser.add_argument("--register", action="store_true", help="also register the finals in the model registry")
    args = parser.parse_args()

    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{out / 'mlflow.db'}"
    wall, cpu = time.perf_counter(), time.process_time()
    search = run_search(
        CheckedSearchSpec(
            train=args.data,
            families=["densenet_audio"],
            trials_per_family=args.trials_per_family,
            max_epochs=args.max_epochs,
            experiment=EXPERIMENT,
            tracking_uri=uri,
            seed=args.seed,
            cpus_per_trial=args.cpus_per_trial,
            storage_path=str(out / "tagtune-runs"),
            spaces_dir=args.spaces,
        )
    )
    search_s = time.perf_counter() - wall
    outcome = finalize(
        FinalizeSpec(
            experiment=EXPERIMENT,
            train=args.data,
            top_k=args.top_k,
            tracking_uri=uri,
            run_id=search.parent_run_id,
            register=args.register,
            seed=args.seed,
        )
    )
    final_s = time.perf_counter() - wall - search_s
    rows = []
    for _, row in outcome.finals.iterrows():
        rows.append(
            [
                row["name"],
                row["eval_accuracy"],
                row["eval_map3"],
                row["eval_mAUC"],
                row["eval_mAP"],
                "" if math.isnan(row["epochs"]) else int(row["epochs"]),
                "" if math.isnan(row["train_s"]) else row["train_s"],
            ]
        )
    print(
        f"\n# FSDD official test split, densenet_audio, {args.trials_per_family} trial(s) of at most "
        f"{args.max_epochs} epochs, top {args.top_k}, seed {args.seed}; search {search_s:.0f} s, finalize "
        f"{final_s:.0f} s, driver CPU {time.process_time() - cpu:.0f} s\n# {machine()}\n"
        f"# store: {uri}, search run {outcome.parent_run_id}\n"
    )
    print_table(["model", "test_acc", "test_MAP@3", "test_mAUC", "test_mAP", "epochs", "train_s"], rows)


if __name__ == "__main__":
    main()
