"""Per-family search spaces: YAML files a user edits, and their validating loader (import name
``tagtune.search_spaces``: the folder ``search_spaces/`` installs under it, YAML files included)."""

from __future__ import annotations

from tagtune.search_spaces._space import (
    DEFAULT_DIR,
    MIN_STEPS_PER_EPOCH,
    Param,
    SearchSpace,
    SpaceError,
    load_space,
    space_dir,
)

__all__ = ["DEFAULT_DIR", "MIN_STEPS_PER_EPOCH", "Param", "SearchSpace", "SpaceError", "load_space", "space_dir"]
