"""Opening an MLflow store: default URI, experiment with a local artifact root, clear errors."""

from __future__ import annotations

import os
import re
from pathlib import Path

from mlflow import MlflowClient
from mlflow.entities import Experiment, Run

from tagtune.errors import InputError
from tagtune.names import Tag
from tagtune.tracking._http import is_http, permission_message, probe, use_short_retries
from tagtune.tracking._sqlite import ready_store
from tagtune.tracking.schema import RunKind, kind_filter

DEFAULT_DB = "mlflow.db"
# Old names of the schema's tag keys, kept for the modules that still import them.
TAG_FAMILY = Tag.FAMILY
TAG_KIND = Tag.KIND
TAG_TRIAL = Tag.TRIAL_ID
TAG_PARENT = Tag.PARENT


def default_tracking_uri() -> str:
    """$MLFLOW_TRACKING_URI if set, else a SQLite file ``mlflow.db`` in the working directory."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / DEFAULT_DB}"


def normalize_uri(uri: str | None) -> str:
    """A tracking URI with local paths made absolute (``sqlite:///rel.db`` -> absolute)."""
    uri = uri or default_tracking_uri()
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        uri = f"sqlite:///{Path(uri[len('sqlite:///') :]).resolve()}"
    elif "://" not in uri:
        raise InputError(f"--tracking-uri {uri!r} is not a URI; use e.g. sqlite:///mlflow.db or http://host:5000")
    return uri


def check_tracking_uri(uri: str | None, experiment: str | None = None) -> str:
    """``uri`` (or the default) normalized; an HTTP server probed as :func:`open_store` does, a
    SQLite file's schema made ready (:func:`ready_store`)."""
    uri = normalize_uri(uri)
    if is_http(uri):
        use_short_retries()
        probe(uri, experiment)
    try:
        return ready_store(uri)
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - as open_store: the store cannot be opened
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"cannot open MLflow tracking URI {uri}: {first[:200]}; check --tracking-uri") from None


def access_error(exc: BaseException, argv: object = None) -> str | None:
    """One line for an MLflow error about access (HTTP 401/403) raised mid-command, else None:
    e.g. a user who may read an experiment but not log runs in it."""
    from mlflow.exceptions import MlflowException

    if not isinstance(exc, MlflowException):
        return None
    uri = os.environ.get("MLFLOW_TRACKING_URI") or "the tracking server"
    args = list(argv) if isinstance(argv, (list, tuple)) else []
    experiment = None
    for flag, value in zip(args, args[1:], strict=False):
        if flag == "--tracking-uri":
            uri = str(value)
        elif flag == "--experiment":
            experiment = str(value)
    return permission_message(uri, exc, experiment)


def ui_command(uri: str) -> str:
    """The command that opens the MLflow UI on ``uri`` (bound to 127.0.0.1); a server's own URL."""
    if is_http(uri):
        # MLflow 3.17's UI opens experiments in its GenAI view unless told (its switch's URL value)
        return f"open {uri.rstrip('/')}/#/experiments?workflowType=machine_learning in a browser (the server's UI)"
    return f"mlflow ui --backend-store-uri {uri} --host 127.0.0.1 --port 5000"


def _local_root(uri: str) -> Path | None:
    """The folder holding a local SQLite store, where artifacts go beside it."""
    if uri.startswith("sqlite:///"):
        return Path(uri[len("sqlite:///") :]).parent
    return None


def open_store(uri: str | None, experiment: str | None = None) -> tuple[MlflowClient, str]:
    """A client on ``uri`` that has been checked to answer; InputError when it cannot be opened.

    An HTTP server is probed first with a short timeout (nothing listening, not MLflow, a wrong
    password, no permission on ``experiment``: one line within seconds, see ``_http.probe``)."""
    uri = normalize_uri(uri)
    if is_http(uri):
        use_short_retries()
        probe(uri, experiment)
    root = _local_root(uri)
    if root is not None and not root.is_dir():
        raise InputError(f"--tracking-uri {uri}: folder {root} does not exist; create it or pick another path")
    if root is not None and not os.access(root, os.W_OK):
        raise InputError(f"--tracking-uri {uri}: folder {root} is not writable; pick another path")
    try:
        ready_store(uri)  # a new or old SQLite file: created or migrated by one process at a time
        client = MlflowClient(tracking_uri=uri)
        client.search_experiments(max_results=1)
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure here means "cannot open the store"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"cannot open MLflow tracking URI {uri}: {first[:200]}; check --tracking-uri") from None
    return client, uri


def safe_name(name: str) -> str:
    """``name`` with every run of characters other than letters, digits, ``_.-`` made ``_``
    (a folder or registry name)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name) or "experiment"


_safe = safe_name  # the old name, kept for its importers


def get_or_create_experiment(client: MlflowClient, uri: str, name: str) -> Experiment:
    """The experiment ``name``, created with artifacts beside a local SQLite store."""
    from tagtune.tracking._ui import EXPERIMENT_KIND

    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if Tag.EXPERIMENT_KIND not in exp.tags:  # made before tagtune set it: best effort
            try:
                client.set_experiment_tag(exp.experiment_id, Tag.EXPERIMENT_KIND, EXPERIMENT_KIND)
            except Exception:  # noqa: BLE001 - a user who may only log runs keeps the UI's default view
                pass
        return exp
    root = _local_root(uri)
    location = (root / "mlartifacts" / safe_name(name)).as_uri() if root is not None else None
    # the kind makes MLflow 3's UI open the experiment on its runs, not the GenAI view
    try:
        exp_id = client.create_experiment(name, artifact_location=location, tags={Tag.EXPERIMENT_KIND: EXPERIMENT_KIND})
    except Exception:
        # another driver created it a moment ago (two searches started at once): use that one
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp
    return client.get_experiment(exp_id)


def find_experiment(client: MlflowClient, uri: str, name: str) -> Experiment:
    """An existing experiment, or an InputError that lists the ones there are."""
    exp = client.get_experiment_by_name(name)
    if exp is None:
        names = [e.name for e in client.search_experiments(max_results=50) if e.name != "Default"]
        hint = f"experiments in {uri}: {', '.join(names)}" if names else f"{uri} has no experiments"
        raise InputError(f"no experiment named {name!r} ({hint}); check --experiment or --tracking-uri")
    return exp


def latest_search_run(client: MlflowClient, experiment: Experiment, run_id: str | None = None) -> Run:
    """The search's parent run: ``run_id`` if given, else the newest search run."""
    if run_id:
        return client.get_run(run_id)
    runs = client.search_runs(
        [experiment.experiment_id],
        filter_string=kind_filter(RunKind.SEARCH),
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if not runs:
        raise InputError(f"experiment {experiment.name!r} has no tagtune search run; run `tagtune search` first")
    return runs[0]
