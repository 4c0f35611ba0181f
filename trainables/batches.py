"""One batches protocol for every data kind, and the pieces every kind shares.

A trial's batches live on its device and answer what :func:`tagtune.trainables.loop.fit` asks:

* ``check_config(cfg)`` (a classmethod): an :class:`InputError` unless the config trains on the kind;
* ``order(gen)``: an epoch's clip indices, a shuffle of the training clips or class-balanced draws;
* ``make(idx)``: a training batch, float inputs and float labels after the kind's augmentation;
* ``predict_logits(model, idx)``: whole-clip logits for validation;
* ``y`` (bool labels ``[N, C]``) and ``verified`` (bool ``[N]`` or ``None``) on the device.

:class:`TrainBatches` holds the shared part (labels, training clips, verified flags, the epoch
order); :class:`EmbeddingBatches` is the embeddings kind (uint8 sequences), the audio kind is
:class:`tagtune.trainables.audio.batches.AudioBatches`.  :func:`autocast` and :func:`predict` are
the one bf16 autocast and the one batched forward pass over embeddings.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor, nn

from tagtune.errors import InputError
from tagtune.trainables.data import InputScaling, TrialData
from tagtune.trainables.metrics import to_probabilities
from tagtune.trainables.techniques import (
    ClassIndex,
    balance_labels,
    mixup,
    positive_mix,
    random_positive_class,
    random_shifts,
    sample_mixup_lambda,
    shift_clamp,
)


class Batches(Protocol):
    """What the training loop needs from a data kind's batches (see the module docstring)."""

    y: Tensor
    verified: Tensor | None

    def __init__(self, cfg: Mapping[str, Any], data: TrialData, y_task: np.ndarray, device: torch.device) -> None: ...

    @classmethod
    def check_config(cls, cfg: Mapping[str, Any]) -> None: ...

    def order(self, gen: torch.Generator) -> Tensor: ...

    def make(self, idx: Tensor) -> tuple[Tensor, Tensor]: ...

    def predict_logits(self, model: nn.Module, idx: Tensor) -> Tensor: ...


def autocast(device: torch.device, cache: bool = True) -> Any:
    """bf16 autocast on CUDA, a no-op elsewhere (and on CUDA too with ``TAGTUNE_BF16=0`` in the
    environment: float32 throughout, e.g. to compare bf16 against float32)."""
    enabled = device.type == "cuda" and os.environ.get("TAGTUNE_BF16", "1") != "0"
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled, cache_enabled=cache)


class Scaler:
    """An :class:`InputScaling` as tensors on one device: ``scaler(x)`` is the float model input."""

    def __init__(self, scaling: InputScaling | None, device: torch.device) -> None:
        self.scaling = scaling or InputScaling()
        self.unit = self.scaling.kind == "unit"
        self.mean = self.std = None
        if not self.unit:
            assert self.scaling.mean is not None and self.scaling.std is not None
            self.mean = torch.from_numpy(np.asarray(self.scaling.mean, np.float32)).to(device)
            self.std = torch.from_numpy(np.asarray(self.scaling.std, np.float32)).to(device)

    def __call__(self, x: Tensor) -> Tensor:
        """``x`` (raw clips on the scaler's device) as float model inputs."""
        if self.unit:
            return x.float().div_(255.0)
        assert self.mean is not None and self.std is not None
        raw = x.float()
        present = (raw != 0).any(dim=-1, keepdim=True)
        return ((raw - self.mean) / self.std).mul_(present)


@torch.no_grad()
def predict(
    model: nn.Module,
    x: Tensor,
    *,
    batch_size: int = 4096,
    device: torch.device | None = None,
    activation: str = "sigmoid",
    scaling: InputScaling | None = None,
) -> Tensor:
    """Sigmoid scores ``[N, C]`` (float32, on ``x``'s device) for raw clips ``x [N, T, F]``
    (softmax scores with ``activation="softmax"``, the raw logits with ``activation="none"``),
    scaled by ``scaling`` (default: the model's ``input_scaling`` where
    :func:`tagtune.trainables.checkpoint.load_model` set one, else uint8 / 255)."""
    device = device or x.device
    model.eval()
    # A model rebuilt by tagtune.trainables.checkpoint.load_model carries its checkpoint's scaling.
    scale = Scaler(scaling if scaling is not None else getattr(model, "input_scaling", None), device)
    outs = []
    for i in range(0, x.shape[0], batch_size):
        xb = scale(x[i : i + batch_size].to(device, non_blocking=True))
        with autocast(device):
            out = model(xb).float()
            # per batch, as always: a sigmoid over another shape can differ in the last bit
            outs.append(out if activation == "none" else to_probabilities(out, single_label=activation == "softmax"))
    return torch.cat(outs)


def verified_flags(data: TrialData, device: torch.device) -> Tensor | None:
    """``data.verified`` as a bool tensor on ``device`` (checked: one flag per clip), or ``None``."""
    if data.verified is None:
        return None
    flags = np.asarray(data.verified)
    if flags.shape != (data.n_clips,):
        raise InputError(
            f"TrialData.verified must hold one bool per clip, shape ({data.n_clips},); got shape {flags.shape}"
        )
    return torch.from_numpy(flags.astype(bool)).to(device)


class TrainBatches:
    """The part of a trial's batches every data kind shares: the task's labels ``y``, the
    training clips, the verified flags and the epoch order (shuffle or class-balanced draws)."""

    def __init__(self, cfg: Mapping[str, Any], data: TrialData, y_task: np.ndarray, device: torch.device) -> None:
        self.device = device
        self.y = torch.from_numpy(np.array(y_task, dtype=bool, order="C")).to(device)  # a copy
        self.train_idx = torch.from_numpy(np.array(data.train_idx, dtype=np.int64)).to(device)
        self.verified = verified_flags(data, device)
        binary = cfg.get("target_class") is not None
        self.balancer = ClassIndex(balance_labels(self.y[self.train_idx], binary)) if cfg["balanced_batches"] else None

    @classmethod
    def check_config(cls, cfg: Mapping[str, Any]) -> None:
        """Every config trains on this kind (subclasses refuse what does not)."""

    def order(self, gen: torch.Generator) -> Tensor:
        """An epoch's clip indices: a shuffle of the training clips, or class-balanced draws."""
        n = len(self.train_idx)
        if self.balancer is not None:
            return self.train_idx[self.balancer.balanced(n, gen)]
        return self.train_idx[torch.randperm(n, generator=gen).to(self.device)]


class EmbeddingBatches(TrainBatches):
    """Batches of embedding sequences (``data.x``), the whole set held on the device: uint8 as
    they are, float ones as float32 (float16 stays float16).

    :meth:`make` gives one batch's float inputs (uint8 in [0, 1], float standardized: the data's
    :class:`InputScaling`) and float labels after positive mixes, shifts and mixup;
    :meth:`predict_logits` the logits of clips as :func:`predict` gives them.
    """

    def __init__(self, cfg: Mapping[str, Any], data: TrialData, y_task: np.ndarray, device: torch.device) -> None:
        raw = np.asarray(data.x)
        keep = np.uint8 if raw.dtype == np.uint8 else (np.float16 if raw.dtype == np.float16 else np.float32)
        self.x = torch.from_numpy(np.array(raw, dtype=keep)).to(device)  # a private copy
        self.scaling = data.scaling
        self.scale = Scaler(self.scaling, device)
        super().__init__(cfg, data, y_task, device)
        self.shift = int(cfg["shift_augment"])
        if self.shift > 0 and self.x.dtype != torch.uint8:
            raise InputError(
                f"shift_augment={self.shift} shifts 0..255 byte values, but the clips are {raw.dtype}; "
                "set shift_augment to 0 for float features (in the config or the search space)"
            )
        self.positive_mix = float(cfg["positive_mix"])
        self.mixup_alpha = float(cfg["mixup_alpha"])
        self.mixup_gt_half = bool(cfg["mixup_lambda_gt_half"])
        self.partners = ClassIndex(self.y[self.train_idx]) if self.positive_mix > 0 else None

    def make(self, idx: Tensor) -> tuple[Tensor, Tensor]:
        """Inputs ``[B, T, F]`` (float: uint8 in [0, 1], float standardized) and labels ``[B, C]``
        (float) of the clips ``idx``."""
        x: Tensor = self.x[idx]
        y = self.y[idx].float()
        if self.positive_mix > 0:
            x, y = self._positive_mix(x.float(), y)
        if self.shift > 0:
            x = shift_clamp(x, random_shifts(len(idx), self.shift, self.device))
        x = self.scale(x)
        if self.mixup_alpha > 0:
            n = len(idx)
            lam = sample_mixup_lambda(n, self.mixup_alpha, gt_half=self.mixup_gt_half, device=self.device)
            x, y = mixup(x, y, lam, torch.randperm(n, device=self.device))
        return x, y

    def _positive_mix(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """With probability ``positive_mix`` mix a clip 0.5/0.5 with a training clip sharing a label."""
        assert self.partners is not None
        n = len(x)
        cls, has = random_positive_class(y)
        mix = has & (torch.rand(n, device=self.device) < self.positive_mix)
        partner = self.train_idx[self.partners.clips_of(cls, torch.rand(n, device=self.device))]
        return positive_mix(x, y, self.x[partner].float(), self.y[partner].float(), mix)

    def predict_logits(self, model: nn.Module, idx: Tensor) -> Tensor:
        """Logits ``[len(idx), C]`` (float32) of the clips ``idx``."""
        return predict(model, self.x[idx], activation="none", scaling=self.scaling)
