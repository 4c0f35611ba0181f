"""HEAR's embedding layout for scene tasks, as hear-eval-kit writes it.

A task folder holds ``task_metadata.json`` (``prediction_type`` multiclass / multilabel,
``split_mode``, ``nfolds``), ``labelvocabulary.csv`` (``idx,label``) and one folder per split,
each with ``<file>.embedding.npy`` (``[D]`` or ``[T, D]``) and ``<file>.target-labels.json`` (a
list of labels) per clip.  Splits: ``train`` / ``valid`` / ``test`` (used as they are), or folds
``fold00``..: the last fold is the test split, the one before it validation, the rest train.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from tagtune.errors import InputError
from tagtune.trainables.data._arrays import build_dataset
from tagtune.trainables.data._dataset import HEAR_VOCABULARY, read_vocabulary
from tagtune.trainables.data._formats import _ParsedReader
from tagtune.trainables.data._options import DEFAULT_OPTIONS, ReadOptions

METADATA = "task_metadata.json"
TRAIN_VALID_TEST = ("train", "valid", "test")
EMBEDDING = ".embedding.npy"
LABELS = ".target-labels.json"


def hear_splits(meta: dict[str, Any]) -> list[str]:
    """The split folders a task's metadata promises."""
    mode = str(meta.get("split_mode", "trainvaltest"))
    if mode == "trainvaltest":
        return list(TRAIN_VALID_TEST)
    n = int(meta.get("nfolds", 5))
    return [f"fold{i:02d}" for i in range(n)]


def split_role(splits: list[str]) -> dict[str, str]:
    """Each split folder's role: train / valid / test (module docstring)."""
    if splits == list(TRAIN_VALID_TEST):
        return {s: s for s in splits}
    roles = {s: "train" for s in splits}
    roles[splits[-1]] = "test"
    if len(splits) >= 3:
        roles[splits[-2]] = "valid"
    return roles


class HearReader(_ParsedReader):
    """A hear-eval-kit scene-task embedding folder (module docstring)."""

    format = "hear"

    def sniff(self, path: Path) -> bool:
        """A folder holding ``task_metadata.json`` (or that file)."""
        return (path / METADATA).is_file() if path.is_dir() else path.name == METADATA

    def stat_lines(self, path: Path) -> list[bytes]:
        """Every file of the task folder and its split folders."""
        from tagtune.trainables.data._cache import stat_line

        folder = path if path.is_dir() else path.parent
        files = sorted(p for p in folder.rglob("*") if p.is_file())
        return [stat_line(p, str(p.relative_to(folder))) for p in files]

    def parse(self, path: Path, n_classes: int | None, options: ReadOptions = DEFAULT_OPTIONS) -> Any:
        """Read every split's embeddings and labels."""
        folder = path if path.is_dir() else path.parent
        meta, prediction = _read_metadata(folder)
        if not (folder / HEAR_VOCABULARY).is_file():
            raise InputError(f"{folder} has no {HEAR_VOCABULARY}: a HEAR task folder needs its label vocabulary")
        vocabulary = read_vocabulary(folder / HEAR_VOCABULARY)
        splits = hear_splits(meta)
        roles = split_role(splits)
        x: list[np.ndarray] = []
        labels: list[list[str]] = []
        ids: list[str] = []
        split: list[str] = []
        for s in splits:
            for name, embedding, clip_labels in _read_split(folder, s, splits):
                x.append(embedding)
                labels.append(clip_labels)
                ids.append(f"{s}/{name}")
                split.append(roles[s])
        ds = build_dataset(
            x,
            labels,
            source=f"hear:{folder}",
            ids=ids,
            split=split,
            vocabulary=vocabulary,
            n_classes=n_classes,
            task="multilabel",
        )
        if prediction == "multiclass":
            from tagtune.trainables.data._options import check_single_label

            check_single_label(ds.y, ds.ids, ds.source)
            from dataclasses import replace

            ds = replace(ds, task="multiclass")
        return ds


def _read_metadata(folder: Path) -> tuple[dict[str, Any], str]:
    """A scene task's ``task_metadata.json`` and its prediction type (InputError otherwise)."""
    try:
        meta = json.loads((folder / METADATA).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read {folder / METADATA} ({exc}); fix the file") from exc
    if meta.get("embedding_type", "scene") != "scene":
        raise InputError(
            f"{folder} is a HEAR {meta.get('embedding_type')} task; tagtune reads scene tasks (one label set per clip)"
        )
    prediction = str(meta.get("prediction_type", "multilabel"))
    if prediction not in ("multiclass", "multilabel"):
        raise InputError(f"{folder / METADATA}: prediction_type {prediction!r} is not multiclass or multilabel")
    return meta, prediction


def _read_split(folder: Path, s: str, splits: list[str]) -> list[tuple[str, np.ndarray, list[str]]]:
    """(name, embedding, labels) of every clip of split ``s``."""
    sub = folder / s
    if not sub.is_dir():
        raise InputError(
            f"HEAR folder {folder} has no {s}/ split (its task_metadata.json promises "
            f"{', '.join(splits)}); compute the embeddings of every split"
        )
    files = sorted(sub.glob(f"*{EMBEDDING}"))
    if not files:
        raise InputError(f"HEAR split {sub} holds no *{EMBEDDING} files; compute its embeddings")
    out: list[tuple[str, np.ndarray, list[str]]] = []
    for f in files:
        name = f.name[: -len(EMBEDDING)]
        target = sub / f"{name}{LABELS}"
        try:
            raw = json.loads(target.read_text(encoding="utf-8"))
            embedding = np.load(f, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise InputError(f"HEAR clip {sub / name}: cannot read its embedding or labels ({exc})") from exc
        out.append((name, embedding, [str(v) for v in (raw if isinstance(raw, list) else [raw])]))
    return out
