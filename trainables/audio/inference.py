"""Tagging audio with trained ``densenet_audio`` checkpoints: files in, class probabilities out.

One place for what the registered pyfunc model (:mod:`tagtune.tracking.serving`) and
``tagtune predict`` do with a recording:

* :func:`load_waveform`: decode a wav/flac/ogg file (soundfile), downmix to mono, optionally
  resample (soxr HQ, as the training data's decode path does).
* :func:`check_waveform`: refuse what a model cannot tag, each with one line naming the clip and
  the fix: no samples, non-finite samples, silence (peak below :data:`SILENCE_PEAK`), a sample
  rate outside [1000, 192000] Hz or below the model's own rate (its front end reads frequencies up
  to the model's Nyquist, which a lower-rate recording does not hold).
* :class:`AudioTagger`: one checkpoint or an ensemble; per member the clip is resampled to the
  member's ``sample_rate`` and scored as validation scores whole clips
  (:meth:`tagtune.trainables.audio.batches.AudioBatches.predict_logits`): zero-padded (centered)
  to at least ``crop_samples``, peak-normalized when training used the random scale
  (``mixup_scale > 0``), softmax (single-label) or sigmoid outputs
  (:func:`tagtune.trainables.inference.to_probabilities`).  With ``windows=True`` a
  clip longer than ``crop_samples`` is cut into windows of ``crop_samples`` (hop half of it, the
  last window ending at the clip's end) and the windows' probabilities are averaged.  Members
  combine as :func:`tagtune.trainables.ensemble.combine_scores` (mean / weighted geomean).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tagtune.errors import InputError
from tagtune.trainables.audio.batches import crop_or_pad
from tagtune.trainables.data import check_rate, resample
from tagtune.trainables.ensemble import combine_scores
from tagtune.trainables.inference import class_names_of, is_audio_meta, is_single_label, to_probabilities

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg")
"""The file types ``tagtune predict`` picks from a folder."""
SILENCE_PEAK = 1e-4
"""A clip whose peak magnitude is below this (-80 dBFS, about 3 steps of 16-bit audio) is silent."""
WINDOW_BATCH = 64
"""Windows scored per forward pass."""


def audio_settings(meta: Mapping[str, Any]) -> tuple[int, int]:
    """``(sample_rate, crop_samples)`` of a raw-audio checkpoint (its config resolved with the
    family's defaults)."""
    from tagtune.trainables.config import resolve_config

    cfg = resolve_config(meta["config"])
    return int(cfg["sample_rate"]), int(cfg.get("crop_samples") or 0) or 1


def load_waveform(path: str | os.PathLike[str], sample_rate: int | None = None) -> tuple[np.ndarray, int]:
    """A file's samples as mono float32 and their rate: the file's own, or ``sample_rate`` (resampled).

    An unreadable, empty or non-audio file is an :class:`InputError` naming it.
    """
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such audio file; pass a wav, flac or ogg file")
    try:
        audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, OSError, ValueError, TypeError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise InputError(f"{path}: cannot decode it as audio ({reason}); pass a wav, flac or ogg file") from None
    if audio.shape[0] == 0:
        raise InputError(f"{path}: the audio file has no samples; pass a recording")
    mono = np.ascontiguousarray(audio.mean(axis=1) if audio.shape[1] > 1 else audio[:, 0])
    if sample_rate is not None:
        return resample(mono, int(rate), check_rate(sample_rate)), int(sample_rate)
    return mono, int(rate)


def check_waveform(audio: Any, rate: Any, model_rate: int, what: str = "clip") -> np.ndarray:
    """``audio`` as a 1-D float32 array a model of ``model_rate`` Hz can tag, else an :class:`InputError`."""
    try:
        rate = check_rate(rate, f"{what}: sample_rate")
    except InputError as exc:
        raise InputError(f"{exc}; pass the recording's own rate") from None
    if rate < model_rate:
        raise InputError(
            f"{what}: sample rate {rate} Hz is below the model's {model_rate} Hz (its front end reads up to "
            f"{model_rate // 2} Hz, which a {rate} Hz recording does not hold); pass audio recorded at "
            f">= {model_rate} Hz"
        )
    try:
        x = np.asarray(audio, dtype=np.float32)
    except (TypeError, ValueError):
        raise InputError(f"{what}: audio must be a list of numbers (the samples)") from None
    if x.ndim != 1:
        x = np.squeeze(x)
    if x.ndim != 1:
        raise InputError(f"{what}: audio must be one channel of samples, got shape {np.shape(audio)}")
    if x.size == 0:
        raise InputError(f"{what}: no samples; pass a recording")
    if not np.isfinite(x).all():
        raise InputError(f"{what}: samples must be finite numbers (found NaN or inf)")
    peak = float(np.abs(x).max())
    if peak < SILENCE_PEAK:
        raise InputError(
            f"{what}: silent (peak {peak:.1e}, below {SILENCE_PEAK:g}); nothing to tag, pass a recording with sound"
        )
    return x


def sliding_windows(x: np.ndarray, length: int, hop: int | None = None) -> np.ndarray:
    """Windows ``[W, length]`` of ``x``: one (centered, zero-padded) window when ``x`` is no longer
    than ``length``; else windows every ``hop`` samples (default ``length // 2``), the last one
    ending at the end of ``x`` so every sample is covered."""
    n = len(x)
    if n <= length:
        return crop_or_pad(x, length)[None]
    hop = max(1, int(hop or length // 2))
    starts = list(range(0, n - length + 1, hop))
    if starts[-1] != n - length:
        starts.append(n - length)
    return np.stack([x[s : s + length] for s in starts])


class _Member:
    """One checkpoint: its network and what scoring a clip needs from its (resolved) config."""

    def __init__(self, model: nn.Module, meta: Mapping[str, Any]) -> None:
        from tagtune.trainables.config import resolve_config

        if not is_audio_meta(meta):
            family = dict(meta.get("config") or {}).get("family")
            raise InputError(f"a checkpoint of family {family!r} reads embeddings, not audio")
        cfg = resolve_config(meta["config"])
        self.model = model.eval()
        self.rate = int(cfg["sample_rate"])
        self.crop = int(cfg.get("crop_samples") or 0) or 1
        self.normalize = float(cfg.get("mixup_scale") or 0.0) > 0
        self.single_label = is_single_label(meta)

    @torch.inference_mode()
    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """Probabilities ``[len(x), C]`` of equal-length rows ``x [B, L]`` (``L >= crop``)."""
        out = []
        for i in range(0, len(x), WINDOW_BATCH):
            xb = torch.from_numpy(np.ascontiguousarray(x[i : i + WINDOW_BATCH], dtype=np.float32))
            if self.normalize:
                xb = xb / xb.abs().amax(dim=1, keepdim=True).clamp(min=1e-8)
            logits = self.model(xb.unsqueeze(2)).float()
            out.append(to_probabilities(logits, self.single_label).numpy())
        return np.concatenate(out)

    def clip_scores(self, clip: np.ndarray, rate: int, windows: bool) -> np.ndarray:
        """Probabilities ``[C]`` of one clip at ``rate`` Hz (whole, or the mean over its windows)."""
        x = resample(clip, rate, self.rate)
        if windows:
            rows = sliding_windows(x, self.crop)
        else:
            rows = crop_or_pad(x, max(len(x), self.crop))[None]
        return self.probabilities(rows).mean(axis=0)


class AudioTagger:
    """Scores recordings with one ``densenet_audio`` checkpoint or an ensemble of them."""

    def __init__(
        self,
        members: Sequence[tuple[nn.Module, Mapping[str, Any]]],
        weights: Sequence[float] | None = None,
        method: str = "mean",
    ) -> None:
        if not members:
            raise ValueError("an AudioTagger needs at least one checkpoint")
        self.members = [_Member(model, meta) for model, meta in members]
        self.weights = list(weights) if weights is not None else [1.0] * len(self.members)
        self.method = method
        first = members[0][1]
        self.single_label = is_single_label(first)
        """Single-label members: a geometric-mean ensemble's rows are distributions, as finalize scored them."""
        self.class_names = class_names_of(first)
        self.sample_rate = self.members[0].rate
        """The rate a clip is assumed to have when none is given (the first member's)."""
        self.min_rate = max(m.rate for m in self.members)
        """The lowest input rate every member can take."""
        self.crop_samples = self.members[0].crop

    @classmethod
    def from_folders(
        cls, folders: Sequence[str | os.PathLike[str]], weights: Sequence[float] | None = None, method: str = "mean"
    ) -> AudioTagger:
        """The tagger of checkpoint folders (``model.pt`` + ``model.json``)."""
        from tagtune.trainables.checkpoint import load_model

        return cls([load_model(f) for f in folders], weights, method)

    def scores(
        self,
        clips: Sequence[Any],
        rates: Sequence[Any],
        *,
        windows: bool = False,
        names: Sequence[str] | None = None,
    ) -> np.ndarray:
        """Probabilities ``[N, C]`` (float32) of clips (sample arrays) at ``rates`` (Hz).

        ``names`` (default ``clip 0``, ``clip 1``, ...) name the clips in error messages.
        """
        out = np.zeros((len(clips), len(self.class_names)), dtype=np.float32)
        for i, (clip, rate) in enumerate(zip(clips, rates, strict=True)):
            what = names[i] if names is not None else f"clip {i}"
            x = check_waveform(clip, rate, self.min_rate, what)
            per_member = [m.clip_scores(x, int(rate), windows)[None] for m in self.members]
            if len(per_member) == 1:
                out[i] = per_member[0][0]
            else:
                out[i] = combine_scores(per_member, self.weights, self.method, single_label=self.single_label)[0]
        return out

    def file_scores(self, path: str | os.PathLike[str], *, windows: bool = True) -> np.ndarray:
        """Probabilities ``[C]`` of one audio file (decoded at its own rate; windows by default)."""
        audio, rate = load_waveform(path)
        return self.scores([audio], [rate], windows=windows, names=[str(path)])[0]
