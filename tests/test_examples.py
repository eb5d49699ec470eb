"""The shipped experiment files parse, and describe the workflows they claim."""

from __future__ import annotations

from pathlib import Path

import pytest

from optiloop.experiment import load_spec
from optiloop.runner import render_command

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
