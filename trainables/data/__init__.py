"""Clip data: every on-disk format as one registered reader, the cache, the trial data types, a
synthetic generator and summaries.

Formats: embeddings of any shape [N, T, D] and dtype as TFRecord shards (AudioSet's
``SequenceExample`` or any ``Example`` layout), packed HDF5, NumPy (``.npz``, or ``.npy`` with a
CSV), HEAR scene-task folders or tagtune's own cache (parsed once, memory-mapped after), and
audio files listed by a CSV (decoded once per sample rate).  :class:`ReadOptions` names
non-default keys and the task (``--feature-key``, ``--label-key``, ``--group-key``, ``--task``).

Typical use::

    from tagtune.trainables.data import open_source

    source = open_source("../shared/data/audioset/bal_train")  # the format is sniffed once
    source.kind, source.format, source.shape                     # read (cached) on first use
    data = source.trial_data(val_fraction=0.2, seed=0)           # TrialData for fit
    ds = source.embeddings()                                     # the full Dataset (finals)

``load_dataset(path)`` is ``open_source(path).embeddings()``.
"""

from __future__ import annotations

from tagtune.trainables.data._arrays import build_dataset, encode_labels
from tagtune.trainables.data._audio import AudioDataset, AudioReader, audio_trial_data, load_audio_dataset
from tagtune.trainables.data._audio_decode import AudioClips, check_rate, decode_file, load_clips, resample
from tagtune.trainables.data._audio_table import STYLES, AudioTable, find_csv, read_table, sniff_style
from tagtune.trainables.data._cache import default_cache_dir, read_cache, write_cache
from tagtune.trainables.data._dataset import (
    Dataset,
    find_class_csv,
    fit_frames,
    lengths_from_padding,
    read_class_names,
    read_vocabulary,
    split_indices,
)
from tagtune.trainables.data._formats import CacheReader, Hdf5Reader, TfrecordReader, write_hdf5
from tagtune.trainables.data._hear import HearReader
from tagtune.trainables.data._inspect import format_inspect, inspect, summarize
from tagtune.trainables.data._numpy import NpyCsvReader, NpzReader
from tagtune.trainables.data._options import TASKS, ReadOptions, check_single_label
from tagtune.trainables.data._source import (
    READERS,
    DataSource,
    Reader,
    apply_task,
    load_dataset,
    open_source,
    reader_for,
    register_reader,
    sniff_format,
)
from tagtune.trainables.data._split import TEST, check_finite, split_of
from tagtune.trainables.data._synth import make_synthetic, synthesize
from tagtune.trainables.data._tfrecord import write_tfrecords
from tagtune.trainables.data._trial import Clips, EmbeddingClips, InputScaling, TrialData
from tagtune.trainables.data._writers import FORMATS, make_embeddings, write_format

__all__ = [
    "READERS",
    "TEST",
    "check_finite",
    "split_of",
    "STYLES",
    "TASKS",
    "AudioClips",
    "AudioDataset",
    "AudioReader",
    "AudioTable",
    "CacheReader",
    "Clips",
    "DataSource",
    "Dataset",
    "EmbeddingClips",
    "FORMATS",
    "HearReader",
    "NpyCsvReader",
    "NpzReader",
    "Hdf5Reader",
    "InputScaling",
    "ReadOptions",
    "Reader",
    "TfrecordReader",
    "TrialData",
    "apply_task",
    "audio_trial_data",
    "build_dataset",
    "encode_labels",
    "make_embeddings",
    "read_vocabulary",
    "write_format",
    "check_single_label",
    "check_rate",
    "decode_file",
    "default_cache_dir",
    "find_class_csv",
    "find_csv",
    "fit_frames",
    "format_inspect",
    "inspect",
    "lengths_from_padding",
    "load_audio_dataset",
    "load_clips",
    "load_dataset",
    "make_synthetic",
    "open_source",
    "read_cache",
    "read_class_names",
    "read_table",
    "reader_for",
    "register_reader",
    "resample",
    "sniff_format",
    "sniff_style",
    "split_indices",
    "summarize",
    "synthesize",
    "write_cache",
    "write_hdf5",
    "write_tfrecords",
]
