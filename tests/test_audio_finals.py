"""Seed 003's system after the search: finalize on raw audio (finals retrained on train +
validation, scored on the held-out test split, the weighted geometric-mean ensemble with weights
chosen on validation), the refusal without a test split, ``data inspect`` on audio, and the
dashboard's confusion matrix.

One module-scoped search: 2 trials of a tiny ``densenet_audio`` (front end log-mel or waveform)
on 30 generated FSDD-style clips (3 classes, 6 test clips), then one finalize.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml
from conftest import shrunk_spec, start_local_ray
from mlflow import MlflowClient
from test_audio import RATE, TINY_MODEL, make_fsdd_like, tone, write_wav

from tagtune.errors import InputError
from tagtune.finalize import AUDIO_ENSEMBLE_METHODS, FinalizeSpec, finalize
from tagtune.search import run_search
from tagtune.tracking import RunKind, Tag, child_runs
from tagtune.tracking.tables import CONFUSION_ARTIFACT, confusion_from_run, confusion_table
from tagtune.trainables.data import format_inspect, inspect

SPACES = Path(__file__).resolve().parents[1] / "search_spaces"


def tiny_spaces(root: Path) -> Path:
    """The default spaces with densenet_audio shrunk to TINY_MODEL; front end and lr searched."""
    out = root / "spaces"
    shutil.copytree(SPACES, out, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    fixed = {**TINY_MODEL, "sample_rate": RATE, "optimizer": "adam", "output_heads": 1, "lr_schedule": "none"}
    fixed.pop("family")
    params: dict = {k: {"value": v} for k, v in fixed.items()}
    params |= {"momentum": None, "front_end": {"choices": ["logmel", "waveform"]}, "lr": {"choices": [0.003, 0.01]}}
    (out / "densenet_audio.yaml").write_text(yaml.safe_dump({"params": params}))
    return out


@pytest.fixture(scope="module")
def audio_fin(tmp_path_factory):
    import ray

    root = tmp_path_factory.mktemp("audio_finals")
    mp = pytest.MonkeyPatch()
    mp.setenv("TAGTUNE_CACHE_DIR", str(root / "cache"))
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)
    data = make_fsdd_like(root / "fsdd", per_class=10)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    started = not ray.is_initialized()
    start_local_ray()
    lines: list[str] = []
    try:
        spec = shrunk_spec(
            root,
            data,
            families=["densenet_audio"],
            trials_per_family=2,
            max_epochs=2,
            experiment="afin",
            tracking_uri=uri,
            spaces_dir=str(tiny_spaces(root)),
            defaults_first=False,
        )
        search = run_search(spec, echo=lambda line: None)
        outcome = finalize(
            FinalizeSpec(experiment="afin", train=str(data), tracking_uri=uri, top_k=2),
            echo=lines.append,
        )
        yield SimpleNamespace(root=root, data=data, uri=uri, search=search, outcome=outcome, lines=lines)
    finally:
        if started:
            ray.shutdown()
        mp.undo()


@pytest.mark.slow
def test_audio_finals_are_scored_on_the_test_split_with_accuracy_and_map3(audio_fin):
    client = MlflowClient(audio_fin.uri)
    finals = audio_fin.outcome.finals
    final = finals[(finals["kind"] == "final") & (finals["rank"] == 1)].iloc[0]
    for key in ("eval_accuracy", "eval_map3", "eval_mAP", "eval_mAUC"):
        assert 0.0 <= final[key] <= 1.0, key
    assert final["eval_map3"] >= final["eval_accuracy"]
    run = client.get_run(str(final["run_id"]))
    assert run.data.params["n_eval"] == "6"  # the CSV's test rows: clips 0 and 1 of each class
    assert run.data.params["n_train"] == "24"  # the search's train + validation clips
    assert "test split of" in run.data.params["eval"]
    group = client.get_run(run.data.tags[Tag.PARENT])  # the finalize's own run, under the search
    assert group.data.tags[Tag.PARENT] == audio_fin.outcome.parent_run_id
    # the confusion matrix of the test split, with class names, adds up to the 6 test clips
    table = confusion_from_run(client, str(final["run_id"]))
    assert table is not None and int(table["count"].sum()) == 6
    assert set(table["true"]) == {"0", "1", "2"}
    correct = int(table[table["true"] == table["predicted"]]["count"].sum())
    assert correct / 6 == pytest.approx(final["eval_accuracy"])
    assert any("eval_accuracy" in line and "eval_map3" in line for line in audio_fin.lines)
    # registered with tagtune.tracking.serving.log_tagger, as embedding finals are
    assert final["model_uri"] == "models:/afin-densenet_audio/1"


@pytest.mark.slow
def test_the_audio_ensemble_is_seed_003s_geomean_with_weights_from_validation(audio_fin):
    client = MlflowClient(audio_fin.uri)
    runs = child_runs(
        client, client.get_run(audio_fin.outcome.parent_run_id).info.experiment_id, audio_fin.outcome.parent_run_id
    )
    ensembles = [r for r in runs if r.data.tags.get(Tag.KIND) == RunKind.ENSEMBLE.value]
    assert [r.data.tags[Tag.ENSEMBLE_METHOD] for r in ensembles] == list(AUDIO_ENSEMBLE_METHODS) == ["geomean"]
    ens = ensembles[0]
    assert "validation split" in ens.data.params["weights_from"]
    weights = [float(w) for w in ens.data.params["member_weights"].split(",")]
    assert sum(weights) == pytest.approx(1.0, abs=1e-3) and all(w > 0 for w in weights)  # a weak trial gets 0
    assert 0.0 <= ens.data.metrics["eval_accuracy"] <= 1.0 and "val_mAP" in ens.data.metrics
    assert ens.data.tags[Tag.MODEL_URI] == "models:/afin-ensemble-geomean/1"
    # the members are finals of this finalize, each scored on the same test clips
    finals = audio_fin.outcome.finals
    members = ens.data.params["member_runs"].split(",")
    assert set(members) <= set(finals[finals["kind"] == "final"]["run_id"])


@pytest.mark.slow
def test_the_audio_dashboard_has_the_confusion_matrix_with_class_names(audio_fin, tmp_path):
    from tagtune.commands import report

    out = tmp_path / "report.html"
    markdown, _ = report("afin", audio_fin.uri, audio_fin.outcome.parent_run_id, html=str(out))
    assert "eval_accuracy" in markdown and "eval_map3" in markdown
    page = out.read_text()
    assert "Confusion matrix of the best final on the test split" in page
    assert "predicted class" in page


# -- without a search ------------------------------------------------------------------------------


def test_finalize_refuses_audio_without_a_test_split(tmp_path, monkeypatch):
    monkeypatch.setenv("TAGTUNE_CACHE_DIR", str(tmp_path / "cache"))
    data = make_fsdd_like(tmp_path / "fsdd", per_class=3)
    csv = data / "fsdd_meta.csv"
    csv.write_text(csv.read_text().replace(",test,", ",train,"))
    spec = FinalizeSpec(experiment="none", train=str(data), tracking_uri=f"sqlite:///{tmp_path / 'm.db'}")
    with pytest.raises(InputError) as info:
        finalize(spec, echo=lambda line: None)
    text = str(info.value)
    assert "\n" not in text and "fsdd_meta.csv marks no clip as test" in text and "--eval" in text
    # through the CLI: exit 2, one line naming the flag (the store is never opened)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tagtune",
            "finalize",
            "--experiment",
            "none",
            "--train",
            str(data),
            "--eval",
            str(data),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TAGTUNE_CACHE_DIR": str(tmp_path / "cache")},
    )
    assert done.returncode == 2, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("tagtune: error: ") and "--eval" in last and "Traceback" not in done.stderr
    assert not (tmp_path / "mlflow.db").exists()


def test_finalize_refuses_embeddings_as_the_test_set_of_audio(tmp_path, monkeypatch, tiny_train):
    monkeypatch.setenv("TAGTUNE_CACHE_DIR", str(tmp_path / "cache"))
    data = make_fsdd_like(tmp_path / "fsdd", per_class=3)
    spec = FinalizeSpec(experiment="none", train=str(data), eval=str(tiny_train))
    with pytest.raises(InputError) as info:
        finalize(spec, echo=lambda line: None)
    assert "holds embeddings" in str(info.value) and "--eval" in str(info.value)


def test_data_inspect_on_audio_lists_rates_durations_classes_split_and_unreadable_files(tmp_path, monkeypatch):
    monkeypatch.setenv("TAGTUNE_CACHE_DIR", str(tmp_path / "cache"))
    data = make_fsdd_like(tmp_path / "fsdd", per_class=4)
    write_wav(data / "recordings" / "extra.wav", tone(440, 4000, rate=16000), rate=16000)
    (data / "recordings" / "broken.wav").write_bytes(b"RIFF\x00\x00not a wave file")
    csv = data / "fsdd_meta.csv"
    csv.write_text(csv.read_text() + "extra.wav,1,spk,9,train,4000,16000\nbroken.wav,2,spk,10,train,0,8000\n")
    d = inspect(data)
    assert d["format"] == "audio" and d["files"] == 14 and d["classes"] == 3
    assert d["sample_rates"] == {8000: 12, 16000: 1}
    assert d["clips_per_class"] == {"0": 4, "1": 5, "2": 5}
    assert d["split"]["test"] == 6 and d["split"]["train"] + d["split"]["validation"] == 8
    dur = d["duration_s"]
    assert 0.075 <= dur["min"] < dur["median"] < dur["max"] <= 0.375
    assert [Path(u["file"]).name for u in d["unreadable"]] == ["broken.wav"]
    assert d["verified"] is None
    text = format_inspect(d)
    needles = (
        "sample rates:      8000 Hz (12), 16000 Hz (1)",
        "duration (s):      min",
        "median",
        "clips per class:   0: 4, 1: 5, 2: 5",
        "classes:           3 (single-label)",
        "6 test",
        "unreadable files:  1",
        "broken.wav",
        "no verified column",
    )
    for needle in needles:
        assert needle in text, (needle, text)
    done = subprocess.run(
        [sys.executable, "-m", "tagtune", "data", "inspect", str(data)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0 and "unreadable files:  1" in done.stdout, done.stderr


def test_audio_ensemble_weights_are_chosen_on_validation_and_rows_are_distributions():
    from tagtune.finalize import FinalsData
    from tagtune.trainables.ensemble import greedy_weights
    from tagtune.trainables.inference import AUDIO

    # two members that each know one half of the classes: greedy selection keeps both
    y = np.eye(4, dtype=bool)[[0, 1, 2, 3, 0, 1, 2, 3]]
    good_low = np.where(y & (np.arange(4) < 2), 0.7, 0.1)
    good_high = np.where(y & (np.arange(4) >= 2), 0.7, 0.1)
    noise = np.full((8, 4), 0.25)
    weights, val_map = greedy_weights([good_low, good_high, noise], y, "geomean")
    assert weights[0] > 0 and weights[1] > 0 and weights[2] == 0 and val_map == pytest.approx(1.0)
    fd = FinalsData(
        kind=AUDIO,
        data=SimpleNamespace(single_label=True, class_names=("a", "b", "c", "d")),
        test=None,
        searched=None,
        test_from="",
    )
    mixed = fd.combine([good_low, good_high], weights[:2], "geomean")
    assert np.allclose(mixed.sum(axis=1), 1.0, atol=1e-5)  # seed 003: normalized per clip
    assert (mixed.argmax(axis=1) == y.argmax(axis=1)).all()
    assert fd.methods == AUDIO_ENSEMBLE_METHODS


def test_confusion_table_lists_every_pair_with_class_names():
    table = confusion_table(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 1]), ("zero", "one", "two"))
    assert len(table) == 9 and int(table["count"].sum()) == 4
    row = table[(table["true"] == "two") & (table["predicted"] == "one")]
    assert int(row["count"].iloc[0]) == 1
    assert CONFUSION_ARTIFACT == "eval/confusion.csv"
