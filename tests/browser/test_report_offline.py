"""The HTML report opened from a file URL in Chromium with no network."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.browser.conftest import BEST, MET, MISSED, RUNS, SPEC, Console, observation

from optiloop.analysis import render_report
from optiloop.experiment import parse_spec

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
