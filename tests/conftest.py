"""Shared fixtures: one shrunken real search (tiny generated data, 1 CPU per trial, a local Ray
with 2 CPUs, every output in tmp_path).

A test that searches asks for ``ray_local`` and builds its spec with the ``search_spec``
factory, overriding only the fields it is about::

    def test_x(ray_local, search_spec):
        outcome = run_search(search_spec(families=["fc1", "gcnn"], trials_per_family=2))
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
AUDIOSET = SHARED_DATA / "audioset"

os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")

#: The suite's global seed: 0 (today's data and weights) unless ``TAGTUNE_TEST_SEED`` says
#: otherwise. The tiny data sets (``tiny_data``, ``tiny_train``, test_audio's ``make_fsdd_like``)
#: are drawn from it and in-process training starts from it (``TRAIN_DEFAULTS["seed"]``), so
#: ``TAGTUNE_TEST_SEED=7 pytest`` checks that no assertion on a trained model rests on one lucky
#: draw. ``TAGTUNE_TEST_DETERMINISTIC=1`` runs torch with ``use_deterministic_algorithms(True)``;
#: ``OMP_NUM_THREADS=1`` (torch reads it) varies the kernels' summation order.
TEST_SEED = int(os.environ.get("TAGTUNE_TEST_SEED", "0"))


def pytest_configure(config: pytest.Config) -> None:
    if TEST_SEED or os.environ.get("TAGTUNE_TEST_DETERMINISTIC", "") not in ("", "0"):
        import torch

        from tagtune.trainables.config import TRAIN_DEFAULTS

        if os.environ.get("TAGTUNE_TEST_DETERMINISTIC", "") not in ("", "0"):
            torch.use_deterministic_algorithms(True)
        if TEST_SEED:
            TRAIN_DEFAULTS["seed"] = TEST_SEED


def pytest_report_header(config: pytest.Config) -> str:
    threads = os.environ.get("OMP_NUM_THREADS", "default")
    deterministic = os.environ.get("TAGTUNE_TEST_DETERMINISTIC", "0")
    return f"tagtune: TAGTUNE_TEST_SEED={TEST_SEED}, OMP_NUM_THREADS={threads}, deterministic={deterministic}"


def require_shared(path: Path) -> Path:
    """Skip (with the reason) when the shared real data is not beside the repository."""
    if not path.exists():
        pytest.skip(f"real data not found at {path} (expected ../shared/data beside the repo)")
    return path


@pytest.fixture
def tiny_data():
    """A small learnable multi-label problem as TrialData (96 clips x 10 x 128, 6 classes)."""
    from tagtune.trainables.loop import TrialData

    rng = np.random.default_rng(TEST_SEED)
    n, c = 96, 6
    y = rng.random((n, c)) < 0.3
    y[np.arange(n), rng.integers(0, c, n)] = True
    proto = rng.normal(0, 40, (c, 128))
    x = 128 + (y.astype(float) @ proto)[:, None, :] + rng.normal(0, 20, (n, 10, 128))
    x = np.clip(x, 0, 255).astype(np.uint8)
    idx = rng.permutation(n)
    return TrialData(x=x, y=y, train_idx=idx[:72], val_idx=idx[72:], class_names=tuple(f"c{i}" for i in range(c)))


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """Run in tmp_path so default outputs (mlflow.db, tagtune-runs) land there."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("TAGTUNE_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path


RAY_OPTIONS: dict[str, Any] = {
    "num_cpus": 2,
    "include_dashboard": False,
    "log_to_driver": False,
    "logging_level": "ERROR",
}


def start_local_ray() -> None:
    """Start the tests' local Ray (2 CPUs, quiet) unless one is up."""
    import ray

    if not ray.is_initialized():
        ray.init(**RAY_OPTIONS)


@pytest.fixture(scope="module")
def _ray_for_module() -> Iterator[None]:
    yield
    import ray

    ray.shutdown()


@pytest.fixture
def ray_local(_ray_for_module: None) -> None:
    """A local Ray with 2 CPUs, started once per test module and shut down after it (started
    again when a test stopped it, e.g. to give workers a fresh environment)."""
    start_local_ray()


@pytest.fixture(scope="session")
def tiny_train(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Generated AudioSet-like training data (400 clips of 10 x 128, 12 classes), once per session."""
    from tagtune.trainables.data import synthesize

    return synthesize(tmp_path_factory.mktemp("tiny") / "synth", n_clips=400, n_classes=12, seed=1 + TEST_SEED)


def shrunk_spec(root: Path, train: Path, **fields: Any) -> Any:
    """A real :class:`tagtune.search.CheckedSearchSpec` shrunk to seconds: ``train``, one ``fc1`` trial
    of 1 epoch on 1 CPU, Ray's state under ``root``; keyword arguments override any field."""
    from tagtune.search import CheckedSearchSpec

    values: dict[str, Any] = {
        "train": str(train),
        "families": ["fc1"],
        "trials_per_family": 1,
        "max_epochs": 1,
        "cpus_per_trial": 1.0,
        "storage_path": str(root / "tagtune-runs"),
    }
    return CheckedSearchSpec(**{**values, **fields})


@pytest.fixture
def search_spec(workdir: Path, tiny_train: Path) -> Callable[..., Any]:
    """A factory of :func:`shrunk_spec` s on ``tiny_train`` with the MLflow store (``mlflow.db``),
    Ray's state and the data cache in tmp_path (``workdir``)."""

    def make(**fields: Any) -> Any:
        return shrunk_spec(workdir, tiny_train, **fields)

    return make


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The service tests last (in their order): their PostgreSQL and MLflow server start once,
    when the first of them needs them, and are not running beside the rest of the suite."""
    items.sort(key=lambda item: item.get_closest_marker("service") is not None)


# The service tests' PostgreSQL and MLflow server (tests/service.py), shared by their modules.
from service import mlflow_server, postgres, team_search  # noqa: E402, F401


def log_checkpoint(
    tmp_path: Path, checkpoint: Path, class_names: Any, n_frames: int, n_features: int
) -> tuple[str, Any]:
    """``(tracking URI, LoggedTagger)``: ``checkpoint`` logged with ``log_tagger`` on a new run of
    a SQLite store in ``tmp_path``."""
    import mlflow

    from tagtune.tracking.serving import log_tagger

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("logged")
    with mlflow.start_run() as run:
        pass
    return uri, log_tagger(
        uri, run.info.run_id, [checkpoint], class_names=class_names, n_frames=n_frames, n_features=n_features
    )
