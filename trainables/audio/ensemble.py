"""Seed 003's ensemble (the normalized weighted geometric mean): re-exported from
:mod:`tagtune.trainables.ensemble`, where every ensemble of tagtune lives."""

from __future__ import annotations

from tagtune.trainables.ensemble import geometric_mean_ensemble, score_ensemble, single_label_metrics

__all__ = ["geometric_mean_ensemble", "score_ensemble", "single_label_metrics"]
