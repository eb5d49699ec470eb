"""What a search found: parameter importance, plotly figures, the HTML report.

Every function here is a pure function of an experiment spec and its
observations, shared by the web dashboard and ``optiloop report``.
"""

from optiloop.analysis.figures import (
    BEST_FRACTION,
    MAX_BEST_RUNS,
    MAX_LINES,
    RUN_COLORS,
    RunClass,
    best_so_far,
    classify_runs,
    correlation,
    default_scatter_axes,
    history,
    importance_bars,
    message_figure,
    metric_scatter,
    parallel_coordinates,
    pearson,
)
from optiloop.analysis.importance import (
    MIN_OBSERVATIONS,
    Importance,
    MetricImportance,
    NotEnoughData,
    metric_importance,
    parameter_importance,
)
from optiloop.analysis.report import VIEW_IDS, Summary, render_report, summarize

__all__ = [
    "BEST_FRACTION",
    "MAX_BEST_RUNS",
    "MAX_LINES",
    "MIN_OBSERVATIONS",
    "RUN_COLORS",
    "VIEW_IDS",
    "Importance",
    "MetricImportance",
    "NotEnoughData",
    "RunClass",
    "Summary",
    "best_so_far",
    "classify_runs",
    "correlation",
    "default_scatter_axes",
    "history",
    "importance_bars",
    "message_figure",
    "metric_importance",
    "metric_scatter",
    "parallel_coordinates",
    "parameter_importance",
    "pearson",
    "render_report",
    "summarize",
]
