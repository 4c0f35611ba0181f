"""A model's checkpoint: its weights (``model.pt``) and what it was trained as and on
(``model.json``: config, shapes, class names, input scaling, metrics).

Written for each trial's best epoch (:mod:`tagtune.tune.trainable`), for each final and by
``tagtune train``; read back by ``tagtune predict``, the finals and the registered pyfunc model.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tagtune.trainables.data import InputScaling, TrialData
from tagtune.trainables.loop import build_model, model_task

CHECKPOINT_WEIGHTS = "model.pt"
CHECKPOINT_META = "model.json"


def save_model(directory: str | os.PathLike[str], model: nn.Module | dict, meta: Mapping[str, Any]) -> None:
    """Write a model's state dict and its description (config, shapes, class names)."""
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    state = model.state_dict() if isinstance(model, nn.Module) else model
    torch.save({k: v.detach().cpu() for k, v in state.items()}, folder / CHECKPOINT_WEIGHTS)
    (folder / CHECKPOINT_META).write_text(json.dumps(dict(meta), indent=2, default=str))


def load_model(directory: str | os.PathLike[str]) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a model saved by :func:`save_model` (weights loaded with ``weights_only=True``);
    its ``input_scaling`` is the checkpoint's :class:`InputScaling`."""
    folder = Path(directory)
    meta = json.loads((folder / CHECKPOINT_META).read_text())
    model = build_model(
        meta["config"],
        n_frames=meta["n_frames"],
        n_features=meta["n_features"],
        n_classes=meta["n_classes"],
        task=meta.get("task"),
    )
    state = torch.load(folder / CHECKPOINT_WEIGHTS, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    # The checkpoint's input scaling (uint8 / 255, or the training split's standardization):
    # tagtune.trainables.batches.predict applies it to raw clips.
    object.__setattr__(model, "input_scaling", InputScaling.from_meta(meta))
    return model.eval(), meta


def model_meta(config: Mapping[str, Any], data: TrialData, metrics: Mapping[str, float]) -> dict[str, Any]:
    """What a checkpoint records beside the weights."""
    n_frames, n_features, n_classes = data.shape
    inputs = {"inputs": data.scaling.to_meta()} if data.kind == "embeddings" else {}
    read = {"read": dict(data.read_keys)} if data.read_keys else {}
    return {
        "config": dict(config),
        "task": model_task(config, data.single_label),
        "n_frames": n_frames,
        "n_features": n_features,
        "n_classes": n_classes,
        "class_names": list(data.class_names),
        "metrics": dict(metrics),
        **inputs,
        **read,
    }
