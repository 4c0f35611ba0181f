"""One self-contained HTML page: plotly.js inlined once, figures and tables in sections."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
import plotly.graph_objects as go
import plotly.offline

_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 24px auto;
       max-width: 1300px; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.2em; margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table.tt { border-collapse: collapse; font-size: 0.9em; margin: 8px 0 16px; }
table.tt th, table.tt td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
table.tt th { background: #f3f3f3; } table.tt td:first-child { text-align: left; }
p.note { color: #555; font-size: 0.9em; } .figure { margin: 8px 0 24px; }
"""


@dataclass(frozen=True)
class Section:
    """A heading with any of: a note, a table, a figure."""

    title: str
    figure: go.Figure | None = None
    table: pd.DataFrame | None = None
    note: str = ""


def table_html(frame: pd.DataFrame) -> str:
    """A DataFrame as an HTML table: 4 decimals for scores, 1 for seconds, blanks for NaN."""

    def fmt(col: str, v: object) -> str:
        if isinstance(v, float):
            if math.isnan(v):
                return ""
            return f"{v:.1f}" if col.endswith("_s") else f"{v:.4f}"
        return html.escape(str(v))

    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{fmt(str(c), row[c])}</td>" for c in frame.columns) + "</tr>"
        for _, row in frame.iterrows()
    )
    return f'<table class="tt"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def build_html(title: str, sections: Sequence[Section], subtitle: str = "") -> str:
    """The page: ``title``, then each section's note, table and figure; opens offline."""
    parts = [f"<h1>{html.escape(title)}</h1>"]
    if subtitle:
        parts.append(f'<p class="note">{html.escape(subtitle)}</p>')
    for i, s in enumerate(sections):
        parts.append(f"<h2>{html.escape(s.title)}</h2>")
        if s.note:
            parts.append(f'<p class="note">{html.escape(s.note)}</p>')
        if s.table is not None:
            parts.append(table_html(s.table))
        if s.figure is not None:
            div = s.figure.to_html(
                full_html=False,
                include_plotlyjs=False,
                div_id=f"fig{i}",
                config={"displaylogo": False, "responsive": True},
            )
            parts.append(f'<div class="figure">{div}</div>')
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style>"
        f'<script type="text/javascript">{plotly.offline.get_plotlyjs()}</script>'
        "</head><body>" + "\n".join(parts) + "</body></html>\n"
    )
