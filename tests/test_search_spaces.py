"""Search spaces: every family has one that loads; invalid files fail with a clear message."""

from __future__ import annotations

import optuna
import pytest

from tagtune.search_spaces import SpaceError, load_space
from tagtune.trainables.config import resolve_config
from tagtune.trainables.models import list_families


@pytest.mark.parametrize("family", list_families())
def test_every_family_has_a_valid_space_that_samples(family):
    space = load_space(family)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(5):
        trial = study.ask()
        consts = space.sample(trial)
        config = {"family": family, **trial.params, **consts}
        resolve_config(config)  # every sampled name is a known parameter
        study.tell(trial, 0.5)


def test_conditional_param_only_when_condition_holds():
    space = load_space("fc1")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    seen = set()
    for _ in range(30):
        trial = study.ask()
        space.sample(trial)
        seen.add(("momentum" in trial.params, trial.params["optimizer"] == "sgd"))
        study.tell(trial, 0.0)
    assert seen <= {(True, True), (False, False)}
    assert (True, True) in seen


def _write(tmp_path, family_body: str, common: str = "params: {}\n"):
    (tmp_path / "common.yaml").write_text(common)
    (tmp_path / "fc2.yaml").write_text(family_body)
    return tmp_path


@pytest.mark.parametrize(
    "body, message",
    [
        ("params:\n  hiddenn: {choices: [1, 2]}\n", "unknown parameter 'hiddenn'"),
        ("params:\n  dropout: {low: 0.6, high: 0.1}\n", "low 0.6 > high 0.1"),
        ("params:\n  hidden: {choices: []}\n", "empty choices"),
        ("params:\n  lr: {low: 0, high: 1, log: true}\n", "low must be > 0"),
        ("params:\n  dropout: {low: a, high: 1}\n", "must be a number"),
        ("params:\n  dropout: {lo: 0, high: 1}\n", "unknown key"),
        ("params: [1, 2\n", "not valid YAML"),
        ("params:\n  momentum: {low: 0.1, high: 0.9, when: {solver: sgd}}\n", "depends on 'solver'"),
        # Values the config refuses are refused when the space loads, before any trial trains.
        ("params:\n  lr: {low: -1.0, high: 0.1}\n", "lr must be"),
        ("params:\n  batch_size: {choices: [0, 64]}\n", "batch_size must be"),
        ("params:\n  optimizer: {choices: [adam, sideways]}\n", "sideways"),
        ("params:\n  dropout: {value: 1.5}\n", "dropout must be"),
    ],
)
def test_invalid_spaces_raise_space_error_naming_the_file(tmp_path, body, message):
    folder = _write(tmp_path, body)
    with pytest.raises(SpaceError, match=message) as info:
        load_space("fc2", folder)
    assert "fc2.yaml" in str(info.value)


def test_family_file_can_drop_a_common_param(tmp_path):
    folder = _write(
        tmp_path,
        "params:\n  momentum: null\n",
        common="params:\n  momentum: {low: 0.1, high: 0.9}\n  lr: {value: 0.01}\n",
    )
    names = [p.name for p in load_space("fc2", folder).params]
    assert names == ["lr"]


@pytest.mark.parametrize("family", list_families())
def test_enqueued_defaults_are_what_the_first_trial_samples(family):
    space = load_space(family)
    defaults = resolve_config({"family": family})
    fixed = space.fixed_params(defaults)
    assert fixed and all(defaults[k] == v for k, v in fixed.items())
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
    study.enqueue_trial(fixed)
    trial = study.ask()
    consts = space.sample(trial)
    assert {k: trial.params[k] for k in fixed} == fixed
    assert resolve_config({"family": family, **trial.params, **consts})


def test_a_default_outside_the_space_is_left_to_the_sampler(tmp_path):
    folder = _write(
        tmp_path,
        "params:\n  hidden: {choices: [7, 9]}\n  dropout: {low: 0.0, high: 0.5}\n",
        common="params:\n  optimizer: {choices: [sgd, adam]}\n"
        "  momentum: {low: 0.5, high: 0.9, when: {optimizer: sgd}}\n"
        "  lr: {low: 0.1, high: 1.0}\n  batch_size: {low: 16, high: 256, step: 16}\n",
    )
    space = load_space("fc2", folder)
    fixed = space.fixed_params(resolve_config({"family": "fc2"}))
    # fc2's hidden 1024 is not a choice and lr 3e-4 is out of range: both sampled; adam means
    # momentum is inactive; batch_size 64 lies on the step grid.
    assert fixed == {"optimizer": "adam", "dropout": 0.2, "batch_size": 64}
    conditioned = _write(
        tmp_path,
        "params: {}\n",
        common="params:\n  optimizer: {choices: [sgd]}\n  momentum: {low: 0.5, high: 0.9, when: {optimizer: sgd}}\n",
    )
    assert load_space("fc2", conditioned).fixed_params(resolve_config({"family": "fc2"})) == {}
