"""How much of each slot's time the executors spend on the jobs themselves.

Runs ``--jobs`` jobs of ``--seconds`` each (``sleep``, then one JSON record
on stdout, so the job costs no CPU and what is measured is the executor's
own work) on ``--slots`` slots, with the local executor and with the Ray
executor on a Ray cluster started here on loopback.  Prints, per executor:

- busy: the fraction of slot time the jobs ran, ``jobs x seconds /
  (slots x wall)``; 1.0 would be no overhead at all;
- overhead per run: the slot time each run cost beyond its job,
  ``(slots x wall - jobs x seconds) / jobs``;
- inside the run: the part of that overhead within the run's own measured
  wall time (launching the shell, following the output), the rest being
  the hand-over between runs (and, on Ray, placing the task and streaming
  its output back).

    python benchmarks/executor_overhead.py [--jobs 200] [--seconds 0.5] [--slots 4]
        [--executors local ray]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from concurrent.futures import Future

from optiloop.experiment import ExecutorSpec
from optiloop.runner import Executor, LocalExecutor, RunResult, RunTask

# Ray's settings for a cluster that stays on this machine; read on import.
LOOPBACK = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=0.5)
    parser.add_argument("--slots", type=int, default=4)
    parser.add_argument(
        "--executors", nargs="+", default=["local", "ray"], choices=["local", "ray"]
    )
    args = parser.parse_args()

    rows = []
    for kind in args.executors:
        executor = make(kind, args.slots)
        try:
            # Untimed runs on every slot first: Ray starts its worker
            # processes on demand, about a second each on this machine.
            warm_up = [executor.submit(job(s, 0.1)) for s in range(2 * args.slots)]
            [f.result() for f in warm_up]
            rows.append((kind, *measure(executor, args.jobs, args.seconds, args.slots)))
        finally:
            executor.shutdown()

    print(
        f"{args.jobs} jobs of {args.seconds:g} s on {args.slots} slots "
        f"(ideal wall {args.jobs * args.seconds / args.slots:.1f} s)"
    )
    print("| executor | wall s | busy | overhead per run ms | inside the run ms |")
    print("| --- | --- | --- | --- | --- |")
    for kind, wall, busy, per_run, inside in rows:
        print(f"| {kind} | {wall:.1f} | {busy:.3f} | {per_run:.0f} | {inside:.0f} |")


def make(kind: str, slots: int) -> Executor:
    if kind == "local":
        return LocalExecutor(slots)

    for name, value in LOOPBACK.items():
        os.environ.setdefault(name, value)
    import ray

    from optiloop.runner.ray_executor import RayExecutor

    # Logical CPUs: the jobs sleep, so four fit on a machine of two cores.
    ray.init(num_cpus=slots, include_dashboard=False, log_to_driver=False)
    return RayExecutor(slots, ExecutorSpec(kind="ray"))


def job(seed: int, seconds: float) -> RunTask:
    command = f'sleep {seconds}; echo \'{{"epoch": 1, "loss": 0.5}}\''
    return RunTask(1, seed, command)


def measure(
    executor: Executor, jobs: int, seconds: float, slots: int
) -> tuple[float, float, float, float]:
    """Wall seconds, busy fraction, overhead per run and its in-run part (ms)."""
    started = time.monotonic()
    futures: list[Future[RunResult]] = [
        executor.submit(job(seed, seconds)) for seed in range(jobs)
    ]
    results = [f.result() for f in futures]
    wall = time.monotonic() - started

    failed = [r for r in results if r.verdict()[0] != "ok"]
    if failed:
        raise SystemExit(f"{len(failed)} runs failed, e.g. {failed[0].verdict()}")
    busy = jobs * seconds / (slots * wall)
    per_run = (slots * wall - jobs * seconds) / jobs
    inside = statistics.fmean(r.seconds for r in results) - seconds
    return wall, busy, per_run * 1000, inside * 1000


if __name__ == "__main__":
    main()
