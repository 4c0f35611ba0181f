"""How many GPUs a search's trials ask for when ``--gpus-per-trial`` is not given.

:func:`choose_gpus` is a pure function of the Ray cluster's resources (``ray.cluster_resources()``:
``CPU`` and ``GPU`` counts), the searched families and ``--cpus-per-trial``.  The rule:

* no GPU in the cluster: trials train on CPU (``gpus_per_trial = 0``);
* else each family declares how many of its trials share one GPU (``trials_per_gpu`` in its
  ``register_family`` call: 16 for the fully connected ``fc1`` / ``fc2`` / ``fc500``; 1 for
  ``densenet_audio``, raw audio with the whole waveform set on the device; 8 for the others;
  variants inherit it); a search packs the fewest of its families';
* never more trials per GPU than the CPUs feed: ``trials_per_gpu * cpus_per_trial <= CPUs / GPUs``
  (at least 1);
* ``gpus_per_trial = 1 / trials_per_gpu``.

An explicit ``--gpus-per-trial`` is used as it is (``0`` forces CPU).  The per-family figures come
from ``benchmarks/gpu_check.sh`` on an H200 (2026-12-04, README "GPUs"): processes of the training
loop sharing the GPU gave fc2 6.8x the epochs per second of one process with 8 and 10x with 16,
attention 6.0x with 8, at under 1.1 GiB of GPU memory per trial; ``densenet_audio`` (not measured)
keeps a GPU to itself.
This module imports the model registry only when it needs it, so the CLI's ``--help`` stays light.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

RULE = (
    "default: auto. With no GPU in the Ray cluster trials train on CPU; with GPUs they share them: "
    "each family declares how many of its trials share one GPU (16 for fc1/fc2/fc500, 1 for "
    "densenet_audio, 8 for the others; `tagtune families` shows it), a search packs the fewest of "
    "its families', never more than CPUs per GPU / --cpus-per-trial, and asks 1/that GPU per trial. "
    "These figures were measured on an H200 (README, GPUs). 0 forces CPU; a value "
    "(0.25 = 4 trials per GPU) is used as given."
)
"""The rule in one paragraph (``tagtune search --help``)."""


@dataclass(frozen=True)
class GpuChoice:
    """What a search's trials ask for: ``gpus_per_trial`` (0 on CPU), how many trials share a
    GPU (0 on CPU) and the line the search prints about it."""

    gpus_per_trial: float
    trials_per_gpu: int
    line: str


def _count(resources: Mapping[str, float], key: str) -> float:
    return float(resources.get(key, 0.0) or 0.0)


def _per_gpu_text(gpus_per_trial: float) -> str:
    share = 1.0 / gpus_per_trial
    if share >= 1 and abs(share - round(share)) < 1e-6:
        return f"{round(share)} trials per GPU" if round(share) > 1 else "1 trial per GPU"
    return f"{gpus_per_trial:g} GPU per trial"


def choose_gpus(
    resources: Mapping[str, float],
    families: Sequence[str],
    cpus_per_trial: float,
    requested: float | None = None,
) -> GpuChoice:
    """The GPUs per trial of a search over ``families`` on a cluster with ``resources`` (see the
    module's rule); ``requested`` (an explicit ``--gpus-per-trial``) is kept as it is."""
    gpus = _count(resources, "GPU")
    if requested is not None:
        if requested == 0:
            return GpuChoice(0.0, 0, "GPUs: --gpus-per-trial 0: trials train on CPU")
        per_gpu = max(1, math.floor(1.0 / requested + 1e-9)) if requested <= 1 else 1
        where = f"{gpus:g} in the cluster" if gpus else "none in the cluster yet: trials wait for one"
        return GpuChoice(
            float(requested),
            per_gpu,
            f"GPUs: {where}; --gpus-per-trial {requested:g} as given ({_per_gpu_text(requested)})",
        )
    if gpus <= 0:
        return GpuChoice(0.0, 0, "no GPU in the cluster: trials train on CPU")
    from tagtune.trainables.models import get_family  # torch: not needed for `tagtune --help`

    declared = {name: get_family(name).trials_per_gpu for name in families}
    wanted = min(declared.values())
    cpus_per_gpu = _count(resources, "CPU") / gpus
    cap = max(1, math.floor(cpus_per_gpu / cpus_per_trial + 1e-9))
    per_gpu = min(wanted, cap)
    if len(set(declared.values())) == 1:
        why = f"{', '.join(declared)} share {wanted} each"
    else:
        why = "the fewest of " + ", ".join(f"{name} {k}" for name, k in declared.items())
    if per_gpu < wanted:
        why += f"; capped by {cpus_per_gpu:g} CPUs per GPU at {cpus_per_trial:g} per trial"
    line = f"GPUs: {gpus:g} in the cluster, {per_gpu} trials per GPU ({why}); --gpus-per-trial 0 forces CPU"
    return GpuChoice(1.0 / per_gpu, per_gpu, line)
