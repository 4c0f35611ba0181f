"""The portfolio's selection rule: greedy across tasks, and leave-one-task-out."""

from __future__ import annotations

import pytest

from tagtune.portfolio import PACKAGED, leave_one_task_out, load_portfolio, select_portfolio
from tagtune.trainables.config import resolve_config

SCORES = {
    "broad": {"a": 0.80, "b": 0.80, "c": 0.80},
    "only_a": {"a": 0.95, "b": 0.50, "c": 0.50},
    "only_c": {"a": 0.60, "b": 0.70, "c": 0.90},
    "weak": {"a": 0.55, "b": 0.55, "c": 0.55},
}


def test_greedy_picks_the_broad_config_then_the_one_that_covers_what_it_lacks():
    assert select_portfolio(SCORES, 1) == ["broad"]
    assert select_portfolio(SCORES, 2)[0] == "broad"
    assert set(select_portfolio(SCORES, 3)) == {"broad", "only_a", "only_c"}
    assert len(select_portfolio(SCORES, 10)) == len(SCORES)
    with pytest.raises(ValueError):
        select_portfolio(SCORES, 0)


def test_no_task_is_scored_with_configs_learned_on_itself():
    portfolios = leave_one_task_out(SCORES, 2)
    assert set(portfolios) == {"a", "b", "c"}
    # only_a is the best config on task a alone: learned without a, it is not picked for a
    assert "only_a" not in portfolios["a"]
    assert "only_c" not in portfolios["c"]
    # each task's portfolio is exactly what the other tasks' scores give
    for task, picked in portfolios.items():
        others = {c: {t: v for t, v in s.items() if t != task} for c, s in SCORES.items()}
        assert picked == select_portfolio(others, 2)
    # changing a task's own scores never changes its portfolio
    changed = {c: dict(s) for c, s in SCORES.items()}
    changed["weak"]["a"] = 1.0
    assert leave_one_task_out(changed, 2)["a"] == portfolios["a"]


def test_a_portfolio_file_runs_its_configs_first_then_the_search_samples(tmp_path):
    """``--portfolio FILE``: each family's first trials are the file's configs in order (a value
    outside the space is left to Optuna); a family the file lacks starts from its defaults."""
    import optuna

    from tagtune.search_spaces import load_space
    from tagtune.tune.searcher import FamilySearcher

    path = tmp_path / "portfolio.yaml"
    path.write_text(
        "fc1:\n"
        "  - {name: a, params: {lr: 0.002, batch_size: 64, optimizer: adam, dropout: 0.1}}\n"
        "  - {name: b, params: {lr: 0.0005, batch_size: 32, optimizer: adamw, weight_decay: 0.001, dropout: 9.0}}\n"
    )
    firsts = load_portfolio(str(path), ["fc1", "fc2"])
    assert firsts["fc2"] == [] and len(firsts["fc1"]) == 2
    spaces = {f: load_space(f) for f in ("fc1", "fc2")}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    searcher = FamilySearcher(spaces, 4, metric="best_val_mAUC", mode="max", first_configs=firsts, sampler="random")
    configs = [searcher.suggest(str(i)) for i in range(6)]
    fc1 = [c for c in configs if c["family"] == "fc1"]
    assert (fc1[0]["lr"], fc1[0]["batch_size"], fc1[0]["optimizer"], fc1[0]["dropout"]) == (0.002, 64, "adam", 0.1)
    assert (fc1[1]["lr"], fc1[1]["optimizer"], fc1[1]["weight_decay"]) == (0.0005, "adamw", 0.001)
    assert 0.0 <= fc1[1]["dropout"] <= 0.5  # 9.0 is outside fc1's space: sampled instead
    assert fc1[2] != fc1[0] and fc1[2] != fc1[1]
    fc2 = [c for c in configs if c["family"] == "fc2"]
    assert fc2[0]["lr"] == 3e-4  # fc2's registered default (not in the file)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (None, "no such file"),
        ("fc1: [unclosed", "not valid YAML"),
        ("- 1\n", "a mapping"),
        ("fc1: {lr: 1}", "fc1 must"),
    ],
)
def test_a_bad_portfolio_file_is_one_clear_error(tmp_path, text, needle):
    from tagtune.errors import InputError

    path = tmp_path / "p.yaml"
    if text is not None:
        path.write_text(text)
    with pytest.raises(InputError, match=needle) as exc:
        load_portfolio(str(path), ["fc1"])
    assert "--portfolio" in str(exc.value) and "\n" not in str(exc.value)


def test_the_packaged_portfolio_loads_and_fits_the_packaged_spaces():
    from tagtune.search_spaces import load_space

    firsts = load_portfolio(PACKAGED, ["fc1", "fc2"])
    for family, configs in firsts.items():
        assert configs, f"the packaged portfolio has no {family} config"
        space = load_space(family)
        for params in configs:
            # every value lies in the packaged space: the portfolio runs as written
            fixed = space.fixed_params({**resolve_config({"family": family}), **params})
            assert fixed == {k: v for k, v in params.items() if k in fixed} and set(params) <= set(fixed), params
