"""A search end to end: data -> Ray Tune + Optuna (one study per family) -> MLflow -> report."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from search_spaces import SearchSpace, load_space
from trainables.data import load_dataset, split_indices
from trainables.errors import InputError
from trainables.loop import TrialData
from trainables.models import list_families
from tracking import open_store
from tracking._store import TAG_KIND, get_or_create_experiment

SEARCH_METRIC = "best_val_mAUC"


@dataclass
class SearchSpec:
    """Everything a search needs, validated by :meth:`check` before anything starts."""

    train: str
    families: list[str]
    trials_per_family: int = 4
    max_epochs: int = 10
    experiment: str = "tagtune"
    tracking_uri: str | None = None
    seed: int = 0
    val_fraction: float = 0.2
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    max_concurrent: int | None = None
    address: str | None = None
    storage_path: str = "tagtune-runs"
    spaces_dir: str | None = None
    max_failures: int = 0
    spaces: dict[str, SearchSpace] = field(default_factory=dict)

    def check(self) -> None:
        """Validate flags and load every family's space, so mistakes surface before Ray starts."""
        if self.trials_per_family < 1:
            raise InputError(f"--trials-per-family must be at least 1, got {self.trials_per_family}")
        if self.max_epochs < 1:
            raise InputError(f"--max-epochs must be at least 1, got {self.max_epochs}")
        if not 0.0 < self.val_fraction < 1.0:
            raise InputError(f"--val-fraction must be between 0 and 1, got {self.val_fraction}")
        if self.cpus_per_trial <= 0:
            raise InputError(f"--cpus-per-trial must be positive, got {self.cpus_per_trial}")
        if self.gpus_per_trial < 0:
            raise InputError(f"--gpus-per-trial must be 0 or more, got {self.gpus_per_trial}")
        if not self.families:
            raise InputError("--families is empty; name at least one family or `all`")
        self.spaces = {f: load_space(f, self.spaces_dir) for f in self.families}
        if not Path(self.train).exists():
            raise InputError(
                f"--train {self.train}: no such file or folder; pass a folder of *.tfrecord, "
                "an .h5 file or a tagtune cache (make one with `tagtune data synth OUT`)"
            )


def parse_families(text: str) -> list[str]:
    """``fc1,fc2`` or ``all`` -> family names (unknown names raise InputError)."""
    from trainables.models import get_family

    names = list_families() if text.strip() == "all" else [t.strip() for t in text.split(",") if t.strip()]
    seen: list[str] = []
    for name in names:
        get_family(name)
        if name not in seen:
            seen.append(name)
    return seen


def prepare_data(spec: SearchSpec) -> TrialData:
    """Read (or load from the cache) the training data and carve the seeded validation split."""
    ds = load_dataset(spec.train)
    train_idx, val_idx = split_indices(ds.n_clips, spec.val_fraction, spec.seed)
    return TrialData(
        x=np.asarray(ds.x), y=np.asarray(ds.y), train_idx=train_idx, val_idx=val_idx,
        class_names=tuple(ds.class_names),
    )


def _init_ray(spec: SearchSpec) -> None:
    import ray

    if ray.is_initialized():
        return
    kwargs: dict[str, Any] = {
        "include_dashboard": False,
        "logging_level": "ERROR",
        "log_to_driver": False,  # progress comes from the driver callback; errors via error files
        "configure_logging": True,
    }
    try:
        if spec.address:
            ray.init(address=spec.address, **kwargs)
        else:
            ray.init(**kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = spec.address or "a local Ray instance"
        raise InputError(f"cannot connect to Ray at {where}: {str(exc).splitlines()[0][:200]}; "
                         "check --address (HOST:PORT of `ray start --head`)") from None


@dataclass
class SearchOutcome:
    experiment_id: str
    parent_run_id: str
    tracking_uri: str
    wall_seconds: float
    n_errored: int


def run_search(spec: SearchSpec, echo: Callable[[str], None] | None = None) -> SearchOutcome:
    """Run the whole search; returns where it was logged.  Raises InputError on bad input."""
    from ray import tune

    from search_spaces import SearchSpace  # noqa: F401 - for type checkers
    from tagtune.searcher import FamilySearcher
    from trainables.trial import tune_trial
    from tracking.callback import MlflowTrialLogger

    say = echo or (lambda line: print(line, file=sys.stderr, flush=True))
    spec.check()
    t0 = time.perf_counter()
    say(f"reading {spec.train} ...")
    data = prepare_data(spec)
    client, uri = open_store(spec.tracking_uri)
    n_frames, n_features, n_classes = data.shape
    say(
        f"data: {len(data.train_idx)} train / {len(data.val_idx)} validation clips, "
        f"{n_frames} x {n_features} frames, {n_classes} classes ({time.perf_counter() - t0:.1f} s)"
    )
    exp = get_or_create_experiment(client, uri, spec.experiment)
    total = spec.trials_per_family * len(spec.families)
    parent = client.create_run(
        exp.experiment_id,
        run_name=f"search-{time.strftime('%Y%m%d-%H%M%S')}",
        tags={TAG_KIND: "search", "tagtune.families": ",".join(spec.families)},
    )
    parent_id = parent.info.run_id
    from mlflow.entities import Param

    client.log_batch(
        parent_id,
        params=[
            Param(k, str(v))
            for k, v in {
                "train": os.path.abspath(spec.train),
                "families": ",".join(spec.families),
                "trials_per_family": spec.trials_per_family,
                "max_epochs": spec.max_epochs,
                "seed": spec.seed,
                "val_fraction": spec.val_fraction,
                "cpus_per_trial": spec.cpus_per_trial,
                "gpus_per_trial": spec.gpus_per_trial,
                "n_train": len(data.train_idx),
                "n_val": len(data.val_idx),
                "n_classes": n_classes,
            }.items()
        ],
    )
    status = "FAILED"
    try:
        _init_ray(spec)
        storage = Path(spec.storage_path).resolve()
        storage.mkdir(parents=True, exist_ok=True)
        run_name = f"{spec.experiment}-{parent_id[:8]}"
        searcher = FamilySearcher(
            spec.spaces,
            spec.trials_per_family,
            metric=SEARCH_METRIC,
            mode="max",
            seed=spec.seed,
            study_prefix=spec.experiment,
        )
        trainable = tune.with_resources(
            tune.with_parameters(tune_trial, data=data, max_epochs=spec.max_epochs),
            {"cpu": spec.cpus_per_trial, "gpu": spec.gpus_per_trial},
        )
        logger = MlflowTrialLogger(uri, exp.experiment_id, parent_id, total, echo=say)
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(
                search_alg=searcher,
                metric=SEARCH_METRIC,
                mode="max",
                num_samples=total,
                max_concurrent_trials=spec.max_concurrent,
            ),
            run_config=tune.RunConfig(
                name=run_name,
                storage_path=str(storage),
                callbacks=[logger],
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                failure_config=tune.FailureConfig(max_failures=spec.max_failures),
                verbose=0,
            ),
        )
        client.set_tag(parent_id, "tagtune.ray_path", str(storage / run_name))
        say(
            f"searching {', '.join(spec.families)}: {spec.trials_per_family} trials each, "
            f"up to {spec.max_epochs} epochs, {spec.cpus_per_trial:g} CPU / "
            f"{spec.gpus_per_trial:g} GPU per trial; MLflow: {uri}"
        )
        results = tuner.fit()
        say(f"Ray Tune state: {storage / run_name}")
        n_errored = len(results.errors)
        status = "FINISHED"
    finally:
        client.set_terminated(parent_id, status)
    return SearchOutcome(exp.experiment_id, parent_id, uri, time.perf_counter() - t0, n_errored)
