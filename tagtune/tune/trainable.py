"""The Ray Tune function trainable: one trial = one :func:`tagtune.trainables.loop.fit` call.

Each epoch is reported with ``ray.tune.report``; when validation mAUC improves, the best state is
saved as the trial's checkpoint (:mod:`tagtune.trainables.checkpoint`: ``model.pt`` +
``model.json``), so the last checkpoint is the best.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import torch
from torch import nn

from tagtune.names import Metrics
from tagtune.trainables.checkpoint import model_meta, save_model
from tagtune.trainables.data import TrialData
from tagtune.trainables.loop import TrainingDiverged, fit, pick_device

#: Result key of a trial whose loss went NaN/inf; the searcher and the MLflow callback fail it.
DIVERGED = "diverged"


def _threads_and_device() -> torch.device:
    """Use as many threads as CPUs Ray assigned to the trial, and its GPU if it has one."""
    import ray

    resources = ray.get_runtime_context().get_assigned_resources()
    torch.set_num_threads(max(1, int(resources.get("CPU", 1))))
    return pick_device(None if resources.get("GPU", 0) else "cpu")


FAULT_ENV = "TAGTUNE_FAULT_KILL_ONCE"


def _fault_injection() -> None:
    """Fault injection for the failure tests: when ``$TAGTUNE_FAULT_KILL_ONCE`` names a file that
    does not exist yet, create it and SIGKILL this worker (once per file, so the retry runs)."""
    marker = os.environ.get(FAULT_ENV)
    if not marker:
        return
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    os.close(fd)
    import signal

    os.kill(os.getpid(), signal.SIGKILL)


def tune_trial(config: dict[str, Any], data: TrialData, max_epochs: int) -> None:
    """Ray Tune function trainable (wrapped with ``tune.with_parameters`` by the driver)."""
    import ray
    from ray import tune

    device = _threads_and_device()
    node_id = ray.get_runtime_context().get_node_id()

    def report(metrics: dict[str, float], improved: bool, model: nn.Module) -> None:
        payload: dict[str, Any] = {**metrics, "node_id": node_id}
        _fault_injection()
        if not improved:
            tune.report(payload)
            return
        with tempfile.TemporaryDirectory() as tmp:
            save_model(tmp, model, model_meta(config, data, payload))
            tune.report(payload, checkpoint=tune.Checkpoint.from_directory(tmp))

    try:
        fit(config, data, max_epochs=max_epochs, device=device, on_epoch=report)
    except TrainingDiverged as exc:
        # Deterministic: retrying would diverge again, so the trial ends here (not as a Ray
        # error that FailureConfig would retry) and says why; the driver records it as failed.
        nan = float("nan")
        tune.report({DIVERGED: 1.0, "error": str(exc), Metrics.BEST_VAL_MAUC: nan, Metrics.BEST_VAL_MAP: nan})
