"""Seed 002's convolutional families: Conv1d over the flattened clip, Conv2d over stacked seconds."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from tagtune.errors import InputError
from tagtune.trainables.models._registry import register_family
from tagtune.trainables.params import float_range, int_range

#: The widest Conv1d layer (seed 002: "the last kernel had 128 channels").
CONV1D_MAX_CHANNELS = 128
#: The most Conv1d layers seed 002 stacks (its "activated layers" experiment goes 1 to 8).
CONV1D_MAX_LAYERS = 8

CHANNELS = int_range(1, 4096)
KERNEL = int_range(1, 4096)
HIDDEN = int_range(0, 65536, note="0 = no hidden layer")
DROPOUT = float_range(0.0, 1.0, high_open=True)


def same_conv(dim: int, in_ch: int, out_ch: int, kernel_size: int) -> nn.Sequential:
    """A ``dim``-D convolution whose output has the input's size, for odd and even kernels
    (explicit zero padding, longer side at the end, instead of ``padding="same"``'s copy)."""
    lo, hi = (kernel_size - 1) // 2, kernel_size // 2
    pad: nn.Module = nn.ZeroPad1d((lo, hi)) if dim == 1 else nn.ZeroPad2d((lo, hi, lo, hi))
    conv: nn.Module = (nn.Conv1d if dim == 1 else nn.Conv2d)(in_ch, out_ch, kernel_size)
    return nn.Sequential(pad, conv)


def _head(n_inputs: int, hidden: int, n_classes: int, dropout: float) -> list[nn.Module]:
    """Flatten -> [Linear(hidden) -> ReLU -> Dropout] -> Linear(n_classes); no hidden if 0."""
    layers: list[nn.Module] = [nn.Flatten()]
    if hidden > 0:
        layers += [nn.Linear(n_inputs, hidden), nn.ReLU(), nn.Dropout(dropout)]
        n_inputs = hidden
    layers.append(nn.Linear(n_inputs, n_classes))
    return layers


class FlatConv1d(nn.Module):
    """The clip flattened to one channel of ``T * F`` samples; ``layers`` blocks of
    Conv1d (same length) -> ReLU -> Dropout -> MaxPool1d(2), channels doubling from
    ``channels`` up to :data:`CONV1D_MAX_CHANNELS`; then an FC head on the flattened maps."""

    def __init__(
        self,
        n_samples: int,
        n_classes: int,
        layers: int,
        channels: int,
        kernel_size: int,
        hidden: int,
        dropout: float,
    ):
        super().__init__()
        if not 1 <= layers <= CONV1D_MAX_LAYERS:
            raise InputError(f"conv1d layers must be in 1..{CONV1D_MAX_LAYERS}, got {layers}")
        blocks: list[nn.Module] = []
        width, length = 1, n_samples
        for i in range(layers):
            out = min(channels * 2**i, max(channels, CONV1D_MAX_CHANNELS))
            pool = 2 if length >= 2 else 1
            blocks += [
                same_conv(1, width, out, kernel_size),
                nn.ReLU(),
                nn.Dropout(dropout),
                nn.MaxPool1d(pool),
            ]
            width, length = out, length // pool
        self.features = nn.Sequential(*blocks)
        self.head = nn.Sequential(*_head(width * length, hidden, n_classes, dropout))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(torch.flatten(x, 1).unsqueeze(1)))


@register_family(
    "conv1d",
    description="seed 002 Conv1d over the flattened clip (1 x 1280): up to 8 conv-ReLU-dropout-maxpool layers, FC",
    # bal_train, 2 layers: lr 1e-3 peaks at val mAUC 0.90 (epoch 3) and overfits; 3e-4 reaches
    # 0.91 by epoch 3 and keeps rising.  3 layers at 1e-3: 0.86 after 5 epochs.
    train_defaults={"lr": 3e-4},
    constraints={
        "layers": int_range(1, CONV1D_MAX_LAYERS),
        "channels": CHANNELS,
        "kernel_size": KERNEL,
        "hidden": HIDDEN,
        "dropout": DROPOUT,
    },
)
def conv1d(
    *,
    n_frames: int,
    n_features: int,
    n_classes: int,
    layers: int = 2,
    channels: int = 16,
    kernel_size: int = 3,
    hidden: int = 0,
    dropout: float = 0.2,
) -> nn.Module:
    return FlatConv1d(n_frames * n_features, n_classes, layers, channels, kernel_size, hidden, dropout)


class StackedConv2d(nn.Module):
    """The clip as a 1 x T x F image: Conv2d -> ReLU -> Conv2d -> MaxPool2d -> Conv2d ->
    Flatten -> BatchNorm -> Linear -> ReLU -> Dropout -> Linear (seed 002's design)."""

    def __init__(
        self,
        n_frames: int,
        n_features: int,
        n_classes: int,
        channels: int,
        kernel_size: int,
        hidden: int,
        dropout: float,
    ):
        super().__init__()
        pool = (2 if n_frames >= 2 else 1, 2 if n_features >= 2 else 1)
        self.features = nn.Sequential(
            same_conv(2, 1, channels, kernel_size),
            nn.ReLU(),
            same_conv(2, channels, channels, kernel_size),
            nn.MaxPool2d(pool),
            same_conv(2, channels, channels, kernel_size),
            nn.Flatten(),
        )
        flat = channels * (n_frames // pool[0]) * (n_features // pool[1])
        self.head = nn.Sequential(nn.BatchNorm1d(flat), *_head(flat, hidden, n_classes, dropout)[1:])

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x.unsqueeze(1)))


@register_family(
    "conv2d",
    description="seed 002 Conv2d over the stacked seconds (1 x 10 x 128): 3 convs, a max-pool, BN, FC",
    constraints={"channels": CHANNELS, "kernel_size": KERNEL, "hidden": HIDDEN, "dropout": DROPOUT},
)
def conv2d(
    *,
    n_frames: int,
    n_features: int,
    n_classes: int,
    channels: int = 4,
    kernel_size: int = 2,
    hidden: int = 512,
    dropout: float = 0.3,
) -> nn.Module:
    return StackedConv2d(n_frames, n_features, n_classes, channels, kernel_size, hidden, dropout)
