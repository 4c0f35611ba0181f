"""The in-memory clip set of embeddings, class names, splits and the frames helper.

:class:`Dataset` is what every embedding reader (TFRecord, HDF5, the tagtune cache; see
``_formats``) returns; :func:`fit_frames` is the one pad/cut-to-T-frames helper.
"""

from __future__ import annotations

import csv
import os
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tagtune.errors import InputError
from tagtune.trainables.data._trial import InputScaling, TrialData

CLASS_CSV = "class_labels_indices.csv"
"""File name of the class list, looked for next to the data and in its parent folder."""
AUDIOSET_CLASSES = 527
"""Number of AudioSet classes, used for AudioSet-shaped data without a class list."""


@dataclass(frozen=True, eq=False)
class Dataset:
    """A set of clips: embedding sequences, multi-hot labels, lengths and ids.

    Compared by identity (the arrays make field-wise ``==`` ambiguous).
    """

    x: np.ndarray
    """[N, T, F] of any T (1 for per-clip embeddings) and F; uint8 (AudioSet: T = 10 seconds max,
    F = 128) or float16/32/64 as read; zero-padded at the end for clips shorter than T."""
    y: np.ndarray
    """bool [N, C] (multi-hot; one-hot for ``task == "multiclass"``)."""
    lengths: np.ndarray
    """int16 [N], frames actually present (1..T)."""
    ids: np.ndarray
    """numpy str array [N] of clip ids (video ids)."""
    class_names: tuple[str, ...]
    """len C."""
    source: str
    """What it was read from, and the format, e.g. ``tfrecord:/path``."""
    groups: np.ndarray | None = None
    """numpy str array [N]: the recording / speaker / source each clip was cut from (clips of one
    group never sit on both sides of a split), or ``None``."""
    split: np.ndarray | None = None
    """numpy str array [N] of the data set's own split per clip (``train``, ``valid``, ``test``),
    or ``None`` (the seeded split is used)."""
    task: str = "multilabel"
    """``multilabel`` (sigmoid, any number of classes per clip) or ``multiclass`` (exactly one
    class per clip: softmax cross-entropy, accuracy and top-k)."""
    read_keys: dict[str, str] | None = None
    """The non-default ``feature_key`` / ``label_key`` it was read with (``--feature-key`` ...):
    checkpoints record them, so ``tagtune predict`` reads new data of the same layout alike."""

    def __post_init__(self) -> None:
        """Check that the arrays agree in shape."""
        n = len(self.x)
        if self.x.ndim != 3 or self.y.ndim != 2:
            raise ValueError(f"Dataset needs x [N,T,F] and y [N,C], got {self.x.shape}, {self.y.shape}")
        if not (len(self.y) == len(self.lengths) == len(self.ids) == n):
            raise ValueError("Dataset arrays x, y, lengths and ids differ in length")
        if self.y.shape[1] != len(self.class_names):
            raise ValueError(f"y has {self.y.shape[1]} columns but there are {len(self.class_names)} class names")
        for name in ("groups", "split"):
            value = getattr(self, name)
            if value is not None and len(value) != n:
                raise ValueError(f"Dataset {name} has {len(value)} entries for {n} clips")
        if self.task not in ("multilabel", "multiclass"):
            raise ValueError(f"Dataset task must be multilabel or multiclass, got {self.task!r}")

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

    @property
    def frame_shape(self) -> tuple[int, int]:
        """(T, F)."""
        return self.n_frames, self.n_features

    @property
    def single_label(self) -> bool:
        """``task == "multiclass"``: one class per clip (softmax cross-entropy, accuracy, top-k)."""
        return self.task == "multiclass"

    def preload(self, sample_rates: Iterable[int] = ()) -> Dataset:
        """Nothing to decode (the arrays are read); returns ``self``."""
        return self

    def trial_data(self, *, val_fraction: float = 0.2, seed: int = 0) -> TrialData:
        """Every clip, split by :meth:`splits` into (train, validation); the data set's own test
        clips are held out.  Float features are checked for NaN / inf (the error names the clip)
        and standardized with the training clips' statistics (:class:`InputScaling`)."""
        from tagtune.trainables.data._split import check_finite

        train_idx, val_idx, _ = self.splits(val_fraction, seed)
        check_finite(self.x, self.ids, self.source)
        x = np.asarray(self.x)
        return TrialData(
            x=x,
            y=np.asarray(self.y),
            train_idx=train_idx,
            val_idx=val_idx,
            class_names=tuple(self.class_names),
            single_label=self.single_label,
            scaling=InputScaling.fit(x, train_idx),
            read_keys=self.read_keys,
        )

    def splits(self, val_fraction: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(train, validation, test) clip indices: the data set's own split where it has one, else
        the seeded split (grouped by ``groups`` where set); see :mod:`._split`."""
        from tagtune.trainables.data._split import dataset_splits

        return dataset_splits(self, val_fraction, seed)


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
            raise InputError(f"duplicate class index {index} on line {line} of {path}: fix the file")
        names[index] = ",".join(row[2:]).strip() if len(row) >= 3 else row[1].strip()
    if not names:
        raise InputError(f"class list {path} has no rows: fix the file or remove it")
    missing = sorted(set(range(len(names))) - set(names))
    if missing:
        raise InputError(
            f"class indices in {path} are not 0..{len(names) - 1} (index {missing[0]} is missing): fix the file"
        )
    return tuple(names[i] for i in range(len(names)))


def _class_row_index(row: list[str], line: int, path: Path) -> int:
    """Parse the index cell of one csv row."""
    cell = row[0].strip()
    if not cell.isdigit():
        raise InputError(
            f"non-numeric class index {cell!r} on line {line} of {path}: the first column must be 0..C-1; fix the file"
        )
    if len(row) < 2:
        raise InputError(f"line {line} of {path} has no class name: rows must be index,mid,display_name; fix the file")
    return int(cell)


def find_class_csv(path: str | os.PathLike) -> Path | None:
    """Find ``class_labels_indices.csv`` in the data's folder, then in its parent."""
    path = Path(path).resolve()
    folder = path if path.is_dir() else path.parent
    for candidate in (folder / CLASS_CSV, folder.parent / CLASS_CSV):
        if candidate.is_file():
            return candidate
    return None


HEAR_VOCABULARY = "labelvocabulary.csv"


def read_vocabulary(csv_path: Path) -> tuple[str, ...]:
    """HEAR's ``labelvocabulary.csv`` (``idx,label``, indices 0..C-1) as names in index order."""
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read {csv_path} ({exc}); fix or replace the file") from exc
    if not rows or "idx" not in rows[0] or "label" not in rows[0]:
        raise InputError(f"{csv_path} needs the columns idx,label (HEAR's label vocabulary); fix the file")
    try:
        names = {int(r["idx"]): str(r["label"]).strip() for r in rows}
    except ValueError as exc:
        raise InputError(f"{csv_path}: a non-numeric idx ({exc}); fix the file") from exc
    if sorted(names) != list(range(len(names))):
        raise InputError(f"{csv_path}: idx must be 0..{len(names) - 1} with no gaps; fix the file")
    return tuple(names[i] for i in range(len(names)))


def find_vocabulary(path: Path) -> tuple[str, ...] | None:
    """Class names from a ``labelvocabulary.csv`` or ``class_labels_indices.csv`` next to the data."""
    folder = path if path.is_dir() else path.parent
    if (folder / HEAR_VOCABULARY).is_file():
        return read_vocabulary(folder / HEAR_VOCABULARY)
    found = find_class_csv(path)
    return read_class_names(found) if found is not None else None


def write_class_csv(path: str | os.PathLike, names: tuple[str, ...]) -> Path:
    """Write ``index,mid,display_name`` rows like Google's ``class_labels_indices.csv``."""
    path = Path(path)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["index", "mid", "display_name"])
        for i, name in enumerate(names):
            writer.writerow([i, f"/m/synth{i}", name])
    return path


@dataclass(frozen=True)
class Classes:
    """The class names chosen for a data source, and why (for error messages)."""

    names: tuple[str, ...]
    why: str
    fix: str


def resolve_classes(path: Path, n_classes: int | None, inferred: int) -> Classes:
    """Choose the class list: the csv if found, else ``n_classes``, else ``inferred``."""
    valid = isinstance(n_classes, int | np.integer) and not isinstance(n_classes, bool)
    if n_classes is not None and (not valid or n_classes < 1):
        raise InputError(f"n_classes must be a positive integer, got {n_classes!r}; fix --n-classes")
    csv_path = find_class_csv(path)
    if csv_path is not None:
        names = read_class_names(csv_path)
        if n_classes is not None and n_classes != len(names):
            raise InputError(
                f"n_classes={n_classes} disagrees with {csv_path} ({len(names)} classes): drop "
                "--n-classes or fix the class list"
            )
        return Classes(
            names,
            f"{csv_path} lists {len(names)} classes",
            "use the class_labels_indices.csv that matches the data",
        )
    count = int(n_classes) if n_classes is not None else inferred
    names = tuple(f"class_{i}" for i in range(count))
    if n_classes is not None:
        return Classes(names, f"n_classes is {count}", "pass a larger --n-classes")
    return Classes(names, f"there are {count} classes", f"put a {CLASS_CSV} next to the data")


# --------------------------------------------------------------------------------------------
# Splits
# --------------------------------------------------------------------------------------------


def split_indices(n: int, val_fraction: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Shuffle ``range(n)`` with ``seed`` and cut it into sorted (train, val) index arrays.

    Deterministic for a given ``(n, val_fraction, seed)``.  The validation side gets
    ``round(n * val_fraction)`` clips.
    """
    from tagtune.trainables.data._split import seeded_split

    return seeded_split(n, val_fraction, seed)


# --------------------------------------------------------------------------------------------
# Frames
# --------------------------------------------------------------------------------------------


def lengths_from_padding(x: np.ndarray) -> np.ndarray:
    """Seconds present per clip: frames up to the last non-zero frame (at least 1)."""
    present = np.asarray(x.any(axis=2))
    last = x.shape[1] - np.argmax(present[:, ::-1], axis=1)
    return np.where(present.any(axis=1), last, 1).astype(np.int16)


def fit_frames(x: np.ndarray, n_frames: int, where: str | os.PathLike | None = None) -> np.ndarray:
    """Sequences ``x [N, T, F]`` as exactly ``n_frames`` frames: zero-padded at the end or cut.

    ``x`` itself when ``T == n_frames``; a cut keeps the dtype, padding adds zeros of it.  With
    ``where`` (the source's name), cutting frames that hold data warns once naming it.
    """
    t = x.shape[1]
    if t > n_frames:
        if where is not None and x[:, n_frames:].any():
            warnings.warn(f"{where}: clips longer than {n_frames} s were cut to {n_frames} s", stacklevel=3)
        return np.ascontiguousarray(x[:, :n_frames])
    if t < n_frames:
        pad = np.zeros((len(x), n_frames - t, *x.shape[2:]), dtype=x.dtype)
        return np.concatenate([x, pad], axis=1)
    return x
