"""Summaries of a data source: what ``tagtune data inspect`` prints."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from tagtune.trainables.data._dataset import Dataset
from tagtune.trainables.data._source import open_source


def summarize(ds: Dataset) -> dict[str, Any]:
    """Statistics of a loaded :class:`Dataset` (clips, seconds, classes, labels, rarest class)."""
    lengths = np.asarray(ds.lengths)
    y = np.asarray(ds.y)
    per_clip = y.sum(axis=1)
    positives = y.sum(axis=0)
    rarest = int(np.argmin(positives)) if ds.n_classes else 0
    return {
        "source": ds.source,
        "clips": ds.n_clips,
        "frames": ds.n_frames,
        "features": ds.n_features,
        "seconds": {
            "min": int(lengths.min()),
            "mean": round(float(lengths.mean()), 3),
            "max": int(lengths.max()),
            "full": int((lengths == ds.n_frames).sum()),
        },
        "classes": ds.n_classes,
        "classes_without_positives": int((positives == 0).sum()),
        "labels_per_clip": {
            "min": int(per_clip.min()),
            "mean": round(float(per_clip.mean()), 3),
            "max": int(per_clip.max()),
        },
        "rarest_class": {
            "index": rarest,
            "name": ds.class_names[rarest],
            "positives": int(positives[rarest]),
        },
    }


def inspect(path: str | os.PathLike, *, cache_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Load ``path`` (through the cache) and summarize it; ``format`` is the on-disk format."""
    source = open_source(path, cache_dir=cache_dir)
    return {"path": str(Path(path).resolve()), "format": source.format, **summarize(source.embeddings())}


def format_inspect(d: dict[str, Any]) -> str:
    """Render an :func:`inspect` result as a readable text block."""
    sec, lab, rare = d["seconds"], d["labels_per_clip"], d["rarest_class"]
    lines = [
        f"path:              {d.get('path', d['source'])}",
        f"format:            {d.get('format', d['source'].split(':', 1)[0])}",
        f"clips:             {d['clips']:,}",
        f"shape per clip:    {d['frames']} s x {d['features']} features (uint8)",
        f"seconds per clip:  min {sec['min']}, mean {sec['mean']:.2f}, max {sec['max']}"
        f" ({sec['full']:,} clips have the full {d['frames']} s)",
        f"classes:           {d['classes']}"
        + (f" ({d['classes_without_positives']} with no positive clip)" if d["classes_without_positives"] else ""),
        f"labels per clip:   min {lab['min']}, mean {lab['mean']:.2f}, max {lab['max']}",
        f"rarest class:      {rare['name']!r} (index {rare['index']}), {rare['positives']:,} positive clips",
    ]
    return "\n".join(lines)
