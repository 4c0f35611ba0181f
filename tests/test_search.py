"""One real small search through Ray Tune, Optuna and MLflow, then report, export and train."""

from __future__ import annotations

import math

import pytest
import yaml
from mlflow import MlflowClient

from tagtune.commands import export, report, train
from tagtune.repeat import repeat_best
from tagtune.search import CheckedSearchSpec, run_search
from tagtune.tracking import RunKind, Tag, parent_filter, run_kind
from tagtune.tracking import search_spec as recorded_spec
from tagtune.trainables.config import resolve_config
from tagtune.trainables.data import synthesize


def _children(client: MlflowClient, exp_id: str, parent_id: str):
    return client.search_runs([exp_id], filter_string=parent_filter(parent_id))


def _search_by_family(spec: CheckedSearchSpec):
    """Run the search; its outcome, an MLflow client and its trial runs by family (one each)."""
    outcome = run_search(spec, echo=lambda line: None)
    client = MlflowClient(outcome.tracking_uri)
    runs = {r.data.tags[Tag.FAMILY]: r for r in _children(client, outcome.experiment_id, outcome.parent_run_id)}
    return outcome, client, runs


def test_search_logs_every_trial_and_reports_per_family(ray_local, search_spec, tiny_train, workdir):
    spec = search_spec(families=["fc1", "gcnn"], trials_per_family=2, max_epochs=2, experiment="t", seed=3)
    outcome = run_search(spec, echo=lambda line: None)
    assert outcome.tracking_uri == f"sqlite:///{workdir / 'mlflow.db'}"
    client = MlflowClient(outcome.tracking_uri)
    parent = client.get_run(outcome.parent_run_id)
    assert parent.info.status == "FINISHED"
    runs = _children(client, outcome.experiment_id, outcome.parent_run_id)
    assert sorted(r.data.tags[Tag.FAMILY] for r in runs) == ["fc1", "fc1", "gcnn", "gcnn"]
    for run in runs:
        assert run.info.status == "FINISHED"
        assert run.data.params["family"] == run.data.tags[Tag.FAMILY]
        assert {"lr", "batch_size", "optimizer", "seed", "grad_clip"} <= set(run.data.params)
        for key in ("val_mAUC", "val_mAP", "val_dprime", "val_loss", "train_loss", "epoch_seconds"):
            history = client.get_metric_history(run.info.run_id, key)
            assert [m.step for m in history] == [1, 2], key
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "checkpoint")}
        assert artifacts == {"checkpoint/model.pt", "checkpoint/model.json"}
        # the checkpoint is a logged model the run names as its output (the run page lists it)
        (output,) = run.outputs.model_outputs
        model = client.get_logged_model(output.model_id)
        assert model.source_run_id == run.info.run_id and model.tags[Tag.FAMILY] == run.data.tags[Tag.FAMILY]
    for family in ("fc1", "gcnn"):  # each family's first trial runs its registered defaults
        defaults = resolve_config({"family": family})
        firsts = [
            r
            for r in runs
            if r.data.tags[Tag.FAMILY] == family
            and all(r.data.params[k] == str(defaults[k]) for k in ("lr", "batch_size", "dropout"))
        ]
        assert len(firsts) == 1, family
        tagged = [r for r in runs if r.data.tags[Tag.FAMILY] == family and r.data.tags.get(Tag.FIRST_TRIAL) == "True"]
        assert [r.info.run_id for r in tagged] == [firsts[0].info.run_id], family

    markdown, table = report("t", None)
    assert list(table["family"]).count("fc1") == 1 and len(table) == 2
    assert (table["trials"] == 2).all() and (table["completed"] == 2).all()
    best_by_family: dict[str, list[float]] = {}
    for run in runs:  # the report's max is the best epoch of the family's best trial, as logged
        history = client.get_metric_history(run.info.run_id, "val_mAUC")
        best_by_family.setdefault(run.data.tags[Tag.FAMILY], []).append(max(m.value for m in history))
    for family, bests in best_by_family.items():
        row = table.set_index("family").loc[family]
        assert math.isclose(row["max_mAUC"], max(bests), abs_tol=1e-6), (family, bests)
        assert math.isclose(row["min_mAUC"], min(bests), abs_tol=1e-6), (family, bests)
    assert (table["min_mAUC"] <= table["mean_mAUC"]).all() and (table["mean_mAUC"] <= table["max_mAUC"]).all()
    assert "| fc1 |" in markdown
    logged = {a.path for a in client.list_artifacts(outcome.parent_run_id, "report")}
    assert logged == {"report/family_summary.csv", "report/family_summary.md"}

    paths = export("t", None, str(workdir / "best"))
    assert sorted(p.name for p in paths) == ["fc1.yaml", "gcnn.yaml"]
    doc = yaml.safe_load(paths[0].read_text())
    assert doc["family"] == "fc1" and isinstance(doc["config"]["lr"], float)
    best_fc1 = table.set_index("family").loc["fc1", "max_mAUC"]
    assert math.isclose(doc["source"]["val_mAUC"], best_fc1, abs_tol=1e-6)

    run_id, best = train(
        str(paths[0]), str(tiny_train), max_epochs=1, experiment="retrain", tracking_uri=None, echo=lambda line: None
    )
    retrained = client.get_run(run_id)
    assert retrained.info.status == "FINISHED" and retrained.data.params["lr"] == str(doc["config"]["lr"])
    history = [m.value for m in client.get_metric_history(run_id, "val_mAUC")]
    assert len(history) == 1 and math.isclose(best["val_mAUC"], history[0], abs_tol=1e-6)  # returned = logged


def test_a_portfolios_configs_run_first_and_the_report_counts_the_rest_as_sampled(ray_local, search_spec, workdir):
    portfolio = workdir / "portfolio.yaml"
    portfolio.write_text(
        "fc1:\n- {name: a, params: {lr: 0.002, dropout: 0.1}}\n- {name: b, params: {lr: 0.0007, dropout: 0.3}}\n"
    )
    spec = search_spec(families=["fc1"], trials_per_family=3, max_epochs=1, experiment="pf", portfolio=str(portfolio))
    outcome = run_search(spec, echo=lambda line: None)
    runs = _children(MlflowClient(outcome.tracking_uri), outcome.experiment_id, outcome.parent_run_id)
    firsts = sorted(float(r.data.params["lr"]) for r in runs if r.data.tags.get(Tag.FIRST_TRIAL) == "True")
    assert firsts == [0.0007, 0.002] and len(runs) == 3
    markdown, _ = report("pf", None)
    health = markdown[markdown.index("How the search went") :]
    assert "| fc1 | 1 |" in health  # one sampled trial, not two


def test_diverging_trial_is_isolated_and_counted(ray_local, search_spec, workdir):
    spaces = workdir / "spaces"
    spaces.mkdir()
    (spaces / "common.yaml").write_text(
        "params:\n  optimizer: {value: sgd}\n  momentum: {value: 0.99}\n  batch_size: {value: 32}\n"
    )
    # the largest lr the config allows, and weight decay that makes SGD's steps grow: the loss
    # overflows to NaN in epoch 2
    (spaces / "fc2.yaml").write_text("params:\n  lr: {choices: [10.0]}\n  weight_decay: {value: 1.0}\n")
    (spaces / "fc1.yaml").write_text("params:\n  lr: {value: 0.01}\n")
    spec = search_spec(families=["fc2", "fc1"], max_epochs=2, experiment="nan", spaces_dir=str(spaces))
    outcome, client, runs = _search_by_family(spec)
    # the search records its spaces (absolute), so the report reads the spaces it searched
    assert recorded_spec(client.get_run(outcome.parent_run_id)).spaces_dir == str(spaces.resolve())
    assert runs["fc2"].info.status == "FAILED"
    assert "loss became" in runs["fc2"].data.tags[Tag.ERROR]
    assert runs["fc1"].info.status == "FINISHED"
    _, table = report("nan", None)
    row = table.set_index("family").loc["fc2"]
    assert (row["trials"], row["completed"], row["failed"]) == (1, 0, 1)


@pytest.mark.slow
def test_two_node_cluster_places_trials_on_both_nodes(search_spec, workdir):
    import ray
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    try:
        # trials long enough (seconds) that both nodes' workers are busy at once: with reused
        # actors, a trial shorter than a worker's start-up would all run on the first node
        data = synthesize(workdir / "big", n_clips=3000, n_classes=12, seed=1)
        spec = search_spec(
            train=str(data),
            families=["fc2", "gcnn"],
            trials_per_family=3,
            max_epochs=6,
            experiment="two-nodes",
            address=cluster.address,
        )
        outcome = run_search(spec, echo=lambda line: None)
        client = MlflowClient(outcome.tracking_uri)
        runs = _children(client, outcome.experiment_id, outcome.parent_run_id)
        assert len(runs) == 6 and all(r.info.status == "FINISHED" for r in runs)
        nodes = {r.data.tags[Tag.NODE_ID] for r in runs}
        assert nodes == {n["NodeID"] for n in ray.nodes() if n["Alive"]}
        assert len(nodes) == 2
    finally:
        ray.shutdown()
        cluster.shutdown()


def test_binary_task_reports_f1(ray_local, search_spec, tiny_train, workdir):
    from tagtune.trainables.data import load_dataset

    target = load_dataset(tiny_train).class_names[0]
    spaces = workdir / "spaces"
    spaces.mkdir()
    (spaces / "common.yaml").write_text(f"params:\n  target_class: {{value: '{target}'}}\n  lr: {{value: 0.01}}\n")
    spec = search_spec(max_epochs=2, experiment="binary", spaces_dir=str(spaces))
    run_search(spec, echo=lambda line: None)
    _, table = report("binary", None)
    assert "best_f1" in table.columns
    assert 0.0 < table.loc[0, "best_f1"] <= 1.0


def test_raising_trial_is_failed_with_reason_and_search_goes_on(ray_local, search_spec, workdir):
    spaces = workdir / "spaces"
    spaces.mkdir()
    # A value the space and the config accept, which only the data refuses: 3 heads do not divide
    # the 128-d frames, so the trial raises when it builds its model.
    (spaces / "transformer.yaml").write_text("params:\n  heads: {value: 3}\n  layers: {value: 1}\n")
    spec = search_spec(families=["transformer", "fc1"], experiment="raise", spaces_dir=str(spaces), max_failures=0)
    outcome, client, runs = _search_by_family(spec)
    assert runs["transformer"].info.status == "FAILED"
    assert "heads must divide the frame width 128" in runs["transformer"].data.tags[Tag.ERROR]
    assert runs["fc1"].info.status == "FINISHED"
    import optuna

    storage = client.get_run(outcome.parent_run_id).data.tags[Tag.OPTUNA_STORAGE]
    states = {
        s.study_name.rsplit("/", 1)[1]: optuna.load_study(study_name=s.study_name, storage=storage).trials[0].state
        for s in optuna.get_all_study_summaries(storage)
    }
    assert states == {"transformer": optuna.trial.TrialState.FAIL, "fc1": optuna.trial.TrialState.COMPLETE}


def test_killed_worker_gets_the_trial_retried(ray_local, search_spec, workdir, monkeypatch):
    from tagtune.tune.trainable import FAULT_ENV

    marker = workdir / "killed-once"
    monkeypatch.setenv(FAULT_ENV, str(marker))
    import ray

    ray.shutdown()  # workers inherit the environment from a fresh local Ray
    spec = search_spec(max_epochs=2, experiment="killed", max_failures=1)
    outcome = run_search(spec, echo=lambda line: None)
    ray.shutdown()
    assert marker.exists()  # the worker was killed once
    client = MlflowClient(outcome.tracking_uri)
    (run,) = _children(client, outcome.experiment_id, outcome.parent_run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags.get(Tag.RETRIES) == "1"


def test_defaults_first_flag_reaches_the_spec_and_survives_resume():
    from tagtune.cli import build_parser, search_spec_from_args

    args = build_parser().parse_args(["search", "--train", "x", "--no-defaults-first"])
    assert args.defaults_first is False
    assert search_spec_from_args(args).defaults_first is False
    assert build_parser().parse_args(["search", "--train", "x"]).defaults_first is True
    for first in (True, False):
        spec = CheckedSearchSpec(train="x", families=["fc1"], defaults_first=first)
        logged = {k: str(v) for k, v in spec.to_params().items()}  # as MLflow keeps them
        resumed = CheckedSearchSpec.from_params(logged, experiment="e", tracking_uri="sqlite:///m.db")
        assert resumed.defaults_first is first


def test_ray_adapter_reaches_optuna_search_study():
    """Fails with the adapter's message when a Ray upgrade moves OptunaSearch's private study."""
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    from tagtune.tune._ray_compat import RAY_VERSIONS_CHECKED, optuna_study

    searcher = OptunaSearch(
        space=lambda trial: {"x": trial.suggest_float("x", 0.0, 1.0)},
        metric="m",
        mode="max",
        study_name="adapter",
        storage=None,
    )
    assert isinstance(optuna_study(searcher), optuna.Study), (
        f"OptunaSearch no longer keeps its study in _ot_study (checked against Ray {RAY_VERSIONS_CHECKED})"
    )
    with pytest.raises(RuntimeError, match="_ray_compat"):
        optuna_study(object())  # type: ignore[arg-type]


def test_the_best_configs_are_repeated_with_other_seeds_once_and_the_report_shows_their_spread(
    ray_local, search_spec, workdir
):
    spec = search_spec(families=["fc1"], trials_per_family=2, max_epochs=1, experiment="rep", seed=3, scheduler="none")
    outcome = run_search(spec, echo=lambda line: None)
    lines: list[str] = []
    ids = repeat_best("rep", None, top_k=1, seeds=2, echo=lines.append)
    assert len(ids) == 2 and "repeating 2 trainings" in lines[0]
    client = MlflowClient(outcome.tracking_uri)
    children = client.search_runs([outcome.experiment_id], filter_string=parent_filter(outcome.parent_run_id))
    trials = [r for r in children if run_kind(r) == RunKind.TRIAL.value]
    repeats = [r for r in children if run_kind(r) == RunKind.REPEAT.value]
    best = max(trials, key=lambda r: r.data.metrics["best_val_mAUC"])
    assert sorted(r.data.params["seed"] for r in repeats) == ["1003", "2003"]
    assert all(r.data.tags[Tag.REPEAT_OF] == best.info.run_id and r.info.status == "FINISHED" for r in repeats)
    assert all(r.data.params["lr"] == best.data.params["lr"] for r in repeats)  # the same config
    assert repeat_best("rep", None, top_k=1, seeds=2, echo=lines.append) == []  # all logged: nothing new
    markdown, table = report("rep", None, log=False)
    assert (table["trials"] == 2).all()  # repeats are not trials
    spread = markdown[markdown.index("Seed spread") :]
    assert f"| fc1 | {best.info.run_id[:8]} | 3 |" in spread  # the trial and its two repeats
