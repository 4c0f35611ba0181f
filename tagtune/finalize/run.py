"""``finalize``: the finals and ensembles of one search, in one ``finalize`` run under it."""

from __future__ import annotations

import os
import sys
import tempfile
from contextlib import AbstractContextManager
from typing import Any

from tagtune.finalize.candidates import plan_finals
from tagtune.finalize.data import dataset_inputs, open_finals
from tagtune.finalize.ensembles import log_ensemble, recipes
from tagtune.finalize.registry import Session, finalize_params
from tagtune.finalize.spec import FinalizeOutcome, FinalizeSpec, Member, Say
from tagtune.finalize.training import train_final
from tagtune.names import Tag
from tagtune.tracking import RunKind, child_runs, finals_table, reopen_run


def _group_run(session: Session) -> AbstractContextManager[Any]:
    """This finalize's own run: a new one, or the interrupted one it continues."""
    if session.group_id:
        return reopen_run(session.client, session.group_id)
    return session.open(RunKind.FINALIZE, "finals", {}, finalize_params(session.spec))


def finalize(spec: FinalizeSpec, echo: Say | None = None) -> FinalizeOutcome:
    """Retrain, score on eval, log, register and ensemble (see :mod:`tagtune.finalize`)."""
    say = echo or (lambda line: print(line, file=sys.stderr, flush=True))
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    spec.check()
    session, trials, fd = open_finals(spec, say)
    plan, picks = plan_finals(session, trials, fd)
    session.inputs = dataset_inputs(spec, fd)
    members: list[Member] = []
    with (
        _group_run(session) as group,
        tempfile.TemporaryDirectory(prefix="tagtune-finals-") as work,
    ):
        session.group_id = group.run_id
        if session.left_out:
            session.client.set_tag(group.run_id, Tag.POOL_LEFT_OUT, "; ".join(map(str, session.left_out))[:5000])
        for planned in plan:
            member = train_final(session, trials, fd, planned, work)
            if member is not None:
                members.append(member)
        if spec.ensembles:
            for recipe in recipes(members, picks, len(fd.class_names), fd.methods):
                if recipe.method in session.done_ensembles:
                    continue
                log_ensemble(session, fd, recipe)
    session.flush()
    runs = child_runs(session.client, session.experiment_id, session.parent_id)
    return FinalizeOutcome(session.parent_id, session.uri, finals_table(runs), members)
