"""Many worker processes at once against one server: nothing lost or doubled."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from optiloop.store import Store

WORKER = Path(__file__).with_name("concurrent_worker.py")
WORKERS = 32
CYCLES = 10
# Every worker is started before this many seconds have passed, then all
# begin together.
START_DELAY_SECONDS = 5.0
WORKER_TIMEOUT_SECONDS = 300


def run_workers(url: str, token: str, experiment_id: int) -> list[dict[str, Any]]:
    start_at = time.time() + START_DELAY_SECONDS
    command = [
        sys.executable,
        str(WORKER),
        url,
        token,
        str(experiment_id),
        str(CYCLES),
        str(start_at),
    ]
    processes = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(WORKERS)
    ]

    reports = []
    for process in processes:
        out, err = process.communicate(timeout=WORKER_TIMEOUT_SECONDS)
        assert process.returncode == 0, err.decode()
        reports.append(json.loads(out))
    return reports


@pytest.mark.parametrize(
    "budget",
    [
        pytest.param(WORKERS * CYCLES, id="budget-for-all"),
        # Fewer than asked for: exactly the budget is handed out, the rest
        # of the requests are refused with 409, none fails.
        pytest.param(100, id="budget-short"),
    ],
)
def test_32_workers_at_once_store_unique_observations_within_budget(
    database_url: str, start_server: Any, tmp_path: Path, budget: int
) -> None:
    with Store(database_url) as store:
        token = store.create_token("workers")[1]

    with start_server(database_url, tmp_path / "server.log") as url:
        spec = {
            "name": "crowd",
            "type": "random",
            "parameters": [
                {"name": "x", "type": "double", "bounds": {"min": -1, "max": 1}}
            ],
            "metrics": [{"name": "y", "objective": "minimize"}],
            "observation_budget": budget,
            "parallel_bandwidth": WORKERS,
        }
        experiment = httpx.post(
            f"{url}/v1/experiments", json=spec, auth=(token, "")
        ).json()
        reports = run_workers(url, token, experiment["id"])

        # The budget is exactly spent: one more suggestion is refused.
        extra = httpx.post(
            f"{url}/v1/experiments/{experiment['id']}/suggestions",
            auth=(token, ""),
        )
        assert extra.status_code == 409

    statuses = [status for report in reports for status in report["statuses"]]
    refused = WORKERS * CYCLES - budget
    assert statuses.count(200) == 2 * budget
    assert statuses.count(409) == refused
    assert len(statuses) == 2 * budget + refused

    suggestions = [i for report in reports for i in report["suggestions"]]
    observations = [i for report in reports for i in report["observations"]]
    assert len(set(suggestions)) == len(suggestions) == budget
    assert len(set(observations)) == len(observations) == budget

    with Store(database_url) as store:
        stored = store.list_observations(experiment["id"])
        counts = store.counts(experiment["id"])
    assert sorted(o.id for o in stored) == sorted(observations)
    assert counts.open_suggestions == 0
    assert counts.suggestions == budget
