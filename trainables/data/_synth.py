"""A generated AudioSet-like clip set, for demos and tests.

Shape and statistics follow the real balanced training split: uint8 sequences of up to
10 x 128 (about 2 % of clips shorter than 10 s), 1..8 labels per clip (mean about 2.4), skewed
(Zipf-like) class frequencies and parent/child classes that tend to appear together.

Each class has a latent prototype direction in the 128-d space.  A clip's frames mix the
prototypes of its labels with a per-clip gain and per-second on/off activity (some seconds carry
only some of the labels), plus distractor sources that belong to no class, clip-level noise and
frame noise, then are quantized to uint8 around 128 like whitened, 8-bit embeddings.  The noise
is strong enough that a linear model reaches a validation mAUC around 0.85, not 0.99.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tagtune.errors import InputError
from tagtune.trainables.data._dataset import CLASS_CSV, Dataset, read_class_names, write_class_csv
from tagtune.trainables.data._formats import HDF5_SUFFIXES, write_hdf5
from tagtune.trainables.data._tfrecord import FEATURE_DIM, MAX_FRAMES, write_tfrecords

SHARD_SIZE = 100
"""Records per synthetic TFRecord shard."""
HDF5_NAME = "synthetic.h5"
"""File name used when ``synthesize(..., fmt="hdf5")`` is given a folder."""


@dataclass(frozen=True)
class _Knobs:
    """Generator constants (tuned so a linear model lands near 0.85 validation mAUC)."""

    zipf_exponent: float = 1.0
    extra_labels_mean: float = 1.1
    max_primary_labels: int = 8
    parent_fraction: float = 0.15
    child_fraction: float = 0.5
    parent_follow: float = 0.75
    frame_active: float = 0.7
    gain_low: float = 0.4
    gain_high: float = 1.4
    prototype_norm: float = 2.5
    prototype_dims: int = 16
    n_distractors: int = 24
    distractor_norm: float = 2.0
    clip_noise: float = 0.6
    frame_noise: float = 0.7
    offset_spread: float = 0.4
    short_fraction: float = 0.02
    quant_scale: float = 70.0
    min_positives: int = 15


KNOBS = _Knobs()


# --------------------------------------------------------------------------------------------
# Label structure
# --------------------------------------------------------------------------------------------


def _class_weights(n_classes: int, rng: np.random.Generator, k: _Knobs) -> np.ndarray:
    """Zipf-like class probabilities, in a random class order."""
    ranks = rng.permutation(n_classes)
    weights = 1.0 / (ranks + 1.0) ** k.zipf_exponent
    return weights / weights.sum()


def _parents(weights: np.ndarray, rng: np.random.Generator, k: _Knobs) -> np.ndarray:
    """Parent class of each class (-1 for none); parents are among the most frequent classes."""
    n = len(weights)
    parent = np.full(n, -1, dtype=np.int64)
    n_parents = max(1, round(n * k.parent_fraction))
    if n < 3:
        return parent
    pool = np.argsort(-weights)[:n_parents]
    for c in range(n):
        if c not in pool and rng.random() < k.child_fraction:
            parent[c] = int(rng.choice(pool))
    return parent


def _draw_labels(
    n_clips: int, weights: np.ndarray, parent: np.ndarray, rng: np.random.Generator, k: _Knobs
) -> np.ndarray:
    """Multi-hot labels: 1 + Poisson primary labels by weight, parents following children."""
    n_classes = len(weights)
    y = np.zeros((n_clips, n_classes), dtype=bool)
    cap = min(k.max_primary_labels, n_classes)
    counts = np.minimum(1 + rng.poisson(k.extra_labels_mean, size=n_clips), cap)
    for i, count in enumerate(counts):
        y[i, rng.choice(n_classes, size=count, replace=False, p=weights)] = True
    children = np.flatnonzero(parent >= 0)
    follow = y[:, children] & (rng.random((n_clips, len(children))) < k.parent_follow)
    rows, cols = np.nonzero(follow)
    y[rows, parent[children[cols]]] = True
    return y


def _top_up(y: np.ndarray, parent: np.ndarray, rng: np.random.Generator, k: _Knobs) -> None:
    """Give every class at least ``min_positives`` clips (fewer for tiny sets), in place."""
    n_clips = len(y)
    need = max(1, min(k.min_positives, n_clips // 250))
    for c in np.flatnonzero(y.sum(axis=0) < need):
        missing = need - int(y[:, c].sum())
        free = np.flatnonzero(~y[:, c])
        order = free[np.lexsort((rng.random(len(free)), y[free].sum(axis=1)))]
        chosen = order[:missing]
        y[chosen, c] = True
        if parent[c] >= 0:
            y[chosen, parent[c]] = True


def _class_names(parent: np.ndarray) -> tuple[str, ...]:
    """Display names like ``synthetic class 5 (parent 3)``."""
    return tuple(f"synthetic class {c}" + (f" (parent {p})" if p >= 0 else "") for c, p in enumerate(parent))


# --------------------------------------------------------------------------------------------
# Embeddings
# --------------------------------------------------------------------------------------------


def _lengths(n_clips: int, rng: np.random.Generator, k: _Knobs) -> np.ndarray:
    """Mostly 10 s; ``short_fraction`` of clips (at least one when n >= 10) get 1..9 s."""
    lengths = np.full(n_clips, MAX_FRAMES, dtype=np.int16)
    n_short = round(n_clips * k.short_fraction)
    if n_short == 0 and n_clips >= 10:
        n_short = 1
    short = rng.choice(n_clips, size=n_short, replace=False)
    lengths[short] = rng.integers(1, MAX_FRAMES, size=n_short)
    return lengths


def _unit_rows(rng: np.random.Generator, n: int, support: int = FEATURE_DIM) -> np.ndarray:
    """``n`` random unit vectors, each non-zero on ``support`` random features."""
    v = rng.normal(size=(n, FEATURE_DIM))
    if support < FEATURE_DIM:
        keep = np.argsort(rng.random((n, FEATURE_DIM)), axis=1)[:, :support]
        mask = np.zeros_like(v, dtype=bool)
        mask[np.arange(n)[:, None], keep] = True
        v = np.where(mask, v, 0.0)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _embed(
    y: np.ndarray,
    lengths: np.ndarray,
    prototypes: np.ndarray,
    distractors: np.ndarray,
    offsets: np.ndarray,
    rng: np.random.Generator,
    k: _Knobs,
) -> np.ndarray:
    """Quantized frames for a block of clips: label mixture + distractors + noise."""
    n, c = y.shape
    t = MAX_FRAMES
    gain = rng.uniform(k.gain_low, k.gain_high, size=(n, 1, c))
    active = rng.random((n, t, c)) < k.frame_active
    anchor = (rng.random((n, c)) * lengths[:, None]).astype(np.int64)
    active[np.arange(n)[:, None], anchor, np.arange(c)[None, :]] = True
    mix = (y[:, None, :] * gain * active).astype(np.float32)
    signal = mix @ (k.prototype_norm * prototypes).astype(np.float32)
    weights = rng.normal(size=(n, 1, len(distractors))) * rng.random((n, t, len(distractors)))
    signal += weights.astype(np.float32) @ (k.distractor_norm * distractors).astype(np.float32)
    signal += k.clip_noise * rng.normal(size=(n, 1, FEATURE_DIM)).astype(np.float32)
    signal += k.frame_noise * rng.normal(size=(n, t, FEATURE_DIM)).astype(np.float32)
    signal += offsets.astype(np.float32)
    x = np.clip(np.rint(128.0 + k.quant_scale * signal), 0, 255).astype(np.uint8)
    x[np.arange(t)[None, :] >= lengths[:, None]] = 0
    return x


# --------------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------------


def make_synthetic(n_clips: int = 4000, n_classes: int = 64, seed: int = 0) -> Dataset:
    """Generate an AudioSet-like :class:`Dataset` (deterministic for a given seed)."""
    if int(n_clips) < 1:
        raise InputError(f"n_clips must be at least 1, got {n_clips}; fix --n-clips")
    if int(n_classes) < 2:
        raise InputError(f"n_classes must be at least 2, got {n_classes}; fix --n-classes")
    k, rng = KNOBS, np.random.default_rng(seed)
    weights = _class_weights(n_classes, rng, k)
    parent = _parents(weights, rng, k)
    y = _draw_labels(n_clips, weights, parent, rng, k)
    _top_up(y, parent, rng, k)
    lengths = _lengths(n_clips, rng, k)
    prototypes = _unit_rows(rng, n_classes, k.prototype_dims)
    distractors = _unit_rows(rng, k.n_distractors)
    offsets = rng.uniform(-k.offset_spread, k.offset_spread, size=FEATURE_DIM)
    block = 1024
    x = np.concatenate(
        [
            _embed(y[i : i + block], lengths[i : i + block], prototypes, distractors, offsets, rng, k)
            for i in range(0, n_clips, block)
        ]
    )
    return Dataset(
        x=x,
        y=y,
        lengths=lengths,
        ids=np.asarray([f"syn{i:08d}" for i in range(n_clips)], dtype=str),
        class_names=_class_names(parent),
        source=f"synthetic:n_clips={n_clips},n_classes={n_classes},seed={seed}",
    )


def synthesize(
    out_dir: str | os.PathLike,
    n_clips: int = 4000,
    n_classes: int = 64,
    seed: int = 0,
    fmt: str = "tfrecord",
    *,
    dtype: str = "uint8",
    frames: int = MAX_FRAMES,
    dim: int = FEATURE_DIM,
    task: str = "multilabel",
) -> Path:
    """Generate a synthetic set and write it; return the path to pass to ``load_dataset``.

    AudioSet-like (uint8, 10 x 128, multi-label, the defaults) in ``tfrecord`` / ``hdf5``:
    ``fmt="tfrecord"``: shards of 100 SequenceExamples plus ``class_labels_indices.csv`` in the
    folder ``out_dir``.  ``fmt="hdf5"``: one packed file (``out_dir`` itself if it ends in
    .h5/.hdf5, else ``out_dir/synthetic.h5``) with the class list next to it.  Any other format
    (``tfrecord-example``, ``npz``, ``npy-csv``, ``hear``), dtype, frames, dim or task: the
    generated set of ``_writers.make_embeddings`` written by ``_writers.write_format``.
    """
    from tagtune.trainables.data._writers import FORMATS, make_embeddings, write_format

    if fmt not in FORMATS:
        raise InputError(f"unknown synthetic format {fmt!r}: choose one of {', '.join(FORMATS)} (--format)")
    audioset_like = (dtype, frames, dim, task) == ("uint8", MAX_FRAMES, FEATURE_DIM, "multilabel")
    if fmt not in ("tfrecord", "hdf5") or not audioset_like:
        ds = make_embeddings(n_clips, n_classes, seed, frames=frames, dim=dim, dtype=dtype, task=task)
        return write_format(out_dir, ds, fmt, seed)
    out = Path(out_dir)
    if fmt == "hdf5":
        target = out if out.suffix.lower() in HDF5_SUFFIXES else out / HDF5_NAME
        _refuse_existing(target.exists(), target)
    else:
        target = out
        _refuse_existing(out.is_dir() and any(out.glob("*.tfrecord")), out)
    ds = make_synthetic(n_clips, n_classes, seed)
    folder = target.parent if fmt == "hdf5" else target
    csv_path = folder / CLASS_CSV
    _refuse_other_classes(csv_path, ds.class_names)
    folder.mkdir(parents=True, exist_ok=True)
    if fmt == "hdf5":
        write_hdf5(target, ds)
    else:
        starts = 10.0 * np.random.default_rng(seed).integers(0, 30, size=ds.n_clips)
        write_tfrecords(target, ds.x, ds.y, ds.lengths, ds.ids, SHARD_SIZE, start_seconds=starts)
    write_class_csv(csv_path, ds.class_names)
    return target


def _refuse_other_classes(path: Path, names: tuple[str, ...]) -> None:
    """Refuse to replace a different class list already at ``path``."""
    if path.exists() and read_class_names(path) != names:
        raise InputError(f"{path} already lists other classes: choose a new output folder or remove the file")


def _refuse_existing(exists: bool, path: Path) -> None:
    """Refuse to overwrite earlier data at ``path``."""
    if exists:
        raise InputError(f"{path} already holds data: choose a new output path or remove the old files")
