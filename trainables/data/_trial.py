"""What one trial trains on: the clips of one data kind, their labels and the split.

:class:`TrialData` holds ``clips``, an object of one data kind (``kind``, ``n_clips`` and
``frame_shape``, the (frames, features) the families are built with):

* :class:`EmbeddingClips`: sequences ``x [N, T, F]`` of any dtype (uint8 AudioSet-style
  embeddings, or a researcher's float features), with the :class:`InputScaling` that turns them
  into model inputs;
* :class:`tagtune.trainables.data.AudioDataset`: audio files, decoded per sample rate on use
  (``frame_shape`` ``(0, 1)``: any length, one channel).

The training loop picks the batches of the kind (:data:`tagtune.trainables.loop.BATCHES`), so a
new kind is one clips class here and one batches class there.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

UNIT = "unit"
"""Scaling of uint8 inputs: ``x / 255`` (seed 001), exactly as tagtune always scaled them."""
STANDARD = "standard"
"""Scaling of float inputs: ``(x - mean) / std * SPREAD`` per feature, with the training split's statistics."""
SPREAD = 0.3
"""The per-feature standard deviation standardized float inputs get: that of the uint8 path's inputs
(AudioSet bytes / 255 on bal_train: 0.23-0.36 per feature, 0.30 on average), so the families'
default learning rates, tuned on those inputs, carry over (Adam's steps do not shrink with the
inputs' scale: unit variance trains like a 3x higher learning rate; fc1 lost 0.022 val mAUC)."""


@dataclass(frozen=True, eq=False)
class InputScaling:
    """How raw clips ``x [N, T, F]`` become model inputs; recorded with every checkpoint.

    ``unit``: uint8 clips divided by 255.  ``standard``: float clips standardized per feature with
    ``mean`` and ``std`` (float32 ``[F]``) computed on the training split's frames, to a spread of
    :data:`SPREAD` (``std`` holds the divisor, ``std / SPREAD``); a frame that is all zeros (the
    padding of a short clip) stays zero.  Finalize, predict and registered models rebuild it from
    the checkpoint (:meth:`from_meta`) and apply the same transform.
    """

    kind: str = UNIT
    mean: np.ndarray | None = None
    std: np.ndarray | None = None
    dtype: str = "uint8"
    """The raw clips' dtype (the registered model's input signature)."""

    @classmethod
    def fit(cls, x: np.ndarray, train_idx: np.ndarray | None = None, chunk: int = 4096) -> InputScaling:
        """The scaling of ``x``: ``unit`` for uint8, else ``standard`` with the statistics of the
        non-zero frames of the clips ``train_idx`` (all clips when ``None``)."""
        dtype = np.dtype(x.dtype)
        if dtype == np.uint8:
            return cls()
        idx = np.arange(len(x)) if train_idx is None else np.asarray(train_idx)
        n_feat = x.shape[2]
        total = np.zeros(n_feat, np.float64)
        squares = np.zeros(n_feat, np.float64)
        count = 0
        for start in range(0, len(idx), chunk):
            part = np.asarray(x[np.sort(idx[start : start + chunk])], dtype=np.float64)
            frames = part.reshape(-1, n_feat)
            frames = frames[frames.any(axis=1)]
            total += frames.sum(axis=0)
            squares += np.square(frames).sum(axis=0)
            count += len(frames)
        mean = total / max(count, 1)
        var = np.maximum(squares / max(count, 1) - np.square(mean), 0.0)
        std = np.sqrt(var)
        std = np.where(std > 1e-8 * np.maximum(np.abs(mean), 1.0), std, 1.0)
        # Stored as the divisor: (x - mean) / (std / SPREAD) has a spread of SPREAD per feature.
        return cls(STANDARD, mean.astype(np.float32), (std / SPREAD).astype(np.float32), dtype.name)

    def to_meta(self) -> dict[str, Any]:
        """The JSON-able record stored in a checkpoint's ``model.json`` (``inputs``)."""
        out: dict[str, Any] = {"scaling": self.kind, "dtype": self.dtype}
        if self.kind == STANDARD:
            assert self.mean is not None and self.std is not None
            out["mean"] = [float(v) for v in self.mean]
            out["std"] = [float(v) for v in self.std]
        return out

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any]) -> InputScaling:
        """The scaling a checkpoint's ``model.json`` records (``unit`` when it records none:
        checkpoints from before float inputs were all uint8)."""
        inputs = meta.get("inputs") or {}
        if inputs.get("scaling", UNIT) == UNIT:
            return cls(dtype=str(inputs.get("dtype", "uint8")))
        return cls(
            STANDARD,
            np.asarray(inputs["mean"], np.float32),
            np.asarray(inputs["std"], np.float32),
            str(inputs.get("dtype", "float32")),
        )

    def apply_numpy(self, x: np.ndarray) -> np.ndarray:
        """``x`` scaled as the model sees it (float32), in NumPy."""
        if self.kind == UNIT:
            return np.asarray(x, np.float32) / np.float32(255.0)
        assert self.mean is not None and self.std is not None
        raw = np.asarray(x, np.float32)
        present = raw.any(axis=-1, keepdims=True)
        return np.where(present, (raw - self.mean) / self.std, np.float32(0.0)).astype(np.float32)


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
    """Embedding sequences ``x [N, T, F]`` of any dtype (zero-padded at the end) and their
    scaling (``unit`` for uint8 clips unless given)."""

    x: np.ndarray
    scaling: InputScaling = InputScaling()

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
    read_keys: dict[str, str]

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
        scaling: InputScaling | None = None,
        read_keys: dict[str, str] | None = None,
    ) -> None:
        if (x is None) == (clips is None):
            raise TypeError("TrialData needs either x (embedding arrays) or clips, not both")
        if y is None or train_idx is None or val_idx is None:
            raise TypeError("TrialData needs y, train_idx and val_idx")
        if x is not None:
            self.clips = EmbeddingClips(x, scaling if scaling is not None else InputScaling.fit(x, train_idx))
        else:
            self.clips = clips  # type: ignore[assignment]
        self.y = y
        self.train_idx = train_idx
        self.val_idx = val_idx
        self.class_names = tuple(class_names)
        self.verified = verified
        self.single_label = bool(single_label)
        self.read_keys = dict(read_keys or {})  # --feature-key / --label-key, for the checkpoint

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
        """The embedding sequences ``[N, T, F]`` (embedding data only; any dtype)."""
        if not isinstance(self.clips, EmbeddingClips):
            raise AttributeError(f"{self.kind} data have no embedding array x; read data.clips")
        return self.clips.x

    @property
    def scaling(self) -> InputScaling:
        """How the clips become model inputs (``unit`` for audio and uint8 clips)."""
        return getattr(self.clips, "scaling", InputScaling())

    @property
    def audio(self) -> Clips | None:
        """The audio dataset (``clips``) of audio data, else ``None``."""
        return self.clips if self.kind == "audio" else None
