"""`tagtune repeat`: a search's best configs trained again with other seeds, and the report's
seed-spread table."""

from __future__ import annotations

import pytest
from mlflow import MlflowClient

from tagtune.cli import main
from tagtune.commands import report
from tagtune.errors import InputError
from tagtune.repeat import repeat_best, repeat_seeds
from tagtune.search import run_search
from tagtune.tracking import RunKind, Tag, parent_filter, run_kind


def test_repeat_seeds_step_from_the_trials_seed():
    assert repeat_seeds(3, 2) == [1003, 2003]


def test_the_best_configs_are_repeated_with_other_seeds_once_and_the_report_shows_their_spread(
    ray_local, search_spec, workdir
):
    spec = search_spec(families=["fc1"], trials_per_family=2, max_epochs=2, experiment="rep", seed=3, scheduler="none")
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


def test_bad_repeat_flags_exit_2_naming_them(workdir, capsys):
    with pytest.raises(InputError, match="--top-k and --seeds"):
        repeat_best("nothing", None, top_k=0)
    assert main(["repeat", "--experiment", "missing"]) == 2
    assert "no experiment named 'missing'" in capsys.readouterr().err
