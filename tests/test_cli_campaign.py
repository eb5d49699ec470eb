"""`optiloop run CAMPAIGN`, Ctrl-C once and twice, `best` and `status --campaign`."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from optiloop.cli import app

JOB = Path(__file__).parent / "runner" / "campaign_job.py"
OPTILOOP = str(Path(sys.executable).with_name("optiloop"))

runner = CliRunner()


def write_campaign(tmp_path: Path, sleep: float = 0.0, **changes: Any) -> Path:
    runs = tmp_path / "runs.jsonl"
    data: dict[str, Any] = {
        "name": "cli campaign",
        "type": "random",
        "parameters": [
            {"name": "x", "type": "double", "bounds": {"min": 0, "max": 1}},
            {"name": "y", "type": "double", "bounds": {"min": 0, "max": 1}},
        ],
        "metrics": [{"name": "loss", "objective": "minimize"}],
        "parallel_bandwidth": 2,
        "seeds_per_point": 2,
        "job": {
            "command": f"{sys.executable} {JOB} --x {{x}} --y {{y}} "
            f"--seed {{seed}} --runs {runs} --sleep {sleep}"
        },
        "rounds": {"max": 2, "budget": 4},
        "evaluator": {"name": "kmeans", "settings": {"min_cluster_size": 2}},
        "validation": {"top": 2, "seeds": 3},
    } | changes
    path = tmp_path / "campaign.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def run_count(tmp_path: Path) -> int:
    runs = tmp_path / "runs.jsonl"
    return len(runs.read_text().splitlines()) if runs.exists() else 0


# Runs of a whole campaign: 2 rounds x 4 points x 2 seeds, 2 points x 3 seeds.
ALL_RUNS = 2 * 4 * 2 + 2 * 3


def test_run_a_campaign_then_its_best_and_status(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    ran = runner.invoke(app, ["run", str(write_campaign(tmp_path)), "--db", db])
    assert ran.exit_code == 0, ran.output
    assert "Created campaign 1" in ran.output
    assert "Bounds of round 2" in ran.output
    assert "Campaign 1: done (rounds.max=2 rounds run)" in ran.output
    assert run_count(tmp_path) == ALL_RUNS

    best = runner.invoke(app, ["best", "--db", db, "--campaign", "1", "--json"])
    assert best.exit_code == 0, best.output
    answer = json.loads(best.output)
    assert answer["state"] == "done"
    means = [point["mean"] for point in answer["validated"]]
    assert answer["best"]["mean"] == min(means)
    assert answer["best"]["seeds"] == 3

    status = runner.invoke(app, ["status", "--db", db, "--campaign", "1"])
    assert status.exit_code == 0, status.output
    assert "validation" in status.output
    assert "Bounds of round 2" in status.output


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--observations", "3"], "drop --observations and --experiment"),
        (["--campaign", "7"], "campaign 7 not found"),
    ],
)
def test_campaign_options_are_checked(
    tmp_path: Path, extra: list[str], message: str
) -> None:
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    ran = runner.invoke(app, ["run", str(write_campaign(tmp_path)), "--db", db, *extra])
    assert ran.exit_code == 2
    assert message in ran.output


def start(tmp_path: Path, campaign: Path, *extra: str) -> subprocess.Popen[str]:
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    return subprocess.Popen(
        [OPTILOOP, "run", str(campaign), "--db", db, *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_for_runs(tmp_path: Path, count: int, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while run_count(tmp_path) < count:
        assert process.poll() is None, process.communicate()[0]
        assert time.monotonic() < deadline, "the campaign made no runs"
        time.sleep(0.05)


def test_ctrl_c_once_finishes_the_runs_and_continues_exactly(tmp_path: Path) -> None:
    campaign = write_campaign(tmp_path, sleep=0.5)
    first = start(tmp_path, campaign)
    wait_for_runs(tmp_path, 2, first)
    first.send_signal(signal.SIGINT)
    output, _ = first.communicate(timeout=60)

    assert first.returncode == 0, output
    assert "Continue it with" in output
    assert "--campaign 1" in output
    assert run_count(tmp_path) < ALL_RUNS

    second = start(tmp_path, campaign, "--campaign", "1")
    output, _ = second.communicate(timeout=120)
    assert second.returncode == 0, output
    assert "Campaign 1: done" in output
    # The runs in progress at Ctrl-C were finished and stored, not repeated.
    assert run_count(tmp_path) == ALL_RUNS


def test_ctrl_c_twice_ends_the_jobs_at_once(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    campaign = write_campaign(tmp_path, sleep=30)
    # Each job notes its shell's process id before its long sleep.
    data = yaml.safe_load(campaign.read_text())
    data["job"]["command"] = f"echo $$ >> {pids}; " + data["job"]["command"]
    campaign.write_text(yaml.safe_dump(data))

    log = tmp_path / "output.txt"
    with log.open("w") as output_file:
        process = subprocess.Popen(
            [
                OPTILOOP,
                "run",
                str(campaign),
                "--db",
                f"sqlite:///{tmp_path / 'cli.db'}",
            ],
            stdout=output_file,
            stderr=subprocess.STDOUT,
            text=True,
        )
    deadline = time.monotonic() + 60
    while not pids.exists() or len(pids.read_text().split()) < 2:
        assert process.poll() is None, log.read_text()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    # Two signals that arrive before the runner's handler has run count as
    # one, as for any program; a person's second Ctrl-C comes after the
    # first one's message.
    while "Stopping" not in log.read_text():
        assert process.poll() is None, log.read_text()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    process.wait(timeout=20)
    output = log.read_text()

    assert process.returncode == 130, output
    assert "Stopped at once" in output
    assert "--campaign 1" in output
    # The jobs were killed, not waited for (they would sleep 30 s).
    for pid in map(int, pids.read_text().split()):
        assert ends_soon(pid)
    assert run_count(tmp_path) == 0


def ends_soon(pid: int, seconds: float = 10.0) -> bool:
    """Whether the process is gone (or a zombie no one reaped) in time."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state == "Z":
            return True
        time.sleep(0.1)
    return False


def test_ctrl_c_once_stops_a_plain_experiment_cleanly(tmp_path: Path) -> None:
    # The campaign file without its campaign fields: one experiment of 6.
    data = yaml.safe_load(write_campaign(tmp_path, sleep=0.5).read_text())
    for field in ("rounds", "evaluator", "validation"):
        del data[field]
    data["observation_budget"] = 6
    spec = tmp_path / "experiment.yaml"
    spec.write_text(yaml.safe_dump(data), encoding="utf-8")

    first = start(tmp_path, spec)
    wait_for_runs(tmp_path, 2, first)
    first.send_signal(signal.SIGINT)
    output, _ = first.communicate(timeout=60)

    assert first.returncode == 0, output
    assert "Stopping" in output
    assert "stopped on request" in output
    assert "Continue it with:\n  optiloop resume --db" in output
    assert run_count(tmp_path) < 6 * 2

    db = f"sqlite:///{tmp_path / 'cli.db'}"
    resumed = subprocess.run(
        [OPTILOOP, "resume", "--db", db], capture_output=True, text=True, timeout=120
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    # Every point trained once: the runs in progress at Ctrl-C were stored.
    assert run_count(tmp_path) == 6 * 2
