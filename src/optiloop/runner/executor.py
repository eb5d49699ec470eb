"""Executors launch the seeds of a point and hand back what they printed.

``LocalExecutor`` runs each task as a process on this machine, at most
``slots`` at a time.  A task's command goes through ``/bin/sh`` so that users'
launch templates may set environment variables or chain commands; parameter
values are quoted for the shell when the template is rendered.  The job sees
the Python environment optiloop runs in: its ``bin`` folder leads ``PATH``, so
``python -m ...`` in a template finds the same interpreter and packages.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

from optiloop.runner.jobs import RunResult, RunTask

logger = logging.getLogger(__name__)


class Executor(Protocol):
    """Runs tasks concurrently; ``slots`` is how many at once."""

    slots: int

    def submit(self, task: RunTask) -> Future[RunResult]: ...

    def shutdown(self) -> None: ...


class LocalExecutor:
    """Runs tasks as local processes, ``slots`` at a time."""

    def __init__(self, slots: int, workdir: str | Path | None = None) -> None:
        if slots < 1:
            raise ValueError(f"slots must be >= 1, got {slots}")
        self.slots = slots
        self.workdir = Path(workdir) if workdir is not None else None
        self._pool = ThreadPoolExecutor(max_workers=slots, thread_name_prefix="job")
        self._env = _job_environment()

    def submit(self, task: RunTask) -> Future[RunResult]:
        return self._pool.submit(self._run, task)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _run(self, task: RunTask) -> RunResult:
        logger.debug(
            "launching seed %d of suggestion %d: %s",
            task.seed,
            task.suggestion_id,
            task.command,
        )
        started = time.monotonic()
        process = subprocess.Popen(
            ["/bin/sh", "-c", task.command],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            cwd=self.workdir,
            env=self._env,
            text=True,
            start_new_session=True,
        )
        timed_out = False
        try:
            stdout, stderr = process.communicate(timeout=task.timeout_seconds)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(process)
            stdout, stderr = process.communicate()
        seconds = time.monotonic() - started

        logger.debug(
            "seed %d of suggestion %d ended with status %s in %.1f s",
            task.seed,
            task.suggestion_id,
            process.returncode,
            seconds,
        )
        return RunResult(
            task=task,
            exit_code=process.returncode,
            stdout=stdout,
            stderr=stderr,
            seconds=seconds,
            timed_out=timed_out,
        )


def _job_environment() -> dict[str, str]:
    env = dict(os.environ)
    python_bin = str(Path(sys.executable).parent)
    env["PATH"] = python_bin + os.pathsep + env.get("PATH", "")
    # A job's own threads compete with its sibling jobs for the same cores.
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def _kill_group(process: subprocess.Popen[str]) -> None:
    """Kill the shell and every process it started."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, 9)
