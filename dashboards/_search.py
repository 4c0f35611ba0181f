"""Figures of a search's trials: Fig. 4 range per family, Fig. 3 runtime, optimization history,
parallel coordinates, learning curves.

Each figure is two functions, as optuna's plots are: ``<name>_data(table) -> DataFrame`` computes
what is drawn (tested), ``<name>_figure(table) -> go.Figure`` draws it.  The input tables are
those of :mod:`tagtune.tracking.tables` (see there for their columns).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from tagtune.dashboards._style import empty_figure, family_colors
from tagtune.names import Metrics

PARAM_PREFIX = "params_"


# -- Fig. 4: max / min / mean mAUC per family ----------------------------------------------------
def range_data(summary: pd.DataFrame) -> pd.DataFrame:
    """Per family: ``min, mean, max`` of the trials' best val_mAUC and the final's ``eval`` mAUC
    (NaN without a final), families in the summary's order, those without a finished trial left out."""
    rows = []
    for _, r in summary.iterrows():
        if pd.isna(r.get("max_mAUC")):
            continue
        final = r.get(Metrics.EVAL_MAUC)
        rows.append(
            {
                "family": str(r["family"]),
                "min": float(r["min_mAUC"]),
                "mean": float(r["mean_mAUC"]),
                "max": float(r["max_mAUC"]),
                "eval": float(final) if final is not None and pd.notna(final) else math.nan,
                "trials": int(r.get("completed", r.get("trials", 0)) or 0),
            }
        )
    return pd.DataFrame(rows, columns=["family", "min", "mean", "max", "eval", "trials"])


def range_figure(summary: pd.DataFrame) -> go.Figure:
    """Seed 000's Fig. 4: the range (min..max) and mean of validation mAUC over each family's
    trials, with the final model's eval mAUC as a star where there is one."""
    data = range_data(summary)
    if data.empty:
        return empty_figure("mAUC per family", "no finished trial yet")
    fig = go.Figure()
    for trace in _range_traces(data):
        fig.add_trace(trace)
    finals = data.dropna(subset=["eval"])
    if not finals.empty:
        fig.add_trace(
            go.Scatter(
                x=finals["family"],
                y=finals["eval"],
                mode="markers+text",
                name="final, eval split",
                text=[f"{v:.3f}" for v in finals["eval"]],
                textposition="middle right",
                marker=dict(symbol="star", size=15, color="#d62728"),
            )
        )
    low = float(np.nanmin([data["min"].min(), finals["eval"].min() if not finals.empty else np.nan]))
    high = float(np.nanmax([data["max"].max(), finals["eval"].max() if not finals.empty else np.nan]))
    pad = max(0.01, 0.1 * (high - low))
    fig.update_layout(
        title="mAUC per family: max / min / mean over the search's trials (seed 000 Fig. 4)",
        yaxis=dict(title="mAUC", range=[low - pad, min(1.0, high + 2 * pad)]),
        xaxis_title="family",
        barmode="overlay",
        height=460,
    )
    return fig


def _range_traces(data: pd.DataFrame) -> list[Any]:
    """The bar from min to max per family, and its max, min and mean markers."""
    colors = family_colors(data["family"])
    bar = go.Bar(
        x=data["family"],
        y=data["max"] - data["min"],
        base=data["min"],
        name="min..max (validation)",
        marker_color=[colors[f] for f in data["family"]],
        opacity=0.35,
        width=0.5,
        customdata=np.stack([data["min"], data["max"], data["trials"]], axis=1),
        hovertemplate=(
            "%{x}<br>min %{customdata[0]:.4f}<br>max %{customdata[1]:.4f}<br>%{customdata[2]} trials<extra></extra>"
        ),
    )
    line = dict(symbol="line-ew-open", size=28, line=dict(width=2))
    return [
        bar,
        go.Scatter(
            x=data["family"],
            y=data["max"],
            mode="markers+text",
            name="max",
            text=[f"{v:.3f}" for v in data["max"]],
            textposition="top center",
            marker={**line, "color": "black"},
        ),
        go.Scatter(x=data["family"], y=data["min"], mode="markers", name="min", marker={**line, "color": "gray"}),
        go.Scatter(
            x=data["family"],
            y=data["mean"],
            mode="markers",
            name="mean",
            marker=dict(symbol="diamond", size=11, color="black"),
        ),
    ]


# -- Fig. 3: runtime per family ------------------------------------------------------------------
def runtime_data(runtime: pd.DataFrame) -> pd.DataFrame:
    """Per family: ``mean_epoch_s``, ``mean_trial_s`` and ``final_train_s`` (NaN if none), fastest first."""
    cols = ["family", "mean_epoch_s", "mean_trial_s", "final_train_s"]
    data = runtime.reindex(columns=cols).copy()
    data = data.dropna(subset=["mean_epoch_s"])
    return data.sort_values("mean_epoch_s").reset_index(drop=True)


def runtime_figure(runtime: pd.DataFrame) -> go.Figure:
    """Seed 000's Fig. 3: seconds per epoch and per trial for each family (and per final)."""
    data = runtime_data(runtime)
    if data.empty:
        return empty_figure("runtime per family", "no epoch times logged yet")
    has_final = data["final_train_s"].notna().any()
    titles = ["seconds per epoch", "seconds per trial"] + (["seconds per final (100% of train)"] if has_final else [])
    fig = make_subplots(rows=1, cols=len(titles), subplot_titles=titles)
    colors = family_colors(data["family"])
    marker = [colors[f] for f in data["family"]]
    for col, key in enumerate(["mean_epoch_s", "mean_trial_s"] + (["final_train_s"] if has_final else []), start=1):
        fig.add_trace(
            go.Bar(
                x=data["family"],
                y=data[key],
                marker_color=marker,
                showlegend=False,
                text=[f"{v:.1f}" if pd.notna(v) else "" for v in data[key]],
                textposition="outside",
                hovertemplate="%{x}: %{y:.2f} s<extra></extra>",
            ),
            row=1,
            col=col,
        )
        fig.update_yaxes(title_text="seconds", row=1, col=col)
    fig.update_layout(title="Runtime per family (seed 000 Fig. 3)", height=420)
    return fig


# -- optimization history ------------------------------------------------------------------------
def history_data(trials: pd.DataFrame) -> pd.DataFrame:
    """Per family and trial (in start order): its best val_mAUC and the best so far."""
    cols = ["family", "number", "value", "best_so_far"]
    if trials.empty:
        return pd.DataFrame(columns=cols)
    done = trials.dropna(subset=[Metrics.BEST_VAL_MAUC]).sort_values(["family", "number"])
    parts = []
    for family, group in done.groupby("family", sort=False):
        parts.append(
            pd.DataFrame(
                {
                    "family": family,
                    "number": group["number"].astype(int).to_numpy(),
                    "value": group[Metrics.BEST_VAL_MAUC].to_numpy(float),
                    "best_so_far": group[Metrics.BEST_VAL_MAUC].cummax().to_numpy(float),
                }
            )
        )
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=cols)


def history_figure(trials: pd.DataFrame) -> go.Figure:
    """Optimization history per family: each trial's best val_mAUC and the best so far."""
    data = history_data(trials)
    if data.empty:
        return empty_figure("optimization history", "no finished trial yet")
    colors = family_colors(data["family"].unique())
    fig = go.Figure()
    for family, group in data.groupby("family", sort=False):
        c = colors[str(family)]
        fig.add_trace(
            go.Scatter(
                x=group["number"],
                y=group["value"],
                mode="markers",
                name=f"{family} trial",
                marker=dict(color=c, size=9),
                legendgroup=family,
            )
        )
        fig.add_trace(
            go.Scatter(
                x=group["number"],
                y=group["best_so_far"],
                mode="lines",
                name=f"{family} best so far",
                line=dict(color=c, shape="hv"),
                legendgroup=family,
            )
        )
    fig.update_layout(
        title="Optimization history per family (TPE, one Optuna study per family)",
        xaxis=dict(title="trial number within the family", dtick=1),
        yaxis_title="best validation mAUC of the trial",
        height=440,
    )
    return fig


# -- parallel coordinates ------------------------------------------------------------------------
def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def _logish(values: list[float]) -> bool:
    return bool(values) and min(values) > 0 and max(values) / min(values) >= 100


def parallel_data(trials: pd.DataFrame, family: str) -> list[dict[str, Any]]:
    """The dimensions of the family's parallel-coordinates plot: one per searched parameter that
    has more than one value, then the objective.  Each is ``{label, values, tickvals?, ticktext?}``:
    categorical values (and an ``inactive`` level for conditional parameters) become integer
    codes with their names as ticks; wide positive ranges are drawn as log10."""
    group = trials[(trials["family"] == family)].dropna(subset=[Metrics.BEST_VAL_MAUC])
    dims: list[dict[str, Any]] = []
    if group.empty:
        return dims
    for col in [c for c in group.columns if c.startswith(PARAM_PREFIX)]:
        raw = list(group[col])
        present = [v for v in raw if v is not None and not (isinstance(v, float) and math.isnan(v))]
        if not present or len({repr(v) for v in raw}) < 2:
            continue
        name = col[len(PARAM_PREFIX) :]
        inactive = len(present) < len(raw)
        if all(_is_number(v) for v in present):
            nums = [float(v) for v in present]
            log = _logish(nums)
            conv = [math.log10(float(v)) if log else float(v) for v in present]
            lo, hi = min(conv), max(conv)
            span = (hi - lo) or 1.0
            fill = lo - 0.25 * span
            values = [
                fill
                if v is None or (isinstance(v, float) and math.isnan(v))
                else (math.log10(float(v)) if log else float(v))
                for v in raw
            ]
            dim: dict[str, Any] = {"label": f"log10({name})" if log else name, "values": values}
            if inactive:
                ticks = [lo, hi]
                dim["tickvals"] = [fill, *ticks]
                dim["ticktext"] = ["inactive", *(f"{t:.3g}" for t in ticks)]
            dims.append(dim)
        else:
            levels = sorted({str(v) for v in present})
            if inactive:
                levels = ["inactive", *levels]
            codes = {lvl: i for i, lvl in enumerate(levels)}
            values = [
                codes["inactive" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)] for v in raw
            ]
            dims.append({"label": name, "values": values, "tickvals": list(range(len(levels))), "ticktext": levels})
    dims.append({"label": "val mAUC", "values": [float(v) for v in group[Metrics.BEST_VAL_MAUC]]})
    return dims


def parallel_figure(trials: pd.DataFrame, family: str) -> go.Figure:
    """Parallel coordinates of one family's trials: hyperparameters -> best val_mAUC (colour)."""
    dims = parallel_data(trials, family)
    if len(dims) < 2:
        return empty_figure(
            f"parallel coordinates: {family}", "fewer than two finished trials with differing parameters"
        )
    objective = dims[-1]["values"]
    fig = go.Figure(
        go.Parcoords(
            line=dict(color=objective, colorscale="Viridis", showscale=True, colorbar=dict(title="mAUC")),
            dimensions=[{k: v for k, v in d.items()} for d in dims],
        )
    )
    fig.update_layout(
        title=f"Parallel coordinates: {family} ({len(objective)} trials)",
        height=420,
        margin=dict(l=80, r=80, t=90, b=40),
    )
    return fig


# -- learning curves -----------------------------------------------------------------------------
def learning_curve_data(history: pd.DataFrame, trials: pd.DataFrame, top: int = 3) -> pd.DataFrame:
    """Per-epoch ``val_mAUC``, ``val_loss`` and ``train_loss`` of each family's ``top`` trials
    (by best val_mAUC), labelled ``family #rank``."""
    cols = ["family", "rank", "label", "run_id", "step", Metrics.VAL_MAUC, Metrics.VAL_LOSS, Metrics.TRAIN_LOSS]
    if trials.empty or history.empty:
        return pd.DataFrame(columns=cols)
    parts = []
    done = trials.dropna(subset=[Metrics.BEST_VAL_MAUC])
    for family, group in done.groupby("family", sort=False):
        best = group.sort_values(Metrics.BEST_VAL_MAUC, ascending=False).head(top)
        for rank, run_id in enumerate(best["run_id"], start=1):
            curve = history[history["run_id"] == run_id].sort_values("step")
            parts.append(
                pd.DataFrame(
                    {
                        "family": family,
                        "rank": rank,
                        "label": f"{family} #{rank}",
                        "run_id": run_id,
                        "step": curve["step"].astype(int).to_numpy(),
                        **{
                            k: curve[k].to_numpy(float) if k in curve else np.full(len(curve), np.nan)
                            for k in (Metrics.VAL_MAUC, Metrics.VAL_LOSS, Metrics.TRAIN_LOSS)
                        },
                    }
                )
            )
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=cols)


_DASHES = ("solid", "dash", "dot", "dashdot", "longdash")


def learning_curves_figure(history: pd.DataFrame, trials: pd.DataFrame, top: int = 3) -> go.Figure:
    """Learning curves of each family's top trials: validation mAUC, and train / validation loss."""
    data = learning_curve_data(history, trials, top)
    if data.empty:
        return empty_figure("learning curves", "no epochs logged yet")
    fig = make_subplots(rows=1, cols=2, subplot_titles=["validation mAUC", "loss: train (line), validation (dotted)"])
    colors = family_colors(data["family"].unique())
    for label, curve in data.groupby("label", sort=False):
        family, rank = curve["family"].iloc[0], int(curve["rank"].iloc[0])
        c, dash = colors[family], _DASHES[(rank - 1) % len(_DASHES)]
        fig.add_trace(
            go.Scatter(
                x=curve["step"],
                y=curve[Metrics.VAL_MAUC],
                mode="lines+markers",
                name=label,
                line=dict(color=c, dash=dash),
                legendgroup=label,
            ),
            row=1,
            col=1,
        )
        fig.add_trace(
            go.Scatter(
                x=curve["step"],
                y=curve[Metrics.TRAIN_LOSS],
                mode="lines",
                name=f"{label} train",
                line=dict(color=c, dash=dash),
                legendgroup=label,
                showlegend=False,
            ),
            row=1,
            col=2,
        )
        fig.add_trace(
            go.Scatter(
                x=curve["step"],
                y=curve[Metrics.VAL_LOSS],
                mode="lines+markers",
                name=f"{label} val",
                line=dict(color=c, dash="dot", width=1),
                marker=dict(size=4),
                legendgroup=label,
                showlegend=False,
            ),
            row=1,
            col=2,
        )
    fig.update_xaxes(title_text="epoch", dtick=1)
    fig.update_yaxes(title_text="mAUC", row=1, col=1)
    fig.update_yaxes(title_text="BCE loss", type="log", row=1, col=2)
    fig.update_layout(title=f"Learning curves of each family's top {top} trials", height=440)
    return fig


# -- anytime view ----------------------------------------------------------------------------------
def anytime_data(anytime: pd.DataFrame) -> pd.DataFrame:
    """The step lines of :func:`anytime_figure`: the anytime table in minutes, per family and
    overall (``all``)."""
    data = anytime.copy()
    data["minutes"] = data["seconds"] / 60.0
    return data


def anytime_figure(anytime: pd.DataFrame) -> go.Figure:
    """Best validation mAUC so far against the search's wall time, per family and overall."""
    data = anytime_data(anytime)
    if data.empty:
        return empty_figure("best validation mAUC so far", "no epoch logged yet")
    colors = family_colors([f for f in data["family"].unique() if f != "all"])
    fig = go.Figure()
    for family, group in data.groupby("family", sort=False):
        overall = family == "all"
        fig.add_trace(
            go.Scatter(
                x=group["minutes"],
                y=group[Metrics.BEST_VAL_MAUC],
                mode="lines+markers",
                name="all families" if overall else str(family),
                line=dict(color="black" if overall else colors[str(family)], shape="hv", width=3 if overall else 2),
            )
        )
    fig.update_layout(
        title="Anytime view: best validation mAUC so far vs wall time",
        xaxis_title="minutes since the search started",
        yaxis_title="best validation mAUC so far",
        height=420,
    )
    return fig
