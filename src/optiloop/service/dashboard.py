"""The web dashboard: experiments and campaigns in a browser, updated live.

``/`` serves one static page (``static/index.html`` with its script and
style sheet).  Everything the page shows comes from the JSON routes under
``/dashboard/api``, which take the API tokens of ``/v1`` and show a token
its own experiments and campaigns, as ``/v1`` does, and also those made
in-process (``optiloop run --db``), which belong to no token: whoever runs
``optiloop serve`` on a database file would want to watch the runs made on
it.  The dashboard only reads; changing them stays with the file's owner.

Sign-in: the page asks for an API token, keeps it in ``sessionStorage`` and
sends it as ``Authorization: Bearer`` with every JSON request.  Not a
cookie: a browser attaches cookies to requests that other sites make it
send, so the ``/v1`` routes that create and change things would then need
CSRF protection; a header is only ever sent by this page's own script.
``sessionStorage`` ends with the tab, so a shared machine forgets the
token.  The cost is that a script injected into the page could read it;
hence text-only DOM updates and a Content-Security-Policy that allows no
inline script.

Live updates: the page asks its route again every few seconds, sending the
version it shows (``?since=``).  A version is the experiment's ``updated``
time, which the store moves forward on every change to the experiment, its
suggestions or its observations (an edit or a delete included), with the
counts of both (one query per experiment); figures are rebuilt only when
it changed, and kept for the next tab that asks.  Polling rather than
server-sent events: a short request per interval passes any proxy and holds
no connection per open tab, at the cost of up to one interval of delay.

The figures are ``optiloop report``'s (``experiment_figures``), sent as
plotly JSON; plotly.js is served from the installed plotly package, so the
page fetches nothing from the internet.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

from optiloop.analysis.campaign import (
    CampaignPart,
    comparable,
    compare_campaigns,
    comparison_tables,
    is_grid,
    refinement_rows,
    round_parts,
)
from optiloop.analysis.compute import Comparison
from optiloop.analysis.report import (
    campaign_figures,
    experiment_figures,
    figures_json,
    plots_js,
    summarize,
)
from optiloop.client.local import LocalDriver, parse_id
from optiloop.errors import NotFoundError
from optiloop.experiment import ExperimentSpec, Observation, best_observations
from optiloop.service.auth import authenticate
from optiloop.service.errors import ApiError
from optiloop.store import Store, TokenRecord
from optiloop.store.store import CampaignRecord, ExperimentRecord

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).with_name("static")
API_PREFIX = "/dashboard/api"

# Scripts only from this server; plotly.js sets styles inline and regl (its
# WebGL layer, used by the parallel coordinates) compiles its draw calls
# with Function(), hence 'unsafe-inline' styles and 'unsafe-eval'.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-eval'; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'self'"
)

# A 401 here asks for a bearer token: a Basic challenge would make the
# browser pop up its own password dialog over the page.
BEARER_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="optiloop dashboard"'}

# plotly.js is 4.8 MB: a day in the browser's cache spares fetching it on
# every visit.
STATIC_MAX_AGE = 86_400

# Pages of figures (megabytes for 10,000 runs) of this many (experiment or
# campaign, version) pairs are kept; and the overview's rows (a few hundred
# bytes each) of this many.
PAGE_CACHE_SIZE = 16
ROW_CACHE_SIZE = 2048


class _Cache:
    """The last answers built, by key; shared by the request threads."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[Any, ...], build: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]

        # Built outside the lock: a slow experiment must not hold up others.
        # Two threads may build the same answer once each; both are right.
        value = build()
        with self._lock:
            self._items[key] = value
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return value


def install_dashboard(app: FastAPI) -> None:
    """Serve the dashboard page, its JSON routes and its static files."""
    app.state.dashboard_pages = _Cache(PAGE_CACHE_SIZE)
    app.state.dashboard_rows = _Cache(ROW_CACHE_SIZE)
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")


router = APIRouter(include_in_schema=False)


# The page and its scripts


@router.get("/")
def index() -> HTMLResponse:
    page = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
    return HTMLResponse(page, headers=_page_headers())


@router.get("/static/plotly.min.js")
def plotly_js() -> FileResponse:
    """The plotly.js bundle that ships inside the plotly package."""
    import plotly

    bundle = Path(plotly.__file__).with_name("package_data") / "plotly.min.js"
    return FileResponse(
        bundle,
        media_type="text/javascript",
        headers={"Cache-Control": f"max-age={STATIC_MAX_AGE}"},
    )


@router.get("/static/plots.js")
def lazy_plots_js() -> Response:
    """The lazy figure drawer that the HTML report embeds."""
    return Response(plots_js(), media_type="text/javascript")


def _page_headers() -> dict[str, str]:
    return {
        "Content-Security-Policy": CONTENT_SECURITY_POLICY,
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }


# Who is asking


def the_caller(request: Request) -> TokenRecord:
    try:
        return authenticate(request, _store(request))
    except ApiError as error:
        raise ApiError(error.status, error.message, BEARER_CHALLENGE) from None


def _store(request: Request) -> Store:
    driver: LocalDriver = request.app.state.driver
    return driver.store


def _pages(request: Request) -> _Cache:
    cache: _Cache = request.app.state.dashboard_pages
    return cache


def _rows(request: Request) -> _Cache:
    cache: _Cache = request.app.state.dashboard_rows
    return cache


CallerDep = Annotated[TokenRecord, Depends(the_caller)]
SinceQuery = Annotated[
    str | None,
    Query(description="The version the page shows; unchanged answers are short."),
]


# Overview


@router.get(f"{API_PREFIX}/overview")
def overview(request: Request, caller: CallerDep) -> dict[str, Any]:
    """The caller's experiments and campaigns, newest first, with progress."""
    store = _store(request)
    experiments = [
        record for record in store.list_experiments() if _visible(record, caller)
    ]
    rows = [_experiment_row(request, store, record) for record in reversed(experiments)]
    campaigns = [
        _campaign_row(request, store, campaign)
        for campaign in reversed(store.list_campaigns())
        if _visible(campaign, caller)
    ]
    return {"experiments": rows, "campaigns": campaigns}


def _experiment_row(
    request: Request, store: Store, record: ExperimentRecord
) -> dict[str, Any]:
    version = _experiment_version(store, record)
    return dict(
        _rows(request).get(
            ("row", record.id, version),
            lambda: _experiment_status(store, record, version),
        )
    )


def _experiment_version(store: Store, record: ExperimentRecord) -> str:
    """Changes whenever the experiment, one of its suggestions or one of
    its observations is created, edited or deleted: the store moves
    ``updated`` forward on each of them."""
    counts = store.counts(record.id)
    return (
        f"{counts.observations}.{counts.failed_observations}."
        f"{counts.suggestions}.{counts.open_suggestions}."
        f"{record.updated.timestamp():.6f}"
    )


def _experiment_status(
    store: Store,
    record: ExperimentRecord,
    version: str,
    observations: Sequence[Observation] | None = None,
) -> dict[str, Any]:
    spec = record.spec
    if observations is None:
        observations = store.list_observations(record.id)
    open_suggestions = len(store.open_suggestions(record.id))
    return {
        "id": record.id,
        "name": spec.name,
        "status": _status_word(spec, len(observations), open_suggestions),
        "observations": len(observations),
        "budget": spec.observation_budget,
        "failed": sum(1 for o in observations if o.failed),
        "best": _best_points(spec, observations),
        "campaign": getattr(record, "campaign_id", None),
        "version": version,
    }


def _status_word(spec: ExperimentSpec, observed: int, open_suggestions: int) -> str:
    budget = spec.observation_budget
    if budget is not None and observed >= budget:
        return "done"
    if open_suggestions > 0:
        return "running"
    return "waiting"


def _best_points(
    spec: ExperimentSpec, observations: Sequence[Observation]
) -> list[dict[str, Any]]:
    """The best feasible point (or the Pareto front), as plain JSON."""
    return [
        {
            "observation": o.id,
            "values": {v.name: v.value for v in o.values},
            "assignments": dict(o.assignments),
        }
        for o in best_observations(spec, observations)
    ]


# One experiment


@router.get(f"{API_PREFIX}/experiments/{{experiment_id}}")
def experiment_page(
    request: Request, caller: CallerDep, experiment_id: str, since: SinceQuery = None
) -> Response:
    """Status, summary and every figure of one experiment.

    With ``since`` equal to the current version, only the version comes
    back: the page's poll then costs one count query.
    """
    store = _store(request)
    record = _owned_experiment(store, caller, experiment_id)
    version = _experiment_version(store, record)
    if since == version:
        return _json_text(json.dumps({"version": version, "changed": False}))

    body = _pages(request).get(
        ("page", record.id, version),
        lambda: _experiment_body(store, record, version),
    )
    return _json_text(body)


def _visible(record: ExperimentRecord | CampaignRecord, caller: TokenRecord) -> bool:
    """The caller's own, or made in-process (no token's)."""
    return record.owner_token_id in (caller.id, None)


def _owned_experiment(
    store: Store, caller: TokenRecord, raw_id: str
) -> ExperimentRecord:
    """The caller's experiment; another token's answers as a missing one."""
    experiment_id = parse_id("experiment", raw_id)
    record = store.get_experiment(experiment_id)
    if not _visible(record, caller) or record.state == "deleted":
        raise NotFoundError(f"experiment {experiment_id} not found")
    return record


def _experiment_body(store: Store, record: ExperimentRecord, version: str) -> str:
    spec = record.spec
    observations = store.list_observations(record.id)
    status = _experiment_status(store, record, version, observations)
    summary = summarize(spec, observations)
    details = {
        **status,
        "changed": True,
        "feasible": summary.feasible,
        "infeasible": summary.infeasible,
        "compute_hours": _hours(summary.compute_seconds),
        "compute_recorded": summary.compute_recorded,
        "metrics": [
            {
                "name": m.name,
                "objective": m.objective,
                "strategy": m.strategy,
                "threshold": m.threshold,
            }
            for m in spec.metrics
        ],
    }
    figures = experiment_figures(spec, observations)
    logger.debug(
        "dashboard figures of experiment %d built at version %s", record.id, version
    )
    return _with_figures(details, figures_json(figures))


def _with_figures(details: dict[str, Any], figures: str) -> str:
    """``details`` as JSON, with the already serialized figures added."""
    head = json.dumps(details)
    return f'{head[:-1]}, "figures": {figures}}}'


def _json_text(body: str) -> Response:
    return Response(body, media_type="application/json")


def _hours(seconds: float | None) -> float | None:
    return None if seconds is None else seconds / 3600.0


# Campaigns


@router.get(f"{API_PREFIX}/campaigns/{{campaign_id}}")
def campaign_page(
    request: Request, caller: CallerDep, campaign_id: str, since: SinceQuery = None
) -> Response:
    """A campaign's rounds, bounds, compute and history, with its figures,
    and its comparison with a grid search of the same space if there is one.
    """
    store = _store(request)
    campaign = store.get_campaign(parse_id("campaign", campaign_id))
    if not _visible(campaign, caller):
        raise NotFoundError(f"campaign {campaign.id} not found")
    experiments = store.campaign_experiments(campaign.id)
    partner = comparison_partner(store, campaign, experiments, caller.id)
    version = _campaign_version(store, campaign, experiments)
    if partner is not None:
        version += "|" + _campaign_version(store, *partner)
    if since == version:
        return _json_text(json.dumps({"version": version, "changed": False}))

    def build() -> str:
        parts = campaign_parts(store, experiments)
        details = {
            **_campaign_status(campaign, parts),
            "version": version,
            "changed": True,
            "experiments": [
                {
                    **_experiment_row(request, store, record),
                    "role": record.campaign_role,
                    "round": record.campaign_round,
                }
                for record in experiments
            ],
            "refinements": refinement_rows(parts),
            "tables": _comparison_tables(store, campaign, parts, partner),
        }
        return _with_figures(details, figures_json(campaign_figures(parts)))

    return _json_text(_pages(request).get(("campaign", campaign.id, version), build))


def comparison_partner(
    store: Store,
    campaign: CampaignRecord,
    experiments: Sequence[ExperimentRecord],
    owner_token_id: int | None,
) -> tuple[CampaignRecord, list[ExperimentRecord]] | None:
    """The campaign to compare this one with, and its experiments.

    For a search, the newest grid search (``optiloop grid``) of the same
    owner (or of none: made in-process) over the same parameters and
    optimized metric; for a grid search, the newest such search.  None
    when there is none.
    """
    if not experiments:
        return None
    grid = all(e.campaign_role == "grid" for e in experiments)
    for other in reversed(store.list_campaigns()):
        if other.id == campaign.id:
            continue
        if other.owner_token_id not in (owner_token_id, None):
            continue
        theirs = store.campaign_experiments(other.id)
        if not theirs or all(e.campaign_role == "grid" for e in theirs) == grid:
            continue
        if comparable(experiments[0].spec, theirs[0].spec):
            return other, theirs
    return None


def campaign_parts(
    store: Store, experiments: Sequence[ExperimentRecord]
) -> list[CampaignPart]:
    """A campaign's experiments with their observations, for the analysis."""
    return [
        CampaignPart(
            experiment_id=record.id,
            role=record.campaign_role,
            round=record.campaign_round,
            spec=record.spec,
            observations=store.list_observations(record.id),
            refinement=record.refinement,
        )
        for record in experiments
    ]


def compare_with_partner(
    store: Store,
    campaign: CampaignRecord,
    parts: Sequence[CampaignPart],
    partner: tuple[CampaignRecord, Sequence[ExperimentRecord]] | None,
) -> Comparison | None:
    """The comparison tables' data; the grid search is the baseline."""
    if partner is None:
        return None
    other, experiments = partner
    searches = [
        (f"{campaign.id}: {campaign.name}", parts),
        (f"{other.id}: {other.name}", campaign_parts(store, experiments)),
    ]
    baseline = 0 if is_grid(parts) else 1
    return compare_campaigns(searches, baseline)


def _campaign_row(
    request: Request, store: Store, campaign: CampaignRecord
) -> dict[str, Any]:
    experiments = store.campaign_experiments(campaign.id)
    version = _campaign_version(store, campaign, experiments)
    return dict(
        _rows(request).get(
            ("campaign-row", campaign.id, version),
            lambda: _campaign_status(campaign, campaign_parts(store, experiments)),
        )
    )


def _campaign_status(
    campaign: CampaignRecord, parts: Sequence[CampaignPart]
) -> dict[str, Any]:
    """State, rounds, budget used and best so far of a campaign.

    The budget is the file's rounds times new observations per round; the
    validation runs come on top of it.  Best so far is the validated best
    once the campaign wrote its result, else the best feasible run yet.
    """
    rounds = campaign.file.get("rounds") or {}
    max_rounds = rounds.get("max")
    per_round = rounds.get("budget")
    budget = max_rounds * per_round if max_rounds and per_round else None
    result = campaign.result or {}

    searched = [o for part in _searched(parts) for o in part.own_runs]
    return {
        "id": campaign.id,
        "name": campaign.name,
        "state": campaign.state,
        "kind": "grid" if is_grid(parts) else "search",
        "rounds": len(round_parts(parts)),
        "max_rounds": max_rounds,
        "observations": len(searched),
        "budget": budget,
        "best": _campaign_best(parts, result),
        "stopped_because": result.get("stopped_because"),
    }


def _campaign_best(parts: Sequence[CampaignPart], result: dict[str, Any]) -> str | None:
    best = result.get("best")
    if isinstance(best, dict) and isinstance(best.get("mean"), (int, float)):
        metric = result.get("metric", "objective")
        return f"{metric} = {best['mean']:.4g} (validated)"

    searched = _searched(parts)
    if not searched:
        return None
    spec = searched[0].spec
    runs = [o for part in searched for o in part.own_runs]
    points = best_observations(spec, runs)
    if not points:
        return None
    return ", ".join(
        f"{m.name} = {value:.4g}"
        for m in spec.optimized_metrics
        if (value := points[0].value(m.name)) is not None
    )


def _searched(parts: Sequence[CampaignPart]) -> list[CampaignPart]:
    """The parts whose runs count as the campaign's search: its rounds, or
    every part of a grid search."""
    return list(parts) if is_grid(parts) else round_parts(parts)


def _comparison_tables(
    store: Store,
    campaign: CampaignRecord,
    parts: Sequence[CampaignPart],
    partner: tuple[CampaignRecord, Sequence[ExperimentRecord]] | None,
) -> list[dict[str, Any]]:
    comparison = compare_with_partner(store, campaign, parts, partner)
    return [] if comparison is None else comparison_tables(comparison)


def _campaign_version(
    store: Store, campaign: CampaignRecord, experiments: Sequence[ExperimentRecord]
) -> str:
    parts = [f"{campaign.updated.timestamp():.6f}", campaign.state]
    parts += [_experiment_version(store, e) for e in experiments]
    return "/".join(parts)
