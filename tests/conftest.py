"""Shared fixtures: one shrunken real run (CPU, tiny data, outputs in tmp_path)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
AUDIOSET = SHARED_DATA / "audioset"

os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")


def require_shared(path: Path) -> Path:
    """Skip (with the reason) when the shared real data is not beside the repository."""
    if not path.exists():
        pytest.skip(f"real data not found at {path} (expected ../shared/data beside the repo)")
    return path


@pytest.fixture
def tiny_data():
    """A small learnable multi-label problem as TrialData (32 clips x 10 x 128, 6 classes)."""
    from tagtune.trainables.loop import TrialData

    rng = np.random.default_rng(0)
    n, c = 96, 6
    y = rng.random((n, c)) < 0.3
    y[np.arange(n), rng.integers(0, c, n)] = True
    proto = rng.normal(0, 40, (c, 128))
    x = 128 + (y.astype(float) @ proto)[:, None, :] + rng.normal(0, 20, (n, 10, 128))
    x = np.clip(x, 0, 255).astype(np.uint8)
    idx = rng.permutation(n)
    return TrialData(x=x, y=y, train_idx=idx[:72], val_idx=idx[72:],
                     class_names=tuple(f"c{i}" for i in range(c)))


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """Run in tmp_path so default outputs (mlflow.db, tagtune-runs) land there."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("TAGTUNE_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path
