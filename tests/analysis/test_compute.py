"""Compute accounting and the comparison of two searches, on hand-built data."""

from __future__ import annotations

from typing import Any

import pytest

from optiloop.analysis.compute import (
    SearchRecord,
    cluster_of,
    compare,
    compute_usage,
    device_seconds,
    improvement_percent,
    search_answer,
)
from optiloop.errors import SpecError
from optiloop.experiment import ExperimentSpec, MetricValue, Observation, parse_spec


def make_spec(objective: str = "minimize", name: str = "converge_epoch") -> Any:
    return parse_spec(
        {
            "parameters": [
                {"name": "lr", "type": "double", "bounds": {"min": 1, "max": 10}}
            ],
            "metrics": [
                {"name": "acc", "strategy": "constraint", "threshold": 0.75},
                {"name": name, "objective": objective},
            ],
        }
    )


def observe(
    lr: float = 1.0,
    epoch: float = 40.0,
    acc: float = 0.76,
    stddev: float | None = None,
    failed: bool = False,
    **metadata: Any,
) -> Observation:
    values = (
        ()
        if failed
        else (MetricValue("acc", acc), MetricValue("converge_epoch", epoch, stddev))
    )
    return Observation({"lr": lr}, values, failed=failed, metadata=metadata)


def test_device_seconds_prefers_the_recorded_field() -> None:
    assert device_seconds({"device_seconds": 720.0, "compute_seconds": 90.0}) == 720.0


def test_device_seconds_falls_back_to_compute_seconds_on_one_device() -> None:
    assert device_seconds({"compute_seconds": 90.0, "devices": 8}) == 90.0


@pytest.mark.parametrize(
    "metadata", [{}, {"compute_seconds": None}, {"device_seconds": "a lot"}]
)
def test_no_usable_record_is_none(metadata: dict[str, Any]) -> None:
    assert device_seconds(metadata) is None


@pytest.mark.parametrize(
    ("metadata", "cluster"),
    [({"cluster": "k8s"}, "k8s"), ({}, "local"), ({"cluster": " "}, "local")],
)
def test_cluster_label_with_local_as_fallback(
    metadata: dict[str, Any], cluster: str
) -> None:
    assert cluster_of(metadata) == cluster


def test_usage_per_round_per_cluster_and_total() -> None:
    # Round 1: two k8s points of 8 devices x 900 s and 8 x 450 s = 7200 +
    # 3600 device-seconds = 3 h; a baremetal point of 5400 s = 1.5 h; an old
    # row with only compute_seconds 1800 = 0.5 h on "local".
    # Round 2: a failed k8s point still spent 3600 s = 1 h.
    round_1 = [
        observe(device_seconds=7200.0, cluster="k8s"),
        observe(device_seconds=3600.0, cluster="k8s"),
        observe(device_seconds=5400.0, cluster="baremetal"),
        observe(compute_seconds=1800.0),
    ]
    round_2 = [observe(failed=True, device_seconds=3600.0, cluster="k8s")]

    usage = compute_usage([("round 1", round_1), ("round 2", round_2)])

    assert usage.hours == {
        "round 1": {"baremetal": 1.5, "k8s": 3.0, "local": 0.5},
        "round 2": {"k8s": 1.0},
    }
    assert usage.by_cluster == {"baremetal": 1.5, "k8s": 4.0, "local": 0.5}
    assert usage.by_group == {"round 1": 5.0, "round 2": 1.0}
    assert usage.total == 6.0
    assert (usage.observations, usage.unmeasured) == (5, 0)


def test_unmeasured_observations_are_counted_apart() -> None:
    usage = compute_usage([("grid", [observe(), observe(device_seconds=36.0)])])
    assert usage.total == pytest.approx(0.01)
    assert (usage.observations, usage.unmeasured) == (2, 1)


def test_warm_start_copies_are_not_counted_again() -> None:
    original = observe(device_seconds=3600.0, cluster="k8s")
    # The campaign copies the row into round 2 without its compute fields.
    copy = observe(warm_start={"experiment": 1, "observation": 7, "round": 1})

    usage = compute_usage([("round 1", [original]), ("round 2", [copy])])

    assert usage.by_group == {"round 1": 1.0, "round 2": 0.0}
    assert (usage.observations, usage.unmeasured) == (1, 0)


def test_groups_with_the_same_label_add_up() -> None:
    usage = compute_usage(
        [
            ("round 1", [observe(device_seconds=3600.0)]),
            ("round 1", [observe(device_seconds=7200.0)]),
        ]
    )
    assert usage.by_group == {"round 1": 3.0}


@pytest.mark.parametrize(
    ("baseline", "value", "objective", "percent"),
    [
        (50.0, 40.0, "minimize", 20.0),  # 10 epochs fewer of 50
        (40.0, 42.0, "minimize", -5.0),  # 2 epochs more of 40: worse
        (0.5, 0.6, "maximize", 20.0),
        (-2.0, -1.0, "maximize", 50.0),  # up by 1 of |-2|
    ],
)
def test_improvement_in_percent_of_the_baseline(
    baseline: float, value: float, objective: str, percent: float
) -> None:
    assert improvement_percent(baseline, value, objective) == pytest.approx(percent)


def test_improvement_on_a_zero_baseline_is_undefined() -> None:
    assert improvement_percent(0.0, 1.0, "minimize") is None


def test_answer_is_the_best_validated_mean_when_there_is_one() -> None:
    spec = make_spec()
    rounds = [observe(lr=2.0, epoch=35.0), observe(lr=3.0, epoch=38.0)]
    # The validated means differ from the 3-seed ones; the best of them is
    # the answer even though a round saw a lower (luckier) mean.
    validation = [observe(lr=2.0, epoch=37.5, stddev=0.8), observe(lr=3.0, epoch=37.0)]

    answer = search_answer(spec, [("round 1", rounds), ("validation", validation)])

    assert answer is not None
    assert (answer.value, answer.stddev, answer.source) == (37.0, None, "validation")
    assert answer.assignments == {"lr": 3.0}


def test_answer_is_the_best_validated_mean_even_when_a_seed_missed() -> None:
    spec = make_spec()
    rounds = [observe(lr=2.0, epoch=35.0)]
    # Both validated points had a seed miss the target; the answer is the
    # better validated mean, marked infeasible, not the search's lucky 35.
    validation = [
        observe(lr=2.0, epoch=39.0, converged=False),
        observe(lr=3.0, epoch=38.5, stddev=1.5, converged=False),
        observe(lr=4.0, failed=True),
    ]

    answer = search_answer(spec, [("round 1", rounds), ("validation", validation)])

    assert answer is not None
    assert (answer.value, answer.stddev) == (38.5, 1.5)
    assert (answer.source, answer.feasible) == ("validation", False)


def test_infeasible_validated_answer_of_a_maximized_metric() -> None:
    spec = make_spec("maximize", "top1")
    validation = [
        Observation({"lr": lr}, (MetricValue("acc", 0.7), MetricValue("top1", top1)))
        for lr, top1 in ((2.0, 0.74), (3.0, 0.76))
    ]
    answer = search_answer(spec, [("validation", validation)])
    assert answer is not None and (answer.value, answer.feasible) == (0.76, False)


def test_answer_without_validation_skips_infeasible_points() -> None:
    spec = make_spec()
    observations = [
        observe(lr=2.0, epoch=30.0, acc=0.70),  # misses the 0.75 threshold
        observe(lr=4.0, epoch=33.0, converged=False),  # a seed never converged
        observe(lr=5.0, failed=True),
        observe(lr=6.0, epoch=36.0, stddev=1.0),
    ]

    answer = search_answer(spec, [("grid", observations)])

    assert answer is not None
    assert (answer.value, answer.stddev, answer.source) == (36.0, 1.0, "search")
    assert answer.feasible


def test_answer_of_a_search_with_nothing_feasible_is_none() -> None:
    assert search_answer(make_spec(), [("grid", [observe(acc=0.5)])]) is None


def grid_and_campaign(spec: ExperimentSpec | None = None) -> list[SearchRecord]:
    spec = spec or make_spec()
    grid = SearchRecord(
        "grid",
        spec,
        [
            (
                "grid",
                [
                    observe(epoch=50.0, device_seconds=36_000.0, cluster="k8s"),
                    observe(epoch=44.0, device_seconds=18_000.0, cluster="baremetal"),
                ],
            )
        ],
    )
    campaign = SearchRecord(
        "campaign",
        spec,
        [
            ("round 1", [observe(epoch=42.0, device_seconds=7200.0, cluster="k8s")]),
            (
                "validation",
                [observe(epoch=41.8, stddev=0.4, device_seconds=3600.0, cluster="k8s")],
            ),
        ],
    )
    return [grid, campaign]


def test_compare_tables_against_the_first_search_and_a_reference() -> None:
    comparison = compare(grid_and_campaign(), baseline=0, reference_value=55.0)

    # Grid: 10 h on k8s + 5 h on baremetal; campaign: 2 h + 1 h on k8s.
    assert [(row.cluster, row.hours) for row in comparison.compute] == [
        ("baremetal", (5.0, 0.0)),
        ("k8s", (10.0, 3.0)),
        ("total", (15.0, 3.0)),
    ]
    grid_row, campaign_row = comparison.objectives
    assert grid_row.answer is not None and campaign_row.answer is not None
    assert (grid_row.answer.value, campaign_row.answer.value) == (44.0, 41.8)
    # The baseline is not measured against itself.
    assert grid_row.versus_baseline is None
    # (44 - 41.8) / 44 = 5%; against 55 epochs: 20% and 24%.
    assert campaign_row.versus_baseline == pytest.approx(5.0)
    assert grid_row.versus_reference == pytest.approx(20.0)
    assert campaign_row.versus_reference == pytest.approx(24.0)


def test_compare_against_the_second_search() -> None:
    comparison = compare(grid_and_campaign(), baseline=1)

    grid_row, campaign_row = comparison.objectives
    # (41.8 - 44) / 41.8: the grid's answer is 5.26% worse.
    assert grid_row.versus_baseline == pytest.approx(-100 * 2.2 / 41.8)
    assert campaign_row.versus_baseline is None
    assert grid_row.versus_reference is None
    assert comparison.baseline == "campaign"


def test_compare_as_json_names_each_search() -> None:
    data = compare(grid_and_campaign()).to_dict()

    assert data["device_hours"]["total"] == {"grid": 15.0, "campaign": 3.0}
    assert data["device_hours_by_round"]["campaign"] == {
        "round 1": 2.0,
        "validation": 1.0,
    }
    assert data["answers"]["campaign"]["source"] == "validation"
    assert data["answers"]["campaign"]["value_stddev"] == 0.4
    assert data["answers"]["campaign"]["improvement_vs_baseline_percent"] == (
        pytest.approx(5.0)
    )


def test_compare_refuses_searches_of_different_metrics() -> None:
    grid, _ = grid_and_campaign()
    other = SearchRecord("other", make_spec("maximize", "top1"), [])
    with pytest.raises(SpecError, match=r"other optimizes top1 \(maximize\)"):
        compare([grid, other])


def test_compare_refuses_two_optimized_metrics() -> None:
    spec = parse_spec(
        {
            "parameters": [
                {"name": "lr", "type": "double", "bounds": {"min": 1, "max": 2}}
            ],
            "metrics": [{"name": "a"}, {"name": "b"}],
        }
    )
    with pytest.raises(SpecError, match="exactly one optimized metric"):
        compare([SearchRecord("x", spec, []), SearchRecord("y", spec, [])])
