"""One worker of the concurrency test, run as its own process.

    python concurrent_worker.py URL TOKEN EXPERIMENT_ID CYCLES START_AT

Waits until the wall-clock time START_AT, so that every worker starts at
the same moment, then runs CYCLES suggest/observe cycles over plain HTTP
and prints one JSON line: the status of every answer and the ids made.
"""

from __future__ import annotations

import json
import sys
import time

import httpx


def main() -> None:
    url, token, experiment_id, cycles, start_at = sys.argv[1:6]
    base = f"{url}/v1/experiments/{experiment_id}"
    statuses: list[int] = []
    suggestions: list[int] = []
    observations: list[int] = []

    with httpx.Client(auth=(token, ""), timeout=120.0) as http:
        time.sleep(max(0.0, float(start_at) - time.time()))
        for _ in range(int(cycles)):
            suggested = http.post(f"{base}/suggestions")
            statuses.append(suggested.status_code)
            if suggested.status_code != 200:
                continue
            suggestion = suggested.json()
            suggestions.append(suggestion["id"])

            x = suggestion["assignments"]["x"]
            observed = http.post(
                f"{base}/observations",
                json={"suggestion": suggestion["id"], "value": x * x},
            )
            statuses.append(observed.status_code)
            if observed.status_code == 200:
                observations.append(observed.json()["id"])

    answer = {
        "statuses": statuses,
        "suggestions": suggestions,
        "observations": observations,
    }
    print(json.dumps(answer))


if __name__ == "__main__":
    main()
