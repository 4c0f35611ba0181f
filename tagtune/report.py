"""The report of a search, from MLflow: its tables (Markdown) and its dashboard (HTML).

:func:`collect` gathers every table once (trials, learning curves, finals, runtime, per-class AP);
:func:`report_markdown` prints the two tables of ``tagtune report``; :func:`dashboard_html` draws
the plotly figures of :mod:`dashboards` into one self-contained page.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pandas as pd
from mlflow import MlflowClient

from tagtune.names import Metrics, Tag
from tagtune.repeat import seed_spread
from tagtune.tracking import (
    CHANCE,
    CHANCE_MARGIN,
    SUMMARY_COLUMNS,
    TASK_COLUMNS,
    RunKind,
    Trials,
    anytime_summary,
    anytime_table,
    ensemble_rows,
    family_summary,
    finals_table,
    per_class_from_run,
    recorded_spaces_dir,
    runtime_table,
    search_health,
    search_trials,
    to_markdown,
    with_finals,
)
from tagtune.tracking.tables import confusion_from_run, eval_columns

SEARCH_COLUMNS = [c for c in SUMMARY_COLUMNS if c != "mean_epoch_s"]  # runtime has its own table
DASHBOARD_ARTIFACT_DIR = "dashboard"
DASHBOARD_FILE = "dashboard.html"


@dataclass
class ReportData:
    """Every table of one search's report."""

    experiment: str
    parent_run_id: str
    summary: pd.DataFrame
    """Per family: the search columns of :func:`tagtune.tracking.summary.family_summary` plus the final's
    ``eval_mAUC/eval_mAP/eval_dprime`` (NaN without a final)."""
    ensembles: pd.DataFrame
    runtime: pd.DataFrame
    trials: pd.DataFrame
    history: pd.DataFrame
    finals: pd.DataFrame
    per_class: pd.DataFrame | None = None
    per_class_source: str = ""
    confusion: pd.DataFrame | None = None
    """The best single-label final's confusion matrix on the test split (long form), if any."""
    confusion_source: str = ""
    anytime: pd.DataFrame | None = None
    """Best val_mAUC so far vs wall time (:func:`tagtune.tracking.anytime_table`)."""
    anytime_summary: pd.DataFrame | None = None
    """Per family and overall: best at 25/50/100 % of the search's wall time."""
    wall_seconds: float = 0.0
    pool_left_out: str = ""
    """The newest finalize's trials kept out of the ensemble pool, and why (its run's tag)."""
    health: pd.DataFrame | None = None
    """Per family: sampled trials, how many beat the first trial, how many stayed at chance, and
    the likely cause when most did (:func:`tagtune.tracking.search_health`)."""
    spread: pd.DataFrame | None = None
    """Per config repeated with other seeds (``tagtune repeat``): its scores' spread
    (:func:`tagtune.repeat.seed_spread`)."""

    @property
    def has_finals(self) -> bool:
        """Whether ``tagtune finalize`` has scored this search's families on an eval split."""
        return not self.finals.empty


def collect(
    client: MlflowClient, experiment: Any, parent: Any, *, per_class: bool = False, trials: Trials | None = None
) -> ReportData:
    """The tables of the search ``parent`` (an MLflow run) in ``experiment``, all from one read of
    its trials (``trials``, or :func:`tagtune.tracking.trials.search_trials` against the spaces the
    search recorded).

    With ``per_class``, also the best model's per-class AP: the best final's (or ensemble's) on
    the eval split when there are finals, else the best trial's checkpoint on the search's
    validation split (its training data re-read; not available when the split cannot be rebuilt).
    """
    exp_id, parent_id = experiment.experiment_id, parent.info.run_id
    if trials is None:
        trials = search_trials(client, exp_id, parent_id, recorded_spaces_dir(parent))
    finals = finals_table(trials.runs)
    data = ReportData(
        experiment=experiment.name,
        parent_run_id=parent_id,
        summary=with_finals(family_summary(trials.rows), finals),
        ensembles=ensemble_rows(finals),
        runtime=runtime_table(trials.table, finals),
        trials=trials.table,
        history=trials.history,
        finals=finals,
    )
    data.health = search_health(data.trials)
    data.spread = seed_spread(trials)
    data.pool_left_out = _pool_left_out(trials.runs, finals)
    start = int(parent.info.start_time or 0)
    data.anytime = anytime_table(trials, start)
    end = parent.info.end_time if parent.info.status != "RUNNING" else None
    last = float(data.anytime["seconds"].max()) if len(data.anytime) else 0.0
    data.wall_seconds = max(last, (int(end) - start) / 1000.0 if end else 0.0)
    data.anytime_summary = anytime_summary(data.anytime, data.wall_seconds) if len(data.anytime) else None
    if per_class:
        data.per_class, data.per_class_source = best_per_class(client, parent, trials, finals)
        data.confusion, data.confusion_source = best_confusion(client, finals)
    return data


def _pool_left_out(runs: list[Any], finals: pd.DataFrame) -> str:
    """The ``tagtune.pool_left_out`` tag of the finalize whose finals the report shows."""
    if finals.empty:
        return ""
    newest = str(finals["finalize_id"].iloc[0])
    for run in runs:
        tags = run.data.tags
        if tags.get(Tag.KIND) == RunKind.FINALIZE and tags.get(Tag.FINALIZE_ID) == newest:
            return str(tags.get(Tag.POOL_LEFT_OUT, ""))
    return ""


def best_confusion(client: MlflowClient, finals: pd.DataFrame) -> tuple[pd.DataFrame | None, str]:
    """The confusion matrix of the single-label final (kind ``final``) with the highest
    ``eval_accuracy`` on the test split, and which final it is; ``(None, "")`` without one."""
    if finals.empty or Metrics.EVAL_ACCURACY not in finals:
        return None, ""
    scored = finals[(finals["kind"] == "final") & finals[Metrics.EVAL_ACCURACY].notna()]
    if scored.empty:
        return None, ""
    final = scored.loc[cast(int, scored[Metrics.EVAL_ACCURACY].idxmax())]
    table = confusion_from_run(client, str(final["run_id"]))
    if table is None:
        return None, ""
    return table, f"final {final['name']} on the test split, eval accuracy {final[Metrics.EVAL_ACCURACY]:.4f}"


def best_per_class(
    client: MlflowClient, parent: Any, trials: Trials, finals: pd.DataFrame
) -> tuple[pd.DataFrame | None, str]:
    """The per-class AP table of the best model and where it comes from (see :func:`collect`)."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    if not finals.empty and finals[Metrics.EVAL_MAUC].notna().any():
        final = finals.loc[cast(int, finals[Metrics.EVAL_MAUC].idxmax())]
        table = per_class_from_run(client, str(final["run_id"]))
        if table is not None:
            return table, f"{final['name']} on the eval split, eval mAUC {final[Metrics.EVAL_MAUC]:.4f}"
    best = trials.best_overall()
    if best is None:
        return None, ""
    try:
        table = validation_per_class(client, parent, best.run_id)
    except Exception as exc:  # noqa: BLE001 - the figure says why instead
        return None, f"not available: {str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__}"
    if table is None:
        return None, "not available: the trial's checkpoint is gone"
    return table, (
        f"best trial {best.family} {best.trial_id or best.run_id[:8]} on the "
        f"validation split, val mAUC {best.best_mAUC:.4f}"
    )


def validation_per_class(client: MlflowClient, parent: Any, run_id: str) -> pd.DataFrame | None:
    """AP per class of trial ``run_id``'s best checkpoint on the search's validation split
    (:func:`tagtune.scoring.validation_split`, which refuses when it cannot be rebuilt); None
    without a checkpoint or when the model scores other classes."""
    from tagtune.scoring import evaluate, load_trial_checkpoint, validation_split
    from tagtune.trainables.inference import checkpoint_probabilities

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    split = validation_split(parent)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            model, meta = load_trial_checkpoint(client, run_id, tmp)
        except Exception:  # noqa: BLE001 - no checkpoint logged
            return None
    scores = checkpoint_probabilities(model, meta, split)
    if scores.shape[1] != split.y.shape[1]:
        return None
    _, table = evaluate(scores, split.y, split.class_names)
    return table


def search_table(data: ReportData) -> pd.DataFrame:
    """Table 1: per family the search's max/min/mean mAUC (Fig. 4) and, when there are finals,
    the final's eval scores; ensembles as extra rows."""
    cols = SEARCH_COLUMNS + [c for c in TASK_COLUMNS if c in data.summary.columns]
    cols += list(eval_columns(data.finals)) if data.has_finals else []
    table = data.summary.reindex(columns=cols)
    if data.has_finals and not data.ensembles.empty:
        table = pd.concat([table, data.ensembles.reindex(columns=cols)], ignore_index=True)
    return table


CHANCE_MAUC = CHANCE + CHANCE_MARGIN  # a trial whose best val_mAUC stayed below this never left chance


def chance_level_trials(trials: pd.DataFrame, threshold: float = CHANCE_MAUC) -> pd.DataFrame:
    """The completed trials whose best validation mAUC never left chance level (below
    ``threshold``; chance is 0.5): a learning rate too small to train, an optimizer that
    diverged quietly.  Columns ``family, trial_id, run_id, best_val_mAUC``."""
    cols = ["family", "trial_id", "run_id", Metrics.BEST_VAL_MAUC]
    if trials.empty or Metrics.BEST_VAL_MAUC not in trials:
        return pd.DataFrame(columns=cols)
    done = trials[trials["status"] == "FINISHED"] if "status" in trials else trials
    return done[done[Metrics.BEST_VAL_MAUC] < threshold][cols].reset_index(drop=True)


def _chance_line(data: ReportData) -> list[str]:
    flat = chance_level_trials(data.trials)
    if flat.empty:
        return []
    names = ", ".join(
        f"{r.family} {r.trial_id} ({r.best_val_mAUC:.3f}, run {str(r.run_id)[:8]})" for r in flat.itertuples()
    )
    return ["", f"Never left chance level (best val_mAUC < {CHANCE_MAUC}; chance is 0.5): {names}"]


def report_markdown(data: ReportData) -> str:
    """The two tables of ``tagtune report`` as Markdown, each under a one-line heading, and the
    trials that never left chance level, if any."""
    head1 = "Per family: validation mAUC over the search's trials (max/min/mean, seed 000 Fig. 4)" + (
        ", and the final (100% of train) on the eval split" if data.has_finals else ""
    )
    if "stopped" in data.summary and data.summary["stopped"].fillna(0).sum():
        head1 += (
            "; max over every scored trial, min/mean/std over the completed trials only (those that "
            "ran every epoch; stopped trials are counted in `stopped`, their scores cut at their stop)"
        )
    table1 = search_table(data)
    runtime = data.runtime if data.has_finals else data.runtime.drop(columns="final_train_s")
    return "\n".join(
        [
            head1,
            "",
            _markdown(table1),
            *_chance_line(data),
            *(["", f"Left out of the ensemble pool: {data.pool_left_out}"] if data.pool_left_out else []),
            *_health_lines(data),
            *_spread_lines(data),
            "",
            "Runtime per family (seed 000 Fig. 3): seconds per epoch and per trial",
            "",
            _markdown(runtime),
            *_anytime_lines(data),
        ]
    )


def _spread_lines(data: ReportData) -> list[str]:
    """The seed-spread table of the configs ``tagtune repeat`` trained again, if any."""
    if data.spread is None or data.spread.empty:
        return []
    return [
        "",
        "Seed spread (`tagtune repeat`): each repeated config's best val_mAUC over its seeds (the "
        "trial's own and the repeats'); two configs whose ranges overlap are not told apart by one run",
        "",
        _markdown(data.spread),
    ]


def _health_lines(data: ReportData) -> list[str]:
    """The search-health table: per family, sampled trials that beat the family's first trial
    and those that never left chance, with the likely cause where most did."""
    if data.health is None or data.health.empty:
        return []
    table = data.health.drop(columns="cause")
    causes = [
        f"- {r['family']}: {r['at_chance']} of {r['sampled']} sampled trials never left chance; "
        f"likely cause: {r['cause']}"
        for r in data.health.to_dict("records")
        if r["cause"]
    ]
    return [
        "",
        "How the search went: per family, the sampled trials (not its first configs: the registered "
        "defaults or a start portfolio's, or after a warm start's first trial), how many beat the best "
        f"first trial, and how many never left chance (best val_mAUC < {CHANCE_MAUC:g})",
        "",
        _markdown(table),
        *([""] + causes if causes else []),
    ]


def _anytime_lines(data: ReportData) -> list[str]:
    """The anytime table of the report (best val_mAUC at 25/50/100 % of the wall time)."""
    if data.anytime_summary is None or data.anytime_summary.empty:
        return []
    return [
        "",
        f"Anytime view: best validation mAUC so far at 25/50/100 % of the search's {data.wall_seconds:.0f} s "
        "wall time, and the seconds to reach each one's final best",
        "",
        _markdown(data.anytime_summary),
    ]


def _markdown(frame: pd.DataFrame) -> str:
    return to_markdown(_display(frame))


def _display(frame: pd.DataFrame) -> pd.DataFrame:
    """Counts as whole numbers (blank where missing), for tables that mix in ensemble rows."""
    out = frame.copy()
    for col in ("trials", "completed", "stopped", "failed", "epochs", "sampled", "beat_first", "at_chance"):
        if col in out:
            out[col] = pd.Series(["" if pd.isna(v) else str(int(v)) for v in out[col]], dtype=object, index=out.index)
    return out


def dashboard_html(data: ReportData) -> str:
    """The dashboard: both tables, Fig. 4 range, Fig. 3 runtime, optimization history, parallel
    coordinates and importance per family, learning curves, per-class AP."""
    from tagtune.dashboards import build_html

    sections = _summary_sections(data) + _trial_sections(data)
    return build_html(
        f"tagtune report: {data.experiment}",
        sections,
        subtitle=f"search run {data.parent_run_id}; every number is rebuilt from MLflow",
    )


def _summary_sections(data: ReportData) -> list[Any]:
    """The per-family table, Fig. 4's range, Fig. 3's runtime, the history and the anytime view."""
    from tagtune.dashboards import Section, anytime_figure, history_figure, range_figure, runtime_figure

    sections = [
        Section(
            "Per family: search and finals",
            table=_display(search_table(data)),
            note="max/min/mean: the trials' best validation mAUC; eval_*: the family's final, "
            "retrained on 100% of the training data, on the eval split."
            if data.has_finals
            else "max/min/mean: the trials' best validation mAUC (run `tagtune finalize` for eval scores)."
            + (
                " max over every scored trial; min/mean over the completed ones (all epochs), the "
                "stopped ones counted apart."
                if "stopped" in data.summary and data.summary["stopped"].fillna(0).sum()
                else ""
            ),
        ),
        Section("mAUC per family (Fig. 4)", figure=range_figure(data.summary)),
        Section("Runtime per family (Fig. 3)", figure=runtime_figure(data.runtime), table=data.runtime),
        Section("Optimization history", figure=history_figure(data.trials)),
    ]
    if data.anytime is not None:
        sections.append(
            Section(
                "Anytime view: best validation mAUC so far vs wall time",
                figure=anytime_figure(data.anytime),
                table=data.anytime_summary,
                note="per family and over all families (black); each epoch's val_mAUC at the time "
                "MLflow logged it, from the search run's start",
            )
        )
    return sections


def _trial_sections(data: ReportData) -> list[Any]:
    """Parallel coordinates per family, importance, learning curves, per-class AP, confusion."""
    from tagtune.dashboards import (
        Section,
        confusion_figure,
        importance_figure,
        learning_curves_figure,
        parallel_figure,
        param_importances,
        per_class_figure,
    )

    sections: list[Any] = []
    if not data.trials.empty:
        for family in dict.fromkeys(data.trials["family"]):
            sections.append(
                Section(f"Parallel coordinates: {family}", figure=parallel_figure(data.trials, str(family)))
            )
    sections.append(
        Section(
            "Hyperparameter importance",
            figure=importance_figure(param_importances(data.trials)),
            note="Optuna's fANOVA on a study rebuilt from the MLflow child runs; conditional "
            "parameters rated on the trials where they are active.",
        )
    )
    sections.append(
        Section("Learning curves of the top trials", figure=learning_curves_figure(data.history, data.trials))
    )
    per_class = data.per_class if data.per_class is not None else pd.DataFrame(columns=["class", "ap", "n_pos"])
    sections.append(
        Section(
            "Average precision per class: best and worst 20",
            figure=per_class_figure(per_class, 20, data.per_class_source),
            note=data.per_class_source,
        )
    )
    if data.confusion is not None:
        sections.append(
            Section(
                "Confusion matrix of the best final on the test split",
                figure=confusion_figure(data.confusion, data.confusion_source),
                note=data.confusion_source + "; rows: true class, columns: predicted class, colour: the "
                "share of the true class's clips, text: clip counts.",
            )
        )
    return sections


def write_dashboard(client: MlflowClient, data: ReportData, out: str | os.PathLike[str] | None = None) -> Path | None:
    """Log the dashboard on the search's parent run (``dashboard/dashboard.html``, shown by the
    MLflow UI) and, with ``out``, write it there too; returns ``out``'s path."""
    from tagtune.errors import InputError

    text = dashboard_html(data)
    path = None
    if out is not None:
        path = Path(out)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise InputError(f"--html {out}: cannot write there ({exc.strerror}); pick a writable path") from None
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / DASHBOARD_FILE).write_text(text, encoding="utf-8")
        client.log_artifacts(data.parent_run_id, tmp, DASHBOARD_ARTIFACT_DIR)
    return path
