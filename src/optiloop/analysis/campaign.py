"""What a campaign did: each round's bounds and why, compute, history.

A campaign is given as its parts, one ``CampaignPart`` per experiment it
made: its rounds (``role == "round"``, numbered from 1), the validation of
its best points; a grid search (``optiloop grid``) is a campaign whose
parts all have the role ``grid``.  Every
function here is a pure function of those parts, shared by the dashboard
and ``optiloop report --campaign``.

Observations copied from an earlier round to warm-start the next one
(``metadata["warm_start"]``) are left out of the history and the counts:
each run appears once, in the round that ran it.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from optiloop.analysis.compute import SearchRecord, compare, compute_usage
from optiloop.analysis.figures import OTHER_COLORS, history, message_figure
from optiloop.errors import SpecError
from optiloop.experiment import ExperimentSpec, Observation, ParameterSpec

if TYPE_CHECKING:
    from plotly.graph_objects import Figure

    from optiloop.analysis.compute import Comparison

_TEMPLATE = "plotly_white"
_HEIGHT = 460
_HOURS_HOVER = "%{x}: %{y:.3g} device-hours<extra>%{fullData.name}</extra>"


@dataclass(frozen=True)
class CampaignPart:
    """One experiment of a campaign, with its observations in order.

    ``refinement`` is what the evaluator decided before this round
    (``{"bounds": {name: {"min", "max", "grid"}}, "reasons": {name: str},
    "summary": str, ...}``); None for round 1 and for other roles.
    """

    experiment_id: int
    role: str | None
    round: int | None
    spec: ExperimentSpec
    observations: Sequence[Observation]
    refinement: Mapping[str, Any] | None = None

    @property
    def label(self) -> str:
        if self.role == "round" and self.round is not None:
            return f"round {self.round}"
        return self.role or f"experiment {self.experiment_id}"

    @property
    def own_runs(self) -> list[Observation]:
        """The observations this experiment ran (not warm-start copies)."""
        return [o for o in self.observations if not o.metadata.get("warm_start")]


def round_parts(parts: Sequence[CampaignPart]) -> list[CampaignPart]:
    """The rounds, in order."""
    rounds = [p for p in parts if p.role == "round" and p.round is not None]
    return sorted(rounds, key=lambda p: p.round or 0)


def search_parts(parts: Sequence[CampaignPart]) -> list[CampaignPart]:
    """The rounds, then the validation: the campaign's own search (every
    part of a grid search)."""
    if is_grid(parts):
        return list(parts)
    validation = [p for p in parts if p.role == "validation"]
    return round_parts(parts) + validation


def bounds_figure(parts: Sequence[CampaignPart]) -> Figure:
    """Each round's range of every numeric parameter, as floating bars.

    Parameters differ in units and scale, so each is drawn on its own
    0-to-1 scale: 0 and 1 are the lowest and highest value any round
    allowed (in log10 space on a log scale).  Hovering a bar gives the real
    bounds and the evaluator's reason for them.
    """
    import plotly.graph_objects as go

    title = "Bounds per round"
    if is_grid(parts):
        return message_figure(
            title, "A grid search has no rounds: it trains the points of one grid."
        )
    rounds = round_parts(parts)
    if not rounds:
        return message_figure(title, "No round has started yet.")

    names = [p.name for p in rounds[0].spec.parameters if p.type != "categorical"]
    if not names:
        return message_figure(title, "The campaign has no numeric parameter.")

    spans = {name: _widest(name, rounds) for name in names}
    figure = go.Figure()
    for index, part in enumerate(rounds):
        reasons = _reasons(part)
        bases, heights, texts = [], [], []
        for name in names:
            parameter = _parameter(part.spec, name)
            low, high = _bounds(parameter)
            start, end = spans[name]
            place = math.log10 if _log_scale(parameter) else float
            width = (place(end) - place(start)) or 1.0
            bases.append((place(low) - place(start)) / width)
            heights.append(max((place(high) - place(low)) / width, 0.01))
            reason = reasons.get(name, "the file's bounds" if part.round == 1 else "")
            texts.append(
                f"{_escape(name)}: {low:.4g} to {high:.4g}<br>{_escape(reason)}"
            )
        figure.add_trace(
            go.Bar(
                name=part.label,
                x=[_escape(n) for n in names],
                y=heights,
                base=bases,
                hovertext=texts,
                hoverinfo="text+name",
                marker={"color": OTHER_COLORS[index % len(OTHER_COLORS)]},
            )
        )
    figure.update_layout(
        title=f"{title} (each parameter scaled to the widest range of any round)",
        template=_TEMPLATE,
        height=_HEIGHT,
        barmode="group",
        yaxis={"title": "share of the widest range", "range": [0, 1.02]},
        legend={"title": "round"},
    )
    return figure


def compute_figure(parts: Sequence[CampaignPart]) -> Figure:
    """Device-hours of every round (and the validation), stacked by cluster."""
    import plotly.graph_objects as go

    usage = compute_usage([(part.label, part.observations) for part in parts])
    title = f"Device-hours per round and cluster (total {usage.total:.3g} h)"
    if usage.total == 0.0:
        why = "No compute recorded yet."
        if usage.unmeasured:
            why = f"None of the {usage.unmeasured} observations recorded compute."
        return message_figure("Device-hours per round and cluster", why)

    figure = go.Figure()
    for index, cluster in enumerate(usage.by_cluster):
        groups = list(usage.hours)
        figure.add_trace(
            go.Bar(
                name=_escape(cluster),
                x=groups,
                y=[usage.hours[g].get(cluster, 0.0) for g in groups],
                hovertemplate=_HOURS_HOVER,
                marker={"color": OTHER_COLORS[index % len(OTHER_COLORS)]},
            )
        )
    figure.update_layout(
        title=title,
        template=_TEMPLATE,
        height=_HEIGHT,
        barmode="stack",
        # A legend even for one cluster, which plotly would leave unnamed.
        showlegend=True,
        yaxis={"title": "device-hours"},
        legend={"title": "cluster"},
    )
    if usage.unmeasured:
        figure.add_annotation(
            text=f"{usage.unmeasured} observations recorded no compute",
            xref="paper",
            yref="paper",
            x=0,
            y=1.08,
            showarrow=False,
        )
    return figure


def campaign_runs(
    parts: Sequence[CampaignPart],
) -> tuple[list[Observation], list[int], list[str]]:
    """Every run of the search in order, the index where each part begins
    after the first (``round_starts`` of ``history``), and its label."""
    runs: list[Observation] = []
    starts: list[int] = []
    labels: list[str] = []
    for part in search_parts(parts):
        own = part.own_runs
        if runs and own:
            starts.append(len(runs))
            labels.append(part.label)
        runs += own
    return runs, starts, labels


def campaign_history(parts: Sequence[CampaignPart]) -> Figure:
    """The optimized metric of every run, rounds separated by dotted lines."""
    searched = search_parts(parts)
    if not searched:
        return message_figure("History", "No round has started yet.")
    runs, starts, labels = campaign_runs(parts)
    return history(searched[0].spec, runs, round_starts=starts, round_labels=labels)


def refinement_rows(parts: Sequence[CampaignPart]) -> list[dict[str, Any]]:
    """One row per round and parameter: the bounds chosen and the reason."""
    rows = []
    for part in round_parts(parts):
        refinement = part.refinement or {}
        bounds = refinement.get("bounds") or {}
        reasons = _reasons(part)
        for name in sorted(set(bounds) | set(reasons), key=_order(part.spec)):
            rows.append(
                {
                    "round": part.round,
                    "parameter": name,
                    "bounds": _bounds_text(bounds.get(name)),
                    "reason": reasons.get(name, ""),
                }
            )
    return rows


def is_grid(parts: Sequence[CampaignPart]) -> bool:
    """Whether the campaign is a grid search (``optiloop grid``)."""
    return bool(parts) and all(p.role == "grid" for p in parts)


def comparable(first: ExperimentSpec, second: ExperimentSpec) -> bool:
    """Whether two searches answer the same question: the same parameters,
    and the same single optimized metric in the same direction."""
    optimized = [(m.name, m.objective) for m in first.optimized_metrics]
    other = [(m.name, m.objective) for m in second.optimized_metrics]
    names = {p.name for p in first.parameters}
    other_names = {p.name for p in second.parameters}
    return len(optimized) == 1 and optimized == other and names == other_names


def compare_campaigns(
    searches: Sequence[tuple[str, Sequence[CampaignPart]]], baseline: int = 0
) -> Comparison | None:
    """Compute and answers of campaigns side by side, as ``optiloop compare``.

    Each search is a name and its parts; ``baseline`` indexes the one the
    others are measured against.  None when they cannot be compared.
    """
    if len(searches) < 2 or not all(parts for _, parts in searches):
        return None
    records = [
        SearchRecord(name, parts[0].spec, [(p.label, p.observations) for p in parts])
        for name, parts in searches
    ]
    try:
        return compare(records, baseline=baseline)
    except SpecError:
        return None


def comparison_tables(comparison: Comparison) -> list[dict[str, Any]]:
    """The compute and objective tables of a comparison, as rows of cells."""
    names = list(comparison.names)
    compute_rows = [
        [row.cluster, *(round(hours, 4) for hours in row.hours)]
        for row in comparison.compute
    ]
    objective_rows = []
    for row in comparison.objectives:
        answer = row.answer
        objective_rows.append(
            [
                row.name,
                "–" if answer is None else f"{answer.value:.4g}",
                "–"
                if answer is None or answer.stddev is None
                else f"{answer.stddev:.3g}",
                "–" if answer is None else answer.source,
                _percent(row.versus_baseline),
            ]
        )
    return [
        {
            "id": "compare-compute",
            "title": "Compute: device-hours per cluster",
            "columns": ["cluster", *names],
            "rows": compute_rows,
        },
        {
            "id": "compare-objective",
            "title": (
                f"Objective: {comparison.metric} ({comparison.objective}), "
                f"against {comparison.baseline}"
            ),
            "columns": ["search", "value", "stddev", "from", "improvement"],
            "rows": objective_rows,
        },
    ]


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{value:+.1f} %"


def _reasons(part: CampaignPart) -> dict[str, str]:
    reasons = (part.refinement or {}).get("reasons") or {}
    return {str(k): str(v) for k, v in reasons.items()}


def _order(spec: ExperimentSpec) -> Any:
    names = [p.name for p in spec.parameters]
    return lambda name: (names.index(name) if name in names else len(names), name)


def _bounds_text(bounds: Any) -> str:
    if not isinstance(bounds, Mapping):
        return "–"
    grid = bounds.get("grid")
    if grid:
        return "grid " + ", ".join(f"{v:.3g}" for v in grid)
    low, high = bounds.get("min"), bounds.get("max")
    if not isinstance(low, (int, float)) or not isinstance(high, (int, float)):
        return "–"
    return f"{low:.4g} to {high:.4g}"


def _parameter(spec: ExperimentSpec, name: str) -> ParameterSpec | None:
    return next((p for p in spec.parameters if p.name == name), None)


def _bounds(parameter: ParameterSpec | None) -> tuple[float, float]:
    if parameter is None:
        return math.nan, math.nan
    bounds = parameter.effective_bounds()
    return float(bounds.min), float(bounds.max)


def _widest(name: str, rounds: Sequence[CampaignPart]) -> tuple[float, float]:
    spans = [_bounds(_parameter(part.spec, name)) for part in rounds]
    known = [s for s in spans if not math.isnan(s[0])]
    return min(s[0] for s in known), max(s[1] for s in known)


def _log_scale(parameter: ParameterSpec | None) -> bool:
    return parameter is not None and (
        parameter.is_log or parameter.grid_pow2 is not None
    )


def _escape(text: str) -> str:
    return html.escape(text, quote=False)
