"""A data source opened once: its reader (format sniffed once), cache entry, kind and shape.

Every on-disk format is one reader in :data:`READERS`, asked in order (the first whose ``sniff``
says yes reads the path); a new format is one class passed to :func:`register_reader`.  A reader
has ``format`` (its name), ``kind`` (``"embeddings"`` or ``"audio"``), ``sniff(path)``,
``cache_entry(path, n_classes=, cache_dir=)`` and ``read(path, n_classes=, cache_dir=)`` (both
also given ``options=`` (a :class:`ReadOptions`) when any read option is set), which
returns a clip set: a :class:`Dataset` or an :class:`AudioDataset`, each with ``n_clips``,
``class_names``, ``single_label``, ``frame_shape``, ``preload(sample_rates)`` and
``trial_data(val_fraction=, seed=)``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from tagtune.errors import InputError
from tagtune.trainables.data._audio import AudioDataset, AudioReader
from tagtune.trainables.data._dataset import Dataset
from tagtune.trainables.data._formats import PASS_DATA, CacheReader, Hdf5Reader, TfrecordReader
from tagtune.trainables.data._hear import HearReader
from tagtune.trainables.data._numpy import NpyCsvReader, NpzReader
from tagtune.trainables.data._options import DEFAULT_OPTIONS, ReadOptions, check_single_label
from tagtune.trainables.data._trial import TrialData


class Reader(Protocol):
    """One on-disk format: recognize it, and read it (through the cache where it parses)."""

    @property
    def format(self) -> str: ...

    @property
    def kind(self) -> str: ...

    def sniff(self, path: Path) -> bool: ...

    def cache_entry(self, path: Path, *, n_classes: int | None, cache_dir: str | os.PathLike | None) -> Path | None: ...

    def read(self, path: Path, *, n_classes: int | None, cache_dir: str | os.PathLike | None) -> Any: ...


READERS: list[Reader] = [
    CacheReader(),
    HearReader(),
    AudioReader(),
    TfrecordReader(),
    Hdf5Reader(),
    NpzReader(),
    NpyCsvReader(),
]
"""The registered readers in the order they are asked (a folder the cache and audio readers do
not claim is a TFRecord folder)."""


def register_reader(reader: Reader, *, before: str | None = None) -> Reader:
    """Add ``reader`` to :data:`READERS`: at the end, or before the reader of format ``before``."""
    formats = [r.format for r in READERS]
    if reader.format in formats:
        raise ValueError(f"a reader for format {reader.format!r} is registered already")
    READERS.insert(formats.index(before) if before is not None else len(READERS), reader)
    return reader


def reader_for(path: str | os.PathLike) -> Reader:
    """The first registered reader that recognizes ``path``; :class:`InputError` when none does."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"no such file or folder: {path}; {PASS_DATA}")
    for reader in READERS:
        if reader.sniff(path):
            return reader
    raise InputError(f"unknown data format: {path}; {PASS_DATA}")


def sniff_format(path: str | os.PathLike) -> str:
    """The format of ``path`` (``"tfrecord"``, ``"hdf5"``, ``"cache"``, ``"audio"``, ...)."""
    return reader_for(path).format


@dataclass(eq=False)
class DataSource:
    """A data source opened once: what it is (from its reader) and, read on first use, its clips."""

    path: Path
    reader: Reader
    cache_dir: str | os.PathLike | None = None
    n_classes: int | None = None
    options: ReadOptions = DEFAULT_OPTIONS
    _clips: Any = field(default=None, repr=False)

    @property
    def format(self) -> str:
        """The on-disk format (the reader's name)."""
        return self.reader.format

    @property
    def kind(self) -> str:
        """``"embeddings"`` or ``"audio"``."""
        return self.reader.kind

    @property
    def cache_entry(self) -> Path | None:
        """The cache folder the clips are served from (``None`` for audio: cached per sample rate)."""
        return self.reader.cache_entry(self.path, n_classes=self.n_classes, cache_dir=self.cache_dir, **self._extra())

    def _extra(self) -> dict[str, Any]:
        """``options=`` for the reader when any read option is set (readers that know no
        options are called as before)."""
        return {} if self.options.is_default else {"options": self.options}

    def read(self) -> Dataset | AudioDataset:
        """The clip set (read on the first call, through the cache; the same object after),
        with ``--task`` applied (``multiclass`` checks that every clip has exactly one label)."""
        if self._clips is None:
            try:
                clips = self.reader.read(self.path, n_classes=self.n_classes, cache_dir=self.cache_dir, **self._extra())
            except TypeError as exc:
                if "options" not in str(exc):
                    raise
                raise InputError(
                    f"{self.path} ({self.format}) takes no read options: drop {self.options.flags()}"
                ) from exc
            clips = apply_task(clips, self.options.task)
            keys = {k: v for k in ("feature_key", "label_key") if (v := getattr(self.options, k)) is not None}
            if keys and isinstance(clips, Dataset):
                clips = dataclasses.replace(clips, read_keys=keys)
            self._clips = clips
        return self._clips

    @property
    def shape(self) -> tuple[int, int, int]:
        """(frames, features, classes) the families are built with."""
        clips = self.read()
        return (*clips.frame_shape, len(clips.class_names))

    @property
    def class_names(self) -> tuple[str, ...]:
        """The class names."""
        return tuple(self.read().class_names)

    @property
    def single_label(self) -> bool:
        """Every clip has exactly one class (trained with softmax); embeddings never are."""
        return bool(self.read().single_label)

    def trial_data(self, *, val_fraction: float = 0.2, seed: int = 0, sample_rates: Iterable[int] = ()) -> TrialData:
        """The training data with its seeded validation split (audio: test clips held out, the
        CSV's own split or folds where it has them; ``sample_rates`` decoded now)."""
        return self.read().preload(sample_rates).trial_data(val_fraction=val_fraction, seed=seed)

    def embeddings(self) -> Dataset:
        """The full embedding :class:`Dataset` (for finals and predictions); audio refuses."""
        if self.kind != "embeddings":
            raise InputError(
                f"{self.path} holds audio files listed in a CSV, and this command reads embeddings "
                f"({PASS_DATA.removeprefix('pass --train with ')}); audio works with `tagtune search` "
                "and `tagtune train` (family densenet_audio)"
            )
        data = self.read()
        assert isinstance(data, Dataset)
        return data


def apply_task(clips: Any, task: str | None) -> Any:
    """``clips`` with ``task`` (``--task``) in force: ``None`` keeps what the reader detected;
    ``multiclass`` refuses a clip without exactly one label (naming it)."""
    if task is None or not isinstance(clips, Dataset) or task == clips.task:
        return clips
    if task == "multiclass":
        check_single_label(clips.y, clips.ids, clips.source)
    return dataclasses.replace(clips, task=task)


def open_source(
    path: str | os.PathLike,
    *,
    cache_dir: str | os.PathLike | None = None,
    n_classes: int | None = None,
    options: ReadOptions | None = None,
) -> DataSource:
    """Open a data source: its format is sniffed now, its clips are read on first use.

    Cache root: ``cache_dir``, else ``$TAGTUNE_CACHE_DIR`` or ``~/.cache/tagtune``.  ``options``:
    the feature / label / group keys and the task (``--feature-key`` ..., part of the cache key).
    """
    path = Path(path)
    return DataSource(path, reader_for(path), cache_dir, n_classes, options or DEFAULT_OPTIONS)


def load_dataset(
    path: str | os.PathLike,
    *,
    cache_dir: str | os.PathLike | None = None,
    n_classes: int | None = None,
    options: ReadOptions | None = None,
) -> Dataset:
    """Load clips from a TFRecord folder, a packed HDF5 file or a tagtune cache folder.

    TFRecord and HDF5 sources are parsed once and cached under ``cache_dir`` (default:
    ``$TAGTUNE_CACHE_DIR`` or ``~/.cache/tagtune``); later loads memory-map the cache.

    Class names come from ``class_labels_indices.csv`` in the data's folder or its parent; without
    one they are ``class_0..class_{C-1}`` with C = ``n_classes``, else the label columns of an
    HDF5 file, else 527 for AudioSet-shaped TFRecords (labels < 527), else max label + 1.
    """
    return open_source(path, cache_dir=cache_dir, n_classes=n_classes, options=options).embeddings()
