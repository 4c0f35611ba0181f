"""Raw arrays -> a :class:`Dataset`: features of any shape and dtype, labels of any kind.

Every reader of a researcher's own embeddings (NumPy, HEAR, HDF5, TFRecord ``Example``) hands its
arrays to :func:`build_dataset`, so shapes, dtypes, labels and bad input are handled once:

* features: ``[N, D]`` (one embedding per clip, T = 1), ``[N, T, D]``, or one ``[T_i, D]`` array
  per clip (padded with zeros to the longest, ``lengths`` = T_i); uint8 and float16/32/64 are kept
  as read, other numbers become float32; NaN / inf in float features is refused naming the clip;
* labels (:func:`encode_labels`): a multi-hot ``[N, C]`` matrix (multi-label), 1-D class indices
  or label names (single-label), or per-clip lists of indices or names (multi-label).
"""

from __future__ import annotations

from collections.abc import Container, Sequence
from typing import Any

import numpy as np

from tagtune.errors import InputError
from tagtune.trainables.data._dataset import Dataset, lengths_from_padding

KEPT_DTYPES = (np.uint8, np.float16, np.float32, np.float64)


def as_features(x: Any, where: str, ids: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """``x`` as ``[N, T, D]`` (kept dtype) and the lengths when clips had different T (else None).

    ``x``: an array ``[N, D]`` / ``[N, T, D]`` or a sequence of per-clip arrays ``[D]`` / ``[T_i, D]``.
    """
    if isinstance(x, np.ndarray) and x.dtype != object:
        if x.ndim == 2:
            x = x[:, None, :]
        if x.ndim != 3:
            raise InputError(f"{where}: features have shape {x.shape}; expected [N, D] or [N, T, D]")
        return _dtype(x, where), None
    clips = [np.asarray(c) for c in x]
    if not clips:
        raise InputError(f"{where}: no clips")
    clips = [c[None, :] if c.ndim == 1 else c for c in clips]
    dims = {c.shape[1:] for c in clips if c.ndim == 2}
    for i, c in enumerate(clips):
        if c.ndim != 2:
            name = ids[i] if ids is not None else i
            raise InputError(f"{where}: clip {name} has features of shape {c.shape}; expected [T, D] or [D]")
    if len(dims) > 1:
        first = clips[0].shape[1]
        i = next(i for i, c in enumerate(clips) if c.shape[1] != first)
        name = ids[i] if ids is not None else i
        raise InputError(
            f"{where}: clip {name} has {clips[i].shape[1]} features per frame but clip 0 has {first}; "
            "every clip needs the same feature width"
        )
    lengths = np.array([len(c) for c in clips], dtype=np.int64)
    dtype = np.result_type(*[c.dtype for c in clips])
    out = np.zeros((len(clips), int(lengths.max()), clips[0].shape[1]), dtype=dtype)
    for i, c in enumerate(clips):
        out[i, : len(c)] = c
    return _dtype(out, where), lengths


def _dtype(x: np.ndarray, where: str) -> np.ndarray:
    """uint8 and float16/32/64 as they are, other numbers as float32."""
    if x.dtype in KEPT_DTYPES:
        return x
    if x.dtype.kind not in "biuf":
        raise InputError(f"{where}: features are {x.dtype}; expected numbers (uint8 or float)")
    return x.astype(np.float32)


def require_keys(
    path: Any,
    keys: Sequence[str],
    wanted: tuple[str, str, str | None],
    *,
    noun: str,
    need: str,
    present: Container[str] | None = None,
) -> None:
    """The feature and label keys (``wanted[:2]``, named by --feature-key / --label-key) and the
    --group-key one (``wanted[2]``, None when not asked for) are in the file (``present``,
    default ``keys``), else InputError listing ``keys``, the keys the file has; ``need`` ends the
    message (what the format needs, the fix; ``{flag}`` names the flag)."""
    fx, fy, fg = wanted
    has = keys if present is None else present
    for key, flag in ((fx, "--feature-key"), (fy, "--label-key")):
        if key not in has:
            raise InputError(
                f"{path} has no '{key}' {noun} (it has: {', '.join(keys) or 'none'}){need.format(flag=flag)}"
            )
    if fg is not None and fg not in has:
        raise InputError(f"{path} has no '{fg}' {noun} for --group-key (it has: {', '.join(keys)})")


def check_lengths(lengths: Any, n: int, t: int, where: str) -> np.ndarray:
    """Per-clip frame counts 1..T."""
    lengths = np.asarray(lengths)
    if lengths.shape != (n,) or lengths.dtype.kind not in "iu":
        raise InputError(f"{where}: lengths has shape {lengths.shape} ({lengths.dtype}); expected [N] integers")
    bad = np.flatnonzero((lengths < 1) | (lengths > t))
    if bad.size:
        raise InputError(f"{where}: clip {int(bad[0])} has length {int(lengths[bad[0]])}; lengths must be 1..{t}")
    return lengths


def _is_str(v: Any) -> bool:
    return isinstance(v, str | bytes | np.str_ | np.bytes_)


def _text(v: Any) -> str:
    return v.decode("utf-8", errors="replace") if isinstance(v, bytes | np.bytes_) else str(v)


def encode_labels(
    y: Any,
    *,
    vocabulary: Sequence[str] | None,
    n_classes: int | None,
    where: str,
    ids: Sequence[str],
) -> tuple[np.ndarray, tuple[str, ...], str]:
    """(multi-hot bool ``[N, C]``, class names, task) of labels of any kind (module docstring).

    ``vocabulary``: the class names in index order (a vocabulary CSV), or None: then names come
    from the label strings (sorted) or are ``class_0..`` (``n_classes``, else max index + 1).
    A label outside the vocabulary is an :class:`InputError` naming the clip.
    """
    if isinstance(y, np.ndarray) and y.dtype != object and y.ndim == 2 and y.dtype.kind in "biuf":
        if y.dtype.kind == "f" or y.dtype.kind == "b" or set(np.unique(y).tolist()) <= {0, 1}:
            return _multi_hot(y, vocabulary, n_classes, where, ids)
        index_rows: list[list[Any]] = [[int(v) for v in r if v >= 0] for r in y]  # padded with -1
        return _from_lists(index_rows, vocabulary, n_classes, where, ids, "multilabel")
    if isinstance(y, np.ndarray) and y.dtype != object and y.ndim == 2 and y.dtype.kind in "SU":
        rows: list[list[Any]] = [[_text(v) for v in r if _text(v) != ""] for r in y]  # padded with ""
        return _from_lists(rows, vocabulary, n_classes, where, ids, "multilabel")
    values = list(y)
    if all(not isinstance(v, list | tuple | np.ndarray) for v in values):
        return _from_lists([[v] for v in values], vocabulary, n_classes, where, ids, "multiclass")
    rows = [list(v) if isinstance(v, list | tuple | np.ndarray) else [v] for v in values]
    return _from_lists(rows, vocabulary, n_classes, where, ids, "multilabel")


def _names(vocabulary: Sequence[str] | None, n_classes: int | None, count: int, where: str) -> tuple[str, ...]:
    if vocabulary is not None:
        if n_classes is not None and n_classes != len(vocabulary):
            raise InputError(
                f"n_classes={n_classes} disagrees with the vocabulary of {where} ({len(vocabulary)} "
                "classes): drop --n-classes"
            )
        return tuple(vocabulary)
    return tuple(f"class_{i}" for i in range(n_classes if n_classes is not None else count))


def _multi_hot(
    y: np.ndarray, vocabulary: Sequence[str] | None, n_classes: int | None, where: str, ids: Sequence[str]
) -> tuple[np.ndarray, tuple[str, ...], str]:
    if y.dtype.kind == "f":
        bad = np.flatnonzero(~np.isin(y, (0.0, 1.0)).all(axis=1))
        if bad.size:
            raise InputError(
                f"{where}: the labels of clip {ids[bad[0]]} are not 0/1 ({y[bad[0]][:5].tolist()} ...): "
                "a 2-D y must be multi-hot [N, C]"
            )
    names = _names(vocabulary, n_classes, y.shape[1], where)
    if y.shape[1] != len(names):
        raise InputError(
            f"{where}: y has {y.shape[1]} label columns but the vocabulary has {len(names)} classes; "
            "fix the labels or the vocabulary"
        )
    return np.ascontiguousarray(y.astype(bool)), names, "multilabel"


def _from_lists(
    rows: list[list[Any]],
    vocabulary: Sequence[str] | None,
    n_classes: int | None,
    where: str,
    ids: Sequence[str],
    task: str,
) -> tuple[np.ndarray, tuple[str, ...], str]:
    flat = [v for r in rows for v in r]
    as_names = any(_is_str(v) for v in flat)
    if as_names and not all(_is_str(v) for v in flat):
        raise InputError(f"{where}: labels mix names and indices; use one kind")
    if as_names:
        text_rows = [[_text(v).strip() for v in r] for r in rows]
        if vocabulary is None:
            names = tuple(sorted({v for r in text_rows for v in r}))
            if n_classes is not None and n_classes != len(names):
                raise InputError(
                    f"n_classes={n_classes} but the labels of {where} name {len(names)} classes: drop --n-classes"
                )
        else:
            names = _names(vocabulary, n_classes, 0, where)
        index = {n: i for i, n in enumerate(names)}
        idx_rows: list[list[int]] = []
        for i, r in enumerate(text_rows):
            missing = [v for v in r if v not in index]
            if missing:
                raise InputError(
                    f"{where}: clip {ids[i]} has label {missing[0]!r}, which is not in the vocabulary "
                    f"({len(names)} classes, e.g. {', '.join(names[:3])}); fix the label or the vocabulary"
                )
            idx_rows.append([index[v] for v in r])
    else:
        idx_rows = [[int(v) for v in r] for r in rows]
        top = max((v for r in idx_rows for v in r), default=-1)
        names = _names(vocabulary, n_classes, top + 1, where)
        for i, ints in enumerate(idx_rows):
            bad = [v for v in ints if not 0 <= v < len(names)]
            if bad:
                raise InputError(
                    f"{where}: clip {ids[i]} has label index {bad[0]}, outside the vocabulary "
                    f"(0..{len(names) - 1}); fix the label or the vocabulary"
                )
    y = np.zeros((len(idx_rows), len(names)), dtype=bool)
    for i, ints in enumerate(idx_rows):
        y[i, ints] = True
    return y, names, task


def build_dataset(
    x: Any,
    y: Any,
    *,
    source: str,
    ids: Sequence[str] | np.ndarray | None = None,
    lengths: Any = None,
    groups: Any = None,
    split: Any = None,
    vocabulary: Sequence[str] | None = None,
    n_classes: int | None = None,
    task: str | None = None,
) -> Dataset:
    """A checked :class:`Dataset` of raw arrays (module docstring); ``task``: the reader's own
    (HEAR's prediction type), else what the labels show."""
    from tagtune.trainables.data._split import check_finite

    n = len(x)
    clip_ids = np.asarray([_text(v) for v in ids], dtype=str) if ids is not None else None
    if clip_ids is None:
        clip_ids = np.asarray([str(i) for i in range(n)], dtype=str)
    if len(clip_ids) != n:
        raise InputError(f"{source}: {len(clip_ids)} ids for {n} clips")
    feats, found = as_features(x, source, list(clip_ids))
    if lengths is not None:
        found = check_lengths(lengths, n, feats.shape[1], source)
    check_finite(feats, clip_ids, source)
    if len(y) != n:
        raise InputError(f"{source}: {len(y)} labels for {n} clips; every clip needs its labels")
    multi_hot, names, detected = encode_labels(
        y, vocabulary=vocabulary, n_classes=n_classes, where=source, ids=list(clip_ids)
    )
    extra: dict[str, np.ndarray] = {}
    for name, value in (("groups", groups), ("split", split)):
        if value is not None:
            arr = np.asarray([_text(v) for v in value], dtype=str)
            if len(arr) != n:
                raise InputError(f"{source}: {name} has {len(arr)} entries for {n} clips")
            extra[name] = arr
    return Dataset(
        x=feats,
        y=multi_hot,
        lengths=(found if found is not None else lengths_from_padding(feats)).astype(np.int16),
        ids=clip_ids,
        class_names=names,
        source=source,
        task=task or detected,
        groups=extra.get("groups"),
        split=extra.get("split"),
    )
