"""Early stopping per family, Optuna told PRUNED, the time budget: FamilyScheduler and
FamilySearcher driven the way Ray Tune's controller drives them, with real Optuna studies."""

from __future__ import annotations

import time
from typing import Any

import optuna
import pytest
from ray.tune.experiment import Trial
from ray.tune.schedulers import TrialScheduler
from ray.tune.search import Searcher

from tagtune.errors import InputError
from tagtune.search_spaces import load_space
from tagtune.tune.schedulers import TIME_BUDGET_RULE, FamilyScheduler, StopRule
from tagtune.tune.searcher import FamilySearcher

METRIC = "best_val_mAUC"


def _searcher(families: tuple[str, ...] = ("fc1", "lstm"), **kw: Any) -> FamilySearcher:
    spaces = {f: load_space(f) for f in families}
    return FamilySearcher(spaces, kw.pop("trials_per_family", 4), metric=METRIC, mode="max", **kw)


class Driver:
    """What Tune's controller does with a searcher and a scheduler, trial by trial."""

    def __init__(self, searcher: FamilySearcher, scheduler: FamilyScheduler) -> None:
        self.searcher, self.scheduler = searcher, scheduler
        self.trials: dict[str, Trial] = {}

    def start(self, trial_id: str) -> Trial:
        config = self.searcher.suggest(trial_id)
        assert isinstance(config, dict)
        trial = Trial("tune_trial", config=config, trial_id=trial_id, stub=True)
        self.trials[trial_id] = trial
        self.scheduler.on_trial_add(None, trial)
        return trial

    def report(self, trial: Trial, epoch: int, value: float) -> str:
        result = {"epoch": float(epoch), "training_iteration": epoch, METRIC: value, "val_mAUC": value}
        decision = self.scheduler.on_trial_result(None, trial, result)
        if decision != TrialScheduler.STOP:
            self.searcher.on_trial_result(trial.trial_id, result)
        self.last = result
        return decision

    def end(self, trial: Trial) -> None:
        self.scheduler.on_trial_complete(None, trial, self.last)
        self.searcher.on_trial_complete(trial.trial_id, result=self.last)

    def run(self, trial_id: str, values: list[float]) -> Trial:
        trial = self.start(trial_id)
        for epoch, value in enumerate(values, 1):
            if self.report(trial, epoch, value) == TrialScheduler.STOP:
                break
        self.end(trial)
        return trial


def _states(searcher: FamilySearcher, family: str) -> list[tuple[str, dict[int, float]]]:
    return [(t.state.name, t.intermediate_values) for t in searcher.studies()[family].trials]


def test_each_family_is_stopped_only_against_its_own_trials_and_optuna_is_told_pruned():
    searcher = _searcher(seed=1)
    driver = Driver(
        searcher, FamilyScheduler(searcher, StopRule("asha", grace_period=1, reduction_factor=2, max_epochs=4))
    )
    # round-robin: fc1, lstm, fc1, lstm; fc1's epochs score far above lstm's
    driver.run("a", [0.90, 0.91, 0.92, 0.93])  # fc1
    driver.run("b", [0.55, 0.56, 0.57, 0.58])  # lstm: first of its family, never compared with fc1
    driver.run("c", [0.80, 0.81, 0.82, 0.83])  # fc1, below fc1's rung: stopped at epoch 1
    driver.run("d", [0.60, 0.61, 0.62, 0.63])  # lstm: above lstm's rung (although below fc1's)
    assert set(searcher.stops) == {"c"}
    assert searcher.stops["c"].epoch == 1 and searcher.stops["c"].rule == "asha(grace 1, rf 2, best_val_mAUC)"
    assert _states(searcher, "fc1") == [
        ("COMPLETE", {1: 0.90, 2: 0.91, 3: 0.92, 4: 0.93}),
        ("PRUNED", {1: 0.80}),  # its intermediate values reach the study, the stopping one included
    ]
    assert [s for s, _ in _states(searcher, "lstm")] == ["COMPLETE", "COMPLETE"]
    assert searcher.studies()["fc1"].trials[0].value == pytest.approx(0.93)


def test_a_trial_stopped_before_a_restore_is_stopped_again_and_rungs_survive(tmp_path):
    searcher = _searcher(families=("fc1",), seed=2)
    scheduler = FamilyScheduler(searcher, StopRule("asha", grace_period=1, reduction_factor=2, max_epochs=4))
    driver = Driver(searcher, scheduler)
    driver.run("a", [0.9, 0.9, 0.9, 0.9])
    stopped = driver.start("b")
    assert driver.report(stopped, 1, 0.5) == TrialScheduler.STOP
    searcher.save(str(tmp_path / "state.pkl"))
    searcher.stops.clear()
    searcher.stop_state.clear()
    searcher.restore(str(tmp_path / "state.pkl"))  # Ray restores the searcher in place
    assert driver.report(stopped, 1, 0.95) == TrialScheduler.STOP  # re-run after a resume: stopped again
    fresh = driver.start("c")
    assert driver.report(fresh, 1, 0.6) == TrialScheduler.STOP  # the rung at epoch 1 was restored


SLOW_STARTER = [0.55, 0.65, 0.75, 0.82, 0.86, 0.88, 0.89, 0.90, 0.90, 0.91]  # small lr: wins late
FAST_PLATEAU = [0.80, 0.82, 0.83, 0.84, 0.84, 0.85, 0.85, 0.85, 0.85, 0.85]
FLAT = [0.50, 0.50, 0.51, 0.51, 0.51, 0.52, 0.52, 0.52, 0.52, 0.52]


@pytest.mark.parametrize("curve_grace", [True, False])
def test_curve_grace_spares_a_slow_starter_that_wins_and_stops_a_flat_one(curve_grace):
    searcher = _searcher(families=("fc1",), trials_per_family=8)
    rule = StopRule("asha", grace_period=2, reduction_factor=3, max_epochs=10, curve_grace=curve_grace)
    driver = Driver(searcher, FamilyScheduler(searcher, rule))
    driver.run("a", FAST_PLATEAU)
    driver.run("b", FAST_PLATEAU)
    driver.run("slow", SLOW_STARTER)
    driver.run("flat", FLAT)
    assert searcher.stops["flat"].epoch == 2  # a curve that does not climb is stopped either way
    if curve_grace:
        assert "slow" not in searcher.stops  # ran every epoch, and is the family's best
        assert searcher.studies()["fc1"].best_value == pytest.approx(max(SLOW_STARTER))
    else:
        assert searcher.stops["slow"].epoch == 2  # today's ASHA: cut at the first rung
        assert searcher.studies()["fc1"].best_value == pytest.approx(max(FAST_PLATEAU))


def test_spare_rule():
    rule = StopRule("asha", grace_period=2, reduction_factor=3, max_epochs=10)
    assert rule.spare([0.55, 0.65], cutoff=0.80)  # 0.65 + 0.5 * 0.10 * 4 = 0.85
    assert not rule.spare([0.55, 0.60], cutoff=0.80)  # 0.60 + 0.5 * 0.05 * 4 = 0.70
    assert not rule.spare([0.65], cutoff=0.80) and not rule.spare([0.6, 0.7], cutoff=None)
    assert not StopRule("asha", curve_grace=False).spare([0.55, 0.65], cutoff=0.80)


def test_hyperband_uses_several_brackets_and_none_stops_nothing():
    assert StopRule("hyperband", grace_period=1, reduction_factor=3, max_epochs=20).brackets == 3
    assert StopRule("asha", grace_period=2, reduction_factor=3, max_epochs=20).rungs == [2, 6, 18]
    searcher = _searcher(families=("fc1",))
    driver = Driver(searcher, FamilyScheduler(searcher, StopRule("none", max_epochs=3)))
    driver.run("a", [0.9, 0.9, 0.9])
    driver.run("b", [0.1, 0.1, 0.1])
    assert not searcher.stops and [s for s, _ in _states(searcher, "fc1")] == ["COMPLETE", "COMPLETE"]


def test_the_time_budget_stops_running_trials_at_the_next_epoch_and_starts_none():
    searcher = _searcher(families=("fc1", "lstm"), trials_per_family=None, time_budget=0.5)
    driver = Driver(searcher, FamilyScheduler(searcher, StopRule("none", max_epochs=10)))
    first = driver.start("a")
    assert driver.report(first, 1, 0.7) == TrialScheduler.CONTINUE
    time.sleep(0.6)
    assert driver.report(first, 2, 0.75) == TrialScheduler.STOP
    driver.end(first)
    assert searcher.stops["a"].rule == TIME_BUDGET_RULE and searcher.stops["a"].epoch == 2
    assert searcher.suggest("b") == searcher.FINISHED
    assert _states(searcher, "fc1") == [("PRUNED", {1: 0.7, 2: 0.75})]


def test_bad_scheduler_flags_name_the_flag():
    with pytest.raises(InputError, match="--grace-period"):
        StopRule("asha", grace_period=0)
    with pytest.raises(InputError, match="--reduction-factor"):
        StopRule("asha", reduction_factor=1)
    with pytest.raises(InputError, match="--milestone-metric"):
        StopRule("asha", metric="train_loss")
    with pytest.raises(InputError, match="--scheduler"):
        StopRule("median")


def test_durations():
    from tagtune.tracking import parse_duration

    assert parse_duration("90s") == 90 and parse_duration("45m") == 2700 and parse_duration("2h") == 7200
    assert parse_duration("1h30m") == 5400 and parse_duration("120") == 120
    for bad in ("soon", "0m", "5x", "-3m"):
        with pytest.raises(InputError, match="--time-budget"):
            parse_duration(bad)
    assert optuna.__version__


def test_patience_ends_a_converged_trial_which_completes_with_its_best_score():
    searcher = _searcher(families=("fc1",), trials_per_family=4)
    driver = Driver(searcher, FamilyScheduler(searcher, StopRule("none", max_epochs=10, patience=2)))

    def run(trial_id: str, curve: list[float]) -> list[str]:
        trial, decisions, best = driver.start(trial_id), [], 0.0
        for epoch, value in enumerate(curve, 1):
            best = max(best, value)
            result = {"epoch": float(epoch), "training_iteration": epoch, METRIC: best, "val_mAUC": value}
            decisions.append(driver.scheduler.on_trial_result(None, trial, result))
            driver.last = result
            if decisions[-1] == TrialScheduler.STOP:
                break
            searcher.on_trial_result(trial_id, result)
        driver.end(trial)
        return decisions

    # epochs 3 and 4 do not improve on epoch 2: ended at 4 (of 10)
    assert run("a", [0.80, 0.85, 0.84, 0.83, 0.86]) == [TrialScheduler.CONTINUE] * 3 + [TrialScheduler.STOP]
    assert (searcher.stops["a"].epoch, searcher.stops["a"].rule) == (4, "patience 2")
    assert searcher.stops["a"].tags() == {"tagtune.stopped_at_epoch": "4", "tagtune.stopped_by": "patience 2"}
    assert run("b", [0.70, 0.72, 0.71, 0.74, 0.73, 0.75]) == [TrialScheduler.CONTINUE] * 6  # still improving
    trials = searcher.studies()["fc1"].trials
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]  # converged is not pruned
    assert trials[0].value == pytest.approx(0.85)
    with pytest.raises(InputError, match="--patience"):
        StopRule("asha", patience=-1)


def test_goal_best_shifts_new_trials_to_the_leading_half_of_the_families():
    families = ("fc1", "fc2", "lstm", "gcnn")
    searcher = _searcher(families=families, trials_per_family=None, goal="best")
    driver = Driver(searcher, FamilyScheduler(searcher, StopRule("none", max_epochs=2)))
    scores = {"fc1": 0.90, "fc2": 0.80, "lstm": 0.70, "gcnn": 0.85}
    for k in range(8):  # two rounds of round-robin: every family gets its 2 scored trials
        family = families[k % 4]
        trial = driver.start(f"t{k}")
        assert trial.config["family"] == family
        driver.report(trial, 1, scores[family])
        driver.end(trial)
    later = [driver.start(f"u{k}").config["family"] for k in range(6)]
    assert sorted(set(later)) == ["fc1", "gcnn"]  # the leading half by best score
    compare = _searcher(families=families, trials_per_family=None)
    assert [compare.suggest(f"c{k}")["family"] for k in range(4)] == list(families)
    with pytest.raises(InputError, match="--goal"):
        from tagtune.spec import SearchSpec

        SearchSpec(train="t", families=["fc1"], time_budget=60.0, goal="fastest").validate()


def test_a_resumed_searcher_matches_its_counts_to_the_trials_ray_restored():
    """Ray's trial list and the searcher's state can be saved at different moments before a
    SIGKILL: a suggested trial missing from the restored list is lost (FAIL in Optuna) and its
    family gets a replacement; the budget stays 2 trials per family."""
    searcher = _searcher(families=("fc1",), trials_per_family=2)
    driver = Driver(searcher, FamilyScheduler(searcher, StopRule("none", max_epochs=2)))
    first = driver.start("t0")
    driver.report(first, 1, 0.7)
    driver.end(first)
    driver.start("t1")  # suggested, then the driver is killed before Ray's list holds it
    assert searcher.suggest("t2") is Searcher.FINISHED
    searcher.reconcile([first])
    assert searcher.suggested == {"fc1": 1}
    states = [t.state for t in searcher.studies()["fc1"].get_trials(deepcopy=False)]
    assert states == [optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL]
    assert isinstance(searcher.suggest("t2"), dict)
    assert searcher.suggest("t3") is Searcher.FINISHED
