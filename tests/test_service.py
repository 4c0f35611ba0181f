"""A team's deployment, for real: PostgreSQL + ``mlflow server`` with basic auth and proxied
artifacts, tagtune talking to it over HTTP only (searches, resume, concurrent drivers, faults,
users without access).  Skipped with the reason where PostgreSQL is not installed."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest
from service import USERS, Server, TeamSearch, client_as, tagtune, user_env

from tagtune.server import free_port
from tagtune.tracking import RunKind, Tag, kind_filter, parent_filter

# in the default run (`make test`) where PostgreSQL is installed: one PostgreSQL cluster and one
# MLflow server for the session (tests/service.py); `pytest -m service` runs only these
pytestmark = pytest.mark.service


def _search_args(train: Path, experiment: str, url: str, root: Path, *extra: str) -> list[str]:
    return [
        "search",
        "--train",
        str(train),
        "--families",
        "fc1",
        "--trials-per-family",
        "2",
        "--max-epochs",
        "1",
        "--experiment",
        experiment,
        "--tracking-uri",
        url,
        "--storage-path",
        str(root / "runs"),
        *extra,
    ]


def _finish(proc, timeout: float = 240) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out
    return out


def _trials(client, experiment: str) -> dict[str, list]:
    """search run id -> its trial runs."""
    exp = client.get_experiment_by_name(experiment)
    parents = client.search_runs([exp.experiment_id], filter_string=kind_filter(RunKind.SEARCH))
    return {
        p.info.run_id: client.search_runs([exp.experiment_id], filter_string=parent_filter(p.info.run_id))
        for p in parents
    }


def test_search_over_http_with_studies_in_postgres(mlflow_server: Server, team_search: TeamSearch):
    """A search whose only route to the store is HTTP; Optuna's studies in the same PostgreSQL;
    the checkpoints go through the server's artifact proxy; no password anywhere in the runs or
    the output; the report over HTTP."""
    for out in team_search.outputs.values():
        assert USERS["alice"] not in out
    client = client_as("alice", mlflow_server.url)
    (parent_id, runs), *_ = _trials(client, team_search.experiment).items()
    trials = [r for r in runs if r.data.tags.get(Tag.KIND) == RunKind.TRIAL]
    assert len(trials) == 4 and all(r.info.status == "FINISHED" for r in trials)
    for run in [client.get_run(parent_id), *runs]:
        text = repr(run.data.params) + repr(run.data.tags)
        assert USERS["alice"] not in text
    for run in trials:
        files = {f.path for f in client.list_artifacts(run.info.run_id, "checkpoint")}
        assert "checkpoint/model.pt" in files
    assert client.get_run(parent_id).data.tags[Tag.OPTUNA_STORAGE].startswith("postgresql")
    from tagtune.server import sqlalchemy_url

    summaries = optuna.get_all_study_summaries(sqlalchemy_url(team_search.studies))
    assert sorted((s.study_name.rsplit("/", 1)[-1], s.n_trials) for s in summaries) == [("fc1", 2), ("fc2", 2)]
    assert "| fc1 | 2 | 2 | 0 |" in team_search.outputs["report"], team_search.outputs["report"]
    # the finals are registered through the server (the browser test looks at them in the UI)
    names = {m.name for m in client.search_registered_models()}
    assert {f"{team_search.experiment}-fc1", f"{team_search.experiment}-fc2"} <= names


def test_resume_against_the_server(mlflow_server: Server, tiny_train: Path, tmp_path: Path):
    """The driver is SIGKILLed mid-search; `tagtune resume` finishes the budget over HTTP with
    the studies in PostgreSQL: every trial's run once."""
    studies = mlflow_server.pg.create_database("optuna_resume")
    env = user_env("alice", cwd=tmp_path)
    args = _search_args(tiny_train, "alice-resume", mlflow_server.url, tmp_path, "--optuna-storage", studies)
    args[args.index("--trials-per-family") + 1] = "3"
    args[args.index("--max-epochs") + 1] = "3"
    proc = tagtune(*args, "--max-concurrent", "1", env=env, cwd=tmp_path)
    client = client_as("alice", mlflow_server.url)
    deadline = time.time() + 180
    while time.time() < deadline and proc.poll() is None:
        time.sleep(1.0)
        exp = client.get_experiment_by_name("alice-resume")
        if exp is not None:
            done = [r for runs in _trials(client, "alice-resume").values() for r in runs if r.info.status == "FINISHED"]
            if len(done) >= 1:
                break
    assert proc.poll() is None, f"search ended before it could be killed:\n{proc.communicate()[0]}"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    _finish(
        tagtune("resume", "--experiment", "alice-resume", "--tracking-uri", mlflow_server.url, env=env, cwd=tmp_path)
    )
    (_, runs), *_ = _trials(client, "alice-resume").items()
    trials = [r for r in runs if r.data.tags.get(Tag.KIND) == RunKind.TRIAL]
    assert len(trials) == 3 and all(r.info.status == "FINISHED" for r in trials)
    assert max(Counter(r.data.tags[Tag.TRIAL_ID] for r in runs).values()) == 1


def test_concurrent_searches_same_and_different_experiments(mlflow_server: Server, tiny_train: Path, tmp_path: Path):
    """Three drivers at once: two in one experiment (alice, bob's own is separate), every trial
    recorded exactly once with every epoch's metrics, and each report right."""
    procs = []
    for i, (user, experiment) in enumerate([("alice", "shared"), ("alice", "shared"), ("bob", "bob-exp")]):
        root = tmp_path / f"d{i}"
        root.mkdir()
        args = _search_args(tiny_train, experiment, mlflow_server.url, root)
        args[args.index("--max-epochs") + 1] = "2"
        procs.append(tagtune(*args, env=user_env(user, cwd=root), cwd=root))
    for proc in procs:
        _finish(proc)
    client = client_as("alice", mlflow_server.url)
    for experiment, n_searches in (("shared", 2), ("bob-exp", 1)):
        searches = _trials(client, experiment)
        assert len(searches) == n_searches
        for runs in searches.values():
            assert len(runs) == 2 and len({r.data.tags[Tag.TRIAL_ID] for r in runs}) == 2
            for run in runs:
                history = client.get_metric_history(run.info.run_id, "val_mAUC")
                assert sorted(m.step for m in history) == [1, 2]


def test_unreachable_server_and_wrong_password_fail_fast(mlflow_server: Server, tiny_train: Path, tmp_path: Path):
    nowhere = f"http://127.0.0.1:{free_port()}"
    cases = [
        (nowhere, user_env("alice", cwd=tmp_path), "nothing answers there"),
        (mlflow_server.url, user_env("alice", "not-her-password", cwd=tmp_path), "HTTP 401"),
    ]
    for url, env, expected in cases:
        t0 = time.time()
        proc = tagtune(*_search_args(tiny_train, "x", url, tmp_path), env=env, cwd=tmp_path)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 2, out
        assert time.time() - t0 < 20
        lines = [ln for ln in out.splitlines() if ln.startswith("tagtune: error:")]
        assert len(lines) == 1 and url in lines[0] and expected in lines[0], out
        assert "not-her-password" not in out and "Traceback" not in out
    assert not (tmp_path / "runs").exists()  # nothing started


def test_user_without_access(mlflow_server: Server, tiny_train: Path, tmp_path: Path):
    """bob may read alice's experiment (the server's default) but not log into it; with no
    permission at all he cannot read it either: exit 2 naming the problem, before any trial."""
    from mlflow.server.auth.client import AuthServiceClient

    alice = client_as("alice", mlflow_server.url)
    exp_id = alice.create_experiment("alice-private")
    bob_env = user_env("bob", cwd=tmp_path)
    proc = tagtune(*_search_args(tiny_train, "alice-private", mlflow_server.url, tmp_path), env=bob_env, cwd=tmp_path)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 2, out
    assert "'bob' has no permission" in out and "Traceback" not in out, out
    assert alice.search_runs([exp_id]) == []  # no run was created

    # alice owns (MANAGE) the experiment: she can lock bob out.  MLflow 3.17's "no access" grant
    # on one resource is DENY (NO_PERMISSIONS is no longer grantable, see auth/permissions.py).
    client_as("alice", mlflow_server.url)
    AuthServiceClient(mlflow_server.url).grant_user_permission("bob", "experiment", exp_id, "DENY")
    for args in (
        _search_args(tiny_train, "alice-private", mlflow_server.url, tmp_path),
        ["report", "--experiment", "alice-private", "--tracking-uri", mlflow_server.url],
    ):
        t0 = time.time()
        proc = tagtune(*args, env=bob_env, cwd=tmp_path)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 2, out
        assert "'bob' has no permission on experiment 'alice-private' (HTTP 403" in out, out
        assert time.time() - t0 < 20


def test_server_stopped_and_restarted_mid_search(mlflow_server: Server, tiny_train: Path, tmp_path: Path):
    """The server goes away for a while during a search: training goes on, the writes are kept
    and logged when it is back; every trial has every epoch and its checkpoint (no early
    stopping: with the default ASHA rule trials stop at the grace period, 2 epochs, on this data)."""
    env = user_env("alice", cwd=tmp_path)
    args = _search_args(tiny_train, "alice-outage", mlflow_server.url, tmp_path)
    args[args.index("--families") + 1] = "fc2"
    args[args.index("--max-epochs") + 1] = "12"
    proc = tagtune(*args, "--max-concurrent", "1", "--scheduler", "none", env=env, cwd=tmp_path)
    seen: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        seen.append(line)
        if " epoch 2:" in line:
            break
    mlflow_server.stop()
    time.sleep(8)
    mlflow_server.start()
    out = "".join(seen) + _finish(proc)
    assert "does not answer; training goes on" in out and "answers again" in out, out
    client = client_as("alice", mlflow_server.url)
    (_, runs), *_ = _trials(client, "alice-outage").items()
    assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs), out
    for run in runs:
        history = client.get_metric_history(run.info.run_id, "val_mAUC")
        assert len(history) == len({m.step for m in history}), "a metric was logged twice"
        assert sorted(m.step for m in history) == list(range(1, len(history) + 1))
        assert len(history) == 12, f"{len(history)} of 12 epochs logged"
        assert "checkpoint/model.pt" in {f.path for f in client.list_artifacts(run.info.run_id, "checkpoint")}
