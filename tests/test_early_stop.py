"""Early stopping, time budgets and warm starts through a real search (Ray Tune, Optuna, MLflow)."""

from __future__ import annotations

import shutil
from collections import Counter

import optuna
from mlflow import MlflowClient

from tagtune.commands import report
from tagtune.search import resume_search, run_search
from tagtune.search_spaces import DEFAULT_DIR
from tagtune.tracking import Tag, parent_filter


def _runs(outcome):
    client = MlflowClient(outcome.tracking_uri)
    return client, client.search_runs([outcome.experiment_id], filter_string=parent_filter(outcome.parent_run_id))


def _study(client, outcome, family):
    storage = client.get_run(outcome.parent_run_id).data.tags[Tag.OPTUNA_STORAGE]
    name = next(s.study_name for s in optuna.get_all_study_summaries(storage) if s.study_name.endswith("/" + family))
    return optuna.load_study(study_name=name, storage=storage)


def test_a_stopped_trial_is_pruned_in_optuna_tagged_in_mlflow_and_counted(ray_local, search_spec):
    spec = search_spec(
        families=["fc1"],
        trials_per_family=5,
        max_epochs=3,
        max_concurrent=1,
        scheduler="asha",
        grace_period=1,
        reduction_factor=2,
        experiment="es",
        seed=4,
        # the rung's cutoff alone, on random configs: with the curve grace and the guided sampler,
        # on TAGTUNE_TEST_SEED=7's data every trial beat the ones before it and none was stopped
        # (this test is about the bookkeeping of a stop, not about when one happens)
        curve_grace=False,
        sampler="random",
    )
    outcome = run_search(spec, echo=lambda line: None)
    client, runs = _runs(outcome)
    assert len(runs) == 5 and all(r.info.status == "FINISHED" for r in runs)
    stopped = [r for r in runs if r.data.tags.get(Tag.STOPPED_EARLY) == "True"]
    assert stopped, "no trial was stopped: pick another seed"
    study = _study(client, outcome, "fc1")
    by_lr = {repr(t.params.get("lr", "")): t for t in study.trials}
    for run in runs:
        trial = by_lr[repr(float(run.data.params["lr"]))]
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_mAUC")]
        if run in stopped:
            epoch = int(run.data.tags[Tag.STOPPED_AT_EPOCH])
            assert epoch < 3 and steps == list(range(1, epoch + 1))  # its metrics up to the stop stay
            assert run.data.tags[Tag.STOPPED_BY] == "asha(grace 1, rf 2, best_val_mAUC)"
            assert trial.state == optuna.trial.TrialState.PRUNED
            assert sorted(trial.intermediate_values) == list(range(1, epoch + 1))
        else:
            assert Tag.STOPPED_EARLY not in run.data.tags and steps == [1, 2, 3]
            assert trial.state == optuna.trial.TrialState.COMPLETE
    _, table = report("es", None)
    row = table.iloc[0]
    assert (row["stopped"], row["completed"], row["trials"]) == (len(stopped), 5 - len(stopped), 5)
    full = [float(r.data.metrics["best_val_mAUC"]) for r in runs if r not in stopped]
    assert abs(row["mean_mAUC"] - sum(full) / len(full)) < 1e-9  # mean over the completed trials only

    # resume of the finished search with its scheduler: nothing re-runs, no run is added
    before = {r.info.run_id: r.info.status for r in runs}
    resume_search("es", None, echo=lambda line: None)
    _, after = _runs(outcome)
    assert {r.info.run_id: r.info.status for r in after} == before


def test_the_time_budget_ends_the_search_with_every_run_closed(ray_local, search_spec):
    lines: list[str] = []
    spec = search_spec(
        families=["fc1", "fc2"],
        trials_per_family=None,
        time_budget=25.0,
        max_epochs=400,
        scheduler="none",
        experiment="budget",
    )
    outcome = run_search(spec, echo=lines.append)
    client, runs = _runs(outcome)
    assert runs and all(r.info.status in ("FINISHED", "FAILED") for r in runs)  # none left RUNNING
    counts = Counter(r.data.tags[Tag.FAMILY] for r in runs)
    # round-robin shares (on a loaded machine the budget can end before fc2's first trial starts)
    assert set(counts) <= {"fc1", "fc2"} and abs(counts["fc1"] - counts["fc2"]) <= 1
    cut = [r for r in runs if r.data.tags.get(Tag.STOPPED_BY) == "time budget"]
    assert cut  # the running trials stopped at an epoch boundary, recorded
    for run in cut:
        epoch = int(run.data.tags[Tag.STOPPED_AT_EPOCH])
        assert [m.step for m in client.get_metric_history(run.info.run_id, "val_mAUC")][-1] == epoch
    assert outcome.wall_seconds < 25.0 + 60.0
    markdown, _ = report("budget", None)
    assert "Anytime view" in markdown and "| all |" in markdown


def test_a_warm_start_adds_the_earlier_trials_and_drops_what_the_space_lacks(ray_local, search_spec, workdir):
    first = run_search(
        search_spec(families=["fc1"], trials_per_family=2, max_epochs=1, experiment="w1"), echo=lambda line: None
    )
    spaces = workdir / "spaces"
    shutil.copytree(DEFAULT_DIR, spaces)
    (spaces / "fc1.yaml").write_text("params:\n  dropout: null\n")  # today's fc1 no longer searches dropout
    lines: list[str] = []
    second = run_search(
        search_spec(
            families=["fc1"],
            trials_per_family=1,
            max_epochs=1,
            experiment="w2",
            warm_start="w1",
            spaces_dir=str(spaces),
        ),
        echo=lines.append,
    )
    client = MlflowClient(second.tracking_uri)
    study = _study(client, second, "fc1")
    warm = [t for t in study.trials if "tagtune_warm_start_run" in t.user_attrs]
    assert len(warm) == 2 and len(study.trials) == 3
    assert all(t.state == optuna.trial.TrialState.COMPLETE and "dropout" not in t.params for t in warm)
    assert any("warm start from w1" in line and "fc1 2" in line for line in lines)
    assert any(line.startswith("warm start: dropped") and "dropout (2 trials)" in line for line in lines)
    assert client.get_run(second.parent_run_id).data.tags[Tag.WARM_START].startswith(f"w1:{first.parent_run_id}")
