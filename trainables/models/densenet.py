"""Seed 003's single-block DenseNet with squeeze-excitation.

The building blocks take a :class:`ConvOps` (the conv / batch-norm / pooling classes of one
dimensionality), so the same dense module serves the 1-D network over the seconds of an
embedding sequence here and a 2-D network over a log-mel image (seed 003's front end) later.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from tagtune.trainables.models._registry import register_family
from tagtune.trainables.params import float_range, int_range


@dataclass(frozen=True)
class ConvOps:
    """The layer classes of one dimensionality."""

    dim: int
    conv: type[nn.Module]
    bn: type[nn.Module]
    max_pool: type[nn.Module]
    avg_pool: type[nn.Module]  # adaptive average pooling (global when given output size 1)


OPS: dict[int, ConvOps] = {
    1: ConvOps(1, nn.Conv1d, nn.BatchNorm1d, nn.MaxPool1d, nn.AdaptiveAvgPool1d),
    2: ConvOps(2, nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d, nn.AdaptiveAvgPool2d),
}


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation (Hu et al. 2017): global average pool -> FC (C / r) -> ReLU ->
    FC (C) -> sigmoid, a weight per channel."""

    def __init__(self, ops: ConvOps, channels: int, reduction: int):
        super().__init__()
        squeezed = max(1, channels // reduction)
        self.gate = nn.Sequential(
            ops.avg_pool(1),
            ops.conv(channels, squeezed, 1),
            nn.ReLU(inplace=True),
            ops.conv(squeezed, channels, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gate(x)


class DenseModule(nn.Module):
    """One module of the single dense block: BN-ReLU-1x1 conv (``bottleneck * growth``) -
    BN-ReLU-k conv (``growth``), concatenated to the input, SE over the result, and an optional
    max-pool (seed 003 pools at the end of each module)."""

    def __init__(
        self,
        ops: ConvOps,
        in_channels: int,
        growth: int,
        *,
        bottleneck: int = 4,
        kernel_size: int | tuple[int, ...] = 3,
        se_reduction: int = 4,
        dropout: float = 0.0,
        pool: int | tuple[int, ...] | None = None,
    ):
        super().__init__()
        mid = bottleneck * growth
        self.new = nn.Sequential(
            ops.bn(in_channels),
            nn.ReLU(inplace=True),
            ops.conv(in_channels, mid, 1, bias=False),
            ops.bn(mid),
            nn.ReLU(inplace=True),
            ops.conv(mid, growth, kernel_size, padding="same", bias=False),
            nn.Dropout(dropout),
        )
        self.out_channels = in_channels + growth
        self.se = SqueezeExcite(ops, self.out_channels, se_reduction)
        self.pool = ops.max_pool(pool) if pool is not None else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(self.se(torch.cat([x, self.new(x)], dim=1)))


class DenseBlock(nn.Sequential):
    """A single densely connected block: ``len(growths)`` :class:`DenseModule`; module ``i``
    adds ``growths[i]`` channels and pools by ``pools[i]`` (None: no pooling)."""

    def __init__(
        self,
        ops: ConvOps,
        in_channels: int,
        growths: list[int],
        pools: list[int | tuple[int, ...] | None],
        *,
        bottleneck: int = 4,
        kernel_size: int | tuple[int, ...] = 3,
        se_reduction: int = 4,
        dropout: float = 0.0,
    ):
        modules = []
        width = in_channels
        for growth, pool in zip(growths, pools, strict=True):
            module = DenseModule(
                ops,
                width,
                growth,
                bottleneck=bottleneck,
                kernel_size=kernel_size,
                se_reduction=se_reduction,
                dropout=dropout,
                pool=pool,
            )
            modules.append(module)
            width = module.out_channels
        super().__init__(*modules)
        self.out_channels = width


class DenseNet(nn.Module):
    """Input BN -> single dense block -> BN-ReLU -> global average pooling -> dropout -> Linear.

    ``x`` is ``[B, C, *spatial]`` for ``ops.dim`` spatial dimensions."""

    def __init__(
        self,
        ops: ConvOps,
        in_channels: int,
        n_classes: int,
        growths: list[int],
        pools: list[int | tuple[int, ...] | None],
        *,
        kernel_size: int | tuple[int, ...] = 3,
        bottleneck: int = 4,
        se_reduction: int = 4,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.bn_in = ops.bn(in_channels)
        self.block = DenseBlock(
            ops,
            in_channels,
            growths,
            pools,
            kernel_size=kernel_size,
            bottleneck=bottleneck,
            se_reduction=se_reduction,
            dropout=dropout,
        )
        width = self.block.out_channels
        self.post = nn.Sequential(ops.bn(width), nn.ReLU(inplace=True), ops.avg_pool(1))
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(width, n_classes)

    def forward(self, x: Tensor) -> Tensor:
        h = self.post(self.block(self.bn_in(x)))
        return self.head(self.drop(torch.flatten(h, 1)))


class SequenceDenseNet(nn.Module):
    """:class:`DenseNet` in 1-D over the seconds of an embedding sequence ``[B, T, F]``: the
    128 embedding dimensions are the input channels, convolutions run along time."""

    def __init__(self, net: DenseNet):
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.transpose(1, 2))


@register_family(
    "densenet",
    description="seed 003 single-block DenseNet with squeeze-excitation, 1-D over the seconds "
    "(BN-ReLU-1x1-BN-ReLU-3 conv, concat, SE), GAP, FC",
    constraints={
        "depth": int_range(1, 64),
        "growth": int_range(1, 4096),
        "kernel_size": int_range(1, 64),
        "se_reduction": int_range(1, 4096),
        "pools": int_range(0, 64),
        "dropout": float_range(0.0, 1.0, high_open=True),
    },
)
def densenet(
    *,
    n_frames: int,
    n_features: int,
    n_classes: int,
    depth: int = 4,
    growth: int = 64,
    kernel_size: int = 3,
    se_reduction: int = 4,
    pools: int = 0,
    dropout: float = 0.2,
) -> nn.Module:
    """``depth`` dense modules adding ``growth`` channels each; the first ``pools`` of them end
    with a max-pool of 2 over time (while at least 2 seconds remain)."""
    pool_at: list[int | tuple[int, ...] | None] = []
    length = n_frames
    for i in range(depth):
        if i < pools and length >= 2:
            pool_at.append(2)
            length //= 2
        else:
            pool_at.append(None)
    net = DenseNet(
        OPS[1],
        n_features,
        n_classes,
        [growth] * depth,
        pool_at,
        kernel_size=kernel_size,
        se_reduction=se_reduction,
        dropout=dropout,
    )
    return SequenceDenseNet(net)
