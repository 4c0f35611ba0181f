"""What ``tagtune finalize`` is asked to do and what it gives back: :class:`FinalizeSpec`,
:class:`Member` (one trained final), :class:`FinalizeOutcome`, and a trial's full config."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tagtune.errors import InputError
from tagtune.spec import FinalizeSpec
from tagtune.tracking import TrialRow, final_name
from tagtune.trainables.inference import AUDIO, EMBEDDINGS

FIT_SLICE = EMBEDDINGS.fit_slice
"""At most this many training clips are scored each epoch as ``fit_*`` (not a held-out score)."""
AUDIO_FIT_SLICE = AUDIO.fit_slice
"""The same for raw audio, where scoring whole clips costs a good part of an epoch."""
AUDIO_ENSEMBLE_METHODS = AUDIO.ensemble_methods
"""Seed 003's ensemble of audio finals: the weighted geometric mean."""

__all__ = [
    "FinalizeSpec",
    "FinalizeOutcome",
    "LeftOut",
    "Member",
    "Planned",
    "Say",
    "full_config",
    "labels_for",
    "seed_mean",
]

Say = Callable[[str], None]
Planned = tuple[str, int, TrialRow]
"""``(family, rank, trial)``: one final to train (rank 1: the family's best trial)."""


def seed_mean(probs: list[np.ndarray]) -> np.ndarray:
    """A seed ensemble's probabilities: the mean of its seeds' (one seed: its own)."""
    if len(probs) == 1:
        return probs[0]
    return np.mean(np.stack(probs), axis=0).astype(np.float32)


@dataclass(frozen=True)
class LeftOut:
    """A trial kept out of the ensemble pool, and why."""

    name: str
    run_id: str
    why: str

    def __str__(self) -> str:
        return f"{self.name} ({self.why})"


@dataclass
class Member:
    """One trained final: where it came from, its eval scores and its checkpoint folders (one
    per seed; with ``--seeds N`` its scores are the mean of the seeds' probabilities)."""

    family: str
    rank: int
    source: TrialRow
    run_id: str
    epochs: int
    checkpoints: list[Path]
    seed_scores: list[np.ndarray]
    metrics: dict[str, float]
    model_uri: str = ""

    @property
    def checkpoint(self) -> Path:
        """The first seed's checkpoint folder."""
        return self.checkpoints[0]

    @cached_property
    def scores(self) -> np.ndarray:
        """The eval probabilities: the seeds' mean (:func:`seed_mean`)."""
        return seed_mean(self.seed_scores)

    @property
    def name(self) -> str:
        """``fc1`` for a family's best, ``fc1#2`` for its second."""
        return final_name(self.family, self.rank)


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
