"""``tagtune finalize``: flags -> :class:`tagtune.finalize.FinalizeSpec` (and its defaults) ->
:func:`tagtune.finalize.finalize`."""

from __future__ import annotations

import argparse

from tagtune.cli._common import add_run_id_flag, add_store_flags
from tagtune.cli.report import print_dashboard_line

HELP = "retrain each family's best config on all of --train, score on --eval, register the models, ensemble them"
DESCRIPTION = (
    "Seed 001's finals: each family's best trial (or top K) retrained on 100% "
    "of the training data for the epochs at which the trial peaked, scored on "
    "the eval split (eval_mAUC, eval_mAP, eval_dprime), logged as runs under "
    "this finalize's own run ('finals', nested under the search run beside its trials), "
    "registered as <experiment>-<family> in MLflow's model "
    "registry; plus weighted mean and geometric-mean ensembles whose members "
    "and weights are chosen on the search's validation split (bagged "
    "forward selection among each family's --ensemble-pool best trials, less those at chance or "
    "trailing by more than --pool-margin). An interrupted finalize run again continues: what it "
    "logged is kept. Running it again on the same "
    "search versions its runs: they are tagged tagtune.finalize_version (1, 2, ...) and named "
    "'finals v2', 'final-fc1 v2' and so on, the earlier ones are kept, the registered models get a new "
    "version, and the report shows the newest finalize."
)


def _add_ensemble_flags(p: argparse.ArgumentParser) -> None:
    from tagtune.spec import FinalizeSpec
    from tagtune.trainables.ensemble import SELECTIONS

    p.add_argument(
        "--ensemble-pool",
        type=int,
        default=FinalizeSpec.ensemble_pool,
        help="ensemble candidates: each family's K best trials; those the validation "
        "selection picks are trained as finals too (default: %(default)s)",
    )
    p.add_argument(
        "--pool-margin",
        type=float,
        default=FinalizeSpec.pool_margin,
        help="leave out of the ensemble pool a trial whose val mAUC trails its family's best by more "
        "than this, and any trial that never left chance; the report names them (default: %(default)s)",
    )
    p.add_argument(
        "--selection",
        choices=SELECTIONS,
        default=FinalizeSpec.selection,
        help="how an ensemble's members and weights are chosen on validation: 'bagged' repeats "
        "forward selection on bootstrap resamples of the clips over half the members and averages "
        "the votes (a member that only helps on a few lucky clips gets little weight); 'greedy' is "
        "one forward selection on the whole split (default: %(default)s)",
    )


def add_arguments(p: argparse.ArgumentParser) -> None:
    from tagtune.spec import FinalizeSpec

    add_store_flags(p)
    p.add_argument("--train", required=True, help="the search's training data (all of it is used)")
    p.add_argument(
        "--eval",
        default=None,
        help="held-out eval data of the same classes (required for embeddings; for audio the "
        "default is the CSV's own test rows, e.g. FSDD's official test split, scored with "
        "eval_accuracy and eval_map3 too)",
    )
    p.add_argument(
        "--top-k",
        type=int,
        default=FinalizeSpec.top_k,
        help="finals per family: its K best trials (default: %(default)s)",
    )
    _add_ensemble_flags(p)
    p.add_argument(
        "--seeds",
        type=int,
        default=FinalizeSpec.seeds,
        help="train each final with N seeds (the trial's seed, +1000, +2000, ...) and average their "
        "probabilities: a seed ensemble; each seed's eval scores and their spread are logged (default: %(default)s)",
    )
    p.add_argument(
        "--techniques",
        default=FinalizeSpec.techniques,
        metavar="ema,mixup,swa",
        help="techniques each final tries first on the search's validation split (ema: a moving "
        "average of the weights, decay 0.999; mixup: seed 003's mixup, alpha 0.2; swa: the mean of "
        "the weights at the end of each of the last quarter of the epochs); the best is used "
        "only where it beats the trial's own val_mAUC, and every score is logged (default: none)",
    )
    p.add_argument(
        "--no-resume",
        action="store_true",
        help="start a new finalize even when this search's latest one was interrupted (by default "
        "it is continued: its logged finals are kept, not retrained)",
    )
    p.add_argument(
        "--max-epochs",
        type=int,
        default=None,
        help="cap on a final's epochs (default: the epoch of its trial's best val_mAUC)",
    )
    add_run_id_flag(p)
    p.add_argument("--no-register", action="store_true", help="log the models but leave the registry alone")
    p.add_argument("--html", default=None, metavar="OUT", help="also write the dashboard to OUT")


def run(args: argparse.Namespace) -> None:
    from tagtune.commands import report
    from tagtune.finalize import FinalizeSpec, finalize

    outcome = finalize(
        FinalizeSpec(
            experiment=args.experiment,
            train=args.train,
            eval=args.eval,
            top_k=args.top_k,
            max_epochs=args.max_epochs,
            tracking_uri=args.tracking_uri,
            run_id=args.run_id,
            register=not args.no_register,
            ensemble_pool=args.ensemble_pool,
            pool_margin=args.pool_margin,
            selection=args.selection,
            seeds=args.seeds,
            techniques=args.techniques,
            resume=not args.no_resume,
        )
    )
    markdown, _ = report(args.experiment, outcome.tracking_uri, outcome.parent_run_id, html=args.html)
    print(markdown)
    print("\nmodels:")
    for _, row in outcome.finals.iterrows():
        print(f"  {row['name']:<18} {row['model_uri'] or row['run_id']}")
    print_dashboard_line(args.html)
