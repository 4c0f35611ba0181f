"""AudioSet bal_train dequantized to float32 (``x / 255``) as an npz, for the float path's check.

    python benchmarks/make_float_npz.py [--out /tmp/bal_train_float32.npz] [--train ../shared/data/audioset/bal_train]

Reads bal_train through tagtune (the cache), writes ``x`` float32 [N, 10, 128] = uint8 / 255 (the
padding stays 0), ``y`` bool multi-hot [N, 527], ``ids``, ``lengths`` and ``class_names`` with
``numpy.savez`` (uncompressed: 126 MB).  ``tagtune search --train OUT`` then reads it as a float
data set (standardized on the training split), to compare with the uint8 path on the same clips.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from _common import BAL_TRAIN


def main() -> None:
    from tagtune.trainables.data import load_dataset

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", default=str(BAL_TRAIN))
    parser.add_argument("--out", default="/tmp/bal_train_float32.npz")
    args = parser.parse_args()
    t0 = time.perf_counter()
    ds = load_dataset(args.train)
    x = np.asarray(ds.x, dtype=np.float32) / np.float32(255.0)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        out,
        x=x,
        y=np.asarray(ds.y, dtype=bool),
        ids=np.asarray(ds.ids),
        lengths=np.asarray(ds.lengths),
        class_names=np.asarray(ds.class_names),
    )
    print(f"wrote {out}: x {x.shape} float32, {out.stat().st_size / 1e6:.1f} MB, {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
