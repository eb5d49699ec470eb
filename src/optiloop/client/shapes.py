"""SigOpt's JSON shapes of optiloop's records.

The in-process driver, the REST service and the client objects all speak
these shapes, which follow SigOpt's v1 API so that code written for the
sigopt client reads the same fields here.  Two differences a SigOpt user
may notice: ids are integers (SigOpt sends strings; ``Connection`` accepts
both), and an experiment also shows optiloop's own fields
(``seeds_per_point``, ``job``, and ``campaign``: null, or the campaign, round,
role and refinement of an experiment a campaign made).  Campaigns are
optiloop's own objects; SigOpt has none.  Timestamps are whole seconds since the Unix
epoch, as in SigOpt.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from optiloop.experiment import (
    ExperimentSpec,
    MetricSpec,
    MetricValue,
    Observation,
    ParameterSpec,
    Suggestion,
    best_observations,
)
from optiloop.space import GridParameter, IntParameter
from optiloop.store import CampaignRecord, ExperimentRecord

Json = dict[str, Any]


def timestamp(moment: datetime | None) -> int | None:
    """Whole seconds since the Unix epoch, as SigOpt reports times."""
    return None if moment is None else int(moment.timestamp())


def pagination_json(items: Sequence[Json]) -> Json:
    """A list answer.  Everything fits on one page, so there is no paging."""
    return {
        "object": "pagination",
        "count": len(items),
        "data": list(items),
        "paging": {"before": None, "after": None},
    }


def experiment_json(
    record: ExperimentRecord, observations: Sequence[Observation]
) -> Json:
    """An experiment with its progress, from the record and its observations."""
    spec = record.spec
    return {
        "object": "experiment",
        "id": record.id,
        "name": spec.name,
        "type": spec.type,
        "state": record.state,
        "created": timestamp(record.created),
        "updated": timestamp(record.updated),
        "parameters": [parameter_json(p) for p in spec.parameters],
        "metrics": [metric_json(m) for m in spec.metrics],
        "observation_budget": spec.observation_budget,
        "parallel_bandwidth": spec.parallel_bandwidth,
        "seeds_per_point": spec.seeds_per_point,
        "metadata": spec.metadata,
        "job": spec.to_dict().get("job"),
        "progress": progress_json(spec, observations),
        "campaign": campaign_link_json(record),
    }


def campaign_link_json(record: ExperimentRecord) -> Json | None:
    """Which campaign made the experiment, in which round and role, and the
    refinement that set its bounds; None for an experiment of its own."""
    if record.campaign_id is None:
        return None
    return {
        "id": record.campaign_id,
        "round": record.campaign_round,
        "role": record.campaign_role,
        "refinement": record.refinement,
    }


def campaign_json(record: CampaignRecord) -> Json:
    """A campaign: its file, its state and, once known, its result."""
    return {
        "object": "campaign",
        "id": record.id,
        "name": record.name,
        "state": record.state,
        "created": timestamp(record.created),
        "updated": timestamp(record.updated),
        "file": record.file,
        "result": record.result,
    }


def parameter_json(parameter: ParameterSpec) -> Json:
    """A parameter as SigOpt shows it: bounds, categories as objects, grid."""
    space_parameter = parameter.to_parameter()
    bounds: Json | None = None
    if parameter.type != "categorical":
        effective = parameter.effective_bounds()
        low, high = effective.min, effective.max
        if isinstance(space_parameter, IntParameter):
            low, high = int(low), int(high)
        bounds = {"object": "bounds", "min": low, "max": high}

    categorical_values = None
    if parameter.type == "categorical":
        # SigOpt numbers categories from 1.
        categorical_values = [
            {"object": "categorical_value", "name": name, "enum_index": index}
            for index, name in enumerate(parameter.categories, start=1)
        ]

    grid = None
    if isinstance(space_parameter, GridParameter):
        grid = list(space_parameter.grid)

    pow2 = parameter.grid_pow2
    return {
        "object": "parameter",
        "name": parameter.name,
        "type": parameter.type,
        "bounds": bounds,
        "categorical_values": categorical_values,
        "grid": grid,
        "grid_pow2": None if pow2 is None else pow2.model_dump(mode="json"),
        "transformation": parameter.transformation,
    }


def metric_json(metric: MetricSpec) -> Json:
    return {
        "object": "metric",
        "name": metric.name,
        "objective": metric.objective,
        "strategy": metric.strategy,
        "threshold": metric.threshold,
    }


def progress_json(spec: ExperimentSpec, observations: Sequence[Observation]) -> Json:
    """Counts and notable observations; failed ones count as observations.

    ``best_observation`` is set only when one metric is optimized: with two,
    the best points form a Pareto front, which ``best_assignments`` lists.
    """
    best = None
    if len(spec.optimized_metrics) == 1:
        best_points = best_observations(spec, observations)
        best = observation_json(best_points[0]) if best_points else None

    return {
        "object": "progress",
        "observation_count": len(observations),
        "first_observation": (
            observation_json(observations[0]) if observations else None
        ),
        "last_observation": (
            observation_json(observations[-1]) if observations else None
        ),
        "best_observation": best,
    }


def suggestion_json(suggestion: Suggestion) -> Json:
    return {
        "object": "suggestion",
        "id": suggestion.id,
        "experiment": suggestion.experiment_id,
        "assignments": dict(suggestion.assignments),
        "state": suggestion.state,
        "created": timestamp(suggestion.created),
    }


def observation_json(observation: Observation) -> Json:
    return {
        "object": "observation",
        "id": observation.id,
        "experiment": observation.experiment_id,
        "suggestion": observation.suggestion_id,
        "assignments": dict(observation.assignments),
        "failed": observation.failed,
        "metadata": dict(observation.metadata) or None,
        "created": timestamp(observation.created),
        **_values_json(observation.values),
    }


def best_assignments_json(observation: Observation) -> Json:
    """One best point; its id is the id of the observation that measured it."""
    return {
        "object": "best_assignments",
        "id": observation.id,
        "assignments": dict(observation.assignments),
        "metadata": dict(observation.metadata) or None,
        **_values_json(observation.values),
    }


def _values_json(values: Sequence[MetricValue]) -> Json:
    """``values``, plus SigOpt's single-metric shorthand ``value``."""
    single = values[0] if len(values) == 1 else None
    return {
        "values": [
            {
                "object": "metric_evaluation",
                "name": value.name,
                "value": value.value,
                "value_stddev": value.value_stddev,
            }
            for value in values
        ],
        "value": None if single is None else single.value,
        "value_stddev": None if single is None else single.value_stddev,
    }
