"""The HTML report opened from a file URL in Chromium with no network."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.browser.conftest import BEST, MET, MISSED, RUNS, SPEC, Console, observation

from optiloop.analysis import render_report
from optiloop.experiment import MetricValue, Observation, parse_spec

DRAW_TIMEOUT_MS = 30_000


def test_the_report_draws_every_view_offline(
    page: tuple[Any, Console], tmp_path: Path
) -> None:
    tab, console = page
    runs = [observation(*run) for run in RUNS]
    report = tmp_path / "report.html"
    report.write_text(render_report(parse_spec(SPEC), runs, "Offline report"))

    # Every request that is not the file itself is recorded and refused.
    attempted: list[str] = []

    def refuse_the_network(route: Any) -> None:
        url = route.request.url
        if url.startswith("file://"):
            route.continue_()
        else:
            attempted.append(url)
            route.abort()

    tab.route("**/*", refuse_the_network)
    tab.goto(report.as_uri())

    views = tab.query_selector_all(".view")
    assert len(views) == 5
    for view in views:
        view.scroll_into_view_if_needed()
        tab.wait_for_function(
            "div => div.dataset.state === 'drawn'", arg=view, timeout=DRAW_TIMEOUT_MS
        )

    lines = tab.evaluate(
        "() => document.getElementById('parallel-coordinates')"
        "._fullData[0].line.color.length"
    )
    assert lines == MISSED + MET + BEST
    assert attempted == []
    assert console.errors == []


# Per view div: plotly's class and its SVG, which Plotly puts in the div as
# it draws (synchronously), and the drawer's state.
VIEWS_JS = """() => [...document.querySelectorAll('.view')].map(div => ({
  id: div.id,
  plotted: div.classList.contains('js-plotly-plot')
    && div.querySelector('svg.main-svg') !== null,
  state: div.dataset.state,
}))"""


def test_printing_draws_the_figures_never_scrolled_to(
    page: tuple[Any, Console], tmp_path: Path
) -> None:
    tab, console = page
    runs = [observation(*run) for run in RUNS]
    report = tmp_path / "report.html"
    report.write_text(render_report(parse_spec(SPEC), runs, "Printed report"))
    tab.set_viewport_size({"width": 1280, "height": 600})

    tab.goto(report.as_uri())
    tab.wait_for_function(
        "() => document.querySelector('.view').dataset.state === 'drawn'",
        timeout=DRAW_TIMEOUT_MS,
    )
    # Far below the viewport, the last figures wait to be scrolled to.
    assert [v["id"] for v in tab.evaluate(VIEWS_JS) if not v["plotted"]]

    tab.pdf(path=str(tmp_path / "report.pdf"))

    # Drawn before the page was laid out for print, not after.
    views = tab.evaluate(VIEWS_JS)
    assert len(views) == 5
    assert all(view["plotted"] for view in views), views
    assert (tmp_path / "report.pdf").stat().st_size > 0
    assert console.errors == []


def test_categories_and_int_ticks_read_as_written(
    page: tuple[Any, Console], tmp_path: Path
) -> None:
    # A category with markup in it shows literally, as text (no element);
    # an int axis is labelled with whole numbers only.
    spec = parse_spec(
        {
            **SPEC,
            "parameters": [
                {"name": "epochs", "type": "int", "bounds": {"min": 5, "max": 30}},
                {
                    "name": "optimizer",
                    "type": "categorical",
                    "categorical_values": ["<b>hi</b>", "a&b"],
                },
            ],
        }
    )
    runs = [
        Observation(
            {"epochs": epochs, "optimizer": kind},
            (MetricValue("accuracy", 0.95), MetricValue("epochs", 10.0)),
        )
        for epochs, kind in [(5, "<b>hi</b>"), (30, "a&b")]
    ]
    report = tmp_path / "report.html"
    report.write_text(render_report(spec, runs, "Odd categories"))

    tab, console = page
    tab.goto(report.as_uri())
    tab.wait_for_function(
        "() => document.getElementById('parallel-coordinates')"
        ".dataset.state === 'drawn'",
        timeout=DRAW_TIMEOUT_MS,
    )

    ticks = tab.evaluate(
        """() => [...document.querySelectorAll('#parallel-coordinates .axis')]
              .map(axis => [...axis.querySelectorAll('.tick text')]
                .map(text => text.textContent))"""
    )
    assert ticks[0] == ["5", "10", "20", "30"]
    assert ticks[1] == ["<b>hi</b>", "a&b"]
    assert tab.locator("#parallel-coordinates b").count() == 0
    assert console.errors == []
