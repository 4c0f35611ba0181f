"""The dashboard's figures, tested on the data they draw (tables in, numbers out), and the page."""

from __future__ import annotations

import math

import numpy as np
import optuna
import pandas as pd
import plotly.graph_objects as go
import pytest

from tagtune.dashboards import (
    Section,
    build_html,
    history_data,
    history_figure,
    importance_figure,
    infer_distribution,
    learning_curve_data,
    learning_curves_figure,
    parallel_data,
    parallel_figure,
    param_importances,
    per_class_data,
    per_class_figure,
    range_data,
    range_figure,
    rebuild_study,
    runtime_data,
    runtime_figure,
    table_html,
)

NAN = float("nan")


@pytest.fixture
def summary() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "family": ["lstm", "fc1", "gcnn"],
            "trials": [3, 4, 2],
            "completed": [3, 4, 0],
            "max_mAUC": [0.945, 0.927, NAN],
            "min_mAUC": [0.90, 0.85, NAN],
            "mean_mAUC": [0.93, 0.90, NAN],
            "eval_mAUC": [0.944, NAN, NAN],
        }
    )


@pytest.fixture
def trials() -> pd.DataFrame:
    """fc1: 6 trials, lr over two decades, optimizer categorical, momentum only with sgd."""
    rows = []
    lrs = [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 2e-2]
    opts = ["adam", "sgd", "adam", "sgd", "sgd", "adam"]
    for i, (lr, opt) in enumerate(zip(lrs, opts, strict=True)):
        rows.append(
            {
                "run_id": f"a{i}",
                "family": "fc1",
                "number": i,
                "trial_id": f"t{i}",
                "best_val_mAUC": 0.8 + 0.01 * i - (0.05 if opt == "sgd" else 0.0),
                "params_lr": lr,
                "params_optimizer": opt,
                "params_momentum": 0.5 + 0.1 * i if opt == "sgd" else None,
                "params_batch_size": 64,
                "params_hidden": None,
            }
        )
    rows.append(
        {
            "run_id": "a6",
            "family": "fc1",
            "number": 6,
            "trial_id": "t6",
            "best_val_mAUC": NAN,
            "params_lr": 5e-3,
            "params_optimizer": "adam",
            "params_momentum": None,
            "params_batch_size": 64,
            "params_hidden": None,
        }
    )
    for i in range(2):
        rows.append(
            {
                "run_id": f"b{i}",
                "family": "fc2",
                "number": i,
                "trial_id": f"u{i}",
                "best_val_mAUC": [0.7, 0.75][i],
                "params_lr": [1e-3, 2e-3][i],
                "params_optimizer": "adam",
                "params_momentum": None,
                "params_batch_size": [32, 64][i],
                "params_hidden": [500, 1024][i],
            }
        )
    rows.append(
        {
            "run_id": "c0",
            "family": "lstm",
            "number": 0,
            "trial_id": "v0",
            "best_val_mAUC": 0.9,
            "params_lr": 1e-3,
            "params_optimizer": "adam",
            "params_momentum": None,
            "params_batch_size": 64,
            "params_hidden": None,
        }
    )
    frame = pd.DataFrame(rows)
    for col in [c for c in frame.columns if c.startswith("params_")]:
        frame[col] = pd.Series(list(frame[col]), dtype=object)
        frame[col] = [None if isinstance(v, float) and math.isnan(v) else v for v in frame[col]]
    return frame


@pytest.fixture
def history(trials: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for _, t in trials.iterrows():
        for step in (1, 2, 3):
            rows.append(
                {
                    "run_id": t["run_id"],
                    "family": t["family"],
                    "step": step,
                    "val_mAUC": 0.5 + 0.1 * step,
                    "val_loss": 1.0 / step,
                    "train_loss": 1.2 / step,
                }
            )
    return pd.DataFrame(rows)


# -- Fig. 4 ------------------------------------------------------------------------------------------
def test_range_data_per_family_with_finals(summary):
    data = range_data(summary)
    assert list(data["family"]) == ["lstm", "fc1"]  # gcnn has no finished trial
    assert data.iloc[0][["min", "mean", "max", "eval"]].tolist() == [0.90, 0.93, 0.945, 0.944]
    assert math.isnan(data.iloc[1]["eval"])
    fig = range_figure(summary)
    names = [t.name for t in fig.data]
    assert names == ["min..max (validation)", "max", "min", "mean", "final, eval split"]
    bar = fig.data[0]
    assert list(bar.base) == [0.90, 0.85] and list(bar.y) == pytest.approx([0.045, 0.077])
    stars = fig.data[-1]
    assert list(stars.x) == ["lstm"] and list(stars.y) == [0.944]


def test_range_figure_without_finals_or_trials(summary):
    no_finals = summary.drop(columns="eval_mAUC")
    assert [t.name for t in range_figure(no_finals).data][-1] == "mean"
    empty = range_figure(summary.iloc[2:])
    assert len(empty.data) == 0 and "no finished trial" in empty.layout.annotations[0].text


# -- Fig. 3 ------------------------------------------------------------------------------------------
def test_runtime_data_and_figure():
    runtime = pd.DataFrame(
        {
            "family": ["lstm", "fc1"],
            "trials": [2, 2],
            "epochs": [6, 6],
            "mean_epoch_s": [9.1, 0.2],
            "mean_trial_s": [27.3, 0.6],
            "total_trial_s": [54.6, 1.2],
            "final_train_s": [NAN, NAN],
        }
    )
    data = runtime_data(runtime)
    assert list(data["family"]) == ["fc1", "lstm"] and list(data["mean_trial_s"]) == [0.6, 27.3]
    fig = runtime_figure(runtime)
    assert len(fig.data) == 2 and [a.text for a in fig.layout.annotations] == ["seconds per epoch", "seconds per trial"]
    runtime["final_train_s"] = [70.0, 7.9]
    fig = runtime_figure(runtime)
    assert len(fig.data) == 3 and list(fig.data[2].y) == [7.9, 70.0]


# -- optimization history -------------------------------------------------------------------------
def test_history_data_keeps_best_so_far_per_family(trials):
    data = history_data(trials)
    fc1 = data[data["family"] == "fc1"]
    assert list(fc1["number"]) == [0, 1, 2, 3, 4, 5]  # the failed trial 6 is left out
    assert list(fc1["best_so_far"]) == pytest.approx(np.maximum.accumulate(fc1["value"]).tolist())
    assert list(fc1["value"])[:2] == pytest.approx([0.8, 0.76])
    fig = history_figure(trials)
    assert len(fig.data) == 6 and fig.data[1].line.shape == "hv"


# -- parallel coordinates --------------------------------------------------------------------------
def test_parallel_data_encodes_categories_logs_and_inactive_levels(trials):
    dims = {d["label"]: d for d in parallel_data(trials, "fc1")}
    assert list(dims) == ["log10(lr)", "optimizer", "momentum", "val mAUC"]  # constants dropped
    assert dims["log10(lr)"]["values"][0] == pytest.approx(-4.0)
    assert dims["optimizer"]["ticktext"] == ["adam", "sgd"] and dims["optimizer"]["values"][:2] == [0, 1]
    mom = dims["momentum"]
    fill = mom["tickvals"][0]
    assert mom["ticktext"][0] == "inactive" and [mom["values"][i] for i in (0, 2, 5)] == [fill] * 3
    assert [mom["values"][i] for i in (1, 3, 4)] == pytest.approx([0.6, 0.8, 0.9]) and fill < 0.6
    assert len(dims["val mAUC"]["values"]) == 6
    fc2 = {d["label"]: d for d in parallel_data(trials, "fc2")}
    assert list(fc2) == ["lr", "batch_size", "hidden", "val mAUC"]  # 2x range: not log
    fig = parallel_figure(trials, "fc1")
    assert isinstance(fig.data[0], go.Parcoords) and len(fig.data[0].dimensions) == 4
    assert len(parallel_figure(trials, "lstm").data) == 0  # one trial: a placeholder


# -- importance ----------------------------------------------------------------------------------
def test_infer_distribution_from_values():
    assert infer_distribution([1e-4, 1e-2, 3e-3]) == optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)
    assert infer_distribution([0.1, 0.5]) == optuna.distributions.FloatDistribution(0.1, 0.5)
    assert infer_distribution([32, 500, 64]) == optuna.distributions.IntDistribution(32, 500)
    assert infer_distribution(["sgd", "adam", None]).choices == ("adam", "sgd")
    assert infer_distribution([True, False]).choices == (False, True)


def test_rebuild_study_keeps_conditional_parameters_where_active(trials):
    study = rebuild_study(trials, "fc1")
    done = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(done) == 6 and study.best_value == pytest.approx(0.85)
    assert set(done[0].params) == {"lr", "optimizer"} and set(done[1].params) == {"lr", "optimizer", "momentum"}
    assert isinstance(done[0].distributions["lr"], optuna.distributions.FloatDistribution)


def test_param_importances_per_family_with_conditional_rows(trials):
    table = param_importances(trials)
    fc1 = table[table["family"] == "fc1"]
    plain = fc1[~fc1["conditional"]]
    assert set(plain["param"]) == {"lr", "optimizer"} and plain["importance"].sum() == pytest.approx(1.0)
    cond = fc1[fc1["conditional"]]
    assert list(cond["param"]) == ["momentum"] and int(cond["n_trials"].iloc[0]) == 3
    assert 0.0 <= float(cond["importance"].iloc[0]) <= 1.0
    assert "lstm" not in set(table["family"])  # a single trial rates nothing
    fig = importance_figure(table)
    labels = [y for trace in fig.data for y in trace.y]
    assert "momentum (conditional, 3 trials)" in labels and len(fig.data) == len(set(table["family"]))
    assert "fc1 (rated on 6 trials)" in [a.text for a in fig.layout.annotations]
    assert "needs at least 5 finished trials" in importance_figure(table.iloc[:0]).layout.annotations[0].text


# -- learning curves --------------------------------------------------------------------------------
def test_learning_curve_data_takes_each_familys_top_trials(trials, history):
    data = learning_curve_data(history, trials, top=2)
    labels = list(dict.fromkeys(data["label"]))
    assert labels == ["fc1 #1", "fc1 #2", "fc2 #1", "fc2 #2", "lstm #1"]
    assert set(data[data["label"] == "fc1 #1"]["run_id"]) == {"a5"}
    assert list(data[data["label"] == "fc2 #1"]["step"]) == [1, 2, 3]
    fig = learning_curves_figure(history, trials, top=2)
    assert len(fig.data) == 3 * 5


# -- per-class AP ----------------------------------------------------------------------------------
def test_per_class_data_best_and_worst():
    per_class = pd.DataFrame(
        {"class": [f"c{i}" for i in range(50)], "ap": np.linspace(0.0, 0.98, 50), "n_pos": [0] + [3] * 49}
    )
    per_class.loc[10, "ap"] = NAN
    data = per_class_data(per_class, 20)
    best, worst = data[data["group"] == "best"], data[data["group"] == "worst"]
    assert list(best["class"])[:2] == ["c49", "c48"] and len(best) == 20
    assert list(worst["class"])[:2] == ["c1", "c2"] and len(worst) == 20  # c0 has no positives
    assert "c10" not in set(data["class"])
    small = per_class_data(per_class.head(8), 20)  # c1..c7 scorable: 4 best, 3 worst
    assert list(small["group"]) == ["best"] * 4 + ["worst"] * 3 and list(small["class"])[4:] == ["c1", "c2", "c3"]
    fig = per_class_figure(per_class, 20, "fc1 on eval")
    assert list(fig.data[0].y)[-1] == "c49" and "fc1 on eval" in fig.layout.title.text
    assert len(per_class_figure(per_class.iloc[:0]).data) == 0


# -- the page --------------------------------------------------------------------------------------
def test_build_html_is_self_contained(summary, trials):
    table = pd.DataFrame(
        {"family": ["fc1"], "trials": [2], "max_mAUC": [0.92345], "mean_epoch_s": [1.234], "eval_mAP": [NAN]}
    )
    cell = table_html(table)
    assert "<td>0.9234</td>" in cell and "<td>1.2</td>" in cell and "<td></td>" in cell
    page = build_html(
        "t <x>",
        [
            Section("range", figure=range_figure(summary), table=table, note="n"),
            Section("history", figure=history_figure(trials)),
        ],
    )
    assert page.startswith("<!DOCTYPE html>") and "t &lt;x&gt;" in page
    assert "<script src=" not in page and page.count("Plotly.newPlot") == 2
    assert len(page) > 3_000_000  # plotly.js itself is inlined, so the page opens offline


def test_confusion_figure_is_a_pure_function_of_the_long_table_with_class_names():
    from tagtune.dashboards import confusion_data, confusion_figure
    from tagtune.tracking.tables import confusion_table

    names = ("zero", "one", "two")
    table = confusion_table([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 2, 0], names)
    square = confusion_data(table)
    assert list(square.index) == list(names) and list(square.columns) == list(names)
    assert square.loc["zero", "one"] == 1 and square.loc["two", "two"] == 2 and int(square.to_numpy().sum()) == 6
    fig = confusion_figure(table, "final densenet_audio")
    heat = fig.data[0]
    assert list(heat.x) == list(names) and list(heat.y) == list(names)
    assert abs(heat.z[2][2] - 2 / 3) < 1e-9  # colour: share of the true class
    assert "accuracy 0.6667 on 6 clips" in fig.layout.title.text
    empty = confusion_figure(table.iloc[0:0])
    assert "no single-label final" in empty.layout.annotations[0].text


def test_trials_that_never_left_chance_level_are_flagged(trials):
    from tagtune.report import chance_level_trials

    assert chance_level_trials(trials).empty
    flat = trials.assign(status="FINISHED")
    flat.loc[2, "best_val_mAUC"] = 0.51
    flat.loc[3, ["best_val_mAUC", "status"]] = [0.50, "FAILED"]  # failed: counted elsewhere
    out = chance_level_trials(flat)
    assert list(out["trial_id"]) == [flat.loc[2, "trial_id"]] and out["best_val_mAUC"].iloc[0] == 0.51
