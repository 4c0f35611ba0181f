"""The search spec: everything a search needs, and what its parent run records as params; and
:class:`FinalizeSpec`, where ``tagtune finalize``'s flags take their defaults from.

:class:`SearchSpec` is the one spec of a search: ``tagtune search``'s flags fill it field by field
and take their defaults from it, the parent run records it (:func:`to_params`; paths absolute)
and ``tagtune resume``, the report and ``tagtune finalize`` read it back (:func:`from_params`,
:func:`tagtune.tracking.search_spec`).  A leaf module (no MLflow, Ray or torch), so the command
line reads the defaults without loading them; :mod:`tagtune.tracking` exports all of it, and
:class:`tagtune.search.CheckedSearchSpec` adds the checks that need the data and the disk.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self, TypeVar, get_type_hints

from tagtune.errors import InputError
from tagtune.names import Metrics
from tagtune.samplers import DEFAULT_SAMPLER, check_sampler

# ------------------------------------------------------------------------------------------
# Dataclasses as run params
# ------------------------------------------------------------------------------------------

T = TypeVar("T")


def to_params(obj: Any, *, exclude: tuple[str, ...] = ()) -> dict[str, str]:
    """A dataclass's fields as MLflow params (strings): ``None`` is ``""``, lists are
    comma-joined, booleans ``True``/``False``.  Fields with ``metadata={"param": False}`` and
    those in ``exclude`` are left out."""
    out: dict[str, str] = {}
    for f in dataclasses.fields(obj):
        if f.name in exclude or not f.metadata.get("param", True):
            continue
        value = getattr(obj, f.name)
        if value is None:
            out[f.name] = ""
        elif isinstance(value, (list, tuple)):
            out[f.name] = ",".join(str(v) for v in value)
        else:
            out[f.name] = str(value)
    return out


def _parse(text: str, hint: Any) -> Any:
    """``text`` as the type ``hint`` (``int``, ``float``, ``bool``, ``str``, ``list[str]``,
    ``X | None``)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if text == "":
            return None
        return _parse(text, args[0])
    if origin in (list, tuple):
        (item,) = typing.get_args(hint)[:1]
        values = [_parse(t, item) for t in text.split(",") if t != ""]
        return values if origin is list else tuple(values)
    if hint is bool:
        if text not in ("True", "False"):
            raise ValueError(f"expected True or False, got {text!r}")
        return text == "True"
    if hint in (int, float, str):
        return hint(text)
    raise TypeError(f"no param parser for type {hint!r}")


def from_params(cls: type[T], params: Mapping[str, str], **overrides: Any) -> T:
    """The dataclass ``cls`` rebuilt from :func:`to_params` output (fields missing from
    ``params`` keep their defaults); ``overrides`` are passed as they are."""
    hints = get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name in overrides:
            kwargs[f.name] = overrides[f.name]
        elif f.name in params and f.metadata.get("param", True) and f.init:
            kwargs[f.name] = _parse(params[f.name], hints[f.name])
    return cls(**kwargs)


# ------------------------------------------------------------------------------------------
# The search spec: what a search's parent run records
# ------------------------------------------------------------------------------------------

NOT_PARAM: Mapping[str, Any] = types.MappingProxyType({"param": False})
"""Field metadata of a dataclass field that is not recorded as a run param."""
PATH: Mapping[str, Any] = types.MappingProxyType({"path": True})
"""Field metadata of a local path recorded absolute (URIs such as ``s3://`` are kept as they are)."""


def _absolute(value: str | None) -> str | None:
    """A local path made absolute; ``None``, ``""`` and URIs unchanged."""
    if not value or "://" in value:
        return value
    return os.path.abspath(value)


TECHNIQUES: dict[str, dict[str, Any]] = {
    "ema": {"ema_decay": 0.999},
    "mixup": {"mixup_alpha": 0.2},
    "swa": {"swa_last": 0.25},
}
"""``finalize --techniques``: name -> the config values it sets (:mod:`tagtune.finalize.techniques`)."""

GOALS = ("compare", "best")
"""``--goal``: ``compare`` gives every family an equal share of trials (seed 000's Fig. 4);
``best`` shifts the budget to the leading families
(:meth:`tagtune.tune.searcher.FamilySearcher.families_to_grow`)."""


@dataclasses.dataclass
class SearchSpec:
    """Everything a search needs; its params are what the search's parent run records.

    Every field is a run param (paths recorded absolute) unless marked ``NOT_PARAM``: the store
    and cluster a search ran against and the spaces loaded from ``spaces_dir`` are not part of
    the search itself.  :meth:`to_params` and :meth:`from_params` are driven by the fields, so a
    new field is recorded and restored (on resume, by the report) with no other change.
    """

    train: str = dataclasses.field(metadata=PATH)
    families: list[str]
    # None: no trial limit (with a time budget: trials start round-robin until it is spent)
    trials_per_family: int | None = 4
    max_epochs: int = 10
    experiment: str = dataclasses.field(default="tagtune", metadata=NOT_PARAM)
    tracking_uri: str | None = dataclasses.field(default=None, metadata=NOT_PARAM)
    seed: int = 0
    val_fraction: float = 0.2
    cpus_per_trial: float = 1.0
    # None: chosen from the cluster when the search starts (tagtune.resources.choose_gpus); the
    # parent run records the chosen number, so a resumed search reuses it.
    gpus_per_trial: float | None = None
    max_concurrent: int | None = None
    address: str | None = dataclasses.field(default=None, metadata=NOT_PARAM)
    storage_path: str = dataclasses.field(default="tagtune-runs", metadata=PATH)
    spaces_dir: str | None = dataclasses.field(default=None, metadata=PATH)
    max_failures: int = 1
    defaults_first: bool = True
    # a start portfolio's configs run first (tagtune.portfolio): a YAML file, "packaged", or None
    portfolio: str | None = None
    # early stopping per family (tagtune.tune.schedulers): asha, hyperband or none
    scheduler: str = "asha"
    grace_period: int = 2
    reduction_factor: float = 3.0
    milestone_metric: str = Metrics.SEARCH
    # spare a slow starter whose curve still climbs toward the rung's cutoff (tagtune.tune.schedulers)
    curve_grace: bool = True
    # stop a trial whose validation mAUC has not improved for this many epochs (0: never)
    patience: int = 0
    # compare: every family an equal share of trials; best: the budget shifts to leading families
    goal: str = "compare"
    # seconds of search wall time (the driver's), None: no budget
    time_budget: float | None = None
    # an earlier search (experiment name) whose finished trials seed each family's study
    warm_start: str | None = None
    # each family's Optuna sampler (tagtune.samplers.SAMPLERS: tpe, gp, random)
    sampler: str = DEFAULT_SAMPLER
    # how --train is read (--feature-key, --label-key, --group-key, --task; None = the format's
    # default / what the labels show): recorded, so trials, resume and finalize read it the same way
    feature_key: str | None = None
    label_key: str | None = None
    group_key: str | None = None
    task: str | None = None
    # The Optuna studies' database (postgresql://..., sqlite:///...); None: a SQLite file beside
    # Ray's state.  Not a param (it may name a host and user); the parent run's
    # tagtune.optuna_storage tag records it with any password hidden.
    optuna_storage: str | None = dataclasses.field(default=None, metadata=NOT_PARAM)
    # family -> tagtune.search_spaces.SearchSpace, filled by tagtune.search's check()
    spaces: dict[str, Any] = dataclasses.field(default_factory=dict, metadata=NOT_PARAM)
    # family -> the portfolio's configs to run first (read from ``portfolio`` by the checks)
    first_configs: dict[str, Any] = dataclasses.field(default_factory=dict, metadata=NOT_PARAM)

    @property
    def total_trials(self) -> int:
        """The search's trial budget: ``trials_per_family`` for each family (-1: no limit, Tune's
        ``num_samples`` for "until the time budget is spent")."""
        if self.trials_per_family is None:
            return -1
        return self.trials_per_family * len(self.families)

    def validate(self) -> None:
        """Check the numbers and the family list (InputError naming the flag); paths and spaces
        are checked by ``tagtune.search``, which knows the data and the cluster."""
        if self.trials_per_family is None and self.time_budget is None:
            raise InputError("--trials-per-family or --time-budget: give at least one, e.g. --time-budget 45m")
        if self.trials_per_family is not None and self.trials_per_family < 1:
            raise InputError(f"--trials-per-family must be at least 1, got {self.trials_per_family}")
        if self.time_budget is not None and self.time_budget <= 0:
            raise InputError(f"--time-budget must be positive, got {self.time_budget:g} s")
        if self.max_epochs < 1:
            raise InputError(f"--max-epochs must be at least 1, got {self.max_epochs}")
        if not 0.0 < self.val_fraction < 1.0:
            raise InputError(f"--val-fraction must be between 0 and 1, got {self.val_fraction}")
        if self.cpus_per_trial <= 0:
            raise InputError(f"--cpus-per-trial must be positive, got {self.cpus_per_trial}")
        if self.gpus_per_trial is not None and self.gpus_per_trial < 0:
            raise InputError(f"--gpus-per-trial must be 0 or more, got {self.gpus_per_trial}")
        if self.max_concurrent is not None and self.max_concurrent < 1:
            raise InputError(f"--max-concurrent must be at least 1, got {self.max_concurrent}")
        if self.max_failures < 0:
            raise InputError(f"--max-failures must be 0 or more, got {self.max_failures}")
        if not self.families:
            raise InputError("--families is empty; name at least one family or `all`")
        check_sampler(self.sampler)
        if self.goal not in GOALS:
            raise InputError(
                f"--goal {self.goal!r}: choose compare (equal shares) or best (the budget shifts to leaders)"
            )
        self.read_options()  # an unknown --task or an empty key names its flag

    def read_options(self) -> Any:
        """The :class:`tagtune.trainables.data.ReadOptions` of ``--train`` (``--feature-key``,
        ``--label-key``, ``--group-key``, ``--task``)."""
        from tagtune.trainables.data import ReadOptions

        return ReadOptions(self.feature_key, self.label_key, self.group_key, self.task)

    def to_params(self) -> dict[str, str]:
        """The run params of this spec: every param field, paths absolute."""
        params = to_params(self)
        for f in dataclasses.fields(self):
            if f.metadata.get("path") and f.name in params:
                params[f.name] = _absolute(params[f.name]) or ""
        return params

    @classmethod
    def from_params(cls, params: Mapping[str, str], **overrides: Any) -> Self:
        """The spec a parent run's params describe (params an older run lacks keep their
        defaults); ``overrides`` set the fields that are not params (``experiment``, ...)."""
        return from_params(cls, params, **overrides)


@dataclasses.dataclass
class FinalizeSpec:
    """What ``tagtune finalize`` does; :meth:`check` validates it before anything runs."""

    experiment: str
    train: str
    eval: str | None = None
    """Embeddings: the eval split (required).  Audio: optional, another audio CSV of test files;
    by default the clips --train's CSV marks ``test``."""
    top_k: int = 1
    max_epochs: int | None = None
    tracking_uri: str | None = None
    run_id: str | None = None
    register: bool = True
    ensembles: bool = True
    ensemble_pool: int = 3
    pool_margin: float = 0.02
    """Ensemble candidates trailing their family's best trial by more than this val mAUC, or
    that never left chance, are left out of the pool."""
    selection: str = "bagged"
    """How members and weights are chosen on validation: ``bagged`` or ``greedy``."""
    seeds: int = 1
    """Each final is trained with this many seeds and their probabilities averaged."""
    techniques: str = ""
    """Comma-separated techniques (``ema``, ``mixup``, ``swa``) each final tries on the search's validation
    split first, using the best one only where it beats the trial (:mod:`tagtune.finalize.techniques`)."""
    resume: bool = True
    """Continue this search's latest finalize when it did not finish (keep its logged finals)."""
    seed: int = 0
    device: str | None = None

    @property
    def technique_names(self) -> tuple[str, ...]:
        """``techniques`` as names."""
        return tuple(t.strip() for t in self.techniques.split(",") if t.strip())

    def check(self) -> None:
        """Flags in range and both data paths present."""
        from tagtune.trainables.ensemble import SELECTIONS

        if self.top_k < 1:
            raise InputError(f"--top-k must be at least 1, got {self.top_k}")
        if self.seeds < 1:
            raise InputError(f"--seeds must be at least 1, got {self.seeds}")
        unknown = [n for n in self.technique_names if n not in TECHNIQUES]
        if unknown:
            raise InputError(f"--techniques: unknown {', '.join(unknown)}; choose from {', '.join(TECHNIQUES)}")
        if not self.pool_margin >= 0:
            raise InputError(f"--pool-margin must be 0 or more (a val mAUC difference), got {self.pool_margin}")
        if self.selection not in SELECTIONS:
            raise InputError(f"--selection must be one of {', '.join(SELECTIONS)}, got {self.selection!r}")
        if self.ensemble_pool < 1:
            raise InputError(f"--ensemble-pool must be at least 1, got {self.ensemble_pool}")
        if self.max_epochs is not None and self.max_epochs < 1:
            raise InputError(f"--max-epochs must be at least 1, got {self.max_epochs}")
        for flag, path in (("--train", self.train), ("--eval", self.eval)):
            if path is not None and not Path(path).exists():
                raise InputError(
                    f"{flag} {path}: no such file or folder; pass a folder of *.tfrecord, "
                    "an .h5 file, a tagtune cache, or an audio CSV (or its folder)"
                )
