"""Executors launch the seeds of a point and hand back what they reported.

``LocalExecutor`` runs each task as a process on this machine, at most
``slots`` at a time.  A task's command goes through ``/bin/sh`` so that users'
launch templates may set environment variables or chain commands; parameter
values are quoted for the shell when the template is rendered.  The job sees
the Python environment optiloop runs in: its ``bin`` folder leads ``PATH``, so
``python -m ...`` in a template finds the same interpreter and packages.

The executor reads a job's records as they arrive (stdout line by line, or
the metrics file as it grows), so it can end a run the moment a stop rule
says so: SIGTERM to the job's process group, then SIGKILL if it is still
alive after ``grace_seconds``.  Lines the job writes after that are kept in
``stdout`` but not read as records, so a job that logs "aborted" on SIGTERM
is still counted as stopped, not failed.  A metrics file left at the same
path by an earlier attempt is renamed (``<name>.stale-<time>``) before the
launch, so its lines are not read as this run's.

A job never outlives the process that launched it: a small reaper process
holds the list of running jobs and, the moment its pipe from the launcher
closes (the runner was killed, even by SIGKILL, or a Ray worker died), ends
every job on it with SIGKILL.  Without it a killed runner would leave its
jobs holding their devices while ``optiloop resume`` starts them again.

``make_executor`` picks the executor a spec's ``job.executor`` names:
``LocalExecutor`` by default, ``RayExecutor`` (``optiloop.runner.
ray_executor``) for ``kind: ray``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import IO, Protocol

from optiloop.experiment import ExecutorSpec, ExperimentSpec
from optiloop.runner.jobs import RunResult, RunTask, StopKind, stop_decision
from optiloop.runner.readers import reader_factory

logger = logging.getLogger(__name__)

# How often a running job's metrics file and deadlines are checked.
POLL_SECONDS = 0.1


class Executor(Protocol):
    """Runs tasks concurrently; ``slots`` is how many at once.

    ``slots`` may change while the loop runs (a Ray cluster that grows or
    shrinks), so the loop reads it again before each launch.
    """

    @property
    def slots(self) -> int: ...

    def submit(self, task: RunTask) -> Future[RunResult]: ...

    def shutdown(self) -> None: ...


def make_executor(
    spec: ExperimentSpec,
    slots: int | None = None,
    workdir: str | Path | None = None,
) -> Executor:
    """The executor ``spec.job.executor`` names, ``slots`` runs at a time.

    ``slots`` defaults to the spec's ``parallel_bandwidth``.  Ray is
    imported only here, when a spec asks for it.
    """
    settings = _executor_settings(spec)
    slots = slots or spec.parallel_bandwidth
    if settings.kind == "ray":
        from optiloop.runner.ray_executor import RayExecutor

        return RayExecutor(slots, settings, workdir=workdir)
    return LocalExecutor(slots, workdir=workdir)


def _executor_settings(spec: ExperimentSpec) -> ExecutorSpec:
    job = spec.job
    if job is None or job.executor is None:
        return ExecutorSpec()
    return job.executor


class LocalExecutor:
    """Runs tasks as local processes, ``slots`` at a time."""

    def __init__(
        self,
        slots: int,
        workdir: str | Path | None = None,
        grace_seconds: float = 10.0,
    ) -> None:
        if slots < 1:
            raise ValueError(f"slots must be >= 1, got {slots}")
        self.slots = slots
        self.workdir = Path(workdir) if workdir is not None else None
        self.grace_seconds = grace_seconds
        self._pool = ThreadPoolExecutor(max_workers=slots, thread_name_prefix="job")
        self._env = job_environment()
        self._node = socket.gethostname()

    def submit(self, task: RunTask) -> Future[RunResult]:
        return self._pool.submit(self._run, task)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _run(self, task: RunTask) -> RunResult:
        return run_process(
            task,
            workdir=self.workdir,
            env=self._env,
            grace_seconds=self.grace_seconds,
            node=self._node,
        )


def run_process(
    task: RunTask,
    *,
    workdir: Path | None,
    env: dict[str, str],
    grace_seconds: float,
    node: str | None = None,
    on_stdout: Callable[[list[str]], None] | None = None,
) -> RunResult:
    """Run one task as a process here and follow it to its end.

    ``on_stdout`` receives the job's stdout lines as they arrive, a few at
    a time (the Ray executor streams them back to the runner).
    """
    logger.debug(
        "launching seed %d of suggestion %d: %s",
        task.seed,
        task.suggestion_id,
        task.command,
    )
    metrics_file = None
    if task.metrics_file is not None:
        metrics_file = _MetricsFile(_resolve(task.metrics_file, workdir))

    with tempfile.TemporaryFile() as stderr_file:
        started = time.monotonic()
        process = subprocess.Popen(
            ["/bin/sh", "-c", task.command],
            stdout=subprocess.PIPE,
            stderr=stderr_file,
            stdin=subprocess.DEVNULL,
            cwd=workdir,
            env=env,
            text=True,
            encoding="utf-8",
            errors="replace",
            start_new_session=True,
        )
        _REAPER.watch(process.pid)
        try:
            watch = _Watch(task, process, grace_seconds, started)
            stdout = watch.follow(metrics_file, on_stdout)
        except BaseException:
            # A reader that fails must not leave the job running alone.
            _signal_group(process, signal.SIGKILL)
            process.wait()
            raise
        finally:
            _REAPER.forget(process.pid)
        seconds = time.monotonic() - started
        stderr_file.seek(0)
        stderr = stderr_file.read().decode("utf-8", errors="replace")

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
        timed_out=watch.timed_out,
        records=watch.reader.records,
        status=watch.reader.status,
        stopped=watch.stopped,
        stop_reason=watch.stop_reason,
        node=node,
    )


def _resolve(path: str, workdir: Path | None) -> Path:
    resolved = Path(path)
    if not resolved.is_absolute() and workdir is not None:
        resolved = workdir / resolved
    return resolved


class _Watch:
    """Follows one running process: reads its records, applies stop rules."""

    def __init__(
        self,
        task: RunTask,
        process: subprocess.Popen[str],
        grace_seconds: float,
        started: float,
    ) -> None:
        self.task = task
        self.process = process
        self.grace_seconds = grace_seconds
        self.reader = reader_factory(task.metrics_format)()
        self.timed_out = False
        self.stopped: StopKind | None = None
        self.stop_reason: str | None = None
        self._deadline = (
            started + task.timeout_seconds if task.timeout_seconds else None
        )
        self._kill_at: float | None = None
        self._checked = 0

    def follow(
        self,
        metrics_file: _MetricsFile | None,
        on_stdout: Callable[[list[str]], None] | None = None,
    ) -> str:
        """Read the process's output until it ends; return all of stdout."""
        assert self.process.stdout is not None
        lines: queue.Queue[str | None] = queue.Queue()
        pump = threading.Thread(
            target=_pump, args=(self.process.stdout, lines), daemon=True
        )
        pump.start()

        stdout: list[str] = []
        stdout_open = True
        while stdout_open or self.process.poll() is None:
            new_lines: list[str] = []
            if stdout_open:
                new_lines, stdout_open = _take(lines)
                stdout.extend(new_lines)
                if new_lines and on_stdout is not None:
                    on_stdout(new_lines)
            else:
                # The job closed its stdout but has not exited yet.
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.process.wait(timeout=POLL_SECONDS)
            if metrics_file is not None:
                self._read(metrics_file.new_lines())
            else:
                self._read(new_lines)
            self._enforce_deadlines()

        pump.join()
        self.process.wait()
        if metrics_file is not None:
            self._read(metrics_file.new_lines(final=True))
        return "".join(stdout)

    def _read(self, lines: list[str]) -> None:
        # Once a run is being ended, what it writes is no longer its result.
        if self.stopped is not None or self.timed_out:
            return
        for line in lines:
            self.reader.feed(line)
            records = self.reader.records
            while self._checked < len(records) and self.stopped is None:
                self._checked += 1
                decision = stop_decision(self.task, records[: self._checked])
                if decision is not None:
                    self._stop(*decision)
            if self.stopped is not None:
                return

    def _stop(self, kind: StopKind, reason: str) -> None:
        self.stopped, self.stop_reason = kind, reason
        logger.info(
            "stopping seed %d of suggestion %d: %s",
            self.task.seed,
            self.task.suggestion_id,
            reason,
        )
        _signal_group(self.process, signal.SIGTERM)
        self._kill_at = time.monotonic() + self.grace_seconds

    def _enforce_deadlines(self) -> None:
        now = time.monotonic()
        if self._kill_at is not None and now >= self._kill_at:
            _signal_group(self.process, signal.SIGKILL)
            self._kill_at = None
        if (
            self._deadline is not None
            and now >= self._deadline
            and not self.timed_out
            and self.stopped is None
        ):
            self.timed_out = True
            _signal_group(self.process, signal.SIGKILL)


class _MetricsFile:
    """The complete lines a job has appended to its metrics file so far."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._partial = b""
        if path.exists():
            # A file left by an earlier attempt would be read as this run's.
            stale = path.with_name(f"{path.name}.stale-{time.time_ns()}")
            logger.warning("moving earlier metrics file %s to %s", path, stale)
            path.rename(stale)

    def new_lines(self, final: bool = False) -> list[str]:
        try:
            with self.path.open("rb") as file:
                file.seek(self._offset)
                chunk = file.read()
        except FileNotFoundError:
            return []
        self._offset += len(chunk)
        data = self._partial + chunk
        lines = data.split(b"\n")
        self._partial = lines.pop()
        if final and self._partial:
            lines.append(self._partial)
            self._partial = b""
        return [line.decode("utf-8", errors="replace") for line in lines]


def _pump(stream: IO[str], lines: queue.Queue[str | None]) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


def _take(lines: queue.Queue[str | None]) -> tuple[list[str], bool]:
    """The lines queued within one poll interval, and whether more may come."""
    taken: list[str] = []
    try:
        item = lines.get(timeout=POLL_SECONDS)
        while True:
            if item is None:
                return taken, False
            taken.append(item)
            item = lines.get_nowait()
    except queue.Empty:
        return taken, True


def job_environment() -> dict[str, str]:
    """This process's environment, with its Python first on ``PATH``."""
    env = dict(os.environ)
    python_bin = str(Path(sys.executable).parent)
    env["PATH"] = python_bin + os.pathsep + env.get("PATH", "")
    # A job's own threads compete with its sibling jobs for the same cores.
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def _signal_group(process: subprocess.Popen[str], signal_number: int) -> None:
    """Signal the shell and every process it started."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal_number)


class _Reaper:
    """A process that kills every job still listed when its launcher dies.

    The launcher writes ``+pid`` when a job starts and ``-pid`` when it
    ends; end of input (the launcher is gone, however it died) makes the
    reaper send SIGKILL to each listed job's process group.  It runs in a
    session of its own, so a signal to the launcher's group spares it.
    """

    _CODE = (
        "import os, signal, sys\n"
        "jobs = set()\n"
        "for line in sys.stdin:\n"
        "    pid = int(line[1:])\n"
        "    (jobs.add if line[0] == '+' else jobs.discard)(pid)\n"
        "for pid in jobs:\n"
        "    try:\n"
        "        os.killpg(pid, signal.SIGKILL)\n"
        "    except OSError:\n"
        "        pass\n"
    )

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process: subprocess.Popen[str] | None = None
        self._owner_pid = 0

    def watch(self, pid: int) -> None:
        self._send(f"+{pid}\n")

    def forget(self, pid: int) -> None:
        self._send(f"-{pid}\n")

    def _send(self, line: str) -> None:
        with self._lock:
            try:
                stdin = self._stdin()
                stdin.write(line)
                stdin.flush()
            except OSError as error:
                # Jobs still run and are still followed; only the cleanup
                # after a crash of this process is lost.
                logger.warning("job reaper unavailable (%s); continuing", error)
                self._process = None

    def _stdin(self) -> IO[str]:
        # A forked child must not share its parent's reaper.
        if self._process is None or self._owner_pid != os.getpid():
            self._process = subprocess.Popen(
                [sys.executable, "-S", "-I", "-c", self._CODE],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                text=True,
                start_new_session=True,
            )
            self._owner_pid = os.getpid()
        assert self._process.stdin is not None
        return self._process.stdin


_REAPER = _Reaper()
