"""``tagtune export``: each family's best config of a search as YAML."""

from __future__ import annotations

import argparse

from tagtune.cli._common import add_run_id_flag, add_store_flags

HELP = "write each family's best config as YAML"
DESCRIPTION = None


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_store_flags(p)
    p.add_argument("--out", required=True, help="folder for <family>.yaml files")
    add_run_id_flag(p)


def run(args: argparse.Namespace) -> None:
    from tagtune.commands import export

    for path in export(args.experiment, args.tracking_uri, args.out, args.run_id):
        print(path)
