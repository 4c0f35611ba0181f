"""The GPU path: device-resident data, bf16 autocast, fractional GPUs. Needs CUDA (`-m gpu`)."""

from __future__ import annotations

import math

import pytest
import torch

pytestmark = pytest.mark.gpu
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@needs_cuda
@pytest.mark.parametrize("family", ["fc2", "lstm", "gcnn"])
def test_fit_on_cuda_with_bf16(family, tiny_data):
    from tagtune.trainables.loop import fit

    result = fit({"family": family}, tiny_data, max_epochs=2, device="cuda")
    assert all(math.isfinite(h["train_loss"]) for h in result.history)
    assert all(v.device.type == "cpu" for v in result.best_state.values())


@needs_cuda
def test_metrics_on_cuda_match_cpu():
    from tagtune.trainables.metrics import tagging_metrics

    g = torch.Generator().manual_seed(0)
    scores, targets = torch.rand(500, 20, generator=g), torch.rand(500, 20, generator=g) < 0.1
    cpu = tagging_metrics(scores, targets)
    gpu = tagging_metrics(scores.cuda(), targets.cuda())
    for key in cpu:
        assert abs(cpu[key] - gpu[key]) < 1e-6


@needs_cuda
def test_four_trials_share_one_gpu(search_spec):
    from mlflow import MlflowClient

    from tagtune.search import run_search

    spec = search_spec(
        families=["fc2"],
        trials_per_family=4,
        max_epochs=2,
        experiment="gpu",
        gpus_per_trial=0.25,
        cpus_per_trial=0.5,
    )
    outcome = run_search(spec, echo=lambda line: None)
    runs = MlflowClient(outcome.tracking_uri).search_runs(
        [outcome.experiment_id], filter_string="tags.`tagtune.family` = 'fc2'"
    )
    assert len(runs) == 4 and all(r.info.status == "FINISHED" for r in runs)
