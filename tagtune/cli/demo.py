"""``tagtune demo``: the embedded default end to end on generated data (:func:`tagtune.demo.demo`)."""

from __future__ import annotations

import argparse

HELP = "the embedded default end to end on generated data (< 5 min on 2 CPUs)"
DESCRIPTION = None


def add_arguments(p: argparse.ArgumentParser) -> None:
    from tagtune.demo import DEMO_MAX_EPOCHS, DEMO_TRIALS_PER_FAMILY

    p.add_argument("--dir", default="tagtune-demo", help="folder for the data and exports (default: %(default)s)")
    p.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: sqlite:///mlflow.db)")
    p.add_argument(
        "--trials-per-family", type=int, default=DEMO_TRIALS_PER_FAMILY, help="trials per family (default: %(default)s)"
    )
    p.add_argument("--max-epochs", type=int, default=DEMO_MAX_EPOCHS, help="epochs per trial (default: %(default)s)")


def run(args: argparse.Namespace) -> None:
    from tagtune.demo import demo

    demo(args.dir, args.tracking_uri, args.trials_per_family, args.max_epochs)
