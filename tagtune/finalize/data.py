"""The finals' data: --train and --eval (or the data set's own test split) read, checked
against the search, and handed to the data kind's :meth:`~tagtune.trainables.inference.DataKind.finals_data`.

Embeddings: the finals train on all of --train and are scored on --eval, or, without --eval, on
the test split the data set marks itself (then they train on its other clips).  Raw audio: the
search's training and validation clips; scored on the clips the CSV marks ``test`` or on those of
--eval (another audio CSV of the same classes).  Either way finalize refuses, naming --eval,
where nothing is held out to score on.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from tagtune.errors import InputError
from tagtune.finalize.registry import Session, open_search
from tagtune.finalize.spec import FinalizeSpec, Say
from tagtune.tracking import Trials, dataset_input, search_spec
from tagtune.trainables.inference import AUDIO, EMBEDDINGS, FinalsData


def open_finals(spec: FinalizeSpec, say: Say) -> tuple[Session, Trials, FinalsData]:
    """The search, its trials and the finals' data, checked against each other (an audio
    data set's test split is checked before the store is opened)."""
    source = open_train(spec)
    if source.kind == "audio":
        fd = load_audio_finals(spec, source, say)
        session, trials = open_search(spec, say)
        check_audio_search(spec, session.parent, fd)
        return session, trials, fd
    session, trials = open_search(spec, say)
    if spec.eval is None:  # read as the search read it (--feature-key, --label-key, --task, ...)
        source = open_train(spec, search_spec(session.parent).read_options())
        if not has_own_test(source):
            raise InputError(
                f"--eval is required: --train {spec.train} holds embeddings with no test split of their own; "
                "pass their eval split"
            )
    return session, trials, load_finals_data(spec, session.parent, say)


def open_train(spec: FinalizeSpec, options: Any = None) -> Any:
    """--train opened (its format sniffed): embeddings or audio; ``options``: how the search read it."""
    from tagtune.trainables.data import open_source

    try:
        return open_source(spec.train, options=options)
    except InputError as exc:
        raise InputError(f"--train {spec.train}: {exc}") from None


def has_own_test(source: Any) -> bool:
    """Whether an opened embedding source marks clips of its own as test (:func:`own_test_split`)."""
    return own_test_split(source.read()) is not None


def _load(path: str, flag: str, options: Any = None) -> Any:
    from tagtune.trainables.data import load_dataset

    try:
        return load_dataset(path, options=options)
    except InputError as exc:
        raise InputError(f"{flag} {path}: {exc}") from None


def _check_data(spec: FinalizeSpec, parent: Any, train_ds: Any, eval_ds: Any) -> None:
    """--eval is the eval split of --train's data set, and --train the search's data."""
    if tuple(train_ds.class_names) != tuple(eval_ds.class_names):
        raise InputError(
            f"--eval {spec.eval} has {eval_ds.n_classes} classes that differ from --train's "
            f"{train_ds.n_classes}; pass the eval split of the same data set"
        )
    if train_ds.x.shape[1:] != eval_ds.x.shape[1:]:
        raise InputError(
            f"--eval {spec.eval} clips are {eval_ds.x.shape[1:]} but --train clips are "
            f"{train_ds.x.shape[1:]}; pass the eval split of the same data set"
        )
    searched = parent.data.params.get("n_classes")
    if searched is not None and int(searched) != train_ds.n_classes:
        raise InputError(
            f"--train {spec.train} has {train_ds.n_classes} classes but the search trained on "
            f"{searched}; pass the search's training data"
        )


def load_finals_data(spec: FinalizeSpec, parent: Any, say: Say) -> FinalsData:
    """Read --train and --eval, check they fit the search, and say what was read."""
    from tagtune.trainables.data import check_finite

    t0 = time.perf_counter()
    searched = None
    options = search_spec(parent).read_options()  # --train read as the search read it
    if spec.eval is None:  # finalize refuses embeddings without --eval unless they hold a test split
        searched = _load(spec.train, "--train", options)
        parts = own_test_split(searched)
        assert parts is not None  # finalize checked that --train has a test split
        train_ds, eval_ds = parts
        test_from = f"test split of {spec.train}"
    else:
        train_ds, eval_ds = _load(spec.train, "--train", options), _load(spec.eval, "--eval", options)
        test_from = f"--eval {spec.eval}"
    _check_data(spec, parent, train_ds, eval_ds)
    check_finite(train_ds.x, train_ds.ids, f"--train {spec.train}")
    check_finite(eval_ds.x, eval_ds.ids, test_from)
    say(
        f"data: {train_ds.n_clips} training clips (all of them), {eval_ds.n_clips} eval clips "
        f"({test_from}), {train_ds.n_classes} classes ({time.perf_counter() - t0:.1f} s)"
    )
    test_idx = np.arange(eval_ds.n_clips)
    return EMBEDDINGS.finals_data(train_ds, eval_ds, test_idx, seed=spec.seed, searched=searched, test_from=test_from)


def own_test_split(ds: Any) -> tuple[Any, Any] | None:
    """(the train + validation clips, the test clips) of an embedding data set with its own
    split; None when it marks no clip ``test``."""
    import dataclasses

    from tagtune.trainables.data import TEST, split_of

    if getattr(ds, "split", None) is None:
        return None
    names = split_of(ds.split, ds.source)
    test = names == TEST
    if not test.any() or test.all():
        return None

    def part(mask: np.ndarray) -> Any:
        idx = np.flatnonzero(mask)
        fields: dict[str, np.ndarray | None] = {
            "x": np.asarray(ds.x[idx]),
            "y": np.asarray(ds.y[idx]),
            "lengths": np.asarray(ds.lengths[idx]),
        }
        fields["ids"] = np.asarray(ds.ids)[idx]
        for name in ("groups", "split"):
            value = getattr(ds, name, None)
            fields[name] = None if value is None else np.asarray(value)[idx]
        return dataclasses.replace(ds, **fields)

    return part(~test), part(test)


def _audio_test(spec: FinalizeSpec, ds: Any) -> tuple[Any, np.ndarray, str]:
    """(the dataset the test clips come from, their indices, where from): the clips --train's
    CSV marks ``test``, or those of --eval when that is another audio CSV (its ``test`` clips
    where it marks some, else all of them); InputError when there is no test split."""
    from tagtune.trainables.data import find_csv, open_source

    csv = ds.table.csv_path
    other: Any = None
    if spec.eval is not None:
        try:
            source = open_source(spec.eval)
        except InputError as exc:
            raise InputError(f"--eval {spec.eval}: {exc}") from None
        if source.kind != "audio":
            raise InputError(
                f"--eval {spec.eval} holds embeddings but --train {spec.train} holds audio files; "
                "pass --eval an audio CSV of test files with the same classes (or leave it out)"
            )
        if find_csv(spec.eval).resolve() != csv:
            other = source.read()
    if other is None:
        idx = np.flatnonzero(ds.table.split == "test")
        if idx.size == 0:
            raise InputError(
                f"--train {spec.train}: {csv.name} marks no clip as test (no split column with test rows), "
                "so nothing is held out to score the finals on; pass --eval a CSV of test files "
                "with the same classes, or add a split column (train/test)"
            )
        return ds, idx, f"test split of {csv}"
    if tuple(other.class_names) != tuple(ds.class_names):
        raise InputError(
            f"--eval {spec.eval} has classes {', '.join(other.class_names[:5])}... that differ from "
            f"--train's {', '.join(ds.class_names[:5])}...; pass test files of the same classes"
        )
    marked = np.flatnonzero(other.table.split == "test")
    idx = marked if marked.size else np.arange(other.n_clips)
    return other, idx, f"{'test split' if marked.size else 'all clips'} of {other.table.csv_path}"


def load_audio_finals(spec: FinalizeSpec, source: Any, say: Say) -> FinalsData:
    """--train's audio clips (train + validation for the finals) and the test clips they are
    scored on; refuses (InputError naming --eval) where there is no held-out test split."""
    t0 = time.perf_counter()
    ds = source.read()
    test_ds, test_idx, test_from = _audio_test(spec, ds)
    fd = AUDIO.finals_data(ds, test_ds, test_idx, seed=spec.seed, test_from=test_from)
    say(
        f"data: {fd.n_train} training clips (the search's train + validation), {fd.n_eval} test clips "
        f"({test_from}), {ds.n_classes} classes, {'single' if ds.single_label else 'multi'}-label "
        f"({time.perf_counter() - t0:.1f} s)"
    )
    return fd


def check_audio_search(spec: FinalizeSpec, parent: Any, fd: FinalsData) -> None:
    """--train is the audio data the search ran on (its classes and its clip count)."""
    params = parent.data.params
    searched = params.get("n_classes")
    if searched is not None and int(searched) != fd.train.n_classes:
        raise InputError(
            f"--train {spec.train} has {fd.train.n_classes} classes but the search trained on "
            f"{searched}; pass the search's training data"
        )
    if "n_train" in params and "n_val" in params:
        n = int(params["n_train"]) + int(params["n_val"])
        if n != fd.n_train:
            raise InputError(
                f"--train {spec.train} has {fd.n_train} training and validation clips but the search "
                f"split {n}; pass the search's training data"
            )


def dataset_inputs(spec: FinalizeSpec, fd: FinalsData) -> list[Any]:
    """The finals' data as MLflow dataset inputs: all of --train (context training) and the
    eval clips (context evaluation).  Embeddings only (audio finals read a CSV of files)."""
    if fd.kind is not EMBEDDINGS:
        return []
    classes = len(fd.class_names)
    return [
        dataset_input(spec.train, fd.train, "training", {"train_clips": fd.train.n_clips, "classes": classes}),
        dataset_input(
            spec.eval or spec.train, fd.eval, "evaluation", {"eval_clips": fd.eval.n_clips, "classes": classes}
        ),
    ]
