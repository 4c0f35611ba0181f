"""The float path is not a worse path: bal_train as uint8 and dequantized to float32 (x / 255),
the default trial of each family on each, side by side.

    python benchmarks/bench_float.py [--families fc1,fc2,attention] [--max-epochs 8] [--tolerance 0.003]
    python benchmarks/bench_float.py --direct      # in-process, no npz and no search

Default: writes the float32 npz with ``make_float_npz.py`` (once, git-ignored under
``benchmarks/out/``), then runs ``tagtune search --trials-per-family 1`` (each family's first
trial is its registered defaults) on bal_train and on the npz, and compares each family's best
validation mAUC.  ``--direct``: the same comparison with ``tagtune.trainables.loop.fit`` on the
same split (seed 0, 20 %), the float data built in memory as ``x / 255``.  The uint8 side is
scaled by 1/255, the float side standardized per feature on the training split.  Exit 1 when a
family's float mAUC is more than --tolerance below its uint8 mAUC.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import BAL_TRAIN, machine, print_table

HERE = Path(__file__).resolve().parent
NPZ = HERE / "out" / "bal_train_float32.npz"


def _tagtune(*args: str) -> None:
    cmd = [sys.executable, "-m", "tagtune.cli", *args]
    print("$ tagtune " + " ".join(args), file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True)


def _search(train: Path, families: str, epochs: int, out: Path, name: str) -> dict[str, float]:
    """Each family's best val_mAUC of a one-trial-per-family search on ``train``."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{out / 'mlflow.db'}"
    _tagtune(
        "search",
        "--train",
        str(train),
        "--families",
        families,
        "--trials-per-family",
        "1",
        "--max-epochs",
        str(epochs),
        "--storage-path",
        str(out / f"runs-{name}"),
        "--experiment",
        name,
        "--tracking-uri",
        uri,
    )
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(name)
    runs = client.search_runs([exp.experiment_id], "tags.`tagtune.kind` = 'trial'")
    return {r.data.tags["tagtune.family"]: r.data.metrics["best_val_mAUC"] for r in runs}


def _direct(families: list[str], epochs: int) -> tuple[dict[str, float], dict[str, float]]:
    """(uint8, float32) best val_mAUC per family with ``fit`` on the same split."""
    import torch

    from tagtune.trainables.data import Dataset, load_dataset
    from tagtune.trainables.loop import fit

    torch.set_num_threads(1)  # 2 threads spin against each other on a shared machine
    ds = load_dataset(BAL_TRAIN)
    fl = Dataset(
        x=np.asarray(ds.x, np.float32) / np.float32(255.0),
        y=ds.y,
        lengths=ds.lengths,
        ids=ds.ids,
        class_names=ds.class_names,
        source="memory:bal_train/255",
    )
    out: tuple[dict[str, float], dict[str, float]] = ({}, {})
    sides = (ds.trial_data(), fl.trial_data())
    for family in families:
        for side, data in zip(out, sides, strict=True):
            t0 = time.perf_counter()
            res = fit({"family": family}, data, max_epochs=epochs, device="cpu")
            side[family] = res.best["val_mAUC"]
            print(f"{data.scaling.kind:8s} {family}: {side[family]:.6f} ({time.perf_counter() - t0:.0f} s)", flush=True)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", default="fc1,fc2,attention")
    parser.add_argument("--max-epochs", type=int, default=8)
    parser.add_argument("--tolerance", type=float, default=0.003)
    parser.add_argument("--direct", action="store_true", help="in-process fit, float data built in memory")
    parser.add_argument("--out", default=None, help="folder for the MLflow store (default: a temporary one)")
    args = parser.parse_args()
    families = [f.strip() for f in args.families.split(",") if f.strip()]
    if args.direct:
        uint8, flt = _direct(families, args.max_epochs)
    else:
        if not NPZ.exists():
            NPZ.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run([sys.executable, str(HERE / "make_float_npz.py"), "--out", str(NPZ)], check=True)
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(args.out or tmp).resolve()
            out.mkdir(parents=True, exist_ok=True)
            uint8 = _search(BAL_TRAIN, ",".join(families), args.max_epochs, out, "uint8")
            flt = _search(NPZ, ",".join(families), args.max_epochs, out, "float32")
    print(machine())
    rows = [[f, uint8[f], flt[f], flt[f] - uint8[f]] for f in families]
    print_table(["family (default trial)", "uint8 val_mAUC", "float32 val_mAUC", "float - uint8"], rows)
    worst = min(r[3] for r in rows)
    print(f"largest shortfall of float {min(worst, 0.0):.6f} (tolerance {args.tolerance})")
    return 0 if worst >= -args.tolerance else 1


if __name__ == "__main__":
    sys.exit(main())
