"""Moved to :mod:`tagtune.trainables.data` (decoding is part of reading the audio format).

A thin alias kept while ``trainables/models/densenet_audio.py`` imports ``check_rate`` from here;
import it from :mod:`tagtune.trainables.audio` or :mod:`tagtune.trainables.data` instead.
"""

from __future__ import annotations

from tagtune.trainables.data import check_rate

__all__ = ["check_rate"]
