"""``tagtune predict``: the top K labels, with names and scores, of every clip of a data set.

The model is a registered model (``models:/name/version``), a run's model or checkpoint
(``runs:/RUN_ID[/PATH]``), or a local checkpoint folder (``model.pt`` + ``model.json``) or MLflow
model folder.  Clips come from a TFRecord folder, an HDF5 file or a tagtune cache.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tagtune.trainables.errors import InputError

FORMATS = ("json", "csv")


@dataclass
class Scorer:
    """Scores clips with a loaded model: ``scores(x uint8 [N, T, F]) -> float32 [N, C]``."""

    class_names: list[str]
    model: Any
    kind: str

    def scores(self, x: np.ndarray, batch: int = 4096) -> np.ndarray:
        """Probabilities ``[N, C]`` for clips ``x``."""
        out = []
        for i in range(0, len(x), batch):
            chunk = x[i : i + batch]
            if self.kind == "pyfunc":
                out.append(self.model.predict(chunk.astype(np.float32)).to_numpy(np.float32))
            else:
                out.append(self.model.scores(chunk))
        return np.concatenate(out) if out else np.zeros((0, len(self.class_names)), np.float32)


class _CheckpointScorer:
    """A checkpoint folder scored in-process (same rules as the pyfunc model)."""

    def __init__(self, folder: Path):
        from tagtune.trainables.trial import load_model

        self.model, self.meta = load_model(folder)

    def scores(self, x: np.ndarray) -> np.ndarray:
        from tagtune.scoring import score_clips
        from tagtune.tracking.registry import clip_inputs

        clips = clip_inputs(x, int(self.meta["n_frames"]), int(self.meta["n_features"]))
        return score_clips(self.model, clips).astype(np.float32)


def load_scorer(uri: str, tracking_uri: str | None = None) -> Scorer:
    """A :class:`Scorer` for a model reference (see the module docstring)."""
    import mlflow.pyfunc

    from tagtune.tracking.registry import resolve_checkpoint, unique_names

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    kind, folder = resolve_checkpoint(uri, tracking_uri)
    if kind == "checkpoint":
        scorer = _CheckpointScorer(folder)
        cfg = scorer.meta.get("config", {})
        names = scorer.meta.get("class_names") or [str(i) for i in range(int(scorer.meta["n_classes"]))]
        if cfg.get("target_class") not in (None, "None", ""):
            names = [str(cfg["target_class"])]
        return Scorer(unique_names(names), scorer, kind)
    try:
        model = mlflow.pyfunc.load_model(str(folder))
    except Exception as exc:  # noqa: BLE001 - a folder that is not a loadable model
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise InputError(f"--model {uri}: cannot load the MLflow model ({first})") from None
    outputs = model.metadata.get_output_schema()
    names = outputs.input_names() if outputs is not None else []
    return Scorer(list(names), model, kind)


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row the indices of the ``k`` highest scores (highest first) and those scores."""
    k = min(k, scores.shape[1])
    idx = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return idx, np.take_along_axis(scores, idx, axis=1)


def predictions(uri: str, input_path: str, *, k: int = 5, tracking_uri: str | None = None) -> Iterator[dict[str, Any]]:
    """For each clip of ``input_path``: ``{"id", "labels": [{"rank", "index", "name", "score"}]}``."""
    from tagtune.trainables.data import load_dataset

    if k < 1:
        raise InputError(f"--top-k must be at least 1, got {k}")
    if not Path(input_path).exists():
        raise InputError(
            f"--input {input_path}: no such file or folder; pass a folder of *.tfrecord, an .h5 file or a tagtune cache"
        )
    scorer = load_scorer(uri, tracking_uri)
    try:
        ds = load_dataset(input_path)
    except InputError as exc:
        raise InputError(f"--input {input_path}: {exc}") from None
    x = np.asarray(ds.x)
    for start in range(0, len(x), 4096):
        scores = scorer.scores(x[start : start + 4096])
        if scores.shape[1] != len(scorer.class_names):
            raise InputError(
                f"--model {uri} gives {scores.shape[1]} scores per clip but names "
                f"{len(scorer.class_names)} classes; re-log the model"
            )
        idx, top = top_k(scores, k)
        for row in range(len(scores)):
            yield {
                "id": str(ds.ids[start + row]),
                "labels": [
                    {"rank": r + 1, "index": int(i), "name": scorer.class_names[int(i)], "score": float(s)}
                    for r, (i, s) in enumerate(zip(idx[row], top[row], strict=True))
                ],
            }


def format_predictions(items: Iterator[dict[str, Any]], fmt: str = "json") -> Iterator[str]:
    """Lines of output: JSON (one object per clip per line) or CSV (``id,rank,index,label,score``)."""
    if fmt not in FORMATS:
        raise InputError(f"--format {fmt!r}: choose json or csv")
    if fmt == "json":
        for item in items:
            yield json.dumps(
                {
                    "id": item["id"],
                    "labels": [
                        {"name": lab["name"], "index": lab["index"], "score": round(lab["score"], 6)}
                        for lab in item["labels"]
                    ],
                },
                ensure_ascii=False,
            )
        return
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="")
    writer.writerow(["id", "rank", "index", "label", "score"])
    yield buf.getvalue()
    for item in items:
        for lab in item["labels"]:
            buf.seek(0)
            buf.truncate()
            writer.writerow([item["id"], lab["rank"], lab["index"], lab["name"], f"{lab['score']:.6f}"])
            yield buf.getvalue()
