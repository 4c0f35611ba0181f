"""Resume after the driver is SIGKILLed mid-search: the budget is finished, nothing is lost or duplicated."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient

from tagtune.tracking import RunKind, Tag, kind_filter, parent_filter
from tagtune.trainables.data import synthesize

BUDGET_PER_FAMILY = 3
FAMILIES = ("fc2", "gcnn")


def tagtune_cli(*args: str, cwd: Path, **kw) -> subprocess.Popen:
    env = {**os.environ, "TAGTUNE_CACHE_DIR": str(cwd / "cache")}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.Popen(
        [sys.executable, "-m", "tagtune", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        **kw,
    )


def _children(client: MlflowClient):
    exp = client.get_experiment_by_name("r")
    if exp is None:
        return []
    parents = client.search_runs([exp.experiment_id], filter_string=kind_filter(RunKind.SEARCH))
    if not parents:
        return []
    return client.search_runs([exp.experiment_id], filter_string=parent_filter(parents[0].info.run_id))


@pytest.mark.slow
def test_resume_after_sigkill_finishes_budget_without_duplicates(tmp_path):
    synthesize(tmp_path / "synth", n_clips=1500, n_classes=16, seed=2)
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    proc = tagtune_cli(
        "search",
        "--train",
        "synth",
        "--families",
        ",".join(FAMILIES),
        "--trials-per-family",
        str(BUDGET_PER_FAMILY),
        "--max-epochs",
        "4",
        "--experiment",
        "r",
        "--max-concurrent",
        "1",
        cwd=tmp_path,
    )
    deadline = time.time() + 240
    finished_before: set[str] = set()
    while time.time() < deadline:
        time.sleep(1.0)
        if (tmp_path / "mlflow.db").exists():
            finished_before = {r.info.run_id for r in _children(client) if r.info.status == "FINISHED"}
        if len(finished_before) >= 2 or proc.poll() is not None:
            break
    assert proc.poll() is None, f"search ended before it could be killed:\n{proc.stdout.read()}"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    budget = BUDGET_PER_FAMILY * len(FAMILIES)
    assert 2 <= len(finished_before) < budget

    resumed = tagtune_cli("resume", "--experiment", "r", cwd=tmp_path)
    out, _ = resumed.communicate(timeout=400)
    assert resumed.returncode == 0, out

    children = _children(client)
    # a trial started just before the kill but after Ray's last state snapshot is not restored:
    # its run is kept, marked KILLED and of kind "lost", and a replacement trial runs
    lost = [r for r in children if r.data.tags.get(Tag.KIND) == RunKind.LOST]
    assert all(r.info.status == "KILLED" and "replacement" in r.data.tags[Tag.ERROR] for r in lost)
    runs = [r for r in children if r.data.tags.get(Tag.KIND) != RunKind.LOST]
    trial_ids = [r.data.tags[Tag.TRIAL_ID] for r in runs]
    assert len(runs) == budget, [(r.data.tags[Tag.TRIAL_ID], r.info.status) for r in runs]
    assert len(set(trial_ids)) == budget  # one run per trial: no duplicates
    assert all(r.info.status == "FINISHED" for r in runs)
    assert Counter(r.data.tags[Tag.FAMILY] for r in runs) == {f: BUDGET_PER_FAMILY for f in FAMILIES}
    assert finished_before <= {r.info.run_id for r in runs}  # nothing finished before is lost
    print(f"runs of trials lost with the driver: {len(lost)}")
    exp = client.get_experiment_by_name("r")
    parents = client.search_runs([exp.experiment_id], filter_string=kind_filter(RunKind.SEARCH))
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"  # the same parent run
    storage = parents[0].data.tags[Tag.OPTUNA_STORAGE]
    for summary in optuna.get_all_study_summaries(storage):
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        # with the default early stopping some trials end PRUNED (stopped at a rung), not COMPLETE
        told = [
            t for t in study.trials if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
        ]
        assert len(told) >= BUDGET_PER_FAMILY, summary.study_name
        # every run names its Optuna trial, and that trial names the run, resumed ones included
        named = {t.user_attrs.get("mlflow_run_id"): t.number for t in study.trials}
        for run in runs:
            if run.data.tags[Tag.OPTUNA_STUDY] == summary.study_name:
                assert named.get(run.info.run_id) == int(run.data.tags[Tag.OPTUNA_TRIAL]), run.data.tags
    assert all(Tag.OPTUNA_STUDY in r.data.tags and Tag.OPTUNA_TRIAL in r.data.tags for r in runs)
    stopped = [r for r in runs if r.data.tags.get(Tag.STOPPED_EARLY) == "True"]
    for run in stopped:  # never run past its stop: its last logged epoch is the stop's
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_mAUC")]
        assert max(steps) == int(run.data.tags[Tag.STOPPED_AT_EPOCH])
    print(
        f"resume check: {len(finished_before)} finished before the kill, "
        f"{budget - len(finished_before)} after, {len(runs)} runs for a budget of {budget}"
    )


def test_resume_rebuilds_the_spec_from_the_parent_run_and_reuses_it(ray_local, search_spec, workdir):
    """In-process: the recorded params give back the spec, and resuming a finished search reopens
    the same parent run, ends it FINISHED and adds no run."""
    from tagtune.search import resume_search, run_search
    from tagtune.tracking import search_spec as recorded_spec

    spec = search_spec(experiment="again", max_concurrent=1, max_failures=2)
    outcome = run_search(spec, echo=lambda line: None)
    client = MlflowClient(outcome.tracking_uri)
    parent = client.get_run(outcome.parent_run_id)
    rebuilt = recorded_spec(parent, experiment="again")
    assert rebuilt.to_params() == spec.to_params() and rebuilt.experiment == "again"
    assert (rebuilt.max_concurrent, rebuilt.max_failures, rebuilt.storage_path) == (1, 2, spec.storage_path)
    before = {r.info.run_id for r in client.search_runs([outcome.experiment_id])}

    again = resume_search("again", None, echo=lambda line: None)
    assert again.parent_run_id == outcome.parent_run_id
    assert client.get_run(outcome.parent_run_id).info.status == "FINISHED"
    assert {r.info.run_id for r in client.search_runs([outcome.experiment_id])} == before
