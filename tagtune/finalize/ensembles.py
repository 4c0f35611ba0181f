"""Ensembles of the finals: per method the members and weights picked on validation (or, with
no pick, every multi-label final weighted by its trial's val_mAUC), scored on eval, logged and
registered."""

from __future__ import annotations

import math
from dataclasses import dataclass

from tagtune.finalize.candidates import Pick
from tagtune.finalize.registry import Session, log_outputs
from tagtune.finalize.spec import Member
from tagtune.finalize.training import scored, scores_line
from tagtune.names import Metrics
from tagtune.tracking import RunKind, Tag
from tagtune.tracking.serving import log_tagger, registered_model_name
from tagtune.trainables.ensemble import ENSEMBLE_METHODS, ensemble_weights
from tagtune.trainables.inference import FinalsData


@dataclass
class Recipe:
    """One ensemble to score: its method, members and weights, and where the weights came from."""

    method: str
    members: list[Member]
    weights: list[float]
    how: str
    val_map: float = math.nan


def recipes(
    members: list[Member], picks: dict[str, Pick], n_classes: int, methods: tuple[str, ...] = ENSEMBLE_METHODS
) -> list[Recipe]:
    """Per method, the ensemble of the finals: the members picked on validation, or (no pick)
    every multi-label final weighted by its trial's val_mAUC; none with fewer than two finals."""
    multi = [m for m in members if m.scores.shape[1] == n_classes]
    if len(multi) < 2:
        return []
    out = []
    for method in methods:
        if method in picks:
            pick = picks[method]
            ens = [m for m in multi if m.source.run_id in pick.weights]
            out.append(
                Recipe(
                    method,
                    ens,
                    [pick.weights[m.source.run_id] for m in ens],
                    f"chosen on the search's validation split (val mAP {pick.val_map:.4f})",
                    pick.val_map,
                )
            )
        else:
            out.append(
                Recipe(
                    method, multi, ensemble_weights([m.source.best_mAUC for m in multi]), "from the trials' val_mAUC"
                )
            )
    return [r for r in out if r.members]


def log_ensemble(session: Session, fd: FinalsData, recipe: Recipe) -> None:
    """Score, log and register one ensemble of the finals."""
    method, members, weights = recipe.method, recipe.members, recipe.weights
    names = [m.name for m in members]
    params = {
        "ensemble_method": method,
        "members": ",".join(names),
        "member_runs": ",".join(m.run_id for m in members),
        "member_weights": ",".join(f"{x:.4f}" for x in weights),
        "weights_from": recipe.how,
    }
    with session.open(RunKind.ENSEMBLE, f"ensemble-{method}", {Tag.ENSEMBLE_METHOD: method}, params) as run:
        # a seed ensemble's seeds are members of their own, sharing its weight: what is scored
        # here is what the logged model serves
        seeds = [
            (c, p, w / len(m.checkpoints))
            for m, w in zip(members, weights, strict=True)
            for c, p in zip(m.checkpoints, m.seed_scores, strict=True)
        ]
        scores = fd.combine([p for _, p, _ in seeds], [w for _, _, w in seeds], method)
        metrics, per_class, confusion = scored(fd, scores, fd.eval_y, fd.class_names)
        # val_mAP: what the member weights reach on the search's validation split (the score to
        # choose between ensembles by; eval is only reported)
        extra = {Metrics.VAL_MAP: recipe.val_map} if math.isfinite(recipe.val_map) else {}
        log_outputs(session.client, run.run_id, None, per_class, metrics | extra, confusion)
        name = registered_model_name(session.spec.experiment, f"ensemble-{method}") if session.spec.register else None
        logged = log_tagger(
            session.uri,
            run.run_id,
            [c for c, _, _ in seeds],
            class_names=fd.class_names,
            n_frames=fd.data.shape[0],
            n_features=fd.data.shape[1],
            weights=[w for _, _, w in seeds],
            method=method,
            registered_name=name,
            extra_metadata={"members": names},
        )
        model_uri = logged.registered_uri or logged.run_uri
        session.model(f"ensemble-{method}", run.run_id, model_uri, metrics, f"ensemble_{method}")
    session.say(
        f"ensemble {method} of {', '.join(f'{n} {x:.2f}' for n, x in zip(names, weights, strict=True))} "
        f"(weights {recipe.how}): {scores_line(metrics)} -> {model_uri}"
    )
