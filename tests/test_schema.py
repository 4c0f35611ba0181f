"""The run schema: the search spec's params round-trip field by field, the tag keys old runs carry
keep their names, and every run opened through the lifecycle helper ends with the right status."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from mlflow import MlflowClient

from tagtune.search import CheckedSearchSpec
from tagtune.tracking import (
    NOT_PARAM,
    RunKind,
    SearchSpec,
    Tag,
    ended,
    kind_filter,
    open_run,
    reopen_run,
    search_spec,
)

# A value other than the default for every field of SearchSpec (paths absolute: they are recorded so).
NON_DEFAULT: dict[str, Any] = {
    "train": "/data/bal_train",
    "families": ["lstm", "gcnn"],
    "trials_per_family": 7,
    "max_epochs": 3,
    "experiment": "other",
    "tracking_uri": "sqlite:////tmp/other.db",
    "seed": 11,
    "val_fraction": 0.35,
    "cpus_per_trial": 0.5,
    "gpus_per_trial": 0.25,
    "max_concurrent": 4,
    "address": "10.0.0.1:6379",
    "storage_path": "/mnt/shared/runs",
    "spaces_dir": "/home/me/spaces",
    "max_failures": 3,
    "defaults_first": False,
    "scheduler": "hyperband",
    "grace_period": 1,
    "reduction_factor": 4.0,
    "milestone_metric": "val_mAUC",
    "curve_grace": False,
    "patience": 3,
    "goal": "best",
    "time_budget": 2700.0,
    "warm_start": "earlier",
    "sampler": "random",
    "feature_key": "embedding",
    "label_key": "target",
    "group_key": "speaker",
    "task": "multiclass",
    "optuna_storage": "postgresql://u@db:5432/optuna",
    "portfolio": "packaged",
    "spaces": {"lstm": object()},
    "first_configs": {"lstm": [{"lr": 1e-3}]},
}
# optuna_storage: a tag with any password hidden (tagtune.optuna_storage), not a param
# spaces, first_configs: read from spaces_dir and portfolio by the search's checks
NOT_RECORDED = {"experiment", "tracking_uri", "address", "spaces", "optuna_storage", "first_configs"}


def _run(params: dict[str, str]) -> Any:
    """A stand-in for an MLflow run with these params."""
    return SimpleNamespace(data=SimpleNamespace(params=params, tags={}))


def test_non_default_values_cover_every_field():
    assert set(NON_DEFAULT) == {f.name for f in dataclasses.fields(SearchSpec)}
    defaults = SearchSpec(train="x", families=["fc1"])
    for name, value in NON_DEFAULT.items():
        assert getattr(defaults, name) != value, name


@pytest.mark.parametrize("name", sorted(set(NON_DEFAULT) - NOT_RECORDED))
def test_every_param_field_survives_to_params_from_params(name):
    spec = SearchSpec(**{"train": "/data/x", "families": ["fc1"], "storage_path": "/runs", name: NON_DEFAULT[name]})
    params = spec.to_params()
    assert all(isinstance(v, str) for v in params.values())  # as MLflow keeps them
    back = SearchSpec.from_params(params)
    assert getattr(back, name) == NON_DEFAULT[name]
    assert back == spec


def test_every_field_is_a_param_or_marked_not_one():
    spec = SearchSpec(**NON_DEFAULT)
    params = spec.to_params()
    for f in dataclasses.fields(SearchSpec):
        if f.name in NOT_RECORDED:
            assert f.metadata == NOT_PARAM, f"{f.name} is recorded but should not be"
            assert f.name not in params
        else:
            assert f.metadata.get("param", True) is True and f.name in params, f.name


def test_paths_are_recorded_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    params = SearchSpec(train="synth", families=["fc1"], spaces_dir="spaces", storage_path="runs").to_params()
    assert (params["train"], params["spaces_dir"], params["storage_path"]) == (
        str(tmp_path / "synth"),
        str(tmp_path / "spaces"),
        str(tmp_path / "runs"),
    )
    remote = SearchSpec(train="synth", families=["fc1"], storage_path="s3://bucket/runs").to_params()
    assert remote["storage_path"] == "s3://bucket/runs" and remote["spaces_dir"] == ""


def test_search_spec_of_an_older_run_gets_defaults_for_missing_params():
    # what a search logged before max_failures, defaults_first, spaces_dir and storage_path existed
    old = {
        "train": "/data/x",
        "families": "fc1,fc2",
        "trials_per_family": "2",
        "max_epochs": "3",
        "seed": "5",
        "val_fraction": "0.25",
        "cpus_per_trial": "1.0",
        "gpus_per_trial": "0.0",
        "max_concurrent": "",
        "n_train": "300",
        "n_val": "100",
        "n_classes": "12",
    }
    spec = search_spec(_run(old))
    assert (spec.train, spec.families, spec.seed, spec.val_fraction) == ("/data/x", ["fc1", "fc2"], 5, 0.25)
    assert spec.spaces_dir is None and spec.max_concurrent is None
    assert (spec.max_failures, spec.defaults_first, spec.storage_path) == (1, True, "tagtune-runs")
    resumed = search_spec(_run(old), experiment="e", address="h:1")
    assert (resumed.experiment, resumed.address) == ("e", "h:1")


def test_the_search_side_spec_round_trips_as_itself():
    spec = CheckedSearchSpec(train="/data/x", families=["fc1"], spaces_dir="/s", storage_path="/runs")
    back = CheckedSearchSpec.from_params(spec.to_params())
    assert type(back) is CheckedSearchSpec and back == spec
    assert back.total_trials == 4


def test_bad_numbers_are_input_errors_naming_the_flag():
    from tagtune.errors import InputError

    for field, value, flag in [
        ("trials_per_family", 0, "--trials-per-family"),
        ("max_epochs", 0, "--max-epochs"),
        ("val_fraction", 1.0, "--val-fraction"),
        ("cpus_per_trial", 0, "--cpus-per-trial"),
        ("gpus_per_trial", -1, "--gpus-per-trial"),
        ("max_concurrent", 0, "--max-concurrent"),
        ("max_failures", -1, "--max-failures"),
        ("families", [], "--families"),
    ]:
        with pytest.raises(InputError, match=flag):
            SearchSpec(**{"train": "x", "families": ["fc1"], field: value}).validate()


def test_tag_keys_and_kinds_keep_the_names_stored_runs_carry():
    assert (Tag.PARENT, Tag.KIND, Tag.FAMILY, Tag.TRIAL_ID) == (
        "mlflow.parentRunId",
        "tagtune.kind",
        "tagtune.family",
        "tagtune.trial_id",
    )
    assert (Tag.RAY_PATH, Tag.OPTUNA_STORAGE, Tag.ERROR, Tag.RETRIES) == (
        "tagtune.ray_path",
        "tagtune.optuna_storage",
        "tagtune.error",
        "tagtune.retries",
    )
    assert [str(k) for k in RunKind] == ["search", "trial", "lost", "final", "ensemble", "finalize", "train", "repeat"]
    from tagtune.tracking._store import TAG_FAMILY, TAG_KIND, TAG_PARENT, TAG_TRIAL  # the old names

    assert (TAG_FAMILY, TAG_KIND, TAG_PARENT, TAG_TRIAL) == (Tag.FAMILY, Tag.KIND, Tag.PARENT, Tag.TRIAL_ID)


@pytest.fixture
def client(tmp_path: Path) -> tuple[MlflowClient, str]:
    store = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    return store, store.create_experiment("schema", artifact_location=(tmp_path / "art").as_uri())


def test_open_run_ends_finished_failed_or_killed(client):
    store, exp_id = client
    with open_run(
        store, exp_id, kind=RunKind.TRAIN, run_name="ok", tags={Tag.FAMILY: "fc1"}, params={"lr": 0.1}
    ) as run:
        run.log(metrics={"val_mAUC": 0.5}, step=1)
    done = store.get_run(run.run_id)
    assert done.info.status == "FINISHED" and done.data.params == {"lr": "0.1"}
    assert done.data.tags[Tag.KIND] == "train" and done.data.tags[Tag.FAMILY] == "fc1"

    with pytest.raises(ZeroDivisionError), open_run(store, exp_id, kind=RunKind.TRAIN, run_name="err") as run:
        1 / 0  # noqa: B018
    assert store.get_run(run.run_id).info.status == "FAILED"

    with pytest.raises(KeyboardInterrupt), open_run(store, exp_id, kind=RunKind.SEARCH, run_name="c") as run:
        raise KeyboardInterrupt
    assert store.get_run(run.run_id).info.status == "KILLED"

    with open_run(store, exp_id, kind=RunKind.TRIAL, run_name="nan", parent_run_id=run.run_id) as child:
        child.fail("loss became nan")
    failed = store.get_run(child.run_id)
    assert failed.info.status == "FAILED" and failed.data.tags[Tag.ERROR] == "loss became nan"
    assert failed.data.tags[Tag.PARENT] == run.run_id
    assert [r.info.run_id for r in store.search_runs([exp_id], kind_filter(RunKind.SEARCH))] == [run.run_id]


def test_reopen_run_and_ended_end_an_existing_run(client):
    store, exp_id = client
    with open_run(store, exp_id, kind=RunKind.SEARCH, run_name="s") as run:
        pass
    with reopen_run(store, run.run_id):
        assert store.get_run(run.run_id).info.status == "RUNNING"
    assert store.get_run(run.run_id).info.status == "FINISHED"
    with pytest.raises(RuntimeError), ended(store, run.run_id):
        raise RuntimeError("boom")
    assert store.get_run(run.run_id).info.status == "FAILED"
