"""The map between values and the unit cube, and assignment checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from optiloop.errors import SpecError
from optiloop.space import (
    CategoricalParameter,
    DoubleParameter,
    GridParameter,
    IntParameter,
    Space,
)

SPACE = Space(
    [
        DoubleParameter("lr", 0.1, 0.32121),
        DoubleParameter("wd_log", 1e-5, 4e-4, log=True),
        IntParameter("epochs", 0, 2),
        GridParameter("wd", (1.25e-5, 2.5e-5, 5e-5, 1e-4)),
        CategoricalParameter("opt", ("lars", "sgd", "адам")),
    ]
)

unit_points = st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=5, max_size=5)


@given(unit_points)
def test_every_cube_point_maps_exactly_inside_the_space(point: list[float]) -> None:
    assignments = SPACE.from_unit(point)

    assert 0.1 <= assignments["lr"] <= 0.32121
    assert 1e-5 <= assignments["wd_log"] <= 4e-4
    assert type(assignments["epochs"]) is int
    assert assignments["wd"] in (1.25e-5, 2.5e-5, 5e-5, 1e-4)
    assert assignments["opt"] in ("lars", "sgd", "адам")
    # What comes out passes the same check a user's assignments go through.
    assert SPACE.check_assignments(assignments) == assignments


def test_the_ends_of_the_cube_give_the_bounds_exactly() -> None:
    low, high = SPACE.from_unit([0.0] * 5), SPACE.from_unit([1.0] * 5)
    assert (low["lr"], high["lr"]) == (0.1, 0.32121)
    assert (low["wd_log"], high["wd_log"]) == (1e-5, 4e-4)
    assert (low["epochs"], high["epochs"]) == (0, 2)


def test_ints_are_uniform_with_no_end_bias() -> None:
    # Rounding low + u * (high - low) would draw 0, 1, 2 as 1/4, 1/2, 1/4.
    u = np.linspace(0.0, 1.0, 30_000, endpoint=False)
    draws = [IntParameter("n", 0, 2).from_unit(float(x)) for x in u]
    counts = np.bincount(draws)
    assert counts.tolist() == [10_000, 10_000, 10_000]


def test_log_scale_is_linear_in_log_space() -> None:
    parameter = DoubleParameter("wd", 1e-5, 1e-3, log=True)
    assert parameter.from_unit(0.5) == pytest.approx(1e-4, rel=1e-12)
    assert parameter.to_unit(1e-4) == pytest.approx(0.5, rel=1e-12)


@given(unit_points)
def test_to_unit_inverts_from_unit_on_discrete_values(point: list[float]) -> None:
    assignments = SPACE.from_unit(point)
    again = SPACE.from_unit(SPACE.to_unit(assignments))
    for name in ("epochs", "wd", "opt"):
        assert again[name] == assignments[name]
    assert math.isclose(again["lr"], assignments["lr"], rel_tol=1e-12)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"epochs": 2.5}, r"assignments.epochs: value must be an integer, got 2.5"),
        ({"epochs": 3}, r"assignments.epochs: value must lie within bounds \[0, 2\]"),
        ({"lr": 0.33}, r"assignments.lr: value must lie within bounds"),
        ({"lr": float("nan")}, r"assignments.lr: value must be a finite number"),
        ({"wd": 3e-5}, r"assignments.wd: value must be a member of the grid"),
        ({"opt": "adam"}, r"assignments.opt: value must be one of"),
        ({"extra": 1}, r"assignments.extra: no such parameter"),
    ],
)
def test_off_space_assignments_are_refused(
    change: dict[str, object], message: str
) -> None:
    assignments: dict[str, object] = dict(SPACE.from_unit([0.5] * 5))
    assignments.update(change)
    with pytest.raises(SpecError, match=message):
        SPACE.check_assignments(assignments)


def test_missing_assignment_is_refused() -> None:
    assignments = SPACE.from_unit([0.5] * 5)
    del assignments["lr"]
    with pytest.raises(SpecError, match=r"assignments.lr: a value is required"):
        SPACE.check_assignments(assignments)


def test_grid_member_typed_by_hand_matches() -> None:
    parameter = GridParameter("wd", tuple(1e-4 * 2.0**n for n in range(-3, 3)))
    assert parameter.check(4.0e-4) == 1e-4 * 2.0**2


def test_finite_points_enumerate_the_product() -> None:
    space = Space([CategoricalParameter(name, ("a", "b")) for name in ("x", "y", "z")])
    points = list(space.finite_points())
    assert space.size == 8
    assert len({space.key(p) for p in points}) == 8
