"""Issue 26: does a final's technique that helps on validation also help on eval?

    python benchmarks/bench_techniques.py [--family attention] [--epochs 12] [--seeds 0]
        [--variants base,ema,mixup,ema+mixup] [--threads 2]

One config (the family's registered defaults) trained on bal_train's seeded 80 % split (the
search's) for ``--epochs`` with each variant: ``base`` (as registered), ``ema`` (an exponential
moving average of the weights, ``ema_decay`` 0.999, validated and kept), ``mixup`` (seed 003's
mixup on embeddings, ``mixup_alpha`` 0.2), ``ema+mixup``, ``swa`` (the mean of the weights at the
end of each of the last quarter of the epochs, ``swa_last`` 0.25; as finalize tries it: trained for
the ``base`` run's best epoch and scored at its end; list ``base`` first).  Per variant and seed: the best epoch's
validation mAUC / mAP (what a search or finalize would choose by), then that epoch's weights scored
on AudioSet eval (held out: never used to choose), and the validation-to-eval mAP gap.  A
technique earns its place in a final when it raises validation *and* the gain holds on eval.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import numpy as np
import torch
from _common import BAL_TRAIN, EVAL, machine, print_table

from tagtune.finalize import AT_THE_END
from tagtune.names import Metrics
from tagtune.trainables.checkpoint import load_model, model_meta, save_model
from tagtune.trainables.data import load_dataset, open_source
from tagtune.trainables.loop import fit, predict
from tagtune.trainables.metrics import tagging_metrics

VARIANTS = {
    "base": {},
    "ema": {"ema_decay": 0.999},
    "mixup": {"mixup_alpha": 0.2},
    "ema+mixup": {"ema_decay": 0.999, "mixup_alpha": 0.2},
    "swa": {"swa_last": 0.25},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", default="attention")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    data = open_source(str(BAL_TRAIN)).trial_data(val_fraction=0.2, seed=0)
    test = load_dataset(str(EVAL))
    x_eval, y_eval = torch.from_numpy(np.asarray(test.x)), torch.from_numpy(np.asarray(test.y, dtype=bool))
    rows, found, found_epochs = [], {}, {}
    for variant in args.variants.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            t1 = time.perf_counter()
            config = {"family": args.family, "seed": seed, **VARIANTS[variant]}
            # swa as finalize runs it: for the base run's best epoch, scored at its end
            at_end = variant in AT_THE_END
            length = int(found_epochs.get(seed, args.epochs)) if at_end else args.epochs
            last: dict = {}

            def keep_last(metrics, improved, model, last=last):
                last["state"] = {k: v.detach().clone() for k, v in model.state_dict().items()}

            result = fit(config, data, max_epochs=length, device="cpu", on_epoch=keep_last)
            state, best = (last["state"], result.history[-1]) if at_end else (result.best_state, result.best)
            if variant == "base":
                found_epochs[seed] = best["epoch"]
            with tempfile.TemporaryDirectory() as tmp:  # the final's way: checkpoint, reload, score
                save_model(tmp, state, model_meta(config, data, best))
                model, _ = load_model(tmp)
            ev = tagging_metrics(predict(model, x_eval), y_eval)
            found.setdefault(variant, []).append((best[Metrics.VAL_MAUC], best[Metrics.VAL_MAP], ev["mAUC"], ev["mAP"]))
            print(
                f"{variant} seed {seed}: val {best[Metrics.VAL_MAUC]:.4f} / {best[Metrics.VAL_MAP]:.4f} at epoch "
                f"{int(best['epoch'])}, eval {ev['mAUC']:.4f} / {ev['mAP']:.4f} ({time.perf_counter() - t1:.0f} s)",
                flush=True,
            )
    base = found.get("base")
    for variant, runs in found.items():
        val_auc, val_ap, ev_auc, ev_ap = (statistics.mean(r[i] for r in runs) for i in range(4))
        gain = "" if base is None or variant == "base" else f"{ev_ap - statistics.mean(r[3] for r in base):+.4f}"
        rows.append([variant, len(runs), val_auc, val_ap, ev_auc, ev_ap, val_ap - ev_ap, gain])
    print(
        f"\n# {args.family} defaults, {args.epochs} epochs, bal_train 80 % split, scored on eval "
        f"({len(y_eval)} clips); {time.perf_counter() - t0:.0f} s; {machine()}\n"
    )
    print_table(
        ["variant", "seeds", "val mAUC", "val mAP", "eval mAUC", "eval mAP", "val-eval mAP gap", "eval mAP vs base"],
        rows,
    )


if __name__ == "__main__":
    main()
