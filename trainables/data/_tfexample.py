"""TFRecord records of any ``tf.train.Example`` / ``SequenceExample`` layout, and their writer.

AudioSet's own records (``SequenceExample`` with 128-byte ``audio_embedding`` frames) keep the
fast reader of ``_tfrecord``; every other record goes through :func:`read_general`:

* features (``--feature-key``; default the first of ``audio_embedding``, ``embedding``,
  ``features``, ``x`` that the record has): a feature list (one frame per ``Feature``: one bytes
  value = uint8 frame, or a float list) or a context / ``Example`` feature (bytes values: one
  uint8 frame each; a float list: one per-clip embedding, T = 1);
* labels (``--label-key``; default ``labels``, then ``label``): int64 indices or bytes names; a
  ``label`` feature with one value per record is single-label, a ``labels`` list multi-label;
* ids: ``video_id`` or ``id`` (else ``<file>:<record>``); the group (``--group-key``, default
  ``group``) and ``split`` from the context when present.

A missing key is an error listing the keys the record has.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tagtune.errors import InputError
from tagtune.trainables.data._options import DEFAULT_OPTIONS, ReadOptions
from tagtune.trainables.data._tfrecord import (
    _FEAT_BYTES,
    _FEAT_FLOAT,
    _FEAT_INT64,
    _SEQ_CONTEXT,
    _SEQ_FEATURE_LISTS,
    _WT_LEN,
    _bytes_feature,
    _bytes_values,
    _feature_kind,
    _fields,
    _float_feature,
    _float_values,
    _int64_feature,
    _int64_values,
    _len_field,
    _Malformed,
    _map,
    _map_entries,
    _read_bytes,
    split_records,
    write_record_file,
)

FEATURE_KEYS = ("audio_embedding", "embedding", "features", "x")
LABEL_KEYS = ("labels", "label")
ID_KEYS = ("video_id", "id")

Feature = tuple[int, int, int]


def _record_maps(payload: bytes) -> tuple[dict[str, Feature], dict[str, tuple[int, int]]]:
    """(context / Example features, feature lists) of one record, as byte ranges."""
    context: dict[str, Feature] = {}
    lists: dict[str, tuple[int, int]] = {}
    for field, wire, a, b in _fields(payload, 0, len(payload)):
        if wire != _WT_LEN:
            continue
        if field == _SEQ_CONTEXT:
            for key, fa, fb in _map_entries(payload, a, b):
                context[key] = _feature_kind(payload, fa, fb)
        elif field == _SEQ_FEATURE_LISTS:
            for key, fa, fb in _map_entries(payload, a, b):
                lists[key] = (fa, fb)
    return context, lists


def is_audioset(payload: bytes) -> bool:
    """A ``SequenceExample`` whose ``audio_embedding`` frames are 128-byte strings (Google's layout)."""
    try:
        context, lists = _record_maps(payload)
        if "audio_embedding" not in lists or "video_id" not in context:
            return False
        a, b = lists["audio_embedding"]
        for field, wire, fa, fb in _fields(payload, a, b):
            if field == 1 and wire == _WT_LEN:
                kind, ka, kb = _feature_kind(payload, fa, fb)
                values = _bytes_values(payload, ka, kb) if kind == _FEAT_BYTES else []
                return len(values) == 1 and len(values[0]) == 128
    except _Malformed:
        return False
    return False


def _values(payload: bytes, feature: Feature) -> list[Any]:
    kind, a, b = feature
    if kind == _FEAT_BYTES:
        return _bytes_values(payload, a, b)
    if kind == _FEAT_FLOAT:
        return _float_values(payload, a, b)
    if kind == _FEAT_INT64:
        return _int64_values(payload, a, b)
    return []


def _frames(payload: bytes, a: int, b: int, where: str) -> np.ndarray:
    """A feature list as ``[T, D]`` (uint8 for bytes frames, float32 for float frames)."""
    rows: list[np.ndarray] = []
    for field, wire, fa, fb in _fields(payload, a, b):
        if field != 1 or wire != _WT_LEN:
            continue
        kind, ka, kb = _feature_kind(payload, fa, fb)
        if kind == _FEAT_BYTES:
            values = _bytes_values(payload, ka, kb)
            if len(values) != 1:
                raise InputError(f"{where}: a frame holds {len(values)} byte strings, not 1")
            rows.append(np.frombuffer(values[0], dtype=np.uint8))
        elif kind == _FEAT_FLOAT:
            rows.append(np.asarray(_float_values(payload, ka, kb), dtype=np.float32))
        else:
            raise InputError(f"{where}: a frame is an int64 feature; frames must be bytes or floats")
    widths = {len(r) for r in rows}
    if len(widths) > 1:
        raise InputError(f"{where}: frames of different widths {sorted(widths)}; every frame needs the same width")
    return np.stack(rows) if rows else np.zeros((0, 0), np.float32)


def _pick(keys: Sequence[str], given: str | None, defaults: Sequence[str]) -> str | None:
    if given is not None:
        return given if given in keys else None
    return next((k for k in defaults if k in keys), None)


def _missing(what: str, flag: str, key: str | None, defaults: Sequence[str], where: str, keys: list[str]) -> InputError:
    looked = repr(key) if key else " or ".join(repr(k) for k in defaults)
    return InputError(
        f"{where} has no {what} {looked} (the record has: {', '.join(sorted(keys)) or 'no keys'}); "
        f"name the {what} with {flag}"
    )


def read_general(files: Sequence[Path], options: ReadOptions = DEFAULT_OPTIONS) -> dict[str, Any]:
    """Decode every record of ``files`` (module docstring) into per-clip arrays for ``build_dataset``."""
    x: list[np.ndarray] = []
    labels: list[Any] = []
    ids: list[str] = []
    groups: list[str] = []
    split: list[str] = []
    for path in files:
        for index, offset, payload in split_records(_read_bytes(path), path):
            where = f"record {index} of {path}"
            try:
                context, lists = _record_maps(payload)
            except _Malformed as exc:
                raise InputError(
                    f"record {index} (byte offset {offset}) of {path} is not a valid Example or "
                    f"SequenceExample ({exc}): the file is corrupt; re-download it or remove it"
                ) from None
            keys = [*context, *lists]
            fkey = _pick(keys, options.feature_key, FEATURE_KEYS)
            if fkey is None:
                raise _missing("feature", "--feature-key", options.feature_key, FEATURE_KEYS, where, keys)
            lkey = _pick(list(context), options.label_key, LABEL_KEYS)
            if lkey is None:
                raise _missing("label", "--label-key", options.label_key, LABEL_KEYS, where, keys)
            if fkey in lists:
                frames = _frames(payload, *lists[fkey], where)
            else:
                kind = context[fkey][0]
                values = _values(payload, context[fkey])
                if kind == _FEAT_BYTES:
                    frames = np.stack([np.frombuffer(v, dtype=np.uint8) for v in values]) if values else frames
                elif kind == _FEAT_FLOAT:
                    frames = np.asarray(values, dtype=np.float32)[None, :]
                else:
                    raise InputError(f"{where}: feature {fkey!r} is int64; features must be bytes or floats")
            if frames.size == 0:
                raise InputError(f"{where}: feature {fkey!r} is empty; every clip needs its features")
            x.append(frames)
            raw = _values(payload, context[lkey])
            decoded = [v.decode("utf-8", errors="replace") if isinstance(v, bytes) else v for v in raw]
            labels.append(decoded if lkey != "label" or len(decoded) != 1 else decoded[0])
            id_key = next((k for k in ID_KEYS if k in context), None)
            found = _values(payload, context[id_key]) if id_key else []
            ids.append(found[0].decode("utf-8", errors="replace") if found else f"{path.name}:{index}")
            gkey = options.group_key or "group"
            if options.group_key is not None and gkey not in context:
                raise _missing("group", "--group-key", options.group_key, (), where, keys)
            if gkey in context:
                g = _values(payload, context[gkey])
                groups.append(g[0].decode() if g and isinstance(g[0], bytes) else str(g[0] if g else ""))
            if "split" in context:
                sv = _values(payload, context["split"])
                split.append(sv[0].decode() if sv and isinstance(sv[0], bytes) else "")
    if split and len(split) != len(x):
        raise InputError(f"{files[0].parent}: some records have a 'split' and some do not; mark every record")
    if groups and len(groups) != len(x):
        raise InputError(f"{files[0].parent}: some records have a group and some do not; mark every record")
    if any(isinstance(v, list) for v in labels):
        labels = [v if isinstance(v, list) else [v] for v in labels]
    return {"x": x, "labels": labels, "ids": ids, "groups": groups or None, "split": split or None}


def encode_example(
    clip_id: str,
    labels: Sequence[int] | Sequence[str],
    frames: np.ndarray,
    *,
    sequence: bool,
    feature_key: str = "embedding",
    label_key: str = "labels",
    extra: dict[str, str] | None = None,
) -> bytes:
    """One clip as a ``SequenceExample`` (``sequence``: one ``Feature`` per frame in the feature
    list ``feature_key``) or an ``Example`` (per-clip float list, or one bytes value per frame);
    uint8 frames as bytes, float frames as float lists."""
    frames = np.asarray(frames)
    label_feature = (
        _bytes_feature([str(v).encode() for v in labels])
        if labels and isinstance(labels[0], str)
        else _int64_feature([int(v) for v in labels])
    )
    entries = [("id", _bytes_feature([clip_id.encode()])), (label_key, label_feature)]
    entries += [(k, _bytes_feature([v.encode()])) for k, v in (extra or {}).items()]

    def one(frame: np.ndarray) -> bytes:
        return _bytes_feature([frame.tobytes()]) if frame.dtype == np.uint8 else _float_feature(frame.tolist())

    if sequence:
        body = b"".join(_len_field(1, one(f)) for f in frames)
        return _len_field(_SEQ_CONTEXT, _map(entries)) + _len_field(_SEQ_FEATURE_LISTS, _map([(feature_key, body)]))
    if frames.dtype == np.uint8:
        feat = _bytes_feature([f.tobytes() for f in frames])
    else:
        if len(frames) != 1:
            raise ValueError("an Example holds one float embedding per clip (T = 1)")
        feat = _float_feature(frames[0].astype(np.float32).tolist())
    return _len_field(_SEQ_CONTEXT, _map([*entries, (feature_key, feat)]))


def write_examples(
    out_dir: str | os.PathLike, payloads: Sequence[bytes], shard_size: int = 100, suffix: str = ".tfrecords"
) -> list[Path]:
    """Write serialized records as shards ``part-00000<suffix>``..."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return [
        write_record_file(out / f"part-{i // shard_size:05d}{suffix}", payloads[i : i + shard_size])
        for i in range(0, len(payloads), shard_size)
    ]
