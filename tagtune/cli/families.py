"""``tagtune families``: every model family, its hyperparameters and their ranges."""

from __future__ import annotations

import argparse

HELP = "list every model family with its hyperparameters and default ranges"
DESCRIPTION = None


def add_arguments(p: argparse.ArgumentParser) -> None:
    pass


def run(_: argparse.Namespace) -> None:
    from tagtune.search_spaces import load_space
    from tagtune.trainables.models import get_family, list_families

    for name in list_families():
        spec = get_family(name)
        per_gpu = f"{spec.trials_per_gpu} trial{'s' if spec.trials_per_gpu > 1 else ''} per GPU"
        print(f"{name} [{spec.inputs}, {per_gpu}]: {spec.description}")
        space = load_space(name)
        sampled = {p.name for p in space.params}
        for p in space.params:
            print(f"    {p.name:<14} {p.describe()}")
        fixed = {k: v for k, v in spec.hparams.items() if k not in sampled}
        if fixed:
            print("    fixed: " + ", ".join(f"{k}={v}" for k, v in fixed.items()))
