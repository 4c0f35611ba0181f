"""The searcher Ray restored in this process when a search is resumed.

Ray unpickles the Tune callback (:class:`~tagtune.tune.callback.MlflowTrialLogger`) from
its experiment state before it restores the searcher, and the pickled callback holds no searcher
(Ray saves that itself).  The restored searcher announces itself here, and the callback asks it
for each new trial's Optuna study and trial number, names the MLflow run on the Optuna trial, and
asks it why a trial was stopped."""

from __future__ import annotations

from typing import Any

_restored: list[Any] = []


def searcher_restored(searcher: Any) -> None:
    """Called by a searcher's ``restore`` (the one a resumed search runs with)."""
    _restored[:] = [searcher]


def restored_searcher() -> Any | None:
    """The searcher last restored in this process (None: no search was resumed here)."""
    return _restored[0] if _restored else None
