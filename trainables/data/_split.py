"""The train / validation / test split of an embedding :class:`Dataset`, and its checks.

* The data set's own split (``Dataset.split``: ``train`` / ``valid`` / ``test`` per clip) where it
  has one: test clips are held out (never trained on, never used to select), validation clips
  validate; without ``valid`` clips the validation side is a seeded cut of the ``train`` clips.
* Otherwise the seeded split of :func:`split_indices`, grouped by ``Dataset.groups`` where the
  data have groups (a recording, speaker or source id): whole groups go to one side, so clips cut
  from one recording never sit on both.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tagtune.errors import InputError

TRAIN, VALID, TEST = "train", "valid", "test"
_NAMES = {"train": TRAIN, "valid": VALID, "val": VALID, "validation": VALID, "test": TEST, "eval": TEST}


def seeded_split(n: int, val_fraction: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Shuffle ``range(n)`` with ``seed`` and cut it into sorted (train, val) index arrays.

    Deterministic for a given ``(n, val_fraction, seed)``.  The validation side gets
    ``round(n * val_fraction)`` clips.
    """
    if not 0.0 < float(val_fraction) < 1.0:
        raise InputError(
            f"validation fraction must be between 0 and 1 (exclusive), got {val_fraction}; fix --val-fraction"
        )
    n_val = round(n * float(val_fraction))
    if n_val < 1 or n - n_val < 1:
        raise InputError(
            f"cannot split {n} clips with validation fraction {val_fraction}: one side would be "
            "empty; use more clips or change --val-fraction"
        )
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def grouped_split(groups: np.ndarray, val_fraction: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) positions of ``groups`` (one id per clip): the groups in a seeded order go to
    validation until it holds ``round(n * val_fraction)`` clips or more; no group is on both sides."""
    groups = np.asarray(groups).astype(str)
    n = len(groups)
    if not 0.0 < float(val_fraction) < 1.0:
        raise InputError(
            f"validation fraction must be between 0 and 1 (exclusive), got {val_fraction}; fix --val-fraction"
        )
    names, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    if len(names) < 2:
        raise InputError(
            f"all {n} clips are in one group ({names[0] if len(names) else '?'}), so no grouped split "
            "leaves a group for validation; use data with more groups or pass another --group-key"
        )
    order = np.random.default_rng(seed).permutation(len(names))
    target = round(n * float(val_fraction))
    cum = np.cumsum(counts[order])
    n_groups = int(np.searchsorted(cum, max(target, 1))) + 1
    n_groups = min(max(n_groups, 1), len(names) - 1)
    is_val = np.zeros(len(names), bool)
    is_val[order[:n_groups]] = True
    val_mask = is_val[inverse]
    return np.flatnonzero(~val_mask), np.flatnonzero(val_mask)


def split_of(split: Any, where: str) -> np.ndarray:
    """A data set's own split names normalized to ``train`` / ``valid`` / ``test``."""
    raw = np.asarray(split).astype(str)
    low = np.char.lower(np.char.strip(raw))
    out = np.array([_NAMES.get(v, "") for v in low.tolist()], dtype=object).astype(str)
    bad = np.flatnonzero(out == "")
    if bad.size:
        raise InputError(
            f"{where}: clip {bad[0]} is in split {str(raw[bad[0]])!r}; splits must be train, valid or test"
        )
    return out


def dataset_splits(ds: Any, val_fraction: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train, validation, test) clip indices of the embedding data set ``ds`` (module docstring)."""
    n = int(ds.n_clips)
    groups = getattr(ds, "groups", None)
    own = getattr(ds, "split", None)
    if own is None:
        pool = np.arange(n)
        test = np.zeros(0, np.int64)
    else:
        names = split_of(own, ds.source)
        test = np.flatnonzero(names == TEST)
        valid = np.flatnonzero(names == VALID)
        pool = np.flatnonzero(names == TRAIN)
        if pool.size == 0:
            raise InputError(f"{ds.source}: its own split has no train clips; mark some clips train")
        if valid.size:
            return pool, valid, test
    if groups is not None:
        tr, va = grouped_split(np.asarray(groups)[pool], val_fraction, seed)
    else:
        tr, va = seeded_split(len(pool), val_fraction, seed)
    return pool[tr], pool[va], test


def check_finite(x: np.ndarray, ids: Any, where: str, chunk: int = 4096) -> None:
    """An :class:`InputError` naming the first clip of float ``x [N, T, F]`` holding NaN or inf."""
    if np.dtype(x.dtype).kind != "f":
        return
    for start in range(0, len(x), chunk):
        part = np.asarray(x[start : start + chunk])
        finite = np.isfinite(part).reshape(len(part), -1).all(axis=1)
        if not finite.all():
            i = start + int(np.argmin(finite))
            bad = np.asarray(x[i])
            what = "NaN" if np.isnan(bad).any() else "inf"
            clip = str(ids[i]) if ids is not None and len(ids) > i else str(i)
            raise InputError(
                f"{where}: clip {clip} (row {i}) has {what} in its features "
                f"({int((~np.isfinite(bad)).sum())} values); fix or drop that clip"
            )
