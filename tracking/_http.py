"""An MLflow tracking server over HTTP: a fast probe before anything starts, short client retries.

MLflow's HTTP client retries a refused connection for minutes (7 retries, backoff factor 2);
tagtune asks the server once, with a short timeout, before a search, report, finalize or
predict starts, and turns what it hears into one line: nothing listening, not an MLflow server,
a wrong user or password (401), no permission (403).  Credentials are read from the variables
MLflow's own client reads (``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD``, or
``MLFLOW_TRACKING_TOKEN``) and never printed: messages name the user, never the password.
"""

from __future__ import annotations

import os
from typing import Any

from tagtune.errors import InputError

PROBE_PATH = "/api/2.0/mlflow/experiments/search"
PROBE_TIMEOUT = 15.0  # seconds (a refused connection fails at once); TAGTUNE_PROBE_TIMEOUT overrides
# MLflow client defaults tagtune sets unless the user set them: a stopped server costs seconds
# per call, not minutes (the search's callback buffers and retries on its own, see _buffer.py).
CLIENT_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
    # MLflow prints "View run ... at: URL" on stdout for every run ended against a server (and
    # fetches the run to do so): off, tagtune's output says where the search is.
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
}


def is_http(uri: str | None) -> bool:
    return bool(uri) and str(uri).startswith(("http://", "https://"))


def use_short_retries() -> None:
    """Set MLflow's HTTP retry and timeout variables to tagtune's defaults where unset."""
    for key, value in CLIENT_DEFAULTS.items():
        os.environ.setdefault(key, value)


def _auth() -> tuple[dict[str, str], Any]:
    """Headers and requests auth from MLflow's client variables (as MLflow's client sends them)."""
    token = os.environ.get("MLFLOW_TRACKING_TOKEN")
    if token:
        return {"Authorization": f"Bearer {token}"}, None
    user = os.environ.get("MLFLOW_TRACKING_USERNAME")
    password = os.environ.get("MLFLOW_TRACKING_PASSWORD")
    if user and password:
        return {}, (user, password)
    return {}, None


def _who() -> str:
    user = os.environ.get("MLFLOW_TRACKING_USERNAME")
    return f"user {user!r}" if user else "no user (MLFLOW_TRACKING_USERNAME is not set)"


def probe(uri: str, experiment: str | None = None, timeout: float | None = None) -> None:
    """Raise InputError naming ``uri`` unless an MLflow tracking server answers there and lets
    this user read (and, given ``experiment``, see that experiment).  Takes at most a few
    seconds whatever the server does."""
    import requests

    timeout = timeout if timeout is not None else float(os.environ.get("TAGTUNE_PROBE_TIMEOUT", PROBE_TIMEOUT))
    headers, auth = _auth()
    base = uri.rstrip("/")
    try:
        resp = requests.get(base + PROBE_PATH, params={"max_results": 1}, headers=headers, auth=auth, timeout=timeout)
    except requests.exceptions.Timeout:
        raise InputError(
            f"--tracking-uri {uri}: no answer within {timeout:g} s; check the server is running "
            "(`tagtune server`) and the host and port"
        ) from None
    except requests.exceptions.RequestException as exc:
        reason = type(exc).__name__
        if isinstance(exc, requests.exceptions.ConnectionError):
            reason = "connection refused or host unreachable"
        raise InputError(
            f"--tracking-uri {uri}: nothing answers there ({reason}); start the server "
            "(`tagtune server`) or fix the host and port"
        ) from None
    _check_status(uri, resp, "list experiments")
    try:
        body = resp.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise InputError(
            f"--tracking-uri {uri} answers HTTP but is not an MLflow tracking server "
            f"(GET {PROBE_PATH} gave no MLflow JSON); point it at `mlflow server` / `tagtune server`"
        )
    if experiment:
        resp = requests.get(
            base + "/api/2.0/mlflow/experiments/get-by-name",
            params={"experiment_name": experiment},
            headers=headers,
            auth=auth,
            timeout=timeout,
        )
        if resp.status_code != 404:  # 404: the experiment does not exist yet (it will be created)
            _check_status(uri, resp, f"read experiment {experiment!r}", experiment)


def _check_status(uri: str, resp: Any, what: str, experiment: str | None = None) -> None:
    if resp.status_code == 401:
        raise InputError(
            f"--tracking-uri {uri}: the server refused the credentials of {_who()} (HTTP 401); set "
            "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD to a user of that server"
        )
    if resp.status_code == 403:
        on = f"experiment {experiment!r}" if experiment else "this server"
        raise InputError(
            f"--tracking-uri {uri}: {_who()} has no permission on {on} (HTTP 403, could not {what}); "
            "ask its owner or an admin to grant it, or use another --experiment"
        )
    if resp.status_code == 404 and experiment is None:
        raise InputError(
            f"--tracking-uri {uri} answers HTTP but is not an MLflow tracking server "
            f"(HTTP 404 for {PROBE_PATH}); point it at `mlflow server` / `tagtune server`"
        )
    if resp.status_code >= 400:
        raise InputError(
            f"--tracking-uri {uri}: the server answered HTTP {resp.status_code} when asked to {what}; "
            "check the server's log"
        )


def permission_message(uri: str, exc: Exception, experiment: str | None = None) -> str | None:
    """One line for an MLflow REST error that is about access (401/403), else None."""
    code = getattr(exc, "error_code", "")
    if code == "PERMISSION_DENIED" or ("403" in str(exc)[:300] and "permission" in str(exc).lower()):
        on = f"experiment {experiment!r}" if experiment else "what it asked for"
        return (
            f"--tracking-uri {uri}: {_who()} has no permission on {on} (HTTP 403: {str(exc).splitlines()[0][:160]}); "
            "ask its owner or an admin to grant it (EDIT to log runs), or use another --experiment"
        )
    if code == "UNAUTHENTICATED" or "401" in str(exc)[:300]:
        return (
            f"--tracking-uri {uri}: the server refused the credentials of {_who()} (HTTP 401); set "
            "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD to a user of that server"
        )
    return None
