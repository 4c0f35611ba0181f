"""Weight initialization schemes (seed 001 compares them): a hyperparameter of every family."""

from __future__ import annotations

from typing import Callable

from torch import Tensor, nn

from trainables.errors import InputError

_WEIGHT_INITS: dict[str, Callable[[Tensor], object]] = {
    "xavier_uniform": nn.init.xavier_uniform_,
    "xavier_normal": nn.init.xavier_normal_,
    "kaiming": lambda w: nn.init.kaiming_normal_(w, nonlinearity="relu"),
    "orthogonal": nn.init.orthogonal_,
}
INITS = ("default", *_WEIGHT_INITS)


def apply_init(model: nn.Module, name: str) -> nn.Module:
    """Re-initialize every weight matrix/kernel of ``model`` with ``name``; biases to zero.

    ``default`` keeps PyTorch's own initialization.  Normalization layers are left alone.
    """
    if name == "default":
        return model
    if name not in _WEIGHT_INITS:
        raise InputError(f"unknown init {name!r}; choose from: {', '.join(INITS)}")
    init = _WEIGHT_INITS[name]
    for module in model.modules():
        if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm)):
            continue
        for pname, param in module.named_parameters(recurse=False):
            if param.dim() >= 2:
                init(param)
            elif pname.startswith("bias"):
                nn.init.zeros_(param)
    return model
