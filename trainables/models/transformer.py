"""Seed 002's Transformer encoder with no embedding layer: each second's 128-d frame is a token."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from tagtune.errors import InputError
from tagtune.trainables.models._registry import register_family
from tagtune.trainables.models.recurrent import clip_lengths
from tagtune.trainables.params import float_range, int_range


class FrameTransformer(nn.Module):
    """Frames (plus a learned positional encoding) -> pre-LN Transformer encoder -> mean over
    the clip's frames -> Linear.  Trailing all-zero frames (padding) are masked out of the
    attention and of the mean."""

    def __init__(
        self,
        n_frames: int,
        n_features: int,
        n_classes: int,
        heads: int,
        layers: int,
        ff: int,
        dropout: float,
    ):
        super().__init__()
        if n_features % heads:  # the frame width is the data's: checked when the model is built
            raise InputError(
                f"transformer heads must divide the frame width {n_features}, got heads={heads}; "
                f"pick a divisor such as 1, 2 or 4"
            )
        self.pos = nn.Parameter(torch.zeros(1, n_frames, n_features))
        nn.init.trunc_normal_(self.pos, std=0.02)
        layer = nn.TransformerEncoderLayer(
            n_features, heads, ff, dropout, activation="gelu", batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, layers, norm=nn.LayerNorm(n_features), enable_nested_tensor=False)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(n_features, n_classes)

    def forward(self, x: Tensor) -> Tensor:
        t = x.shape[1]
        valid = torch.arange(t, device=x.device)[None, :] < clip_lengths(x)[:, None]  # [B, T]
        h = self.encoder(x - 0.5 + self.pos[:, :t], src_key_padding_mask=~valid)
        w = valid.to(h.dtype)[..., None]
        pooled = (h * w).sum(dim=1) / w.sum(dim=1)
        return self.head(self.drop(pooled))


@register_family(
    "transformer",
    description="seed 002 Transformer encoder, frames as tokens (no embedding layer), mean pool, FC",
    constraints={
        "heads": int_range(1, 128),
        "layers": int_range(1, 64),
        "ff": int_range(1, 65536),
        "dropout": float_range(0.0, 1.0, high_open=True),
    },
)
def transformer(
    *,
    n_frames: int,
    n_features: int,
    n_classes: int,
    heads: int = 4,
    layers: int = 2,
    ff: int = 512,
    dropout: float = 0.1,
) -> nn.Module:
    return FrameTransformer(n_frames, n_features, n_classes, heads, layers, ff, dropout)
