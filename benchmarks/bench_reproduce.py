"""The reshaping changed no result: the default attention and fc2 configs on bal_train, searched
and finalized through the CLI, against the figures recorded before the architecture change.

    python benchmarks/bench_reproduce.py [--out DIR] [--tolerance 0.001] [--families attention,fc2]

Runs `tagtune search --families attention,fc2 --trials-per-family 1 --max-epochs 8` on bal_train
(each family's first trial runs its registered defaults), then `tagtune finalize` on eval, and
compares each trial's best validation mAUC / mAP and each final's eval mAUC / mAP with the
figures the same commands gave at commit 12f051c, before the change (attention on 2026-12-02;
fc2's trial and final re-run at 12f051c on 2026-12-02 from a worktree of that commit). Exit 1
if any recorded figure differs by more than --tolerance. About 12 minutes on 2 idle CPUs.
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import BAL_TRAIN, EVAL, machine, print_table
from mlflow import MlflowClient

# `tagtune search ...` then `tagtune finalize` at commit 12f051c (2 CPUs, torch 2.13.0+cpu).
NAN = math.nan
RECORDED = {
    "attention": {
        "trial best val_mAUC": 0.956547,
        "trial best val_mAP": 0.311115,
        "final eval_mAUC": 0.953861,
        "final eval_mAP": 0.281584,
    },
    "fc2": {
        "trial best val_mAUC": 0.944895,
        "trial best val_mAP": 0.242737,
        "final eval_mAUC": 0.941449,
        "final eval_mAP": 0.221562,
    },
}


def _tagtune(*args: str) -> None:
    cmd = [sys.executable, "-m", "tagtune.cli", *args]
    print("$ tagtune " + " ".join(args), file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True)


def measure(out: Path, families: str) -> dict[str, dict[str, float]]:
    """Search and finalize into ``out``; each family's four figures read back from MLflow."""
    uri = f"sqlite:///{out / 'mlflow.db'}"
    store = ["--experiment", "reproduce", "--tracking-uri", uri]
    search = ["--train", str(BAL_TRAIN), "--families", families, "--trials-per-family", "1", "--max-epochs", "8"]
    _tagtune("search", *search, "--storage-path", str(out / "runs"), *store)
    _tagtune("finalize", "--train", str(BAL_TRAIN), "--eval", str(EVAL), "--no-register", *store)
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("reproduce")
    figures: dict[str, dict[str, float]] = {}
    for run in client.search_runs([exp.experiment_id]):
        kind, family, m = run.data.tags.get("tagtune.kind"), run.data.tags.get("tagtune.family"), run.data.metrics
        if family is None:
            continue
        fam = figures.setdefault(family, {})
        if kind == "trial":
            fam["trial best val_mAUC"], fam["trial best val_mAP"] = m["best_val_mAUC"], m["best_val_mAP"]
        elif kind == "final":
            fam["final eval_mAUC"], fam["final eval_mAP"] = m["eval_mAUC"], m["eval_mAP"]
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=None, help="folder for the MLflow store (default: a temporary one)")
    parser.add_argument("--tolerance", type=float, default=0.001)
    parser.add_argument("--families", default="attention,fc2", help=f"any of {', '.join(RECORDED)}")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or tmp).resolve()
        out.mkdir(parents=True, exist_ok=True)
        now = measure(out, args.families)
    print(machine())
    rows = []
    for family in args.families.split(","):
        for name, before in RECORDED[family].items():
            value = now.get(family, {}).get(name, NAN)
            rows.append([f"{family} {name}", before, value, value - before])
    print_table(["figure", "before (12f051c)", "now", "difference"], rows)
    worst = max(abs(r[3]) for r in rows if not math.isnan(r[1]))
    print(f"largest difference {worst:.6f} (tolerance {args.tolerance})")
    return 0 if worst <= args.tolerance else 1


if __name__ == "__main__":
    sys.exit(main())
