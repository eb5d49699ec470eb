"""Fixtures of the browser tests: a seeded server and one headless Chromium.

The server is the session's shared ``optiloop serve`` on 127.0.0.1 (see
tests/conftest.py); the experiments seeded here belong to a token of their
own, so no other test sees them.  Chromium is Debian's ``/usr/bin/chromium``
driven by playwright (its own browser download does not work on CI's
machines); without either, the browser tests are skipped with the reason.

``SEEDED`` is built so that every count a test checks is known by hand:
10 observations of which 2 failed, 3 missed the accuracy threshold and 5
met it; with one optimized metric the best tenth of the feasible runs
(rounded up: 1) is orange, which is the best run itself.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

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

# Chromium logs this warning when WebGL runs in software; it is no error.
WEBGL_STALL = "GPU stall due to ReadPixels"

SPEC: dict[str, Any] = {
    "name": "seeded search",
    "type": "random",
    "parameters": [
        {
            "name": "lr",
            "type": "double",
            "bounds": {"min": 0.001, "max": 1.0},
            "transformation": "log",
        },
        {"name": "depth", "type": "int", "bounds": {"min": 1, "max": 8}},
        {
            "name": "optimizer",
            "type": "categorical",
            "categorical_values": ["adam", "sgd"],
        },
    ],
    "metrics": [
        {"name": "accuracy", "strategy": "constraint", "threshold": 0.9},
        {"name": "epochs", "objective": "minimize"},
    ],
    "observation_budget": 20,
}

# (lr, depth, optimizer, accuracy, epochs); None values mark a failed run.
RUNS: list[tuple[float, int, str, float | None, float | None]] = [
    (0.01, 2, "adam", 0.95, 30.0),  # met
    (0.1, 4, "sgd", 0.85, 20.0),  # missed
    (0.3, 5, "sgd", None, None),  # failed
    (0.003, 6, "adam", 0.92, 25.0),  # met
    (0.5, 1, "sgd", 0.80, 12.0),  # missed
    (0.05, 3, "adam", 0.97, 15.0),  # met, the best: fewest epochs
    (0.02, 5, "sgd", 0.91, 28.0),  # met
    (0.7, 2, "adam", None, None),  # failed
    (0.2, 7, "adam", 0.88, 18.0),  # missed
    (0.008, 8, "sgd", 0.93, 22.0),  # met
]
MISSED, MET, BEST, FAILED = 3, 4, 1, 2


def observation(
    lr: float,
    depth: int,
    optimizer: str,
    accuracy: float | None,
    epochs: float | None,
) -> Observation:
    assignments = {"lr": lr, "depth": depth, "optimizer": optimizer}
    if accuracy is None or epochs is None:
        return Observation(assignments, failed=True, metadata={"compute_seconds": 30})
    values = (MetricValue("accuracy", accuracy), MetricValue("epochs", epochs))
    return Observation(assignments, values, metadata={"compute_seconds": 600})


@dataclass(frozen=True)
class Seeded:
    """The server, the token that owns the seeded data, and its ids."""

    url: str
    db_url: str
    token: str
    experiments: dict[str, int]
    campaign: int
    grid: int


def _store_runs(store: Store, experiment_id: int, runs: Sequence[Observation]) -> None:
    for run in runs:
        store.add_observation(
            experiment_id,
            run.assignments,
            run.values,
            failed=run.failed,
            metadata=run.metadata,
        )


def _seed_campaign(store: Store, owner: int) -> tuple[int, int]:
    """Two rounds (the second narrowed, with reasons), and a grid search of
    the same space; the ids of both campaigns."""
    campaign_file = {
        **SPEC,
        "name": "seeded campaign",
        "rounds": {"max": 3, "budget": 4},
    }
    campaign_id = store.create_campaign("seeded campaign", campaign_file, owner)

    first = parse_spec({**SPEC, "name": "seeded campaign, round 1"})
    narrowed = dict(SPEC["parameters"][1], bounds={"min": 2, "max": 6})
    second = parse_spec(
        {
            **SPEC,
            "name": "seeded campaign, round 2",
            "parameters": [SPEC["parameters"][0], narrowed, SPEC["parameters"][2]],
        }
    )
    refinement = {
        "from_round": 1,
        "stop": False,
        "summary": "narrowed depth",
        "bounds": {"depth": {"min": 2, "max": 6, "grid": None}},
        "reasons": {"depth": "the best cluster spans depth 2 to 6"},
        "warm_start": 0,
    }
    grid_id = store.create_campaign(
        "seeded grid", {**SPEC, "name": "seeded grid"}, owner
    )
    parts = [
        (campaign_id, first, "round", 1, None, RUNS[:4]),
        (campaign_id, second, "round", 2, refinement, RUNS[4:8]),
        (grid_id, parse_spec({**SPEC, "name": "grid"}), "grid", None, None, RUNS[8:]),
    ]
    for owner_campaign, spec, role, round_number, refine, runs in parts:
        experiment_id = store.create_campaign_experiment(
            owner_campaign,
            spec,
            role=role,
            round=round_number,
            refinement=refine,
            owner_token_id=owner,
        )
        _store_runs(store, experiment_id, [observation(*run) for run in runs])
    return campaign_id, grid_id


@pytest.fixture(scope="session")
def seeded(shared_server: Any) -> Seeded:
    """The seeded experiments, the edge cases, and a campaign."""
    token = shared_server.new_token("browser")
    with Store(shared_server.db_url) as store:
        found = store.find_token(token)
        assert found is not None
        owner = found.id

        constant = dict(SPEC["parameters"][1], bounds={"min": 1, "max": 8})
        cases: dict[str, list[Observation]] = {
            "seeded": [observation(*run) for run in RUNS],
            "empty": [],
            "all failed": [observation(0.1, 2, "adam", None, None)] * 3,
            "single": [observation(*RUNS[0])],
            "constant": [
                observation(lr, 4, opt, acc, ep)
                for lr, _, opt, acc, ep in RUNS
                if acc is not None
            ],
        }
        ids = {}
        for name, runs in cases.items():
            spec_data = {**SPEC, "name": name}
            if name == "constant":
                spec_data["parameters"] = [SPEC["parameters"][0], constant]
            ids[name] = store.create_experiment(parse_spec(spec_data), owner)
            _store_runs(store, ids[name], runs)
        campaign, grid = _seed_campaign(store, owner)
    return Seeded(shared_server.url, shared_server.db_url, token, ids, campaign, grid)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """One Chromium for the session; each test opens its own page."""
    if not Path(CHROMIUM).exists() or shutil.which(CHROMIUM) is None:
        pytest.skip(
            f"browser tests need Debian's chromium at {CHROMIUM}: "
            "apt-get install chromium chromium-driver (.ci/run does)"
        )
    sync_api = pytest.importorskip(
        "playwright.sync_api",
        reason="browser tests need playwright: pip install -e '.[dev]'",
    )
    # playwright must not try to download a browser of its own.
    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()


@dataclass
class Console:
    """What a page logged: errors fail a test, and uncaught exceptions."""

    errors: list[str]


@pytest.fixture(scope="session")
def browser_context(browser: Any) -> Iterator[Any]:
    """One context for the session, so that plotly.js is fetched and compiled
    once; each test's tab still has its own sessionStorage (its own login)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    yield context
    context.close()


@pytest.fixture
def page(browser_context: Any) -> Iterator[tuple[Any, Console]]:
    """A fresh tab, signed out, and what its console reports."""
    tab = browser_context.new_page()
    console = Console([])

    def on_console(message: Any) -> None:
        if message.type == "error" and WEBGL_STALL not in message.text:
            console.errors.append(message.text)

    tab.on("console", on_console)
    tab.on("pageerror", lambda error: console.errors.append(str(error)))
    yield tab, console
    tab.close()
