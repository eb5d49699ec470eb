"""One suite, every executor: local processes and a real Ray cluster.

Each case runs the stand-in job (``fake_job.py``), whose accuracy is
``start + 0.1 * epoch``, so the epoch a rule fires at is known by hand.
The Ray cases use the session's loopback cluster (``ray_cluster``).
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from optiloop.experiment import ConvergeSpec, ExecutorSpec
from optiloop.runner import Executor, LocalExecutor, RunResult, RunTask
from optiloop.runner.jobs import PruneRule

FAKE_JOB = Path(__file__).with_name("fake_job.py")
TARGET = ConvergeSpec(metric="eval_accuracy", target=0.8)

MakeExecutor = Callable[..., Executor]


def fake(args: str) -> str:
    return f"{sys.executable} {FAKE_JOB} {args}"


@pytest.fixture(params=["local", "ray"])
def make_executor(request: pytest.FixtureRequest) -> Iterator[MakeExecutor]:
    """``make_executor(slots=1, **settings)``: a new executor of the kind."""
    made: list[Executor] = []
    address = None
    if request.param == "ray":
        address = request.getfixturevalue("ray_cluster").address

    def make(
        slots: int = 1, grace_seconds: float = 5.0, **settings: object
    ) -> Executor:
        executor: Executor
        if address is None:
            executor = LocalExecutor(slots, grace_seconds=grace_seconds)
        else:
            from optiloop.runner.ray_executor import RayExecutor

            spec = ExecutorSpec.model_validate(
                {"kind": "ray", "address": address, **settings}
            )
            executor = RayExecutor(slots, spec, grace_seconds=grace_seconds)
        made.append(executor)
        return executor

    yield make
    for executor in made:
        executor.shutdown()


def run(make_executor: MakeExecutor, task: RunTask, **settings: object) -> RunResult:
    return make_executor(**settings).submit(task).result(timeout=120)


def test_a_run_is_stopped_at_the_evaluation_that_reaches_the_target(
    make_executor: MakeExecutor,
) -> None:
    # 0.5 + 0.1 * epoch reaches 0.8 at epoch 3; left alone, the job would
    # take 60 epochs of 1 s.
    task = RunTask(1, 0, fake("--epochs 60 --sleep 1"), stop_at_target=TARGET)
    ran = run(make_executor, task)

    assert ran.stopped == "target"
    assert [r["epoch"] for r in ran.epochs] == [1, 2, 3]
    assert ran.seconds < 5.0
    assert ran.verdict() == ("ok", "eval_accuracy reached its target at epoch 3")
    assert ran.node


def test_a_run_behind_every_converged_run_is_pruned(
    make_executor: MakeExecutor,
) -> None:
    # References had 0.62 and 0.60 at epoch 2; with a margin of 0.05 the bar
    # is 0.55, and the job (0.3 + 0.1 * epoch) has 0.5 there.
    references = (
        ((1.0, 0.5), (2.0, 0.62), (3.0, 0.81)),
        ((2.0, 0.60), (3.0, 0.80)),
    )
    rule = PruneRule(TARGET, references, margin=0.05, min_reference_runs=2)
    task = RunTask(1, 0, fake("--epochs 60 --sleep 1 --start 0.3"), prune=rule)
    ran = run(make_executor, task)

    assert ran.stopped == "pruned"
    assert [r["epoch"] for r in ran.epochs] == [1, 2]
    status, reason = ran.verdict()
    assert status == "pruned"
    assert reason is not None and "epoch 2" in reason


def test_a_run_past_its_timeout_is_killed_and_not_retried(
    make_executor: MakeExecutor,
) -> None:
    task = RunTask(1, 0, fake("--epochs 60 --sleep 1"), timeout_seconds=1.5)
    ran = run(make_executor, task)

    assert ran.timed_out
    assert ran.seconds < 5.0
    assert ran.verdict() == ("timeout", "timed out")
    assert [a.status for a in ran.attempts] == ["timeout"]


def test_the_jobs_own_failure_is_recorded_with_its_output_and_never_retried(
    make_executor: MakeExecutor,
) -> None:
    ran = run(make_executor, RunTask(1, 7, fake("--epochs 5 --fail")), max_retries=3)

    assert ran.exit_code == 3
    assert ran.verdict() == ("failed", "exited with status 3")
    record = ran.record()
    assert record["seed"] == 7
    assert record["status"] == "failed"
    assert [a["status"] for a in record["attempts"]] == ["failed"]
    assert "INFO starting training" in record["stdout_tail"]
    assert "CUDA out of memory (simulated)" in record["stderr_tail"]


def test_every_line_the_job_printed_comes_back(make_executor: MakeExecutor) -> None:
    ran = run(make_executor, RunTask(1, 0, fake("--epochs 4")))

    assert ran.exit_code == 0
    lines = ran.stdout.splitlines()
    assert lines[0] == "INFO starting training"
    assert [line for line in lines if line.startswith("epoch ")] == [
        f"epoch {e}: loss going down" for e in range(1, 5)
    ]
    assert [r["eval_accuracy"] for r in ran.epochs] == [0.6, 0.7, 0.8, 0.9]


def test_slots_run_at_once(make_executor: MakeExecutor) -> None:
    # On two slots, a short run submitted after a long one (records at 0,
    # 1, 2 and 3 s, then 1 s more) reports before the long one ends; on one
    # slot it could start only after.  The job stamps each record with the
    # time it was written.  The long run's 4 s leave room for a Ray worker
    # process to start on a loaded machine.
    executor = make_executor(slots=2)
    long = executor.submit(RunTask(1, 0, fake("--epochs 4 --sleep 1")))
    short = executor.submit(RunTask(1, 1, fake("--epochs 1")))
    long_run, short_run = long.result(timeout=120), short.result(timeout=120)

    [short_record] = short_run.epochs
    long_ended = long_run.epochs[-1]["time"] + 1.0
    assert short_record["time"] < long_ended


def test_a_run_waiting_for_resources_is_logged(
    ray_cluster: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from optiloop.runner import ray_executor
    from optiloop.runner.ray_executor import RayExecutor

    monkeypatch.setattr(ray_executor, "QUEUED_LOG_SECONDS", 1.5)
    caplog.set_level(logging.INFO, logger="optiloop.runner.ray_executor")
    # Each node has 2 CPUs, so two runs of 2 CPUs fill the cluster and a
    # third waits for one of them to end.
    settings = ExecutorSpec.model_validate(
        {"kind": "ray", "address": ray_cluster.address, "resources": {"num_cpus": 2}}
    )
    executor = RayExecutor(3, settings)
    try:
        assert executor.slots == 2
        futures = [
            executor.submit(RunTask(5, seed, fake("--epochs 3 --sleep 1")))
            for seed in range(3)
        ]
        results = [f.result(timeout=120) for f in futures]
    finally:
        executor.shutdown()

    assert [r.verdict()[0] for r in results] == ["ok", "ok", "ok"]
    # Ray does not place waiting runs in the order they came, so any seed
    # may be the one that waited.
    queued = re.compile(
        r"seed [012] of suggestion 5 is queued: it asks for \{'CPU': 2.0\}, "
        r"the cluster has \{'CPU': 0.0\} free"
    )
    assert any(queued.fullmatch(m) for m in caplog.messages), caplog.messages
