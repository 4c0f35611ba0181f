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
from tagtune.portfolio import load_portfolio
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
from tagtune.tune import cluster
from tagtune.tune.tuner import new_tuner, restored_tuner

SEARCH_METRIC = Metrics.SEARCH


class CheckedSearchSpec(tracking.SearchSpec):
    """The search spec (:class:`tagtune.spec.SearchSpec`, what the parent run records) with
    the checks that need the data, the spaces and the disk: :meth:`check`, run before anything
    starts, and :meth:`stop_rule`."""

    def check(self) -> None:
        """Validate flags and load every family's space, so mistakes surface before Ray starts."""
        self.validate()
        self.stop_rule()
        self.spaces = {f: load_space(f, self.spaces_dir) for f in self.families}
        self.first_configs = load_portfolio(self.portfolio, self.families) if self.portfolio else {}
        if not Path(self.train).exists():
            raise InputError(
                f"--train {self.train}: no such file or folder; pass a folder of *.tfrecord, "
                "an .h5 file or a tagtune cache (make one with `tagtune data synth OUT`)"
            )
        if self.optuna_storage:
            check_optuna_storage(self.optuna_storage)
        if not cluster.is_remote_storage(self.storage_path):
            folder = Path(self.storage_path).resolve()
            probe = folder if folder.exists() else folder.parent
            if not os.access(probe, os.W_OK):
                raise InputError(f"--storage-path {folder} is not writable; pick a writable folder")

    def stop_rule(self) -> Any:
        """The early-stopping rule of the spec's scheduler flags (InputError naming a bad one)."""
        from tagtune.tune.schedulers import StopRule

        return StopRule(
            kind=self.scheduler,
            grace_period=self.grace_period,
            reduction_factor=self.reduction_factor,
            metric=self.milestone_metric,
            max_epochs=self.max_epochs,
            curve_grace=self.curve_grace,
            patience=self.patience,
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


def _optuna_storage(spec_storage: str, run_name: str, url: str | None = None) -> str:
    """Each search's Optuna studies persist in ``url`` (``--optuna-storage``, e.g. the team's
    PostgreSQL; studies are named ``<experiment>-<run>/<family>`` so searches share it), else in
    SQLite next to Ray's state (or locally when Ray's state lives in an object store), written
    by the driver only."""
    if url:
        from tagtune.server import sqlalchemy_url

        return sqlalchemy_url(url)
    if cluster.is_remote_storage(spec_storage):
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
    spec: CheckedSearchSpec,
    say: Callable[[str], None],
    source: DataSource | None = None,
    store: tuple[MlflowClient, str] | None = None,
) -> tuple[MlflowClient, str, TrialData, float]:
    """The start-up a new and a resumed search share: check the spec, read the data, start (or
    join) Ray, check the cluster's storage and choose the GPUs per trial.  Returns the MLflow
    client, its URI, the data and the start time.

    ``store``: the client and URI a resumed search already opened (to find its spec); otherwise
    the store opens here while the data are read and Ray starts (imports, and migrations of a new
    SQLite file: ~1.4 s).  A bad --train still fails before Ray starts; a bad tracking URI stops
    the Ray this call started.
    """
    # tagtune prints its own progress (the driver callback); Tune's newer console output would
    # still print its experiment banner at verbose=0, the legacy one stays quiet.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    spec.check()
    t0 = time.perf_counter()
    with ThreadPoolExecutor(1) as pool:
        opening = pool.submit(open_store, spec.tracking_uri, spec.experiment) if store is None else None
        say(f"reading {spec.train} ...")
        data = prepare_data(spec, source)
        say(_describe(data, time.perf_counter() - t0))
        if opening is not None and tracking.is_http(spec.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")):
            opening.result()  # a server's answer (or its fault) before Ray starts: it costs no start-up
        started = cluster.init_ray(spec.address)
        try:
            client, uri = opening.result() if opening is not None else store  # type: ignore[misc]
        except BaseException:
            if started:
                import ray

                ray.shutdown()
            raise
    if spec.address:
        cluster.check_storage_for_cluster(spec.storage_path)
    if store is None or spec.gpus_per_trial is None:  # a resumed search keeps the number it recorded
        cluster.choose_trial_gpus(spec, say)
    return client, uri, data, t0


def run_search(
    spec: CheckedSearchSpec, echo: Callable[[str], None] | None = None, source: DataSource | None = None
) -> SearchOutcome:
    """Run the whole search; returns where it was logged.  Raises InputError on bad input.

    ``source``: ``spec.train`` already opened (the CLI opens it once to parse ``--families``).
    """
    say = echo or _to_stderr
    client, uri, data, t0 = _start(spec, say, source)
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
        storage = (
            spec.storage_path
            if cluster.is_remote_storage(spec.storage_path)
            else str(Path(spec.storage_path).resolve())
        )
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
        from tagtune.tune.schedulers import FamilyScheduler

        tuner = new_tuner(spec, data, tune_name, storage, searcher, callbacks, FamilyScheduler(searcher, rule))
        results = tuner.fit()
        say(f"Ray Tune state: {ray_path}")
    return SearchOutcome(exp.experiment_id, parent.run_id, uri, time.perf_counter() - t0, len(results.errors))


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _family_searcher(spec: CheckedSearchSpec, study_prefix: str, optuna_url: str, warm: dict[str, Any]) -> Any:
    """The search's Tune searcher: one Optuna study per family, stored at ``optuna_url``."""
    from tagtune.tune.searcher import FamilySearcher

    return FamilySearcher(
        spec.spaces,
        spec.trials_per_family,
        metric=SEARCH_METRIC,
        mode="max",
        seed=spec.seed,
        study_prefix=study_prefix,
        storage=tracking.ready_optuna_storage(optuna_url),  # a new SQLite file: one creator
        defaults_first=spec.defaults_first,
        first_configs=spec.first_configs,
        time_budget=spec.time_budget,
        warm_trials=warm,
        sampler=spec.sampler,
        goal=spec.goal,
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
    from tagtune.tune.callback import MlflowTrialLogger
    from tagtune.tune.progress import SearchProgress

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
    if spec.goal == "best":
        each += " until each family has 2 scored, then to the leading half (--goal best)"
    budget = f", time budget {spec.time_budget:g} s" if spec.time_budget else ""
    return (
        f"searching {', '.join(spec.families)}: {each}{budget}, up to {spec.max_epochs} epochs, "
        f"early stopping {rule.describe()} per family"
        + (f" (patience {spec.patience})" if spec.patience else "")
        + f", {spec.cpus_per_trial:g} CPU / "
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
    say = echo or _to_stderr
    client, uri = open_store(tracking_uri, experiment)
    exp = find_experiment(client, uri, experiment)
    parent = latest_search_run(client, exp, run_id)
    parent_id = parent.info.run_id
    ray_path = _restorable_state(parent)
    spec = CheckedSearchSpec.from_params(parent.data.params, experiment=experiment, tracking_uri=uri, address=address)
    client, uri, data, t0 = _start(spec, say, store=(client, uri))
    with reopen_run(client, parent_id):
        say(f"resuming search run {parent_id} from {ray_path}")
        results = restored_tuner(ray_path, spec, data).fit()
    return SearchOutcome(exp.experiment_id, parent_id, uri, time.perf_counter() - t0, len(results.errors))


def _restorable_state(parent: Any) -> str:
    """Where Ray's experiment state of a search run is; InputError when it cannot be restored."""
    from ray import tune

    parent_id = parent.info.run_id
    ray_path = parent.data.tags.get(Tag.RAY_PATH)
    if not ray_path:
        raise InputError(f"search run {parent_id} has no Ray state to resume from; start a new search")
    if not cluster.is_remote_storage(ray_path) and not (Path(ray_path) / "tuner.pkl").exists():
        raise InputError(
            f"Ray state of search run {parent_id} is missing at {ray_path}; it cannot be resumed "
            "(run the search again, or pass --run-id of another search)"
        )
    if not tune.Tuner.can_restore(ray_path):
        raise InputError(f"Ray state at {ray_path} cannot be restored; start a new search")
    return str(ray_path)
