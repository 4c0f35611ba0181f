"""The one MLflow writer of a search: a driver-side Ray Tune callback.

Workers never touch the store (no route to it needed, no SQLite lock contention).  A child run
per trial under the search's parent run, tagged ``tagtune.family``; params are the trial's full
config; each epoch's metrics go in one ``log_batch`` call (step = epoch); the best checkpoint is
logged as an artifact when the trial ends.  A trial the search's scheduler stopped early (an
early-stopping rule or the spent time budget, told by ``stop_info``) still ends FINISHED, tagged
with the epoch and the rule (``Tag.STOPPED_*``).  Trials restored after a driver restart find their
existing run (by the ``tagtune.trial_id`` tag) instead of getting a duplicate.

A trial the driver was killed in is trained again from its first epoch on resume (the trainable
keeps no training state; its checkpoint is the best model so far).  Ray's last state snapshot
may name a checkpoint of it that is gone (``num_to_keep=1`` removed it when a better one came
after the snapshot): such a trial is started afresh instead of failing to restore, and the
epochs its run already has are not logged a second time.  A trial whose run had ended before
the kill but after the snapshot is trained again by Ray; its run is left as it was.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from ray import tune

from tagtune.names import Metrics, Tag
from tagtune.tracking import BufferedWrites, RunKind, StopInfo, parent_filter, ready_store, source_tags
from tagtune.trainables.config import resolve_config
from tagtune.tune._restored import restored_searcher
from tagtune.tune.trainable import DIVERGED

# What a trial's run records of each result (those the result has), in the schema's names.
LOGGED_METRICS = tuple(dict.fromkeys(Metrics.EPOCH + Metrics.BEST + Metrics.TASK))
# Each trial's checkpoint is also an MLflow 3 logged model (the UI's model views list it); it
# uploads the checkpoint a second time: TAGTUNE_LOG_MODELS=0 turns it off.
LOG_MODELS = os.environ.get("TAGTUNE_LOG_MODELS", "1") != "0"
_SECRET_WORDS = ("password", "secret", "token", "apikey", "api_key", "credential")


def _param_value(value: Any) -> str:
    return str(value)[:6000]


def _is_secret(key: str) -> bool:
    low = key.lower()
    return any(word in low for word in _SECRET_WORDS)


def _first_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    for line in reversed(lines):  # the exception line is at the end of a traceback
        if "Error" in line or "Exception" in line:
            return line[:500]
    return (lines[-1] if lines else "unknown error")[:500]


class MlflowTrialLogger(tune.Callback):
    """Writes every trial of a search to MLflow from the driver; prints progress lines."""

    def __init__(
        self,
        tracking_uri: str,
        experiment_id: str,
        parent_run_id: str,
        total_trials: int,
        echo: Callable[[str], None] | None = None,
        stop_info: Callable[[str], StopInfo | None] | None = None,
        datasets: Sequence[Any] = (),
        searcher: Any = None,
        epoch_echo: Callable[[str], None] | None = None,
    ):
        """``datasets``: MLflow dataset inputs logged on every trial's run; ``searcher``: the
        search's :class:`tagtune.tune.searcher.FamilySearcher` (each run is tagged with its Optuna
        study and trial number, each Optuna trial gets its run's id and name); ``epoch_echo``:
        where the per-epoch lines go (default ``echo``; the progress line drops them in a terminal);
        ``stop_info``: why a trial was stopped early (None: it was not)."""
        self.stop_info = stop_info or (lambda trial_id: None)
        self.tracking_uri = tracking_uri
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id
        self.total_trials = total_trials
        self.echo = echo or (lambda line: print(line, file=sys.stderr, flush=True))
        self.client = BufferedWrites(MlflowClient(ready_store(tracking_uri)), self.echo, tracking_uri)
        self.runs: dict[str, str] = {}
        self.placed: set[str] = set()  # trials whose node is already tagged
        self.retries: dict[str, int] = {}
        self.done = 0
        self.datasets = list(datasets)
        self.epoch_echo = epoch_echo
        self.searcher = searcher
        self.logged_upto: dict[str, int] = {}  # trial id -> last epoch its run has (a resumed search)
        self.recorded: set[str] = set()  # trials whose run had ended when this (resumed) search began
        self.restores_checked = False

    def setup(
        self, stop: Any = None, num_samples: int | None = None, total_num_samples: int | None = None, **info: Any
    ) -> None:
        """At the start of a search, or of its resumption: find the runs that already exist."""
        children = self._children()
        self.runs = {r.data.tags[Tag.TRIAL_ID]: r.info.run_id for r in children if Tag.TRIAL_ID in r.data.tags}
        self.done = len([r for r in children if r.info.status in ("FINISHED", "FAILED")])
        self.restores_checked = False
        self.logged_upto = {}
        # A trial whose run ended after Ray's last state snapshot is trained again by a resumed
        # search (Ray still has it running): its run is complete, nothing of the rerun is logged.
        self.recorded = {
            r.data.tags[Tag.TRIAL_ID]
            for r in children
            if Tag.TRIAL_ID in r.data.tags and r.info.status in ("FINISHED", "FAILED")
        }
        for run in children:  # a trial the driver was killed in: the epochs its run already has
            trial_id = run.data.tags.get(Tag.TRIAL_ID)
            if run.info.status == "RUNNING" and trial_id and run.data.tags.get(Tag.KIND) == RunKind.TRIAL:
                steps = [m.step for m in self.client.get_metric_history(run.info.run_id, Metrics.VAL_MAUC)]
                if steps:
                    self.logged_upto[trial_id] = max(steps)

    def __getstate__(self) -> dict[str, Any]:
        # Ray pickles the callback into its experiment state; the client is rebuilt on restore.
        state = self.__dict__.copy()
        state.pop("client", None)
        state["searcher"] = None  # Ray saves the searcher itself; a resumed run tags what it can
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        # a callback pickled by an older tagtune lacks the newer attributes
        state = {
            "datasets": [],
            "searcher": None,
            "epoch_echo": None,
            "logged_upto": {},
            "recorded": set(),
            **state,
            "restores_checked": False,
        }
        self.__dict__.update(state)
        self.client = BufferedWrites(MlflowClient(ready_store(self.tracking_uri)), self.echo, self.tracking_uri)

    # -- bookkeeping -------------------------------------------------------------------------
    def _children(self) -> list[Any]:
        return self.client.search_runs(
            [self.experiment_id],
            filter_string=parent_filter(self.parent_run_id),
            max_results=5000,
        )

    def _finished_runs(self) -> list[Any]:
        return [r for r in self._children() if r.info.status in ("FINISHED", "FAILED")]

    def _searcher(self) -> Any | None:
        """The search's searcher: given at the start, or the one Ray restored on a resume (the
        pickled callback holds none)."""
        return self.searcher if self.searcher is not None else restored_searcher()

    def _run_for(self, trial: Any) -> str:
        run_id = self.runs.get(trial.trial_id)
        if run_id is not None:
            return run_id
        family = str(trial.config.get("family", "unknown"))
        tags = {
            **source_tags(),
            Tag.PARENT: self.parent_run_id,
            Tag.FAMILY: family,
            Tag.TRIAL_ID: trial.trial_id,
            Tag.KIND: RunKind.TRIAL.value,
        }
        searcher = self._searcher()
        optuna_id = searcher.optuna_identity(trial.trial_id) if searcher is not None else None
        if optuna_id is not None:
            tags[Tag.OPTUNA_STUDY], tags[Tag.OPTUNA_TRIAL] = optuna_id[0], str(optuna_id[1])
        if searcher is not None and searcher.is_first(trial.trial_id):
            tags[Tag.FIRST_TRIAL] = "True"
        run_name = f"{family}-{trial.trial_id}"
        run = self.client.create_run(self.experiment_id, run_name=run_name, tags=tags)
        run_id = run.info.run_id
        self.runs[trial.trial_id] = run_id
        if self.datasets:
            self.client.log_inputs(run_id, datasets=self.datasets)
        if searcher is not None and not run_id.startswith("pending-"):
            searcher.name_run(trial.trial_id, run_id, run_name)
        full: Mapping[str, Any]
        try:
            full = resolve_config(trial.config)
        except Exception:  # noqa: BLE001 - log what there is; the trial will report the error
            full = dict(trial.config)
        params = [Param(k, _param_value(v)) for k, v in sorted(full.items()) if not _is_secret(k)]
        self.client.log_batch(run_id, params=params)
        return run_id

    # -- Tune hooks --------------------------------------------------------------------------
    def on_step_begin(self, iteration: int, trials: list[Any], **info: Any) -> None:
        """Once per start or resumption, before any trial is scheduled: the searcher's trial
        counts are matched to the trials Ray restored (FamilySearcher.reconcile), and a restored
        trial whose recorded checkpoint is gone from storage starts afresh (same trial id, same run) rather
        than failing in Ray's restore (see the module's docstring)."""
        if self.restores_checked:
            return
        self.restores_checked = True
        searcher = self._searcher()
        if searcher is not None:
            searcher.reconcile(trials)
        for trial in trials:
            if trial.status not in ("PENDING", "PAUSED") or trial.checkpoint is None:
                continue
            checkpoint = trial.checkpoint
            try:
                gone = checkpoint.filesystem.get_file_info(checkpoint.path).type.name == "NotFound"
            except Exception:  # noqa: BLE001 - cannot tell: leave it to Ray
                gone = False
            if gone:
                manager = trial.run_metadata.checkpoint_manager
                trial.run_metadata.checkpoint_manager = type(manager)(manager.checkpoint_config)
                trial.invalidate_json_state()
                self.echo(
                    f"    {trial.config.get('family')} {trial.trial_id}: its checkpoint in Ray's last state "
                    "is gone (a newer one replaced it); the trial trains again from its first epoch"
                )

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._run_for(trial)

    def on_trial_result(
        self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any], **info: Any
    ) -> None:
        if trial.trial_id in self.recorded:
            return
        run_id = self._run_for(trial)
        step = int(result.get("epoch", result.get("training_iteration", 0)))
        now = int(time.time() * 1000)
        metrics = [
            Metric(key, float(result[key]), now, step)
            for key in LOGGED_METRICS
            if isinstance(result.get(key), (int, float))
        ]
        tags = []
        if trial.trial_id not in self.placed and result.get("node_id"):
            self.placed.add(trial.trial_id)
            tags = [RunTag(Tag.NODE_ID, str(result["node_id"])), RunTag(Tag.NODE_IP, str(result.get("node_ip", "")))]
        if step > self.logged_upto.get(trial.trial_id, 0) or tags:
            # a trial trained again after a killed driver: its run keeps the epochs it has
            self.client.log_batch(
                run_id, metrics=metrics if step > self.logged_upto.get(trial.trial_id, 0) else [], tags=tags
            )
        if Metrics.VAL_MAUC in result:
            (self.epoch_echo or self.echo)(
                f"    {trial.config.get('family')} {trial.trial_id} epoch {step}: "
                f"val_mAUC {result[Metrics.VAL_MAUC]:.4f} val_mAP {result.get(Metrics.VAL_MAP, 0):.4f} "
                f"({result.get(Metrics.EPOCH_SECONDS, 0):.1f} s)"
            )

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        if trial.trial_id in self.recorded:
            self.echo(f"    {trial.config.get('family')} {trial.trial_id}: its run was already complete, kept")
            return
        last = trial.last_result or {}
        if last.get(DIVERGED):
            self._fail(trial, str(last.get("error", "training diverged")))
            return
        if trial.trial_id not in self.runs and "epoch" not in last:
            return  # never started (the search ended first): no run to write
        run_id = self._run_for(trial)
        checkpoint = trial.checkpoint
        if checkpoint is not None:
            with checkpoint.as_directory() as folder:
                self.client.log_artifacts(run_id, folder, "checkpoint")
                if LOG_MODELS:
                    family = str(trial.config.get("family", "unknown"))
                    self.client.log_checkpoint_model(
                        run_id, self.experiment_id, f"{family}-{trial.trial_id}", folder, {Tag.FAMILY: family}
                    )
        stop = self.stop_info(trial.trial_id)
        if stop is not None:
            self.client.log_batch(run_id, tags=[RunTag(k, v) for k, v in stop.tags().items()])
        self.client.set_terminated(run_id, "FINISHED")
        self.done += 1
        how = f"stopped at epoch {stop.epoch} by {stop.rule}" if stop else f"after {int(last.get('epoch', 0))} epochs"
        self.echo(
            f"{self._count()} {trial.config.get('family')} {trial.trial_id} "
            f"finished: best val_mAUC {last.get(Metrics.SEARCH, float('nan')):.4f} {how}"
        )

    def _count(self) -> str:
        """``[3/8]``, or ``[3]`` when the search has no trial limit (a time budget)."""
        return f"[{self.done}/{self.total_trials}]" if self.total_trials > 0 else f"[{self.done}]"

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        reason = "unknown error"
        error_file = trial.error_file
        if error_file:
            try:
                with open(error_file) as fh:
                    reason = _first_line(fh.read())
            except OSError:
                pass
        self._fail(trial, reason)

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        """Runs still RUNNING once the search is over belong to trials Ray never restored: the
        driver was killed after the trial started but before Ray's state snapshot recorded it,
        so the resumed search ran a replacement.  Such a run keeps what it logged, is marked
        KILLED and of kind ``lost`` (out of the trial counts), with the reason.

        Writes kept while the tracking server was away are logged first (waiting for it)."""
        left = self.client.drain()
        if left:
            self.echo(
                f"tagtune: MLflow at {self.tracking_uri} did not come back: {left} writes of this search "
                "were not logged (what was logged before is kept); the trials' results are in Ray's state"
            )
            return
        known = {t.trial_id for t in trials}
        for run in self._children():
            tags = run.data.tags
            if run.info.status != "RUNNING" or tags.get(Tag.KIND) != RunKind.TRIAL or tags.get(Tag.TRIAL_ID) in known:
                continue
            self.client.log_batch(
                run.info.run_id,
                tags=[
                    RunTag(Tag.KIND, RunKind.LOST.value),
                    RunTag(
                        Tag.ERROR,
                        "the search's driver was killed before Ray saved this trial; "
                        "the resumed search ran a replacement trial",
                    ),
                ],
            )
            self.client.set_terminated(run.info.run_id, "KILLED")
            self.echo(
                f"    trial {tags.get(Tag.TRIAL_ID)} was lost with the killed driver (its run is kept, "
                "marked KILLED; a replacement trial ran)"
            )

    def _log_bests(self) -> None:
        """The search run's best validation mAUC, overall and per family (``best_val_mAUC``,
        ``best_val_mAUC_<family>``), so searches sort and compare in the runs table."""
        best: dict[str, float] = {}
        for run in self._finished_runs():
            value = run.data.metrics.get(Metrics.SEARCH)
            family = run.data.tags.get(Tag.FAMILY)
            if value is None or family is None or run.data.tags.get(Tag.KIND) != RunKind.TRIAL:
                continue
            best[family] = max(best.get(family, value), value)
        if not best:
            return
        now = int(time.time() * 1000)
        metrics = [Metric(f"{Metrics.SEARCH}_{f}", v, now, 0) for f, v in sorted(best.items())]
        metrics.append(Metric(Metrics.SEARCH, max(best.values()), now, 0))
        self.client.log_batch(self.parent_run_id, metrics=metrics)
        self.client.flush(force=True)

    def on_trial_recover(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        """A trial's worker failed and FailureConfig retries it: the same run goes on."""
        run_id = self._run_for(trial)
        self.retries[trial.trial_id] = self.retries.get(trial.trial_id, 0) + 1
        self.client.set_tag(run_id, Tag.RETRIES, str(self.retries[trial.trial_id]))
        self.echo(
            f"    {trial.config.get('family')} {trial.trial_id} failed; retrying (retry {self.retries[trial.trial_id]})"
        )

    def _fail(self, trial: Any, reason: str) -> None:
        """Record the trial's run as FAILED with the reason; the search goes on."""
        if trial.trial_id in self.recorded:
            return
        run_id = self._run_for(trial)
        self.client.log_batch(run_id, tags=[RunTag(Tag.ERROR, reason), RunTag(Tag.STATUS, "failed")])
        self.client.set_terminated(run_id, "FAILED")
        self.done += 1
        self.echo(f"{self._count()} {trial.config.get('family')} {trial.trial_id} FAILED: {reason}")
