"""What a training job prints, and what the runner reports for a point.

A job prints one JSON object per evaluated epoch on its stdout, for example
``{"epoch": 3, "eval_accuracy": 0.91}``; other lines (a framework's logs) are
ignored.  From those lines the runner takes, for each seed:

- every metric of the spec from the last value the job printed for it;
- the converge epoch: the first evaluated epoch at which the converge metric
  reaches its target (``>=`` when maximized, ``<=`` when minimized).

A seed that never reaches the target has no converge epoch.  It is reported
as one past its last evaluated epoch, a lower bound that tells the optimizer
the region is slow, and the point is marked ``converged: false`` in the
observation's metadata, which makes it infeasible: it can never be the best
point, whatever its other metrics say.

The seeds of a point become one observation: the mean of each metric, with
the sample standard deviation over seeds as ``value_stddev``.  If any seed
fails (non-zero exit, a timeout, no metrics, or a metric of the spec never
printed) the whole point is a failed observation, with the failing seed's
exit code and the tail of its stderr in the metadata.
"""

from __future__ import annotations

import json
import math
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from optiloop.experiment import ConvergeSpec, ExperimentSpec
from optiloop.space import Assignments

# Keep this much of a failed job's stderr: enough for a traceback's end.
STDERR_TAIL_CHARS = 2000


@dataclass(frozen=True)
class RunTask:
    """One seed of one point, ready to launch."""

    suggestion_id: int
    seed: int
    command: str
    timeout_seconds: float | None = None


@dataclass(frozen=True)
class RunResult:
    """What one finished process left behind."""

    task: RunTask
    exit_code: int | None
    stdout: str
    stderr: str
    seconds: float
    timed_out: bool = False

    @property
    def epochs(self) -> list[dict[str, Any]]:
        return parse_metric_lines(self.stdout.splitlines())


@dataclass
class PointOutcome:
    """The observation the runner reports for one point."""

    failed: bool
    values: list[dict[str, Any]] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)


def render_command(template: str, assignments: Assignments, seed: int) -> str:
    """The shell command for one seed, each value quoted for the shell."""
    values = {name: shlex.quote(str(value)) for name, value in assignments.items()}
    return template.format(**values, seed=seed)


def parse_metric_lines(lines: Iterable[str]) -> list[dict[str, Any]]:
    """The JSON objects among ``lines``, numbered by epoch.

    A line that is not a JSON object is skipped.  An object without an
    ``epoch`` field gets the count of metric lines so far.
    """
    records: list[dict[str, Any]] = []
    for line in lines:
        text = line.strip()
        if not text.startswith("{"):
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError:
            continue
        if not isinstance(record, dict):
            continue
        record.setdefault("epoch", len(records) + 1)
        records.append(record)
    return records


def converge_epoch(
    records: Sequence[Mapping[str, Any]], converge: ConvergeSpec
) -> float | None:
    """The first evaluated epoch whose metric reaches the target, or None."""
    for record in records:
        value = record.get(converge.metric)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        if converge.objective == "maximize":
            reached = value >= converge.target
        else:
            reached = value <= converge.target
        if reached:
            return float(record["epoch"])
    return None


def summarize_point(spec: ExperimentSpec, results: Sequence[RunResult]) -> PointOutcome:
    """Fold the seeds of one point into one observation."""
    results = sorted(results, key=lambda r: r.task.seed)
    seeds = [r.task.seed for r in results]
    compute_seconds = sum(r.seconds for r in results)
    base = {"seeds": seeds, "compute_seconds": round(compute_seconds, 3)}

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
        samples = [seed_metrics[metric.name] for seed_metrics in per_seed]
        values.append(_mean_and_stddev(metric.name, samples))

    metadata = dict(base)
    if spec.job is not None and spec.job.converge is not None:
        metadata["converge_epochs"] = converge_epochs
        metadata["converged"] = all(e is not None for e in converge_epochs)
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
    if result.timed_out:
        return {}, None, {**failure, "reason": "timed out"}
    if result.exit_code != 0:
        return {}, None, {**failure, "reason": f"exited with status {result.exit_code}"}
    records = result.epochs
    if not records:
        return {}, None, {**failure, "reason": "printed no metrics"}

    converge = spec.job.converge if spec.job is not None else None
    derived = converge.as_ if converge is not None else None
    metrics: dict[str, float] = {}
    for metric in spec.metrics:
        if metric.name == derived:
            continue
        last = _last_value(records, metric.name)
        if last is None:
            reason = f"never printed a finite value for metric {metric.name!r}"
            return {}, None, {**failure, "reason": reason}
        metrics[metric.name] = last

    epoch = None
    if converge is not None:
        epoch = converge_epoch(records, converge)
        last_epoch = float(records[-1]["epoch"])
        # A censored run is reported just past its end; the point is then
        # flagged unconverged by the caller.
        metrics[converge.as_] = last_epoch + 1 if epoch is None else epoch
    return metrics, epoch, None


def _last_value(records: Sequence[Mapping[str, Any]], name: str) -> float | None:
    for record in reversed(records):
        value = record.get(name)
        if _is_number(value) and math.isfinite(value):
            return float(value)
    return None


def _mean_and_stddev(name: str, samples: Sequence[float]) -> dict[str, Any]:
    mean = math.fsum(samples) / len(samples)
    entry: dict[str, Any] = {"name": name, "value": mean}
    if len(samples) > 1:
        variance = math.fsum((x - mean) ** 2 for x in samples) / (len(samples) - 1)
        entry["value_stddev"] = math.sqrt(variance)
    return entry


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
