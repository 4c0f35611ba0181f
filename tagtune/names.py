"""The metric names and tag keys of tagtune's runs, in a leaf module every package may import.

Part of the run schema (:mod:`tagtune.tracking` exports :class:`Metrics` and :class:`Tag` beside
the run kinds and run lifecycle of :mod:`tagtune.tracking.schema`): the training loop
(:mod:`tagtune.trainables`), the dashboards and the tracking code all take the names from here,
so none is spelled twice.  Nothing is imported here (no MLflow), so a Ray worker or a figure can
use them cheaply.
"""

from __future__ import annotations


class Metrics:
    """Metric names of the runs (step = epoch in trial runs), and the groups they are read in."""

    TRAIN_LOSS = "train_loss"
    VAL_LOSS = "val_loss"
    VAL_MAUC = "val_mAUC"
    VAL_MAP = "val_mAP"
    VAL_DPRIME = "val_dprime"
    EPOCH_SECONDS = "epoch_seconds"
    VAL_F1 = "val_f1"
    VAL_ACCURACY = "val_accuracy"
    VAL_MAP3 = "val_map3"
    BEST_VAL_MAUC = "best_val_mAUC"
    BEST_VAL_MAP = "best_val_mAP"
    BEST_VAL_F1 = "best_val_f1"
    BEST_VAL_ACCURACY = "best_val_accuracy"
    BEST_VAL_MAP3 = "best_val_map3"
    EVAL_MAUC = "eval_mAUC"
    EVAL_MAP = "eval_mAP"
    EVAL_DPRIME = "eval_dprime"
    EVAL_ACCURACY = "eval_accuracy"
    EVAL_MAP3 = "eval_map3"
    # a final's fit on (a slice of) its own training clips: a sanity check, not a held-out score
    FIT_MAUC = "fit_mAUC"
    FIT_MAP = "fit_mAP"

    SEARCH = BEST_VAL_MAUC  # what the searcher maximizes (the trial's best val_mAUC so far)
    EPOCH = (TRAIN_LOSS, VAL_LOSS, VAL_MAUC, VAL_MAP, VAL_DPRIME, EPOCH_SECONDS)
    TASK = (VAL_F1, VAL_ACCURACY, VAL_MAP3)  # where the task has them
    BEST = (BEST_VAL_MAUC, BEST_VAL_MAP, BEST_VAL_F1, BEST_VAL_ACCURACY, BEST_VAL_MAP3)
    HISTORY = (VAL_MAUC, VAL_MAP, VAL_LOSS, TRAIN_LOSS, EPOCH_SECONDS)
    EVAL = (EVAL_MAUC, EVAL_MAP, EVAL_DPRIME)
    EVAL_SINGLE_LABEL = (EVAL_ACCURACY, EVAL_MAP3)  # what single-label (audio) finals add

    @classmethod
    def names(cls) -> set[str]:
        """Every metric name defined here."""
        return {v for k, v in vars(cls).items() if k.isupper() and isinstance(v, str)}


class Tag:
    """Tag keys (``mlflow.parentRunId`` is MLflow's own, linking a child run to its search)."""

    PARENT = "mlflow.parentRunId"
    KIND = "tagtune.kind"
    FAMILY = "tagtune.family"
    FAMILIES = "tagtune.families"
    TRIAL_ID = "tagtune.trial_id"
    RAY_PATH = "tagtune.ray_path"
    OPTUNA_STORAGE = "tagtune.optuna_storage"
    NODE_ID = "tagtune.node_id"
    NODE_IP = "tagtune.node_ip"
    RETRIES = "tagtune.retries"
    ERROR = "tagtune.error"
    STATUS = "tagtune.status"
    CONFIG_FILE = "tagtune.config_file"
    COMMAND = "tagtune.command"  # the command line that started the run
    FINALIZE_ID = "tagtune.finalize_id"
    FINALIZE_VERSION = "tagtune.finalize_version"  # 1 for a search's first finalize, 2 for a re-run...
    SOURCE_RUN = "tagtune.source_run"
    RANK = "tagtune.rank"
    ENSEMBLE_METHOD = "tagtune.ensemble"
    MODEL_URI = "tagtune.model_uri"
    # on a finalize run: the trials kept out of the ensemble pool and why ("gcnn#2: never left chance ...")
    POOL_LEFT_OUT = "tagtune.pool_left_out"
    SEEDS = "tagtune.seeds"  # on a final: the seeds its checkpoints were trained with ("0,1001")
    # a trial stopped before max_epochs (early-stopping rule or the spent time budget); its run
    # still ends FINISHED with the metrics of the epochs it trained
    STOPPED_EARLY = "tagtune.stopped_early"  # "True"
    STOPPED_AT_EPOCH = "tagtune.stopped_at_epoch"
    STOPPED_BY = "tagtune.stopped_by"  # the rule: asha(grace 2, rf 3, best_val_mAUC), time budget
    WARM_START = "tagtune.warm_start"  # on a search run: the trials it was seeded with
    OPTUNA_STUDY = "tagtune.optuna_study"  # a trial run's Optuna study and trial number
    OPTUNA_TRIAL = "tagtune.optuna_trial"
    TECHNIQUE = "tagtune.technique"  # on a final: the technique validation chose (ema, mixup, swa, none)
    REPEAT_OF = "tagtune.repeat_of"  # on a repeat run: the trial run whose config it trains again
    FIRST_TRIAL = "tagtune.first_trial"  # "True" on a trial that ran an enqueued config (defaults, portfolio)
    # MLflow's own keys that its UI shows (source, user, experiment kind)
    SOURCE_NAME = "mlflow.source.name"
    SOURCE_TYPE = "mlflow.source.type"
    SOURCE_COMMIT = "mlflow.source.git.commit"
    USER = "mlflow.user"
    EXPERIMENT_KIND = "mlflow.experimentKind"

    @staticmethod
    def final_model(name: str) -> str:
        """The search run's tag naming the model URI of a final (``fc1``, ``ensemble-mean``)."""
        return f"tagtune.final.{name}"
