"""What MLflow's UI reads beyond params and metrics: source, user, experiment kind, data set.

MLflow's fluent API sets ``mlflow.source.*`` and ``mlflow.user`` on the runs it starts;
tagtune creates runs with ``MlflowClient`` (one writer, no global state), so it sets them
itself: the command line (any password in a URL shown as ``***``), the git commit of tagtune's
checkout, the user (``$MLFLOW_TRACKING_USERNAME``, else the login name).  An experiment gets
``mlflow.experimentKind = custom_model_development`` so MLflow 3's UI opens it on the training
runs, not the GenAI (traces) view.  The training data is an MLflow dataset input (name, source,
digest) of the search run and of every trial's run, shown in the UI's Datasets column.
"""

from __future__ import annotations

import functools
import getpass
import hashlib
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
from mlflow.entities import Dataset, DatasetInput, InputTag

from tagtune.names import Tag

EXPERIMENT_KIND = "custom_model_development"  # MLflow 3.17's UI: the "machine learning" view
_URL_PASSWORD = re.compile(r"(://[^:/@\s]+):[^@\s]+@")


def hide_secrets(text: str) -> str:
    """``text`` with the password of every ``scheme://user:password@host`` shown as ``***``."""
    return _URL_PASSWORD.sub(r"\1:***@", text)


@functools.lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The commit of tagtune's own git checkout, None when it is not one."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and re.fullmatch(r"[0-9a-f]{40}", commit) else None


def run_user() -> str:
    """Who runs this: the tracking server's user if one is set, else the login name."""
    user = os.environ.get("MLFLOW_TRACKING_USERNAME")
    if user:
        return user
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no login name (a container without one)
        return "unknown"


def source_tags() -> dict[str, str]:
    """``mlflow.source.name`` (``tagtune search``), ``.type``, ``.git.commit``, ``mlflow.user``
    and ``tagtune.command`` (the command line)."""
    command = "tagtune " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    sub = next((a for a in sys.argv[1:] if not a.startswith("-")), "")
    tags = {
        # the UI shows the source name's last path segment: the subcommand; the whole command
        # line is tagtune.command
        Tag.SOURCE_NAME: f"tagtune {sub}".strip(),
        Tag.COMMAND: hide_secrets(command)[:5000],
        Tag.SOURCE_TYPE: "LOCAL",
        Tag.USER: run_user(),
    }
    commit = git_commit()
    if commit:
        tags[Tag.SOURCE_COMMIT] = commit
    return tags


def data_digest(data: Any) -> str:
    """A short digest of a search's data: its clips (embedding arrays), labels and split."""
    h = hashlib.sha256()
    x = getattr(getattr(data, "clips", None), "x", None)
    if x is None:  # a data set as read (finalize's --train and eval clips), not a TrialData
        x = getattr(data, "x", None)
    for part in (x, getattr(data, "y", None), getattr(data, "train_idx", None), getattr(data, "val_idx", None)):
        if isinstance(part, np.ndarray):
            h.update(np.ascontiguousarray(part).view(np.uint8).data)
    h.update(repr(getattr(data, "class_names", ())).encode())
    return h.hexdigest()[:16]


def dataset_input(
    train: str, data: Any, context: str = "training", profile: dict[str, int] | None = None
) -> DatasetInput:
    """Data as an MLflow dataset input (name, source, digest): by default the search's training
    data (a TrialData, its split in the profile); ``profile`` for other data (finalize's)."""
    path = Path(train).resolve()
    if profile is None:
        profile = {
            "train_clips": len(data.train_idx),
            "validation_clips": len(data.val_idx),
            "classes": len(data.class_names) or int(data.y.shape[1]),
        }
    dataset = Dataset(
        name=path.name or str(path),
        digest=data_digest(data),
        source_type="local",
        source=str(path),
        profile=json.dumps(profile),
    )
    return DatasetInput(dataset, tags=[InputTag("mlflow.data.context", context)])
