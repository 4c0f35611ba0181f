"""Shared bits of the benchmark scripts: where the real data is, and a table printer."""

from __future__ import annotations

import platform
import time
from pathlib import Path

import torch

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
BAL_TRAIN = SHARED / "audioset" / "bal_train"
EVAL = SHARED / "audioset" / "eval"


def machine() -> str:
    """One line naming the machine the figures come from."""
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{time.strftime('%Y-%m-%d')}, {platform.machine()}, {torch.get_num_threads()} torch "
        f"threads, {gpu}, torch {torch.__version__}"
    )


def print_table(headers: list[str], rows: list[list[object]]) -> None:
    """A Markdown table on stdout."""
    print("| " + " | ".join(headers) + " |")
    print("|" + "|".join("---" for _ in headers) + "|")
    for row in rows:
        print("| " + " | ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in row) + " |")
