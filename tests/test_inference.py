"""The inference seam (``tagtune.trainables.inference``): one rule for softmax or sigmoid, one
entry per data kind, and the same scores for a model however it is referenced.

A tiny single-label embedding model (1 epoch; the test is about equal scores, not learning) is
logged and registered, then scored from its checkpoint folder, ``runs:/<id>`` (the run's
checkpoint), ``runs:/<id>/model`` (the pyfunc model), ``models:/<name>/1`` and, in the ``slow``
test, ``mlflow models serve``: every answer is the softmax of the network's logits.
"""

from __future__ import annotations

import ast
import dataclasses
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from test_audio_predict import ask_served, served_model

from tagtune.trainables.data import Dataset
from tagtune.trainables.inference import (
    AUDIO,
    EMBEDDINGS,
    SplitUnavailable,
    checkpoint_probabilities,
    class_names_of,
    is_single_label,
    kind_of,
    kind_of_data,
    to_probabilities,
    validation_split,
)

ROOT = Path(__file__).resolve().parents[1]
N_FRAMES, N_FEATURES, N_CLASSES = 2, 8, 4


def single_label_dataset(n: int = 96, seed: int = 0) -> Dataset:
    """uint8 clips ``[n, 2, 8]`` with exactly one of four classes each."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, N_CLASSES, n)
    y = np.eye(N_CLASSES, dtype=bool)[labels]
    x = rng.integers(0, 256, (n, N_FRAMES, N_FEATURES)).astype(np.uint8)
    ds = Dataset(
        x=x,
        y=y,
        lengths=np.full(n, N_FRAMES, np.int16),
        ids=np.array([f"clip{i}" for i in range(n)]),
        class_names=tuple(f"class {i}" for i in range(N_CLASSES)),
        source="test:single-label",
    )
    return dataclasses.replace(ds, task="multiclass")


# -- the rule and the kinds -------------------------------------------------------------------


def test_to_probabilities_is_softmax_for_single_label_and_sigmoid_otherwise():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.5]])
    single = to_probabilities(logits, single_label=True)
    assert torch.allclose(single.sum(dim=1), torch.ones(2))
    assert torch.equal(single, logits.softmax(dim=1))
    assert torch.equal(to_probabilities(logits, single_label=False), logits.sigmoid())


def test_a_checkpoints_meta_chooses_its_kind_its_outputs_and_its_names():
    meta = {"config": {"family": "fc1"}, "task": "singlelabel", "class_names": ["a", "b"], "n_classes": 2}
    assert kind_of(meta) is EMBEDDINGS and is_single_label(meta)
    assert kind_of({"config": {"family": "densenet_audio"}}) is AUDIO
    assert kind_of({"config": {"family": "fc1", "sample_rate": 8000}}) is AUDIO
    assert not is_single_label({**meta, "task": "multilabel"}) and not is_single_label({})
    assert class_names_of(meta) == ["a", "b"]
    assert class_names_of({"config": {"target_class": "b"}, "n_classes": 2}) == ["b"]
    assert class_names_of({"config": {}, "n_classes": 3}) == ["0", "1", "2"]
    assert kind_of_data(single_label_dataset()) is EMBEDDINGS
    assert kind_of_data(SimpleNamespace(kind="audio")) is AUDIO


def test_validation_split_is_the_searchs_split_or_refuses_saying_why():
    ds = single_label_dataset()
    train_idx, val_idx, _ = ds.splits(0.25, 3)
    params = {"val_fraction": "0.25", "seed": "3", "n_train": str(len(train_idx)), "n_val": str(len(val_idx))}
    split = validation_split(params, ds, "search run r1")
    assert split.kind == "embeddings" and np.array_equal(split.idx, np.sort(val_idx))
    assert np.array_equal(split.x, np.asarray(ds.x)[np.sort(val_idx)]) and split.y.dtype == bool
    assert len(split) == len(val_idx) and split.class_names == ds.class_names
    with pytest.raises(SplitUnavailable, match="search run r1 recorded no validation split"):
        validation_split({"seed": "3"}, ds, "search run r1")
    with pytest.raises(SplitUnavailable, match=r"but search run r1 into 1 and 2; pass the search's training data"):
        validation_split({**params, "n_train": "1", "n_val": "2"}, ds, "search run r1")


def test_the_softmax_or_sigmoid_rule_is_written_once():
    """Scoring code applies ``.softmax(`` / ``.sigmoid(`` only in ``to_probabilities`` (the
    models' own layers, the multi-head average and the gated CNN's gates are not scoring)."""
    allowed = {"trainables/metrics.py", "trainables/heads.py"}
    found = []
    for folder in ("tagtune", "tracking", "trainables", "dashboards"):
        for file in sorted((ROOT / folder).rglob("*.py")):
            rel = file.relative_to(ROOT).as_posix()
            if rel in allowed or rel.startswith("trainables/models/"):
                continue
            for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Attribute) and node.attr in ("softmax", "sigmoid", "log_softmax"):
                    found.append(f"{rel}:{node.lineno} .{node.attr}")
    assert found == []
    source = (ROOT / "trainables/metrics.py").read_text(encoding="utf-8")
    assert source.count(".softmax(") == 1 and source.count(".sigmoid(") == 1


# -- one single-label model, four references ----------------------------------------------------


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """A 1-epoch single-label fc1 checkpoint, logged on a run (as ``checkpoint``) and as a
    registered pyfunc model ``single-fc1``; with the clips to score and the softmax reference."""
    import mlflow

    from tagtune.tracking.serving import log_tagger
    from tagtune.trainables.checkpoint import load_model, model_meta, save_model
    from tagtune.trainables.loop import fit, predict

    root = tmp_path_factory.mktemp("inference")
    ds = single_label_dataset()
    data = ds.trial_data(val_fraction=0.25, seed=0)
    config = {"family": "fc1", "batch_size": 32}
    res = fit(config, data, max_epochs=1, device="cpu")
    ckpt = root / "ckpt"
    save_model(ckpt, res.best_state, model_meta(config, data, res.best))
    model, meta = load_model(ckpt)
    assert is_single_label(meta)
    x = np.asarray(ds.x[:16])
    reference = predict(model, torch.from_numpy(x), activation="none").softmax(dim=1).numpy()

    uri = f"sqlite:///{root / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("inference")
    with mlflow.start_run() as run:
        mlflow.log_artifacts(str(ckpt), "checkpoint")
    tagger = log_tagger(
        uri,
        run.info.run_id,
        [ckpt],
        class_names=ds.class_names,
        n_frames=N_FRAMES,
        n_features=N_FEATURES,
        registered_name="single-fc1",
    )
    assert tagger.registered_uri == "models:/single-fc1/1"
    return SimpleNamespace(
        root=root, uri=uri, ckpt=ckpt, run_id=run.info.run_id, x=x, reference=reference, model=model, meta=meta
    )


def test_checkpoint_probabilities_of_a_single_label_model_are_its_softmax(logged):
    got = checkpoint_probabilities(logged.model, logged.meta, logged.x)
    np.testing.assert_allclose(got, logged.reference, rtol=0, atol=1e-6)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)


def test_a_single_label_model_scores_the_same_from_every_reference(logged):
    from tagtune.predict import load_scorer

    refs = {
        "checkpoint folder": str(logged.ckpt),
        "runs:/ (its checkpoint)": f"runs:/{logged.run_id}",
        "runs:/ (its pyfunc model)": f"runs:/{logged.run_id}/model",
        "models:/": "models:/single-fc1/1",
    }
    for what, ref in refs.items():
        scorer = load_scorer(ref, logged.uri)
        assert not scorer.audio and scorer.class_names == [f"class {i}" for i in range(N_CLASSES)], what
        got = scorer.scores(logged.x)
        np.testing.assert_allclose(got, logged.reference, rtol=0, atol=1e-6, err_msg=what)
        np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5, err_msg=what)


@pytest.mark.slow
def test_the_served_single_label_model_answers_the_same_scores(logged):
    """``mlflow models serve`` of the registered model (its own process: slow)."""
    log = logged.root / "serve.log"
    with served_model("models:/single-fc1/1", logged.uri, log) as (port, server):
        answer = ask_served(port, {"inputs": logged.x.astype(float).tolist()}, time.time() + 180, server)
        assert answer is not None, log.read_text()[-2000:]
        got = np.array([[row[f"class {i}"] for i in range(N_CLASSES)] for row in answer["predictions"]])
        np.testing.assert_allclose(got, logged.reference, rtol=0, atol=1e-6)
