"""A runner killed with SIGKILL mid-experiment, then ``optiloop resume``.

The runner is a real ``optiloop run`` process and the kill a real SIGKILL,
on the local executor and on the session's Ray cluster.  After the resume,
every observation stored before the kill is still there unchanged, no point
is observed twice, and the experiment holds exactly its budget.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

from optiloop.client import Connection
from optiloop.experiment import parse_spec
from optiloop.runner.resume import find_unfinished, stored_spec, unfinished

FAKE_JOB = Path(__file__).with_name("fake_job.py")
OPTILOOP = str(Path(sys.executable).with_name("optiloop"))

# Six run lengths (3 to 8 epochs of 0.15 s) x 2 seeds, two points at once.
BUDGET = 6


def spec_dict(job_file: Path, executor: dict[str, Any] | None) -> dict[str, Any]:
    command = (
        f"{sys.executable} {job_file} --epochs {{epochs}} --sleep 0.15 --seed {{seed}}"
    )
    job: dict[str, Any] = {
        "command": command,
        "converge": {"metric": "eval_accuracy", "target": 0.8},
    }
    if executor is not None:
        job["executor"] = executor
    return {
        "name": "killed",
        "type": "grid",
        "parameters": [
            {"name": "epochs", "type": "int", "bounds": {"min": 3, "max": 8}}
        ],
        "metrics": [
            {"name": "eval_accuracy", "strategy": "constraint", "threshold": 0.8},
            {"name": "converge_epoch", "objective": "minimize"},
        ],
        "observation_budget": BUDGET,
        "parallel_bandwidth": 2,
        "seeds_per_point": 2,
        "job": job,
    }


@pytest.fixture(params=["local", "ray"])
def executor_settings(request: pytest.FixtureRequest) -> dict[str, Any] | None:
    if request.param == "local":
        return None
    cluster = request.getfixturevalue("ray_cluster")
    return {"kind": "ray", "address": cluster.address}


def test_a_runner_killed_with_sigkill_is_resumed_with_nothing_lost_or_doubled(
    tmp_path: Path, executor_settings: dict[str, Any] | None
) -> None:
    # A copy of the job of this test's own, so its processes can be told apart.
    job_file = tmp_path / "job.py"
    shutil.copy(FAKE_JOB, job_file)
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(spec_dict(job_file, executor_settings)))
    db = f"sqlite:///{tmp_path / 'runs.db'}"

    runner = subprocess.Popen(
        [OPTILOOP, "run", str(spec_file), "--db", db],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "run.log").open("w"),
    )
    conn = Connection(db=db)
    try:
        experiment_id = _wait_for_observations(conn, runner, 2, tmp_path / "run.log")
        in_flight = (
            conn.experiments(experiment_id).suggestions().fetch(state="open").data
        )
        runner.send_signal(signal.SIGKILL)
        runner.wait()
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()
    before = _observations(conn, experiment_id)

    # The kill caught points in flight, and none of their jobs outlived it.
    assert in_flight
    _wait_until(lambda: not _jobs_of(job_file), "jobs outlived their runner")

    # Resume the newest unfinished experiment (no file: the database's).
    resumed = subprocess.run(
        [OPTILOOP, "resume", "--db", db],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"Resuming experiment {experiment_id}" in resumed.stdout

    after = _observations(conn, experiment_id)
    suggestions = conn.experiments(experiment_id).suggestions().fetch().data
    # Nothing lost: every observation stored before the kill is unchanged.
    assert {k: after[k] for k in before} == before
    # Nothing doubled, budget exact: six points, one observation each, and
    # the points in flight were trained again rather than replaced.
    assert len(after) == BUDGET
    assert sorted(o["epochs"] for o in after.values()) == [3, 4, 5, 6, 7, 8]
    assert sorted(o["suggestion"] for o in after.values()) == sorted(
        s.id for s in suggestions
    )
    assert {s.id for s in in_flight} <= {o["suggestion"] for o in after.values()}
    assert all(s.state == "closed" for s in suggestions)
    assert all(not o["failed"] for o in after.values())


def _wait_for_observations(
    conn: Connection, runner: subprocess.Popen[bytes], count: int, log: Path
) -> int:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert runner.poll() is None, log.read_text()
        experiments = conn.experiments().fetch().data
        if experiments and experiments[0].progress.observation_count >= count:
            return int(experiments[0].id)
        time.sleep(0.05)
    raise AssertionError(f"no {count} observations in time:\n{log.read_text()}")


def _observations(
    conn: Connection, experiment_id: int, parameter: str = "epochs"
) -> dict[int, dict[str, Any]]:
    return {
        o.id: {
            "suggestion": o.suggestion,
            parameter: o.assignments[parameter],
            "failed": o.failed,
            "values": json.dumps([v.to_json() for v in o.values], sort_keys=True),
        }
        for o in conn.experiments(experiment_id).observations().fetch().data
    }


def _jobs_of(job_file: Path) -> list[int]:
    pids = []
    for process in psutil.process_iter(["cmdline"]):
        if str(job_file) in (process.info["cmdline"] or []):
            pids.append(process.pid)
    return pids


def _wait_until(condition: Any, message: str, seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, message
        time.sleep(0.1)


# Finding what to resume, without processes.


def plain_spec(name: str, budget: int = 2) -> dict[str, Any]:
    return {
        "name": name,
        "type": "random",
        "parameters": [
            {"name": "a", "type": "categorical", "categorical_values": ["x", "y"]},
            {"name": "b", "type": "double", "grid": [0.1, 0.2]},
            {
                "name": "wd",
                "type": "double",
                "grid_pow2": {"base": 1e-4, "min": 2e-5, "max": 4e-4},
            },
            {
                "name": "lr",
                "type": "double",
                "bounds": {"min": 0.1, "max": 10},
                "transformation": "log",
            },
        ],
        "metrics": [
            {"name": "m", "strategy": "constraint", "threshold": 0.5},
            {"name": "n"},
        ],
        "observation_budget": budget,
        "job": {
            "command": "train --a {a} --seed {seed}",
            "executor": {"kind": "ray", "resources": {"custom": {"gaudi": 8}}},
        },
    }


def test_the_stored_spec_is_the_spec_that_created_the_experiment(
    tmp_path: Path,
) -> None:
    conn = Connection(db=f"sqlite:///{tmp_path / 'specs.db'}")
    spec = parse_spec(plain_spec("one"))
    created = conn.experiments().create(**spec.to_dict())

    assert stored_spec(conn.experiments(created.id).fetch().to_json()) == spec


def test_the_newest_unfinished_experiment_is_resumed(tmp_path: Path) -> None:
    conn = Connection(db=f"sqlite:///{tmp_path / 'pick.db'}")
    first = conn.experiments().create(**plain_spec("first")).id
    second = conn.experiments().create(**plain_spec("second")).id
    done = conn.experiments().create(**plain_spec("done", budget=1)).id
    conn.experiments(done).observations().create(
        assignments={"a": "x", "b": 0.1, "wd": 1e-4, "lr": 1.0}, failed=True
    )
    in_flight = conn.experiments(second).suggestions().create()

    assert [u.id for u in unfinished(conn)] == [first, second]
    newest = find_unfinished(conn)
    assert (newest.kind, newest.id, newest.in_flight) == ("experiment", second, 1)
    assert newest.spec == parse_spec(plain_spec("second"))
    assert in_flight.state == "open"
    # A file names which one: the experiment it describes.
    assert find_unfinished(conn, parse_spec(plain_spec("first"))).id == first
    with pytest.raises(Exception, match="nothing to resume"):
        find_unfinished(conn, parse_spec(plain_spec("done", budget=1)))


CAMPAIGN_JOB = Path(__file__).with_name("campaign_job.py")
ROUND_BUDGET = 8


def campaign_dict(
    job_file: Path, runs: Path, executor: dict[str, Any] | None
) -> dict[str, Any]:
    # campaign_job.py's bowl, two rounds of 8 points x 2 seeds, then the two
    # best points again with 3 seeds: the shape of test_campaign.py's.
    command = (
        f"{sys.executable} {job_file} --x {{x}} --y {{y}} --seed {{seed}} "
        f"--runs {runs} --sleep 0.1"
    )
    job: dict[str, Any] = {"command": command}
    if executor is not None:
        job["executor"] = executor
    return {
        "name": "killed-campaign",
        "type": "random",
        "parameters": [
            {"name": "x", "type": "double", "bounds": {"min": 0, "max": 1}},
            {"name": "y", "type": "double", "bounds": {"min": 0, "max": 1}},
        ],
        "metrics": [{"name": "loss", "objective": "minimize"}],
        "parallel_bandwidth": 2,
        "seeds_per_point": 2,
        "job": job,
        "rounds": {"max": 2, "budget": ROUND_BUDGET},
        "evaluator": {
            "name": "kmeans",
            "settings": {"keep_fraction": 0.5, "min_cluster_size": 4},
        },
        "validation": {"top": 2, "seeds": 3},
    }


def test_a_campaign_killed_with_sigkill_is_resumed_to_its_end(
    tmp_path: Path, executor_settings: dict[str, Any] | None
) -> None:
    job_file = tmp_path / "bowl.py"
    shutil.copy(CAMPAIGN_JOB, job_file)
    spec_file = tmp_path / "campaign.yaml"
    data = campaign_dict(job_file, tmp_path / "runs.jsonl", executor_settings)
    spec_file.write_text(yaml.safe_dump(data))
    db = f"sqlite:///{tmp_path / 'campaign.db'}"

    runner = subprocess.Popen(
        [OPTILOOP, "run", str(spec_file), "--db", db],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "run.log").open("w"),
    )
    conn = Connection(db=db)
    try:
        # Kill it inside round 1, once 3 of its 8 points are stored.
        _wait_for_observations(conn, runner, 3, tmp_path / "run.log")
        runner.send_signal(signal.SIGKILL)
        runner.wait()
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()
    [campaign] = conn.campaigns().fetch().data
    [first_round] = conn.campaigns(campaign.id).experiments().fetch().data
    before = _observations(conn, first_round.id, "x")
    assert campaign.state == "running"
    assert 3 <= len(before) < ROUND_BUDGET
    _wait_until(lambda: not _jobs_of(job_file), "jobs outlived their runner")

    # With the file: the campaign it describes.
    resumed = subprocess.run(
        [OPTILOOP, "resume", str(spec_file), "--db", db],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"Resuming campaign {campaign.id}" in resumed.stdout

    assert conn.campaigns(campaign.id).fetch().state == "done"
    listed = conn.campaigns(campaign.id).experiments().fetch().data
    roles = [(e.campaign or {}).get("role") for e in listed]
    assert roles == ["round", "round", "validation"]
    after = _observations(conn, first_round.id, "x")
    assert {k: after[k] for k in before} == before
    for experiment, role in zip(listed, roles):
        observed = conn.experiments(experiment.id).observations().fetch().data
        own = [o for o in observed if "warm_start" not in (o.metadata or {})]
        suggestions = conn.experiments(experiment.id).suggestions().fetch().data
        # One observation per suggestion, none open, and each round holds
        # exactly its budget of points of its own.
        assert sorted(o.suggestion or 0 for o in own) == sorted(
            s.id for s in suggestions
        )
        assert all(s.state == "closed" for s in suggestions)
        if role == "round":
            assert len(own) == ROUND_BUDGET
