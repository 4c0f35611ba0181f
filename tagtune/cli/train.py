"""``tagtune train``: retrain one config (e.g. an exported YAML) and log it as a run."""

from __future__ import annotations

import argparse

from tagtune.cli._common import add_read_flags, read_options_from_args
from tagtune.names import Metrics

HELP = "retrain one config (e.g. an exported YAML) and log it as a run"
DESCRIPTION = None
EXPERIMENT = "tagtune-train"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from tagtune.spec import SearchSpec

    p.add_argument("--config", required=True, help="YAML written by `tagtune export` (or family + params)")
    p.add_argument("--train", required=True, help="training data, as for `search`")
    p.add_argument("--max-epochs", type=int, default=SearchSpec.max_epochs, help="epochs (default: %(default)s)")
    p.add_argument("--experiment", default=EXPERIMENT, help="MLflow experiment (default: %(default)s)")
    p.add_argument("--tracking-uri", default=None, help="MLflow tracking URI")
    p.add_argument("--seed", type=int, default=SearchSpec.seed, help="seed of the split and training")
    add_read_flags(p)


def run(args: argparse.Namespace) -> None:
    from tagtune.commands import train

    run_id, best = train(
        args.config,
        args.train,
        max_epochs=args.max_epochs,
        experiment=args.experiment,
        tracking_uri=args.tracking_uri,
        seed=args.seed,
        options=read_options_from_args(args),
    )
    print(
        f"run {run_id}: best val_mAUC {best[Metrics.VAL_MAUC]:.4f}, val_mAP {best[Metrics.VAL_MAP]:.4f} "
        f"at epoch {int(best['epoch'])}"
    )
