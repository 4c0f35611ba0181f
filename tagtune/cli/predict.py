"""``tagtune predict``: the top K labels of each clip or audio file (:func:`tagtune.predict.predictions`)."""

from __future__ import annotations

import argparse
import os
import sys

HELP = "top K labels (names and scores) for each clip of a data set or each audio file"
DESCRIPTION = (
    "Top K labels with names and scores per clip (embedding models) or per audio file "
    "(densenet_audio models). Audio files are decoded at their own rate and resampled (soxr) to the "
    "model's; a file longer than the model's crop_samples is cut into windows of crop_samples "
    "(hop: half of it, the last window ending at the file's end) and the scores are pooled as the "
    "mean of the windows' probabilities. A file that cannot be tagged (corrupt, empty, silent, a "
    "sample rate below the model's) gets one error line on stderr and the others are still tagged; "
    "exit code 2 when no file could be tagged."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="models:/NAME/VERSION, runs:/RUN_ID[/PATH], or a checkpoint folder")
    p.add_argument(
        "--input",
        required=True,
        help="embedding model: data in any format `tagtune search --train` reads (a folder of *.tfrecord, "
        "an .h5, .npz or .npy file, a HEAR task folder or a tagtune cache); audio model: a "
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
        help="json: one object per clip per line; csv: id,rank,index,label,score (default: %(default)s)",
    )
    p.add_argument("--tracking-uri", default=None, help="MLflow store for models:/ and runs:/ URIs")


def _file_error(message: str) -> None:
    """One line per audio file that could not be tagged."""
    sys.stdout.flush()
    print(f"tagtune: error: {message}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> None:
    from tagtune.predict import format_predictions, predictions

    if args.model.startswith(("models:/", "runs:/")):
        from tagtune.tracking import check_tracking_uri

        check_tracking_uri(args.tracking_uri)
    items = predictions(
        args.model,
        args.input,
        k=args.top_k,
        tracking_uri=args.tracking_uri,
        on_error=_file_error,
        feature_key=args.feature_key,
        label_key=args.label_key,
    )
    try:
        for line in format_predictions(items, args.format):
            print(line)
    except BrokenPipeError:  # the reader stopped early (`| head`): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
