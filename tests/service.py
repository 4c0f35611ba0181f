"""Throwaway services for the ``service`` tests: a PostgreSQL cluster in a temp folder on a free
port and a real ``mlflow server`` (basic auth, proxied artifacts) on it, started by the same
code as ``tagtune server``; tagtune driven as a user runs it (``python -m tagtune``)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tagtune.server import LocalPostgres, ServerSpec, free_port, pg_binary, start_server, stop_process

ADMIN = ("admin", "admin-password-0123")
USERS = {"alice": "alice-password-0123", "bob": "bob-password-01234"}


def require_postgres() -> None:
    if pg_binary("initdb") is None or pg_binary("pg_ctl") is None:
        pytest.skip("PostgreSQL is not installed (apt-get install -y postgresql; .ci/run does it)")
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        pytest.skip("running as root without runuser: PostgreSQL cannot be started")


@dataclass
class Server:
    pg: LocalPostgres
    spec: ServerSpec
    folder: Path
    proc: subprocess.Popen[bytes] | None = None
    env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.spec.port}"

    def start(self) -> None:
        saved = dict(os.environ)
        os.environ.update({"MLFLOW_TRACKING_USERNAME": ADMIN[0], "MLFLOW_AUTH_ADMIN_PASSWORD": ADMIN[1]})
        os.environ.update(self.env)
        try:
            # generous: the test machine's 2 cores are shared by other jobs
            self.proc = start_server(self.spec, self.folder, log=self.folder / "server.log", wait=300)
            import requests  # warm the workers up (first requests import the app's handlers)

            for _ in range(4):
                requests.get(self.url + "/api/2.0/mlflow/experiments/search?max_results=1", auth=ADMIN, timeout=60)
        finally:
            os.environ.clear()
            os.environ.update(saved)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None


@pytest.fixture(scope="session")
def postgres() -> Iterator[LocalPostgres]:
    require_postgres()
    root = Path(tempfile.mkdtemp(prefix="tagtune-pg-"))
    os.chmod(root, 0o755)  # as root the cluster runs as the postgres user, who must reach it
    cluster = LocalPostgres(root / "data", free_port())
    cluster.init()
    cluster.start()
    yield cluster
    cluster.stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def mlflow_server(postgres: LocalPostgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """An MLflow server with basic auth on PostgreSQL; users alice and bob exist (READ on what
    others create, MLflow's default)."""
    folder = tmp_path_factory.mktemp("mlflow-server")
    spec = ServerSpec(
        backend_store_uri=postgres.create_database("mlflow"),
        artifacts_destination=str(folder / "artifacts"),
        port=free_port(),
        auth=True,
        workers=2,
    )
    # one CSRF key across restarts, as a real deployment keeps it
    server = Server(postgres, spec, folder, env={"MLFLOW_FLASK_SERVER_SECRET_KEY": "tagtune-tests-key"})
    server.start()
    from mlflow.server.auth.client import AuthServiceClient

    os.environ.update({"MLFLOW_TRACKING_USERNAME": ADMIN[0], "MLFLOW_TRACKING_PASSWORD": ADMIN[1]})
    try:
        auth = AuthServiceClient(server.url)
        for name, password in USERS.items():
            auth.create_user(name, password)
    finally:
        for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
            os.environ.pop(key, None)
    yield server
    server.stop()


@dataclass
class TeamSearch:
    """alice's finished search on the server: what the search and browser tests look at."""

    experiment: str
    studies: str  # the Optuna storage (a PostgreSQL database of the same cluster)
    root: Path
    outputs: dict[str, str]  # command -> its output
    report_html: Path


TEAM_EXPERIMENT = "browse"


@pytest.fixture(scope="session")
def team_search(mlflow_server: Server, tiny_train: Path, tmp_path_factory: pytest.TempPathFactory) -> TeamSearch:
    """alice's search over HTTP only (fc1, fc2: 2 trials of 3 epochs each, no early stopping),
    its Optuna studies in the server's PostgreSQL, then its report with the HTML dashboard and
    its finals registered, each as a user runs them (``python -m tagtune``); once per session:
    tests/test_service.py checks the store, tests/test_browser.py what the UI shows of it."""
    root = tmp_path_factory.mktemp("team")
    studies = mlflow_server.pg.create_database("optuna")
    env = user_env("alice", cwd=root)
    url = mlflow_server.url
    where = ["--experiment", TEAM_EXPERIMENT, "--tracking-uri", url]
    steps = {
        "search": ["search", "--train", str(tiny_train), "--families", "fc1,fc2", "--trials-per-family", "2"]
        + ["--max-epochs", "3", "--scheduler", "none", "--storage-path", str(root / "r"), *where]
        + ["--optuna-storage", studies],
        "report": ["report", *where, "--html", str(root / "report.html")],
        # the finals' scores are not what the tests look at: eval is the training data
        "finalize": ["finalize", *where, "--train", str(tiny_train), "--eval", str(tiny_train)]
        + ["--ensemble-pool", "1", "--max-epochs", "2"],
    }
    outputs = {}
    for name, args in steps.items():
        proc = tagtune(*args, env=env, cwd=root)
        out, _ = proc.communicate(timeout=400)
        assert proc.returncode == 0, out
        outputs[name] = out
    return TeamSearch(TEAM_EXPERIMENT, studies, root, outputs, root / "report.html")


def user_env(user: str, password: str | None = None, cwd: Path | None = None) -> dict[str, str]:
    """The environment of ``user``'s tagtune (MLflow's client variables, nothing else)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["MLFLOW_TRACKING_USERNAME"] = user
    env["MLFLOW_TRACKING_PASSWORD"] = password if password is not None else {**USERS, ADMIN[0]: ADMIN[1]}[user]
    env["RAY_ENABLE_UV_RUN_RUNTIME_ENV"] = "0"
    if cwd is not None:
        env["TAGTUNE_CACHE_DIR"] = str(cwd / "cache")
    return env


def tagtune(*args: str, env: dict[str, str], cwd: Path, **kw: object) -> subprocess.Popen[str]:
    return subprocess.Popen(  # type: ignore[call-overload, no-any-return]
        [sys.executable, "-m", "tagtune", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        **kw,
    )


def client_as(user: str, url: str) -> object:
    """An MlflowClient acting as ``user`` (credentials through MLflow's variables)."""
    from mlflow import MlflowClient

    os.environ["MLFLOW_TRACKING_USERNAME"] = user
    os.environ["MLFLOW_TRACKING_PASSWORD"] = {**USERS, ADMIN[0]: ADMIN[1]}[user]
    return MlflowClient(url, registry_uri=url)  # not a registry an earlier test set for the process
