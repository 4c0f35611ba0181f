"""One registry of model families, in the style of timm's ``@register_model``.

A *family* is a builder ``fn(*, n_frames, n_features, n_classes, **hparams) -> nn.Module`` whose
keyword-only arguments with defaults are its tunable hyperparameters.  A *variant* reuses a
family's builder with other defaults (``fc500`` is ``fc2`` with 500 hidden units).

Each hyperparameter's allowed values are declared with the family (``constraints``, see
:mod:`tagtune.trainables.params`); one without a declaration gets the type check its default
implies.  :class:`tagtune.trainables.config.TrainConfig` applies them.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from tagtune.errors import InputError
from tagtune.trainables.params import Constraint, inferred

Builder = Callable[..., nn.Module]
_SHAPE_ARGS = ("n_frames", "n_features", "n_classes")


@dataclass(frozen=True)
class FamilySpec:
    """A registered family: its builder, its hyperparameters with defaults and constraints, and a
    description."""

    name: str
    builder: Builder
    description: str
    defaults: dict[str, Any] = field(default_factory=dict)
    train_defaults: dict[str, Any] = field(default_factory=dict)
    inputs: str = "embeddings"  # or "audio": what data the family is built for
    declared: dict[str, Constraint] = field(default_factory=dict)  # the registered constraints
    # How many of its trials share one GPU when --gpus-per-trial is left to tagtune
    # (tagtune.resources.choose_gpus); measured on an H200 (README, GPUs).
    trials_per_gpu: int = 8

    @property
    def hparams(self) -> dict[str, Any]:
        """The model hyperparameters and their defaults (variant defaults applied)."""
        sig = inspect.signature(self.builder)
        params = {
            name: p.default
            for name, p in sig.parameters.items()
            if name not in _SHAPE_ARGS and p.default is not inspect.Parameter.empty
        }
        params.update(self.defaults)
        return params

    @property
    def constraints(self) -> dict[str, Constraint]:
        """Every hyperparameter's constraint: the declared one, else the one its default implies."""
        return {name: self.declared.get(name) or inferred(default) for name, default in self.hparams.items()}


def _checked(spec: FamilySpec) -> FamilySpec:
    """``spec`` if its constraints name only its hyperparameters and admit their defaults."""
    unknown = set(spec.declared) - set(spec.hparams)
    if unknown:
        raise RuntimeError(f"family {spec.name!r} constrains unknown hyperparameters {sorted(unknown)}")
    for name, default in spec.hparams.items():
        try:
            spec.constraints[name].check(name, default)
        except (InputError, TypeError) as exc:
            raise RuntimeError(f"family {spec.name!r}: the default of {name} fails its constraint: {exc}") from None
    return spec


_REGISTRY: dict[str, FamilySpec] = {}


def register_family(
    name: str,
    *,
    description: str,
    train_defaults: dict[str, Any] | None = None,
    inputs: str = "embeddings",
    constraints: dict[str, Constraint] | None = None,
    trials_per_gpu: int = 8,
) -> Callable[[Builder], Builder]:
    """Register ``fn`` as the family ``name``; ``train_defaults`` override training defaults;
    ``inputs`` says which data it is for (``embeddings`` or raw ``audio``); ``constraints`` say
    what each hyperparameter may be (e.g. ``{"level": choice("feature", "decision")}``);
    ``trials_per_gpu``: how many of its trials share one GPU by default (see
    :func:`tagtune.resources.choose_gpus`)."""
    if trials_per_gpu < 1:
        raise RuntimeError(f"family {name!r}: trials_per_gpu must be at least 1, got {trials_per_gpu}")

    def decorator(fn: Builder) -> Builder:
        if name in _REGISTRY:
            raise RuntimeError(f"model family {name!r} is registered twice")
        spec = FamilySpec(
            name,
            fn,
            description,
            train_defaults=dict(train_defaults or {}),
            inputs=inputs,
            declared=dict(constraints or {}),
            trials_per_gpu=trials_per_gpu,
        )
        _REGISTRY[name] = _checked(spec)
        return fn

    return decorator


def register_variant(
    name: str,
    *,
    base: str,
    description: str,
    defaults: dict[str, Any],
    train_defaults: dict[str, Any] | None = None,
    constraints: dict[str, Constraint] | None = None,
    trials_per_gpu: int | None = None,
) -> None:
    """Register ``name`` as ``base`` with other default hyperparameters (not a copy); its
    ``constraints`` replace the base's for the hyperparameters they name; it inherits the base's
    ``trials_per_gpu`` unless given."""
    parent = get_family(base)
    unknown = set(defaults) - set(parent.hparams)
    if unknown:
        raise RuntimeError(f"variant {name!r} sets unknown hyperparameters {sorted(unknown)}")
    merged_train = {**parent.train_defaults, **(train_defaults or {})}
    declared = {**parent.declared, **(constraints or {})}
    merged_defaults = {**parent.defaults, **defaults}
    _REGISTRY[name] = _checked(
        FamilySpec(
            name,
            parent.builder,
            description,
            merged_defaults,
            merged_train,
            parent.inputs,
            declared,
            trials_per_gpu=parent.trials_per_gpu if trials_per_gpu is None else trials_per_gpu,
        )
    )


def list_families(inputs: str | None = None) -> list[str]:
    """Names of the registered families (those for ``inputs`` data if given), in registration order."""
    return [name for name, spec in _REGISTRY.items() if inputs is None or spec.inputs == inputs]


def get_family(name: str) -> FamilySpec:
    """The family ``name``, or an :class:`InputError` that lists the known ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(_REGISTRY)
        raise InputError(f"unknown model family {name!r}; choose from: {known} (see `tagtune families`)") from None


def create_model(name: str, *, n_frames: int, n_features: int, n_classes: int, **hparams: Any) -> nn.Module:
    """Build family ``name`` for inputs ``[B, n_frames, n_features]`` and ``n_classes`` outputs.

    ``hparams`` may hold extra keys (the trial's training parameters); only the family's own
    hyperparameters are passed to the builder.
    """
    spec = get_family(name)
    accepted = spec.hparams
    kwargs = {k: hparams.get(k, default) for k, default in accepted.items()}
    return spec.builder(n_frames=n_frames, n_features=n_features, n_classes=n_classes, **kwargs)


def shape_problem(name: str, n_frames: int, n_features: int, n_classes: int = 2) -> str | None:
    """Why family ``name`` with its default hyperparameters cannot take clips ``[n_frames,
    n_features]`` (the builder's or the forward pass's refusal, in one line), or ``None`` when it
    can.  Built and run on PyTorch's ``meta`` device: no memory, no arithmetic."""
    import torch

    spec = get_family(name)
    try:
        with torch.device("meta"):
            model = create_model(name, n_frames=n_frames, n_features=n_features, n_classes=n_classes)
            if spec.inputs == "embeddings":
                out = model(torch.zeros(2, n_frames, n_features))
                if tuple(out.shape) != (2, n_classes):
                    return f"its output is {tuple(out.shape)}, not (2, {n_classes})"
    except (InputError, RuntimeError, ValueError, IndexError, TypeError, NotImplementedError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return first[:200]
    return None


def families_for_shape(n_frames: int, n_features: int, names: list[str] | None = None) -> list[str]:
    """The embedding families (of ``names``, default all) that take clips ``[n_frames, n_features]``."""
    pool = names if names is not None else list_families("embeddings")
    return [n for n in pool if shape_problem(n, n_frames, n_features) is None]
