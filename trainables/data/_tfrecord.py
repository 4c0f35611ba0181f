"""TFRecord files of AudioSet ``SequenceExample`` records, read and written without TensorFlow.

Framing (per record): ``uint64 LE length``, ``uint32 masked CRC32C(length bytes)``, ``data``,
``uint32 masked CRC32C(data)``.  Both CRCs of every record are verified.

The payload is a ``tf.train.SequenceExample`` decoded by a small hand-written protobuf
wire-format reader (no protobuf / tensorflow dependency).  Only the fields AudioSet uses are
extracted: context ``video_id``, ``start_time_seconds``, ``end_time_seconds``, ``labels`` and the
``audio_embedding`` feature list (one 128-byte frame per second).  Unknown fields are skipped;
both packed and unpacked encodings of repeated numbers are accepted.

The writer emits the same format Google released (same field numbers, packed numbers).
"""

from __future__ import annotations

import os
import struct
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tagtune.errors import InputError

FEATURE_DIM = 128
"""Bytes per embedding frame (one frame per second)."""
MAX_FRAMES = 10
"""Seconds kept per clip; AudioSet clips are 10 s long."""

_MASK_DELTA = 0xA282EAD8
_CORRUPT_FIX = "the file is corrupt; re-download it or remove it from the folder"
_NOT_AUDIOSET_FIX = "the file is not AudioSet embedding data; remove it from the folder"
_HEADER = struct.Struct("<QI")
_U32 = struct.Struct("<I")

# Field numbers of the tf.train messages we read and write.
_SEQ_CONTEXT, _SEQ_FEATURE_LISTS = 1, 2
_FEAT_BYTES, _FEAT_FLOAT, _FEAT_INT64 = 1, 2, 3
_WT_VARINT, _WT_I64, _WT_LEN, _WT_I32 = 0, 1, 2, 5


# --------------------------------------------------------------------------------------------
# CRC and framing
# --------------------------------------------------------------------------------------------


_CRC32C: list[Callable[[bytes | bytearray | memoryview], int]] = []


def _crc32c(data: bytes | bytearray | memoryview) -> int:
    """CRC32C of ``data``; ``crc32c`` is imported on first use, so the training loop (which
    never reads TFRecords) imports without it (a GPU machine may have only PyTorch)."""
    if not _CRC32C:
        from crc32c import crc32c

        _CRC32C.append(crc32c)
    return int(_CRC32C[0](data))


def masked_crc(data: bytes | bytearray | memoryview) -> int:
    """Return TFRecord's masked CRC32C of ``data``."""
    crc = _crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def frame_record(payload: bytes) -> bytes:
    """Return ``payload`` wrapped in TFRecord framing (length, CRCs)."""
    length = struct.pack("<Q", len(payload))
    return b"".join((length, _U32.pack(masked_crc(length)), payload, _U32.pack(masked_crc(payload))))


def write_record_file(path: str | os.PathLike, payloads: Iterable[bytes]) -> Path:
    """Write the ``payloads`` as one TFRecord file at ``path``; return the path."""
    path = Path(path)
    with open(path, "wb") as fh:
        for payload in payloads:
            fh.write(frame_record(payload))
    return path


def _read_bytes(path: Path) -> bytes:
    """Read a whole file, turning OS errors into :class:`InputError`."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}; check the file exists and is readable") from exc


def split_records(buf: bytes, path: str | os.PathLike) -> Iterator[tuple[int, int, bytes]]:
    """Yield ``(record_index, byte_offset, payload)`` for each record in the file bytes ``buf``.

    Verifies both CRCs; raises :class:`InputError` naming ``path`` on any framing problem.
    """
    pos, size, index = 0, len(buf), 0
    while pos < size:
        if size - pos < _HEADER.size:
            raise _framing_error("truncated record header", index, pos, path)
        length, length_crc = _HEADER.unpack_from(buf, pos)
        if masked_crc(buf[pos : pos + 8]) != length_crc:
            raise _framing_error("bad length CRC", index, pos, path)
        start = pos + _HEADER.size
        stop = start + length
        if stop + 4 > size:
            raise _framing_error("truncated record", index, pos, path)
        payload = buf[start:stop]
        if masked_crc(payload) != _U32.unpack_from(buf, stop)[0]:
            raise _framing_error("bad data CRC", index, pos, path)
        yield index, pos, payload
        pos = stop + 4
        index += 1


def read_records(path: str | os.PathLike) -> Iterator[bytes]:
    """Yield the verified payload of every record in the TFRecord file ``path``."""
    path = Path(path)
    for _, _, payload in split_records(_read_bytes(path), path):
        yield payload


def _framing_error(what: str, index: int, offset: int, path: str | os.PathLike) -> InputError:
    """Build the one-line error for a framing problem."""
    return InputError(f"{what} in record {index} (byte offset {offset}) of {path}: {_CORRUPT_FIX}")


# --------------------------------------------------------------------------------------------
# Protobuf wire format: decoding
# --------------------------------------------------------------------------------------------


class _Malformed(Exception):
    """Internal: the payload is not a valid protobuf message."""


def _varint(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    """Decode a base-128 varint at ``pos``; return ``(value, new_pos)``."""
    if pos < end:
        byte = buf[pos]
        if byte < 0x80:
            return byte, pos + 1
    result = shift = 0
    while True:
        if pos >= end:
            raise _Malformed("a varint runs past the end of its message")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise _Malformed("a varint is longer than 10 bytes")


def _fields(buf: bytes, pos: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """Yield ``(field_number, wire_type, a, b)`` for each field in ``buf[pos:end]``.

    Length-delimited and fixed-width fields give their payload as ``buf[a:b]``; varints give
    their value as ``a`` (``b`` is 0).
    """
    while pos < end:
        key = buf[pos]
        if key < 0x80:
            pos += 1
        else:
            key, pos = _varint(buf, pos, end)
        field, wire = key >> 3, key & 7
        if field == 0:
            raise _Malformed("field number 0")
        if wire == _WT_LEN:
            length, pos = _varint(buf, pos, end)
            stop = pos + length
            if stop > end:
                raise _Malformed("a length-delimited field runs past the end of its message")
            yield field, wire, pos, stop
            pos = stop
        elif wire == _WT_VARINT:
            value, pos = _varint(buf, pos, end)
            yield field, wire, value, 0
        elif wire in (_WT_I32, _WT_I64):
            stop = pos + (4 if wire == _WT_I32 else 8)
            if stop > end:
                raise _Malformed("a fixed-width field runs past the end of its message")
            yield field, wire, pos, stop
            pos = stop
        else:
            raise _Malformed(f"unsupported wire type {wire}")


def _map_entries(buf: bytes, pos: int, end: int) -> Iterator[tuple[str, int, int]]:
    """Yield ``(key, a, b)`` for each ``map<string, Message>`` entry (field 1) in the range."""
    for field, wire, a, b in _fields(buf, pos, end):
        if field != 1:
            continue
        if wire != _WT_LEN:
            raise _Malformed("a map entry is not length-delimited")
        key, va, vb = b"", b, b
        for efield, ewire, ea, eb in _fields(buf, a, b):
            if ewire != _WT_LEN:
                continue
            if efield == 1:
                key = buf[ea:eb]
            elif efield == 2:
                va, vb = ea, eb
        try:
            name = key.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _Malformed("a feature name is not UTF-8") from exc
        yield name, va, vb


def _feature_kind(buf: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """Return ``(kind, a, b)`` of a ``Feature``: kind 1 bytes, 2 float, 3 int64, 0 empty."""
    kind, ka, kb = 0, end, end
    for field, wire, a, b in _fields(buf, pos, end):
        if field in (_FEAT_BYTES, _FEAT_FLOAT, _FEAT_INT64) and wire == _WT_LEN:
            kind, ka, kb = field, a, b
    return kind, ka, kb


def _bytes_values(buf: bytes, pos: int, end: int) -> list[bytes]:
    """Decode a ``BytesList`` body."""
    return [buf[a:b] for field, wire, a, b in _fields(buf, pos, end) if field == 1 and wire == 2]


def _float_values(buf: bytes, pos: int, end: int) -> list[float]:
    """Decode a ``FloatList`` body (packed or unpacked)."""
    out: list[float] = []
    for field, wire, a, b in _fields(buf, pos, end):
        if field != 1:
            continue
        if wire == _WT_LEN:
            if (b - a) % 4:
                raise _Malformed("a packed float list has a length that is not a multiple of 4")
            out.extend(struct.unpack_from(f"<{(b - a) // 4}f", buf, a))
        elif wire == _WT_I32:
            out.append(struct.unpack_from("<f", buf, a)[0])
        else:
            raise _Malformed("a float list value has the wrong wire type")
    return out


def _int64_values(buf: bytes, pos: int, end: int) -> list[int]:
    """Decode an ``Int64List`` body (packed or unpacked), as signed 64-bit integers."""
    out: list[int] = []
    for field, wire, a, b in _fields(buf, pos, end):
        if field != 1:
            continue
        if wire == _WT_LEN:
            while a < b:
                value, a = _varint(buf, a, b)
                out.append(value)
        elif wire == _WT_VARINT:
            out.append(a)
        else:
            raise _Malformed("an int64 list value has the wrong wire type")
    return [v - (1 << 64) if v >= (1 << 63) else v for v in out]


@dataclass(frozen=True)
class Clip:
    """The AudioSet fields of one decoded ``SequenceExample``."""

    video_id: str | None
    start_seconds: float | None
    end_seconds: float | None
    labels: list[int]
    frames: list[bytes]
    """One bytes value per second (each must be :data:`FEATURE_DIM` long)."""


def _decode_frames(buf: bytes, pos: int, end: int) -> list[bytes]:
    """Decode the ``audio_embedding`` ``FeatureList``: one bytes value per frame."""
    frames: list[bytes] = []
    for field, wire, a, b in _fields(buf, pos, end):
        if field != 1 or wire != _WT_LEN:
            continue
        kind, ka, kb = _feature_kind(buf, a, b)
        if kind != _FEAT_BYTES:
            raise _Malformed("an audio_embedding frame is not a bytes feature")
        values = _bytes_values(buf, ka, kb)
        if len(values) != 1:
            raise _Malformed(f"an audio_embedding frame holds {len(values)} byte strings, not 1")
        frames.append(values[0])
    return frames


def parse_sequence_example(payload: bytes) -> Clip:
    """Decode the AudioSet fields of a serialized ``SequenceExample``.

    Raises ``_Malformed`` (internal) if the bytes are not a valid message; callers add context.
    """
    context: dict[str, tuple[int, int, int]] = {}
    frames: list[bytes] = []
    end = len(payload)
    for field, wire, a, b in _fields(payload, 0, end):
        if wire != _WT_LEN:
            continue
        if field == _SEQ_CONTEXT:
            for key, fa, fb in _map_entries(payload, a, b):
                context[key] = _feature_kind(payload, fa, fb)
        elif field == _SEQ_FEATURE_LISTS:
            for key, fa, fb in _map_entries(payload, a, b):
                if key == "audio_embedding":
                    frames = _decode_frames(payload, fa, fb)
    return Clip(
        video_id=_context_id(payload, context.get("video_id")),
        start_seconds=_context_float(payload, context.get("start_time_seconds")),
        end_seconds=_context_float(payload, context.get("end_time_seconds")),
        labels=_context_ints(payload, context.get("labels")),
        frames=frames,
    )


def _context_id(buf: bytes, feature: tuple[int, int, int] | None) -> str | None:
    """The first value of a bytes feature, as text (``None`` if absent)."""
    if feature is None or feature[0] != _FEAT_BYTES:
        return None
    values = _bytes_values(buf, feature[1], feature[2])
    return values[0].decode("utf-8", errors="replace") if values else None


def _context_float(buf: bytes, feature: tuple[int, int, int] | None) -> float | None:
    """The first value of a float feature (``None`` if absent)."""
    if feature is None or feature[0] != _FEAT_FLOAT:
        return None
    values = _float_values(buf, feature[1], feature[2])
    return values[0] if values else None


def _context_ints(buf: bytes, feature: tuple[int, int, int] | None) -> list[int]:
    """All values of an int64 feature (empty if absent)."""
    if feature is None or feature[0] != _FEAT_INT64:
        return []
    return _int64_values(buf, feature[1], feature[2])


# --------------------------------------------------------------------------------------------
# Reading folders of shards
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RawClips:
    """Clips decoded from TFRecord files, before class names are attached."""

    x: np.ndarray
    """uint8 [N, MAX_FRAMES, FEATURE_DIM], zero-padded at the end."""
    lengths: np.ndarray
    """int16 [N], seconds present."""
    ids: list[str]
    labels: list[list[int]]
    files: list[Path]
    origin: np.ndarray
    """int64 [N, 2]: (index into ``files``, record index) of each clip, for error messages."""


SHARD_SUFFIXES = (".tfrecord", ".tfrecords")
"""File name endings of TFRecord shards."""


def list_shards(folder: str | os.PathLike) -> list[Path]:
    """Return the sorted ``*.tfrecord`` / ``*.tfrecords`` files of ``folder``; :class:`InputError` if none."""
    folder = Path(folder)
    shards = sorted(p for p in folder.iterdir() if p.name.endswith(SHARD_SUFFIXES) and p.is_file())
    if not shards:
        raise InputError(
            f"no *.tfrecord files in folder {folder}; pass --train with a folder of *.tfrecord(s), "
            "an .h5, .npz or .npy file, a HEAR task folder or a tagtune cache"
        )
    return shards


def read_shards(files: Sequence[str | os.PathLike]) -> RawClips:
    """Decode every record of the TFRecord ``files`` into padded arrays."""
    paths = [Path(f) for f in files]
    parts: list[bytes] = []
    lengths: list[int] = []
    ids: list[str] = []
    labels: list[list[int]] = []
    origin: list[tuple[int, int]] = []
    truncated: list[str] = []
    for file_index, path in enumerate(paths):
        for index, offset, payload in split_records(_read_bytes(path), path):
            clip = _decode_record(payload, index, offset, path)
            if len(clip.frames) > MAX_FRAMES:
                truncated.append(f"{path} record {index}")
            frames = clip.frames[:MAX_FRAMES]
            parts.append(b"".join(frames) + bytes(FEATURE_DIM * (MAX_FRAMES - len(frames))))
            lengths.append(len(frames))
            ids.append(clip.video_id or "")
            labels.append(clip.labels)
            origin.append((file_index, index))
    if truncated:
        warnings.warn(
            f"{len(truncated)} clip(s) have more than {MAX_FRAMES} seconds and were cut to "
            f"{MAX_FRAMES} (first: {truncated[0]})",
            stacklevel=2,
        )
    return _assemble(parts, lengths, ids, labels, paths, origin)


def _assemble(
    parts: list[bytes],
    lengths: list[int],
    ids: list[str],
    labels: list[list[int]],
    files: list[Path],
    origin: list[tuple[int, int]],
) -> RawClips:
    """Pack per-clip byte strings into the :class:`RawClips` arrays."""
    x = np.frombuffer(bytearray(b"".join(parts)), dtype=np.uint8)
    return RawClips(
        x=x.reshape(len(parts), MAX_FRAMES, FEATURE_DIM),
        lengths=np.asarray(lengths, dtype=np.int16),
        ids=ids,
        labels=labels,
        files=files,
        origin=np.asarray(origin, dtype=np.int64).reshape(-1, 2),
    )


def _decode_record(payload: bytes, index: int, offset: int, path: Path) -> Clip:
    """Decode and validate one record, raising :class:`InputError` with file context."""
    where = f"record {index} (byte offset {offset}) of {path}"
    try:
        clip = parse_sequence_example(payload)
    except _Malformed as exc:
        raise InputError(
            f"record {index} (byte offset {offset}) of {path} is not a valid SequenceExample ({exc}): {_CORRUPT_FIX}"
        ) from None
    if not clip.video_id:
        raise InputError(f"no video_id in {where}: {_NOT_AUDIOSET_FIX}")
    if not clip.frames:
        raise InputError(f"no audio_embedding frames in {where}: {_NOT_AUDIOSET_FIX}")
    for second, frame in enumerate(clip.frames):
        if len(frame) != FEATURE_DIM:
            raise InputError(
                f"wrong embedding width in {where}: second {second} has {len(frame)} bytes, "
                f"expected {FEATURE_DIM}; {_NOT_AUDIOSET_FIX}"
            )
    return clip


# --------------------------------------------------------------------------------------------
# Protobuf wire format: encoding, and the shard writer
# --------------------------------------------------------------------------------------------


def _encode_varint(value: int) -> bytes:
    """Encode a non-negative int (or a negative int64, two's complement) as a varint."""
    if value < 0:
        value += 1 << 64
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _len_field(field: int, body: bytes) -> bytes:
    """Encode a length-delimited field."""
    return _encode_varint((field << 3) | _WT_LEN) + _encode_varint(len(body)) + body


def _bytes_feature(values: Sequence[bytes]) -> bytes:
    """Encode ``Feature{bytes_list{value...}}``."""
    return _len_field(_FEAT_BYTES, b"".join(_len_field(1, v) for v in values))


def _float_feature(values: Sequence[float]) -> bytes:
    """Encode ``Feature{float_list{packed value}}``."""
    body = _len_field(1, struct.pack(f"<{len(values)}f", *values)) if values else b""
    return _len_field(_FEAT_FLOAT, body)


def _int64_feature(values: Sequence[int]) -> bytes:
    """Encode ``Feature{int64_list{packed value}}``."""
    body = _len_field(1, b"".join(_encode_varint(int(v)) for v in values)) if values else b""
    return _len_field(_FEAT_INT64, body)


def _map(entries: Sequence[tuple[str, bytes]]) -> bytes:
    """Encode ``map<string, Message>`` entries as repeated field 1."""
    return b"".join(_len_field(1, _len_field(1, key.encode("utf-8")) + _len_field(2, value)) for key, value in entries)


def encode_sequence_example(
    video_id: str,
    labels: Sequence[int],
    frames: Sequence[bytes],
    start_seconds: float = 0.0,
    end_seconds: float | None = None,
) -> bytes:
    """Serialize one AudioSet clip as a ``tf.train.SequenceExample`` (Google's layout).

    Context entries are written in one of the orders found in Google's release (TensorFlow
    writes maps in hash order), so a re-encoded real record can be byte-identical.

    ``frames`` are written as given (no width check), so tests can build bad records.
    """
    if end_seconds is None:
        end_seconds = start_seconds + len(frames)
    context = _map(
        [
            ("video_id", _bytes_feature([video_id.encode("utf-8")])),
            ("start_time_seconds", _float_feature([start_seconds])),
            ("labels", _int64_feature(list(labels))),
            ("end_time_seconds", _float_feature([end_seconds])),
        ]
    )
    feature_list = b"".join(_len_field(1, _bytes_feature([bytes(f)])) for f in frames)
    feature_lists = _map([("audio_embedding", feature_list)])
    return _len_field(_SEQ_CONTEXT, context) + _len_field(_SEQ_FEATURE_LISTS, feature_lists)


def write_tfrecords(
    out_dir: str | os.PathLike,
    x: np.ndarray,
    y: np.ndarray,
    lengths: np.ndarray,
    ids: Sequence[str] | np.ndarray,
    shard_size: int = 100,
    *,
    start_seconds: Sequence[float] | np.ndarray | None = None,
    prefix: str = "shard",
) -> list[Path]:
    """Write clips as TFRecord shards of ``shard_size`` SequenceExamples; return the paths.

    ``x`` uint8 [N, T, F], ``y`` bool [N, C], ``lengths`` [N] (frames written per clip),
    ``ids`` [N] video ids.  Shards are named ``{prefix}-00000.tfrecord`` and so on.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    n = len(x)
    if shard_size < 1:
        raise ValueError("shard_size must be at least 1")
    starts = np.zeros(n) if start_seconds is None else np.asarray(start_seconds, dtype=float)
    paths: list[Path] = []
    for shard, first in enumerate(range(0, n, shard_size)):
        payloads = (
            encode_sequence_example(
                str(ids[i]),
                np.flatnonzero(y[i]).tolist(),
                [x[i, t].tobytes() for t in range(int(lengths[i]))],
                float(starts[i]),
                float(starts[i]) + int(lengths[i]),
            )
            for i in range(first, min(first + shard_size, n))
        )
        paths.append(write_record_file(out_dir / f"{prefix}-{shard:05d}.tfrecord", payloads))
    return paths
