"""One Tune searcher over several families: an equal trial budget each, one Optuna study each.

Ray's ``OptunaSearch`` runs one study.  TPE should learn per family (an ``lstm`` learning rate
says little about ``fc1``'s), and each family has its own define-by-run space, so
:class:`FamilySearcher` holds one ``OptunaSearch`` per family and hands out trials round-robin
until every family has had its budget (a number of trials, a time budget, or both).  Each
family's first trial is its registered defaults (tuned on bal_train), so even a small budget
starts from a config known to train; a warm start seeds each study with an earlier search's
finished trials instead.

A trial that :class:`tagtune.tune.schedulers.FamilyScheduler` stopped (early-stopping rule or spent
time budget, recorded in :attr:`FamilySearcher.stops`) is told to Optuna as PRUNED with its
intermediate values (Ray's ``OptunaSearch`` would record it COMPLETE), so TPE learns from it.
"""

from __future__ import annotations

import contextlib
import math
import pickle
import time
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import optuna
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from tagtune.names import Metrics
from tagtune.samplers import DEFAULT_SAMPLER, make_sampler
from tagtune.search_spaces import SearchSpace
from tagtune.tracking import StopInfo
from tagtune.trainables.config import resolve_config
from tagtune.tune._ray_compat import optuna_study, optuna_trial
from tagtune.tune._restored import searcher_restored
from tagtune.tune.trainable import DIVERGED

OBJECTIVE_NAME = Metrics.VAL_MAUC  # what each study maximizes: a trial's best validation mAUC
EXPLORE_TRIALS = 2
"""``--goal best``: scored trials every family gets before the trailing half gets no more."""


def _enqueue_first(study: optuna.Study, space: SearchSpace, family: str, firsts: Sequence[Mapping[str, Any]]) -> None:
    """The family's first trials: a start portfolio's configs, or ``[{}]`` for its tuned
    defaults (Optuna's enqueue_trial: Ray's points_to_evaluate is ignored with a define-by-run
    space).  A value outside the (user's) space is left out: Optuna samples it.  On resume the
    study already holds them and skip_if_exists keeps each single."""
    registered = resolve_config({"family": family})
    for params in firsts:
        study.enqueue_trial(space.fixed_params({**registered, **params}), skip_if_exists=True)


class FamilySearcher(Searcher):
    """Round-robin over families; each family's configs come from its own Optuna study
    (sampler: ``tpe``, ``gp`` or ``random``, see :mod:`tagtune.samplers`)."""

    def __init__(
        self,
        spaces: Mapping[str, SearchSpace],
        trials_per_family: int | None,
        *,
        metric: str,
        mode: str,
        seed: int = 0,
        study_prefix: str = "tagtune",
        storage: optuna.storages.BaseStorage | None = None,
        defaults_first: bool = True,
        first_configs: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
        time_budget: float | None = None,
        warm_trials: Mapping[str, Sequence[optuna.trial.FrozenTrial]] | None = None,
        sampler: str = DEFAULT_SAMPLER,
        goal: str = "compare",
    ) -> None:
        super().__init__(metric=metric, mode=mode)
        self.sampler = sampler
        self.goal = goal
        self.family_best: dict[str, float] = {}  # family -> its best score so far
        self.scored: dict[str, int] = {}  # family -> its trials that ended with a score
        self.trials_per_family = trials_per_family
        self.seed = seed
        # the time budget counts the driver's wall time, across resumes (saved with the state)
        self.time_budget = time_budget
        self.elapsed_before = 0.0
        self.session_start: float | None = time.monotonic()
        #: trial id -> why the scheduler stopped it (tagtune.tune.schedulers.FamilyScheduler writes it)
        self.stops: dict[str, StopInfo] = {}
        #: family -> its early-stopping scheduler (kept here: Ray saves a searcher, not a scheduler)
        self.stop_state: dict[str, Any] = {}
        warm_trials = warm_trials or {}
        self.families = list(spaces)
        self.searchers: dict[str, OptunaSearch] = {}
        self.enqueued: dict[str, set[int]] = {}
        for i, (family, space) in enumerate(spaces.items()):
            self.searchers[family] = OptunaSearch(
                space=space.sample,
                metric=metric,
                mode=mode,
                sampler=make_sampler(sampler, seed=seed + i, trials_per_family=trials_per_family),
                study_name=f"{study_prefix}/{family}",
                storage=storage,
            )
            # optuna-dashboard and Optuna's plots name the objective (not "Objective 0")
            with warnings.catch_warnings():  # experimental since Optuna 3.2, stable in use
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna_study(self.searchers[family]).set_metric_names([OBJECTIVE_NAME])
            firsts = list((first_configs or {}).get(family) or ([{}] if defaults_first else []))
            self._start_study(family, space, list(warm_trials.get(family) or []), firsts)
        self.assigned: dict[str, str] = {}  # trial_id -> family
        self.optuna_ids: dict[str, tuple[str, int]] = {}  # trial_id -> (study name, trial number)
        self.firsts: set[str] = set()  # trial_ids that ran an enqueued config (defaults, portfolio)
        self.suggested = {family: 0 for family in self.families}

    def _start_study(self, family: str, space: SearchSpace, warm: list[Any], firsts: list[Mapping[str, Any]]) -> None:
        """Seed the family's study: a warm start's trials, else its first configs enqueued; and
        note the study's trial numbers of those (kept across a resume)."""
        study = optuna_study(self.searchers[family])
        if warm and not study.trials:
            study.add_trials(warm)
        if not warm:
            _enqueue_first(study, space, family, firsts)
        self.enqueued[family] = {t.number for t in study.get_trials(deepcopy=False) if "fixed_params" in t.system_attrs}

    def elapsed(self) -> float:
        """Seconds of search wall time so far (the driver's, summed over resumes)."""
        if self.session_start is None:  # the first call after a restore
            self.session_start = time.monotonic()
        return self.elapsed_before + time.monotonic() - self.session_start

    def budget_spent(self) -> bool:
        return self.time_budget is not None and self.elapsed() >= self.time_budget

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        limit = self.trials_per_family if self.trials_per_family is not None else math.inf
        open_families = [f for f in self.families if self.suggested[f] < limit]
        if not open_families or self.budget_spent():
            # Ray's annotation leaves out the FINISHED marker its Searcher protocol documents
            return Searcher.FINISHED  # type: ignore[return-value]
        open_families = self.families_to_grow(open_families)
        family = min(open_families, key=lambda f: (self.suggested[f], self.families.index(f)))
        config = self.searchers[family].suggest(trial_id)
        self.suggested[family] += 1
        self.assigned[trial_id] = family
        ot = optuna_trial(self.searchers[family], trial_id)
        if ot is not None:
            self.optuna_ids[trial_id] = (optuna_study(self.searchers[family]).study_name, ot.number)
            ot.set_user_attr("ray_trial_id", trial_id)
            if ot.number in getattr(self, "enqueued", {}).get(family, ()):  # (absent in older saves)
                self.firsts.add(trial_id)
        return {"family": family, "seed": self.seed, **(config or {})}

    def families_to_grow(self, open_families: list[str]) -> list[str]:
        """The families a new trial may go to.  ``compare``: all of them, round-robin.  ``best``:
        once every family has :data:`EXPLORE_TRIALS` scored trials, the leading half by best
        score so far (successive halving across families, ranked again at every trial); when
        those are spent, the rest."""
        if getattr(self, "goal", "compare") != "best":
            return open_families
        scored, best = getattr(self, "scored", {}), getattr(self, "family_best", {})
        if any(scored.get(f, 0) < EXPLORE_TRIALS for f in self.families):
            return open_families
        ranked = sorted(self.families, key=lambda f: -best.get(f, -math.inf))
        leaders = set(ranked[: max(1, math.ceil(len(ranked) / 2))])
        return [f for f in open_families if f in leaders] or open_families

    def _score(self, family: str, result: Mapping[str, Any] | None, ended: bool) -> None:
        """Keep the family's best score (and, when the trial ended, count it as scored)."""
        value = (result or {}).get(self.metric)
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            return
        best = self.__dict__.setdefault("family_best", {})
        best[family] = max(best.get(family, -math.inf), float(value))
        if ended:
            scored = self.__dict__.setdefault("scored", {})
            scored[family] = scored.get(family, 0) + 1

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
        if not error:
            self._score(family, result, ended=True)
        searcher = self.searchers[family]
        stop = self.stops.get(trial_id)
        if stop is not None and not error:
            # Stopped: its last result never reached on_trial_result (Tune skips the searcher for
            # a result the scheduler stopped on); report it.  A converged trial (--patience) then
            # completes with that result's best score; any other is told PRUNED (OptunaSearch
            # tells PRUNED when it gets no value and no error).
            if result and isinstance(result.get(self.metric), (int, float)) and math.isfinite(result[self.metric]):
                try:
                    searcher.on_trial_result(trial_id, result)
                except optuna.exceptions.UpdateFinishedTrialError:
                    pass
            searcher.on_trial_complete(trial_id, result=result if stop.converged else None, error=False)
            return
        searcher.on_trial_complete(trial_id, result=result, error=error)

    def reconcile(self, trials: Sequence[Any]) -> None:
        """Match the trial counts to the trials Ray restored (``trials``, at a resumption).

        Ray writes its trial list and this searcher's state one after the other and uploads
        them in the background, so after a SIGKILL the two may be from different moments: a
        trial this searcher suggested may be missing from Ray's list.  Such a trial is lost
        (its Optuna trial is told FAIL) and its family's count drops, so the resumed search
        runs a replacement and the budget is kept."""
        known = {t.trial_id for t in trials}
        for trial_id, family in list(self.assigned.items()):
            if trial_id in known:
                continue
            del self.assigned[trial_id]
            self.firsts.discard(trial_id)
            with contextlib.suppress(Exception):  # already ended in Optuna's storage: keep it
                self.searchers[family].on_trial_complete(trial_id, result=None, error=True)
        for family in self.families:
            self.suggested[family] = sum(1 for t in trials if t.config.get("family") == family)

    def stop_info(self, trial_id: str) -> StopInfo | None:
        """Why the trial was stopped before max_epochs, or None (it ran them all, or failed)."""
        return self.stops.get(trial_id)

    def is_first(self, trial_id: str) -> bool:
        """Whether the trial runs one of its family's first configs (the registered defaults or a
        start portfolio's), not a sampled one."""
        return trial_id in getattr(self, "firsts", ())

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
        state = self.__dict__.copy()
        state["elapsed_before"], state["session_start"] = self.elapsed(), None
        with open(checkpoint_path, "wb") as fh:
            pickle.dump(state, fh)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as fh:
            self.__dict__.update(pickle.load(fh))
        searcher_restored(self)  # the resumed search's MLflow callback tags trials from it
