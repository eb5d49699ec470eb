"""One self-contained HTML file with every view of an experiment.

The file embeds plotly.js once (with the first figure) and the data of every
figure, so it opens from disk with no network: no script, style or font is
fetched from anywhere.  Every user string that lands in the HTML (title,
experiment, parameter, metric and category names) is escaped.

The report is a pure function of its inputs and holds no timestamp, so the
same observations always render the same file.
"""

from __future__ import annotations

import html
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from optiloop.analysis.figures import (
    correlation,
    history,
    importance_bars,
    message_figure,
    metric_scatter,
    parallel_coordinates,
)
from optiloop.analysis.importance import (
    Importance,
    MetricImportance,
    parameter_importance,
)
from optiloop.experiment import (
    ExperimentSpec,
    Observation,
    best_observations,
    is_feasible,
)

if TYPE_CHECKING:
    from plotly.graph_objects import Figure

logger = logging.getLogger(__name__)

# The div id of every view, in the order the report shows them.
VIEW_IDS = (
    "parallel-coordinates",
    "importance",
    "history",
    "metric-scatter",
    "correlation",
)

# Toolbar without the plotly logo, which links to plotly's website.
_PLOTLY_CONFIG = {"displaylogo": False, "responsive": True}

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px;
       color: #222; padding: 0 1rem; }
h1 { font-size: 1.6rem; margin-bottom: 0.2rem; }
.subtitle { color: #666; margin-top: 0; }
table.summary { border-collapse: collapse; margin: 1rem 0 2rem; }
table.summary th, table.summary td { text-align: left; padding: 0.25rem 1rem 0.25rem 0;
       border-bottom: 1px solid #eee; vertical-align: top; }
table.summary th { font-weight: 600; }
section { margin-bottom: 2rem; }
"""


@dataclass(frozen=True)
class Summary:
    """Counts and totals over an experiment's observations.

    ``compute_seconds`` sums ``metadata["compute_seconds"]`` over the
    observations that recorded it (``compute_recorded`` of them); it is None
    when none did.
    """

    observations: int
    failed: int
    infeasible: int
    feasible: int
    compute_seconds: float | None
    compute_recorded: int
    best: tuple[Observation, ...]


def summarize(spec: ExperimentSpec, observations: Sequence[Observation]) -> Summary:
    """Count the runs by outcome and add up their recorded compute time."""
    failed = sum(1 for o in observations if o.failed)
    feasible = sum(1 for o in observations if is_feasible(spec, o))

    seconds = [_compute_seconds(o.metadata) for o in observations]
    recorded = [s for s in seconds if s is not None]
    return Summary(
        observations=len(observations),
        failed=failed,
        infeasible=len(observations) - failed - feasible,
        feasible=feasible,
        compute_seconds=math.fsum(recorded) if recorded else None,
        compute_recorded=len(recorded),
        best=tuple(best_observations(spec, observations)),
    )


def render_report(
    spec: ExperimentSpec,
    observations: Sequence[Observation],
    title: str,
    *,
    round_starts: Sequence[int] = (),
    correlation_pair: tuple[str, str] | None = None,
) -> str:
    """The complete HTML report of one experiment, as a string.

    ``round_starts`` are the 0-based indices of the observations that begin
    a new round of a campaign, marked on the history.  ``correlation_pair``
    names the two quantities (parameters or metrics) of the correlation
    view; by default the most important numeric parameter of the first
    optimized metric against that metric.
    """
    importances = parameter_importance(spec, observations)
    pair = correlation_pair or _default_correlation_pair(spec, importances)
    if pair is None:
        correlation_figure = message_figure(
            "Correlation", "The experiment has no numeric parameter."
        )
    else:
        correlation_figure = correlation(spec, observations, *pair)

    figures: dict[str, Figure] = {
        "parallel-coordinates": parallel_coordinates(spec, observations),
        "importance": importance_bars(importances),
        "history": history(spec, observations, round_starts=round_starts),
        "metric-scatter": metric_scatter(spec, observations),
        "correlation": correlation_figure,
    }

    # plotly.js goes in once, with the first figure; the later figures'
    # scripts run after it and find it loaded.
    views = [
        figure.to_html(
            full_html=False,
            include_plotlyjs=index == 0,
            div_id=view_id,
            config=_PLOTLY_CONFIG,
        )
        for index, (view_id, figure) in enumerate(figures.items())
    ]
    sections = "\n".join(f"<section>{view}</section>" for view in views)

    summary = summarize(spec, observations)
    page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{_text(title)}</title>
<style>{_STYLE}</style>
</head>
<body>
<h1>{_text(title)}</h1>
<p class="subtitle">Experiment {_text(spec.name)}</p>
{_summary_table(spec, summary)}
{sections}
</body>
</html>
"""
    logger.info(
        "report of experiment %s rendered from %d observations",
        spec.name,
        len(observations),
    )
    return page


def _default_correlation_pair(
    spec: ExperimentSpec, importances: Sequence[MetricImportance]
) -> tuple[str, str] | None:
    numeric = [p.name for p in spec.parameters if p.type != "categorical"]
    if not numeric:
        return None

    metric = spec.optimized_metrics[0].name
    fitted = {i.metric: i for i in importances if isinstance(i, Importance)}
    if metric in fitted:
        shares = fitted[metric].shares
        # max() keeps the first of equal shares: the spec's order decides ties.
        return max(numeric, key=lambda name: shares[name]), metric
    return numeric[0], metric


def _summary_table(spec: ExperimentSpec, summary: Summary) -> str:
    rows = [
        ("Observations", str(summary.observations)),
        ("Met every threshold", str(summary.feasible)),
        ("Missed a threshold", str(summary.infeasible)),
        ("Failed", str(summary.failed)),
        ("Compute", _text(_compute_text(summary))),
    ]
    best_label = "Best point" if len(summary.best) <= 1 else "Pareto front"
    if summary.best:
        best_html = "<br>".join(_point_text(spec, o) for o in summary.best)
    else:
        best_html = "no run has met every threshold yet"
    rows.append((best_label, best_html))

    body = "\n".join(f"<tr><th>{name}</th><td>{cell}</td></tr>" for name, cell in rows)
    return f'<table class="summary">\n{body}\n</table>'


def _compute_text(summary: Summary) -> str:
    if summary.compute_seconds is None:
        return "not recorded"
    seconds = summary.compute_seconds
    text = f"{seconds:,.0f} s ({seconds / 3600:,.2f} h)"
    if summary.compute_recorded < summary.observations:
        text += f", recorded by {summary.compute_recorded} of the observations"
    return text


def _point_text(spec: ExperimentSpec, observation: Observation) -> str:
    """One point as escaped HTML: its metric values, then its assignments."""
    values = [
        f"{m.name} = {value:.6g}"
        for m in spec.metrics
        if (value := observation.value(m.name)) is not None
    ]
    assignments = [
        f"{name} = {_format_value(value)}"
        for name, value in observation.assignments.items()
    ]
    return _text(", ".join(values)) + " at " + _text(", ".join(assignments))


def _format_value(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _compute_seconds(metadata: Mapping[str, object]) -> float | None:
    seconds = metadata.get("compute_seconds")
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        return None
    return float(seconds) if math.isfinite(seconds) else None


def _text(text: str) -> str:
    return html.escape(text, quote=True)
