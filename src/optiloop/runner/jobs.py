"""What a training job reports, and what the runner reports for a point.

A job reports one record per evaluation: by default a JSON object per line
on its stdout, such as ``{"epoch": 3, "eval_accuracy": 0.91}``; with
``job.metrics.format: mllog`` MLPerf's ``:::MLLOG`` events; with
``job.metrics.file`` the records are read from a log file the job writes
instead of stdout (``optiloop.runner.readers`` has the formats).  Lines that
are not records (a framework's logs) are ignored.  From the records the
runner takes, for each seed:

- every metric of the spec from the last value the job reported for it;
- the converge epoch: the first evaluated epoch at which the converge metric
  reaches its target (``>=`` when maximized, ``<=`` when minimized).

A seed that never reaches the target has no converge epoch.  It is reported
at the next evaluation after its last one (one epoch past it unless
``job.evaluation`` states a coarser grid, then e.g. four), a lower bound that
tells the optimizer the region is slow, and the point is marked
``converged: false`` in the observation's metadata, which makes it
infeasible: it can never be the best point, whatever its other metrics say.
A record off the stated evaluation grid is kept and logged as a warning.

Two rules end a run early, and neither is a failure:

- ``job.converge.stop``: the run is ended at the first evaluation that
  reaches the target; its converge epoch is known and nothing after it
  would change the observation;
- ``job.prune``: the run is ended when it falls behind every earlier run
  that converged (``prune_reason`` states the rule); it counts as a seed
  that never converged, and the reason is stored in the metadata.

The seeds of a point become one observation: the mean of each metric, with
the sample standard deviation over seeds as ``value_stddev``.  If any seed
fails the whole point is a failed observation, with the failing seed's exit
code and the tail of its stderr in the metadata.  A seed fails when it
times out, reports no records, never reports a metric of the spec, or ends
badly: its log states ``aborted`` (MLPerf's run status), or it states no
status and exits with a non-zero code.  A log that states ``success`` wins
over the exit code, since launchers often fail while tearing down after a
finished run.

Each observation keeps, per seed, the converge metric's curve (``curves``:
``[[epoch, value], ...]``) and converge epoch, so that pruning is a function
of stored observations only.

Each observation also keeps what its runs cost and how they ended:
``cluster``, ``nodes`` and ``devices`` from ``job.executor``,
``device_seconds`` (wall seconds x devices, summed over every attempt of
every seed, lost attempts included) and ``runs``, one record per seed with
its status (``ok``, ``failed``, ``timeout``, ``lost``, ``oom``,
``pruned``), the reason, its attempts and the tails of its stdout and
stderr.  ``compute_seconds`` stays the wall time of each seed's final
attempt, as before.
"""

from __future__ import annotations

import logging
import math
import shlex
import signal
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from optiloop.experiment import (
    ConvergeSpec,
    EvaluationSpec,
    ExecutorSpec,
    ExperimentSpec,
    fill_template,
)
from optiloop.runner.readers import is_finite_number, read_lines
from optiloop.space import Assignments

logger = logging.getLogger(__name__)

# Keep this much of a job's stdout and stderr: enough for a traceback's end.
STDERR_TAIL_CHARS = 2000
TAIL_CHARS = STDERR_TAIL_CHARS

# One seed's curve of the converge metric: (epoch, value) per evaluation.
Curve = tuple[tuple[float, float], ...]

StopKind = Literal["target", "pruned"]

# How a run ended without the job's own say: the executor lost it (a worker
# or node died), the cluster killed it for memory, it outlived its timeout
# with no word from its worker, or the runner's own code failed beside it.
LossKind = Literal["lost", "oom", "timeout", "failed"]


@dataclass(frozen=True)
class Attempt:
    """One try at a run: how it ended, how long it held its slot, and where."""

    status: str
    reason: str | None
    wall_seconds: float
    node: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "reason": self.reason,
            "wall_seconds": round(self.wall_seconds, 3),
            "node": self.node,
        }


@dataclass(frozen=True)
class PruneRule:
    """Stop a run that is behind every earlier converged run at an epoch.

    At an evaluation epoch where at least ``min_reference_runs`` of the
    ``references`` (curves of runs that reached the target) have a value, a
    run whose value is worse than the worst of those values by more than
    ``margin`` is stopped.  The worst reference, not the mean, is the bar,
    so a run is stopped only when it is slower than every recipe known to
    converge; a run that has already reached the target is never stopped.
    """

    converge: ConvergeSpec
    references: tuple[Curve, ...]
    margin: float
    min_reference_runs: int


@dataclass(frozen=True)
class RunTask:
    """One seed of one point, ready to launch.

    ``metrics_format`` and ``metrics_file`` say where the records come from
    (``metrics_file`` None: stdout).  ``stop_at_target`` and ``prune`` are
    the rules the executor applies while the run is going.
    """

    suggestion_id: int
    seed: int
    command: str
    timeout_seconds: float | None = None
    metrics_format: str = "json"
    metrics_file: str | None = None
    stop_at_target: ConvergeSpec | None = None
    prune: PruneRule | None = None


@dataclass(frozen=True)
class RunResult:
    """What one finished process left behind.

    ``records`` and ``status`` are what the job reported (read from
    ``stdout`` in the task's format when not given); ``stopped`` says that
    the runner ended the run early, and why.  ``loss`` and ``loss_reason``
    say that the executor lost the run before the job could end it (then
    the exit code is None); ``node`` is where it ran, and
    ``earlier_attempts`` the tries that were lost before this one.
    """

    task: RunTask
    exit_code: int | None
    stdout: str
    stderr: str
    seconds: float
    timed_out: bool = False
    records: list[dict[str, Any]] | None = None
    status: str | None = None
    stopped: StopKind | None = None
    stop_reason: str | None = None
    node: str | None = None
    loss: LossKind | None = None
    loss_reason: str | None = None
    earlier_attempts: tuple[Attempt, ...] = ()

    def __post_init__(self) -> None:
        if self.records is None:
            reader = read_lines(self.task.metrics_format, self.stdout.splitlines())
            object.__setattr__(self, "records", reader.records)
            object.__setattr__(self, "status", reader.status)

    @property
    def epochs(self) -> list[dict[str, Any]]:
        return self.records or []

    def verdict(self) -> tuple[str, str | None]:
        """This attempt's status (``ok``, ``failed``, ...) and its reason."""
        reason = _failure_reason(self)
        if reason is not None:
            if self.loss is not None:
                return self.loss, reason
            return ("timeout" if self.timed_out else "failed"), reason
        if self.stopped == "pruned":
            return "pruned", self.stop_reason
        return "ok", self.stop_reason

    def attempt(self) -> Attempt:
        status, reason = self.verdict()
        return Attempt(status, reason, self.seconds, self.node)

    @property
    def attempts(self) -> tuple[Attempt, ...]:
        return (*self.earlier_attempts, self.attempt())

    def record(self) -> dict[str, Any]:
        """The run record kept in the observation's metadata ``runs``."""
        status, reason = self.verdict()
        return {
            "seed": self.task.seed,
            "status": status,
            "reason": reason,
            "wall_seconds": round(self.seconds, 3),
            "attempts": [a.to_json() for a in self.attempts],
            "stdout_tail": self.stdout[-TAIL_CHARS:],
            "stderr_tail": self.stderr[-TAIL_CHARS:],
        }


@dataclass
class PointOutcome:
    """The observation the runner reports for one point."""

    failed: bool
    values: list[dict[str, Any]] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)


def render_command(template: str, assignments: Assignments, seed: int) -> str:
    """The shell command for one seed, each value quoted for the shell."""
    return fill_template(template, {**assignments, "seed": seed}, shlex.quote)


def render_path(template: str, assignments: Assignments, seed: int) -> str:
    """A file path for one seed; values are inserted as they print."""
    return fill_template(template, {**assignments, "seed": seed})


def parse_metric_lines(lines: Iterable[str]) -> list[dict[str, Any]]:
    """The JSON objects among ``lines``, numbered by epoch.

    A line that is not a JSON object is skipped.  An object without an
    ``epoch`` field gets the count of metric lines so far.
    """
    return read_lines("json", lines).records


def converge_epoch(
    records: Sequence[Mapping[str, Any]], converge: ConvergeSpec
) -> float | None:
    """The first evaluated epoch whose metric reaches the target, or None."""
    for record in records:
        value = record.get(converge.metric)
        if is_finite_number(value) and converge.reached(value):
            return float(record["epoch"])
    return None


def prune_reason(rule: PruneRule, record: Mapping[str, Any]) -> str | None:
    """Why the run that reported ``record`` should stop, or None.

    The caller never asks about a run that has reached the target.
    """
    raw = record.get(rule.converge.metric)
    if not is_finite_number(raw):
        return None
    value = float(raw)
    epoch = float(record["epoch"])
    # A reference's value at the evaluation where it reached the target says
    # only that it converged there; a run behind it may converge at the next
    # evaluation, so such values are no bar.
    at_epoch = [
        v
        for curve in rule.references
        for e, v in curve
        if e == epoch and not rule.converge.reached(v)
    ]
    if len(at_epoch) < rule.min_reference_runs:
        return None

    if rule.converge.objective == "maximize":
        worst = min(at_epoch)
        behind = value < worst - rule.margin
    else:
        worst = max(at_epoch)
        behind = value > worst + rule.margin
    if not behind:
        return None
    return (
        f"{rule.converge.metric} {value:g} at epoch {epoch:g} is behind all "
        f"{len(at_epoch)} converged runs (the worst had {worst:g}; margin "
        f"{rule.margin:g})"
    )


def stop_decision(
    task: RunTask, records: Sequence[Mapping[str, Any]]
) -> tuple[StopKind, str] | None:
    """Whether the newest of ``records`` ends the run early, and why."""
    if not records:
        return None
    newest = records[-1]
    converge = task.stop_at_target or (task.prune.converge if task.prune else None)
    if converge is None:
        return None
    if converge_epoch(records, converge) is not None:
        if task.stop_at_target is None:
            return None
        epoch = float(newest["epoch"])
        return "target", f"{converge.metric} reached its target at epoch {epoch:g}"
    if task.prune is not None:
        reason = prune_reason(task.prune, newest)
        if reason is not None:
            return "pruned", reason
    return None


def reference_curves(
    observations: Iterable[Mapping[str, Any]],
) -> tuple[Curve, ...]:
    """The curves of every seed that reached the target, from metadata.

    ``observations`` are the observations' metadata, as the runner stores
    it (``curves`` and ``converge_epochs`` per seed).
    """
    references: list[Curve] = []
    for metadata in observations:
        curves = metadata.get("curves") or []
        epochs = metadata.get("converge_epochs") or []
        for curve, epoch in zip(curves, epochs):
            if epoch is not None:
                references.append(tuple((float(e), float(v)) for e, v in curve))
    return tuple(references)


def summarize_point(spec: ExperimentSpec, results: Sequence[RunResult]) -> PointOutcome:
    """Fold the seeds of one point into one observation."""
    results = sorted(results, key=lambda r: r.task.seed)
    seeds = [r.task.seed for r in results]
    compute_seconds = sum(r.seconds for r in results)
    executor = spec.job.executor if spec.job is not None else None
    executor = executor or ExecutorSpec()
    held_seconds = sum(a.wall_seconds for r in results for a in r.attempts)
    base: dict[str, Any] = {
        "seeds": seeds,
        "compute_seconds": round(compute_seconds, 3),
        "cluster": executor.cluster,
        "nodes": executor.nodes,
        "devices": executor.devices,
        "device_seconds": round(held_seconds * executor.devices, 3),
        "runs": [r.record() for r in results],
    }
    stopped = [r.task.seed for r in results if r.stopped == "target"]
    if stopped:
        base["stopped_at_target"] = stopped
    pruned = [
        {"seed": r.task.seed, "reason": r.stop_reason}
        for r in results
        if r.stopped == "pruned"
    ]
    if pruned:
        base["pruned"] = pruned

    per_seed: list[dict[str, float]] = []
    converge_epochs: list[float | None] = []
    for result in results:
        metrics, epoch, failure = _seed_metrics(spec, result)
        if failure is not None:
            return PointOutcome(failed=True, metadata={**base, **failure})
        per_seed.append(metrics)
        converge_epochs.append(epoch)

    values = []
    for metric in spec.metrics:
        samples = [m[metric.name] for m in per_seed if metric.name in m]
        if len(samples) < len(per_seed):
            continue  # a stored metric some seed did not report
        try:
            values.append(_mean_and_stddev(metric.name, samples))
        except OverflowError as error:
            reason = f"{error}; report values of a sane size"
            return PointOutcome(failed=True, metadata={**base, "reason": reason})

    metadata = dict(base)
    if spec.job is not None and spec.job.converge is not None:
        metadata["converge_epochs"] = converge_epochs
        metadata["converged"] = all(e is not None for e in converge_epochs)
        metadata["curves"] = [
            _curve(result.epochs, spec.job.converge.metric) for result in results
        ]
    return PointOutcome(failed=False, values=values, metadata=metadata)


def _seed_metrics(
    spec: ExperimentSpec, result: RunResult
) -> tuple[dict[str, float], float | None, dict[str, Any] | None]:
    """One seed's metrics and converge epoch, or the reason it failed."""
    failure = {
        "failed_seed": result.task.seed,
        "exit_code": result.exit_code,
        "stderr_tail": result.stderr[-STDERR_TAIL_CHARS:],
    }
    reason = _failure_reason(result)
    if reason is not None:
        return {}, None, {**failure, "reason": reason}
    records = result.epochs

    job = spec.job
    converge = job.converge if job is not None else None
    evaluation = job.evaluation if job is not None else None
    if evaluation is not None:
        _warn_off_grid(result, evaluation)

    derived = converge.as_ if converge is not None else None
    metrics: dict[str, float] = {}
    for metric in spec.metrics:
        if metric.name == derived:
            continue
        last = _last_value(records, metric.name)
        if last is None and metric.strategy == "store":
            continue  # stored metrics are optional
        if last is None:
            reason = f"never reported a finite value for metric {metric.name!r}"
            return {}, None, {**failure, "reason": reason}
        metrics[metric.name] = last

    epoch = None
    if converge is not None:
        epoch = converge_epoch(records, converge)
        last_epoch = float(records[-1]["epoch"])
        # A censored run is reported at the next evaluation it would have
        # had; the point is then flagged unconverged by the caller.
        censored = (
            last_epoch + 1 if evaluation is None else evaluation.next_after(last_epoch)
        )
        metrics[converge.as_] = censored if epoch is None else epoch
    return metrics, epoch, None


def _failure_reason(result: RunResult) -> str | None:
    if result.loss is not None:
        return result.loss_reason or result.loss
    if not result.epochs:
        if result.timed_out:
            return "timed out"
        if result.exit_code != 0:
            return _exit_text(result.exit_code)
        return "reported no metrics"
    if result.stopped is not None:
        return None
    if result.timed_out:
        return "timed out"
    if result.status == "aborted":
        return "its log reports run_stop with status aborted"
    if result.status is None and result.exit_code != 0:
        return _exit_text(result.exit_code)
    return None


def _exit_text(exit_code: int | None) -> str:
    if exit_code is not None and exit_code < 0:
        name = _signal_name(-exit_code)
        # The kernel's out-of-memory killer ends a process with SIGKILL.
        hint = (
            " (the kernel's out-of-memory killer sends it)" if name == "SIGKILL" else ""
        )
        return f"killed by {name}{hint}"
    return f"exited with status {exit_code}"


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _warn_off_grid(result: RunResult, evaluation: EvaluationSpec) -> None:
    off_grid = [r["epoch"] for r in result.epochs if not evaluation.on_grid(r["epoch"])]
    if off_grid:
        logger.warning(
            "seed %d of suggestion %d reported epochs %s, off the evaluation "
            "grid (first %d, every %d); check job.evaluation",
            result.task.seed,
            result.task.suggestion_id,
            off_grid,
            evaluation.first,
            evaluation.period,
        )


def _curve(records: Sequence[Mapping[str, Any]], metric: str) -> list[list[float]]:
    return [
        [float(r["epoch"]), float(r[metric])]
        for r in records
        if is_finite_number(r.get(metric))
    ]


def _last_value(records: Sequence[Mapping[str, Any]], name: str) -> float | None:
    for record in reversed(records):
        value = record.get(name)
        if is_finite_number(value):
            return float(value)
    return None


def _mean_and_stddev(name: str, samples: Sequence[float]) -> dict[str, Any]:
    """The mean and sample stddev; OverflowError when they are not finite."""
    too_large = OverflowError(f"metric {name!r}: {list(samples)} overflow a float")
    try:
        mean = math.fsum(samples) / len(samples)
        entry: dict[str, Any] = {"name": name, "value": mean}
        if len(samples) > 1:
            squares = math.fsum((x - mean) ** 2 for x in samples)
            entry["value_stddev"] = math.sqrt(squares / (len(samples) - 1))
    except OverflowError:
        raise too_large from None
    if not all(math.isfinite(v) for v in (mean, entry.get("value_stddev", 0.0))):
        raise too_large
    return entry
