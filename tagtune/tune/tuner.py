"""The Tune run of a search: its trainable (the data and resources bound to
:func:`tagtune.tune.trainable.tune_trial`), a new :class:`ray.tune.Tuner`, or one restored from
Ray's experiment state when a search is resumed."""

from __future__ import annotations

from typing import Any

from tagtune.names import Metrics
from tagtune.trainables.data import TrialData
from tagtune.tune.trainable import tune_trial


def trainable(spec: Any, data: TrialData) -> Any:
    """:func:`tune_trial` with the data and ``max_epochs`` bound, asking for the spec's CPUs and
    GPUs per trial."""
    from ray import tune

    return tune.with_resources(
        tune.with_parameters(tune_trial, data=data, max_epochs=spec.max_epochs),
        {"cpu": spec.cpus_per_trial, "gpu": spec.gpus_per_trial or 0.0},
    )


def new_tuner(
    spec: Any,
    data: TrialData,
    run_name: str,
    storage: str,
    search_alg: Any,
    callback: Any,
    scheduler: Any = None,
) -> Any:
    """The Tune run of a search: ``search_alg`` proposes the trials, ``scheduler`` stops them
    early (per family) and at the time budget, ``callback`` (one Tune
    callback or a list) logs them."""
    from ray import tune

    return tune.Tuner(
        trainable(spec, data),
        tune_config=tune.TuneConfig(
            search_alg=search_alg,
            metric=Metrics.SEARCH,
            mode="max",
            # the searcher ends the search (Searcher.FINISHED): its counts are matched to the
            # restored trials on a resume, Ray's own sample counter may be ahead of them
            num_samples=-1,
            scheduler=scheduler,
            max_concurrent_trials=spec.max_concurrent,
            # Every trial asks for the same resources, so a finished trial's worker takes
            # the next one: no new process, torch import or data fetch per trial.  (A trial
            # then starts at once, sometimes before Tune's state snapshot records it; after a
            # SIGKILL the resumed search replaces it, see MlflowTrialLogger.on_experiment_end.)
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=run_name,
            storage_path=storage,
            callbacks=callback if isinstance(callback, list) else [callback],
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            failure_config=tune.FailureConfig(max_failures=spec.max_failures),
            verbose=0,
        ),
    )


def restored_tuner(ray_path: str, spec: Any, data: TrialData) -> Any:
    """The Tune run of an interrupted search, from Ray's experiment state at ``ray_path``: its
    unfinished trials go on, errored ones stay as they were."""
    from ray import tune

    return tune.Tuner.restore(
        ray_path,
        trainable=trainable(spec, data),
        resume_unfinished=True,
        resume_errored=False,
        restart_errored=False,
    )
