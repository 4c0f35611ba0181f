"""How a data source is read: the feature / label / group keys and the task, from the CLI flags.

:class:`ReadOptions` travels from the flags (``--feature-key``, ``--label-key``, ``--group-key``,
``--task``) through the search spec (recorded on the search run, so trials, finalize and the
report reopen the data the same way) to :func:`open_source`; it is part of the cache key.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import numpy as np

from tagtune.errors import InputError

TASKS = ("multilabel", "multiclass")
"""``multilabel``: any number of classes per clip (sigmoid); ``multiclass``: exactly one (softmax)."""


@dataclass(frozen=True)
class ReadOptions:
    """Non-default names of the arrays / features to read, and the task; ``None`` = the format's
    default (or, for ``task``, what the labels show)."""

    feature_key: str | None = None
    label_key: str | None = None
    group_key: str | None = None
    task: str | None = None

    def __post_init__(self) -> None:
        """Check the task name."""
        if self.task is not None and self.task not in TASKS:
            raise InputError(f"--task must be one of {', '.join(TASKS)}, got {self.task!r}")
        for name in ("feature_key", "label_key", "group_key"):
            value = getattr(self, name)
            if value is not None and not value.strip():
                raise InputError(f"--{name.replace('_', '-')} is empty; name a key or drop the flag")

    @property
    def is_default(self) -> bool:
        """Every option unset."""
        return self == ReadOptions()

    def key(self) -> str:
        """A stable string for the cache key (``""`` when every option is unset, so the cache
        entries of data read with defaults keep their keys)."""
        return "" if self.is_default else json.dumps(asdict(self), sort_keys=True)

    def flags(self) -> str:
        """The flags these options came from (for messages)."""
        return " ".join(f"--{k.replace('_', '-')} {v}" for k, v in asdict(self).items() if v is not None)


DEFAULT_OPTIONS = ReadOptions()


def check_single_label(y: np.ndarray, ids: np.ndarray, where: str) -> None:
    """Every row of the multi-hot ``y`` has exactly one positive, else an :class:`InputError`
    naming the first clip that does not."""
    counts = np.asarray(y).sum(axis=1)
    bad = np.flatnonzero(counts != 1)
    if bad.size:
        i = int(bad[0])
        raise InputError(
            f"--task multiclass: clip {i} ({ids[i]}) of {where} has {int(counts[i])} labels, and "
            f"{bad.size} of {len(counts)} clips do not have exactly one; drop --task multiclass or "
            "fix the labels"
        )
