"""Audio-file datasets described by a CSV: the three styles, sniffed by their columns.

* FSDKaggle2018 (``fname,label[,manually_verified]``; FSD50K's ``labels`` and ``split`` columns
  are read too): labels are class names, several separated by commas (multi-label);
  ``manually_verified`` marks trusted labels (seed 003's loss masking always keeps them).
* ESC-50 (``filename,fold,target,category``): class index ``target`` named ``category``; the
  official folds.
* FSDD (``filename,digit,...,split``): the spoken digit is the class; the official ``split``
  (``train``/``test``).

:func:`read_table` turns one CSV into an :class:`AudioTable` (resolved file paths, multi-hot
labels, verified flags, split and fold per clip); :func:`find_csv` picks the CSV of a folder.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tagtune.errors import InputError

#: Column sets that identify each style (lower-cased header names).
STYLES: dict[str, frozenset[str]] = {
    "esc50": frozenset({"filename", "fold", "target", "category"}),
    "fsdd": frozenset({"filename", "digit", "split"}),
    "fsdkaggle": frozenset({"fname", "label"}),
    "fsd50k": frozenset({"fname", "labels"}),
}
EXPECTED = (
    "expected fname,label[,manually_verified] (FSDKaggle2018), "
    "filename,fold,target,category (ESC-50) or filename,digit,...,split (FSDD)"
)
#: CSV files that belong to AudioSet embedding releases, never an audio-file list.
NOT_AUDIO_CSVS = (
    "class_labels_indices.csv",
    "balanced_train_segments.csv",
    "unbalanced_train_segments.csv",
    "eval_segments.csv",
)
SPLITS = ("train", "val", "test")
_SPLIT_NAMES = {
    "train": "train",
    "training": "train",
    "dev": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
    "eval": "test",
    "evaluation": "test",
}
_AUDIO_SUBFOLDERS = ("audio", "recordings", "wav", "wavs", "clips")
_TRUE = {"1", "true", "yes", "y", "t"}
_FALSE = {"0", "false", "no", "n", "f", ""}


@dataclass(frozen=True, eq=False)
class AudioTable:
    """What a CSV says about its clips (nothing decoded yet)."""

    csv_path: Path
    style: str
    files: tuple[Path, ...]
    """Absolute path of each clip's audio file."""
    ids: np.ndarray
    """str [N]: each clip's file name as the CSV lists it."""
    y: np.ndarray
    """bool [N, C] multi-hot labels."""
    class_names: tuple[str, ...]
    verified: np.ndarray | None
    """bool [N] (FSDKaggle2018's ``manually_verified``), or ``None`` when the CSV has no such column."""
    split: np.ndarray
    """str [N]: ``train``, ``val`` or ``test`` (``train`` where the CSV has no split column)."""
    fold: np.ndarray
    """int [N]: the official fold (ESC-50), 0 where the CSV has none."""

    @property
    def n_clips(self) -> int:
        return len(self.files)

    @property
    def single_label(self) -> bool:
        """Every clip has exactly one label."""
        return bool((self.y.sum(axis=1) == 1).all())


def is_audio_csv_name(path: Path) -> bool:
    """A ``.csv`` that may list audio files (not one of AudioSet's own CSVs)."""
    return path.suffix.lower() == ".csv" and path.name.lower() not in NOT_AUDIO_CSVS


def candidate_csvs(folder: Path) -> list[Path]:
    """CSV files of ``folder`` and of its immediate subfolders that may list audio files."""
    found = [p for p in sorted(folder.glob("*.csv")) if p.is_file() and is_audio_csv_name(p)]
    found += [p for p in sorted(folder.glob("*/*.csv")) if p.is_file() and is_audio_csv_name(p)]
    return found


def _header(path: Path) -> list[str]:
    """The lower-cased column names of a CSV (``[]`` for an empty file)."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            row = next(csv.reader(fh), [])
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read {path} ({exc}); fix or replace the CSV") from None
    return [c.strip().lower() for c in row]


def sniff_style(path: Path) -> str | None:
    """The style of the CSV at ``path`` from its columns, or ``None``."""
    cols = set(_header(path))
    for style, needed in STYLES.items():
        if needed <= cols:
            return style
    return None


def find_csv(path: str | os.PathLike) -> Path:
    """The CSV to read for ``path``: the file itself, or the one audio CSV of a folder.

    A folder may hold several CSVs; exactly one of them must have a known column set (those in
    the folder itself win over those in its subfolders).
    """
    path = Path(path)
    if path.is_file():
        return path
    csvs = candidate_csvs(path)
    if not csvs:
        raise InputError(f"no CSV in {path} or its subfolders; put the audio list (e.g. meta.csv) there")
    known = [p for p in csvs if sniff_style(p) is not None]
    if not known:
        if len(csvs) == 1:
            cols = ",".join(_header(csvs[0])) or "none"
            raise InputError(f"{csvs[0]}: unknown columns {cols}; {EXPECTED}")
        listed = ", ".join(str(p) for p in csvs[:5])
        raise InputError(f"no CSV in {path} has known columns (found {listed}); {EXPECTED}")
    top = [p for p in known if p.parent == path] or known
    if len(top) > 1:
        listed = ", ".join(p.name for p in top[:5])
        raise InputError(f"{path} holds several audio CSVs ({listed}); pass one of them as --train")
    return top[0]


# --------------------------------------------------------------------------------------------
# Reading one CSV
# --------------------------------------------------------------------------------------------


def _rows(path: Path) -> list[dict[str, str]]:
    """The CSV's rows as dicts keyed by lower-cased, stripped column names."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            header = [c.strip().lower() for c in next(reader, [])]
            rows = []
            for line, row in enumerate(reader, start=2):
                if not any(cell.strip() for cell in row):
                    continue
                if len(row) != len(header):
                    raise InputError(
                        f"line {line} of {path} has {len(row)} fields but the header has "
                        f"{len(header)}; fix the row (quote labels that hold commas)"
                    )
                rows.append({"_line": str(line), **{h: c.strip() for h, c in zip(header, row, strict=False)}})
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"cannot read {path} ({exc}); fix or replace the CSV") from None
    if not rows:
        raise InputError(f"{path} lists no clips; add rows or pass another CSV")
    return rows


def _cell(row: dict[str, str], column: str, path: Path) -> str:
    value = row.get(column, "")
    if not value:
        raise InputError(f"line {row['_line']} of {path} has an empty '{column}'; fill it or drop the row")
    return value


def _sort_names(names: set[str]) -> tuple[str, ...]:
    """Class names in numeric order when all are integers (digits), else alphabetical."""
    if all(n.lstrip("-").isdigit() for n in names):
        return tuple(sorted(names, key=int))
    return tuple(sorted(names))


def _split_of(row: dict[str, str], path: Path) -> str:
    raw = row.get("split", "").lower()
    if not raw:
        return "train"
    if raw not in _SPLIT_NAMES:
        raise InputError(f"line {row['_line']} of {path}: unknown split {raw!r}; use train, val or test")
    return _SPLIT_NAMES[raw]


def _flag(row: dict[str, str], column: str, path: Path) -> bool:
    raw = row.get(column, "").lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise InputError(f"line {row['_line']} of {path}: {column} is {raw!r}; use 1 or 0")


def _labels_by_name(rows: list[dict[str, str]], column: str, path: Path) -> tuple[list[list[str]], tuple[str, ...]]:
    """Labels of each row (comma-separated names) and the sorted class names."""
    per_row = []
    for row in rows:
        names = [n.strip() for n in _cell(row, column, path).split(",") if n.strip()]
        if not names:
            raise InputError(f"line {row['_line']} of {path} has no label in '{column}'; fill it or drop the row")
        per_row.append(names)
    return per_row, _sort_names({n for names in per_row for n in names})


def _esc50_labels(rows: list[dict[str, str]], path: Path) -> tuple[list[list[str]], tuple[str, ...]]:
    """ESC-50: the class index ``target`` and its name ``category`` must agree on every row."""
    names: dict[int, str] = {}
    per_row = []
    for row in rows:
        target = _cell(row, "target", path)
        if not target.isdigit():
            raise InputError(f"line {row['_line']} of {path}: target {target!r} is not a class index; fix the row")
        category = _cell(row, "category", path)
        if names.setdefault(int(target), category) != category:
            raise InputError(
                f"line {row['_line']} of {path}: target {target} is {category!r} here but "
                f"{names[int(target)]!r} above; fix the CSV"
            )
        per_row.append([category])
    # Indices without a row keep a placeholder name, so ``target`` stays the column index.
    ordered = tuple(names.get(i, f"class_{i}") for i in range(max(names) + 1))
    return per_row, ordered


def _folds(rows: list[dict[str, str]], path: Path) -> np.ndarray:
    out = []
    for row in rows:
        raw = _cell(row, "fold", path)
        if not raw.isdigit() or int(raw) < 1:
            raise InputError(f"line {row['_line']} of {path}: fold {raw!r} is not a number >= 1; fix the row")
        out.append(int(raw))
    return np.asarray(out, dtype=np.int64)


_READERS: dict[str, tuple[str, Callable[[list[dict[str, str]], Path], tuple[list[list[str]], tuple[str, ...]]]]] = {
    "fsdkaggle": ("fname", lambda rows, p: _labels_by_name(rows, "label", p)),
    "fsd50k": ("fname", lambda rows, p: _labels_by_name(rows, "labels", p)),
    "esc50": ("filename", _esc50_labels),
    "fsdd": ("filename", lambda rows, p: _labels_by_name(rows, "digit", p)),
}


def _audio_root(csv_path: Path, names: list[str], lines: list[str]) -> Path:
    """The folder the CSV's file names are relative to: the CSV's folder, its parent, or one of
    their subfolders (``audio/``, ``recordings/``, ...); found from the first rows."""
    here, parent = csv_path.parent, csv_path.parent.parent
    roots = [here, *(here / s for s in _AUDIO_SUBFOLDERS), parent, *(parent / s for s in _AUDIO_SUBFOLDERS)]
    roots += [d for base in (here, parent) for d in sorted(base.iterdir()) if d.is_dir()]
    for name in names[:20]:
        for root in roots:
            if (root / name).is_file():
                return root
    raise InputError(
        f"line {lines[0]} of {csv_path} names {names[0]}, which is not in {here}, its parent or "
        "their subfolders; put the audio files next to the CSV (or in audio/) or fix the name"
    )


def read_table(path: str | os.PathLike) -> AudioTable:
    """Read the audio CSV at ``path`` (a file, or a folder holding one; see :func:`find_csv`)."""
    csv_path = find_csv(path).resolve()
    style = sniff_style(csv_path)
    if style is None:
        cols = ",".join(_header(csv_path)) or "none"
        raise InputError(f"{csv_path}: unknown columns {cols}; {EXPECTED}")
    rows = _rows(csv_path)
    file_col, read_labels = _READERS[style]
    names = [_cell(row, file_col, csv_path) for row in rows]
    lines = [row["_line"] for row in rows]
    per_row, class_names = read_labels(rows, csv_path)
    root = _audio_root(csv_path, names, lines)
    files = []
    for name, line in zip(names, lines, strict=False):
        file = root / name
        if not file.is_file():
            raise InputError(
                f"line {line} of {csv_path} names {name}, which is not in {root}; add the file or drop the row"
            )
        files.append(file.resolve())
    index = {n: i for i, n in enumerate(class_names)}
    y = np.zeros((len(rows), len(class_names)), dtype=bool)
    for i, labels in enumerate(per_row):
        y[i, [index[n] for n in labels]] = True
    has_verified = "manually_verified" in rows[0]
    verified = np.asarray([_flag(r, "manually_verified", csv_path) for r in rows]) if has_verified else None
    return AudioTable(
        csv_path=csv_path,
        style=style,
        files=tuple(files),
        ids=np.asarray(names, dtype=str),
        y=y,
        class_names=class_names,
        verified=verified,
        split=np.asarray([_split_of(r, csv_path) for r in rows], dtype="<U5"),
        fold=_folds(rows, csv_path) if style == "esc50" else np.zeros(len(rows), dtype=np.int64),
    )
