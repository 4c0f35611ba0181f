"""FSDD as a float per-clip embedding set in HEAR's scene-task layout, from tagtune's own front end.

    python benchmarks/make_fsdd_hear.py [--out benchmarks/out/fsdd-hear] [--n-mels 64]

Each of FSDD's 3000 recordings (../shared/data/fsdd, 8 kHz) goes through tagtune's log-mel front
end (``trainables.audio.frontends.LogMel``: n_fft 256, hop 64, 64 mels) and is summarized over
time by the mean and standard deviation of each mel band: one float32 embedding of 2 x n_mels
per clip.  Written as hear-eval-kit writes a scene task: ``task_metadata.json`` (multiclass,
trainvaltest), ``labelvocabulary.csv`` (digits 0-9) and ``train/``, ``valid/``, ``test/`` with
``<file>.embedding.npy`` + ``<file>.target-labels.json``.

Splits: FSDD's official one (``fsdd_meta.csv``: index 0-4 of each speaker and digit is ``test``,
as tagtune's audio reader uses it); ``valid`` is carved from train the same way, index 5-9 of
each speaker and digit (300 clips), so train keeps 2400 and every speaker is on every side as
in the official split.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
FSDD = HERE.parents[0].parent / "shared" / "data" / "fsdd"


def main() -> None:
    from tagtune.trainables.audio.frontends import LogMel
    from tagtune.trainables.data import open_source

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fsdd", default=str(FSDD))
    parser.add_argument("--out", default=str(HERE / "out" / "fsdd-hear"))
    parser.add_argument("--n-mels", type=int, default=64)
    args = parser.parse_args()
    t0 = time.perf_counter()
    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    ds = open_source(args.fsdd).read()
    table = ds.table
    clips = ds.at(8000)
    with open(Path(args.fsdd) / "fsdd_meta.csv", newline="") as fh:
        index_of = {r["filename"]: int(r["index"]) for r in csv.DictReader(fh)}
    front = LogMel(8000, n_fft=256, hop=64, n_mels=args.n_mels)
    for s in ("train", "valid", "test"):
        (out / s).mkdir(parents=True)
    counts = {"train": 0, "valid": 0, "test": 0}
    with torch.no_grad():
        for i in range(table.n_clips):
            wave = torch.from_numpy(clips.clip(i))[None, :]
            mel = front(wave)[0, 0]  # [frames, n_mels]
            emb = torch.cat([mel.mean(dim=0), mel.std(dim=0, unbiased=False)]).numpy().astype(np.float32)
            name = str(table.ids[i])
            split = "test" if table.split[i] == "test" else ("valid" if 5 <= index_of[name] <= 9 else "train")
            label = table.class_names[int(np.flatnonzero(table.y[i])[0])]
            np.save(out / split / f"{name}.embedding.npy", emb)
            (out / split / f"{name}.target-labels.json").write_text(json.dumps([label]))
            counts[split] += 1
    meta = {
        "task_name": "fsdd",
        "version": "tagtune-logmel-stats",
        "embedding_type": "scene",
        "prediction_type": "multiclass",
        "split_mode": "trainvaltest",
        "sample_duration": None,
        "evaluation": ["top1_acc"],
    }
    (out / "task_metadata.json").write_text(json.dumps(meta, indent=1))
    with open(out / "labelvocabulary.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["idx", "label"])
        for k, name in enumerate(table.class_names):
            w.writerow([k, name])
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(
        f"wrote {out}: {sum(counts.values())} clips ({counts}), {2 * args.n_mels} float32 features per clip, "
        f"{len(table.class_names)} classes, {size / 1e6:.1f} MB, {time.perf_counter() - t0:.1f} s"
    )


if __name__ == "__main__":
    main()
