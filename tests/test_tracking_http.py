"""HTTP tracking URIs without a server of our own: nothing listening, a web server that is not
MLflow; the search's status line; what the UI metadata records.  (A real MLflow server on
PostgreSQL: tests/test_service.py.)"""

from __future__ import annotations

import http.server
import io
import threading
import time
from types import SimpleNamespace

import pytest

from tagtune.cli import main
from tagtune.server import free_port
from tagtune.tracking import hide_secrets, source_tags
from tagtune.tune.progress import SearchProgress, format_seconds


@pytest.fixture
def not_mlflow():
    """A plain HTTP server (Python's), answering 404 to MLflow's API."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.mark.parametrize("command", ["report", "export", "resume"])
def test_nothing_listening_fails_in_seconds(command, capsys, workdir):
    url = f"http://127.0.0.1:{free_port()}"
    args = [command, "--experiment", "x", "--tracking-uri", url] + (["--out", "o"] if command == "export" else [])
    t0 = time.monotonic()
    assert main(args) == 2
    assert time.monotonic() - t0 < 10
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("tagtune: error: --tracking-uri " + url)
    assert "nothing answers there" in err[0]


def test_not_an_mlflow_server(not_mlflow, capsys, workdir, tiny_train):
    argv = ["search", "--train", str(tiny_train), "--families", "fc1", "--tracking-uri", not_mlflow]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"--tracking-uri {not_mlflow} answers HTTP but is not an MLflow tracking server" in err
    assert not (workdir / "tagtune-runs").exists()


def test_predict_probes_the_server_of_a_models_uri(capsys, workdir, tiny_train):
    url = f"http://127.0.0.1:{free_port()}"
    assert main(["predict", "--model", "models:/m/1", "--input", str(tiny_train), "--tracking-uri", url]) == 2
    assert "nothing answers there" in capsys.readouterr().err


def test_secrets_hidden_and_source_recorded(monkeypatch):
    assert (
        hide_secrets("--optuna-storage postgresql://bob:s3cret@db:5432/o")
        == "--optuna-storage postgresql://bob:***@db:5432/o"
    )
    monkeypatch.setattr("sys.argv", ["tagtune", "search", "--optuna-storage", "postgresql://bob:s3cret@db/o"])
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "bob")
    tags = source_tags()
    assert tags["mlflow.user"] == "bob" and "s3cret" not in tags["tagtune.command"]
    assert tags["mlflow.source.name"] == "tagtune search"
    assert tags["tagtune.command"].startswith("tagtune search --optuna-storage postgresql://bob:***@")
    assert len(tags.get("mlflow.source.git.commit", "0" * 40)) == 40


def _trial(tid: str, family: str) -> SimpleNamespace:
    return SimpleNamespace(trial_id=tid, config={"family": family}, last_result={})


def test_progress_line_counts_best_and_eta():
    now = [0.0]
    out = io.StringIO()
    p = SearchProgress(4, 2, stream=out, tty=False, clock=lambda: now[0])
    a, b = _trial("a", "fc1"), _trial("b", "fc2")
    p.on_trial_start(0, [], a)
    p.on_trial_start(0, [], b)
    now[0] = 10.0
    p.on_trial_result(0, [], a, {"epoch": 2, "val_mAUC": 0.7})
    p.on_trial_result(0, [], b, {"epoch": 1, "val_mAUC": 0.8})
    assert out.getvalue() == ""  # not a terminal: a status line per finished trial only
    p.detail("    fc1 a epoch 2: ...")
    p.on_trial_complete(0, [], a)
    lines = out.getvalue().splitlines()
    assert lines[0] == "    fc1 a epoch 2: ..."
    # 1 done + b half way = 1.5 of 4 trials in 10 s: 16.7 s left
    assert lines[1] == (
        "[search] trials 1 done / 1 running / 2 left | best val_mAUC: fc2 0.8000, fc1 0.7000 | 10s elapsed, ETA 17s"
    )


def test_progress_redraws_in_place_on_a_terminal():
    out = io.StringIO()
    p = SearchProgress(2, 1, stream=out, tty=True, clock=lambda: 5.0)
    t = _trial("a", "fc1")
    p.on_trial_start(0, [], t)
    p.on_trial_result(0, [], t, {"epoch": 1, "val_mAUC": 0.75})
    p.detail("    fc1 a epoch 1: ...")  # dropped: the status line says it
    p.say("[1/2] fc1 a finished")
    text = out.getvalue()
    assert "\n" not in text.split("[1/2] fc1 a finished")[0]  # status redrawn with \r, no new lines
    assert text.count("\r\x1b[K") >= 3 and "epoch 1: ..." not in text
    assert text.endswith("[search] trials 0 done / 1 running / 1 left | best val_mAUC: fc1 0.7500 | 0s elapsed, ETA 0s")
    assert format_seconds(3700) == "1h01m" and format_seconds(75) == "1m15s"


def test_server_command_binds_localhost_and_keeps_the_password_off_it(tmp_path, monkeypatch):
    from tagtune.errors import InputError
    from tagtune.server import ServerSpec, mlflow_server_command, server_env

    spec = ServerSpec("postgresql://u@127.0.0.1:5433/mlflow", str(tmp_path / "art"), auth=True)
    cmd = mlflow_server_command(spec)
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1" and "--serve-artifacts" in cmd
    assert cmd[cmd.index("--app-name") + 1] == "basic-auth"
    assert cmd[cmd.index("--backend-store-uri") + 1].startswith("postgresql+psycopg2://")
    monkeypatch.delenv("MLFLOW_AUTH_ADMIN_PASSWORD", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    with pytest.raises(InputError, match="MLFLOW_AUTH_ADMIN_PASSWORD"):
        server_env(spec, tmp_path)
    monkeypatch.setenv("MLFLOW_AUTH_ADMIN_PASSWORD", "a-secret-of-12+")
    env = server_env(spec, tmp_path)
    assert env["MLFLOW_AUTH_ADMIN_PASSWORD"] == "a-secret-of-12+"
    ini = (tmp_path / "basic_auth.ini").read_text()
    assert "a-secret-of-12+" not in " ".join(cmd) + ini
    # a checked password is trusted for a minute: hashing it on every request made each one 0.6 s
    assert "auth_cache_ttl_seconds = 60\n" in ini
    with pytest.raises(InputError, match="--auth-cache-seconds -1"):
        server_env(ServerSpec("postgresql://u@127.0.0.1:5433/mlflow", "a", auth=True, auth_cache_seconds=-1), tmp_path)
    with pytest.raises(InputError, match="--backend-store-uri"):
        mlflow_server_command(ServerSpec("http://x", "a"))


def test_writes_are_kept_in_order_while_the_server_is_away(monkeypatch):
    """Nothing listens: the callback's writes queue up (a run gets a placeholder id) instead of
    failing the search; what is still queued at the end is counted and said."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    from tagtune.tracking._buffer import BufferedWrites
    from tagtune.tracking._http import use_short_retries

    use_short_retries()
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    url = f"http://127.0.0.1:{free_port()}"
    said: list[str] = []
    writes = BufferedWrites(MlflowClient(url), said.append, url)
    run = writes.create_run("1", run_name="fc1-x", tags={})
    assert run.info.run_id == "pending-1"
    writes.log_batch(run.info.run_id, metrics=[Metric("val_mAUC", 0.6, 0, 1)])
    writes.set_terminated(run.info.run_id, "FINISHED")
    assert [op.method for op in writes.queue] == ["create_run", "log_batch", "set_terminated"]
    assert len(said) == 1 and said[0].startswith(f"MLflow at {url} does not answer; training goes on")
    assert writes.drain(wait=0) == 3 and "waiting up to 0 s" in said[-1]
