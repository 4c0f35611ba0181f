"""``tagtune finalize``: retrain each family's best config(s) on all training data, score on eval,
register the models, and ensemble them (seed 001's protocol).

The search tunes on an 80/20 split of the training data; the finals retrain each family's best
trial (or its top K) on **100%** of it and are scored once on the held-out eval split.

How long a final trains: the search's validation mAUC picked the trial's best epoch, and with no
held-out clips left there is nothing to pick an epoch by, so a final trains for exactly that many
epochs (the step of the trial's highest ``val_mAUC``) and keeps the weights of its last epoch.
``--max-epochs`` caps it.  :func:`tagtune.trainables.loop.fit` still wants a validation split each epoch:
it gets a seeded slice of at most 2048 of the *training* clips, logged as ``fit_mAUC``/``fit_mAP``
(how well the model fits clips it trains on, a sanity check, not a held-out score), and it does
not choose the weights.

Each ``tagtune finalize`` is a run under the search's parent run (``tagtune.kind=finalize``,
named ``finals``, then ``finals v2`` for a second finalize of the same search, with
``tagtune.finalize_version``), and its finals and ensembles are runs under that one, so the MLflow
UI lists a search's trials and, in a row of their own, each finalize's models.
Each final is a run (tags ``tagtune.kind=final``,
``tagtune.family``, ``tagtune.source_run``) with ``eval_mAUC``, ``eval_mAP``, ``eval_dprime``, its
checkpoint, a per-class AP table, and an MLflow pyfunc model; each family's final (rank 1) is
registered as ``<experiment>-<family>``.  With two or more finals, two ensembles are scored and
logged the same way (``tagtune.kind=ensemble``): the weighted mean of the members' probabilities
and their weighted geometric mean.  Members and weights are chosen on the search's validation
split, never on eval: the candidates are each family's ``ensemble_pool`` best trials; each scores
the validation clips with its trial checkpoint (trained on the 80%), greedy forward selection with
replacement (Caruana et al. 2004) picks the votes that maximize validation mAP, and a picked trial
that is not already a final is retrained as one (rank > 1, not registered on its own).  When that
split cannot be rebuilt (--train is not the search's data), every final is a member, weighted
``max(val_mAUC - 0.5, 0.01)`` of its trial, normalized.  The parent run gets ``final_<family>_eval_*`` and
``ensemble_<method>_eval_*`` metrics and a ``tagtune.final.<name>`` tag with each model URI.

Raw audio (seed 003, ``--train`` an audio CSV or its folder): the finals retrain on the search's
training and validation clips (the CSV's test clips are never trained on), for the epochs at
which their trials peaked, and are scored on the data set's held-out test split: the clips the
CSV marks ``test`` (FSDD's official split), or every clip of ``--eval`` when that is another
audio CSV of the same classes; without either, finalize refuses (exit 2) and names ``--eval``.
Single-label data add ``eval_accuracy`` and ``eval_map3`` (MAP@3) to ``eval_mAUC/eval_mAP`` and
log the test split's confusion matrix (``eval/confusion.csv``).  The ensemble is seed 003's
weighted geometric mean (rows normalized to a distribution), its members and weights chosen on
the search's validation split exactly as for embeddings (greedy selection on validation mAP).

The package, one module per step: :mod:`.spec` (what is asked, what comes back), :mod:`.data`
(the finals' data, through :mod:`tagtune.trainables.inference`'s data kinds), :mod:`.candidates`
(the finals to train, the ensembles' members chosen on validation), :mod:`.training` (one
final), :mod:`.ensembles`, :mod:`.registry` (the MLflow runs and registered models) and
:mod:`.run` (:func:`finalize`, which ties them together).
"""

from __future__ import annotations

from tagtune.finalize.candidates import Pick, choose_members, plan_finals, ranked, top_trials
from tagtune.finalize.data import load_audio_finals, load_finals_data, own_test_split
from tagtune.finalize.ensembles import Recipe, log_ensemble, recipes
from tagtune.finalize.registry import Session, register_final
from tagtune.finalize.run import finalize
from tagtune.finalize.spec import (
    AUDIO_ENSEMBLE_METHODS,
    AUDIO_FIT_SLICE,
    FIT_SLICE,
    FinalizeOutcome,
    FinalizeSpec,
    Member,
)
from tagtune.finalize.techniques import AT_THE_END
from tagtune.finalize.training import EpochLog, train_final
from tagtune.trainables.ensemble import ensemble_weights, greedy_weights
from tagtune.trainables.inference import FinalsData, fit_slice

__all__ = [
    "AT_THE_END",
    "AUDIO_ENSEMBLE_METHODS",
    "AUDIO_FIT_SLICE",
    "FIT_SLICE",
    "EpochLog",
    "FinalizeOutcome",
    "FinalizeSpec",
    "FinalsData",
    "Member",
    "Pick",
    "Recipe",
    "Session",
    "choose_members",
    "ensemble_weights",
    "finalize",
    "fit_slice",
    "greedy_weights",
    "load_audio_finals",
    "load_finals_data",
    "log_ensemble",
    "own_test_split",
    "plan_finals",
    "ranked",
    "recipes",
    "register_final",
    "top_trials",
    "train_final",
]
