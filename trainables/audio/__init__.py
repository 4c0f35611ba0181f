"""Raw audio: datasets of audio files listed by a CSV, decoding and caching, batches, front ends.

Typical use::

    from tagtune.trainables.audio import load_audio_dataset

    ds = load_audio_dataset("../shared/data/fsdd", sample_rates=[8000])  # decoded once, cached
    train, val, test = ds.splits(val_fraction=0.2, seed=0)              # FSDD: official test held out
    clips = ds.at(8000)                                                 # samples + offsets

The training loop (:func:`tagtune.trainables.loop.fit`) reads such data through
:class:`tagtune.trainables.audio.batches.AudioBatches`; the ``densenet_audio`` family's front ends live in
:mod:`tagtune.trainables.audio.frontends`; seed 003's ensemble in :mod:`tagtune.trainables.audio.ensemble`.
"""

from __future__ import annotations

from tagtune.trainables.audio._dataset import AudioDataset, audio_trial_data, load_audio_dataset
from tagtune.trainables.audio._decode import AudioClips, decode_file, load_clips, resample
from tagtune.trainables.audio._table import STYLES, AudioTable, find_csv, read_table, sniff_style
from tagtune.trainables.audio.ensemble import geometric_mean_ensemble, score_ensemble, single_label_metrics

__all__ = [
    "STYLES",
    "AudioClips",
    "AudioDataset",
    "AudioTable",
    "audio_trial_data",
    "decode_file",
    "find_csv",
    "geometric_mean_ensemble",
    "load_audio_dataset",
    "load_clips",
    "read_table",
    "resample",
    "score_ensemble",
    "single_label_metrics",
    "sniff_style",
]
