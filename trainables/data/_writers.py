"""Writers of every embedding format tagtune reads, and a generator of embeddings of any shape,
dtype and task (``tagtune data synth --format ... --dtype ... --frames ... --dim ... --task``).

:func:`make_embeddings` draws a learnable set: each class has a prototype direction in ``dim``
features; a clip's frames mix the prototypes of its labels with a per-clip gain plus noise;
float features are kept as drawn (in ``dtype``), uint8 ones are quantized around 128.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from tagtune.errors import InputError
from tagtune.trainables.data._dataset import HEAR_VOCABULARY, Dataset
from tagtune.trainables.data._hear import METADATA

FORMATS = ("tfrecord", "tfrecord-example", "npz", "npy-csv", "hdf5", "hear")
DTYPES = ("uint8", "float16", "float32", "float64")


def make_embeddings(
    n_clips: int = 1000,
    n_classes: int = 10,
    seed: int = 0,
    *,
    frames: int = 1,
    dim: int = 64,
    dtype: str = "float32",
    task: str = "multiclass",
    clips_per_group: int = 4,
) -> Dataset:
    """A generated :class:`Dataset` (module docstring); ``groups``: one recording per
    ``clips_per_group`` clips, whose clips share an offset (so a leaky split scores higher)."""
    if dtype not in DTYPES:
        raise InputError(f"--dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if task not in ("multiclass", "multilabel"):
        raise InputError(f"--task must be multiclass or multilabel, got {task!r}")
    if n_clips < 2 or n_classes < 2 or frames < 1 or dim < 1:
        raise InputError("--n-clips and --n-classes must be at least 2, --frames and --dim at least 1")
    rng = np.random.default_rng(seed)
    y = np.zeros((n_clips, n_classes), bool)
    y[np.arange(n_clips), rng.integers(0, n_classes, n_clips)] = True
    if task == "multilabel":
        extra = rng.random((n_clips, n_classes)) < 1.5 / n_classes
        y |= extra
    protos = rng.normal(size=(n_classes, dim)).astype(np.float32)
    protos /= np.linalg.norm(protos, axis=1, keepdims=True)
    groups = np.arange(n_clips) // clips_per_group
    group_offset = 0.3 * rng.normal(size=(int(groups.max()) + 1, 1, dim)).astype(np.float32)
    gain = rng.uniform(0.6, 1.4, size=(n_clips, 1, n_classes)).astype(np.float32)
    signal = (y[:, None, :] * gain) @ protos  # [N, 1, D]
    x = signal + group_offset[groups] + 0.9 * rng.normal(size=(n_clips, frames, dim)).astype(np.float32)
    if dtype == "uint8":
        out = np.clip(np.rint(128 + 40 * x), 0, 255).astype(np.uint8)
    else:
        out = (2.0 * x + 0.5).astype(dtype)
    return Dataset(
        x=out,
        y=y,
        lengths=np.full(n_clips, frames, np.int16),
        ids=np.asarray([f"clip{i:06d}" for i in range(n_clips)], dtype=str),
        class_names=tuple(f"class {c}" for c in range(n_classes)),
        source=f"synthetic:{n_clips}x{frames}x{dim} {dtype} {task}",
        groups=np.asarray([f"rec{g:05d}" for g in groups], dtype=str),
        task=task,
    )


def _label_lists(ds: Dataset) -> list[list[int]]:
    return [np.flatnonzero(row).tolist() for row in np.asarray(ds.y)]


def _seeded_split(n: int, seed: int) -> np.ndarray:
    """train / valid / test (70 / 15 / 15 %) per clip."""
    roles = np.array(["train"] * n, dtype=object)
    order = np.random.default_rng(seed + 1).permutation(n)
    roles[order[: n * 15 // 100]] = "test"
    roles[order[n * 15 // 100 : n * 30 // 100]] = "valid"
    return roles.astype(str)


def write_npz(path: Path, ds: Dataset) -> Path:
    """``x``, ``y`` (class indices when single-label, else multi-hot), ``ids``, ``lengths``,
    ``groups``, ``class_names``."""
    y = np.asarray(ds.y).argmax(axis=1) if ds.single_label else np.asarray(ds.y)
    arrays: dict[str, Any] = {
        "x": np.asarray(ds.x),
        "y": y,
        "ids": ds.ids,
        "lengths": ds.lengths,
        "class_names": np.asarray(ds.class_names),
    }
    if ds.groups is not None:
        arrays["groups"] = ds.groups
    if ds.split is not None:
        arrays["split"] = ds.split
    np.savez(path, **arrays)
    return path


def write_npy_csv(path: Path, ds: Dataset) -> Path:
    """``<name>.npy`` features and ``<name>.csv`` (id,labels,group; label names joined by ``;``)."""
    np.save(path, np.asarray(ds.x))
    with open(path.with_suffix(".csv"), "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "labels", "group"])
        for i, labels in enumerate(_label_lists(ds)):
            group = ds.groups[i] if ds.groups is not None else ""
            w.writerow([ds.ids[i], ";".join(ds.class_names[c] for c in labels), group])
    return path


def write_hdf5_any(path: Path, ds: Dataset) -> Path:
    """``x`` (its own dtype), ``y`` (class indices when single-label, else multi-hot),
    ``video_id_list``, ``groups``."""
    import h5py

    with h5py.File(path, "w") as fh:
        fh.create_dataset("x", data=np.asarray(ds.x))
        y = np.asarray(ds.y).argmax(axis=1) if ds.single_label else np.asarray(ds.y, dtype=bool)
        fh.create_dataset("y", data=y)
        fh.create_dataset("video_id_list", data=np.char.encode(np.asarray(ds.ids, dtype=str), "utf-8"))
        if ds.groups is not None:
            fh.create_dataset("groups", data=np.char.encode(np.asarray(ds.groups, dtype=str), "utf-8"))
    return path


def write_vocabulary(path: Path, names: tuple[str, ...]) -> Path:
    """HEAR's ``labelvocabulary.csv`` (``idx,label``)."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["idx", "label"])
        for i, name in enumerate(names):
            w.writerow([i, name])
    return path


def write_hear(folder: Path, ds: Dataset, split: np.ndarray, task_name: str = "synthetic") -> Path:
    """A hear-eval-kit scene-task embedding folder (``train`` / ``valid`` / ``test`` from ``split``)."""
    folder.mkdir(parents=True, exist_ok=True)
    meta = {
        "task_name": task_name,
        "version": "tagtune",
        "embedding_type": "scene",
        "prediction_type": ds.task,
        "split_mode": "trainvaltest",
        "nfolds": 0,
    }
    (folder / METADATA).write_text(json.dumps(meta, indent=1), encoding="utf-8")
    write_vocabulary(folder / HEAR_VOCABULARY, ds.class_names)
    for s in ("train", "valid", "test"):
        (folder / s).mkdir(exist_ok=True)
    x = np.asarray(ds.x)
    for i, labels in enumerate(_label_lists(ds)):
        sub = folder / str(split[i])
        emb = x[i, : int(ds.lengths[i])]
        np.save(sub / f"{ds.ids[i]}.embedding.npy", emb[0] if emb.shape[0] == 1 else emb)
        (sub / f"{ds.ids[i]}.target-labels.json").write_text(
            json.dumps([ds.class_names[c] for c in labels]), encoding="utf-8"
        )
    return folder


def write_tfrecord_any(folder: Path, ds: Dataset, *, example: bool, shard_size: int = 100) -> Path:
    """``SequenceExample`` shards (``audio_embedding`` feature list, ``.tfrecord``) or ``Example``
    shards (``embedding``, ``.tfrecords``); uint8 frames as bytes, float frames as float lists."""
    from tagtune.trainables.data._tfexample import encode_example, write_examples

    x = np.asarray(ds.x)
    if example and x.dtype != np.uint8 and x.shape[1] != 1:
        raise InputError("--format tfrecord-example holds one float embedding per clip: pass --frames 1")
    labels = _label_lists(ds)
    payloads = [
        encode_example(
            str(ds.ids[i]),
            labels[i],
            x[i, : int(ds.lengths[i])],
            sequence=not example,
            feature_key="embedding" if example else "audio_embedding",
            label_key="label" if ds.single_label else "labels",
            extra={"group": str(ds.groups[i])} if ds.groups is not None else None,
        )
        for i in range(len(x))
    ]
    write_examples(folder, payloads, shard_size, ".tfrecords" if example else ".tfrecord")
    return folder


def write_format(out: str | os.PathLike, ds: Dataset, fmt: str, seed: int = 0) -> Path:
    """Write ``ds`` as ``fmt`` (:data:`FORMATS`) at ``out``; return the path to pass to ``--train``."""
    out = Path(out)
    if fmt not in FORMATS:
        raise InputError(f"unknown format {fmt!r}: choose one of {', '.join(FORMATS)} (--format)")
    suffix = {"npz": ".npz", "npy-csv": ".npy", "hdf5": ".h5"}.get(fmt)
    if suffix is not None:
        target = out if out.suffix.lower() == suffix else out / f"embeddings{suffix}"
        if target.exists():
            raise InputError(f"{target} already holds data: choose a new output path or remove the old files")
        target.parent.mkdir(parents=True, exist_ok=True)
        writer = {"npz": write_npz, "npy-csv": write_npy_csv, "hdf5": write_hdf5_any}[fmt]
        if fmt != "npz":  # the npz holds its class names
            _class_list(target.parent, ds)
        return writer(target, ds)
    if out.exists() and any(out.iterdir()):
        raise InputError(f"{out} already holds data: choose a new output folder or remove the old files")
    if fmt == "hear":
        return write_hear(out, ds, _seeded_split(ds.n_clips, seed))
    out.mkdir(parents=True, exist_ok=True)
    _class_list(out, ds)
    return write_tfrecord_any(out, ds, example=fmt == "tfrecord-example")


def _class_list(folder: Path, ds: Dataset) -> None:
    """``class_labels_indices.csv`` beside the data (its class names), refusing a different one."""
    from tagtune.trainables.data._dataset import CLASS_CSV, read_class_names, write_class_csv

    path = folder / CLASS_CSV
    if path.exists() and read_class_names(path) != ds.class_names:
        raise InputError(f"{path} already lists other classes: choose a new output folder or remove the file")
    write_class_csv(path, ds.class_names)
