"""A researcher's own embeddings as NumPy files: one ``.npz``, or ``.npy`` features with a CSV.

* ``npz``: ``x`` (``--feature-key``) ``[N, D]`` or ``[N, T, D]``, ``y`` (``--label-key``; a
  multi-hot ``[N, C]``, index lists ``[N, K]`` padded with -1, class indices ``[N]`` or label
  names ``[N]`` / ``[N, K]`` padded with ``""``), optional ``ids``, ``lengths``, ``groups``
  (``--group-key``), ``split`` (train / valid / test) and ``class_names``;
* ``npy-csv``: ``features.npy`` ``[N, D]`` / ``[N, T, D]`` with ``features.csv`` beside it (or the
  folder's only CSV): columns ``id`` (or the first), ``labels`` (``--label-key``: a name or index,
  several separated by ``;``), optional ``group`` (``--group-key``), ``split``, ``length``.

Class names: ``class_names`` in the npz, else a ``labelvocabulary.csv`` (``idx,label``) or
``class_labels_indices.csv`` next to the data, else the label strings (sorted) or ``class_i``.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from tagtune.errors import InputError
from tagtune.trainables.data._arrays import build_dataset, require_keys
from tagtune.trainables.data._dataset import HEAR_VOCABULARY, find_vocabulary
from tagtune.trainables.data._formats import _ParsedReader
from tagtune.trainables.data._options import DEFAULT_OPTIONS, ReadOptions


class NpzReader(_ParsedReader):
    """One ``.npz`` file with ``x`` and ``y`` (module docstring)."""

    format = "npz"

    def sniff(self, path: Path) -> bool:
        """An ``.npz`` file."""
        return path.is_file() and path.suffix.lower() == ".npz"

    def parse(self, path: Path, n_classes: int | None, options: ReadOptions = DEFAULT_OPTIONS) -> Any:
        """Read and check the arrays."""
        fx, fy = options.feature_key or "x", options.label_key or "y"
        fg = options.group_key or "groups"
        try:
            with np.load(path, allow_pickle=False) as npz:
                keys = list(npz.files)
                wanted = (fx, fy, fg if options.group_key is not None else None)
                need = "; an npz needs x (features) and y (labels), or name them with {flag}"
                require_keys(path, keys, wanted, noun="array", need=need)
                arrays = {k: npz[k] for k in keys}
        except InputError:
            raise
        except (OSError, ValueError) as exc:
            raise InputError(
                f"cannot read {path} as npz ({exc}); save plain arrays (no Python objects) with numpy.savez"
            ) from exc
        names = arrays.get("class_names")
        vocabulary = tuple(str(v) for v in names) if names is not None else find_vocabulary(path)
        return build_dataset(
            arrays[fx],
            arrays[fy],
            source=f"npz:{path}",
            ids=arrays.get("ids"),
            lengths=arrays.get("lengths"),
            groups=arrays.get(fg),
            split=arrays.get("split"),
            vocabulary=vocabulary,
            n_classes=n_classes,
        )


class NpyCsvReader(_ParsedReader):
    """``features.npy`` with a CSV of ids and labels beside it (module docstring)."""

    format = "npy-csv"

    def sniff(self, path: Path) -> bool:
        """An ``.npy`` file."""
        return path.is_file() and path.suffix.lower() == ".npy"

    def stat_lines(self, path: Path) -> list[bytes]:
        """The npy and its CSV."""
        from tagtune.trainables.data._cache import stat_line

        return [stat_line(path, path.name), stat_line(table_of(path), table_of(path).name)]

    def parse(self, path: Path, n_classes: int | None, options: ReadOptions = DEFAULT_OPTIONS) -> Any:
        """Read the features (memory-mapped) and the CSV."""
        table = table_of(path)
        try:
            x = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot read {path} as .npy ({exc}); save a plain array with numpy.save") from exc
        with open(table, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.DictReader(fh))
        columns = list(rows[0]) if rows else []
        label_col = options.label_key or "labels"
        if label_col not in columns and options.label_key is None and "label" in columns:
            label_col = "label"
        if label_col not in columns:
            raise InputError(
                f"{table} has no {label_col!r} column (it has: {', '.join(columns) or 'none'}); name it "
                "with --label-key"
            )
        group_col = options.group_key or "group"
        if options.group_key is not None and group_col not in columns:
            raise InputError(f"{table} has no {group_col!r} column for --group-key (it has: {', '.join(columns)})")
        if len(rows) != len(x):
            raise InputError(f"{table} has {len(rows)} rows but {path} has {len(x)} clips; one row per clip")
        id_col = "id" if "id" in columns else columns[0]
        labels: list[Any] = []
        for r in rows:
            cells = [c.strip() for c in (r[label_col] or "").split(";") if c.strip()]
            values: list[Any] = [int(c) if c.lstrip("-").isdigit() else c for c in cells]
            labels.append(values if len(values) != 1 else values[0])
        if any(isinstance(v, list) for v in labels):
            labels = [v if isinstance(v, list) else [v] for v in labels]
        opt = {c: [r[c] for r in rows] for c in (group_col, "split") if c in columns}
        lengths = np.array([int(r["length"]) for r in rows]) if "length" in columns else None
        return build_dataset(
            np.asarray(x),
            labels,
            source=f"npy-csv:{path}",
            ids=[r[id_col] for r in rows],
            lengths=lengths,
            groups=opt.get(group_col),
            split=opt.get("split"),
            vocabulary=find_vocabulary(path),
            n_classes=n_classes,
        )


def table_of(npy: Path) -> Path:
    """The CSV of ``npy``: ``<stem>.csv`` beside it, else the folder's only CSV (not a vocabulary)."""
    same = npy.with_suffix(".csv")
    if same.is_file():
        return same
    skip = {HEAR_VOCABULARY, "class_labels_indices.csv"}
    others = [p for p in sorted(npy.parent.glob("*.csv")) if p.name not in skip]
    if len(others) == 1:
        return others[0]
    raise InputError(
        f"{npy} needs a CSV of ids and labels: put {same.name} (columns id,labels) beside it"
        + (f" (found {len(others)} CSVs there, none named so)" if others else "")
    )
