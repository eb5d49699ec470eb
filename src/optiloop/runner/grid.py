"""Plain grid search, run and stored as a campaign so it can be compared.

The reference workflow judges a search by what it cost and found next to a
grid search over the same space.  ``run_grid`` runs that grid search: it
stores a campaign holding one experiment of role ``grid`` (the spec from
``optiloop.optimizers.grid_points.grid_search_spec``, every numeric
parameter an explicit grid) and trains every point through the inner loop,
so ``optiloop compare`` reads it like any campaign.

Given the id of a grid campaign, it continues that campaign's experiment
instead: points left open by an interrupted run are trained first, and the
grid optimizer never suggests a point twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from optiloop.errors import SpecError
from optiloop.experiment import ExperimentSpec, parse_spec
from optiloop.runner.executor import Executor
from optiloop.runner.inner import LoopEvent, check_runnable, run_experiment

logger = logging.getLogger(__name__)

# The campaign role of a grid search's experiment.
GRID_ROLE = "grid"


@dataclass(frozen=True)
class GridSummary:
    campaign_id: int
    experiment_id: int
    points: int
    observation_count: int
    stopped_because: str

    @property
    def finished(self) -> bool:
        return self.observation_count >= self.points


def create_grid_campaign(connection: Any, grid: ExperimentSpec) -> int:
    """Store a new campaign holding ``grid`` as its one grid experiment."""
    _check_grid(grid)
    campaign_id = int(connection.campaigns().create(file=grid.to_dict()).id)
    experiment = (
        connection.campaigns(campaign_id)
        .experiments()
        .create(experiment=grid.to_dict(), role=GRID_ROLE)
    )
    logger.info(
        "grid campaign %d created with experiment %d: %d points",
        campaign_id,
        experiment.id,
        grid.observation_budget,
    )
    return campaign_id


def run_grid(
    connection: Any,
    grid: ExperimentSpec,
    executor_factory: Callable[[ExperimentSpec], Executor],
    campaign_id: int | None = None,
    *,
    on_event: Callable[[LoopEvent], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> GridSummary:
    """Train every point of ``grid`` (a ``type: grid`` spec) in a campaign.

    Creates the campaign unless ``campaign_id`` names a grid campaign to
    continue.  The campaign ends ``done`` once every point is observed, and
    ``stopped`` when ``should_stop`` turned true or an exception (a second
    Ctrl-C) ended the run; it is continued by passing its id.  After a
    KeyboardInterrupt the running jobs are not waited for: their points stay
    open and are trained again when the campaign continues.
    """
    _check_grid(grid)
    if campaign_id is None:
        campaign_id = create_grid_campaign(connection, grid)
    else:
        connection.campaigns(campaign_id).update(state="running")
        logger.info("grid campaign %d continued", campaign_id)
    experiment_id = grid_experiment_id(connection, campaign_id)

    executor = executor_factory(grid)
    stopping_now = False
    try:
        loop = run_experiment(
            connection,
            experiment_id,
            grid,
            executor,
            on_event=on_event,
            should_stop=should_stop,
        )
    except BaseException as error:
        stopping_now = isinstance(error, KeyboardInterrupt)
        connection.campaigns(campaign_id).update(state="stopped")
        logger.warning("grid campaign %d stopped before its last point", campaign_id)
        raise
    finally:
        if not stopping_now:
            executor.shutdown()

    summary = GridSummary(
        campaign_id,
        experiment_id,
        grid.observation_budget or 0,
        loop.observation_count,
        loop.stopped_because,
    )
    state = "done" if summary.finished else "stopped"
    result = _result(connection, summary)
    connection.campaigns(campaign_id).update(state=state, result=result)
    logger.info(
        "grid campaign %d %s: %d of %d points observed",
        campaign_id,
        state,
        summary.observation_count,
        summary.points,
    )
    return summary


def grid_experiment_id(connection: Any, campaign_id: int) -> int:
    """The id of a grid campaign's experiment; SpecError for another campaign."""
    experiments = connection.campaigns(campaign_id).experiments().fetch().data
    for experiment in experiments:
        link = experiment.to_json().get("campaign") or {}
        if link.get("role") == GRID_ROLE:
            return int(experiment.id)
    raise SpecError(
        f"--campaign: campaign {campaign_id} holds no grid search; continue it "
        "with optiloop run or resume, or drop --campaign to start a grid"
    )


def stored_grid_spec(connection: Any, campaign_id: int) -> ExperimentSpec:
    """The grid spec a grid campaign was created with."""
    grid_experiment_id(connection, campaign_id)  # refuses other campaigns
    return parse_spec(connection.campaigns(campaign_id).fetch().file)


def _check_grid(grid: ExperimentSpec) -> None:
    if grid.type != "grid" or grid.observation_budget is None:
        raise SpecError(
            f"type: a grid search needs type grid and a budget of every point, "
            f"got type {grid.type!r}; build the spec with grid_search_spec"
        )
    check_runnable(grid)


def _result(connection: Any, summary: GridSummary) -> dict[str, Any]:
    """The campaign's result: why it ended and its best points, as JSON."""
    best = connection.experiments(summary.experiment_id).best_assignments().fetch()
    return {
        "stopped_because": summary.stopped_because,
        "grid": {"points": summary.points, "observed": summary.observation_count},
        "best": [
            {
                "observation": item.id,
                "assignments": dict(item.assignments),
                "values": {v.name: v.value for v in item.values},
            }
            for item in best.data
        ],
    }
