"""Learn the packaged start portfolio: a few configs per family that do well across tasks.

    python benchmarks/learn_portfolio.py [--families fc1,fc2] [--candidates 10] [--k 3]
        [--tasks audioset,speech,fsdd-hear,float512] [--write] [--loto-dir benchmarks/out/portfolios]

Per family, the candidates are the family's registered defaults and ``--candidates - 1`` configs
drawn from its packaged space by Optuna's QMC sampler (spread over the space, seeded).  Each
candidate trains on each task of ``benchmarks/_tasks.py`` for that task's ``--max-epochs``, on
the same seeded validation split a search uses, and scores its best validation mAUC (what the
search maximizes).  :func:`tagtune.portfolio.select_portfolio` then picks ``--k`` configs per
family from every task (written to ``search_spaces/portfolio.yaml`` with ``--write``: what
``tagtune search --portfolio`` runs first) and, per task, the portfolio learned on the
*other* tasks only (:func:`tagtune.portfolio.leave_one_task_out`).  The table compares, per task,
the defaults' validation score with the best of the leave-one-task-out portfolio: whether a start
learned elsewhere does at least as well as the defaults on data it never saw.  The scores go to
``benchmarks/out/portfolio_scores.json`` (reused: ``--reuse`` skips what is there).  With
``--loto-dir`` each task's leave-one-task-out portfolio is written there as ``<task>.yaml``: what
``bench_search.py``'s ``portfolio`` system runs on that task, so no task is searched from configs
learned on itself.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import optuna
import torch
import yaml
from _common import machine, print_table
from _tasks import TASKS

from tagtune.names import Metrics
from tagtune.portfolio import PACKAGED, leave_one_task_out, portfolio_path, select_portfolio
from tagtune.search_spaces import load_space
from tagtune.trainables.config import resolve_config
from tagtune.trainables.data import ReadOptions, open_source
from tagtune.trainables.loop import fit

OUT = Path(__file__).resolve().parent / "out"
DEFAULTS = "defaults"


def candidates(family: str, n: int, seed: int) -> dict[str, dict]:
    """``n`` configs of ``family`` (sampled parameters only): its registered defaults (name
    ``defaults``) and ``n - 1`` QMC draws from its packaged space (``q1``, ``q2``, ...)."""
    space = load_space(family)
    out = {DEFAULTS: space.fixed_params(resolve_config({"family": family}))}
    sampler = optuna.samplers.QMCSampler(seed=seed, scramble=True, warn_independent_sampling=False)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    for i in range(1, n):
        trial = study.ask()
        space.sample(trial)
        out[f"q{i}"] = dict(trial.params)
        study.tell(trial, 0.0)
    return out


def score(config: dict, data, max_epochs: int) -> float:
    """The best validation mAUC of one config trained on one task (NaN when it diverged)."""
    try:
        best = fit(config, data, max_epochs=max_epochs, device="cpu").best[Metrics.VAL_MAUC]
    except FloatingPointError:
        return math.nan
    return float(best)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", default="fc1,fc2")
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--candidates", type=int, default=10)
    parser.add_argument("--k", type=int, default=3, help="configs per family in the portfolio")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reuse", action="store_true", help="keep the scores already in the JSON file")
    parser.add_argument("--write", action="store_true", help="write search_spaces/portfolio.yaml")
    parser.add_argument("--loto-dir", type=Path, default=None, help="write each task's LOTO portfolio as <task>.yaml")
    parser.add_argument("--quick", action="store_true", help="small generated tasks (a smoke test)")
    parser.add_argument("--out", type=Path, default=OUT, help="where the scores go (default: benchmarks/out)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    args.out.mkdir(parents=True, exist_ok=True)
    store = args.out / ("portfolio_scores_quick.json" if args.quick else "portfolio_scores.json")
    saved = json.loads(store.read_text()) if args.reuse and store.exists() else {}
    tasks = args.tasks.split(",")
    t0 = time.perf_counter()
    pool = {f: candidates(f, args.candidates, args.seed) for f in args.families.split(",")}
    for task_name in tasks:
        task = TASKS[task_name]
        built = task.build(args.out / "tasks", quick=args.quick)
        data = open_source(built.train, options=ReadOptions(task=task.read_task)).trial_data(val_fraction=0.2, seed=0)
        for family, configs in pool.items():
            # the task's constants (the speech task's target_class) from its spaces
            consts = {p.name: p.value for p in load_space(family, built.spaces_dir).params if p.kind == "const"}
            for name, params in configs.items():
                key = f"{family}/{name}"
                entry = saved.setdefault(key, {"family": family, "params": params, "scores": {}})
                if task_name in entry["scores"]:
                    continue
                t1 = time.perf_counter()
                config = {"family": family, **consts, **params}
                entry["scores"][task_name] = score(config, data, task.max_epochs)
                print(
                    f"{task_name} {key} {entry['scores'][task_name]:.4f} ({time.perf_counter() - t1:.0f} s)", flush=True
                )
                store.write_text(json.dumps(saved, indent=1))
    learned: dict[str, list[str]] = {}
    loto: dict[str, dict[str, list[str]]] = {}  # task -> family -> configs learned without it
    rows = []
    for family in pool:
        scores = {name: saved[f"{family}/{name}"]["scores"] for name in pool[family]}
        learned[family] = select_portfolio(scores, args.k)
        for task_name, picked in leave_one_task_out(scores, args.k).items():
            if task_name not in tasks:
                continue
            loto.setdefault(task_name, {})[family] = picked
            best = max(picked, key=lambda c: scores[c].get(task_name, -1.0))
            default = scores[DEFAULTS].get(task_name, math.nan)
            oracle = max(s.get(task_name, -1.0) for s in scores.values())
            rows.append([task_name, family, default, scores[best][task_name], best, oracle, ", ".join(picked)])
    print(
        f"\n# {args.candidates} candidates per family (defaults + QMC draws, seed {args.seed}), "
        f"k={args.k}; validation mAUC at each task's --max-epochs; {time.perf_counter() - t0:.0f} s\n# {machine()}\n"
    )
    print_table(
        ["task", "family", "defaults", "LOTO portfolio best", "which", "best candidate", "LOTO portfolio"], rows
    )
    if args.write:
        write_portfolio(portfolio_path(PACKAGED), pool, learned, tasks)
    if args.loto_dir:
        args.loto_dir.mkdir(parents=True, exist_ok=True)
        for task_name, picked in loto.items():
            write_portfolio(args.loto_dir / f"{task_name}.yaml", pool, picked, [t for t in tasks if t != task_name])


def write_portfolio(path: Path, pool: dict[str, dict], picked: dict[str, list[str]], tasks: list[str]) -> None:
    """A portfolio file (``tagtune search --portfolio FILE``): per family, the ``picked`` configs."""
    doc = {
        family: [{"name": f"{family}/{name}", "params": pool[family][name]} for name in names]
        for family, names in picked.items()
    }
    header = (
        "# Written by benchmarks/learn_portfolio.py: per family, the configs `tagtune search --portfolio`\n"
        f"# runs first, chosen across the tasks {', '.join(tasks)} (greedy, min-max normalized validation\n"
        "# mAUC; see tagtune/portfolio.py). Edit or replace it with --portfolio FILE.\n"
    )
    path.write_text(header + yaml.safe_dump(doc, sort_keys=False))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
