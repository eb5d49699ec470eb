"""How much compute the runner's pruning rule saves, and what it gets wrong.

The rule (``job.prune``) stops a run whose converge metric, at an
evaluation, is worse by more than a margin than every run that reached the
target earlier, once enough such runs have a value at that epoch.  Whether
that is worth it depends on the shape of the curves, so this script replays
whole learning curves through the rule, in the order an experiment would
train them, and counts epochs.

Method.  An experiment is a sequence of points, each trained for a few
seeds.  Before a point starts, its rule is built as the runner builds it:
``reference_curves`` over the stored metadata of the points finished
before it.  Each seed then walks its own curve evaluation by evaluation.  It
ends at the first evaluation that reaches the target (``converge.stop`` is
on in both arms, so pruning is credited only with what it saves beyond
that), or where ``prune_reason`` returns a reason, or at the end of its
schedule.  The metadata stored for the point holds only what the run
reported before it ended, as in the runner, so a pruned run never becomes a
reference.  A point with a seed that crashed is a failed observation and
adds no references either.

Each configuration is replayed twice, with and without the rule, and:

- epochs saved: the epochs trained without the rule minus those with it;
  a run costs its converge epoch, its pruning epoch, or its whole schedule;
- wrong stops: pruned runs whose full curve reaches the target, as a share
  of the runs that reach it.

The workloads:

- the RN50 surrogate at the reference search space of
  ``examples/mlperf-rn50.yaml`` (batch 16,384, evaluations at epochs 3, 7,
  ...), random points, 3 seeds each, new points for each experiment;
- recorded MLPerf ResNet-50 LARS runs, one experiment per batch size and
  evaluation grid with at least 40 runs, each run a point of one seed,
  replayed in several random orders;
- the digits workload (``optiloop.workloads.digits_lars``), random points
  of ``examples/digits-lars.yaml`` x 2 seeds, trained for real two at a time
  and kept in a JSON cache, replayed in several random orders.

Usage::

    python benchmarks/prune.py          # ~25 min on 2 busy cores, ~5 cached
    python benchmarks/prune.py --quick  # 10 digits points, fewer replays
    python benchmarks/prune.py --digits-curves curves.json

The digits curves are read from ``benchmarks/.cache/digits-curves-30x2.json``
(``-10x2`` with ``--quick``) or from ``--digits-curves`` when the file
exists, and are trained and written there when it does not.  Delete the
file to train them afresh.

Known shortcomings:

- Points are trained one at a time.  With ``parallel_bandwidth`` above 1 a
  run sees fewer references, so the rule acts later and saves less.
- Cost is counted in epochs; evaluation time and the setup of a run are
  left out.
- A recorded MLPerf run that missed the target ends where its log ends
  (often where it was aborted), not at the end of its schedule, so the
  saving on those runs is understated.
- The recorded runs are tuned recipes of many submitters, not the points a
  search would try; they show how the rule treats good runs, little more.
- The digits curves come from about 30 points: a few runs more or less
  change the shares by several points.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optiloop.experiment import ConvergeSpec
from optiloop.runner.jobs import (
    Curve,
    PruneRule,
    StopKind,
    prune_reason,
    reference_curves,
)
from optiloop.workloads import rn50_surrogate

METRIC = "eval_accuracy"

# (margin, min_reference_runs); the runner's defaults are 0.1 and 5.
SETTINGS = [
    (margin, min_refs) for margin in (0.02, 0.05, 0.1, 0.2) for min_refs in (3, 5, 10)
]

BENCHMARKS = Path(__file__).parent
MLPERF_RUNS = Path(__file__).parents[2] / "shared" / "data" / "mlperf-rn50-runs.json"
# Git-ignored; a cache is named after the number of points it holds.
CACHE_DIR = BENCHMARKS / ".cache"

# A batch size and evaluation grid needs this many recorded runs to be an
# experiment of its own: fewer and the rule would hardly ever act.
MIN_RECORDED_RUNS = 40

# MLPerf's rule for weight decay, 1e-4 x 2^N, inside [1e-5, 4e-4].
WEIGHT_DECAYS = [1e-4 * 2.0**n for n in range(-3, 3)]

DIGITS_TARGET = 0.98
DIGITS_SEEDS = (0, 1)

# Two runs at once, one thread each: a two-core machine kept busy.
DIGITS_PARALLEL_RUNS = 2


@dataclass(frozen=True)
class Run:
    """One seed's full curve, as it would go without early stops."""

    curve: Curve
    schedule_epochs: float  # what the run costs when nothing stops it
    crashed: bool = False  # ended with a non-zero exit code


# The seeds of one point, trained together against the same references.
Point = tuple[Run, ...]


@dataclass
class Tally:
    """Counts summed over the replays of one workload and setting."""

    replays: int = 0
    runs: int = 0
    converging: int = 0
    pruned: int = 0
    wrong_stops: int = 0
    epochs_without_rule: float = 0.0
    epochs_with_rule: float = 0.0

    @property
    def epochs_saved(self) -> float:
        return self.epochs_without_rule - self.epochs_with_rule


@dataclass(frozen=True)
class Workload:
    """A name, its converge rule and its experiments, one per replay."""

    name: str
    converge: ConvergeSpec
    experiments: Callable[[], Iterable[list[Point]]]


def converge_epoch(curve: Curve, converge: ConvergeSpec) -> float | None:
    return next((epoch for epoch, value in curve if converge.reached(value)), None)


def cost_without_rule(run: Run, converge: ConvergeSpec) -> float:
    """Epochs the run trains with converge.stop alone."""
    epoch = converge_epoch(run.curve, converge)
    return run.schedule_epochs if epoch is None else epoch


def follow(run: Run, rule: PruneRule) -> tuple[Curve, float, StopKind | None]:
    """What the run reports, the epochs it trains, and why it was stopped.

    The checks come in the executor's order: a run that reaches the target
    is stopped there and never asked about pruning.
    """
    reported: list[tuple[float, float]] = []
    for epoch, value in run.curve:
        reported.append((epoch, value))
        if rule.converge.reached(value):
            return tuple(reported), epoch, "target"
        if prune_reason(rule, {"epoch": epoch, METRIC: value}) is not None:
            return tuple(reported), epoch, "pruned"
    return tuple(reported), run.schedule_epochs, None


def replay(
    points: Sequence[Point],
    converge: ConvergeSpec,
    margin: float,
    min_reference_runs: int,
    tally: Tally,
) -> None:
    """Train ``points`` in order with the rule on, adding to ``tally``."""
    stored: list[dict[str, Any]] = []
    for point in points:
        rule = PruneRule(converge, reference_curves(stored), margin, min_reference_runs)

        curves: list[list[list[float]]] = []
        converge_epochs: list[float | None] = []
        failed = False
        for run in point:
            reported, epochs_trained, stopped = follow(run, rule)
            reaches_target = converge_epoch(run.curve, converge) is not None

            tally.runs += 1
            tally.converging += reaches_target
            tally.pruned += stopped == "pruned"
            tally.wrong_stops += stopped == "pruned" and reaches_target
            tally.epochs_without_rule += cost_without_rule(run, converge)
            tally.epochs_with_rule += epochs_trained

            curves.append([[epoch, value] for epoch, value in reported])
            converge_epochs.append(epochs_trained if stopped == "target" else None)
            # A stopped run is not a failure, even if it would have crashed.
            failed = failed or (run.crashed and stopped is None)

        if not failed:
            stored.append({"curves": curves, "converge_epochs": converge_epochs})
    tally.replays += 1


def measure(workload: Workload) -> dict[tuple[float, int], Tally]:
    """One tally per setting, each over the same experiments."""
    tallies = {setting: Tally() for setting in SETTINGS}
    for points in workload.experiments():
        for (margin, min_refs), tally in tallies.items():
            replay(points, workload.converge, margin, min_refs, tally)
    return tallies


# RN50 surrogate -------------------------------------------------------------


def surrogate_experiments(
    experiments: int, points: int, seeds: int = 3
) -> Iterable[list[Point]]:
    """Random points of the reference space, new ones for each experiment."""
    for experiment in range(experiments):
        draw = random.Random(experiment)
        plan = []
        for index in range(points):
            train_epochs = draw.randint(41, 50)
            warmup_epochs = draw.randint(2, 15)
            base_rate = draw.uniform(18, 30)
            weight_decay = draw.choice(WEIGHT_DECAYS)
            point = []
            for seed in range(seeds):
                curve = rn50_surrogate.simulate(
                    train_epochs,
                    warmup_epochs,
                    base_rate,
                    weight_decay,
                    batch_size=16384,
                    # The example's grid: job.evaluation {period: 4, offset: 2}.
                    eval_offset=2,
                    eval_period=4,
                    seed=(experiment * points + index) * seeds + seed,
                    target=None,
                )
                as_floats = tuple((float(e), float(v)) for e, v in curve)
                point.append(Run(as_floats, float(train_epochs)))
            plan.append(tuple(point))
        yield plan


# Recorded MLPerf runs -------------------------------------------------------


def recorded_groups(path: Path) -> dict[str, list[Point]]:
    """LARS runs by batch size and evaluation grid, each run a point.

    Runs of one batch share an evaluation grid only when their first
    evaluation is at the same epoch, and the rule compares equal epochs.
    """
    groups: dict[str, list[Point]] = {}
    for record in json.loads(path.read_text()):
        evals = record.get("evals")
        if record.get("opt_name") != "lars" or not evals:
            continue
        curve = tuple((float(e), float(v)) for e, v in evals)
        name = f"batch {record['global_batch_size']}, first eval {curve[0][0]:g}"
        # The log ends at convergence or where the run was stopped.
        run = Run(curve, curve[-1][0])
        groups.setdefault(name, []).append((run,))
    return {
        name: points
        for name, points in groups.items()
        if len(points) >= MIN_RECORDED_RUNS
    }


def shuffled(points: list[Point], orders: int) -> Iterable[list[Point]]:
    for order in range(orders):
        copy = list(points)
        random.Random(order).shuffle(copy)
        yield copy


def recorded_experiments(
    groups: dict[str, list[Point]], orders: int
) -> Iterable[list[Point]]:
    for points in groups.values():
        yield from shuffled(points, orders)


# Digits ---------------------------------------------------------------------


def digits_space_points(count: int, seed: int = 0) -> list[dict[str, Any]]:
    """Random points of examples/digits-lars.yaml."""
    draw = random.Random(seed)
    points = []
    for _ in range(count):
        train_epochs = draw.randint(5, 30)
        points.append(
            {
                "train_epochs": train_epochs,
                # The workload needs at least one epoch after the warmup.
                "warmup_epochs": draw.randint(0, min(5, train_epochs - 1)),
                "base_lr": math.exp(draw.uniform(math.log(0.5), math.log(64))),
                "weight_decay": draw.choice(WEIGHT_DECAYS),
            }
        )
    return points


def train_digits(assignments: dict[str, Any], seed: int) -> dict[str, Any]:
    """Run the real workload to the end of its schedule; keep its curve."""
    command = [
        sys.executable,
        "-m",
        "optiloop.workloads.digits_lars",
        *(f"--{name.replace('_', '-')}={value}" for name, value in assignments.items()),
        f"--seed={seed}",
    ]
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    finished = subprocess.run(
        command, capture_output=True, text=True, env=environment, check=False
    )

    curve = []
    for line in finished.stdout.splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and METRIC in record:
            curve.append([record["epoch"], record[METRIC]])
    return {"seed": seed, "exit_code": finished.returncode, "curve": curve}


def generate_digits_curves(count: int, path: Path) -> None:
    print(f"training {count} digits points x {len(DIGITS_SEEDS)} seeds ...")
    points = digits_space_points(count)
    jobs = [(point, seed) for point in points for seed in DIGITS_SEEDS]
    runs = []
    with ThreadPoolExecutor(DIGITS_PARALLEL_RUNS) as pool:
        for done, run in enumerate(pool.map(lambda job: train_digits(*job), jobs)):
            runs.append(run)
            print(f"  {done + 1}/{len(jobs)} runs trained", flush=True)

    cache = {
        "workload": "optiloop.workloads.digits_lars",
        "points": [
            {"assignments": point, "runs": runs[i : i + len(DIGITS_SEEDS)]}
            for point, i in zip(points, range(0, len(runs), len(DIGITS_SEEDS)))
        ],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(cache, indent=1) + "\n")
    print(f"digits curves written to {path}")


def load_digits_points(path: Path) -> list[Point]:
    cache = json.loads(path.read_text())
    points = []
    for entry in cache["points"]:
        schedule = float(entry["assignments"]["train_epochs"])
        point = []
        for run in entry["runs"]:
            curve = tuple((float(e), float(v)) for e, v in run["curve"])
            crashed = run["exit_code"] != 0
            # A crashed run trained only as far as its last report.
            epochs = curve[-1][0] if crashed and curve else schedule
            point.append(Run(curve, epochs, crashed))
        points.append(tuple(point))
    return points


# Report ---------------------------------------------------------------------


def per_replay(count: float, tally: Tally) -> str:
    return f"{count / tally.replays:.1f}"


def share(part: float, whole: float) -> str:
    return f"{part / whole:.1%}" if whole else "-"


def table_rows(name: str, tallies: dict[tuple[float, int], Tally]) -> list[str]:
    rows = []
    for (margin, min_refs), tally in tallies.items():
        default = " (default)" if (margin, min_refs) == (0.1, 5) else ""
        cells = [
            name,
            f"{margin:g}{default}",
            str(min_refs),
            per_replay(tally.runs, tally),
            per_replay(tally.converging, tally),
            per_replay(tally.pruned, tally),
            f"{per_replay(tally.wrong_stops, tally)} "
            f"({share(tally.wrong_stops, tally.converging)})",
            f"{per_replay(tally.epochs_saved, tally)} "
            f"({share(tally.epochs_saved, tally.epochs_without_rule)})",
        ]
        rows.append("| " + " | ".join(cells) + " |")
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="fewer experiments and points"
    )
    parser.add_argument(
        "--digits-curves",
        type=Path,
        help="JSON cache of digits curves: read if it exists, else written",
    )
    args = parser.parse_args(argv)

    experiments, points, orders = (2, 30, 2) if args.quick else (5, 60, 5)
    digits_count = 10 if args.quick else 30
    digits_cache = args.digits_curves or (
        CACHE_DIR / f"digits-curves-{digits_count}x{len(DIGITS_SEEDS)}.json"
    )

    workloads = [
        Workload(
            "RN50 surrogate",
            ConvergeSpec(metric=METRIC, target=rn50_surrogate.TARGET_TOP1),
            lambda: surrogate_experiments(experiments, points),
        )
    ]
    notes = [
        f"RN50 surrogate: {experiments} experiments of {points} random points "
        "x 3 seeds, batch 16384, evaluations at epochs 3, 7, ..."
    ]

    if MLPERF_RUNS.exists():
        groups = recorded_groups(MLPERF_RUNS)
        workloads.append(
            Workload(
                "MLPerf recorded",
                ConvergeSpec(metric=METRIC, target=rn50_surrogate.TARGET_TOP1),
                lambda: recorded_experiments(groups, orders),
            )
        )
        notes.append(
            f"MLPerf recorded: LARS runs, {orders} random orders of each of "
            f"{len(groups)} groups ({'; '.join(groups)})"
        )
    else:
        print(f"note: {MLPERF_RUNS} not found; recorded MLPerf runs skipped")

    if not digits_cache.exists():
        generate_digits_curves(digits_count, digits_cache)
    digits_points = load_digits_points(digits_cache)
    workloads.append(
        Workload(
            "digits",
            ConvergeSpec(metric=METRIC, target=DIGITS_TARGET),
            lambda: shuffled(digits_points, orders),
        )
    )
    notes.append(
        f"digits: {len(digits_points)} random points x {len(DIGITS_SEEDS)} seeds "
        f"from {digits_cache}, {orders} random orders, evaluated every epoch"
    )

    print()
    for note in notes:
        print(f"- {note}")
    print(
        "\nPer replay (mean); wrong stops as a share of the runs that reach "
        "the target, epochs saved as a share of the epochs without the rule "
        "(converge.stop on in both).\n"
    )
    print(
        "| workload | margin | min refs | runs | reach target | pruned "
        "| wrong stops | epochs saved |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for workload in workloads:
        for row in table_rows(workload.name, measure(workload)):
            print(row, flush=True)


if __name__ == "__main__":
    main()
