"""tagtune's MLflow run schema: every tag key, run kind and metric name, and the run lifecycle.

Everything that writes or reads tagtune's runs takes its names from here (the tag keys and metric
names, :class:`Tag` and :class:`Metrics`, are defined in the leaf module :mod:`tagtune.names` so
that the training loop and the dashboards can use them without MLflow, and exported here): a
search's parent run (kind ``search``), one child run per trial (``trial``; ``lost`` when a killed
driver's trial was replaced on resume), the finals and ensembles of ``tagtune finalize``
(``final``, ``ensemble``) and the runs of ``tagtune train`` (``train``).

:func:`open_run` is the one way a run is opened: it creates the run with its tags and params and
always ends it (FINISHED, FAILED on an exception or :meth:`RunHandle.fail`, KILLED on Ctrl-C), so
no run is left RUNNING by an error.
"""

from __future__ import annotations

import dataclasses
import enum
import os
import time
import types
import typing
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Self, TypeVar, get_type_hints

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag

from tagtune.errors import InputError
from tagtune.names import Metrics, Tag
from tagtune.samplers import DEFAULT_SAMPLER, check_sampler


class RunKind(enum.StrEnum):
    """The ``tagtune.kind`` tag of a run (``str(kind)`` is the tag value)."""

    SEARCH = "search"
    TRIAL = "trial"
    LOST = "lost"
    FINAL = "final"
    ENSEMBLE = "ensemble"
    FINALIZE = "finalize"  # one `tagtune finalize` of a search: its finals and ensembles nest under it
    TRAIN = "train"


@dataclasses.dataclass(frozen=True)
class StopInfo:
    """Why a trial ended before ``max_epochs``: the last epoch it trained and the rule."""

    epoch: int
    rule: str

    def tags(self) -> dict[str, str]:
        """The run tags that record the stop."""
        return {Tag.STOPPED_EARLY: "True", Tag.STOPPED_AT_EPOCH: str(self.epoch), Tag.STOPPED_BY: self.rule}


def parse_duration(text: str, flag: str = "--time-budget") -> float:
    """``90s``, ``45m``, ``2h``, ``1h30m`` or a number of seconds -> seconds (InputError naming
    ``flag`` otherwise)."""
    import re

    value = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", value):
        seconds = float(value)
    else:
        parts = re.findall(r"(\d+(?:\.\d+)?)\s*([hms])", value)
        if not parts or "".join(f"{n}{u}" for n, u in parts) != value.replace(" ", ""):
            raise InputError(f"{flag} {text!r}: write a duration such as 90s, 45m, 2h or 1h30m")
        seconds = sum(float(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in parts)
    if seconds <= 0:
        raise InputError(f"{flag} {text!r} must be a positive duration, e.g. 45m")
    return seconds


def parent_filter(parent_run_id: str) -> str:
    """The ``search_runs`` filter of every child run of a search."""
    return f"tags.`{Tag.PARENT}` = '{parent_run_id}'"


def kind_filter(kind: RunKind) -> str:
    """The ``search_runs`` filter of the runs of one kind."""
    return f"tags.`{Tag.KIND}` = '{kind.value}'"


def run_kind(run: Any) -> str:
    """A run's kind (``trial`` for runs logged before kinds existed)."""
    return str(run.data.tags.get(Tag.KIND, RunKind.TRIAL.value))


# ------------------------------------------------------------------------------------------
# The run lifecycle
# ------------------------------------------------------------------------------------------


@dataclasses.dataclass
class RunHandle:
    """An open run: its id and client; :meth:`fail` ends it FAILED without raising."""

    client: MlflowClient
    run_id: str
    status: str = "FINISHED"

    def fail(self, reason: str) -> None:
        """End the run FAILED (when the block ends) with ``reason`` in ``tagtune.error``."""
        self.status = "FAILED"
        self.client.set_tag(self.run_id, Tag.ERROR, reason[:500])

    def log(
        self,
        params: Mapping[str, Any] | None = None,
        metrics: Mapping[str, float] | None = None,
        tags: Mapping[str, Any] | None = None,
        step: int = 0,
    ) -> None:
        """Params, metrics (at ``step``) and tags in one batch."""
        now = int(time.time() * 1000)
        self.client.log_batch(
            self.run_id,
            params=[Param(k, str(v)) for k, v in (params or {}).items()],
            metrics=[Metric(k, float(v), now, step) for k, v in (metrics or {}).items()],
            tags=[RunTag(k, str(v)) for k, v in (tags or {}).items()],
        )


@contextmanager
def ended(client: MlflowClient, run_id: str) -> Iterator[RunHandle]:
    """End ``run_id`` when the block ends: FINISHED, FAILED on an exception (or after
    :meth:`RunHandle.fail`), KILLED on Ctrl-C.  The exception still propagates."""
    handle = RunHandle(client, run_id)
    try:
        yield handle
    except KeyboardInterrupt:
        handle.status = "KILLED"
        raise
    except BaseException:
        handle.status = "FAILED"
        raise
    finally:
        client.set_terminated(run_id, handle.status)


@contextmanager
def open_run(
    client: MlflowClient,
    experiment_id: str,
    *,
    kind: RunKind,
    run_name: str,
    tags: Mapping[str, Any] | None = None,
    params: Mapping[str, Any] | None = None,
    parent_run_id: str | None = None,
) -> Iterator[RunHandle]:
    """Create a run of ``kind`` (a child of ``parent_run_id`` if given) with its tags and params,
    and end it when the block ends (see :func:`ended`)."""
    from tagtune.tracking._ui import source_tags

    all_tags = {**source_tags(), Tag.KIND: kind.value, **{k: str(v) for k, v in (tags or {}).items()}}
    if parent_run_id:
        all_tags[Tag.PARENT] = parent_run_id
    run = client.create_run(experiment_id, run_name=run_name, tags=all_tags)
    with ended(client, run.info.run_id) as handle:
        if params:
            handle.log(params=params)
        yield handle


@contextmanager
def reopen_run(client: MlflowClient, run_id: str) -> Iterator[RunHandle]:
    """Mark an existing run RUNNING again (a resumed search) and end it as :func:`ended` does."""
    client.update_run(run_id, status="RUNNING")
    with ended(client, run_id) as handle:
        yield handle


# ------------------------------------------------------------------------------------------
# Dataclasses as run params
# ------------------------------------------------------------------------------------------

T = TypeVar("T")


def to_params(obj: Any, *, exclude: tuple[str, ...] = ()) -> dict[str, str]:
    """A dataclass's fields as MLflow params (strings): ``None`` is ``""``, lists are
    comma-joined, booleans ``True``/``False``.  Fields with ``metadata={"param": False}`` and
    those in ``exclude`` are left out."""
    out: dict[str, str] = {}
    for f in dataclasses.fields(obj):
        if f.name in exclude or not f.metadata.get("param", True):
            continue
        value = getattr(obj, f.name)
        if value is None:
            out[f.name] = ""
        elif isinstance(value, (list, tuple)):
            out[f.name] = ",".join(str(v) for v in value)
        else:
            out[f.name] = str(value)
    return out


def _parse(text: str, hint: Any) -> Any:
    """``text`` as the type ``hint`` (``int``, ``float``, ``bool``, ``str``, ``list[str]``,
    ``X | None``)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if text == "":
            return None
        return _parse(text, args[0])
    if origin in (list, tuple):
        (item,) = typing.get_args(hint)[:1]
        values = [_parse(t, item) for t in text.split(",") if t != ""]
        return values if origin is list else tuple(values)
    if hint is bool:
        if text not in ("True", "False"):
            raise ValueError(f"expected True or False, got {text!r}")
        return text == "True"
    if hint in (int, float, str):
        return hint(text)
    raise TypeError(f"no param parser for type {hint!r}")


def from_params(cls: type[T], params: Mapping[str, str], **overrides: Any) -> T:
    """The dataclass ``cls`` rebuilt from :func:`to_params` output (fields missing from
    ``params`` keep their defaults); ``overrides`` are passed as they are."""
    hints = get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name in overrides:
            kwargs[f.name] = overrides[f.name]
        elif f.name in params and f.metadata.get("param", True) and f.init:
            kwargs[f.name] = _parse(params[f.name], hints[f.name])
    return cls(**kwargs)


# ------------------------------------------------------------------------------------------
# The search spec: what a search's parent run records
# ------------------------------------------------------------------------------------------

NOT_PARAM: Mapping[str, Any] = types.MappingProxyType({"param": False})
"""Field metadata of a dataclass field that is not recorded as a run param."""
PATH: Mapping[str, Any] = types.MappingProxyType({"path": True})
"""Field metadata of a local path recorded absolute (URIs such as ``s3://`` are kept as they are)."""


def _absolute(value: str | None) -> str | None:
    """A local path made absolute; ``None``, ``""`` and URIs unchanged."""
    if not value or "://" in value:
        return value
    return os.path.abspath(value)


@dataclasses.dataclass
class SearchSpec:
    """Everything a search needs; its params are what the search's parent run records.

    Every field is a run param (paths recorded absolute) unless marked ``NOT_PARAM``: the store
    and cluster a search ran against and the spaces loaded from ``spaces_dir`` are not part of
    the search itself.  :meth:`to_params` and :meth:`from_params` are driven by the fields, so a
    new field is recorded and restored (on resume, by the report) with no other change.
    """

    train: str = dataclasses.field(metadata=PATH)
    families: list[str]
    # None: no trial limit (with a time budget: trials start round-robin until it is spent)
    trials_per_family: int | None = 4
    max_epochs: int = 10
    experiment: str = dataclasses.field(default="tagtune", metadata=NOT_PARAM)
    tracking_uri: str | None = dataclasses.field(default=None, metadata=NOT_PARAM)
    seed: int = 0
    val_fraction: float = 0.2
    cpus_per_trial: float = 1.0
    # None: chosen from the cluster when the search starts (tagtune.resources.choose_gpus); the
    # parent run records the chosen number, so a resumed search reuses it.
    gpus_per_trial: float | None = None
    max_concurrent: int | None = None
    address: str | None = dataclasses.field(default=None, metadata=NOT_PARAM)
    storage_path: str = dataclasses.field(default="tagtune-runs", metadata=PATH)
    spaces_dir: str | None = dataclasses.field(default=None, metadata=PATH)
    max_failures: int = 1
    defaults_first: bool = True
    # early stopping per family (tagtune.tune.schedulers): asha, hyperband or none
    scheduler: str = "asha"
    grace_period: int = 2
    reduction_factor: float = 3.0
    milestone_metric: str = Metrics.SEARCH
    # spare a slow starter whose curve still climbs toward the rung's cutoff (tagtune.tune.schedulers)
    curve_grace: bool = True
    # seconds of search wall time (the driver's), None: no budget
    time_budget: float | None = None
    # an earlier search (experiment name) whose finished trials seed each family's study
    warm_start: str | None = None
    # each family's Optuna sampler (tagtune.samplers.SAMPLERS: tpe, gp, random)
    sampler: str = DEFAULT_SAMPLER
    # how --train is read (--feature-key, --label-key, --group-key, --task; None = the format's
    # default / what the labels show): recorded, so trials, resume and finalize read it the same way
    feature_key: str | None = None
    label_key: str | None = None
    group_key: str | None = None
    task: str | None = None
    # The Optuna studies' database (postgresql://..., sqlite:///...); None: a SQLite file beside
    # Ray's state.  Not a param (it may name a host and user); the parent run's
    # tagtune.optuna_storage tag records it with any password hidden.
    optuna_storage: str | None = dataclasses.field(default=None, metadata=NOT_PARAM)
    # family -> tagtune.search_spaces.SearchSpace, filled by tagtune.search's check()
    spaces: dict[str, Any] = dataclasses.field(default_factory=dict, metadata=NOT_PARAM)

    @property
    def total_trials(self) -> int:
        """The search's trial budget: ``trials_per_family`` for each family (-1: no limit, Tune's
        ``num_samples`` for "until the time budget is spent")."""
        if self.trials_per_family is None:
            return -1
        return self.trials_per_family * len(self.families)

    def validate(self) -> None:
        """Check the numbers and the family list (InputError naming the flag); paths and spaces
        are checked by ``tagtune.search``, which knows the data and the cluster."""
        if self.trials_per_family is None and self.time_budget is None:
            raise InputError("--trials-per-family or --time-budget: give at least one, e.g. --time-budget 45m")
        if self.trials_per_family is not None and self.trials_per_family < 1:
            raise InputError(f"--trials-per-family must be at least 1, got {self.trials_per_family}")
        if self.time_budget is not None and self.time_budget <= 0:
            raise InputError(f"--time-budget must be positive, got {self.time_budget:g} s")
        if self.max_epochs < 1:
            raise InputError(f"--max-epochs must be at least 1, got {self.max_epochs}")
        if not 0.0 < self.val_fraction < 1.0:
            raise InputError(f"--val-fraction must be between 0 and 1, got {self.val_fraction}")
        if self.cpus_per_trial <= 0:
            raise InputError(f"--cpus-per-trial must be positive, got {self.cpus_per_trial}")
        if self.gpus_per_trial is not None and self.gpus_per_trial < 0:
            raise InputError(f"--gpus-per-trial must be 0 or more, got {self.gpus_per_trial}")
        if self.max_concurrent is not None and self.max_concurrent < 1:
            raise InputError(f"--max-concurrent must be at least 1, got {self.max_concurrent}")
        if self.max_failures < 0:
            raise InputError(f"--max-failures must be 0 or more, got {self.max_failures}")
        if not self.families:
            raise InputError("--families is empty; name at least one family or `all`")
        check_sampler(self.sampler)
        self.read_options()  # an unknown --task or an empty key names its flag

    def read_options(self) -> Any:
        """The :class:`tagtune.trainables.data.ReadOptions` of ``--train`` (``--feature-key``,
        ``--label-key``, ``--group-key``, ``--task``)."""
        from tagtune.trainables.data import ReadOptions

        return ReadOptions(self.feature_key, self.label_key, self.group_key, self.task)

    def to_params(self) -> dict[str, str]:
        """The run params of this spec: every param field, paths absolute."""
        params = to_params(self)
        for f in dataclasses.fields(self):
            if f.metadata.get("path") and f.name in params:
                params[f.name] = _absolute(params[f.name]) or ""
        return params

    @classmethod
    def from_params(cls, params: Mapping[str, str], **overrides: Any) -> Self:
        """The spec a parent run's params describe (params an older run lacks keep their
        defaults); ``overrides`` set the fields that are not params (``experiment``, ...)."""
        return from_params(cls, params, **overrides)


def search_spec(run: Any, **overrides: Any) -> SearchSpec:
    """The :class:`SearchSpec` of a search's parent run, rebuilt from its params (``spaces_dir``,
    ``train``, ``val_fraction``, ``seed``, ...); ``overrides`` as :meth:`SearchSpec.from_params`."""
    return SearchSpec.from_params(run.data.params, **overrides)
