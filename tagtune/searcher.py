"""One Tune searcher over several families: an equal trial budget each, one Optuna study each.

Ray's ``OptunaSearch`` runs one study.  TPE should learn per family (an ``lstm`` learning rate
says little about ``fc1``'s), and each family has its own define-by-run space, so
:class:`FamilySearcher` holds one ``OptunaSearch`` per family and hands out trials round-robin
until every family has had its budget.  Each family's first trial is its registered defaults
(tuned on bal_train), so even a small budget starts from a config known to train.
"""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Mapping
from typing import Any

import optuna
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from tagtune._ray_compat import optuna_study, optuna_trial
from tagtune.search_spaces import SearchSpace
from tagtune.trainables.config import resolve_config
from tagtune.trainables.trial import DIVERGED

OBJECTIVE_NAME = "val_mAUC"  # what each study maximizes: a trial's best validation mAUC


def startup_trials(trials_per_family: int) -> int:
    """TPE's random start-up trials: Optuna's 10, fewer for small budgets (half of them, at
    least 3) so that TPE still guides the rest."""
    return min(10, max(3, trials_per_family // 2))


class FamilySearcher(Searcher):
    """Round-robin over families; each family's configs come from its own Optuna TPE study."""

    def __init__(
        self,
        spaces: Mapping[str, SearchSpace],
        trials_per_family: int,
        *,
        metric: str,
        mode: str,
        seed: int = 0,
        study_prefix: str = "tagtune",
        storage: optuna.storages.BaseStorage | None = None,
        defaults_first: bool = True,
    ) -> None:
        super().__init__(metric=metric, mode=mode)
        self.trials_per_family = trials_per_family
        self.seed = seed
        self.families = list(spaces)
        self.searchers: dict[str, OptunaSearch] = {}
        for i, (family, space) in enumerate(spaces.items()):
            self.searchers[family] = OptunaSearch(
                space=space.sample,
                metric=metric,
                mode=mode,
                sampler=optuna.samplers.TPESampler(seed=seed + i, n_startup_trials=startup_trials(trials_per_family)),
                study_name=f"{study_prefix}/{family}",
                storage=storage,
            )
            # optuna-dashboard and Optuna's plots name the objective (not "Objective 0")
            with warnings.catch_warnings():  # experimental since Optuna 3.2, stable in use
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna_study(self.searchers[family]).set_metric_names([OBJECTIVE_NAME])
            if defaults_first:
                # The family's tuned defaults are the first trial (Optuna's enqueue_trial:
                # Ray's points_to_evaluate is ignored with a define-by-run space).  On resume
                # the study already holds it and skip_if_exists keeps it single.
                fixed = space.fixed_params(resolve_config({"family": family}))
                optuna_study(self.searchers[family]).enqueue_trial(fixed, skip_if_exists=True)
        self.assigned: dict[str, str] = {}  # trial_id -> family
        self.optuna_ids: dict[str, tuple[str, int]] = {}  # trial_id -> (study name, trial number)
        self.suggested = {family: 0 for family in self.families}

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        open_families = [f for f in self.families if self.suggested[f] < self.trials_per_family]
        if not open_families:
            # Ray's annotation leaves out the FINISHED marker its Searcher protocol documents
            return Searcher.FINISHED  # type: ignore[return-value]
        family = min(open_families, key=lambda f: (self.suggested[f], self.families.index(f)))
        config = self.searchers[family].suggest(trial_id)
        self.suggested[family] += 1
        self.assigned[trial_id] = family
        ot = optuna_trial(self.searchers[family], trial_id)
        if ot is not None:
            self.optuna_ids[trial_id] = (optuna_study(self.searchers[family]).study_name, ot.number)
            ot.set_user_attr("ray_trial_id", trial_id)
        return {"family": family, "seed": self.seed, **(config or {})}

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        family = self.assigned.get(trial_id)
        if family is not None and self.metric in result and not result.get(DIVERGED):
            try:
                self.searchers[family].on_trial_result(trial_id, result)
            except optuna.exceptions.UpdateFinishedTrialError:
                # After a restore, Ray may re-run a trial whose result Optuna's storage already
                # holds (Ray's state was saved before the trial ended); the study keeps that one.
                pass

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        family = self.assigned.get(trial_id)
        if family is None:
            return
        if result and result.get(DIVERGED):
            result, error = None, True  # Optuna records the trial as FAIL
        self.searchers[family].on_trial_complete(trial_id, result=result, error=error)

    def optuna_identity(self, trial_id: str) -> tuple[str, int] | None:
        """The Optuna study and trial number of Ray's ``trial_id`` (None when unknown)."""
        return self.optuna_ids.get(trial_id)

    def name_run(self, trial_id: str, run_id: str, run_name: str) -> None:
        """Record on the Optuna trial which MLflow run logs it (user attrs ``mlflow_run_id``,
        ``mlflow_run_name``, shown by optuna-dashboard)."""
        family = self.assigned.get(trial_id)
        ot = optuna_trial(self.searchers[family], trial_id) if family else None
        if ot is not None:
            ot.set_user_attr("mlflow_run_id", run_id)
            ot.set_user_attr("mlflow_run_name", run_name)

    def studies(self) -> dict[str, optuna.Study]:
        """Each family's Optuna study (for importance plots and summaries)."""
        return {f: optuna_study(s) for f, s in self.searchers.items()}

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as fh:
            pickle.dump(self.__dict__.copy(), fh)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as fh:
            self.__dict__.update(pickle.load(fh))
