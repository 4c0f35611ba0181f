"""Embeddings of any dtype and shape from a Dataset onward: scaling (uint8 / 255 unchanged, float
standardized on the training split), NaN/inf refusal, own and grouped splits, single-label
training, shape refusal of families, and the checkpoint / pyfunc round trip of float models."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from tagtune.errors import InputError
from tagtune.trainables.batches import Scaler, predict
from tagtune.trainables.checkpoint import load_model, model_meta, save_model
from tagtune.trainables.data import Dataset, InputScaling
from tagtune.trainables.data._trial import SPREAD
from tagtune.trainables.loop import fit


def float_dataset(
    n: int = 120,
    t: int = 3,
    d: int = 12,
    c: int = 4,
    *,
    dtype: str = "float32",
    single: bool = False,
    split: np.ndarray | None = None,
    groups: np.ndarray | None = None,
    seed: int = 0,
) -> Dataset:
    """A learnable set of float clips, offset and scaled far from 0 / 1 (standardization matters);
    the last frame of every other clip is padding (zeros, length t - 1)."""
    rng = np.random.default_rng(seed)
    if single:
        y = np.zeros((n, c), bool)
        y[np.arange(n), rng.integers(0, c, n)] = True
    else:
        y = rng.random((n, c)) < 0.3
        y[np.arange(n), rng.integers(0, c, n)] = True
    proto = rng.normal(0, 3, (c, d))
    x = 50.0 + 10.0 * ((y @ proto)[:, None, :] + rng.normal(0, 1, (n, t, d)))
    lengths = np.full(n, t, np.int16)
    if t > 1:
        x[::2, -1] = 0.0
        lengths[::2] = t - 1
    ds = Dataset(
        x=x.astype(dtype),
        y=y,
        lengths=lengths,
        ids=np.array([f"clip{i}" for i in range(n)]),
        class_names=tuple(f"c{i}" for i in range(c)),
        source=f"test:float{t}x{d}",
        groups=groups,
        split=split,
    )
    if single:
        ds = dataclasses.replace(ds, task="multiclass")
    return ds


def test_uint8_scaling_is_bytes_over_255_bit_for_bit():
    x = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (5, 10, 128), dtype=np.uint8))
    scaling = InputScaling.fit(x.numpy())
    assert scaling.kind == "unit" and scaling.to_meta() == {"scaling": "unit", "dtype": "uint8"}
    assert torch.equal(Scaler(scaling, torch.device("cpu"))(x), x.float().div_(255.0))


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_standardization_uses_training_frames_only_and_keeps_padding_zero(dtype):
    ds = float_dataset(dtype=dtype)
    data = ds.trial_data(val_fraction=0.25, seed=1)
    s = data.scaling
    assert s.kind == "standard" and s.dtype == dtype
    frames = np.asarray(ds.x, np.float64)[data.train_idx].reshape(-1, ds.n_features)
    frames = frames[frames.any(axis=1)]
    np.testing.assert_allclose(s.mean, frames.mean(axis=0), rtol=1e-3)
    np.testing.assert_allclose(s.std * SPREAD, frames.std(axis=0), rtol=1e-2)
    scaled = Scaler(s, torch.device("cpu"))(torch.from_numpy(np.asarray(ds.x, np.float32)))
    assert torch.all(scaled[::2, -1] == 0)  # padding stays zero
    train = scaled[torch.from_numpy(data.train_idx)][:, :-1]
    assert abs(float(train.mean())) < 0.05 and abs(float(train.std()) - SPREAD) < 0.02
    assert InputScaling.from_meta({"inputs": s.to_meta()}).to_meta() == s.to_meta()


def test_float_model_learns_and_its_checkpoint_scores_as_in_training(tmp_path):
    ds = float_dataset()
    data = ds.trial_data(val_fraction=0.25, seed=0)
    res = fit({"family": "fc1", "lr": 3e-3, "batch_size": 16}, data, max_epochs=8, device="cpu")
    assert res.best["val_mAUC"] > 0.9
    meta = model_meta({"family": "fc1"}, data, res.best)
    assert meta["inputs"]["scaling"] == "standard" and len(meta["inputs"]["mean"]) == ds.n_features
    save_model(tmp_path, res.best_state, meta)
    model, _ = load_model(tmp_path)
    x_val = torch.from_numpy(np.asarray(ds.x)[data.val_idx])
    loaded = predict(model, x_val)  # the checkpoint's own scaling
    direct = predict(model, x_val, scaling=data.scaling)
    torch.testing.assert_close(loaded, direct)
    assert not torch.allclose(loaded, predict(model, x_val, scaling=InputScaling()))


def test_nan_or_inf_in_a_clip_is_refused_naming_it():
    ds = float_dataset()
    x = np.array(ds.x)
    x[7, 1, 3] = np.nan
    bad = Dataset(x, ds.y, ds.lengths, ds.ids, ds.class_names, ds.source)
    with pytest.raises(InputError, match=r"clip7 \(row 7\) has NaN"):
        bad.trial_data()
    x[7, 1, 3], x[9, 0, 0] = 1.0, np.inf
    with pytest.raises(InputError, match="clip9 .* inf"):
        Dataset(x, ds.y, ds.lengths, ds.ids, ds.class_names, ds.source).trial_data()


def test_own_split_validates_on_valid_and_holds_test_out():
    n = 100
    split = np.array(["train"] * 60 + ["valid"] * 20 + ["test"] * 20)
    data = float_dataset(n=n, split=split).trial_data(val_fraction=0.5, seed=3)
    assert list(data.train_idx) == list(range(60)) and list(data.val_idx) == list(range(60, 80))
    assert data.n_held_out == 20
    # Without valid rows the validation side is cut from the train rows; test stays out.
    split2 = np.array(["train"] * 80 + ["test"] * 20)
    tr, va, te = float_dataset(n=n, split=split2).splits(0.25, 0)
    assert len(va) == 20 and set(tr) | set(va) == set(range(80)) and list(te) == list(range(80, 100))
    with pytest.raises(InputError, match="split 'fold3'"):
        float_dataset(n=n, split=np.array(["fold3"] * n)).trial_data()


def test_grouped_split_keeps_each_group_on_one_side():
    n = 120
    groups = np.array([f"rec{i // 6}" for i in range(n)])  # 20 recordings of 6 clips
    ds = float_dataset(n=n, groups=groups)
    for seed in range(4):
        data = ds.trial_data(val_fraction=0.2, seed=seed)
        assert not set(groups[data.train_idx]) & set(groups[data.val_idx])
        assert 18 <= len(data.val_idx) <= 30
    a, b = ds.trial_data(seed=5), ds.trial_data(seed=5)
    assert np.array_equal(a.val_idx, b.val_idx)
    with pytest.raises(InputError, match="one group"):
        float_dataset(n=n, groups=np.array(["same"] * n)).trial_data()


def test_single_label_float_data_train_with_softmax_and_report_accuracy():
    ds = float_dataset(single=True, c=5)
    data = ds.trial_data(val_fraction=0.25, seed=0)
    assert data.single_label
    # batch 16: ~6 steps an epoch on the 90 training clips (the default 64 made it 2, and the
    # training seed decided whether 12 steps reached 0.6: 0.57 with TAGTUNE_TEST_SEED=7)
    res = fit({"family": "fc2", "lr": 1e-3, "batch_size": 16}, data, max_epochs=6, device="cpu")
    assert res.best["val_accuracy"] > 0.6 and "val_map3" in res.best  # chance is 0.2


def test_shift_augment_is_refused_on_float_features():
    data = float_dataset().trial_data()
    with pytest.raises(InputError, match="shift_augment=4 .* float32"):
        fit({"family": "fc1", "shift_augment": 4}, data, max_epochs=1, device="cpu")


@pytest.mark.parametrize("shape", [(1, 512), (1, 7), (25, 64)])
def test_every_family_takes_the_shape_or_says_why(shape):
    from tagtune.trainables.models import families_for_shape, list_families, shape_problem

    t, d = shape
    fitting = families_for_shape(t, d)
    for name in list_families("embeddings"):
        problem = shape_problem(name, t, d)
        assert (problem is None) == (name in fitting)
    if d == 7:
        assert "transformer" not in fitting and "heads must divide" in str(shape_problem("transformer", t, d))
    assert {"fc1", "fc2", "attention", "lstm"} <= set(fitting)


def test_per_clip_float_data_through_every_fitting_family():
    from tagtune.trainables.models import families_for_shape

    data = float_dataset(t=1, d=16).trial_data()
    for name in families_for_shape(1, 16):
        res = fit({"family": name, "batch_size": 32}, data, max_epochs=1, device="cpu")
        assert np.isfinite(res.best["val_mAUC"]), name


def test_float_pyfunc_model_scores_raw_features(tmp_path):
    import mlflow.pyfunc
    from conftest import log_checkpoint

    ds = float_dataset(t=2, d=8)
    data = ds.trial_data()
    res = fit({"family": "fc1"}, data, max_epochs=2, device="cpu")
    ckpt = tmp_path / "ckpt"
    save_model(ckpt, res.best_state, model_meta({"family": "fc1"}, data, res.best))
    _, logged = log_checkpoint(tmp_path, ckpt, ds.class_names, n_frames=2, n_features=8)
    model = mlflow.pyfunc.load_model(logged.run_uri)
    assert model.metadata.metadata["tagtune"]["inputs"] == {"n_frames": 2, "n_features": 8, "dtype": "float32"}
    x = np.asarray(ds.x[:5], np.float32)
    got = model.predict(x).to_numpy(np.float32)
    loaded, _ = load_model(ckpt)
    np.testing.assert_allclose(got, predict(loaded, torch.from_numpy(x)).numpy(), rtol=1e-5, atol=1e-6)
    bad = x.copy()
    bad[2, 0, 0] = np.nan
    with pytest.raises(Exception, match="clip 2 has NaN"):
        model.predict(bad)


def test_finalize_takes_a_data_sets_own_test_split():
    from tagtune.finalize import own_test_split

    n = 60
    split = np.array(["train"] * 40 + ["valid"] * 10 + ["test"] * 10)
    ds = float_dataset(n=n, split=split, groups=np.array([f"g{i % 7}" for i in range(n)]))
    parts = own_test_split(ds)
    assert parts is not None
    pool, test = parts
    assert (pool.n_clips, test.n_clips) == (50, 10)
    assert list(test.ids) == [f"clip{i}" for i in range(50, 60)] and set(test.split) == {"test"}
    assert np.array_equal(np.asarray(test.x), np.asarray(ds.x)[50:])
    assert own_test_split(float_dataset(n=n)) is None
