"""The dashboard in headless Chromium: sign-in, every view, live updates.

Counts and colours are read from what plotly drew: SVG points of the
scatter views, bars of the bar charts, and, for the parallel coordinates
(drawn with WebGL, so no DOM per line), the line colours plotly received.
The expected numbers are those of ``SEEDED`` in conftest.py.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from tests.browser.conftest import BEST, FAILED, MET, MISSED, SPEC, Console, Seeded

from optiloop.analysis.figures import best_runs_legend
from optiloop.experiment import parse_spec

GRAY = "rgb(168, 168, 168)"
BLUE = "rgb(31, 119, 180)"
ORANGE = "rgb(255, 127, 14)"
RED = "rgb(214, 39, 40)"

# The legend entry of the orange runs, which says what they are.
BEST_RUNS = best_runs_legend(parse_spec(SPEC))

# Enough for a poll (every 3 s) and a redraw on a loaded machine.
LIVE_TIMEOUT_MS = 20_000
DRAW_TIMEOUT_MS = 30_000

# Per scatter trace of a view: its name, how many points it drew, and the
# colour of its first point (the stroke for open symbols).
TRACES_JS = """
id => [...document.getElementById(id).querySelectorAll('.scatterlayer .trace')]
  .map(node => {
    const trace = node.__data__[0].trace;
    const points = node.querySelectorAll('path.point');
    const first = points[0];
    const open = first && first.style.fill === 'none';
    return {
      name: trace.name,
      points: points.length,
      colour: first ? (open ? first.style.stroke : first.style.fill) : null,
      line: node.querySelector('path.js-line') !== null,
    };
  })
"""


def sign_in(tab: Any, seeded: Seeded, token: str | None = None) -> None:
    tab.goto(seeded.url + "/")
    tab.fill("#token", token or seeded.token)
    tab.click("#login button[type=submit]")


def open_page(tab: Any, seeded: Seeded, path: str) -> None:
    """Sign in, open ``#path`` and draw every view (scrolling to each)."""
    sign_in(tab, seeded)
    tab.wait_for_selector("#experiments")
    tab.goto(f"{seeded.url}/#{path}")
    tab.wait_for_selector(".view")
    for view in tab.query_selector_all(".view"):
        view.scroll_into_view_if_needed()
        tab.wait_for_function(
            "div => div.dataset.state === 'drawn'", arg=view, timeout=DRAW_TIMEOUT_MS
        )


def traces(tab: Any, view_id: str) -> dict[str, dict[str, Any]]:
    return {t["name"]: t for t in tab.evaluate(TRACES_JS, view_id)}


def test_a_wrong_token_is_refused_and_the_right_one_signs_in(
    page: tuple[Any, Console], seeded: Seeded
) -> None:
    tab, console = page

    sign_in(tab, seeded, token="olt_not-a-token")
    tab.wait_for_selector("#login .message")
    assert "did not accept the token" in tab.inner_text("#login .message")

    tab.fill("#token", seeded.token)
    tab.click("#login button[type=submit]")
    tab.wait_for_selector("#experiments")

    # The refused request is the only thing the console reported.
    assert all("401" in error for error in console.errors), console.errors
    assert len(console.errors) == 1


def test_the_sign_in_page_says_what_the_dashboard_shows(
    page: tuple[Any, Console], seeded: Seeded
) -> None:
    # Besides the token's own, the runs made in-process (no token's).
    tab, _ = page
    tab.goto(seeded.url + "/")
    text = tab.inner_text("#login .note")

    assert "experiments and campaigns this token created" in text
    assert "optiloop run --db" in text
    assert "belong to no token" in text


def test_empty_lists_are_plain_notes_not_warnings(
    page: tuple[Any, Console], seeded: Seeded
) -> None:
    tab, console = page
    tab.route(
        f"{seeded.url}/dashboard/api/overview",
        lambda route: route.fulfill(json={"experiments": [], "campaigns": []}),
    )
    sign_in(tab, seeded)
    tab.wait_for_selector("text=No campaign yet.")

    notes = tab.locator("#app p.note").all_inner_texts()
    assert "No campaign yet." in notes
    assert any(text.startswith("No experiment yet.") for text in notes)
    assert tab.locator("#app .message").count() == 0
    assert console.errors == []


def test_numbers_are_written_as_the_cli_writes_them(
    page: tuple[Any, Console], seeded: Seeded
) -> None:
    # The CLI writes values with Python's format(value, ".4g").
    tab, _ = page
    sign_in(tab, seeded)
    tab.wait_for_selector("#experiments")
    values = [2.5e-05, 0.000125, 1e-4, 0.97, 15.0, 12345.0, -0.5, 9.99995, 99995.0]
    # Ties go to the even figure (1234.5 to 1234), as Python rounds them.
    values += [1234.5, 1235.5, 1.0625, 0.125, 0.98775, 5e-324, 1.7e308]

    written = tab.evaluate("values => values.map(formatG)", values)

    assert written == [format(value, ".4g") for value in values]
    assert "2.5e-05" in written


def test_the_overview_lists_progress_and_best_so_far(
    page: tuple[Any, Console], seeded: Seeded
) -> None:
    tab, console = page
    sign_in(tab, seeded)
    tab.wait_for_selector("#experiments")

    row = tab.locator(f"#experiments tr[data-id='{seeded.experiments['seeded']}']")
    cells = row.locator("td").all_inner_texts()
    assert cells[1:] == [
        "seeded",
        "waiting",
        "10 / 20",
        "2",
        "accuracy = 0.97, epochs = 15",
    ]

    campaign = tab.locator(f"#campaigns tr[data-id='{seeded.campaign}']")
    # Two rounds of the file's three, 4 + 4 runs of 3 x 4; the best of the
    # rounds' runs took 15 epochs.
    assert campaign.locator("td").all_inner_texts()[1:] == [
        "seeded campaign",
        "running",
        "2 / 3",
        "8 / 12",
        "epochs = 15",
    ]
    grid = tab.locator(f"#campaigns tr[data-id='{seeded.grid}']")
    assert grid.locator("td").all_inner_texts()[3:] == [
        "grid search",
        "2 / –",
        "epochs = 22",
    ]
    assert console.errors == []


def test_every_view_draws_every_run_in_the_rule_colours(
    page: tuple[Any, Console], seeded: Seeded
) -> None:
    tab, console = page
    open_page(tab, seeded, f"/experiments/{seeded.experiments['seeded']}")

    # Parallel coordinates: one line per successful run, coloured by class
    # codes that the colour scale maps to gray, blue and orange.
    lines = tab.evaluate(
        """() => {
          const trace = document.getElementById('parallel-coordinates')._fullData[0];
          const scale = trace.line.colorscale;
          const colourOf = code => scale.filter(s => s[0] <= code / 2).pop()[1];
          // Numbers arrive as typed arrays; plain ones map to strings.
          const codes = Array.from(trace.line.color);
          return {
            codes: codes,
            colours: codes.map(colourOf),
            axes: trace.dimensions.map(d => d.label),
            canvases: document.querySelectorAll('#parallel-coordinates canvas').length,
          };
        }"""
    )
    assert len(lines["codes"]) == MISSED + MET + BEST
    assert lines["colours"].count("#a8a8a8") == MISSED
    assert lines["colours"].count("#1f77b4") == MET
    assert lines["colours"].count("#ff7f0e") == BEST
    assert lines["axes"] == ["lr (log)", "depth", "optimizer", "accuracy", "epochs"]
    assert lines["canvases"] > 0

    # History: every run once; failed runs marked; the best-so-far line.
    history = traces(tab, "history")
    assert history["met every threshold"]["points"] == MET + BEST
    assert history["met every threshold"]["colour"] == BLUE
    assert history["missed a threshold"]["points"] == MISSED
    assert history["missed a threshold"]["colour"] == GRAY
    assert history["failed"]["points"] == FAILED
    assert history["best so far"]["line"]

    # Metric scatter and correlation: successful runs, by class.
    for view in ("metric-scatter", "correlation"):
        drawn = traces(tab, view)
        assert drawn["missed a threshold"]["points"] == MISSED, view
        assert drawn["missed a threshold"]["colour"] == GRAY, view
        assert drawn["met every threshold"]["points"] == MET, view
        assert drawn["met every threshold"]["colour"] == BLUE, view
        assert drawn[BEST_RUNS]["points"] == BEST, view
        assert drawn[BEST_RUNS]["colour"] == ORANGE, view
    assert traces(tab, "metric-scatter")["best"]["points"] == 1

    # Importance: a bar per parameter and metric (3 x 2).
    bars = tab.locator("#importance .barlayer path").count()
    assert bars == 6
    assert console.errors == []


def test_a_new_observation_shows_up_without_a_reload(
    page: tuple[Any, Console], seeded: Seeded
) -> None:
    tab, console = page
    experiment = seeded.experiments["single"]
    open_page(tab, seeded, f"/experiments/{experiment}")
    tab.evaluate("window.loadedOnce = true")
    assert traces(tab, "history")["met every threshold"]["points"] == 1

    answer = httpx.post(
        f"{seeded.url}/v1/experiments/{experiment}/observations",
        headers={"Authorization": f"Bearer {seeded.token}"},
        json={
            "assignments": {"lr": 0.04, "depth": 3, "optimizer": "sgd"},
            "values": [
                {"name": "accuracy", "value": 0.96},
                {"name": "epochs", "value": 11},
            ],
        },
    )
    answer.raise_for_status()

    tab.wait_for_function(
        f"""() => ({TRACES_JS})('history').some(
              t => t.name === 'met every threshold' && t.points === 2)""",
        timeout=LIVE_TIMEOUT_MS,
    )
    assert tab.evaluate("window.loadedOnce") is True
    assert "Budget used" in tab.inner_text("#summary")
    assert "2 / 20" in tab.inner_text("#summary")
    assert console.errors == []


@pytest.mark.parametrize(
    ("case", "says"),
    [
        ("empty", "No observations yet"),
        ("all failed", "Every run so far failed"),
        ("single", "not enough data"),
        ("constant", None),
    ],
)
def test_edge_cases_show_a_message_not_an_error(
    page: tuple[Any, Console], seeded: Seeded, case: str, says: str | None
) -> None:
    tab, console = page
    open_page(tab, seeded, f"/experiments/{seeded.experiments[case]}")

    text = tab.inner_text("#app")
    assert "Could not show this page" not in text
    if says is not None:
        assert says in text
    assert tab.locator(".view").count() == 5
    assert console.errors == []


def test_a_constant_parameter_explains_nothing(
    page: tuple[Any, Console], seeded: Seeded
) -> None:
    tab, _ = page
    open_page(tab, seeded, f"/experiments/{seeded.experiments['constant']}")

    shares = tab.evaluate(
        """() => document.getElementById('importance')._fullData
                   .map(trace => [trace.x, trace.y])"""
    )
    for names, values in shares:
        assert dict(zip(names, values))["depth"] == 0


def test_the_campaign_page_shows_bounds_compute_and_the_grid_comparison(
    page: tuple[Any, Console], seeded: Seeded
) -> None:
    tab, console = page
    open_page(tab, seeded, f"/campaigns/{seeded.campaign}")

    # depth: round 1 searched 1..8, round 2 2..6, drawn on 1..8 as 0..1.
    bars = tab.evaluate(
        """() => document.getElementById('campaign-bounds')._fullData
                   .map(t => ({name: t.name, x: t.x, base: t.base, y: t.y}))"""
    )
    assert [b["name"] for b in bars] == ["round 1", "round 2"]
    second = dict(zip(bars[1]["x"], zip(bars[1]["base"], bars[1]["y"])))
    assert second["depth"] == pytest.approx((1 / 7, 4 / 7))
    assert tab.locator("#campaign-bounds .barlayer path").count() == 4

    reasons = tab.inner_text("#refinements")
    assert "the best cluster spans depth 2 to 6" in reasons

    # Compute: 3 runs x 600 s + 1 failed x 30 s per round.
    hours = tab.evaluate(
        "() => document.getElementById('campaign-compute')._fullData[0].y"
    )
    assert hours == pytest.approx([1830 / 3600, 1830 / 3600])

    # Against the grid search of the same space (2 runs x 600 s), which
    # found 22 epochs where the rounds found 15: 7 / 22 = 31.8 % better.
    compute = tab.inner_text("#compare-compute")
    assert "0.3333" in compute
    assert "1.017" in compute
    objective = tab.inner_text("#compare-objective")
    assert "+31.8 %" in objective
    assert "22" in objective

    # History over the rounds: 8 runs, a dotted line between the rounds.
    shapes = tab.evaluate(
        "() => document.getElementById('history').layout.shapes.map(s => s.x0)"
    )
    assert shapes == [4.5]
    assert console.errors == []


def test_print_media_draws_every_figure(
    page: tuple[Any, Console], seeded: Seeded
) -> None:
    # Print preview (print media) shows the figures never scrolled to.
    tab, console = page
    tab.set_viewport_size({"width": 1280, "height": 600})
    sign_in(tab, seeded)
    tab.wait_for_selector("#experiments")
    tab.goto(f"{seeded.url}/#/experiments/{seeded.experiments['seeded']}")
    tab.wait_for_function(
        "() => document.querySelector('.view')?.dataset.state === 'drawn'",
        timeout=DRAW_TIMEOUT_MS,
    )
    states = tab.eval_on_selector_all(".view", "divs => divs.map(d => d.dataset.state)")
    assert "waiting" in states

    tab.emulate_media(media="print")

    tab.wait_for_function(
        """() => [...document.querySelectorAll('.view')].every(
              d => d.dataset.state === 'drawn'
                && d.querySelector('svg.main-svg') !== null)""",
        timeout=DRAW_TIMEOUT_MS,
    )
    assert tab.locator(".view").count() == 5
    assert console.errors == []
