"""tagtune's MLflow run schema: the run kinds and the run lifecycle.

Everything that writes or reads tagtune's runs takes its names from the schema: a search's
parent run (kind ``search``), one child run per trial (``trial``; ``lost`` when a killed driver's
trial was replaced on resume), the finals and ensembles of ``tagtune finalize`` (``final``,
``ensemble``) and the runs of ``tagtune train`` (``train``).  The tag keys and metric names
(:class:`~tagtune.names.Tag`, :class:`~tagtune.names.Metrics`) and the search spec a parent run
records as its params (:class:`~tagtune.spec.SearchSpec`) are defined in leaf modules, so the
training loop, the dashboards and the command line use them without MLflow;
:mod:`tagtune.tracking` exports them with the rest of the schema.

:func:`open_run` is the one way a run is opened: it creates the run with its tags and params and
always ends it (FINISHED, FAILED on an exception or :meth:`RunHandle.fail`, KILLED on Ctrl-C), so
no run is left RUNNING by an error.
"""

from __future__ import annotations

import dataclasses
import enum
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag

from tagtune.errors import InputError
from tagtune.names import Tag
from tagtune.spec import SearchSpec


class RunKind(enum.StrEnum):
    """The ``tagtune.kind`` tag of a run (``str(kind)`` is the tag value)."""

    SEARCH = "search"
    TRIAL = "trial"
    LOST = "lost"
    FINAL = "final"
    ENSEMBLE = "ensemble"
    FINALIZE = "finalize"  # one `tagtune finalize` of a search: its finals and ensembles nest under it
    TRAIN = "train"
    REPEAT = "repeat"  # `tagtune repeat`: a trial's config trained again with another seed


@dataclasses.dataclass(frozen=True)
class StopInfo:
    """Why a trial ended before ``max_epochs``: the last epoch it trained and the rule."""

    epoch: int
    rule: str

    @property
    def converged(self) -> bool:
        """Ended by ``--patience`` (``patience N``): its score is its best, not cut at a stop."""
        return self.rule.startswith("patience ")

    def tags(self) -> dict[str, str]:
        """The run tags that record the stop (a converged trial is not ``stopped_early``: the
        report counts it as completed)."""
        early = {} if self.converged else {Tag.STOPPED_EARLY: "True"}
        return {**early, Tag.STOPPED_AT_EPOCH: str(self.epoch), Tag.STOPPED_BY: self.rule}


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


def search_spec(run: Any, **overrides: Any) -> SearchSpec:
    """The :class:`SearchSpec` of a search's parent run, rebuilt from its params (``spaces_dir``,
    ``train``, ``val_fraction``, ``seed``, ...); ``overrides`` as :meth:`SearchSpec.from_params`."""
    return SearchSpec.from_params(run.data.params, **overrides)
