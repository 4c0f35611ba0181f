"""The reshaping changed no result: the default attention config on bal_train, searched and
finalized through the CLI, against the figures recorded before the architecture change.

    python benchmarks/bench_reproduce.py [--out DIR] [--tolerance 0.001]

Runs `tagtune search --families attention --trials-per-family 1 --max-epochs 8` on bal_train
(the first trial runs the family's registered defaults), then `tagtune finalize` on eval, and
compares the trial's best validation mAUC / mAP and the final's eval mAUC / mAP with the figures
the same commands gave on 2026-12-02 before the change (commit 12f051c). Exit 1 if any differs
by more than --tolerance. About 8 minutes on 2 CPUs.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import BAL_TRAIN, EVAL, machine, print_table
from mlflow import MlflowClient

# `tagtune search ... attention ...` then `tagtune finalize` at commit 12f051c (2 CPUs, torch 2.13.0+cpu).
RECORDED = {
    "trial best val_mAUC": 0.956547,
    "trial best val_mAP": 0.311115,
    "final eval_mAUC": 0.953861,
    "final eval_mAP": 0.281584,
}


def _tagtune(*args: str) -> None:
    cmd = [sys.executable, "-m", "tagtune.cli", *args]
    print("$ tagtune " + " ".join(args), file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True)


def measure(out: Path) -> dict[str, float]:
    """Search and finalize into ``out``; the four figures read back from MLflow."""
    uri = f"sqlite:///{out / 'mlflow.db'}"
    store = ["--experiment", "reproduce", "--tracking-uri", uri]
    _tagtune(
        "search",
        "--train",
        str(BAL_TRAIN),
        "--families",
        "attention",
        "--trials-per-family",
        "1",
        "--max-epochs",
        "8",
        "--storage-path",
        str(out / "runs"),
        *store,
    )
    _tagtune("finalize", "--train", str(BAL_TRAIN), "--eval", str(EVAL), "--no-register", *store)
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("reproduce")
    runs = client.search_runs([exp.experiment_id])
    kinds = {r.data.tags.get("tagtune.kind"): r.data.metrics for r in runs}
    return {
        "trial best val_mAUC": kinds["trial"]["best_val_mAUC"],
        "trial best val_mAP": kinds["trial"]["best_val_mAP"],
        "final eval_mAUC": kinds["final"]["eval_mAUC"],
        "final eval_mAP": kinds["final"]["eval_mAP"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=None, help="folder for the MLflow store (default: a temporary one)")
    parser.add_argument("--tolerance", type=float, default=0.001)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or tmp).resolve()
        out.mkdir(parents=True, exist_ok=True)
        now = measure(out)
    print(machine())
    rows = [[name, RECORDED[name], now[name], now[name] - RECORDED[name]] for name in RECORDED]
    print_table(["figure", "before (12f051c)", "now", "difference"], rows)
    worst = max(abs(r[3]) for r in rows)
    print(f"largest difference {worst:.6f} (tolerance {args.tolerance})")
    return 0 if worst <= args.tolerance else 1


if __name__ == "__main__":
    sys.exit(main())
