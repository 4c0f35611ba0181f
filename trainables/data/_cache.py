"""tagtune's own dataset cache: written once, memory-mapped after.

A cache is a folder holding ``x.npy`` (uint8 or float16/32/64 as read), ``y.npy``,
``lengths.npy``, ``ids.npy``, optionally ``groups.npy`` and ``split.npy``, and
``tagtune-cache.json`` (format version, class names, source, clip count, task).  The readers that
parse (TFRecord, HDF5) keep one such folder per source under the cache root
(:func:`cache_entry`), named by a key hashed from the source's absolute path and the (name,
size, mtime_ns) of its files, so edited data is re-parsed; :func:`load_or_parse` serves it.

This module is a layer the readers use: it knows no format.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from tagtune.errors import InputError
from tagtune.trainables.data._dataset import Dataset, find_class_csv

CACHE_MARKER = "tagtune-cache.json"
CACHE_FORMAT = "tagtune-dataset-cache"
CACHE_VERSION = 1
READER_VERSION = 1
"""Bumped when parsing changes, so older cache entries are not reused."""
_ARRAYS = ("x", "y", "lengths", "ids")
_OPTIONAL = ("groups", "split")
"""Per-clip str arrays a Dataset may have; stored as ``<name>.npy`` when it has them."""
X_DTYPES = (np.uint8, np.float16, np.float32, np.float64)
"""Feature dtypes kept as they are (other integer or float types are stored as float32)."""
_WARNED: set[str] = set()


def default_cache_dir() -> Path:
    """``$TAGTUNE_CACHE_DIR`` if set, else ``~/.cache/tagtune``."""
    env = os.environ.get("TAGTUNE_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "tagtune"


# --------------------------------------------------------------------------------------------
# Writing and reading one cache folder
# --------------------------------------------------------------------------------------------


def _metadata(ds: Dataset) -> dict[str, object]:
    """The JSON description stored next to the arrays."""
    return {
        "format": CACHE_FORMAT,
        "version": CACHE_VERSION,
        "source": ds.source,
        "n_clips": ds.n_clips,
        "n_frames": ds.n_frames,
        "n_features": ds.n_features,
        "class_names": list(ds.class_names),
        "task": ds.task,
        "optional": [name for name in _OPTIONAL if getattr(ds, name) is not None],
    }


def _write_contents(ds: Dataset, folder: Path) -> None:
    """Write the arrays, then the marker file, into the existing ``folder``."""
    x = np.asarray(ds.x)
    arrays = {
        "x": x if x.dtype in X_DTYPES else x.astype(np.float32),
        "y": np.asarray(ds.y, dtype=bool),
        "lengths": np.asarray(ds.lengths, dtype=np.int16),
        "ids": np.asarray(ds.ids, dtype=str),
    }
    for name in _OPTIONAL:
        value = getattr(ds, name)
        if value is not None:
            arrays[name] = np.asarray(value, dtype=str)
    for name, array in arrays.items():
        np.save(folder / f"{name}.npy", np.ascontiguousarray(array), allow_pickle=False)
    (folder / CACHE_MARKER).write_text(json.dumps(_metadata(ds), indent=1), encoding="utf-8")


def _write_atomic(ds: Dataset, out_dir: Path) -> None:
    """Write into a temporary sibling folder and move it into place with ``os.replace``."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        _write_contents(ds, tmp)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_cache(ds: Dataset, out_dir: str | os.PathLike) -> Path:
    """Write ``ds`` as a tagtune cache folder at ``out_dir`` (atomically); return the path."""
    out_dir = Path(out_dir)
    if out_dir.exists():
        raise InputError(f"cache folder {out_dir} already exists: choose a new folder or delete it")
    try:
        _write_atomic(ds, out_dir)
    except OSError as exc:
        if out_dir.is_dir():  # another process wrote the same folder first
            return out_dir
        raise InputError(f"cannot write cache folder {out_dir} ({exc}): choose a writable folder") from exc
    return out_dir


def read_cache(folder: str | os.PathLike) -> Dataset:
    """Open a tagtune cache folder; the arrays are memory-mapped read-only."""
    folder = Path(folder)
    meta = _read_metadata(folder)
    names = (*_ARRAYS, *(n for n in _OPTIONAL if n in meta.get("optional", [])))
    try:
        arrays = {name: np.load(folder / f"{name}.npy", mmap_mode="r") for name in names}
    except (OSError, ValueError) as exc:
        raise _broken(folder, str(exc)) from exc
    _check_arrays(folder, meta, arrays)
    task = meta.get("task", "multilabel")
    if task not in ("multilabel", "multiclass"):
        raise _broken(folder, f"task {task!r} is neither multilabel nor multiclass")
    return Dataset(
        x=arrays["x"],
        y=arrays["y"],
        lengths=arrays["lengths"],
        ids=arrays["ids"],
        class_names=tuple(meta["class_names"]),
        source=f"cache:{folder} (from {meta['source']})",
        groups=arrays.get("groups"),
        split=arrays.get("split"),
        task=task,
    )


def _read_metadata(folder: Path) -> dict:
    """Read and check ``tagtune-cache.json``."""
    marker = folder / CACHE_MARKER
    try:
        meta = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise _broken(folder, f"cannot read {CACHE_MARKER}: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format") != CACHE_FORMAT:
        raise _broken(folder, f"{CACHE_MARKER} is not a tagtune cache description")
    if meta.get("version") != CACHE_VERSION:
        raise _broken(
            folder,
            f"cache format version {meta.get('version')}, this tagtune reads {CACHE_VERSION}",
        )
    if not isinstance(meta.get("class_names"), list) or "source" not in meta:
        raise _broken(folder, f"{CACHE_MARKER} lacks class_names or source")
    return meta


def _check_arrays(folder: Path, meta: dict, arrays: dict[str, np.ndarray]) -> None:
    """Check dtypes and shapes of the cached arrays against the metadata."""
    n, c = meta.get("n_clips"), len(meta["class_names"])
    x, y, lengths, ids = (arrays[k] for k in _ARRAYS)
    problems = [
        (x.dtype not in X_DTYPES or x.ndim != 3 or len(x) != n, f"x is {x.dtype} {x.shape}"),
        (y.dtype != bool or y.shape != (n, c), f"y is {y.dtype} {y.shape}, expected ({n}, {c})"),
        (lengths.shape != (n,), f"lengths has shape {lengths.shape}"),
        (ids.shape != (n,) or ids.dtype.kind != "U", f"ids is {ids.dtype} {ids.shape}"),
    ]
    for name in _OPTIONAL:
        if name in arrays:
            a = arrays[name]
            problems.append((a.shape != (n,) or a.dtype.kind != "U", f"{name} is {a.dtype} {a.shape}"))
    for bad, what in problems:
        if bad:
            raise _broken(folder, what)


def _broken(folder: Path, why: str) -> InputError:
    """The error for an unreadable cache folder."""
    return InputError(
        f"tagtune cache {folder} is unreadable ({why}): delete the folder and load the original data again"
    )


# --------------------------------------------------------------------------------------------
# The keyed cache the parsing readers use
# --------------------------------------------------------------------------------------------


def cache_root(cache_dir: str | os.PathLike | None) -> Path:
    """``cache_dir`` (``~`` expanded), else :func:`default_cache_dir`."""
    return Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()


def cache_key(
    path: str | os.PathLike, fmt: str, n_classes: int | None, stat_lines: list[bytes], options: str = ""
) -> str:
    """Key of a source: its format, name and a hash of its absolute path, ``n_classes``, the
    ``stat_lines`` of its files (see :func:`stat_line`), those of its class list and the read
    ``options`` (``ReadOptions.key()``; ``""``, the default, leaves older keys as they were)."""
    path = Path(path).resolve()
    digest = hashlib.sha256()
    digest.update(f"{fmt}\0{path}\0{n_classes}\0{READER_VERSION}\0".encode())
    if options:
        digest.update(f"options\0{options}\0".encode())
    digest.update(b"".join(stat_lines))
    csv_path = find_class_csv(path)
    if csv_path is not None:
        digest.update(stat_line(csv_path, str(csv_path)))
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", path.name)[:40] or "data"
    return f"{fmt}-{slug}-{digest.hexdigest()[:24]}"


def stat_line(file: Path, label: str, st: os.stat_result | None = None) -> bytes:
    """``label``, size and mtime_ns of ``file`` (or of its stat ``st``) as bytes for hashing."""
    st = st or file.stat()
    return f"{label}\0{st.st_size}\0{st.st_mtime_ns}\n".encode()


def cache_entry(
    path: str | os.PathLike,
    fmt: str,
    n_classes: int | None,
    stat_lines: list[bytes],
    cache_dir: str | os.PathLike | None,
    options: str = "",
) -> Path:
    """The cache folder of a source under the cache root (it may not exist yet)."""
    return cache_root(cache_dir) / cache_key(path, fmt, n_classes, stat_lines, options)


def load_or_parse(entry: Path, parse: Callable[[], Dataset], source: str | os.PathLike) -> Dataset:
    """The cached copy in ``entry``, else ``parse()`` stored there (a broken entry is re-parsed,
    with a warning naming ``source``)."""
    if (entry / CACHE_MARKER).is_file():
        try:
            return read_cache(entry)
        except InputError as exc:
            warnings.warn(f"{exc}; re-reading {source}", stacklevel=3)
            shutil.rmtree(entry, ignore_errors=True)
    ds = parse()
    _store(ds, entry)
    return ds


def _store(ds: Dataset, entry: Path) -> None:
    """Write a cache entry; on failure warn once per cache root and carry on."""
    try:
        _write_atomic(ds, entry)
    except OSError as exc:
        if (entry / CACHE_MARKER).is_file():  # another process wrote it first
            return
        root = str(entry.parent)
        if root not in _WARNED:
            _WARNED.add(root)
            warnings.warn(
                f"cannot write the dataset cache in {root} ({exc.strerror or exc}); data will be "
                "re-parsed each time: set TAGTUNE_CACHE_DIR to a writable folder",
                stacklevel=4,
            )
