"""Raw audio on the model side: batches, front ends and seed 003's ensemble.

Reading audio (the CSV styles, decoding and its cache, :class:`AudioDataset`) is a data format
like the others and lives in :mod:`tagtune.trainables.data`; its names are re-exported here.

Typical use::

    from tagtune.trainables.data import open_source

    data = open_source("../shared/data/fsdd").trial_data(sample_rates=[8000])  # decoded once, cached
    ds = data.clips                                                     # the AudioDataset
    train, val, test = ds.splits(val_fraction=0.2, seed=0)              # FSDD: official test held out
    clips = ds.at(8000)                                                 # samples + offsets

The training loop (:func:`tagtune.trainables.loop.fit`) reads such data through
:class:`tagtune.trainables.audio.batches.AudioBatches`; the ``densenet_audio`` family's front ends live in
:mod:`tagtune.trainables.audio.frontends`; seed 003's ensemble in :mod:`tagtune.trainables.ensemble`;
tagging recordings with trained checkpoints (``AudioTagger``, ``load_waveform``, ...) in
:mod:`tagtune.trainables.audio.inference`, imported from there (it reads configs and checkpoints,
whose model families import this package).
"""

from __future__ import annotations

from tagtune.trainables.data import (
    STYLES,
    AudioClips,
    AudioDataset,
    AudioTable,
    audio_trial_data,
    check_rate,
    decode_file,
    find_csv,
    load_audio_dataset,
    load_clips,
    read_table,
    resample,
    sniff_style,
)
from tagtune.trainables.ensemble import geometric_mean_ensemble, score_ensemble
from tagtune.trainables.metrics import single_label_metrics

__all__ = [
    "STYLES",
    "AudioClips",
    "AudioDataset",
    "AudioTable",
    "audio_trial_data",
    "check_rate",
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
