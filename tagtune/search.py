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
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlflow import MlflowClient

from tagtune import tracking
from tagtune.errors import InputError
from tagtune.search_spaces import load_space
from tagtune.tracking import (
    Metrics,
    RunKind,
    Tag,
    find_experiment,
    get_or_create_experiment,
    latest_search_run,
    open_run,
    open_store,
    reopen_run,
)
from tagtune.trainables.data import DataSource, open_source
from tagtune.trainables.loop import TrialData

SEARCH_METRIC = Metrics.SEARCH
_REMOTE_SCHEMES = ("s3://", "gs://", "gcs://", "abfs://", "abfss://", "hdfs://", "az://")


class CheckedSearchSpec(tracking.SearchSpec):
    """The search spec (:class:`tagtune.tracking.SearchSpec`, what the parent run records) with
    the checks that need the data, the spaces and the disk: :meth:`check`, run before anything
    starts, and :meth:`stop_rule`."""

    def check(self) -> None:
        """Validate flags and load every family's space, so mistakes surface before Ray starts."""
        self.validate()
        self.stop_rule()
        self.spaces = {f: load_space(f, self.spaces_dir) for f in self.families}
        if not Path(self.train).exists():
            raise InputError(
                f"--train {self.train}: no such file or folder; pass a folder of *.tfrecord, "
                "an .h5 file or a tagtune cache (make one with `tagtune data synth OUT`)"
            )
        if self.optuna_storage:
            check_optuna_storage(self.optuna_storage)
        if not is_remote_storage(self.storage_path):
            folder = Path(self.storage_path).resolve()
            probe = folder if folder.exists() else folder.parent
            if not os.access(probe, os.W_OK):
                raise InputError(f"--storage-path {folder} is not writable; pick a writable folder")

    def stop_rule(self) -> Any:
        """The early-stopping rule of the spec's scheduler flags (InputError naming a bad one)."""
        from tagtune.schedulers import StopRule

        return StopRule(
            kind=self.scheduler,
            grace_period=self.grace_period,
            reduction_factor=self.reduction_factor,
            metric=self.milestone_metric,
            max_epochs=self.max_epochs,
            curve_grace=self.curve_grace,
        )


def hide_password(url: str) -> str:
    """A database URL with its password (if any) shown as ``***``."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not a database URL: nothing to hide
        return url


def check_optuna_storage(url: str) -> None:
    """``--optuna-storage`` is a database URL that answers within seconds, else InputError."""
    import sqlalchemy

    from tagtune.server import sqlalchemy_url

    if not url.startswith(("postgresql", "sqlite:///", "mysql")):
        raise InputError(
            f"--optuna-storage {hide_password(url)!r}: use postgresql://USER@HOST:PORT/DB or sqlite:///FILE.db"
        )
    full = sqlalchemy_url(url)
    args = {"connect_timeout": 5} if full.startswith("postgresql") else {}
    try:
        engine = sqlalchemy.create_engine(full, connect_args=args)
        with engine.connect():
            pass
        engine.dispose()
    except Exception as exc:  # noqa: BLE001 - any failure means the studies cannot be stored
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise InputError(
            f"--optuna-storage {hide_password(url)}: cannot connect ({first}); start the database or fix the URL"
        ) from None


def is_remote_storage(path: str) -> bool:
    """An object-store URI (s3://, gs://, ...) rather than a local or mounted folder."""
    return path.startswith(_REMOTE_SCHEMES)


def prepare_data(spec: CheckedSearchSpec, source: DataSource | None = None) -> TrialData:
    """Read (or load from the cache) the training data and carve the seeded validation split.

    ``source``: ``spec.train`` already opened (:func:`tagtune.trainables.data.open_source`), so
    its format is not sniffed again; opened here when ``None``.  Audio (a CSV of audio files, or
    a folder holding one): the clips are decoded once per sample rate the families' spaces can
    sample (cached; other rates on first use), clips the CSV marks ``test`` are held out, and
    validation uses the CSV's own split or folds where it has them.
    """
    source = source if source is not None else open_source(spec.train, options=spec.read_options())
    rates = _audio_rates(spec) if source.kind == "audio" else []
    return source.trial_data(val_fraction=spec.val_fraction, seed=spec.seed, sample_rates=rates)


def _audio_rates(spec: CheckedSearchSpec) -> list[int]:
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
            f"cannot connect to Ray at {where}: {first}; check --address (the HOST:PORT printed by `ray start --head`)"
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


def _optuna_storage(spec_storage: str, run_name: str, url: str | None = None) -> str:
    """Each search's Optuna studies persist in ``url`` (``--optuna-storage``, e.g. the team's
    PostgreSQL; studies are named ``<experiment>-<run>/<family>`` so searches share it), else in
    SQLite next to Ray's state (or locally when Ray's state lives in an object store), written
    by the driver only."""
    if url:
        from tagtune.server import sqlalchemy_url

        return sqlalchemy_url(url)
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


def _trainable(spec: CheckedSearchSpec, data: TrialData) -> Any:
    from ray import tune

    from tagtune.trainables.trial import tune_trial

    return tune.with_resources(
        tune.with_parameters(tune_trial, data=data, max_epochs=spec.max_epochs),
        {"cpu": spec.cpus_per_trial, "gpu": spec.gpus_per_trial or 0.0},
    )


def _describe(data: TrialData, seconds: float) -> str:
    """The line a search prints once its data are read."""
    n_frames, n_features, n_classes = data.shape
    if data.kind == "audio":
        return (
            f"data: {len(data.train_idx)} train / {len(data.val_idx)} validation audio clips "
            f"({data.n_held_out} held out), {n_classes} classes, "
            f"{'single' if data.single_label else 'multi'}-label ({seconds:.1f} s)"
        )
    return (
        f"data: {len(data.train_idx)} train / {len(data.val_idx)} validation clips, "
        f"{n_frames} x {n_features} frames, {n_classes} classes ({seconds:.1f} s)"
    )


def _start(
    spec: CheckedSearchSpec, say: Callable[[str], None], t0: float, source: DataSource | None = None
) -> tuple[MlflowClient, str, TrialData]:
    """Read the data and start (or join) Ray while the MLflow store opens; the client, its URI
    and the data.

    Opening the store (imports, and migrations of a new SQLite file: ~1.4 s) overlaps reading
    the data and starting Ray.  A bad --train still fails before Ray starts; a bad tracking URI
    stops the Ray this call started.
    """
    with ThreadPoolExecutor(1) as pool:
        store = pool.submit(open_store, spec.tracking_uri, spec.experiment)
        say(f"reading {spec.train} ...")
        data = prepare_data(spec, source)
        say(_describe(data, time.perf_counter() - t0))
        if tracking.is_http(spec.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")):
            store.result()  # a server's answer (or its fault) before Ray starts: it costs no start-up
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
    choose_trial_gpus(spec, say)
    return client, uri, data


def choose_trial_gpus(spec: CheckedSearchSpec, say: Callable[[str], None]) -> None:
    """Set ``spec.gpus_per_trial`` from the running Ray cluster's resources when it is None (the
    flag not given; :func:`tagtune.resources.choose_gpus`) and say what the trials get.  Runs
    after Ray is up and before the parent run records the spec, so the recorded number is the
    chosen one (and a resumed search reuses it)."""
    import ray

    from tagtune.resources import choose_gpus

    choice = choose_gpus(ray.cluster_resources(), spec.families, spec.cpus_per_trial, spec.gpus_per_trial)
    spec.gpus_per_trial = choice.gpus_per_trial
    say(choice.line)


def _tuner(
    spec: CheckedSearchSpec,
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
        _trainable(spec, data),
        tune_config=tune.TuneConfig(
            search_alg=search_alg,
            metric=SEARCH_METRIC,
            mode="max",
            num_samples=spec.total_trials,
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


def run_search(
    spec: CheckedSearchSpec, echo: Callable[[str], None] | None = None, source: DataSource | None = None
) -> SearchOutcome:
    """Run the whole search; returns where it was logged.  Raises InputError on bad input.

    ``source``: ``spec.train`` already opened (the CLI opens it once to parse ``--families``).
    """
    say = echo or _to_stderr
    # tagtune prints its own progress (the driver callback); Tune's newer console output would
    # still print its experiment banner at verbose=0, the legacy one stays quiet.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    spec.check()
    t0 = time.perf_counter()
    client, uri, data = _start(spec, say, t0, source)
    # batch sizes that give every epoch enough steps on this training set (search_spaces.for_data)
    spec.spaces = {f: space.for_data(len(data.train_idx)) for f, space in spec.spaces.items()}
    warm: dict[str, Any] = {}
    warm_run = ""
    if spec.warm_start:
        from tagtune.warmstart import warm_trials

        warm, warm_run = warm_trials(client, uri, spec.warm_start, spec, spec.spaces, say)
    exp = get_or_create_experiment(client, uri, spec.experiment)
    params = {
        **spec.to_params(),
        "n_train": len(data.train_idx),
        "n_val": len(data.val_idx),
        "n_classes": data.shape[2],
    }
    tags = {Tag.FAMILIES: ",".join(spec.families)}
    if spec.warm_start:
        tags[Tag.WARM_START] = f"{spec.warm_start}:{warm_run}"
    run_name = f"search-{time.strftime('%Y%m%d-%H%M%S')}"
    with open_run(
        client, exp.experiment_id, kind=RunKind.SEARCH, run_name=run_name, tags=tags, params=params
    ) as parent:
        storage = spec.storage_path if is_remote_storage(spec.storage_path) else str(Path(spec.storage_path).resolve())
        tune_name = f"{spec.experiment}-{parent.run_id[:8]}"
        ray_path = f"{storage.rstrip('/')}/{tune_name}"
        optuna_url = _optuna_storage(spec.storage_path, tune_name, spec.optuna_storage)
        parent.log(tags={Tag.RAY_PATH: ray_path, Tag.OPTUNA_STORAGE: hide_password(optuna_url)})
        searcher = _family_searcher(spec, tune_name, optuna_url, warm)
        datasets = [tracking.dataset_input(spec.train, data)]
        client.log_inputs(parent.run_id, datasets=datasets)
        callbacks = _callbacks(spec, uri, exp.experiment_id, parent.run_id, searcher, datasets, say, echo is None)
        rule = spec.stop_rule()
        say(_plan_line(spec, rule, uri))
        from tagtune.schedulers import FamilyScheduler

        tuner = _tuner(spec, data, tune_name, storage, searcher, callbacks, FamilyScheduler(searcher, rule))
        results = tuner.fit()
        say(f"Ray Tune state: {ray_path}")
    return SearchOutcome(exp.experiment_id, parent.run_id, uri, time.perf_counter() - t0, len(results.errors))


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _family_searcher(spec: CheckedSearchSpec, study_prefix: str, optuna_url: str, warm: dict[str, Any]) -> Any:
    """The search's Tune searcher: one Optuna study per family, stored at ``optuna_url``."""
    from tagtune.searcher import FamilySearcher

    return FamilySearcher(
        spec.spaces,
        spec.trials_per_family,
        metric=SEARCH_METRIC,
        mode="max",
        seed=spec.seed,
        study_prefix=study_prefix,
        storage=tracking.ready_optuna_storage(optuna_url),  # a new SQLite file: one creator
        defaults_first=spec.defaults_first,
        time_budget=spec.time_budget,
        warm_trials=warm,
        sampler=spec.sampler,
    )


def _callbacks(
    spec: CheckedSearchSpec,
    uri: str,
    experiment_id: str,
    parent_id: str,
    searcher: Any,
    datasets: list[Any],
    say: Callable[[str], None],
    progress_lines: bool,
) -> list[Any]:
    """The Tune callbacks: the MLflow trial logger, and the progress lines unless the caller
    takes the lines itself (``progress_lines`` False: everything goes to its ``say``)."""
    from tagtune.progress import SearchProgress
    from tagtune.tracking.callback import MlflowTrialLogger

    progress = (
        SearchProgress(spec.total_trials, spec.max_epochs, time_budget=spec.time_budget) if progress_lines else None
    )
    logger = MlflowTrialLogger(
        uri,
        experiment_id,
        parent_id,
        spec.total_trials,
        echo=progress.say if progress else say,
        datasets=datasets,
        searcher=searcher,
        epoch_echo=progress.detail if progress else None,
        stop_info=searcher.stop_info,
    )
    return [logger, progress] if progress else [logger]


def _plan_line(spec: CheckedSearchSpec, rule: Any, uri: str) -> str:
    """The line a search prints before its first trial."""
    each = f"{spec.trials_per_family} trials each" if spec.trials_per_family else "trials round-robin"
    budget = f", time budget {spec.time_budget:g} s" if spec.time_budget else ""
    return (
        f"searching {', '.join(spec.families)}: {each}{budget}, up to {spec.max_epochs} epochs, "
        f"early stopping {rule.describe()} per family, {spec.cpus_per_trial:g} CPU / "
        f"{spec.gpus_per_trial or 0:g} GPU per trial; MLflow: {uri}"
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

    say = echo or _to_stderr
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # as in run_search: no Tune banner
    client, uri = open_store(tracking_uri, experiment)
    exp = find_experiment(client, uri, experiment)
    parent = latest_search_run(client, exp, run_id)
    parent_id = parent.info.run_id
    ray_path = parent.data.tags.get(Tag.RAY_PATH)
    if not ray_path:
        raise InputError(f"search run {parent_id} has no Ray state to resume from; start a new search")
    if not is_remote_storage(ray_path) and not (Path(ray_path) / "tuner.pkl").exists():
        raise InputError(
            f"Ray state of search run {parent_id} is missing at {ray_path}; it cannot be resumed "
            "(run the search again, or pass --run-id of another search)"
        )
    if not tune.Tuner.can_restore(ray_path):
        raise InputError(f"Ray state at {ray_path} cannot be restored; start a new search")
    spec = CheckedSearchSpec.from_params(parent.data.params, experiment=experiment, tracking_uri=uri, address=address)
    spec.check()
    t0 = time.perf_counter()
    data = prepare_data(spec)
    say(_describe(data, time.perf_counter() - t0))
    _init_ray(address)
    if spec.gpus_per_trial is None:  # recorded before the search chose it: choose it now
        choose_trial_gpus(spec, say)
    with reopen_run(client, parent_id):
        say(f"resuming search run {parent_id} from {ray_path}")
        tuner = tune.Tuner.restore(
            ray_path,
            trainable=_trainable(spec, data),
            resume_unfinished=True,
            resume_errored=False,
            restart_errored=False,
        )
        results = tuner.fit()
    return SearchOutcome(exp.experiment_id, parent_id, uri, time.perf_counter() - t0, len(results.errors))
