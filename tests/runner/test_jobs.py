"""Job output: parsing, converge epoch and the fold of seeds into one observation."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import pytest

from optiloop.experiment import ConvergeSpec, ExperimentSpec, parse_spec
from optiloop.runner import (
    LocalExecutor,
    RunResult,
    RunTask,
    converge_epoch,
    parse_metric_lines,
    render_command,
    summarize_point,
)
from optiloop.runner.jobs import (
    PruneRule,
    StopKind,
    prune_reason,
    reference_curves,
)

FAKE_JOB = Path(__file__).with_name("fake_job.py")


def make_spec(command: str = "true") -> ExperimentSpec:
    return parse_spec(
        {
            "parameters": [
                {"name": "epochs", "type": "int", "bounds": {"min": 1, "max": 10}}
            ],
            "metrics": [
                {"name": "eval_accuracy", "strategy": "constraint", "threshold": 0.8},
                {"name": "converge_epoch", "objective": "minimize"},
            ],
            "seeds_per_point": 3,
            "job": {
                "command": command,
                "converge": {"metric": "eval_accuracy", "target": 0.8},
            },
        }
    )


def result(seed: int, stdout: str, exit_code: int = 0, stderr: str = "") -> RunResult:
    task = RunTask(suggestion_id=1, seed=seed, command="job")
    return RunResult(task, exit_code, stdout, stderr, seconds=2.0)


def curve(*accuracies: float) -> str:
    lines = ["some framework log line"]
    for epoch, accuracy in enumerate(accuracies, start=1):
        lines.append(f'{{"epoch": {epoch}, "eval_accuracy": {accuracy}}}')
        lines.append("[rank0] step done")
    return "\n".join(lines)


def test_metric_lines_skip_logs_and_number_epochs() -> None:
    lines = ["hello", '{"acc": 0.5}', "not {json", '{"acc": 0.7}', "[1, 2]"]
    assert parse_metric_lines(lines) == [
        {"acc": 0.5, "epoch": 1},
        {"acc": 0.7, "epoch": 2},
    ]


def test_converge_epoch_is_the_first_epoch_at_or_past_the_target() -> None:
    converge = ConvergeSpec(metric="acc", target=0.8)
    records = [
        {"epoch": 4, "acc": 0.7},
        {"epoch": 8, "acc": 0.8},
        {"epoch": 12, "acc": 0.9},
    ]
    # Exactly at the target counts, and evaluation epochs are kept as printed.
    assert converge_epoch(records, converge) == 8.0
    assert converge_epoch(records[:1], converge) is None

    loss = ConvergeSpec(metric="acc", target=0.75, objective="minimize")
    assert converge_epoch(records, loss) == 4.0


def test_seeds_fold_into_mean_and_sample_stddev() -> None:
    spec = make_spec()
    outcome = summarize_point(
        spec,
        [
            result(0, curve(0.5, 0.8, 0.9)),
            result(1, curve(0.5, 0.7, 0.85)),
            result(2, curve(0.85, 0.86, 0.87)),
        ],
    )
    values = {v["name"]: v for v in outcome.values}

    assert not outcome.failed
    assert outcome.metadata["converge_epochs"] == [2.0, 3.0, 1.0]
    assert outcome.metadata["converged"] is True
    assert values["converge_epoch"]["value"] == pytest.approx(2.0)
    assert values["converge_epoch"]["value_stddev"] == pytest.approx(1.0)
    # Last printed accuracies 0.9, 0.85, 0.87: mean 0.873333, stddev 0.025166.
    assert values["eval_accuracy"]["value"] == pytest.approx(2.62 / 3)
    assert values["eval_accuracy"]["value_stddev"] == pytest.approx(
        math.sqrt((0.0266667**2 + 0.0233333**2 + 0.0033333**2) / 2), rel=1e-4
    )
    assert outcome.metadata["compute_seconds"] == 6.0


def test_a_seed_that_never_converges_makes_the_point_unconverged() -> None:
    outcome = summarize_point(
        make_spec(),
        [
            result(0, curve(0.5, 0.9)),
            result(1, curve(0.5, 0.6, 0.7)),
            result(2, curve(0.9)),
        ],
    )
    values = {v["name"]: v["value"] for v in outcome.values}

    assert outcome.metadata["converged"] is False
    assert outcome.metadata["converge_epochs"] == [2.0, None, 1.0]
    # The censored seed counts one past its last epoch: (2 + 4 + 1) / 3.
    assert values["converge_epoch"] == pytest.approx(7 / 3)


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (
            result(1, curve(0.5), exit_code=3, stderr="Traceback ... OOM"),
            "exited with status 3",
        ),
        (result(1, "no metrics here\n"), "reported no metrics"),
        (
            result(1, '{"epoch": 1, "loss": 0.3}'),
            "never reported a finite value for metric 'eval_accuracy'",
        ),
    ],
)
def test_a_failing_seed_fails_the_point(bad: RunResult, reason: str) -> None:
    outcome = summarize_point(make_spec(), [result(0, curve(0.9)), bad])
    assert outcome.failed
    assert outcome.values == []
    assert outcome.metadata["reason"] == reason
    assert outcome.metadata["failed_seed"] == 1


def test_values_are_quoted_for_the_shell() -> None:
    command = render_command(
        "train --opt {opt} --seed {seed}", {"opt": "a b; rm -rf /"}, seed=7
    )
    assert command == "train --opt 'a b; rm -rf /' --seed 7"


def run_fake(args: str, timeout: float | None = None) -> RunResult:
    executor = LocalExecutor(slots=1)
    try:
        task = RunTask(1, 0, f"{sys.executable} {FAKE_JOB} {args}", timeout)
        return executor.submit(task).result()
    finally:
        executor.shutdown()


def test_local_executor_captures_a_real_process() -> None:
    ran = run_fake("--epochs 3 --start 0.5 --step 0.1")
    assert ran.exit_code == 0
    assert [r["eval_accuracy"] for r in ran.epochs] == [0.6, 0.7, 0.8]


def test_local_executor_keeps_stderr_of_a_failed_process() -> None:
    ran = run_fake("--fail")
    assert ran.exit_code == 3
    assert "CUDA out of memory" in ran.stderr
    assert len(ran.epochs) == 2


def test_local_executor_stops_a_job_past_its_timeout() -> None:
    ran = run_fake("--epochs 1 && sleep 30", timeout=1.0)
    assert ran.timed_out
    assert ran.seconds < 10


def test_summary_of_real_runs(tmp_path: Path) -> None:
    spec = make_spec()
    runs: list[Any] = [
        run_fake(f"--epochs 4 --start 0.5 --step 0.1 --seed {s}") for s in range(3)
    ]
    outcome = summarize_point(spec, runs)
    # 0.5 + 0.1 * epoch reaches 0.8 at epoch 3 for every seed.
    assert outcome.metadata["converge_epochs"] == [3.0, 3.0, 3.0]


def graded_spec(evaluation: dict[str, int] | None) -> ExperimentSpec:
    job: dict[str, Any] = {
        "command": "true",
        "converge": {"metric": "eval_accuracy", "target": 0.8},
    }
    if evaluation is not None:
        job["evaluation"] = evaluation
    return parse_spec(
        {
            "parameters": [
                {"name": "epochs", "type": "int", "bounds": {"min": 1, "max": 10}}
            ],
            "metrics": [
                {"name": "eval_accuracy", "strategy": "constraint", "threshold": 0.8},
                {"name": "converge_epoch", "objective": "minimize"},
            ],
            "job": job,
        }
    )


def graded_curve(*points: tuple[int, float]) -> str:
    return "\n".join(f'{{"epoch": {e}, "eval_accuracy": {a}}}' for e, a in points)


@pytest.mark.parametrize(
    ("evaluation", "censored"),
    [
        # Every epoch (the default): one past the last evaluation, epoch 12.
        (None, 12.0),
        # Every 4 epochs from epoch 3 (3, 7, 11, 15): the next one is 15.
        ({"period": 4, "offset": 2}, 15.0),
    ],
)
def test_a_censored_run_is_reported_at_its_next_evaluation(
    evaluation: dict[str, int] | None, censored: float
) -> None:
    unconverged = graded_curve((3, 0.5), (7, 0.6), (11, 0.7))
    outcome = summarize_point(graded_spec(evaluation), [result(0, unconverged)])
    values = {v["name"]: v["value"] for v in outcome.values}
    assert values["converge_epoch"] == censored


def test_an_evaluation_off_the_grid_is_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    spec = graded_spec({"period": 4, "offset": 2})
    # Epoch 9 is not on 3, 7, 11, ...; the record still counts.
    outcome = summarize_point(spec, [result(0, graded_curve((3, 0.5), (9, 0.85)))])

    assert outcome.metadata["converge_epochs"] == [9.0]
    assert "reported epochs [9], off the evaluation grid" in caplog.text
    assert [r.levelname for r in caplog.records] == ["WARNING"]


def stopped(seed: int, stdout: str, kind: StopKind) -> RunResult:
    task = RunTask(suggestion_id=1, seed=seed, command="job")
    # SIGTERM ends the run: the exit code is -15, which is no failure here.
    return RunResult(
        task, -15, stdout, "", seconds=1.5, stopped=kind, stop_reason="why"
    )


def test_runs_stopped_early_are_not_failures() -> None:
    outcome = summarize_point(
        make_spec(),
        [
            stopped(0, curve(0.5, 0.85), "target"),
            result(1, curve(0.5, 0.7, 0.9)),
            stopped(2, curve(0.1, 0.2), "pruned"),
        ],
    )
    values = {v["name"]: v["value"] for v in outcome.values}

    assert not outcome.failed
    assert outcome.metadata["stopped_at_target"] == [0]
    assert outcome.metadata["pruned"] == [{"seed": 2, "reason": "why"}]
    # A pruned seed never converged: censored one past its last epoch, 3.
    assert outcome.metadata["converge_epochs"] == [2.0, 3.0, None]
    assert outcome.metadata["converged"] is False
    assert values["converge_epoch"] == pytest.approx((2 + 3 + 3) / 3)
    # Compute is what the runs really used: 1.5 + 2 + 1.5 seconds.
    assert outcome.metadata["compute_seconds"] == 5.0


def test_prune_rule_compares_with_the_worst_converged_run_at_that_epoch() -> None:
    references = (
        ((4.0, 0.40), (8.0, 0.55)),
        ((4.0, 0.35), (8.0, 0.50)),
        ((4.0, 0.45),),
    )
    rule = PruneRule(
        ConvergeSpec(metric="acc", target=0.76),
        references,
        margin=0.05,
        min_reference_runs=3,
    )
    # Epoch 4: the worst of three references is 0.35, the bar 0.30.
    assert prune_reason(rule, {"epoch": 4, "acc": 0.31}) is None
    assert prune_reason(rule, {"epoch": 4, "acc": 0.29}) is not None
    # Epoch 8: only two references, fewer than three, so nothing is pruned.
    assert prune_reason(rule, {"epoch": 8, "acc": 0.01}) is None
    # An epoch no reference evaluated at is never judged.
    assert prune_reason(rule, {"epoch": 5, "acc": 0.01}) is None

    loss = PruneRule(
        ConvergeSpec(metric="loss", target=0.1, objective="minimize"),
        (((2.0, 1.0),), ((2.0, 1.2),)),
        margin=0.1,
        min_reference_runs=2,
    )
    # Minimized: the worst reference is 1.2, the bar 1.3.
    assert prune_reason(loss, {"epoch": 2, "loss": 1.29}) is None
    assert prune_reason(loss, {"epoch": 2, "loss": 1.31}) is not None


def test_reference_curves_are_the_converged_seeds_of_stored_observations() -> None:
    stored = [
        {
            "converge_epochs": [2.0, None],
            "curves": [[[1, 0.5], [2, 0.9]], [[1, 0.1], [2, 0.2]]],
        },
        {"reason": "exited with status 3"},
    ]
    assert reference_curves(stored) == (((1.0, 0.5), (2.0, 0.9)),)


@pytest.mark.parametrize(
    "line",
    [
        '{"epoch": null, "eval_accuracy": 0.9}',
        '{"epoch": "one", "eval_accuracy": 0.9}',
        '{"epoch": 1, "eval_accuracy": ' + "9" * 400 + "}",
    ],
)
def test_unplaceable_or_oversized_output_is_skipped(line: str) -> None:
    # Only the well-formed second line counts: its epoch and accuracy.
    outcome = summarize_point(
        make_spec(),
        [
            result(s, line + "\n" + '{"epoch": 2, "eval_accuracy": 0.85}')
            for s in range(3)
        ],
    )
    assert not outcome.failed
    assert outcome.metadata["converge_epochs"] == [2.0, 2.0, 2.0]


def test_values_too_large_to_average_fail_the_point() -> None:
    spec = parse_spec(
        {
            "parameters": [
                {"name": "x", "type": "int", "bounds": {"min": 1, "max": 2}}
            ],
            "metrics": [{"name": "y"}],
            "job": {"command": "true"},
        }
    )
    outcome = summarize_point(
        spec, [result(0, '{"y": 1e308}'), result(1, '{"y": -1e308}')]
    )
    assert outcome.failed
    assert "overflow a float" in outcome.metadata["reason"]


def test_a_stored_metric_is_optional() -> None:
    spec = parse_spec(
        {
            "parameters": [
                {"name": "x", "type": "int", "bounds": {"min": 1, "max": 2}}
            ],
            "metrics": [{"name": "y"}, {"name": "memory", "strategy": "store"}],
            "job": {"command": "true"},
        }
    )
    outcome = summarize_point(spec, [result(0, '{"y": 1}'), result(1, '{"y": 3}')])
    assert not outcome.failed
    assert [v["name"] for v in outcome.values] == ["y"]


def test_a_minimized_metric_converges_going_down() -> None:
    spec = parse_spec(
        {
            "parameters": [
                {"name": "x", "type": "int", "bounds": {"min": 1, "max": 2}}
            ],
            "metrics": [
                {
                    "name": "loss",
                    "objective": "minimize",
                    "strategy": "constraint",
                    "threshold": 0.1,
                },
                {"name": "converge_epoch", "objective": "minimize"},
            ],
            "job": {"command": "true", "converge": {"metric": "loss", "target": 0.1}},
        }
    )
    losses = [1.0, 0.5, 0.2, 0.08, 0.05]
    stdout = "\n".join(
        f'{{"epoch": {e}, "loss": {v}}}' for e, v in enumerate(losses, start=1)
    )
    outcome = summarize_point(spec, [result(0, stdout)])
    # 0.08 at epoch 4 is the first loss at or below the 0.1 target.
    assert outcome.metadata["converge_epochs"] == [4.0]


def test_format_specs_and_odd_names_fill_the_template() -> None:
    command = render_command(
        "train --lr {lr:.3f} --opt {opt[0]} --json '{{}}' --seed {seed}",
        {"lr": 0.123456, "opt[0]": "sgd"},
        seed=4,
    )
    assert command == "train --lr 0.123 --opt sgd --json '{}' --seed 4"
