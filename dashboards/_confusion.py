"""A single-label model's confusion matrix on the test split, with class names."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from tagtune.dashboards._style import empty_figure


def confusion_data(confusion: pd.DataFrame) -> pd.DataFrame:
    """The long table (``true, predicted, count``, as ``tagtune.tracking.confusion_table`` builds
    it) as a square matrix of counts: rows the true classes, columns the predicted ones, both in
    the table's order of first appearance; missing pairs count 0."""
    if confusion.empty:
        return pd.DataFrame()
    names = list(dict.fromkeys([*confusion["true"].astype(str), *confusion["predicted"].astype(str)]))
    matrix = confusion.assign(true=confusion["true"].astype(str), predicted=confusion["predicted"].astype(str))
    square = matrix.pivot_table(index="true", columns="predicted", values="count", aggfunc="sum", fill_value=0)
    return square.reindex(index=names, columns=names, fill_value=0).astype(int)


def confusion_figure(confusion: pd.DataFrame, source: str = "") -> go.Figure:
    """A heatmap of the confusion matrix: colour = the share of each true class's clips (rows sum
    to 1), text = the clip counts; the accuracy in the title."""
    square = confusion_data(confusion)
    if square.empty:
        return empty_figure("confusion matrix", "no single-label final scored on a test split")
    totals = square.sum(axis=1).clip(lower=1)
    share = square.div(totals, axis=0)
    n = int(square.to_numpy().sum())
    correct = int(np.trace(square.to_numpy()))
    fig = go.Figure(
        go.Heatmap(
            z=share.to_numpy(),
            x=list(square.columns),
            y=list(square.index),
            text=square.to_numpy(),
            texttemplate="%{text}",
            colorscale="Blues",
            zmin=0,
            zmax=1,
            colorbar=dict(title="share of<br>true class"),
            hovertemplate="true %{y}<br>predicted %{x}<br>%{text} clips (%{z:.1%})<extra></extra>",
        )
    )
    accuracy = correct / n if n else float("nan")
    fig.update_layout(
        title=f"Confusion matrix{f' ({source})' if source else ''}: accuracy {accuracy:.4f} on {n} clips",
        xaxis=dict(title="predicted class", type="category", side="bottom"),
        yaxis=dict(title="true class", type="category", autorange="reversed"),
        height=max(360, 140 + 28 * len(square)),
    )
    return fig
