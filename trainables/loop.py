"""The one training loop, shared by every family, by Tune trials and by ``tagtune train``.

Data arrive as uint8 arrays ``x [N, T, F]`` and bool ``y [N, C]``; they are moved to the trial's
device once (on a GPU the whole set sits there) and batches are index lookups.  Inputs are scaled
to [0, 1].  Validation runs every epoch with the vectorized metrics; the best state is kept.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch import Tensor, nn

from trainables.errors import InputError
from trainables.config import OPTIMIZERS, TRAIN_DEFAULTS, resolve_config
from trainables.init import apply_init, init_output_bias
from trainables.metrics import tagging_metrics
from trainables.models import create_model

EPOCH_METRICS = ("train_loss", "val_loss", "val_mAUC", "val_mAP", "val_dprime", "epoch_seconds")


class TrainingDiverged(FloatingPointError):
    """The loss became NaN or infinite; the trial failed (not the user's input)."""


@dataclass
class TrialData:
    """What one trial trains on: the full arrays and the train/validation index split."""

    x: np.ndarray
    y: np.ndarray
    train_idx: np.ndarray
    val_idx: np.ndarray
    class_names: tuple[str, ...] = ()

    @property
    def shape(self) -> tuple[int, int, int]:
        """(frames, features, classes)."""
        return int(self.x.shape[1]), int(self.x.shape[2]), int(self.y.shape[1])


@dataclass
class FitResult:
    """The outcome of :func:`fit`: the best epoch's metrics and state, and the history."""

    best: dict[str, float]
    best_state: dict[str, Tensor]
    history: list[dict[str, float]] = field(default_factory=list)


def make_optimizer(name: str, params: Any, cfg: Mapping[str, Any]) -> torch.optim.Optimizer:
    """Adam, SGD with momentum, RMSprop or Adagrad, with the config's lr and weight decay."""
    lr, wd = float(cfg["lr"]), float(cfg["weight_decay"])
    name = name.lower()
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=float(cfg["momentum"]), weight_decay=wd)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, weight_decay=wd)
    if name == "adagrad":
        return torch.optim.Adagrad(params, lr=lr, weight_decay=wd)
    raise InputError(f"unknown optimizer {name!r}; choose from: {', '.join(OPTIMIZERS)}")


def pick_device(requested: str | None = None) -> torch.device:
    """``requested`` if given, else CUDA where available, else CPU."""
    if requested:
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _autocast(device: torch.device) -> Any:
    """bf16 autocast on CUDA, a no-op elsewhere."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


@torch.no_grad()
def predict(
    model: nn.Module, x: Tensor, *, batch_size: int = 4096, device: torch.device | None = None
) -> Tensor:
    """Sigmoid scores ``[N, C]`` (float32, on ``x``'s device) for uint8 inputs ``x [N, T, F]``."""
    device = device or x.device
    model.eval()
    outs = []
    for i in range(0, x.shape[0], batch_size):
        xb = x[i : i + batch_size].to(device, non_blocking=True).float().div_(255.0)
        with _autocast(device):
            outs.append(model(xb).float().sigmoid())
    return torch.cat(outs)


def evaluate(
    model: nn.Module, x: Tensor, y: Tensor, loss_fn: nn.Module | None = None
) -> dict[str, float]:
    """mAUC, mAP, d-prime (and the loss) of ``model`` on uint8 ``x`` and bool ``y``."""
    scores = predict(model, x)
    out = tagging_metrics(scores, y)
    eps = 1e-7
    p = scores.double().clamp(eps, 1 - eps)
    t = y.double()
    out["loss"] = float(-(t * p.log() + (1 - t) * (1 - p).log()).mean())
    return out


def fit(
    config: Mapping[str, Any],
    data: TrialData,
    *,
    max_epochs: int,
    device: str | torch.device | None = None,
    on_epoch: Callable[[dict[str, float], bool, nn.Module], None] | None = None,
) -> FitResult:
    """Train ``config`` on ``data`` for ``max_epochs``; validate every epoch; keep the best state.

    ``on_epoch(metrics, improved, model)`` is called after each epoch (Tune reports from there).
    Raises :class:`TrainingDiverged` when the loss is NaN or infinite.
    """
    if max_epochs < 1:
        raise InputError(f"--max-epochs must be at least 1, got {max_epochs}")
    cfg = resolve_config(config)
    dev = device if isinstance(device, torch.device) else pick_device(device)
    torch.manual_seed(int(cfg["seed"]))
    n_frames, n_features, n_classes = data.shape
    model = create_model(
        cfg["family"], n_frames=n_frames, n_features=n_features, n_classes=n_classes, **cfg
    )
    apply_init(model, str(cfg["init"]))
    if cfg["output_bias"] == "prior":
        init_output_bias(model, torch.from_numpy(np.asarray(data.y)[data.train_idx].mean(axis=0)))
    model.to(dev)
    optimizer = make_optimizer(str(cfg["optimizer"]), model.parameters(), cfg)
    loss_fn = nn.BCEWithLogitsLoss()

    x_all = torch.from_numpy(np.array(data.x, dtype=np.uint8)).to(dev)  # a private copy
    y_all = torch.from_numpy(np.array(data.y, dtype=bool)).to(dev)
    train_idx = torch.from_numpy(np.array(data.train_idx, dtype=np.int64)).to(dev)
    val_idx = torch.from_numpy(np.array(data.val_idx, dtype=np.int64)).to(dev)
    x_val, y_val = x_all[val_idx], y_all[val_idx].bool()
    batch_size = int(cfg["batch_size"])
    grad_clip = float(cfg["grad_clip"])
    gen = torch.Generator(device="cpu").manual_seed(int(cfg["seed"]))

    best: dict[str, float] = {}
    best_state: dict[str, Tensor] = {}
    history: list[dict[str, float]] = []
    for epoch in range(1, max_epochs + 1):
        start = time.perf_counter()
        model.train()
        order = train_idx[torch.randperm(len(train_idx), generator=gen).to(dev)]
        total, count = torch.zeros((), device=dev), 0
        for b in range(0, len(order), batch_size):
            idx = order[b : b + batch_size]
            xb = x_all[idx].float().div_(255.0)
            yb = y_all[idx].float()
            with _autocast(dev):
                logits = model(xb)
            loss = loss_fn(logits.float(), yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip > 0:
                nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()
            total += loss.detach() * len(idx)
            count += len(idx)
        train_loss = float(total) / max(count, 1)
        if not math.isfinite(train_loss):
            raise TrainingDiverged(
                f"training loss became {train_loss} in epoch {epoch} "
                f"(family {cfg['family']}, lr {cfg['lr']}); lower the learning rate or set grad_clip"
            )
        val = evaluate(model, x_val, y_val)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        metrics = {
            "epoch": float(epoch),
            "train_loss": train_loss,
            "val_loss": val["loss"],
            "val_mAUC": val["mAUC"],
            "val_mAP": val["mAP"],
            "val_dprime": val["dprime"],
            "epoch_seconds": time.perf_counter() - start,
        }
        improved = not best or metrics["val_mAUC"] > best["val_mAUC"]
        if improved:
            best = dict(metrics)
            best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        metrics["best_val_mAUC"] = best["val_mAUC"]
        metrics["best_val_mAP"] = best["val_mAP"]
        history.append(metrics)
        if on_epoch is not None:
            on_epoch(metrics, improved, model)
    return FitResult(best=best, best_state=copy.copy(best_state), history=history)
