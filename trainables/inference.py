"""Inference: what a trained model says about clips, with one entry per data kind.

Training has its seam in :data:`tagtune.trainables.loop.BATCHES` (one batches class per data
kind); this module is inference's.  :data:`KINDS` holds one :class:`DataKind` per kind,
:data:`EMBEDDINGS` and :data:`AUDIO`, chosen from a checkpoint's ``model.json``
(:func:`kind_of`) or from a data set (:func:`kind_of_data`).  Each gives

* :meth:`DataKind.clip_set`: clips of a data set to score, with their labels (a :class:`ClipSet`);
  :func:`validation_split` is the validation split of a search rebuilt from what it recorded;
* :meth:`DataKind.probabilities`: a model's class probabilities for such clips;
* :meth:`DataKind.finals_data`: what finals train on and are scored on (:class:`FinalsData`).

Which outputs a model gives is decided in one place: :func:`to_probabilities` (softmax for a
single-label model, sigmoid otherwise), and a checkpoint says which it is (:func:`is_single_label`
of its ``model.json``); :func:`checkpoint_probabilities` combines the two.  Scoring, ``tagtune
finalize``, ``tagtune predict`` and the registered pyfunc models all go through here, so a model
scores the same from a checkpoint folder, ``runs:/``, ``models:/`` and ``mlflow models serve``.

Recordings (audio files of any rate and length, for ``tagtune predict`` and served models) are
tagged by :class:`tagtune.trainables.audio.inference.AudioTagger`, which uses the same rule.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from tagtune.errors import InputError
from tagtune.trainables.data import TrialData
from tagtune.trainables.ensemble import ENSEMBLE_METHODS, combine_scores
from tagtune.trainables.metrics import to_probabilities

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = [
    "AUDIO",
    "EMBEDDINGS",
    "KINDS",
    "ClipSet",
    "DataKind",
    "FinalsData",
    "SplitUnavailable",
    "checkpoint_probabilities",
    "class_names_of",
    "fit_slice",
    "is_audio_meta",
    "is_single_label",
    "kind_of",
    "kind_of_data",
    "to_probabilities",
    "validation_split",
]


class SplitUnavailable(InputError):
    """The search's validation split cannot be rebuilt (other data, or nothing recorded)."""


# ------------------------------------------------------------------------------------------
# What a checkpoint's model.json says
# ------------------------------------------------------------------------------------------


def is_single_label(meta: Mapping[str, Any]) -> bool:
    """Whether a checkpoint's model gives a distribution over the classes (softmax): it was
    trained on single-label data (``task`` ``singlelabel`` in its ``model.json``)."""
    return meta.get("task") == "singlelabel"


def is_audio_meta(meta: Mapping[str, Any]) -> bool:
    """Whether a checkpoint's ``model.json`` describes a raw-audio model: its config has a
    ``sample_rate`` or its family is registered for audio (``densenet_audio``)."""
    from tagtune.trainables.models import get_family

    cfg = dict(meta.get("config") or {})
    if "sample_rate" in cfg:
        return True
    try:
        return get_family(str(cfg.get("family"))).inputs == "audio"
    except (KeyError, ValueError):  # an unknown family: load_model reports it
        return False


def class_names_of(meta: Mapping[str, Any]) -> list[str]:
    """The names of a checkpoint's outputs: its classes, or the binary task's one target class."""
    cfg = dict(meta.get("config") or {})
    if cfg.get("target_class") not in (None, "None", ""):
        return [str(cfg["target_class"])]
    names = meta.get("class_names") or [str(i) for i in range(int(meta["n_classes"]))]
    return [str(n) for n in names]


# ------------------------------------------------------------------------------------------
# Clips to score, and the kinds
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClipSet:
    """Clips of one data kind to score, and their labels.

    ``clips``: for embeddings the raw clips ``[N, T, F]`` of the data's dtype (a writable copy);
    for audio the :class:`TrialData` whose clips ``idx`` are scored.  ``idx``: the clips' indices
    in their data set; ``y``: bool labels ``[N, C]``."""

    kind: str
    clips: Any
    idx: np.ndarray
    y: np.ndarray
    class_names: tuple[str, ...]

    @property
    def x(self) -> np.ndarray:
        """The raw embedding clips (embeddings only)."""
        if self.kind != EMBEDDINGS.name:
            raise TypeError(f"{self.kind} clips have no embedding array")
        return np.asarray(self.clips)

    def __len__(self) -> int:
        return len(self.idx)


class DataKind(Protocol):
    """Inference for one data kind (see the module docstring)."""

    name: str
    ensemble_methods: tuple[str, ...]
    """The ensembles finalize builds of this kind's finals."""
    fit_slice: int
    """At most this many training clips a final scores each epoch (``fit_*``, not held out)."""

    def clip_set(self, dataset: Any, idx: np.ndarray) -> ClipSet: ...

    def probabilities(
        self,
        model: nn.Module,
        clips: Any,
        *,
        single_label: bool,
        config: Mapping[str, Any] | None = None,
        device: torch.device | None = None,
    ) -> np.ndarray: ...

    def finals_data(
        self, train: Any, test: Any, test_idx: np.ndarray, *, seed: int, searched: Any = None, test_from: str = ""
    ) -> FinalsData: ...


def _device(device: Any) -> torch.device:
    import torch

    return device if device is not None else torch.device("cpu")


class Embeddings:
    """Embedding sequences ``x [N, T, F]`` (uint8 or float), scored in batches by
    :func:`tagtune.trainables.batches.predict` with the model's own input scaling."""

    name = "embeddings"
    ensemble_methods: tuple[str, ...] = ENSEMBLE_METHODS
    fit_slice = 2048

    def clip_set(self, dataset: Any, idx: np.ndarray) -> ClipSet:
        idx = np.asarray(idx)
        y = np.asarray(dataset.y[idx], dtype=bool)
        return ClipSet(self.name, np.array(dataset.x[idx]), idx, y, tuple(dataset.class_names))

    def probabilities(
        self,
        model: nn.Module,
        clips: Any,
        *,
        single_label: bool,
        config: Mapping[str, Any] | None = None,
        device: torch.device | None = None,
    ) -> np.ndarray:
        """Probabilities ``[N, C]`` (float32) for a :class:`ClipSet` or raw clips ``[N, T, F]``
        (numpy or torch; ``config`` is not needed)."""
        import torch

        from tagtune.trainables.batches import predict

        x = clips.clips if isinstance(clips, ClipSet) else clips
        x = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x))
        dev = _device(device)
        # to_probabilities batch by batch inside predict
        return predict(model.to(dev), x, device=dev, activation="softmax" if single_label else "sigmoid").cpu().numpy()

    def finals_data(
        self, train: Any, test: Any, test_idx: np.ndarray, *, seed: int, searched: Any = None, test_from: str = ""
    ) -> FinalsData:
        """Every clip of ``train`` (a seeded slice of them as the ``fit_*`` "validation"), its
        scaling fitted on all of them; the clips ``test_idx`` of ``test`` to score."""
        from tagtune.trainables.data import InputScaling

        x = np.asarray(train.x)
        data = TrialData(
            x=x,
            y=np.asarray(train.y),
            train_idx=np.arange(train.n_clips),
            val_idx=fit_slice(train.n_clips, seed, self.fit_slice),
            class_names=tuple(train.class_names),
            single_label=train.single_label,
            scaling=InputScaling.fit(x),
            read_keys=train.read_keys,
        )
        scored = self.clip_set(test, test_idx)
        return FinalsData(self, data, scored, train if searched is None else searched, test_from, train, test)


class Audio:
    """Raw audio (an :class:`~tagtune.trainables.data.AudioDataset`): whole clips at the model's
    sample rate through its front end, as validation scores them
    (:meth:`tagtune.trainables.audio.batches.AudioBatches.predict_logits`)."""

    name = "audio"
    ensemble_methods: tuple[str, ...] = ("geomean",)
    """Seed 003's ensemble: the weighted geometric mean."""
    fit_slice = 512
    """Scoring whole clips costs a good part of an epoch, so fewer than for embeddings."""

    def clip_set(self, dataset: Any, idx: np.ndarray) -> ClipSet:
        idx = np.asarray(idx)
        data = TrialData(
            clips=dataset,
            y=dataset.y,
            train_idx=idx,
            val_idx=idx,
            class_names=dataset.class_names,
            single_label=dataset.single_label,
        )
        return ClipSet(self.name, data, idx, np.asarray(dataset.y[idx], dtype=bool), tuple(dataset.class_names))

    def probabilities(
        self,
        model: nn.Module,
        clips: Any,
        *,
        single_label: bool,
        config: Mapping[str, Any] | None = None,
        device: torch.device | None = None,
    ) -> np.ndarray:
        """Probabilities ``[N, C]`` (float32) of the clips of a :class:`ClipSet` for a model of
        ``config`` (its sample rate, crop and normalization)."""
        import torch

        from tagtune.trainables.audio.batches import AudioBatches
        from tagtune.trainables.config import resolve_config
        from tagtune.trainables.loop import task_labels

        if config is None:
            raise ValueError("scoring audio needs the model's config")
        dev = _device(device)
        cfg = resolve_config(config)
        batches = AudioBatches(cfg, clips.clips, task_labels(cfg, clips.clips), dev)
        idx = torch.from_numpy(np.asarray(clips.idx, dtype=np.int64)).to(dev)
        return to_probabilities(batches.predict_logits(model.to(dev), idx), single_label).cpu().numpy()

    def finals_data(
        self, train: Any, test: Any, test_idx: np.ndarray, *, seed: int, searched: Any = None, test_from: str = ""
    ) -> FinalsData:
        """The search's training and validation clips of ``train`` (its test clips held out; a
        seeded slice scored each epoch), and the clips ``test_idx`` of ``test`` to score."""
        tr, val, _ = train.splits()
        pool = np.sort(np.concatenate([tr, val]))
        data = TrialData(
            clips=train,
            y=train.y,
            train_idx=pool,
            val_idx=pool[fit_slice(len(pool), seed, self.fit_slice)],
            class_names=train.class_names,
            verified=train.verified,
            single_label=train.single_label,
        )
        scored = self.clip_set(test, test_idx)
        return FinalsData(self, data, scored, train if searched is None else searched, test_from, train, test)


EMBEDDINGS = Embeddings()
AUDIO = Audio()
KINDS: dict[str, DataKind] = {EMBEDDINGS.name: EMBEDDINGS, AUDIO.name: AUDIO}
"""The inference of each data kind (``TrialData.kind``), as :data:`tagtune.trainables.loop.BATCHES`."""


def kind_of(meta: Mapping[str, Any]) -> DataKind:
    """The data kind a checkpoint's model reads (its ``model.json``)."""
    return AUDIO if is_audio_meta(meta) else EMBEDDINGS


def kind_of_data(dataset: Any) -> DataKind:
    """The data kind of a data set (an ``AudioDataset`` or a ``TrialData`` says so; else embeddings)."""
    return KINDS[str(getattr(dataset, "kind", EMBEDDINGS.name))]


def checkpoint_probabilities(model: nn.Module, meta: Mapping[str, Any], clips: Any, device: Any = None) -> np.ndarray:
    """Probabilities of a loaded checkpoint (:func:`tagtune.trainables.checkpoint.load_model`'s pair)
    for clips of its kind: softmax or sigmoid as its ``model.json`` says (:func:`is_single_label`)."""
    kind = kind_of(meta)
    config = meta.get("config")
    return kind.probabilities(model, clips, single_label=is_single_label(meta), config=config, device=device)


# ------------------------------------------------------------------------------------------
# A search's validation split
# ------------------------------------------------------------------------------------------


def validation_split(params: Mapping[str, str], dataset: Any, what: str) -> ClipSet:
    """The validation clips of the search that recorded ``params`` (``val_fraction``, ``seed``,
    ``n_train``, ``n_val``) in ``dataset``, rebuilt with the data set's own
    ``splits(val_fraction, seed)``: the same split its trials validated on.  ``what`` names the
    search in messages.  :class:`SplitUnavailable` when the search recorded no split or
    ``dataset`` is not its data (another count of training and validation clips)."""
    if "val_fraction" not in params or "seed" not in params:
        raise SplitUnavailable(f"{what} recorded no validation split (val_fraction, seed)")
    train_idx, val_idx, _ = dataset.splits(float(params["val_fraction"]), int(params["seed"]))
    searched = (int(params.get("n_train", -1)), int(params.get("n_val", -1)))
    if (len(train_idx), len(val_idx)) != searched:
        raise SplitUnavailable(
            f"the data split into {len(train_idx)} training and {len(val_idx)} validation clips but "
            f"{what} into {searched[0]} and {searched[1]}; pass the search's training data"
        )
    return kind_of_data(dataset).clip_set(dataset, np.sort(np.asarray(val_idx)))


# ------------------------------------------------------------------------------------------
# The finals' data
# ------------------------------------------------------------------------------------------


def fit_slice(n: int, seed: int, size: int = Embeddings.fit_slice) -> np.ndarray:
    """A seeded, sorted slice of at most ``size`` of ``n`` clips (all of them when fewer)."""
    if n <= size:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False))


@dataclass
class FinalsData:
    """What finals train on (``data``: the training clips, a fit slice as its "validation") and
    are scored on (``test``), of one data kind.

    ``searched``: the data set the search's validation split is rebuilt from (ensemble members
    are chosen on it); ``train`` / ``eval``: the data sets the clips come from; ``test_from``:
    where the scored clips come from, e.g. ``--eval PATH`` or ``test split of .../fsdd_meta.csv``."""

    kind: DataKind
    data: TrialData
    test: ClipSet
    searched: Any
    test_from: str
    train: Any = None
    eval: Any = None

    @property
    def single_label(self) -> bool:
        return bool(self.data.single_label)

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.data.class_names)

    @property
    def methods(self) -> tuple[str, ...]:
        return self.kind.ensemble_methods

    @property
    def n_train(self) -> int:
        return len(self.data.train_idx)

    @property
    def n_eval(self) -> int:
        return len(self.test)

    @property
    def eval_y(self) -> np.ndarray:
        return self.test.y

    def combine(self, scores: Sequence[np.ndarray], weights: Sequence[float], method: str) -> np.ndarray:
        """Members' scores combined (:func:`tagtune.trainables.ensemble.combine_scores`; each row
        a distribution on single-label data)."""
        return combine_scores(scores, weights, method, single_label=self.single_label)
