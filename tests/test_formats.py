"""Every embedding format tagtune reads, on generated data: each format x dtype x label kind, the
read options (--feature-key, --label-key, --group-key, --task), the cache round trip of float
features, groups, split and task, and each bad input (one InputError naming the file / clip)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from tagtune.errors import InputError
from tagtune.trainables.data import Dataset, ReadOptions, load_dataset, open_source, read_cache, write_cache
from tagtune.trainables.data._tfexample import encode_example, write_examples
from tagtune.trainables.data._writers import FORMATS, make_embeddings, write_format

# the path to pass to --train below each format's output folder
ENTRY = {"npz": "embeddings.npz", "npy-csv": "embeddings.npy", "hdf5": "embeddings.h5"}


def _raises(*fragments: str):
    pattern = "".join(f"(?=.*{re.escape(f)})" for f in fragments)
    return pytest.raises(InputError, match=f"^{pattern}")


def _write(tmp_path: Path, fmt: str, ds: Dataset) -> Path:
    out = tmp_path / fmt
    write_format(out, ds, fmt)
    return out / ENTRY[fmt] if fmt in ENTRY else out


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    ("dtype", "frames", "task"),
    [
        ("float32", 1, "multiclass"),
        ("uint8", 3, "multilabel"),
        ("float16", 1, "multilabel"),
        ("float64", 2, "multiclass"),
    ],
)
def test_each_format_reads_back_what_was_written(tmp_path: Path, fmt: str, dtype: str, frames: int, task: str) -> None:
    if fmt == "tfrecord-example" and dtype != "uint8" and frames != 1:
        pytest.skip("an Example holds one float embedding per clip")
    ds = make_embeddings(60, 4, seed=1, frames=frames, dim=6, dtype=dtype, task=task)
    path = _write(tmp_path, fmt, ds)
    source = open_source(path, cache_dir=tmp_path / "cache")
    assert source.format == ("tfrecord" if fmt.startswith("tfrecord") else fmt)
    got = source.embeddings()
    assert got.x.shape == (60, frames, 6) and source.shape == (frames, 6, 4)
    # TFRecord float lists are float32 on disk; every other format keeps the dtype as written
    want = np.float32 if fmt.startswith("tfrecord") and dtype != "uint8" else np.dtype(dtype)
    assert got.x.dtype == want
    # HEAR lists the files split by split (ids "<split>/<file>")
    order = np.argsort([i.split("/")[-1] for i in got.ids]) if fmt == "hear" else np.arange(60)
    np.testing.assert_allclose(np.asarray(got.x, np.float64)[order], np.asarray(ds.x.astype(want), np.float64))
    names = np.asarray(got.class_names)
    want_labels = [set(np.asarray(ds.class_names)[r]) for r in ds.y]
    got_labels = [set(names[r]) for r in np.asarray(got.y)[order]]
    assert got_labels == want_labels
    assert got.task == task and got.single_label == (task == "multiclass")
    if fmt == "hear":
        assert set(np.unique(got.split)) == {"train", "valid", "test"}
        train, val, test = got.splits()
        assert len(train) + len(val) + len(test) == 60 and len(test) == 9
    else:
        assert got.groups is not None and len(np.unique(got.groups)) == 15
    again = open_source(path, cache_dir=tmp_path / "cache").embeddings()  # from the cache
    assert again.source.startswith("cache:") and again.task == got.task and again.x.dtype == got.x.dtype
    np.testing.assert_array_equal(np.asarray(again.y), np.asarray(got.y))


def test_cache_keeps_float_groups_split_and_task(tmp_path: Path) -> None:
    ds = make_embeddings(30, 3, frames=2, dim=5, dtype="float64", task="multiclass")
    ds = Dataset(
        ds.x, ds.y, ds.lengths, ds.ids, ds.class_names, ds.source, ds.groups, np.array(["train"] * 30), "multiclass"
    )
    back = read_cache(write_cache(ds, tmp_path / "c"))
    assert back.x.dtype == np.float64 and back.task == "multiclass"
    np.testing.assert_array_equal(back.x, ds.x)
    np.testing.assert_array_equal(back.groups, ds.groups)
    np.testing.assert_array_equal(back.split, ds.split)


def test_variable_length_clips_are_padded_with_lengths(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    sizes = [3, 1, 5]
    payloads = [
        encode_example(f"c{i}", [i % 2], rng.normal(size=(t, 4)).astype(np.float32), sequence=True)
        for i, t in enumerate(sizes)
    ]
    write_examples(tmp_path / "seq", payloads)
    ds = load_dataset(tmp_path / "seq", cache_dir=tmp_path / "cache")
    assert ds.x.shape == (3, 5, 4) and ds.lengths.tolist() == sizes
    assert not ds.x[1, 1:].any() and ds.x.dtype == np.float32


def test_npz_label_kinds(tmp_path: Path) -> None:
    x = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
    cases = {
        "multihot": (np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]], bool), "multilabel"),
        "lists": (np.array([[0, 2], [1, -1], [0, 1], [2, -1]]), "multilabel"),
        "indices": (np.array([0, 1, 2, 1]), "multiclass"),
        "names": (np.array(["dog", "cat", "dog", "bird"]), "multiclass"),
        "namelists": (np.array([["dog", "cat"], ["cat", ""], ["bird", ""], ["dog", ""]]), "multilabel"),
    }
    for name, (y, task) in cases.items():
        path = tmp_path / f"{name}.npz"
        np.savez(path, x=x, y=y)
        ds = load_dataset(path, cache_dir=tmp_path / "cache")
        assert ds.task == task and ds.x.shape == (4, 1, 3), name
    ds = load_dataset(tmp_path / "names.npz", cache_dir=tmp_path / "cache")
    assert ds.class_names == ("bird", "cat", "dog") and ds.y[1].tolist() == [False, True, False]


def test_vocabulary_csv_names_the_classes(tmp_path: Path) -> None:
    np.savez(tmp_path / "set.npz", x=np.ones((2, 3), np.float32), y=np.array(["b", "a"]))
    (tmp_path / "labelvocabulary.csv").write_text("idx,label\n0,a\n1,b\n2,c\n")
    ds = load_dataset(tmp_path / "set.npz", cache_dir=tmp_path / "cache")
    assert ds.class_names == ("a", "b", "c") and ds.y.tolist() == [[False, True, False], [True, False, False]]


def test_read_options_pick_other_keys_and_the_task(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    y = np.zeros((6, 3), bool)
    y[np.arange(6), [0, 1, 2, 0, 1, 2]] = True
    np.savez(tmp_path / "k.npz", emb=rng.normal(size=(6, 4)), target=y, speaker=np.array(list("aabbcc")))
    opts = ReadOptions(feature_key="emb", label_key="target", group_key="speaker", task="multiclass")
    source = open_source(tmp_path / "k.npz", cache_dir=tmp_path / "cache", options=opts)
    ds = source.embeddings()
    assert ds.task == "multiclass" and ds.groups.tolist() == list("aabbcc")
    plain = open_source(
        tmp_path / "k.npz", cache_dir=tmp_path / "cache", options=ReadOptions(feature_key="emb", label_key="target")
    )
    assert plain.cache_entry != source.cache_entry  # the options are part of the cache key
    y[0, 1] = True
    np.savez(tmp_path / "two.npz", x=rng.normal(size=(6, 4)), y=y, ids=np.array([f"id{i}" for i in range(6)]))
    with _raises("--task multiclass", "clip 0 (id0)", "2 labels"):
        open_source(tmp_path / "two.npz", cache_dir=tmp_path / "cache", options=ReadOptions(task="multiclass")).read()


def test_tfrecord_example_with_other_keys(tmp_path: Path) -> None:
    frames = np.arange(8, dtype=np.float32).reshape(1, 8)
    payloads = [
        encode_example(f"c{i}", ["dog"], frames + i, sequence=False, feature_key="clap", label_key="tags")
        for i in range(3)
    ]
    write_examples(tmp_path / "ex", payloads)
    with _raises("has no feature", "clap", "id", "tags", "--feature-key"):
        load_dataset(tmp_path / "ex", cache_dir=tmp_path / "cache")
    ds = load_dataset(
        tmp_path / "ex", cache_dir=tmp_path / "cache", options=ReadOptions(feature_key="clap", label_key="tags")
    )
    assert ds.x.shape == (3, 1, 8) and ds.class_names == ("dog",) and ds.ids.tolist() == ["c0", "c1", "c2"]
    with _raises("has no label", "'nope'", "clap, id, tags"):
        load_dataset(
            tmp_path / "ex", cache_dir=tmp_path / "c2", options=ReadOptions(feature_key="clap", label_key="nope")
        )


def test_predict_reads_new_data_with_the_keys_the_model_was_trained_with(tmp_path: Path, monkeypatch) -> None:
    from conftest import log_checkpoint

    from tagtune.predict import predictions
    from tagtune.trainables.checkpoint import model_meta, save_model
    from tagtune.trainables.loop import fit

    monkeypatch.setenv("TAGTUNE_CACHE_DIR", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    labels = [["dog"] if i % 2 else ["cat"] for i in range(40)]
    payloads = [
        encode_example(
            f"c{i}",
            lab,
            rng.normal(3.0 * (i % 2), 1, (1, 8)).astype(np.float32),
            sequence=False,
            feature_key="clap",
            label_key="tags",
        )
        for i, lab in enumerate(labels)
    ]
    write_examples(tmp_path / "ex", payloads)
    keys = ReadOptions(feature_key="clap", label_key="tags")
    ds = open_source(tmp_path / "ex", options=keys).read()
    assert ds.read_keys == {"feature_key": "clap", "label_key": "tags"}
    data = ds.trial_data(val_fraction=0.25)
    res = fit({"family": "fc1"}, data, max_epochs=2, device="cpu")
    ckpt = tmp_path / "ckpt"
    save_model(ckpt, res.best_state, model_meta({"family": "fc1"}, data, res.best))
    # No --feature-key / --label-key: the checkpoint's recorded keys read the folder.
    out = list(predictions(str(ckpt), str(tmp_path / "ex"), k=1))
    assert len(out) == 40 and out[0]["id"] == "c0"
    with _raises("has no feature", "'emb'", "clap"):  # a flag overrides what was recorded
        list(predictions(str(ckpt), str(tmp_path / "ex"), k=1, feature_key="emb"))
    uri, logged = log_checkpoint(tmp_path, ckpt, ds.class_names, n_frames=1, n_features=8)
    via_model = list(predictions(logged.run_uri, str(tmp_path / "ex"), k=1, tracking_uri=uri))
    assert [o["labels"][0]["name"] for o in via_model] == [o["labels"][0]["name"] for o in out]


# ------------------------------------------------------------------------------------------
# Bad input: one line naming the file / clip and the fix
# ------------------------------------------------------------------------------------------


def test_nan_in_float_features_names_the_clip(tmp_path: Path) -> None:
    x = np.ones((3, 2, 4), np.float32)
    x[1, 1, 2] = np.nan
    np.savez(tmp_path / "nan.npz", x=x, y=np.array([0, 1, 0]), ids=np.array(["a", "b", "c"]))
    with _raises("clip b", "NaN", "nan.npz"):
        load_dataset(tmp_path / "nan.npz", cache_dir=tmp_path / "cache")
    x[1, 1, 2] = np.inf
    h5 = tmp_path / "inf.h5"
    with h5py.File(h5, "w") as fh:
        fh["x"], fh["y"] = x, np.eye(3, dtype=bool)
    with _raises("row 1", "inf", "inf.h5"):
        load_dataset(h5, cache_dir=tmp_path / "cache")


def test_shapes_that_differ_without_lengths(tmp_path: Path) -> None:
    payloads = [
        encode_example("a", [0], np.ones((2, 4), np.float32), sequence=True),
        encode_example("b", [1], np.ones((2, 5), np.float32), sequence=True),
    ]
    write_examples(tmp_path / "w", payloads)
    with _raises("clip b", "5 features per frame", "clip 0 has 4"):
        load_dataset(tmp_path / "w", cache_dir=tmp_path / "cache")


def test_labels_out_of_the_vocabulary(tmp_path: Path) -> None:
    np.savez(tmp_path / "set.npz", x=np.ones((2, 3), np.float32), y=np.array(["a", "zebra"]), ids=np.array(["p", "q"]))
    (tmp_path / "labelvocabulary.csv").write_text("idx,label\n0,a\n1,b\n")
    with _raises("clip q", "'zebra'", "not in the vocabulary"):
        load_dataset(tmp_path / "set.npz", cache_dir=tmp_path / "cache")
    np.savez(tmp_path / "idx.npz", x=np.ones((2, 3), np.float32), y=np.array([[0, 1], [0, 7]]))
    with _raises("clip 1", "label index 7", "0..1"):
        load_dataset(tmp_path / "idx.npz", cache_dir=tmp_path / "cache")


def test_hear_folder_missing_a_split(tmp_path: Path) -> None:
    ds = make_embeddings(40, 3, dim=4)
    folder = _write(tmp_path, "hear", ds)
    for f in (folder / "valid").iterdir():
        f.unlink()
    (folder / "valid").rmdir()
    with _raises("has no valid/ split", str(folder)):
        load_dataset(folder, cache_dir=tmp_path / "cache")


def test_hear_folds(tmp_path: Path) -> None:
    folder = tmp_path / "folds"
    for k in range(4):
        (folder / f"fold{k:02d}").mkdir(parents=True)
        for i in range(3):
            np.save(folder / f"fold{k:02d}" / f"f{k}{i}.wav.embedding.npy", np.full(5, k + i, np.float32))
            (folder / f"fold{k:02d}" / f"f{k}{i}.wav.target-labels.json").write_text(json.dumps([str(i % 2)]))
    meta = {"embedding_type": "scene", "prediction_type": "multiclass", "split_mode": "new_split_kfold", "nfolds": 4}
    (folder / "task_metadata.json").write_text(json.dumps(meta))
    (folder / "labelvocabulary.csv").write_text("idx,label\n0,0\n1,1\n")
    ds = load_dataset(folder, cache_dir=tmp_path / "cache")
    assert ds.task == "multiclass" and ds.class_names == ("0", "1")
    train, val, test = ds.splits()
    assert [ds.ids[i].split("/")[0] for i in test] == ["fold03"] * 3
    assert {ds.ids[i].split("/")[0] for i in val} == {"fold02"} and len(train) == 6


def test_npz_without_y_lists_its_arrays(tmp_path: Path) -> None:
    np.savez(tmp_path / "noy.npz", x=np.ones((2, 3)), labels=np.array([0, 1]))
    with _raises("noy.npz", "no 'y' array", "it has: x, labels", "--label-key"):
        load_dataset(tmp_path / "noy.npz", cache_dir=tmp_path / "cache")
    with pytest.raises(InputError, match=r"^\S+noy.npz has no 'emb' array"):  # not wrapped in another message
        load_dataset(tmp_path / "noy.npz", cache_dir=tmp_path / "cache", options=ReadOptions(feature_key="emb"))


def test_cli_bad_input_is_one_line_exit_2(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TAGTUNE_CACHE_DIR", str(tmp_path / "cache"))
    np.savez(tmp_path / "noy.npz", x=np.ones((2, 3)))
    proc = subprocess.run(
        [sys.executable, "-m", "tagtune.cli", "data", "inspect", str(tmp_path / "noy.npz")],
        capture_output=True,
        text=True,
        env={"TAGTUNE_CACHE_DIR": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "no 'y' array" in proc.stderr
    np.savez(tmp_path / "two.npz", x=np.ones((2, 3)), y=np.array([[1, 1, 0], [0, 1, 0]], bool))
    from tagtune.cli import main

    assert main(["data", "inspect", str(tmp_path / "two.npz"), "--task", "multiclass"]) == 2


def test_synth_and_inspect_from_the_cli(tmp_path: Path) -> None:
    from tagtune.cli import main

    out = tmp_path / "h"
    assert (
        main(
            [
                "data",
                "synth",
                str(out),
                "--format",
                "hear",
                "--dtype",
                "float32",
                "--frames",
                "1",
                "--dim",
                "8",
                "--n-clips",
                "50",
                "--n-classes",
                "3",
                "--task",
                "multiclass",
            ]
        )
        == 0
    )
    from tagtune.trainables.data import format_inspect, inspect

    text = format_inspect(inspect(out, cache_dir=tmp_path / "cache"))
    assert "1 frames x 8 features (float32)" in text and "0 NaN" in text
    assert "single-label" in text and "the data set's own" in text
