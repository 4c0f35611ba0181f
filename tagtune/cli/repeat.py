"""``tagtune repeat``: each family's best configs of a search trained again with other seeds."""

from __future__ import annotations

import argparse

from tagtune.cli._common import add_run_id_flag, add_store_flags

HELP = "train a search's best configs again with other seeds (the report shows their spread)"
DESCRIPTION = (
    "A search trains each config once, with one seed. This trains each family's --top-k trials "
    "that ran every epoch --seeds more times (seeds: the trial's +1000, +2000, ...) on the search's "
    "own training / validation split for its --max-epochs, logs each as a `repeat` run under the "
    "search run, and `tagtune report` then shows each config's spread over seeds (mean, std, min, "
    "max of the best validation mAUC). Run again, it trains only the seeds not yet logged."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_store_flags(p)
    add_run_id_flag(p)
    p.add_argument("--top-k", type=int, default=1, help="trials per family to repeat (default: %(default)s)")
    p.add_argument("--seeds", type=int, default=2, help="other seeds per trial (default: %(default)s)")


def run(args: argparse.Namespace) -> None:
    from tagtune.repeat import repeat_best

    repeat_best(args.experiment, args.tracking_uri, run_id=args.run_id, top_k=args.top_k, seeds=args.seeds)
    print(f"the spread: tagtune report --experiment {args.experiment}")
