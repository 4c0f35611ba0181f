"""Several processes opening one fresh SQLite store at once (issue 28): MLflow's and Optuna's.

Without tagtune's lock, four processes opening a new ``mlflow.db`` together die in MLflow's table
creation and alembic migrations (11 of 12 did in three rounds when this was written); here every
process opens a ready store and every write is recorded once.  ``TAGTUNE_RACE_ROUNDS`` sets how
many fresh stores each fast test races on (default 2)."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import subprocess
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from test_resume import tagtune_cli

from tagtune.errors import InputError

N_PROCESSES = 4
ROUNDS = int(os.environ.get("TAGTUNE_RACE_ROUNDS", "2"))


def _warm() -> None:
    """Import what the workers use, so a round starts the opens together."""
    import mlflow.store.model_registry.sqlalchemy_store  # noqa: F401
    import mlflow.store.tracking.sqlalchemy_store  # noqa: F401
    import optuna  # noqa: F401

    import tagtune.tracking  # noqa: F401


def _at(start: float) -> None:
    while time.time() < start:
        time.sleep(0.001)


def _open_mlflow(uri: str, start: float, i: int, how: str) -> str:
    """Open the store at ``start``, log a run in experiment ``e<i % 2>`` (two processes share
    each); the traceback, or ``""``."""
    try:
        _at(start)
        if how == "plain":  # a program that knows nothing of tagtune's lock (a user's script)
            from mlflow import MlflowClient

            client = MlflowClient(uri)
            client.search_experiments(max_results=1)
        else:
            from tagtune.tracking import get_or_create_experiment, open_store

            client, uri = open_store(uri)
            exp = get_or_create_experiment(client, uri, f"e{i % 2}")
            run = client.create_run(exp.experiment_id, run_name=f"w{i}")
            client.log_metric(run.info.run_id, "m", float(i), step=1)
            client.set_terminated(run.info.run_id)
        return ""
    except BaseException:  # noqa: BLE001 - reported to the test
        return traceback.format_exc()


def _open_optuna(url: str, start: float, i: int, how: str) -> str:
    """Open the studies' store at ``start`` and run one trial of study ``s<i>``."""
    try:
        import optuna

        from tagtune.tracking import ready_optuna_storage

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        _at(start)
        study = optuna.create_study(storage=ready_optuna_storage(url), study_name=f"s{i}", direction="maximize")
        study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
        return ""
    except BaseException:  # noqa: BLE001 - reported to the test
        return traceback.format_exc()


@pytest.fixture(scope="module")
def pool() -> Iterator[Any]:
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(N_PROCESSES, initializer=_warm) as workers:
        workers.map(time.sleep, [0.1] * N_PROCESSES)  # every worker up and warm
        yield workers


def _race(pool: Any, work: Callable[..., str], uri: str, hows: list[str]) -> None:
    start = time.time() + 1.0
    errors = [e for e in pool.starmap(work, [(uri, start, i, how) for i, how in enumerate(hows)]) if e]
    assert not errors, errors[0]


def test_processes_open_a_fresh_mlflow_store_at_once(pool: Any, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    for r in range(ROUNDS):
        db = tmp_path / f"r{r}" / "mlflow.db"
        db.parent.mkdir()
        uri = f"sqlite:///{db}"
        _race(pool, _open_mlflow, uri, ["tagtune"] * N_PROCESSES)
        client = MlflowClient(uri)
        names = Counter(e.name for e in client.search_experiments())
        assert names == {"Default": 1, "e0": 1, "e1": 1}
        runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
        assert sorted(r.info.run_name for r in runs) == [f"w{i}" for i in range(N_PROCESSES)]
        assert {r.info.status for r in runs} == {"FINISHED"}
        assert sorted(p.name for p in db.parent.iterdir()) == ["mlflow.db", "mlflow.db.lock"]  # no copy left


def test_a_program_without_the_lock_opens_the_store_besidetagtune_cli(pool: Any, tmp_path: Path) -> None:
    """A user's script (plain MLflow, no lock) starting with tagtune's commands: whichever
    creates the file, the others wait for a complete store."""
    for r in range(ROUNDS):
        db = tmp_path / f"r{r}" / "mlflow.db"
        db.parent.mkdir()
        _race(pool, _open_mlflow, f"sqlite:///{db}", ["plain", "tagtune", "tagtune", "tagtune"])


def test_processes_open_a_fresh_optuna_store_at_once(pool: Any, tmp_path: Path) -> None:
    import optuna

    for r in range(ROUNDS * 2):
        url = f"sqlite:///{tmp_path / f'studies{r}.db'}"
        _race(pool, _open_optuna, url, ["tagtune"] * N_PROCESSES)
        summaries = optuna.get_all_study_summaries(url)
        assert sorted(s.study_name for s in summaries) == [f"s{i}" for i in range(N_PROCESSES)]
        assert all(s.n_trials == 1 for s in summaries)


def test_other_uris_are_left_alone(tmp_path: Path) -> None:
    from tagtune.tracking import ready_store

    for uri in ("http://127.0.0.1:5000", "postgresql://u@127.0.0.1:5432/db", "sqlite:///:memory:"):
        assert ready_store(uri) == uri
    assert not list(tmp_path.iterdir())


def _locked() -> Exception:
    try:
        raise sqlite3.OperationalError("database is locked")
    except sqlite3.OperationalError as inner:
        try:
            raise RuntimeError("(sqlite3.OperationalError) database is locked [SQL: INSERT ...]") from inner
        except RuntimeError as outer:
            return outer


def test_a_locked_store_is_retried_within_a_bound(tmp_path: Path) -> None:
    from tagtune.tracking import StoreLockedError, retry_locked

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    calls = []

    def twice_locked() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise _locked()
        return "written"

    assert retry_locked(twice_locked, uri, wait=5) == "written" and len(calls) == 3

    def always_locked() -> None:
        raise _locked()

    t0 = time.monotonic()
    with pytest.raises(StoreLockedError) as caught:
        retry_locked(always_locked, uri, wait=0.5)
    assert time.monotonic() - t0 < 3
    message = str(caught.value)
    assert uri in message and "database is locked" in message and "tagtune server" in message
    assert isinstance(caught.value, InputError)

    def bad() -> None:
        raise ValueError("not a lock")

    with pytest.raises(ValueError):  # anything else at once
        retry_locked(bad, uri, wait=5)


def test_a_lock_past_the_retries_exits_2_in_one_line(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    import tagtune.commands
    from tagtune.cli import main

    def report(*args: Any, **kwargs: Any) -> Any:
        raise _locked()

    monkeypatch.setattr(tagtune.commands, "report", report)
    assert main(["report", "--experiment", "x"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("tagtune: error: SQLite store") and "tagtune server" in err[0]


# -- real commands at once on one fresh store ---------------------------------------------------


_READER = r"""
import sys, time
import mlflow
mlflow.set_tracking_uri(sys.argv[1])
deadline, seen = time.time() + float(sys.argv[2]), 0
while time.time() < deadline:  # plain MLflow: a user's script knows nothing of tagtune's lock
    runs = mlflow.search_runs(search_all_experiments=True, output_format="list")
    seen = max(seen, len(runs))
    done = [r for r in runs if r.data.tags.get("tagtune.kind") == "trial" and r.info.status == "FINISHED"]
    if len(done) >= int(sys.argv[3]):
        break
    time.sleep(1.0)
print("reader saw", seen, "runs")
"""


def test_commands_at_once_on_a_fresh_store(tiny_train: Path, tmp_path: Path) -> None:
    """Three searches (two into one experiment, one into another; their Optuna studies in one
    new SQLite file), a plain-MLflow reader polling ``mlflow.search_runs`` and ``tagtune report``
    started together on a new ``mlflow.db``: the searches and the reader exit 0, the report
    exits 0 or says in one line (exit 2) that the search has not logged yet, a report after
    them exits 0, and each trial is recorded once in MLflow and in Optuna."""
    import optuna
    from mlflow import MlflowClient

    from tagtune.tracking import RunKind, Tag, kind_filter, parent_filter

    studies = f"sqlite:///{tmp_path / 'studies.db'}"
    experiments = ["a", "b", "a"]
    searches = [
        tagtune_cli(
            *("search", "--train", str(tiny_train), "--families", "fc1", "--trials-per-family", "1"),
            *("--max-epochs", "1", "--cpus-per-trial", "1", "--experiment", name, "--optuna-storage", studies),
            cwd=tmp_path,
        )
        for name in experiments
    ]
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    reader = subprocess.Popen(
        [sys.executable, "-c", _READER, uri, "240", str(len(experiments))],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    # a report started with them: on the new store its experiment is not there yet, or has no
    # trial yet (exit 2, one line); asked again once the searches are done (exit 0)
    first = tagtune_cli("report", "--experiment", "b", cwd=tmp_path)
    for proc in searches:
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, out[-3000:]
        assert "Traceback" not in out, out[-3000:]
    out, _ = reader.communicate(timeout=300)
    assert reader.returncode == 0, out[-3000:]
    out, _ = first.communicate(timeout=300)
    expected = ("no experiment named 'b'", "has no tagtune search run", "has no trials yet")
    assert first.returncode == 0 or (first.returncode == 2 and any(e in out for e in expected)), out[-3000:]
    assert "Traceback" not in out, out[-3000:]
    last = tagtune_cli("report", "--experiment", "b", cwd=tmp_path)
    out, _ = last.communicate(timeout=300)
    assert last.returncode == 0 and "fc1" in out, out[-3000:]

    client = MlflowClient(uri)
    optuna_names = []
    for name, n_searches in (("a", 2), ("b", 1)):
        exp = client.get_experiment_by_name(name)
        assert exp is not None
        parents = client.search_runs([exp.experiment_id], filter_string=kind_filter(RunKind.SEARCH))
        assert len(parents) == n_searches
        for parent in parents:
            trials = client.search_runs([exp.experiment_id], filter_string=parent_filter(parent.info.run_id))
            assert len(trials) == 1 and trials[0].info.status == "FINISHED"
            assert trials[0].data.tags[Tag.KIND] == RunKind.TRIAL
            optuna_names.append(trials[0].data.tags[Tag.OPTUNA_STUDY])
    summaries = {s.study_name: s.n_trials for s in optuna.get_all_study_summaries(studies)}
    assert sorted(summaries) == sorted(optuna_names) and set(summaries.values()) == {1}


def test_creating_a_store_says_nothing_below_warning(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """MLflow's "Creating initial MLflow database tables..." and alembic's migration lines (INFO)
    do not reach a command's output (``tagtune demo`` printed them)."""
    import mlflow  # noqa: F401 - sets MLflow's loggers to INFO, as any command that opens a store does

    from tagtune.tracking import ready_optuna_storage, ready_store

    ready_store(f"sqlite:///{tmp_path / 'mlflow.db'}")
    ready_optuna_storage(f"sqlite:///{tmp_path / 'optuna.db'}")
    err = capfd.readouterr().err
    assert "INFO" not in err and "Creating initial MLflow database tables" not in err, err
