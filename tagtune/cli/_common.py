"""What several commands share: the store and read flags, the lazily filled command parser, and
the lines a finished search prints."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tagtune.search import SearchOutcome
    from tagtune.trainables.data import ReadOptions


class CommandParser(argparse.ArgumentParser):
    """A command's parser whose flags are added when the command is parsed (or its ``--help``
    shown), so ``tagtune --help`` and the light commands import none of the spec dataclasses
    (MLflow, torch) that the other commands read their defaults from."""

    _fill: Callable[[argparse.ArgumentParser], None] | None = None

    def fill_later(self, add_arguments: Callable[[argparse.ArgumentParser], None]) -> None:
        """Call ``add_arguments(self)`` before this parser first parses or formats its help."""
        self._fill = add_arguments

    def _filled(self) -> None:
        fill, self._fill = self._fill, None
        if fill is not None:
            fill(self)

    def parse_known_args(self, *args: Any, **kwargs: Any) -> Any:
        self._filled()
        return super().parse_known_args(*args, **kwargs)

    def format_help(self) -> str:
        self._filled()
        return super().format_help()

    def format_usage(self) -> str:
        self._filled()
        return super().format_usage()


def add_store_flags(p: argparse.ArgumentParser, experiment_default: str | None = None) -> None:
    """``--experiment`` (required unless it has a default) and ``--tracking-uri``."""
    p.add_argument(
        "--experiment",
        required=experiment_default is None,
        default=experiment_default,
        help="MLflow experiment name (one per search name)"
        + (" (default: %(default)s)" if experiment_default is not None else ""),
    )
    p.add_argument(
        "--tracking-uri",
        default=None,
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db in the working directory)",
    )


def add_run_id_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run-id", default=None, help="the search's parent run (default: the newest search)")


def add_read_flags(p: argparse.ArgumentParser) -> None:
    """How the training data is read: non-default feature / label / group names and the task."""
    g = p.add_argument_group("reading the data (embeddings)")
    g.add_argument(
        "--feature-key",
        default=None,
        metavar="KEY",
        help="the features' name where it is not the format's default (TFRecord: audio_embedding; npz / HDF5: x)",
    )
    g.add_argument(
        "--label-key",
        default=None,
        metavar="KEY",
        help="the labels' name where it is not the default (TFRecord: labels; npz / HDF5: y; CSV: labels)",
    )
    g.add_argument(
        "--group-key",
        default=None,
        metavar="KEY",
        help="a per-clip group (recording, speaker, source id): the seeded split keeps each group on one side",
    )
    g.add_argument(
        "--task",
        choices=("multiclass", "multilabel"),
        default=None,
        help="multiclass: exactly one label per clip (softmax; a clip with another count is an error); "
        "multilabel: any number (sigmoid); default: what the data shows",
    )


def read_options_from_args(args: argparse.Namespace) -> ReadOptions:
    """The read options of the flags of :func:`add_read_flags`."""
    from tagtune.trainables.data import ReadOptions

    return ReadOptions(
        getattr(args, "feature_key", None),
        getattr(args, "label_key", None),
        getattr(args, "group_key", None),
        getattr(args, "task", None),
    )


def print_search(outcome: SearchOutcome, experiment: str) -> None:
    """The report of a finished (or resumed) search, and how to browse it."""
    from tagtune.commands import report
    from tagtune.tracking import ui_command

    markdown, _ = report(experiment, outcome.tracking_uri, outcome.parent_run_id)
    print(markdown)
    print(
        f"\nsearch run {outcome.parent_run_id} in experiment {experiment!r}, "
        f"{outcome.wall_seconds:.0f} s; browse it with:\n  {ui_command(outcome.tracking_uri)}"
    )
