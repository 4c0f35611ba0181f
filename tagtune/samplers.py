"""The Optuna sampler of each family's study, chosen by ``--sampler`` (one place for the names,
the default and how each is built)."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

from tagtune.errors import InputError

if TYPE_CHECKING:
    import optuna

#: ``--sampler`` choices: Optuna's TPE, Optuna's Gaussian-process sampler, uniform random
SAMPLERS = ("tpe", "gp", "random")
DEFAULT_SAMPLER = "gp"
#: ``tagtune search --help``: what each choice does and why the default is the default
SAMPLER_HELP = (
    "each family's Optuna sampler: gp (default; Optuna's Gaussian-process sampler), tpe (Optuna's "
    "TPE: multivariate, constant liar for parallel trials) or random; gp and tpe start with half a "
    "family's trials at random (3 to 10). Why gp: on fc2, 8 trials x 2 seeds "
    "(benchmarks/bench_samplers.py), its guided trials averaged 0.696 val mAUC against tpe's 0.664 "
    "and random's 0.653, 4 of 14 sampled trials beat the defaults (tpe 2, random 1) and none "
    "stayed at chance (tpe 1, random 1)"
)


def startup_trials(trials_per_family: int | None) -> int:
    """Random start-up trials of a model-based sampler: Optuna's 10, fewer for small budgets
    (half of them, at least 3) so that the model still guides the rest."""
    if trials_per_family is None:
        return 10
    return min(10, max(3, trials_per_family // 2))


def check_sampler(name: str) -> str:
    """``name`` if it is a ``--sampler`` choice, else an InputError naming the choices."""
    if name not in SAMPLERS:
        raise InputError(f"--sampler {name!r}: choose one of {', '.join(SAMPLERS)}")
    return name


def make_sampler(name: str, *, seed: int, trials_per_family: int | None) -> optuna.samplers.BaseSampler:
    """The Optuna sampler ``name`` (one of :data:`SAMPLERS`), seeded with ``seed``."""
    import optuna  # not at import: the command line starts without it

    check_sampler(name)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    n_startup = startup_trials(trials_per_family)
    if name == "gp":
        with warnings.catch_warnings():  # experimental in some Optuna releases
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.GPSampler(
                seed=seed,
                n_startup_trials=n_startup,
                # conditional params (optimizer-specific ones) fall back to random sampling
                warn_independent_sampling=False,
            )
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=n_startup)
