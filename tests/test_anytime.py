"""The report's view of early stopping: stopped trials counted apart, min/mean over completed
trials, and the anytime table (best val_mAUC so far vs wall time) with its figure."""

from __future__ import annotations

import math
from types import SimpleNamespace

from tagtune.dashboards import anytime_data, anytime_figure
from tagtune.tracking import Tag, Trials, anytime_summary, anytime_table, family_summary
from tagtune.tracking.trials import WALL_KEY

START_MS = 1_000_000


def _run(run_id: str, family: str, best: float, stopped: bool = False):
    tags = {Tag.FAMILY: family, Tag.KIND: "trial", Tag.TRIAL_ID: run_id}
    if stopped:
        tags.update({Tag.STOPPED_EARLY: "True", Tag.STOPPED_AT_EPOCH: "2", Tag.STOPPED_BY: "asha"})
    return SimpleNamespace(
        info=SimpleNamespace(run_id=run_id, status="FINISHED", start_time=START_MS),
        data=SimpleNamespace(tags=tags, metrics={"best_val_mAUC": best, "best_val_mAP": 0.1}, params={}),
    )


def _trials() -> Trials:
    # (seconds after the start, val_mAUC) per epoch
    epochs = {
        "a": ("fc2", [(10, 0.80), (20, 0.85), (30, 0.86)], False),
        "b": ("fc2", [(15, 0.60), (25, 0.62)], True),
        "c": ("attention", [(40, 0.90), (80, 0.93)], False),
    }
    runs, curves = [], {}
    for run_id, (family, values, stopped) in epochs.items():
        runs.append(_run(run_id, family, max(v for _, v in values), stopped))
        curves[run_id] = {
            "val_mAUC": [(i + 1, v) for i, (_, v) in enumerate(values)],
            WALL_KEY: [(START_MS + s * 1000, v) for s, v in values],
        }
    return Trials(runs=runs, trial_runs=runs, curves=curves)


def test_the_summary_counts_stopped_trials_and_keeps_them_out_of_min_and_mean():
    table = family_summary(_trials().rows).set_index("family")
    fc2 = table.loc["fc2"]
    assert (fc2["trials"], fc2["completed"], fc2["stopped"]) == (2, 1, 1)
    assert fc2["max_mAUC"] == 0.86 and fc2["min_mAUC"] == 0.86 and fc2["mean_mAUC"] == 0.86  # b left out
    assert table.loc["attention", "stopped"] == 0


def test_the_anytime_table_rises_per_family_and_overall():
    anytime = anytime_table(_trials(), START_MS)
    overall = anytime[anytime["family"] == "all"]
    assert list(overall["seconds"]) == [10, 20, 30, 40, 80]
    assert list(overall["best_val_mAUC"]) == [0.80, 0.85, 0.86, 0.90, 0.93]
    assert list(anytime[anytime["family"] == "fc2"]["seconds"]) == [10, 20, 30]  # b never beat a
    summary = anytime_summary(anytime, 80.0).set_index("family")
    assert summary.loc["all", "at_25%"] == 0.85 and summary.loc["all", "at_50%"] == 0.90
    assert summary.loc["all", "at_100%"] == 0.93 and summary.loc["all", "reached_at_s"] == 80
    assert summary.loc["fc2", "at_100%"] == 0.86 and math.isnan(summary.loc["attention", "at_25%"])
    data = anytime_data(anytime)
    assert list(data[data["family"] == "all"]["minutes"])[-1] == 80 / 60
    fig = anytime_figure(anytime)
    assert [t.name for t in fig.data] == ["fc2", "all families", "attention"]
