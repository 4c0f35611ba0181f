"""Which ensemble selection holds on eval (issue 26): members and weights chosen on a search's
validation split by plain forward selection (``greedy``) or bagged selection (``bagged``), over
the whole pool or the honest one (:func:`tagtune.finalize.candidates.honest_pool`), each scored on
eval with the same trial checkpoints (trained on the search's 80 %), so only the selection
differs.  Needs a search already in ``--out`` (e.g. ``bench_quality.py --search-only``); trains
nothing.  Prints one Markdown table: val mAP (what selection saw), eval mAP and the gap.

    python bench_selection.py --out /tmp/quality --experiment quality
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from _common import EVAL, machine, print_table
from mlflow import MlflowClient

from tagtune.finalize import ranked
from tagtune.finalize.candidates import honest_pool
from tagtune.scoring import score_trials, validation_split
from tagtune.tracking import final_name, find_experiment, latest_search_run, search_trials
from tagtune.trainables.data import load_dataset
from tagtune.trainables.ensemble import ENSEMBLE_METHODS, SELECTIONS, combine_scores, select_weights
from tagtune.trainables.inference import EMBEDDINGS
from tagtune.trainables.metrics import tagging_metrics


def _scores(probs: np.ndarray, y: np.ndarray) -> dict[str, float]:
    return tagging_metrics(torch.from_numpy(np.asarray(probs, dtype=np.float32)), torch.from_numpy(y))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="the folder whose mlflow.db holds the search")
    parser.add_argument("--experiment", default="quality")
    parser.add_argument("--eval", default=str(EVAL), help="default: the shared AudioSet eval split")
    parser.add_argument("--pool", type=int, default=3, help="candidates per family (finalize's --ensemble-pool)")
    parser.add_argument("--margin", type=float, default=0.02, help="the honest pool's --pool-margin")
    args = parser.parse_args()
    uri = f"sqlite:///{Path(args.out).resolve() / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp = find_experiment(client, uri, args.experiment)
    parent = latest_search_run(client, exp)
    trials = search_trials(client, exp.experiment_id, parent.info.run_id)
    pool = ranked(trials.top(args.pool))
    ids = [row.run_id for _, _, row in pool]
    val = validation_split(parent)
    ev_ds = load_dataset(args.eval)
    ev = EMBEDDINGS.clip_set(ev_ds, np.arange(ev_ds.n_clips))
    val_p, ev_p = score_trials(client, ids, val), score_trials(client, ids, ev)
    names = [final_name(f, r) for f, r, _ in pool]
    rows: list[list[object]] = []
    best = max(range(len(pool)), key=lambda i: pool[i][2].best_mAUC)
    v, e = _scores(val_p[best], val.y), _scores(ev_p[best], ev.y)
    rows.append(
        [
            f"best single ({names[best]})",
            "-",
            "-",
            1,
            f"{v['mAP']:.4f}",
            f"{e['mAP']:.4f}",
            f"{v['mAP'] - e['mAP']:+.4f}",
            f"{e['mAUC']:.4f}",
        ]
    )
    honest = {row.run_id for _, _, row in honest_pool(pool, args.margin)[0]}
    pools = [("all", list(range(len(pool)))), ("honest", [i for i in range(len(pool)) if ids[i] in honest])]
    for pool_name, keep in [(name, keep) for name, keep in pools if len(keep) > 1]:  # an ensemble needs two
        for selection in SELECTIONS:
            for method in ENSEMBLE_METHODS:
                w, val_map = select_weights([val_p[i] for i in keep], val.y, method, selection)
                e = _scores(combine_scores([ev_p[i] for i in keep], w, method), ev.y)
                chosen = ", ".join(f"{names[i]} {x:.2f}" for i, x in zip(keep, w, strict=True) if x > 0)
                rows.append(
                    [
                        f"{pool_name} pool ({len(keep)})",
                        selection,
                        method,
                        chosen,
                        f"{val_map:.4f}",
                        f"{e['mAP']:.4f}",
                        f"{val_map - e['mAP']:+.4f}",
                        f"{e['mAUC']:.4f}",
                    ]
                )
    print(
        f"\n{machine()}; search {parent.info.run_id[:8]}: {len(trials)} trials, pool {len(pool)} "
        f"(top {args.pool} per family), honest margin {args.margin}; eval {ev_ds.n_clips} clips, trial checkpoints\n"
    )
    print_table(["ensemble", "selection", "method", "members", "val mAP", "eval mAP", "gap", "eval mAUC"], rows)


if __name__ == "__main__":
    main()
