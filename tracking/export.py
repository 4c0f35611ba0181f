"""Best configs per family as YAML files, and reading them back for ``tagtune train``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from tagtune.errors import InputError
from tagtune.names import Metrics
from tagtune.tracking.trials import TrialRow, typed_param


def config_document(row: TrialRow, experiment: str) -> dict[str, Any]:
    """The YAML document of one trial: family, full config, and where it came from."""
    config = {k: typed_param(v) for k, v in sorted(row.params.items()) if k != "family"}
    return {
        "family": row.family,
        "config": config,
        "source": {
            "experiment": experiment,
            "run_id": row.run_id,
            Metrics.VAL_MAUC: round(row.best_mAUC, 6),
            Metrics.VAL_MAP: round(row.best_mAP, 6),
        },
    }


def write_configs(best: dict[str, TrialRow], experiment: str, out_dir: str | os.PathLike[str]) -> list[Path]:
    """Write ``<family>.yaml`` per family into ``out_dir`` (``best``: ``Trials.best()``); returns the paths."""
    folder = Path(out_dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for family, row in sorted(best.items()):
            path = folder / f"{family}.yaml"
            path.write_text(yaml.safe_dump(config_document(row, experiment), sort_keys=False))
            paths.append(path)
    except OSError as exc:
        raise InputError(f"--out {folder}: cannot write there ({exc.strerror}); pick a writable folder") from None
    return paths


def read_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A trial config from YAML: an exported document (family + config) or a flat mapping."""
    p = Path(path)
    try:
        doc = yaml.safe_load(p.read_text())
    except FileNotFoundError:
        raise InputError(f"--config {p}: no such file; export one with `tagtune export`") from None
    except yaml.YAMLError as exc:
        raise InputError(f"--config {p} is not valid YAML ({str(exc).splitlines()[0]}); fix the syntax") from None
    if not isinstance(doc, dict) or "family" not in doc:
        raise InputError(f"--config {p}: expected a mapping with a 'family' key (as `tagtune export` writes)")
    config = dict(doc.get("config") or {k: v for k, v in doc.items() if k != "source"})
    config["family"] = doc["family"]
    return config
