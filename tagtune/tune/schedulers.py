"""Early stopping per family, and the time budget: one Tune scheduler over a search's families.

:class:`FamilyScheduler` is the search's Ray Tune ``TrialScheduler``.  It keys every trial by its
family (``config["family"]``) and hands its results to that family's own Ray
``AsyncHyperBandScheduler`` (``asha``: one bracket; ``hyperband``: several brackets, the
asynchronous HyperBand of Li et al.), so a trial is only ever compared with its own family's
trials (an ``fc1`` epoch and an ``lstm`` epoch are not comparable).  ``none`` stops nothing.
Once the search's time budget is spent it stops every running trial at its next epoch boundary.

What it decides is recorded in :class:`tagtune.tune.searcher.FamilySearcher` (``stops``: trial id ->
:class:`tagtune.tracking.StopInfo`), which tells Optuna PRUNED and which the MLflow callback
reads to tag the run.  The per-family schedulers' state (the rungs) also lives in the searcher:
Ray checkpoints a search's searcher but not its scheduler, so this way ``tagtune resume`` gets
the rungs back, and a trial stopped before the driver died is stopped again at once (never run
past its stop).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler, TrialScheduler

from tagtune.errors import InputError
from tagtune.names import Metrics
from tagtune.spec import SearchSpec
from tagtune.tracking import StopInfo

if TYPE_CHECKING:
    from tagtune.tune.searcher import FamilySearcher

SCHEDULERS = ("asha", "hyperband", "none")
#: The rule a trial cut by the spent time budget is tagged with.
TIME_BUDGET_RULE = "time budget"
#: The epoch counter each trial reports (tagtune.tune.trainable).
TIME_ATTR = "epoch"
#: Curve grace: a trial the rung would stop goes on when its last epoch's gain, kept up for the
#: epochs to the next rung at this share (curves flatten), reaches the rung's cutoff.
CURVE_DAMPING = 0.5


@dataclass(frozen=True)
class StopRule:
    """An early-stopping rule: ``kind`` (asha, hyperband, none), its grace period (epochs before
    a trial can be stopped), reduction factor (1 in ``reduction_factor`` trials go on at each
    rung) and the metric compared at the rungs (higher is better), up to ``max_epochs``."""

    kind: str = SearchSpec.scheduler
    grace_period: int = SearchSpec.grace_period
    reduction_factor: float = SearchSpec.reduction_factor
    metric: str = SearchSpec.milestone_metric
    max_epochs: int = SearchSpec.max_epochs
    #: spare a slow starter whose learning curve is still climbing fast enough (see :meth:`spare`)
    curve_grace: bool = SearchSpec.curve_grace
    #: end a trial whose validation mAUC has not improved for this many epochs (0: never)
    patience: int = SearchSpec.patience

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULERS:
            raise InputError(f"--scheduler {self.kind!r} is not one of {', '.join(SCHEDULERS)}")
        if self.patience < 0:
            raise InputError(f"--patience must be 0 (never) or a number of epochs, got {self.patience}")
        if self.kind == "none":
            return
        if self.grace_period < 1:
            raise InputError(f"--grace-period must be at least 1 epoch, got {self.grace_period}")
        if self.reduction_factor <= 1:
            raise InputError(f"--reduction-factor must be above 1, got {self.reduction_factor:g}")
        if not re.fullmatch(r"(best_)?val_\w+", self.metric):
            raise InputError(
                f"--milestone-metric {self.metric!r}: use a validation metric a trial reports every "
                "epoch, e.g. best_val_mAUC (the default) or val_mAUC"
            )

    @property
    def brackets(self) -> int:
        """ASHA's one bracket; HyperBand's one per rung count (at least 1)."""
        if self.kind != "hyperband" or self.grace_period >= self.max_epochs:
            return 1
        return max(1, int(math.log(self.max_epochs / self.grace_period) / math.log(self.reduction_factor)) + 1)

    @property
    def rungs(self) -> list[int]:
        """The epochs at which the first bracket compares trials (below ``max_epochs``)."""
        out, t = [], float(self.grace_period)
        while t < self.max_epochs:
            out.append(int(t))
            t *= self.reduction_factor
        return out

    def describe(self) -> str:
        """The rule as a tag value: ``asha(grace 2, rf 3, best_val_mAUC)``."""
        if self.kind == "none":
            return "none"
        extra = f", {self.brackets} brackets" if self.kind == "hyperband" else ""
        return f"{self.kind}(grace {self.grace_period}, rf {self.reduction_factor:g}, {self.metric}{extra})"

    def spare(self, curve: list[float], cutoff: float | None) -> bool:
        """Whether a trial the rung would stop goes on (curve grace): ``curve`` is its metric per
        epoch so far; its last gain, kept up at :data:`CURVE_DAMPING` for as many epochs again as
        it has run (the next rung, at most ``max_epochs``), would reach the rung's ``cutoff``."""
        if not self.curve_grace or cutoff is None or len(curve) < 2:
            return False
        epoch = len(curve)
        gain = curve[-1] - curve[-2]
        if not math.isfinite(gain) or gain <= 0:
            return False
        ahead = min(epoch * (self.reduction_factor - 1), self.max_epochs - epoch)
        return curve[-1] + CURVE_DAMPING * gain * ahead >= cutoff

    def family_scheduler(self, seed: int) -> AsyncHyperBandScheduler | None:
        """A fresh scheduler for one family's trials (None for ``none``, and when the grace
        period leaves no epoch to stop at)."""
        if self.kind == "none" or self.grace_period >= self.max_epochs:
            return None
        return _SeededBrackets(
            seed,
            time_attr=TIME_ATTR,
            metric=self.metric,
            mode="max",
            max_t=self.max_epochs,
            grace_period=self.grace_period,
            reduction_factor=self.reduction_factor,
            brackets=self.brackets,
            # a trial that reaches max_epochs ends by itself (completed, not stopped)
            stop_last_trials=False,
        )


def patience_rule(patience: int) -> str:
    """The rule a converged trial is tagged with (``--patience``)."""
    return f"patience {patience}"


class _SeededBrackets(AsyncHyperBandScheduler):
    """Ray's ASHA with a seeded bracket choice (Ray draws it from numpy's global generator)."""

    def __init__(self, seed: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._rng = np.random.default_rng(seed)

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        sizes = np.array([len(b._rungs) for b in self._brackets])
        probs = np.e ** (sizes - sizes.max())
        self._trial_info[trial.trial_id] = self._brackets[int(self._rng.choice(len(sizes), p=probs / probs.sum()))]


def _rung_cutoff(scheduler: AsyncHyperBandScheduler, trial_id: str, epoch: int) -> float | None:
    """The cutoff of the rung the trial was just compared at (its bracket's highest milestone at
    or below ``epoch`` that recorded it), or None."""
    bracket = scheduler._trial_info.get(trial_id)
    if bracket is None:
        return None
    for milestone, recorded in bracket._rungs:
        if milestone <= epoch and trial_id in recorded:
            cutoff = bracket.cutoff(recorded)
            return None if cutoff is None else float(cutoff)
    return None


class FamilyScheduler(FIFOScheduler):
    """Per-family early stopping (``rule``) and the time budget of a search (see the module)."""

    def __init__(self, searcher: FamilySearcher, rule: StopRule) -> None:
        super().__init__()
        self.searcher = searcher
        self.rule = rule

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        return True  # each family's scheduler has its own metric (the rule's) and mode

    def _family_of(self, trial: Any) -> str:
        return str(trial.config.get("family", ""))

    def _scheduler(self, trial: Any) -> AsyncHyperBandScheduler | None:
        if self.rule.kind == "none":
            return None
        family = self._family_of(trial)
        schedulers = self.searcher.stop_state
        if family not in schedulers:
            schedulers[family] = self.rule.family_scheduler(self.searcher.seed + len(schedulers))
        return schedulers[family]

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        scheduler = self._scheduler(trial)
        if scheduler is not None and trial.trial_id not in scheduler._trial_info:
            scheduler.on_trial_add(tune_controller, trial)

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> str:
        if TIME_ATTR not in result:
            return TrialScheduler.CONTINUE
        epoch = int(result[TIME_ATTR])
        if trial.trial_id in self.searcher.stops:  # stopped before a resume: stop it again
            return TrialScheduler.STOP
        if self.searcher.budget_spent():
            return self._stop(trial, epoch, TIME_BUDGET_RULE)
        if self._converged(trial.trial_id, epoch, result):
            return self._stop(trial, epoch, patience_rule(self.rule.patience))
        scheduler = self._scheduler(trial)
        if scheduler is None or self.rule.metric not in result or not math.isfinite(float(result[self.rule.metric])):
            return TrialScheduler.CONTINUE
        if trial.trial_id not in scheduler._trial_info:
            scheduler.on_trial_add(tune_controller, trial)
        curves = self.searcher.__dict__.setdefault("curves", {})
        curve = curves.setdefault(trial.trial_id, [])
        del curve[epoch - 1 :]  # a result repeated after a restore replaces the one recorded
        curve.append(float(result[self.rule.metric]))
        decision = scheduler.on_trial_result(tune_controller, trial, result)
        if decision == TrialScheduler.STOP and epoch < self.rule.max_epochs:
            if self.rule.spare(curve, _rung_cutoff(scheduler, trial.trial_id, epoch)):
                return TrialScheduler.CONTINUE  # recorded at this rung; judged again at the next
            return self._stop(trial, epoch, self.rule.describe())
        return TrialScheduler.CONTINUE

    def _converged(self, trial_id: str, epoch: int, result: dict[str, Any]) -> bool:
        """Whether the trial's validation mAUC has not improved for ``rule.patience`` epochs
        (its best epoch is kept with the searcher's state, so a resume keeps counting)."""
        if self.rule.patience <= 0 or Metrics.VAL_MAUC not in result or epoch >= self.rule.max_epochs:
            return False
        best_epochs = self.searcher.__dict__.setdefault("best_epochs", {})
        value, best = float(result[Metrics.VAL_MAUC]), float(result.get(Metrics.BEST_VAL_MAUC, math.nan))
        if trial_id not in best_epochs or not math.isfinite(best) or value >= best:
            best_epochs[trial_id] = epoch
        return epoch - best_epochs[trial_id] >= self.rule.patience

    def _stop(self, trial: Any, epoch: int, rule: str) -> str:
        self.searcher.stops[trial.trial_id] = StopInfo(epoch=epoch, rule=rule)
        return TrialScheduler.STOP

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> None:
        scheduler = self._scheduler(trial)
        if scheduler is not None and trial.trial_id in scheduler._trial_info:
            if TIME_ATTR in (result or {}) and self.rule.metric in result:
                scheduler.on_trial_complete(tune_controller, trial, result)
            else:
                scheduler._trial_info.pop(trial.trial_id, None)

    def on_trial_remove(self, tune_controller: Any, trial: Any) -> None:
        scheduler = self._scheduler(trial)
        if scheduler is not None:
            scheduler._trial_info.pop(trial.trial_id, None)

    def on_trial_error(self, tune_controller: Any, trial: Any) -> None:
        self.on_trial_remove(tune_controller, trial)

    def debug_string(self) -> str:
        return f"tagtune FamilyScheduler: {self.rule.describe()}, {len(self.searcher.stops)} stopped"
