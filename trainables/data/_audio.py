"""Audio files listed by a CSV: the dataset (table, decoded clips per sample rate, official
splits) and its reader, registered beside the embedding formats.

``audio``: a ``.csv`` file, or a folder without ``*.tfrecord`` shards that holds a CSV (in it or
in a subfolder) other than AudioSet's own class and segment lists.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tagtune.errors import InputError
from tagtune.trainables.data._audio_decode import AudioClips, check_rate, load_clips
from tagtune.trainables.data._audio_table import AudioTable, candidate_csvs, is_audio_csv_name, read_table
from tagtune.trainables.data._dataset import split_indices
from tagtune.trainables.data._trial import TrialData


@dataclass(eq=False)
class AudioDataset:
    """Clips listed by a CSV: labels and splits at once, samples per rate on demand.

    :meth:`at` returns the clips at a sample rate: preloaded ones (shipped with the dataset, e.g.
    to Ray trials), else from the decoded-audio cache (decoding on first use).
    """

    table: AudioTable
    cache_dir: str | None = None
    clips: dict[int, AudioClips] = field(default_factory=dict)

    @property
    def n_clips(self) -> int:
        return self.table.n_clips

    @property
    def n_classes(self) -> int:
        return int(self.table.y.shape[1])

    @property
    def y(self) -> np.ndarray:
        return self.table.y

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.table.class_names

    @property
    def single_label(self) -> bool:
        return self.table.single_label

    @property
    def source(self) -> str:
        return f"audio:{self.table.csv_path}"

    @property
    def kind(self) -> str:
        """Always ``"audio"`` (the data kind of :class:`tagtune.trainables.data.TrialData`)."""
        return "audio"

    @property
    def frame_shape(self) -> tuple[int, int]:
        """``(0, 1)``: the families are built for any length and one channel."""
        return 0, 1

    @property
    def verified(self) -> np.ndarray | None:
        """The CSV's verified flags (bool [N]), or ``None``."""
        return self.table.verified

    def at(self, rate: int) -> AudioClips:
        """Every clip at ``rate`` Hz (decoded and cached on first use)."""
        rate = check_rate(rate)
        if rate not in self.clips:
            self.clips[rate] = load_clips(self.table, rate, self.cache_dir)
        return self.clips[rate]

    def preload(self, rates: Iterable[int] = ()) -> AudioDataset:
        """Decode (or memory-map) the clips at each of ``rates`` now; returns ``self``."""
        for rate in rates:
            self.at(rate)
        return self

    def trial_data(self, *, val_fraction: float = 0.2, seed: int = 0) -> TrialData:
        """A trial's data: the (train, validation) split of :meth:`splits`; test clips are held out."""
        train_idx, val_idx, _ = self.splits(val_fraction, seed)
        if train_idx.size == 0 or val_idx.size == 0:
            raise InputError(
                f"{self.table.csv_path}: the split leaves {train_idx.size} training and {val_idx.size} "
                "validation clips; add clips or change --val-fraction"
            )
        return TrialData(
            clips=self,
            y=self.y,
            train_idx=train_idx,
            val_idx=val_idx,
            class_names=self.class_names,
            verified=self.verified,
            single_label=self.single_label,
        )

    def splits(self, val_fraction: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(train, validation, test) clip indices, following the CSV where it says.

        Test: the clips the CSV marks ``test`` (held out: never trained on nor selected by).
        Validation: the clips marked ``val``; else, with official folds (ESC-50), fold number
        ``folds[seed % n_folds]``; else a seeded random ``val_fraction`` of the non-test clips.
        """
        split, fold = self.table.split, self.table.fold
        test = np.flatnonzero(split == "test")
        pool = np.flatnonzero(split != "test")
        if pool.size == 0:
            raise InputError(f"{self.table.csv_path} marks every clip as test; leave clips for training")
        marked = np.flatnonzero(split == "val")
        if marked.size:
            return np.flatnonzero(split == "train"), marked, test
        folds = np.unique(fold[pool])
        if folds.size >= 2 and folds.min() > 0:
            val_fold = folds[seed % folds.size]
            return pool[fold[pool] != val_fold], pool[fold[pool] == val_fold], test
        tr, va = split_indices(len(pool), val_fraction, seed)
        return pool[tr], pool[va], test


def load_audio_dataset(
    path: str | os.PathLike,
    *,
    sample_rates: Iterable[int] = (),
    cache_dir: str | os.PathLike | None = None,
) -> AudioDataset:
    """Read the audio CSV at ``path`` (a CSV, or a folder holding one) and check its files.

    The clips at each of ``sample_rates`` are decoded (or memory-mapped from the cache) now; other
    rates on first use.  Cache root: ``cache_dir``, else ``$TAGTUNE_CACHE_DIR`` or ``~/.cache/tagtune``.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"no such file or folder: {path}; pass a folder holding the audio CSV")
    table = read_table(path)
    ds = AudioDataset(table, str(cache_dir) if cache_dir is not None else None)
    return ds.preload(sample_rates)


def audio_trial_data(ds: AudioDataset, *, val_fraction: float = 0.2, seed: int = 0) -> TrialData:
    """A trial's data for ``ds`` (same as ``ds.trial_data(...)``)."""
    return ds.trial_data(val_fraction=val_fraction, seed=seed)


class AudioReader:
    """Audio files listed by a CSV (FSDKaggle2018, ESC-50 or FSDD style), or a folder holding one."""

    format = "audio"
    kind = "audio"

    def sniff(self, path: Path) -> bool:
        """A ``.csv`` that may list audio files, or a folder without ``*.tfrecord`` shards that
        holds one (in it or in a subfolder)."""
        if not path.is_dir():
            return is_audio_csv_name(path)
        with os.scandir(path) as it:  # stops at the first shard (glob lists the whole folder)
            shards = any(e.name.endswith((".tfrecord", ".tfrecords")) for e in it)
        return not shards and bool(candidate_csvs(path))

    def cache_entry(
        self, path: Path, *, n_classes: int | None, cache_dir: str | os.PathLike | None, options: Any = None
    ) -> Path | None:
        """``None``: decoded audio is cached per sample rate (see ``load_clips``)."""
        return None

    def read(
        self, path: Path, *, n_classes: int | None, cache_dir: str | os.PathLike | None, options: Any = None
    ) -> AudioDataset:
        """The table (labels, splits, files checked); clips are decoded per rate on use.  Of the
        read options only ``--task`` applies (audio CSVs are single-label)."""
        keys = [k for k in ("feature_key", "label_key", "group_key") if getattr(options, k, None) is not None]
        if keys:
            flags = ", ".join("--" + k.replace("_", "-") for k in keys)
            verb = "applies" if len(keys) == 1 else "apply"
            raise InputError(f"{flags} {verb} to embedding data, not to the audio CSV {path}; drop it")
        if n_classes is not None:
            raise InputError(f"n_classes applies to embedding data, not to the audio CSV {path}; drop --n-classes")
        return load_audio_dataset(path, cache_dir=cache_dir)
