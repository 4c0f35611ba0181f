"""Summaries of a data source: what ``tagtune data inspect`` prints.

Embeddings: clips, frames, features, dtype, value range, NaN / inf count, classes, labels per
clip, the rarest class, the label kind, the data set's own split and its groups.  Audio (a CSV of audio
files): files and their formats, sample rates, durations (min / median / max, from the files'
headers, nothing decoded), classes and clips per class, verified flags, the split a search and
``tagtune finalize`` will use, and the files that cannot be read.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from tagtune.trainables.data._dataset import Dataset
from tagtune.trainables.data._options import ReadOptions
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
        **_values(ds),
        "label_kind": "single-label (multiclass)" if ds.single_label else "multi-label",
        "split": _own_split(ds),
        "groups": None if ds.groups is None else int(len(np.unique(np.asarray(ds.groups)))),
    }


def _values(ds: Dataset, chunk: int = 8192) -> dict[str, Any]:
    """dtype, value range and NaN / inf count of the features (read in chunks)."""
    x = ds.x
    lo, hi, nan, inf = np.inf, -np.inf, 0, 0
    for start in range(0, len(x), chunk):
        part = np.asarray(x[start : start + chunk])
        if part.dtype.kind == "f":
            nan += int(np.isnan(part).sum())
            inf += int(np.isinf(part).sum())
            finite = part[np.isfinite(part)]
        else:
            finite = part
        if finite.size:
            lo, hi = min(lo, float(finite.min())), max(hi, float(finite.max()))
    return {"dtype": str(np.dtype(x.dtype)), "value_range": [lo, hi], "nan": nan, "inf": inf}


def _own_split(ds: Dataset) -> dict[str, int] | None:
    """Clips per split of the data set's own split (``None``: the seeded split is used)."""
    if ds.split is None:
        return None
    names, counts = np.unique(np.asarray(ds.split), return_counts=True)
    return {str(n): int(c) for n, c in zip(names, counts, strict=True)}


def _file_info(path: Path) -> tuple[str, int, int] | str:
    """(format, sample rate, frames) of an audio file from its header, or why it cannot be read."""
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except (RuntimeError, OSError, ValueError, TypeError) as exc:
        return " ".join(str(exc).split()) or type(exc).__name__
    if info.frames <= 0:
        return "no samples"
    return f"{info.format} {info.subtype}".strip(), int(info.samplerate), int(info.frames)


def _split_rule(ds: Any) -> str:
    """How :meth:`AudioDataset.splits` chooses the validation clips of ``ds``."""
    split, fold = ds.table.split, ds.table.fold
    if (split == "val").any():
        return "the CSV's val rows"
    pool = fold[split != "test"]
    folds = np.unique(pool)
    if folds.size >= 2 and folds.min() > 0:
        return f"official fold {folds[0]} of {folds.size} (fold = folds[--seed % {folds.size}])"
    return "a seeded random 20% of the non-test clips (--val-fraction 0.2, --seed 0)"


def summarize_audio(ds: Any) -> dict[str, Any]:
    """Statistics of an :class:`AudioDataset`: files, formats, rates, durations, classes, clips per
    class, verified flags, the split (train / validation / test) and unreadable files."""
    table = ds.table
    formats: dict[str, int] = {}
    rates: dict[int, int] = {}
    seconds: list[float] = []
    unreadable: list[dict[str, str]] = []
    for file in table.files:
        info = _file_info(file)
        if isinstance(info, str):
            unreadable.append({"file": str(file), "reason": info})
            continue
        fmt, rate, frames = info
        formats[fmt] = formats.get(fmt, 0) + 1
        rates[rate] = rates.get(rate, 0) + 1
        seconds.append(frames / rate)
    secs = np.asarray(seconds) if seconds else np.asarray([np.nan])
    train, val, test = ds.splits(0.2, 0)
    per_class = np.asarray(table.y).sum(axis=0)
    verified = table.verified
    return {
        "source": ds.source,
        "csv": str(table.csv_path),
        "style": table.style,
        "files": table.n_clips,
        "formats": dict(sorted(formats.items(), key=lambda kv: -kv[1])),
        "sample_rates": dict(sorted(rates.items())),
        "duration_s": {
            "min": round(float(np.nanmin(secs)), 3),
            "median": round(float(np.nanmedian(secs)), 3),
            "max": round(float(np.nanmax(secs)), 3),
        },
        "classes": len(table.class_names),
        "single_label": table.single_label,
        "clips_per_class": {name: int(n) for name, n in zip(table.class_names, per_class, strict=True)},
        "verified": None if verified is None else {"yes": int(verified.sum()), "no": int((~verified).sum())},
        "split": {
            "train": len(train),
            "validation": len(val),
            "test": len(test),
            "validation_from": _split_rule(ds),
            "test_from": "the CSV's test rows (held out; tagtune finalize scores them)"
            if len(test)
            else "none: the CSV marks no clip as test; tagtune finalize needs --eval CSV of test files",
        },
        "unreadable": unreadable,
    }


def inspect(
    path: str | os.PathLike, *, cache_dir: str | os.PathLike | None = None, options: ReadOptions | None = None
) -> dict[str, Any]:
    """Load ``path`` (through the cache, read with ``options``) and summarize it; ``format`` is
    the on-disk format (``audio``: :func:`summarize_audio`, nothing decoded)."""
    source = open_source(path, cache_dir=cache_dir, options=options)
    where = {"path": str(Path(path).resolve()), "format": source.format}
    if source.kind == "audio":
        return {**where, **summarize_audio(source.read())}
    return {**where, **summarize(source.embeddings())}


def _counts(d: dict[Any, int], unit: str = "") -> str:
    return ", ".join(f"{k}{unit} ({v:,})" for k, v in d.items()) or "none"


def format_audio(d: dict[str, Any]) -> str:
    """Render an audio :func:`inspect` result as a readable text block."""
    dur, sp = d["duration_s"], d["split"]
    per_class = d["clips_per_class"]
    counts = list(per_class.values())
    shown = ", ".join(f"{k}: {v}" for k, v in list(per_class.items())[:30])
    more = f", ... ({len(per_class) - 30} more)" if len(per_class) > 30 else ""
    ver = d["verified"]
    lines = [
        f"path:              {d['path']}",
        f"format:            audio files listed by {d['csv']} ({d['style']} style)",
        f"files:             {d['files']:,} ({_counts(d['formats'])})",
        f"sample rates:      {_counts(d['sample_rates'], ' Hz')}",
        f"duration (s):      min {dur['min']:.3f}, median {dur['median']:.3f}, max {dur['max']:.3f}",
        f"classes:           {d['classes']} ({'single' if d['single_label'] else 'multi'}-label), "
        f"clips per class min {min(counts) if counts else 0}, max {max(counts) if counts else 0}",
        f"clips per class:   {shown}{more}",
        "verified:          "
        + ("no verified column" if ver is None else f"{ver['yes']:,} verified, {ver['no']:,} not"),
        f"split:             {sp['train']:,} train, {sp['validation']:,} validation, {sp['test']:,} test",
        f"  validation:      {sp['validation_from']}",
        f"  test:            {sp['test_from']}",
        f"unreadable files:  {len(d['unreadable'])}",
    ]
    lines += [f"  {u['file']}: {u['reason']}" for u in d["unreadable"]]
    return "\n".join(lines)


def format_inspect(d: dict[str, Any]) -> str:
    """Render an :func:`inspect` result as a readable text block."""
    if "files" in d and "duration_s" in d:
        return format_audio(d)
    sec, lab, rare = d["seconds"], d["labels_per_clip"], d["rarest_class"]
    lines = [
        f"path:              {d.get('path', d['source'])}",
        f"format:            {d.get('format', d['source'].split(':', 1)[0])}",
        f"clips:             {d['clips']:,}",
        f"shape per clip:    {d['frames']} frames x {d['features']} features ({d['dtype']})",
        f"values:            min {d['value_range'][0]:.4g}, max {d['value_range'][1]:.4g}; "
        f"{d['nan']:,} NaN, {d['inf']:,} inf",
        f"seconds per clip:  min {sec['min']}, mean {sec['mean']:.2f}, max {sec['max']}"
        f" ({sec['full']:,} clips have the full {d['frames']} s)",
        f"classes:           {d['classes']}"
        + (f" ({d['classes_without_positives']} with no positive clip)" if d["classes_without_positives"] else ""),
        f"labels per clip:   min {lab['min']}, mean {lab['mean']:.2f}, max {lab['max']}",
        f"rarest class:      {rare['name']!r} (index {rare['index']}), {rare['positives']:,} positive clips",
        f"label kind:        {d['label_kind']}",
        "split:             "
        + (
            ", ".join(f"{k} {v:,}" for k, v in d["split"].items()) + " (the data set's own)"
            if d["split"]
            else "seeded (--val-fraction of the clips; none held out as test)"
        ),
        f"groups:            {d['groups']:,} (the seeded split keeps each on one side)"
        if d["groups"]
        else "groups:            none",
    ]
    return "\n".join(lines)
