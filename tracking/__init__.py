"""MLflow: the store, the driver-side Tune callback, queries, the per-family summary, export."""

from __future__ import annotations

from tagtune.tracking._store import (
    TAG_FAMILY,
    default_tracking_uri,
    find_experiment,
    get_or_create_experiment,
    latest_search_run,
    normalize_uri,
    open_store,
)

__all__ = [
    "TAG_FAMILY",
    "default_tracking_uri",
    "find_experiment",
    "get_or_create_experiment",
    "latest_search_run",
    "normalize_uri",
    "open_store",
]
