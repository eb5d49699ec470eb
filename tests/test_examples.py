"""The shipped experiment files parse, and describe the workflows they claim."""

from __future__ import annotations

from pathlib import Path

import pytest

from optiloop.experiment import load_spec
from optiloop.runner.jobs import render_command, render_path

EXAMPLES = Path(__file__).parents[1] / "examples"


@pytest.mark.parametrize("name", ["digits-lars.yaml", "mlperf-rn50.yaml"])
def test_example_parses_with_the_reference_metrics(name: str) -> None:
    spec = load_spec(EXAMPLES / name)
    accuracy, converge = spec.metrics

    assert accuracy.strategy == "constraint"
    assert converge.objective == "minimize"
    assert spec.seeds_per_point == 3
    assert spec.job is not None and spec.job.converge is not None
    assert spec.job.converge.target == accuracy.threshold

    # Every placeholder renders from a point of the space.
    point = spec.space().from_unit([0.5] * len(spec.parameters))
    assert "{" not in render_command(spec.job.command, point, seed=0)


def test_mlperf_example_uses_the_published_search_space() -> None:
    space = load_spec(EXAMPLES / "mlperf-rn50.yaml").space()

    assert (space["train_epochs"].low, space["train_epochs"].high) == (41, 50)
    assert (space["warmup_epochs"].low, space["warmup_epochs"].high) == (2, 15)
    assert (space["base_learning_rate"].low, space["base_learning_rate"].high) == (
        18,
        30,
    )
    # MLPerf's rule: weight decay = 1e-4 x 2^N, inside 1e-5 .. 4e-4.
    weight_decays = space["weight_decay"].values()  # type: ignore[union-attr]
    assert weight_decays == pytest.approx([1e-4 * 2.0**n for n in range(-3, 3)])


def test_mlperf_example_follows_the_runs_mllog_and_stops_at_the_target() -> None:
    job = load_spec(EXAMPLES / "mlperf-rn50.yaml").job
    assert job is not None and job.converge is not None
    assert job.evaluation is not None

    assert job.metrics.format == "mllog"
    assert job.converge.stop
    # Evaluations every 4 epochs from epoch 3, as --eval_offset_epochs=2 asks.
    assert (job.evaluation.period, job.evaluation.first) == (4, 3)
    assert "--epochs_between_evals=4" in job.command
    assert "--eval_offset_epochs=2" in job.command

    # The log optiloop reads is the file the command writes.
    point = {
        "train_epochs": 44,
        "warmup_epochs": 5,
        "base_learning_rate": 24.5,
        "weight_decay": 5e-05,
    }
    command = render_command(job.command, point, seed=2)
    assert job.metrics.file is not None
    log = render_path(job.metrics.file, point, seed=2)
    assert log == "logs/rn50-e44-w5-lr24.5-wd5e-05-s2.log"
    assert command.endswith(f"> {log} 2>&1")
