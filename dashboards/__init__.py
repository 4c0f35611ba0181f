"""Plotly figures of a search and its finals, and the self-contained HTML report (import name
``tagtune.dashboards``: the folder ``dashboards/`` installs under it).

Every figure is a pure function of a table (a pandas DataFrame as :mod:`tagtune.tracking.tables` builds
it) to a ``plotly.graph_objects.Figure``; beside each ``*_figure`` is the ``*_data`` function
that computes what it draws (that is what the tests check), as in optuna's visualization.
"""

from __future__ import annotations

from tagtune.dashboards._confusion import confusion_data, confusion_figure
from tagtune.dashboards._html import Section, build_html, table_html
from tagtune.dashboards._importance import importance_figure, infer_distribution, param_importances, rebuild_study
from tagtune.dashboards._per_class import per_class_data, per_class_figure
from tagtune.dashboards._search import (
    anytime_data,
    anytime_figure,
    history_data,
    history_figure,
    learning_curve_data,
    learning_curves_figure,
    parallel_data,
    parallel_figure,
    range_data,
    range_figure,
    runtime_data,
    runtime_figure,
)

__all__ = [
    "anytime_data",
    "anytime_figure",
    "Section",
    "build_html",
    "confusion_data",
    "confusion_figure",
    "history_data",
    "history_figure",
    "importance_figure",
    "infer_distribution",
    "learning_curve_data",
    "learning_curves_figure",
    "parallel_data",
    "parallel_figure",
    "param_importances",
    "per_class_data",
    "per_class_figure",
    "range_data",
    "range_figure",
    "rebuild_study",
    "runtime_data",
    "runtime_figure",
    "table_html",
]
