"""The CLI as a user runs it: --help teaches, and bad input exits 2 with one line, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tagtune.trainables.data import synthesize


def tagtune(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TAGTUNE_CACHE_DIR": str(cwd / "cache")}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run(
        [sys.executable, "-m", "tagtune", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def assert_bad_input(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if "error" in ln.lower()]
    assert errors == [lines[-1]], proc.stderr  # progress lines may precede it; one error line
    assert lines[-1].startswith("tagtune: error: ")
    for needle in needles:
        assert needle in lines[-1], lines[-1]


def test_help_lists_commands_and_examples(tmp_path):
    out = tagtune("--help", cwd=tmp_path)
    assert out.returncode == 0
    for word in ("search", "report", "export", "train", "demo", "families", "data", "examples:"):
        assert word in out.stdout
    out = tagtune("search", "--help", cwd=tmp_path)
    assert "--trials-per-family" in out.stdout and "--gpus-per-trial" in out.stdout


def test_families_lists_every_family_with_ranges(tmp_path):
    from tagtune.trainables.models import list_families

    out = tagtune("families", cwd=tmp_path)
    assert out.returncode == 0
    for family in list_families():
        assert f"{family} [" in out.stdout
    assert "lr" in out.stdout and "log" in out.stdout


def test_data_synth_then_inspect(tmp_path):
    out = tagtune("data", "synth", "s", "--n-clips", "200", "--n-classes", "10", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    out = tagtune("data", "inspect", "s", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "clips:             200" in out.stdout and "rarest class" in out.stdout


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cli")
    synthesize(root / "synth", n_clips=120, n_classes=6, seed=0)
    return root


def _corrupt_copy(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    shard = sorted(dst.glob("*.tfrecord"))[0]
    raw = bytearray(shard.read_bytes())
    raw[40] ^= 0xFF
    shard.write_bytes(bytes(raw))
    return shard


def test_corrupt_tfrecord_names_the_file(synth_dir, tmp_path):
    shard = _corrupt_copy(synth_dir / "synth", tmp_path / "bad")
    out = tagtune("search", "--train", str(tmp_path / "bad"), "--families", "fc1", cwd=tmp_path)
    assert_bad_input(out, shard.name, "CRC")


def test_search_flags_fill_the_spec_field_by_field():
    import dataclasses

    from tagtune.cli import build_parser, search_spec_from_args
    from tagtune.search import CheckedSearchSpec

    argv = [
        "search",
        "--train",
        "t",
        "--families",
        "fc2,fc1",
        "--trials-per-family",
        "5",
        "--max-epochs",
        "3",
        "--experiment",
        "e",
        "--tracking-uri",
        "sqlite:///x.db",
        "--seed",
        "7",
        "--val-fraction",
        "0.3",
        "--cpus-per-trial",
        "2",
        "--gpus-per-trial",
        "0.5",
        "--max-concurrent",
        "2",
        "--address",
        "h:1",
        "--storage-path",
        "s",
        "--spaces",
        "sp",
        "--max-failures",
        "0",
        "--no-defaults-first",
        "--scheduler",
        "hyperband",
        "--grace-period",
        "1",
        "--reduction-factor",
        "2",
        "--milestone-metric",
        "val_mAUC",
        "--no-curve-grace",
        "--time-budget",
        "1h30m",
        "--warm-start",
        "old",
        "--sampler",
        "random",
        "--feature-key",
        "emb",
        "--label-key",
        "target",
        "--group-key",
        "speaker",
        "--task",
        "multiclass",
        "--optuna-storage",
        "sqlite:///o.db",
        "--portfolio",
        "mine.yaml",
        "--patience",
        "4",
        "--goal",
        "best",
    ]
    spec = search_spec_from_args(build_parser().parse_args(argv))
    assert spec == CheckedSearchSpec(
        train="t",
        families=["fc2", "fc1"],
        trials_per_family=5,
        max_epochs=3,
        experiment="e",
        tracking_uri="sqlite:///x.db",
        seed=7,
        val_fraction=0.3,
        cpus_per_trial=2.0,
        gpus_per_trial=0.5,
        max_concurrent=2,
        address="h:1",
        storage_path="s",
        spaces_dir="sp",
        max_failures=0,
        defaults_first=False,
        scheduler="hyperband",
        grace_period=1,
        reduction_factor=2.0,
        milestone_metric="val_mAUC",
        curve_grace=False,
        patience=4,
        goal="best",
        time_budget=5400.0,
        warm_start="old",
        sampler="random",
        feature_key="emb",
        label_key="target",
        group_key="speaker",
        task="multiclass",
        optuna_storage="sqlite:///o.db",
        portfolio="mine.yaml",
    )
    defaults = search_spec_from_args(build_parser().parse_args(["search", "--train", "t"]))
    for f in dataclasses.fields(CheckedSearchSpec):  # every field has a flag, and the flags' defaults are the spec's
        if f.name not in ("train", "families", "spaces", "first_configs"):
            assert getattr(defaults, f.name) == f.default, f.name
            assert getattr(spec, f.name) != f.default, f"no flag reaches {f.name}"
    # --portfolio alone: the packaged one
    assert build_parser().parse_args(["search", "--train", "t", "--portfolio"]).portfolio == "packaged"
