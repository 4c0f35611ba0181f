"""A trial's configuration: training defaults, family defaults and the sampled values, checked."""

from __future__ import annotations

from typing import Any, Mapping

from trainables.errors import InputError
from trainables.init import INITS, OUTPUT_BIAS
from trainables.models import get_family

#: Training hyperparameters every family accepts, with their defaults.
TRAIN_DEFAULTS: dict[str, Any] = {
    "batch_size": 64,
    "lr": 1e-3,
    "optimizer": "adam",
    "momentum": 0.9,
    "weight_decay": 0.0,
    "grad_clip": 0.0,
    "init": "default",
    "output_bias": "prior",
    "seed": 0,
}
OPTIMIZERS = ("adam", "sgd", "rmsprop", "adagrad")

def resolve_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The full config of a trial: training defaults, the family's defaults, then ``config``."""
    if "family" not in config:
        raise InputError("config has no 'family' key; add e.g. `family: fc2` to the config")
    spec = get_family(str(config["family"]))
    full: dict[str, Any] = {"family": spec.name, **TRAIN_DEFAULTS, **spec.train_defaults}
    full.update(spec.hparams)
    full.update(config)
    unknown = set(full) - set(TRAIN_DEFAULTS) - set(spec.hparams) - {"family"}
    if unknown:
        raise InputError(
            f"unknown parameter(s) {sorted(unknown)} for family {spec.name!r}; "
            f"allowed: {sorted(set(TRAIN_DEFAULTS) | set(spec.hparams))}"
        )
    if str(full["optimizer"]).lower() not in OPTIMIZERS:
        raise InputError(
            f"unknown optimizer {full['optimizer']!r}; choose from: {', '.join(OPTIMIZERS)}"
        )
    if str(full["output_bias"]) not in OUTPUT_BIAS:
        raise InputError(
            f"unknown output_bias {full['output_bias']!r}; choose from: {', '.join(OUTPUT_BIAS)}"
        )
    if str(full["init"]) not in INITS:
        raise InputError(f"unknown init {full['init']!r}; choose from: {', '.join(INITS)}")
    return full
