"""The bad-input corpus: each case exits 2 with one clear line and leaves earlier MLflow runs intact.

A real search is logged first; every bad input then runs against the same store, and the store
is compared with its snapshot at the end.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tagtune.trainables.data import synthesize
from tagtune.trainables.data._tfrecord import encode_sequence_example, write_record_file

CORPUS: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = [
    ("truncated record", ("search", "--train", "{truncated}"), ("truncated record", ".tfrecord")),
    ("bad CRC", ("search", "--train", "{badcrc}"), ("bad data CRC", ".tfrecord")),
    ("wrong embedding width", ("search", "--train", "{width}"), ("wrong embedding width", "x.tfrecord")),
    ("label index out of range", ("search", "--train", "{label}"), ("label index out of range",)),
    ("empty folder", ("search", "--train", "{empty}"), ("no *.tfrecord files", "empty")),
    ("missing path", ("search", "--train", "{root}/nowhere"), ("--train", "nowhere")),
    ("non-numeric CSV field", ("data", "inspect", "{csv}"), ("non-numeric class index", "class_labels_indices.csv")),
    (
        "unknown family",
        ("search", "--train", "{synth}", "--families", "fc1,resnet"),
        ("unknown model family 'resnet'",),
    ),
    ("unknown optimizer", ("train", "--config", "{badopt}", "--train", "{synth}"), ("unknown optimizer 'lbfgs'",)),
    (
        "low > high in a space",
        ("search", "--train", "{synth}", "--spaces", "{badspace}"),
        ("low 0.9 > high 0.1", "fc1.yaml"),
    ),
    ("zero trials", ("search", "--train", "{synth}", "--trials-per-family", "0"), ("--trials-per-family",)),
    ("negative epochs", ("search", "--train", "{synth}", "--max-epochs", "-3"), ("--max-epochs",)),
    ("unwritable output folder", ("export", "--experiment", "good", "--out", "{afile}/sub"), ("--out", "cannot write")),
    ("unreachable --address", ("search", "--train", "{synth}", "--address", "127.0.0.1:9"), ("--address 127.0.0.1:9",)),
    (
        "tracking URI that cannot be opened",
        ("report", "--experiment", "good", "--tracking-uri", "sqlite:////no/such/dir/m.db"),
        ("--tracking-uri",),
    ),
    ("tracking URI not a URI", ("search", "--train", "{synth}", "--tracking-uri", "mlflow.db"), ("--tracking-uri",)),
    ("unknown experiment", ("report", "--experiment", "never-ran"), ("no experiment named 'never-ran'",)),
    (
        "missing config",
        ("train", "--config", "{root}/missing.yaml", "--train", "{synth}"),
        ("--config", "missing.yaml"),
    ),
    ("invalid YAML config", ("train", "--config", "{badyaml}", "--train", "{synth}"), ("not valid YAML",)),
    ("bad validation fraction", ("search", "--train", "{synth}", "--val-fraction", "0"), ("--val-fraction",)),
    ("zero CPUs per trial", ("search", "--train", "{synth}", "--cpus-per-trial", "0"), ("--cpus-per-trial",)),
    ("negative GPUs per trial", ("search", "--train", "{synth}", "--gpus-per-trial", "-1"), ("--gpus-per-trial",)),
    ("negative retries", ("search", "--train", "{synth}", "--max-failures", "-1"), ("--max-failures",)),
    ("bad time budget", ("search", "--train", "{synth}", "--time-budget", "soon"), ("--time-budget 'soon'", "45m")),
    ("unknown scheduler", ("search", "--train", "{synth}", "--scheduler", "median"), ("--scheduler 'median'", "asha")),
    ("zero grace period", ("search", "--train", "{synth}", "--grace-period", "0"), ("--grace-period",)),
    (
        "warm start from nothing",
        ("search", "--train", "{synth}", "--warm-start", "never-ran"),
        ("--warm-start never-ran", "no experiment named 'never-ran'"),
    ),
    ("nothing to resume", ("resume", "--experiment", "never-ran"), ("no experiment named 'never-ran'",)),
]


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """The CLI as a user runs it, in a fresh process (used for the search that must succeed)."""
    env = {**os.environ, "TAGTUNE_CACHE_DIR": str(cwd / "cache")}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run(
        [sys.executable, "-m", "tagtune", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def _run_in_process(args: list[str], cwd: Path, capsys, monkeypatch) -> tuple[int, str]:
    """``tagtune.cli.main`` in this process (seconds faster per case than a new interpreter);
    an uncaught exception would fail the test just as a traceback would."""
    from tagtune.cli import main

    monkeypatch.chdir(cwd)
    monkeypatch.setenv("TAGTUNE_CACHE_DIR", str(cwd / "cache"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    capsys.readouterr()
    code = main(args)
    return code, capsys.readouterr().err


def _snapshot(client: MlflowClient) -> list[tuple]:
    rows = []
    for exp in client.search_experiments():
        for run in client.search_runs([exp.experiment_id]):
            rows.append(
                (
                    run.info.run_id,
                    run.info.status,
                    tuple(sorted(run.data.metrics.items())),
                    tuple(sorted(run.data.params.items())),
                )
            )
    return sorted(rows)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    synth = synthesize(root / "synth", n_clips=200, n_classes=8, seed=0)
    out = _run(
        [
            "search",
            "--train",
            str(synth),
            "--families",
            "fc1",
            "--trials-per-family",
            "2",
            "--max-epochs",
            "1",
            "--experiment",
            "good",
        ],
        cwd=root,
    )
    assert out.returncode == 0, out.stderr
    shards = sorted(synth.glob("*.tfrecord"))

    def copy(name: str) -> Path:
        return Path(shutil.copytree(synth, root / name))

    truncated = copy("truncated")
    shard = truncated / shards[0].name
    shard.write_bytes(shard.read_bytes()[:-10])
    badcrc = copy("badcrc")
    raw = bytearray((badcrc / shards[0].name).read_bytes())
    raw[40] ^= 0xFF
    (badcrc / shards[0].name).write_bytes(bytes(raw))
    (root / "width").mkdir()
    write_record_file(root / "width" / "x.tfrecord", [encode_sequence_example("w", [1], [bytes(128), bytes(100)])])
    label = copy("label")
    write_record_file(label / "zz.tfrecord", [encode_sequence_example("big", [99], [bytes(128)])])
    (root / "empty").mkdir()
    csvdir = copy("csv")
    (csvdir / "class_labels_indices.csv").write_text('index,mid,display_name\n0,/m/a,"A"\nx,/m/b,"B"\n')
    (root / "badopt.yaml").write_text("family: fc1\nconfig: {optimizer: lbfgs}\n")
    (root / "badyaml.yaml").write_text("family: fc1\nconfig: {lr: [1, 2\n")
    (root / "spaces").mkdir()
    (root / "spaces" / "fc1.yaml").write_text("params:\n  dropout: {low: 0.9, high: 0.1}\n")
    (root / "afile").write_text("not a folder")
    subs = {
        "{root}": str(root),
        "{synth}": str(synth),
        "{truncated}": str(truncated),
        "{badcrc}": str(badcrc),
        "{width}": str(root / "width"),
        "{label}": str(label),
        "{empty}": str(root / "empty"),
        "{csv}": str(csvdir),
        "{badopt}": str(root / "badopt.yaml"),
        "{badyaml}": str(root / "badyaml.yaml"),
        "{badspace}": str(root / "spaces"),
        "{afile}": str(root / "afile"),
    }
    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    return root, subs, client, _snapshot(client)


@pytest.mark.parametrize("case, args, needles", CORPUS, ids=[c[0] for c in CORPUS])
def test_bad_input_exits_2_with_one_clear_line(corpus, case, args, needles, capsys, monkeypatch):
    root, subs, _, _ = corpus
    argv = []
    for a in args:
        for key, value in subs.items():
            a = a.replace(key, value)
        argv.append(a)
    code, err = _run_in_process(argv, root, capsys, monkeypatch)
    assert code == 2, f"{case}: exit code {code}\n{err}"
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert [ln for ln in lines if "error" in ln.lower()] == [lines[-1]], err
    assert lines[-1].startswith("tagtune: error: ")
    for needle in needles:
        assert needle in lines[-1], f"{case}: {needle!r} not in {lines[-1]!r}"


def test_corpus_has_at_least_15_cases():
    assert len(CORPUS) >= 15


def test_earlier_runs_are_intact_after_the_corpus(corpus):
    _, _, client, before = corpus
    assert before and _snapshot(client) == before


def test_all_means_the_families_for_the_data(tmp_path):
    from tagtune.errors import InputError
    from tagtune.families import parse_families
    from tagtune.trainables.models import list_families

    synth = synthesize(tmp_path / "s", n_clips=20, n_classes=4)
    families = parse_families("all", str(synth))
    assert families == list_families("embeddings") and "densenet_audio" not in families
    with pytest.raises(InputError, match="'densenet_audio' is built for audio"):
        parse_families("fc1,densenet_audio", str(synth))
