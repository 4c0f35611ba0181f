"""``tagtune predict``: the top K labels, with names and scores, of every clip of a data set.

The model is a registered model (``models:/name/version``), a run's model or checkpoint
(``runs:/RUN_ID[/PATH]``), or a local checkpoint folder (``model.pt`` + ``model.json``) or MLflow
model folder.  An embedding model's clips come from a TFRecord folder, an HDF5 file or a tagtune
cache.  A raw-audio model (``densenet_audio``) tags audio files: a wav/flac/ogg file, a folder of
them (searched recursively), or a CSV of files (a ``path``/``file``/``filename``/``fname`` column,
relative to the CSV's folder, or one of the data sets' CSV styles).  Each file is decoded at its
own rate, resampled to the model's, and a file longer than the model's ``crop_samples`` is
scored in windows of ``crop_samples`` (hop half of it, the last window ending at the file's end)
whose probabilities are averaged (:func:`tagtune.trainables.audio.inference.sliding_windows`).
A file that cannot be tagged (corrupt, empty, silent, a rate below the model's) is reported
through ``on_error`` and the others are still tagged; when none could be, an :class:`InputError`.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tagtune.errors import InputError

FORMATS = ("json", "csv")
PATH_COLUMNS = ("path", "file", "filename", "fname", "file_path")
"""The column of a plain CSV of audio files that ``tagtune predict`` reads (the first present)."""


@dataclass
class Scorer:
    """A loaded model, however it was referenced: a pyfunc model (``models:/``, ``runs:/``, an
    MLflow model folder) or a checkpoint folder wrapped in-process in the same
    :class:`~tagtune.tracking.serving.TaggerModel` that registered models run, so both score
    alike (:mod:`tagtune.trainables.inference`).  ``audio``: the model reads recordings
    (:meth:`file_scores`), else embedding clips (:meth:`scores`)."""

    class_names: list[str]
    model: Any
    """``predict(model_input, params=None) -> DataFrame``: one column per class."""
    audio: bool = False
    read_keys: dict[str, str] | None = None
    """The ``--feature-key`` / ``--label-key`` the model's training data were read with."""

    def scores(self, x: np.ndarray, batch: int = 4096) -> np.ndarray:
        """Probabilities ``[N, C]`` for clips ``x [N, T, F]`` (uint8 or float, as the model was trained on)."""
        out = [self.model.predict(x[i : i + batch].astype(np.float32)) for i in range(0, len(x), batch)]
        return (
            np.concatenate([o.to_numpy(np.float32) for o in out])
            if out
            else np.zeros((0, len(self.class_names)), np.float32)
        )

    def file_scores(self, path: Path) -> np.ndarray:
        """Probabilities of one audio file (windows pooled by their mean); bad audio: an InputError."""
        import pandas as pd
        from mlflow.exceptions import MlflowException

        try:
            out = self.model.predict(pd.DataFrame({"path": [str(path)]}), params={"windows": True})
        except MlflowException as exc:
            raise InputError(" ".join(exc.message.split()) or type(exc).__name__) from None
        return np.asarray(out.to_numpy(np.float32))[0]


@dataclass
class _InProcess:
    """A :class:`~tagtune.tracking.serving.TaggerModel` called as a loaded pyfunc model is."""

    tagger: Any

    def predict(self, model_input: Any, params: dict[str, Any] | None = None) -> Any:
        return self.tagger.predict(None, model_input, params)


def load_scorer(uri: str, tracking_uri: str | None = None) -> Scorer:
    """The :class:`Scorer` of a model reference (embeddings or raw audio)."""
    import mlflow.pyfunc

    from tagtune.tracking.serving import TaggerModel, resolve_checkpoint

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    kind, folder = resolve_checkpoint(uri, tracking_uri)
    if kind == "checkpoint":
        tagger = TaggerModel.from_folders([folder])
        meta = tagger.metas[0]
        return Scorer(list(tagger.columns), _InProcess(tagger), tagger.audio is not None, meta.get("read"))
    try:
        model = mlflow.pyfunc.load_model(str(folder))
    except Exception as exc:  # noqa: BLE001 - a folder that is not a loadable model
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise InputError(f"--model {uri}: cannot load the MLflow model ({first})") from None
    outputs = model.metadata.get_output_schema()
    names = list(outputs.input_names()) if outputs is not None else []
    recorded = (model.metadata.metadata or {}).get("tagtune") or {}
    inputs = model.metadata.get_input_schema()
    audio = recorded.get("input") == "audio" or "audio" in (inputs.input_names() if inputs is not None else [])
    return Scorer(names, model, audio, recorded.get("read"))


def is_audio_input(path: Path) -> bool:
    """Whether ``path`` is an audio file, a CSV, or a folder holding audio files."""
    if path.is_file():
        return path.suffix.lower() in (*_audio_extensions(), ".csv")
    return path.is_dir() and any(_folder_audio(path, limit=1))


def _audio_extensions() -> tuple[str, ...]:
    from tagtune.trainables.audio.inference import AUDIO_EXTENSIONS

    return AUDIO_EXTENSIONS


def _folder_audio(folder: Path, limit: int | None = None) -> list[Path]:
    exts = _audio_extensions()
    out = []
    for p in sorted(folder.rglob("*")):
        if p.suffix.lower() in exts and p.is_file():
            out.append(p)
            if limit is not None and len(out) >= limit:
                break
    return out


def audio_files(input_path: str) -> list[tuple[str, Path]]:
    """``(id, file)`` of every audio file ``--input`` names (a file, a folder, a CSV)."""
    from tagtune.trainables.audio import read_table, sniff_style

    path = Path(input_path)
    exts = _audio_extensions()
    if path.is_dir():
        files = _folder_audio(path)
        if not files:
            raise InputError(f"--input {input_path}: no {'/'.join(e[1:] for e in exts)} files in the folder")
        return [(str(f), f) for f in files]
    suffix = path.suffix.lower()
    if suffix in exts:
        return [(input_path, path)]
    if suffix != ".csv":
        raise InputError(
            f"--input {input_path}: a raw-audio model tags wav, flac or ogg files; pass one, a folder of them "
            f"or a CSV with a {PATH_COLUMNS[0]} column"
        )
    if sniff_style(path) is not None:  # a data set's own CSV (FSDD, ESC-50, FSDKaggle2018)
        table = read_table(path)
        return [(str(i), f) for i, f in zip(table.ids, table.files, strict=True)]
    with open(path, newline="", encoding="utf-8-sig") as fh:
        rows = list(csv.reader(fh))
    header = [c.strip().lower() for c in rows[0]] if rows else []
    column = next((c for c in PATH_COLUMNS if c in header), None)
    if column is None:
        raise InputError(
            f"--input {input_path}: no column named {', '.join(PATH_COLUMNS)} (found {', '.join(header) or 'none'}); "
            "add a header with a path column"
        )
    col = header.index(column)
    out = []
    for row in rows[1:]:
        if len(row) <= col or not row[col].strip():
            continue
        name = row[col].strip()
        out.append((name, Path(name) if Path(name).is_absolute() else path.parent / name))
    if not out:
        raise InputError(f"--input {input_path}: the CSV lists no files")
    return out


def _labels(scores: np.ndarray, names: list[str], k: int) -> list[dict[str, Any]]:
    idx, top = top_k(scores[None], k)
    return [
        {"rank": r + 1, "index": int(i), "name": names[int(i)], "score": float(s)}
        for r, (i, s) in enumerate(zip(idx[0], top[0], strict=True))
    ]


def audio_predictions(
    scorer: Scorer, input_path: str, k: int, on_error: Callable[[str], None] | None = None
) -> Iterator[dict[str, Any]]:
    """For each audio file of ``input_path``: ``{"id", "labels"}``; a file that cannot be tagged
    goes to ``on_error`` (default: ignored); an :class:`InputError` when none could be."""
    files = audio_files(input_path)
    tagged = 0
    errors = []
    for ident, file in files:
        try:
            scores = scorer.file_scores(file)
        except InputError as exc:
            message = str(exc) if str(file) in str(exc) else f"{ident}: {exc}"
            errors.append(message)
            if on_error is not None:
                on_error(message)
            continue
        tagged += 1
        yield {"id": ident, "labels": _labels(scores, scorer.class_names, k)}
    if not tagged:
        last = "" if on_error is not None else f" ({errors[-1]})"
        raise InputError(
            f"--input {input_path}: none of its {len(files)} audio file(s) could be tagged{last}; "
            "pass recordings the model can read"
        )


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row the indices of the ``k`` highest scores (highest first) and those scores."""
    k = min(k, scores.shape[1])
    idx = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return idx, np.take_along_axis(scores, idx, axis=1)


def predictions(
    uri: str,
    input_path: str,
    *,
    k: int = 5,
    tracking_uri: str | None = None,
    on_error: Callable[[str], None] | None = None,
    feature_key: str | None = None,
    label_key: str | None = None,
) -> Iterator[dict[str, Any]]:
    """For each clip of ``input_path``: ``{"id", "labels": [{"rank", "index", "name", "score"}]}``.

    Embeddings are read with ``feature_key`` / ``label_key`` where given, else with the keys the
    model's training data were read with (recorded in its checkpoint), else the format's defaults.
    A raw-audio model tags audio files (see the module docstring; ``on_error`` gets the line of
    each file that could not be tagged)."""
    from tagtune.trainables.data import ReadOptions, load_dataset

    if k < 1:
        raise InputError(f"--top-k must be at least 1, got {k}")
    if not Path(input_path).exists():
        raise InputError(
            f"--input {input_path}: no such file or folder; pass a folder of *.tfrecord, an .h5 file or a tagtune "
            "cache (an audio model: a wav/flac/ogg file, a folder of them or a CSV of files)"
        )
    scorer = load_scorer(uri, tracking_uri)
    if scorer.audio:
        yield from audio_predictions(scorer, input_path, k, on_error)
        return
    if is_audio_input(Path(input_path)):
        raise InputError(
            f"--model {uri} reads AudioSet embeddings, not audio files; pass a densenet_audio model for "
            f"--input {input_path}, or embeddings (TFRecord folder, .h5, cache) for this model"
        )
    recorded = scorer.read_keys or {}
    options = ReadOptions(feature_key or recorded.get("feature_key"), label_key or recorded.get("label_key"))
    try:
        ds = load_dataset(input_path, options=options)
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
