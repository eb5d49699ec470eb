"""Experiments on a real Ray cluster: a head and a worker node on loopback.

The session's cluster (``ray_cluster``) gives each node 2 CPUs, so runs of
one CPU go four at a time, two on each node.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil
import pytest
from tests.conftest import RAY_CPUS_PER_NODE, free_port

from optiloop.client import Connection
from optiloop.experiment import ExecutorSpec, parse_spec
from optiloop.runner import LoopEvent, RunTask, run_experiment
from optiloop.runner.ray_executor import RayExecutor

FAKE_JOB = Path(__file__).with_name("fake_job.py")


def spec_dict(address: str, points: int, sleep: float) -> dict[str, Any]:
    # A grid of `points` run lengths from 3 epochs up; accuracy 0.5 + 0.1 x
    # epoch reaches the 0.8 target at epoch 3, so every point converges at 3.
    command = (
        f"{sys.executable} {FAKE_JOB} --epochs {{epochs}} --sleep {sleep} "
        "--seed {seed}"
    )
    return {
        "name": "ray-fake",
        "type": "grid",
        "parameters": [
            {"name": "epochs", "type": "int", "bounds": {"min": 3, "max": 2 + points}}
        ],
        "metrics": [
            {"name": "eval_accuracy", "strategy": "constraint", "threshold": 0.8},
            {"name": "converge_epoch", "objective": "minimize"},
        ],
        "observation_budget": points,
        "parallel_bandwidth": 4,
        "seeds_per_point": 1,
        "job": {
            "command": command,
            "converge": {"metric": "eval_accuracy", "target": 0.8},
            "executor": {"kind": "ray", "address": address, "cluster": "loopback"},
        },
    }


def run_on_ray(
    tmp_path: Path, spec: dict[str, Any], events: list[LoopEvent]
) -> tuple[Connection, int]:
    conn = Connection(db=f"sqlite:///{tmp_path / 'ray.db'}")
    experiment_id = conn.experiments().create(**spec).id
    parsed = parse_spec(spec)
    assert parsed.job is not None and parsed.job.executor is not None
    executor = RayExecutor(4, parsed.job.executor)
    try:
        run_experiment(conn, experiment_id, parsed, executor, on_event=events.append)
    finally:
        executor.shutdown()
    return conn, experiment_id


def most_at_once(intervals: list[tuple[float, float]]) -> int:
    edges = sorted(
        [(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals]
    )
    running = peak = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    return peak


def test_an_experiment_of_short_jobs_runs_four_at_a_time(
    ray_cluster: Any, tmp_path: Path
) -> None:
    # Ray starts its worker processes on demand, a second or more each on
    # a loaded machine; have four up before timing how many run at once.
    warm_up(slots=4)
    events: list[LoopEvent] = []
    spec = spec_dict(ray_cluster.address, points=8, sleep=0.5)
    conn, experiment_id = run_on_ray(tmp_path, spec, events)

    observations = conn.experiments(experiment_id).observations().fetch().data
    assert sorted(o.assignments["epochs"] for o in observations) == list(range(3, 11))
    assert all(not o.failed for o in observations)
    for observation in observations:
        metadata = observation.metadata or {}
        [run] = metadata["runs"]
        assert (run["status"], run["attempts"][0]["status"]) == ("ok", "ok")
        assert metadata["cluster"] == "loopback"
        # One device per run by default: device-seconds are wall seconds.
        assert metadata["device_seconds"] == pytest.approx(
            run["wall_seconds"], abs=0.01
        )

    # Both nodes took runs, and four ran at once (each job stamps its
    # records; a run spans its first record to 0.5 s past its last).
    nodes = {run_of(o)["attempts"][0]["node"] for o in observations}
    assert len(nodes) == 2
    spans = [
        (e.result.epochs[0]["time"], e.result.epochs[-1]["time"] + 0.5)
        for e in events
        if e.result is not None
    ]
    assert most_at_once(spans) == 4


def warm_up(slots: int) -> None:
    """Run ``slots`` runs at once on the cluster, so its workers are up."""
    executor = RayExecutor(slots, None)
    try:
        futures = [executor.submit(RunTask(1, s, "sleep 1")) for s in range(slots)]
        [f.result(timeout=120) for f in futures]
    finally:
        executor.shutdown()


def test_no_ray_socket_listens_beyond_loopback(ray_cluster: Any) -> None:
    # Start a Ray worker on each node first, so their sockets exist too.
    warm_up(slots=4)

    # Every Ray process of both nodes is a child of this test process (the
    # nodes' raylets and GCS) or of theirs (workers, agents).
    listening = _listening_sockets(psutil.Process())
    names = {name for name, _ in listening}
    assert {"gcs_server", "raylet"} <= names, listening
    elsewhere = [(name, ip) for name, ip in listening if not _loopback(ip)]
    assert elsewhere == []


def _listening_sockets(root: psutil.Process) -> list[tuple[str, str]]:
    """(process name, address) of each listening socket below ``root``."""
    listening: list[tuple[str, str]] = []
    for process in root.children(recursive=True):
        try:
            name = process.name()
            sockets = process.net_connections(kind="inet")
        except psutil.NoSuchProcess:
            continue
        listening += [(name, s.laddr.ip) for s in sockets if s.status == "LISTEN"]
    return listening


def _loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return address.is_loopback


def test_runs_lost_with_a_node_are_retried_and_the_budget_stays_exact(
    ray_cluster: Any, tmp_path: Path
) -> None:
    events: list[LoopEvent] = []
    spec = spec_dict(ray_cluster.address, points=6, sleep=0.5)
    finished = threading.Event()

    def run() -> None:
        try:
            run_on_ray(tmp_path, spec, events)
        finally:
            finished.set()

    runner = threading.Thread(target=run)
    runner.start()
    try:
        # Kill the worker node once a job runs on it: with four runs at once
        # and two CPUs on the head, one always does.
        deadline = time.monotonic() + 60
        while not (doomed := _jobs(ray_cluster.worker_pids())):
            assert time.monotonic() < deadline, "no job ever ran on the worker"
            time.sleep(0.1)
        ray_cluster.kill_worker()
        assert finished.wait(timeout=180), "the experiment did not finish"
        # The jobs of the dead node did not outlive it.
        assert _jobs(doomed) == set()
    finally:
        runner.join()
        ray_cluster.add_worker()

    conn = Connection(db=f"sqlite:///{tmp_path / 'ray.db'}")
    [experiment] = conn.experiments().fetch().data
    observations = conn.experiments(experiment.id).observations().fetch().data
    suggestions = conn.experiments(experiment.id).suggestions().fetch().data

    # Exactly the budget: six points, each observed once, none left open.
    assert sorted(o.assignments["epochs"] for o in observations) == list(range(3, 9))
    assert len(suggestions) == 6
    assert all(s.state == "closed" for s in suggestions)
    assert sorted(o.suggestion or 0 for o in observations) == sorted(
        s.id for s in suggestions
    )

    # The runs on the dead node were lost; each was retried (once, the
    # default) or, lost again, recorded as lost.
    runs = [run_of(o) for o in observations]
    hit = [r for r in runs if r["attempts"][0]["status"] == "lost"]
    assert hit, runs
    for record in hit:
        statuses = [a["status"] for a in record["attempts"]]
        assert statuses in (["lost", "ok"], ["lost", "lost"])
        assert record["status"] == statuses[-1]
        assert "died" in record["attempts"][0]["reason"]


def run_of(observation: Any) -> dict[str, Any]:
    """The record of an observation's one seed."""
    [run] = (observation.metadata or {})["runs"]
    return dict(run)


def _jobs(pids: set[int]) -> set[int]:
    """Those of ``pids`` that are alive and run the stand-in job."""
    jobs = set()
    for pid in pids:
        try:
            if str(FAKE_JOB) in psutil.Process(pid).cmdline():
                jobs.add(pid)
        except psutil.NoSuchProcess:
            continue
    return jobs


def test_a_process_on_one_cluster_refuses_another_address(ray_cluster: Any) -> None:
    from optiloop.errors import OptiloopError
    from optiloop.runner.ray_executor import connect

    # The session's cluster is connected: the same address, or none, keeps it.
    assert connect(ray_cluster.address).is_initialized()
    assert connect(None).is_initialized()
    with pytest.raises(OptiloopError, match="connected to the Ray cluster at"):
        connect("127.0.0.1:1")


def test_an_unplaceable_run_on_a_cluster_that_may_grow_warns_and_waits(
    ray_cluster: Any, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from optiloop.runner import ray_executor

    monkeypatch.setattr(ray_executor, "QUEUED_LOG_SECONDS", 0.5)
    settings = ExecutorSpec.model_validate(
        {
            "kind": "ray",
            "address": ray_cluster.address,
            "resources": {"num_cpus": 1, "custom": {"gaudi": 8}},
        }
    )
    executor = RayExecutor(2, settings)
    try:
        with caplog.at_level(logging.WARNING, logger=ray_executor.__name__):
            futures = [executor.submit(RunTask(1, s, "true")) for s in range(2)]
            deadline = time.monotonic() + 30
            while not caplog.records:
                assert time.monotonic() < deadline, "no warning within 30 s"
                time.sleep(0.1)
            # Both runs wait, and the cluster is reported once, not per run.
            time.sleep(1.0)
            assert not any(f.done() for f in futures)
    finally:
        executor.shutdown()

    [warning] = [r.getMessage() for r in caplog.records]
    assert warning.startswith(
        "no run can start: each asks for {'CPU': 1.0, 'gaudi': 8.0}, and each "
        "run asks for 8 gaudi, and the largest node has 0 in the Ray cluster"
    )
    # Shutting down withdrew the waiting runs instead of hanging on them.
    reasons = [f.result(timeout=10).loss_reason for f in futures]
    assert reasons == ["withdrawn: the runner stopped before it started"] * 2


@pytest.mark.parametrize(
    ("resources", "message"),
    [
        (
            {"num_cpus": 1, "custom": {"gaudi": 8}},
            "job.executor.resources.custom.gaudi: each run asks for 8 gaudi, "
            "and the largest node has 0 in the Ray cluster optiloop started",
        ),
        (
            {"num_cpus": RAY_CPUS_PER_NODE + 1},
            "job.executor.resources.num_cpus: each run asks for 3 CPU, and "
            "the largest node has 2 in the Ray cluster optiloop started",
        ),
    ],
)
def test_an_unplaceable_run_on_the_cluster_started_here_is_a_spec_error(
    ray_cluster: Any,
    monkeypatch: pytest.MonkeyPatch,
    resources: dict[str, Any],
    message: str,
) -> None:
    from optiloop.errors import SpecError
    from optiloop.runner import ray_executor

    # Starting a cluster of its own would be a second Ray start in this
    # session; the session's cluster stands in for it.
    monkeypatch.setattr(ray_executor, "_started_here", True)
    settings = ExecutorSpec.model_validate({"kind": "ray", "resources": resources})
    with pytest.raises(SpecError) as raised:
        RayExecutor(2, settings)
    assert str(raised.value).startswith(message)


@contextmanager
def loopback_head(env: dict[str, str]) -> Iterator[str]:
    """``ray start --head`` on 127.0.0.1 at a free port; yield its address.

    Every process of the head is stopped at the end, and only those: Ray's
    own ``ray stop`` would stop every Ray cluster of the machine.
    """
    port = free_port()
    # Ray's socket paths must stay short: a folder of its own under /tmp.
    temp_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    command = [
        str(Path(sys.executable).with_name("ray")),
        "start",
        "--head",
        "--block",
        "--node-ip-address=127.0.0.1",
        f"--port={port}",
        "--num-cpus=1",
        "--include-dashboard=false",
        f"--temp-dir={temp_dir}",
    ]
    head = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    processes = [psutil.Process(head.pid)]
    try:
        deadline = time.monotonic() + 120
        while not _listening(port):
            assert head.poll() is None, "ray start --head exited"
            assert time.monotonic() < deadline, "the Ray head did not start"
            time.sleep(0.2)
        yield f"127.0.0.1:{port}"
    finally:
        with contextlib.suppress(psutil.NoSuchProcess):
            processes += processes[0].children(recursive=True)
        head.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            head.wait(timeout=30)
        for process in processes:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
        head.wait()
        shutil.rmtree(temp_dir, ignore_errors=True)


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


# Run in a process of its own (Ray connects a process to one cluster): the
# driver connects as optiloop does, runs a task, and reports where it
# connected and any socket of its own listening beyond loopback.
DRIVER = """
import ipaddress, sys, psutil
from optiloop.errors import OptiloopError
from optiloop.runner.ray_executor import connect
try:
    ray = connect(sys.argv[1])
except OptiloopError as error:
    print("error:", error)
    sys.exit(2)
print("connected:", ray.get_runtime_context().gcs_address)
print("task:", ray.get(ray.remote(lambda: 1 + 1).remote()))
for s in psutil.Process().net_connections(kind="inet"):
    ip = ipaddress.ip_address(s.laddr.ip)
    ip = getattr(ip, "ipv4_mapped", None) or ip
    if s.status == "LISTEN" and not ip.is_loopback:
        print("listening:", s.laddr.ip)
"""


def drive(address: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", DRIVER, address],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_ray_start_head_on_loopback_is_reached_on_loopback(tmp_path: Path) -> None:
    # The head asks for a token, as `ray start` does by default once a token
    # exists; this one's lives in a file of the test's own.
    token = tmp_path / "auth_token"
    token.write_text(uuid.uuid4().hex)
    clean = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("RAY_") or name == "RAY_USAGE_STATS_ENABLED"
    }
    clean |= {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_TOKEN_PATH": str(token)}
    head_env = clean | {
        "RAY_AUTH_MODE": "token",
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    }

    with loopback_head(head_env) as address:
        # Nothing of Ray's set for the driver: optiloop keeps it on
        # loopback, and finds the token as `ray start` did.
        connected = drive(address, clean)
        assert connected.returncode == 0, connected.stderr[-3000:]
        assert connected.stdout.splitlines() == [
            f"connected: {address}",
            "task: 2",
        ]

        # A driver told not to send the token is refused, in words.
        refused = drive(address, clean | {"RAY_AUTH_MODE": "disabled"})
        assert refused.returncode == 2, refused.stderr[-3000:]
        assert refused.stdout.startswith(
            f"error: job.executor.address: could not connect to the Ray "
            f"cluster at {address}"
        )
        assert "RAY_AUTH_MODE=token" in refused.stdout
        assert "Traceback" not in refused.stderr

        # No process of the head listens beyond loopback either.
        listening = _listening_sockets(psutil.Process())
        assert "gcs_server" in {name for name, _ in listening}, listening
        assert [(name, ip) for name, ip in listening if not _loopback(ip)] == []
