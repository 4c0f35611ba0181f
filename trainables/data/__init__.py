"""AudioSet-style clip data: readers (TFRecord, HDF5, tagtune cache), the cache, a synthetic
generator and summaries.

Typical use::

    from tagtune.trainables.data import load_dataset, split_indices

    ds = load_dataset("../shared/data/audioset/bal_train")  # parsed once, memory-mapped after
    train, val = split_indices(ds.n_clips, val_fraction=0.2, seed=0)
"""

from __future__ import annotations

from tagtune.trainables.data._cache import read_cache, write_cache
from tagtune.trainables.data._dataset import Dataset, load_dataset, read_class_names, split_indices
from tagtune.trainables.data._inspect import format_inspect, inspect
from tagtune.trainables.data._synth import make_synthetic, synthesize
from tagtune.trainables.data._tfrecord import write_tfrecords

__all__ = [
    "Dataset",
    "format_inspect",
    "inspect",
    "load_dataset",
    "make_synthetic",
    "read_cache",
    "read_class_names",
    "split_indices",
    "synthesize",
    "write_cache",
    "write_tfrecords",
]
