"""Tests of trainables.data: real AudioSet shards, writer/reader, HDF5, cache, synth, errors."""

from __future__ import annotations

import csv
import re
import shutil
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import AUDIOSET, require_shared

from tagtune.errors import InputError
from tagtune.trainables.data import (
    Dataset,
    format_inspect,
    inspect,
    lengths_from_padding,
    load_dataset,
    make_synthetic,
    read_cache,
    read_class_names,
    split_indices,
    synthesize,
    write_cache,
    write_tfrecords,
)
from tagtune.trainables.data._synth import write_class_csv
from tagtune.trainables.data._tfrecord import (
    encode_sequence_example,
    parse_sequence_example,
    read_records,
    write_record_file,
)

N_REAL_SHARDS = 12


def _assert_same(a: Dataset, b: Dataset) -> None:
    """Two datasets hold the same clips, labels and names."""
    np.testing.assert_array_equal(np.asarray(a.x), np.asarray(b.x))
    np.testing.assert_array_equal(np.asarray(a.y), np.asarray(b.y))
    np.testing.assert_array_equal(np.asarray(a.lengths), np.asarray(b.lengths))
    np.testing.assert_array_equal(np.asarray(a.ids), np.asarray(b.ids))
    assert a.class_names == b.class_names


def _raises_naming(path: Path | str, *fragments: str):
    """``pytest.raises(InputError)`` whose message names ``path`` and contains ``fragments``."""
    pattern = "".join(f"(?=.*{re.escape(f)})" for f in (*fragments, str(path)))
    return pytest.raises(InputError, match=f"^{pattern}")


@pytest.fixture
def real_shards(tmp_path: Path) -> Path:
    """A few real bal_train shards (and the class list one folder up) copied into tmp_path."""
    src = require_shared(AUDIOSET / "bal_train")
    dst = tmp_path / "audioset" / "bal_train"
    dst.mkdir(parents=True)
    for shard in sorted(src.glob("*.tfrecord"))[:N_REAL_SHARDS]:
        shutil.copy(shard, dst / shard.name)
    shutil.copy(AUDIOSET / "class_labels_indices.csv", dst.parent / "class_labels_indices.csv")
    return dst


@pytest.fixture
def small() -> Dataset:
    """A small synthetic set (250 clips, 12 classes)."""
    return make_synthetic(n_clips=250, n_classes=12, seed=1)


def _write_set(folder: Path, ds: Dataset, shard_size: int = 100) -> list[Path]:
    """Write ``ds`` as shards plus its class list into ``folder``."""
    paths = write_tfrecords(folder, ds.x, ds.y, ds.lengths, ds.ids, shard_size=shard_size)
    write_class_csv(folder / "class_labels_indices.csv", ds.class_names)
    return paths


# --------------------------------------------------------------------------------------------
# Real shards
# --------------------------------------------------------------------------------------------


def _segment_labels(mid_to_index: dict[str, int]) -> dict[str, set[int]]:
    """Labels per clip from the official balanced_train_segments.csv (an independent source)."""
    out: dict[str, set[int]] = {}
    with open(AUDIOSET / "balanced_train_segments.csv", encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("#"):
                continue
            ytid, _, _, mids = line.split(", ", 3)
            out[ytid] = {mid_to_index[m] for m in mids.strip().strip('"').split(",")}
    return out


def test_real_shards_match_official_segment_list(real_shards: Path, tmp_path: Path) -> None:
    ds = load_dataset(real_shards, cache_dir=tmp_path / "cache")
    assert ds.source == f"tfrecord:{real_shards.resolve()}"
    assert ds.n_classes == 527 and ds.class_names[0] == "Speech"
    assert (ds.n_frames, ds.n_features) == (10, 128)
    assert ds.x.dtype == np.uint8 and ds.y.dtype == bool and ds.lengths.dtype == np.int16
    assert ds.n_clips > 3 * N_REAL_SHARDS
    assert ds.lengths.min() >= 1 and ds.lengths.max() == 10
    with open(AUDIOSET / "class_labels_indices.csv", encoding="utf-8") as fh:
        mids = {row["mid"]: int(row["index"]) for row in csv.DictReader(fh)}
    official = _segment_labels(mids)
    for i, vid in enumerate(ds.ids):
        assert set(np.flatnonzero(ds.y[i]).tolist()) == official[str(vid)]
    # Google names each shard by the first two characters of its clips' ids.
    names = {p.stem for p in real_shards.glob("*.tfrecord")}
    assert {str(v)[:2] for v in ds.ids} <= names


def test_real_padding_is_zero_and_frames_are_not(real_shards: Path, tmp_path: Path) -> None:
    ds = load_dataset(real_shards, cache_dir=tmp_path / "cache")
    for i in range(ds.n_clips):
        assert not ds.x[i, ds.lengths[i] :].any()
    np.testing.assert_array_equal(lengths_from_padding(np.asarray(ds.x)), ds.lengths)


def test_writer_reencodes_real_records_byte_for_byte(real_shards: Path) -> None:
    same = 0
    for shard in sorted(real_shards.glob("*.tfrecord")):
        for payload in read_records(shard):
            clip = parse_sequence_example(payload)
            again = encode_sequence_example(
                clip.video_id, clip.labels, clip.frames, clip.start_seconds, clip.end_seconds
            )
            assert parse_sequence_example(again) == clip
            assert sorted(again) == sorted(payload)  # same bytes up to map-entry order
            same += again == payload
    assert same > 0  # records whose map order matches the writer's are identical


@pytest.mark.slow
def test_full_bal_train_and_cache(tmp_path: Path) -> None:
    src = require_shared(AUDIOSET / "bal_train")
    start = time.perf_counter()
    ds = load_dataset(src, cache_dir=tmp_path)
    parse_s = time.perf_counter() - start
    assert ds.n_clips == 22_160 and ds.n_classes == 527
    assert int((ds.lengths == 10).sum()) == 21_782
    assert ds.y.sum(axis=0).min() >= 59
    assert parse_s < 30, f"parsing bal_train took {parse_s:.1f} s"
    again = load_dataset(src, cache_dir=tmp_path)
    assert again.source.startswith("cache:") and isinstance(again.x, np.memmap)
    _assert_same(ds, again)


# --------------------------------------------------------------------------------------------
# Writer/reader, HDF5, cache
# --------------------------------------------------------------------------------------------


def test_tfrecord_roundtrip(tmp_path: Path, small: Dataset) -> None:
    paths = _write_set(tmp_path / "set", small, shard_size=100)
    assert len(paths) == 3
    ds = load_dataset(tmp_path / "set", cache_dir=tmp_path / "cache")
    _assert_same(ds, small)
    assert ds.source.startswith("tfrecord:")


def test_single_shard_file_and_unpacked_numbers(tmp_path: Path) -> None:
    frames = [bytes(range(128)), bytes([7] * 128)]
    good = encode_sequence_example("abc", [5, 2], frames)
    # Re-encode the labels unpacked (one varint field per value) by hand.
    packed = b"\x1a\x04\x0a\x02\x05\x02"
    unpacked = b"\x1a\x04\x08\x05\x08\x02"
    assert packed in good
    shard = write_record_file(tmp_path / "one.tfrecord", [good.replace(packed, unpacked)])
    ds = load_dataset(shard, cache_dir=tmp_path / "cache", n_classes=8)
    assert ds.ids.tolist() == ["abc"] and ds.lengths.tolist() == [2]
    assert np.flatnonzero(ds.y[0]).tolist() == [2, 5] and ds.n_classes == 8
    assert ds.x[0, 1].tolist() == [7] * 128 and not ds.x[0, 2:].any()


def test_no_class_list_gives_generic_names(tmp_path: Path, small: Dataset) -> None:
    folder = tmp_path / "nocsv"
    write_tfrecords(folder, small.x, small.y, small.lengths, small.ids)
    ds = load_dataset(folder, cache_dir=tmp_path / "c1")
    assert ds.n_classes == 527 and ds.class_names[:2] == ("class_0", "class_1")  # AudioSet-shaped
    ds = load_dataset(folder, cache_dir=tmp_path / "c2", n_classes=12)
    assert ds.class_names == tuple(f"class_{i}" for i in range(12))
    np.testing.assert_array_equal(ds.y, small.y)


def test_hdf5_roundtrip(tmp_path: Path) -> None:
    path = synthesize(tmp_path / "syn.h5", n_clips=300, n_classes=10, seed=2, fmt="hdf5")
    ds = load_dataset(path, cache_dir=tmp_path / "cache")
    _assert_same(ds, make_synthetic(300, 10, 2))
    assert ds.source == f"hdf5:{path.resolve()}"


def test_hdf5_researcher_layout(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(1, 256, size=(5, 10, 128), dtype=np.uint8)
    x[1, 7:] = 0
    x[2, 1:] = 0
    x[3] = 0  # all-zero clip: length 1
    y = np.zeros((5, 527), dtype=bool)
    y[:, 3] = True
    path = tmp_path / "packed.hdf5"
    with h5py.File(path, "w") as fh:
        fh["x"], fh["y"] = x, y
        fh.create_dataset("video_id_list", data=np.array([b"a", b"b", b"c", b"d", b"e"]))
    ds = load_dataset(path, cache_dir=tmp_path / "cache")
    assert ds.lengths.tolist() == [10, 7, 1, 1, 10]
    assert ds.ids.tolist() == ["a", "b", "c", "d", "e"] and ds.n_classes == 527


def test_cache_roundtrip_is_memory_mapped(tmp_path: Path, small: Dataset) -> None:
    folder = write_cache(small, tmp_path / "c")
    back = read_cache(folder)
    _assert_same(back, small)
    for array in (back.x, back.y, back.lengths, back.ids):
        assert isinstance(array, np.memmap) and not array.flags.writeable
    assert back.source.startswith("cache:") and small.source in back.source
    _assert_same(load_dataset(folder), small)  # a cache folder is a data source too
    with _raises_naming(folder, "already exists"):
        write_cache(small, folder)


def test_load_uses_cache_and_notices_changes(tmp_path: Path, small: Dataset) -> None:
    paths = _write_set(tmp_path / "set", small)
    first = load_dataset(tmp_path / "set", cache_dir=tmp_path / "cache")
    assert first.source.startswith("tfrecord:")
    second = load_dataset(tmp_path / "set", cache_dir=tmp_path / "cache")
    assert second.source.startswith("cache:") and isinstance(second.x, np.memmap)
    _assert_same(first, second)
    paths[-1].unlink()  # the files changed: parse again
    third = load_dataset(tmp_path / "set", cache_dir=tmp_path / "cache")
    assert third.source.startswith("tfrecord:") and third.n_clips == 200


def test_cache_dir_from_environment(tmp_path: Path, small: Dataset, monkeypatch) -> None:
    _write_set(tmp_path / "set", small)
    monkeypatch.setenv("TAGTUNE_CACHE_DIR", str(tmp_path / "envcache"))
    load_dataset(tmp_path / "set")
    assert len(list((tmp_path / "envcache").glob("*/tagtune-cache.json"))) == 1


def test_unwritable_cache_dir_warns_and_loads(tmp_path: Path, small: Dataset) -> None:
    _write_set(tmp_path / "set", small)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    with pytest.warns(UserWarning, match="cannot write the dataset cache"):
        ds = load_dataset(tmp_path / "set", cache_dir=blocker / "cache")
    _assert_same(ds, small)


# --------------------------------------------------------------------------------------------
# Synthetic data, splits, inspect
# --------------------------------------------------------------------------------------------


def test_synthetic_properties() -> None:
    ds = make_synthetic()
    assert (ds.n_clips, ds.n_classes, ds.n_frames, ds.n_features) == (4000, 64, 10, 128)
    assert ds.x.dtype == np.uint8 and ds.y.dtype == bool and ds.lengths.dtype == np.int16
    assert ds.ids.dtype.kind == "U" and len(set(ds.ids.tolist())) == ds.n_clips
    short = ds.lengths < 10
    assert 0.01 < short.mean() < 0.04 and len(set(ds.lengths[short].tolist())) > 3
    np.testing.assert_array_equal(lengths_from_padding(ds.x), ds.lengths)
    per_clip = ds.y.sum(axis=1)
    assert per_clip.min() >= 1 and 2.0 < per_clip.mean() < 2.8 and per_clip.max() <= 12
    positives = ds.y.sum(axis=0)
    assert positives.min() >= 15 and positives.max() > 20 * positives.min()  # skewed
    assert 100 < ds.x[~short].mean() < 156 and ds.x[~short].std() > 40
    assert any("(parent " in name for name in ds.class_names)


def test_synthetic_parents_co_occur() -> None:
    ds = make_synthetic()
    pairs = [
        (c, int(m.group(1))) for c, name in enumerate(ds.class_names) if (m := re.search(r"\(parent (\d+)\)", name))
    ]
    child, parent = pairs[0]
    assert ds.y[ds.y[:, child], parent].mean() > 0.5 > ds.y[:, parent].mean()


def test_synthetic_is_deterministic() -> None:
    _assert_same(make_synthetic(200, 8, seed=3), make_synthetic(200, 8, seed=3))
    assert not np.array_equal(make_synthetic(200, 8, seed=3).x, make_synthetic(200, 8, seed=4).x)


def test_synthesize_tfrecord_folder(tmp_path: Path) -> None:
    out = synthesize(tmp_path / "syn", n_clips=350, n_classes=9, seed=5)
    assert len(list(out.glob("*.tfrecord"))) == 4
    assert read_class_names(out / "class_labels_indices.csv")[0].startswith("synthetic class 0")
    _assert_same(load_dataset(out, cache_dir=tmp_path / "cache"), make_synthetic(350, 9, 5))
    with _raises_naming(out, "already holds data"):
        synthesize(out, n_clips=10, n_classes=3)


def test_synthesize_keeps_other_class_lists(tmp_path: Path) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    write_class_csv(folder / "class_labels_indices.csv", ("dog", "cat"))
    with _raises_naming(folder / "class_labels_indices.csv", "already lists other classes"):
        synthesize(folder, n_clips=20, n_classes=3)
    assert not list(folder.glob("*.tfrecord"))


def test_n_classes_must_match_class_list(tmp_path: Path, small: Dataset) -> None:
    _write_set(tmp_path / "set", small)
    with _raises_naming(tmp_path / "set" / "class_labels_indices.csv", "n_classes=20 disagrees"):
        load_dataset(tmp_path / "set", cache_dir=tmp_path / "cache", n_classes=20)


def test_split_indices() -> None:
    train, val = split_indices(100, 0.2, seed=7)
    assert len(val) == 20 and len(train) == 80
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(100))
    again = split_indices(100, 0.2, seed=7)
    np.testing.assert_array_equal(train, again[0])
    np.testing.assert_array_equal(val, again[1])
    assert not np.array_equal(val, split_indices(100, 0.2, seed=8)[1])
    for bad in (0.0, 1.0, -0.1, 1.5):
        with pytest.raises(InputError, match="fraction"):
            split_indices(100, bad)
    with pytest.raises(InputError, match="empty"):
        split_indices(1, 0.5)


def test_inspect(tmp_path: Path) -> None:
    out = synthesize(tmp_path / "syn", n_clips=300, n_classes=6, seed=0)
    info = inspect(out, cache_dir=tmp_path / "cache")
    assert info["format"] == "tfrecord" and info["clips"] == 300 and info["classes"] == 6
    assert info["seconds"]["max"] == 10 and info["seconds"]["full"] < 300
    assert 1 <= info["labels_per_clip"]["min"] <= info["labels_per_clip"]["max"]
    ds = make_synthetic(300, 6, 0)
    rare = info["rarest_class"]
    assert rare["positives"] == int(ds.y.sum(axis=0).min()) and rare["name"] in ds.class_names
    text = format_inspect(info)
    assert "clips:" in text and "rarest class" in text and rare["name"] in text


# --------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------


@pytest.fixture
def shard(tmp_path: Path, small: Dataset) -> Path:
    """One good shard of three records in its own folder (with a 12-class list)."""
    first3 = Dataset(
        x=small.x[:3],
        y=small.y[:3],
        lengths=small.lengths[:3],
        ids=small.ids[:3],
        class_names=small.class_names,
        source="test",
    )
    return _write_set(tmp_path / "bad", first3)[0]


def _corrupt(path: Path, offset: int) -> None:
    """Flip one byte of a file."""
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def test_truncated_record(shard: Path, tmp_path: Path) -> None:
    shard.write_bytes(shard.read_bytes()[:-10])
    with _raises_naming(shard, "truncated record", "record 2", "corrupt"):
        load_dataset(shard.parent, cache_dir=tmp_path / "cache")


def test_bad_length_crc(shard: Path, tmp_path: Path) -> None:
    first = len(next(read_records(shard))) + 16
    _corrupt(shard, first + 9)  # inside record 1's length CRC
    with _raises_naming(shard, "bad length CRC", "record 1", "re-download"):
        load_dataset(shard.parent, cache_dir=tmp_path / "cache")


def test_bad_data_crc(shard: Path, tmp_path: Path) -> None:
    _corrupt(shard, 40)  # inside record 0's payload
    with _raises_naming(shard, "bad data CRC", "record 0", "re-download"):
        load_dataset(shard.parent, cache_dir=tmp_path / "cache")


def test_wrong_embedding_width(tmp_path: Path) -> None:
    (tmp_path / "w").mkdir()
    records = [
        encode_sequence_example("ok", [1], [bytes(128)] * 2),
        encode_sequence_example("bad", [1], [bytes(128), bytes(127)]),
    ]
    path = write_record_file(tmp_path / "w" / "x.tfrecord", records)
    with _raises_naming(path, "wrong embedding width", "record 1"):
        load_dataset(path.parent, cache_dir=tmp_path / "cache")


def test_label_index_out_of_range(shard: Path, tmp_path: Path) -> None:
    extra = write_record_file(shard.parent / "zz.tfrecord", [encode_sequence_example("big", [12], [bytes(128)])])
    with _raises_naming(extra, "label index out of range", "record 0", "class_labels_indices.csv"):
        load_dataset(shard.parent, cache_dir=tmp_path / "cache")
    (shard.parent / "class_labels_indices.csv").unlink()
    with _raises_naming(extra, "label index out of range", "n_classes is 12"):
        load_dataset(shard.parent, cache_dir=tmp_path / "cache", n_classes=12)


def test_hdf5_label_out_of_range(tmp_path: Path) -> None:
    path = synthesize(tmp_path / "h" / "s.h5", n_clips=40, n_classes=5, fmt="hdf5")
    write_class_csv(path.parent / "class_labels_indices.csv", ("a", "b", "c"))
    with _raises_naming(path, "label index out of range"):
        load_dataset(path, cache_dir=tmp_path / "cache")


def test_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("nothing here")
    with _raises_naming(tmp_path / "empty", "no *.tfrecord files"):
        load_dataset(tmp_path / "empty", cache_dir=tmp_path / "cache")


def test_missing_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(InputError, match=f"no such file or folder: {re.escape(str(missing))}; pass --train"):
        load_dataset(missing)


def test_unknown_format(tmp_path: Path) -> None:
    odd = tmp_path / "data.bin"
    odd.write_bytes(b"\x00" * 64)
    with _raises_naming(odd, "unknown data format"):
        load_dataset(odd, cache_dir=tmp_path / "cache")


def test_non_numeric_csv_index(tmp_path: Path) -> None:
    path = tmp_path / "class_labels_indices.csv"
    path.write_text('index,mid,display_name\n0,/m/a,"A"\none,/m/b,"B"\n')
    with _raises_naming(path, "non-numeric class index", "line 3"):
        read_class_names(path)


def test_broken_cache_folder(tmp_path: Path, small: Dataset) -> None:
    folder = write_cache(small, tmp_path / "c")
    (folder / "y.npy").unlink()
    with _raises_naming(folder, "unreadable", "delete the folder"):
        load_dataset(folder)


def test_every_error_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(InputError) as info:
        load_dataset(tmp_path / "nope")
    assert "\n" not in str(info.value)


# --------------------------------------------------------------------------------------------
# A data source opened once; readers registered beside each other
# --------------------------------------------------------------------------------------------


def _count_sniffs(monkeypatch) -> list[str]:
    """Record each format any registered reader is asked to recognize."""
    from tagtune.trainables.data import READERS

    asked: list[str] = []
    for reader in READERS:
        original = reader.sniff

        def sniff(path: Path, _original=original, _format=reader.format) -> bool:
            asked.append(_format)
            return _original(path)

        monkeypatch.setattr(reader, "sniff", sniff)
    return asked


def test_open_source_knows_format_kind_shape_and_cache_entry(tmp_path: Path, small: Dataset, monkeypatch) -> None:
    from tagtune.trainables.data import TrialData, open_source

    _write_set(tmp_path / "set", small)
    asked = _count_sniffs(monkeypatch)
    source = open_source(tmp_path / "set", cache_dir=tmp_path / "cache")
    assert (source.format, source.kind) == ("tfrecord", "embeddings")
    sniffs = len(asked)
    assert source.cache_entry is not None and not source.cache_entry.exists()  # nothing read yet
    assert source.shape == (10, 128, 12) and source.class_names == small.class_names
    assert not source.single_label
    assert (source.cache_entry / "tagtune-cache.json").is_file()  # the first read wrote the cache
    assert source.read() is source.read()  # read once
    data = source.trial_data(val_fraction=0.2, seed=3)
    assert isinstance(data, TrialData) and data.kind == "embeddings" and data.n_held_out == 0
    train, val = split_indices(small.n_clips, 0.2, 3)
    np.testing.assert_array_equal(data.train_idx, train)
    np.testing.assert_array_equal(data.val_idx, val)
    np.testing.assert_array_equal(data.x, small.x)
    assert len(asked) == sniffs == 4  # cache, hear, audio, tfrecord: asked once each, at open
    cached = open_source(source.cache_entry)
    assert cached.format == "cache" and cached.cache_entry == source.cache_entry
    _assert_same(cached.embeddings(), small)


def test_search_opens_the_source_once(tmp_path: Path, small: Dataset, monkeypatch) -> None:
    from tagtune.families import parse_families
    from tagtune.search import CheckedSearchSpec, prepare_data
    from tagtune.trainables.data import open_source

    _write_set(tmp_path / "set", small)
    monkeypatch.setenv("TAGTUNE_CACHE_DIR", str(tmp_path / "cache"))
    asked = _count_sniffs(monkeypatch)
    source = open_source(tmp_path / "set")
    families = parse_families("fc1,fc2", source)
    data = prepare_data(CheckedSearchSpec(train=str(tmp_path / "set"), families=families), source)
    assert asked == ["cache", "hear", "audio", "tfrecord"] and data.shape == (10, 128, 12)
    with pytest.raises(InputError, match="'densenet_audio' is built for audio"):
        parse_families("densenet_audio", source)
    again = prepare_data(CheckedSearchSpec(train=str(tmp_path / "set"), families=families))  # opens its own
    np.testing.assert_array_equal(again.val_idx, data.val_idx)


def test_a_new_format_is_one_registered_reader(tmp_path: Path, small: Dataset, monkeypatch) -> None:
    from tagtune.trainables.data import READERS, open_source, register_reader

    class NpzReader:
        """x, y in one .npz file."""

        format = "npz-own"
        kind = "embeddings"

        def sniff(self, path: Path) -> bool:
            return path.suffix == ".npz"

        def cache_entry(self, path: Path, *, n_classes, cache_dir):
            return None

        def read(self, path: Path, *, n_classes, cache_dir) -> Dataset:
            arrays = np.load(path)
            n = len(arrays["x"])
            return Dataset(
                arrays["x"],
                arrays["y"],
                lengths_from_padding(arrays["x"]),
                np.array([str(i) for i in range(n)]),
                small.class_names,
                f"npz:{path}",
            )

    monkeypatch.setattr("tagtune.trainables.data._source.READERS", list(READERS))
    from tagtune.trainables.data import _source

    register_reader(NpzReader(), before="hdf5")
    assert [r.format for r in _source.READERS][:6] == ["cache", "hear", "audio", "tfrecord", "npz-own", "hdf5"]
    with pytest.raises(ValueError, match="registered already"):
        register_reader(NpzReader())
    np.savez(tmp_path / "set.npz", x=small.x, y=small.y)
    source = open_source(tmp_path / "set.npz")
    assert source.format == "npz-own" and source.shape == (10, 128, 12)
    assert len(source.trial_data(val_fraction=0.5, seed=0).val_idx) == small.n_clips // 2


def test_trial_data_holds_embedding_clips_and_keeps_the_x_constructor(small: Dataset) -> None:
    from tagtune.trainables.data import EmbeddingClips, TrialData

    data = TrialData(small.x, small.y, np.arange(200), np.arange(200, 250), small.class_names)
    assert isinstance(data.clips, EmbeddingClips) and data.x is small.x and data.audio is None
    assert data.kind == "embeddings" and data.shape == (10, 128, 12) and data.n_clips == 250
    assert (
        TrialData(clips=EmbeddingClips(small.x), y=small.y, train_idx=data.train_idx, val_idx=data.val_idx).shape
        == data.shape
    )
    with pytest.raises(TypeError, match="either x"):
        TrialData(small.x, small.y, data.train_idx, data.val_idx, clips=EmbeddingClips(small.x))


def test_fit_frames_pads_and_cuts_to_t_frames() -> None:
    from tagtune.trainables.data import fit_frames

    x = np.arange(2 * 3 * 2, dtype=np.uint8).reshape(2, 3, 2) + 1
    assert fit_frames(x, 3) is x
    padded = fit_frames(x, 5)
    assert padded.shape == (2, 5, 2) and padded.dtype == np.uint8 and not padded[:, 3:].any()
    np.testing.assert_array_equal(padded[:, :3], x)
    np.testing.assert_array_equal(fit_frames(x, 2), x[:, :2])
    with pytest.warns(UserWarning, match="src: clips longer than 2 s were cut to 2 s"):
        fit_frames(x, 2, where="src")
