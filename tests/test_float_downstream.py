"""Float, per-clip, single-label embeddings with their own train/valid/test split (an npz) through
search, finalize (no --eval: the npz's test split is scored), the registered model and predict;
and --families refused by the data's shape through the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import shrunk_spec, start_local_ray


def write_npz(path, n=240, d=16, c=4, seed=0):
    """A learnable single-label float32 set ``[N, D]`` (per clip) with class indices and a split."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, n)
    proto = rng.normal(0, 2, (c, d))
    x = (100.0 + 5.0 * (proto[y] + rng.normal(0, 1, (n, d)))).astype(np.float32)
    split = np.array(["train", "train", "train", "valid", "test"] * (n // 5))
    np.savez(
        path,
        x=x,
        y=y,
        ids=np.array([f"c{i}" for i in range(n)]),
        split=split,
        class_names=np.array([f"k{i}" for i in range(c)]),
    )
    return path


@pytest.fixture(scope="module")
def float_run(tmp_path_factory):
    import ray

    from tagtune.finalize import FinalizeSpec, finalize
    from tagtune.search import run_search

    root = tmp_path_factory.mktemp("float_run")
    mp = pytest.MonkeyPatch()
    mp.setenv("TAGTUNE_CACHE_DIR", str(root / "cache"))
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)
    data = write_npz(root / "feats.npz")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    started = not ray.is_initialized()
    start_local_ray()
    lines: list[str] = []
    try:
        spec = shrunk_spec(root, data, families=["fc1"], max_epochs=3, experiment="flt", tracking_uri=uri)
        search = run_search(spec, echo=lambda line: None)
        outcome = finalize(FinalizeSpec(experiment="flt", train=str(data), tracking_uri=uri), echo=lines.append)
        yield root, data, uri, search, outcome, lines
    finally:
        if started:
            ray.shutdown()
        mp.undo()


@pytest.mark.slow
def test_float_single_label_npz_searches_finalizes_on_its_test_split_and_predicts(float_run):
    from mlflow import MlflowClient

    from tagtune.predict import predictions

    root, data, uri, search, outcome, lines = float_run
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("flt")
    (trial,) = client.search_runs([exp.experiment_id], "tags.`tagtune.kind` = 'trial'")
    params = client.get_run(search.parent_run_id).data.params
    assert (int(params["n_train"]), int(params["n_val"])) == (144, 48)  # the npz's train / valid
    assert "best_val_accuracy" in trial.data.metrics
    (final,) = [m for m in outcome.members if m.family == "fc1"]
    assert 0.5 < final.metrics["eval_accuracy"] <= 1.0  # scored on the 48 test clips (chance 0.25)
    assert any("48 eval clips (test split of" in line for line in lines)
    # the final's logged checkpoint (its working folder went with finalize's temporary folder)
    meta = json.loads(Path(client.download_artifacts(final.run_id, "checkpoint/model.json", str(root))).read_text())
    assert meta["inputs"]["scaling"] == "standard" and meta["task"] == "singlelabel"
    assert final.model_uri and final.model_uri.startswith("models:/")
    out = list(predictions(final.model_uri, str(data), k=2, tracking_uri=uri))
    assert len(out) == 240 and [lab["rank"] for lab in out[0]["labels"]] == [1, 2]
    assert sum(lab["score"] for lab in out[0]["labels"]) <= 1.0 + 1e-5  # a distribution


def test_families_that_cannot_take_the_shape_are_refused_with_exit_2(tmp_path):
    data = write_npz(tmp_path / "d7.npz", d=7)
    cmd = [sys.executable, "-m", "tagtune.cli", "search", "--train", str(data), "--families", "transformer"]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env={"TAGTUNE_CACHE_DIR": str(tmp_path)})
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert "transformer" in line and "1 x 7" in line and "families that can: fc1" in line

    from tagtune.families import parse_families
    from tagtune.trainables.data import open_source

    fitting = parse_families("all", open_source(data))
    assert "transformer" not in fitting and {"fc1", "attention"} <= set(fitting)
