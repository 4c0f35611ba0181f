"""The ``tagtune`` command line (import name ``tagtune.cli``; entry point :func:`main`).

One module per command, each with its ``HELP`` and ``DESCRIPTION``, ``add_arguments(parser)``
(the flags, defaults read from the command's spec dataclass) and ``run(args)`` (the work, its
imports inside, so ``tagtune --help`` stays fast); :data:`COMMANDS` is the dispatch table.  A new
command is one module and one line there.

Exit codes: 0 done, 2 bad input or usage, 1 internal error.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from types import ModuleType

from tagtune.cli import (
    data,
    demo,
    export,
    families,
    finalize,
    predict,
    repeat,
    report,
    resume,
    search,
    server,
    train,
    ui,
)
from tagtune.cli._common import CommandParser, read_options_from_args
from tagtune.cli.search import search_spec_from_args
from tagtune.errors import InputError

__all__ = ["COMMANDS", "build_parser", "main", "read_options_from_args", "run", "search_spec_from_args"]

#: command name -> its module, in the order ``tagtune --help`` lists them
COMMANDS: dict[str, ModuleType] = {
    "search": search,
    "resume": resume,
    "ui": ui,
    "server": server,
    "report": report,
    "repeat": repeat,
    "finalize": finalize,
    "predict": predict,
    "export": export,
    "train": train,
    "demo": demo,
    "families": families,
    "data": data,
}

EPILOG = """\
examples:
  tagtune demo                                  # the whole path on generated data, < 5 min on 2 CPUs
  tagtune data synth ./synth                    # a generated AudioSet-like set (TFRecords)
  tagtune data inspect ../shared/data/audioset/bal_train
  tagtune families                              # every family, its hyperparameters and ranges
  tagtune search --train ../shared/data/audioset/bal_train --families fc1,fc2,lstm,gcnn \\
                 --trials-per-family 2 --max-epochs 2 --experiment smoke
  tagtune report --experiment smoke             # per-family max/min/mean mAUC, from MLflow
  tagtune export --experiment smoke --out best/ # best config per family as YAML
  tagtune finalize --experiment smoke --train ../shared/data/audioset/bal_train \\
                   --eval ../shared/data/audioset/eval   # retrain on 100%, score on eval, register
  tagtune report --experiment smoke --html report.html  # tables + plotly dashboard (offline HTML)
  tagtune predict --model models:/smoke-fc1/1 --input ../shared/data/audioset/eval --top-k 3
  tagtune train --config best/fc2.yaml --train ../shared/data/audioset/bal_train
  mlflow ui --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1   # browse the trials
"""


def build_parser() -> argparse.ArgumentParser:
    """The whole command line; each command's flags are added when that command is parsed."""
    parser = argparse.ArgumentParser(
        prog="tagtune",
        description="Hyperparameter search for audio tagging: Ray Tune runs Optuna-guided trials "
        "over model families, MLflow records every trial, and the report gives "
        "max/min/mean mAUC per family.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=CommandParser)
    for name, command in COMMANDS.items():
        p = sub.add_parser(name, help=command.HELP, description=command.DESCRIPTION)
        p.fill_later(command.add_arguments)
    return parser


def run(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run its command; its exit code (0 unless the command says otherwise)."""
    args = build_parser().parse_args(argv)
    return COMMANDS[args.command].run(args) or 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: bad input -> one line on stderr and exit code 2, no traceback."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # tagtune prints its own progress lines
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        return run(argv)
    except InputError as exc:
        print(f"tagtune: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        from tagtune.tracking import access_error, locked_message

        message = access_error(exc, list(argv) if argv is not None else sys.argv[1:]) or locked_message(exc)
        if message is None:
            raise
        print(f"tagtune: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tagtune: interrupted", file=sys.stderr)
        return 130
