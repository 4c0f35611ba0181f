"""Samplers at a small budget: best val mAUC after N trials of one family, per --sampler choice.

    python benchmarks/bench_samplers.py [--family fc2] [--trials 8] [--seeds 0,1] [--epochs 3]
        [--data synth|bal_train] [--subsample 3000]

Each (sampler, seed) runs one Optuna study over the family's packaged space (sized for the data
as a search does) built by :func:`tagtune.samplers.make_sampler` with the search's start-up rule,
sequentially, each trial trained ``--epochs`` with no early stopping.  The first trial is the
family's registered defaults for every sampler (as in a search), so the table shows what the
sampled trials add: the best after the budget, the mean of the sampled trials, and how many
beat the defaults or never left chance.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import optuna
import torch
from _common import machine, print_table
from bench_spaces import _data

from tagtune.samplers import SAMPLERS, make_sampler
from tagtune.search_spaces import load_space
from tagtune.tracking import at_chance
from tagtune.trainables.config import resolve_config
from tagtune.trainables.loop import fit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", default="fc2")
    parser.add_argument("--samplers", default=",".join(SAMPLERS))
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--data", choices=("synth", "bal_train"), default="synth")
    parser.add_argument("--subsample", type=int, default=3000)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    data = _data(args.data, args.subsample, 0)
    space = load_space(args.family).for_data(len(data.train_idx))
    rows = []
    t0 = time.perf_counter()
    for name in args.samplers.split(","):
        bests, sampled_means, beat, stuck = [], [], 0, 0
        for seed in (int(s) for s in args.seeds.split(",")):
            sampler = make_sampler(name, seed=seed, trials_per_family=args.trials)
            study = optuna.create_study(direction="maximize", sampler=sampler)
            study.enqueue_trial(space.fixed_params(resolve_config({"family": args.family})))
            scores = []
            for _ in range(args.trials):
                trial = study.ask()
                config = {"family": args.family, "seed": seed, **space.sample(trial), **trial.params}
                try:
                    score = fit(config, data, max_epochs=args.epochs).best["val_mAUC"]
                except FloatingPointError:
                    score = float("nan")
                study.tell(trial, score if np.isfinite(score) else 0.5)
                scores.append(score)
                print(f"{name} seed {seed} trial {trial.number}: {score:.4f}", flush=True)
            bests.append(max(scores))
            sampled_means.append(float(np.nanmean(scores[1:])))
            beat += sum(s > scores[0] for s in scores[1:])
            stuck += sum(at_chance(s) for s in scores[1:])
        n_sampled = (args.trials - 1) * len(bests)
        rows.append(
            [
                name,
                statistics.mean(bests),
                min(bests),
                statistics.mean(sampled_means),
                f"{beat}/{n_sampled}",
                f"{stuck}/{n_sampled}",
            ]
        )
    print(
        f"\n# {args.family} on {args.data} ({len(data.train_idx)} training clips), {args.trials} trials "
        f"(defaults first), {args.epochs} epochs, seeds {args.seeds}; {time.perf_counter() - t0:.0f} s\n# {machine()}\n"
    )
    print_table(
        ["sampler", "best (mean over seeds)", "best (worst seed)", "mean sampled", "beat defaults", "at chance"],
        rows,
    )


if __name__ == "__main__":
    main()
