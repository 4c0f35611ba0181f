"""The in-memory clip set, format sniffing, class names, splits and ``load_dataset``.

Three on-disk formats are read:

* ``tfrecord``: a folder of ``*.tfrecord`` shards as Google released AudioSet (or one shard);
* ``hdf5``: one packed ``.h5``/``.hdf5`` file as researchers share it (``x`` uint8
  [N, 10, 128], ``y`` bool [N, 527], ``video_id_list`` [N]);
* ``cache``: tagtune's own memory-mappable cache folder (holds ``tagtune-cache.json``).

A fourth, ``audio`` (a CSV listing audio files, or a folder holding one), is recognized here and
read by :func:`tagtune.trainables.audio.load_audio_dataset`; ``load_dataset`` says so when given one.

TFRecord and HDF5 sources are parsed once and then served from the cache (see ``_cache``).
"""

from __future__ import annotations

import csv
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tagtune.trainables.data._tfrecord import FEATURE_DIM, MAX_FRAMES, list_shards, read_shards
from tagtune.trainables.errors import InputError

CLASS_CSV = "class_labels_indices.csv"
"""File name of the class list, looked for next to the data and in its parent folder."""
AUDIOSET_CLASSES = 527
"""Number of AudioSet classes, used for AudioSet-shaped data without a class list."""
HDF5_SUFFIXES = (".h5", ".hdf5")
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_PASS_DATA = "pass --train with a folder of *.tfrecord, an .h5 file or a tagtune cache"


@dataclass(frozen=True, eq=False)
class Dataset:
    """A set of clips: embedding sequences, multi-hot labels, lengths and ids.

    Compared by identity (the arrays make field-wise ``==`` ambiguous).
    """

    x: np.ndarray
    """uint8 [N, T, F] (T = 10 seconds max, F = 128), zero-padded at the end for short clips."""
    y: np.ndarray
    """bool [N, C]."""
    lengths: np.ndarray
    """int16 [N], seconds actually present (1..T)."""
    ids: np.ndarray
    """numpy str array [N] of clip ids (video ids)."""
    class_names: tuple[str, ...]
    """len C."""
    source: str
    """What it was read from, and the format, e.g. ``tfrecord:/path``."""

    def __post_init__(self) -> None:
        """Check that the arrays agree in shape."""
        n = len(self.x)
        if self.x.ndim != 3 or self.y.ndim != 2:
            raise ValueError(
                f"Dataset needs x [N,T,F] and y [N,C], got {self.x.shape}, {self.y.shape}"
            )
        if not (len(self.y) == len(self.lengths) == len(self.ids) == n):
            raise ValueError("Dataset arrays x, y, lengths and ids differ in length")
        if self.y.shape[1] != len(self.class_names):
            raise ValueError(
                f"y has {self.y.shape[1]} columns but there are {len(self.class_names)} class names"
            )

    @property
    def n_clips(self) -> int:
        """Number of clips N."""
        return int(self.x.shape[0])

    @property
    def n_classes(self) -> int:
        """Number of classes C."""
        return int(self.y.shape[1])

    @property
    def n_frames(self) -> int:
        """Frames (seconds) per padded sequence T."""
        return int(self.x.shape[1])

    @property
    def n_features(self) -> int:
        """Features per frame F."""
        return int(self.x.shape[2])


# --------------------------------------------------------------------------------------------
# Class names
# --------------------------------------------------------------------------------------------


def read_class_names(csv_path: str | os.PathLike) -> tuple[str, ...]:
    """Read ``class_labels_indices.csv`` (``index,mid,display_name``) into display names.

    Rows may come in any order but the indices must be exactly ``0..C-1``.
    """
    path = Path(csv_path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = list(enumerate(csv.reader(fh), start=1))
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read class list {path} ({exc}); fix or replace the file") from exc
    names: dict[int, str] = {}
    for line, row in rows:
        if not row or (line == 1 and row[0].strip().lower() == "index"):
            continue
        index = _class_row_index(row, line, path)
        if index in names:
            raise InputError(
                f"duplicate class index {index} on line {line} of {path}: fix the file"
            )
        names[index] = ",".join(row[2:]).strip() if len(row) >= 3 else row[1].strip()
    if not names:
        raise InputError(f"class list {path} has no rows: fix the file or remove it")
    missing = sorted(set(range(len(names))) - set(names))
    if missing:
        raise InputError(
            f"class indices in {path} are not 0..{len(names) - 1} (index {missing[0]} is missing): "
            "fix the file"
        )
    return tuple(names[i] for i in range(len(names)))


def _class_row_index(row: list[str], line: int, path: Path) -> int:
    """Parse the index cell of one csv row."""
    cell = row[0].strip()
    if not cell.isdigit():
        raise InputError(
            f"non-numeric class index {cell!r} on line {line} of {path}: the first column must be "
            "0..C-1; fix the file"
        )
    if len(row) < 2:
        raise InputError(
            f"line {line} of {path} has no class name: rows must be index,mid,display_name; "
            "fix the file"
        )
    return int(cell)


def find_class_csv(path: str | os.PathLike) -> Path | None:
    """Find ``class_labels_indices.csv`` in the data's folder, then in its parent."""
    path = Path(path).resolve()
    folder = path if path.is_dir() else path.parent
    for candidate in (folder / CLASS_CSV, folder.parent / CLASS_CSV):
        if candidate.is_file():
            return candidate
    return None


@dataclass(frozen=True)
class _Classes:
    """The class names chosen for a data source, and why (for error messages)."""

    names: tuple[str, ...]
    why: str
    fix: str


def _resolve_classes(path: Path, n_classes: int | None, inferred: int) -> _Classes:
    """Choose the class list: the csv if found, else ``n_classes``, else ``inferred``."""
    valid = isinstance(n_classes, int | np.integer) and not isinstance(n_classes, bool)
    if n_classes is not None and (not valid or n_classes < 1):
        raise InputError(
            f"n_classes must be a positive integer, got {n_classes!r}; fix --n-classes"
        )
    csv_path = find_class_csv(path)
    if csv_path is not None:
        names = read_class_names(csv_path)
        if n_classes is not None and n_classes != len(names):
            raise InputError(
                f"n_classes={n_classes} disagrees with {csv_path} ({len(names)} classes): drop "
                "--n-classes or fix the class list"
            )
        return _Classes(
            names,
            f"{csv_path} lists {len(names)} classes",
            "use the class_labels_indices.csv that matches the data",
        )
    count = int(n_classes) if n_classes is not None else inferred
    names = tuple(f"class_{i}" for i in range(count))
    if n_classes is not None:
        return _Classes(names, f"n_classes is {count}", "pass a larger --n-classes")
    return _Classes(names, f"there are {count} classes", f"put a {CLASS_CSV} next to the data")


# --------------------------------------------------------------------------------------------
# Splits
# --------------------------------------------------------------------------------------------


def split_indices(
    n: int, val_fraction: float = 0.2, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Shuffle ``range(n)`` with ``seed`` and cut it into sorted (train, val) index arrays.

    Deterministic for a given ``(n, val_fraction, seed)``.  The validation side gets
    ``round(n * val_fraction)`` clips.
    """
    if not 0.0 < float(val_fraction) < 1.0:
        raise InputError(
            f"validation fraction must be between 0 and 1 (exclusive), got {val_fraction}; "
            "fix --val-fraction"
        )
    n_val = round(n * float(val_fraction))
    if n_val < 1 or n - n_val < 1:
        raise InputError(
            f"cannot split {n} clips with validation fraction {val_fraction}: one side would be "
            "empty; use more clips or change --val-fraction"
        )
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


# --------------------------------------------------------------------------------------------
# Format sniffing and parsing
# --------------------------------------------------------------------------------------------


def sniff_format(path: str | os.PathLike) -> str:
    """Return ``"tfrecord"``, ``"hdf5"``, ``"cache"`` or ``"audio"``; :class:`InputError` otherwise.

    ``audio``: a ``.csv`` file, or a folder without ``*.tfrecord`` shards that holds a CSV (in
    it or in a subfolder) other than AudioSet's own class and segment lists.
    """
    from tagtune.trainables.audio._table import candidate_csvs, is_audio_csv_name
    from tagtune.trainables.data._cache import CACHE_MARKER

    path = Path(path)
    if not path.exists():
        raise InputError(f"no such file or folder: {path}; {_PASS_DATA}")
    if path.is_dir():
        if (path / CACHE_MARKER).is_file():
            return "cache"
        with os.scandir(path) as it:  # stops at the first shard (glob lists the whole folder)
            shards = any(e.name.endswith(".tfrecord") for e in it)
        if not shards and candidate_csvs(path):
            return "audio"
        return "tfrecord"
    if is_audio_csv_name(path):
        return "audio"
    if path.suffix.lower() in HDF5_SUFFIXES:
        return "hdf5"
    if path.suffix.lower() == ".tfrecord":
        return "tfrecord"
    if path.name == CACHE_MARKER:
        return "cache"
    if _starts_with(path, _HDF5_MAGIC):
        return "hdf5"
    raise InputError(f"unknown data format: {path}; {_PASS_DATA}")


def _starts_with(path: Path, magic: bytes) -> bool:
    """Whether the file begins with ``magic`` (unreadable files do not)."""
    try:
        with open(path, "rb") as fh:
            return fh.read(len(magic)) == magic
    except OSError:
        return False


def source_files(path: str | os.PathLike, fmt: str) -> list[Path]:
    """The files a tfrecord/hdf5 source is read from (for cache keys)."""
    path = Path(path)
    if fmt == "tfrecord" and path.is_dir():
        return list_shards(path)
    return [path]


def parse_source(path: str | os.PathLike, fmt: str, n_classes: int | None = None) -> Dataset:
    """Parse a ``tfrecord`` or ``hdf5`` source (no cache involved)."""
    path = Path(path).resolve()
    if fmt == "tfrecord":
        return _load_tfrecord(path, n_classes)
    if fmt == "hdf5":
        return _load_hdf5(path, n_classes)
    raise ValueError(f"parse_source cannot read format {fmt!r}")


def _load_tfrecord(path: Path, n_classes: int | None) -> Dataset:
    """Read a folder of TFRecord shards (or one shard)."""
    raw = read_shards(source_files(path, "tfrecord"))
    if not raw.ids:
        raise InputError(f"no records in the *.tfrecord files of {path}: {_PASS_DATA}")
    counts = np.fromiter((len(ls) for ls in raw.labels), dtype=np.int64, count=len(raw.labels))
    flat = np.fromiter(
        (v for ls in raw.labels for v in ls), dtype=np.int64, count=int(counts.sum())
    )
    max_label = int(flat.max()) if flat.size else -1
    inferred = AUDIOSET_CLASSES if max_label < AUDIOSET_CLASSES else max_label + 1
    classes = _resolve_classes(path, n_classes, inferred)
    clip_of = np.repeat(np.arange(len(counts)), counts)
    bad = np.flatnonzero((flat < 0) | (flat >= len(classes.names)))
    if bad.size:
        clip = int(clip_of[bad[0]])
        file_index, record = (int(v) for v in raw.origin[clip])
        raise InputError(
            f"label index out of range in record {record} of {raw.files[file_index]}: label "
            f"{int(flat[bad[0]])} but {classes.why}; {classes.fix}, or remove the file"
        )
    y = np.zeros((len(counts), len(classes.names)), dtype=bool)
    y[clip_of, flat] = True
    return Dataset(
        x=raw.x,
        y=y,
        lengths=raw.lengths,
        ids=np.asarray(raw.ids, dtype=str),
        class_names=classes.names,
        source=f"tfrecord:{path}",
    )


def _load_hdf5(path: Path, n_classes: int | None) -> Dataset:
    """Read a packed HDF5 file (``x``, ``y``, ``video_id_list``)."""
    x, y, raw_ids = _read_hdf5_arrays(path)
    x = _fit_frames(x, path)
    classes = _resolve_classes(path, n_classes, y.shape[1])
    y = _fit_label_columns(y, classes, path, raw_ids)
    return Dataset(
        x=x,
        y=y,
        lengths=lengths_from_padding(x),
        ids=raw_ids,
        class_names=classes.names,
        source=f"hdf5:{path}",
    )


def _read_hdf5_arrays(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read and check the three arrays of a packed HDF5 file."""
    import h5py

    layout = "x uint8 [N,10,128], y bool [N,C] and video_id_list [N]"
    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise InputError(
            f"cannot open {path} as HDF5 ({exc}): the file is corrupt or not HDF5; "
            "re-download or replace it"
        ) from exc
    with handle:
        for key in ("x", "y", "video_id_list"):
            if key not in handle:
                raise InputError(
                    f"{path} has no '{key}' dataset: a packed HDF5 needs {layout}; repack the file"
                )
        x, y, ids = handle["x"][()], handle["y"][()], handle["video_id_list"][()]
    if x.ndim != 3 or y.ndim != 2 or ids.ndim != 1 or not len(x) == len(y) == len(ids):
        raise InputError(
            f"{path} has x {x.shape}, y {y.shape}, video_id_list {ids.shape}: a packed HDF5 needs "
            f"{layout}; repack the file"
        )
    if x.shape[2] != FEATURE_DIM:
        raise InputError(
            f"wrong embedding width in {path}: x has {x.shape[2]} features per second, expected "
            f"{FEATURE_DIM}; repack the file with AudioSet embeddings"
        )
    if x.dtype != np.uint8:
        raise InputError(
            f"x in {path} is {x.dtype}, expected uint8 (8-bit quantized embeddings); "
            "repack the file"
        )
    return x, y.astype(bool, copy=False), _decode_ids(ids)


def _decode_ids(raw: np.ndarray) -> np.ndarray:
    """Turn bytes/str/object ids into a numpy str array."""
    return np.asarray(
        [
            v.decode("utf-8", errors="replace") if isinstance(v, bytes | np.bytes_) else str(v)
            for v in raw
        ],
        dtype=str,
    )


def _fit_frames(x: np.ndarray, path: Path) -> np.ndarray:
    """Pad or cut sequences to :data:`MAX_FRAMES` seconds."""
    t = x.shape[1]
    if t > MAX_FRAMES:
        if x[:, MAX_FRAMES:].any():
            warnings.warn(
                f"{path}: clips longer than {MAX_FRAMES} s were cut to {MAX_FRAMES} s", stacklevel=3
            )
        return np.ascontiguousarray(x[:, :MAX_FRAMES])
    if t < MAX_FRAMES:
        return np.concatenate([x, np.zeros((len(x), MAX_FRAMES - t, x.shape[2]), np.uint8)], axis=1)
    return x


def _fit_label_columns(y: np.ndarray, classes: _Classes, path: Path, ids: np.ndarray) -> np.ndarray:
    """Pad or cut ``y`` to the class count; positives beyond it are an error."""
    c = len(classes.names)
    if y.shape[1] > c:
        rows, cols = np.nonzero(y[:, c:])
        if rows.size:
            raise InputError(
                f"label index out of range in clip {int(rows[0])} ({ids[rows[0]]}) of {path}: "
                f"label {c + int(cols[0])} but {classes.why}; {classes.fix}, or repack the file"
            )
        return np.ascontiguousarray(y[:, :c])
    if y.shape[1] < c:
        return np.concatenate([y, np.zeros((len(y), c - y.shape[1]), bool)], axis=1)
    return y


def lengths_from_padding(x: np.ndarray) -> np.ndarray:
    """Seconds present per clip: frames up to the last non-zero frame (at least 1)."""
    present = x.any(axis=2)
    last = x.shape[1] - np.argmax(present[:, ::-1], axis=1)
    return np.where(present.any(axis=1), last, 1).astype(np.int16)


def write_hdf5(path: str | os.PathLike, ds: Dataset) -> Path:
    """Write ``ds`` as a packed HDF5 file (``x``, ``y``, ``video_id_list`` as bytes)."""
    import h5py

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as fh:
        fh.create_dataset("x", data=np.asarray(ds.x, dtype=np.uint8))
        fh.create_dataset("y", data=np.asarray(ds.y, dtype=bool))
        fh.create_dataset(
            "video_id_list", data=np.char.encode(np.asarray(ds.ids, dtype=str), "utf-8")
        )
    return path


# --------------------------------------------------------------------------------------------
# The entry point
# --------------------------------------------------------------------------------------------


def load_dataset(
    path: str | os.PathLike,
    *,
    cache_dir: str | os.PathLike | None = None,
    n_classes: int | None = None,
) -> Dataset:
    """Load clips from a TFRecord folder, a packed HDF5 file or a tagtune cache folder.

    TFRecord and HDF5 sources are parsed once and cached under ``cache_dir`` (default:
    ``$TAGTUNE_CACHE_DIR`` or ``~/.cache/tagtune``); later loads memory-map the cache.

    Class names come from ``class_labels_indices.csv`` in the data's folder or its parent; without
    one they are ``class_0..class_{C-1}`` with C = ``n_classes``, else the label columns of an
    HDF5 file, else 527 for AudioSet-shaped TFRecords (labels < 527), else max label + 1.
    """
    from tagtune.trainables.data import _cache

    path = Path(path)
    fmt = sniff_format(path)
    if fmt == "audio":
        raise InputError(
            f"{path} holds audio files listed in a CSV, and this command reads embeddings "
            f"({_PASS_DATA.removeprefix('pass --train with ')}); audio works with `tagtune search` "
            "and `tagtune train` (family densenet_audio)"
        )
    if fmt == "cache":
        ds = _cache.read_cache(path if path.is_dir() else path.parent)
        if n_classes is not None and n_classes != ds.n_classes:
            raise InputError(
                f"n_classes={n_classes} disagrees with the cache {path} ({ds.n_classes} classes): "
                "drop --n-classes"
            )
        return ds
    return _cache.load_cached(path, fmt, n_classes, cache_dir)
