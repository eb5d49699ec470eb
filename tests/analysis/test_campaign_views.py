"""The campaign views: bounds per round, compute, history, comparison, report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from optiloop.analysis.campaign import (
    CampaignPart,
    bounds_figure,
    campaign_runs,
    comparable,
    compare_campaigns,
    comparison_tables,
    compute_figure,
    is_grid,
    refinement_rows,
)
from optiloop.analysis.report import render_campaign_report
from optiloop.cli import app
from optiloop.experiment import ExperimentSpec, MetricValue, Observation, parse_spec
from optiloop.store import Store


def make_spec(lr_max: float = 1.0, depth: tuple[int, int] = (1, 9)) -> ExperimentSpec:
    return parse_spec(
        {
            "name": "campaign",
            "parameters": [
                {
                    "name": "lr",
                    "type": "double",
                    "bounds": {"min": 0.001, "max": lr_max},
                    "transformation": "log",
                },
                {
                    "name": "depth",
                    "type": "int",
                    "bounds": dict(zip(["min", "max"], depth)),
                },
                {
                    "name": "act",
                    "type": "categorical",
                    "categorical_values": ["a", "b"],
                },
            ],
            "metrics": [{"name": "epochs", "objective": "minimize"}],
        }
    )


def run(
    epochs: float, hours: float = 1.0, cluster: str = "k8s", **extra: Any
) -> Observation:
    metadata = {"device_seconds": hours * 3600, "cluster": cluster, **extra}
    return Observation(
        {"lr": 0.01, "depth": 3, "act": "a"},
        (MetricValue("epochs", epochs),),
        metadata=metadata,
    )


REFINEMENT = {
    "bounds": {
        "lr": {"min": 0.001, "max": 0.01, "grid": None},
        "depth": {"min": 3, "max": 5, "grid": None},
    },
    "reasons": {"lr": "high rates never converged", "depth": "best cluster at 3-5"},
}

PARTS = [
    CampaignPart(1, "round", 1, make_spec(), [run(40), run(35, cluster="metal")]),
    CampaignPart(
        2,
        "round",
        2,
        make_spec(lr_max=0.01, depth=(3, 5)),
        # The first row is round 1's best, copied to warm-start round 2.
        [run(35, hours=0, warm_start={"round": 1}), run(30, hours=2.0)],
        REFINEMENT,
    ),
    CampaignPart(3, "validation", None, make_spec(), [run(31, hours=0.5)]),
]

# A grid search of the same space: a campaign of its own.
GRID = [CampaignPart(4, "grid", None, make_spec(), [run(45, hours=4.0), run(38)])]


def test_bounds_are_drawn_per_round_on_each_parameter_scale() -> None:
    figure = bounds_figure(PARTS)

    assert [trace.name for trace in figure.data] == ["round 1", "round 2"]
    second = figure.data[1]
    assert list(second.x) == ["lr", "depth"]  # the categorical is not drawn
    # lr is on a log scale: 0.001..1 is 3 decades, 0.001..0.01 the first.
    assert second.base[0] == pytest.approx(0.0)
    assert second.y[0] == pytest.approx(1 / 3)
    # depth 3..5 of 1..9.
    assert second.base[1] == pytest.approx(2 / 8)
    assert second.y[1] == pytest.approx(2 / 8)
    assert "high rates never converged" in second.hovertext[0]


def test_refinement_rows_carry_the_bounds_and_reasons() -> None:
    assert refinement_rows(PARTS) == [
        {
            "round": 2,
            "parameter": "lr",
            "bounds": "0.001 to 0.01",
            "reason": "high rates never converged",
        },
        {
            "round": 2,
            "parameter": "depth",
            "bounds": "3 to 5",
            "reason": "best cluster at 3-5",
        },
    ]


def test_compute_is_stacked_by_cluster_and_skips_warm_start_copies() -> None:
    figure = compute_figure(PARTS)

    by_cluster = {trace.name: list(trace.y) for trace in figure.data}
    # Groups: round 1, round 2 (its copied row cost nothing), validation.
    assert by_cluster["k8s"] == pytest.approx([1.0, 2.0, 0.5])
    assert by_cluster["metal"] == pytest.approx([1.0, 0.0, 0.0])
    assert "total 4.5 h" in figure.layout.title.text


def test_the_history_runs_separate_rounds_and_drop_copies() -> None:
    runs, starts, labels = campaign_runs(PARTS)

    assert [r.value("epochs") for r in runs] == [40, 35, 30, 31]
    assert starts == [2, 3]
    assert labels == ["round 2", "validation"]


def test_a_search_compares_with_a_grid_of_the_same_space() -> None:
    assert is_grid(GRID) and not is_grid(PARTS)
    assert comparable(PARTS[0].spec, GRID[0].spec)
    other_metric = parse_spec(
        {
            **make_spec().to_dict(),
            "metrics": [{"name": "loss", "objective": "minimize"}],
        }
    )
    assert not comparable(PARTS[0].spec, other_metric)

    comparison = compare_campaigns([("grid", GRID), ("Bayesian", PARTS)], baseline=0)
    assert comparison is not None
    compute, objective = comparison_tables(comparison)

    # grid: 4 + 1 h on k8s; Bayesian: 1 + 2 + 0.5 on k8s, 1 on metal.
    assert compute["rows"] == [
        ["k8s", 5.0, 3.5],
        ["metal", 0.0, 1.0],
        ["total", 5.0, 4.5],
    ]
    # The validated 31 against the grid's 38: 7 / 38 = 18.4 % fewer epochs.
    assert objective["rows"][1] == ["Bayesian", "31", "–", "validation", "+18.4 %"]


def test_no_round_yet_gives_messages() -> None:
    assert "No round has started yet." in str(bounds_figure([]).layout.annotations)
    assert "No compute recorded yet." in str(compute_figure([]).layout.annotations)
    assert compare_campaigns([("a", PARTS), ("b", [])]) is None


def test_the_campaign_report_holds_every_view() -> None:
    comparison = compare_campaigns([("grid", GRID), ("Bayesian", PARTS)])
    page = render_campaign_report(
        "tuned", PARTS, "Campaign 1: tuned", state="done", comparison=comparison
    )

    for view in ("campaign-bounds", "campaign-compute", "history", "importance"):
        assert f'<div id="{view}"' in page
    assert "high rates never converged" in page
    assert '<table id="compare-objective">' in page


def test_report_campaign_on_the_command_line(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'c.db'}"
    with Store(db) as store:
        campaign = store.create_campaign("cli", {"rounds": {"max": 2, "budget": 2}})
        for part in PARTS[:2]:
            experiment = store.create_campaign_experiment(
                campaign,
                part.spec,
                role="round",
                round=part.round,
                refinement=part.refinement,
                observations=part.observations,
            )
            assert experiment > 0
    out = tmp_path / "campaign.html"

    result = CliRunner().invoke(
        app, ["report", "--db", db, "--campaign", str(campaign), "--out", str(out)]
    )

    assert result.exit_code == 0, result.output
    # rich wraps the line at the terminal's width.
    assert "2 experiments (3 runs) of campaign" in " ".join(result.output.split())
    assert "best cluster at 3-5" in out.read_text()


def test_report_refuses_an_experiment_and_a_campaign_at_once(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "report",
            "--experiment",
            "1",
            "--campaign",
            "1",
            "--out",
            str(tmp_path / "x"),
        ],
    )

    assert result.exit_code == 2
    assert "give one of them" in result.output
