"""A search's one-line status: trials done / running / left, best so far per family, elapsed, ETA.

:class:`SearchProgress` is a Ray Tune callback beside the MLflow writer.  In a terminal the
status line is redrawn in place (``\\r``) after every epoch and other lines (a finished trial,
a warning) are printed above it; when the output is not a terminal (a log file, CI) the status
is a plain line after each finished trial and the per-epoch lines stay as they are.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from ray import tune

from tagtune.names import Metrics
from tagtune.tune.trainable import DIVERGED

__all__ = ["SearchProgress", "format_seconds"]


def format_seconds(seconds: float) -> str:
    """``75`` -> ``1m15s``; ``3700`` -> ``1h01m``."""
    if not math.isfinite(seconds):
        return "?"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


class SearchProgress(tune.Callback):
    """Counts the search's trials and draws the status line."""

    def __init__(
        self,
        total_trials: int,
        max_epochs: int,
        stream: TextIO | None = None,
        tty: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
        time_budget: float | None = None,
    ) -> None:
        self.total = total_trials  # -1: no trial limit (a time budget ends the search)
        self.time_budget = time_budget
        self.max_epochs = max(1, max_epochs)
        self.stream = stream
        self.tty = tty
        self.clock = clock
        self.t0 = clock()
        self.done = 0
        self.failed = 0
        self.running: dict[str, int] = {}  # trial_id -> epochs done
        self.best: dict[str, float] = {}  # family -> best val_mAUC so far
        self._drawn = False

    # -- output ------------------------------------------------------------------------------
    def _out(self) -> TextIO:
        return self.stream if self.stream is not None else sys.stderr

    def _is_tty(self) -> bool:
        if self.tty is not None:
            return self.tty
        isatty = getattr(self._out(), "isatty", None)
        return bool(isatty and isatty())

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["stream"] = None  # Ray pickles callbacks; the stream is the process's own
        state["clock"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.clock = time.monotonic
        self.t0 = self.clock()  # a resumed search: elapsed and ETA from the restart
        self.running = {}
        self._drawn = False

    def say(self, text: str) -> None:
        """Print a line (above the status line in a terminal)."""
        out = self._out()
        if self._is_tty() and self._drawn:
            out.write("\r\x1b[K")
        out.write(text + "\n")
        if self._is_tty() and self._drawn:
            out.write(self.line())
        out.flush()

    def detail(self, text: str) -> None:
        """A per-epoch line: printed when the output is not a terminal (the status line shows
        the same in a terminal)."""
        if not self._is_tty():
            self.say(text)

    def show(self) -> None:
        out = self._out()
        if self._is_tty():
            out.write("\r\x1b[K" + self.line())
            self._drawn = True
        else:
            out.write(self.line() + "\n")
        out.flush()

    def close(self) -> None:
        if self._is_tty() and self._drawn:
            self._out().write("\n")
            self._out().flush()
            self._drawn = False

    # -- the line ----------------------------------------------------------------------------
    def fraction(self) -> float:
        """The share of the search's epochs done (finished trials count whole)."""
        by_budget = (self.clock() - self.t0) / self.time_budget if self.time_budget else 0.0
        if self.total < 0:  # no trial limit: the time budget's share
            return min(1.0, by_budget)
        partial = sum(min(e, self.max_epochs) / self.max_epochs for e in self.running.values())
        return min(1.0, max(by_budget, (self.done + partial) / self.total)) if self.total else 1.0

    def eta(self) -> float:
        f = self.fraction()
        return (self.clock() - self.t0) * (1 - f) / f if f > 0 else math.inf

    def line(self) -> str:
        left: int | str = max(0, self.total - self.done - len(self.running)) if self.total >= 0 else "?"
        failed = f" ({self.failed} failed)" if self.failed else ""
        best = ", ".join(f"{f} {v:.4f}" for f, v in sorted(self.best.items(), key=lambda kv: -kv[1]))
        elapsed = format_seconds(self.clock() - self.t0)
        return (
            f"[search] trials {self.done} done{failed} / {len(self.running)} running / {left} left"
            f" | best val_mAUC: {best or '-'} | {elapsed} elapsed, ETA {format_seconds(self.eta())}"
        )

    # -- Tune hooks --------------------------------------------------------------------------
    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self.running.setdefault(trial.trial_id, 0)
        if self._is_tty():
            self.show()

    def on_trial_result(
        self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any], **info: Any
    ) -> None:
        self.running[trial.trial_id] = int(result.get("epoch", result.get("training_iteration", 0)))
        value = result.get(Metrics.VAL_MAUC)
        family = str(trial.config.get("family", "?"))
        if isinstance(value, (int, float)) and math.isfinite(value):
            self.best[family] = max(self.best.get(family, value), float(value))
        if self._is_tty():
            self.show()

    def _ended(self, trial: Any, failed: bool) -> None:
        self.running.pop(trial.trial_id, None)
        self.done += 1
        self.failed += int(failed)
        self.show()

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._ended(trial, failed=bool((trial.last_result or {}).get(DIVERGED)))

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._ended(trial, failed=True)

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        self.close()
