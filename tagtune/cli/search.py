"""``tagtune search``: flags -> :class:`tagtune.search.CheckedSearchSpec` -> :func:`tagtune.search.run_search`.

Every flag is a field of :class:`tagtune.spec.SearchSpec` of the same name (``--spaces`` is
``spaces_dir``) and takes its default from there."""

from __future__ import annotations

import argparse
import dataclasses
from typing import TYPE_CHECKING

from tagtune.cli._common import add_read_flags, add_store_flags, print_search, read_options_from_args

if TYPE_CHECKING:
    from tagtune.search import CheckedSearchSpec
    from tagtune.spec import SearchSpec
    from tagtune.trainables.data import DataSource

HELP = "run a Ray Tune + Optuna search, logged to MLflow"
DESCRIPTION = (
    "Run an Optuna-guided (GP, TPE or random: --sampler) Ray Tune search with an equal trial budget per "
    "family, each family its own Optuna study. Every trial is logged to MLflow as a child run of one search run."
)
TRAIN_HELP = (
    "training data, its format sniffed; one of seven: a folder of *.tfrecord / *.tfrecords shards (AudioSet's "
    "SequenceExample layout or any Example layout, or one shard); a packed .h5 / .hdf5 file; an .npz file; "
    "an .npy file with a CSV of its labels beside it; a HEAR task folder (task_metadata.json); audio files "
    "(wav, flac, ogg) listed by a CSV, or a folder holding one; or a tagtune cache folder. A seeded "
    "validation split (--val-fraction) is carved from it, or the data's own split where it has one"
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    from tagtune.families import DEFAULT_FAMILIES, FAMILY_SETS
    from tagtune.resources import RULE
    from tagtune.spec import SearchSpec

    sets = ", ".join(f"`{name}` ({','.join(families)})" for name, families in FAMILY_SETS.items())
    p.add_argument("--train", required=True, help=TRAIN_HELP)
    p.add_argument(
        "--families",
        default=DEFAULT_FAMILIES,
        help=f"comma-separated families or sets: {sets}, or `all` (default: %(default)s; see `tagtune families`)",
    )
    p.add_argument(
        "--trials-per-family",
        type=int,
        default=None,
        help=f"trials per family (default: {SearchSpec.trials_per_family}, or no limit with --time-budget); "
        "the first runs the family's tuned defaults, the rest are sampled (--sampler)",
    )
    p.add_argument(
        "--time-budget",
        default=None,
        metavar="DURATION",
        help="stop the search after this much wall time, e.g. 90s, 45m, 2h: no trial starts after it, "
        "running trials stop at their next epoch (recorded, report written); families share it round-robin",
    )
    _add_stopping_flags(p, SearchSpec)
    _add_sampling_flags(p, SearchSpec)
    p.add_argument(
        "--max-epochs", type=int, default=SearchSpec.max_epochs, help="epochs per trial (default: %(default)s)"
    )
    add_store_flags(p, experiment_default=SearchSpec.experiment)
    p.add_argument("--seed", type=int, default=SearchSpec.seed, help="seed of the split, the samplers and training")
    p.add_argument(
        "--val-fraction",
        type=float,
        default=SearchSpec.val_fraction,
        help="validation share of --train (default: %(default)s)",
    )
    _add_cluster_flags(p, SearchSpec, RULE)
    add_read_flags(p)


def _add_sampling_flags(p: argparse.ArgumentParser, spec: type[SearchSpec]) -> None:
    """How each family's Optuna study samples, where it is stored, warm starts, and resuming."""
    from tagtune.samplers import SAMPLER_HELP, SAMPLERS

    p.add_argument(
        "--warm-start",
        default=None,
        metavar="EXPERIMENT",
        help="seed each family's Optuna study with the finished trials of EXPERIMENT's newest search "
        "(same store, same --train, split and seed); values outside today's space are dropped",
    )
    p.add_argument("--sampler", default=spec.sampler, choices=SAMPLERS, help=SAMPLER_HELP)
    p.add_argument(
        "--goal",
        default=spec.goal,
        help="compare: every family an equal share of trials, for a fair comparison of families "
        "(seed 000's Fig. 4); best: aim at the best model: once every family has 2 scored trials, "
        "new trials go to the leading half of the families by best val_mAUC (ranked again at "
        "each trial; the others get more only when the leaders' trials are spent); default: %(default)s",
    )
    p.add_argument(
        "--no-defaults-first",
        dest="defaults_first",
        action="store_false",
        help="sample every trial, the first included (default: the first trial of each "
        "family runs its registered defaults, see `tagtune families`)",
    )
    p.add_argument(
        "--portfolio",
        nargs="?",
        const="packaged",
        default=spec.portfolio,
        metavar="FILE",
        help="run a start portfolio's configs first in each family, instead of its registered "
        "defaults: a few configs that did well across several tasks (benchmarks/"
        "learn_portfolio.py), useful on data unlike AudioSet, whose defaults were tuned on it. "
        "Without FILE: the packaged search_spaces/portfolio.yaml (fc1 and fc2; other families "
        "start from their defaults); a FILE maps family: [{name, params: {...}}, ...]",
    )
    p.add_argument(
        "--optuna-storage",
        default=None,
        metavar="URL",
        help="database of the Optuna studies, e.g. postgresql://USER@HOST:PORT/DB (a team's, see "
        "`tagtune server`; a password belongs in PGPASSWORD or ~/.pgpass, not the URL); default: a "
        "SQLite file beside Ray's state. `tagtune resume` continues from it",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="finish the newest interrupted search of --experiment instead of starting one (same as `tagtune resume`)",
    )


def _add_stopping_flags(p: argparse.ArgumentParser, spec: type[SearchSpec]) -> None:
    """Early stopping: the scheduler and its rule (:class:`tagtune.tune.schedulers.StopRule`)."""
    p.add_argument(
        "--scheduler",
        default=spec.scheduler,
        help="early stopping, each family against its own trials only: asha, hyperband "
        "(asynchronous, several brackets) or none (every trial runs --max-epochs); default: %(default)s",
    )
    p.add_argument(
        "--grace-period",
        type=int,
        default=spec.grace_period,
        help="epochs before a trial can be stopped (default: %(default)s)",
    )
    p.add_argument(
        "--reduction-factor",
        type=float,
        default=spec.reduction_factor,
        help="1 in this many trials goes on at each rung (default: %(default)s)",
    )
    p.add_argument(
        "--no-curve-grace",
        dest="curve_grace",
        action="store_false",
        help="stop every trial below a rung's cutoff (default: a trial whose last epoch's gain, "
        "kept up at half the pace to the next rung, would reach the cutoff goes on: slow starters "
        "such as a small learning rate are not cut at epoch 2)",
    )
    p.add_argument(
        "--patience",
        type=int,
        default=spec.patience,
        help="a convergence stop beside any --scheduler: end a trial whose validation mAUC has not "
        "improved for this many epochs (it completes with its best epoch's score; the epochs go to "
        "other trials); default: %(default)s, never",
    )
    p.add_argument(
        "--milestone-metric",
        default=spec.milestone_metric,
        help="metric compared at the rungs, higher is better (default: %(default)s; e.g. val_mAUC)",
    )


def _add_cluster_flags(p: argparse.ArgumentParser, spec: type[SearchSpec], gpu_rule: str) -> None:
    """Resources per trial, the Ray cluster and where its state is kept, the spaces, retries."""
    p.add_argument(
        "--cpus-per-trial",
        type=float,
        default=spec.cpus_per_trial,
        help="CPUs per trial (default: %(default)g)",
    )
    p.add_argument(
        "--gpus-per-trial",
        type=float,
        default=None,
        metavar="N",
        help=f"GPUs per trial; fractions share a GPU, e.g. 0.25 = 4 trials per GPU ({gpu_rule})",
    )
    p.add_argument("--max-concurrent", type=int, default=None, help="at most this many trials at once")
    p.add_argument("--address", default=None, help="join a running Ray cluster at HOST:PORT (default: local Ray)")
    p.add_argument(
        "--storage-path",
        default=spec.storage_path,
        help="where Ray keeps trial state (default: ./%(default)s)",
    )
    p.add_argument(
        "--spaces",
        dest="spaces_dir",
        metavar="DIR",
        default=None,
        help="folder of search-space YAML files (default: the packaged ones)",
    )
    p.add_argument(
        "--max-failures",
        type=int,
        default=spec.max_failures,
        help="retries of a trial whose worker crashed or was killed (default: %(default)s; a "
        "trial whose loss went NaN is failed at once, not retried)",
    )


def search_spec_from_args(args: argparse.Namespace, source: DataSource | None = None) -> CheckedSearchSpec:
    """The search of ``tagtune search``'s flags: each spec field from the flag of the same
    name (``--spaces`` is ``spaces_dir``), ``--families`` parsed against ``--train`` (``source``:
    ``--train`` already opened)."""
    from tagtune.families import parse_families
    from tagtune.search import CheckedSearchSpec
    from tagtune.tracking import parse_duration

    values = {
        f.name: getattr(args, f.name) for f in dataclasses.fields(CheckedSearchSpec) if f.init and hasattr(args, f.name)
    }
    if values.get("time_budget") is not None:
        values["time_budget"] = parse_duration(values["time_budget"])
    values["families"] = parse_families(args.families, source if source is not None else args.train)
    if values.get("trials_per_family") is None and values.get("time_budget") is None:
        values["trials_per_family"] = CheckedSearchSpec.trials_per_family
    return CheckedSearchSpec(**values)


def run(args: argparse.Namespace) -> None:
    from tagtune.families import try_open
    from tagtune.search import resume_search, run_search

    if args.resume:
        print_search(resume_search(args.experiment, args.tracking_uri, address=args.address), args.experiment)
        return
    # sniffed once: --families and the search's data share it
    source = try_open(args.train, read_options_from_args(args))
    print_search(run_search(search_spec_from_args(args, source), source=source), args.experiment)
