"""Trained taggers as MLflow pyfunc models: log, register, and load them back.

A :class:`TaggerModel` wraps one tagtune checkpoint (``model.pt`` + ``model.json``) or an
ensemble of several, so that ``mlflow models serve -m models:/<name>/<version>`` answers with a
score for every class.  The input signature is one float32 tensor ``[N, T, F]`` (``T`` may vary)
of the clips' quantized embedding bytes, **0..255** as AudioSet's TFRecords store them (JSON
integers work); clips are rounded and clipped to 0..255, then zero-padded or cut to the model's
``T`` frames (seed 001 pads every clip to 10 s).  The output is a table with one float column per
class, named by the class names, so a serving answer reads
``{"predictions": [{"Speech": 0.91, "Music": 0.02, ...}, ...]}``.

A raw-audio checkpoint (``densenet_audio``: its config has a ``sample_rate``) takes audio
instead (:func:`audio_signature`): a table with one row per clip and the columns ``audio`` (the
samples, a list of floats in [-1, 1]), ``sample_rate`` (Hz, optional) and ``path`` (a wav, flac
or ogg file the model reads itself, at the file's rate; optional), or a list/array of samples, a
2-D array (one clip per row), a path string.  The params ``sample_rate`` (the rate of rows with
none; default the model's) and ``windows`` (default false: whole clips, scored as validation
scores them; true: windows of the model's ``crop_samples``, hop half, probabilities averaged).
Each clip is resampled with soxr to the model's rate and run through the front end and the
network (:class:`tagtune.trainables.audio.inference.AudioTagger`); a clip the model cannot take (no
samples, silence, a rate below the model's) is refused with a one-line message, an HTTP 400
when served.  A serving request::

    {"dataframe_records": [{"audio": [0.0, 0.01, ...], "sample_rate": 8000}], "params": {"windows": true}}

answers ``{"predictions": [{"0": 0.97, "1": 0.001, ...}]}`` (FSDD's classes are the digits).
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

from tagtune.errors import InputError
from tagtune.tracking._sqlite import ready_store
from tagtune.trainables.data import fit_frames
from tagtune.trainables.ensemble import ENSEMBLE_METHODS, combine_scores

if TYPE_CHECKING:
    from tagtune.trainables.audio.inference import AudioTagger

__all__ = [
    "AUDIO_INPUT_COLUMNS",
    "ENSEMBLE_METHODS",
    "LoggedTagger",
    "TaggerModel",
    "audio_inputs",
    "audio_signature",
    "combine_scores",
    "clip_inputs",
    "is_audio_checkpoint",
    "log_tagger",
    "registered_model_name",
    "resolve_checkpoint",
    "tagger_signature",
    "unique_names",
]


def unique_names(names: Sequence[str]) -> list[str]:
    """Class names made unique (a repeated name gets `` [index]``), usable as column names."""
    seen: dict[str, int] = {}
    for name in names:
        seen[name] = seen.get(name, 0) + 1
    return [f"{n} [{i}]" if seen[n] > 1 else str(n) for i, n in enumerate(names)]


def registered_model_name(experiment: str, name: str) -> str:
    """The registry name of a search's model ``name`` (``fc1``, ``ensemble-mean``):
    ``<experiment>-<name>`` with characters other than letters, digits, ``_.-`` as ``_``."""
    from tagtune.tracking._store import safe_name

    return safe_name(f"{experiment}-{name}")


def clip_inputs(x: np.ndarray, n_frames: int, n_features: int, dtype: str = "uint8") -> np.ndarray:
    """Clips as ``[N, n_frames, n_features]``, zero-padded or cut: for a uint8 model rounded,
    clipped to 0..255 and uint8; for a float model float32 (refused when not finite).

    Accepts ``[N, T, F]``, one clip ``[T, F]``, or flat rows ``[N, T * F]``.
    """
    arr = np.asarray(x)
    if arr.dtype == object:
        arr = np.asarray(arr.tolist(), dtype=np.float32)
    if arr.ndim == 2 and arr.shape[1] % n_features == 0 and arr.shape[1] != n_features:
        arr = arr.reshape(len(arr), -1, n_features)
    elif arr.ndim == 2:
        arr = arr[None]
    if np.dtype(dtype) != np.uint8:
        if arr.ndim != 3 or arr.shape[2] != n_features:
            raise InputError(f"model input must be clips [N, frames, {n_features}] of floats, got shape {arr.shape}")
        arr = np.asarray(arr, dtype=np.float32)
        if not np.isfinite(arr).all():
            row = int(np.argmin(np.isfinite(arr).reshape(len(arr), -1).all(axis=1)))
            raise InputError(f"model input clip {row} has NaN or inf features; send finite values")
        return np.array(fit_frames(arr, n_frames), dtype=np.float32)
    if arr.ndim != 3 or arr.shape[2] != n_features:
        raise InputError(f"model input must be clips [N, frames, {n_features}] of 0..255 values, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        arr = np.clip(np.rint(arr.astype(np.float32)), 0, 255).astype(np.uint8)
    # A writable copy (inputs may be read-only memory maps), padded or cut to the model's frames.
    return np.array(fit_frames(arr, n_frames), dtype=np.uint8)


class TaggerModel(PythonModel):
    """One checkpoint, or several combined (``mean`` / weighted ``geomean``), as a pyfunc model.

    Artifacts are checkpoint folders named ``member0``, ``member1``, ...; the model config's
    ``weights`` and ``method`` say how members combine (ignored with one member).  Logged as
    "models from code" (``tracking/_tagger_entry.py``), so nothing is pickled.  ``tagtune
    predict`` scores a checkpoint folder with the same class (:meth:`from_folders`), so a model
    answers the same in-process, from ``runs:/`` or ``models:/`` and when served.
    """

    def load_context(self, context: Any) -> None:
        """Rebuild the member networks from their checkpoint folders."""
        config = dict(context.model_config or {})
        names = sorted((k for k in context.artifacts if k.startswith("member")), key=lambda k: int(k[6:]))
        self.load([context.artifacts[key] for key in names], config.get("weights"), str(config.get("method", "mean")))

    @classmethod
    def from_folders(
        cls,
        folders: Sequence[str | os.PathLike[str]],
        weights: Sequence[float] | None = None,
        method: str = "mean",
    ) -> TaggerModel:
        """The tagger of checkpoint folders (``model.pt`` + ``model.json``), loaded in-process."""
        tagger = cls()
        tagger.load(folders, weights, method)
        return tagger

    def load(
        self, folders: Sequence[str | os.PathLike[str]], weights: Sequence[float] | None, method: str = "mean"
    ) -> None:
        """Load the members, their input shape and dtype, and the output columns."""
        from tagtune.trainables.checkpoint import load_model
        from tagtune.trainables.inference import class_names_of, is_audio_meta, is_single_label

        loaded = [load_model(folder) for folder in folders]
        self.models = [model for model, _ in loaded]
        self.metas = [meta for _, meta in loaded]
        self.weights = list(weights or [1.0] * len(self.models))
        self.method = method
        first = self.metas[0]
        self.n_frames, self.n_features = int(first["n_frames"]), int(first["n_features"])
        self.dtype = str((first.get("inputs") or {}).get("dtype", "uint8"))
        self.single_label = is_single_label(first)  # single-label models answer a distribution
        self.columns = unique_names(class_names_of(first))
        self.audio: AudioTagger | None = None
        if is_audio_meta(first):
            from tagtune.trainables.audio.inference import AudioTagger

            self.audio = AudioTagger(list(zip(self.models, self.metas, strict=True)), self.weights, self.method)
            self.columns = unique_names(self.audio.class_names)

    def scores(self, x: Any) -> np.ndarray:
        """Probabilities ``[N, C]`` (float32) for clips ``x`` (see :func:`clip_inputs`)."""
        import torch

        from tagtune.trainables.inference import EMBEDDINGS

        clips = torch.from_numpy(clip_inputs(x, self.n_frames, self.n_features, self.dtype))
        member_scores = [EMBEDDINGS.probabilities(m, clips, single_label=self.single_label) for m in self.models]
        if len(member_scores) == 1:
            return member_scores[0].astype(np.float32)
        return combine_scores(member_scores, self.weights, self.method, single_label=self.single_label)

    # ``np.ndarray`` is a hint MLflow infers no schema from: the tensor signature stays in charge.
    def predict(self, context: Any, model_input: np.ndarray, params: dict[str, Any] | None = None) -> pd.DataFrame:
        """A table of scores, one column per class (named by the class names)."""
        if self.audio is not None:
            return pd.DataFrame(self.audio_scores(model_input, params), columns=self.columns)
        if isinstance(model_input, pd.DataFrame):
            model_input = model_input.to_numpy()
        elif isinstance(model_input, dict):
            model_input = next(iter(model_input.values()))
        return pd.DataFrame(self.scores(model_input), columns=self.columns)

    def audio_scores(self, model_input: Any, params: Mapping[str, Any] | None = None) -> np.ndarray:
        """Probabilities ``[N, C]`` of audio input (see :func:`audio_inputs`); bad input is an
        ``MlflowException`` (INVALID_PARAMETER_VALUE: HTTP 400 when served) with the one-line reason."""
        from mlflow.exceptions import MlflowException
        from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

        assert self.audio is not None
        params = dict(params or {})
        try:
            clips, rates, names = audio_inputs(model_input, params.get("sample_rate") or self.audio.sample_rate)
            return self.audio.scores(clips, rates, windows=_flag(params.get("windows", False)), names=names)
        except InputError as exc:
            raise MlflowException(str(exc), error_code=INVALID_PARAMETER_VALUE) from None


AUDIO_INPUT_COLUMNS = ("audio", "sample_rate", "path")
"""The columns of an audio model's input table (each optional; a row needs ``audio`` or ``path``)."""


def _flag(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes")
    return bool(value)


def _missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(np.ndim(value) == 0 and pd.isna(value))
    except (TypeError, ValueError):
        return False


def audio_inputs(model_input: Any, default_rate: Any) -> tuple[list[np.ndarray], list[Any], list[str]]:
    """Clips (float32 sample arrays), their rates (as given: checked when scored) and names (for
    messages) from an audio model's input.

    ``model_input``: a table with :data:`AUDIO_INPUT_COLUMNS` (a row's ``path`` is read at the
    file's rate; a row's ``audio`` is at its ``sample_rate``, else at ``default_rate``), a dict of
    those columns, a path, a list of paths, a list or 1-D array of samples (one clip), or a 2-D
    array / list of lists (one clip per row).
    """
    from tagtune.trainables.audio.inference import load_waveform

    if isinstance(model_input, dict):
        audio = model_input.get("audio")
        one_clip = audio is not None and np.ndim(audio) == 1 and all(np.ndim(v) == 0 for v in audio)
        model_input = pd.DataFrame({k: [v] for k, v in model_input.items()} if one_clip else dict(model_input))
    if isinstance(model_input, (str, os.PathLike)):
        model_input = pd.DataFrame({"path": [str(model_input)]})
    if isinstance(model_input, (list, tuple)):
        if model_input and all(isinstance(v, (str, os.PathLike)) for v in model_input):
            model_input = pd.DataFrame({"path": [str(v) for v in model_input]})
        elif model_input and all(np.ndim(v) == 0 for v in model_input):
            model_input = np.asarray(model_input, dtype=np.float32)
        else:
            model_input = pd.DataFrame({"audio": list(model_input)})
    if isinstance(model_input, np.ndarray):
        arr = model_input.astype(np.float32) if model_input.dtype != object else model_input
        rows = [arr] if arr.ndim == 1 and arr.dtype != object else list(arr)
        model_input = pd.DataFrame({"audio": rows})
    if not isinstance(model_input, pd.DataFrame):
        raise InputError(
            f"audio model input must be a table with columns audio/sample_rate/path, got {type(model_input).__name__}"
        )
    unknown = [str(c) for c in model_input.columns if c not in AUDIO_INPUT_COLUMNS]
    if unknown or not {"audio", "path"} & set(model_input.columns):
        raise InputError(
            f"audio model input has columns {', '.join(map(str, model_input.columns)) or 'none'}; "
            "give each clip as `audio` (samples) with its `sample_rate`, or as `path` (a wav/flac/ogg file)"
        )
    clips: list[np.ndarray] = []
    rates: list[Any] = []
    names: list[str] = []
    for i, row in enumerate(model_input.to_dict("records")):
        path = row.get("path")
        if not _missing(path):
            audio, file_rate = load_waveform(str(path))
            clips.append(audio)
            rates.append(file_rate)
            names.append(str(path))
            continue
        audio = row.get("audio")
        if audio is None or (np.ndim(audio) == 0 and _missing(audio)):
            raise InputError(f"row {i} of the input has neither audio nor path; give one of them")
        rate = row.get("sample_rate")
        clips.append(np.asarray(audio, dtype=np.float32) if np.ndim(audio) else np.zeros(0, np.float32))
        rates.append(default_rate if _missing(rate) else rate)
        names.append(f"row {i}")
    return clips, rates, names


def audio_signature(class_names: Sequence[str], sample_rate: int) -> Any:
    """Input: columns ``audio`` (array of doubles), ``sample_rate`` (long), ``path`` (string), each
    optional; params ``sample_rate`` (default ``sample_rate``) and ``windows`` (default false);
    output: one float column per class."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema
    from mlflow.types.schema import Array

    inputs = Schema(
        [
            ColSpec(Array("double"), "audio", required=False),
            ColSpec("long", "sample_rate", required=False),
            ColSpec("string", "path", required=False),
        ]
    )
    outputs = Schema([ColSpec("float", name) for name in unique_names(class_names)])
    params = ParamSchema([ParamSpec("sample_rate", "long", int(sample_rate)), ParamSpec("windows", "boolean", False)])
    return ModelSignature(inputs=inputs, outputs=outputs, params=params)


def is_audio_checkpoint(folder: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The ``model.json`` of a raw-audio checkpoint folder, else ``None``."""
    from tagtune.trainables.inference import is_audio_meta

    meta = _checkpoint_meta(folder)
    return meta if is_audio_meta(meta) else None


def _checkpoint_meta(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """A checkpoint's ``model.json`` (empty when it cannot be read)."""
    import json

    from tagtune.trainables.checkpoint import CHECKPOINT_META

    try:
        meta = json.loads((Path(folder) / CHECKPOINT_META).read_text())
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def tagger_signature(class_names: Sequence[str], n_features: int, dtype: str = "uint8") -> Any:
    """Input: a float32 tensor ``[-1, -1, n_features]`` (``T`` may vary: clips are zero-padded or
    cut to the model's): 0..255 byte values for uint8 data, the raw features for float data
    (``dtype``; float64 features are scored in float32 as trained); output: one float column per class."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema, TensorSpec

    del dtype  # every dtype is sent as float32 (JSON numbers)
    inputs = Schema([TensorSpec(np.dtype(np.float32), (-1, -1, n_features))])
    outputs = Schema([ColSpec("float", name) for name in unique_names(class_names)])
    return ModelSignature(inputs=inputs, outputs=outputs)


def _requirements() -> list[str]:
    from importlib.metadata import PackageNotFoundError, version

    reqs = []
    for pkg in ("mlflow", "torch", "numpy", "pandas", "pyyaml"):
        try:
            reqs.append(f"{pkg}=={version(pkg)}")
        except PackageNotFoundError:
            reqs.append(pkg)
    return reqs


@dataclass(frozen=True)
class LoggedTagger:
    """Where a logged tagger lives: its ``runs:/`` URI and, if registered, ``models:/name/version``."""

    run_uri: str
    registered_uri: str | None
    name: str | None
    version: str | None


def log_tagger(
    tracking_uri: str,
    run_id: str,
    checkpoints: Sequence[str | os.PathLike[str]],
    *,
    class_names: Sequence[str],
    n_frames: int,
    n_features: int,
    weights: Sequence[float] | None = None,
    method: str = "mean",
    registered_name: str | None = None,
    artifact_name: str = "model",
    extra_metadata: Mapping[str, Any] | None = None,
) -> LoggedTagger:
    """Log a pyfunc tagger of ``checkpoints`` on run ``run_id``; register it as ``registered_name``.

    The model's code is the installed ``trainables``/``tracking`` packages (serve it with
    ``--env-manager local`` from tagtune's environment); the weights travel as artifacts.
    Raw-audio checkpoints (``densenet_audio``) get the audio signature (:func:`audio_signature`;
    ``n_frames``/``n_features`` are not used) and their rate and crop in the metadata.
    """
    mlflow.set_tracking_uri(ready_store(tracking_uri))  # a new SQLite store: created by one process
    mlflow.set_registry_uri(tracking_uri)
    artifacts = {f"member{i}": str(Path(c)) for i, c in enumerate(checkpoints)}
    weights = list(weights) if weights is not None else [1.0] * len(checkpoints)
    first = _checkpoint_meta(checkpoints[0]) if checkpoints else {}  # what the members were trained on
    signature, example, extra = _model_inputs(first, class_names, n_frames, n_features, extra_metadata)
    with _quiet_model_logs(), mlflow.start_run(run_id=run_id):
        info = mlflow.pyfunc.log_model(
            name=artifact_name,
            python_model=str(Path(__file__).with_name("_tagger_entry.py")),
            artifacts=artifacts,
            # MLflow also logs the model config as run params: only ensembles need one.
            model_config=({"method": method, "weights": [float(w) for w in weights]} if len(checkpoints) > 1 else None),
            signature=signature,
            input_example=example,
            pip_requirements=_requirements(),
            registered_model_name=registered_name,
            metadata={
                "tagtune": {
                    "class_names": list(class_names),
                    "method": method,
                    "weights": [float(w) for w in weights],
                    **extra,
                }
            },
        )
    version = getattr(info, "registered_model_version", None)
    version = str(version) if version is not None else None
    registered = f"models:/{registered_name}/{version}" if registered_name and version else None
    return LoggedTagger(f"runs:/{run_id}/{artifact_name}", registered, registered_name, version)


def _model_inputs(
    first: Mapping[str, Any],
    class_names: Sequence[str],
    n_frames: int,
    n_features: int,
    extra_metadata: Mapping[str, Any] | None,
) -> tuple[Any, Any, dict[str, Any]]:
    """The signature, input example and ``tagtune`` metadata of a tagger whose first member's
    ``model.json`` is ``first``: clips ``[N, T, F]``, or audio for a raw-audio checkpoint."""
    from tagtune.trainables.inference import is_audio_meta

    dtype = str((first.get("inputs") or {}).get("dtype", "uint8"))  # uint8 when it records none
    extra = dict(extra_metadata or {})
    extra.setdefault("inputs", {"n_frames": int(n_frames), "n_features": int(n_features), "dtype": dtype})
    read = first.get("read")
    if read:  # --feature-key / --label-key of the training data: predict reads new data alike
        extra.setdefault("read", dict(read))
    if not is_audio_meta(first):
        clips = np.zeros((1, n_frames, n_features), dtype=np.float32)
        return tagger_signature(class_names, n_features, dtype), clips, extra
    from tagtune.trainables.audio.inference import audio_settings

    rate, crop = audio_settings(first)
    # A 440 Hz tone of one crop: the input example MLflow validates and the UI shows.
    tone = 0.5 * np.sin(2 * np.pi * 440.0 * np.arange(crop) / rate)
    example = pd.DataFrame({"audio": [np.round(tone, 4)], "sample_rate": [rate]})
    extra = {"input": "audio", "sample_rate": rate, "crop_samples": crop, **extra}
    return audio_signature(class_names, rate), example, extra


@contextmanager
def _quiet_model_logs() -> Iterator[None]:
    """MLflow's "Validating input example against model signature" (on every model) silenced."""
    quiet = [logging.getLogger(n) for n in ("mlflow.pyfunc", "mlflow.models")]
    levels = [lg.level for lg in quiet]
    for lg in quiet:
        lg.setLevel(max(lg.getEffectiveLevel(), logging.WARNING))
    try:
        yield
    finally:
        for lg, level in zip(quiet, levels, strict=True):
            lg.setLevel(level)


def resolve_checkpoint(uri: str, tracking_uri: str | None = None) -> tuple[str, Path]:
    """Resolve a model reference to a local folder: ``("pyfunc", dir)`` or ``("checkpoint", dir)``.

    ``uri`` is a ``models:/name/version`` URI, a ``runs:/<id>[/path]`` URI (without a path: the
    run's ``checkpoint`` folder, else its ``model``), or a local checkpoint or pyfunc folder.
    """
    from mlflow.exceptions import MlflowException

    from tagtune.tracking._store import normalize_uri

    if uri.startswith("file://"):
        return _classify(Path(uri[len("file://") :]), f"--model {uri}")
    if not uri.startswith(("models:/", "runs:/")):
        if "://" in uri:
            raise InputError(f"--model {uri}: use models:/NAME/VERSION, runs:/RUN_ID[/PATH] or a checkpoint folder")
        if not Path(uri).exists():
            raise InputError(
                f"--model {uri}: no such folder; use models:/NAME/VERSION, runs:/RUN_ID[/PATH] or a checkpoint folder"
            )
        return _classify(Path(uri), f"--model {uri}")
    store = normalize_uri(tracking_uri)
    if uri.startswith("runs:/"):
        parts = uri[len("runs:/") :].strip("/").split("/", 1)
        if len(parts) == 1 or not parts[1]:
            candidates = [f"runs:/{parts[0]}/checkpoint", f"runs:/{parts[0]}/model"]
        else:
            candidates = [uri]
    else:
        candidates = [uri]
    mlflow.set_tracking_uri(ready_store(store))
    mlflow.set_registry_uri(store)
    last = ""
    for cand in candidates:
        try:
            dst = tempfile.mkdtemp(prefix="tagtune-model-")
            folder = Path(mlflow.artifacts.download_artifacts(artifact_uri=cand, dst_path=dst))
        except (MlflowException, OSError) as exc:
            last = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            continue
        return _classify(folder, f"--model {uri}")
    raise InputError(f"--model {uri}: cannot fetch it from {store} ({last}); check the URI and --tracking-uri")


def _classify(folder: Path, what: str) -> tuple[str, Path]:
    from tagtune.trainables.checkpoint import CHECKPOINT_META

    if (folder / "MLmodel").is_file():
        return "pyfunc", folder
    if (folder / CHECKPOINT_META).is_file():
        return "checkpoint", folder
    if (folder / "checkpoint" / CHECKPOINT_META).is_file():
        return "checkpoint", folder / "checkpoint"
    if (folder / "model" / "MLmodel").is_file():
        return "pyfunc", folder / "model"
    raise InputError(f"{what}: {folder} holds neither an MLflow model (MLmodel) nor a tagtune checkpoint (model.json)")
