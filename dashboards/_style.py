"""Shared look of the dashboard's figures: one colour per family, placeholder figures."""

from __future__ import annotations

from collections.abc import Iterable

import plotly.graph_objects as go

PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#17becf",
    "#bcbd22",
    "#7f7f7f",
    "#d62728",
)


def family_colors(families: Iterable[str]) -> dict[str, str]:
    """A stable colour per family name, in order of first appearance."""
    out: dict[str, str] = {}
    for name in families:
        if name not in out:
            out[name] = PALETTE[len(out) % len(PALETTE)]
    return out


def empty_figure(title: str, reason: str) -> go.Figure:
    """A figure that says why there is nothing to draw (instead of an empty plot)."""
    fig = go.Figure()
    fig.add_annotation(
        text=reason, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper", font=dict(size=15, color="#666")
    )
    fig.update_layout(title=title, height=220, xaxis=dict(visible=False), yaxis=dict(visible=False))
    return fig
