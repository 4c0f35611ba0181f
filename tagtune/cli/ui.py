"""``tagtune ui``: the MLflow UI on a store (``mlflow ui``, replacing this process)."""

from __future__ import annotations

import argparse
import os
import sys

HELP = "start the MLflow UI on a store, bound to 127.0.0.1 by default"
DESCRIPTION = None


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tracking-uri", default=None, help="MLflow store (default: sqlite:///mlflow.db here)")
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default: %(default)s; 0.0.0.0 exposes every run to the network)",
    )
    p.add_argument("--port", type=int, default=5000, help="port (default: %(default)s)")


def run(args: argparse.Namespace) -> None:
    from tagtune.tracking import check_tracking_uri

    uri = check_tracking_uri(args.tracking_uri)  # a new SQLite store is created before the UI opens it
    cmd = ["mlflow", "ui", "--backend-store-uri", uri, "--host", args.host, "--port", str(args.port)]
    print(" ".join(cmd), file=sys.stderr)
    os.execvp(cmd[0], cmd)
