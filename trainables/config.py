"""A trial's configuration: training defaults, the family's defaults and the given values (a
space's sample, a YAML file, MLflow params), checked once into a frozen :class:`TrainConfig`.

Every key is checked by a :class:`tagtune.trainables.params.Constraint`: the training keys by
:data:`TRAIN_CONSTRAINTS`, a family's hyperparameters by those registered with the family.  A bad
value is an :class:`InputError` naming the key, the value and what is allowed, before any data is
read or any model built.  :func:`resolve_config` is the entry point; it returns a
:class:`TrainConfig` as it is, so code may call it on what it is handed at no cost.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from tagtune.errors import InputError
from tagtune.trainables.models import FamilySpec, get_family
from tagtune.trainables.params import INVALID, Constraint, boolean, choice, float_range, int_range
from tagtune.trainables.techniques import LR_SCHEDULES
from tagtune.trainables.weight_init import INITS, OUTPUT_BIAS

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
    "swa_last": 0.0,  # SWA: validate the mean of the weights at the end of each of the last
    # fraction of the epochs (0.25 of 12: epochs 10-12; Izmailov et al. 2018); 0 = off
    "target_class": None,  # seed 002: one class (by name) against the rest; None = multi-label
    # Raw-audio data only (trainables/audio; ignored for embeddings):
    "crop_samples": 64000,  # seed 003: training crop in samples at the family's sample_rate
    "mixup_scale": 0.0,  # seed 003 eq. 2: peak-normalize clips, scale by U(1 - s, 1 + s); 0 = off
}
OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop", "adagrad")
_NULL_NAMES = ("", "none", "null", "~")


def _class_name(value: Any) -> Any:
    """``None`` (multi-label) or a class name; MLflow's ``"None"`` reads back as ``None``."""
    if value is None or (isinstance(value, str) and value.strip().lower() in _NULL_NAMES):
        return None
    return value if isinstance(value, str) else INVALID


#: What each training hyperparameter may be (ranges wide enough for every packaged search space
#: and family default; ``tests/test_config.py`` checks both).
TRAIN_CONSTRAINTS: dict[str, Constraint] = {
    "batch_size": int_range(1, 1_000_000),
    "lr": float_range(0.0, 10.0, low_open=True),
    "optimizer": choice(*OPTIMIZERS, ignore_case=True),
    "momentum": float_range(0.0, 1.0, high_open=True),
    "weight_decay": float_range(0.0, 1.0),
    "grad_clip": float_range(0.0, math.inf, note="0 = off"),
    "init": choice(*INITS),
    "output_bias": choice(*OUTPUT_BIAS),
    "seed": int_range(0, 2**63 - 1),
    "output_heads": int_range(1, 64),
    "lr_schedule": choice(*LR_SCHEDULES, ignore_case=True),
    "lr_step_epochs": int_range(1, 100_000),
    "lr_gamma": float_range(0.0, 1.0, low_open=True),
    "mixup_alpha": float_range(0.0, math.inf, note="0 = off"),
    "mixup_lambda_gt_half": boolean(),
    "loss_mask_alpha": float_range(0.0, 1.0),
    "balanced_batches": boolean(),
    "shift_augment": int_range(0, 255),
    "positive_mix": float_range(0.0, 1.0),
    "ema_decay": float_range(0.0, 0.99999),
    "swa_last": float_range(0.0, 1.0),
    "target_class": Constraint("a class name (e.g. 'Speech') or null", _class_name),
    "crop_samples": int_range(16, 100_000_000),
    "mixup_scale": float_range(0.0, 0.99),
}


@dataclass(frozen=True, eq=False)
class TrainConfig(Mapping[str, Any]):
    """One trial's full, checked configuration; immutable.

    A read-only mapping of every key (``family``, the training keys of :data:`TRAIN_DEFAULTS`,
    then the family's hyperparameters) to its normalized value, so ``cfg["lr"]``, ``dict(cfg)``
    and ``**cfg`` work as on a dict; attributes too (``cfg.lr``, ``cfg.hidden``).  Build one with
    :meth:`from_mapping` (or :func:`resolve_config`), which fills in the defaults; the
    constructor checks every value it is given, so :func:`dataclasses.replace` and
    :meth:`replace` do too.  Unpickling (Ray ships configs) restores it without a check.
    """

    family: str
    batch_size: int
    lr: float
    optimizer: str
    momentum: float
    weight_decay: float
    grad_clip: float
    init: str
    output_bias: str
    seed: int
    output_heads: int
    lr_schedule: str
    lr_step_epochs: int
    lr_gamma: float
    mixup_alpha: float
    mixup_lambda_gt_half: bool
    loss_mask_alpha: float
    balanced_batches: bool
    shift_augment: int
    positive_mix: float
    ema_decay: float
    swa_last: float
    target_class: str | None
    crop_samples: int
    mixup_scale: float
    #: The family's hyperparameters, ``(name, value)`` in the builder's order (see :attr:`hparams`).
    family_params: tuple[tuple[str, Any], ...] = field(default=(), repr=False)

    def __post_init__(self) -> None:
        spec = get_family(str(self.family))
        set_value = object.__setattr__
        set_value(self, "family", spec.name)
        for name, constraint in TRAIN_CONSTRAINTS.items():
            set_value(self, name, constraint.check(name, getattr(self, name)))
        given = dict(self.family_params)
        missing, unknown = set(spec.hparams) - set(given), set(given) - set(spec.hparams)
        if missing or unknown:
            raise InputError(
                f"family {spec.name!r} takes the hyperparameters {sorted(spec.hparams)}; got {sorted(given)}"
            )
        checks = spec.constraints
        set_value(self, "family_params", tuple((k, checks[k].check(k, given[k])) for k in spec.hparams))
        set_value(self, "_values", self._as_dict())

    @classmethod
    def from_mapping(cls, config: Mapping[str, Any]) -> TrainConfig:
        """The checked config of ``config`` (a ``family`` key and any other keys): training
        defaults, then the family's, then ``config``'s values.  Unknown keys list the allowed ones."""
        if "family" not in config:
            raise InputError("config has no 'family' key; add e.g. `family: fc2` to the config")
        spec = get_family(str(config["family"]))
        values = {**TRAIN_DEFAULTS, **spec.train_defaults, **spec.hparams}
        values.update((k, v) for k, v in config.items() if k != "family")
        _check_known(values, spec)
        return cls(
            family=spec.name,
            **{name: values[name] for name in TRAIN_DEFAULTS},
            family_params=tuple((name, values[name]) for name in spec.hparams),
        )

    @classmethod
    def defaults(cls, family: str) -> TrainConfig:
        """The registered defaults of ``family``."""
        return cls.from_mapping({"family": family})

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with ``changes`` applied (any keys, the family's hyperparameters included), checked."""
        return TrainConfig.from_mapping({**self._values, **changes})

    @property
    def hparams(self) -> dict[str, Any]:
        """The family's model hyperparameters and their values (a copy)."""
        return dict(self.family_params)

    def _as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"family": self.family}
        out.update((name, getattr(self, name)) for name in TRAIN_DEFAULTS)
        out.update(self.family_params)
        return out

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __getattr__(self, name: str) -> Any:
        # Only called for names that are not fields: the family's hyperparameters.
        values = self.__dict__.get("_values")
        if values is None or name.startswith("_") or name not in values:
            raise AttributeError(f"{type(self).__name__} has no key {name!r}")
        return values[name]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._values!r})"


def _check_known(values: Mapping[str, Any], spec: FamilySpec) -> None:
    """An :class:`InputError` listing the allowed keys when ``values`` has others."""
    unknown = set(values) - set(TRAIN_DEFAULTS) - set(spec.hparams)
    if unknown:
        raise InputError(
            f"unknown parameter(s) {sorted(unknown)} for family {spec.name!r}; "
            f"allowed: {sorted(set(TRAIN_DEFAULTS) | set(spec.hparams))}"
        )


def resolve_config(config: Mapping[str, Any]) -> TrainConfig:
    """The full, checked config of a trial (see :meth:`TrainConfig.from_mapping`); a
    :class:`TrainConfig` is returned as it is."""
    if isinstance(config, TrainConfig):
        return config
    return TrainConfig.from_mapping(config)
