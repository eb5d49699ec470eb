"""What an observation records of its runs, and how the executor is chosen.

The run records and compute accounting are checked on hand-made results
with known wall times; the choice of executor and the cluster's capacity on
plain data.  ``optiloop status`` shows the records.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from optiloop.cli import app
from optiloop.client import Connection
from optiloop.experiment import ExecutorSpec, parse_spec
from optiloop.runner import LocalExecutor, RunResult, RunTask, make_executor
from optiloop.runner import summarize_point as summarize
from optiloop.runner.jobs import Attempt

FAKE_JOB = Path(__file__).with_name("fake_job.py")
LINES = "".join(
    f'{{"epoch": {e}, "eval_accuracy": {0.5 + 0.1 * e:.1f}}}\n' for e in (1, 2, 3)
)


def spec(executor: dict[str, Any] | None = None, seeds: int = 2) -> Any:
    job: dict[str, Any] = {
        "command": "train --seed {seed}",
        "converge": {"metric": "eval_accuracy", "target": 0.8},
    }
    if executor is not None:
        job["executor"] = executor
    return parse_spec(
        {
            "parameters": [
                {"name": "x", "type": "double", "bounds": {"min": 0, "max": 1}}
            ],
            "metrics": [
                {"name": "eval_accuracy", "strategy": "constraint", "threshold": 0.8},
                {"name": "converge_epoch", "objective": "minimize"},
            ],
            "seeds_per_point": seeds,
            "job": job,
        }
    )


def result(seed: int, seconds: float, **fields: Any) -> RunResult:
    task = RunTask(1, seed, f"train --seed {seed}")
    defaults: dict[str, Any] = {"exit_code": 0, "stdout": LINES, "stderr": ""}
    return RunResult(task=task, seconds=seconds, **{**defaults, **fields})


def test_device_seconds_count_every_attempt_of_every_seed() -> None:
    # Seed 0 was lost after 2 s on node a, then ran 3 s on node b; seed 1
    # ran 5 s.  Four devices per run: (2 + 3 + 5) x 4 = 40 device-seconds,
    # while compute_seconds keeps the final attempts' 3 + 5 = 8.
    lost = Attempt("lost", "its node died: gone", 2.0, "a")
    results = [
        result(0, 3.0, node="b", earlier_attempts=(lost,)),
        result(1, 5.0, node="b"),
    ]
    settings = {"kind": "ray", "cluster": "gaudi-pod", "nodes": 2, "devices": 4}
    outcome = summarize(spec(settings), results)

    assert not outcome.failed
    metadata = outcome.metadata
    assert metadata["compute_seconds"] == 8.0
    assert metadata["device_seconds"] == 40.0
    assert (metadata["cluster"], metadata["nodes"], metadata["devices"]) == (
        "gaudi-pod",
        2,
        4,
    )
    first, second = metadata["runs"]
    assert first["seed"] == 0 and first["status"] == "ok"
    assert first["attempts"] == [
        {
            "status": "lost",
            "reason": "its node died: gone",
            "wall_seconds": 2.0,
            "node": "a",
        },
        {"status": "ok", "reason": None, "wall_seconds": 3.0, "node": "b"},
    ]
    assert second["attempts"] == [
        {"status": "ok", "reason": None, "wall_seconds": 5.0, "node": "b"}
    ]
    assert first["stdout_tail"] == LINES


def test_without_an_executor_the_accounting_is_one_local_device() -> None:
    outcome = summarize(spec(seeds=1), [result(0, 1.5)])
    metadata = outcome.metadata

    assert (metadata["cluster"], metadata["nodes"], metadata["devices"]) == (
        "local",
        1,
        1,
    )
    assert metadata["device_seconds"] == metadata["compute_seconds"] == 1.5


@pytest.mark.parametrize(
    ("fields", "status", "reason"),
    [
        ({"loss": "lost", "loss_reason": "its worker died"}, "lost", "its worker died"),
        (
            {"loss": "oom", "loss_reason": "out of memory: 9 GB"},
            "oom",
            "out of memory: 9 GB",
        ),
        (
            {"exit_code": -9, "stdout": ""},
            "failed",
            "killed by SIGKILL (the kernel's out-of-memory killer sends it)",
        ),
        ({"exit_code": 2, "stdout": ""}, "failed", "exited with status 2"),
        ({"timed_out": True, "exit_code": -9}, "timeout", "timed out"),
    ],
)
def test_a_failed_run_makes_a_failed_point_with_its_reason(
    fields: dict[str, Any], status: str, reason: str
) -> None:
    outcome = summarize(spec(seeds=2), [result(0, 1.0), result(1, 2.0, **fields)])

    assert outcome.failed
    assert outcome.metadata["reason"] == reason
    assert [r["status"] for r in outcome.metadata["runs"]] == ["ok", status]
    assert outcome.metadata["runs"][1]["reason"] == reason


def test_the_tails_keep_the_last_2000_characters() -> None:
    stderr = "".join(f"line {i}\n" for i in range(1000))
    outcome = summarize(
        spec(seeds=1), [result(0, 1.0, exit_code=1, stdout="", stderr=stderr)]
    )

    tail = outcome.metadata["runs"][0]["stderr_tail"]
    assert len(tail) == 2000
    assert stderr.endswith(tail)


def test_the_spec_chooses_the_executor() -> None:
    executor = make_executor(spec(), slots=3)
    try:
        assert isinstance(executor, LocalExecutor)
        assert executor.slots == 3
    finally:
        executor.shutdown()


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("kind", "slurm", "kind"),
        ("max_retries", -1, "max_retries"),
        ("resources", {"custom": {"GPU": 1}}, "num_gpus"),
        ("resources", {"num_cpus": -1}, "num_cpus"),
        ("devices", 1.5, "devices"),
    ],
)
def test_a_bad_executor_setting_is_refused_by_name(
    field: str, value: Any, words: str
) -> None:
    with pytest.raises(Exception, match=words):
        spec({field: value})


def test_status_shows_failed_runs_and_with_logs_every_run(tmp_path: Path) -> None:
    from optiloop.runner import run_experiment

    db = f"sqlite:///{tmp_path / 'status.db'}"
    job = f"{sys.executable} {FAKE_JOB} --epochs {{epochs}} --seed {{seed}}"
    # The 3-epoch point fails (fake_job's --fail), the 4-epoch one succeeds.
    data = {
        "name": "logs",
        "type": "grid",
        "parameters": [
            {"name": "epochs", "type": "int", "bounds": {"min": 3, "max": 4}}
        ],
        "metrics": [{"name": "eval_accuracy"}],
        "observation_budget": 2,
        "job": {"command": f"if [ {{epochs}} = 3 ]; then {job} --fail; else {job}; fi"},
    }
    conn = Connection(db=db)
    experiment_id = conn.experiments().create(**data).id
    executor = LocalExecutor(1)
    try:
        run_experiment(conn, experiment_id, parse_spec(data), executor)
    finally:
        executor.shutdown()

    failed_only = CliRunner().invoke(app, ["status", "--db", db])
    assert failed_only.exit_code == 0, failed_only.output
    assert "seed 0: failed (exited with status 3)" in failed_only.output
    assert "CUDA out of memory (simulated)" in failed_only.output
    assert "INFO starting training" not in failed_only.output

    every_run = CliRunner().invoke(app, ["status", "--db", db, "--logs"])
    assert every_run.exit_code == 0, every_run.output
    assert every_run.output.count("seed 0: ") == 2
    assert "seed 0: ok" in every_run.output
    assert every_run.output.count("INFO starting training") == 2


def test_executor_spec_defaults_follow_the_contract() -> None:
    settings = ExecutorSpec()
    assert (settings.kind, settings.address, settings.cluster) == (
        "local",
        None,
        "local",
    )
    assert (settings.nodes, settings.devices, settings.max_retries) == (1, 1, 1)
    assert settings.resources.num_cpus == 1 and settings.resources.num_gpus == 0
