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
        seen.add(("weight_decay" in trial.params, trial.params["optimizer"] == "adamw"))
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


def test_batch_sizes_shrink_with_the_training_set():
    from tagtune.search_spaces import MIN_STEPS_PER_EPOCH

    space = load_space("fc1")
    choices = next(p.choices for p in space.params if p.name == "batch_size")
    assert next(p.choices for p in space.for_data(10**6).params if p.name == "batch_size") == choices
    small = next(p.choices for p in space.for_data(64 * MIN_STEPS_PER_EPOCH).params if p.name == "batch_size")
    assert max(small) == 64 and min(small) == min(choices)
    tiny = next(p.choices for p in space.for_data(10).params if p.name == "batch_size")
    assert tiny == (min(choices),)  # never empty


def _separable(n: int = 240, c: int = 4, seed: int = 0):
    """A tiny separable multi-label problem (10 x 128 uint8 clips): any config that trains leaves chance."""
    import numpy as np

    from tagtune.trainables.loop import TrialData

    rng = np.random.default_rng(seed)
    y = rng.random((n, c)) < 0.2
    y[np.arange(n), rng.integers(0, c, n)] = True
    proto = rng.normal(0, 40, (c, 128))
    x = 128 + (y.astype(float) @ proto)[:, None, :] + rng.normal(0, 20, (n, 10, 128))
    idx = rng.permutation(n)
    cut = int(0.8 * n)
    x = np.clip(x, 0, 255).astype(np.uint8)
    return TrialData(x=x, y=y, train_idx=idx[:cut], val_idx=idx[cut:], class_names=tuple(f"c{i}" for i in range(c)))


@pytest.mark.parametrize("family", list_families("embeddings"))
def test_sampled_configs_of_every_packaged_space_leave_chance(family):
    """The chance-level check (tagtune.tracking.at_chance) over each packaged space: two
    random configs (what a search's start-up trials draw), sized for the data as a search does,
    each trained 2 epochs on tiny separable data, and none stays at chance."""
    from tagtune.tracking import at_chance
    from tagtune.trainables.loop import fit

    data = _separable()
    space = load_space(family).for_data(len(data.train_idx))
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=1))
    stuck = []
    for _ in range(2):
        trial = study.ask()
        config = {"family": family, **space.sample(trial), **trial.params}
        best = fit(config, data, max_epochs=2, device="cpu").best["val_mAUC"]
        study.tell(trial, best)
        if at_chance(best):
            stuck.append((round(best, 3), trial.params))
    assert not stuck, f"{family}: sampled configs at chance: {stuck}"


def test_at_chance_and_the_likely_cause():
    from tagtune.tracking import CHANCE, CHANCE_MARGIN, at_chance, likely_cause

    assert at_chance(0.5) and at_chance(CHANCE + CHANCE_MARGIN - 1e-6) and at_chance(float("nan")) and at_chance(None)
    assert not at_chance(CHANCE + CHANCE_MARGIN)
    stuck = [{"optimizer": "sgd", "lr": 1e-4}] * 7 + [{"optimizer": "adam", "lr": 1e-3}] * 2
    others = [{"optimizer": "adam", "lr": 1e-3}] * 5
    assert likely_cause(stuck, others) == "7 of 9 used sgd"
    # a shared value that the trials that trained have as much of names nothing
    assert likely_cause([{"optimizer": "adam"}] * 3, [{"optimizer": "adam"}] * 3) is None
    assert likely_cause([]) is None
