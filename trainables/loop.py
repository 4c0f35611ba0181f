"""The one training loop, shared by every family, by Tune trials and by ``tagtune train``.

Data arrive as :class:`tagtune.trainables.data.TrialData`: clips of one kind (uint8 embedding
sequences ``x [N, T, F]``, or raw audio) and bool ``y [N, C]``.  The kind's batches
(:data:`BATCHES`, the :class:`tagtune.trainables.batches.Batches` protocol) move them to the trial's
device once (on a GPU the whole set sits there); batches are index lookups.  Validation runs every
epoch on whole-clip logits with the vectorized metrics (:func:`tagtune.trainables.metrics.task_metrics`);
the best state is kept.

The techniques of the source reports (multi-head output, lr schedules, mixup, loss masking,
class-balanced batches, shift and positive-mix augmentation, the binary one-class task) are
training hyperparameters of every family; the pure functions live in
:mod:`tagtune.trainables.techniques` and :mod:`tagtune.trainables.heads`, and their defaults leave this loop
exactly as it is without them.

Raw audio (seed 003) goes through the same loop: its batches are
:class:`tagtune.trainables.audio.batches.AudioBatches` (crops of waveforms on the device; whole clips
are scored).  A new data kind is one batches class added to :data:`BATCHES`.  Single-label data
(``TrialData.single_label``) train with cross-entropy over softmax outputs and add
``val_accuracy`` and ``val_map3``.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from tagtune.errors import InputError
from tagtune.names import Metrics
from tagtune.trainables.audio.batches import AudioBatches
from tagtune.trainables.batches import Batches, EmbeddingBatches, autocast, predict
from tagtune.trainables.config import OPTIMIZERS, TRAIN_DEFAULTS, resolve_config
from tagtune.trainables.data import TrialData
from tagtune.trainables.graphs import GraphedStep, graphs_apply
from tagtune.trainables.heads import replace_output_layer
from tagtune.trainables.metrics import task_metrics
from tagtune.trainables.models import create_model
from tagtune.trainables.techniques import loss_mask, make_scheduler, masked_mean, resolve_target_class
from tagtune.trainables.weight_init import apply_init, init_output_bias

__all__ = [
    "BATCHES",
    "OPTIMIZERS",
    "TRAIN_DEFAULTS",
    "FitResult",
    "TrainingDiverged",
    "TrialData",
    "build_model",
    "evaluate",
    "fit",
    "make_ema",
    "make_optimizer",
    "model_task",
    "output_count",
    "pick_device",
    "predict",
    "task_labels",
]

BATCHES: dict[str, type[Batches]] = {"embeddings": EmbeddingBatches, "audio": AudioBatches}
"""The batches of each data kind (``TrialData.kind``)."""


class TrainingDiverged(FloatingPointError):
    """The loss became NaN or infinite; the trial failed (not the user's input)."""


@dataclass
class FitResult:
    """The outcome of :func:`fit`: the best epoch's metrics and state, and the history."""

    best: dict[str, float]
    best_state: dict[str, Tensor]
    history: list[dict[str, float]] = field(default_factory=list)


def make_optimizer(
    name: str, params: Any, cfg: Mapping[str, Any], *, capturable: bool = False
) -> torch.optim.Optimizer:
    """Adam, AdamW, SGD with momentum, RMSprop or Adagrad, with the config's lr and weight decay.

    AdamW's weight decay is decoupled from the gradient (Adam's is L2 added to it).  ``name`` is
    one of :data:`OPTIMIZERS`, which the config checked (:func:`resolve_config`).  ``capturable``
    (Adam / AdamW on CUDA, for :class:`~tagtune.trainables.graphs.GraphedStep`): the step can be
    captured in a CUDA graph, its learning rate a device tensor the schedules update in place.
    """
    lr, wd = float(cfg["lr"]), float(cfg["weight_decay"])
    name, params = name.lower(), list(params)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=float(cfg["momentum"]), weight_decay=wd)
    if name in ("adam", "adamw"):
        # On CUDA one fused kernel per step instead of a few per parameter (gpu_check.sh: a
        # small model's step there is launch-bound); the same update as the default path.
        fused = bool(params) and all(p.is_cuda and p.is_floating_point() for p in params)
        adam = torch.optim.Adam if name == "adam" else torch.optim.AdamW
        if capturable:
            lr_t = torch.tensor(lr, device=params[0].device)
            return adam(params, lr=lr_t, weight_decay=wd, capturable=True, foreach=True)
        return adam(params, lr=lr, weight_decay=wd, fused=fused or None)
    optimizers: dict[str, Callable[..., torch.optim.Optimizer]] = {
        "rmsprop": torch.optim.RMSprop,
        "adagrad": torch.optim.Adagrad,
    }
    return optimizers[name](params, lr=lr, weight_decay=wd)


def pick_device(requested: str | None = None) -> torch.device:
    """``requested`` if given, else CUDA where available, else CPU."""
    if requested:
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def evaluate(
    model: nn.Module, x: Tensor, y: Tensor, loss_fn: nn.Module | None = None, *, binary: bool = False
) -> dict[str, float]:
    """mAUC, mAP, d-prime (and the loss) of ``model`` on uint8 ``x`` and bool ``y``.

    With ``binary`` (one output column) also ``f1``: the F1 at the best threshold.
    ``loss_fn`` is not used (kept for callers that pass it).
    """
    return task_metrics(predict(model, x, activation="none"), y, "binary" if binary else "multilabel")


def output_count(config: Mapping[str, Any], n_classes: int) -> int:
    """Outputs of the model of ``config``: 1 for the binary task (``target_class``), else ``n_classes``."""
    return 1 if config.get("target_class") is not None else n_classes


def model_task(config: Mapping[str, Any], single_label: bool = False) -> str:
    """``binary`` (``target_class`` set), else ``singlelabel`` for single-label data, else ``multilabel``."""
    if config.get("target_class") is not None:
        return "binary"
    return "singlelabel" if single_label else "multilabel"


def build_model(
    config: Mapping[str, Any],
    *,
    n_frames: int,
    n_features: int,
    n_classes: int,
    task: str | None = None,
) -> nn.Module:
    """The untrained model of ``config`` for data with ``n_classes`` classes.

    The family's model with one output per class (one in all for the binary task), its output
    layer replaced by ``output_heads`` averaged heads when that is above 1 (``task`` says how
    they average: :func:`model_task` of the config by default).  Use this, not
    ``create_model``, to rebuild a trained model from its config and the data's shape.
    """
    cfg = resolve_config(config)
    n_out = output_count(cfg, n_classes)
    model = create_model(cfg["family"], n_frames=n_frames, n_features=n_features, n_classes=n_out, **cfg)
    task = task or model_task(cfg)
    return replace_output_layer(model, n_out, int(cfg["output_heads"]), task)


def task_labels(cfg: Mapping[str, Any], data: TrialData) -> np.ndarray:
    """The labels the model learns (bool): all of ``data.y``, or the target class's column ``[N, 1]``."""
    y = np.asarray(data.y, dtype=bool)
    if cfg.get("target_class") is None:
        return y
    col = resolve_target_class(str(cfg["target_class"]), data.class_names)
    return y[:, col : col + 1]


def _batch_loss(
    logits: Tensor, y: Tensor, mask_alpha: float, verified: Tensor | None, single_label: bool = False
) -> tuple[Tensor, Tensor]:
    """(the loss to optimize, the batch's plain loss for reporting).

    With ``mask_alpha > 0`` the loss is seed 003's batch-wise masked mean over items; else it is
    the plain BCE-with-logits mean, exactly as without the technique.  ``single_label``: the
    item loss is the softmax cross-entropy against the (mixup-soft) targets, as in seed 003.
    """
    if single_label:
        items = nn.functional.cross_entropy(logits, y, reduction="none")
        if mask_alpha <= 0:
            return items.mean(), items.detach().mean()
        return masked_mean(items, loss_mask(items, mask_alpha, verified)), items.detach().mean()
    if mask_alpha <= 0:
        loss = nn.functional.binary_cross_entropy_with_logits(logits, y)
        return loss, loss.detach()
    items = nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="none").mean(dim=1)
    keep = loss_mask(items, mask_alpha, verified)
    return masked_mean(items, keep), items.detach().mean()


def make_ema(model: nn.Module, decay: float) -> Any:
    """An exponential moving average of ``model``'s weights and BatchNorm statistics, updated
    after each optimizer step (``torch.optim.swa_utils.AveragedModel``); None when ``decay`` is 0.
    Validation, the kept best state and checkpoints then use the average."""
    if decay <= 0:
        return None
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


@dataclass
class _Training:
    """One trial's training state: the model, what is validated (``scored``: the SWA mean, the
    EMA average or the model), the optimizer, schedule and EMA, the batches and the validation split."""

    cfg: Mapping[str, Any]
    device: torch.device
    task: str
    model: nn.Module
    scored: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    ema: Any
    batches: Batches
    val_idx: Tensor
    y_val: Tensor
    gen: torch.Generator
    graphed: GraphedStep | None = None
    swa: Any = None  # the running mean of the weights once SWA has begun (``swa_last``)


def _setup(cfg: Mapping[str, Any], data: TrialData, max_epochs: int, dev: torch.device) -> _Training:
    """Build the model (seeded, initialized, prior output bias), optimizer, schedule, EMA and
    batches of a trial, in the order that fixes its random numbers."""
    y_task = task_labels(cfg, data)
    task = model_task(cfg, data.single_label)
    kind_batches = BATCHES[data.kind]
    kind_batches.check_config(cfg)
    torch.manual_seed(int(cfg["seed"]))
    n_frames, n_features, n_classes = data.shape
    model = build_model(cfg, n_frames=n_frames, n_features=n_features, n_classes=n_classes, task=task)
    apply_init(model, str(cfg["init"]))
    if cfg["output_bias"] == "prior":
        rate = torch.from_numpy(y_task[np.asarray(data.train_idx)].mean(axis=0))
        # Softmax outputs want the bias log(p): the log-odds of p / (1 + p).
        init_output_bias(model, rate / (1 + rate) if task == "singlelabel" else rate)
    model.to(dev)
    graphed = graphs_apply(cfg, dev, data.kind)
    optimizer = make_optimizer(str(cfg["optimizer"]), model.parameters(), cfg, capturable=graphed)
    ema = make_ema(model, float(cfg["ema_decay"]))
    scheduler = make_scheduler(
        optimizer,
        str(cfg["lr_schedule"]),
        max_epochs=max_epochs,
        step_epochs=int(cfg["lr_step_epochs"]),
        gamma=float(cfg["lr_gamma"]),
    )
    batches = kind_batches(cfg, data, y_task, dev)
    val_idx = torch.from_numpy(np.array(data.val_idx, dtype=np.int64)).to(dev)
    run = _Training(
        cfg=cfg,
        device=dev,
        task=task,
        model=model,
        scored=ema.module if ema is not None else model,
        optimizer=optimizer,
        scheduler=scheduler,
        ema=ema,
        batches=batches,
        val_idx=val_idx,
        y_val=batches.y[val_idx].bool(),
        gen=torch.Generator(device="cpu").manual_seed(int(cfg["seed"])),
    )
    if graphed:
        run.graphed = GraphedStep(
            lambda idx, capturing: _step(run, idx, capturing),
            lambda to_none: optimizer.zero_grad(set_to_none=to_none),
            int(cfg["batch_size"]),
        )
    return run


def _step(run: _Training, idx: Tensor, capturing: bool = False) -> Tensor:
    """One training step on the clips ``idx`` after the gradients were cleared: forward, loss,
    backward, clipping, optimizer (and EMA) step; the batch's reported loss."""
    cfg, model, batches = run.cfg, run.model, run.batches
    xb, yb = batches.make(idx)
    with autocast(run.device, cache=not capturing):
        logits = model(xb)
    verified = batches.verified[idx] if batches.verified is not None else None
    loss, reported = _batch_loss(logits.float(), yb, float(cfg["loss_mask_alpha"]), verified, run.task == "singlelabel")
    loss.backward()
    if float(cfg["grad_clip"]) > 0:
        nn.utils.clip_grad_norm_(model.parameters(), float(cfg["grad_clip"]))
    run.optimizer.step()
    if run.ema is not None:
        run.ema.update_parameters(model)
    return reported


def _average_weights(run: _Training, epoch: int, max_epochs: int) -> None:
    """SWA (``swa_last`` > 0): from the first of the last ``swa_last`` share of the epochs on,
    the weights at each epoch's end join a running mean, which is then what is validated."""
    share = float(run.cfg["swa_last"])
    if share <= 0 or epoch <= max_epochs - max(1, math.ceil(share * max_epochs)):
        return
    weights = run.ema.module if run.ema is not None else run.model
    if run.swa is None:
        from torch.optim.swa_utils import AveragedModel

        run.swa = AveragedModel(weights, use_buffers=True)
    run.swa.update_parameters(weights)
    run.scored = run.swa.module


def _train_epoch(run: _Training, epoch: int) -> float:
    """One epoch of training; its mean training loss.  Raises :class:`TrainingDiverged`."""
    cfg, batch_size = run.cfg, int(run.cfg["batch_size"])
    run.model.train()
    order = run.batches.order(run.gen)
    total, count = torch.zeros((), device=run.device), 0
    for b in range(0, len(order), batch_size):
        idx = order[b : b + batch_size]
        if run.graphed is not None:
            reported = run.graphed(idx)
        else:
            run.optimizer.zero_grad(set_to_none=True)
            reported = _step(run, idx)
        total += reported * len(idx)
        count += len(idx)
    if run.scheduler is not None:
        run.scheduler.step()
    train_loss = float(total) / max(count, 1)
    if not math.isfinite(train_loss):
        raise TrainingDiverged(
            f"training loss became {train_loss} in epoch {epoch} "
            f"(family {cfg['family']}, lr {cfg['lr']}); lower the learning rate or set grad_clip"
        )
    return train_loss


#: The task's own validation metrics (beyond mAUC, mAP, d-prime and the loss), as logged.
_TASK_METRICS = {"binary": ("f1",), "singlelabel": ("accuracy", "map3"), "multilabel": ()}


def _epoch_metrics(
    epoch: int, train_loss: float, val: Mapping[str, float], task: str, seconds: float
) -> dict[str, float]:
    """An epoch's logged metrics (``val_*`` and the task's own)."""
    metrics = {
        "epoch": float(epoch),
        Metrics.TRAIN_LOSS: train_loss,
        Metrics.VAL_LOSS: val["loss"],
        Metrics.VAL_MAUC: val["mAUC"],
        Metrics.VAL_MAP: val["mAP"],
        Metrics.VAL_DPRIME: val["dprime"],
        Metrics.EPOCH_SECONDS: seconds,
    }
    metrics.update({f"val_{key}": val[key] for key in _TASK_METRICS[task]})
    return metrics


def _best_so_far(best: Mapping[str, float], task: str) -> dict[str, float]:
    """The ``best_val_*`` metrics of the best epoch so far."""
    keys = ("mAUC", "mAP", *_TASK_METRICS[task])
    return {f"best_val_{key}": best[f"val_{key}"] for key in keys}


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
    In the binary task (``target_class`` set) the metrics add ``val_f1`` and ``best_val_f1``; on
    single-label data ``val_accuracy``, ``val_map3`` and their ``best_`` values; the best epoch is
    always the one with the highest ``val_mAUC``.  The batches are those of the data's kind
    (:data:`BATCHES`).  Raises :class:`TrainingDiverged` when the loss is NaN or infinite.
    """
    if max_epochs < 1:
        raise InputError(f"--max-epochs must be at least 1, got {max_epochs}")
    cfg = resolve_config(config)
    dev = device if isinstance(device, torch.device) else pick_device(device)
    run = _setup(cfg, data, max_epochs, dev)
    best: dict[str, float] = {}
    best_state: dict[str, Tensor] = {}
    history: list[dict[str, float]] = []
    for epoch in range(1, max_epochs + 1):
        start = time.perf_counter()
        train_loss = _train_epoch(run, epoch)
        _average_weights(run, epoch, max_epochs)
        val = task_metrics(run.batches.predict_logits(run.scored, run.val_idx), run.y_val, run.task)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        metrics = _epoch_metrics(epoch, train_loss, val, run.task, time.perf_counter() - start)
        improved = not best or metrics[Metrics.VAL_MAUC] > best[Metrics.VAL_MAUC]
        if improved:
            best = dict(metrics)
            best_state = {k: v.detach().to("cpu", copy=True) for k, v in run.scored.state_dict().items()}
        metrics.update(_best_so_far(best, run.task))
        history.append(metrics)
        if on_epoch is not None:
            on_epoch(metrics, improved, run.scored)
    return FitResult(best=best, best_state=copy.copy(best_state), history=history)
