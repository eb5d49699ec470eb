"""One self-contained HTML file with every view of an experiment.

The file embeds plotly.js once and the data of every figure, so it opens
from disk with no network: no script, style or font is fetched from
anywhere.  Every user string that lands in the HTML (title, experiment,
parameter, metric and category names) is escaped.

Figures are drawn lazily (``plots.js``, shared with the dashboard): each
one when it comes near the viewport, one per task.  Drawing all five at
load kept a 10,000-run report frozen for seconds in a browser without a
GPU; now only the figures in view stand between opening and using it.

The report is a pure function of its inputs and holds no timestamp, so the
same observations always render the same file.
"""

from __future__ import annotations

import html
import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any

from optiloop.analysis.campaign import (
    CampaignPart,
    bounds_figure,
    campaign_history,
    campaign_runs,
    comparison_tables,
    compute_figure,
    refinement_rows,
    round_parts,
    search_parts,
)
from optiloop.analysis.compute import Comparison, compute_usage
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
PLOTLY_CONFIG: dict[str, Any] = {"displaylogo": False, "responsive": True}

# The lazy drawer of figures, beside this module.
PLOTS_JS = "plots.js"

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px;
       color: #222; padding: 0 1rem; }
h1 { font-size: 1.6rem; margin-bottom: 0.2rem; }
.subtitle { color: #666; margin-top: 0; }
table.summary { border-collapse: collapse; margin: 1rem 0 2rem; }
table.summary th, table.summary td { text-align: left; padding: 0.25rem 1rem 0.25rem 0;
       border-bottom: 1px solid #eee; vertical-align: top; }
table.summary th { font-weight: 600; white-space: nowrap; }
section { margin-bottom: 2rem; }
h2 { font-size: 1.2rem; margin-top: 2rem; }
table#experiments, table#refinements, table[id^="compare"] { border-collapse: collapse;
       margin-bottom: 1rem; }
table#experiments th, table#experiments td, table#refinements th, table#refinements td,
table[id^="compare"] th, table[id^="compare"] td { text-align: left;
       padding: 0.25rem 1rem 0.25rem 0; border-bottom: 1px solid #eee; }
.note { color: #666; }
"""

# Hands every figure of the page to the lazy drawer.
_SHOW_FIGURES = f"""
const figures = JSON.parse(document.getElementById("figures").textContent);
for (const [id, figure] of Object.entries(figures)) {{
  optiloopPlots.show(document.getElementById(id), figure, {json.dumps(PLOTLY_CONFIG)});
}}
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


def experiment_figures(
    spec: ExperimentSpec,
    observations: Sequence[Observation],
    *,
    round_starts: Sequence[int] = (),
    round_labels: Sequence[str] = (),
    correlation_pair: tuple[str, str] | None = None,
) -> dict[str, Figure]:
    """Every view of one experiment, keyed by ``VIEW_IDS``, in their order.

    ``round_starts`` are the 0-based indices of the observations that begin
    a new round of a campaign, marked on the history with ``round_labels``.
    ``correlation_pair`` names the two quantities (parameters or metrics)
    of the correlation view; by default the most important numeric
    parameter of the first optimized metric against that metric.
    """
    importances = parameter_importance(spec, observations)
    pair = correlation_pair or _default_correlation_pair(spec, importances)
    if pair is None:
        correlation_figure = message_figure(
            "Correlation", "The experiment has no numeric parameter."
        )
    else:
        correlation_figure = correlation(spec, observations, *pair)

    return {
        "parallel-coordinates": parallel_coordinates(spec, observations),
        "importance": importance_bars(importances),
        "history": history(
            spec, observations, round_starts=round_starts, round_labels=round_labels
        ),
        "metric-scatter": metric_scatter(spec, observations),
        "correlation": correlation_figure,
    }


def figures_json(figures: Mapping[str, Figure]) -> str:
    """The figures as one JSON object of plotly JSON, safe inside <script>.

    Every ``<`` is written as ``\\u003c`` (the same string to a JSON
    reader), so no text in a figure can close the script element.
    """
    items = [
        f"{json.dumps(key)}: {figure.to_json()}" for key, figure in figures.items()
    ]
    text = "{" + ", ".join(items) + "}"
    return text.replace("<", "\\u003c")


def plots_js() -> str:
    """The script that draws figures lazily (``optiloopPlots.show``)."""
    return resources.files("optiloop.analysis").joinpath(PLOTS_JS).read_text("utf-8")


def render_report(
    spec: ExperimentSpec,
    observations: Sequence[Observation],
    title: str,
    *,
    round_starts: Sequence[int] = (),
    correlation_pair: tuple[str, str] | None = None,
) -> str:
    """The complete HTML report of one experiment, as a string.

    ``round_starts`` and ``correlation_pair`` are passed on to
    ``experiment_figures``.
    """
    figures = experiment_figures(
        spec,
        observations,
        round_starts=round_starts,
        correlation_pair=correlation_pair,
    )
    summary = summarize(spec, observations)
    body = _subtitle(title, "Experiment", spec.name) + _summary_table(spec, summary)
    page = _page(title, body, figures)
    logger.info(
        "report of experiment %s rendered from %d observations",
        spec.name,
        len(observations),
    )
    return page


def campaign_figures(parts: Sequence[CampaignPart]) -> dict[str, Figure]:
    """Every view of a campaign: bounds per round, compute per round and
    cluster, then the experiment views over the runs of all its rounds and
    its validation, rounds separated on the history."""
    figures: dict[str, Figure] = {
        "campaign-bounds": bounds_figure(parts),
        "campaign-compute": compute_figure(parts),
    }
    searched = search_parts(parts)
    if not searched:
        figures["history"] = campaign_history(parts)
        return figures
    runs, starts, labels = campaign_runs(parts)
    figures.update(
        experiment_figures(
            searched[0].spec, runs, round_starts=starts, round_labels=labels
        )
    )
    return figures


def render_campaign_report(
    name: str,
    parts: Sequence[CampaignPart],
    title: str,
    *,
    state: str | None = None,
    max_rounds: int | None = None,
    result: Mapping[str, Any] | None = None,
    comparison: Comparison | None = None,
) -> str:
    """The complete HTML report of a campaign, as a string.

    The campaign's own views (bounds per round with the reasons, compute
    per round and cluster, and ``comparison``'s tables: say, against a grid
    search of the same space) come first, then every experiment view over
    the runs of all rounds and the validation, rounds separated on the
    history.
    """
    searched = search_parts(parts)
    runs, _, _ = campaign_runs(parts)
    figures = campaign_figures(parts)

    rounds = f"{len(round_parts(parts))}"
    if max_rounds is not None:
        rounds += f" of {max_rounds}"
    usage = compute_usage([(part.label, part.observations) for part in parts])
    result = result or {}
    rows = [
        ("State", state or "unknown"),
        ("Rounds", rounds),
        ("Runs searched", f"{len(runs)} ({sum(o.failed for o in runs)} failed)"),
        ("Compute", f"{usage.total:,.2f} device-hours"),
        ("Best", _campaign_best_text(searched, runs, result)),
        ("Stopped because", str(result.get("stopped_because") or "not stopped yet")),
    ]
    body = [
        _subtitle(title, "Campaign", name),
        _table(["", ""], rows, "summary", header=False),
        "<h2>Experiments</h2>",
        _table(
            ["experiment", "role", "runs", "failed"],
            [
                (
                    f"{p.experiment_id}: {p.spec.name}",
                    p.label,
                    str(len(p.own_runs)),
                    str(sum(o.failed for o in p.own_runs)),
                )
                for p in parts
            ],
            "experiments",
        ),
        "<h2>Refinements: why each round's bounds</h2>",
        _table(
            ["round", "parameter", "bounds", "reason"],
            [
                (str(r["round"]), r["parameter"], r["bounds"], r["reason"])
                for r in refinement_rows(parts)
            ],
            "refinements",
            empty="No refinement yet: round 1 searches the file's bounds.",
        ),
    ]
    for table in [] if comparison is None else comparison_tables(comparison):
        body.append(f"<h2>{_text(table['title'])}</h2>")
        cells = [tuple(_cell(c) for c in row) for row in table["rows"]]
        body.append(_table(table["columns"], cells, table["id"]))

    page = _page(title, "\n".join(body), figures)
    logger.info("report of campaign %s rendered from %d experiments", name, len(parts))
    return page


def _campaign_best_text(
    searched: Sequence[CampaignPart],
    runs: Sequence[Observation],
    result: Mapping[str, Any],
) -> str:
    best = result.get("best")
    if isinstance(best, Mapping) and isinstance(best.get("mean"), (int, float)):
        metric = result.get("metric", "objective")
        return f"{metric} = {best['mean']:.6g} (validated)"
    if not searched:
        return "no round has started yet"
    spec = searched[0].spec
    points = best_observations(spec, runs)
    if not points:
        return "no run has met every threshold yet"
    return _point_text(spec, points[0])


def _subtitle(title: str, kind: str, name: str) -> str:
    """The experiment's or campaign's name under the heading, unless the
    heading (the title) already holds it."""
    if name in title:
        return ""
    return f'<p class="subtitle">{_text(kind)} {_text(name)}</p>\n'


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _table(
    columns: Sequence[str],
    rows: Sequence[Sequence[str]],
    table_id: str,
    *,
    header: bool = True,
    empty: str = "none",
) -> str:
    """An HTML table of plain-text cells (escaped here)."""
    if not rows:
        return f'<p class="note">{_text(empty)}</p>'
    lines = []
    if header:
        lines.append(
            "<tr>" + "".join(f"<th>{_text(c)}</th>" for c in columns) + "</tr>"
        )
    for row in rows:
        if header:
            cells = "".join(f"<td>{_text(c)}</td>" for c in row)
        else:
            cells = f"<th>{_text(row[0])}</th>" + "".join(
                f"<td>{_text(c)}</td>" for c in row[1:]
            )
        lines.append(f"<tr>{cells}</tr>")
    css = ' class="summary"' if table_id == "summary" else ""
    body = "\n".join(lines)
    return f'<table id="{table_id}"{css}>\n{body}\n</table>'


def _page(title: str, body: str, figures: Mapping[str, Figure]) -> str:
    """A whole report page: ``body`` (HTML, escaped by the caller), then a
    box per figure, then the data and the scripts that draw them."""
    from plotly.offline import get_plotlyjs

    sections = "\n".join(
        f'<section><div id="{view_id}" class="view"></div></section>'
        for view_id in figures
    )
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{_text(title)}</title>
<style>{_STYLE}</style>
</head>
<body>
<h1>{_text(title)}</h1>
{body}
{sections}
<script type="application/json" id="figures">{figures_json(figures)}</script>
<script>window.PlotlyConfig = {{MathJaxConfig: "local"}};</script>
<script>{get_plotlyjs()}</script>
<script>{plots_js()}</script>
<script>{_SHOW_FIGURES}</script>
</body>
</html>
"""


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
