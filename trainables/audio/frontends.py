"""Front ends that turn waveforms into features on the trial's device (seed 003's low level).

* :class:`LogMel`: STFT (Hann window ``n_fft``, hop ``hop``, centered with zero padding) ->
  power -> mel filters (``librosa.filters.mel``, Slaney) -> ``log(mel + 1e-6)``; an image
  ``[B, 1, frames, n_mels]``.  Matches ``librosa.feature.melspectrogram`` with the same
  parameters (``center=True, pad_mode="constant", power=2``).
* :class:`Waveform`: strided 1-D convolutions (each stride <= 4, kernel about twice the stride)
  whose strides multiply to ``hop``, each followed by batch norm and ReLU; ``[B, channels,
  ceil(L / hop)]``, a learned filterbank at the log-mel's frame rate.

Both take ``[B, L]`` float waveforms of any length.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn

from tagtune.errors import InputError

FRONT_ENDS = ("logmel", "waveform")
LOG_OFFSET = 1e-6


def mel_filters(sample_rate: int, n_fft: int, n_mels: int) -> np.ndarray:
    """Slaney-normalized mel filters ``[n_mels, n_fft // 2 + 1]`` from 0 Hz to Nyquist (librosa)."""
    import warnings

    import librosa

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "empty filters" for tiny n_fft: the filters are still defined
        return librosa.filters.mel(
            sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=0.0, fmax=sample_rate / 2.0, htk=False, norm="slaney"
        ).astype(np.float32)


class LogMel(nn.Module):
    """Log-mel spectrogram ``[B, 1, 1 + L // hop, n_mels]`` of waveforms ``[B, L]``."""

    window: Tensor
    mel: Tensor

    def __init__(self, sample_rate: int, *, n_fft: int = 1024, hop: int = 128, n_mels: int = 64) -> None:
        super().__init__()
        if n_fft < 16 or hop < 1 or n_mels < 1:
            raise InputError(f"log-mel needs n_fft >= 16, hop >= 1 and n_mels >= 1, got {n_fft}, {hop}, {n_mels}")
        self.n_fft, self.hop, self.n_mels = int(n_fft), int(hop), int(n_mels)
        # Rebuilt from the hyperparameters, so not part of the state dict.
        self.register_buffer("window", torch.hann_window(self.n_fft, periodic=True), persistent=False)
        self.register_buffer(
            "mel", torch.from_numpy(mel_filters(sample_rate, self.n_fft, self.n_mels)), persistent=False
        )

    def power_mel(self, x: Tensor) -> Tensor:
        """Mel power spectrogram ``[B, n_mels, frames]`` (float32; autocast off)."""
        with torch.autocast(x.device.type, enabled=False):
            spec = torch.stft(
                x.float(),
                self.n_fft,
                self.hop,
                window=self.window,
                center=True,
                pad_mode="constant",
                return_complex=True,
            )
            power = spec.real.square() + spec.imag.square()
            return torch.matmul(self.mel, power)

    def forward(self, x: Tensor) -> Tensor:
        return torch.log(self.power_mel(x) + LOG_OFFSET).transpose(1, 2).unsqueeze(1)

    def extra_repr(self) -> str:
        return f"n_fft={self.n_fft}, hop={self.hop}, n_mels={self.n_mels}"


def strides_for(hop: int) -> list[int]:
    """Strides <= 4 whose product is ``hop`` (a prime factor above 4 is kept as one stride)."""
    if hop < 1:
        raise InputError(f"hop must be >= 1, got {hop}")
    out, rest = [], hop
    for f in (4, 3, 2):
        while rest % f == 0 and rest > 1:
            out.append(f)
            rest //= f
    p = 5
    while rest > 1:  # factors above 4
        while rest % p == 0:
            out.append(p)
            rest //= p
        p += 1
    return out or [1]


class Waveform(nn.Module):
    """Strided 1-D convolutions: ``[B, L]`` -> ``[B, channels, ceil(L / hop)]``.

    The input is zero-padded at the end to a multiple of ``hop``; a layer of stride ``s`` has
    kernel ``2s`` (``2s - 1`` for odd ``s``) and padding ``s // 2``, so it divides the length by
    exactly ``s``.
    """

    def __init__(self, *, hop: int = 128, channels: int = 32) -> None:
        super().__init__()
        if channels < 1:
            raise InputError(f"wave_channels must be >= 1, got {channels}")
        self.hop = int(hop)
        layers: list[nn.Module] = []
        width = 1
        for s in strides_for(self.hop):
            layers += [
                nn.Conv1d(width, channels, 2 * s - s % 2, stride=s, padding=s // 2, bias=False),
                nn.BatchNorm1d(channels),
                nn.ReLU(inplace=True),
            ]
            width = channels
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        length = max(self.hop, math.ceil(x.shape[-1] / self.hop) * self.hop)
        x = nn.functional.pad(x, (0, length - x.shape[-1]))
        return self.net(x.unsqueeze(1))
