"""The outer loop: rounds of experiments in refined bounds, then validation.

A campaign (``optiloop.campaign_spec``) runs like this:

1. Round 1 is an experiment with the file's own bounds and a budget of
   ``rounds.budget`` new points, trained by the inner loop
   (``run_experiment``).
2. When a round ends, the campaign decides whether to go on.  It stops
   after ``rounds.max`` rounds; after round r >= 2 it also stops when the
   best feasible value of the first optimized metric, over every round so
   far, moved by less than ``stop.min_improvement`` since round r - 1 (no
   feasible point in either round counts as no improvement); and it stops
   when the evaluator says so.
3. Otherwise the evaluator refines the bounds from the round's spec and
   observations (``Evaluator.refine``), and round r + 1 is a new experiment
   with the refined bounds, the refinement stored beside it.
4. After the last round, the ``validation.top`` best distinct points of the
   whole campaign are trained again with ``validation.seeds`` fresh seeds
   each, in one validation experiment.  The answer is the validated point
   with the best mean, reported with the standard deviation over its
   validation seeds, among the points feasible as in the search (every
   threshold met, every seed converged); when none is, among those whose
   means meet the thresholds, since one seed in ten that misses the target
   does not make a recipe useless (the answer then says so).

Warm start.  Every observation of the earlier rounds whose point lies inside
the new bounds is copied into the new round, as an observation with
assignments, before its first suggestion; failed ones too, since they tell
the optimizer where runs fail.  The copies do not count against the round's
budget: the round's experiment gets ``observation_budget`` = copies +
``rounds.budget``, so every round trains exactly ``rounds.budget`` new
points.  The budget is compute, and the copies cost none; counting them
would shrink a round the better the refinement kept the good region, and
make the total compute of a campaign depend on how its bounds moved, which
would spoil comparing it with a search of the same budget without
refinement.  A copy's metadata names its origin (``warm_start``:
experiment, observation, round) and drops the original's compute fields
(``compute_seconds``, ``device_seconds``, ``runs``), so summing compute over
a campaign counts each run once.  The evaluator sees the round's copies too:
they were the round's knowledge.

The best points are ranked by the posterior means of the last round's
models, which the runner asks of its ``Connection``
(``best_assignments().fetch(ranked=K)``: the runner may not import the
optimizers): the last round holds, as warm-start copies, every earlier
point inside the final bounds, and a model that weighs each mean against
its neighbours and its seeds' spread is not fooled by one lucky mean.
Points outside the final bounds follow by their observed means, should the
ranking hold fewer than ``validation.top``.  Validation with fresh seeds
then corrects what luck remains.  Its seeds start after the search's (``job.seed_base +
seeds_per_point``), so a deterministic job does not merely repeat itself.

Interruptions lose and repeat nothing, because every step is stored before
the next starts and every decision is a function of what is stored:

- within a round (or the validation), ``run_experiment`` trains the open
  suggestions left by the interrupted run first;
- between rounds, the stored rounds are read back; the last one is
  finished (or found finished), and the decision and refinement that follow
  it are made again from its observations, as the first time (the
  evaluator is a pure function);
- a round's experiment, its warm-start copies and the validation's chosen
  points are each created in one request, all or nothing.

``should_stop`` asks for a clean stop: no new point starts, the points
already started finish and are stored, and the campaign is left
``stopped``; ``run_campaign`` with its ``campaign_id`` continues it.  A
``KeyboardInterrupt`` (a second Ctrl-C) also leaves the campaign
``stopped``, without waiting for the jobs then running: their suggestions
stay open and are trained again when the campaign continues.  Any other
error waits for the running jobs to end, then leaves it ``stopped`` too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from optiloop.campaign_spec import CampaignSpec
from optiloop.client.shapes import parameter_json
from optiloop.errors import SpecError, StoreError
from optiloop.evaluators import Evaluator, ParameterBounds, Refinement, load_evaluator
from optiloop.experiment import (
    MAX_NAME_LENGTH,
    ExperimentSpec,
    MetricSpec,
    MetricValue,
    Observation,
    is_feasible,
    parse_spec,
)
from optiloop.runner.executor import Executor, make_executor
from optiloop.runner.inner import LoopEvent, run_experiment

logger = logging.getLogger(__name__)

# The most points one ranked best_assignments request asks for (the
# service's limit).
MAX_RANKED = 1000

# Metadata fields of a warm-start copy that would count its compute twice.
COMPUTE_FIELDS = ("compute_seconds", "device_seconds", "runs")

# Fields a continued campaign's file may change: where and how wide it runs,
# not what it searches (observation_budget follows from rounds.budget).
RUN_FIELDS = ("parallel_bandwidth", "observation_budget")
RUN_JOB_FIELDS = ("executor",)

EventKind = Literal[
    "round_started",
    "round_finished",
    "refined",
    "validation_started",
    "validation_finished",
    "loop",
    "stopped",
    "done",
]


@dataclass(frozen=True)
class CampaignEvent:
    """A step of a campaign, for progress displays.

    ``round`` is None for the validation.  ``target`` is the number of
    observations the experiment runs to and ``observed`` how many it held
    when it started (warm start, or an earlier run).  ``loop`` carries the
    inner loop's own event for kind ``loop``.
    """

    kind: EventKind
    campaign_id: int
    round: int | None = None
    experiment_id: int | None = None
    target: int | None = None
    observed: int | None = None
    loop: LoopEvent | None = None
    refinement: Refinement | None = None
    message: str = ""


@dataclass(frozen=True)
class ValidatedPoint:
    """One of the best points, as the validation measured it.

    ``mean`` and ``std`` are the first optimized metric's mean and sample
    standard deviation over the ``seeds`` validation seeds (None when the
    validation failed); ``search_mean`` and ``search_std`` are what the
    search measured at the point, in ``search_observation_id`` of round
    ``round``.  Without validation (``validation.top: 0``) the search's own
    values fill both.

    ``feasible`` is the search's rule: every threshold met and every seed
    converged.  ``meets_thresholds`` asks only that the means meet the
    thresholds, and ``converged_seeds`` counts the seeds that reached the
    converge target (None without ``job.converge``): with ten seeds, a
    recipe that misses once is still worth reporting.
    """

    assignments: dict[str, Any]
    mean: float | None
    std: float | None
    seeds: int
    feasible: bool
    meets_thresholds: bool
    converged_seeds: int | None
    experiment_id: int
    observation_id: int | None
    search_mean: float | None
    search_std: float | None
    search_observation_id: int | None
    round: int | None

    def to_json(self) -> dict[str, Any]:
        return {
            "assignments": self.assignments,
            "mean": self.mean,
            "std": self.std,
            "seeds": self.seeds,
            "feasible": self.feasible,
            "meets_thresholds": self.meets_thresholds,
            "converged_seeds": self.converged_seeds,
            "experiment": self.experiment_id,
            "observation": self.observation_id,
            "search": {
                "observation": self.search_observation_id,
                "round": self.round,
                "mean": self.search_mean,
                "std": self.search_std,
            },
        }


@dataclass(frozen=True)
class CampaignSummary:
    """Where a call of ``run_campaign`` left the campaign.

    ``rounds`` is how many rounds exist; ``best`` the validated point with
    the best mean (``best_validated``; None while stopped, or when no point
    met the thresholds).
    """

    campaign_id: int
    rounds: int
    stopped_because: str
    state: Literal["done", "stopped"]
    best: ValidatedPoint | None
    validated: tuple[ValidatedPoint, ...]
    experiments: tuple[int, ...]


ExecutorFactory = Callable[[ExperimentSpec], Executor]


def run_campaign(
    connection: Any,
    campaign: CampaignSpec,
    *,
    campaign_id: int | None = None,
    executor_factory: ExecutorFactory | None = None,
    on_event: Callable[[CampaignEvent], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> CampaignSummary:
    """Run a campaign to its end, or continue the stored one ``campaign_id``.

    ``executor_factory`` makes the executor of each experiment from its spec
    (default: the one ``job.executor`` names, ``parallel_bandwidth`` slots).
    See the module docstring for the loop, the warm start and what happens
    on ``should_stop``.
    """
    evaluator = load_evaluator(campaign.evaluator.name, campaign.evaluator.settings)
    if campaign_id is None:
        campaign_id = connection.campaigns().create(file=campaign.to_dict()).id
        logger.info("campaign %d created (%s)", campaign_id, campaign.name)
    else:
        stored = connection.campaigns(campaign_id).fetch()
        _refuse_other_file(campaign, stored.file, campaign_id)
        if stored.state != "running":
            connection.campaigns(campaign_id).update(state="running")
        logger.info("campaign %d continued", campaign_id)

    loop = _CampaignLoop(
        connection,
        campaign,
        campaign_id,
        evaluator,
        executor_factory or make_executor,
        on_event or _ignore,
        should_stop or _never,
    )
    try:
        return loop.run()
    except BaseException:
        # Whatever stopped the loop (a second Ctrl-C, a failed database),
        # the campaign is not running any more; what is stored stays.
        try:
            connection.campaigns(campaign_id).update(state="stopped")
        except Exception as error:
            logger.warning("campaign %d not marked stopped: %s", campaign_id, error)
        raise


@dataclass
class _Round:
    """A stored round: its experiment, its spec, its observations."""

    number: int
    experiment_id: int
    spec: ExperimentSpec
    observations: list[Observation]


class _CampaignLoop:
    """One call's walk through a campaign; see ``run_campaign``."""

    def __init__(
        self,
        connection: Any,
        campaign: CampaignSpec,
        campaign_id: int,
        evaluator: Evaluator,
        executor_factory: ExecutorFactory,
        emit: Callable[[CampaignEvent], None],
        should_stop: Callable[[], bool],
    ) -> None:
        self.connection = connection
        self.campaign = campaign
        self.campaign_id = campaign_id
        self.evaluator = evaluator
        self.executor_factory = executor_factory
        self.emit = emit
        self.should_stop = should_stop
        self.objective = campaign.experiment.optimized_metrics[0]

    def run(self) -> CampaignSummary:
        rounds, validation = self._stored()
        if validation is None:
            stopped_because = self._search(rounds)
            if stopped_because is None:
                return self._stopped(rounds, "stopped on request")
            validation_id = self._create_validation(rounds, stopped_because)
        else:
            validation_id, stopped_because = validation
        return self._validate(rounds, validation_id, stopped_because)

    # The rounds

    def _search(self, rounds: list[_Round]) -> str | None:
        """Run rounds until one ends the search; why, or None if stopped."""
        if not rounds:
            rounds.append(self._create_round(1, self.campaign.experiment, [], None))
        # Finished rounds (of an earlier run) feed the stop rule and the
        # warm start; the last one is read again when it has run.
        for finished in rounds[:-1]:
            finished.observations = self._observations(finished.experiment_id)

        while True:
            current = rounds[-1]
            if not self._run_round(current, rounds):
                return None

            reason = stop_reason(
                self.campaign, _bests(self.campaign.experiment, rounds)
            )
            if reason is not None:
                return reason
            refinement = self.evaluator.refine(current.spec, current.observations)
            if refinement.stop:
                return f"the evaluator asked to stop: {refinement.summary}"

            new_spec = refinement.apply(current.spec)
            earlier = [o for r in rounds for o in _originals(r.observations)]
            warm = warm_start_rows(new_spec, earlier, _round_of(rounds))
            rounds.append(
                self._create_round(current.number + 1, new_spec, warm, refinement)
            )

    def _create_round(
        self,
        number: int,
        spec: ExperimentSpec,
        warm: list[dict[str, Any]],
        refinement: Refinement | None,
    ) -> _Round:
        budget = self.campaign.rounds.budget
        data = {
            **spec.to_dict(),
            "name": _suffixed(self.campaign.name, f" (round {number})"),
            "observation_budget": len(warm) + budget,
        }
        record = None
        if refinement is not None:
            record = refinement_json(refinement, number - 1, len(warm))
            self.emit(
                CampaignEvent(
                    "refined",
                    self.campaign_id,
                    round=number,
                    refinement=refinement,
                    message=refinement.summary,
                )
            )

        created = (
            self.connection.campaigns(self.campaign_id)
            .experiments()
            .create(
                experiment=data,
                role="round",
                round=number,
                refinement=record,
                observations=warm,
            )
        )
        logger.info(
            "round %d of campaign %d created: experiment %d, %d warm-start rows",
            number,
            self.campaign_id,
            created.id,
            len(warm),
        )
        return _Round(number, created.id, parse_spec(data), [])

    def _run_round(self, current: _Round, rounds: list[_Round]) -> bool:
        """Train the round to its budget; False if stopped on request."""
        spec = current.spec
        before = self._observation_count(current.experiment_id)
        self.emit(
            CampaignEvent(
                "round_started",
                self.campaign_id,
                round=current.number,
                experiment_id=current.experiment_id,
                target=spec.observation_budget,
                observed=before,
            )
        )
        self._run_experiment(current.experiment_id, spec, current.number)
        if self.should_stop():
            return False
        current.observations = self._observations(current.experiment_id)
        own = best_value(self.campaign.experiment, _originals(current.observations))
        so_far = _bests(self.campaign.experiment, rounds)[-1]
        self.emit(
            CampaignEvent(
                "round_finished",
                self.campaign_id,
                round=current.number,
                experiment_id=current.experiment_id,
                target=spec.observation_budget,
                observed=len(current.observations),
                message=f"best {self.objective.name} {_number(own)} in its new "
                f"points, {_number(so_far)} so far",
            )
        )
        return True

    # The validation

    def _create_validation(self, rounds: list[_Round], why: str) -> int | None:
        """The validation experiment with the best points open, or None
        when there is nothing to validate."""
        points = self._validation_points(rounds)
        if not points:
            return None

        spec = validation_spec(self.campaign, rounds[-1].spec, points)
        created = (
            self.connection.campaigns(self.campaign_id)
            .experiments()
            .create(
                experiment=spec.to_dict(),
                role="validation",
                refinement={"search_stopped_because": why},
                suggestions=[{"assignments": dict(p.assignments)} for p in points],
            )
        )
        logger.info(
            "validation of campaign %d created: experiment %d, %d points",
            self.campaign_id,
            created.id,
            len(points),
        )
        return int(created.id)

    def _validate(
        self, rounds: list[_Round], validation_id: int | None, why: str
    ) -> CampaignSummary:
        for r in rounds:
            if not r.observations:
                r.observations = self._observations(r.experiment_id)
        searched = [o for r in rounds for o in _originals(r.observations)]

        if validation_id is None:
            validated = self._unvalidated(rounds, searched)
            return self._done(rounds, None, validated, why)

        spec = self._validation_spec(rounds, validation_id)
        before = self._observation_count(validation_id)
        self.emit(
            CampaignEvent(
                "validation_started",
                self.campaign_id,
                experiment_id=validation_id,
                target=spec.observation_budget,
                observed=before,
            )
        )
        self._run_experiment(validation_id, spec, None)
        observations = self._observations(validation_id)
        if len(observations) < (spec.observation_budget or 0):
            return self._stopped(rounds, "stopped on request during validation")

        validated = _validated_points(
            spec, self.objective, observations, searched, _round_of(rounds)
        )
        self.emit(
            CampaignEvent(
                "validation_finished",
                self.campaign_id,
                experiment_id=validation_id,
                target=spec.observation_budget,
                observed=len(observations),
            )
        )
        return self._done(rounds, validation_id, validated, why)

    def _unvalidated(
        self, rounds: list[_Round], searched: list[Observation]
    ) -> list[ValidatedPoint]:
        """The best search point as the answer, when validation is off."""
        spec = self.campaign.experiment
        best = top_points(spec, searched, 1)
        round_of = _round_of(rounds)
        return [
            ValidatedPoint(
                assignments=dict(o.assignments),
                mean=o.value(self.objective.name),
                std=o.stddev(self.objective.name),
                seeds=spec.seeds_per_point,
                feasible=True,
                meets_thresholds=True,
                converged_seeds=_converged_seeds(o),
                experiment_id=o.experiment_id or 0,
                observation_id=o.id,
                search_mean=o.value(self.objective.name),
                search_std=o.stddev(self.objective.name),
                search_observation_id=o.id,
                round=round_of.get(o.experiment_id or 0),
            )
            for o in best
        ]

    # Endings

    def _done(
        self,
        rounds: list[_Round],
        validation_id: int | None,
        validated: list[ValidatedPoint],
        why: str,
    ) -> CampaignSummary:
        best = best_validated(self.objective, validated)
        if self.campaign.validation.top == 0:
            why += "; validation off (validation.top: 0)"
        elif validation_id is None:
            why += "; no feasible point to validate"
        elif best is not None and not best.feasible:
            why += (
                "; no validated point converged on every seed, so the answer "
                "is the best mean that meets the thresholds"
            )
        result = {
            "stopped_because": why,
            "rounds": len(rounds),
            "metric": self.objective.name,
            "objective": self.objective.objective,
            "round_best": [
                {
                    "round": r.number,
                    "experiment": r.experiment_id,
                    "best": best_value(
                        self.campaign.experiment, _originals(r.observations)
                    ),
                    "best_so_far": so_far,
                }
                for r, so_far in zip(rounds, _bests(self.campaign.experiment, rounds))
            ],
            "validation_experiment": validation_id,
            "validated": [point.to_json() for point in validated],
            "best": None if best is None else best.to_json(),
        }
        self.connection.campaigns(self.campaign_id).update(state="done", result=result)
        logger.info("campaign %d done: %s", self.campaign_id, why)
        self.emit(CampaignEvent("done", self.campaign_id, message=why))

        experiments = [r.experiment_id for r in rounds]
        if validation_id is not None:
            experiments.append(validation_id)
        return CampaignSummary(
            campaign_id=self.campaign_id,
            rounds=len(rounds),
            stopped_because=why,
            state="done",
            best=best,
            validated=tuple(validated),
            experiments=tuple(experiments),
        )

    def _stopped(self, rounds: list[_Round], why: str) -> CampaignSummary:
        self.connection.campaigns(self.campaign_id).update(state="stopped")
        logger.info("campaign %d stopped: %s", self.campaign_id, why)
        self.emit(CampaignEvent("stopped", self.campaign_id, message=why))
        return CampaignSummary(
            campaign_id=self.campaign_id,
            rounds=len(rounds),
            stopped_because=why,
            state="stopped",
            best=None,
            validated=(),
            experiments=tuple(r.experiment_id for r in rounds),
        )

    # Reading what is stored

    def _stored(self) -> tuple[list[_Round], tuple[int, str] | None]:
        """The stored rounds (specs rebuilt and checked), and the validation
        with the reason the search ended, if it exists."""
        listed = self.connection.campaigns(self.campaign_id).experiments().fetch()
        rounds: list[_Round] = []
        validation: tuple[int, str] | None = None
        spec = self.campaign.experiment
        for experiment in listed.data:
            link = experiment.campaign or {}
            if link.get("role") == "validation":
                why = (link.get("refinement") or {}).get("search_stopped_because")
                validation = (experiment.id, str(why or "search ended"))
                continue
            if link.get("role") != "round":
                continue

            number = len(rounds) + 1
            if link.get("round") != number:
                raise StoreError(
                    f"campaign {self.campaign_id}: experiment {experiment.id} "
                    f"is round {link.get('round')}, expected round {number}; "
                    "the stored campaign is inconsistent"
                )
            if number > 1:
                refinement = refinement_of_json(link.get("refinement") or {})
                spec = refinement.apply(spec)
            data = {
                **spec.to_dict(),
                "name": experiment.name,
                "observation_budget": experiment.observation_budget,
            }
            spec = parse_spec(data)
            _check_parameters(spec, experiment, self.campaign_id)
            rounds.append(_Round(number, experiment.id, spec, []))
        return rounds, validation

    def _validation_spec(
        self, rounds: list[_Round], experiment_id: int
    ) -> ExperimentSpec:
        """The validation's spec, rebuilt the way it was made."""
        points = self._validation_points(rounds)
        spec = validation_spec(self.campaign, rounds[-1].spec, points)
        stored = self.connection.experiments(experiment_id).fetch()
        _check_parameters(spec, stored, self.campaign_id)
        return spec

    def _validation_points(self, rounds: list[_Round]) -> list[Observation]:
        """The ``validation.top`` best distinct points of the campaign.

        Ranked by the posterior means of the last round's models (through
        ``best_assignments(ranked=K)``), since its experiment holds, as
        warm-start copies, every earlier point inside the final bounds.
        Points of earlier rounds outside those bounds come after, by their
        observed means, should fewer than ``top`` be ranked.
        """
        top = self.campaign.validation.top
        searched = [o for r in rounds for o in _originals(r.observations)]
        if top == 0 or not searched:
            return []

        last = self.connection.experiments(rounds[-1].experiment_id)
        wanted = min(MAX_RANKED, max(top, len(rounds[-1].observations)))
        ranked = last.best_assignments().fetch(ranked=wanted).data
        # A point measured twice stands for itself by its first measurement.
        first_of: dict[tuple[Any, ...], Observation] = {}
        for observation in searched:
            first_of.setdefault(_point_key(observation.assignments), observation)

        chosen: list[Observation] = []
        for item in ranked:
            found = first_of.get(_point_key(item.assignments))
            if found is not None and found not in chosen:
                chosen.append(found)
        for measured in top_points(self.campaign.experiment, searched, top):
            if measured not in chosen:
                chosen.append(measured)
        return chosen[:top]

    def _observations(self, experiment_id: int) -> list[Observation]:
        page = self.connection.experiments(experiment_id).observations().fetch()
        return [_record(item) for item in page.data]

    def _observation_count(self, experiment_id: int) -> int:
        experiment = self.connection.experiments(experiment_id).fetch()
        return int(experiment.progress.observation_count)

    def _run_experiment(
        self, experiment_id: int, spec: ExperimentSpec, number: int | None
    ) -> None:
        def forward(event: LoopEvent) -> None:
            self.emit(
                CampaignEvent(
                    "loop",
                    self.campaign_id,
                    round=number,
                    experiment_id=experiment_id,
                    target=spec.observation_budget,
                    loop=event,
                )
            )

        executor = self.executor_factory(spec)
        stopping_now = False
        try:
            run_experiment(
                self.connection,
                experiment_id,
                spec,
                executor,
                on_event=forward,
                should_stop=self.should_stop,
            )
        except KeyboardInterrupt:
            # Stop now: the running jobs are not waited for.  They end with
            # this process (the executor's reaper kills them); their
            # suggestions stay open for the next run.
            stopping_now = True
            raise
        finally:
            if not stopping_now:
                executor.shutdown()


# Pure steps of the loop, public for tests and for other front ends.


def stop_reason(campaign: CampaignSpec, bests: Sequence[float | None]) -> str | None:
    """Why the search ends after the last of ``bests``, or None to go on.

    ``bests[i]`` is the best feasible value of the first optimized metric
    over rounds 1 .. i + 1 (None while nothing was feasible), on the
    metric's own scale.
    """
    done = len(bests)
    if done >= campaign.rounds.max:
        return f"rounds.max={campaign.rounds.max} rounds run"

    required = campaign.stop.min_improvement
    if done < 2 or required <= 0:
        return None
    metric = campaign.experiment.optimized_metrics[0]
    before, after = bests[-2], bests[-1]
    if after is None:
        return (
            f"no feasible point after round {done}, so {metric.name} did not "
            f"improve by stop.min_improvement={required}"
        )
    if before is None:
        return None
    gain = metric.to_minimize(before) - metric.to_minimize(after)
    if gain < required:
        return (
            f"best {metric.name} improved by {gain:.6g} in round {done}, less "
            f"than stop.min_improvement={required}"
        )
    return None


def warm_start_rows(
    spec: ExperimentSpec,
    observations: Sequence[Observation],
    round_of: Mapping[int, int] | None = None,
) -> list[dict[str, Any]]:
    """Observations (as request bodies) whose points lie inside ``spec``.

    Each keeps its values and failure; its metadata names its origin under
    ``warm_start`` and drops the compute fields (``COMPUTE_FIELDS``).
    ``round_of`` maps an experiment id to its round, for that record.
    """
    space = spec.space()
    rows = []
    for observation in observations:
        try:
            space.check_assignments(observation.assignments)
        except SpecError:
            continue

        metadata = {
            key: value
            for key, value in observation.metadata.items()
            if key not in COMPUTE_FIELDS
        }
        metadata["warm_start"] = {
            "experiment": observation.experiment_id,
            "observation": observation.id,
            "round": (round_of or {}).get(observation.experiment_id or 0),
        }
        row: dict[str, Any] = {
            "assignments": dict(observation.assignments),
            "failed": observation.failed,
            "metadata": metadata,
        }
        if not observation.failed:
            row["values"] = [
                {"name": v.name, "value": v.value, "value_stddev": v.value_stddev}
                for v in observation.values
            ]
        rows.append(row)
    return rows


def _point_key(assignments: Mapping[str, Any]) -> tuple[Any, ...]:
    return tuple(sorted(assignments.items()))


def top_points(
    spec: ExperimentSpec, observations: Sequence[Observation], count: int
) -> list[Observation]:
    """The ``count`` best feasible observations at distinct points.

    Ranked by the first optimized metric's observed mean; a point measured
    twice (say, suggested again in a later round) is ranked by its first
    measurement.  Ties keep the earliest.
    """
    metric = spec.optimized_metrics[0]
    seen: set[tuple[Any, ...]] = set()
    distinct = []
    for observation in observations:
        key = _point_key(observation.assignments)
        if key in seen:
            continue
        seen.add(key)
        if (
            is_feasible(spec, observation)
            and observation.value(metric.name) is not None
        ):
            distinct.append(observation)
    distinct.sort(key=lambda o: metric.to_minimize(o.value(metric.name) or 0.0))
    return distinct[:count]


def validation_spec(
    campaign: CampaignSpec, last: ExperimentSpec, points: Sequence[Observation]
) -> ExperimentSpec:
    """The validation experiment's spec: one observation per point, each of
    ``validation.seeds`` fresh seeds.

    Its space is the last round's, widened so that every point lies inside
    (an early round's point may lie outside the last bounds).  Its type is
    ``random``: its points are chosen by the campaign and stored open, and
    no optimizer is ever asked.
    """
    data = last.to_dict()
    for parameter in data["parameters"]:
        if parameter["type"] == "categorical":
            continue
        values = [float(p.assignments[parameter["name"]]) for p in points]
        if values:
            _cover(parameter, values)

    job = dict(data["job"])
    job["seed_base"] = job.get("seed_base", 0) + last.seeds_per_point
    data.update(
        name=_suffixed(campaign.name, " (validation)"),
        type="random",
        observation_budget=len(points),
        seeds_per_point=campaign.validation.seeds,
        job=job,
    )
    return parse_spec(data)


def best_validated(
    metric: MetricSpec, points: Sequence[ValidatedPoint]
) -> ValidatedPoint | None:
    """The feasible point with the best mean; the first one on a tie.

    When no point converged on every seed, the best mean among the points
    whose means meet the thresholds (``meets_thresholds``).
    """
    feasible = [p for p in points if p.feasible and p.mean is not None]
    if not feasible:
        feasible = [p for p in points if p.meets_thresholds and p.mean is not None]
    if not feasible:
        return None
    return min(feasible, key=lambda p: metric.to_minimize(p.mean or 0.0))


def refinement_json(
    refinement: Refinement, from_round: int, warm_start: int
) -> dict[str, Any]:
    """A refinement as stored with the round it made."""
    return {
        "from_round": from_round,
        "stop": refinement.stop,
        "summary": refinement.summary,
        "bounds": {
            name: {
                "min": bounds.min,
                "max": bounds.max,
                "grid": None if bounds.grid is None else list(bounds.grid),
            }
            for name, bounds in refinement.bounds.items()
        },
        "reasons": dict(refinement.reasons),
        "warm_start": warm_start,
    }


def refinement_of_json(data: Mapping[str, Any]) -> Refinement:
    """The ``Refinement`` that ``refinement_json`` stored."""
    bounds = {
        name: ParameterBounds(
            float(item["min"]),
            float(item["max"]),
            None if item.get("grid") is None else tuple(item["grid"]),
        )
        for name, item in (data.get("bounds") or {}).items()
    }
    return Refinement(
        stop=bool(data.get("stop", False)),
        bounds=bounds,
        reasons=dict(data.get("reasons") or {}),
        summary=str(data.get("summary", "")),
    )


# Helpers


def _never() -> bool:
    return False


def _ignore(event: CampaignEvent) -> None:
    del event


def _record(item: Any) -> Observation:
    """A client's observation object as the plain record evaluators take."""
    return Observation(
        assignments=dict(item.assignments),
        values=tuple(MetricValue(v.name, v.value, v.value_stddev) for v in item.values),
        failed=bool(item.failed),
        id=item.id,
        experiment_id=item.experiment,
        suggestion_id=item.suggestion,
        metadata=dict(item.metadata or {}),
    )


def _originals(observations: Sequence[Observation]) -> list[Observation]:
    """The observations measured in their own round, not warm-start copies."""
    return [o for o in observations if "warm_start" not in o.metadata]


def _round_of(rounds: Sequence[_Round]) -> dict[int, int]:
    return {r.experiment_id: r.number for r in rounds}


def best_value(
    spec: ExperimentSpec, observations: Sequence[Observation]
) -> float | None:
    """The best value of the first optimized metric among the feasible
    observations, or None when none is feasible."""
    metric = spec.optimized_metrics[0]
    values = [
        value
        for o in observations
        if is_feasible(spec, o) and (value := o.value(metric.name)) is not None
    ]
    return min(values, key=metric.to_minimize) if values else None


def _bests(spec: ExperimentSpec, rounds: Sequence[_Round]) -> list[float | None]:
    """The best value over rounds 1 .. i, for each round i."""
    metric = spec.optimized_metrics[0]
    bests: list[float | None] = []
    so_far: float | None = None
    for r in rounds:
        best = best_value(spec, _originals(r.observations))
        if best is not None and (
            so_far is None or metric.to_minimize(best) < metric.to_minimize(so_far)
        ):
            so_far = best
        bests.append(so_far)
    return bests


def _validated_points(
    spec: ExperimentSpec,
    metric: MetricSpec,
    observations: Sequence[Observation],
    searched: Sequence[Observation],
    round_of: Mapping[int, int],
) -> list[ValidatedPoint]:
    """Each validation observation beside the search observation it repeats."""
    first_seen: dict[tuple[Any, ...], Observation] = {}
    for observation in searched:
        first_seen.setdefault(
            tuple(sorted(observation.assignments.items())), observation
        )

    points = []
    for observation in observations:
        source = first_seen.get(tuple(sorted(observation.assignments.items())))
        points.append(
            ValidatedPoint(
                assignments=dict(observation.assignments),
                mean=observation.value(metric.name),
                std=observation.stddev(metric.name),
                seeds=spec.seeds_per_point,
                feasible=is_feasible(spec, observation),
                meets_thresholds=_meets_thresholds(spec, observation),
                converged_seeds=_converged_seeds(observation),
                experiment_id=observation.experiment_id or 0,
                observation_id=observation.id,
                search_mean=None if source is None else source.value(metric.name),
                search_std=None if source is None else source.stddev(metric.name),
                search_observation_id=None if source is None else source.id,
                round=None
                if source is None
                else round_of.get(source.experiment_id or 0),
            )
        )
    return points


def _meets_thresholds(spec: ExperimentSpec, observation: Observation) -> bool:
    """Whether the observation succeeded and its means meet every threshold,
    whether or not each seed converged."""
    if observation.failed:
        return False
    for metric in spec.metrics:
        value = observation.value(metric.name)
        if metric.threshold is not None and (
            value is None or not metric.threshold_met(value)
        ):
            return False
    return True


def _converged_seeds(observation: Observation) -> int | None:
    epochs = observation.metadata.get("converge_epochs")
    if not isinstance(epochs, list):
        return None
    return sum(1 for epoch in epochs if epoch is not None)


def _cover(parameter: dict[str, Any], values: Sequence[float]) -> None:
    """Widen one numeric parameter of a spec dict, in place, to hold values."""
    low, high = min(values), max(values)
    if "grid_pow2" in parameter:
        # The values are powers of two of the same base: members once the
        # range holds them.
        pow2 = parameter["grid_pow2"]
        pow2["min"] = min(pow2["min"], low)
        pow2["max"] = max(pow2["max"], high)
        return
    if "grid" in parameter:
        members = set(parameter["grid"]) | set(values)
        if parameter["type"] == "int":
            members = {int(m) for m in members}
        parameter["grid"] = sorted(members)
    if "bounds" in parameter:
        bounds = parameter["bounds"]
        bounds["min"] = min(bounds["min"], low)
        bounds["max"] = max(bounds["max"], high)


def _check_parameters(spec: ExperimentSpec, stored: Any, campaign_id: int) -> None:
    """Refuse a stored experiment whose space is not the one rebuilt."""
    expected = [parameter_json(p) for p in spec.parameters]
    found = [dict(p.to_json()) for p in stored.parameters]
    if expected != found:
        raise StoreError(
            f"campaign {campaign_id}: experiment {stored.id} does not have the "
            "parameters its campaign file and stored refinements give; was "
            "the campaign file changed?"
        )


def _refuse_other_file(
    campaign: CampaignSpec, stored: Mapping[str, Any], campaign_id: int
) -> None:
    """Refuse to continue a campaign with a file that describes another."""
    given = campaign.to_dict()
    for field in sorted(set(given) | set(stored)):
        if field in RUN_FIELDS:
            continue
        mine, theirs = given.get(field), stored.get(field)
        where = field
        if field == "job" and isinstance(mine, dict) and isinstance(theirs, dict):
            keys = sorted((set(mine) | set(theirs)) - set(RUN_JOB_FIELDS))
            changed = [k for k in keys if mine.get(k) != theirs.get(k)]
            mine, theirs = changed, []
            where = f"job.{changed[0]}" if changed else field
        if mine != theirs:
            raise SpecError(
                f"{where}: the campaign file differs from campaign "
                f"{campaign_id} as stored; continue it with the file that "
                "created it, or start a new campaign"
            )


def _suffixed(name: str, suffix: str) -> str:
    """``name + suffix``, the name cut so that the whole fits a name field."""
    return name[: MAX_NAME_LENGTH - len(suffix)] + suffix


def _number(value: float | None) -> str:
    return "none feasible" if value is None else f"{value:.6g}"
