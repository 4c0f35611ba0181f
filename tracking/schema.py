"""tagtune's MLflow run schema: every tag key, run kind and metric name, and the run lifecycle.

Everything that writes or reads tagtune's runs takes its names from here, so the schema is one
file: a search's parent run (kind ``search``), one child run per trial (``trial``; ``lost`` when
a killed driver's trial was replaced on resume), the finals and ensembles of ``tagtune finalize``
(``final``, ``ensemble``) and the runs of ``tagtune train`` (``train``).

:func:`open_run` is the one way a run is opened: it creates the run with its tags and params and
always ends it (FINISHED, FAILED on an exception or :meth:`RunHandle.fail`, KILLED on Ctrl-C), so
no run is left RUNNING by an error.
"""

from __future__ import annotations

import dataclasses
import enum
import time
import types
import typing
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar, get_type_hints

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag


class RunKind(str, enum.Enum):
    """The ``tagtune.kind`` tag of a run."""

    SEARCH = "search"
    TRIAL = "trial"
    LOST = "lost"
    FINAL = "final"
    ENSEMBLE = "ensemble"
    TRAIN = "train"

    def __str__(self) -> str:
        return self.value


class Tag:
    """Tag keys (``mlflow.parentRunId`` is MLflow's own, linking a child run to its search)."""

    PARENT = "mlflow.parentRunId"
    KIND = "tagtune.kind"
    FAMILY = "tagtune.family"
    FAMILIES = "tagtune.families"
    TRIAL_ID = "tagtune.trial_id"
    RAY_PATH = "tagtune.ray_path"
    OPTUNA_STORAGE = "tagtune.optuna_storage"
    NODE_ID = "tagtune.node_id"
    NODE_IP = "tagtune.node_ip"
    RETRIES = "tagtune.retries"
    ERROR = "tagtune.error"
    STATUS = "tagtune.status"
    CONFIG_FILE = "tagtune.config_file"
    FINALIZE_ID = "tagtune.finalize_id"
    SOURCE_RUN = "tagtune.source_run"
    RANK = "tagtune.rank"
    ENSEMBLE_METHOD = "tagtune.ensemble"
    MODEL_URI = "tagtune.model_uri"

    @staticmethod
    def final_model(name: str) -> str:
        """The search run's tag naming the model URI of a final (``fc1``, ``ensemble-mean``)."""
        return f"tagtune.final.{name}"


class Metrics:
    """Metric names of the runs (step = epoch in trial runs)."""

    SEARCH = "best_val_mAUC"  # what the searcher maximizes (the trial's best val_mAUC so far)
    EPOCH = ("train_loss", "val_loss", "val_mAUC", "val_mAP", "val_dprime", "epoch_seconds")
    TASK = ("val_f1", "val_accuracy", "val_map3")  # where the task has them
    BEST = ("best_val_mAUC", "best_val_mAP", "best_val_f1", "best_val_accuracy", "best_val_map3")
    HISTORY = ("val_mAUC", "val_mAP", "val_loss", "train_loss", "epoch_seconds")
    EVAL = ("eval_mAUC", "eval_mAP", "eval_dprime")


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

    def log(self, params: Mapping[str, Any] | None = None, metrics: Mapping[str, float] | None = None,
            tags: Mapping[str, Any] | None = None, step: int = 0) -> None:
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
    all_tags = {Tag.KIND: kind.value, **{k: str(v) for k, v in (tags or {}).items()}}
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
