"""Experiments on a real Ray cluster: a head and a worker node on loopback.

The session's cluster (``ray_cluster``) gives each node 2 CPUs, so runs of
one CPU go four at a time, two on each node.
"""

from __future__ import annotations

import ipaddress
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from optiloop.client import Connection
from optiloop.experiment import parse_spec
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
    listening: list[tuple[str, str]] = []
    for process in psutil.Process().children(recursive=True):
        try:
            name = process.name()
            sockets = process.net_connections(kind="inet")
        except psutil.NoSuchProcess:
            continue
        listening += [(name, s.laddr.ip) for s in sockets if s.status == "LISTEN"]

    names = {name for name, _ in listening}
    assert {"gcs_server", "raylet"} <= names, listening
    elsewhere = [(name, ip) for name, ip in listening if not _loopback(ip)]
    assert elsewhere == []


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
