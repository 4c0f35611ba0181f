"""What ``tagtune finalize`` is asked to do and what it gives back: :class:`FinalizeSpec`,
:class:`Member` (one trained final), :class:`FinalizeOutcome`, and a trial's full config."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tagtune.errors import InputError
from tagtune.tracking import TrialRow
from tagtune.trainables.inference import AUDIO, EMBEDDINGS

FIT_SLICE = EMBEDDINGS.fit_slice
"""At most this many training clips are scored each epoch as ``fit_*`` (not a held-out score)."""
AUDIO_FIT_SLICE = AUDIO.fit_slice
"""The same for raw audio, where scoring whole clips costs a good part of an epoch."""
AUDIO_ENSEMBLE_METHODS = AUDIO.ensemble_methods
"""Seed 003's ensemble of audio finals: the weighted geometric mean."""

Say = Callable[[str], None]
Planned = tuple[str, int, TrialRow]
"""``(family, rank, trial)``: one final to train (rank 1: the family's best trial)."""


@dataclass
class FinalizeSpec:
    """What ``tagtune finalize`` does; :meth:`check` validates it before anything runs."""

    experiment: str
    train: str
    eval: str | None = None
    """Embeddings: the eval split (required).  Audio: optional, another audio CSV of test files;
    by default the clips --train's CSV marks ``test``."""
    top_k: int = 1
    max_epochs: int | None = None
    tracking_uri: str | None = None
    run_id: str | None = None
    register: bool = True
    ensembles: bool = True
    ensemble_pool: int = 3
    seed: int = 0
    device: str | None = None

    def check(self) -> None:
        """Flags in range and both data paths present."""
        if self.top_k < 1:
            raise InputError(f"--top-k must be at least 1, got {self.top_k}")
        if self.ensemble_pool < 1:
            raise InputError(f"--ensemble-pool must be at least 1, got {self.ensemble_pool}")
        if self.max_epochs is not None and self.max_epochs < 1:
            raise InputError(f"--max-epochs must be at least 1, got {self.max_epochs}")
        for flag, path in (("--train", self.train), ("--eval", self.eval)):
            if path is not None and not Path(path).exists():
                raise InputError(
                    f"{flag} {path}: no such file or folder; pass a folder of *.tfrecord, "
                    "an .h5 file, a tagtune cache, or an audio CSV (or its folder)"
                )


@dataclass
class Member:
    """One trained final: where it came from, its eval scores and its checkpoint folder."""

    family: str
    rank: int
    source: TrialRow
    run_id: str
    epochs: int
    checkpoint: Path
    scores: np.ndarray
    metrics: dict[str, float]
    model_uri: str = ""

    @property
    def name(self) -> str:
        """``fc1`` for a family's best, ``fc1#2`` for its second."""
        return f"{self.family}#{self.rank}" if self.rank > 1 else self.family


@dataclass
class FinalizeOutcome:
    """Where the finals went: the parent run, the store, and the finals table."""

    parent_run_id: str
    tracking_uri: str
    finals: pd.DataFrame
    members: list[Member] = field(default_factory=list)


def full_config(row: TrialRow, family: str) -> Any:
    """The trial's full, checked training config."""
    from tagtune.trainables.config import resolve_config

    return resolve_config({**row.config(), "family": family})


def labels_for(cfg: Any, y: np.ndarray, class_names: tuple[str, ...]) -> tuple[np.ndarray, tuple[str, ...]]:
    """The labels a model of ``cfg`` predicts: all classes, or the binary task's one column."""
    target = cfg.get("target_class")
    if target is None:
        return y, class_names
    if target not in class_names:
        raise InputError(f"target_class {target!r} of the config is not a class of --eval; check the data")
    col = class_names.index(target)
    return y[:, col : col + 1], (str(target),)
