"""Which families a search runs: the named sets, and ``--families`` parsed against the data
(each family must take the data's kind, and for embeddings its clip shape).

The data and model modules (torch) are imported where they are used, so the command line reads
:data:`FAMILY_SETS` for its help without loading them."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from tagtune.errors import InputError

if TYPE_CHECKING:
    from tagtune.trainables.data import DataSource, ReadOptions

#: ``--families`` names for sets of families: seed 000's four (its Fig. 4), and the default, those
#: four plus ``attention`` (the strongest family on bal_train and on the float embedding set of
#: issue 24, which seed 000's set left out)
FAMILY_SETS: dict[str, tuple[str, ...]] = {
    "seed000": ("fc1", "fc2", "lstm", "gcnn"),
    "default": ("fc1", "fc2", "lstm", "gcnn", "attention"),
}
DEFAULT_FAMILIES = "default"


def try_open(train: str | os.PathLike, options: ReadOptions | None = None) -> DataSource | None:
    """``train`` opened (format sniffed once) with its read ``options``, or None when it cannot be
    told (``CheckedSearchSpec.check`` then names the problem, after the other flags are checked)."""
    from tagtune.trainables.data import open_source

    try:
        return open_source(train, options=options)
    except InputError:
        return None


def data_inputs(train: str | os.PathLike | DataSource) -> str | None:
    """``audio`` for a folder of audio files with a CSV, ``embeddings`` for AudioSet-like data
    (the kind of an opened source, or of the path, opened here), None when the path cannot be
    told (``CheckedSearchSpec.check`` then names the problem)."""
    from tagtune.trainables.data import DataSource, open_source

    if isinstance(train, DataSource):
        return train.kind
    try:
        return open_source(train).kind
    except InputError:
        return None


def parse_families(text: str, train: str | os.PathLike | DataSource | None = None) -> list[str]:
    """``fc1,fc2``, a set of :data:`FAMILY_SETS` (``seed000``, ``default``) or ``all`` -> family
    names; ``all`` means every family for ``train``'s kind of
    data (an opened :class:`DataSource`, or a path), and a named family built for the other kind
    is refused (unknown names raise too)."""
    from tagtune.trainables.data import DataSource
    from tagtune.trainables.models import get_family, list_families

    inputs = data_inputs(train) if train else None
    source = train
    if isinstance(train, DataSource):
        train = train.path
    if text.strip() == "all":
        names = list_families(inputs)
    else:
        names = []
        for token in (t.strip() for t in text.split(",") if t.strip()):
            names.extend(FAMILY_SETS.get(token, (token,)))
    seen: list[str] = []
    for name in names:
        spec = get_family(name)
        if inputs is not None and spec.inputs != inputs:
            raise InputError(
                f"--families: {name!r} is built for {spec.inputs}, but --train {train} holds "
                f"{inputs}; choose from: {', '.join(list_families(inputs))}"
            )
        if name not in seen:
            seen.append(name)
    if inputs == "embeddings" and isinstance(source, DataSource):
        seen = _fitting_families(seen, source, all_families=text.strip() == "all")
    return seen


def _fitting_families(names: list[str], source: DataSource, *, all_families: bool) -> list[str]:
    """``names`` that take the data's clip shape: with ``all`` those that can (an InputError when
    none can), else every name must (an InputError naming the shape and the families that can)."""
    from tagtune.trainables.models import families_for_shape, shape_problem

    n_frames, n_features, _ = source.shape
    shape = f"{n_frames} x {n_features}"
    if all_families:
        fitting = families_for_shape(n_frames, n_features, names)
        if not fitting:
            raise InputError(f"--train {source.path}: no model family takes clips of {shape} (frames x features)")
        return fitting
    for name in names:
        problem = shape_problem(name, n_frames, n_features)
        if problem is not None:
            can = ", ".join(families_for_shape(n_frames, n_features)) or "none"
            raise InputError(
                f"--families: {name!r} cannot take the clips of --train {source.path}, {shape} "
                f"(frames x features): {problem}; families that can: {can}"
            )
    return names
