"""Recurrent families: seed 000's 3-layer LSTM, seed 001's skip bi-LSTM, seed 002's SOS/EOS LSTM."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from tagtune.errors import InputError
from tagtune.trainables.models._registry import register_family
from tagtune.trainables.params import float_range, int_range

WIDTH = int_range(1, 65536)
LAYERS = int_range(1, 16)
DROPOUT = float_range(0.0, 1.0, high_open=True)


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
        self.lstms = nn.ModuleList(nn.LSTM(widths[i], widths[i + 1], batch_first=True) for i in range(len(hidden)))
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
    # bal_train val mAUC: lr 1e-3 / dropout 0.3 0.84 after 3 epochs; lr 3e-4 / dropout 0.2 0.915
    # after 5 (the inputs are all positive: large Adam steps saturate the gates).
    train_defaults={"grad_clip": 5.0, "lr": 3e-4},
    constraints={
        **{name: WIDTH for name in ("hidden1", "hidden2", "hidden3", "fc1", "fc2")},
        "dropout": DROPOUT,
    },
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
    dropout: float = 0.2,
) -> nn.Module:
    return StackedLSTM(n_frames, n_features, n_classes, (hidden1, hidden2, hidden3), (fc1, fc2), dropout)


class SkipBiLSTM(nn.Module):
    """Bi-LSTM layers whose input is concatenated to their output (seed 001), then an FC head.

    Layer ``i`` reads ``n_features + 2 * hidden * i`` features and the block ends with
    ``n_features + 2 * hidden * layers``; every step's features are flattened into the head.
    """

    def __init__(
        self,
        n_frames: int,
        n_features: int,
        n_classes: int,
        hidden: int,
        layers: int,
        fc: int,
        dropout: float,
    ):
        super().__init__()
        if layers < 1:
            raise InputError(f"skip_bilstm needs at least 1 layer, got layers={layers}")
        self.lstms = nn.ModuleList()
        width = n_features
        for _ in range(layers):
            self.lstms.append(nn.LSTM(width, hidden, batch_first=True, bidirectional=True))
            width += 2 * hidden
        self.drop = nn.Dropout(dropout)
        head: list[nn.Module] = [nn.Flatten(), nn.Dropout(dropout)]
        flat = n_frames * width
        if fc > 0:
            head += [nn.Linear(flat, fc), nn.ReLU(), nn.Dropout(dropout)]
            flat = fc
        head.append(nn.Linear(flat, n_classes))
        self.head = nn.Sequential(*head)

    def forward(self, x: Tensor) -> Tensor:
        for lstm in self.lstms:
            out, _ = lstm(x)
            x = torch.cat([x, self.drop(out)], dim=-1)
        return self.head(x)


@register_family(
    "skip_bilstm",
    description="seed 001 bi-LSTM with skip connections (input ++ output per layer), 1-3 layers, FC",
    train_defaults={"grad_clip": 5.0},
    constraints={
        "hidden": WIDTH,
        "layers": LAYERS,
        "fc": int_range(0, 65536, note="0 = no hidden FC layer"),
        "dropout": DROPOUT,
    },
)
def skip_bilstm(
    *,
    n_frames: int,
    n_features: int,
    n_classes: int,
    hidden: int = 128,
    layers: int = 2,
    fc: int = 1024,
    dropout: float = 0.3,
) -> nn.Module:
    return SkipBiLSTM(n_frames, n_features, n_classes, hidden, layers, fc, dropout)


def clip_lengths(x: Tensor) -> Tensor:
    """Seconds up to the last non-zero frame of each clip ``x [B, T, F]`` (trailing zeros are
    padding), at least 1: a long tensor ``[B]``."""
    steps = torch.arange(1, x.shape[1] + 1, device=x.device)
    nonzero = x.detach().abs().amax(dim=-1) > 0
    return (nonzero.long() * steps).amax(dim=1).clamp(min=1)


class SosEosLSTM(nn.Module):
    """An LSTM over ``[SOS, frame_1 .. frame_n, EOS]`` predicting from the EOS step (seed 002).

    SOS and EOS are constant frames (-1 and -2 by default, values the scaled data never take).
    EOS follows the clip's last non-zero frame, so zero padding at the end is not read.
    """

    def __init__(
        self,
        n_features: int,
        n_classes: int,
        hidden: int,
        layers: int,
        dropout: float,
        sos: float = -1.0,
        eos: float = -2.0,
    ):
        super().__init__()
        self.sos, self.eos = sos, eos
        self.lstm = nn.LSTM(
            n_features,
            hidden,
            num_layers=layers,
            batch_first=True,
            dropout=dropout if layers > 1 else 0.0,
        )
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, n_classes)

    def forward(self, x: Tensor) -> Tensor:
        b, t, f = x.shape
        eos_at = clip_lengths(x) + 1  # position of EOS in the T + 2 sequence
        seq = torch.cat([x.new_full((b, 1, f), self.sos), x, x.new_zeros(b, 1, f)], dim=1)
        is_eos = torch.arange(t + 2, device=x.device)[None, :] == eos_at[:, None]
        seq = torch.where(is_eos[..., None], seq.new_tensor(self.eos), seq)
        out, _ = self.lstm(seq)
        last = out[torch.arange(b, device=x.device), eos_at]
        return self.head(self.drop(last))


@register_family(
    "sos_lstm",
    description="seed 002 LSTM over [SOS (-1), seconds, EOS (-2)], predicting from the last step",
    train_defaults={"grad_clip": 5.0},
    constraints={"hidden": WIDTH, "layers": LAYERS, "dropout": DROPOUT},
)
def sos_lstm(
    *,
    n_frames: int,
    n_features: int,
    n_classes: int,
    hidden: int = 512,
    layers: int = 1,
    dropout: float = 0.2,
) -> nn.Module:
    return SosEosLSTM(n_features, n_classes, hidden, layers, dropout)
