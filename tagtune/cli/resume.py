"""``tagtune resume``: finish an interrupted search (:func:`tagtune.search.resume_search`)."""

from __future__ import annotations

import argparse

from tagtune.cli._common import add_run_id_flag, add_store_flags, print_search

HELP = "finish an interrupted search (driver killed): no lost or duplicate runs"
DESCRIPTION = (
    "Restore Ray's experiment state, continue each family's Optuna study from its storage, "
    "and log into the same MLflow parent run."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_store_flags(p)
    add_run_id_flag(p)
    p.add_argument("--address", default=None, help="Ray cluster to run on (default: local Ray)")


def run(args: argparse.Namespace) -> None:
    from tagtune.search import resume_search

    print_search(resume_search(args.experiment, args.tracking_uri, args.run_id, args.address), args.experiment)
