"""``tagtune report``: a search's per-family tables (and dashboard), rebuilt from MLflow."""

from __future__ import annotations

import argparse
import os

from tagtune.cli._common import add_run_id_flag, add_store_flags

HELP = "per-family table of a search, rebuilt from MLflow"
DESCRIPTION = None


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_store_flags(p)
    add_run_id_flag(p)
    p.add_argument(
        "--html",
        default=None,
        metavar="OUT",
        help="also write the plotly dashboard (one self-contained HTML file) to OUT and log it on the search run",
    )


def run(args: argparse.Namespace) -> None:
    from tagtune.commands import report

    markdown, _ = report(args.experiment, args.tracking_uri, args.run_id, html=args.html)
    print(markdown)
    print_dashboard_line(args.html)


def print_dashboard_line(html: str | None) -> None:
    """Where the dashboard went, when ``--html`` asked for one."""
    if html:
        print(f"\ndashboard: {os.path.abspath(html)} (also logged on the search run)")
