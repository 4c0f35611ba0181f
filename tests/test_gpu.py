"""The GPU path: device-resident data, bf16 autocast, fractional GPUs.  The ``gpu`` tests need
CUDA (`-m gpu`); the GPU machine has PyTorch, numpy and pytest but not Ray, MLflow, Optuna or
crc32c, so this module imports only the training loop and metrics, and a test that needs Ray
skips there.  ``test_loop_imports_without_ray_mlflow`` runs everywhere (CPU CI included)."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

#: What the GPU machine lacks: the training loop must import without them.
ABSENT_ON_THE_GPU_MACHINE = ("ray", "mlflow", "optuna", "crc32c", "soundfile", "soxr", "librosa")


def test_loop_imports_without_ray_mlflow():
    blocked = ", ".join(repr(m) for m in ABSENT_ON_THE_GPU_MACHINE)
    code = f"""
import importlib.abc, sys
BLOCKED = {{{blocked}}}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked)", name=name)
sys.meta_path.insert(0, Block())
from tagtune.trainables.loop import TrialData, fit
from tagtune.trainables.metrics import tagging_metrics
from tagtune.trainables.data import split_indices
import numpy as np
x = np.random.default_rng(0).integers(0, 255, (40, 10, 128), dtype=np.uint8)
y = np.zeros((40, 3), bool); y[::2, 0] = y[1::2, 1] = y[::3, 2] = True
tr, va = split_indices(40, 0.25, 0)
fit({{"family": "fc1"}}, TrialData(x=x, y=y, train_idx=tr, val_idx=va), max_epochs=1, device="cpu")
loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
assert not loaded, loaded
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]


def test_cuda_graphs_apply_only_where_the_step_is_the_same_kernels_each_time(monkeypatch):
    """Runs everywhere: the choice needs a device object, not a GPU."""
    from tagtune.trainables.config import resolve_config
    from tagtune.trainables.graphs import graphs_apply

    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    plain = resolve_config({"family": "fc2"})
    assert graphs_apply(plain, cuda, "embeddings") and not graphs_apply(plain, cpu, "embeddings")
    assert not graphs_apply(plain, cuda, "audio")
    for changed in ({"mixup_alpha": 0.2}, {"ema_decay": 0.999}, {"optimizer": "sgd"}, {"shift_augment": 2}):
        assert not graphs_apply(resolve_config({"family": "fc2", **changed}), cuda, "embeddings"), changed
    assert graphs_apply(resolve_config({"family": "fc2", "optimizer": "adamw", "grad_clip": 1.0}), cuda, "embeddings")
    monkeypatch.setenv("TAGTUNE_CUDA_GRAPHS", "0")
    assert not graphs_apply(plain, cuda, "embeddings")


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("family", ["fc1", "fc2", "lstm", "gcnn", "attention", "densenet", "transformer"])
def test_fit_on_cuda_with_bf16(family, tiny_data):
    from tagtune.trainables.loop import fit

    result = fit({"family": family}, tiny_data, max_epochs=2, device="cuda")
    assert all(math.isfinite(h["train_loss"]) for h in result.history)
    assert all(v.device.type == "cpu" for v in result.best_state.values())


@pytest.mark.gpu
@needs_cuda
def test_float32_on_cuda_when_bf16_is_off(tiny_data, monkeypatch):
    from tagtune.trainables.batches import autocast
    from tagtune.trainables.loop import fit

    monkeypatch.setenv("TAGTUNE_BF16", "0")
    with autocast(torch.device("cuda")):
        assert (torch.ones(2, 2, device="cuda") @ torch.ones(2, 2, device="cuda")).dtype == torch.float32
    result = fit({"family": "fc2"}, tiny_data, max_epochs=2, device="cuda")
    assert all(math.isfinite(h["train_loss"]) for h in result.history)
    monkeypatch.delenv("TAGTUNE_BF16")
    with autocast(torch.device("cuda")):
        assert (torch.ones(2, 2, device="cuda") @ torch.ones(2, 2, device="cuda")).dtype == torch.bfloat16


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("family", ["fc1", "fc2", "lstm", "gcnn", "attention", "densenet", "transformer"])
def test_the_cuda_graph_step_trains_like_the_eager_one(family, tiny_data, monkeypatch):
    """Batch 16 of 72 clips: 3 warm-up steps, the capture, replays and an eager short last batch
    per epoch.  A family whose capture fails trains on eagerly (said in a warning)."""
    from tagtune.trainables import graphs
    from tagtune.trainables.loop import fit

    captured = []
    capture = graphs.GraphedStep._capture

    def counted(self, idx):
        captured.append(capture(self, idx))
        return captured[-1]

    monkeypatch.setattr(graphs.GraphedStep, "_capture", counted)
    cfg = {"family": family, "batch_size": 16, "lr_schedule": "cosine"}
    graphed = fit(cfg, tiny_data, max_epochs=5, device="cuda")
    monkeypatch.setenv("TAGTUNE_CUDA_GRAPHS", "0")
    eager = fit(cfg, tiny_data, max_epochs=5, device="cuda")
    g, e = graphed.best["val_mAUC"], eager.best["val_mAUC"]
    print(f"{family}: captured {captured}, val mAUC graphed {g:.4f} eager {e:.4f}")
    assert all(math.isfinite(h["train_loss"]) for h in graphed.history)
    assert len(captured) == 1 and (captured[0] or family != "fc2")  # fc2 must capture
    assert abs(g - e) < 0.1


@pytest.mark.gpu
@needs_cuda
def test_metrics_on_cuda_match_cpu():
    from tagtune.trainables.metrics import tagging_metrics

    g = torch.Generator().manual_seed(0)
    scores, targets = torch.rand(500, 20, generator=g), torch.rand(500, 20, generator=g) < 0.1
    cpu = tagging_metrics(scores, targets)
    gpu = tagging_metrics(scores.cuda(), targets.cuda())
    for key in cpu:
        assert abs(cpu[key] - gpu[key]) < 1e-6


@pytest.mark.gpu
@needs_cuda
def test_metrics_on_cuda_match_sklearn():
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    from tagtune.trainables.metrics import average_precision, roc_auc

    g = torch.Generator().manual_seed(1)
    targets = torch.rand(2000, 30, generator=g) < 0.05
    scores = (torch.randn(2000, 30, generator=g) + 1.5 * targets).sigmoid()
    scores = (scores * 64).round() / 64  # ties, as bf16 outputs have
    ap = average_precision(scores.cuda(), targets.cuda()).cpu()
    auc = roc_auc(scores.cuda(), targets.cuda()).cpu()
    for j in range(30):
        y, s = targets[:, j].numpy(), scores[:, j].numpy()
        assert abs(float(ap[j]) - sklearn_metrics.average_precision_score(y, s)) < 1e-6
        assert abs(float(auc[j]) - sklearn_metrics.roc_auc_score(y, s)) < 1e-6


@pytest.mark.gpu
@needs_cuda
def test_the_default_choice_on_this_machine_uses_its_gpus():
    import os

    from tagtune.resources import choose_gpus

    resources = {"CPU": float(os.cpu_count() or 1), "GPU": float(torch.cuda.device_count())}
    choice = choose_gpus(resources, ["fc2", "attention"], 1.0)
    assert 0 < choice.gpus_per_trial <= 1 and choice.line.startswith("GPUs: ")


@pytest.mark.gpu
@needs_cuda
def test_four_trials_share_one_gpu(request):
    pytest.importorskip("ray", reason="Ray is not installed here (the GPU machine has PyTorch only)")
    pytest.importorskip("mlflow", reason="MLflow is not installed here")
    pytest.importorskip("optuna", reason="Optuna is not installed here")
    from mlflow import MlflowClient

    from tagtune.search import run_search

    search_spec = request.getfixturevalue("search_spec")  # after the skips: it writes TFRecords (crc32c)
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
