"""MLflow alone (import name ``tagtune.tracking``: the folder ``tracking/`` installs under it):
the run schema, the store, buffered writes, queries, the per-family summary, export and the
served model.  The Tune callback that writes a search's trials here lives with the rest of the
Ray Tune integration, in :mod:`tagtune.tune`."""

from __future__ import annotations

from tagtune.names import Metrics, Tag
from tagtune.spec import NOT_PARAM, PATH, SearchSpec, from_params, to_params
from tagtune.tracking._anytime import ANYTIME_COLUMNS, anytime_summary, anytime_table, best_at
from tagtune.tracking._buffer import BufferedWrites
from tagtune.tracking._chance import CHANCE, CHANCE_MARGIN, HEALTH_COLUMNS, at_chance, likely_cause, search_health
from tagtune.tracking._http import is_http
from tagtune.tracking._sqlite import (
    StoreLockedError,
    locked_message,
    ready_optuna_storage,
    ready_store,
    retry_locked,
)
from tagtune.tracking._store import (
    TAG_FAMILY,
    access_error,
    check_tracking_uri,
    default_tracking_uri,
    find_experiment,
    get_or_create_experiment,
    latest_search_run,
    normalize_uri,
    open_store,
    safe_name,
    ui_command,
)
from tagtune.tracking._ui import EXPERIMENT_KIND, dataset_input, hide_secrets, source_tags
from tagtune.tracking.export import read_config, write_configs
from tagtune.tracking.schema import (
    RunHandle,
    RunKind,
    StopInfo,
    ended,
    kind_filter,
    open_run,
    parent_filter,
    parse_duration,
    reopen_run,
    run_kind,
    search_spec,
)
from tagtune.tracking.summary import SUMMARY_COLUMNS, TASK_COLUMNS, family_summary, to_markdown
from tagtune.tracking.tables import (
    EVAL_METRICS,
    PER_CLASS_ARTIFACT,
    ensemble_rows,
    final_name,
    finals_table,
    per_class_from_run,
    runtime_table,
    with_finals,
)
from tagtune.tracking.trials import TrialRow, Trials, child_runs, rank_by_family, recorded_spaces_dir, search_trials

__all__ = [
    "CHANCE",
    "CHANCE_MARGIN",
    "HEALTH_COLUMNS",
    "at_chance",
    "likely_cause",
    "search_health",
    "ANYTIME_COLUMNS",
    "anytime_summary",
    "anytime_table",
    "best_at",
    "EXPERIMENT_KIND",
    "dataset_input",
    "hide_secrets",
    "is_http",
    "BufferedWrites",
    "StoreLockedError",
    "locked_message",
    "ready_optuna_storage",
    "ready_store",
    "retry_locked",
    "source_tags",
    "EVAL_METRICS",
    "PER_CLASS_ARTIFACT",
    "SUMMARY_COLUMNS",
    "TASK_COLUMNS",
    "TrialRow",
    "Trials",
    "child_runs",
    "ensemble_rows",
    "family_summary",
    "final_name",
    "finals_table",
    "per_class_from_run",
    "rank_by_family",
    "read_config",
    "recorded_spaces_dir",
    "runtime_table",
    "search_trials",
    "to_markdown",
    "with_finals",
    "write_configs",
    "NOT_PARAM",
    "PATH",
    "Metrics",
    "RunHandle",
    "RunKind",
    "SearchSpec",
    "StopInfo",
    "Tag",
    "ended",
    "from_params",
    "kind_filter",
    "open_run",
    "parent_filter",
    "parse_duration",
    "reopen_run",
    "run_kind",
    "search_spec",
    "to_params",
    "TAG_FAMILY",
    "access_error",
    "check_tracking_uri",
    "default_tracking_uri",
    "find_experiment",
    "get_or_create_experiment",
    "latest_search_run",
    "normalize_uri",
    "open_store",
    "safe_name",
    "ui_command",
]
