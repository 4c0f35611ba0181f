"""A search's trials, read from MLflow once: one child-run query and one history fetch per trial.

:func:`search_trials` is the one place that reads a search's trials; everything the report,
the dashboard, ``tagtune export`` and ``tagtune finalize`` show or choose derives from the
:class:`Trials` it returns:

* ``rows``: one :class:`TrialRow` per trial (child run of kind ``trial``), in the query's order;
* ``table``: the ``trials`` table, one row per trial in start order: ``run_id, family, trial_id,
  number`` (0-based order of the family's trials by start), ``status, best_val_mAUC,
  best_val_mAP, best_epoch, epochs, mean_epoch_s, trial_s`` and one ``params_<name>`` column per
  searched hyperparameter (None where a conditional parameter was inactive);
* ``history``: one row per trial and epoch: ``run_id, family, step`` and the logged metrics;
* ``runs``: every child run of the search (trials, finals, ensembles), for the finals table;
* :meth:`Trials.top` / :meth:`Trials.best`: each family's best completed trials, ranked once.

Searched hyperparameters are those of the family's search space as the search recorded it
(``spaces_dir`` of its spec, see :func:`recorded_spaces_dir`; else the packaged one) and any
parameter whose value differs between the family's trials.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import yaml
from mlflow import MlflowClient

from tagtune.names import Metrics, Tag
from tagtune.tracking.schema import RunKind, parent_filter, run_kind, search_spec

HISTORY_METRICS = Metrics.HISTORY


@dataclass(frozen=True)
class TrialRow:
    """One trial's outcome as the report sees it."""

    run_id: str
    family: str
    status: str
    best_mAUC: float
    best_mAP: float
    mean_epoch_seconds: float
    params: dict[str, str]
    best_f1: float = math.nan
    best_accuracy: float = math.nan
    best_map3: float = math.nan
    trial_id: str = ""
    stopped: bool = False  # stopped early (a rule or the time budget): FINISHED, fewer epochs

    @property
    def full_length(self) -> bool:
        """Completed and not stopped early: ran every epoch (what min/mean/std cover)."""
        return self.completed and not self.stopped

    @property
    def completed(self) -> bool:
        """Finished with a validation score: what the summary counts and finalize may pick."""
        return self.status == "FINISHED" and not math.isnan(self.best_mAUC)

    def config(self) -> dict[str, Any]:
        """The trial's logged params, typed back from MLflow's strings."""
        return {k: typed_param(v) for k, v in self.params.items()}


def typed_param(value: str) -> Any:
    """MLflow stores params as strings; YAML's scalar rules give back ints, floats and bools."""
    try:
        return yaml.safe_load(value)
    except yaml.YAMLError:
        return value


def best_step(values: Iterable[tuple[int, float]]) -> int | None:
    """The first step with the highest finite value of ``(step, value)`` pairs, else None."""
    best: tuple[float, int] | None = None
    for step, value in sorted(values):
        if math.isfinite(value) and (best is None or value > best[0]):
            best = (value, int(step))
    return best[1] if best else None


# ------------------------------------------------------------------------------------------
# The query
# ------------------------------------------------------------------------------------------

Curves = dict[str, list[tuple[int, float]]]
"""One trial's history: metric name -> ``(step, value)`` as logged, in MLflow's order; and under
:data:`WALL_KEY` ``(timestamp in ms, val_mAUC)`` per epoch (for the anytime view)."""

WALL_KEY = "val_mAUC@wall"


def child_runs(client: MlflowClient, experiment_id: str, parent_run_id: str) -> list[Any]:
    """Every run of the search run: its children (trials, and a ``finalize`` run per
    ``tagtune finalize``) and the finals and ensembles nested under each ``finalize`` run (those of
    stores from before that level, directly under the search, are children too).  One query,
    and one more per finalize."""
    runs = client.search_runs([experiment_id], filter_string=parent_filter(parent_run_id), max_results=10000)
    for group in [r for r in runs if run_kind(r) == RunKind.FINALIZE.value]:
        runs += client.search_runs([experiment_id], filter_string=parent_filter(group.info.run_id), max_results=10000)
    return runs


def is_trial(run: Any) -> bool:
    """A trial's run (kind ``trial`` with a family), not a final, an ensemble or a lost trial."""
    return run_kind(run) == RunKind.TRIAL.value and Tag.FAMILY in run.data.tags


def trial_history(client: MlflowClient, run_id: str) -> Curves:
    """The one history fetch of a trial: each of :data:`HISTORY_METRICS`, once."""
    curves: Curves = {}
    for key in HISTORY_METRICS:
        history = client.get_metric_history(run_id, key)
        curves[key] = [(int(m.step), m.value) for m in history]
        if key == Metrics.VAL_MAUC:
            curves[WALL_KEY] = [(int(m.timestamp), m.value) for m in history]
    return curves


def recorded_spaces_dir(parent: Any) -> str | None:
    """The ``--spaces`` folder the search ran with (None: the packaged spaces)."""
    try:
        return search_spec(parent).spaces_dir or None
    except (KeyError, ValueError, TypeError):  # a parent run from before the schema
        return parent.data.params.get("spaces_dir") or None


def search_trials(
    client: MlflowClient, experiment_id: str, parent_run_id: str, spaces_dir: str | None = None
) -> Trials:
    """Every trial of the search ``parent_run_id`` with its history (see the module docstring)."""
    runs = child_runs(client, experiment_id, parent_run_id)
    trials = [r for r in runs if is_trial(r)]
    curves = {r.info.run_id: trial_history(client, r.info.run_id) for r in trials}
    return Trials(runs=runs, trial_runs=trials, curves=curves, spaces_dir=spaces_dir)


# ------------------------------------------------------------------------------------------
# The tables
# ------------------------------------------------------------------------------------------


def _row(run: Any, curves: Curves) -> TrialRow:
    secs = [v for _, v in curves.get(Metrics.EPOCH_SECONDS, [])]
    metrics = run.data.metrics
    return TrialRow(
        run_id=run.info.run_id,
        family=run.data.tags[Tag.FAMILY],
        status=run.info.status,
        best_mAUC=float(metrics.get(Metrics.BEST_VAL_MAUC, math.nan)),
        best_mAP=float(metrics.get(Metrics.BEST_VAL_MAP, math.nan)),
        mean_epoch_seconds=sum(secs) / len(secs) if secs else math.nan,
        params=dict(run.data.params),
        best_f1=float(metrics.get(Metrics.BEST_VAL_F1, math.nan)),
        best_accuracy=float(metrics.get(Metrics.BEST_VAL_ACCURACY, math.nan)),
        best_map3=float(metrics.get(Metrics.BEST_VAL_MAP3, math.nan)),
        trial_id=run.data.tags.get(Tag.TRIAL_ID, ""),
        stopped=run.data.tags.get(Tag.STOPPED_EARLY) == "True",
    )


def _steps(run_id: str, family: str, curves: Curves) -> list[dict[str, Any]]:
    """One row per logged step (the last value where a step was logged twice)."""
    per_step: dict[int, dict[str, Any]] = {}
    for key in HISTORY_METRICS:
        for step, value in curves.get(key, []):
            per_step.setdefault(step, {"run_id": run_id, "family": family, "step": step})[key] = value
    return [per_step[s] for s in sorted(per_step)]


def _table_row(run: Any, steps: list[dict[str, Any]], number: int) -> dict[str, Any]:
    secs = [s[Metrics.EPOCH_SECONDS] for s in steps if Metrics.EPOCH_SECONDS in s]
    metrics = run.data.metrics
    return {
        "run_id": run.info.run_id,
        "family": run.data.tags[Tag.FAMILY],
        "trial_id": run.data.tags.get(Tag.TRIAL_ID, ""),
        "number": number,
        "first": run.data.tags.get(Tag.FIRST_TRIAL) == "True",
        "status": run.info.status,
        "stopped": run.data.tags.get(Tag.STOPPED_EARLY) == "True",
        "stopped_by": run.data.tags.get(Tag.STOPPED_BY, ""),
        Metrics.BEST_VAL_MAUC: float(metrics.get(Metrics.BEST_VAL_MAUC, math.nan)),
        Metrics.BEST_VAL_MAP: float(metrics.get(Metrics.BEST_VAL_MAP, math.nan)),
        "best_epoch": best_step((s["step"], s[Metrics.VAL_MAUC]) for s in steps if Metrics.VAL_MAUC in s),
        "epochs": len(steps),
        "mean_epoch_s": sum(secs) / len(secs) if secs else math.nan,
        "trial_s": sum(secs) if secs else math.nan,
        "_params": {k: typed_param(v) for k, v in run.data.params.items()},
    }


def _searched_params(family: str, spaces_dir: str | None) -> dict[str, Any]:
    """The family's search-space parameters by name (empty when the space cannot be loaded)."""
    try:
        from tagtune.search_spaces import load_space

        return {p.name: p for p in load_space(family, spaces_dir).params if p.kind != "const"}
    except Exception:  # noqa: BLE001 - an unknown family or an edited space: infer from values
        return {}


def _param_names(trials: pd.DataFrame, spaces: dict[str, dict[str, Any]]) -> dict[str, list[str]]:
    """Per family the searched parameters: the space's (where logged) and any that vary."""
    names: dict[str, list[str]] = {}
    for family, group in trials.groupby("family", sort=False):
        space = spaces[str(family)]
        dicts = list(group["_params"])
        keys = sorted({k for d in dicts for k in d} - {"family", "seed"})
        varying = [k for k in keys if len({repr(d.get(k)) for d in dicts}) > 1]
        names[str(family)] = [k for k in space if any(k in d for d in dicts)] + [k for k in varying if k not in space]
    return names


def _with_param_columns(trials: pd.DataFrame, spaces_dir: str | None) -> pd.DataFrame:
    """``params_<name>`` columns for the searched parameters (None where inactive)."""
    spaces = {str(f): _searched_params(str(f), spaces_dir) for f in dict.fromkeys(trials["family"])}
    by_family = _param_names(trials, spaces)
    all_names = list(dict.fromkeys(n for names in by_family.values() for n in names))
    columns: dict[str, list[Any]] = {f"params_{name}": [] for name in all_names}
    for _, row in trials.iterrows():
        family = str(row["family"])
        values = row["_params"]
        for name in all_names:
            value = values.get(name) if name in by_family[family] else None
            cond = spaces[family].get(name)
            if cond is not None and value is not None and not cond.active(values):
                value = None
            columns[f"params_{name}"].append(value)
    trials = trials.drop(columns="_params")
    for key, values in columns.items():
        trials[key] = pd.Series(values, dtype=object)
    return trials


def trials_tables(
    runs: list[Any], curves: dict[str, Curves], spaces_dir: str | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The ``trials`` and ``history`` tables of trial ``runs`` and their ``curves``."""
    ordered = sorted(runs, key=lambda r: (r.info.start_time or 0, r.data.tags.get(Tag.TRIAL_ID, "")))
    rows: list[dict[str, Any]] = []
    history: list[dict[str, Any]] = []
    numbers: dict[str, int] = {}
    for run in ordered:
        family = run.data.tags[Tag.FAMILY]
        steps = _steps(run.info.run_id, family, curves[run.info.run_id])
        history.extend(steps)
        rows.append(_table_row(run, steps, numbers.setdefault(family, 0)))
        numbers[family] += 1
    trials = pd.DataFrame(rows)
    if trials.empty:
        return trials, pd.DataFrame(history, columns=["run_id", "family", "step", *HISTORY_METRICS])
    hist = pd.DataFrame(history)
    for key in HISTORY_METRICS:
        if key not in hist:
            hist[key] = math.nan
    return _with_param_columns(trials, spaces_dir), hist


def rank_by_family(rows: list[TrialRow]) -> dict[str, list[TrialRow]]:
    """Each family's completed trials, best val_mAUC first (ties in ``rows`` order)."""
    out: dict[str, list[TrialRow]] = {}
    for r in rows:
        if r.completed:
            out.setdefault(r.family, []).append(r)
    return {f: sorted(rs, key=lambda r: -r.best_mAUC) for f, rs in out.items()}


@dataclass
class Trials:
    """A search's trials as :func:`search_trials` read them (see the module docstring)."""

    runs: list[Any]
    trial_runs: list[Any]
    curves: dict[str, Curves]
    spaces_dir: str | None = None
    rows: list[TrialRow] = field(init=False)
    ranked: dict[str, list[TrialRow]] = field(init=False)
    _tables: tuple[pd.DataFrame, pd.DataFrame] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.rows = [_row(r, self.curves[r.info.run_id]) for r in self.trial_runs]
        self.ranked = rank_by_family(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def table(self) -> pd.DataFrame:
        """The ``trials`` table."""
        return self._both()[0]

    @property
    def history(self) -> pd.DataFrame:
        """The ``history`` table."""
        return self._both()[1]

    def _both(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        if self._tables is None:
            self._tables = trials_tables(self.trial_runs, self.curves, self.spaces_dir)
        return self._tables

    def top(self, k: int) -> dict[str, list[TrialRow]]:
        """Each family's ``k`` completed trials with the highest best val_mAUC, best first."""
        return {f: rs[:k] for f, rs in self.ranked.items()}

    def best(self) -> dict[str, TrialRow]:
        """Each family's completed trial with the highest best val_mAUC."""
        return {f: rs[0] for f, rs in self.ranked.items()}

    def best_overall(self) -> TrialRow | None:
        """The completed trial with the highest best val_mAUC of the whole search."""
        best = list(self.best().values())
        return max(best, key=lambda r: r.best_mAUC) if best else None

    def best_epoch(self, run_id: str) -> int | None:
        """The step of the trial's highest ``val_mAUC`` (how long its final trains)."""
        return best_step(self.curves[run_id].get(Metrics.VAL_MAUC, []))
