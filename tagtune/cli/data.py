"""``tagtune data inspect`` and ``tagtune data synth``."""

from __future__ import annotations

import argparse

from tagtune.cli._common import add_read_flags, read_options_from_args

HELP = "inspect a dataset or generate a synthetic one"
DESCRIPTION = None


def add_arguments(p: argparse.ArgumentParser) -> None:
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    q = dsub.add_parser("inspect", help="format, clips, seconds per clip, classes, labels per clip")
    q.add_argument("path", help="data in any format `tagtune search --train` reads")
    add_read_flags(q)
    q = dsub.add_parser(
        "synth",
        help="write a generated set: AudioSet-like TFRecords by default, or any format, dtype, shape and task",
    )
    q.add_argument("out", help="folder (or file) to write")
    q.add_argument("--n-clips", type=int, default=4000, help="clips (default: %(default)s)")
    q.add_argument("--n-classes", type=int, default=64, help="classes (default: %(default)s)")
    q.add_argument("--seed", type=int, default=0, help="generator seed")
    q.add_argument(
        "--format",
        choices=("tfrecord", "tfrecord-example", "npz", "npy-csv", "hdf5", "hear"),
        default="tfrecord",
        help="tfrecord: SequenceExample shards (AudioSet's layout); tfrecord-example: tf.train.Example "
        "*.tfrecords; npz; npy-csv: .npy + CSV; hdf5; hear: a HEAR scene-task folder (default: %(default)s)",
    )
    q.add_argument("--dtype", choices=("uint8", "float16", "float32", "float64"), default="uint8", help="feature dtype")
    q.add_argument("--frames", type=int, default=10, help="frames T per clip (1: one embedding per clip)")
    q.add_argument("--dim", type=int, default=128, help="features D per frame (default: %(default)s)")
    q.add_argument("--task", choices=("multilabel", "multiclass"), default="multilabel", help="label kind")


def run(args: argparse.Namespace) -> None:
    from tagtune.trainables.data import format_inspect, inspect, synthesize

    if args.data_command == "inspect":
        print(format_inspect(inspect(args.path, options=read_options_from_args(args))))
        return
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
