"""Recurrent families: seed 000's 3-layer LSTM."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from trainables.models._registry import register_family


class StackedLSTM(nn.Module):
    """LSTM layers of decreasing width; every step's output flattened into an FC head."""

    def __init__(
        self,
        n_frames: int,
        n_features: int,
        n_classes: int,
        hidden: tuple[int, ...],
        fc: tuple[int, ...],
        dropout: float,
    ):
        super().__init__()
        widths = (n_features, *hidden)
        self.lstms = nn.ModuleList(
            nn.LSTM(widths[i], widths[i + 1], batch_first=True) for i in range(len(hidden))
        )
        self.drop = nn.Dropout(dropout)
        layers: list[nn.Module] = []
        width = n_frames * hidden[-1]
        for h in fc:
            layers += [nn.Linear(width, h), nn.ReLU(), nn.Dropout(dropout)]
            width = h
        layers.append(nn.Linear(width, n_classes))
        self.head = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        for lstm in self.lstms:
            x, _ = lstm(x)
            x = self.drop(x)
        return self.head(torch.flatten(x, 1))


@register_family(
    "lstm",
    description="seed 000 LSTM: 3 layers 512/256/128, all steps flattened -> FC 2048/1024 -> classes",
    train_defaults={"grad_clip": 5.0},
)
def lstm(
    *,
    n_frames: int,
    n_features: int,
    n_classes: int,
    hidden1: int = 512,
    hidden2: int = 256,
    hidden3: int = 128,
    fc1: int = 2048,
    fc2: int = 1024,
    dropout: float = 0.3,
) -> nn.Module:
    return StackedLSTM(
        n_frames, n_features, n_classes, (hidden1, hidden2, hidden3), (fc1, fc2), dropout
    )
