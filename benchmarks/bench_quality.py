"""The reports' tables on the data they used: search on bal_train (validation carved from it),
finals on eval, next to the reports' own numbers and the targets.

    python benchmarks/bench_quality.py [--families fc1,fc2,lstm,gcnn,skip_bilstm,attention]
                                       [--trials-per-family 5] [--max-epochs 8] [--out DIR]

Model selection uses the validation split only; eval is scored once, by the finals.
Writes the MLflow store and the HTML dashboard under --out and prints the tables.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

from _common import BAL_TRAIN, EVAL, machine, print_table
from tagtune.commands import report
from tagtune.finalize import FinalizeSpec, finalize
from tagtune.search import SearchSpec, run_search

REFERENCES = [
    ["seed 000 FC-1, best run", 0.927, math.nan],
    ["seed 000 LSTM, best run", 0.945, math.nan],
    ["seed 001 ensemble", 0.944, 0.231],
    ["plain FC-2, 20 epochs, untuned (shared/data README)", 0.9445, 0.238],
]
TARGETS = {"best single model mAUC": 0.955, "best single model mAP": 0.28, "ensemble mAP": 0.30}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", default="fc1,fc2,lstm,gcnn,skip_bilstm,attention")
    parser.add_argument("--trials-per-family", type=int, default=5)
    parser.add_argument("--max-epochs", type=int, default=8)
    parser.add_argument("--cpus-per-trial", type=float, default=1.0)
    parser.add_argument("--gpus-per-trial", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="bench-quality")
    parser.add_argument("--finals-only", action="store_true",
                        help="skip the search: finalize the latest search already in --out")
    args = parser.parse_args()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{out / 'mlflow.db'}"
    t0 = time.perf_counter()
    parent_run_id = None
    if not args.finals_only:
        spec = SearchSpec(train=str(BAL_TRAIN), families=args.families.split(","),
                          trials_per_family=args.trials_per_family, max_epochs=args.max_epochs,
                          experiment="quality", tracking_uri=uri, seed=args.seed,
                          cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial,
                          storage_path=str(out / "ray"))
        parent_run_id = run_search(spec).parent_run_id
    search_s = time.perf_counter() - t0
    result = finalize(FinalizeSpec(experiment="quality", train=str(BAL_TRAIN), eval=str(EVAL),
                                   tracking_uri=uri, run_id=parent_run_id))
    parent_run_id = result.parent_run_id
    markdown, _ = report("quality", uri, parent_run_id, html=str(out / "report.html"))
    print(f"\n# quality benchmark, {time.perf_counter() - t0:.0f} s (search {search_s:.0f} s)\n# {machine()}\n")
    print(markdown)
    finals = result.finals
    singles = finals[finals["kind"] == "final"]
    ensembles = finals[finals["kind"] == "ensemble"]
    print("\n## against the reports (eval split)\n")
    rows = [[name, auc, ap] for name, auc, ap in REFERENCES]
    rows += [[f"tagtune final {r['name']}", r["eval_mAUC"], r["eval_mAP"]] for _, r in singles.iterrows()]
    rows += [[f"tagtune {r['name']}", r["eval_mAUC"], r["eval_mAP"]] for _, r in ensembles.iterrows()]
    print_table(["model", "eval mAUC", "eval mAP"], rows)
    got = {
        "best single model mAUC": singles["eval_mAUC"].max(),
        "best single model mAP": singles["eval_mAP"].max(),
        "ensemble mAP": ensembles["eval_mAP"].max() if len(ensembles) else math.nan,
    }
    print("\n## targets\n")
    print_table(["target", "measured", "goal", "met"],
                [[k, got[k], v, "yes" if got[k] >= v else "no"] for k, v in TARGETS.items()])
    print(f"\nHTML dashboard: {out / 'report.html'}")


if __name__ == "__main__":
    main()
