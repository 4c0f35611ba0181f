"""The one training loop, shared by every family, by Tune trials and by ``tagtune train``.

Data arrive as uint8 arrays ``x [N, T, F]`` and bool ``y [N, C]``; they are moved to the trial's
device once (on a GPU the whole set sits there) and batches are index lookups.  Inputs are scaled
to [0, 1].  Validation runs every epoch with the vectorized metrics; the best state is kept.

The techniques of the source reports (multi-head output, lr schedules, mixup, loss masking,
class-balanced batches, shift and positive-mix augmentation, the binary one-class task) are
training hyperparameters of every family; the pure functions live in
:mod:`tagtune.trainables.techniques` and :mod:`tagtune.trainables.heads`, and their defaults leave this loop
exactly as it is without them.

Raw audio (``TrialData.audio``, seed 003) goes through the same loop: its batches come from
:class:`tagtune.trainables.audio.batches.AudioBatches` (crops of waveforms on the device) instead of
:class:`_Batches`, and whole clips are scored.  Single-label data (``TrialData.single_label``)
train with cross-entropy over softmax outputs and add ``val_accuracy`` and ``val_map3``.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np
import torch
from torch import Tensor, nn

from tagtune.trainables.errors import InputError
from tagtune.trainables.config import OPTIMIZERS, TRAIN_DEFAULTS, resolve_config
from tagtune.trainables.heads import replace_output_layer
from tagtune.trainables.init import apply_init, init_output_bias
from tagtune.trainables.metrics import accuracy, f1_at_best_threshold, map_at_k, tagging_metrics
from tagtune.trainables.models import create_model
from tagtune.trainables.techniques import (
    ClassIndex,
    balance_labels,
    loss_mask,
    make_scheduler,
    masked_mean,
    mixup,
    positive_mix,
    random_positive_class,
    random_shifts,
    resolve_target_class,
    sample_mixup_lambda,
    shift_clamp,
)

if TYPE_CHECKING:
    from tagtune.trainables.audio import AudioDataset

EPOCH_METRICS = ("train_loss", "val_loss", "val_mAUC", "val_mAP", "val_dprime", "epoch_seconds")


class TrainingDiverged(FloatingPointError):
    """The loss became NaN or infinite; the trial failed (not the user's input)."""


@dataclass
class TrialData:
    """What one trial trains on: the full arrays and the train/validation index split.

    ``verified`` is an optional bool flag per clip (seed 003's manually verified labels): loss
    masking never drops a verified clip.  ``None`` means no clip is verified.

    Raw audio: ``audio`` holds the clips (``x`` is then an empty ``[N, 0, 1]`` placeholder; see
    :func:`tagtune.trainables.audio.audio_trial_data`).  ``single_label``: every clip has exactly one
    class; trained with softmax cross-entropy and scored with accuracy and MAP@3 as well.
    """

    x: np.ndarray
    y: np.ndarray
    train_idx: np.ndarray
    val_idx: np.ndarray
    class_names: tuple[str, ...] = ()
    verified: np.ndarray | None = None
    audio: AudioDataset | None = None
    single_label: bool = False

    @property
    def kind(self) -> str:
        """``"audio"`` (waveforms in ``audio``) or ``"embeddings"`` (uint8 ``x``)."""
        return "audio" if self.audio is not None else "embeddings"

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
    """Adam, AdamW, SGD with momentum, RMSprop or Adagrad, with the config's lr and weight decay.

    AdamW's weight decay is decoupled from the gradient (Adam's is L2 added to it).
    """
    lr, wd = float(cfg["lr"]), float(cfg["weight_decay"])
    name = name.lower()
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd)
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
    model: nn.Module, x: Tensor, *, batch_size: int = 4096, device: torch.device | None = None,
    activation: str = "sigmoid",
) -> Tensor:
    """Sigmoid scores ``[N, C]`` (float32, on ``x``'s device) for uint8 inputs ``x [N, T, F]``
    (the raw logits with ``activation="none"``)."""
    device = device or x.device
    model.eval()
    outs = []
    for i in range(0, x.shape[0], batch_size):
        xb = x[i : i + batch_size].to(device, non_blocking=True).float().div_(255.0)
        with _autocast(device):
            out = model(xb).float()
            outs.append(out.sigmoid() if activation == "sigmoid" else out)
    return torch.cat(outs)


def evaluate(
    model: nn.Module, x: Tensor, y: Tensor, loss_fn: nn.Module | None = None, *, binary: bool = False
) -> dict[str, float]:
    """mAUC, mAP, d-prime (and the loss) of ``model`` on uint8 ``x`` and bool ``y``.

    With ``binary`` (one output column) also ``f1``: the F1 at the best threshold.
    """
    scores = predict(model, x)
    out = tagging_metrics(scores, y)
    if binary:
        out["f1"] = f1_at_best_threshold(scores[:, 0], y[:, 0])[0]
    eps = 1e-7
    p = scores.double().clamp(eps, 1 - eps)
    t = y.double()
    out["loss"] = float(-(t * p.log() + (1 - t) * (1 - p).log()).mean())
    return out


def output_count(config: Mapping[str, Any], n_classes: int) -> int:
    """Outputs of the model of ``config``: 1 for the binary task (``target_class``), else ``n_classes``."""
    return 1 if config.get("target_class") is not None else n_classes


def model_task(config: Mapping[str, Any], single_label: bool = False) -> str:
    """``binary`` (``target_class`` set), else ``singlelabel`` for single-label data, else ``multilabel``."""
    if config.get("target_class") is not None:
        return "binary"
    return "singlelabel" if single_label else "multilabel"


def build_model(
    config: Mapping[str, Any], *, n_frames: int, n_features: int, n_classes: int,
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


def _verified_flags(data: TrialData, device: torch.device) -> Tensor | None:
    """``data.verified`` as a bool tensor on ``device`` (checked: one flag per clip), or ``None``."""
    if data.verified is None:
        return None
    flags = np.asarray(data.verified)
    if flags.shape != (len(data.x),):
        raise InputError(
            f"TrialData.verified must hold one bool per clip, shape ({len(data.x)},); got shape {flags.shape}"
        )
    return torch.from_numpy(flags.astype(bool)).to(device)


class _Batches:
    """Turns a trial's epoch into augmented batches, all on the trial's device.

    Holds the data on the device and the techniques' settings; :meth:`order` gives an epoch's
    clip order (a permutation, or class-balanced draws) and :meth:`make` one batch's float inputs
    in [0, 1] and float labels after positive mixes, shifts and mixup.
    """

    def __init__(
        self, cfg: Mapping[str, Any], data: TrialData, y_task: np.ndarray, device: torch.device
    ) -> None:
        self.device = device
        self.binary = cfg["target_class"] is not None
        self.x = torch.from_numpy(np.array(data.x, dtype=np.uint8)).to(device)  # a private copy
        self.y = torch.from_numpy(np.array(y_task, dtype=bool, order="C")).to(device)  # a copy
        self.train_idx = torch.from_numpy(np.array(data.train_idx, dtype=np.int64)).to(device)
        self.verified = _verified_flags(data, device)
        self.shift = int(cfg["shift_augment"])
        self.positive_mix = float(cfg["positive_mix"])
        self.mixup_alpha = float(cfg["mixup_alpha"])
        self.mixup_gt_half = bool(cfg["mixup_lambda_gt_half"])
        y_train = self.y[self.train_idx]
        self.partners = ClassIndex(y_train) if self.positive_mix > 0 else None
        self.balancer = ClassIndex(balance_labels(y_train, self.binary)) if cfg["balanced_batches"] else None

    def order(self, gen: torch.Generator) -> Tensor:
        """An epoch's clip indices: a shuffle of the training clips, or class-balanced draws."""
        n = len(self.train_idx)
        if self.balancer is not None:
            return self.train_idx[self.balancer.balanced(n, gen)]
        return self.train_idx[torch.randperm(n, generator=gen).to(self.device)]

    def make(self, idx: Tensor) -> tuple[Tensor, Tensor]:
        """Inputs ``[B, T, F]`` (float, [0, 1]) and labels ``[B, C]`` (float) of the clips ``idx``."""
        x: Tensor = self.x[idx]
        y = self.y[idx].float()
        if self.positive_mix > 0:
            x, y = self._positive_mix(x.float(), y)
        if self.shift > 0:
            x = shift_clamp(x, random_shifts(len(idx), self.shift, self.device))
        x = x.float().div_(255.0)
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


def logit_metrics(logits: Tensor, y: Tensor, task: str) -> dict[str, float]:
    """Validation metrics from whole-clip logits ``[N, C]`` and bool labels ``y [N, C]``.

    ``singlelabel``: softmax scores; one-vs-rest mAUC, mAP and d-prime, ``accuracy``, ``map3``
    (MAP@3) and the cross-entropy ``loss``.  Otherwise sigmoid scores, as :func:`evaluate`
    (with ``f1`` for ``binary``).
    """
    if task != "singlelabel":
        scores = logits.float().sigmoid()
        out = tagging_metrics(scores, y)
        if task == "binary":
            out["f1"] = f1_at_best_threshold(scores[:, 0], y[:, 0])[0]
        out["loss"] = float(nn.functional.binary_cross_entropy_with_logits(logits.float(), y.float()))
        return out
    scores = logits.float().softmax(dim=1)
    labels = y.to(torch.int8).argmax(dim=1)
    out = tagging_metrics(scores, y)
    out["accuracy"] = accuracy(scores, labels)
    out["map3"] = map_at_k(scores, labels, 3)
    out["loss"] = float(nn.functional.cross_entropy(logits.float(), labels))
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
    In the binary task (``target_class`` set) the metrics add ``val_f1`` and ``best_val_f1``; on
    single-label data ``val_accuracy``, ``val_map3`` and their ``best_`` values; the best epoch is
    always the one with the highest ``val_mAUC``.  Raw audio (``data.audio``) is cropped into
    batches and scored as whole clips (:class:`tagtune.trainables.audio.batches.AudioBatches`).
    Raises :class:`TrainingDiverged` when the loss is NaN or infinite.
    """
    if max_epochs < 1:
        raise InputError(f"--max-epochs must be at least 1, got {max_epochs}")
    cfg = resolve_config(config)
    dev = device if isinstance(device, torch.device) else pick_device(device)
    y_task = task_labels(cfg, data)
    binary = cfg["target_class"] is not None
    task = model_task(cfg, data.single_label)
    single = task == "singlelabel"
    if data.kind == "audio":
        from tagtune.trainables.audio.batches import check_audio_config

        check_audio_config(cfg)
    torch.manual_seed(int(cfg["seed"]))
    n_frames, n_features, n_classes = data.shape
    model = build_model(cfg, n_frames=n_frames, n_features=n_features, n_classes=n_classes, task=task)
    apply_init(model, str(cfg["init"]))
    if cfg["output_bias"] == "prior":
        rate = torch.from_numpy(y_task[np.asarray(data.train_idx)].mean(axis=0))
        # Softmax outputs want the bias log(p): the log-odds of p / (1 + p).
        init_output_bias(model, rate / (1 + rate) if single else rate)
    model.to(dev)
    optimizer = make_optimizer(str(cfg["optimizer"]), model.parameters(), cfg)
    ema = make_ema(model, float(cfg["ema_decay"]))
    scored = ema.module if ema is not None else model  # what is validated, kept and reported
    scheduler = make_scheduler(
        optimizer, str(cfg["lr_schedule"]), max_epochs=max_epochs,
        step_epochs=int(cfg["lr_step_epochs"]), gamma=float(cfg["lr_gamma"]),
    )

    batches: Any
    if data.kind == "audio":
        from tagtune.trainables.audio.batches import AudioBatches

        batches = AudioBatches(cfg, data, y_task, dev)
    else:
        batches = _Batches(cfg, data, y_task, dev)
    val_idx = torch.from_numpy(np.array(data.val_idx, dtype=np.int64)).to(dev)
    y_val = batches.y[val_idx].bool()
    x_val = batches.x[val_idx] if data.kind == "embeddings" else None
    batch_size = int(cfg["batch_size"])
    grad_clip = float(cfg["grad_clip"])
    mask_alpha = float(cfg["loss_mask_alpha"])
    gen = torch.Generator(device="cpu").manual_seed(int(cfg["seed"]))

    best: dict[str, float] = {}
    best_state: dict[str, Tensor] = {}
    history: list[dict[str, float]] = []
    for epoch in range(1, max_epochs + 1):
        start = time.perf_counter()
        model.train()
        order = batches.order(gen)
        total, count = torch.zeros((), device=dev), 0
        for b in range(0, len(order), batch_size):
            idx = order[b : b + batch_size]
            xb, yb = batches.make(idx)
            with _autocast(dev):
                logits = model(xb)
            verified = batches.verified[idx] if batches.verified is not None else None
            loss, reported = _batch_loss(logits.float(), yb, mask_alpha, verified, single)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip > 0:
                nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()
            if ema is not None:
                ema.update_parameters(model)
            total += reported * len(idx)
            count += len(idx)
        if scheduler is not None:
            scheduler.step()
        train_loss = float(total) / max(count, 1)
        if not math.isfinite(train_loss):
            raise TrainingDiverged(
                f"training loss became {train_loss} in epoch {epoch} "
                f"(family {cfg['family']}, lr {cfg['lr']}); lower the learning rate or set grad_clip"
            )
        if x_val is not None and not single:
            val = evaluate(scored, x_val, y_val, binary=binary)
        elif x_val is not None:
            val = logit_metrics(predict(scored, x_val, activation="none"), y_val, task)
        else:
            val = logit_metrics(batches.predict_logits(scored, val_idx), y_val, task)
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
        if binary:
            metrics["val_f1"] = val["f1"]
        if single:
            metrics["val_accuracy"] = val["accuracy"]
            metrics["val_map3"] = val["map3"]
        improved = not best or metrics["val_mAUC"] > best["val_mAUC"]
        if improved:
            best = dict(metrics)
            best_state = {k: v.detach().to("cpu", copy=True) for k, v in scored.state_dict().items()}
        metrics["best_val_mAUC"] = best["val_mAUC"]
        metrics["best_val_mAP"] = best["val_mAP"]
        if binary:
            metrics["best_val_f1"] = best["val_f1"]
        if single:
            metrics["best_val_accuracy"] = best["val_accuracy"]
            metrics["best_val_map3"] = best["val_map3"]
        history.append(metrics)
        if on_epoch is not None:
            on_epoch(metrics, improved, scored)
    return FitResult(best=best, best_state=copy.copy(best_state), history=history)
