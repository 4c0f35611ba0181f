"""The embedding formats, one reader each: TFRecord shards, packed HDF5, the tagtune cache (the
NumPy and HEAR readers, built on the same :class:`_ParsedReader`, live in ``_numpy`` / ``_hear``).

A reader says whether a path is its format (``sniff``) and reads it (``read``) into a
:class:`Dataset`; TFRecord and HDF5 sources are parsed once and then served from the cache
(``_cache``), the cache format is the cache folder itself.  The readers are registered in
``_readers`` beside the audio one.

* ``tfrecord``: a folder of ``*.tfrecord`` / ``*.tfrecords`` shards (or one shard): Google's
  AudioSet release by the fast reader of ``_tfrecord``, any other ``Example`` /
  ``SequenceExample`` layout by ``_tfexample``;
* ``hdf5``: one packed ``.h5``/``.hdf5`` file as researchers share it (``x`` [N, T, D] or [N, D]
  of any dtype, AudioSet's uint8 [N, 10, 128] as before; ``y`` multi-hot [N, C] or class indices
  / names; ``video_id_list`` or ``ids`` [N]; optional ``lengths``, ``groups``, ``split``);
* ``cache``: tagtune's own memory-mappable cache folder (holds ``tagtune-cache.json``).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np

from tagtune.errors import InputError
from tagtune.trainables.data._cache import CACHE_MARKER, cache_entry, load_or_parse, read_cache, stat_line
from tagtune.trainables.data._dataset import Classes, Dataset, lengths_from_padding, resolve_classes
from tagtune.trainables.data._options import DEFAULT_OPTIONS, ReadOptions
from tagtune.trainables.data._tfrecord import SHARD_SUFFIXES, list_shards, read_shards

AUDIOSET_CLASSES = 527
"""Number of AudioSet classes, used for AudioSet-shaped data without a class list."""
HDF5_SUFFIXES = (".h5", ".hdf5")
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
PASS_DATA = (
    "pass --train with a folder of *.tfrecord(s), an .h5, .npz or .npy (+ CSV) file, a HEAR task folder "
    "or a tagtune cache"
)


# --------------------------------------------------------------------------------------------
# The readers
# --------------------------------------------------------------------------------------------


class _ParsedReader:
    """A format parsed once into a :class:`Dataset`, then served from its cache entry."""

    format = ""
    kind = "embeddings"

    def stat_lines(self, path: Path) -> list[bytes]:
        """Name, size and mtime of every file the source is read from (for the cache key)."""
        return [stat_line(path, path.name)]

    def parse(self, path: Path, n_classes: int | None, options: ReadOptions = DEFAULT_OPTIONS) -> Dataset:
        """Read the source itself (no cache involved)."""
        raise NotImplementedError

    def cache_entry(
        self,
        path: Path,
        *,
        n_classes: int | None,
        cache_dir: str | os.PathLike | None,
        options: ReadOptions = DEFAULT_OPTIONS,
    ) -> Path:
        """The cache folder this source is served from (keyed by the read options too)."""
        path = path.resolve()
        return cache_entry(path, self.format, n_classes, self.stat_lines(path), cache_dir, options.key())

    def read(
        self,
        path: Path,
        *,
        n_classes: int | None,
        cache_dir: str | os.PathLike | None,
        options: ReadOptions = DEFAULT_OPTIONS,
    ) -> Dataset:
        """The cached copy, parsing and caching the source on a miss."""
        entry = self.cache_entry(path, n_classes=n_classes, cache_dir=cache_dir, options=options)
        return load_or_parse(entry, lambda: self.parse(path.resolve(), n_classes, options), path)


class TfrecordReader(_ParsedReader):
    """A folder of ``*.tfrecord`` shards (any folder the readers before it did not claim), or one shard."""

    format = "tfrecord"

    def sniff(self, path: Path) -> bool:
        """A folder, or a ``.tfrecord`` file."""
        return path.is_dir() or path.suffix.lower() in SHARD_SUFFIXES

    def stat_lines(self, path: Path) -> list[bytes]:
        """One ``scandir`` pass for a folder, then ``stat`` relative to the folder's descriptor
        (4070 shards: ~10 ms, against ~13 ms with ``DirEntry.stat`` and ~70 ms with glob +
        is_file + stat per file)."""
        if not path.is_dir():
            return super().stat_lines(path)
        with os.scandir(path) as it:
            names = [e.name for e in it if e.name.endswith(SHARD_SUFFIXES)]
        fd = os.open(path, os.O_RDONLY)
        try:
            stats = [(name, os.stat(name, dir_fd=fd)) for name in names]
        finally:
            os.close(fd)
        entries = [(name, st) for name, st in stats if stat.S_ISREG(st.st_mode)]
        if not entries:
            list_shards(path)  # raises the InputError that names the empty folder
        return [stat_line(path / name, name, st) for name, st in sorted(entries)]

    def parse(self, path: Path, n_classes: int | None, options: ReadOptions = DEFAULT_OPTIONS) -> Dataset:
        """Parse the shards (both CRCs checked): AudioSet's layout by the fast reader, any other
        ``Example`` / ``SequenceExample`` layout (or any read option set) by ``_tfexample``."""
        files = list_shards(path) if path.is_dir() else [path]
        if options.feature_key is None and options.label_key is None and options.group_key is None:
            if _first_is_audioset(files):
                return _load_tfrecord(path, n_classes)
        return _load_general(path, files, n_classes, options)


class Hdf5Reader(_ParsedReader):
    """One packed HDF5 file (``x``, ``y``, ``video_id_list``)."""

    format = "hdf5"

    def sniff(self, path: Path) -> bool:
        """A ``.h5``/``.hdf5`` file, or a file that starts with HDF5's signature."""
        return path.is_file() and (path.suffix.lower() in HDF5_SUFFIXES or _starts_with(path, _HDF5_MAGIC))

    def parse(self, path: Path, n_classes: int | None, options: ReadOptions = DEFAULT_OPTIONS) -> Dataset:
        """Read and check the arrays."""
        return _load_hdf5(path, n_classes, options)


class CacheReader:
    """A tagtune cache folder (or its ``tagtune-cache.json``), memory-mapped."""

    format = "cache"
    kind = "embeddings"

    def sniff(self, path: Path) -> bool:
        """A folder holding ``tagtune-cache.json``, or that file."""
        return (path / CACHE_MARKER).is_file() if path.is_dir() else path.name == CACHE_MARKER

    def cache_entry(
        self,
        path: Path,
        *,
        n_classes: int | None,
        cache_dir: str | os.PathLike | None,
        options: ReadOptions = DEFAULT_OPTIONS,
    ) -> Path:
        """The folder itself."""
        return path if path.is_dir() else path.parent

    def read(
        self,
        path: Path,
        *,
        n_classes: int | None,
        cache_dir: str | os.PathLike | None,
        options: ReadOptions = DEFAULT_OPTIONS,
    ) -> Dataset:
        """Open the folder; ``n_classes``, when given, must match its class count (the keys of
        ``options`` were applied when the cache was written; ``--task`` is applied by the source)."""
        ds = read_cache(self.cache_entry(path, n_classes=n_classes, cache_dir=cache_dir))
        if n_classes is not None and n_classes != ds.n_classes:
            raise InputError(
                f"n_classes={n_classes} disagrees with the cache {path} ({ds.n_classes} classes): drop --n-classes"
            )
        return ds


def _starts_with(path: Path, magic: bytes) -> bool:
    """Whether the file begins with ``magic`` (unreadable files do not)."""
    try:
        with open(path, "rb") as fh:
            return fh.read(len(magic)) == magic
    except OSError:
        return False


# --------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------


def _first_is_audioset(files: list[Path]) -> bool:
    """Whether the first record is AudioSet's layout (an unreadable one goes to the fast reader,
    whose errors name it)."""
    from tagtune.trainables.data._tfexample import is_audioset
    from tagtune.trainables.data._tfrecord import read_records

    try:
        first = next(read_records(files[0]), None)
    except InputError:
        return True
    return first is None or is_audioset(first)


def _load_general(path: Path, files: list[Path], n_classes: int | None, options: ReadOptions) -> Dataset:
    """Records of any Example / SequenceExample layout (see ``_tfexample``)."""
    from tagtune.trainables.data._arrays import build_dataset
    from tagtune.trainables.data._dataset import find_vocabulary
    from tagtune.trainables.data._tfexample import read_general

    raw = read_general(files, options)
    if not raw["ids"]:
        raise InputError(f"no records in the TFRecord files of {path}: {PASS_DATA}")
    vocabulary = find_vocabulary(path)
    return build_dataset(
        raw["x"],
        raw["labels"],
        source=f"tfrecord:{path}",
        ids=raw["ids"],
        groups=raw["groups"],
        split=raw["split"],
        vocabulary=vocabulary,
        n_classes=n_classes,
    )


def _load_tfrecord(path: Path, n_classes: int | None) -> Dataset:
    """Read a folder of TFRecord shards (or one shard)."""
    raw = read_shards(list_shards(path) if path.is_dir() else [path])
    if not raw.ids:
        raise InputError(f"no records in the *.tfrecord files of {path}: {PASS_DATA}")
    counts = np.fromiter((len(ls) for ls in raw.labels), dtype=np.int64, count=len(raw.labels))
    flat = np.fromiter((v for ls in raw.labels for v in ls), dtype=np.int64, count=int(counts.sum()))
    max_label = int(flat.max()) if flat.size else -1
    inferred = AUDIOSET_CLASSES if max_label < AUDIOSET_CLASSES else max_label + 1
    classes = resolve_classes(path, n_classes, inferred)
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


def _load_hdf5(path: Path, n_classes: int | None, options: ReadOptions = DEFAULT_OPTIONS) -> Dataset:
    """Read a packed HDF5 file: ``x`` [N, D] / [N, T, D] of any dtype (AudioSet: uint8 [N, 10,
    128]), ``y`` multi-hot [N, C] (or class indices / names, as ``build_dataset`` takes them),
    ``video_id_list`` or ``ids``, optional ``lengths``, ``groups`` and ``split``."""
    from tagtune.trainables.data._arrays import as_features, build_dataset, check_lengths
    from tagtune.trainables.data._split import check_finite

    arrays = _read_hdf5_arrays(path, options)
    x, y, raw_ids = arrays["x"], arrays["y"], arrays["ids"]
    where = f"hdf5:{path}"
    if y.ndim == 2 and (y.dtype == bool or (y.dtype.kind in "iu" and set(np.unique(y).tolist()) <= {0, 1})):
        feats, _ = as_features(x, where, list(raw_ids))
        check_finite(feats, raw_ids, where)
        classes = resolve_classes(path, n_classes, y.shape[1])
        lengths = arrays.get("lengths")
        return Dataset(
            x=feats,
            y=_fit_label_columns(y.astype(bool, copy=False), classes, path, raw_ids),
            lengths=(
                check_lengths(lengths, len(feats), feats.shape[1], where)
                if lengths is not None
                else lengths_from_padding(feats)
            ).astype(np.int16),
            ids=raw_ids,
            class_names=classes.names,
            source=where,
            groups=_decode_ids(arrays["groups"]) if "groups" in arrays else None,
            split=_decode_ids(arrays["split"]) if "split" in arrays else None,
        )
    from tagtune.trainables.data._dataset import find_vocabulary

    labels = _decode_ids(y) if y.dtype.kind in "SO" else y
    return build_dataset(
        x,
        labels,
        source=where,
        ids=raw_ids,
        lengths=arrays.get("lengths"),
        groups=arrays.get("groups"),
        split=arrays.get("split"),
        vocabulary=find_vocabulary(path),
        n_classes=n_classes,
    )


def _read_hdf5_arrays(path: Path, options: ReadOptions = DEFAULT_OPTIONS) -> dict[str, np.ndarray]:
    """Read and check the arrays of a packed HDF5 file (``x``, ``y``, the ids and optional extras)."""
    import h5py

    from tagtune.trainables.data._arrays import require_keys

    fx, fy, fg = options.feature_key or "x", options.label_key or "y", options.group_key or "groups"
    layout = f"{fx} [N, T, D] or [N, D], {fy} [N, C] and video_id_list (or ids) [N]"
    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise InputError(
            f"cannot open {path} as HDF5 ({exc}): the file is corrupt or not HDF5; re-download or replace it"
        ) from exc
    with handle:
        keys = sorted(handle.keys())
        wanted = (fx, fy, fg if options.group_key is not None else None)
        need = f": a packed HDF5 needs {layout}; repack the file or name it with {{flag}}"
        require_keys(path, keys, wanted, noun="dataset", need=need, present=handle)
        x, y = handle[fx][()], handle[fy][()]
        id_key = "video_id_list" if "video_id_list" in handle else "ids" if "ids" in handle else None
        ids = handle[id_key][()] if id_key else np.array([str(i) for i in range(len(x))])
        out = {"x": x, "y": y, "ids": ids}
        for name, key in (("lengths", "lengths"), ("groups", fg), ("split", "split")):
            if key in handle:
                out[name] = handle[key][()]
    if x.ndim not in (2, 3) or y.ndim not in (1, 2) or ids.ndim != 1 or not len(x) == len(y) == len(ids):
        raise InputError(
            f"{path} has {fx} {x.shape}, {fy} {y.shape}, ids {ids.shape}: a packed HDF5 needs {layout}; repack the file"
        )
    out["ids"] = _decode_ids(ids)
    return out


def _decode_ids(raw: np.ndarray) -> np.ndarray:
    """Turn bytes/str/object ids into a numpy str array."""
    return np.asarray(
        [v.decode("utf-8", errors="replace") if isinstance(v, bytes | np.bytes_) else str(v) for v in raw],
        dtype=str,
    )


def _fit_label_columns(y: np.ndarray, classes: Classes, path: Path, ids: np.ndarray) -> np.ndarray:
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


def write_hdf5(path: str | os.PathLike, ds: Dataset) -> Path:
    """Write ``ds`` as a packed HDF5 file (``x``, ``y``, ``video_id_list`` as bytes)."""
    import h5py

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as fh:
        fh.create_dataset("x", data=np.asarray(ds.x, dtype=np.uint8))
        fh.create_dataset("y", data=np.asarray(ds.y, dtype=bool))
        fh.create_dataset("video_id_list", data=np.char.encode(np.asarray(ds.ids, dtype=str), "utf-8"))
    return path


# --------------------------------------------------------------------------------------------
# The entry point
# --------------------------------------------------------------------------------------------
