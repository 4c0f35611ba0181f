"""The ``tagtune`` command line.  Exit codes: 0 done, 2 bad input or usage, 1 internal error."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from tagtune.samplers import DEFAULT_SAMPLER, SAMPLER_HELP, SAMPLERS
from tagtune.trainables.errors import InputError

if TYPE_CHECKING:
    from tagtune.search import SearchOutcome, SearchSpec
    from tagtune.trainables.data import DataSource, ReadOptions

__all__ = ["build_parser", "main", "run", "search_spec_from_args"]

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


def _add_store_flags(p: argparse.ArgumentParser, experiment_required: bool = True) -> None:
    p.add_argument(
        "--experiment",
        required=experiment_required,
        default="tagtune",
        help="MLflow experiment name (one per search name)",
    )
    p.add_argument(
        "--tracking-uri",
        default=None,
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db in the working directory)",
    )


def _add_read_flags(p: argparse.ArgumentParser) -> None:
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
    """The read options of the flags of :func:`_add_read_flags`."""
    from tagtune.trainables.data import ReadOptions

    return ReadOptions(
        getattr(args, "feature_key", None),
        getattr(args, "label_key", None),
        getattr(args, "group_key", None),
        getattr(args, "task", None),
    )


def build_parser() -> argparse.ArgumentParser:
    from tagtune.resources import RULE

    parser = argparse.ArgumentParser(
        prog="tagtune",
        description="Hyperparameter search for audio tagging: Ray Tune runs Optuna-guided trials "
        "over model families, MLflow records every trial, and the report gives "
        "max/min/mean mAUC per family.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "search",
        help="run a Ray Tune + Optuna search, logged to MLflow",
        description="Run an Optuna-guided (GP, TPE or random: --sampler) Ray Tune search with an equal trial "
        "budget per family, each family its own Optuna study. Every "
        "trial is logged to MLflow as a child run of one search run.",
    )
    p.add_argument(
        "--train",
        required=True,
        help="training data: a folder of AudioSet *.tfrecord, a packed .h5, or a tagtune "
        "cache; a seeded validation split is carved from it",
    )
    p.add_argument(
        "--families",
        default="default",
        help="comma-separated families or sets: `default` (fc1,fc2,lstm,gcnn,attention), `seed000` "
        "(fc1,fc2,lstm,gcnn: seed 000's Fig. 4), or `all` (default: %(default)s; see `tagtune families`)",
    )
    p.add_argument(
        "--trials-per-family",
        type=int,
        default=None,
        help="trials per family (default: 4, or no limit with --time-budget); the first runs "
        "the family's tuned defaults, the rest are sampled by TPE",
    )
    p.add_argument(
        "--time-budget",
        default=None,
        metavar="DURATION",
        help="stop the search after this much wall time, e.g. 90s, 45m, 2h: no trial starts after it, "
        "running trials stop at their next epoch (recorded, report written); families share it round-robin",
    )
    p.add_argument(
        "--scheduler",
        default="asha",
        help="early stopping, each family against its own trials only: asha (default), hyperband "
        "(asynchronous, several brackets) or none (every trial runs --max-epochs)",
    )
    p.add_argument(
        "--grace-period", type=int, default=2, help="epochs before a trial can be stopped (default: %(default)s)"
    )
    p.add_argument(
        "--reduction-factor",
        type=float,
        default=3.0,
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
        "--milestone-metric",
        default="best_val_mAUC",
        help="metric compared at the rungs, higher is better (default: %(default)s; e.g. val_mAUC)",
    )
    p.add_argument(
        "--warm-start",
        default=None,
        metavar="EXPERIMENT",
        help="seed each family's Optuna study with the finished trials of EXPERIMENT's newest search "
        "(same store, same --train, split and seed); values outside today's space are dropped",
    )
    p.add_argument(
        "--sampler",
        default=DEFAULT_SAMPLER,
        choices=SAMPLERS,
        help=SAMPLER_HELP,
    )
    p.add_argument(
        "--no-defaults-first",
        dest="defaults_first",
        action="store_false",
        help="sample every trial, the first included (default: the first trial of each "
        "family runs its registered defaults, see `tagtune families`)",
    )
    p.add_argument("--max-epochs", type=int, default=10, help="epochs per trial (default: %(default)s)")
    _add_store_flags(p, experiment_required=False)
    p.add_argument("--seed", type=int, default=0, help="seed of the split, the samplers and training")
    p.add_argument("--val-fraction", type=float, default=0.2, help="validation share of --train (default: 0.2)")
    p.add_argument("--cpus-per-trial", type=float, default=1.0, help="CPUs per trial (default: 1)")
    p.add_argument(
        "--gpus-per-trial",
        type=float,
        default=None,
        metavar="N",
        help=f"GPUs per trial; fractions share a GPU, e.g. 0.25 = 4 trials per GPU ({RULE})",
    )
    p.add_argument("--max-concurrent", type=int, default=None, help="at most this many trials at once")
    p.add_argument("--address", default=None, help="join a running Ray cluster at HOST:PORT (default: local Ray)")
    p.add_argument(
        "--storage-path", default="tagtune-runs", help="where Ray keeps trial state (default: ./tagtune-runs)"
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
        default=1,
        help="retries of a trial whose worker crashed or was killed (default: 1; a "
        "trial whose loss went NaN is failed at once, not retried)",
    )
    _add_read_flags(p)
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

    p = sub.add_parser(
        "resume",
        help="finish an interrupted search (driver killed): no lost or duplicate runs",
        description="Restore Ray's experiment state, continue each family's Optuna "
        "study from its storage, and log into the same MLflow parent run.",
    )
    _add_store_flags(p)
    p.add_argument("--run-id", default=None, help="the search's parent run (default: the newest search)")
    p.add_argument("--address", default=None, help="Ray cluster to run on (default: local Ray)")

    p = sub.add_parser("ui", help="start the MLflow UI on a store, bound to 127.0.0.1 by default")
    p.add_argument("--tracking-uri", default=None, help="MLflow store (default: sqlite:///mlflow.db here)")
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default: %(default)s; 0.0.0.0 exposes every run to the network)",
    )
    p.add_argument("--port", type=int, default=5000)

    from tagtune.server import add_server_parser

    add_server_parser(sub)

    p = sub.add_parser("report", help="per-family table of a search, rebuilt from MLflow")
    _add_store_flags(p)
    p.add_argument("--run-id", default=None, help="the search's parent run (default: the newest search)")
    p.add_argument(
        "--html",
        default=None,
        metavar="OUT",
        help="also write the plotly dashboard (one self-contained HTML file) to OUT and log it on the search run",
    )

    p = sub.add_parser(
        "finalize",
        help="retrain each family's best config on all of --train, score on --eval, register the models, ensemble them",
        description="Seed 001's finals: each family's best trial (or top K) retrained on 100% "
        "of the training data for the epochs at which the trial peaked, scored on "
        "the eval split (eval_mAUC, eval_mAP, eval_dprime), logged as runs under "
        "this finalize's own run ('finals', nested under the search run beside its trials), "
        "registered as <experiment>-<family> in MLflow's model "
        "registry; plus weighted mean and geometric-mean ensembles whose members "
        "and weights are chosen on the search's validation split (greedy "
        "forward selection among each family's --ensemble-pool best trials). Running it again on the same "
        "search versions its runs: they are tagged tagtune.finalize_version (1, 2, ...) and named "
        "'finals v2', 'final-fc1 v2' and so on, the earlier ones are kept, the registered models get a new "
        "version, and the report shows the newest finalize.",
    )
    _add_store_flags(p)
    p.add_argument("--train", required=True, help="the search's training data (all of it is used)")
    p.add_argument(
        "--eval",
        default=None,
        help="held-out eval data of the same classes (required for embeddings; for audio the "
        "default is the CSV's own test rows, e.g. FSDD's official test split, scored with "
        "eval_accuracy and eval_map3 too)",
    )
    p.add_argument("--top-k", type=int, default=1, help="finals per family: its K best trials (default: 1)")
    p.add_argument(
        "--ensemble-pool",
        type=int,
        default=3,
        help="ensemble candidates: each family's K best trials; those the validation "
        "selection picks are trained as finals too (default: %(default)s)",
    )
    p.add_argument(
        "--max-epochs",
        type=int,
        default=None,
        help="cap on a final's epochs (default: the epoch of its trial's best val_mAUC)",
    )
    p.add_argument("--run-id", default=None, help="the search's parent run (default: the newest search)")
    p.add_argument("--no-register", action="store_true", help="log the models but leave the registry alone")
    p.add_argument("--html", default=None, metavar="OUT", help="also write the dashboard to OUT")

    p = sub.add_parser(
        "predict",
        help="top K labels (names and scores) for each clip of a data set or each audio file",
        description="Top K labels with names and scores per clip (embedding models) or per audio file "
        "(densenet_audio models). Audio files are decoded at their own rate and resampled (soxr) to the "
        "model's; a file longer than the model's crop_samples is cut into windows of crop_samples "
        "(hop: half of it, the last window ending at the file's end) and the scores are pooled as the "
        "mean of the windows' probabilities. A file that cannot be tagged (corrupt, empty, silent, a "
        "sample rate below the model's) gets one error line on stderr and the others are still tagged; "
        "exit code 2 when no file could be tagged.",
    )
    p.add_argument("--model", required=True, help="models:/NAME/VERSION, runs:/RUN_ID[/PATH], or a checkpoint folder")
    p.add_argument(
        "--input",
        required=True,
        help="embedding model: a folder of *.tfrecord, an .h5 file or a tagtune cache; audio model: a "
        "wav/flac/ogg file, a folder of them (recursive) or a CSV of files (a path/file/filename/fname "
        "column, relative to the CSV, or a data set's CSV such as fsdd_meta.csv)",
    )
    p.add_argument("--top-k", type=int, default=5, help="labels per clip (default: %(default)s)")
    p.add_argument(
        "--feature-key",
        default=None,
        metavar="KEY",
        help="the features' name in --input (default: the key the model's training data were read with, "
        "recorded in its checkpoint, else the format's default)",
    )
    p.add_argument(
        "--label-key",
        default=None,
        metavar="KEY",
        help="the labels' name in --input (default: as recorded with the model, else the format's default)",
    )
    p.add_argument(
        "--format",
        choices=("json", "csv"),
        default="json",
        help="json: one object per clip per line; csv: id,rank,index,label,score (default: json)",
    )
    p.add_argument("--tracking-uri", default=None, help="MLflow store for models:/ and runs:/ URIs")

    p = sub.add_parser("export", help="write each family's best config as YAML")
    _add_store_flags(p)
    p.add_argument("--out", required=True, help="folder for <family>.yaml files")
    p.add_argument("--run-id", default=None, help="the search's parent run (default: the newest search)")

    p = sub.add_parser("train", help="retrain one config (e.g. an exported YAML) and log it as a run")
    p.add_argument("--config", required=True, help="YAML written by `tagtune export` (or family + params)")
    p.add_argument("--train", required=True, help="training data, as for `search`")
    p.add_argument("--max-epochs", type=int, default=10, help="epochs (default: %(default)s)")
    p.add_argument("--experiment", default="tagtune-train", help="MLflow experiment (default: %(default)s)")
    p.add_argument("--tracking-uri", default=None, help="MLflow tracking URI")
    p.add_argument("--seed", type=int, default=0)
    _add_read_flags(p)

    p = sub.add_parser("demo", help="the embedded default end to end on generated data (< 5 min on 2 CPUs)")
    p.add_argument("--dir", default="tagtune-demo", help="folder for the data and exports (default: %(default)s)")
    p.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: sqlite:///mlflow.db)")
    p.add_argument("--trials-per-family", type=int, default=3)
    p.add_argument("--max-epochs", type=int, default=6)

    sub.add_parser("families", help="list every model family with its hyperparameters and default ranges")

    p = sub.add_parser("data", help="inspect a dataset or generate a synthetic one")
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    q = dsub.add_parser("inspect", help="format, clips, seconds per clip, classes, labels per clip")
    q.add_argument("path")
    _add_read_flags(q)
    q = dsub.add_parser(
        "synth",
        help="write a generated set: AudioSet-like TFRecords by default, or any format, dtype, shape and task",
    )
    q.add_argument("out")
    q.add_argument("--n-clips", type=int, default=4000, help="clips (default: %(default)s)")
    q.add_argument("--n-classes", type=int, default=64, help="classes (default: %(default)s)")
    q.add_argument("--seed", type=int, default=0, help="generator seed")
    q.add_argument(
        "--format",
        choices=("tfrecord", "tfrecord-example", "npz", "npy-csv", "hdf5", "hear"),
        default="tfrecord",
        help="tfrecord: SequenceExample shards (AudioSet's layout); tfrecord-example: tf.train.Example "
        "*.tfrecords; npz; npy-csv: .npy + CSV; hdf5; hear: a HEAR scene-task folder (default: tfrecord)",
    )
    q.add_argument("--dtype", choices=("uint8", "float16", "float32", "float64"), default="uint8", help="feature dtype")
    q.add_argument("--frames", type=int, default=10, help="frames T per clip (1: one embedding per clip)")
    q.add_argument("--dim", type=int, default=128, help="features D per frame (default: %(default)s)")
    q.add_argument("--task", choices=("multilabel", "multiclass"), default="multilabel", help="label kind")
    return parser


def _finish(outcome: SearchOutcome, experiment: str) -> None:
    from tagtune.commands import report
    from tagtune.tracking import ui_command

    markdown, _ = report(experiment, outcome.tracking_uri, outcome.parent_run_id)
    print(markdown)
    print(
        f"\nsearch run {outcome.parent_run_id} in experiment {experiment!r}, "
        f"{outcome.wall_seconds:.0f} s; browse it with:\n  {ui_command(outcome.tracking_uri)}"
    )


def search_spec_from_args(args: argparse.Namespace, source: DataSource | None = None) -> SearchSpec:
    """The search spec of ``tagtune search``'s flags: each spec field from the flag of the same
    name (``--spaces`` is ``spaces_dir``), ``--families`` parsed against ``--train`` (``source``:
    ``--train`` already opened)."""
    from tagtune.search import SearchSpec, parse_families
    from tagtune.tracking import parse_duration

    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(SearchSpec) if f.init and hasattr(args, f.name)}
    if values.get("time_budget") is not None:
        values["time_budget"] = parse_duration(values["time_budget"])
    values["families"] = parse_families(args.families, source if source is not None else args.train)
    if values.get("trials_per_family") is None and values.get("time_budget") is None:
        values["trials_per_family"] = 4
    return SearchSpec(**values)


def _cmd_search(args: argparse.Namespace) -> None:
    from tagtune.search import resume_search, run_search, try_open

    if args.resume:
        _finish(resume_search(args.experiment, args.tracking_uri, address=args.address), args.experiment)
        return
    # sniffed once: --families and the search's data share it
    source = try_open(args.train, read_options_from_args(args))
    _finish(run_search(search_spec_from_args(args, source), source=source), args.experiment)


def _cmd_finalize(args: argparse.Namespace) -> None:
    from tagtune.commands import report
    from tagtune.finalize import FinalizeSpec, finalize

    outcome = finalize(
        FinalizeSpec(
            experiment=args.experiment,
            train=args.train,
            eval=args.eval,
            top_k=args.top_k,
            max_epochs=args.max_epochs,
            tracking_uri=args.tracking_uri,
            run_id=args.run_id,
            register=not args.no_register,
            ensemble_pool=args.ensemble_pool,
        )
    )
    markdown, _ = report(args.experiment, outcome.tracking_uri, outcome.parent_run_id, html=args.html)
    print(markdown)
    print("\nmodels:")
    for _, row in outcome.finals.iterrows():
        print(f"  {row['name']:<18} {row['model_uri'] or row['run_id']}")
    if args.html:
        print(f"\ndashboard: {os.path.abspath(args.html)} (also logged on the search run)")


def _cmd_families(_: argparse.Namespace) -> None:
    from tagtune.search_spaces import load_space
    from tagtune.trainables.models import get_family, list_families

    for name in list_families():
        spec = get_family(name)
        per_gpu = f"{spec.trials_per_gpu} trial{'s' if spec.trials_per_gpu > 1 else ''} per GPU"
        print(f"{name} [{spec.inputs}, {per_gpu}]: {spec.description}")
        space = load_space(name)
        sampled = {p.name for p in space.params}
        for p in space.params:
            print(f"    {p.name:<14} {p.describe()}")
        fixed = {k: v for k, v in spec.hparams.items() if k not in sampled}
        if fixed:
            print("    fixed: " + ", ".join(f"{k}={v}" for k, v in fixed.items()))


def _cmd_data(args: argparse.Namespace) -> None:
    from tagtune.trainables.data import format_inspect, inspect, synthesize

    if args.data_command == "inspect":
        print(format_inspect(inspect(args.path, options=read_options_from_args(args))))
    else:
        path = synthesize(
            args.out,
            n_clips=args.n_clips,
            n_classes=args.n_classes,
            seed=args.seed,
            fmt=args.format,
            dtype=args.dtype,
            frames=args.frames,
            dim=args.dim,
            task=args.task,
        )
        print(f"wrote {args.n_clips} clips, {args.n_classes} classes to {path}")


def run(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "search":
        _cmd_search(args)
    elif args.command == "resume":
        from tagtune.search import resume_search

        _finish(resume_search(args.experiment, args.tracking_uri, args.run_id, args.address), args.experiment)
    elif args.command == "ui":
        from tagtune.tracking import normalize_uri

        uri = normalize_uri(args.tracking_uri)
        cmd = ["mlflow", "ui", "--backend-store-uri", uri, "--host", args.host, "--port", str(args.port)]
        print(" ".join(cmd), file=sys.stderr)
        os.execvp(cmd[0], cmd)
    elif args.command == "server":
        from tagtune.server import run_server_command

        return run_server_command(args)
    elif args.command == "report":
        from tagtune.commands import report

        markdown, _ = report(args.experiment, args.tracking_uri, args.run_id, html=args.html)
        print(markdown)
        if args.html:
            print(f"\ndashboard: {os.path.abspath(args.html)} (also logged on the search run)")
    elif args.command == "finalize":
        _cmd_finalize(args)
    elif args.command == "predict":
        from tagtune.predict import format_predictions, predictions

        def file_error(message: str) -> None:  # one line per audio file that could not be tagged
            sys.stdout.flush()
            print(f"tagtune: error: {message}", file=sys.stderr, flush=True)

        if args.model.startswith(("models:/", "runs:/")):
            from tagtune.tracking import check_tracking_uri

            check_tracking_uri(args.tracking_uri)
        items = predictions(
            args.model,
            args.input,
            k=args.top_k,
            tracking_uri=args.tracking_uri,
            on_error=file_error,
            feature_key=args.feature_key,
            label_key=args.label_key,
        )
        try:
            for line in format_predictions(items, args.format):
                print(line)
        except BrokenPipeError:  # the reader stopped early (`| head`): not an error
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    elif args.command == "export":
        from tagtune.commands import export

        for path in export(args.experiment, args.tracking_uri, args.out, args.run_id):
            print(path)
    elif args.command == "train":
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
            f"run {run_id}: best val_mAUC {best['val_mAUC']:.4f}, val_mAP {best['val_mAP']:.4f} "
            f"at epoch {int(best['epoch'])}"
        )
    elif args.command == "demo":
        from tagtune.demo import demo

        demo(args.dir, args.tracking_uri, args.trials_per_family, args.max_epochs)
    elif args.command == "families":
        _cmd_families(args)
    elif args.command == "data":
        _cmd_data(args)
    return 0


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
        from tagtune.tracking import access_error

        message = access_error(exc, list(argv) if argv is not None else sys.argv[1:])
        if message is None:
            raise
        print(f"tagtune: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tagtune: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
