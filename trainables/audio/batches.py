"""Batches of raw audio as seed 003 makes them, built on the trial's device.

Training: a fixed-length window per clip (``crop_samples``): a random crop of a longer clip, a
shorter clip zero-padded at both ends (centered); class-balanced draws; optional peak
normalization with a random scale and mixup (seed 003's eq. 2).  Evaluation: whole clips, sorted
by length and batched, each zero-padded (centered) to its batch's longest and to at least
``crop_samples``, so a clip is seen as in training and long clips are not cut (and
peak-normalized when training used the random scale, ``mixup_scale > 0``).

Every clip lives in one flat sample tensor on the device; a batch is one gather of
``[B, length]`` indices (no Python loop per clip).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from tagtune.errors import InputError
from tagtune.trainables.batches import TrainBatches, autocast
from tagtune.trainables.data import AudioDataset, TrialData
from tagtune.trainables.techniques import mixup, sample_mixup_lambda

EVAL_BUDGET = 4
"""An evaluation batch holds at most ``EVAL_BUDGET * batch_size * crop_samples`` samples."""


def crop_or_pad(clip: np.ndarray, length: int, offset: int | None = None) -> np.ndarray:
    """``clip`` as exactly ``length`` samples: a window from ``offset`` (default: centered) of a
    longer clip, or the clip zero-padded at both ends (the extra sample, if odd, at the end).

    The reference for :func:`gather_windows` (which does the same for a batch, on the device).
    """
    n = len(clip)
    if n >= length:
        start = (n - length) // 2 if offset is None else int(offset)
        if not 0 <= start <= n - length:
            raise ValueError(f"offset {offset} out of range for a clip of {n} samples cut to {length}")
        return np.asarray(clip[start : start + length])
    left = (length - n) // 2
    return np.pad(np.asarray(clip), (left, length - n - left))


def window_starts(lengths: Tensor, length: int, u: Tensor | None = None) -> Tensor:
    """Where each clip's window begins (negative: zero padding before the clip).

    Clips of at least ``length`` samples start at ``floor(u * (n - length + 1))`` (``u`` uniform
    in [0, 1): a random crop), or in the middle when ``u`` is ``None``; shorter clips start at
    ``-((length - n) // 2)`` (centered, zeros at both ends).
    """
    excess = lengths - length
    if u is None:
        crop = excess // 2
    else:
        crop = torch.minimum((u * (excess + 1).clamp(min=1)).long(), excess.clamp(min=0))
    return torch.where(excess >= 0, crop, -((-excess) // 2))


def gather_windows(samples: Tensor, offsets: Tensor, lengths: Tensor, starts: Tensor, length: int) -> Tensor:
    """Windows ``[B, length]`` (float32): clip ``i`` is ``samples[offsets[i]:offsets[i] + lengths[i]]``;
    its window covers clip positions ``starts[i] .. starts[i] + length - 1``, zero outside the clip."""
    pos = starts.unsqueeze(1) + torch.arange(length, device=samples.device).unsqueeze(0)
    inside = (pos >= 0) & (pos < lengths.unsqueeze(1))
    flat = offsets.unsqueeze(1) + pos.clamp(min=0).minimum((lengths - 1).clamp(min=0).unsqueeze(1))
    return samples[flat].float() * inside


def peak_normalize(x: Tensor, eps: float = 1e-8) -> Tensor:
    """Each row of ``x [B, L]`` divided by its peak magnitude (silent rows stay zero)."""
    return x / x.abs().amax(dim=1, keepdim=True).clamp(min=eps)


def scale_mixup(
    x: Tensor, y: Tensor, lam: Tensor | None, partner: Tensor | None, w: Tensor | None
) -> tuple[Tensor, Tensor]:
    """Seed 003's eq. 2: ``w * (lam * x_j / max|x_j| + (1 - lam) * x_k / max|x_k|)``.

    ``lam``/``partner`` ``None``: no mixup; ``w`` ``None``: no peak normalization and no scale (eq. 1).
    """
    if w is not None:
        x = peak_normalize(x)
    if lam is not None and partner is not None:
        x, y = mixup(x, y, lam, partner)
    if w is not None:
        x = x * w.unsqueeze(1)
    return x, y


def check_audio_config(cfg: Mapping[str, Any]) -> None:
    """An :class:`InputError` unless the (resolved) config can train on audio data."""
    family = cfg.get("family")
    if "sample_rate" not in cfg:
        raise InputError(
            f"family {family!r} reads embeddings, but the data are audio files; use an audio family "
            "such as densenet_audio"
        )
    for key in ("shift_augment", "positive_mix"):
        if cfg.get(key):
            raise InputError(f"{key} applies to embeddings, not to audio data; set it to 0 for {family}")


class AudioBatches(TrainBatches):
    """A trial's raw-audio batches on its device (the audio kind of
    :class:`tagtune.trainables.batches.Batches`): :meth:`order` an epoch's clip order, :meth:`make`
    a training batch, and :meth:`predict_logits` whole-clip outputs for evaluation."""

    def __init__(self, cfg: Mapping[str, Any], data: TrialData, y_task: np.ndarray, device: torch.device) -> None:
        check_audio_config(cfg)
        if not isinstance(data.clips, AudioDataset):
            raise TypeError(f"AudioBatches needs audio clips, got {data.kind} data")
        clips = data.clips.at(int(cfg["sample_rate"]))
        self.samples = torch.from_numpy(np.array(clips.samples, dtype=np.float16)).to(device)
        self.offsets = torch.from_numpy(np.array(clips.offsets[:-1], dtype=np.int64)).to(device)
        self.lengths = torch.from_numpy(np.array(clips.lengths, dtype=np.int64)).to(device)
        super().__init__(cfg, data, y_task, device)
        self.crop = int(cfg["crop_samples"])
        self.batch_size = int(cfg["batch_size"])
        self.scale = float(cfg["mixup_scale"])
        self.mixup_alpha = float(cfg["mixup_alpha"])
        self.mixup_gt_half = bool(cfg["mixup_lambda_gt_half"])

    @classmethod
    def check_config(cls, cfg: Mapping[str, Any]) -> None:
        """:func:`check_audio_config`."""
        check_audio_config(cfg)

    def windows(self, idx: Tensor, length: int, u: Tensor | None = None) -> Tensor:
        """Windows ``[B, length]`` of the clips ``idx`` (random crops with ``u``, else centered)."""
        lengths = self.lengths[idx]
        return gather_windows(self.samples, self.offsets[idx], lengths, window_starts(lengths, length, u), length)

    def make(self, idx: Tensor) -> tuple[Tensor, Tensor]:
        """Inputs ``[B, crop, 1]`` and float labels ``[B, C]`` of the clips ``idx``, augmented."""
        n = len(idx)
        x = self.windows(idx, self.crop, torch.rand(n, device=self.device))
        y = self.y[idx].float()
        lam = partner = w = None
        if self.mixup_alpha > 0:
            lam = sample_mixup_lambda(n, self.mixup_alpha, gt_half=self.mixup_gt_half, device=self.device)
            partner = torch.randperm(n, device=self.device)
        if self.scale > 0:
            w = 1 + self.scale * (2 * torch.rand(n, device=self.device) - 1)
        x, y = scale_mixup(x, y, lam, partner, w)
        return x.unsqueeze(2), y

    def eval_batches(self, idx: Tensor) -> list[tuple[Tensor, int]]:
        """``idx`` sorted by length and cut into batches of at most the evaluation budget;
        each with the length its clips are padded to."""
        lengths = self.lengths[idx]
        order = torch.argsort(lengths, stable=True)
        sorted_lengths = lengths[order].clamp(min=self.crop).tolist()
        budget = EVAL_BUDGET * self.batch_size * self.crop
        out: list[tuple[Tensor, int]] = []
        begin = 0
        for end in range(1, len(order) + 1):
            longest = sorted_lengths[end - 1]
            if end == len(order) or (end + 1 - begin) * sorted_lengths[end] > budget:
                out.append((order[begin:end], int(longest)))
                begin = end
        return out

    @torch.no_grad()
    def predict_logits(self, model: nn.Module, idx: Tensor) -> Tensor:
        """Logits ``[len(idx), C]`` (float32) of whole clips, in the order of ``idx``."""
        model.eval()
        out: Tensor | None = None
        for pos, length in self.eval_batches(idx):
            x = self.windows(idx[pos], length)
            if self.scale > 0:  # trained on peak-normalized clips: evaluate them alike
                x = peak_normalize(x)
            with autocast(self.device):
                logits = model(x.unsqueeze(2)).float()
            if out is None:
                out = torch.empty(len(idx), logits.shape[1], device=logits.device)
            out[pos] = logits
        assert out is not None
        return out
