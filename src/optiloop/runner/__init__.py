"""The loops that train suggested points: executors, job output, the inner loop."""

from optiloop.runner.executor import Executor, LocalExecutor, make_executor
from optiloop.runner.inner import (
    LoopEvent,
    LoopSummary,
    check_runnable,
    run_experiment,
)
from optiloop.runner.jobs import (
    PointOutcome,
    RunResult,
    RunTask,
    converge_epoch,
    parse_metric_lines,
    render_command,
    render_path,
    summarize_point,
)
from optiloop.runner.readers import MetricReader

__all__ = [
    "Executor",
    "LocalExecutor",
    "LoopEvent",
    "LoopSummary",
    "MetricReader",
    "PointOutcome",
    "RunResult",
    "RunTask",
    "check_runnable",
    "converge_epoch",
    "make_executor",
    "parse_metric_lines",
    "render_command",
    "render_path",
    "run_experiment",
    "summarize_point",
]
