"""Ray's private attributes, behind one small adapter.

Ray Tune's :class:`~ray.tune.search.optuna.OptunaSearch` keeps its Optuna study in the private
attribute ``_ot_study`` and offers no public accessor.  tagtune needs the study to enqueue each
family's registered defaults as its first trial (``Study.enqueue_trial``: Ray's
``points_to_evaluate`` is ignored with a define-by-run space) and to hand the studies to the
report.  Every access to a private Ray attribute goes through this module, so a Ray upgrade
that renames one breaks here, with a clear message, and ``tests/test_search.py`` says so.

Checked against Ray 2.60.0 (``OptunaSearch.__init__`` sets ``_ot_study`` when it is given a
space, a metric and a mode, as :class:`tagtune.tune.searcher.FamilySearcher` does).
"""

from __future__ import annotations

import optuna
from ray.tune.search.optuna import OptunaSearch

RAY_VERSIONS_CHECKED = ("2.60.0",)


def optuna_study(searcher: OptunaSearch) -> optuna.Study:
    """The Optuna study an :class:`OptunaSearch` samples from (its private ``_ot_study``)."""
    study = getattr(searcher, "_ot_study", None)
    if not isinstance(study, optuna.Study):
        import ray

        raise RuntimeError(
            f"ray {ray.__version__}: OptunaSearch has no Optuna study in `_ot_study` (tagtune was "
            f"checked against ray {', '.join(RAY_VERSIONS_CHECKED)}); update "
            "tagtune/tune/_ray_compat.py for this Ray version"
        )
    return study


def optuna_trial(searcher: OptunaSearch, trial_id: str) -> optuna.Trial | None:
    """The Optuna trial :meth:`OptunaSearch.suggest` asked for Ray's ``trial_id`` (its private
    ``_ot_trials``), or None when it has none."""
    trials = getattr(searcher, "_ot_trials", None)
    if not isinstance(trials, dict):
        return None
    trial = trials.get(trial_id)
    return trial if isinstance(trial, optuna.Trial) else None
