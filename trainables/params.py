"""Constraints on config values: what one training or model hyperparameter may be.

A :class:`Constraint` checks one value and returns it normalized (ints as ``int``, numbers as
``float``, case-folded choices) or raises an :class:`InputError` that names the key, the value
and what is allowed, e.g. ``lr must be a number in (0, 10], got -1``.  Families declare theirs
beside their defaults::

    @register_family("fc2", description=..., constraints={"hidden": int_range(1, 65536)})

and :func:`inferred` gives a type check from a default where nothing more is declared.
:class:`tagtune.trainables.config.TrainConfig` applies them, once per config.

Values arrive from Python, from YAML files and from MLflow params read back with YAML's scalar
rules, which leave exponent notation without a dot (``1e-3``, ``1e-06``) as a string: number
constraints accept such a string, and no other.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tagtune.errors import InputError

#: What a converter returns for a value it rejects.
INVALID: Any = object()
_MUST = "{name} must be {allowed}, got {value!r}"
_UNKNOWN = "unknown {name} {value!r}; choose from: {allowed}"
# YAML 1.1 (PyYAML) reads "1e-3" as a string; float() reads it as a number.
_EXPONENT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


@dataclass(frozen=True)
class Constraint:
    """What one config value may be.

    ``allowed`` says it in words (``"an integer in [1, 64]"``); ``convert`` returns the
    normalized value, or :data:`INVALID`; ``template`` is the error message, formatted with the
    key's ``name``, the ``value`` and ``allowed``.
    """

    allowed: str
    convert: Callable[[Any], Any]
    template: str = _MUST

    def check(self, name: str, value: Any) -> Any:
        """``value`` normalized, or an :class:`InputError` naming ``name``, the value and the rule."""
        out = self.convert(value)
        if out is INVALID:
            raise InputError(self.template.format(name=name, value=value, allowed=self.allowed))
        return out


def is_int(value: Any) -> bool:
    """An integer (Python or NumPy), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def as_number(value: Any) -> float | None:
    """``value`` as a finite float: a real number (not a bool) or an exponent-notation string
    that YAML left unparsed (``"1e-3"``); ``None`` otherwise."""
    if isinstance(value, str) and _EXPONENT.fullmatch(value.strip()):
        value = float(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def int_range(low: int | None, high: int | None, *, multiple_of: int = 1, note: str = "") -> Constraint:
    """An integer in ``[low, high]`` (``None``: no bound), a multiple of ``multiple_of``;
    returned as ``int``."""
    if low is not None and high is not None:
        allowed = f"an integer in [{low}, {high}]"
    elif low is not None:
        allowed = f"an integer >= {low}"
    else:
        allowed = "an integer" if high is None else f"an integer <= {high}"
    if multiple_of > 1:
        allowed += f" divisible by {multiple_of}"

    def convert(value: Any) -> Any:
        if not is_int(value) or value % multiple_of:
            return INVALID
        if (low is not None and value < low) or (high is not None and value > high):
            return INVALID
        return int(value)

    return Constraint(_noted(allowed, note), convert)


def float_range(
    low: float, high: float, *, low_open: bool = False, high_open: bool = False, note: str = ""
) -> Constraint:
    """A finite number in ``[low, high]`` (``(`` / ``)`` with ``low_open`` / ``high_open``); ints
    are accepted and every value is returned as ``float``.  ``high=math.inf``: no upper bound."""
    if math.isinf(low) and math.isinf(high):
        allowed = "a finite number"
    elif math.isinf(high):
        allowed = f"a finite number {'>' if low_open else '>='} {low:g}"
    else:
        allowed = f"a number in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"

    def convert(value: Any) -> Any:
        number = as_number(value)
        if number is None:
            return INVALID
        above = low < number if low_open else low <= number
        below = number < high if high_open else number <= high
        return number if above and below else INVALID

    return Constraint(_noted(allowed, note), convert)


def choice(*options: Any, ignore_case: bool = False) -> Constraint:
    """One of ``options``; with ``ignore_case`` (string options) any case, returned as listed."""
    if not options:
        raise ValueError("choice() needs at least one option")
    folded = {str(o).lower(): o for o in options}

    def convert(value: Any) -> Any:
        if ignore_case:
            return folded.get(str(value).lower(), INVALID)
        for option in options:
            if value == option and type(value) is type(option):
                return option
        return INVALID

    return Constraint(", ".join(map(str, options)), convert, _UNKNOWN)


def boolean() -> Constraint:
    """``true`` or ``false`` (a bool; 0 and 1 are not)."""
    return Constraint("true or false", lambda v: v if isinstance(v, bool) else INVALID)


def text() -> Constraint:
    """Any string."""
    return Constraint("a string", lambda v: v if isinstance(v, str) else INVALID)


def inferred(default: Any) -> Constraint:
    """The type check a default implies where nothing more is declared: a bool, an integer
    (>= 0 when the default is), a finite number, or a string."""
    if isinstance(default, bool):
        return boolean()
    if is_int(default):
        return int_range(0 if default >= 0 else None, None)
    if isinstance(default, float):
        return float_range(-math.inf, math.inf, low_open=True)
    if isinstance(default, str):
        return text()
    raise TypeError(f"no constraint can be inferred from the default {default!r}; declare one")


def _noted(allowed: str, note: str) -> str:
    return f"{allowed} ({note})" if note else allowed
