"""The local executor follows a run as it goes and ends it when a rule says so."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from optiloop.experiment import ConvergeSpec
from optiloop.runner import LocalExecutor, RunResult, RunTask
from optiloop.runner.jobs import PruneRule

FAKE_JOB = Path(__file__).with_name("fake_job.py")
TARGET = ConvergeSpec(metric="eval_accuracy", target=0.8)


def run(task: RunTask, workdir: Path | None = None, grace: float = 5.0) -> RunResult:
    executor = LocalExecutor(slots=1, workdir=workdir, grace_seconds=grace)
    try:
        return executor.submit(task).result()
    finally:
        executor.shutdown()


def fake(args: str) -> str:
    return f"{sys.executable} {FAKE_JOB} {args}"


def test_a_run_is_stopped_at_the_evaluation_that_reaches_the_target() -> None:
    # 0.5 + 0.1 * epoch reaches 0.8 at epoch 3; left alone, the job would
    # take 60 epochs of 1 s.
    task = RunTask(1, 0, fake("--epochs 60 --sleep 1"), stop_at_target=TARGET)
    ran = run(task)
    ended = time.time()

    assert ran.stopped == "target"
    assert [r["epoch"] for r in ran.epochs] == [1, 2, 3]
    # The run was over before its fourth evaluation, 1 s after the third.
    assert ended - ran.epochs[-1]["time"] < 1.0
    assert ran.seconds < 4.0


def test_a_job_that_ignores_sigterm_is_killed_after_the_grace_period() -> None:
    task = RunTask(
        1, 0, fake("--epochs 60 --sleep 1 --ignore-term"), stop_at_target=TARGET
    )
    ran = run(task, grace=0.5)

    assert ran.stopped == "target"
    assert ran.exit_code != 0
    assert ran.seconds < 5.0


def test_what_a_job_logs_after_it_was_stopped_is_not_its_result() -> None:
    task = RunTask(
        1,
        0,
        fake("--mllog --epochs 60 --sleep 1 --abort-on-term"),
        metrics_format="mllog",
        stop_at_target=TARGET,
    )
    ran = run(task)

    # The job logged "aborted" on SIGTERM and exited badly; it still converged.
    assert '"status": "aborted"' in ran.stdout
    assert ran.exit_code != 0
    assert (ran.stopped, ran.status) == ("target", None)


def test_without_stop_the_run_goes_to_its_end() -> None:
    ran = run(RunTask(1, 0, fake("--epochs 5")))
    assert ran.stopped is None
    assert [r["epoch"] for r in ran.epochs] == [1, 2, 3, 4, 5]


def test_an_mllog_file_is_followed_while_the_job_writes_it(tmp_path: Path) -> None:
    task = RunTask(
        1,
        0,
        fake("--mllog --log-file logs/seed0.log --epochs 60 --sleep 1"),
        metrics_format="mllog",
        metrics_file="logs/seed0.log",
        stop_at_target=TARGET,
    )
    (tmp_path / "logs").mkdir()
    # A log left by an earlier attempt is moved aside, not read.
    (tmp_path / "logs" / "seed0.log").write_text(
        ':::MLLOG {"key": "eval_accuracy", "value": 0.99, '
        '"metadata": {"epoch_num": 1}}\n'
    )
    ran = run(task, workdir=tmp_path)

    assert ran.stopped == "target"
    assert ran.epochs == [
        {"epoch": 1, "eval_accuracy": 0.6},
        {"epoch": 2, "eval_accuracy": 0.7},
        {"epoch": 3, "eval_accuracy": 0.8},
    ]
    assert ran.seconds < 4.0
    assert len(list((tmp_path / "logs").glob("seed0.log.stale-*"))) == 1


def test_a_finished_mllog_file_is_read_to_its_last_line(tmp_path: Path) -> None:
    task = RunTask(
        1,
        0,
        fake("--mllog --log-file run.log --epochs 4"),
        metrics_format="mllog",
        metrics_file=str(tmp_path / "run.log"),
    )
    ran = run(task, workdir=tmp_path)

    assert [r["eval_accuracy"] for r in ran.epochs] == [0.6, 0.7, 0.8, 0.9]
    assert ran.status == "success"


def test_a_run_behind_every_converged_run_is_pruned() -> None:
    # Converged references had 0.62 and 0.60 at epoch 2; with a margin of
    # 0.05 the bar there is 0.55.  The job (0.1 * epoch + 0.3) has 0.5 at
    # epoch 2 and is stopped; at epoch 1 only one reference has a value.
    references = (
        ((1.0, 0.5), (2.0, 0.62), (3.0, 0.81)),
        ((2.0, 0.60), (3.0, 0.80)),
    )
    rule = PruneRule(TARGET, references, margin=0.05, min_reference_runs=2)
    task = RunTask(1, 0, fake("--epochs 60 --sleep 1 --start 0.3"), prune=rule)
    ran = run(task)

    assert ran.stopped == "pruned"
    assert [r["epoch"] for r in ran.epochs] == [1, 2]
    assert ran.stop_reason is not None and "epoch 2" in ran.stop_reason
    assert ran.seconds < 3.0


def test_a_reader_that_fails_takes_its_job_down_with_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "broken_reader.py").write_text(
        "class Reader:\n"
        "    records = []\n"
        "    status = None\n"
        "    def feed(self, line):\n"
        "        raise RuntimeError('cannot read ' + line.strip())\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    task = RunTask(
        1, 0, fake("--epochs 60 --sleep 1"), metrics_format="broken_reader:Reader"
    )
    started = time.monotonic()

    with pytest.raises(RuntimeError, match="cannot read INFO starting training"):
        run(task)
    # The 60 s job was killed, not waited for.
    assert time.monotonic() - started < 5.0
