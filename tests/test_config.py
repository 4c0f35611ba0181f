"""TrainConfig: every key checked once (ranges, choices, types), frozen, a mapping like the old dict."""

from __future__ import annotations

import copy
import dataclasses
import math
import pickle
from pathlib import Path

import pytest
import yaml

from tagtune.errors import InputError
from tagtune.search_spaces import load_space
from tagtune.trainables.config import (
    TRAIN_CONSTRAINTS,
    TRAIN_DEFAULTS,
    TrainConfig,
    resolve_config,
)
from tagtune.trainables.models import get_family, list_families
from tagtune.trainables.params import boolean, choice, float_range, inferred, int_range, text

FAMILIES = list_families()

# ---------------------------------------------------------------------------------------------
# Defaults and the mapping interface
# ---------------------------------------------------------------------------------------------


def _merged_defaults(family: str) -> dict:
    """What the untyped resolve_config returned for ``{"family": family}``: the plain merge."""
    spec = get_family(family)
    return {"family": family, **TRAIN_DEFAULTS, **spec.train_defaults, **spec.hparams}


@pytest.mark.parametrize("family", FAMILIES)
def test_family_defaults_validate_and_equal_the_old_dict(family):
    cfg = resolve_config({"family": family})
    expected = _merged_defaults(family)
    assert isinstance(cfg, TrainConfig)
    assert dict(cfg) == expected
    assert list(cfg) == list(expected)  # same keys, same order: family, training, model
    assert {k: type(v) for k, v in cfg.items()} == {k: type(v) for k, v in expected.items()}
    assert cfg == TrainConfig.defaults(family)


def test_the_three_key_sets_agree():
    fields = [f.name for f in dataclasses.fields(TrainConfig)]
    assert fields == ["family", *TRAIN_DEFAULTS, "family_params"]
    assert list(TRAIN_CONSTRAINTS) == list(TRAIN_DEFAULTS)
    for family in FAMILIES:
        assert not set(get_family(family).hparams) & set(TRAIN_DEFAULTS), family


def test_behaves_as_a_read_only_mapping_with_attributes():
    cfg = resolve_config({"family": "attention", "lr": 0.002, "level": "decision"})
    assert cfg["lr"] == cfg.lr == 0.002 and cfg.get("nope") is None and cfg.get("lr") == 0.002
    assert cfg.family == cfg["family"] == "attention"
    assert cfg.level == cfg["level"] == "decision" and cfg.hparams["hidden"] == 512
    assert len(cfg) == len(dict(cfg)) == 1 + len(TRAIN_DEFAULTS) + len(get_family("attention").hparams)
    assert "level" in cfg and "nope" not in cfg
    assert (lambda **kw: kw)(**cfg) == dict(cfg)
    assert not hasattr(cfg, "nope")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.lr = 1.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        cfg["lr"] = 1.0  # type: ignore[index]
    cfg.hparams["hidden"] = 3  # a copy
    assert cfg.hidden == 512


def test_resolve_returns_a_train_config_as_is():
    cfg = resolve_config({"family": "fc2"})
    assert resolve_config(cfg) is cfg


def test_pickles_and_copies_without_a_new_check():
    cfg = resolve_config({"family": "gcnn", "filters": 64, "lr_schedule": "Cosine"})
    for clone in (pickle.loads(pickle.dumps(cfg)), copy.deepcopy(cfg), copy.copy(cfg)):
        assert clone == cfg and dict(clone) == dict(cfg) and clone.filters == 64
        assert clone.lr_schedule == "cosine"


def test_replace_checks_the_changes():
    cfg = resolve_config({"family": "fc2"})
    assert cfg.replace(hidden=500, lr=0.01).hidden == 500
    assert cfg.replace(lr=0.01).lr == 0.01 and cfg.lr == 3e-4
    with pytest.raises(InputError, match="lr must be a number in"):
        cfg.replace(lr=-1)
    with pytest.raises(InputError, match="hidden must be an integer"):
        dataclasses.replace(cfg, family_params=(("hidden", 0), ("dropout", 0.2), ("layers", 1)))


def test_normalized_values():
    cfg = resolve_config(
        {
            "family": "fc1",
            "lr_schedule": "STEP",
            "optimizer": "AdamW",
            "target_class": "None",
            "lr": 1,
            "mixup_alpha": 0,
            "dropout": 0,
        }
    )
    assert cfg.lr_schedule == "step" and cfg.optimizer == "adamw" and cfg.target_class is None
    assert type(cfg.lr) is float and type(cfg.mixup_alpha) is float and type(cfg["dropout"]) is float
    assert resolve_config({"family": "fc1", "target_class": "Speech"}).target_class == "Speech"


# ---------------------------------------------------------------------------------------------
# Every key: a bad value (wrong type; out of range or unknown choice) names the key
# ---------------------------------------------------------------------------------------------

#: Bad values of every training key, with what the message must say.
BAD_TRAIN = {
    "batch_size": [0, -1, 10**7, "64", 64.0, True, None],
    "lr": [-1, 0, 0.0, 11, math.nan, math.inf, "0.001", "fast", True, None],
    "optimizer": ["lbfgs", 3, None],
    "momentum": [-0.1, 1.0, "0.9", False],
    "weight_decay": [-1e-4, 2.0, "x", True],
    "grad_clip": [-1.0, math.inf, "5", True],
    "init": ["he", "Xavier_Uniform", 1, None],
    "output_bias": ["zero", 0, None],
    "seed": [-1, 2**64, 1.5, "0", True],
    "output_heads": [0, 65, 2.5, "2", True],
    "lr_schedule": ["linear", 3, True],
    "lr_step_epochs": [0, 1.5, "10", True],
    "lr_gamma": [0.0, 1.5, -0.1, "0.1", True],
    "mixup_alpha": [-0.1, math.inf, "0.4", True],
    "mixup_lambda_gt_half": ["yes", 1, 0, None],
    "loss_mask_alpha": [-0.1, 1.2, "0.8", True],
    "balanced_batches": ["true", 1, None],
    "shift_augment": [-1, 256, 4.0, "4", True],
    "positive_mix": [-0.1, 2.0, "0.1", True],
    "ema_decay": [-0.1, 1.0, "0.999", True],
    "swa_last": [-0.1, 1.5, "0.25", True],
    "target_class": [3, 1.5, True, ["Speech"]],
    "crop_samples": [0, 15, 10**9, 8192.0, "8192", True],
    "mixup_scale": [-0.1, 1.0, "0.5", True],
}


def test_every_training_key_has_bad_values():
    assert set(BAD_TRAIN) == set(TRAIN_DEFAULTS)


@pytest.mark.parametrize("key, value", [(k, v) for k, vs in BAD_TRAIN.items() for v in vs])
def test_bad_training_value_names_the_key(key, value):
    with pytest.raises(InputError) as err:
        resolve_config({"family": "fc2", key: value})
    message = str(err.value)
    assert key in message and repr(value) in message and "\n" not in message


def test_message_says_what_is_allowed():
    with pytest.raises(InputError, match=r"^lr must be a number in \(0, 10\], got -1$"):
        resolve_config({"family": "fc2", "lr": -1})
    with pytest.raises(InputError, match=r"^batch_size must be an integer in \[1, 1000000\], got 0$"):
        resolve_config({"family": "fc2", "batch_size": 0})
    with pytest.raises(InputError, match=r"^batch_size must be an integer .*, got '64'$"):
        resolve_config({"family": "fc2", "batch_size": "64"})
    with pytest.raises(InputError, match=r"^unknown level 'sideways'; choose from: decision, feature$"):
        resolve_config({"family": "attention", "level": "sideways"})
    with pytest.raises(InputError, match=r"^grad_clip must be a finite number >= 0 \(0 = off\), got -1$"):
        resolve_config({"family": "lstm", "grad_clip": -1})
    with pytest.raises(InputError, match=r"^filters must be an integer in \[2, 65536\] divisible by 2, got 3$"):
        resolve_config({"family": "gcnn", "filters": 3})


def _bad_values(default):
    """Wrong types and out-of-range or unknown values for a hyperparameter with ``default``."""
    if isinstance(default, bool):
        return [1, "yes", None]
    if isinstance(default, int):
        return ["7", 2.5, float(default), True, None, -(10**12), 10**12]
    if isinstance(default, float):
        return ["abc", "0.5", True, None, math.nan, -1e9, 1e9]
    return [3, None, True, default + "-nope", default.upper() + "X"]


FAMILY_CASES = [
    (family, name, value)
    for family in FAMILIES
    for name, default in get_family(family).hparams.items()
    for value in _bad_values(default)
]


@pytest.mark.parametrize("family, name, value", FAMILY_CASES)
def test_bad_family_value_names_the_key(family, name, value):
    with pytest.raises(InputError) as err:
        resolve_config({"family": family, name: value})
    assert name in str(err.value) and repr(value) in str(err.value)


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_hyperparameter_has_a_declared_constraint(family):
    spec = get_family(family)
    assert set(spec.declared) == set(spec.hparams), "declare a constraint beside each default"


def test_unknown_key_lists_the_allowed_ones():
    with pytest.raises(InputError, match=r"unknown parameter\(s\) \['hiden'\] for family 'fc2'; allowed: .*'hidden'"):
        resolve_config({"family": "fc2", "hiden": 3})
    with pytest.raises(InputError, match="no 'family' key"):
        resolve_config({"lr": 0.1})
    with pytest.raises(InputError, match="unknown model family 'resnet'"):
        resolve_config({"family": "resnet"})


def test_inferred_constraints_check_the_type():
    assert inferred(3).check("n", 5) == 5 and inferred(0.5).check("p", 1) == 1.0
    assert inferred("a").check("s", "b") == "b" and inferred(True).check("b", False) is False
    for default, bad in ((3, "3"), (3, -1), (3, 2.0), (0.5, "x"), (0.5, True), ("a", 1), (True, 1)):
        with pytest.raises(InputError, match="^k must be"):
            inferred(default).check("k", bad)
    with pytest.raises(TypeError, match="declare one"):
        inferred(None)


def test_constraint_helpers():
    assert int_range(1, 4).check("n", 4) == 4 and int_range(0, None).allowed == "an integer >= 0"
    assert float_range(0, 1, high_open=True).allowed == "a number in [0, 1)"
    assert float_range(0, 1).check("p", "1e-3") == 0.001  # YAML 1.1 leaves 1e-3 a string
    assert choice("a", "b").check("c", "b") == "b" and choice("A", ignore_case=True).check("c", "a") == "A"
    assert boolean().check("b", True) is True and text().check("t", "x") == "x"
    with pytest.raises(InputError, match=r"^unknown c 1; choose from: a, b$"):
        choice("a", "b").check("c", 1)


# ---------------------------------------------------------------------------------------------
# What the search spaces sample, what MLflow and YAML give back
# ---------------------------------------------------------------------------------------------


def _space_values(param):
    if param.kind == "categorical":
        return list(param.choices)
    if param.kind == "const":
        return [param.value]
    mid = (param.low + param.high) / 2
    return [param.low, param.high, int(mid) if param.kind == "int" else mid]


SPACE_CASES = [
    (family, p.name, value) for family in FAMILIES for p in load_space(family).params for value in _space_values(p)
]

#: The optional parameters common.yaml suggests in its comments.
COMMENTED = [("mixup_alpha", v) for v in (0.0, 0.2, 0.4)] + [
    ("mixup_lambda_gt_half", False),
    ("mixup_lambda_gt_half", True),
    ("loss_mask_alpha", 0.8),
    ("loss_mask_alpha", 0.9),
    ("balanced_batches", True),
    ("shift_augment", 8),
    ("positive_mix", 0.3),
    ("ema_decay", 0.999),
    ("target_class", "Speech"),
]


@pytest.mark.parametrize("family, name, value", SPACE_CASES)
def test_every_packaged_space_value_validates(family, name, value):
    assert resolve_config({"family": family, name: value})[name] == value


@pytest.mark.parametrize("name, value", COMMENTED)
def test_suggested_optional_values_validate(name, value):
    assert resolve_config({"family": "fc2", name: value})[name] == value


def _typed(value: str):
    """MLflow params come back as strings; tracking.export types them with YAML's scalar rules."""
    try:
        return yaml.safe_load(value)
    except yaml.YAMLError:
        return value


ROUND_TRIP = [{"family": family} for family in FAMILIES] + [
    {"family": "fc2", "lr": 1e-5, "weight_decay": 1e-06, "optimizer": "adamw", "target_class": "Speech"},
    {"family": "attention", "lr": 0.00012345, "dropout": 0.0, "level": "decision", "ema_decay": 0.999},
    {"family": "densenet_audio", "sample_rate": 16000, "mixup_lambda_gt_half": False, "lr_gamma": 0.3},
]


@pytest.mark.parametrize("config", ROUND_TRIP, ids=lambda c: "-".join(map(str, c.values())))
def test_round_trip_through_mlflow_params_and_yaml(config, tmp_path):
    from tagtune.tracking.export import read_config

    cfg = resolve_config(config)
    params = {k: str(v) for k, v in cfg.items()}  # as the callback logs them
    back = resolve_config({k: _typed(v) for k, v in params.items()})  # as finalize reads them
    assert back == cfg
    doc = {"family": cfg.family, "config": {k: _typed(v) for k, v in params.items() if k != "family"}}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))  # as `tagtune export` writes it
    assert resolve_config(read_config(path)) == cfg


def test_yaml_exponent_notation_is_a_number(tmp_path):
    from tagtune.tracking.export import read_config

    path = tmp_path / "c.yaml"
    path.write_text("family: fc2\nconfig: {lr: 1e-3, weight_decay: 1E-5, dropout: 0}\n")
    cfg = resolve_config(read_config(path))
    assert (cfg.lr, cfg.weight_decay, cfg["dropout"]) == (0.001, 1e-5, 0.0)


# ---------------------------------------------------------------------------------------------
# The CLI: exit 2 with one line, before any data is read or a run is logged
# ---------------------------------------------------------------------------------------------

BAD_FILES = {
    "lr: -1": ("fc2", "lr: -1", "lr must be a number in (0, 10], got -1"),
    "batch_size: 0": ("fc2", "batch_size: 0", "batch_size must be an integer in [1, 1000000], got 0"),
    "level: sideways": ("attention", "level: sideways", "unknown level 'sideways'; choose from: decision, feature"),
    "quoted batch_size": ("fc1", "batch_size: '64'", "batch_size must be an integer in [1, 1000000], got '64'"),
    "float layers": ("skip_bilstm", "layers: 2.0", "layers must be an integer in [1, 16], got 2.0"),
    "bool lr": ("fc1", "lr: true", "lr must be a number in (0, 10], got True"),
}


def _train(tmp_path: Path, monkeypatch, capsys, family: str, line: str, train: Path) -> tuple[int, str]:
    from tagtune.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TAGTUNE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    path = tmp_path / "bad.yaml"
    path.write_text(f"family: {family}\nconfig:\n  {line}\n")
    capsys.readouterr()
    code = main(["train", "--config", str(path), "--train", str(train), "--max-epochs", "1"])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("family, line, message", BAD_FILES.values(), ids=list(BAD_FILES))
def test_train_with_a_bad_config_exits_2_before_the_data(family, line, message, tmp_path, monkeypatch, capsys):
    code, err = _train(tmp_path, monkeypatch, capsys, family, line, tmp_path / "no-such-data")
    assert code == 2
    # one line naming the file and the config's error (not the missing data path's)
    assert err == f"tagtune: error: --config {tmp_path / 'bad.yaml'}: {message}\n"


def test_train_checks_the_config_before_reading_real_data(tmp_path, monkeypatch, capsys):
    from tagtune.trainables.data import synthesize

    data = synthesize(tmp_path / "synth", n_clips=40, n_classes=4, seed=0)
    code, err = _train(tmp_path, monkeypatch, capsys, "attention", "level: sideways", data)
    assert code == 2 and err.count("\n") == 1 and "level 'sideways'" in err
    assert not (tmp_path / "cache").exists()  # no data was read (the first read writes the cache)
    assert not (tmp_path / "mlflow.db").exists()  # no store opened, no run logged
