"""Reading bal_train: parsing Google's TFRecords (both CRCs checked) vs tagtune's memory-mapped cache.

    python benchmarks/bench_data.py [--path ../shared/data/audioset/bal_train]

Target (issue 7): the cache at least 50x faster than parsing.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import numpy as np
from _common import BAL_TRAIN, machine, print_table

from tagtune.trainables.data import load_dataset, read_cache


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", default=str(BAL_TRAIN))
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    parse, cached, direct = [], [], []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as cache:
            t = time.perf_counter()
            ds = load_dataset(args.path, cache_dir=cache)  # parses and writes the cache
            parse.append(time.perf_counter() - t)
            t = time.perf_counter()
            again = load_dataset(args.path, cache_dir=cache)
            np.asarray(again.y).sum()  # touch the labels, as a search does
            cached.append(time.perf_counter() - t)
            folder = again.source.split("cache:", 1)[1].split(" (from", 1)[0]
            t = time.perf_counter()
            np.asarray(read_cache(folder).y).sum()  # `--train <cache folder>`: no source check
            direct.append(time.perf_counter() - t)
    p, c, d = statistics.median(parse), statistics.median(cached), statistics.median(direct)
    print(f"# data read: {args.path}\n# {machine()}\n")
    print_table(
        ["what", "seconds (median)", "clips", "clips/s"],
        [
            ["parse TFRecords + write cache", p, ds.n_clips, ds.n_clips / p],
            [
                "load via the TFRecord folder: stat 4070 shards, then the cache (mmap)",
                c,
                again.n_clips,
                again.n_clips / c,
            ],
            ["load the cache folder itself (mmap)", d, again.n_clips, again.n_clips / d],
        ],
    )
    print(f"\ncache speed-up: {p / c:.0f}x via the folder, {p / d:.0f}x from the cache folder (target >= 50x)")


if __name__ == "__main__":
    main()
