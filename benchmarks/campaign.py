"""Does the campaign's outer loop pay, and what does it cost next to a grid?

Two measurements on the RN50 surrogate (``optiloop.workloads.rn50_surrogate``)
at the reference search space of ``examples/mlperf-rn50.yaml`` (batch 16,384,
target top-1 0.759, 3 seeds a point), both through the real stack: campaign
runner, inner loop, embedded store.  Runs evaluate on MLPerf's grid (epochs
3, 7, 11, ...: converge epochs 39, 43, 47, ... only) or, with
``--evaluations every-epoch``, at every epoch, where converge epochs are
finer and the landscape less of a staircase.

1. Refinement against none.  For each repetition, the same total budget
   twice, with the Bayesian optimizer (``type: offline``) both times:
   ``--rounds`` rounds of ``--budget`` new points with the K-means
   evaluator refining the bounds in between, against one round of
   ``rounds x budget`` points.  Both then re-validate their top 3 points
   with 10 seeds, and each is scored by the noise-free expected converge
   epoch of the point it answers with: the mean over a fixed panel of 16
   seeds that no search ever trains, a seed that misses counted at the
   evaluation after its last, and a point where fewer than 13 of the 16
   converge counted infeasible (the rule of ``benchmarks/compare.py``,
   whose exhaustive search puts the optimum at 43.0 on MLPerf's grid).
   "Best of top 3" scores the best of the 3 validated points instead, which
   judges the search apart from the validation's pick.  Repetitions differ
   in the seeds of the training runs and of the optimizer.

2. Grid against a Bayesian campaign.  A grid search of
   ``--points-per-parameter`` values per parameter (``optiloop grid``'s
   points) and one refined campaign are stored in one database, and
   ``optiloop compare`` prints their compute and objective tables, measured
   against the grid and against the expected converge epoch of the logged
   Habana 16k recipe (50 epochs, warmup 7, rate 26.5, weight decay 1e-4).

The training runs are the surrogate's own program, called in this process
(``SurrogateExecutor``) instead of as one process per seed, to save the
interpreter start-up of several thousand runs; the script first checks that
both paths print the same curve.  Each run is charged nominal compute: a
stated ``SECONDS_PER_EPOCH`` per epoch trained (up to the evaluation that
reaches the target, where the runner stops it, or the whole schedule) on a
node of ``DEVICES_PER_RUN`` devices.  The hours in the tables are those
nominal figures, not the seconds this machine spent.

Usage::

    python benchmarks/campaign.py              # ~15 min on 2 busy cores
    python benchmarks/campaign.py --repeats 3 --evaluations mlperf
    python benchmarks/campaign.py --evaluations mlperf --skip-grid \\
        --min-cluster-size 6        # clusters of 6, as the example campaign

Known shortcomings:

- Points are trained one at a time (``parallel_bandwidth: 1``), so the
  optimizer always sees every earlier result; with parallel workers both
  arms would see fewer.
- On MLPerf's grid the landscape is a staircase (converge epochs 39, 43,
  47, ...), so many answers tie.
- The validation counts a point feasible only if all 10 of its seeds
  converge, while the panel allows 3 misses in 16; a campaign can thus
  prefer a safe slow point to a fast one the panel accepts.
- Nominal compute counts epochs only: no evaluation, start-up or queueing.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import math
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optiloop.campaign_spec import CampaignSpec, parse_campaign
from optiloop.client import Connection
from optiloop.experiment import ExperimentSpec
from optiloop.optimizers.grid_points import grid_search_spec
from optiloop.runner.campaign import run_campaign
from optiloop.runner.grid import run_grid
from optiloop.runner.jobs import RunResult, RunTask
from optiloop.workloads import rn50_surrogate

TARGET = 0.759


@dataclass(frozen=True)
class Evaluation:
    """When runs evaluate: at epoch ``offset + 1``, then every ``period``."""

    offset: int
    period: int


# MLPerf's grid for the 3.2k recipe (epochs 3, 7, 11, ...), and every epoch.
EVALUATIONS = {"mlperf": Evaluation(2, 4), "every-epoch": Evaluation(0, 1)}

# Nominal cost of one epoch of the 16k recipe on one 8-device node.
SECONDS_PER_EPOCH = 60.0
DEVICES_PER_RUN = 8

# The panel that scores a point, as in benchmarks/compare.py: seeds far from
# any the searches draw, and at least 13 of 16 converged to be feasible.
PANEL = tuple(range(2**40, 2**40 + 16))
PANEL_CONVERGED = 13

# The logged Habana 16k recipe, the reference of the objective table.
REFERENCE_RECIPE: dict[str, Any] = {
    "train_epochs": 50,
    "warmup_epochs": 7,
    "base_learning_rate": 26.5,
    "weight_decay": 1e-4,
}

MODULE = "optiloop.workloads.rn50_surrogate"
COMMAND = (
    f"python -m {MODULE} --train-epochs {{train_epochs}} "
    "--warmup-epochs {warmup_epochs} --base-learning-rate {base_learning_rate} "
    "--weight-decay {weight_decay} --eval-offset {offset} --eval-period {period} "
    "--stop-at-target --seed {seed}"
)


def campaign_file(
    name: str,
    rounds: int,
    budget: int,
    seed_base: int,
    cluster: str,
    evaluation: Evaluation,
    min_cluster_size: int = 10,
) -> dict[str, Any]:
    """The campaign file of one arm: the reference space, one optimizer."""
    return {
        "name": name,
        "type": "offline",
        "parameters": [
            {"name": "train_epochs", "type": "int", "bounds": {"min": 41, "max": 50}},
            {"name": "warmup_epochs", "type": "int", "bounds": {"min": 2, "max": 15}},
            {
                "name": "base_learning_rate",
                "type": "double",
                "bounds": {"min": 18, "max": 30},
            },
            {
                "name": "weight_decay",
                "type": "double",
                "grid_pow2": {"base": 1e-4, "min": 1e-5, "max": 4e-4},
            },
        ],
        "metrics": [
            {
                "name": "eval_accuracy",
                "strategy": "constraint",
                "threshold": TARGET,
            },
            {"name": "converge_epoch", "objective": "minimize"},
        ],
        "parallel_bandwidth": 1,
        "seeds_per_point": 3,
        "job": {
            # The evaluation grid is fixed in the command; {seed} and the
            # parameters stay fields.
            "command": COMMAND.replace("{offset}", str(evaluation.offset)).replace(
                "{period}", str(evaluation.period)
            ),
            "evaluation": {"period": evaluation.period, "offset": evaluation.offset},
            "converge": {
                "metric": "eval_accuracy",
                "target": TARGET,
                "as": "converge_epoch",
                "stop": True,
            },
            "seed_base": seed_base,
            "executor": {"cluster": cluster, "devices": DEVICES_PER_RUN},
        },
        "rounds": {"max": rounds, "budget": budget},
        # The surrogate takes no negative warmup; widening must stop at 0.
        "evaluator": {
            "name": "kmeans",
            "settings": {
                "min_cluster_size": min_cluster_size,
                "hard_bounds": {"warmup_epochs": {"min": 0}},
            },
        },
        "validation": {"top": 3, "seeds": 10},
    }


class SurrogateExecutor:
    """Runs the surrogate's command lines in this process, one at a time.

    A task's command must be ``python -m optiloop.workloads.rn50_surrogate
    ARGS``; the surrogate's ``main`` prints the same lines it would print as
    a process.  The run's ``seconds`` are nominal (see the module
    docstring), so device-seconds come out as epochs x SECONDS_PER_EPOCH x
    devices.
    """

    slots = 1

    def submit(self, task: RunTask) -> Future[RunResult]:
        words = shlex.split(task.command)
        if words[:3] != ["python", "-m", MODULE]:
            raise ValueError(f"not a surrogate command: {task.command}")
        stdout, stderr = io.StringIO(), io.StringIO()
        exit_code = 0
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                rn50_surrogate.main(words[3:])
            except SystemExit as error:  # bad arguments, as the process exits
                exit_code = error.code if isinstance(error.code, int) else 1

        train_epochs = int(words[words.index("--train-epochs") + 1])
        result = RunResult(task, exit_code, stdout.getvalue(), stderr.getvalue(), 0.0)
        epochs = 0.0
        if result.epochs:
            last = result.epochs[-1]
            reached = last["eval_accuracy"] >= TARGET
            epochs = last["epoch"] if reached else train_epochs
        future: Future[RunResult] = Future()
        future.set_result(
            RunResult(
                task,
                exit_code,
                result.stdout,
                result.stderr,
                epochs * SECONDS_PER_EPOCH,
            )
        )
        return future

    def shutdown(self) -> None:
        pass


def check_in_process_matches_a_process() -> None:
    """The in-process path prints what the surrogate prints as a process."""
    spec = parse_campaign(
        campaign_file("check", 1, 1, 0, "local", EVALUATIONS["mlperf"])
    ).experiment
    assert spec.job is not None
    from optiloop.runner.jobs import render_command

    command = render_command(spec.job.command, REFERENCE_RECIPE, seed=5)
    task = RunTask(0, 5, command)
    in_process = SurrogateExecutor().submit(task).result().stdout
    as_process = subprocess.run(
        [sys.executable, *shlex.split(command)[1:]],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    if in_process != as_process:
        raise SystemExit("the in-process surrogate differs from the process")


def panel(point: dict[str, Any], evaluation: Evaluation) -> tuple[float, int]:
    """The panel's mean converge epoch of a point, and how many seeds converged."""
    epochs = []
    converged = 0
    for seed in PANEL:
        curve = rn50_surrogate.simulate(
            train_epochs=int(point["train_epochs"]),
            warmup_epochs=float(point["warmup_epochs"]),
            base_learning_rate=float(point["base_learning_rate"]),
            weight_decay=float(point["weight_decay"]),
            eval_offset=evaluation.offset,
            eval_period=evaluation.period,
            seed=seed,
            target=TARGET,
        )
        epoch = rn50_surrogate.converge_epoch(curve, TARGET)
        converged += epoch is not None
        epochs.append(curve[-1][0] + evaluation.period if epoch is None else epoch)
    return statistics.fmean(epochs), converged


def expected_epoch(point: dict[str, Any], evaluation: Evaluation) -> float:
    """The panel's mean converge epoch of a point; inf if too few converge."""
    mean, converged = panel(point, evaluation)
    return mean if converged >= PANEL_CONVERGED else math.inf


@dataclass(frozen=True)
class ArmResult:
    campaign_id: int
    answer: dict[str, Any] | None
    score: float  # panel expected converge epoch of the answer
    best_of_top: float  # the best panel score of the validated points
    validated: str | None  # the answer's validated mean; * when a seed missed
    device_hours: float
    seconds: float  # wall seconds this machine spent


def run_arm(conn: Any, campaign: CampaignSpec, evaluation: Evaluation) -> ArmResult:
    from optiloop.analysis.compute import compute_usage

    started = time.perf_counter()
    summary = run_campaign(
        conn, campaign, executor_factory=lambda _: SurrogateExecutor()
    )
    seconds = time.perf_counter() - started

    # With 10 validation seeds a point is feasible only if all 10 converge,
    # so a campaign may validate no feasible point; its answer is then the
    # validated point with the best mean, and the panel judges it.
    best = summary.best
    if best is None and summary.validated:
        best = min(summary.validated, key=lambda point: _or_inf(point.mean))
    answer = None if best is None else dict(best.assignments)
    score = math.inf if answer is None else expected_epoch(answer, evaluation)
    best_of_top = min(
        (
            expected_epoch(dict(point.assignments), evaluation)
            for point in summary.validated
        ),
        default=math.inf,
    )

    groups = []
    for experiment_id in summary.experiments:
        observations = conn.experiments(experiment_id).observations().fetch().data
        groups.append((str(experiment_id), [_record(o) for o in observations]))
    hours = compute_usage(groups).total
    validated = None
    if best is not None:
        validated = f"{_or_inf(best.mean):.2f}" + ("" if best.feasible else "*")
    return ArmResult(
        summary.campaign_id, answer, score, best_of_top, validated, hours, seconds
    )


def _or_inf(value: float | None) -> float:
    return math.inf if value is None else value


def _record(observation: Any) -> Any:
    """An observation as the compute analysis reads it (metadata only)."""
    from optiloop.experiment import Observation

    return Observation(
        assignments=dict(observation.assignments),
        failed=bool(observation.failed),
        metadata=dict(observation.metadata or {}),
    )


def refinement_table(args: argparse.Namespace, db: str, grid_name: str) -> None:
    evaluation = EVALUATIONS[grid_name]
    total = args.rounds * args.budget
    print(
        f"\n## Refinement: {args.rounds} rounds x {args.budget} points "
        f"against 1 round x {total} points, {args.repeats} repetitions, "
        f"evaluations {grid_name} (offset {evaluation.offset}, period "
        f"{evaluation.period}), min_cluster_size {args.min_cluster_size}\n"
    )
    print(
        "| rep | answer refined / flat | best of top 3 refined / flat "
        "| validated mean refined / flat | device-hours refined / flat | wall s |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    arms: dict[str, list[ArmResult]] = {"refined": [], "flat": []}
    conn = Connection(db=db)
    for rep in range(args.repeats):
        seed_base = 1000 * (rep + 1)
        name = f"{grid_name}-{rep}"
        refined_file = campaign_file(
            f"refined-{name}",
            args.rounds,
            args.budget,
            seed_base,
            "k8s",
            evaluation,
            args.min_cluster_size,
        )
        flat_file = campaign_file(
            f"flat-{name}", 1, total, seed_base, "k8s", evaluation
        )
        refined = run_arm(conn, parse_campaign(refined_file), evaluation)
        flat = run_arm(conn, parse_campaign(flat_file), evaluation)
        arms["refined"].append(refined)
        arms["flat"].append(flat)
        print(
            f"| {rep} | {refined.score:.2f} / {flat.score:.2f} "
            f"| {refined.best_of_top:.2f} / {flat.best_of_top:.2f} "
            f"| {refined.validated or '-'} / {flat.validated or '-'} "
            f"| {refined.device_hours:,.0f} / {flat.device_hours:,.0f} "
            f"| {refined.seconds + flat.seconds:.0f} |",
            flush=True,
        )
    print("(* one or more of the 10 validation seeds missed the target)")

    print(
        "\n| arm | median answer | median best of top 3 | answers infeasible "
        "on the panel | median device-hours |"
    )
    print("| --- | --- | --- | --- | --- |")
    for name, results in arms.items():
        infeasible = sum(math.isinf(r.score) for r in results)
        print(
            f"| {name} | {statistics.median(r.score for r in results):.2f} "
            f"| {statistics.median(r.best_of_top for r in results):.2f} "
            f"| {infeasible} of {len(results)} "
            f"| {statistics.median(r.device_hours for r in results):,.0f} |"
        )
    pairs = list(zip(arms["refined"], arms["flat"]))
    for label, key in (("answer", "score"), ("best of top 3", "best_of_top")):
        better = sum(getattr(r, key) < getattr(f, key) for r, f in pairs)
        worse = sum(getattr(r, key) > getattr(f, key) for r, f in pairs)
        print(
            f"{label}: refined better in {better}, worse in {worse}, tied in "
            f"{len(pairs) - better - worse} of {len(pairs)} repetitions"
        )


def grid_comparison(args: argparse.Namespace, db: str) -> None:
    evaluation = EVALUATIONS["mlperf"]
    total = args.rounds * args.budget
    conn = Connection(db=db)
    grid_file = campaign_file(
        "rn50", args.rounds, args.budget, 0, "baremetal", evaluation
    )
    spec: ExperimentSpec = parse_campaign(grid_file).experiment
    grid = grid_search_spec(spec, args.points_per_parameter)
    print(
        f"\n## Grid ({args.points_per_parameter} per parameter, "
        f"{grid.observation_budget} points) against a campaign "
        f"({args.rounds} x {args.budget} = {total} points)\n",
        flush=True,
    )
    started = time.perf_counter()
    grid_summary = run_grid(conn, grid, lambda _: SurrogateExecutor())
    bayesian_file = campaign_file(
        "rn50", args.rounds, args.budget, 0, "k8s", evaluation
    )
    campaign = run_arm(conn, parse_campaign(bayesian_file), evaluation)
    print(f"wall {time.perf_counter() - started:.0f} s")
    reference = expected_epoch(REFERENCE_RECIPE, evaluation)
    command = [
        "optiloop",
        "compare",
        str(grid_summary.campaign_id),
        str(campaign.campaign_id),
        "--db",
        db,
        "--reference-value",
        f"{reference:g}",
    ]
    print(f"reference recipe {REFERENCE_RECIPE}: expected converge epoch {reference:g}")
    print("$ " + " ".join([*command[:4], "--db", "DB", *command[6:]]))
    executable = Path(sys.executable).with_name("optiloop")
    shown = subprocess.run(
        [str(executable), *command[1:]],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "120"},
    )
    print(shown.stdout + shown.stderr)
    best = conn.experiments(grid_summary.experiment_id).best_assignments().fetch()
    grid_answer = dict(best.data[0].assignments) if best.data else None
    print("The answers on the scoring panel (expected converge epoch):")
    print(f"- grid: {_answer_text(grid_answer, evaluation)}")
    print(f"- campaign: {_answer_text(campaign.answer, evaluation)}")


def _answer_text(assignments: dict[str, Any] | None, evaluation: Evaluation) -> str:
    """A point, its panel mean and how many of the panel's seeds converged."""
    if assignments is None:
        return "no feasible point"
    mean, converged = panel(assignments, evaluation)
    point = ", ".join(f"{name} {value:g}" for name, value in assignments.items())
    return f"{point}: {mean:.2f} ({converged} of {len(PANEL)} panel seeds converge)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument(
        "--evaluations",
        nargs="+",
        choices=sorted(EVALUATIONS),
        default=["mlperf", "every-epoch"],
        help="evaluation grids of the refinement measurement",
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--budget", type=int, default=20)
    parser.add_argument("--points-per-parameter", type=int, default=3)
    parser.add_argument(
        "--min-cluster-size",
        type=int,
        default=10,
        help="the K-means evaluator's smallest cluster (10 is the reference's)",
    )
    parser.add_argument("--db", help="database URL (default: a temporary file)")
    parser.add_argument("--skip-refinement", action="store_true")
    parser.add_argument("--skip-grid", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    check_in_process_matches_a_process()
    folder = Path(tempfile.mkdtemp(prefix="optiloop-campaign-bench-"))
    db = args.db or f"sqlite:///{folder / 'campaign.db'}"
    print(f"database: {db}")
    started = time.perf_counter()
    if not args.skip_refinement:
        for grid_name in args.evaluations:
            refinement_table(args, db, grid_name)
    if not args.skip_grid:
        grid_comparison(args, db)
    print(f"\ntotal wall time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
