"""The inner loop: keep every slot busy until the experiment's budget is spent.

Each point the optimizer suggests is trained ``seeds_per_point`` times, with
seeds ``seed_base, seed_base + 1, ...`` (the same seeds at every point, so
points are compared on the same random draws).  Seeds are independent tasks:
a free slot takes the next queued seed, and asks for a new suggestion only
when nothing is queued, so the cluster never idles while work is known.
When a point's last seed ends, its seeds become one observation.

The loop talks to the experiment only through a ``Connection``, so it runs the
same against the embedded store or a remote server.  Suggestions still open
when the loop starts (left by an interrupted run) are trained first, so no
suggestion is lost.

With ``job.prune`` on, a point's seeds are judged against the curves of every
seed that reached the target in the observations stored when the point was
queued; seeds of points still running then are not references yet.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from typing import Any

from optiloop.errors import (
    BandwidthError,
    BudgetSpentError,
    ExhaustedError,
    SpecError,
)
from optiloop.experiment import ExperimentSpec, JobSpec
from optiloop.runner.executor import Executor
from optiloop.runner.jobs import (
    PointOutcome,
    PruneRule,
    RunResult,
    RunTask,
    reference_curves,
    render_command,
    render_path,
    summarize_point,
)
from optiloop.runner.readers import reader_factory
from optiloop.space import Assignments

logger = logging.getLogger(__name__)

# How long to wait before asking again when other workers hold every open
# suggestion the experiment's parallel_bandwidth allows.
BANDWIDTH_RETRY_SECONDS = 5.0

# How often the loop, waiting for a run to end, wakes to let Python run the
# handlers of signals that arrived meanwhile.
SIGNAL_CHECK_SECONDS = 0.5


@dataclass
class _Point:
    suggestion_id: int
    assignments: Assignments
    results: list[RunResult] = field(default_factory=list)


@dataclass(frozen=True)
class LoopEvent:
    """A step of the loop, for progress displays."""

    kind: str  # "seed_finished" or "observed"
    suggestion_id: int
    observation_count: int
    result: RunResult | None = None
    outcome: PointOutcome | None = None


@dataclass(frozen=True)
class LoopSummary:
    observation_count: int
    stopped_because: str


def check_runnable(
    spec: ExperimentSpec, max_observations: int | None = None
) -> tuple[JobSpec, int]:
    """The job and the observation target, or a SpecError saying what lacks.

    Call it before creating an experiment, so a spec that cannot run leaves
    nothing behind.
    """
    job = spec.job
    if job is None:
        raise SpecError("job: the experiment has no job to run; add job.command")
    # A reader that cannot be imported would fail every run; say so now.
    try:
        reader_factory(job.metrics.format)
    except ValueError as error:
        raise SpecError(str(error)) from None
    target = max_observations or spec.observation_budget
    if target is None:
        raise SpecError(
            "observation_budget: the experiment sets no budget, so the runner "
            "would not know when to stop; set observation_budget or pass "
            "--observations N"
        )
    return job, target


def run_experiment(
    conn: Any,
    experiment_id: int,
    spec: ExperimentSpec,
    executor: Executor,
    max_observations: int | None = None,
    on_event: Callable[[LoopEvent], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> LoopSummary:
    """Train suggested points until ``max_observations`` observations exist.

    ``max_observations`` counts every observation of the experiment, earlier
    ones included; it defaults to the spec's ``observation_budget``.  Once
    ``should_stop()`` answers True the loop starts no new point: the points
    with a seed started finish and are stored, the others stay open
    suggestions for the next run.
    """
    job, target = check_runnable(spec, max_observations)

    experiment = conn.experiments(experiment_id)
    observed = experiment.fetch().progress.observation_count
    points: dict[int, _Point] = {}
    queue: deque[RunTask] = deque()
    running: dict[Future[RunResult], RunTask] = {}
    started: set[int] = set()
    stopping = False
    stopped_because = "observation target reached"

    def enqueue(suggestion_id: int, assignments: Assignments) -> None:
        points[suggestion_id] = _Point(suggestion_id, dict(assignments))
        prune = _prune_rule(experiment, job)
        for offset in range(spec.seeds_per_point):
            seed = job.seed_base + offset
            queue.append(_task(job, suggestion_id, assignments, seed, prune))

    # Points left open by an interrupted run come first.
    for suggestion in experiment.suggestions().fetch(state="open").data:
        logger.info("resuming open suggestion %s", suggestion.id)
        enqueue(suggestion.id, dict(suggestion.assignments))

    suggestions_left = True
    while True:
        if not stopping and should_stop is not None and should_stop():
            stopping, suggestions_left = True, False
            stopped_because = "stopped on request"
            left_open = {task.suggestion_id for task in queue} - started
            queue = deque(task for task in queue if task.suggestion_id in started)
            logger.info("stopping on request: %d points left open", len(left_open))

        while len(running) < executor.slots:
            if queue:
                task = queue.popleft()
                running[executor.submit(task)] = task
                started.add(task.suggestion_id)
                continue
            if not suggestions_left or observed + len(points) >= target:
                break
            if len(points) >= spec.parallel_bandwidth:
                # Free slots wait for a point to finish: more open points
                # than the bandwidth would be refused anyway.
                break
            try:
                suggestion = experiment.suggestions().create()
            except (BudgetSpentError, ExhaustedError) as error:
                logger.info("no further suggestion: %s", error)
                stopped_because = str(error)
                suggestions_left = False
                break
            except BandwidthError as error:
                # Other workers hold the open suggestions; ask again later.
                if running:
                    break
                logger.info("waiting %.0f s: %s", BANDWIDTH_RETRY_SECONDS, error)
                time.sleep(BANDWIDTH_RETRY_SECONDS)
                continue
            logger.info(
                "suggestion %s created: %s", suggestion.id, dict(suggestion.assignments)
            )
            enqueue(suggestion.id, dict(suggestion.assignments))

        if not running:
            break

        finished: set[Future[RunResult]] = set()
        while not finished:
            # Wake up now and then: a signal (Ctrl-C) that the kernel hands
            # to another thread does not end a blocked wait, and Python runs
            # its handler only in this thread, once the wait returns.
            finished, _ = wait(
                running, timeout=SIGNAL_CHECK_SECONDS, return_when=FIRST_COMPLETED
            )
        for future in finished:
            task = running.pop(future)
            result = future.result()
            point = points[task.suggestion_id]
            point.results.append(result)
            if on_event is not None:
                on_event(
                    LoopEvent(
                        "seed_finished", task.suggestion_id, observed, result=result
                    )
                )
            if len(point.results) < spec.seeds_per_point:
                continue

            outcome = summarize_point(spec, point.results)
            _report(experiment, point, outcome)
            del points[task.suggestion_id]
            observed += 1
            if on_event is not None:
                on_event(
                    LoopEvent("observed", task.suggestion_id, observed, outcome=outcome)
                )

    return LoopSummary(observed, stopped_because)


def _task(
    job: JobSpec,
    suggestion_id: int,
    assignments: Assignments,
    seed: int,
    prune: PruneRule | None,
) -> RunTask:
    metrics_file = None
    if job.metrics.file is not None:
        metrics_file = render_path(job.metrics.file, assignments, seed)
    stop_at_target = None
    if job.converge is not None and job.converge.stop:
        stop_at_target = job.converge
    return RunTask(
        suggestion_id,
        seed,
        render_command(job.command, assignments, seed),
        job.timeout_seconds,
        metrics_format=job.metrics.format,
        metrics_file=metrics_file,
        stop_at_target=stop_at_target,
        prune=prune,
    )


def _prune_rule(experiment: Any, job: JobSpec) -> PruneRule | None:
    """The pruning rule with every converged seed observed so far as reference."""
    if job.prune is None or not job.prune.enabled or job.converge is None:
        return None

    observations = experiment.observations().fetch().data
    references = reference_curves(
        dict(o.metadata or {}) for o in observations if not o.failed
    )
    logger.debug("pruning against %d converged runs", len(references))
    return PruneRule(
        converge=job.converge,
        references=references,
        margin=job.prune.margin,
        min_reference_runs=job.prune.min_reference_runs,
    )


def _report(experiment: Any, point: _Point, outcome: PointOutcome) -> None:
    if outcome.failed:
        logger.warning(
            "point of suggestion %d failed: %s",
            point.suggestion_id,
            outcome.metadata.get("reason"),
        )
        experiment.observations().create(
            suggestion=point.suggestion_id,
            failed=True,
            metadata=outcome.metadata,
        )
        return
    try:
        experiment.observations().create(
            suggestion=point.suggestion_id,
            values=outcome.values,
            metadata=outcome.metadata,
        )
    except SpecError as error:
        # The job's output broke a rule of the experiment (say, a value out
        # of range): keep the point as a failure rather than stop the loop.
        logger.warning(
            "point of suggestion %d refused (%s); stored as failed",
            point.suggestion_id,
            error,
        )
        experiment.observations().create(
            suggestion=point.suggestion_id,
            failed=True,
            metadata={**outcome.metadata, "reason": f"refused: {error}"},
        )
