"""A team's tracking server: ``mlflow server`` on PostgreSQL with proxied artifacts.

``tagtune server`` runs ``mlflow server --backend-store-uri postgresql://... --serve-artifacts
--artifacts-destination DIR``, bound to 127.0.0.1 unless ``--host`` says otherwise, with MLflow's
basic-auth app under ``--auth``.  ``--postgres-dir DIR`` starts (and initializes on first use) a
local PostgreSQL cluster in DIR first, for a lab machine or the tests; a lab's own PostgreSQL is
passed as ``--backend-store-uri``.  Clients then need nothing but HTTP: ``--tracking-uri
http://HOST:PORT`` (artifacts go through the server).

Credentials: the auth app's admin is ``$MLFLOW_TRACKING_USERNAME`` (default ``admin``) with the
password ``$MLFLOW_AUTH_ADMIN_PASSWORD`` (or ``$MLFLOW_TRACKING_PASSWORD``), read from the
environment, handed to MLflow through its own variable and never printed or written to a file.
"""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tagtune.errors import InputError

__all__ = [
    "LocalPostgres",
    "ServerSpec",
    "free_port",
    "mlflow_server_command",
    "pg_binary",
    "serve",
    "sqlalchemy_url",
    "start_server",
    "stop_process",
    "wait_http",
]

PERMISSIONS = ("READ", "EDIT", "MANAGE", "NO_PERMISSIONS")


def sqlalchemy_url(uri: str) -> str:
    """``postgresql://...`` with the driver tagtune installs (psycopg2) spelled out: SQLAlchemy 2.1
    maps a bare ``postgresql://`` to psycopg 3, which is not a dependency."""
    if uri.startswith("postgresql://"):
        import importlib.util

        if importlib.util.find_spec("psycopg") is None:
            return "postgresql+psycopg2://" + uri[len("postgresql://") :]
    return uri


def free_port() -> int:
    """A TCP port nothing listens on at 127.0.0.1 (now)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pg_binary(name: str) -> str | None:
    """The PostgreSQL server program ``name`` (initdb, pg_ctl): on PATH, else Debian's
    /usr/lib/postgresql/<version>/bin (newest version); None when PostgreSQL is not installed."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(p.split("/")[4]))
    return candidates[-1] if candidates else None


@dataclass
class LocalPostgres:
    """A PostgreSQL cluster in ``data_dir`` listening on 127.0.0.1:``port`` only, with trust
    authentication for local connections (a throwaway or single-machine database; a shared one
    is a lab's own PostgreSQL).  PostgreSQL refuses to run as root, so as root the cluster is
    owned and run by the ``postgres`` system user (``runuser``)."""

    data_dir: Path
    port: int = 5432
    user: str = "tagtune"

    def _as_owner(self, cmd: list[str]) -> list[str]:
        if os.geteuid() == 0:
            return ["runuser", "-u", "postgres", "--", *cmd]
        return cmd

    def _run(self, cmd: list[str], what: str) -> None:
        proc = subprocess.run(self._as_owner(cmd), capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            raise InputError(f"--postgres-dir {self.data_dir}: {what} failed: {tail[0][:300]}")

    def init(self) -> None:
        """Create the cluster unless ``data_dir`` already holds one."""
        initdb = pg_binary("initdb")
        if initdb is None:
            raise InputError("--postgres-dir: PostgreSQL is not installed (apt-get install -y postgresql)")
        if (self.data_dir / "PG_VERSION").exists():
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.data_dir, "postgres", "postgres")
        self._run([initdb, "-D", str(self.data_dir), "-U", self.user, "--auth=trust", "-E", "UTF8"], "initdb")

    def start(self) -> None:
        pg_ctl = pg_binary("pg_ctl")
        assert pg_ctl is not None
        opts = f"-p {self.port} -k {self.data_dir} -c listen_addresses=127.0.0.1"
        log = self.data_dir / "postgres.log"
        self._run([pg_ctl, "-D", str(self.data_dir), "-o", opts, "-l", str(log), "-w", "-t", "60", "start"], "start")

    def stop(self) -> None:
        pg_ctl = pg_binary("pg_ctl")
        if pg_ctl and (self.data_dir / "postmaster.pid").exists():
            subprocess.run(
                self._as_owner([pg_ctl, "-D", str(self.data_dir), "-m", "fast", "-w", "stop"]),
                capture_output=True,
                timeout=60,
            )

    def create_database(self, name: str) -> str:
        """Create database ``name`` (if missing); its SQLAlchemy URI."""
        import psycopg2

        conn = psycopg2.connect(host="127.0.0.1", port=self.port, user=self.user, dbname="postgres")
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cur.fetchone() is None:
                cur.execute(f'CREATE DATABASE "{name}"')
        conn.close()
        return self.uri(name)

    def uri(self, database: str) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"


@dataclass
class ServerSpec:
    backend_store_uri: str
    artifacts_destination: str
    host: str = "127.0.0.1"
    port: int = 5000
    auth: bool = False
    default_permission: str = "READ"
    workers: int = 2
    allowed_hosts: str = ""  # MLflow's Host-header allow list, needed when bound beyond localhost
    #: seconds a worker trusts a checked user/password (MLflow's ``auth_cache_ttl_seconds``;
    #: 0 checks the password hash on every request, about 0.1-0.6 s of CPU each on 2 cores)
    auth_cache_seconds: int = 60


def _auth_config(spec: ServerSpec, folder: Path) -> Path:
    """The basic-auth app's config file (users in the same database, no password in it)."""
    if spec.default_permission not in PERMISSIONS:
        raise InputError(f"--default-permission {spec.default_permission!r}: choose from {', '.join(PERMISSIONS)}")
    if spec.auth_cache_seconds < 0:
        raise InputError(f"--auth-cache-seconds {spec.auth_cache_seconds}: use 0 (no cache) or more")
    path = folder / "basic_auth.ini"
    path.write_text(
        "[mlflow]\n"
        f"default_permission = {spec.default_permission}\n"
        f"database_uri = {sqlalchemy_url(spec.backend_store_uri)}\n"
        f"admin_username = {os.environ.get('MLFLOW_TRACKING_USERNAME') or 'admin'}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        "grant_default_workspace_access = false\n"
        f"auth_cache_ttl_seconds = {spec.auth_cache_seconds}\n"
    )
    return path


def mlflow_server_command(spec: ServerSpec) -> list[str]:
    """The ``mlflow server`` command line of ``spec`` (no secret in it)."""
    if not spec.backend_store_uri.startswith(("postgresql://", "postgresql+", "sqlite:///", "mysql")):
        raise InputError(
            f"--backend-store-uri {spec.backend_store_uri!r}: use postgresql://USER@HOST:PORT/DB "
            "(or --postgres-dir DIR to start a local PostgreSQL)"
        )
    cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        sqlalchemy_url(spec.backend_store_uri),
        "--serve-artifacts",
        "--artifacts-destination",
        spec.artifacts_destination,
        "--host",
        spec.host,
        "--port",
        str(spec.port),
        "--workers",
        str(spec.workers),
    ]
    if spec.auth:
        cmd += ["--app-name", "basic-auth"]
    if spec.allowed_hosts:
        cmd += ["--allowed-hosts", spec.allowed_hosts]
    return cmd


def server_env(spec: ServerSpec, folder: Path) -> dict[str, str]:
    """The server's environment: with ``--auth``, the config file and the admin password read
    from ``$MLFLOW_AUTH_ADMIN_PASSWORD`` or ``$MLFLOW_TRACKING_PASSWORD``."""
    env = dict(os.environ)
    if spec.auth:
        password = os.environ.get("MLFLOW_AUTH_ADMIN_PASSWORD") or os.environ.get("MLFLOW_TRACKING_PASSWORD")
        if not password:
            raise InputError(
                "--auth: set MLFLOW_AUTH_ADMIN_PASSWORD (or MLFLOW_TRACKING_PASSWORD) to the admin's "
                "password in the environment; it is never passed on the command line"
            )
        env["MLFLOW_AUTH_ADMIN_PASSWORD"] = password
        # The auth app's CSRF key: the user's if set, else a fresh one for this server's workers.
        env.setdefault("MLFLOW_FLASK_SERVER_SECRET_KEY", secrets.token_hex(32))
        env["MLFLOW_AUTH_CONFIG_PATH"] = str(_auth_config(spec, folder))
    return env


def start_server(spec: ServerSpec, folder: Path, log: Path | None = None, wait: float = 90) -> subprocess.Popen[bytes]:
    """Start ``mlflow server`` (in its own process group) and wait until it answers (``wait``
    seconds at most)."""
    Path(spec.artifacts_destination).mkdir(parents=True, exist_ok=True)
    env = server_env(spec, folder)
    out = open(log, "ab") if log else None  # noqa: SIM115 - the child keeps it; None: our stderr
    proc = subprocess.Popen(
        mlflow_server_command(spec),
        env=env,
        stdout=out if out else sys.stderr,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://{'127.0.0.1' if spec.host in ('0.0.0.0', '::') else spec.host}:{spec.port}"
    if not wait_http(url + "/health", wait, proc):
        code = proc.poll()
        stop_process(proc)
        where = f"; see {log}" if log else "; see its log above"
        what = f"exited with code {code}" if code is not None else f"did not answer within {wait:g} s"
        raise InputError(f"mlflow server on {url} {what}{where}")
    return proc


def wait_http(url: str, seconds: float, proc: subprocess.Popen[bytes] | None = None) -> bool:
    """Whether ``url`` answers (any HTTP status) within ``seconds`` (False once ``proc`` exits)."""
    import requests

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            requests.get(url, timeout=2)
            return True
        except requests.exceptions.RequestException:
            time.sleep(0.3)
    return False


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    """SIGTERM the process group of ``proc`` (the server and its workers), SIGKILL if it lingers."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    except ProcessLookupError:
        pass


def serve(
    spec: ServerSpec, postgres_dir: str | None = None, postgres_port: int = 5432, database: str = "mlflow"
) -> int:
    """``tagtune server``: start PostgreSQL (with ``postgres_dir``) and the MLflow server; run
    until interrupted, then stop both."""
    pg: LocalPostgres | None = None
    if postgres_dir:
        pg = LocalPostgres(Path(postgres_dir).resolve(), postgres_port)
        pg.init()
        if not (pg.data_dir / "postmaster.pid").exists():
            pg.start()
        spec.backend_store_uri = pg.create_database(database)
        studies = pg.create_database("optuna")
        print(
            f"PostgreSQL on 127.0.0.1:{postgres_port} (data in {pg.data_dir}): runs in {pg.uri(database)}; "
            f"for the Optuna studies pass --optuna-storage {studies}",
            file=sys.stderr,
        )
    elif not spec.backend_store_uri:
        raise InputError("tagtune server: pass --backend-store-uri postgresql://... or --postgres-dir DIR")
    folder = Path(spec.artifacts_destination).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    spec.artifacts_destination = str(folder)
    proc = None

    def _stop(signum: int, frame: Any) -> None:  # `kill PID` (systemd, a shell): stop both cleanly
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    try:
        proc = start_server(spec, folder.parent if folder.parent.is_dir() else folder)
        auth = " with basic auth" if spec.auth else ""
        print(
            f"MLflow server{auth} on http://{spec.host}:{spec.port} (store {spec.backend_store_uri}, "
            f"artifacts {folder}); point searches at it with --tracking-uri http://{spec.host}:{spec.port}. "
            "Ctrl-C stops it.",
            file=sys.stderr,
            flush=True,
        )
        return proc.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        if proc is not None:
            stop_process(proc)
        if pg is not None:
            pg.stop()
