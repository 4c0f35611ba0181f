"""Seed 000's gated CNN (after Xu et al. 2017), on a sequence of per-second embeddings."""

from __future__ import annotations

from torch import Tensor, nn

from tagtune.trainables.models._registry import register_family
from tagtune.trainables.params import float_range, int_range


def same_conv(in_ch: int, out_ch: int, kernel_size: int) -> nn.Sequential:
    """Conv1d whose output has the input's length, for odd and even kernels alike."""
    pad = ((kernel_size - 1) // 2, kernel_size // 2)
    return nn.Sequential(nn.ZeroPad1d(pad), nn.Conv1d(in_ch, out_ch, kernel_size))


class GatedBlock(nn.Module):
    """Conv1d over time with ``2 * half`` filters, split into a linear and a sigmoid half."""

    def __init__(self, in_ch: int, filters: int, kernel_size: int):
        super().__init__()
        self.conv = same_conv(in_ch, filters, kernel_size)
        self.bn = nn.BatchNorm1d(filters)

    def forward(self, x: Tensor) -> Tensor:
        linear, gate = self.bn(self.conv(x)).chunk(2, dim=1)
        return linear * gate.sigmoid()


class GatedCNN(nn.Module):
    """Two gated blocks, two conv + max-pool pairs, two bi-GRU layers, an FC head."""

    def __init__(
        self,
        n_frames: int,
        n_features: int,
        n_classes: int,
        filters: int,
        kernel_size: int,
        conv_channels: int,
        rnn_hidden: int,
        dropout: float,
    ):
        super().__init__()
        half = filters // 2
        self.gated = nn.Sequential(
            GatedBlock(n_features, filters, kernel_size),
            GatedBlock(half, filters, kernel_size),
        )
        pools: list[nn.Module] = []
        width, steps = half, n_frames
        for _ in range(2):
            pool = 2 if steps >= 2 else 1
            pools += [
                same_conv(width, conv_channels, kernel_size),
                nn.BatchNorm1d(conv_channels),
                nn.ReLU(),
                nn.MaxPool1d(pool),
            ]
            width, steps = conv_channels, steps // pool
        self.down = nn.Sequential(*pools)
        self.rnn = nn.GRU(conv_channels, rnn_hidden, num_layers=2, batch_first=True, bidirectional=True)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(2 * rnn_hidden, n_classes)

    def forward(self, x: Tensor) -> Tensor:
        h = self.down(self.gated(x.transpose(1, 2)))  # [B, C, T']
        out, _ = self.rnn(h.transpose(1, 2))
        return self.head(self.drop(out.mean(dim=1)))


@register_family(
    "gcnn",
    description="seed 000 gated CNN: 2 gated conv blocks (kernel 2), 2 conv+maxpool, 2 bi-RNN, FC",
    # filters split into a linear and a sigmoid half: an even count
    constraints={
        "filters": int_range(2, 65536, multiple_of=2),
        "kernel_size": int_range(1, 64),
        "conv_channels": int_range(1, 65536),
        "rnn_hidden": int_range(1, 65536),
        "dropout": float_range(0.0, 1.0, high_open=True),
    },
)
def gcnn(
    *,
    n_frames: int,
    n_features: int,
    n_classes: int,
    filters: int = 128,
    kernel_size: int = 2,
    conv_channels: int = 256,
    rnn_hidden: int = 128,
    dropout: float = 0.3,
) -> nn.Module:
    return GatedCNN(n_frames, n_features, n_classes, filters, kernel_size, conv_channels, rnn_hidden, dropout)
