"""What the REST service adds to each suggest and observe, under concurrency.

Starts ``optiloop serve`` on a SQLite file at a free loopback port, then has
``--clients`` threads run suggest/observe cycles against one experiment at
the same time.  The experiment is of ``type: random`` so that the time
measured is the service's (HTTP, auth, validation, the database
transaction), not the Bayesian optimizer's.  Prints p50 and p99 latency per
call, and throughput.

    python benchmarks/api_overhead.py [--clients 16] [--cycles 20] [--db URL]

Every request goes to 127.0.0.1 only, and the run stops after
``clients * cycles`` cycles.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from optiloop.store import Store

SPEC = {
    "name": "api-overhead",
    "type": "random",
    "parameters": [
        {"name": "x", "type": "double", "bounds": {"min": 0, "max": 1}},
        {"name": "n", "type": "int", "bounds": {"min": 1, "max": 8}},
    ],
    "metrics": [{"name": "y", "objective": "minimize"}],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--cycles", type=int, default=20, help="per client")
    parser.add_argument("--db", help="database URL (default: a new SQLite file)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        db_url = args.db or f"sqlite:///{Path(folder) / 'bench.db'}"
        with Store(db_url) as store:
            # Names of tokens in use are unique; --db may be reused.
            token = store.create_token(f"benchmark-{time.time_ns()}")[1]
        port = _free_port()
        optiloop = str(Path(sys.executable).with_name("optiloop"))
        server = subprocess.Popen(
            [optiloop, "serve", "--db", db_url, "--port", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            base = f"http://127.0.0.1:{port}/v1"
            _wait_until_up(base)
            _run(base, token, args.clients, args.cycles, db_url)
        finally:
            server.terminate()
            server.wait(timeout=10)


def _run(base: str, token: str, clients: int, cycles: int, db_url: str) -> None:
    auth = (token, "")
    spec = {**SPEC, "parallel_bandwidth": clients}
    experiment = httpx.post(f"{base}/experiments", json=spec, auth=auth).json()
    url = f"{base}/experiments/{experiment['id']}"
    timings: dict[str, list[float]] = {"suggest": [], "observe": []}
    lock = threading.Lock()

    def worker() -> None:
        with httpx.Client(auth=auth, timeout=60) as client:
            for _ in range(cycles):
                started = time.perf_counter()
                suggestion = client.post(f"{url}/suggestions").raise_for_status().json()
                suggested = time.perf_counter()
                value = suggestion["assignments"]["x"] * suggestion["assignments"]["n"]
                client.post(
                    f"{url}/observations",
                    json={
                        "suggestion": suggestion["id"],
                        "values": [{"name": "y", "value": value}],
                    },
                ).raise_for_status()
                observed = time.perf_counter()
                with lock:
                    timings["suggest"].append(suggested - started)
                    timings["observe"].append(observed - suggested)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started

    calls = 2 * clients * cycles
    print(
        f"{clients} clients x {cycles} cycles on {db_url.split(':')[0]}, "
        f"type: random, {elapsed:.1f} s, {calls / elapsed:.0f} calls/s"
    )
    print(f"{'call':<8} {'n':>5} {'p50 ms':>8} {'p99 ms':>8}")
    for call, samples in timings.items():
        p50 = statistics.median(samples) * 1000
        p99 = statistics.quantiles(samples, n=100)[98] * 1000
        print(f"{call:<8} {len(samples):>5} {p50:>8.1f} {p99:>8.1f}")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def _wait_until_up(base: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{base}/experiments", timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.2)
    raise SystemExit("optiloop serve did not start within 60 s")


if __name__ == "__main__":
    main()
