"""Training techniques of the source reports, as small pure functions on device tensors.

Each is a training hyperparameter of every family (see :data:`tagtune.trainables.config.TRAIN_DEFAULTS`),
off by default, and vectorized over the batch (no Python loop per item):

* learning-rate schedules (seed 003's step decay; cosine over the run): :func:`make_scheduler`;
* mixup with ``Beta(a, a)`` and seed 003's ``lambda > 0.5`` option: :func:`sample_mixup_lambda`,
  :func:`mixup`;
* seed 003's batch-wise loss masking: :func:`loss_mask`, :func:`masked_mean`;
* class-balanced sampling (seed 003) and positive partners (seed 002): :class:`ClassIndex`;
* seed 002's constant shift clamped to [0, 255]: :func:`random_shifts`, :func:`shift_clamp`;
* seed 002's 0.5/0.5 mixes of positives: :func:`random_positive_class`, :func:`positive_mix`;
* seed 002's binary task (one class against the rest): :func:`resolve_target_class`.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence

import torch
from torch import Tensor

from tagtune.errors import InputError

LR_SCHEDULES = ("none", "step", "cosine")


# --------------------------------------------------------------------------------------------
# Learning-rate schedules
# --------------------------------------------------------------------------------------------


def make_scheduler(
    optimizer: torch.optim.Optimizer,
    schedule: str,
    *,
    max_epochs: int,
    step_epochs: int = 10,
    gamma: float = 0.1,
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """A per-epoch schedule (call ``.step()`` after each epoch), or ``None`` for ``none``.

    ``step``: multiply the learning rate by ``gamma`` every ``step_epochs`` epochs (seed 003:
    1e-3, then 1e-4, then 1e-5).  ``cosine``: cosine annealing from the learning rate towards 0
    over ``max_epochs`` epochs.
    """
    if schedule == "none":
        return None
    if schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=step_epochs, gamma=gamma)
    if schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max_epochs)
    raise InputError(f"unknown lr_schedule {schedule!r}; choose from: {', '.join(LR_SCHEDULES)}")


# --------------------------------------------------------------------------------------------
# mixup
# --------------------------------------------------------------------------------------------


def sample_mixup_lambda(n: int, alpha: float, *, gt_half: bool = False, device: torch.device | str = "cpu") -> Tensor:
    """``n`` mixing weights from ``Beta(alpha, alpha)`` (float32 ``[n]``); with ``gt_half`` each
    is ``max(l, 1 - l)``, so the clip it weights dominates its mix (seed 003)."""
    if alpha <= 0:
        raise InputError(f"mixup_alpha must be > 0 to sample mixup weights, got {alpha}")
    conc = torch.full((n,), float(alpha), device=device)  # a fill kernel: no host copy, no sync
    lam = torch.distributions.Beta(conc, conc, validate_args=False).sample()
    return torch.maximum(lam, 1 - lam) if gt_half else lam


def mixup(x: Tensor, y: Tensor, lam: Tensor, partner: Tensor) -> tuple[Tensor, Tensor]:
    """``lam * a + (1 - lam) * a[partner]`` for inputs ``x [B, ...]`` and labels ``y [B, C]``.

    ``lam`` is ``[B]`` (one weight per item), ``partner`` ``[B]`` indices into the batch.
    """
    lx = lam.view(-1, *([1] * (x.dim() - 1))).to(x.dtype)
    ly = lam.view(-1, *([1] * (y.dim() - 1))).to(y.dtype)
    return lx * x + (1 - lx) * x[partner], ly * y + (1 - ly) * y[partner]


# --------------------------------------------------------------------------------------------
# Batch-wise loss masking
# --------------------------------------------------------------------------------------------


def loss_mask(item_losses: Tensor, alpha: float, verified: Tensor | None = None) -> Tensor:
    """Which items of a batch to keep (bool ``[B]``): seed 003's batch-wise loss masking.

    An item is dropped when its loss is ``>= alpha * max(batch losses)``, unless it is verified.
    ``alpha`` must lie in (0, 1].
    """
    if not 0 < alpha <= 1:
        raise InputError(f"loss_mask_alpha must lie in (0, 1] to mask, got {alpha}")
    keep = item_losses.detach() < alpha * item_losses.detach().max()
    return keep | verified if verified is not None else keep


def masked_mean(item_losses: Tensor, keep: Tensor) -> Tensor:
    """Mean loss over the kept items (0, with a zero gradient, when none is kept)."""
    weights = keep.to(item_losses.dtype)
    return (item_losses * weights).sum() / weights.sum().clamp(min=1)


# --------------------------------------------------------------------------------------------
# Class-balanced sampling and positives of a class
# --------------------------------------------------------------------------------------------


class ClassIndex:
    """The rows of a bool label matrix ``y [N, C]`` that have each class, grouped by class.

    ``clips_of(classes, u)`` picks, per requested class, the row at fraction ``u`` of that class's
    rows: with uniform ``u`` a uniformly random clip that has the class.  Built once per trial on
    the trial's device; lookups are tensor gathers.
    """

    def __init__(self, y: Tensor) -> None:
        if y.dim() != 2:
            raise ValueError(f"expected labels [N, C], got shape {tuple(y.shape)}")
        classes, rows = y.bool().t().nonzero(as_tuple=True)  # ordered by class, then row
        self.items = rows  # the row of each (class, row) pair
        self.counts = torch.bincount(classes, minlength=y.shape[1])
        self.offsets = torch.cumsum(self.counts, 0) - self.counts
        self.present = (self.counts > 0).nonzero().squeeze(1)  # classes with at least one row

    def clips_of(self, classes: Tensor, u: Tensor) -> Tensor:
        """Row indices ``[n]``: for each class in ``classes`` the row at fraction ``u`` in [0, 1)."""
        counts = self.counts[classes]
        k = torch.minimum((u * counts).long(), (counts - 1).clamp(min=0))
        return self.items[self.offsets[classes] + k]

    def balanced(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` row indices: each draws a class uniformly among present classes, then one of
        its rows uniformly (with replacement).  Random numbers come from ``generator`` (CPU)."""
        if self.present.numel() == 0:
            raise InputError("balanced_batches needs at least one training clip with a label; the labels are empty")
        pick = torch.randint(self.present.numel(), (n,), generator=generator)
        u = torch.rand(n, generator=generator)
        device = self.items.device
        return self.clips_of(self.present[pick.to(device)], u.to(device))


def balance_labels(y: Tensor, binary: bool) -> Tensor:
    """The label columns to balance over: ``y`` itself, or ``[y, not y]`` for a binary task."""
    return torch.cat([y, ~y], dim=1) if binary else y


# --------------------------------------------------------------------------------------------
# Seed 002's augmentation
# --------------------------------------------------------------------------------------------


def random_shifts(n: int, max_shift: int, device: torch.device | str = "cpu") -> Tensor:
    """``n`` integer shifts uniform in ``[-max_shift, max_shift]``, shaped ``[n, 1, 1]``."""
    return torch.randint(-max_shift, max_shift + 1, (n, 1, 1), device=device)


def shift_clamp(x: Tensor, shifts: Tensor) -> Tensor:
    """Add one constant per clip (``shifts`` broadcastable to ``x``) and clamp to [0, 255].

    Works in ``x``'s scale of 0..255 (uint8 or float); returns ``x``'s dtype.
    """
    wide = x.to(torch.int16) if not x.is_floating_point() else x
    return (wide + shifts.to(wide.dtype)).clamp_(0, 255).to(x.dtype)


def random_positive_class(y: Tensor) -> tuple[Tensor, Tensor]:
    """For each row of ``y [B, C]`` one of its positive classes, uniformly; and whether it has one."""
    positive = y > 0.5
    scores = torch.rand(y.shape, device=y.device).masked_fill_(~positive, -1.0)
    return scores.argmax(dim=1), positive.any(dim=1)


def positive_mix(x: Tensor, y: Tensor, x_partner: Tensor, y_partner: Tensor, mix: Tensor) -> tuple[Tensor, Tensor]:
    """Where ``mix [B]`` holds, replace an item by the 0.5/0.5 mix of it and its partner.

    Labels mix the same way, so a class both clips have stays 1 (seed 002: "label positive").
    """
    mx = mix.view(-1, *([1] * (x.dim() - 1)))
    my = mix.view(-1, *([1] * (y.dim() - 1)))
    return torch.where(mx, (x + x_partner) / 2, x), torch.where(my, (y + y_partner) / 2, y)


# --------------------------------------------------------------------------------------------
# Binary task
# --------------------------------------------------------------------------------------------


def resolve_target_class(name: str, class_names: Sequence[str]) -> int:
    """The column of class ``name`` in ``class_names`` (exact, else a unique case-insensitive match).

    Unknown names raise an :class:`InputError` listing close matches.
    """
    names = list(class_names)
    if not names:
        raise InputError(
            f"target_class {name!r} needs class names, and the data has none; "
            "use data with class names or unset target_class"
        )
    if name in names:
        return names.index(name)
    folded = [i for i, n in enumerate(names) if n.casefold() == name.casefold()]
    if len(folded) == 1:
        return folded[0]
    lower = {n.casefold(): n for n in names}
    close = [lower[m] for m in difflib.get_close_matches(name.casefold(), list(lower), n=5, cutoff=0.5)]
    if close:
        hint = f"close matches: {', '.join(repr(c) for c in close)}"
    else:
        hint = f"the data has {len(names)} classes, e.g. {names[:5]}"
    raise InputError(f"unknown target_class {name!r}; {hint}")
