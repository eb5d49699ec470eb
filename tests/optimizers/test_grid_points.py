"""Grid search specs: values per parameter, counts, and the walk they give."""

from __future__ import annotations

import math
from typing import Any

import pytest

from optiloop.errors import SpecError
from optiloop.experiment import MetricValue, Observation, ParameterSpec, parse_spec
from optiloop.optimizers import GridOptimizer
from optiloop.optimizers.grid_points import axis_values, grid_search_spec
from optiloop.space import GridParameter

JOB = {"command": "train --lr {lr} --seed {seed}"}


def parameter(**fields: Any) -> ParameterSpec:
    return ParameterSpec.model_validate(fields)


def test_double_is_evenly_spaced_with_both_ends() -> None:
    lr = parameter(name="lr", type="double", bounds={"min": 18, "max": 30})
    assert axis_values(lr, 4) == [18.0, 22.0, 26.0, 30.0]


def test_log_double_is_evenly_spaced_in_log_space() -> None:
    lr = parameter(
        name="lr", type="double", bounds={"min": 1e-4, "max": 1}, transformation="log"
    )
    values = axis_values(lr, 5)
    assert values == pytest.approx([1e-4, 1e-3, 1e-2, 1e-1, 1.0], rel=1e-12)
    # Ends are exact, so they sit on the bounds.
    assert (values[0], values[-1]) == (1e-4, 1.0)


def test_one_point_is_the_middle_of_the_range() -> None:
    log_lr = parameter(
        name="lr", type="double", bounds={"min": 1, "max": 100}, transformation="log"
    )
    epochs = parameter(name="epochs", type="int", bounds={"min": 41, "max": 50})
    assert axis_values(log_lr, 1) == pytest.approx([10.0])
    # 45.5 rounds half up.
    assert axis_values(epochs, 1) == [46]


def test_int_rounds_to_nearest_with_halves_up() -> None:
    epochs = parameter(name="epochs", type="int", bounds={"min": 41, "max": 50})
    # 41 + 9 * (0, 1/2, 1) = 41, 45.5, 50.
    assert axis_values(epochs, 3) == [41, 46, 50]
    # 41 + 9 * k / 3 = 41, 44, 47, 50: exact.
    assert axis_values(epochs, 4) == [41, 44, 47, 50]
    assert all(isinstance(v, int) for v in axis_values(epochs, 4))


def test_int_drops_repeats_when_the_range_is_short() -> None:
    warmup = parameter(name="warmup", type="int", bounds={"min": 2, "max": 4})
    # 2 + 2 * k / 4 = 2, 2.5, 3, 3.5, 4 -> 2, 3, 3, 4, 4.
    assert axis_values(warmup, 5) == [2, 3, 4]


def test_grid_keeps_all_members_when_they_fit() -> None:
    decay = parameter(
        name="wd", type="double", grid_pow2={"base": 1e-4, "min": 1e-5, "max": 4e-4}
    )
    members = [1.25e-5, 2.5e-5, 5e-5, 1e-4, 2e-4, 4e-4]
    assert axis_values(decay, 6) == pytest.approx(members)
    assert axis_values(decay, 10) == pytest.approx(members)


def test_grid_takes_an_even_subset_with_both_ends() -> None:
    decay = parameter(
        name="wd", type="double", grid_pow2={"base": 1e-4, "min": 1e-5, "max": 4e-4}
    )
    # Indices 0, 2.5 -> 3, 5 of six members; one point is the lower middle.
    assert axis_values(decay, 3) == pytest.approx([1.25e-5, 1e-4, 4e-4])
    assert axis_values(decay, 1) == pytest.approx([5e-5])


def test_int_grid_stays_integer() -> None:
    batch = parameter(name="batch", type="int", grid=[256, 64, 128, 512, 1024])
    assert axis_values(batch, 3) == [64, 256, 1024]
    assert all(isinstance(v, int) for v in axis_values(batch, 3))


def test_categorical_keeps_every_category() -> None:
    block = parameter(name="b", type="categorical", categorical_values=["x", "y", "z"])
    assert axis_values(block, 2) == ["x", "y", "z"]


def test_zero_points_is_refused() -> None:
    lr = parameter(name="lr", type="double", bounds={"min": 1, "max": 2})
    with pytest.raises(SpecError, match="points per parameter must be at least 1"):
        axis_values(lr, 0)


def rn50_like() -> dict[str, Any]:
    return {
        "name": "rn50",
        "parameters": [
            {"name": "epochs", "type": "int", "bounds": {"min": 41, "max": 50}},
            {"name": "warmup", "type": "int", "bounds": {"min": 2, "max": 3}},
            {
                "name": "lr",
                "type": "double",
                "bounds": {"min": 18, "max": 30},
                "transformation": "log",
            },
            {
                "name": "wd",
                "type": "double",
                "grid_pow2": {"base": 1e-4, "min": 1e-5, "max": 4e-4},
            },
            {"name": "opt", "type": "categorical", "categorical_values": ["a", "b"]},
        ],
        "metrics": [{"name": "converge_epoch", "objective": "minimize"}],
        "observation_budget": 7,
        "parallel_bandwidth": 2,
        "seeds_per_point": 3,
        "job": {
            "command": "train {epochs} {warmup} {lr} {wd} {opt} --seed {seed}",
        },
    }


def test_grid_spec_has_a_budget_of_every_point() -> None:
    grid = grid_search_spec(parse_spec(rn50_like()), 3)

    # epochs 3, warmup 2 (only 2 integers), lr 3, wd 3 of 6, opt 2.
    assert grid.observation_budget == 3 * 2 * 3 * 3 * 2
    assert grid.type == "grid"
    assert grid.name == "rn50-grid"
    assert grid.metadata == {"grid_points_per_parameter": 3}
    assert grid.space().size == grid.observation_budget
    # What a run needs stays as it was.
    assert (grid.seeds_per_point, grid.parallel_bandwidth) == (3, 2)
    assert grid.job == parse_spec(rn50_like()).job


def test_grid_optimizer_walks_exactly_the_grid_once() -> None:
    grid = grid_search_spec(parse_spec(rn50_like()), 2)
    optimizer = GridOptimizer()
    seen: list[tuple[Any, ...]] = []
    observations: list[Observation] = []
    while batch := optimizer.suggest(grid, observations, [], 5, seed=0):
        for point in batch:
            seen.append(tuple(point[name] for name in grid.space().names))
            values = (MetricValue("converge_epoch", 40.0),)
            observations.append(Observation(point, values))

    assert len(seen) == len(set(seen)) == grid.observation_budget == 2**5
    lrs = sorted({point[2] for point in seen})
    assert lrs == pytest.approx([18.0, 30.0])
    assert sorted({point[3] for point in seen}) == pytest.approx([1.25e-5, 4e-4])


def test_grid_values_lie_on_the_source_space() -> None:
    spec = parse_spec(rn50_like())
    grid = grid_search_spec(spec, 4)
    for point in grid.space().finite_points():
        spec.space().check_assignments(point)  # raises if off the space


def test_too_large_a_grid_names_the_option() -> None:
    spec = parse_spec(
        rn50_like()
        | {
            "parameters": [
                {"name": f"x{i}", "type": "double", "bounds": {"min": 0, "max": 1}}
                for i in range(6)
            ],
            "job": {"command": "train --seed {seed}"},
        }
    )
    # 10 ** 6 points.
    with pytest.raises(
        SpecError, match=r"--points-per-parameter: 10 points .* 1,000,000"
    ):
        grid_search_spec(spec, 10)


def test_a_long_name_still_fits() -> None:
    spec = parse_spec(rn50_like() | {"name": "n" * 100})
    name = grid_search_spec(spec, 2).name
    assert len(name) == 100 and name.endswith("-grid")


def test_log_values_keep_their_ratio() -> None:
    spec = parse_spec(rn50_like())
    lr = grid_search_spec(spec, 3).space()["lr"]
    assert isinstance(lr, GridParameter)
    low, middle, high = lr.grid
    assert middle == pytest.approx(math.sqrt(low * high))
