"""The portfolio's selection rule: greedy across tasks, and leave-one-task-out."""

from __future__ import annotations

import pytest

from tagtune.portfolio import leave_one_task_out, select_portfolio

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
