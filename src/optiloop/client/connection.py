"""``Connection``: optiloop's Python API, shaped like the sigopt client.

A loop written for SigOpt runs with one changed line::

    conn = optiloop.Connection(db="sqlite:///runs/optiloop.db")
    experiment = conn.experiments().create(**spec)
    for _ in range(experiment.observation_budget):
        suggestion = conn.experiments(experiment.id).suggestions().create()
        value = train(**suggestion.assignments)
        conn.experiments(experiment.id).observations().create(
            suggestion=suggestion.id, values=[{"name": "accuracy", "value": value}]
        )
    best = conn.experiments(experiment.id).best_assignments().fetch()

Each call goes to a driver that speaks SigOpt's JSON.  The in-process
driver (``LocalDriver``) keeps the experiment in a database file and runs
the optimizer in this process.  The HTTP driver (``HttpDriver``) sends the
same requests to a running optiloop server (``optiloop serve``)::

    conn = optiloop.Connection(url="http://hpo.example:8765", token=token)
"""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import Any, Protocol, overload

from optiloop.client.http import HttpDriver
from optiloop.client.local import LocalDriver, parse_id
from optiloop.client.objects import (
    BestAssignments,
    Campaign,
    Experiment,
    Observation,
    Pagination,
    Suggestion,
)
from optiloop.client.shapes import Json
from optiloop.errors import OptiloopError, SpecError
from optiloop.store import DEFAULT_DB_URL, Store


class Driver(Protocol):
    """What ``Connection`` needs from a driver: SigOpt's requests, as calls."""

    def create_experiment(self, body: Mapping[str, Any]) -> Json: ...

    def get_experiment(self, experiment_id: int) -> Json: ...

    def list_experiments(self, state: str = "active") -> Json: ...

    def delete_experiment(self, experiment_id: int) -> None: ...

    def create_suggestion(self, experiment_id: int) -> Json: ...

    def get_suggestion(self, experiment_id: int, suggestion_id: int) -> Json: ...

    def list_suggestions(
        self, experiment_id: int, state: str | None = None
    ) -> Json: ...

    def delete_suggestion(self, experiment_id: int, suggestion_id: int) -> None: ...

    def delete_open_suggestions(self, experiment_id: int) -> None: ...

    def create_observation(
        self, experiment_id: int, body: Mapping[str, Any]
    ) -> Json: ...

    def get_observation(self, experiment_id: int, observation_id: int) -> Json: ...

    def list_observations(self, experiment_id: int) -> Json: ...

    def best_assignments(
        self, experiment_id: int, ranked: int | None = None
    ) -> Json: ...

    def create_campaign(self, body: Mapping[str, Any]) -> Json: ...

    def get_campaign(self, campaign_id: int) -> Json: ...

    def list_campaigns(self) -> Json: ...

    def update_campaign(self, campaign_id: int, body: Mapping[str, Any]) -> Json: ...

    def list_campaign_experiments(self, campaign_id: int) -> Json: ...

    def create_campaign_experiment(
        self, campaign_id: int, body: Mapping[str, Any]
    ) -> Json: ...

    def close(self) -> None: ...


class Connection:
    """The entry point: ``conn.experiments(...)`` reaches everything else.

    ``db`` is the database of the in-process driver, a SQLAlchemy URL;
    ``sqlite:///optiloop.db`` in the working folder by default.  ``url`` and
    ``token`` reach a server instead (``optiloop token create`` makes a
    token); give either ``db`` or ``url``.  ``driver`` replaces the driver
    outright (tests use it to pass a ``LocalDriver`` with their own
    optimizers).
    """

    def __init__(
        self,
        db: str | None = None,
        *,
        url: str | None = None,
        token: str | None = None,
        driver: Driver | None = None,
    ) -> None:
        if driver is not None:
            self.driver: Driver = driver
        elif url is not None:
            if db is not None:
                raise OptiloopError(
                    f"Connection(db={db!r}, url={url!r}): give one; db opens a "
                    "database in this process, url reaches a server"
                )
            if not token:
                raise OptiloopError(
                    f"Connection(url={url!r}) needs token=...; create one on "
                    "the server with 'optiloop token create NAME'"
                )
            self.driver = HttpDriver(url, token)
        else:
            self.driver = LocalDriver(Store(db or DEFAULT_DB_URL))

    def close(self) -> None:
        self.driver.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    @overload
    def experiments(self) -> ExperimentsResource: ...

    @overload
    def experiments(self, experiment_id: int | str) -> ExperimentResource: ...

    def experiments(
        self, experiment_id: int | str | None = None
    ) -> ExperimentsResource | ExperimentResource:
        """All experiments, or one by id (an int, or SigOpt's string id)."""
        if experiment_id is None:
            return ExperimentsResource(self.driver)
        return ExperimentResource(self.driver, parse_id("experiment", experiment_id))

    @overload
    def campaigns(self) -> CampaignsResource: ...

    @overload
    def campaigns(self, campaign_id: int | str) -> CampaignResource: ...

    def campaigns(
        self, campaign_id: int | str | None = None
    ) -> CampaignsResource | CampaignResource:
        """All campaigns, or one by id; optiloop's own, SigOpt has none."""
        if campaign_id is None:
            return CampaignsResource(self.driver)
        return CampaignResource(self.driver, parse_id("campaign", campaign_id))


class ExperimentsResource:
    """``conn.experiments()``: create an experiment, or list them."""

    def __init__(self, driver: Driver) -> None:
        self._driver = driver

    def create(self, **spec: Any) -> Experiment:
        """Validate the spec (``optiloop.experiment``) and create the experiment.

        A spec that breaks a rule raises SpecError and creates nothing.
        """
        return Experiment(self._driver.create_experiment(spec))

    def fetch(self, state: str = "active") -> Pagination[Experiment]:
        """Experiments in ``state``: ``active``, ``deleted`` or ``all``."""
        return Pagination(self._driver.list_experiments(state), Experiment)


class ExperimentResource:
    """``conn.experiments(id)``: one experiment and what hangs off it."""

    def __init__(self, driver: Driver, experiment_id: int) -> None:
        self._driver = driver
        self.experiment_id = experiment_id

    def fetch(self) -> Experiment:
        return Experiment(self._driver.get_experiment(self.experiment_id))

    def delete(self) -> None:
        """Mark the experiment deleted; its history stays readable."""
        self._driver.delete_experiment(self.experiment_id)

    @overload
    def suggestions(self) -> SuggestionsResource: ...

    @overload
    def suggestions(self, suggestion_id: int | str) -> SuggestionResource: ...

    def suggestions(
        self, suggestion_id: int | str | None = None
    ) -> SuggestionsResource | SuggestionResource:
        if suggestion_id is None:
            return SuggestionsResource(self._driver, self.experiment_id)
        return SuggestionResource(
            self._driver, self.experiment_id, parse_id("suggestion", suggestion_id)
        )

    @overload
    def observations(self) -> ObservationsResource: ...

    @overload
    def observations(self, observation_id: int | str) -> ObservationResource: ...

    def observations(
        self, observation_id: int | str | None = None
    ) -> ObservationsResource | ObservationResource:
        if observation_id is None:
            return ObservationsResource(self._driver, self.experiment_id)
        return ObservationResource(
            self._driver, self.experiment_id, parse_id("observation", observation_id)
        )

    def best_assignments(self) -> BestAssignmentsResource:
        return BestAssignmentsResource(self._driver, self.experiment_id)


class SuggestionsResource:
    """``conn.experiments(id).suggestions()``: new points, and the list."""

    def __init__(self, driver: Driver, experiment_id: int) -> None:
        self._driver = driver
        self._experiment_id = experiment_id

    def create(self) -> Suggestion:
        """A new point from the experiment's optimizer, open until observed.

        Raises BudgetSpentError when observations plus open suggestions have
        reached the observation budget, ExhaustedError when no new point is
        left (a finished grid).
        """
        return Suggestion(self._driver.create_suggestion(self._experiment_id))

    def fetch(self, state: str | None = None) -> Pagination[Suggestion]:
        """Suggestions, oldest first; ``state="open"`` for the pending ones."""
        answer = self._driver.list_suggestions(self._experiment_id, state)
        return Pagination(answer, Suggestion)

    def delete(self, state: str = "open") -> None:
        """Withdraw every open suggestion (a crashed worker's, say).

        Only open suggestions can be withdrawn: an observed one is history.
        """
        if state != "open":
            raise SpecError(f"state must be 'open', got {state!r}")
        self._driver.delete_open_suggestions(self._experiment_id)


class SuggestionResource:
    """``conn.experiments(id).suggestions(id)``: one suggestion."""

    def __init__(self, driver: Driver, experiment_id: int, suggestion_id: int) -> None:
        self._driver = driver
        self._experiment_id = experiment_id
        self.suggestion_id = suggestion_id

    def fetch(self) -> Suggestion:
        answer = self._driver.get_suggestion(self._experiment_id, self.suggestion_id)
        return Suggestion(answer)

    def delete(self) -> None:
        """Withdraw this open suggestion, freeing its place in the bandwidth."""
        self._driver.delete_suggestion(self._experiment_id, self.suggestion_id)


class ObservationsResource:
    """``conn.experiments(id).observations()``: report results, list them."""

    def __init__(self, driver: Driver, experiment_id: int) -> None:
        self._driver = driver
        self._experiment_id = experiment_id

    def create(
        self,
        *,
        suggestion: int | str | None = None,
        assignments: Mapping[str, Any] | None = None,
        values: list[Mapping[str, Any]] | None = None,
        value: float | None = None,
        value_stddev: float | None = None,
        failed: bool = False,
        metadata: Mapping[str, Any] | None = None,
    ) -> Observation:
        """Report what was measured at a suggestion or at given assignments.

        ``values`` lists ``{"name", "value", "value_stddev"}`` per metric;
        ``value`` (and ``value_stddev``) is SigOpt's shorthand for an
        experiment with one metric.  A failed run passes ``failed=True`` and
        no values.
        """
        fields = {
            "suggestion": suggestion,
            "assignments": assignments,
            "values": values,
            "value": value,
            "value_stddev": value_stddev,
            "failed": failed,
            "metadata": metadata,
        }
        body = {name: given for name, given in fields.items() if given is not None}
        answer = self._driver.create_observation(self._experiment_id, body)
        return Observation(answer)

    def fetch(self) -> Pagination[Observation]:
        """Observations, oldest first, failed ones included."""
        answer = self._driver.list_observations(self._experiment_id)
        return Pagination(answer, Observation)


class ObservationResource:
    """``conn.experiments(id).observations(id)``: one observation."""

    def __init__(self, driver: Driver, experiment_id: int, observation_id: int) -> None:
        self._driver = driver
        self._experiment_id = experiment_id
        self.observation_id = observation_id

    def fetch(self) -> Observation:
        answer = self._driver.get_observation(self._experiment_id, self.observation_id)
        return Observation(answer)


class BestAssignmentsResource:
    """``conn.experiments(id).best_assignments()``: the best points so far."""

    def __init__(self, driver: Driver, experiment_id: int) -> None:
        self._driver = driver
        self._experiment_id = experiment_id

    def fetch(self, ranked: int | None = None) -> Pagination[BestAssignments]:
        """The best feasible point, or the Pareto front when two metrics are
        optimized; failed and threshold-missing observations never appear.

        ``ranked=K`` (optiloop's extension) asks for the K best feasible
        points instead, best first by the first optimized metric.
        """
        answer = self._driver.best_assignments(self._experiment_id, ranked)
        return Pagination(answer, BestAssignments)


class CampaignsResource:
    """``conn.campaigns()``: create a campaign, or list them."""

    def __init__(self, driver: Driver) -> None:
        self._driver = driver

    def create(self, *, file: Mapping[str, Any], name: str | None = None) -> Campaign:
        """Store a campaign, ``running``, from its file's data.

        ``file`` is a campaign file (``optiloop.campaign_spec``) or a plain
        experiment spec; ``name`` defaults to the file's.  Running it is
        ``optiloop.runner.campaign.run_campaign``'s job.
        """
        body: dict[str, Any] = {"file": dict(file)}
        if name is not None:
            body["name"] = name
        return Campaign(self._driver.create_campaign(body))

    def fetch(self) -> Pagination[Campaign]:
        """Every campaign, oldest first."""
        return Pagination(self._driver.list_campaigns(), Campaign)


class CampaignResource:
    """``conn.campaigns(id)``: one campaign and its experiments."""

    def __init__(self, driver: Driver, campaign_id: int) -> None:
        self._driver = driver
        self.campaign_id = campaign_id

    def fetch(self) -> Campaign:
        return Campaign(self._driver.get_campaign(self.campaign_id))

    def update(
        self,
        *,
        state: str | None = None,
        result: Mapping[str, Any] | None = None,
    ) -> Campaign:
        """Set the state (running, stopped or done) or the result."""
        body: dict[str, Any] = {}
        if state is not None:
            body["state"] = state
        if result is not None:
            body["result"] = dict(result)
        return Campaign(self._driver.update_campaign(self.campaign_id, body))

    def experiments(self) -> CampaignExperimentsResource:
        return CampaignExperimentsResource(self._driver, self.campaign_id)


class CampaignExperimentsResource:
    """``conn.campaigns(id).experiments()``: the campaign's experiments."""

    def __init__(self, driver: Driver, campaign_id: int) -> None:
        self._driver = driver
        self._campaign_id = campaign_id

    def create(
        self,
        *,
        experiment: Mapping[str, Any],
        role: str,
        round: int | None = None,
        refinement: Mapping[str, Any] | None = None,
        observations: list[Mapping[str, Any]] | None = None,
        suggestions: list[Mapping[str, Any]] | None = None,
    ) -> Experiment:
        """Create an experiment of the campaign, with its first rows.

        ``role`` is ``round`` (with its ``round`` number), ``validation``
        or ``grid``; ``refinement`` records how its bounds were made.
        ``observations`` are warm-start points measured before (each
        ``{assignments, values, failed, metadata}``); ``suggestions`` are
        points chosen ahead (each ``{assignments}``), stored open so that
        the runner trains them.  Everything is stored at once or not at all.
        """
        fields = {
            "experiment": dict(experiment),
            "role": role,
            "round": round,
            "refinement": None if refinement is None else dict(refinement),
            "observations": observations,
            "suggestions": suggestions,
        }
        body = {name: given for name, given in fields.items() if given is not None}
        answer = self._driver.create_campaign_experiment(self._campaign_id, body)
        return Experiment(answer)

    def fetch(self) -> Pagination[Experiment]:
        """The campaign's experiments in the order they were made; each
        one's ``campaign`` field gives its round, role and refinement."""
        answer = self._driver.list_campaign_experiments(self._campaign_id)
        return Pagination(answer, Experiment)
