"""Decoding (soundfile), resampling (soxr) and the decoded-audio cache.

All clips of a table at one sample rate are stored as one flat sample array plus offsets
(:class:`AudioClips`).  The first load decodes every file, downmixes it to mono, resamples it
with soxr (high quality) and writes a cache folder (``samples.npy`` float16, ``offsets.npy``,
``tagtune-audio-cache.json``) under the cache root; later loads memory-map it.  The cache key
hashes the CSV's absolute path, the (path, size, mtime_ns) of the CSV and of every audio file,
the rate and the decoder version, so edited data or another rate is decoded afresh.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tagtune.errors import InputError
from tagtune.trainables.data._audio_table import AudioTable
from tagtune.trainables.data._cache import default_cache_dir

AUDIO_CACHE_MARKER = "tagtune-audio-cache.json"
DECODER_VERSION = 1
"""Bumped when decoding or resampling changes, so older cache entries are not reused."""
STORE_DTYPE = np.float16
"""Samples are cached as float16 (11 significant bits: far below the noise of 16-bit audio
for tagging, half the memory of float32)."""
MIN_RATE, MAX_RATE = 1000, 192_000


@dataclass(frozen=True, eq=False)
class AudioClips:
    """Every clip of a table at one sample rate: ``samples[offsets[i]:offsets[i + 1]]`` is clip i."""

    samples: np.ndarray
    """float16 [total samples], mono, in [-1, 1] (memory-mapped when read from the cache)."""
    offsets: np.ndarray
    """int64 [N + 1], non-decreasing, ``offsets[0] == 0``."""
    sample_rate: int

    @property
    def n_clips(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        """int64 [N]: samples per clip."""
        return np.diff(self.offsets)

    def clip(self, i: int) -> np.ndarray:
        """Clip ``i`` as float32."""
        return np.asarray(self.samples[self.offsets[i] : self.offsets[i + 1]], dtype=np.float32)

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        # Pickle (Ray's object store) plain arrays, not memory maps of this machine's cache.
        return (AudioClips, (np.asarray(self.samples), np.asarray(self.offsets), self.sample_rate))


def check_rate(rate: object, flag: str = "sample_rate") -> int:
    """``rate`` as an int in [1000, 192000] Hz, else an :class:`InputError` naming ``flag``."""
    if isinstance(rate, bool) or not isinstance(rate, (int, float, np.integer)) or int(rate) != rate:
        raise InputError(f"{flag} must be an integer number of Hz (e.g. 16000), got {rate!r}")
    if not MIN_RATE <= int(rate) <= MAX_RATE:
        raise InputError(f"{flag} must lie in [{MIN_RATE}, {MAX_RATE}] Hz, got {rate}")
    return int(rate)


def resample(audio: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """``audio`` (float32 [n]) resampled from ``rate_in`` to ``rate_out`` with soxr (HQ)."""
    if rate_in == rate_out or audio.size == 0:
        return audio.astype(np.float32, copy=False)
    import soxr

    return soxr.resample(audio.astype(np.float32, copy=False), rate_in, rate_out, quality="HQ")


def decode_file(path: Path, rate: int, where: str = "") -> np.ndarray:
    """Decode one file to mono float32 at ``rate`` Hz; an unreadable file is an :class:`InputError`."""
    import soundfile as sf

    try:
        audio, file_rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, OSError, ValueError, TypeError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise InputError(
            f"cannot decode audio file {path}{where} ({reason}); replace the file or drop its row"
        ) from None
    if audio.shape[0] == 0:
        raise InputError(f"audio file {path}{where} has no samples; replace the file or drop its row")
    mono = audio.mean(axis=1) if audio.shape[1] > 1 else audio[:, 0]
    return resample(np.ascontiguousarray(mono), int(file_rate), rate)


def decode_table(table: AudioTable, rate: int, workers: int | None = None) -> AudioClips:
    """Decode every clip of ``table`` at ``rate`` (threads: libsndfile and soxr release the GIL)."""
    rate = check_rate(rate)
    where = [f" (row {i + 1} of {table.csv_path})" for i in range(table.n_clips)]
    workers = workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        clips = list(pool.map(decode_file, table.files, [rate] * table.n_clips, where))
    offsets = np.zeros(len(clips) + 1, dtype=np.int64)
    np.cumsum([len(c) for c in clips], out=offsets[1:])
    samples = np.empty(int(offsets[-1]), dtype=STORE_DTYPE)
    for clip, start in zip(clips, offsets[:-1], strict=False):
        samples[start : start + len(clip)] = np.clip(clip, -1.0, 1.0)
    return AudioClips(samples, offsets, rate)


# --------------------------------------------------------------------------------------------
# The cache
# --------------------------------------------------------------------------------------------


def cache_key(table: AudioTable, rate: int) -> str:
    """A hash of the CSV, every audio file's (path, size, mtime_ns), the rate and the decoder."""
    h = hashlib.sha256()
    h.update(f"v{DECODER_VERSION}|{np.dtype(STORE_DTYPE).str}|{rate}|{table.csv_path}".encode())
    for path in (table.csv_path, *table.files):
        st = path.stat()
        h.update(f"|{path}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:24]


def _write(clips: AudioClips, folder: Path, meta: dict[str, object]) -> None:
    """Write the cache folder atomically (a temporary sibling moved into place)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    try:
        np.save(tmp / "samples.npy", clips.samples, allow_pickle=False)
        np.save(tmp / "offsets.npy", clips.offsets, allow_pickle=False)
        (tmp / AUDIO_CACHE_MARKER).write_text(json.dumps(meta, indent=1), encoding="utf-8")
        try:
            os.replace(tmp, folder)
        except OSError:  # another process wrote the same entry first: keep theirs
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _read(folder: Path, n_clips: int, rate: int) -> AudioClips | None:
    """The cached clips in ``folder`` (memory-mapped), or ``None`` when absent or unusable."""
    try:
        meta = json.loads((folder / AUDIO_CACHE_MARKER).read_text(encoding="utf-8"))
        samples = np.load(folder / "samples.npy", mmap_mode="r", allow_pickle=False)
        offsets = np.load(folder / "offsets.npy", allow_pickle=False)
    except (OSError, ValueError):
        return None
    if meta.get("n_clips") != n_clips or meta.get("sample_rate") != rate or len(offsets) != n_clips + 1:
        return None
    if int(offsets[-1]) != len(samples):
        return None
    return AudioClips(samples, offsets, rate)


def load_clips(table: AudioTable, rate: int, cache_dir: str | os.PathLike | None = None) -> AudioClips:
    """The clips of ``table`` at ``rate``: from the cache when present, else decoded and cached."""
    rate = check_rate(rate)
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    folder = root / "audio" / f"{table.csv_path.parent.name}-{rate}-{cache_key(table, rate)}"
    cached = _read(folder, table.n_clips, rate)
    if cached is not None:
        return cached
    clips = decode_table(table, rate)
    meta = {
        "format": "tagtune-audio-cache",
        "version": DECODER_VERSION,
        "csv": str(table.csv_path),
        "n_clips": table.n_clips,
        "sample_rate": rate,
        "dtype": np.dtype(STORE_DTYPE).str,
    }
    try:
        _write(clips, folder, meta)
    except OSError as exc:  # an unwritable cache root costs speed, not correctness
        warnings.warn(f"cannot cache decoded audio in {root} ({exc}); set TAGTUNE_CACHE_DIR", stacklevel=2)
        return clips
    return _read(folder, table.n_clips, rate) or clips
