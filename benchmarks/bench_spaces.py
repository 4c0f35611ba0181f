"""Share of sampled configs that never leave chance, per packaged search space.

    python benchmarks/bench_spaces.py [--data synth|bal_train] [--configs 6] [--epochs 6]
        [--families fc1,fc2,lstm,gcnn,attention] [--spaces DIR] [--subsample 3000]

Each family's space is sampled ``--configs`` times with Optuna's RandomSampler (what a search's
start-up trials draw), every config trains for ``--epochs`` on the data (``synth``: the demo's
generated set, 6000 clips x 64 classes; ``bal_train``: a seeded subsample of AudioSet's), and a
config "never left chance" when its best validation score stays below
:data:`tagtune.tracking.CHANCE_MARGIN` above chance (:func:`tagtune.tracking.at_chance`).
The table gives, per family, the share at chance and the optimizers of those configs.
"""

from __future__ import annotations

import argparse
import collections
import time
from pathlib import Path

import numpy as np
import optuna
import torch
from _common import BAL_TRAIN, machine, print_table

from tagtune.search_spaces import load_space
from tagtune.tracking import at_chance
from tagtune.trainables.data import load_dataset, split_indices, synthesize
from tagtune.trainables.loop import TrialData, fit


def _data(kind: str, subsample: int, seed: int) -> TrialData:
    if kind == "synth":
        folder = Path("/tmp/tagtune-bench-synth")
        if not (folder / "class_labels_indices.csv").exists():
            synthesize(folder, n_clips=6000, n_classes=64, seed=0, fmt="tfrecord")
        ds = load_dataset(folder)
    else:
        ds = load_dataset(BAL_TRAIN)
    x, y = ds.x, ds.y
    if subsample and subsample < len(y):
        keep = np.sort(np.random.default_rng(seed).choice(len(y), subsample, replace=False))
        x, y = x[keep], y[keep]
    tr, va = split_indices(len(y), 0.2, seed)
    return TrialData(x, y, tr, va, ds.class_names)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=("synth", "bal_train"), default="synth")
    parser.add_argument("--families", default="fc1,fc2,lstm,gcnn,attention")
    parser.add_argument("--configs", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--subsample", type=int, default=0, help="clips kept (0: all)")
    parser.add_argument("--spaces", default=None, help="folder of space YAML (default: the packaged ones)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--as-packaged", action="store_true", help="skip SearchSpace.for_data (the batch-size cap a search applies)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    data = _data(args.data, args.subsample, args.seed)
    rows = []
    t0 = time.perf_counter()
    for family in args.families.split(","):
        space = load_space(family, args.spaces)
        if not args.as_packaged:
            space = space.for_data(len(data.train_idx))
        study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=args.seed))
        scores, stuck = [], collections.Counter()
        for _ in range(args.configs):
            trial = study.ask()
            config = {"family": family, **space.sample(trial), **trial.params}
            try:
                best = fit(config, data, max_epochs=args.epochs).best["val_mAUC"]
            except FloatingPointError:
                best = float("nan")
            study.tell(trial, best if np.isfinite(best) else 0.5)
            scores.append(best)
            if at_chance(best):
                stuck[str(config.get("optimizer"))] += 1
            short = {k: (f"{v:.3g}" if isinstance(v, float) else v) for k, v in trial.params.items()}
            print(f"{family} {best:.3f} {short}", flush=True)
        n_chance = sum(stuck.values())
        rows.append(
            [
                family,
                args.configs,
                n_chance,
                f"{n_chance / args.configs:.0%}",
                float(np.nanmedian(scores)),
                float(np.nanmax(scores)),
                ", ".join(f"{k} {v}" for k, v in stuck.most_common()) or "-",
            ]
        )
    n_train = len(data.train_idx)
    print(
        f"\n# {args.data} ({n_train} training clips), {args.configs} random configs per family, "
        f"{args.epochs} epochs, spaces {args.spaces or 'packaged'}; {time.perf_counter() - t0:.0f} s\n# {machine()}\n"
    )
    print_table(["family", "configs", "at chance", "share", "median mAUC", "max mAUC", "at chance by optimizer"], rows)


if __name__ == "__main__":
    main()
