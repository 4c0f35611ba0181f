"""Seed 003's audio tagger: a front end on the device, one dense block, GAP, a softmax classifier.

``waveform -> BN -> front end (log-mel image, or strided 1-D convolutions) -> BN -> low-level
conv concatenated to its input -> one dense block (every module: BN-ReLU-1x1 conv, BN-ReLU-3x3
conv, concatenation, squeeze-excitation, max-pool 2) -> BN-ReLU -> global average pooling ->
linear``.  With ``output_heads > 1`` the loop turns the linear layer into seed 003's multi-head
classifier (softmaxes averaged for single-label data).

The dense block is :mod:`tagtune.trainables.models.densenet`'s (dimension-generic): 2-D over the log-mel
image (3x3 convs, 2x2 pools), 1-D over the waveform features (seed 003's 1x3 convs and 1x2
pools).  Pools round up (``ceil_mode``), so any clip length works; global pooling makes the
output independent of length, so evaluation feeds whole clips.

Inputs are ``[B, L, C]`` waveforms (samples by channels, channels averaged to mono) or ``[B, L]``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from tagtune.errors import InputError
from tagtune.trainables.audio.frontends import FRONT_ENDS, LogMel, Waveform
from tagtune.trainables.models._registry import register_family
from tagtune.trainables.models.densenet import ConvOps, DenseNet
from tagtune.trainables.params import choice, float_range, int_range

#: The rates the decoder accepts (trainables/audio: check_rate).
SAMPLE_RATE = int_range(1000, 192_000)


class _CeilMaxPool1d(nn.MaxPool1d):
    def __init__(self, kernel_size: int) -> None:
        super().__init__(kernel_size, ceil_mode=True)


class _CeilMaxPool2d(nn.MaxPool2d):
    def __init__(self, kernel_size: int) -> None:
        super().__init__(kernel_size, ceil_mode=True)


#: The dense block's layers with pools that round up (a 1-frame map stays 1 frame).
AUDIO_OPS: dict[int, ConvOps] = {
    1: ConvOps(1, nn.Conv1d, nn.BatchNorm1d, _CeilMaxPool1d, nn.AdaptiveAvgPool1d),
    2: ConvOps(2, nn.Conv2d, nn.BatchNorm2d, _CeilMaxPool2d, nn.AdaptiveAvgPool2d),
}


class LowLevel(nn.Module):
    """Seed 003's low-level module: BN, then a ``k`` conv with ``channels`` filters concatenated
    to its input."""

    def __init__(self, ops: ConvOps, in_channels: int, channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.bn = ops.bn(in_channels)
        self.conv = ops.conv(in_channels, channels, kernel_size, padding="same") if channels > 0 else None
        self.out_channels = in_channels + max(channels, 0)

    def forward(self, x: Tensor) -> Tensor:
        x = self.bn(x)
        return torch.cat([x, self.conv(x)], dim=1) if self.conv is not None else x


class AudioDenseNet(nn.Module):
    """Waveforms ``[B, L, C]`` or ``[B, L]`` -> logits ``[B, n_classes]``."""

    def __init__(self, front: nn.Module, low: LowLevel, body: DenseNet) -> None:
        super().__init__()
        self.wave_bn = nn.BatchNorm1d(1)
        self.front = front
        self.low = low
        self.body = body

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 3:
            x = x.mean(dim=2)
        x = self.wave_bn(x.float().unsqueeze(1)).squeeze(1)
        return self.body(self.low(self.front(x)))


def growths_for(depth: int, growth: int, max_growth: int) -> list[int]:
    """Seed 003's growth per module: doubling from ``growth``, capped at ``max_growth``."""
    return [min(growth * 2**i, max(max_growth, growth)) for i in range(depth)]


TRAIN_DEFAULTS = {
    "batch_size": 32,
    "lr": 3e-3,
    "output_heads": 4,
    "balanced_batches": True,
    "mixup_alpha": 0.4,
    "mixup_lambda_gt_half": True,
    "mixup_scale": 0.5,
    "lr_schedule": "step",
    "lr_step_epochs": 8,
    "lr_gamma": 0.1,
    "crop_samples": 8192,
}
"""Seed 003's training recipe for the audio DenseNet."""
CONSTRAINTS = {
    "sample_rate": SAMPLE_RATE,
    "front_end": choice(*FRONT_ENDS),
    "n_fft": int_range(16, 65536),
    "hop": int_range(1, 65536),
    "n_mels": int_range(1, 1024),
    "wave_channels": int_range(1, 4096),
    "low_channels": int_range(0, 4096, note="0 = no low-level conv"),
    "depth": int_range(1, 64),
    "growth": int_range(1, 4096),
    "max_growth": int_range(1, 65536),
    "bottleneck": int_range(1, 64),
    "se_reduction": int_range(1, 4096),
    "dropout": float_range(0.0, 1.0, high_open=True),
}
"""What each hyperparameter may be (a config outside it is refused before training)."""


@register_family(
    "densenet_audio",
    description="seed 003 audio DenseNet: log-mel or waveform front end on the device, one dense "
    "block (1x1 + 3x3 conv, SE, max-pool per module), GAP, multi-head softmax; raw audio + CSV",
    inputs="audio",
    # Raw audio: the whole waveform set sits on the device and the front end runs there, so a
    # trial gets the GPU's memory and compute to itself.
    trials_per_gpu=1,
    train_defaults=TRAIN_DEFAULTS,
    constraints=CONSTRAINTS,
)
def densenet_audio(
    *,
    n_frames: int,
    n_features: int,
    n_classes: int,
    sample_rate: int = 8000,
    front_end: str = "logmel",
    n_fft: int = 1024,
    hop: int = 128,
    n_mels: int = 64,
    wave_channels: int = 32,
    low_channels: int = 15,
    depth: int = 4,
    growth: int = 8,
    max_growth: int = 128,
    bottleneck: int = 4,
    se_reduction: int = 4,
    dropout: float = 0.1,
) -> nn.Module:
    """``depth`` dense modules; module ``i`` adds ``min(growth * 2**i, max_growth)`` channels and
    ends with a max-pool of 2 (2x2 on the log-mel image).  ``n_frames`` and ``n_features`` are
    not needed: any length, channels are averaged."""
    SAMPLE_RATE.check("sample_rate", sample_rate)  # configs are checked before; create_model is not
    if front_end not in FRONT_ENDS:
        raise InputError(f"unknown front_end {front_end!r}; choose from: {', '.join(FRONT_ENDS)}")
    if depth < 1 or growth < 1:
        raise InputError(f"densenet_audio needs depth >= 1 and growth >= 1, got {depth} and {growth}")
    front: nn.Module
    if front_end == "logmel":
        ops = AUDIO_OPS[2]
        front, width = LogMel(sample_rate, n_fft=n_fft, hop=hop, n_mels=n_mels), 1
    else:
        ops = AUDIO_OPS[1]
        front, width = Waveform(hop=hop, channels=wave_channels), wave_channels
    low = LowLevel(ops, width, low_channels)
    growths = growths_for(depth, growth, max_growth)
    body = DenseNet(
        ops,
        low.out_channels,
        n_classes,
        growths,
        [2] * depth,
        kernel_size=3,
        bottleneck=bottleneck,
        se_reduction=se_reduction,
        dropout=dropout,
    )
    return AudioDenseNet(front, low, body)
