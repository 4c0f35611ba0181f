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

from tagtune.tracking.schema import (
    NOT_PARAM,
    PATH,
    Metrics,
    RunHandle,
    RunKind,
    SearchSpec,
    Tag,
    ended,
    from_params,
    kind_filter,
    open_run,
    parent_filter,
    reopen_run,
    run_kind,
    search_spec,
    to_params,
)

__all__ = [
    "NOT_PARAM",
    "PATH",
    "Metrics",
    "RunHandle",
    "RunKind",
    "SearchSpec",
    "Tag",
    "ended",
    "from_params",
    "kind_filter",
    "open_run",
    "parent_filter",
    "reopen_run",
    "run_kind",
    "search_spec",
    "to_params",
    "TAG_FAMILY",
    "default_tracking_uri",
    "find_experiment",
    "get_or_create_experiment",
    "latest_search_run",
    "normalize_uri",
    "open_store",
]
