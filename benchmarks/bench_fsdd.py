"""FSDD quality: train densenet_audio on the train split, score the official test split.

    python benchmarks/bench_fsdd.py [--config cfg.yaml] [--set key=value ...] [--max-epochs 12]
                                    [--threads 1] [--seed 0] [--ensemble]

The validation split (20%, seeded) is carved from FSDD's 2700 ``train`` clips and selects the
best epoch (highest val_mAUC, as in a search); the 300 ``test`` clips (index 0-4 of every
speaker and digit) are scored once at the end: accuracy, MAP@3, mAUC, mAP.  ``--config`` takes a
``tagtune export`` YAML (or a flat mapping); without it the family's defaults are used.
``--ensemble`` also trains the waveform front end and scores seed 003's weighted geometric-mean
ensemble of the two (log-mel weight 1.5, waveform 1).  Wall and process CPU time are printed.
"""

from __future__ import annotations

import argparse
import time

import torch
import yaml
from _common import SHARED, machine, print_table

from tagtune.trainables.audio import audio_trial_data, load_audio_dataset, score_ensemble
from tagtune.trainables.audio.batches import AudioBatches
from tagtune.trainables.config import resolve_config
from tagtune.trainables.loop import build_model, fit, model_task, task_labels
from tagtune.trainables.metrics import task_metrics

FSDD = SHARED / "fsdd"


def train_and_score(config: dict, ds, args: argparse.Namespace) -> tuple[dict[str, float], torch.Tensor, float, float]:
    """(test metrics, test softmax scores, wall s, CPU s) of one config."""
    data = audio_trial_data(ds, val_fraction=0.2, seed=args.seed)
    cfg = resolve_config(config)
    wall, cpu = time.perf_counter(), time.process_time()

    def report(m: dict[str, float], improved: bool, _model: object) -> None:
        print(
            f"  epoch {int(m['epoch'])}: train_loss {m['train_loss']:.3f} val_acc {m['val_accuracy']:.4f} "
            f"val_mAUC {m['val_mAUC']:.4f}{' *' if improved else ''} ({m['epoch_seconds']:.1f} s)",
            flush=True,
        )

    result = fit(cfg, data, max_epochs=args.max_epochs, device="cpu", on_epoch=report)
    task = model_task(cfg, data.single_label)
    model = build_model(cfg, n_frames=0, n_features=1, n_classes=len(ds.class_names), task=task)
    model.load_state_dict(result.best_state)
    _, _, test_idx = ds.splits(0.2, args.seed)
    batches = AudioBatches(cfg, data, task_labels(cfg, data), torch.device("cpu"))
    idx = torch.from_numpy(test_idx)
    logits = batches.predict_logits(model, idx)
    metrics = task_metrics(logits, batches.y[idx].bool(), task)
    metrics["best_epoch"] = result.best["epoch"]
    metrics["val_accuracy"] = result.best["val_accuracy"]
    return metrics, logits.softmax(dim=1), time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(FSDD))
    parser.add_argument("--config", default=None, help="a tagtune export YAML or a flat mapping")
    parser.add_argument(
        "--set", nargs="*", default=[], metavar="KEY=VALUE", help="override config values (YAML values)"
    )
    parser.add_argument("--max-epochs", type=int, default=12)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ensemble", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    config: dict = {"family": "densenet_audio"}
    if args.config:
        from tagtune.tracking.export import read_config

        config = read_config(args.config)
    for item in args.set:
        key, _, value = item.partition("=")
        config[key] = yaml.safe_load(value)
    ds = load_audio_dataset(args.data, sample_rates=[int(resolve_config(config)["sample_rate"])])
    runs = [(str(resolve_config(config)["front_end"]), {**config})]
    if args.ensemble:
        runs = [("logmel", {**config, "front_end": "logmel"}), ("waveform", {**config, "front_end": "waveform"})]
    rows, scores = [], []
    for name, cfg in runs:
        print(f"{name}: {cfg}", flush=True)
        m, s, wall, cpu = train_and_score(cfg, ds, args)
        scores.append(s)
        rows.append(
            [name, m["accuracy"], m["map3"], m["mAUC"], m["mAP"], m["val_accuracy"], int(m["best_epoch"]), wall, cpu]
        )
    if args.ensemble:
        y = ds.y[ds.splits(0.2, args.seed)[2]]
        e = score_ensemble(scores, y, [1.5, 1.0])
        rows.append(["geomean ensemble", e["accuracy"], e["map3"], e["mAUC"], e["mAP"], "", "", "", ""])
    print(
        f"\n# FSDD official test split ({len(ds.splits(0.2, args.seed)[2])} clips), {args.max_epochs} epochs, "
        f"seed {args.seed}\n# {machine()}\n"
    )
    print_table(
        ["model", "test_acc", "test_MAP@3", "test_mAUC", "test_mAP", "val_acc", "best_epoch", "wall_s", "cpu_s"], rows
    )


if __name__ == "__main__":
    main()
