"""Multi-head classifiers (seed 003's "multi-head softmax"), for every family: ``output_heads``.

A family's output layer is its last ``nn.Linear`` whose ``out_features`` is the number of outputs.
:func:`replace_output_layer` swaps it for a :class:`MultiHead` of ``n`` independently initialized
linear heads whose outputs are averaged *as probabilities*, then returned as logits again, so the
loss, the metrics and :func:`tagtune.trainables.loop.predict` need no change:

* ``multilabel`` / ``binary``: per class the mean of the heads' sigmoids, returned as its
  log-odds, ``log(mean sigmoid) - log(1 - mean sigmoid)``, computed exactly with ``logsumexp``
  of log-sigmoids (finite and with useful gradients even where heads saturate, so no clamp).
* ``singlelabel``: the log of the mean of the heads' softmaxes (log-probabilities, which are their
  own log-softmax, so ``cross_entropy`` takes them as logits).

Why probabilities and not logits: a mean of ``n`` linear maps is itself one linear map, so averaging
logits only reparametrizes the single-head model.  Averaging bounded outputs is what seed 003
describes: each head may sit anywhere as long as the mean matches a soft (mixup) target, which is
the margin the report credits for faster training under strong mixup.
"""

from __future__ import annotations

import math
from typing import cast

import torch
from torch import Tensor, nn

from tagtune.errors import InputError

TASKS = ("multilabel", "binary", "singlelabel")


def check_task(task: str) -> str:
    """``task`` if it is one of :data:`TASKS`, else an :class:`InputError`."""
    if task not in TASKS:
        raise InputError(f"unknown task {task!r}; choose from: {', '.join(TASKS)}")
    return task


def combine_heads(outputs: Tensor, task: str = "multilabel") -> Tensor:
    """Average ``n`` heads' outputs ``[n, ..., C]`` as probabilities; returns logits ``[..., C]``.

    ``multilabel``/``binary``: the log-odds of the mean sigmoid.  ``singlelabel``: the log of the
    mean softmax over the last dimension.  With one head both return that head's logits (up to
    a constant per row for ``singlelabel``).
    """
    check_task(task)
    outputs = outputs.float()
    if task == "singlelabel":
        log_p = torch.log_softmax(outputs, dim=-1)
        return torch.logsumexp(log_p, dim=0) - math.log(outputs.shape[0])
    # log mean(p) - log mean(1 - p); the 1/n factors cancel.
    log_p = torch.logsumexp(nn.functional.logsigmoid(outputs), dim=0)
    log_q = torch.logsumexp(nn.functional.logsigmoid(-outputs), dim=0)
    return log_p - log_q


class MultiHead(nn.Module):
    """``n`` linear heads of the same shape whose outputs are averaged by :func:`combine_heads`."""

    def __init__(
        self, in_features: int, out_features: int, n_heads: int, task: str = "multilabel", *, bias: bool = True
    ) -> None:
        super().__init__()
        if n_heads < 1:
            raise InputError(f"output_heads must be at least 1, got {n_heads}")
        self.task = check_task(task)
        self.in_features = in_features
        self.out_features = out_features
        self.heads = nn.ModuleList(nn.Linear(in_features, out_features, bias=bias) for _ in range(n_heads))

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``[..., out_features]`` of the averaged heads for inputs ``[..., in_features]``."""
        return combine_heads(torch.stack([head(x) for head in self.heads]), self.task)

    def extra_repr(self) -> str:
        return f"n_heads={len(self.heads)}, task={self.task!r}"


def output_layers(model: nn.Module, n_outputs: int) -> list[nn.Linear]:
    """The linear layer(s) producing ``model``'s ``n_outputs`` outputs.

    The heads of the last :class:`MultiHead` of that width if the model has one, else the last
    ``nn.Linear`` with ``out_features == n_outputs`` (a one-element list), else ``[]``.
    """
    for module in reversed(list(model.modules())):
        if isinstance(module, MultiHead) and module.out_features == n_outputs:
            return cast(list[nn.Linear], list(module.heads))
    linears = [m for m in model.modules() if isinstance(m, nn.Linear) and m.out_features == n_outputs]
    return linears[-1:]


def replace_output_layer(model: nn.Module, n_outputs: int, n_heads: int, task: str = "multilabel") -> nn.Module:
    """Swap ``model``'s output layer for a :class:`MultiHead` of ``n_heads`` heads (in place).

    The first head keeps the original layer's parameters; the others are freshly initialized
    (PyTorch's default, independently; :func:`tagtune.trainables.weight_init.apply_init` re-initializes all of
    them when a scheme is chosen).  ``n_heads == 1`` leaves the model untouched.  Returns the
    model (the new :class:`MultiHead` itself when ``model`` is a bare ``nn.Linear``).
    """
    check_task(task)
    if n_heads == 1:
        return model
    if n_heads < 1:
        raise InputError(f"output_heads must be at least 1, got {n_heads}")
    found = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) and module.out_features == n_outputs:
            found = name, module
    if found is None:
        raise InputError(
            f"output_heads={n_heads} needs an output nn.Linear with {n_outputs} outputs, and "
            f"{type(model).__name__} has none; use output_heads: 1 for this family"
        )
    name, old = found
    multi = MultiHead(old.in_features, n_outputs, n_heads, task, bias=old.bias is not None)
    multi.heads[0] = old
    if not name:  # the model is the output layer itself
        return multi
    parent_name, _, attr = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, attr, multi)
    return model
