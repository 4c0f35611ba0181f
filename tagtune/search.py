"""A search end to end: data -> Ray Tune + Optuna (one study per family) -> MLflow -> report.

``run_search`` starts a search; ``resume_search`` finishes an interrupted one (driver killed by
SIGINT or SIGKILL): Ray's experiment state is restored with ``Tuner.restore``, each family's
Optuna study continues from its SQLite storage, the same MLflow parent run is reused, and the
callback finds every trial's existing child run, so no run is duplicated.
"""

from __future__ import annotations

import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from tagtune.search_spaces import SearchSpace, load_space
from tagtune.trainables.data import load_dataset, split_indices
from tagtune.trainables.errors import InputError
from tagtune.trainables.loop import TrialData
from tagtune.trainables.models import list_families
from tagtune.tracking import find_experiment, latest_search_run, open_store
from tagtune.tracking._store import TAG_KIND, get_or_create_experiment

SEARCH_METRIC = "best_val_mAUC"
TAG_RAY_PATH = "tagtune.ray_path"
TAG_OPTUNA = "tagtune.optuna_storage"
_REMOTE_SCHEMES = ("s3://", "gs://", "gcs://", "abfs://", "abfss://", "hdfs://", "az://")


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
    max_failures: int = 1
    defaults_first: bool = True
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
        if self.max_concurrent is not None and self.max_concurrent < 1:
            raise InputError(f"--max-concurrent must be at least 1, got {self.max_concurrent}")
        if self.max_failures < 0:
            raise InputError(f"--max-failures must be 0 or more, got {self.max_failures}")
        if not self.families:
            raise InputError("--families is empty; name at least one family or `all`")
        self.spaces = {f: load_space(f, self.spaces_dir) for f in self.families}
        if not Path(self.train).exists():
            raise InputError(
                f"--train {self.train}: no such file or folder; pass a folder of *.tfrecord, "
                "an .h5 file or a tagtune cache (make one with `tagtune data synth OUT`)"
            )
        if not is_remote_storage(self.storage_path):
            folder = Path(self.storage_path).resolve()
            probe = folder if folder.exists() else folder.parent
            if not os.access(probe, os.W_OK):
                raise InputError(f"--storage-path {folder} is not writable; pick a writable folder")

    @property
    def total_trials(self) -> int:
        return self.trials_per_family * len(self.families)

    def as_params(self) -> dict[str, Any]:
        """What the parent run records, enough for ``resume_search`` to rebuild the spec."""
        return {
            "train": os.path.abspath(self.train),
            "families": ",".join(self.families),
            "trials_per_family": self.trials_per_family,
            "max_epochs": self.max_epochs,
            "seed": self.seed,
            "val_fraction": self.val_fraction,
            "cpus_per_trial": self.cpus_per_trial,
            "gpus_per_trial": self.gpus_per_trial,
            "max_concurrent": self.max_concurrent or "",
            "max_failures": self.max_failures,
            "defaults_first": self.defaults_first,
            "spaces_dir": os.path.abspath(self.spaces_dir) if self.spaces_dir else "",
        }


def is_remote_storage(path: str) -> bool:
    """An object-store URI (s3://, gs://, ...) rather than a local or mounted folder."""
    return path.startswith(_REMOTE_SCHEMES)


def data_inputs(train: str) -> str | None:
    """``audio`` for a folder of audio files with a CSV, ``embeddings`` for AudioSet-like data,
    None when the path cannot be told (``SearchSpec.check`` then names the problem)."""
    from tagtune.trainables.data._dataset import sniff_format

    try:
        return "audio" if sniff_format(train) == "audio" else "embeddings"
    except InputError:
        return None


def parse_families(text: str, train: str | None = None) -> list[str]:
    """``fc1,fc2`` or ``all`` -> family names; ``all`` means every family for ``train``'s kind of
    data, and a named family built for the other kind is refused (unknown names raise too)."""
    from tagtune.trainables.models import get_family

    inputs = data_inputs(train) if train else None
    if text.strip() == "all":
        names = list_families(inputs)
    else:
        names = [t.strip() for t in text.split(",") if t.strip()]
    seen: list[str] = []
    for name in names:
        spec = get_family(name)
        if inputs is not None and spec.inputs != inputs:
            raise InputError(
                f"--families: {name!r} is built for {spec.inputs}, but --train {train} holds "
                f"{inputs}; choose from: {', '.join(list_families(inputs))}"
            )
        if name not in seen:
            seen.append(name)
    return seen


def prepare_data(spec: SearchSpec) -> TrialData:
    """Read (or load from the cache) the training data and carve the seeded validation split.

    Audio (a CSV of audio files, or a folder holding one): the clips are decoded once per sample
    rate the families' spaces can sample (cached; other rates on first use), clips the CSV marks
    ``test`` are held out, and validation uses the CSV's own split or folds where it has them.
    """
    from tagtune.trainables.data._dataset import sniff_format

    if sniff_format(spec.train) == "audio":
        from tagtune.trainables.audio import audio_trial_data, load_audio_dataset

        ds = load_audio_dataset(spec.train, sample_rates=_audio_rates(spec))
        return audio_trial_data(ds, val_fraction=spec.val_fraction, seed=spec.seed)
    ds = load_dataset(spec.train)
    train_idx, val_idx = split_indices(ds.n_clips, spec.val_fraction, spec.seed)
    return TrialData(
        x=np.asarray(ds.x), y=np.asarray(ds.y), train_idx=train_idx, val_idx=val_idx,
        class_names=tuple(ds.class_names),
    )


def _audio_rates(spec: SearchSpec) -> list[int]:
    """The sample rates the search may train at (to decode up front); every family must take audio."""
    from tagtune.trainables.models import get_family

    rates: set[int] = set()
    for family in spec.families:
        hparams = get_family(family).hparams
        if "sample_rate" not in hparams:
            raise InputError(
                f"--families {family}: it reads embeddings, but --train {spec.train} holds audio "
                "files; use an audio family such as densenet_audio"
            )
        space = spec.spaces.get(family)
        if space is None:  # no space loaded (`tagtune train`): decode the config's rate on use
            continue
        param = next((p for p in space.params if p.name == "sample_rate"), None)
        if param is None:
            rates.add(int(hparams["sample_rate"]))
        elif param.kind == "categorical":
            rates.update(int(c) for c in param.choices)
        elif param.kind == "const":
            rates.add(int(param.value))
        else:
            raise InputError(
                f"{' + '.join(space.files)}: sample_rate must be {{choices: [...]}} or {{value: ...}} "
                "(each rate is decoded once), not a range"
            )
    return sorted(rates)


def _probe_address(address: str) -> None:
    """Fail fast (ray.init would retry for minutes) when nothing listens at HOST:PORT."""
    import socket

    if address == "auto" or address.startswith("ray://"):
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise InputError(f"--address {address!r} is not HOST:PORT; pass what `ray start --head` printed")
    try:
        with socket.create_connection((host, int(port)), timeout=5):
            pass
    except OSError as exc:
        raise InputError(
            f"--address {address}: nothing answers there ({exc.strerror or exc}); start the head "
            "with `ray start --head` or fix HOST:PORT"
        ) from None


def _init_ray(address: str | None) -> bool:
    """Start or join Ray unless it is already up; returns whether this call did."""
    import ray

    if ray.is_initialized():
        return False
    if address:
        _probe_address(address)
    kwargs: dict[str, Any] = {
        "include_dashboard": False,  # when enabled, Ray binds its dashboard to 127.0.0.1
        "logging_level": "ERROR",
        "log_to_driver": False,  # progress comes from the driver callback; errors via error files
    }
    try:
        ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
        where = address or "a local Ray instance"
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise InputError(
            f"cannot connect to Ray at {where}: {first}; check --address "
            "(the HOST:PORT printed by `ray start --head`)"
        ) from None
    return True


def check_storage_for_cluster(storage_path: str) -> None:
    """A cluster with nodes on other hosts needs storage every node can reach.

    Nodes on the driver's own host share its disk, so a local folder is fine for them (this is
    also how the tests run a 2-node cluster on one machine).
    """
    import ray

    if is_remote_storage(storage_path):
        return
    here = ray.util.get_node_ip_address()
    hosts = {n["NodeManagerAddress"] for n in ray.nodes() if n.get("Alive")}
    others = sorted(hosts - {here})
    if others:
        raise InputError(
            f"--storage-path {storage_path} is a local folder, but the Ray cluster has nodes on "
            f"other hosts ({', '.join(others)}); pass a folder they all mount (NFS) or an "
            "object-store URI such as s3://bucket/tagtune-runs"
        )


def _optuna_storage(spec_storage: str, run_name: str) -> str:
    """Each search's Optuna studies persist in SQLite next to Ray's state (or locally when
    Ray's state lives in an object store), written by the driver only."""
    if is_remote_storage(spec_storage):
        folder = Path("tagtune-runs").resolve()
    else:
        folder = Path(spec_storage).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / (run_name + '-optuna.db')}"


@dataclass
class SearchOutcome:
    experiment_id: str
    parent_run_id: str
    tracking_uri: str
    wall_seconds: float
    n_errored: int


def _trainable(spec: SearchSpec, data: TrialData) -> Any:
    from ray import tune

    from tagtune.trainables.trial import tune_trial

    return tune.with_resources(
        tune.with_parameters(tune_trial, data=data, max_epochs=spec.max_epochs),
        {"cpu": spec.cpus_per_trial, "gpu": spec.gpus_per_trial},
    )


def _describe(data: TrialData, seconds: float) -> str:
    n_frames, n_features, n_classes = data.shape
    if data.audio is not None:
        held_out = data.audio.n_clips - len(data.train_idx) - len(data.val_idx)
        return (
            f"data: {len(data.train_idx)} train / {len(data.val_idx)} validation audio clips "
            f"({held_out} held out), {n_classes} classes, "
            f"{'single' if data.single_label else 'multi'}-label ({seconds:.1f} s)"
        )
    return (
        f"data: {len(data.train_idx)} train / {len(data.val_idx)} validation clips, "
        f"{n_frames} x {n_features} frames, {n_classes} classes ({seconds:.1f} s)"
    )


def run_search(spec: SearchSpec, echo: Callable[[str], None] | None = None) -> SearchOutcome:
    """Run the whole search; returns where it was logged.  Raises InputError on bad input."""
    import optuna
    from mlflow.entities import Param
    from ray import tune

    from tagtune.searcher import FamilySearcher
    from tagtune.tracking.callback import MlflowTrialLogger

    say = echo or (lambda line: print(line, file=sys.stderr, flush=True))
    # tagtune prints its own progress (the driver callback); Tune's newer console output would
    # still print its experiment banner at verbose=0, the legacy one stays quiet.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    spec.check()
    t0 = time.perf_counter()
    # Opening the MLflow store (imports, and migrations of a new SQLite file: ~1.4 s) overlaps
    # reading the data and starting Ray.  A bad --train still fails before Ray starts; a bad
    # tracking URI stops the Ray this call started.
    with ThreadPoolExecutor(1) as pool:
        store = pool.submit(open_store, spec.tracking_uri)
        say(f"reading {spec.train} ...")
        data = prepare_data(spec)
        say(_describe(data, time.perf_counter() - t0))
        started = _init_ray(spec.address)
        try:
            client, uri = store.result()
        except BaseException:
            if started:
                import ray

                ray.shutdown()
            raise
    if spec.address:
        check_storage_for_cluster(spec.storage_path)
    exp = get_or_create_experiment(client, uri, spec.experiment)
    parent = client.create_run(
        exp.experiment_id,
        run_name=f"search-{time.strftime('%Y%m%d-%H%M%S')}",
        tags={TAG_KIND: "search", "tagtune.families": ",".join(spec.families)},
    )
    parent_id = parent.info.run_id
    params = {**spec.as_params(), "n_train": len(data.train_idx), "n_val": len(data.val_idx),
              "n_classes": data.shape[2]}
    client.log_batch(parent_id, params=[Param(k, str(v)) for k, v in params.items()])
    status = "FAILED"
    try:
        storage = spec.storage_path if is_remote_storage(spec.storage_path) else str(Path(spec.storage_path).resolve())
        run_name = f"{spec.experiment}-{parent_id[:8]}"
        ray_path = f"{storage.rstrip('/')}/{run_name}"
        optuna_url = _optuna_storage(spec.storage_path, run_name)
        client.set_tag(parent_id, TAG_RAY_PATH, ray_path)
        client.set_tag(parent_id, TAG_OPTUNA, optuna_url)
        searcher = FamilySearcher(
            spec.spaces, spec.trials_per_family, metric=SEARCH_METRIC, mode="max",
            seed=spec.seed, study_prefix=run_name,
            storage=optuna.storages.RDBStorage(optuna_url), defaults_first=spec.defaults_first,
        )
        logger = MlflowTrialLogger(uri, exp.experiment_id, parent_id, spec.total_trials, echo=say)
        tuner = tune.Tuner(
            _trainable(spec, data),
            tune_config=tune.TuneConfig(
                search_alg=searcher, metric=SEARCH_METRIC, mode="max",
                num_samples=spec.total_trials, max_concurrent_trials=spec.max_concurrent,
                # Every trial asks for the same resources, so a finished trial's worker takes
                # the next one: no new process, torch import or data fetch per trial.  (A trial
                # then starts at once, sometimes before Tune's state snapshot records it; after a
                # SIGKILL the resumed search replaces it, see MlflowTrialLogger.on_experiment_end.)
                reuse_actors=True,
            ),
            run_config=tune.RunConfig(
                name=run_name,
                storage_path=storage,
                callbacks=[logger],
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                failure_config=tune.FailureConfig(max_failures=spec.max_failures),
                verbose=0,
            ),
        )
        say(
            f"searching {', '.join(spec.families)}: {spec.trials_per_family} trials each, "
            f"up to {spec.max_epochs} epochs, {spec.cpus_per_trial:g} CPU / "
            f"{spec.gpus_per_trial:g} GPU per trial; MLflow: {uri}"
        )
        results = tuner.fit()
        say(f"Ray Tune state: {ray_path}")
        status = "FINISHED"
    finally:
        client.set_terminated(parent_id, status)
    return SearchOutcome(exp.experiment_id, parent_id, uri, time.perf_counter() - t0, len(results.errors))


def _spec_from_run(params: dict[str, str], experiment: str, uri: str, address: str | None) -> SearchSpec:
    def opt_int(v: str) -> int | None:
        return int(v) if v else None

    return SearchSpec(
        train=params["train"], families=params["families"].split(","),
        trials_per_family=int(params["trials_per_family"]), max_epochs=int(params["max_epochs"]),
        experiment=experiment, tracking_uri=uri, seed=int(params["seed"]),
        val_fraction=float(params["val_fraction"]), cpus_per_trial=float(params["cpus_per_trial"]),
        gpus_per_trial=float(params["gpus_per_trial"]),
        max_concurrent=opt_int(params.get("max_concurrent", "")),
        max_failures=int(params.get("max_failures", "1")), address=address,
        defaults_first=params.get("defaults_first", "True") == "True",
        spaces_dir=params.get("spaces_dir") or None,
    )


def resume_search(
    experiment: str,
    tracking_uri: str | None,
    run_id: str | None = None,
    address: str | None = None,
    echo: Callable[[str], None] | None = None,
) -> SearchOutcome:
    """Finish the remaining budget of an interrupted search (the newest one, or ``run_id``)."""
    from ray import tune

    say = echo or (lambda line: print(line, file=sys.stderr, flush=True))
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # as in run_search: no Tune banner
    client, uri = open_store(tracking_uri)
    exp = find_experiment(client, uri, experiment)
    parent = latest_search_run(client, exp, run_id)
    parent_id = parent.info.run_id
    ray_path = parent.data.tags.get(TAG_RAY_PATH)
    if not ray_path:
        raise InputError(f"search run {parent_id} has no Ray state to resume from; start a new search")
    if not is_remote_storage(ray_path) and not (Path(ray_path) / "tuner.pkl").exists():
        raise InputError(
            f"Ray state of search run {parent_id} is missing at {ray_path}; it cannot be resumed "
            "(run the search again, or pass --run-id of another search)"
        )
    if not tune.Tuner.can_restore(ray_path):
        raise InputError(f"Ray state at {ray_path} cannot be restored; start a new search")
    spec = _spec_from_run(parent.data.params, experiment, uri, address)
    spec.check()
    t0 = time.perf_counter()
    data = prepare_data(spec)
    say(_describe(data, time.perf_counter() - t0))
    _init_ray(address)
    client.update_run(parent_id, status="RUNNING")
    say(f"resuming search run {parent_id} from {ray_path}")
    status = "FAILED"
    try:
        tuner = tune.Tuner.restore(
            ray_path, trainable=_trainable(spec, data),
            resume_unfinished=True, resume_errored=False, restart_errored=False,
        )
        results = tuner.fit()
        status = "FINISHED"
    finally:
        client.set_terminated(parent_id, status)
    return SearchOutcome(exp.experiment_id, parent_id, uri, time.perf_counter() - t0, len(results.errors))
