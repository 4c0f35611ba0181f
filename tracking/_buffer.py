"""The search callback's writes, kept in order and retried while the tracking server is away.

A search against ``tagtune server`` must not stop training because the server restarts: every
write of :class:`~tagtune.tune.callback.MlflowTrialLogger` goes through
:class:`BufferedWrites`, which sends it at once when the server answers and otherwise queues it
(a run created while the server is away gets a placeholder id, replaced by the real one when
its creation goes through; a checkpoint folder is copied so it outlives Ray's temporary one) and
retries the queue, in order, every few seconds.  At the end of the search :meth:`drain` waits
for the server (``TAGTUNE_MLFLOW_WAIT`` seconds, default 120) and says what could not be written.
Errors that are not about reaching the server (a bad parameter, no permission) are raised.
On a SQLite store each call is retried while SQLite says the database is locked (another
command writing the same file), within a bound (``tagtune.tracking._sqlite.retry_locked``).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from mlflow import MlflowClient

from tagtune.tracking._sqlite import retry_locked

RETRY_SECONDS = 5.0
_TRANSIENT_CODES = ("TEMPORARILY_UNAVAILABLE", "INTERNAL_ERROR", "REQUEST_LIMIT_EXCEEDED")
_TRANSIENT_WORDS = ("Max retries exceeded", "Connection refused", "ConnectionError", "timed out", "Read timed out")


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` says the server could not be reached (or failed on its side: 5xx)."""
    import requests

    if isinstance(exc, (requests.exceptions.RequestException, ConnectionError, TimeoutError)):
        return True
    code = str(getattr(exc, "error_code", ""))
    text = str(exc)[:2000]
    if code in _TRANSIENT_CODES and "PERMISSION" not in text:
        return True
    return any(word in text for word in _TRANSIENT_WORDS) or re.search(r"error code 5\d\d", text) is not None


@dataclass
class _Op:
    method: str
    run_id: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    cleanup: str | None = None  # a temporary copy to remove once written


class BufferedWrites:
    """The subset of :class:`mlflow.MlflowClient` the search callback uses, buffered."""

    def __init__(self, client: MlflowClient, echo: Callable[[str], None], uri: str = "") -> None:
        self.client = client
        self.echo = echo
        self.uri = uri or str(client.tracking_uri)
        self.queue: deque[_Op] = deque()
        self.ids: dict[str, str] = {}  # placeholder -> real run id
        self.down_since: float | None = None
        self.last_try = 0.0
        self.n_pending = 0
        self.written_late = 0

    # -- reads go straight through -----------------------------------------------------------
    def search_runs(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("search_runs", *args, **kwargs)

    def get_metric_history(self, run_id: str, key: str) -> Any:
        return self._call("get_metric_history", run_id, key)

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """``self.client.<method>(...)``: one MLflow call (one transaction), retried while a
        SQLite store is locked by another process."""
        fn = getattr(self.client, method)
        return retry_locked(lambda: fn(*args, **kwargs), self.uri)

    @property
    def tracking_uri(self) -> str:
        return str(self.client.tracking_uri)

    # -- writes ------------------------------------------------------------------------------
    def create_run(self, experiment_id: str, run_name: str | None = None, tags: dict[str, str] | None = None) -> Any:
        self.n_pending += 1
        placeholder = f"pending-{self.n_pending}"
        self._submit(_Op("create_run", placeholder, (experiment_id,), {"run_name": run_name, "tags": tags}))
        return SimpleNamespace(info=SimpleNamespace(run_id=self.ids.get(placeholder, placeholder)))

    def log_batch(self, run_id: str, **kwargs: Any) -> None:
        self._submit(_Op("log_batch", run_id, (), kwargs))

    def log_inputs(self, run_id: str, datasets: list[Any]) -> None:
        self._submit(_Op("log_inputs", run_id, (), {"datasets": datasets}))

    def set_tag(self, run_id: str, key: str, value: str) -> None:
        self._submit(_Op("set_tag", run_id, (key, value)))

    def set_terminated(self, run_id: str, status: str = "FINISHED") -> None:
        self._submit(_Op("set_terminated", run_id, (status,)))

    def log_artifacts(
        self,
        run_id: str,
        local_dir: str,
        artifact_path: str | None = None,
        _method: str = "log_artifacts",
        _extra: tuple[Any, ...] = (),
    ) -> None:
        op = _Op(_method, run_id, (local_dir, artifact_path, *_extra))
        if self.queue:  # the server is away: keep a copy (Ray's folder is temporary)
            self._keep_copy(op)
        self.queue.append(op)
        if not self.flush() and op.cleanup is None:  # failed just now: copy before Ray removes it
            self._keep_copy(op)

    @staticmethod
    def _keep_copy(op: _Op) -> None:
        copy = tempfile.mkdtemp(prefix="tagtune-pending-")
        shutil.copytree(op.args[0], copy, dirs_exist_ok=True)
        op.args, op.cleanup = (copy, *op.args[1:]), copy

    def log_checkpoint_model(
        self, run_id: str, experiment_id: str, name: str, local_dir: str, tags: dict[str, str]
    ) -> None:
        """The checkpoint as an MLflow 3 logged model of ``run_id`` (the UI's Models tab and
        the run's "Logged models" list it): created, its files uploaded, marked READY."""
        self.log_artifacts(run_id, local_dir, None, _method="_logged_model", _extra=(experiment_id, name, tags))

    def _logged_model(
        self, run_id: str, local_dir: str, _: Any, experiment_id: str, name: str, tags: dict[str, str]
    ) -> None:
        from mlflow.entities import LoggedModelOutput, LoggedModelStatus

        model = self._call(
            "create_logged_model",
            experiment_id,
            name=name,
            source_run_id=run_id,
            tags=tags,
            model_type="tagtune-checkpoint",
        )
        self._call("log_model_artifacts", model.model_id, local_dir)
        self._call("finalize_logged_model", model.model_id, LoggedModelStatus.READY)
        # the run's outputs: what its page's "Logged models" list and the model's "Source run" read
        self._call("log_outputs", run_id, [LoggedModelOutput(model.model_id, step=0)])

    def _submit(self, op: _Op) -> None:
        self.queue.append(op)
        self.flush()

    # -- sending -----------------------------------------------------------------------------
    def _send(self, op: _Op) -> None:
        run_id = self.ids.get(op.run_id, op.run_id)
        if op.method == "create_run":
            run = self._call("create_run", *op.args, **op.kwargs)
            self.ids[op.run_id] = run.info.run_id
            return
        if run_id.startswith("pending-"):
            raise RuntimeError(f"run {run_id} was never created")  # cannot happen: ops run in order
        if op.method.startswith("_"):  # several calls, each retried on its own
            getattr(self, op.method)(run_id, *op.args, **op.kwargs)
        else:
            self._call(op.method, run_id, *op.args, **op.kwargs)
        if op.cleanup:
            shutil.rmtree(op.cleanup, ignore_errors=True)

    def flush(self, force: bool = False) -> bool:
        """Send what is queued, in order; False (and the rest kept) when the server is away."""
        if not self.queue:
            return True
        now = time.monotonic()
        if self.down_since is not None and not force and now - self.last_try < RETRY_SECONDS:
            return False
        self.last_try = now
        while self.queue:
            op = self.queue[0]
            try:
                self._send(op)
            except Exception as exc:
                if not is_transient(exc):
                    raise
                if self.down_since is None:
                    self.down_since = now
                    self.echo(
                        f"MLflow at {self.uri} does not answer; training goes on, its writes are kept "
                        f"and retried every {RETRY_SECONDS:g} s"
                    )
                return False
            self.queue.popleft()
            if self.down_since is not None:
                self.written_late += 1
        if self.down_since is not None:
            self.echo(
                f"MLflow at {self.uri} answers again after {time.monotonic() - self.down_since:.0f} s: "
                f"{self.written_late} kept writes logged"
            )
            self.down_since, self.written_late = None, 0
        return True

    def drain(self, wait: float | None = None) -> int:
        """Wait up to ``wait`` seconds (``TAGTUNE_MLFLOW_WAIT``, default 120) for the queue to be
        written; the number of writes still not logged."""
        wait = float(os.environ.get("TAGTUNE_MLFLOW_WAIT", 120)) if wait is None else wait
        deadline = time.monotonic() + wait
        if self.queue:
            self.echo(f"waiting up to {wait:.0f} s for MLflow at {self.uri} to log {len(self.queue)} kept writes")
        while not self.flush(force=True) and time.monotonic() < deadline:
            time.sleep(min(RETRY_SECONDS, max(0.0, deadline - time.monotonic())))
        return len(self.queue)
