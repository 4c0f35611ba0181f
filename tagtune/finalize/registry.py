"""A finalize's MLflow side: its :class:`Session` (the store, the search, and the runs it
opens: its own ``finalize`` run under the search, each final's and ensemble's under that one),
the outputs a final or ensemble logs, and a family's best final logged and registered as a
pyfunc model."""

from __future__ import annotations

import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import Metric, RunTag

from tagtune.errors import InputError
from tagtune.finalize.spec import FinalizeSpec, LeftOut, Member, Say
from tagtune.tracking import (
    PER_CLASS_ARTIFACT,
    RunKind,
    Tag,
    Trials,
    find_experiment,
    latest_search_run,
    open_run,
    open_store,
    recorded_spaces_dir,
    search_trials,
    to_params,
)
from tagtune.tracking.serving import log_tagger, registered_model_name
from tagtune.tracking.tables import CONFUSION_ARTIFACT
from tagtune.trainables.inference import FinalsData


@dataclass
class Session:
    """One finalize in progress: its store, search, device, and the parent run's metrics and
    tags, logged in one batch at the end (:meth:`flush`)."""

    spec: FinalizeSpec
    client: MlflowClient
    uri: str
    experiment_id: str
    parent: Any
    device: Any
    say: Say
    finalize_id: str = field(default_factory=lambda: f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}")
    parent_metrics: list[Metric] = field(default_factory=list)
    parent_tags: list[RunTag] = field(default_factory=list)
    version: int = 1  # this finalize's number among the search's finalizes (1, 2, ...)
    group_id: str = ""  # this finalize's own run (under the search), the finals' parent
    inputs: list[Any] = field(default_factory=list)  # the data, as dataset inputs of each run
    left_out: list[LeftOut] = field(default_factory=list)  # trials kept out of the ensemble pool
    # resuming an interrupted finalize: its FINISHED finals by (source trial run, rank), and the
    # ensemble methods it already logged; nothing of these is trained or logged again
    resumed: dict[tuple[str, int], Any] = field(default_factory=dict)
    done_ensembles: set[str] = field(default_factory=set)
    search_split: Any = None  # (the search's TrialData, its max epochs): --techniques reads it once

    def __post_init__(self) -> None:
        self.parent_tags.append(RunTag(Tag.FINALIZE_ID, self.finalize_id))
        self.parent_tags.append(RunTag(Tag.FINALIZE_VERSION, str(self.version)))

    @property
    def parent_id(self) -> str:
        return str(self.parent.info.run_id)

    @contextmanager
    def open(self, kind: RunKind, run_name: str, tags: dict[str, Any], params: dict[str, Any]) -> Iterator[Any]:
        """A run of this finalize (see :func:`tagtune.tracking.open_run`): its own ``finalize``
        run under the search, then each final's or ensemble's under that one; each with the
        data as dataset inputs (the UI's Datasets)."""
        with open_run(
            self.client,
            self.experiment_id,
            kind=kind,
            # a re-run's runs are told apart from the earlier ones' in the UI: "final-fc1 v2"
            run_name=run_name if self.version == 1 else f"{run_name} v{self.version}",
            params=params,
            tags={**tags, Tag.FINALIZE_ID: self.finalize_id, Tag.FINALIZE_VERSION: str(self.version)},
            parent_run_id=self.group_id or self.parent_id,
        ) as run:
            if self.inputs:
                self.client.log_inputs(run.run_id, datasets=self.inputs)
            yield run

    def model(self, name: str, run_id: str, model_uri: str, metrics: dict[str, float], prefix: str) -> None:
        """Record a logged model: its URI on its run and the parent's tag, its metrics on the parent."""
        self.client.set_tag(run_id, Tag.MODEL_URI, model_uri)
        self.parent_tags.append(RunTag(Tag.final_model(name), model_uri))
        now = int(time.time() * 1000)
        self.parent_metrics += [Metric(f"{prefix}_{k}", v, now, 0) for k, v in metrics.items()]

    def flush(self) -> None:
        self.client.log_batch(self.parent_id, metrics=self.parent_metrics, tags=self.parent_tags)


def open_search(spec: FinalizeSpec, say: Say) -> tuple[Session, Trials]:
    """The store, the search and its trials; InputError when there is nothing to finalize."""
    from tagtune.trainables.loop import pick_device

    client, uri = open_store(spec.tracking_uri)
    exp = find_experiment(client, uri, spec.experiment)
    parent = latest_search_run(client, exp, spec.run_id)
    trials = search_trials(client, exp.experiment_id, parent.info.run_id, recorded_spaces_dir(parent))
    if not trials.best():
        raise InputError(
            f"search run {parent.info.run_id} of {spec.experiment!r} has no completed trial to "
            "finalize; run `tagtune search` first"
        )
    earlier = {
        run.data.tags.get(Tag.FINALIZE_ID)
        for run in trials.runs
        if run.data.tags.get(Tag.KIND) in (RunKind.FINAL, RunKind.ENSEMBLE, RunKind.FINALIZE)
    }
    session = Session(spec, client, uri, exp.experiment_id, parent, pick_device(spec.device), say)
    session.version = len(earlier - {None}) + 1
    if spec.resume:
        resume_interrupted(session, trials.runs)
    session.parent_tags[:2] = [
        RunTag(Tag.FINALIZE_ID, session.finalize_id),
        RunTag(Tag.FINALIZE_VERSION, str(session.version)),
    ]
    return session, trials


def finalize_params(spec: FinalizeSpec) -> dict[str, str]:
    """A finalize run's params: its spec, less what does not change what it trains."""
    return to_params(spec, exclude=("tracking_uri", "resume"))


def resume_interrupted(session: Session, runs: list[Any]) -> None:
    """When this search's latest finalize run did not finish and was asked for with the same
    flags, continue it: same finalize id, version and run; its FINISHED finals and ensembles are
    kept (:attr:`Session.resumed`), its unfinished ones marked KILLED and done again."""
    groups = [r for r in runs if r.data.tags.get(Tag.KIND) == RunKind.FINALIZE]
    if not groups:
        return
    last = max(groups, key=lambda r: r.info.start_time)
    if last.info.status == "FINISHED" or dict(last.data.params) != finalize_params(session.spec):
        return
    session.finalize_id = last.data.tags[Tag.FINALIZE_ID]
    session.version = int(last.data.tags[Tag.FINALIZE_VERSION])
    session.group_id = last.info.run_id
    for run in runs:
        if run.data.tags.get(Tag.FINALIZE_ID) != session.finalize_id or run.info.run_id == session.group_id:
            continue
        tags = run.data.tags
        if run.info.status == "FINISHED" and tags.get(Tag.KIND) == RunKind.FINAL:
            session.resumed[(tags[Tag.SOURCE_RUN], int(tags[Tag.RANK]))] = run
        elif run.info.status == "FINISHED" and tags.get(Tag.KIND) == RunKind.ENSEMBLE:
            session.done_ensembles.add(tags[Tag.ENSEMBLE_METHOD])
        elif run.info.status == "RUNNING":  # killed before it could end itself
            session.client.set_terminated(run.info.run_id, "KILLED")
    session.say(
        f"continuing the interrupted finalize v{session.version} (run {session.group_id[:8]}): "
        f"{len(session.resumed)} finals and {len(session.done_ensembles)} ensembles already logged are kept "
        "(--no-resume starts a new one)"
    )


def log_outputs(
    client: MlflowClient,
    run_id: str,
    checkpoint: Path | None,
    per_class: pd.DataFrame,
    metrics: dict[str, float],
    confusion: pd.DataFrame | None = None,
) -> None:
    """A final's or ensemble's eval metrics, per-class table, confusion matrix (single-label
    data) and (for finals) checkpoint."""
    now = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()])
    with tempfile.TemporaryDirectory() as tmp:
        per_class.to_csv(Path(tmp) / Path(PER_CLASS_ARTIFACT).name, index=False)
        if confusion is not None:
            confusion.to_csv(Path(tmp) / Path(CONFUSION_ARTIFACT).name, index=False)
        client.log_artifacts(run_id, tmp, str(Path(PER_CLASS_ARTIFACT).parent))
    if checkpoint is not None:
        client.log_artifacts(run_id, str(checkpoint), "checkpoint")


def register_final(session: Session, member: Member, fd: FinalsData) -> None:
    """Log a family's best final as a pyfunc model (registered as ``<experiment>-<family>``)."""
    spec, family = session.spec, member.family
    name = registered_model_name(spec.experiment, family) if spec.register else None
    logged = log_tagger(
        session.uri,
        member.run_id,
        member.checkpoints,  # a seed ensemble is served as the mean of its seeds
        class_names=fd.class_names,
        n_frames=fd.data.shape[0],
        n_features=fd.data.shape[1],
        registered_name=name,
        extra_metadata={"family": family, "source_run": member.source.run_id},
    )
    member.model_uri = logged.registered_uri or logged.run_uri
    session.model(family, member.run_id, member.model_uri, member.metrics, f"final_{family}")
