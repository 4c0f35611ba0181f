"""``--sampler``: the names, the error naming the flag, the sampler each family's study gets."""

from __future__ import annotations

import optuna
import pytest

from tagtune.errors import InputError
from tagtune.samplers import DEFAULT_SAMPLER, SAMPLERS, check_sampler, make_sampler, startup_trials
from tagtune.search_spaces import load_space
from tagtune.tracking import SearchSpec
from tagtune.tune.searcher import FamilySearcher


def test_choices_and_default():
    assert set(SAMPLERS) >= {"tpe", "gp", "random"}
    assert DEFAULT_SAMPLER in SAMPLERS


def test_unknown_sampler_names_the_flag_and_the_choices():
    with pytest.raises(InputError, match=r"--sampler 'cmaes'.*tpe, gp, random"):
        check_sampler("cmaes")
    with pytest.raises(InputError, match="--sampler"):
        SearchSpec(train="x", families=["fc1"], sampler="nope").validate()


@pytest.mark.parametrize(
    ("name", "kind"),
    [("tpe", optuna.samplers.TPESampler), ("gp", optuna.samplers.GPSampler), ("random", optuna.samplers.RandomSampler)],
)
def test_each_family_study_gets_the_chosen_sampler(name, kind):
    searcher = FamilySearcher(
        {f: load_space(f) for f in ("fc1", "lstm")}, 4, metric="best_val_mAUC", mode="max", sampler=name
    )
    for study in searcher.studies().values():
        assert isinstance(study.sampler, kind)
    assert isinstance(make_sampler(name, seed=0, trials_per_family=4), kind)


def test_startup_trials_shrink_with_the_budget():
    assert startup_trials(None) == 10
    assert startup_trials(4) == 3
    assert startup_trials(40) == 10
