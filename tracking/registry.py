"""The former name of :mod:`tagtune.tracking.serving`, kept for the models logged before the
rename: their "models from code" entry (a copy of ``_tagger_entry.py`` in the model's artifacts)
imports ``TaggerModel`` from here.  New code imports :mod:`tagtune.tracking.serving`."""

from __future__ import annotations

from tagtune.tracking.serving import TaggerModel

__all__ = ["TaggerModel"]
