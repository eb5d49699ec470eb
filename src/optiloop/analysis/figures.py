"""The plotly figures that show what a search found.

Every figure is a pure function of an experiment spec and its observations
(in the order they were made), so the dashboard and the HTML report draw the
same pictures from the same data.  Nothing here reaches the network: the
figures carry their data, and plotly.js is embedded by whoever renders them.

One colour rule runs through the figures, as in the reference workflow:

- gray: the run succeeded but missed a threshold (or never converged);
- blue: the run met every threshold;
- orange: one of the best runs, which are ``best_observations`` (the best
  feasible run, or the Pareto front for two optimized metrics) and, with one
  optimized metric, the top ``best_fraction`` of the feasible runs by it
  (at most ``MAX_BEST_RUNS``);
- red: the run failed and has no metric values.

Marks that stand for no run (the box around the best point, threshold
lines) are near-black, and the figures say in words what "best runs" are.

User strings (parameter, metric and category names) are HTML-escaped before
they reach plotly, which would otherwise read tags such as ``<b>`` in them;
except the tick labels of the parallel coordinates, which plotly writes as
plain text (escaped, ``a&b`` would show as ``a&amp;b``).

plotly is imported inside the functions, so that importing
``optiloop.analysis`` stays cheap for commands that draw nothing.
"""

from __future__ import annotations

import html
import logging
import math
import textwrap
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from optiloop.analysis.importance import Importance, MetricImportance
from optiloop.experiment import (
    ExperimentSpec,
    MetricSpec,
    Observation,
    ParameterSpec,
    best_observations,
    is_feasible,
)

if TYPE_CHECKING:
    from plotly.graph_objects import Figure

logger = logging.getLogger(__name__)

RunClass = Literal["failed", "infeasible", "feasible", "best"]

GRAY = "#a8a8a8"
BLUE = "#1f77b4"
ORANGE = "#ff7f0e"
RED = "#d62728"

# Colours of figures that show no runs (importance per metric): none of the
# run colours above, so that no bar reads as "best" or "missed".
OTHER_COLORS = ("#2a9d8f", "#7b3294", "#8c6d31", "#e7298a", "#525252")

RUN_COLORS: dict[RunClass, str] = {
    "failed": RED,
    "infeasible": GRAY,
    "feasible": BLUE,
    "best": ORANGE,
}

# With one optimized metric, this share of the feasible runs (rounded up,
# at most MAX_BEST_RUNS of them) is drawn as best, besides the single best
# run itself.  The cap keeps "best" a handful in a search of thousands.
BEST_FRACTION = 0.1
MAX_BEST_RUNS = 40

# Parallel coordinates colour a line by a number; these are the numbers, and
# the colour scale below turns each into its flat colour.
_LINE_CODES: dict[RunClass, int] = {"infeasible": 0, "feasible": 1, "best": 2}
_LINE_COLORSCALE = [
    [0.0, GRAY],
    [0.25, GRAY],
    [0.25, BLUE],
    [0.75, BLUE],
    [0.75, ORANGE],
    [1.0, ORANGE],
]

# Thousands of lines merge into one mass and slow the drawing; past this
# many, the parallel coordinates show a thinned set (see there), and the
# title says so.  In Chromium without a GPU (software WebGL) 500 lines drew
# in about 1.3 s against 1.8 s for 1,000 (benchmarks/dashboard_render.py
# measures the whole page), with the same picture of the search.
MAX_LINES = 500

# Tick marks on a numeric axis of parallel coordinates; a grid (or an int
# range) with at most _MAX_GRID_TICKS members is labelled at every member
# instead.
_AXIS_TICKS = 5
_MAX_GRID_TICKS = 12

# plotly writes the range of an axis without tick values above and below
# it, right next to the end ticks; a transparent font hides those labels
# (plotly has no switch for them).  Parameter axes have tick values, which
# plotly's parallel coordinates draw without a range.
_NO_RANGE_LABELS = {"color": "rgba(0,0,0,0)"}

# Legend entries wrap at this many characters, so a long one does not
# squeeze the plot.
_LEGEND_WIDTH = 26

# Marks that are not runs (the box around the best point, threshold lines):
# none of the run colours, so they read as no class of run.
MARK_COLOR = "#333333"

# What each colour class is called in a legend, in drawing order.
_CLASS_LABELS: dict[RunClass, str] = {
    "failed": "failed",
    "infeasible": "missed a threshold",
    "feasible": "met every threshold",
    "best": "best runs",
}

# Up to this many runs, the history has a tick per run.
_MAX_RUN_TICKS = 20

# The scatter's default x axis: a constraint metric, else the other
# optimized metric, else a stored one.
_SCATTER_X_ORDER = {"constraint": 0, "optimize": 1, "store": 2}

_TEMPLATE = "plotly_white"
_HEIGHT = 460


def classify_runs(
    spec: ExperimentSpec,
    observations: Sequence[Observation],
    best_fraction: float = BEST_FRACTION,
) -> list[RunClass]:
    """The colour class of every observation, in order."""
    feasible = [o for o in observations if is_feasible(spec, o)]

    # Runs are told apart by identity: two runs with equal assignments and
    # values are equal records, yet only the one chosen is best.
    best = {id(o) for o in best_observations(spec, observations)}

    optimized = spec.optimized_metrics
    if len(optimized) == 1 and feasible:
        # sorted() is stable, so on a tie the earlier run ranks higher.
        metric = optimized[0]
        ranked = sorted(feasible, key=lambda o: _to_minimize(metric, o))
        count = min(math.ceil(best_fraction * len(ranked)), MAX_BEST_RUNS)
        best |= {id(o) for o in ranked[:count]}

    classes: list[RunClass] = []
    for observation in observations:
        if observation.failed:
            classes.append("failed")
        elif id(observation) in best:
            classes.append("best")
        elif is_feasible(spec, observation):
            classes.append("feasible")
        else:
            classes.append("infeasible")
    return classes


def best_runs_text(spec: ExperimentSpec, best_fraction: float = BEST_FRACTION) -> str:
    """What the orange runs of ``classify_runs`` are, in words."""
    if len(spec.optimized_metrics) > 1:
        return "the Pareto front of the runs that met every threshold"
    return (
        f"the top {best_fraction * 100:.3g}% of the runs that met every "
        f"threshold (at most {MAX_BEST_RUNS})"
    )


def best_runs_legend(spec: ExperimentSpec, best_fraction: float = BEST_FRACTION) -> str:
    """The legend entry of the best runs, wrapped onto a few lines."""
    text = f"best runs: {best_runs_text(spec, best_fraction)}"
    return "<br>".join(textwrap.wrap(text, _LEGEND_WIDTH))


def parallel_coordinates(
    spec: ExperimentSpec,
    observations: Sequence[Observation],
    best_fraction: float = BEST_FRACTION,
    max_lines: int = MAX_LINES,
) -> Figure:
    """One line per successful run across every parameter and metric axis.

    Lines are drawn gray, then blue, then orange, so the best runs lie on
    top.  A log-scale parameter, and a power-of-two grid, is drawn in log10
    space with ticks labelled in real values; a categorical axis is
    labelled with its categories.  A metric that some successful run did
    not report (a stored metric may be left out) gets no axis, since every
    line needs a value on every axis.

    Past ``max_lines`` successful runs, every best run is drawn and the
    others are thinned to evenly spaced ones (which keeps the share of gray
    and blue lines); the title says how many lines are drawn.
    """
    import plotly.graph_objects as go

    title = "Parallel coordinates"
    classes = classify_runs(spec, observations, best_fraction)
    names = [p.name for p in spec.parameters]
    rows: list[tuple[Observation, RunClass]] = [
        (observation, run_class)
        for observation, run_class in zip(observations, classes)
        if run_class != "failed"
        and all(name in observation.assignments for name in names)
    ]
    if not rows:
        return message_figure(title, "No successful observations yet.")

    # Stable sort by colour: within a colour the runs keep their order.
    rows.sort(key=lambda row: _LINE_CODES[row[1]])
    if len(rows) > max_lines:
        title += f" ({max_lines:,} of {len(rows):,} runs drawn)"
        rows = _thin(rows, max_lines)
    drawn = [observation for observation, _ in rows]

    dimensions = [_parameter_axis(p, drawn) for p in spec.parameters]
    for metric in spec.metrics:
        values = [o.value(metric.name) for o in drawn]
        if any(v is None for v in values):
            continue
        dimensions.append({"label": _escape(metric.name), "values": _array(values)})

    figure = go.Figure(
        go.Parcoords(
            dimensions=dimensions,
            line={
                "color": _array([_LINE_CODES[c] for _, c in rows]),
                "colorscale": _LINE_COLORSCALE,
                "cmin": 0,
                "cmax": 2,
                "showscale": False,
            },
            rangefont=_NO_RANGE_LABELS,
        )
    )
    figure.update_layout(
        title=title,
        template=_TEMPLATE,
        height=_HEIGHT,
        margin={"l": 80, "r": 80, "t": 100, "b": 70},
        annotations=[_colour_key(best_runs_text(spec, best_fraction), 0.0, -0.12)],
    )
    return figure


def importance_bars(importances: Sequence[MetricImportance]) -> Figure:
    """Each parameter's share of each metric: one bar series per metric.

    The bars of the metrics stand side by side over each parameter, so one
    parameter's effect on accuracy and on converge epoch read together.
    Metrics without enough data are named under the title with the reason.
    """
    import plotly.graph_objects as go

    title = "Parameter importance"
    fitted = [i for i in importances if isinstance(i, Importance)]
    missing = [i for i in importances if not isinstance(i, Importance)]
    notes = "<br>".join(
        f"{_escape(i.metric)}: not enough data ({_escape(i.reason)})" for i in missing
    )
    if not fitted:
        return message_figure(title, notes or "No metrics to explain.")

    figure = go.Figure()
    for index, importance in enumerate(fitted):
        figure.add_trace(
            go.Bar(
                name=_escape(importance.metric),
                marker={"color": OTHER_COLORS[index % len(OTHER_COLORS)]},
                x=[_escape(name) for name in importance.shares],
                y=list(importance.shares.values()),
                hovertemplate="%{x}: %{y:.1%}<extra>%{fullData.name}</extra>",
            )
        )
    figure.update_layout(
        title=title,
        template=_TEMPLATE,
        height=_HEIGHT,
        barmode="group",
        yaxis={"title": "share of the metric explained", "range": [0, 1]},
        legend={"title": "metric"},
    )
    if notes:
        figure.add_annotation(
            text=notes,
            xref="paper",
            yref="paper",
            x=0,
            y=1.08,
            showarrow=False,
            align="left",
        )
    return figure


def best_so_far(
    spec: ExperimentSpec,
    observations: Sequence[Observation],
    metric: str | None = None,
) -> list[float | None]:
    """The best feasible value of ``metric`` up to and including each run.

    ``metric`` defaults to the first optimized metric; "best" follows its
    objective.  The entries before the first feasible run are None.
    """
    metric_spec = _metric_or_first_optimized(spec, metric)
    best: float | None = None
    trace: list[float | None] = []
    for observation in observations:
        value = observation.value(metric_spec.name)
        if value is not None and is_feasible(spec, observation):
            score = metric_spec.to_minimize(value)
            if best is None or score < metric_spec.to_minimize(best):
                best = value
        trace.append(best)
    return trace


def history(
    spec: ExperimentSpec,
    observations: Sequence[Observation],
    metric: str | None = None,
    round_starts: Sequence[int] = (),
    round_labels: Sequence[str] = (),
) -> Figure:
    """The optimized metric of every run in order, with the best so far.

    Runs are numbered from 1.  ``round_starts`` holds the 0-based indices of
    the observations that begin a new round of a campaign; a dotted line is
    drawn just before each, labelled with ``round_labels`` (one per start)
    when given.  Failed runs have no value, so their marks sit
    in a row just under the lowest value of the plot.
    """
    import plotly.graph_objects as go

    metric_spec = _metric_or_first_optimized(spec, metric)
    name = metric_spec.name
    title = f"History of {_escape(name)} ({metric_spec.objective})"
    if not observations:
        return message_figure(title, "No observations yet.")

    numbers = list(range(1, len(observations) + 1))
    values = [o.value(name) for o in observations]
    classes = [_success_class(spec, o) for o in observations]
    known = [v for v in values if v is not None]
    # Failed runs have no value: their marks get a row of their own, just
    # under the lowest value, where they hide no point and no line.
    low, high = (min(known), max(known)) if known else (0.0, 0.0)
    failed_row = low - 0.05 * ((high - low) or 1.0)

    figure = go.Figure()
    groups: tuple[tuple[RunClass, str, str], ...] = (
        ("feasible", "met every threshold", "circle"),
        ("infeasible", "missed a threshold", "circle-open"),
    )
    for run_class, label, symbol in groups:
        chosen = [
            i
            for i, (value, c) in enumerate(zip(values, classes))
            if c == run_class and value is not None
        ]
        figure.add_trace(
            go.Scatter(
                name=label,
                x=_array([numbers[i] for i in chosen]),
                y=_array([values[i] for i in chosen]),
                mode="markers",
                marker={"color": RUN_COLORS[run_class], "symbol": symbol, "size": 7},
            )
        )

    failed = [n for n, o in zip(numbers, observations) if o.failed]
    figure.add_trace(
        go.Scatter(
            name="failed",
            x=_array(failed),
            y=_array([failed_row] * len(failed)),
            mode="markers",
            marker={"color": RED, "symbol": "x", "size": 8},
            hovertemplate="run %{x} failed<extra></extra>",
        )
    )

    # The line last, on top: among thousands of marks it is what one reads.
    # Before any run met every threshold there is none, nor a legend entry.
    best = best_so_far(spec, observations, name)
    if any(value is not None for value in best):
        figure.add_trace(
            go.Scatter(
                name="best so far",
                x=_array(numbers),
                y=_array(best),
                mode="lines",
                line={"color": ORANGE, "shape": "hv", "width": 2},
            )
        )

    labels = list(round_labels) + [""] * (len(round_starts) - len(round_labels))
    for index, label in zip(round_starts, labels):
        # Index i starts a round: the line falls between runs i and i + 1.
        figure.add_vline(
            x=index + 0.5,
            line={"dash": "dot", "color": "#555"},
            annotation_text=_escape(label),
            annotation_position="top right",
        )

    # Few runs: a tick per run, not plotly's halves.
    xaxis: dict[str, Any] = {"title": "observation"}
    if len(observations) <= _MAX_RUN_TICKS:
        xaxis["dtick"] = 1
    yaxis: dict[str, Any] = {"title": _escape(name)}
    if not known:
        # Only failures: the row they sit on has no value to read.
        yaxis.update(showticklabels=False, title="no values: every run failed")

    figure.update_layout(
        title=title,
        template=_TEMPLATE,
        height=_HEIGHT,
        xaxis=xaxis,
        yaxis=yaxis,
    )
    return figure


def default_scatter_axes(spec: ExperimentSpec) -> tuple[str, str] | None:
    """The metrics a scatter shows by default, as (x, y).

    y is the first optimized metric; x is the first constraint metric, else
    the second optimized metric, else any other metric.  None when the spec
    has a single metric.
    """
    y = spec.optimized_metrics[0].name
    others = [m for m in spec.metrics if m.name != y]
    if not others:
        return None
    preferred = sorted(others, key=lambda m: _SCATTER_X_ORDER[m.strategy])
    return preferred[0].name, y


def metric_scatter(
    spec: ExperimentSpec,
    observations: Sequence[Observation],
    x: str | None = None,
    y: str | None = None,
    best_fraction: float = BEST_FRACTION,
) -> Figure:
    """One metric against another for every successful run.

    Threshold lines are dashed; the best points (``best_observations``)
    are boxed; both near-black, which is no run's colour.  When the two axes are
    the two optimized metrics, the Pareto front is joined by a line.
    """
    import plotly.graph_objects as go

    if x is None or y is None:
        axes = default_scatter_axes(spec)
        if axes is None:
            return message_figure(
                "Metric scatter", "The experiment has a single metric."
            )
        x, y = x or axes[0], y or axes[1]
    x_metric, y_metric = spec.metric(x), spec.metric(y)
    title = f"{_escape(y)} vs {_escape(x)}"

    classes = classify_runs(spec, observations, best_fraction)
    points = [
        (x_value, y_value, run_class)
        for o, run_class in zip(observations, classes)
        if (x_value := o.value(x)) is not None and (y_value := o.value(y)) is not None
    ]
    if not points:
        return message_figure(
            title, f"No run reported both {_escape(x)} and {_escape(y)} yet."
        )

    figure = go.Figure()
    labels: dict[RunClass, str] = {
        "infeasible": "missed a threshold",
        "feasible": "met every threshold",
        "best": best_runs_legend(spec, best_fraction),
    }
    for run_class, label in labels.items():
        chosen = [p for p in points if p[2] == run_class]
        figure.add_trace(
            go.Scatter(
                name=label,
                x=_array([p[0] for p in chosen]),
                y=_array([p[1] for p in chosen]),
                mode="markers",
                marker={"color": RUN_COLORS[run_class], "size": 7},
            )
        )

    best_xy = [
        (x_value, y_value)
        for o in best_observations(spec, observations)
        if (x_value := o.value(x)) is not None and (y_value := o.value(y)) is not None
    ]
    optimized = {m.name for m in spec.optimized_metrics}
    if len(optimized) == 2 and {x, y} == optimized and len(best_xy) > 1:
        front = sorted(best_xy)
        figure.add_trace(
            go.Scatter(
                name="Pareto front",
                x=[p[0] for p in front],
                y=[p[1] for p in front],
                mode="lines",
                line={"color": ORANGE, "dash": "dash"},
            )
        )
    figure.add_trace(
        go.Scatter(
            name="best",
            x=[p[0] for p in best_xy],
            y=[p[1] for p in best_xy],
            mode="markers",
            marker={
                "symbol": "square-open",
                "size": 18,
                "color": MARK_COLOR,
                "line": {"width": 2},
            },
        )
    )

    threshold_line = {"dash": "dash", "color": MARK_COLOR}
    if x_metric.threshold is not None:
        figure.add_vline(x=x_metric.threshold, line=threshold_line)
    if y_metric.threshold is not None:
        figure.add_hline(y=y_metric.threshold, line=threshold_line)

    figure.update_layout(
        title=title,
        template=_TEMPLATE,
        height=_HEIGHT,
        xaxis={"title": _escape(x)},
        yaxis={"title": _escape(y)},
    )
    return figure


def pearson(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Pearson's correlation coefficient, or None if either side is constant.

    Shapes: ``xs`` and ``ys`` are of shape ``(n,)`` with ``n >= 2``.
    """
    x = np.asarray(xs, dtype=float)
    y = np.asarray(ys, dtype=float)
    if x.size < 2:
        return None

    dx, dy = x - x.mean(), y - y.mean()
    spread = math.sqrt(float(dx @ dx) * float(dy @ dy))
    if spread == 0.0:
        return None
    # Rounding can push a perfect correlation a hair past 1.
    return max(-1.0, min(1.0, float(dx @ dy) / spread))


def correlation(
    spec: ExperimentSpec,
    observations: Sequence[Observation],
    x: str,
    y: str,
) -> Figure:
    """Two quantities (parameters or metrics) against each other, with r.

    A name is looked up among the parameters first, then the metrics.  A
    log-scale parameter (or a power-of-two grid) is correlated, and drawn,
    in log space, since that is the scale it was searched on.  Categorical
    parameters have no order to correlate and are refused with a ValueError.
    """
    import plotly.graph_objects as go

    classes = classify_runs(spec, observations)
    pairs = [(_quantity(spec, o, x), _quantity(spec, o, y)) for o in observations]
    points = [
        (a, b, run_class)
        for (a, b), run_class in zip(pairs, classes)
        if a is not None and b is not None
    ]
    x_log, y_log = _is_log(spec, x), _is_log(spec, y)
    xs = [math.log10(a) if x_log else a for a, _, _ in points]
    ys = [math.log10(b) if y_log else b for _, b, _ in points]
    r = pearson(xs, ys)

    scale = " (log10 scale)" if x_log or y_log else ""
    r_text = "r undefined" if r is None else f"Pearson r = {r:.3f}"
    title = f"{_escape(y)} vs {_escape(x)}: {r_text}{scale}, n = {len(points)}"
    if not points:
        return message_figure(
            title, f"No run has both {_escape(x)} and {_escape(y)} yet."
        )

    # Coloured by the rule of every other view; two parameters have values
    # for failed runs too, drawn red.
    figure = go.Figure()
    labels = {**_CLASS_LABELS, "best": best_runs_legend(spec)}
    for run_class, label in labels.items():
        chosen = [(a, b) for a, b, c in points if c == run_class]
        if not chosen:
            continue
        figure.add_trace(
            go.Scatter(
                name=label,
                x=_array([a for a, _ in chosen]),
                y=_array([b for _, b in chosen]),
                mode="markers",
                marker={"color": RUN_COLORS[run_class], "size": 7},
            )
        )
    figure.update_layout(
        title=title,
        template=_TEMPLATE,
        height=_HEIGHT,
        xaxis={"title": _escape(x), "type": "log" if x_log else "linear"},
        yaxis={"title": _escape(y), "type": "log" if y_log else "linear"},
    )
    return figure


def message_figure(title: str, message: str) -> Figure:
    """An empty figure that says why there is nothing to draw.

    ``title`` and ``message`` are plotly text: escape user strings first.
    """
    import plotly.graph_objects as go

    figure = go.Figure()
    figure.update_layout(
        title=title,
        template=_TEMPLATE,
        height=_HEIGHT // 2,
        xaxis={"visible": False},
        yaxis={"visible": False},
    )
    figure.add_annotation(
        text=message,
        xref="paper",
        yref="paper",
        x=0.5,
        y=0.5,
        showarrow=False,
        font={"size": 16},
    )
    return figure


def _array(values: Sequence[float | None]) -> np.ndarray:
    """Numbers as a float array, None as NaN (a gap to plotly).

    plotly checks a Python list element by element, which took half the
    time of building the figures of 10,000 runs; an array it takes whole,
    and writes to JSON as base64 typed data that plotly.js reads at once.
    """
    return np.array([np.nan if v is None else v for v in values], dtype=float)


def _escape(text: str) -> str:
    return html.escape(text, quote=False)


def _success_class(spec: ExperimentSpec, observation: Observation) -> RunClass:
    if observation.failed:
        return "failed"
    return "feasible" if is_feasible(spec, observation) else "infeasible"


def _to_minimize(metric: MetricSpec, observation: Observation) -> float:
    value = observation.value(metric.name)
    return math.inf if value is None else metric.to_minimize(value)


def _metric_or_first_optimized(spec: ExperimentSpec, name: str | None) -> MetricSpec:
    return spec.optimized_metrics[0] if name is None else spec.metric(name)


def _colour_key(best: str, x: float, y: float) -> dict[str, Any]:
    """A legend for parallel coordinates, which have none of their own;
    ``best`` says what the best runs are."""
    words = (
        f'<span style="color:{GRAY}">gray: missed a threshold</span>  ·  '
        f'<span style="color:{BLUE}">blue: met every threshold</span>  ·  '
        f'<span style="color:{ORANGE}">orange: best runs, {_escape(best)}</span>'
    )
    return {
        "text": words,
        "xref": "paper",
        "yref": "paper",
        "x": x,
        "y": y,
        "showarrow": False,
        "align": "left",
        "xanchor": "left",
    }


def _thin(
    rows: list[tuple[Observation, RunClass]], max_lines: int
) -> list[tuple[Observation, RunClass]]:
    """At most ``max_lines`` rows: every best row, the others evenly spaced.

    ``rows`` are sorted by colour, so evenly spaced picks keep the share of
    each colour; the best rows stay last, drawn on top.
    """
    best = [row for row in rows if row[1] == "best"]
    others = [row for row in rows if row[1] != "best"]
    room = max(max_lines - len(best), 0)
    if room == 0:
        return best[:max_lines]
    picks = np.unique(np.linspace(0, len(others) - 1, room).round().astype(int))
    return [others[i] for i in picks] + best


def _parameter_axis(
    parameter: ParameterSpec, observations: Sequence[Observation]
) -> dict[str, Any]:
    """One parallel-coordinates axis: its label, values and tick marks.

    Tick labels are plotly's plain text, so categories are not escaped.
    """
    label = _escape(parameter.name)
    values = [o.assignments[parameter.name] for o in observations]

    if parameter.type == "categorical":
        # Values from an older round may be missing from the spec's list.
        categories = list(parameter.categories)
        categories += sorted({str(v) for v in values} - set(categories))
        return {
            "label": label,
            "values": _array([categories.index(str(v)) for v in values]),
            "tickvals": list(range(len(categories))),
            "ticktext": categories,
            "range": [0, max(len(categories) - 1, 1)],
        }

    numbers = [float(v) for v in values]
    bounds = parameter.effective_bounds()
    low = min([bounds.min, *numbers])
    high = max([bounds.max, *numbers])
    log = _on_log_scale(parameter)
    integer = parameter.type == "int"

    # A short grid or int range is labelled at its members; anything else
    # gets round ticks (evenly spaced in log space on a log scale).
    grid = parameter.grid_values()
    if grid is None and integer and high - low < _MAX_GRID_TICKS:
        grid = list(range(math.ceil(low), math.floor(high) + 1))
    if grid is not None and len(grid) <= _MAX_GRID_TICKS:
        ticks = sorted(float(member) for member in grid)
    elif log:
        ticks = np.geomspace(low, high, _AXIS_TICKS).tolist()
        if integer:
            ticks = sorted({float(round(t)) for t in ticks})
    else:
        ticks = _round_ticks(low, high, integer)

    # plotly's parallel coordinates have no log axis: a log scale draws
    # log10 values, and the tick labels show the real values.
    place = math.log10 if log else float
    axis: dict[str, Any] = {
        "label": f"{label} (log)" if log else label,
        "values": _array([place(v) for v in numbers]),
        "tickvals": [place(t) for t in ticks],
        "ticktext": [f"{t:.0f}" if integer else f"{t:.3g}" for t in ticks],
    }
    if low < high:
        axis["range"] = [place(low), place(high)]
    return axis


def _round_ticks(low: float, high: float, integer: bool) -> list[float]:
    """About ``_AXIS_TICKS`` ticks on [low, high], 1, 2 or 5 times a power
    of ten apart (at least 1 for an int), and either end unless a round
    tick lies within half a step of it: a parallel-coordinates axis with
    tick values shows no range, so the ends need ticks of their own."""
    if low >= high:
        return [low]
    wanted = (high - low) / (_AXIS_TICKS - 1)
    power = 10.0 ** math.floor(math.log10(wanted))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= wanted)
    if integer:
        step = max(step, 1.0)

    # Multiples of the step, rounded off so that 3 * 0.1 is 0.3.
    multiples = range(math.ceil(low / step), math.floor(high / step) + 1)
    ticks = [float(f"{k * step:.12g}") for k in multiples]
    for end in (low, high):
        if all(abs(end - tick) >= step / 2 for tick in ticks):
            ticks.append(end)
    return sorted(ticks)


def _quantity(
    spec: ExperimentSpec, observation: Observation, name: str
) -> float | None:
    """A parameter's value or a metric's value in one observation."""
    for parameter in spec.parameters:
        if parameter.name != name:
            continue
        if parameter.type == "categorical":
            raise ValueError(
                f"parameter {name!r} is categorical and has no order to "
                "correlate; pick a numeric parameter or a metric"
            )
        value = observation.assignments.get(name)
        return None if value is None else float(value)
    if name not in {m.name for m in spec.metrics}:
        raise KeyError(
            f"{name!r} is neither a parameter nor a metric of the experiment"
        )
    if observation.failed:
        return None
    return observation.value(name)


def _is_log(spec: ExperimentSpec, name: str) -> bool:
    return any(p.name == name and _on_log_scale(p) for p in spec.parameters)


def _on_log_scale(parameter: ParameterSpec) -> bool:
    """A log transformation, or a power-of-two grid, log-spaced by design."""
    return parameter.is_log or parameter.grid_pow2 is not None
