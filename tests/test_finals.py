"""Finals (retrain on 100%, score on eval), registered pyfunc models, ensembles, predict, report.

One tiny real search (Ray Tune + Optuna + MLflow, synthetic data, CPU) and one finalize run are
shared by the module; the slow test repeats the path on the real AudioSet embeddings and looks
at the dashboard in headless Chromium and at ``mlflow models serve``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import AUDIOSET, require_shared, shrunk_spec, start_local_ray
from mlflow import MlflowClient

from tagtune.cli import main
from tagtune.commands import report
from tagtune.errors import InputError
from tagtune.finalize import FinalizeSpec, finalize, fit_slice, ranked, top_trials
from tagtune.search import run_search
from tagtune.tracking import Tag
from tagtune.tracking.serving import clip_inputs, unique_names
from tagtune.tracking.trials import TrialRow, best_step, search_trials
from tagtune.trainables.checkpoint import load_model
from tagtune.trainables.data import load_dataset, make_synthetic, split_indices, write_cache
from tagtune.trainables.ensemble import bagged_weights, combine_scores, ensemble_weights, greedy_weights, select_weights
from tagtune.trainables.loop import predict
from tagtune.trainables.metrics import tagging_metrics

TAG_FAMILY, TAG_KIND, TAG_PARENT, TAG_SOURCE = Tag.FAMILY, Tag.KIND, Tag.PARENT, Tag.SOURCE_RUN


def trial_rows(client, experiment_id, parent_run_id):
    return search_trials(client, experiment_id, parent_run_id).rows


def _subset(ds, rows: slice):
    return dataclasses.replace(ds, x=ds.x[rows], y=ds.y[rows], lengths=ds.lengths[rows], ids=ds.ids[rows])


@pytest.fixture(scope="module")
def fin(tmp_path_factory):
    """A 2-family search on synthetic data and its finals (top 2 per family, registered)."""
    import ray

    root = tmp_path_factory.mktemp("finals")
    mp = pytest.MonkeyPatch()
    mp.setenv("TAGTUNE_CACHE_DIR", str(root / "cache"))
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)
    ds = make_synthetic(n_clips=500, n_classes=10, seed=2)
    train = write_cache(_subset(ds, slice(0, 400)), root / "train")
    evald = write_cache(_subset(ds, slice(400, 500)), root / "eval")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    started = not ray.is_initialized()
    start_local_ray()
    try:
        spec = shrunk_spec(
            root, train, families=["fc1", "fc2"], trials_per_family=2, max_epochs=2, experiment="fin", tracking_uri=uri
        )
        search = run_search(spec, echo=lambda line: None)
        outcome = finalize(
            FinalizeSpec(experiment="fin", train=str(train), eval=str(evald), top_k=2, tracking_uri=uri),
            echo=lambda line: None,
        )
        yield SimpleNamespace(
            root=root,
            train=train,
            eval=evald,
            uri=uri,
            search=search,
            outcome=outcome,
            client=MlflowClient(uri),
            class_names=ds.class_names,
        )
    finally:
        if started:
            ray.shutdown()
        mp.undo()


# -- finalize --------------------------------------------------------------------------------------
def test_finals_are_logged_under_the_search_and_not_counted_as_trials(fin):
    client, parent = fin.client, fin.search.parent_run_id
    finals = fin.outcome.finals
    assert sorted(finals["name"]) == ["ensemble-geomean", "ensemble-mean", "fc1", "fc1#2", "fc2", "fc2#2"]
    for _, row in finals.iterrows():
        run = client.get_run(row["run_id"])
        assert run.info.status == "FINISHED"
        assert run.data.tags[TAG_KIND] == row["kind"]
        group = client.get_run(run.data.tags[TAG_PARENT])  # the finalize's own run, under the search
        assert group.data.tags[TAG_KIND] == "finalize" and group.data.tags[TAG_PARENT] == parent
        # the data as dataset inputs (the UI's Datasets column): all of --train and the eval clips
        inputs = {
            next(t.value for t in d.tags if t.key == "mlflow.data.context"): d.dataset
            for d in run.inputs.dataset_inputs
        }
        assert set(inputs) == {"training", "evaluation"}
        assert json.loads(inputs["training"].profile)["train_clips"] == 400
        assert json.loads(inputs["evaluation"].profile)["eval_clips"] == 100
        assert inputs["evaluation"].source == str(Path(fin.eval).resolve())
        for key in ("eval_mAUC", "eval_mAP", "eval_dprime"):
            assert math.isfinite(run.data.metrics[key])
        assert 0.0 <= run.data.metrics["eval_mAUC"] <= 1.0 and 0.0 <= run.data.metrics["eval_mAP"] <= 1.0
        files = {a.path for a in client.list_artifacts(row["run_id"], "eval")}
        assert files == {"eval/per_class.csv"}
        if row["kind"] == "final":
            assert run.data.tags[TAG_FAMILY] == row["family"]
            source = run.data.tags[TAG_SOURCE]
            history = client.get_metric_history(source, "val_mAUC")
            # trains for exactly the epochs at which its trial peaked, on every training clip
            assert int(run.data.params["epochs"]) == best_step((m.step, m.value) for m in history)
            assert int(run.data.params["n_train"]) == 400 and int(run.data.params["n_eval"]) == 100
            assert len(client.get_metric_history(row["run_id"], "fit_mAUC")) == int(run.data.params["epochs"])
            ckpt = {a.path for a in client.list_artifacts(row["run_id"], "checkpoint")}
            assert ckpt == {"checkpoint/model.pt", "checkpoint/model.json"}
    # the trials' table is untouched by the finals
    rows = trial_rows(client, fin.search.experiment_id, parent)
    assert len(rows) == 4 and {r.family for r in rows} == {"fc1", "fc2"}
    # the parent run carries each family's eval scores and model URI
    pm = client.get_run(parent).data
    best_fc1 = finals[finals["name"] == "fc1"].iloc[0]
    assert pm.metrics["final_fc1_eval_mAUC"] == pytest.approx(best_fc1["eval_mAUC"])
    assert pm.tags["tagtune.final.fc1"] == "models:/fin-fc1/1" == best_fc1["model_uri"]
    assert "ensemble_geomean_eval_mAUC" in pm.metrics


def test_each_familys_best_final_is_registered_and_ranks_follow_the_search(fin):
    client = fin.client
    names = {m.name for m in client.search_registered_models()}
    assert {"fin-fc1", "fin-fc2", "fin-ensemble-mean", "fin-ensemble-geomean"} <= names
    for member in fin.outcome.members:
        assert (member.model_uri != "") == (member.rank == 1)
    by_family: dict[str, list[float]] = {}
    for m in fin.outcome.members:
        by_family.setdefault(m.family, []).append(m.source.best_mAUC)
    assert all(v == sorted(v, reverse=True) for v in by_family.values())


def test_ensembles_are_the_mean_and_weighted_geomean_with_weights_chosen_on_validation(fin):
    members = {m.source.run_id: m for m in fin.outcome.members}
    ev = load_dataset(fin.eval)
    finals = fin.outcome.finals.set_index("name")
    from tagtune.finalize.candidates import honest_pool

    # recomputed here: every trial of the search (2 per family) the honest pool keeps, scored on
    # the search's validation split with its own checkpoint, in the pool's order
    pool = ranked(top_trials(trial_rows(fin.client, fin.search.experiment_id, fin.search.parent_run_id), 3))
    pool = honest_pool(pool, FinalizeSpec.pool_margin)[0]
    train = load_dataset(fin.train)
    val_idx = np.sort(split_indices(train.n_clips, 0.2, 0)[1])
    x_val = torch.from_numpy(np.array(train.x[val_idx]))
    val_scores = []
    for _, _, row in pool:
        folder = fin.client.download_artifacts(row.run_id, "checkpoint", str(fin.root / f"src-{row.run_id}"))
        val_scores.append(predict(load_model(folder)[0], x_val).numpy())
    for method in ("mean", "geomean"):
        y_val = np.asarray(train.y[val_idx])
        weights, _ = select_weights(val_scores, y_val, method, FinalizeSpec.selection, seed=FinalizeSpec.seed)
        expect = {row.run_id: w for (_, _, row), w in zip(pool, weights, strict=True) if w > 0}
        run = fin.client.get_run(finals.loc[f"ensemble-{method}", "run_id"])
        logged = dict(
            zip(
                run.data.params["member_runs"].split(","),
                (float(x) for x in run.data.params["member_weights"].split(",")),
                strict=True,
            )
        )
        assert logged == pytest.approx({members[src].run_id: w for src, w in expect.items()}, abs=1e-4)
        assert "validation" in run.data.params["weights_from"]
        ens = [m for m in members.values() if m.run_id in logged]
        scores = combine_scores([m.scores for m in ens], [logged[m.run_id] for m in ens], method)
        got = tagging_metrics(torch.from_numpy(scores), torch.from_numpy(np.array(ev.y)))
        assert finals.loc[f"ensemble-{method}", "eval_mAUC"] == pytest.approx(got["mAUC"], abs=1e-4)


def test_greedy_weights_drop_a_useless_member_and_mix_complementary_ones():
    rng = np.random.default_rng(0)
    y = rng.random((400, 6)) < 0.2
    perfect = np.where(y, 0.9, 0.1) + rng.random(y.shape) * 0.01
    noise = rng.random(y.shape)
    w, val_map = greedy_weights([noise, perfect], y, "mean")
    assert w == [0.0, 1.0] and val_map == pytest.approx(1.0)
    # each member knows half of the classes; together they know all of them
    left = np.where(np.arange(6) < 3, perfect, noise)
    right = np.where(np.arange(6) >= 3, perfect, noise)
    w, val_map = greedy_weights([left, right, noise], y, "geomean")
    assert w[0] > 0 and w[1] > 0 and w[2] == 0.0
    assert val_map > tagging_metrics(torch.from_numpy(left), torch.from_numpy(y))["mAP"]


def test_bagged_selection_weights_sum_to_one_repeat_and_shrink_a_useless_member():
    rng = np.random.default_rng(1)
    y = rng.random((300, 8)) < 0.2
    good = np.where(y, 0.8, 0.2) + rng.random(y.shape) * 0.3
    other = np.where(y, 0.7, 0.3) + rng.random(y.shape) * 0.4
    noise = rng.random(y.shape)
    w, val_map = bagged_weights([good, other, noise], y, "mean", seed=3)
    assert sum(w) == pytest.approx(1.0) and min(w) >= 0
    assert w[2] < 0.1 and w[0] > w[2]  # the member at chance gets (almost) nothing
    assert val_map >= tagging_metrics(torch.from_numpy(other), torch.from_numpy(y))["mAP"]
    assert bagged_weights([good, other, noise], y, "mean", seed=3) == (w, val_map)  # seeded
    assert select_weights([good, noise], y, "mean", "greedy") == greedy_weights([good, noise], y, "mean")
    with pytest.raises(InputError, match="bagged, greedy"):
        select_weights([good, noise], y, "mean", "best")


def test_the_ensemble_pool_leaves_out_trials_at_chance_and_far_behind_their_family():
    from tagtune.finalize.candidates import honest_pool

    def row(family: str, auc: float) -> TrialRow:
        return TrialRow(f"{family}{auc}", family, "FINISHED", auc, 0.1, 1.0, {})

    pool = [("a", 1, row("a", 0.95)), ("a", 2, row("a", 0.94)), ("a", 3, row("a", 0.90)), ("b", 1, row("b", 0.505))]
    keep, out = honest_pool(pool, margin=0.02)
    assert [(f, r) for f, r, _ in keep] == [("a", 1), ("a", 2)]
    assert [o.name for o in out] == ["a#3", "b"]
    assert "trails a's best by 0.0500" in str(out[0]) and "never left chance" in out[1].why
    assert len(honest_pool(pool, margin=0.1)[0]) == 3


def test_registered_model_answers_a_score_for_every_class(fin):
    import mlflow.pyfunc

    os.environ["MLFLOW_TRACKING_URI"] = fin.uri
    try:
        model = mlflow.pyfunc.load_model("models:/fin-fc1/1")
    finally:
        del os.environ["MLFLOW_TRACKING_URI"]
    ev = load_dataset(fin.eval)
    out = model.predict(np.asarray(ev.x[:5], dtype=np.float32))
    assert list(out.columns) == list(fin.class_names) and out.shape == (5, 10)
    member = next(m for m in fin.outcome.members if m.family == "fc1" and m.rank == 1)
    np.testing.assert_allclose(out.to_numpy(), member.scores[:5], atol=1e-5)
    short = model.predict(np.asarray(ev.x[:2, :4], dtype=np.float32))  # padded to 10 frames
    padded = np.zeros((2, 10, ev.x.shape[2]), np.float32)
    padded[:, :4] = ev.x[:2, :4]
    np.testing.assert_allclose(short.to_numpy(), model.predict(padded).to_numpy(), atol=1e-6)
    inputs = model.metadata.get_input_schema().inputs[0]
    assert inputs.shape == (-1, -1, 128) and str(inputs.type) == "float32"


# -- predict ---------------------------------------------------------------------------------------
def test_predict_prints_top_labels_with_names(fin, capsys):
    assert (
        main(
            [
                "predict",
                "--model",
                "models:/fin-fc1/1",
                "--input",
                str(fin.eval),
                "--top-k",
                "3",
                "--tracking-uri",
                fin.uri,
            ]
        )
        == 0
    )
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 100
    first = json.loads(lines[0])
    assert [lab["name"] for lab in first["labels"]] == [fin.class_names[lab["index"]] for lab in first["labels"]]
    scores = [lab["score"] for lab in first["labels"]]
    assert scores == sorted(scores, reverse=True) and len(scores) == 3

    final_run = fin.outcome.finals.set_index("name").loc["fc1", "run_id"]
    assert (
        main(
            [
                "predict",
                "--model",
                f"runs:/{final_run}",
                "--input",
                str(fin.eval),
                "--top-k",
                "3",
                "--format",
                "csv",
                "--tracking-uri",
                fin.uri,
            ]
        )
        == 0
    )
    csv_lines = capsys.readouterr().out.strip().splitlines()
    assert csv_lines[0] == "id,rank,index,label,score" and len(csv_lines) == 1 + 300
    cells = csv_lines[1].split(",")
    assert cells[0] == first["id"] and cells[3] == first["labels"][0]["name"]

    local = fin.client.download_artifacts(final_run, "checkpoint", str(fin.root / "dl"))
    assert main(["predict", "--model", local, "--input", str(fin.eval), "--top-k", "1"]) == 0
    again = json.loads(capsys.readouterr().out.splitlines()[0])
    assert again["labels"][0]["name"] == first["labels"][0]["name"]


# -- report and dashboard --------------------------------------------------------------------------
def test_report_shows_search_ranges_next_to_finals_and_runtime(fin, tmp_path):
    out = tmp_path / "r.html"
    markdown, table = report("fin", fin.uri, html=str(out))
    head = markdown.splitlines()[2]
    for col in ("max_mAUC", "min_mAUC", "mean_mAUC", "eval_mAUC", "eval_mAP", "eval_dprime"):
        assert col in head
    assert "| ensemble-mean |" in markdown and "| ensemble-geomean |" in markdown
    assert "mean_epoch_s | mean_trial_s" in markdown and "final_train_s" in markdown
    assert set(table["family"]) == {"fc1", "fc2"} and table["eval_mAUC"].notna().all()
    text = out.read_text()
    assert "<script src=" not in text and text.count("Plotly.newPlot") >= 8  # plotly.js inlined, offline
    assert "Average precision per class" in text and "Parallel coordinates: fc2" in text
    logged = {a.path for a in fin.client.list_artifacts(fin.search.parent_run_id, "dashboard")}
    assert logged == {"dashboard/dashboard.html"}


def test_without_finals_the_per_class_ap_is_the_best_trials_on_validation(fin):
    from tagtune.report import best_per_class
    from tagtune.tracking.tables import finals_table

    client = fin.client
    parent = client.get_run(fin.search.parent_run_id)
    trials = search_trials(client, fin.search.experiment_id, parent.info.run_id)
    table, source = best_per_class(client, parent, trials, finals_table([]))
    assert "validation split" in source and list(table["class"]) == list(fin.class_names)
    assert table["ap"].dropna().between(0, 1).all() and int(table["n_pos"].sum()) > 0
    table, source = best_per_class(client, parent, trials, fin.outcome.finals)
    assert "eval split" in source and len(table) == 10


def test_a_report_reads_the_trials_once(fin, tmp_path, monkeypatch):
    """`tagtune report --html`: one query for the search's child runs (and one for the finals
    under its finalize run), and each trial's history fetched once (each of its history metrics
    once); nothing else reads the trials."""
    from collections import Counter

    from tagtune.tracking import Metrics

    child_queries: list[str] = []
    fetched: Counter[tuple[str, str]] = Counter()
    search_runs, get_metric_history = MlflowClient.search_runs, MlflowClient.get_metric_history

    def counted_search_runs(self, *args, **kwargs):
        text = kwargs.get("filter_string", args[1] if len(args) > 1 else "")
        if Tag.PARENT in (text or ""):
            child_queries.append(text)
        return search_runs(self, *args, **kwargs)

    def counted_history(self, run_id, key):
        fetched[(run_id, key)] += 1
        return get_metric_history(self, run_id, key)

    trial_ids = {r.run_id for r in trial_rows(fin.client, fin.search.experiment_id, fin.search.parent_run_id)}
    monkeypatch.setattr(MlflowClient, "search_runs", counted_search_runs)
    monkeypatch.setattr(MlflowClient, "get_metric_history", counted_history)
    assert main(["report", "--experiment", "fin", "--tracking-uri", fin.uri, "--html", str(tmp_path / "r.html")]) == 0
    assert len(child_queries) == 2, child_queries  # the search's children, the finalize's children
    assert len(trial_ids) == 4 and {run for run, _ in fetched} == trial_ids  # no final's history is read
    assert set(fetched.values()) == {1} and {key for _, key in fetched} == set(Metrics.HISTORY)


def test_a_search_with_spaces_is_reported_against_those_spaces(tmp_path):
    """The report rebuilds the searched-parameter columns from the search's own --spaces DIR:
    here DIR searches mixup_alpha (the packaged spaces do not) and makes dropout conditional."""
    from tagtune.report import collect
    from tagtune.search_spaces import DEFAULT_DIR
    from tagtune.tracking import RunKind, SearchSpec, get_or_create_experiment, open_run, open_store

    spaces = tmp_path / "spaces"
    shutil.copytree(DEFAULT_DIR, spaces, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    (spaces / "fc1.yaml").write_text(
        "params:\n  dropout: {low: 0.0, high: 0.5, when: {optimizer: sgd}}\n  mixup_alpha: {choices: [0.0, 0.2]}\n"
    )
    client, uri = open_store(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = get_or_create_experiment(client, uri, "spaces")
    spec = SearchSpec(train=str(tmp_path / "train"), families=["fc1"], spaces_dir=str(spaces))
    with open_run(
        client,
        exp.experiment_id,
        kind=RunKind.SEARCH,
        run_name="search",
        params={**spec.to_params(), "n_train": 8, "n_val": 2},
    ) as parent:
        for i, lr in enumerate(("0.001", "0.003")):
            params = {
                "family": "fc1",
                "lr": lr,
                "optimizer": "adam",
                "batch_size": "64",
                "dropout": "0.2",
                "mixup_alpha": "0.2",
                "seed": "0",
            }
            with open_run(
                client,
                exp.experiment_id,
                kind=RunKind.TRIAL,
                run_name=f"fc1-{i}",
                params=params,
                tags={Tag.FAMILY: "fc1", Tag.TRIAL_ID: f"t{i}"},
                parent_run_id=parent.run_id,
            ) as trial:
                for step in (1, 2):
                    trial.log(metrics={"val_mAUC": 0.7 + 0.1 * step, "epoch_seconds": 1.0}, step=step)
                trial.log(metrics={"best_val_mAUC": 0.9 - i / 10, "best_val_mAP": 0.3})
    data = collect(client, exp, client.get_run(parent.run_id))
    assert "params_mixup_alpha" in data.trials.columns and list(data.trials["params_mixup_alpha"]) == [0.2, 0.2]
    assert list(data.trials["params_dropout"]) == [None, None]  # inactive: DIR searches it with sgd only
    assert list(data.summary["max_mAUC"]) == [pytest.approx(0.9)]


# -- bad input: exit code 2, one line that names the flag ----------------------------------------
def test_bad_finalize_and_predict_input_exits_2(fin, tmp_path, capsys):
    other = write_cache(make_synthetic(n_clips=60, n_classes=6, seed=5), tmp_path / "other")
    base = ["finalize", "--experiment", "fin", "--tracking-uri", fin.uri, "--train", str(fin.train)]
    cases = [
        (base + ["--eval", str(tmp_path / "missing")], "--eval"),
        (base, "--eval is required"),  # embeddings have no test split of their own
        (base + ["--eval", str(fin.eval), "--top-k", "0"], "--top-k"),
        (base + ["--eval", str(other)], "--eval"),
        (
            [
                "finalize",
                "--experiment",
                "nope",
                "--tracking-uri",
                fin.uri,
                "--train",
                str(fin.train),
                "--eval",
                str(fin.eval),
            ],
            "no experiment named 'nope'",
        ),
        (["predict", "--model", "models:/nope/1", "--input", str(fin.eval), "--tracking-uri", fin.uri], "--model"),
        (["predict", "--model", str(tmp_path), "--input", str(fin.eval)], "--model"),
        (
            ["predict", "--model", "models:/fin-fc1/1", "--input", str(tmp_path / "x"), "--tracking-uri", fin.uri],
            "--input",
        ),
        (["report", "--experiment", "fin", "--tracking-uri", fin.uri, "--html", "/proc/no/such/r.html"], "--html"),
    ]
    for argv, needle in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith("tagtune: error:") and needle in err and "Traceback" not in err, err
        assert len(err.splitlines()) == 1


# -- pure helpers ----------------------------------------------------------------------------------
def test_combine_scores_mean_and_weighted_geomean():
    a = np.array([[0.2, 0.9]], np.float32)
    b = np.array([[0.8, 0.1]], np.float32)
    np.testing.assert_allclose(combine_scores([a, b]), [[0.5, 0.5]], rtol=1e-6)
    np.testing.assert_allclose(
        combine_scores([a, b], [3, 1], "geomean"), [[0.2**0.75 * 0.8**0.25, 0.9**0.75 * 0.1**0.25]], rtol=1e-5
    )
    with pytest.raises(InputError, match="method"):
        combine_scores([a], method="median")
    with pytest.raises(InputError, match="weights"):
        combine_scores([a, b], [1.0, -1.0])


def test_ensemble_weights_favour_members_above_chance():
    w = ensemble_weights([0.9, 0.7, 0.5, float("nan")])
    assert sum(w) == pytest.approx(1.0) and w[0] == pytest.approx(2 * w[1]) and w[2] == w[3] > 0


def test_fit_slice_best_step_and_top_trials():
    assert list(fit_slice(5, 0)) == [0, 1, 2, 3, 4]
    s = fit_slice(10_000, 0)
    assert len(s) == 2048 and len(set(s)) == 2048 and list(s) == sorted(s)
    assert best_step([(1, 0.6), (2, 0.8), (3, 0.8), (4, float("nan"))]) == 2 and best_step([]) is None

    def row(family: str, auc: float, status: str = "FINISHED") -> TrialRow:
        return TrialRow(f"{family}{auc}", family, status, auc, 0.1, 1.0, {})

    rows = [row("a", 0.7), row("a", 0.9), row("a", 0.8), row("a", 0.95, "FAILED"), row("b", float("nan"))]
    assert [r.best_mAUC for r in top_trials(rows, 2)["a"]] == [0.9, 0.8] and "b" not in top_trials(rows, 2)


def test_clip_inputs_pads_cuts_rounds_and_reshapes():
    x = np.full((2, 3, 4), 300.0)
    out = clip_inputs(x, 5, 4)
    assert out.dtype == np.uint8 and out.shape == (2, 5, 4) and out[:, :3].min() == 255 and out[:, 3:].max() == 0
    assert clip_inputs(np.ones((1, 8, 4)), 5, 4).shape == (1, 5, 4)
    assert clip_inputs(np.arange(20).reshape(1, 20), 5, 4).shape == (1, 5, 4)  # flat rows
    with pytest.raises(InputError, match="input"):
        clip_inputs(np.ones((2, 3, 7)), 5, 4)
    assert unique_names(["a", "b", "a"]) == ["a [0]", "b", "a [2]"]


# -- real data, headless Chromium and `mlflow models serve` (slow) -----------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_real_data_finals_dashboard_in_chromium_and_served_model(workdir):
    """On the real AudioSet embeddings: a small search, finals on eval, the dashboard drawn in
    headless Chromium (screenshot), and a served registered model answering 527 scores."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    train, evald = require_shared(AUDIOSET / "bal_train"), require_shared(AUDIOSET / "eval")
    cmd = [sys.executable, "-m", "tagtune"]
    subprocess.run(
        cmd
        + [
            "search",
            "--train",
            str(train),
            "--families",
            "fc1,fc2",
            "--trials-per-family",
            "2",
            "--max-epochs",
            "3",
            "--experiment",
            "fin",
        ],
        check=True,
        capture_output=True,
    )
    done = subprocess.run(
        cmd + ["finalize", "--experiment", "fin", "--train", str(train), "--eval", str(evald), "--html", "report.html"],
        check=True,
        capture_output=True,
        text=True,
    )
    assert "eval_mAUC" in done.stdout and "| ensemble-mean |" in done.stdout and "mean_trial_s" in done.stdout

    shot = workdir / "report.png"
    subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={workdir / 'chrome'}",
            f"--screenshot={shot}",
            "--window-size=1400,6500",
            (workdir / "report.html").as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=180,
    )
    from PIL import Image

    img = np.asarray(Image.open(shot).convert("L"), dtype=np.uint8)
    coloured_rows = (img < 230).sum(axis=1) > 20  # rows with drawn content
    assert coloured_rows.mean() > 0.3, "the screenshot is mostly blank: figures were not drawn"

    port = _free_port()
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"sqlite:///{workdir / 'mlflow.db'}",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "models",
            "serve",
            "-m",
            "models:/fin-fc2/1",
            "--env-manager",
            "local",
            "-p",
            str(port),
            "--host",
            "127.0.0.1",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        clips = load_dataset(evald).x[:2].astype(int).tolist()
        body = json.dumps({"inputs": clips}).encode()
        answer = None
        for _ in range(90):
            try:
                req = urllib.request.Request(
                    f"http://127.0.0.1:{port}/invocations", data=body, headers={"Content-Type": "application/json"}
                )
                answer = json.load(urllib.request.urlopen(req, timeout=30))
                break
            except OSError:
                time.sleep(2)
        assert answer is not None, "mlflow models serve did not answer"
        preds = answer["predictions"]
        assert len(preds) == 2 and len(preds[0]) == 527 and "Speech" in preds[0]
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)

    out = subprocess.run(
        cmd + ["predict", "--model", "models:/fin-fc2/1", "--input", str(evald), "--top-k", "3"],
        check=True,
        capture_output=True,
        text=True,
    )
    first = json.loads(out.stdout.splitlines()[0])
    names = set(load_dataset(evald).class_names)
    assert len(first["labels"]) == 3 and all(lab["name"] in names for lab in first["labels"])


def _again(fin, **fields):
    """Another finalize of the shared search: its top final per family, not registered."""
    return FinalizeSpec(
        experiment="fin",
        train=str(fin.train),
        eval=str(fin.eval),
        top_k=1,
        tracking_uri=fin.uri,
        register=False,
        **fields,
    )


def test_finalize_again_versions_its_runs(fin):
    """A second finalize on the same search: its runs are version 2 (tag and name), the first
    finalize's runs are kept as version 1, and the report's finals are the newest ones.  (Last
    in this module: it adds finals to the shared search.)"""
    from tagtune.tracking import child_runs

    again = finalize(_again(fin), echo=lambda line: None)
    runs = child_runs(fin.client, fin.search.experiment_id, fin.search.parent_run_id)
    finals = [r for r in runs if r.data.tags.get(Tag.KIND) in ("final", "ensemble")]
    versions = {r.data.tags[Tag.FINALIZE_VERSION] for r in finals}
    assert versions == {"1", "2"}
    second = [r for r in finals if r.data.tags[Tag.FINALIZE_VERSION] == "2"]
    assert second and all(r.info.run_name.endswith(" v2") for r in second)
    assert set(again.finals["run_id"]) == {r.info.run_id for r in second if r.info.status == "FINISHED"}
    parent = fin.client.get_run(fin.search.parent_run_id)
    assert parent.data.tags[Tag.FINALIZE_VERSION] == "2"
    # each finalize is a run of its own under the search ("finals", "finals v2"), its finals and
    # ensembles nested under it, not beside the trials
    groups = {r.info.run_id: r for r in runs if r.data.tags.get(Tag.KIND) == "finalize"}
    assert sorted(g.info.run_name for g in groups.values()) == ["finals", "finals v2"]
    assert all(
        g.data.tags[Tag.PARENT] == fin.search.parent_run_id and g.info.status == "FINISHED" for g in groups.values()
    )
    for run in finals:
        group = groups[run.data.tags[Tag.PARENT]]
        assert group.data.tags[Tag.FINALIZE_VERSION] == run.data.tags[Tag.FINALIZE_VERSION]
    assert groups[next(iter(groups))].data.params["experiment"] == "fin"  # the finalize's spec as params


def test_a_seed_ensemble_final_and_a_killed_finalize_resumed_without_retraining(fin):
    """``--seeds 2``: each final is two models, each seed's eval scores and their spread logged,
    both checkpoints kept.  Then that finalize is 'killed' (its run and one final left RUNNING,
    as a SIGKILL leaves them) and run again: it continues as the same version, keeps the logged
    final, retrains only the unfinished one.  (After the versions test: adds finals.)"""
    from tagtune.tracking import child_runs

    spec = _again(fin, ensembles=False, seeds=2)
    first = finalize(spec, echo=lambda line: None)
    assert len(first.members) == 2 and all(len(m.checkpoints) == 2 for m in first.members)

    def version3():
        runs = child_runs(fin.client, fin.search.experiment_id, fin.search.parent_run_id)
        return [r for r in runs if r.data.tags.get(Tag.FINALIZE_VERSION) == "3"]

    finals = {r.data.tags[Tag.FAMILY]: r for r in version3() if r.data.tags.get(Tag.KIND) == "final"}
    kept, killed = finals["fc1"], finals["fc2"]
    m = kept.data.metrics
    assert {"eval_mAUC_seed0", "eval_mAUC_seed1", "eval_mAP_seed_std"} <= set(m)
    assert min(m["eval_mAUC_seed0"], m["eval_mAUC_seed1"]) - 0.05 <= m["eval_mAUC"]
    arts = {a.path for a in fin.client.list_artifacts(kept.info.run_id)}
    assert {"checkpoint", "checkpoint-seed1"} <= arts
    group = kept.data.tags[Tag.PARENT]
    fin.client.update_run(group, status="RUNNING")
    fin.client.update_run(killed.info.run_id, status="RUNNING")
    lines: list[str] = []
    again = finalize(spec, echo=lines.append)
    assert any("continuing the interrupted finalize v3" in line for line in lines)
    after = [r for r in version3() if r.data.tags.get(Tag.KIND) == "final"]
    by_id = {r.info.run_id: r for r in after}
    assert by_id[kept.info.run_id].info.status == "FINISHED" and by_id[killed.info.run_id].info.status == "KILLED"
    assert sorted(r.data.tags[Tag.FAMILY] for r in after if r.info.status == "FINISHED") == ["fc1", "fc2"]
    assert fin.client.get_run(group).info.status == "FINISHED"
    reused = next(m for m in again.members if m.family == "fc1")
    assert reused.run_id == kept.info.run_id
    assert reused.metrics["eval_mAUC"] == pytest.approx(m["eval_mAUC"], abs=1e-4)


def test_finals_try_techniques_on_validation_and_use_one_only_where_it_beats_the_trial(fin):
    """``--techniques ema,swa``: each final first trains both on the search's split; the final
    uses the best only where it beats the trial's val_mAUC, and logs every score.  (Last in the
    module: adds a finalize version.)"""
    spec = _again(fin, ensembles=False, techniques="ema,swa", resume=False)
    lines: list[str] = []
    outcome = finalize(spec, echo=lines.append)
    assert sum("techniques for" in line for line in lines) == 2
    for member in outcome.members:
        run = fin.client.get_run(member.run_id)
        params, used = run.data.params, run.data.tags[Tag.TECHNIQUE]
        scores = {k: float(params[f"technique_{k}_val_mAUC"]) for k in ("baseline", "ema", "swa")}
        assert scores["baseline"] == pytest.approx(member.source.best_mAUC, abs=1e-6)
        if used == "none":
            assert max(scores["ema"], scores["swa"]) <= scores["baseline"]
        else:
            assert scores[used] == max(scores.values()) and scores[used] > scores["baseline"]
            assert float(params["ema_decay" if used == "ema" else "swa_last"]) > 0
    with pytest.raises(InputError, match="--techniques: unknown cutmix"):
        FinalizeSpec(experiment="fin", train=str(fin.train), eval=str(fin.eval), techniques="ema,cutmix").check()
