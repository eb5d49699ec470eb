"""Runs each seed on a Ray cluster, the command on a worker, its output streamed back.

A run is one Ray task that asks for the resources of ``job.executor.resources``
(``num_cpus``, ``num_gpus`` and custom ones such as ``{gaudi: 8}``), so Ray
places it on a node that has them free.  On that node the task launches the
command exactly as the local executor does (``run_process``): the stop rules
(``job.converge.stop``, ``job.prune``) and the timeout are applied there, next
to the output, so a run is ended within one poll of the record that ends it.
The task is a generator: it yields where it started, then the job's stdout in
batches, then the result, so the runner sees a run's progress as it goes and
keeps the lines it had when a node dies mid-run.

How many runs go at once (``slots``) is the parallel bandwidth, capped by how
many runs the live nodes can hold side by side; it is asked again every few
seconds, so a cluster that grows (an autoscaler adding nodes) gets more runs,
and one that shrinks gets fewer.  It never drops below one, so that a cluster
that scales up on demand sees the demand.  A run that Ray has not placed
after a few seconds is logged at INFO with the resources it waits for.

Failures are told apart by what Ray raises:

- the node or the worker died, or the run's result was lost: ``lost``, an
  infrastructure failure, retried ``max_retries`` times (default once);
- Ray's memory monitor killed the worker: ``oom``, not retried (the same
  point would most likely run out of memory again);
- the worker did not answer within the run's timeout plus a margin: the run
  is cancelled, ``timeout``, not retried;
- the runner's own code failed on the worker (say, a metrics reader of the
  user's raised): ``failed``, not retried, since it would fail the same way;
- the job's own failure (non-zero exit, no metrics) is the job's verdict and
  never retried.

Each attempt is kept (status, reason, wall seconds, node) in the run's
``earlier_attempts`` and ends up in the observation's metadata.

The runner connects to ``address`` (``auto``, ``host:port``) once per
process and stays connected, so the rounds of a campaign share one
connection; with no address it starts a Ray cluster on this machine, bound
to 127.0.0.1 (Ray's setting for single-machine clusters,
``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, unless the user set it).  Workers
must be able to import optiloop, as with any Ray task: install it on the
cluster's nodes (or in its image).  A command runs in the runner's working
folder when the worker has that folder (a shared file system), else in the
worker's own.
"""

from __future__ import annotations

import logging
import math
import os
import queue
import socket
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

from optiloop.errors import OptiloopError, SpecError
from optiloop.experiment import ExecutorSpec
from optiloop.runner.executor import job_environment, run_process
from optiloop.runner.jobs import Attempt, LossKind, RunResult, RunTask

logger = logging.getLogger(__name__)

# How often the runner looks at a run in flight, and how often the worker
# sends the lines its job printed since the last batch.
POLL_SECONDS = 0.2
STREAM_SECONDS = 0.5

# A run not placed after this long is logged as queued.
QUEUED_LOG_SECONDS = 5.0

# How long the cluster's size is trusted before it is asked again.
CAPACITY_SECONDS = 5.0

# The worker enforces a run's timeout itself; the runner cancels the task
# only when the worker has said nothing for this long past it.
TIMEOUT_MARGIN_SECONDS = 30.0

# Ray's own settings that keep a cluster started here on this machine.
_LOCAL_CLUSTER_ENV = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    # A cluster started implicitly sends no usage reports the user did not
    # ask for; set RAY_USAGE_STATS_ENABLED=1 to allow them.
    "RAY_USAGE_STATS_ENABLED": "0",
}


class RayExecutor:
    """Runs tasks on a Ray cluster, at most ``slots`` at a time."""

    def __init__(
        self,
        slots: int,
        settings: ExecutorSpec | None = None,
        workdir: str | Path | None = None,
        grace_seconds: float = 10.0,
    ) -> None:
        if slots < 1:
            raise ValueError(f"slots must be >= 1, got {slots}")
        self.settings = settings or ExecutorSpec(kind="ray")
        self.bandwidth = slots
        self.grace_seconds = grace_seconds
        self.workdir = str(Path(workdir or os.getcwd()).resolve())
        self._ray = connect(self.settings.address)
        self._request = resource_request(self.settings)
        self._remote = self._ray.remote(_run_on_worker)
        self._pool = ThreadPoolExecutor(max_workers=slots, thread_name_prefix="ray-run")
        self._capacity = 0
        self._capacity_checked = -math.inf
        self._refresh_capacity()

    @property
    def slots(self) -> int:
        """The bandwidth, capped by what the live nodes can hold (at least 1)."""
        if time.monotonic() - self._capacity_checked > CAPACITY_SECONDS:
            self._refresh_capacity()
        return max(1, min(self.bandwidth, self._capacity))

    def submit(self, task: RunTask) -> Future[RunResult]:
        return self._pool.submit(self._run, task)

    def shutdown(self) -> None:
        # The connection stays for the next executor of this process (the
        # next round of a campaign); Ray closes it when the process exits.
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _refresh_capacity(self) -> None:
        capacity = placeable_runs(self._ray.nodes(), self._request)
        self._capacity_checked = time.monotonic()
        if capacity != self._capacity:
            logger.info(
                "the Ray cluster holds %s runs of %s at once; running %d at a time",
                capacity if capacity < sys.maxsize else "unlimited",
                self._request,
                max(1, min(self.bandwidth, capacity)),
            )
        self._capacity = capacity

    def _run(self, task: RunTask) -> RunResult:
        """Run ``task``, again after each loss, up to ``max_retries`` times."""
        lost: list[Attempt] = []
        while True:
            result = self._attempt(task)
            if result.loss != "lost" or len(lost) >= self.settings.max_retries:
                return replace(result, earlier_attempts=tuple(lost))
            lost.append(result.attempt())
            logger.warning(
                "seed %d of suggestion %d lost (%s); retrying, attempt %d of %d",
                task.seed,
                task.suggestion_id,
                result.loss_reason,
                len(lost) + 1,
                self.settings.max_retries + 1,
            )

    def _attempt(self, task: RunTask) -> RunResult:
        """One try at ``task``: the job's result, or how the cluster lost it."""
        ray = self._ray
        options: dict[str, Any] = {
            "num_cpus": self.settings.resources.num_cpus,
            "num_gpus": self.settings.resources.num_gpus,
            "resources": dict(self.settings.resources.custom),
            # Retries are ours, so that each attempt is recorded.
            "max_retries": 0,
            "retry_exceptions": False,
            "name": f"optiloop-suggestion-{task.suggestion_id}-seed-{task.seed}",
        }
        stream = self._remote.options(**options).remote(
            task, self.workdir, self.grace_seconds
        )
        submitted = time.monotonic()
        started: float | None = None
        node: str | None = None
        stdout: list[str] = []
        logged_queued = False

        def lost(kind: LossKind, reason: str) -> RunResult:
            seconds = time.monotonic() - started if started is not None else 0.0
            return RunResult(
                task=task,
                exit_code=None,
                stdout="".join(stdout),
                stderr="",
                seconds=seconds,
                timed_out=kind == "timeout",
                records=[],
                node=node,
                loss=kind,
                loss_reason=reason,
            )

        try:
            while True:
                ready, _ = ray.wait([stream], timeout=POLL_SECONDS)
                now = time.monotonic()
                if not ready:
                    if started is None and not logged_queued:
                        if now - submitted >= QUEUED_LOG_SECONDS:
                            self._log_queued(task)
                            logged_queued = True
                    elif self._overdue(task, started, now):
                        ray.cancel(stream, force=True)
                        return lost(
                            "timeout",
                            f"timed out: no word from its worker "
                            f"{TIMEOUT_MARGIN_SECONDS:g} s past its timeout",
                        )
                    continue
                try:
                    item = ray.get(next(stream))
                except StopIteration:
                    return lost("lost", "its worker ended without a result")
                if "started" in item:
                    started, node = now, item["started"]
                    logger.debug(
                        "seed %d of suggestion %d started on node %s",
                        task.seed,
                        task.suggestion_id,
                        node,
                    )
                elif "stdout" in item:
                    stdout.extend(item["stdout"])
                else:
                    result: RunResult = item["result"]
                    return replace(result, stdout="".join(stdout), node=node)
        except ray.exceptions.RayError as error:
            kind, reason = classify_ray_error(error)
            return lost(kind, reason)

    def _overdue(self, task: RunTask, started: float | None, now: float) -> bool:
        if started is None or task.timeout_seconds is None:
            return False
        limit = task.timeout_seconds + self.grace_seconds + TIMEOUT_MARGIN_SECONDS
        return now - started > limit

    def _log_queued(self, task: RunTask) -> None:
        free = self._ray.available_resources()
        wanted = {name: free.get(name, 0.0) for name in self._request}
        logger.info(
            "seed %d of suggestion %d is queued: it asks for %s, the cluster "
            "has %s free",
            task.seed,
            task.suggestion_id,
            self._request,
            wanted,
        )


def connect(address: str | None) -> Any:
    """The ``ray`` module, connected to ``address`` or to a new local cluster.

    An existing connection of this process is kept when ``address`` names
    no cluster in particular (none, ``auto``, Ray Client's ``ray://``) or
    names the same one; Ray lets a process talk to one cluster only, so
    another ``host:port`` is refused.
    """
    if address is None and "ray" not in sys.modules:
        # Read when Ray is imported: keep a cluster started here on loopback.
        for name, value in _LOCAL_CLUSTER_ENV.items():
            os.environ.setdefault(name, value)
    try:
        import ray
    except ImportError:
        raise SpecError(
            "job.executor.kind: ray needs the ray package, which is not "
            "installed; pip install 'optiloop[ray]'"
        ) from None

    if ray.is_initialized():
        _refuse_another_cluster(ray, address)
        return ray
    if address is None:
        logger.info("starting a Ray cluster on this machine")
        ray.init(include_dashboard=False, log_to_driver=False)
    else:
        _check_reachable(address)
        logger.info("connecting to the Ray cluster at %s", address)
        ray.init(address=address, log_to_driver=False)
    return ray


def _refuse_another_cluster(ray: Any, address: str | None) -> None:
    if address is None or address == "auto" or "://" in address:
        return
    connected = ray.get_runtime_context().gcs_address
    if connected != address:
        raise OptiloopError(
            f"job.executor.address: this process is connected to the Ray "
            f"cluster at {connected}, and Ray talks to one cluster per "
            f"process, so {address} cannot be used; run this spec in a "
            f"process of its own, or set the address to {connected}"
        )


def _check_reachable(address: str) -> None:
    """Refuse a ``host:port`` where nothing listens, before Ray tries.

    Ray retries an unreachable head for minutes; a refused connection is
    known at once.  ``auto`` and Ray Client's ``ray://`` are left to Ray.
    """
    host, _, port = address.rpartition(":")
    if address == "auto" or "://" in address or not port.isdigit():
        return
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=10):
            pass
    except OSError as error:
        raise OptiloopError(
            f"job.executor.address: no Ray cluster answers at {address} "
            f"({error}); start one ('ray start --head') or fix the address"
        ) from None


def resource_request(settings: ExecutorSpec) -> dict[str, float]:
    """What one run asks for, in Ray's resource names."""
    resources = settings.resources
    request = {"CPU": resources.num_cpus, "GPU": resources.num_gpus}
    request.update(resources.custom)
    return {name: amount for name, amount in request.items() if amount > 0}


def placeable_runs(
    nodes: Sequence[Mapping[str, Any]], request: Mapping[str, float]
) -> int:
    """How many runs asking for ``request`` the live ``nodes`` hold at once.

    ``nodes`` are ``ray.nodes()`` entries; a run cannot span nodes, so each
    node holds as many as its scarcest requested resource allows.  A run
    that asks for nothing fits without limit (``sys.maxsize``).
    """
    if not request:
        return sys.maxsize
    total = 0
    for node in nodes:
        if not node.get("Alive", False):
            continue
        have = node.get("Resources") or {}
        # The small slack absorbs Ray's fixed-point rounding of fractions.
        total += min(
            math.floor(have.get(name, 0.0) / amount + 1e-9)
            for name, amount in request.items()
        )
    return total


def classify_ray_error(error: BaseException) -> tuple[LossKind, str]:
    """Whether Ray's ``error`` means the run was lost or ran out of memory."""
    import ray.exceptions as errors

    first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
    if isinstance(error, errors.OutOfMemoryError):
        return "oom", f"out of memory: {first_line}"
    if isinstance(error, errors.NodeDiedError):
        return "lost", f"its node died: {first_line}"
    if isinstance(error, errors.WorkerCrashedError | errors.LocalRayletDiedError):
        return "lost", f"its worker died: {first_line}"
    if isinstance(error, errors.RayTaskError):
        # The runner's own code failed on the worker (say, a metrics reader
        # of the user's that raised); retrying would fail the same way.
        return "failed", f"the run failed on its worker: {first_line}"
    return "lost", f"{type(error).__name__}: {first_line}"


def _run_on_worker(
    task: RunTask, workdir: str, grace_seconds: float
) -> Iterator[dict[str, Any]]:
    """The Ray task: run ``task`` here, yielding its progress, then its result."""
    import ray

    context = ray.get_runtime_context()
    node = f"{ray.util.get_node_ip_address()}/{context.get_node_id()[:12]}"
    yield {"started": node}

    lines: queue.Queue[list[str]] = queue.Queue()
    outcome: dict[str, Any] = {}
    folder = Path(workdir) if Path(workdir).is_dir() else None

    def run() -> None:
        try:
            outcome["result"] = run_process(
                task,
                workdir=folder,
                env=job_environment(),
                grace_seconds=grace_seconds,
                node=node,
                on_stdout=lines.put,
            )
        except BaseException as error:  # handed to the runner below
            outcome["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    while True:
        thread.join(timeout=STREAM_SECONDS)
        batch = _drain(lines)
        if batch:
            yield {"stdout": batch}
        if not thread.is_alive():
            break

    if "error" in outcome:
        raise outcome["error"]
    # The stdout went back line by line already.
    yield {"result": replace(outcome["result"], stdout="")}


def _drain(lines: queue.Queue[list[str]]) -> list[str]:
    batch: list[str] = []
    while True:
        try:
            batch.extend(lines.get_nowait())
        except queue.Empty:
            return batch
