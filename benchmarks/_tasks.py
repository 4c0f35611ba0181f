"""The search benchmark's tasks: what each one trains on, what it is scored on, what it searches.

Each :class:`Task` builds (once, under ``root``, default ``benchmarks/out/tasks``; nothing goes
into the repository) a training set that ``tagtune search --train`` reads, and a held-out test
set that is scored only for the config a system selects.  Validation is always carved from the
training set the way tagtune carves it (its seeded ``--val-fraction`` split, or the data's own
``valid`` split for a HEAR folder), and every system uses that same split.

=============  =========================================================  ===========  ========
task           data                                                       test metric  families
=============  =========================================================  ===========  ========
audioset       AudioSet bal_train, 527 classes, multi-label; test: eval    mAP          fc1, fc2
speech         seed 002's binary task on the same data: Speech vs rest     F1 (best     fc1, fc2
               (``target_class: Speech`` added to every family's space)    threshold)
fsdd-hear      FSDD per-clip log-mel mean + std (128 floats) in HEAR's     accuracy     fc1, fc2
               layout (``make_fsdd_hear.py``), 10 digits; its own
               train / valid / test split
float512       generated: 512 float features per clip, 30 single-label    accuracy     fc1, fc2
               classes, heavy-tailed feature scales, a nonlinear class
               structure (unlike AudioSet's 10 x 128 uint8 sequences)
=============  =========================================================  ===========  ========

AudioSet is subsampled by default so that a budget of 1-3 minutes per system gives several
trials on 2 CPU cores: a seeded 6,000 of bal_train's 22,160 clips for training (validation is
20 % of those) and a seeded 4,000 of eval's 20,371 clips for the test score; ``full=True``
(``bench_search.py --full``) uses every clip of both.  ``quick=True`` replaces every task's data
by a small generated set of the same kind (for the smoke test).

The other developer's portfolio work reuses this module: :data:`TASKS` (name -> Task) and
:meth:`Task.build` -> :class:`TaskData` (``train``, ``test``, ``spaces_dir``).
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[0].parent / "shared" / "data"
BAL_TRAIN = SHARED / "audioset" / "bal_train"
EVAL = SHARED / "audioset" / "eval"
FSDD = SHARED / "fsdd"
DEFAULT_ROOT = HERE / "out" / "tasks"
AUDIOSET_TRAIN_CLIPS = 6000
AUDIOSET_TEST_CLIPS = 4000


@dataclass(frozen=True)
class TaskData:
    """Where a built task lives: ``train`` for ``tagtune search --train``; ``test`` the held-out
    set (a path ``load_dataset`` reads), or ``None`` when ``train`` holds its own ``test`` split
    (HEAR), which tagtune holds out of the search by itself; ``spaces_dir`` for ``--spaces``
    (``None``: the packaged spaces)."""

    train: Path
    test: Path | None
    spaces_dir: Path | None = None


@dataclass(frozen=True)
class Task:
    """One benchmark task (see the module docstring)."""

    name: str
    description: str
    label_kind: str  # multilabel, binary, multiclass
    metric: str  # the test score: mAP, f1 or accuracy
    families: tuple[str, ...]
    max_epochs: int  # --max-epochs of every search on it
    builder: Callable[[Path, bool, bool, int], TaskData]
    space_params: dict[str, str] = dataclasses.field(default_factory=dict)  # added to common.yaml
    read_task: str | None = None  # `tagtune search --task` (how the labels are read), None: as detected

    def build(
        self, root: str | Path = DEFAULT_ROOT, *, full: bool = False, quick: bool = False, seed: int = 0
    ) -> TaskData:
        """Build the task's data under ``root`` (reused when already there) and return its paths."""
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        data = self.builder(root, full, quick, seed)
        if self.space_params:
            data = dataclasses.replace(data, spaces_dir=_spaces_with(root / f"{self.name}-spaces", self.space_params))
        return data


# ------------------------------------------------------------------------------------------
# builders
# ------------------------------------------------------------------------------------------


def _subset(ds, idx: np.ndarray):
    """The clips ``idx`` of a Dataset (every per-clip field)."""
    fields = {"x": np.asarray(ds.x[idx]), "y": np.asarray(ds.y[idx]), "lengths": np.asarray(ds.lengths[idx])}
    fields["ids"] = np.asarray(ds.ids)[idx]
    for name in ("groups", "split", "verified"):
        value = getattr(ds, name, None)
        if value is not None:
            fields[name] = np.asarray(value)[idx]
    return dataclasses.replace(ds, **fields)


def _cache_of(ds, folder: Path) -> Path:
    from tagtune.trainables.data import write_cache

    if folder.exists():
        return folder
    tmp = folder.with_name(folder.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    write_cache(ds, tmp)
    tmp.rename(folder)
    return folder


def _audioset(root: Path, full: bool, quick: bool, seed: int) -> TaskData:
    if quick:
        return _quick_multilabel(root)
    if full:
        return TaskData(train=BAL_TRAIN, test=EVAL)
    from tagtune.trainables.data import load_dataset

    train_dir = root / f"audioset-bal_train-{AUDIOSET_TRAIN_CLIPS}"
    test_dir = root / f"audioset-eval-{AUDIOSET_TEST_CLIPS}"
    if not train_dir.exists():
        ds = load_dataset(BAL_TRAIN)
        idx = np.sort(np.random.default_rng(2401).choice(len(ds.ids), AUDIOSET_TRAIN_CLIPS, replace=False))
        _cache_of(_subset(ds, idx), train_dir)
    if not test_dir.exists():
        ds = load_dataset(EVAL)
        idx = np.sort(np.random.default_rng(2402).choice(len(ds.ids), AUDIOSET_TEST_CLIPS, replace=False))
        _cache_of(_subset(ds, idx), test_dir)
    return TaskData(train=train_dir, test=test_dir)


def _quick_multilabel(root: Path) -> TaskData:
    """A small AudioSet-like generated set (uint8 10 x 128, 12 classes; one class named Speech)."""
    from tagtune.trainables.data import make_synthetic

    train_dir, test_dir = root / "quick-ml-train", root / "quick-ml-test"
    if not (train_dir.exists() and test_dir.exists()):
        ds = make_synthetic(n_clips=600, n_classes=12, seed=7)
        names = list(ds.class_names)
        names[int(np.argmax(np.asarray(ds.y).sum(0)))] = "Speech"  # the commonest class: the binary task's target
        ds = dataclasses.replace(ds, class_names=tuple(names))
        _cache_of(_subset(ds, np.arange(0, 450)), train_dir)
        _cache_of(_subset(ds, np.arange(450, 600)), test_dir)
    return TaskData(train=train_dir, test=test_dir)


def _fsdd_hear(root: Path, full: bool, quick: bool, seed: int) -> TaskData:
    if quick:
        return TaskData(
            train=_float_task(root / "quick-hear", n_train=300, n_test=100, dim=32, classes=5, hear=True), test=None
        )
    folder = root / "fsdd-hear"
    if not (folder / "task_metadata.json").exists():
        import subprocess
        import sys

        subprocess.run(
            [sys.executable, str(HERE / "make_fsdd_hear.py"), "--fsdd", str(FSDD), "--out", str(folder)], check=True
        )
    return TaskData(train=folder, test=None)


def _float512(root: Path, full: bool, quick: bool, seed: int) -> TaskData:
    if quick:
        folder = root / "quick-float"
        _float_task(folder, n_train=300, n_test=100, dim=32, classes=5)
    else:
        folder = root / "float512"
        _float_task(folder, n_train=6000, n_test=3000, dim=512, classes=30)
    return TaskData(train=folder / "train.npz", test=folder / "test.npz")


def make_float_clips(
    n: int, dim: int, classes: int, rng: np.random.Generator, proto: dict
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` clips of ``dim`` float32 features and their class (int): a class is a point of a
    16-d latent space; a clip is its class's point plus noise, through a random two-layer
    tanh network into ``dim`` features whose scales span four decades (standardization
    matters) and some of which are pure noise."""
    latent = 16
    if not proto:
        proto["centres"] = rng.normal(size=(classes, latent)) * 1.1
        proto["w1"] = rng.normal(size=(latent, 64)) / np.sqrt(latent)
        proto["w2"] = rng.normal(size=(64, dim)) / np.sqrt(64)
        proto["scale"] = 10.0 ** rng.uniform(-2, 2, size=dim)
        proto["offset"] = rng.normal(size=dim) * proto["scale"]
        proto["noise_cols"] = rng.random(dim) < 0.25
    label = rng.integers(0, classes, size=n)
    z = proto["centres"][label] + rng.normal(size=(n, latent))
    h = np.tanh(z @ proto["w1"] * 1.5)
    x = np.tanh(h @ proto["w2"]) + 0.3 * rng.normal(size=(n, dim))
    x[:, proto["noise_cols"]] = rng.standard_t(3, size=(n, int(proto["noise_cols"].sum())))
    x = x * proto["scale"] + proto["offset"]
    return x.astype(np.float32), label


def _float_task(folder: Path, *, n_train: int, n_test: int, dim: int, classes: int, hear: bool = False) -> Path:
    """The generated single-label task: ``train.npz`` / ``test.npz`` (``x [N, 1, dim]`` float32,
    ``y`` one-hot bool, ``class_names``), or a HEAR folder when ``hear``."""
    done = folder / ("task_metadata.json" if hear else "test.npz")
    if done.exists():
        return folder
    rng = np.random.default_rng(2403)
    proto: dict = {}
    names = np.asarray([f"c{k:02d}" for k in range(classes)])
    sets = {}
    for split, n in (("train", n_train), ("test", n_test)):
        x, label = make_float_clips(n, dim, classes, rng, proto)
        sets[split] = (x, label)
    tmp = folder.with_name(folder.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    if hear:
        import csv
        import json

        x, label = sets["train"]
        n_valid = n_train // 5
        parts = {"train": (x[n_valid:], label[n_valid:]), "valid": (x[:n_valid], label[:n_valid]), "test": sets["test"]}
        for split, (xs, ls) in parts.items():
            (tmp / split).mkdir()
            for i, (row, lab) in enumerate(zip(xs, ls, strict=True)):
                np.save(tmp / split / f"{split}{i:05d}.embedding.npy", row)
                (tmp / split / f"{split}{i:05d}.target-labels.json").write_text(json.dumps([str(names[lab])]))
        meta = {"task_name": folder.name, "embedding_type": "scene", "prediction_type": "multiclass"}
        meta |= {"split_mode": "trainvaltest", "evaluation": ["top1_acc"]}
        (tmp / "task_metadata.json").write_text(json.dumps(meta))
        with open(tmp / "labelvocabulary.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["idx", "label"])
            w.writerows([k, name] for k, name in enumerate(names))
    else:
        for split, (x, label) in sets.items():
            y = np.zeros((len(label), classes), dtype=bool)
            y[np.arange(len(label)), label] = True
            ids = np.asarray([f"{split}{i:05d}" for i in range(len(label))])
            np.savez(tmp / f"{split}.npz", x=x[:, None, :], y=y, ids=ids, class_names=names)
    if folder.exists():
        shutil.rmtree(folder)
    tmp.rename(folder)
    return folder


def _spaces_with(folder: Path, params: dict[str, str]) -> Path:
    """A copy of the packaged search spaces with ``params`` (YAML values) added to common.yaml."""
    from tagtune.search_spaces import space_dir

    src = space_dir(None)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for path in src.glob("*.yaml"):
        text = path.read_text()
        if path.name == "common.yaml":
            text = text.replace("params:\n", "params:\n" + "".join(f"  {k}: {v}\n" for k, v in params.items()), 1)
        (folder / path.name).write_text(text)
    return folder


TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        Task(
            "audioset",
            "AudioSet bal_train (seeded 6,000-clip subsample; --full: all 22,160), 527 classes; "
            "test: eval (4,000 / all)",
            "multilabel",
            "mAP",
            ("fc1", "fc2"),
            8,
            _audioset,
        ),
        Task(
            "speech",
            "seed 002's binary task on the same bal_train clips: Speech against the rest; test: eval",
            "binary",
            "f1",
            ("fc1", "fc2"),
            8,
            _audioset,
            {"target_class": "{value: Speech}"},
        ),
        Task(
            "fsdd-hear",
            "FSDD per-clip log-mel mean + std (128 floats), HEAR layout, 10 classes; 2,400 / 300 / 300",
            "multiclass",
            "accuracy",
            ("fc1", "fc2"),
            30,
            _fsdd_hear,
        ),
        Task(
            "float512",
            "generated: 512 floats per clip (scales over 4 decades, a quarter noise), 30 classes; 6,000 / 3,000",
            "multiclass",
            "accuracy",
            ("fc1", "fc2"),
            20,
            _float512,
            read_task="multiclass",
        ),
    )
}
