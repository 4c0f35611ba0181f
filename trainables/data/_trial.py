"""What one trial trains on: the clips of one data kind, their labels and the split.

:class:`TrialData` holds ``clips``, an object of one data kind (``kind``, ``n_clips`` and
``frame_shape``, the (frames, features) the families are built with):

* :class:`EmbeddingClips`: uint8 sequences ``x [N, T, F]`` (AudioSet-style embeddings);
* :class:`tagtune.trainables.data.AudioDataset`: audio files, decoded per sample rate on use
  (``frame_shape`` ``(0, 1)``: any length, one channel).

The training loop picks the batches of the kind (:data:`tagtune.trainables.loop.BATCHES`), so a
new kind is one clips class here and one batches class there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


class Clips(Protocol):
    """The clips of a trial, of one data kind."""

    @property
    def kind(self) -> str:
        """The data kind: ``"embeddings"`` or ``"audio"`` (the key of the kind's batches)."""
        ...

    @property
    def n_clips(self) -> int:
        """Number of clips N."""
        ...

    @property
    def frame_shape(self) -> tuple[int, int]:
        """(frames, features) per clip that models of this kind are built with."""
        ...


@dataclass(frozen=True, eq=False)
class EmbeddingClips:
    """Embedding sequences: uint8 ``x [N, T, F]`` (zero-padded at the end)."""

    x: np.ndarray

    @property
    def kind(self) -> str:
        """Always ``"embeddings"``."""
        return "embeddings"

    @property
    def n_clips(self) -> int:
        """Number of clips N."""
        return int(self.x.shape[0])

    @property
    def frame_shape(self) -> tuple[int, int]:
        """(T, F)."""
        return int(self.x.shape[1]), int(self.x.shape[2])


@dataclass(init=False, eq=False)
class TrialData:
    """What one trial trains on: its clips, the labels and the train/validation index split.

    Built from embedding arrays as ``TrialData(x=..., y=..., train_idx=..., val_idx=...,
    class_names=...)`` or from clips of any kind as ``TrialData(clips=..., y=..., ...)``.

    ``verified`` is an optional bool flag per clip (seed 003's manually verified labels): loss
    masking never drops a verified clip.  ``None`` means no clip is verified.
    ``single_label``: every clip has exactly one class; trained with softmax cross-entropy and
    scored with accuracy and MAP@3 as well.
    """

    clips: Clips
    y: np.ndarray
    train_idx: np.ndarray
    val_idx: np.ndarray
    class_names: tuple[str, ...]
    verified: np.ndarray | None
    single_label: bool

    def __init__(
        self,
        x: np.ndarray | None = None,
        y: np.ndarray | None = None,
        train_idx: np.ndarray | None = None,
        val_idx: np.ndarray | None = None,
        class_names: tuple[str, ...] = (),
        verified: np.ndarray | None = None,
        single_label: bool = False,
        *,
        clips: Clips | None = None,
    ) -> None:
        if (x is None) == (clips is None):
            raise TypeError("TrialData needs either x (embedding arrays) or clips, not both")
        if y is None or train_idx is None or val_idx is None:
            raise TypeError("TrialData needs y, train_idx and val_idx")
        self.clips = EmbeddingClips(x) if x is not None else clips  # type: ignore[assignment]
        self.y = y
        self.train_idx = train_idx
        self.val_idx = val_idx
        self.class_names = tuple(class_names)
        self.verified = verified
        self.single_label = bool(single_label)

    @property
    def kind(self) -> str:
        """The data kind of ``clips`` (``"embeddings"`` or ``"audio"``)."""
        return self.clips.kind

    @property
    def n_clips(self) -> int:
        """Number of clips N (train, validation and held-out ones)."""
        return self.clips.n_clips

    @property
    def n_held_out(self) -> int:
        """Clips in neither split (an audio CSV's official test clips)."""
        return self.n_clips - len(self.train_idx) - len(self.val_idx)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(frames, features, classes) the families are built with."""
        n_frames, n_features = self.clips.frame_shape
        return n_frames, n_features, int(self.y.shape[1])

    @property
    def x(self) -> np.ndarray:
        """The uint8 embedding sequences ``[N, T, F]`` (embedding data only)."""
        if not isinstance(self.clips, EmbeddingClips):
            raise AttributeError(f"{self.kind} data have no embedding array x; read data.clips")
        return self.clips.x

    @property
    def audio(self) -> Clips | None:
        """The audio dataset (``clips``) of audio data, else ``None``."""
        return self.clips if self.kind == "audio" else None
