"""Model families, built through one registry: ``create_model(name, ...)``."""

from __future__ import annotations

from tagtune.trainables.models._registry import (
    FamilySpec,
    create_model,
    families_for_shape,
    get_family,
    list_families,
    register_family,
    register_variant,
    shape_problem,
)

# Importing a module registers its families; the order is the order `tagtune families` lists.
# isort: off
from tagtune.trainables.models import fc, recurrent, gcnn  # noqa: F401
from tagtune.trainables.models import conv, transformer, densenet, attention  # noqa: F401
from tagtune.trainables.models import densenet_audio  # noqa: F401  (raw audio, seed 003)
# isort: on

__all__ = [
    "FamilySpec",
    "create_model",
    "families_for_shape",
    "get_family",
    "list_families",
    "register_family",
    "register_variant",
    "shape_problem",
]
