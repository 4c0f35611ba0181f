"""A trial's configuration: training defaults, family defaults and the sampled values, checked."""

from __future__ import annotations

from typing import Any, Callable, Mapping

from tagtune.trainables.errors import InputError
from tagtune.trainables.init import INITS, OUTPUT_BIAS
from tagtune.trainables.models import get_family
from tagtune.trainables.techniques import LR_SCHEDULES

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
    # Techniques of the source reports (trainables/techniques.py, trainables/heads.py); the
    # defaults switch them off, so a config without them trains as before.
    "output_heads": 1,  # seed 003: n output heads, their probabilities averaged ("heads" is the
    # transformer family's attention heads)
    "lr_schedule": "none",  # none | step | cosine (per epoch; cosine over max_epochs)
    "lr_step_epochs": 10,  # step: decay every this many epochs
    "lr_gamma": 0.1,  # step: multiply the learning rate by this
    "mixup_alpha": 0.0,  # mixup with Beta(a, a); 0 = off (seed 003: 0.4)
    "mixup_lambda_gt_half": False,  # seed 003: lambda = max(l, 1 - l)
    "loss_mask_alpha": 0.0,  # seed 003: drop items with loss >= alpha * batch max; 0 = off
    "balanced_batches": False,  # sample a class uniformly, then a clip that has it
    "shift_augment": 0,  # seed 002: add a constant in [-s, s] to a clip's 0..255 values
    "positive_mix": 0.0,  # seed 002: probability of a 0.5/0.5 mix with a clip sharing a label
    "ema_decay": 0.0,  # validate and keep an exponential moving average of the weights; 0 = off
    "target_class": None,  # seed 002: one class (by name) against the rest; None = multi-label
    # Raw-audio data only (trainables/audio; ignored for embeddings):
    "crop_samples": 64000,  # seed 003: training crop in samples at the family's sample_rate
    "mixup_scale": 0.0,  # seed 003 eq. 2: peak-normalize clips, scale by U(1 - s, 1 + s); 0 = off
}
OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop", "adagrad")
_NULL_NAMES = ("", "none", "null", "~")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _int_range(low: int, high: int) -> Callable[[str, Any], Any]:
    def check(name: str, value: Any) -> Any:
        if not _is_int(value) or not low <= value <= high:
            raise InputError(f"{name} must be an integer in [{low}, {high}], got {value!r}")
        return value

    return check


def _float_range(low: float, high: float, *, low_open: bool = False) -> Callable[[str, Any], Any]:
    bracket = "(" if low_open else "["

    def check(name: str, value: Any) -> Any:
        ok = _is_number(value) and (low < value if low_open else low <= value) and value <= high
        if not ok:
            raise InputError(f"{name} must be a number in {bracket}{low:g}, {high:g}], got {value!r}")
        return float(value)

    return check


def _non_negative(name: str, value: Any) -> Any:
    if not _is_number(value) or not value >= 0 or value == float("inf"):
        raise InputError(f"{name} must be a finite number >= 0 (0 = off), got {value!r}")
    return float(value)


def _boolean(name: str, value: Any) -> Any:
    if not isinstance(value, bool):
        raise InputError(f"{name} must be true or false, got {value!r}")
    return value


def _lr_schedule(name: str, value: Any) -> Any:
    text = str(value).lower()
    if text not in LR_SCHEDULES:
        raise InputError(f"unknown {name} {value!r}; choose from: {', '.join(LR_SCHEDULES)}")
    return text


def _target_class(name: str, value: Any) -> Any:
    """``None`` (multi-label) or a class name; MLflow's ``"None"`` reads back as ``None``."""
    if value is None or (isinstance(value, str) and value.strip().lower() in _NULL_NAMES):
        return None
    if not isinstance(value, str):
        raise InputError(f"{name} must be a class name (e.g. 'Speech') or null, got {value!r}")
    return value


#: Checks of the technique hyperparameters: each returns the (normalized) value or raises.
_CHECKS: dict[str, Callable[[str, Any], Any]] = {
    "output_heads": _int_range(1, 64),
    "lr_schedule": _lr_schedule,
    "lr_step_epochs": _int_range(1, 100_000),
    "lr_gamma": _float_range(0.0, 1.0, low_open=True),
    "mixup_alpha": _non_negative,
    "mixup_lambda_gt_half": _boolean,
    "loss_mask_alpha": _float_range(0.0, 1.0),
    "balanced_batches": _boolean,
    "shift_augment": _int_range(0, 255),
    "positive_mix": _float_range(0.0, 1.0),
    "ema_decay": _float_range(0.0, 0.99999),
    "target_class": _target_class,
    "crop_samples": _int_range(16, 100_000_000),
    "mixup_scale": _float_range(0.0, 0.99),
}

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
    for name, check in _CHECKS.items():
        full[name] = check(name, full[name])
    return full
