"""How long the report and the dashboard take to become usable in Chromium.

For each size (observations of a four-parameter, two-metric experiment, 5 %
failed), this writes the HTML report, seeds a SQLite database, starts
``optiloop serve`` on a free loopback port, and opens both in headless
Chromium (Debian's /usr/bin/chromium, software WebGL, as in CI), each in a
fresh browser context with an empty cache.  Printed per page, in ms from
navigation start:

- ``load``: the load event (the report: plotly.js parsed and run; the
  dashboard: its small page, before it fetches plotly.js and the data);
- ``usable``: every view in the first screen (1280 x 800) is drawn and the
  next frame has been painted, so the page scrolls and answers clicks;
- ``all``: every view drawn, scrolling down through them as a reader would,
  and the slowest view's own drawing time.

A baseline row opens a page holding plotly.js and nothing else: the time
this machine needs to parse plotly, which no figure can undercut.

    python benchmarks/dashboard_render.py [--sizes 100 1000 10000] [--repeat 2]

The machine is shared and its load changes the figures by tens of percent;
the load average is printed with them.
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from optiloop.analysis import render_report
from optiloop.experiment import MetricValue, Observation, parse_spec
from optiloop.store import Store

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1280, "height": 800}

SPEC: dict[str, Any] = {
    "name": "render benchmark",
    "type": "random",
    "parameters": [
        {"name": "train_epochs", "type": "int", "bounds": {"min": 5, "max": 30}},
        {
            "name": "base_learning_rate",
            "type": "double",
            "bounds": {"min": 0.5, "max": 64},
            "transformation": "log",
        },
        {
            "name": "weight_decay",
            "type": "double",
            "grid_pow2": {"base": 1.0e-4, "min": 1.0e-5, "max": 4.0e-4},
        },
        {
            "name": "optimizer",
            "type": "categorical",
            "categorical_values": ["lars", "sgd"],
        },
    ],
    "metrics": [
        {"name": "eval_accuracy", "strategy": "constraint", "threshold": 0.98},
        {"name": "converge_epoch", "objective": "minimize"},
    ],
}
WEIGHT_DECAYS = [1.25e-5, 2.5e-5, 5e-5, 1e-4, 2e-4, 4e-4]

# Resolves once the views in the first screen are drawn and a frame has
# been painted after them; returns both times (ms since navigation).
FIRST_SCREEN_JS = """() => new Promise(resolve => {
  function check() {
    const views = [...document.querySelectorAll('.view')];
    const shown = views.filter(v => v.getBoundingClientRect().top < innerHeight);
    if (shown.length > 0 && shown.every(v => v.dataset.state === 'drawn')) {
      const drawn = performance.now();
      const done = () => resolve(
        {drawn: drawn, usable: performance.now(), views: shown.length});
      requestAnimationFrame(() => setTimeout(done, 0));
    } else {
      setTimeout(check, 5);
    }
  }
  check();
})"""


def observations(count: int, seed: int = 0) -> list[Observation]:
    rng = random.Random(seed)
    made = []
    for _ in range(count):
        assignments = {
            "train_epochs": rng.randint(5, 30),
            "base_learning_rate": 0.5 * 128 ** rng.random(),
            "weight_decay": rng.choice(WEIGHT_DECAYS),
            "optimizer": rng.choice(["lars", "sgd"]),
        }
        if rng.random() < 0.05:
            made.append(Observation(assignments, failed=True))
            continue
        epochs = float(assignments["train_epochs"])
        values = (
            MetricValue("eval_accuracy", 0.95 + 0.05 * rng.random()),
            MetricValue("converge_epoch", 3 + epochs * rng.random()),
        )
        made.append(Observation(assignments, values, metadata={"compute_seconds": 60}))
    return made


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def measure(browser: Any, url: str, token: str | None = None) -> dict[str, float]:
    """Open ``url`` in a fresh context; the times of FIRST_SCREEN_JS and more."""
    context = browser.new_context(viewport=VIEWPORT)
    if token is not None:
        context.add_init_script(f"sessionStorage.setItem('optiloop-token', {token!r})")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(url, wait_until="load", timeout=300_000)
    first = page.evaluate(FIRST_SCREEN_JS)
    load = page.evaluate("performance.getEntriesByType('navigation')[0].loadEventEnd")

    for view in page.query_selector_all(".view"):
        # Scrolled by the page itself: playwright's own scrolling waits for
        # two quiet frames, which a page busy drawing may not give in time.
        view.evaluate("div => div.scrollIntoView()")
        page.wait_for_function(
            "div => div.dataset.state === 'drawn'", arg=view, timeout=300_000
        )
    times = page.evaluate(
        """() => [...document.querySelectorAll('.view')].map(v => [
             v.id, Number(v.dataset.drawMs), Number(v.dataset.drawnAt)])"""
    )
    context.close()
    if errors:
        raise RuntimeError(f"{url}: page errors {errors}")
    slowest = max(times, key=lambda t: t[1])
    return {
        "load": load,
        "usable": first["usable"],
        "all": max(t[2] for t in times),
        "slowest": slowest[1],
        "slowest_view": slowest[0],
        "first_screen_views": first["views"],
    }


def baseline_page(folder: Path) -> Path:
    from plotly.offline import get_plotlyjs

    page = folder / "plotly-only.html"
    page.write_text(
        "<!DOCTYPE html><html><body><div class='view' id='empty'></div>"
        f"<script>{get_plotlyjs()}</script><script>"
        "Plotly.newPlot('empty', [], {height: 100}).then(() => {"
        "const d = document.getElementById('empty');"
        "d.dataset.drawMs = '0'; d.dataset.drawnAt = String(performance.now());"
        "d.dataset.state = 'drawn'; });</script></body></html>"
    )
    return page


def seed_database(db_url: str, runs: list[Observation]) -> tuple[str, int]:
    with Store(db_url) as store:
        token, secret = store.create_token("benchmark")
        experiment = store.create_experiment(parse_spec(SPEC), token.id)
        for run in runs:
            store.add_observation(
                experiment,
                run.assignments,
                run.values,
                failed=run.failed,
                metadata=run.metadata,
            )
    return secret, experiment


def serve(db_url: str, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    command = [
        str(Path(sys.executable).with_name("optiloop")),
        "serve",
        "--db",
        db_url,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    with log.open("w") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            httpx.get(url + "/", timeout=1.0)
            return process, url
        except httpx.TransportError:
            time.sleep(0.1)
    process.terminate()
    raise RuntimeError(f"optiloop serve did not start:\n{log.read_text()}")


def row(name: str, size: str, runs: list[dict[str, Any]]) -> str:
    def median(key: str) -> float:
        return statistics.median(r[key] for r in runs)

    slowest = max(runs, key=lambda r: r["slowest"])
    return (
        f"| {name} | {size} | {median('load'):,.0f} | {median('usable'):,.0f} | "
        f"{median('all'):,.0f} | {slowest['slowest_view']} "
        f"{slowest['slowest']:,.0f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    lines = [
        "| page | observations | load ms | usable ms | all drawn ms "
        "| slowest view ms |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    with tempfile.TemporaryDirectory() as folder_name, sync_playwright() as pw:
        folder = Path(folder_name)
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        base = [
            measure(browser, baseline_page(folder).as_uri()) for _ in range(args.repeat)
        ]
        lines.append(row("plotly.js alone", "-", base))

        for size in args.sizes:
            runs = observations(size)
            started = time.perf_counter()
            html = render_report(parse_spec(SPEC), runs, f"{size} runs")
            rendered = time.perf_counter() - started
            report = folder / f"report-{size}.html"
            report.write_text(html)
            timed = [measure(browser, report.as_uri()) for _ in range(args.repeat)]
            lines.append(row("report", f"{size:,}", timed))
            print(
                f"report of {size:,}: written in {rendered:.1f} s, "
                f"{len(html) / 1e6:.1f} MB",
                file=sys.stderr,
            )

            db_url = f"sqlite:///{folder / f'{size}.db'}"
            token, experiment = seed_database(db_url, runs)
            process, url = serve(db_url, folder / f"serve-{size}.log")
            try:
                page = f"{url}/#/experiments/{experiment}"
                # The first visit builds the figures on the server; later
                # visits (and other tabs) get them from its cache.
                cold = measure(browser, page, token)
                warm = [measure(browser, page, token) for _ in range(args.repeat)]
            finally:
                process.terminate()
                process.wait()
            lines.append(row("dashboard, first visit", f"{size:,}", [cold]))
            lines.append(row("dashboard, cached", f"{size:,}", warm))
        browser.close()

    load = os.getloadavg()
    cores = os.cpu_count()
    print(f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}, {cores} cores")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
