"""The HTML report: self-contained, offline, escaped, and never an error."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from plotly.offline import get_plotlyjs
from typer.testing import CliRunner

from optiloop.analysis import VIEW_IDS, render_report, summarize
from optiloop.cli import app
from optiloop.experiment import ExperimentSpec, MetricValue, Observation, parse_spec

HOSTILE = "<script>alert(1)</script>"


EPOCHS: dict[str, Any] = {
    "name": "train_epochs",
    "type": "int",
    "bounds": {"min": 10, "max": 50},
}


def make_spec(
    name: str = "report", parameter: dict[str, Any] = EPOCHS
) -> ExperimentSpec:
    return parse_spec(
        {
            "name": name,
            "parameters": [parameter],
            "metrics": [
                {"name": "acc", "strategy": "constraint", "threshold": 0.9},
                {"name": "epochs", "objective": "minimize"},
            ],
        }
    )


def observe(
    epochs: int, acc: float, seconds: float | None = None, name: str = "train_epochs"
) -> Observation:
    """A run of ``epochs`` training epochs that converged two epochs early."""
    metadata = {} if seconds is None else {"compute_seconds": seconds}
    return Observation(
        assignments={name: epochs},
        values=(MetricValue("acc", acc), MetricValue("epochs", epochs - 2.0)),
        metadata=metadata,
    )


RUNS = [
    observe(40, 0.95, seconds=100.0),
    observe(30, 0.85, seconds=50.0),
    Observation({"train_epochs": 20}, failed=True, metadata={"compute_seconds": 5}),
    observe(35, 0.92),
    observe(45, 0.97, seconds=200.0),
    observe(25, 0.80, seconds=30.0),
]


@pytest.fixture(scope="module")
def page() -> str:
    return render_report(make_spec(), RUNS, "Digits search")


def test_plotly_js_is_embedded_exactly_once(page: str) -> None:
    # The bundle's opening lines name its version; a copy would repeat them.
    assert page.count(get_plotlyjs()[:200]) == 1
    assert page.count(get_plotlyjs()) == 1


def test_every_view_has_its_div(page: str) -> None:
    for view_id in VIEW_IDS:
        assert page.count(f'<div id="{view_id}"') == 1


def test_nothing_is_loaded_from_the_network(page: str) -> None:
    assert not re.search(r"<script[^>]*\bsrc=", page)
    assert not re.search(r"<link[^>]*\bhref=", page)

    # plotly.js names a map server it would use for geographic plots only;
    # the rest of the page names no address at all.
    around_plotly = page.replace(get_plotlyjs(), "")
    assert "http://" not in around_plotly
    assert "https://" not in around_plotly


def test_the_summary_counts_the_runs(page: str) -> None:
    for label, count in [
        ("Observations", 6),
        ("Met every threshold", 3),
        ("Missed a threshold", 2),
        ("Failed", 1),
    ]:
        assert f"<tr><th>{label}</th><td>{count}</td></tr>" in page


def test_the_summary_adds_up_recorded_compute() -> None:
    summary = summarize(make_spec(), RUNS)

    # 100 + 50 + 5 + 200 + 30; one run recorded none.
    assert summary.compute_seconds == 385.0
    assert summary.compute_recorded == 5


def test_the_report_shows_compute_and_who_recorded_it(page: str) -> None:
    # 385 s is 0.107 h.
    assert "385 s (0.11 h), recorded by 5 of the observations" in page


def test_the_summary_names_the_best_point(page: str) -> None:
    # Feasible runs have 40, 35 and 45 epochs; 35 gives the fewest (33).
    assert "acc = 0.92, epochs = 33 at train_epochs = 35" in page


def test_user_strings_are_escaped() -> None:
    spec = make_spec(HOSTILE, {**EPOCHS, "name": HOSTILE})
    runs = [observe(e, a, name=HOSTILE) for e, a in [(40, 0.95), (30, 0.8)]]

    page = render_report(spec, runs, HOSTILE)

    assert HOSTILE not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


@pytest.mark.parametrize(
    "observations",
    [
        [],
        [Observation({"train_epochs": 20}, failed=True)] * 3,
        [observe(40, 0.95)],
        [observe(40, 0.95), observe(40, 0.80), observe(40, 0.91)],
    ],
    ids=["none", "all-failed", "single", "constant-parameter"],
)
def test_edge_cases_render_every_view(observations: list[Observation]) -> None:
    page = render_report(make_spec(), observations, "edge case")

    for view_id in VIEW_IDS:
        assert f'<div id="{view_id}"' in page


def test_a_spec_without_numeric_parameters_explains_the_correlation() -> None:
    block = {"name": "block", "type": "categorical", "categorical_values": ["a", "b"]}
    spec = make_spec(parameter=block)
    runs = [
        Observation({"block": b}, observe(e, 0.95).values)
        for b, e in [("a", 20), ("b", 30)]
    ]

    page = render_report(spec, runs, "categorical only")

    assert "The experiment has no numeric parameter." in page


def test_figure_data_cannot_close_its_script_element() -> None:
    spec = make_spec(parameter={**EPOCHS, "name": "</script><b>"})

    page = render_report(spec, [observe(40, 0.95, name="</script><b>")], "t")

    data = page.split('<script type="application/json" id="figures">')[1]
    data = data.split("</script>")[0]
    assert "<" not in data
    assert json.loads(data)["history"]["layout"]["title"]["text"]


def test_the_heading_is_not_repeated_under_it(page: str) -> None:
    titled = render_report(make_spec("digits"), RUNS, "Experiment 3: digits")

    assert 'class="subtitle"' not in titled
    # A title without the name keeps the name under it.
    assert '<p class="subtitle">Experiment report</p>' in page


def test_report_refuses_a_database_that_is_not_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Opening the default sqlite:///optiloop.db would create an empty file.
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OPTILOOP_DB", raising=False)

    result = CliRunner().invoke(app, ["report", "--out", "report.html"])

    assert result.exit_code == 2
    assert "no database file at optiloop.db" in result.output
    assert list(tmp_path.iterdir()) == []
