"""The report's search-health counts: per family, sampled trials that beat the first trial,
sampled trials at chance, and the likely cause when most are at chance."""

from __future__ import annotations

import math

import pandas as pd

from tagtune.tracking import HEALTH_COLUMNS, search_health


def _trials(rows):
    return pd.DataFrame(
        [
            {"family": f, "number": n, "status": s, "best_val_mAUC": v, "params_optimizer": o, "params_lr": lr}
            for f, n, s, v, o, lr in rows
        ]
    )


def test_counts_per_family_and_the_cause_when_most_are_at_chance():
    trials = _trials(
        [
            ("fc1", 0, "FINISHED", 0.80, "adam", 1e-3),
            ("fc1", 1, "FINISHED", 0.85, "adam", 2e-3),
            ("fc1", 2, "FINISHED", 0.52, "sgd", 1e-3),
            ("fc1", 3, "FINISHED", 0.70, "adam", 1e-3),
            ("lstm", 0, "FINISHED", 0.75, "adam", 1e-3),
            ("lstm", 1, "FINISHED", 0.50, "sgd", 1e-4),
            ("lstm", 2, "FINISHED", 0.49, "sgd", 2e-4),
            ("lstm", 3, "FINISHED", 0.51, "sgd", 1e-3),
            ("lstm", 4, "FINISHED", 0.78, "adam", 1e-3),
            ("lstm", 5, "FAILED", math.nan, "adam", 1e-2),
        ]
    )
    health = search_health(trials).set_index("family")
    assert list(search_health(trials).columns) == list(HEALTH_COLUMNS)
    assert health.loc["fc1", "sampled"] == 3
    assert health.loc["fc1", "beat_first"] == 1
    assert health.loc["fc1", "at_chance"] == 1
    assert health.loc["fc1", "cause"] == ""  # 1 of 3 at chance: not most
    assert health.loc["lstm", "sampled"] == 4  # the failed trial has no score
    assert health.loc["lstm", "beat_first"] == 1
    assert health.loc["lstm", "at_chance"] == 3
    assert health.loc["lstm", "cause"] == "3 of 3 used sgd"
    assert health.loc["lstm", "first_mAUC"] == 0.75
    assert health.loc["lstm", "best_sampled_mAUC"] == 0.78


def test_no_trials_gives_an_empty_table():
    assert list(search_health(pd.DataFrame()).columns) == list(HEALTH_COLUMNS)


def test_a_portfolios_configs_are_first_trials_not_sampled_ones():
    """A start portfolio runs three configs first (tagged ``first`` by the search); the sampled
    trials are the rest, compared with the best of those three."""
    trials = _trials(
        [
            ("fc2", 0, "FINISHED", 0.80, "adam", 1e-3),
            ("fc2", 1, "FINISHED", 0.86, "adamw", 7e-4),
            ("fc2", 2, "FINISHED", 0.82, "adam", 2e-3),
            ("fc2", 3, "FINISHED", 0.84, "adam", 1e-3),
            ("fc2", 4, "FINISHED", 0.87, "adam", 5e-4),
            ("fc1", 0, "FINISHED", 0.70, "adam", 1e-3),  # no trial marked: number 0 is the first
            ("fc1", 1, "FINISHED", 0.75, "adam", 1e-3),
        ]
    )
    trials["first"] = [True, True, True, False, False, False, False]
    health = search_health(trials).set_index("family")
    assert health.loc["fc2", "sampled"] == 2
    assert health.loc["fc2", "first_mAUC"] == 0.86  # the best of the portfolio's three
    assert health.loc["fc2", "beat_first"] == 1
    assert (health.loc["fc1", "sampled"], health.loc["fc1", "first_mAUC"], health.loc["fc1", "beat_first"]) == (
        1,
        0.70,
        1,
    )
