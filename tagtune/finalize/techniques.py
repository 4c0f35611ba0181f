"""``finalize --techniques ema,mixup``: a final's technique, used only where validation says so
(issue 26).

For each planned final, each named technique (:data:`TECHNIQUES`: an exponential moving average
of the weights, seed 003's mixup on embeddings, or stochastic weight averaging over the last
quarter of the epochs) is first trained with the trial's config on the
search's own training / validation split for the search's ``--max-epochs``.  The best of them is
used for the final only when its best validation mAUC beats the trial's own (the same config,
split and seed without it; a trial stopped early is trained again for that baseline); the final
then trains for that run's best epoch (SWA: trained for the final's own epochs and scored at the
last, the weights the final ends with).  Every score is logged on the final's run
(``technique_<name>_val_mAUC``, ``technique_baseline_val_mAUC``) and the one used in its
``tagtune.technique`` tag (``none`` when none beat the trial).  Eval is never looked at.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from tagtune.names import Metrics
from tagtune.spec import TECHNIQUES

AT_THE_END = frozenset({"swa"})
"""Techniques trained for the final's own epochs and scored at the last one (SWA's window is a
share of the run, so a shorter or longer run averages other epochs)."""


@dataclass
class Choice:
    """What validation chose for one final: its config, epochs, the technique (or ``none``) and
    the validation mAUC of each candidate."""

    config: Any
    epochs: int
    technique: str = "none"
    scores: dict[str, float] = field(default_factory=dict)

    def params(self) -> dict[str, str]:
        return {f"technique_{k}_val_mAUC": f"{v:.6f}" for k, v in self.scores.items()}


def choose_technique(session: Any, row: Any, full: Any, epochs: int) -> Choice:
    """The final's config and epochs after trying ``session.spec.techniques`` on validation."""
    from tagtune.trainables.config import resolve_config
    from tagtune.trainables.loop import TrainingDiverged, fit

    names = session.spec.technique_names
    if not names:
        return Choice(full, epochs)
    data, max_epochs = search_split(session)
    baseline = row.best_mAUC
    if not row.full_length:
        baseline = fit(full, data, max_epochs=max_epochs, device=session.device).best[Metrics.VAL_MAUC]
    choice = Choice(full, epochs, scores={"baseline": float(baseline)})
    cap = session.spec.max_epochs or max_epochs
    for name in names:
        cfg = resolve_config({**dict(full.items()), **TECHNIQUES[name]})
        # SWA's mean covers the last quarter of the run: it trains the final's own length and is
        # scored at its end (the weights the final will have); the others run --max-epochs and
        # are scored at their best epoch, which the final then trains for
        length = epochs if name in AT_THE_END else max_epochs
        try:
            history = fit(cfg, data, max_epochs=length, device=session.device).history
        except TrainingDiverged:
            choice.scores[name] = math.nan  # never chosen
            continue
        best = history[-1] if name in AT_THE_END else max(history, key=lambda m: m[Metrics.VAL_MAUC])
        choice.scores[name] = float(best[Metrics.VAL_MAUC])
        if choice.scores[name] > max(baseline, choice.scores.get(choice.technique, -1.0)):
            choice.config, choice.epochs, choice.technique = cfg, min(int(best["epoch"]), cap), name
    session.say(
        f"techniques for {row.family}: val_mAUC "
        + ", ".join(f"{k} {v:.4f}" for k, v in choice.scores.items())
        + f" -> {choice.technique}"
    )
    return choice


def search_split(session: Any) -> tuple[Any, int]:
    """The search's own training / validation split (read once per finalize) and its max epochs."""
    if session.search_split is None:
        from tagtune.search import CheckedSearchSpec, prepare_data

        spec = CheckedSearchSpec.from_params(session.parent.data.params)
        session.search_split = (prepare_data(spec), spec.max_epochs)
    return session.search_split
