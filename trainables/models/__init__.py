"""Model families, built through one registry: ``create_model(name, ...)``."""

from __future__ import annotations

from trainables.models._registry import (
    FamilySpec,
    create_model,
    get_family,
    list_families,
    register_family,
    register_variant,
)
from trainables.models import fc, recurrent, gcnn  # noqa: F401  (registers the families)

__all__ = [
    "FamilySpec",
    "create_model",
    "get_family",
    "list_families",
    "register_family",
    "register_variant",
]
