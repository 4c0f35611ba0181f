"""Issue 16's GPU figures with tagtune's own training loop and metrics (no Ray, MLflow or Optuna).

    python benchmarks/bench_gpu.py --pack benchmarks/gpu_data/bal_train.npz   # here, beside ../shared
    python benchmarks/bench_gpu.py --data benchmarks/gpu_data/bal_train.npz   # on the GPU machine
    python benchmarks/bench_gpu.py --data ... --device cpu --quick            # smoke test on CPU

``--pack`` writes bal_train (22,160 clips: uint8 x [N, 10, 128], labels as np.packbits) to one
compressed npz small enough to travel with the repository to a GPU machine that has PyTorch and
numpy but not ../shared (nor Ray, MLflow, Optuna, crc32c).  The measuring run reads it with numpy
only and prints one Markdown table:

* seconds per epoch (training + validation, median of the epochs after the first) on bal_train's
  seeded 80% split for fc1, fc2, attention, lstm and densenet with their defaults, clips per
  second, the ratio to the README's CPU figure and the peak GPU memory;
* where fc2's epoch goes on the device: validation, and one training step eager (foreach and
  fused Adam, batch 64 and 256) and replayed from a CUDA graph;
* trials per hour with 1, 4 and 8 processes (``--processes``) of the loop sharing the device (fc2
  and attention, ``--pack-families``; 10 epochs each, fewer when the time budget would be passed,
  said in the row) and the GPU memory of each process (``torch.cuda.max_memory_allocated``);
* the metrics on the device against scikit-learn on the same scores (a trained fc2's validation
  scores; target: equal to 1e-6);
* bf16 autocast against float32 (``TAGTUNE_BF16=0``): fc2's validation mAUC after 10 epochs
  (target: within 0.002).

``--quick`` shrinks everything (600 clips, 1 epoch, 1 and 2 processes) to check the script
end to end in seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
DEFAULT_NPZ = HERE / "gpu_data" / "bal_train.npz"
MAX_NPZ_BYTES = 40 * 2**20
EPOCH_FAMILIES = ("fc1", "fc2", "attention", "lstm", "densenet")
PACK_FAMILIES = "fc2,attention"
#: Seconds per epoch on this repository's CPU (README, "Speed": bench_epochs.py, 2 threads).
CPU_SECONDS = {"fc1": 0.54, "fc2": 1.89, "attention": 10.06, "lstm": 15.47, "densenet": 7.02}
QUICK_CLIPS = 600


# -- the data ------------------------------------------------------------------------------------


def pack(out: Path, source: str) -> int:
    """Write ``source`` (a TFRecord folder, HDF5 or cache) as one compressed npz; its size."""
    from tagtune.trainables.data import load_dataset

    ds = load_dataset(source)
    x = np.ascontiguousarray(ds.x, dtype=np.uint8)
    y = np.asarray(ds.y, dtype=bool)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        out, x=x, y=np.packbits(y, axis=1), n_classes=np.int64(y.shape[1]), class_names=np.array(ds.class_names)
    )
    size = out.stat().st_size
    print(f"{out}: {x.shape[0]} clips, x {list(x.shape)} uint8, y {list(y.shape)} packed; {size / 2**20:.1f} MiB")
    if size >= MAX_NPZ_BYTES:
        print(f"{out} is {size / 2**20:.1f} MiB, over the {MAX_NPZ_BYTES / 2**20:.0f} MiB a device call carries")
        return 1
    return 0


def load(path: Path, quick: bool) -> Any:
    """The npz as TrialData with bal_train's seeded 80/20 split (numpy and tagtune's loop only)."""
    from tagtune.trainables.data import split_indices
    from tagtune.trainables.loop import TrialData

    with np.load(path) as f:
        x, n_classes = f["x"], int(f["n_classes"])
        y = np.unpackbits(f["y"], axis=1, count=n_classes).astype(bool)
        names = tuple(str(n) for n in f["class_names"])
    if quick:
        x, y = x[:QUICK_CLIPS], y[:QUICK_CLIPS]
    train_idx, val_idx = split_indices(len(x), 0.2, 0)
    return TrialData(x=x, y=y, train_idx=train_idx, val_idx=val_idx, class_names=names)


# -- measurements ----------------------------------------------------------------------------------


def _peak_mib(device: torch.device) -> float:
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else float("nan")


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def epoch_figures(data: Any, device: torch.device, epochs: int) -> tuple[list[dict[str, Any]], Any]:
    """Seconds per epoch of each family's defaults; also fc2's last validation scores."""
    from tagtune.trainables.batches import predict
    from tagtune.trainables.loop import fit

    out, fc2_scores = [], None
    x_val = torch.from_numpy(np.ascontiguousarray(data.clips.x[data.val_idx])).to(device)
    for family in EPOCH_FAMILIES:
        _reset_peak(device)
        seen: dict[str, Any] = {"family": family}

        def keep_scores(metrics: dict[str, float], improved: bool, model: Any, seen: dict[str, Any] = seen) -> None:
            if seen["family"] == "fc2" and metrics["epoch"] == epochs:
                seen["scores"] = predict(model, x_val)

        result = fit({"family": family}, data, max_epochs=epochs, device=device, on_epoch=keep_scores)
        secs = [h["epoch_seconds"] for h in result.history]
        steady = statistics.median(secs[1:] or secs)
        out.append(
            {
                "family": family,
                "seconds": steady,
                "clips_per_s": len(data.train_idx) / steady,
                "peak_mib": _peak_mib(device),
                "val_mAUC": result.history[-1]["val_mAUC"],
                "epochs": epochs,
            }
        )
        fc2_scores = seen.get("scores", fc2_scores)
        print(f"  {family}: {steady:.3f} s/epoch", file=sys.stderr, flush=True)
    return out, fc2_scores


def metrics_check(scores: torch.Tensor, targets: np.ndarray) -> dict[str, Any]:
    """tagtune's metrics on ``scores``' device against scikit-learn's per-class loop."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    from tagtune.trainables.metrics import average_precision, roc_auc, tagging_metrics

    t = torch.from_numpy(targets).to(scores.device)
    ours = tagging_metrics(scores, t)
    ap, auc = average_precision(scores, t).cpu().numpy(), roc_auc(scores, t).cpu().numpy()
    s = scores.float().cpu().numpy()
    ref_ap, ref_auc = np.full(s.shape[1], np.nan), np.full(s.shape[1], np.nan)
    for j in range(s.shape[1]):
        if targets[:, j].any():
            ref_ap[j] = average_precision_score(targets[:, j], s[:, j])
            if not targets[:, j].all():
                ref_auc[j] = roc_auc_score(targets[:, j], s[:, j])
    same_nan = bool(np.array_equal(np.isnan(ap), np.isnan(ref_ap)) and np.array_equal(np.isnan(auc), np.isnan(ref_auc)))
    err = max(
        float(np.nanmax(np.abs(ap - ref_ap))),
        float(np.nanmax(np.abs(auc - ref_auc))),
        abs(ours["mAP"] - float(np.nanmean(ref_ap))),
        abs(ours["mAUC"] - float(np.nanmean(ref_auc))),
    )
    return {"max_abs_diff": err if same_nan else float("inf"), "mAUC": ours["mAUC"], "classes": s.shape[1]}


def bf16_check(data: Any, device: torch.device, epochs: int) -> dict[str, float]:
    """fc2's validation mAUC after ``epochs`` with bf16 autocast and in float32."""
    from tagtune.trainables.loop import fit

    out = {}
    for name, flag in (("bf16", "1"), ("float32", "0")):
        os.environ["TAGTUNE_BF16"] = flag
        try:
            out[name] = fit({"family": "fc2"}, data, max_epochs=epochs, device=device).history[-1]["val_mAUC"]
        finally:
            os.environ.pop("TAGTUNE_BF16", None)
    return out


def _step_ms(model: Any, opt: Any, x: torch.Tensor, y: torch.Tensor, steps: int, graph: bool) -> float:
    """Milliseconds per training step (bf16 autocast, BCE) on fixed device batches; ``graph``:
    the step captured once as a CUDA graph and replayed (an experiment, not tagtune's loop)."""
    from tagtune.trainables.batches import autocast

    def step() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=False) if graph else autocast(x.device):
            loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x).float(), y)
        loss.backward()
        opt.step()

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up (on a side stream, as graph capture wants)
        for _ in range(5):
            opt.zero_grad(set_to_none=not graph)
            step()
    torch.cuda.current_stream().wait_stream(side)
    run = step
    if graph:
        g = torch.cuda.CUDAGraph()
        opt.zero_grad(set_to_none=False)
        with torch.cuda.graph(g):
            step()
        run = g.replay
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(steps):
        if not graph:
            opt.zero_grad(set_to_none=True)
        run()
    torch.cuda.synchronize()
    return (time.perf_counter() - t) * 1000 / steps


def breakdown(data: Any, device: torch.device) -> list[list[object]]:
    """Where fc2's epoch goes on the device: validation (predict + metrics) and one training step
    with foreach Adam, fused Adam (tagtune's default on CUDA), batch 256 and a CUDA graph."""
    from tagtune.trainables.batches import predict
    from tagtune.trainables.config import resolve_config
    from tagtune.trainables.loop import build_model
    from tagtune.trainables.metrics import tagging_metrics

    cfg = resolve_config({"family": "fc2"})
    x_val = torch.from_numpy(np.ascontiguousarray(data.clips.x[data.val_idx])).to(device)
    y_val = torch.from_numpy(data.y[data.val_idx]).to(device)
    model = build_model(cfg, n_frames=10, n_features=128, n_classes=data.y.shape[1]).to(device)
    secs = []
    for _ in range(3):
        torch.cuda.synchronize()
        t = time.perf_counter()
        tagging_metrics(predict(model, x_val), y_val)
        torch.cuda.synchronize()
        secs.append(time.perf_counter() - t)
    rows: list[list[object]] = [
        ["fc2 epoch breakdown", "validation: predict + metrics", f"{min(secs):.3f} s", "", "", ""]
    ]
    n_steps = -(-len(data.train_idx) // int(cfg["batch_size"]))
    for what, batch, kwargs, graph in (
        ("step, Adam foreach", 64, {"foreach": True}, False),
        ("step, Adam fused", 64, {"fused": True}, False),
        ("step, Adam fused, batch 256", 256, {"fused": True}, False),
        ("step, CUDA graph (capturable Adam)", 64, {"capturable": True, "foreach": True}, True),
    ):
        m = build_model(cfg, n_frames=10, n_features=128, n_classes=data.y.shape[1]).to(device).train()
        x = torch.randn(batch, 10, 128, device=device)
        y = (torch.rand(batch, data.y.shape[1], device=device) < 0.01).float()
        try:
            opt = torch.optim.Adam(m.parameters(), lr=3e-4, **kwargs)
            ms = _step_ms(m, opt, x, y, 200, graph)
            per_epoch = ms * -(-len(data.train_idx) // batch) / 1000
            rows.append(
                ["fc2 epoch breakdown", what, f"{ms:.3f} ms", f"{per_epoch:.3f} s of training per epoch", "", ""]
            )
        except Exception as err:  # an experiment: report, do not stop the check
            rows.append(["fc2 epoch breakdown", what, "failed", f"{type(err).__name__}: {str(err)[:120]}", "", ""])
    rows.append(["fc2 epoch breakdown", "steps per epoch at batch 64", str(n_steps), "", "", ""])
    return rows


def worker(args: argparse.Namespace) -> int:
    """One process of the packing figure: load, say ready, wait for go, train, report JSON."""
    from tagtune.trainables.loop import fit

    torch.set_num_threads(1)  # what a 1-CPU Ray trial gets
    device = torch.device(args.device)
    data = load(args.data, args.quick)
    if device.type == "cuda":
        torch.cuda.init()
        torch.zeros(1, device=device)  # the CUDA context, made once per worker as Ray's reused actors do
    print("ready", flush=True)
    sys.stdin.readline()
    t = time.perf_counter()
    result = fit({"family": args.worker}, data, max_epochs=args.epochs, device=device)
    print(
        json.dumps(
            {
                "seconds": time.perf_counter() - t,
                "peak_mib": _peak_mib(device),
                "val_mAUC": result.history[-1]["val_mAUC"],
            }
        ),
        flush=True,
    )
    return 0


def packing(args: argparse.Namespace, family: str, processes: int, epochs: int) -> dict[str, Any]:
    """Trials per hour with ``processes`` copies of the loop sharing the device."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", family, "--data", str(args.data)]
    cmd += ["--device", args.device, "--epochs", str(epochs)] + (["--quick"] if args.quick else [])
    procs = [subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for _ in range(processes)]
    try:
        for p in procs:
            assert p.stdout is not None and p.stdout.readline().strip() == "ready", f"worker {p.pid} did not start"
        t = time.perf_counter()
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        reports = [json.loads(p.stdout.readline()) for p in procs if p.stdout is not None]
        wall = time.perf_counter() - t
    finally:
        for p in procs:
            p.wait(timeout=120)
    return {
        "family": family,
        "processes": processes,
        "epochs": epochs,
        "wall": wall,
        "trials_per_hour": processes * 3600 / wall,
        "peak_mib": max(r["peak_mib"] for r in reports),
        "val_mAUC": statistics.mean(r["val_mAUC"] for r in reports),
    }


def _fmt(value: float, digits: int = 3) -> str:
    return "n/a" if value != value else f"{value:.{digits}g}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pack", type=Path, metavar="OUT.npz", help="write bal_train as a compressed npz and stop")
    parser.add_argument("--source", default=str(HERE.parent.parent / "shared" / "data" / "audioset" / "bal_train"))
    parser.add_argument("--data", type=Path, default=DEFAULT_NPZ, help="the npz --pack wrote")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="600 clips, 1 epoch, 1 and 2 processes")
    parser.add_argument("--epochs", type=int, default=None, help="epochs of the seconds-per-epoch figure (3)")
    parser.add_argument("--pack-epochs", type=int, default=None, help="epochs per packed trial (10)")
    parser.add_argument("--processes", default=None, help="processes sharing the device (1,4,8)")
    parser.add_argument("--pack-families", default=PACK_FAMILIES, help="families of the packing figure")
    parser.add_argument("--budget-s", type=float, default=400, help="fewer packed epochs past this many seconds")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the main process")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.pack:
        return pack(args.pack, args.source)
    if args.worker:
        return worker(args)
    if not args.data.is_file():
        print(f"--data {args.data}: no such file; make it with --pack {args.data} beside ../shared", file=sys.stderr)
        return 2
    from _common import machine, print_table

    t0 = time.perf_counter()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    epochs = args.epochs or (1 if args.quick else 3)
    pack_epochs = args.pack_epochs or (1 if args.quick else 10)
    processes = [int(k) for k in (args.processes or ("1,2" if args.quick else "1,4,8")).split(",")]
    data = load(args.data, args.quick)
    n_train = len(data.train_idx)
    print(f"data: {n_train} train / {len(data.val_idx)} validation clips; {machine()}", file=sys.stderr)

    rows: list[list[object]] = []
    figures, scores = epoch_figures(data, device, epochs)
    for f in figures:
        cpu = CPU_SECONDS[f["family"]]
        rows.append(
            [
                "seconds per epoch",
                f"{f['family']} ({f['epochs']} epoch{'s' if f['epochs'] > 1 else ''})",
                _fmt(f["seconds"]),
                f"{f['clips_per_s']:.0f} clips/s; "
                + (f"CPU {cpu} s = {cpu / f['seconds']:.1f}x; " if not args.quick else "")
                + f"peak {_fmt(f['peak_mib'])} MiB; val mAUC {f['val_mAUC']:.4f}",
                "< 0.2 s" if f["family"] == "fc2" else "",
                ("yes" if f["seconds"] < 0.2 else "no") if f["family"] == "fc2" else "",
            ]
        )
    per_epoch = {f["family"]: f["seconds"] for f in figures}
    if device.type == "cuda":
        rows += breakdown(data, device)
    for family in [f for f in args.pack_families.split(",") if f]:
        for k in processes:
            # the pessimistic estimate: k trials one after the other, plus ~10 s of start-up
            left = args.budget_s - (time.perf_counter() - t0)
            fits = max(1, int((left - 10) / max(k * per_epoch[family], 1e-3)))
            n = min(pack_epochs, fits)
            p = packing(args, family, k, n)
            rows.append(
                [
                    "trials per hour",
                    f"{family}, {k} process{'es' if k > 1 else ''} sharing the {device.type}",
                    f"{p['trials_per_hour']:.0f}",
                    f"{n} epoch{'s' if n > 1 else ''} per trial"
                    f"{' (fewer to fit the time)' if n < pack_epochs else ''}; "
                    f"{p['wall']:.1f} s wall; GPU memory per process {_fmt(p['peak_mib'])} MiB; "
                    f"val mAUC {p['val_mAUC']:.4f}",
                    "",
                    "",
                ]
            )
    if scores is not None:
        m = metrics_check(scores, data.y[data.val_idx])
        rows.append(
            [
                "metrics on the device vs scikit-learn",
                f"fc2 validation scores ({len(data.val_idx)} x {m['classes']})",
                f"{m['max_abs_diff']:.1e}",
                "max abs difference: per-class AP and AUC, mAP, mAUC",
                "<= 1e-6",
                "yes" if m["max_abs_diff"] <= 1e-6 else "no",
            ]
        )
    b = bf16_check(data, device, pack_epochs)
    diff = abs(b["bf16"] - b["float32"])
    rows.append(
        [
            "bf16 autocast vs float32",
            f"fc2 val mAUC after {pack_epochs} epoch{'s' if pack_epochs > 1 else ''}",
            f"{diff:.4f}",
            f"bf16 {b['bf16']:.4f}, float32 {b['float32']:.4f}"
            + ("" if device.type == "cuda" else " (autocast is CUDA only: both float32 here)"),
            "<= 0.002",
            "yes" if diff <= 0.002 else "no",
        ]
    )
    print(f"\n# bal_train 80% split ({n_train} clips), default configs; {machine()}\n")
    print_table(["figure", "what", "value", "detail", "target", "met"], rows)
    print(f"\n{time.perf_counter() - t0:.0f} s in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
