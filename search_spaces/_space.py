"""Search spaces as data: YAML files a user edits, validated on load, sampled define-by-run.

A space file holds ``params:``, a mapping from a hyperparameter name to one of

* ``{choices: [...]}``                     categorical
* ``{low: L, high: H[, log: true][, step: S]}``  int when L and H are both integers, else float
* ``{value: V}``                           a constant
* ``null``                                 drop a parameter that ``common.yaml`` defines

and optionally ``when: {other_param: value_or_list}`` to sample it only under a condition.
``common.yaml`` (training parameters shared by every family) is merged under each family's file.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tagtune.errors import InputError

DEFAULT_DIR = Path(__file__).resolve().parent
_KEYS = {"choices", "low", "high", "log", "step", "value", "when", "type"}
#: A sampled batch size must give every epoch at least this many optimizer steps: larger
#: ``batch_size`` choices are dropped for small training sets (:meth:`SearchSpace.for_data`).
MIN_STEPS_PER_EPOCH = 20


class SpaceError(InputError):
    """A search-space file is invalid; the message names the file, the parameter and the rule."""


@dataclass(frozen=True)
class Param:
    """One hyperparameter's distribution (or constant) and its condition."""

    name: str
    kind: str  # "categorical" | "int" | "float" | "const"
    choices: tuple[Any, ...] = ()
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    step: float | None = None
    value: Any = None
    when: tuple[tuple[str, tuple[Any, ...]], ...] = ()

    def active(self, sampled: Mapping[str, Any]) -> bool:
        """Whether this parameter's ``when`` condition holds for the values sampled so far."""
        return all(sampled.get(k) in allowed for k, allowed in self.when)

    def describe(self) -> str:
        """A short human-readable form, e.g. ``[1e-4, 1e-2] log``."""
        if self.kind == "categorical":
            text = "{" + ", ".join(map(str, self.choices)) + "}"
        elif self.kind == "const":
            text = f"= {self.value}"
        else:
            text = f"[{self.low:g}, {self.high:g}]" + (" log" if self.log else "")
            text += f" step {self.step:g}" if self.step else ""
        if self.when:
            text += " when " + ", ".join(f"{k} in {list(v)}" for k, v in self.when)
        return text


@dataclass(frozen=True)
class SearchSpace:
    """A family's search space: ordered parameters, sampled define-by-run."""

    family: str
    params: tuple[Param, ...]
    files: tuple[str, ...]

    def sample(self, trial: Any) -> dict[str, Any]:
        """Define-by-run sampling with an Optuna trial; returns the constants (Optuna records
        the sampled values itself, Ray's OptunaSearch merges both into the config)."""
        sampled: dict[str, Any] = {}
        consts: dict[str, Any] = {}
        for p in self.params:
            if not p.active(sampled):
                continue
            if p.kind == "const":
                consts[p.name] = sampled[p.name] = p.value
            elif p.kind == "categorical":
                sampled[p.name] = trial.suggest_categorical(p.name, list(p.choices))
            elif p.kind == "int":
                sampled[p.name] = trial.suggest_int(p.name, int(p.low), int(p.high), step=int(p.step or 1), log=p.log)
            else:
                sampled[p.name] = trial.suggest_float(p.name, p.low, p.high, step=p.step, log=p.log)
        return consts

    def for_data(self, n_train: int) -> SearchSpace:
        """This space for a training set of ``n_train`` clips: ``batch_size`` choices that would
        give an epoch fewer than :data:`MIN_STEPS_PER_EPOCH` steps are dropped (the smallest
        choice, and the family's registered default so that its defaults trial stays exactly
        that, are always kept); everything else is as it is."""
        from tagtune.trainables.config import resolve_config

        cap = max(1, n_train // MIN_STEPS_PER_EPOCH)
        default = resolve_config({"family": self.family})["batch_size"]
        params = []
        for p in self.params:
            if p.name == "batch_size" and p.kind == "categorical":
                numbers = [c for c in p.choices if isinstance(c, int) and not isinstance(c, bool)]
                if len(numbers) == len(p.choices):
                    kept = tuple(c for c in p.choices if c <= cap or c in (default, min(numbers)))
                    p = dataclasses.replace(p, choices=kept)
            params.append(p)
        return dataclasses.replace(self, params=tuple(params))

    def fixed_params(self, defaults: Mapping[str, Any]) -> dict[str, Any]:
        """The sampled parameters set to ``defaults`` (a resolved config), for Optuna's
        ``enqueue_trial``: each active parameter whose default lies in its range or choices.
        A parameter whose default lies outside is left out (Optuna samples it), and so are those
        whose ``when`` condition it decides."""
        fixed: dict[str, Any] = {}
        known: dict[str, Any] = {}
        undecided: set[str] = set()
        for p in self.params:
            if any(k in undecided for k, _ in p.when):
                undecided.add(p.name)
                continue
            if not p.active(known):
                continue
            if p.kind == "const":
                known[p.name] = p.value
                continue
            value = defaults.get(p.name)
            if _within(p, value):
                fixed[p.name] = known[p.name] = value
            else:
                undecided.add(p.name)
        return fixed

    def distributions(self, values: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
        """An earlier trial's ``values`` in this space (a warm start's ``optuna.create_trial``):
        the active sampled parameters it has a value for inside their range or choices, their
        Optuna distributions, and the names it sets that this space leaves out, or whose value
        lies outside (dropped)."""
        import optuna.distributions as od

        params: dict[str, Any] = {}
        dists: dict[str, Any] = {}
        dropped: list[str] = []
        known: dict[str, Any] = {}
        for p in self.params:
            if not p.active(known):
                continue
            if p.kind == "const":
                known[p.name] = p.value
                continue
            if p.name not in values:
                continue
            value = values[p.name]
            if not _within(p, value):
                dropped.append(p.name)
                continue
            dist: od.BaseDistribution
            if p.kind == "categorical":
                dist = od.CategoricalDistribution(list(p.choices))
            elif p.kind == "int":
                dist = od.IntDistribution(int(p.low), int(p.high), log=p.log, step=int(p.step or 1))
                value = int(value)
            else:
                dist = od.FloatDistribution(p.low, p.high, log=p.log, step=p.step)
                value = float(value)
            params[p.name] = known[p.name] = value
            dists[p.name] = dist
        return params, dists, dropped


def _within(p: Param, value: Any) -> bool:
    """Whether ``value`` is one of ``p``'s choices or inside its range (on its step grid)."""
    if p.kind == "categorical":
        return any(value == c and type(value) is type(c) for c in p.choices)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if p.kind == "int" and not float(value).is_integer():
        return False
    if not p.low <= value <= p.high:
        return False
    return not p.step or abs((value - p.low) / p.step - round((value - p.low) / p.step)) < 1e-9


def _parse_param(name: str, raw: Any, where: str) -> Param:
    if not isinstance(raw, Mapping):
        raise SpaceError(f"{where}: parameter {name!r} must be a mapping like {{low: 0, high: 1}}")
    unknown = set(raw) - _KEYS
    if unknown:
        raise SpaceError(
            f"{where}: parameter {name!r} has unknown key(s) {sorted(unknown)}; "
            f"use choices, low/high/log/step, value or when"
        )
    when_raw = raw.get("when") or {}
    if not isinstance(when_raw, Mapping):
        raise SpaceError(f"{where}: 'when' of {name!r} must map a parameter to a value or a list")
    when = tuple((str(k), tuple(v) if isinstance(v, list) else (v,)) for k, v in when_raw.items())
    if "value" in raw:
        return Param(name, "const", value=raw["value"], when=when)
    if "choices" in raw:
        choices = raw["choices"]
        if not isinstance(choices, list) or not choices:
            raise SpaceError(f"{where}: parameter {name!r} has empty choices; list at least one")
        return Param(name, "categorical", choices=tuple(choices), when=when)
    if "low" not in raw or "high" not in raw:
        raise SpaceError(f"{where}: parameter {name!r} needs choices, value, or both low and high")
    low, high = raw["low"], raw["high"]
    for bound, v in (("low", low), ("high", high)):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise SpaceError(f"{where}: {bound} of {name!r} must be a number, got {v!r}")
    if low > high:
        raise SpaceError(f"{where}: parameter {name!r} has low {low} > high {high}; swap them")
    log = bool(raw.get("log", False))
    if log and low <= 0:
        raise SpaceError(f"{where}: parameter {name!r} is log-scaled, so low must be > 0 (got {low})")
    kind = raw.get("type") or ("int" if isinstance(low, int) and isinstance(high, int) else "float")
    if kind not in ("int", "float"):
        raise SpaceError(f"{where}: type of {name!r} must be int or float, got {kind!r}")
    return Param(name, kind, low=low, high=high, log=log, step=raw.get("step"), when=when)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        with path.open() as fh:
            doc = yaml.safe_load(fh) or {}
    except OSError as exc:
        raise SpaceError(f"cannot read search space {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise SpaceError(f"{path} is not valid YAML ({exc}); fix the syntax") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("params", {}), dict):
        raise SpaceError(f"{path}: expected a mapping with a 'params:' mapping at the top")
    return doc


def space_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """The folder of space files: ``override``, else $TAGTUNE_SPACES, else the packaged ones."""
    chosen = override or os.environ.get("TAGTUNE_SPACES")
    return Path(chosen) if chosen else DEFAULT_DIR


def _check_values(p: Param, constraint: Any, where: str, family: str) -> None:
    """Every value ``p`` can take must pass the config's check of that key (the range's ends, each
    choice, the constant), so a bad space fails when it is loaded, before any trial trains."""
    if p.kind == "categorical":
        values: tuple[Any, ...] = p.choices
    elif p.kind == "const":
        values = (p.value,)
    else:
        values = (int(p.low), int(p.high)) if p.kind == "int" else (p.low, p.high)
    for value in values:
        try:
            constraint.check(p.name, value)
        except InputError as exc:
            raise SpaceError(f"{where}: {exc} (family {family!r})") from None


def load_space(family: str, directory: str | os.PathLike[str] | None = None) -> SearchSpace:
    """Load, merge (common + family) and validate the space of ``family``."""
    from tagtune.trainables.config import TRAIN_CONSTRAINTS, TRAIN_DEFAULTS
    from tagtune.trainables.models import get_family

    spec = get_family(family)
    folder = space_dir(directory)
    files = [folder / "common.yaml", folder / f"{family}.yaml"]
    if not files[1].exists():
        files[1] = folder / f"{spec.name}.yaml"
    merged: dict[str, Any] = {}
    used: list[str] = []
    for path in files:
        if not path.exists():
            continue
        used.append(str(path))
        merged.update(_read_yaml(path).get("params") or {})
    allowed = set(TRAIN_DEFAULTS) | set(spec.hparams)
    params: list[Param] = []
    where = " + ".join(used) or str(folder)
    for name, raw in merged.items():
        if raw is None:
            continue
        if name not in allowed:
            raise SpaceError(
                f"{where}: unknown parameter {name!r} for family {family!r}; allowed: {', '.join(sorted(allowed))}"
            )
        param = _parse_param(name, raw, where)
        _check_values(param, spec.constraints.get(name) or TRAIN_CONSTRAINTS[name], where, family)
        params.append(param)
    names = {p.name for p in params}
    for p in params:
        for cond, _ in p.when:
            if cond not in names:
                raise SpaceError(f"{where}: {p.name!r} depends on {cond!r}, which is not in the space")
    return SearchSpace(family, tuple(params), tuple(used))
