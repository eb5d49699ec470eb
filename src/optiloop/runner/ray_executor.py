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
after a few seconds is logged at INFO with the resources it waits for.  A
run that no live node could ever hold is an error of the spec on the
cluster optiloop started itself (it never grows), found before anything is
stored; on a cluster of the user's, which may grow, the runs wait and a
WARNING says what they ask for and what the nodes have, once a minute.

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
``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, unless the user set it).  An
address on loopback gets the same setting, else Ray would swap it for the
machine's network address, and sends the token that ``ray start`` on this
machine found (``~/.ray/auth_token``, ``RAY_AUTH_TOKEN``); a ``host:port``
is probed first, so a port where nothing or something other than Ray
listens is refused at once, not after Ray's minutes of retries.  Workers
must be able to import optiloop, as with any Ray task: install it on the
cluster's nodes (or in its image).  A command runs in the runner's working
folder when the worker has that folder (a shared file system), else in the
worker's own.

Known shortcoming: when a runner that started its own cluster is killed
with SIGKILL, Ray's processes fate-share with it, but the raylet's
dashboard and runtime-env agents (one listening on 127.0.0.1) notice only
at their next check, a minute or two later.  optiloop's job reaper
(``runner/executor.py``) does not end them: it knows the process groups of
jobs only, and the agents share the runner's group with whatever else the
user's shell put there, so killing that group is not safe.
"""

from __future__ import annotations

import ipaddress
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

# How often a cluster that can hold no run at all is reported.
UNPLACEABLE_WARN_SECONDS = 60.0

# How long the cluster's size is trusted before it is asked again.
CAPACITY_SECONDS = 5.0

# The worker enforces a run's timeout itself; the runner cancels the task
# only when the worker has said nothing for this long past it.
TIMEOUT_MARGIN_SECONDS = 30.0

# How long a Ray head has to answer the probe of its address.
PROBE_SECONDS = 10.0

# The opening of an HTTP/2 connection, which a gRPC server answers at once.
_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_HTTP2_EMPTY_SETTINGS = bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])

# Ray's switch that, off, keeps every socket of its processes on 127.0.0.1.
_RAY_CLUSTERS_VARIABLE = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"

# Ray's own settings that keep a cluster started here on this machine.
_LOCAL_CLUSTER_ENV = {
    _RAY_CLUSTERS_VARIABLE: "0",
    # A cluster started implicitly sends no usage reports the user did not
    # ask for; set RAY_USAGE_STATS_ENABLED=1 to allow them.
    "RAY_USAGE_STATS_ENABLED": "0",
}

# Whether this process started the cluster it is connected to: one that
# cannot grow, so a run it cannot hold never will be.
_started_here = False


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
        self._nodes: list[Mapping[str, Any]] = []
        self._capacity = 0
        self._capacity_checked = -math.inf
        self._closing = threading.Event()
        self._warn_lock = threading.Lock()
        self._warned_unplaceable = -math.inf
        self._refresh_capacity()
        if self._capacity == 0 and _started_here:
            # The cluster started here is this machine and never grows.
            field, shortfall = unplaceable(self._nodes, self._request)
            raise SpecError(
                f"{field}: {shortfall} in the Ray cluster optiloop started on "
                f"this machine, so no run could ever start; lower it, or set "
                f"job.executor.address to a cluster that has it"
            )

    @property
    def slots(self) -> int:
        """The bandwidth, capped by what the live nodes can hold (at least 1)."""
        return max(1, min(self.bandwidth, self._current_capacity()))

    def submit(self, task: RunTask) -> Future[RunResult]:
        return self._pool.submit(self._run, task)

    def shutdown(self) -> None:
        # Runs Ray has not placed yet are withdrawn; those running finish.
        # The connection stays for the next executor of this process (the
        # next round of a campaign); Ray closes it when the process exits.
        self._closing.set()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _current_capacity(self) -> int:
        if time.monotonic() - self._capacity_checked > CAPACITY_SECONDS:
            self._refresh_capacity()
        return self._capacity

    def _refresh_capacity(self) -> None:
        self._nodes = self._ray.nodes()
        capacity = placeable_runs(self._nodes, self._request)
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
                    if started is None and self._closing.is_set():
                        ray.cancel(stream, force=True)
                        return lost(
                            "failed", "withdrawn: the runner stopped before it started"
                        )
                    if started is None and now - submitted >= QUEUED_LOG_SECONDS:
                        if not self._warn_if_unplaceable() and not logged_queued:
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

    def _warn_if_unplaceable(self) -> bool:
        """Whether no live node can hold a run; warned every so often.

        A cluster that may grow (an autoscaler) is left to do so, so the
        runs wait; the user is told what they wait for.
        """
        if self._current_capacity() > 0:
            return False
        with self._warn_lock:
            now = time.monotonic()
            if now - self._warned_unplaceable >= UNPLACEABLE_WARN_SECONDS:
                self._warned_unplaceable = now
                _, shortfall = unplaceable(self._nodes, self._request)
                logger.warning(
                    "no run can start: each asks for %s, and %s in the Ray "
                    "cluster; the runs wait until the cluster grows (an "
                    "autoscaler adding nodes) or job.executor.resources is "
                    "lowered",
                    self._request,
                    shortfall,
                )
        return True

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
    another ``host:port`` is refused.  Every failure to connect is an
    ``OptiloopError`` naming ``job.executor.address``.
    """
    global _started_here

    loopback = address is not None and _is_loopback(address)
    if "ray" not in sys.modules:
        # Read when Ray is imported: keep this process on loopback.
        if address is None:
            for name, value in _LOCAL_CLUSTER_ENV.items():
                os.environ.setdefault(name, value)
        elif loopback:
            _stay_on_loopback()
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
        _started_here = True
        return ray

    if loopback:
        _refuse_ray_off_loopback(address)
    _check_reachable(address)
    logger.info("connecting to the Ray cluster at %s", address)
    try:
        ray.init(address=address, log_to_driver=False)
    except (
        ConnectionError,
        RuntimeError,
        ValueError,
        ray.exceptions.RayError,
    ) as error:
        raise OptiloopError(
            f"job.executor.address: could not connect to the Ray cluster at "
            f"{address} ({_first_line(error)}); if the cluster asks for a "
            f"token, set RAY_AUTH_MODE=token and put the cluster's token in "
            f"~/.ray/auth_token or RAY_AUTH_TOKEN, else check the address "
            f"with 'ray status --address {address}'"
        ) from None
    return ray


def _is_loopback(address: str) -> bool:
    """Whether the host of ``host:port`` is this machine's loopback."""
    if "://" in address:
        return False
    host = address.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _stay_on_loopback() -> None:
    """Ray's settings for a driver of a cluster on this machine's loopback.

    Ray replaces a loopback address by the machine's network address unless
    clusters are off (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``), and a head
    started with ``ray start`` on this machine asks for the token it found
    under ``~/.ray`` (or in ``RAY_AUTH_TOKEN``), which Ray's driver sends
    only when told to (``RAY_AUTH_MODE=token``).  The user's own settings
    win.
    """
    os.environ.setdefault(_RAY_CLUSTERS_VARIABLE, "0")
    if "RAY_AUTH_MODE" not in os.environ and _auth_token_available():
        os.environ["RAY_AUTH_MODE"] = "token"


def _auth_token_available() -> bool:
    if os.environ.get("RAY_AUTH_TOKEN"):
        return True
    path = os.environ.get("RAY_AUTH_TOKEN_PATH")
    token_file = Path(path) if path else Path.home() / ".ray" / "auth_token"
    return token_file.is_file()


def _refuse_ray_off_loopback(address: str) -> None:
    """Refuse a loopback address when Ray, imported already, would leave it."""
    # What Ray read at import; a private constant, so its absence in some
    # later Ray lets the address through rather than failing here.
    from ray._private import ray_constants

    if getattr(ray_constants, "ENABLE_RAY_CLUSTER", False):
        raise OptiloopError(
            f"job.executor.address: {address} is on loopback, but Ray was "
            f"imported before optiloop could keep it there and would connect "
            f"to this machine's network address instead; set "
            f"{_RAY_CLUSTERS_VARIABLE}=0 in the environment, or use the "
            f"head's network address"
        )


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
    """Refuse a ``host:port`` where no Ray cluster listens, before Ray tries.

    Ray retries an unreachable head for minutes.  A refused connection is
    known at once, and a Ray head speaks gRPC, so it answers the HTTP/2
    preface with its settings frame; anything else (a web server, silence
    for ``PROBE_SECONDS``) is not Ray.  ``auto`` and Ray Client's
    ``ray://`` are left to Ray.
    """
    host, _, port = address.rpartition(":")
    if address == "auto" or "://" in address or not port.isdigit():
        return
    try:
        with socket.create_connection(
            (host.strip("[]"), int(port)), timeout=PROBE_SECONDS
        ) as connection:
            connection.sendall(_HTTP2_PREFACE + _HTTP2_EMPTY_SETTINGS)
            reply = _read_at_most(connection, 9)
    except OSError as error:
        raise OptiloopError(
            f"job.executor.address: no Ray cluster answers at {address} "
            f"({error}); start one ('ray start --head') or fix the address"
        ) from None
    # A frame header: 3 bytes of length, then the type, 4 for SETTINGS.
    if len(reply) < 9 or reply[3] != 4:
        raise OptiloopError(
            f"job.executor.address: {address} accepts connections but is not "
            f"a Ray cluster (it did not answer as Ray's head does, "
            f"{reply[:20]!r}); set the address to the head's GCS port, the "
            f"--port of 'ray start --head' (6379 by default)"
        )


def _read_at_most(connection: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = connection.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


# Ray's names of the resources a spec asks for by name.
_REQUEST_FIELDS = {"CPU": "num_cpus", "GPU": "num_gpus"}


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


def unplaceable(
    nodes: Sequence[Mapping[str, Any]], request: Mapping[str, float]
) -> tuple[str, str]:
    """The spec field no live node can satisfy, and what the nodes have.

    Called when ``placeable_runs`` is 0: either one resource is short on
    every node, or each is somewhere but no node has them all together.
    """
    alive = [node.get("Resources") or {} for node in nodes if node.get("Alive")]
    for name, amount in request.items():
        largest = max((have.get(name, 0.0) for have in alive), default=0.0)
        if largest < amount:
            field = _REQUEST_FIELDS.get(name, f"custom.{name}")
            return (
                f"job.executor.resources.{field}",
                f"each run asks for {amount:g} {name}, and the largest node "
                f"has {largest:g}",
            )
    return (
        "job.executor.resources",
        f"each run asks for {dict(request)} on one node, and no node has all of them",
    )


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
