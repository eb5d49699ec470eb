"""Find the experiment or campaign a killed runner left unfinished.

``optiloop resume`` continues it.  Nothing else is needed to survive a
crash, because everything is stored the moment it happens:

- an observation is stored, and its suggestion closed, in one transaction
  when the last seed of its point ends, so a kill leaves each point either
  observed (kept as is, never run again) or open;
- an open suggestion is a point that was in flight.  Resuming trains it
  again, every seed from the start: the results of the seeds that had
  finished lived only in the killed runner's memory (a point's seeds are
  stored together, as one observation), so there is nothing to continue
  from.  Marking it failed instead would spend budget on a failure that
  never happened and teach the optimizer to avoid a region for no reason;
- the budget stays exact, because the store counts open suggestions
  against it: the runner creates new suggestions only for what the
  observations and the open suggestions leave of it.

Two runners on one experiment would both train its open suggestions; the
second observation of a point is refused.  Resume only what no runner is
working on.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from optiloop.campaign_spec import is_campaign
from optiloop.errors import OptiloopError
from optiloop.experiment import ExperimentSpec, parse_spec
from optiloop.runner.grid import stored_grid_spec

# The experiment JSON's fields that make its spec, as a file states them.
_SPEC_FIELDS = (
    "name",
    "type",
    "parameters",
    "metrics",
    "observation_budget",
    "parallel_bandwidth",
    "seeds_per_point",
    "metadata",
    "job",
)


@dataclass(frozen=True)
class Unfinished:
    """An experiment or campaign a runner left before the end.

    ``spec`` is the experiment's spec; a campaign's is its first round's,
    and ``file`` the campaign file as stored.
    """

    kind: Literal["experiment", "campaign", "grid"]
    id: int
    name: str
    created: int
    spec: ExperimentSpec
    file: dict[str, Any] | None = None
    observed: int = 0
    in_flight: int = 0


def unfinished(conn: Any) -> list[Unfinished]:
    """Every unfinished experiment and campaign, oldest first.

    An experiment is unfinished while it has fewer observations than its
    budget (one without a budget never ends, so it is never listed); a
    campaign until its state is ``done``: ``running`` (its runner was
    killed) or ``stopped`` (its runner was stopped).  Experiments that a
    campaign made are resumed with their campaign, not alone.
    """
    found: list[Unfinished] = []
    for experiment in conn.experiments().fetch().data:
        if experiment.campaign is not None:
            continue
        budget = experiment.observation_budget
        observed = experiment.progress.observation_count
        if budget is None or observed >= budget:
            continue
        open_suggestions = conn.experiments(experiment.id).suggestions()
        found.append(
            Unfinished(
                kind="experiment",
                id=experiment.id,
                name=experiment.name,
                created=experiment.created,
                spec=stored_spec(experiment.to_json()),
                observed=observed,
                in_flight=len(open_suggestions.fetch(state="open").data),
            )
        )
    for campaign in _campaigns(conn):
        if campaign.state == "done":
            continue
        # A grid search (``optiloop grid``) is stored as a campaign whose
        # file is the grid's experiment spec, with no rounds.
        is_grid = not is_campaign(campaign.file)
        found.append(
            Unfinished(
                kind="grid" if is_grid else "campaign",
                id=campaign.id,
                name=campaign.name,
                created=campaign.created,
                spec=(
                    stored_grid_spec(conn, campaign.id)
                    if is_grid
                    else _campaign_experiment(campaign.file)
                ),
                file=dict(campaign.file),
            )
        )
    return sorted(found, key=lambda item: (item.created, item.kind, item.id))


def find_unfinished(conn: Any, wanted: Any = None) -> Unfinished:
    """The newest unfinished run, or the newest one ``wanted`` describes.

    ``wanted`` is the file that was running, loaded: an ``ExperimentSpec``
    or a ``CampaignSpec``.
    """
    candidates = unfinished(conn)
    if wanted is not None:
        candidates = [item for item in candidates if _describes(wanted, item)]
    if not candidates:
        which = "" if wanted is None else f" that {wanted.name!r} describes"
        raise OptiloopError(
            f"nothing to resume: no unfinished experiment or campaign{which} "
            "in this database (finished ones are complete; start a new one "
            "with 'optiloop run')"
        )
    return candidates[-1]


def stored_spec(experiment: Mapping[str, Any]) -> ExperimentSpec:
    """The spec of an experiment from its JSON (``Experiment.to_json()``).

    The JSON shows parameters as SigOpt does: every field present, bounds
    of grids filled in, categories as objects; this undoes that.
    """
    data = {k: experiment[k] for k in _SPEC_FIELDS if experiment.get(k) is not None}
    data["parameters"] = [_parameter(p) for p in experiment["parameters"]]
    data["metrics"] = [_plain(m) for m in experiment["metrics"]]
    return parse_spec(data)


def _parameter(shown: Mapping[str, Any]) -> dict[str, Any]:
    parameter = _plain(shown)
    if parameter.get("grid_pow2") is not None:
        # The grid and its bounds are what grid_pow2 expands to.
        parameter.pop("grid", None)
        parameter.pop("bounds", None)
    elif parameter.get("grid") is not None:
        parameter.pop("bounds", None)
    if "bounds" in parameter:
        parameter["bounds"] = _plain(parameter["bounds"])
    if parameter.get("categorical_values") is not None:
        parameter["categorical_values"] = [
            value["name"] if isinstance(value, Mapping) else value
            for value in parameter["categorical_values"]
        ]
    return parameter


def _plain(shown: Mapping[str, Any]) -> dict[str, Any]:
    """``shown`` without SigOpt's ``object`` tag and its empty fields."""
    return {k: v for k, v in shown.items() if k != "object" and v is not None}


def _campaigns(conn: Any) -> list[Any]:
    return list(conn.campaigns().fetch().data)


def _campaign_experiment(file: Mapping[str, Any]) -> ExperimentSpec:
    from optiloop.campaign_spec import parse_campaign

    return parse_campaign(file, check_evaluator=False).experiment


def _describes(wanted: Any, item: Unfinished) -> bool:
    from optiloop.campaign_spec import CampaignSpec

    if isinstance(wanted, CampaignSpec):
        return item.kind == "campaign" and _same(wanted.to_dict(), item.file)
    if item.kind == "grid":
        # The grid was built from the file's space, so the file no longer
        # equals what is stored; the grid's name and metrics still tell.
        grid_name = f"{wanted.name}-grid"
        return (grid_name, wanted.metrics) == (item.spec.name, item.spec.metrics)
    if item.kind != "experiment":
        return False
    return _same(wanted.to_dict(), item.spec.to_dict())


def _same(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
