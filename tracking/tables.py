"""A search's tables, rebuilt from MLflow alone: trials, learning curves, finals, runtime.

These are what the report's tables and the dashboard's figures are drawn from (the figures are
pure functions of these tables, see :mod:`dashboards`).  Every table is a pandas DataFrame:

* ``trials``: one row per trial (child run of kind ``trial``): ``run_id, family, trial_id,
  number`` (0-based order of the family's trials by start), ``status, best_val_mAUC,
  best_val_mAP, best_epoch, epochs, mean_epoch_s, trial_s`` and one ``params_<name>`` column per
  searched hyperparameter (None where a conditional parameter was inactive);
* ``history``: one row per trial and epoch: ``run_id, family, step`` and the logged metrics;
* ``finals``: the newest ``tagtune finalize`` of the search: one row per final model (kind
  ``final``) and ensemble (kind ``ensemble``) with its ``eval_*`` scores;
* ``runtime``: per family, seconds per epoch and per trial (seed 000's Fig. 3).
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import pandas as pd
from mlflow import MlflowClient

from tagtune.tracking._store import TAG_FAMILY, TAG_KIND, TAG_PARENT, TAG_TRIAL
from tagtune.tracking.export import _typed

HISTORY_METRICS = ("val_mAUC", "val_mAP", "val_loss", "train_loss", "epoch_seconds")
EVAL_METRICS = ("eval_mAUC", "eval_mAP", "eval_dprime")
TAG_FINALIZE = "tagtune.finalize_id"
TAG_SOURCE = "tagtune.source_run"
TAG_RANK = "tagtune.rank"
TAG_METHOD = "tagtune.ensemble"
TAG_MODEL = "tagtune.model_uri"
PER_CLASS_ARTIFACT = "eval/per_class.csv"
FINAL_COLUMNS = (
    "run_id", "kind", "name", "family", "rank", "method", "source_run_id", "epochs", "train_s",
    *EVAL_METRICS, "model_uri", "finalize_id", "start_time",
)
RUNTIME_COLUMNS = ("family", "trials", "epochs", "mean_epoch_s", "mean_trial_s", "total_trial_s", "final_train_s")


def child_runs(client: MlflowClient, experiment_id: str, parent_run_id: str) -> list[Any]:
    """Every run whose parent is the search run (trials, finals, ensembles)."""
    return client.search_runs(
        [experiment_id], filter_string=f"tags.`{TAG_PARENT}` = '{parent_run_id}'", max_results=10000
    )


def run_kind(run: Any) -> str:
    """``trial`` (also for runs logged before kinds existed), ``final`` or ``ensemble``."""
    return str(run.data.tags.get(TAG_KIND, "trial"))


def best_step(values: Iterable[tuple[int, float]]) -> int | None:
    """The first step with the highest finite value of ``(step, value)`` pairs, else None."""
    best: tuple[float, int] | None = None
    for step, value in sorted(values):
        if math.isfinite(value) and (best is None or value > best[0]):
            best = (value, int(step))
    return best[1] if best else None


def _searched_params(family: str, spaces_dir: str | None) -> dict[str, Any]:
    """The family's search-space parameters by name (empty when the space cannot be loaded)."""
    try:
        from tagtune.search_spaces import load_space

        return {p.name: p for p in load_space(family, spaces_dir).params if p.kind != "const"}
    except Exception:  # noqa: BLE001 - an unknown family or an edited space: infer from values
        return {}


def trial_tables(
    client: MlflowClient, experiment_id: str, parent_run_id: str, spaces_dir: str | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The ``trials`` and ``history`` tables of a search (see the module docstring).

    Searched hyperparameters are those of the family's search space (``spaces_dir`` or the
    packaged one) and any parameter whose value differs between the family's trials; a
    parameter whose space condition (``when``) does not hold for a trial is None there.
    """
    runs = [r for r in child_runs(client, experiment_id, parent_run_id)
            if run_kind(r) == "trial" and TAG_FAMILY in r.data.tags]
    runs.sort(key=lambda r: (r.info.start_time or 0, r.data.tags.get(TAG_TRIAL, "")))
    rows: list[dict[str, Any]] = []
    history: list[dict[str, Any]] = []
    numbers: dict[str, int] = {}
    for run in runs:
        family = run.data.tags[TAG_FAMILY]
        rid = run.info.run_id
        per_step: dict[int, dict[str, Any]] = {}
        for key in HISTORY_METRICS:
            for m in client.get_metric_history(rid, key):
                per_step.setdefault(int(m.step), {"run_id": rid, "family": family, "step": int(m.step)})[key] = m.value
        steps = [per_step[s] for s in sorted(per_step)]
        history.extend(steps)
        secs = [s["epoch_seconds"] for s in steps if "epoch_seconds" in s]
        metrics = run.data.metrics
        rows.append({
            "run_id": rid,
            "family": family,
            "trial_id": run.data.tags.get(TAG_TRIAL, ""),
            "number": numbers.setdefault(family, 0),
            "status": run.info.status,
            "best_val_mAUC": float(metrics.get("best_val_mAUC", math.nan)),
            "best_val_mAP": float(metrics.get("best_val_mAP", math.nan)),
            "best_epoch": best_step((s["step"], s["val_mAUC"]) for s in steps if "val_mAUC" in s),
            "epochs": len(steps),
            "mean_epoch_s": sum(secs) / len(secs) if secs else math.nan,
            "trial_s": sum(secs) if secs else math.nan,
            "_params": {k: _typed(v) for k, v in run.data.params.items()},
        })
        numbers[family] += 1
    trials = pd.DataFrame(rows)
    if trials.empty:
        return trials, pd.DataFrame(history, columns=["run_id", "family", "step", *HISTORY_METRICS])
    params_by_family: dict[str, list[str]] = {}
    spaces = {str(f): _searched_params(str(f), spaces_dir) for f in dict.fromkeys(trials["family"])}
    for family, group in trials.groupby("family", sort=False):
        space = spaces[str(family)]
        dicts = list(group["_params"])
        keys = sorted({k for d in dicts for k in d} - {"family", "seed"})
        varying = [k for k in keys if len({repr(d.get(k)) for d in dicts}) > 1]
        names = [k for k in space if any(k in d for d in dicts)] + [k for k in varying if k not in space]
        params_by_family[str(family)] = names
    columns: dict[str, list[Any]] = {}
    all_names = list(dict.fromkeys(n for names in params_by_family.values() for n in names))
    for name in all_names:
        columns[f"params_{name}"] = []
    for _, row in trials.iterrows():
        family = str(row["family"])
        space = spaces[family]
        values = row["_params"]
        for name in all_names:
            value = values.get(name) if name in params_by_family[family] else None
            cond = space.get(name)
            if cond is not None and value is not None and not cond.active(values):
                value = None
            columns[f"params_{name}"].append(value)
    trials = trials.drop(columns="_params")
    for key, values in columns.items():
        trials[key] = pd.Series(values, dtype=object)
    hist = pd.DataFrame(history)
    for key in HISTORY_METRICS:
        if key not in hist:
            hist[key] = math.nan
    return trials, hist


def finals_table(client: MlflowClient, experiment_id: str, parent_run_id: str) -> pd.DataFrame:
    """The newest finalize of the search: final models and ensembles with their eval scores."""
    rows = []
    for run in child_runs(client, experiment_id, parent_run_id):
        kind = run_kind(run)
        if kind not in ("final", "ensemble") or run.info.status != "FINISHED":
            continue
        tags, metrics = run.data.tags, run.data.metrics
        method = tags.get(TAG_METHOD, "")
        family = tags.get(TAG_FAMILY, "")
        rank = int(tags.get(TAG_RANK, "1"))
        name = f"ensemble-{method}" if kind == "ensemble" else (family if rank == 1 else f"{family}#{rank}")
        rows.append({
            "run_id": run.info.run_id, "kind": kind, "name": name, "family": family, "rank": rank,
            "method": method, "source_run_id": tags.get(TAG_SOURCE, ""),
            "epochs": float(run.data.params.get("epochs", math.nan)) if "epochs" in run.data.params else math.nan,
            "train_s": float(metrics.get("train_seconds", math.nan)),
            **{k: float(metrics.get(k, math.nan)) for k in EVAL_METRICS},
            "model_uri": tags.get(TAG_MODEL, ""), "finalize_id": tags.get(TAG_FINALIZE, ""),
            "start_time": run.info.start_time or 0,
        })
    table = pd.DataFrame(rows, columns=list(FINAL_COLUMNS))
    if table.empty:
        return table
    newest = table.sort_values("start_time")["finalize_id"].iloc[-1]
    table = table[table["finalize_id"] == newest]
    order = {"final": 0, "ensemble": 1}
    table = table.assign(_o=table["kind"].map(order)).sort_values(["_o", "family", "rank", "method"])
    return table.drop(columns="_o").reset_index(drop=True)


def with_finals(summary: pd.DataFrame, finals: pd.DataFrame) -> pd.DataFrame:
    """The per-family summary with each family's final (rank 1) eval scores beside it."""
    out = summary.copy()
    best = finals[(finals["kind"] == "final") & (finals["rank"] == 1)].set_index("family") if not finals.empty else None
    for key in EVAL_METRICS:
        out[key] = [float(best.loc[f, key]) if best is not None and f in best.index else math.nan
                    for f in out["family"]]
    return out


def ensemble_rows(finals: pd.DataFrame) -> pd.DataFrame:
    """Rows for the report's table: each ensemble's name and eval scores."""
    if finals.empty:
        return pd.DataFrame(columns=["family", *EVAL_METRICS])
    ens = finals[finals["kind"] == "ensemble"]
    return pd.DataFrame({"family": ens["name"], **{k: ens[k] for k in EVAL_METRICS}}).reset_index(drop=True)


def runtime_table(trials: pd.DataFrame, finals: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per family: trials, epochs run, mean seconds per epoch and per trial, total trial seconds,
    and the final's training seconds (seed 000's Fig. 3)."""
    rows = []
    if trials.empty:
        return pd.DataFrame(columns=list(RUNTIME_COLUMNS))
    for family, group in trials.groupby("family", sort=False):
        epochs = group["epochs"].sum()
        total = group["trial_s"].sum(min_count=1)
        final_s = math.nan
        if finals is not None and not finals.empty:
            mine = finals[(finals["kind"] == "final") & (finals["family"] == family) & (finals["rank"] == 1)]
            if not mine.empty:
                final_s = float(mine["train_s"].iloc[0])
        rows.append({
            "family": family,
            "trials": len(group),
            "epochs": int(epochs),
            "mean_epoch_s": float(total / epochs) if epochs and not math.isnan(total) else math.nan,
            "mean_trial_s": float(group["trial_s"].mean()),
            "total_trial_s": float(total),
            "final_train_s": final_s,
        })
    return pd.DataFrame(rows, columns=list(RUNTIME_COLUMNS)).sort_values("mean_epoch_s").reset_index(drop=True)


def per_class_from_run(client: MlflowClient, run_id: str) -> pd.DataFrame | None:
    """The per-class AP table (``class, ap, n_pos``) a final or ensemble run logged, if any."""
    import tempfile

    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = client.download_artifacts(run_id, PER_CLASS_ARTIFACT, tmp)
            return pd.read_csv(path)
    except Exception:  # noqa: BLE001 - no such artifact
        return None
