"""The best model's average precision per class, with class names: the best and worst classes."""

from __future__ import annotations

import math

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from tagtune.dashboards._style import empty_figure

PER_CLASS_COLUMNS = ["class", "ap", "n_pos", "group"]


def per_class_data(per_class: pd.DataFrame, n: int = 20) -> pd.DataFrame:
    """The ``n`` classes with the highest AP (group ``best``, best first) and the ``n`` with the
    lowest (group ``worst``, worst first), among classes with a positive clip; with fewer than
    ``2 n`` such classes, the upper half is ``best`` and the rest ``worst``."""
    scored = per_class.dropna(subset=["ap"])
    if "n_pos" in scored:
        scored = scored[scored["n_pos"] > 0]
    scored = scored.sort_values("ap", ascending=False, kind="stable").reset_index(drop=True)
    if scored.empty:
        return pd.DataFrame(columns=PER_CLASS_COLUMNS)
    k = min(n, math.ceil(len(scored) / 2))
    best = scored.head(k).assign(group="best")
    worst = scored.iloc[k:].tail(min(n, len(scored) - k)).iloc[::-1].assign(group="worst")
    out = pd.concat([best, worst], ignore_index=True)
    if "n_pos" not in out:
        out["n_pos"] = pd.NA
    return out[PER_CLASS_COLUMNS]


def per_class_figure(per_class: pd.DataFrame, n: int = 20, source: str = "") -> go.Figure:
    """Two panels of horizontal bars: the best and the worst ``n`` classes by AP, named."""
    data = per_class_data(per_class, n)
    if data.empty:
        return empty_figure("average precision per class", "no per-class scores available")
    best, worst = data[data["group"] == "best"], data[data["group"] == "worst"]
    fig = make_subplots(
        rows=1,
        cols=2,
        horizontal_spacing=0.3,
        subplot_titles=[f"best {len(best)} classes", f"worst {len(worst)} classes"],
    )
    for col, part, color in ((1, best, "#2ca02c"), (2, worst, "#d62728")):
        part = part.iloc[::-1]  # the first row at the top
        fig.add_trace(
            go.Bar(
                x=part["ap"],
                y=part["class"],
                orientation="h",
                marker_color=color,
                showlegend=False,
                customdata=part["n_pos"],
                text=[f"{v:.3f}" for v in part["ap"]],
                textposition="outside",
                hovertemplate="%{y}<br>AP %{x:.4f}<br>%{customdata} positive clips<extra></extra>",
            ),
            row=1,
            col=col,
        )
        fig.update_xaxes(range=[0, 1.15], title_text="average precision", row=1, col=col)
    rows = max(len(best), len(worst))
    fig.update_layout(
        title="Average precision per class" + (f" ({source})" if source else ""),
        height=max(320, 120 + 22 * rows),
        margin=dict(l=10, r=10),
    )
    fig.update_yaxes(automargin=True, tickfont=dict(size=11))
    return fig
