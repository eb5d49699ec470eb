"""The FastAPI application: SigOpt's v1 routes over ``LocalDriver``, and
optiloop's own ``/v1/campaigns`` routes beside them.

The rules of an experiment (validation, budget, optimizer) live in
``optiloop.client.local``; this module only speaks HTTP: it reads the
token, checks that the experiment is the token's, reads the JSON body
within a size limit, pages list answers, keeps idempotent POSTs, and words
every failure as SigOpt did.  Handlers are plain functions, which FastAPI
runs in a thread pool, so a slow optimizer does not stall other requests.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse

from optiloop.client.local import LocalDriver, parse_id
from optiloop.client.shapes import Json
from optiloop.errors import NotFoundError
from optiloop.service.auth import authenticate
from optiloop.service.dashboard import install_dashboard
from optiloop.service.errors import ApiError, install_error_handlers, parse_json_object
from optiloop.service.paging import DEFAULT_LIMIT, MAX_LIMIT, page
from optiloop.store import IdempotentAnswer, Store, TokenRecord
from optiloop.store.store import IN_PROGRESS

logger = logging.getLogger(__name__)

# A spec with hundreds of parameters is a few tens of kilobytes; a megabyte
# leaves room and keeps one request from holding much memory.
MAX_BODY_BYTES = 1_000_000
IDEMPOTENCY_HEADER = "Idempotency-Key"
EMPTY_BODY_DIGEST = hashlib.sha256(b"").hexdigest()
MAX_IDEMPOTENCY_KEY = 200

# The request body of every POST and PUT, as the OpenAPI document shows it:
# a JSON object whose fields the driver checks.
JSON_OBJECT_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"type": "object"}}},
    }
}

# The OpenAPI document's error responses (see ``_openapi_document``).
_ERROR_REF = "#/components/schemas/Error"
_REASONS = {
    "400": "A field breaks a rule; the message names it and the fix.",
    "401": "No API token, or one this server does not know.",
    "404": "No such object for this token.",
    "409": "The experiment refuses: budget spent, no point left, or an "
    "Idempotency-Key still in use.",
    "413": "The request body is over the size limit.",
    "422": "The Idempotency-Key was used for another request.",
    "503": "The database failed; the server log has the details.",
}

# The token goes as the user name of HTTP basic authentication (as the
# sigopt client sends it, with an empty password) or as a bearer token.
SECURITY_SCHEMES = {
    "basicAuth": {
        "type": "http",
        "scheme": "basic",
        "description": "The API token as the user name, the password empty.",
    },
    "bearerAuth": {
        "type": "http",
        "scheme": "bearer",
        "description": "The API token as 'Authorization: Bearer <token>'.",
    },
}
EITHER_SCHEME: list[dict[str, list[str]]] = [{"basicAuth": []}, {"bearerAuth": []}]


def create_app(db_url: str, *, driver: LocalDriver | None = None) -> FastAPI:
    """The REST service over the database at ``db_url``, migrated on open.

    ``driver`` replaces the in-process driver (tests pass one with their
    own optimizers); ``db_url`` is then unused.
    """
    opened = driver or LocalDriver(Store(db_url))

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        opened.close()

    app = FastAPI(
        title="optiloop",
        summary="SigOpt's v1 REST API for a self-hosted optiloop",
        version="1",
        lifespan=lifespan,
    )
    app.state.driver = opened
    install_error_handlers(app)
    app.include_router(router, prefix="/v1")
    install_dashboard(app)
    app.openapi = lambda: _openapi_document(app)  # type: ignore[method-assign]
    return app


def _openapi_document(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document, with the errors this service really answers.

    FastAPI lists 422 for invalid parameters; this service answers 400 in
    SigOpt's error shape instead, and 401, 404 and 503 on every route.
    Every ``/v1`` route takes the token by either scheme.
    """
    if app.openapi_schema is not None:
        return app.openapi_schema
    document = get_openapi(
        title=app.title,
        version=app.version,
        summary=app.summary,
        routes=app.routes,
    )
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    schemas["Error"] = {
        "type": "object",
        "required": ["message", "status"],
        "properties": {
            "message": {"type": "string"},
            "status": {"type": "integer"},
            "type": {"type": "string", "description": "optiloop's error class"},
        },
    }

    document["components"]["securitySchemes"] = SECURITY_SCHEMES

    error = {"content": {"application/json": {"schema": {"$ref": _ERROR_REF}}}}
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if path.startswith("/v1/"):
                operation["security"] = EITHER_SCHEME
            responses = operation["responses"]
            responses.pop("422", None)
            codes = ["400", "401", "404", "503"]
            if method == "post":
                codes += ["409", "413", "422"]
            elif method == "put":
                codes += ["413"]
            for code in codes:
                responses[code] = {"description": _REASONS[code], **error}
    app.openapi_schema = document
    return document


# Dependencies


def the_driver(request: Request) -> LocalDriver:
    driver: LocalDriver = request.app.state.driver
    return driver


def the_caller(
    request: Request, driver: Annotated[LocalDriver, Depends(the_driver)]
) -> TokenRecord:
    return authenticate(request, driver.store)


async def the_body(request: Request) -> dict[str, Any]:
    """The JSON object sent, read no further than ``MAX_BODY_BYTES``."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise _too_large(int(declared))

    raw = bytearray()
    async for chunk in request.stream():
        raw.extend(chunk)
        if len(raw) > MAX_BODY_BYTES:
            raise _too_large(len(raw))

    # What an Idempotency-Key is bound to, beside the method and path.
    request.state.body_digest = hashlib.sha256(raw).hexdigest()
    return parse_json_object(bytes(raw))


def _too_large(size: int) -> ApiError:
    return ApiError(
        413,
        f"request body: {size} bytes is over the limit of {MAX_BODY_BYTES}; "
        "send a smaller spec or fewer values at once",
    )


DriverDep = Annotated[LocalDriver, Depends(the_driver)]
CallerDep = Annotated[TokenRecord, Depends(the_caller)]
BodyDep = Annotated[dict[str, Any], Depends(the_body)]
LimitQuery = Annotated[
    int, Query(ge=1, le=MAX_LIMIT, description="Items per page, newest first.")
]
MarkerQuery = Annotated[
    int | None, Query(ge=0, description="An id from a previous page's paging.")
]


def owned_experiment(driver: LocalDriver, caller: TokenRecord, raw_id: str) -> int:
    """The experiment's id if the caller's token owns it; else a 404.

    Another token's experiment answers exactly as a missing one does, so
    ids reveal nothing about other tokens' work.
    """
    experiment_id = parse_id("experiment", raw_id)
    record = driver.store.get_experiment(experiment_id)
    if record.owner_token_id != caller.id:
        raise NotFoundError(f"experiment {experiment_id} not found")
    return experiment_id


def idempotent(
    request: Request,
    driver: LocalDriver,
    caller: TokenRecord,
    create: Callable[[], Json],
) -> JSONResponse:
    """Run ``create`` once per ``Idempotency-Key``; a retry gets its answer.

    Without the header every POST creates.  A key is the caller's: two
    tokens may use the same key without meeting.
    """
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is None:
        return JSONResponse(create())
    if not key or len(key) > MAX_IDEMPOTENCY_KEY:
        raise ApiError(
            400,
            f"{IDEMPOTENCY_HEADER}: must be 1 to {MAX_IDEMPOTENCY_KEY} "
            f"characters, got {len(key)}; a UUID works well",
        )

    # The key is bound to the whole request: a retry sends the same bytes,
    # and a different request under a used key is an error, not a replay.
    # A path may be long (ids take leading zeros), so the digest covers it
    # whole and only its start is kept to read: within the 300 stored.
    body_digest = getattr(request.state, "body_digest", EMPTY_BODY_DIGEST)
    path = request.url.path
    signed = f"{request.method} {path} {body_digest}".encode()
    what = f"{request.method} {path[:200]} {hashlib.sha256(signed).hexdigest()}"
    kept = driver.store.claim_idempotency_key(caller.id, key, what)
    if kept is not None:
        return _replay(key, what, kept)

    try:
        answer = create()
    except Exception:
        # Nothing was created; a retry with the same key may try again.
        driver.store.release_idempotency_key(caller.id, key)
        raise
    driver.store.settle_idempotency_key(caller.id, key, 200, answer)
    return JSONResponse(answer)


def _replay(key: str, what: str, kept: IdempotentAnswer) -> JSONResponse:
    if kept.request != what:
        raise ApiError(
            422,
            f"{IDEMPOTENCY_HEADER} {key!r} was used for another request (a "
            "different method, path or body); use a new key for a new request",
        )
    if kept.status == IN_PROGRESS:
        raise ApiError(
            409,
            f"{IDEMPOTENCY_HEADER} {key!r}: the first request with this key is "
            "still running; retry in a moment",
        )
    logger.debug("replayed the answer for idempotency key %r", key)
    return JSONResponse(kept.answer, kept.status)


router = APIRouter()


# Experiments


@router.post("/experiments", openapi_extra=JSON_OBJECT_BODY)
def create_experiment(
    request: Request, driver: DriverDep, caller: CallerDep, body: BodyDep
) -> JSONResponse:
    """Create an experiment from a SigOpt spec (plus optiloop's fields)."""
    return idempotent(
        request, driver, caller, lambda: driver.create_experiment(body, caller.id)
    )


@router.get("/experiments")
def list_experiments(
    driver: DriverDep,
    caller: CallerDep,
    state: Annotated[str, Query(description="active, deleted or all")] = "active",
    limit: LimitQuery = DEFAULT_LIMIT,
    before: MarkerQuery = None,
    after: MarkerQuery = None,
) -> Json:
    """The caller's experiments, newest first."""
    answer = driver.list_experiments(state, owner_token_id=caller.id)
    return page(answer, limit, before, after)


@router.get("/experiments/{experiment_id}")
def get_experiment(driver: DriverDep, caller: CallerDep, experiment_id: str) -> Json:
    return driver.get_experiment(owned_experiment(driver, caller, experiment_id))


@router.put("/experiments/{experiment_id}", openapi_extra=JSON_OBJECT_BODY)
def update_experiment(
    driver: DriverDep, caller: CallerDep, experiment_id: str, body: BodyDep
) -> Json:
    """Change name, metadata, observation_budget or parallel_bandwidth."""
    owned = owned_experiment(driver, caller, experiment_id)
    return driver.update_experiment(owned, body)


@router.delete("/experiments/{experiment_id}", status_code=204)
def delete_experiment(
    driver: DriverDep, caller: CallerDep, experiment_id: str
) -> Response:
    """Mark the experiment deleted; its history stays readable."""
    driver.delete_experiment(owned_experiment(driver, caller, experiment_id))
    return Response(status_code=204)


# Suggestions


@router.post("/experiments/{experiment_id}/suggestions")
def create_suggestion(
    request: Request,
    driver: DriverDep,
    caller: CallerDep,
    experiment_id: str,
    body: BodyDep,
) -> JSONResponse:
    """A new point from the experiment's optimizer, open until observed."""
    owned = owned_experiment(driver, caller, experiment_id)
    if body:
        # SigOpt let a user enter a point of their own here; optiloop takes
        # such a point as an observation with assignments instead.
        raise ApiError(
            400,
            f"suggestion.{sorted(body)[0]}: a suggestion takes no fields; to "
            "report a point of your own, create an observation with "
            "assignments",
        )
    return idempotent(request, driver, caller, lambda: driver.create_suggestion(owned))


@router.get("/experiments/{experiment_id}/suggestions")
def list_suggestions(
    driver: DriverDep,
    caller: CallerDep,
    experiment_id: str,
    state: Annotated[str | None, Query(description="open or closed")] = None,
    limit: LimitQuery = DEFAULT_LIMIT,
    before: MarkerQuery = None,
    after: MarkerQuery = None,
) -> Json:
    owned = owned_experiment(driver, caller, experiment_id)
    return page(driver.list_suggestions(owned, state), limit, before, after)


@router.delete("/experiments/{experiment_id}/suggestions", status_code=204)
def delete_open_suggestions(
    driver: DriverDep,
    caller: CallerDep,
    experiment_id: str,
    state: Annotated[str, Query(description="open: the only state deleted")] = "open",
) -> Response:
    """Withdraw every open suggestion; observed ones stay with their records."""
    owned = owned_experiment(driver, caller, experiment_id)
    if state != "open":
        raise ApiError(
            400,
            f"state: only open suggestions can be deleted, got {state!r}; "
            "pass state=open or leave it out",
        )
    driver.delete_open_suggestions(owned)
    return Response(status_code=204)


@router.get("/experiments/{experiment_id}/suggestions/{suggestion_id}")
def get_suggestion(
    driver: DriverDep, caller: CallerDep, experiment_id: str, suggestion_id: str
) -> Json:
    owned = owned_experiment(driver, caller, experiment_id)
    return driver.get_suggestion(owned, parse_id("suggestion", suggestion_id))


@router.delete(
    "/experiments/{experiment_id}/suggestions/{suggestion_id}", status_code=204
)
def delete_suggestion(
    driver: DriverDep, caller: CallerDep, experiment_id: str, suggestion_id: str
) -> Response:
    owned = owned_experiment(driver, caller, experiment_id)
    driver.delete_suggestion(owned, parse_id("suggestion", suggestion_id))
    return Response(status_code=204)


# Observations


@router.post(
    "/experiments/{experiment_id}/observations", openapi_extra=JSON_OBJECT_BODY
)
def create_observation(
    request: Request,
    driver: DriverDep,
    caller: CallerDep,
    experiment_id: str,
    body: BodyDep,
) -> JSONResponse:
    """Report a suggestion's (or given assignments') values, or a failure."""
    owned = owned_experiment(driver, caller, experiment_id)
    return idempotent(
        request, driver, caller, lambda: driver.create_observation(owned, body)
    )


@router.get("/experiments/{experiment_id}/observations")
def list_observations(
    driver: DriverDep,
    caller: CallerDep,
    experiment_id: str,
    limit: LimitQuery = DEFAULT_LIMIT,
    before: MarkerQuery = None,
    after: MarkerQuery = None,
) -> Json:
    owned = owned_experiment(driver, caller, experiment_id)
    return page(driver.list_observations(owned), limit, before, after)


@router.get("/experiments/{experiment_id}/observations/{observation_id}")
def get_observation(
    driver: DriverDep, caller: CallerDep, experiment_id: str, observation_id: str
) -> Json:
    owned = owned_experiment(driver, caller, experiment_id)
    return driver.get_observation(owned, parse_id("observation", observation_id))


@router.put(
    "/experiments/{experiment_id}/observations/{observation_id}",
    openapi_extra=JSON_OBJECT_BODY,
)
def update_observation(
    driver: DriverDep,
    caller: CallerDep,
    experiment_id: str,
    observation_id: str,
    body: BodyDep,
) -> Json:
    """Correct values, failed or metadata; the observed point stays."""
    owned = owned_experiment(driver, caller, experiment_id)
    observation = parse_id("observation", observation_id)
    return driver.update_observation(owned, observation, body)


@router.delete(
    "/experiments/{experiment_id}/observations/{observation_id}", status_code=204
)
def delete_observation(
    driver: DriverDep, caller: CallerDep, experiment_id: str, observation_id: str
) -> Response:
    owned = owned_experiment(driver, caller, experiment_id)
    driver.delete_observation(owned, parse_id("observation", observation_id))
    return Response(status_code=204)


# The most points a ranked best_assignments answers: a validation's worth.
MAX_RANKED = 1000


@router.get("/experiments/{experiment_id}/best_assignments")
def best_assignments(
    driver: DriverDep,
    caller: CallerDep,
    experiment_id: str,
    limit: LimitQuery = DEFAULT_LIMIT,
    before: MarkerQuery = None,
    after: MarkerQuery = None,
    ranked: Annotated[
        int | None,
        Query(
            ge=1,
            le=MAX_RANKED,
            description="optiloop's extension: the K best feasible points, "
            "best first by the first optimized metric's posterior mean",
        ),
    ] = None,
) -> Json:
    """The best feasible point, or the Pareto front of two optimized metrics.

    A ranked answer keeps its rank order in one page: paging goes by id.
    """
    owned = owned_experiment(driver, caller, experiment_id)
    if ranked is not None:
        return driver.best_assignments(owned, ranked)
    return page(driver.best_assignments(owned), limit, before, after)


# Campaigns: optiloop's own routes, beside SigOpt's.  A campaign is the
# caller's alone, as an experiment is: another token's answers 404.


@router.post("/campaigns", openapi_extra=JSON_OBJECT_BODY)
def create_campaign(
    request: Request, driver: DriverDep, caller: CallerDep, body: BodyDep
) -> JSONResponse:
    """Store a campaign from its file (the spec plus rounds, evaluator, stop
    and validation); the runner that created it runs it."""
    return idempotent(
        request, driver, caller, lambda: driver.create_campaign(body, caller.id)
    )


@router.get("/campaigns")
def list_campaigns(
    driver: DriverDep,
    caller: CallerDep,
    limit: LimitQuery = DEFAULT_LIMIT,
    before: MarkerQuery = None,
    after: MarkerQuery = None,
) -> Json:
    """The caller's campaigns, newest first."""
    return page(driver.list_campaigns(caller.id), limit, before, after)


@router.get("/campaigns/{campaign_id}")
def get_campaign(driver: DriverDep, caller: CallerDep, campaign_id: str) -> Json:
    return driver.get_campaign(parse_id("campaign", campaign_id), caller.id)


@router.put("/campaigns/{campaign_id}", openapi_extra=JSON_OBJECT_BODY)
def update_campaign(
    driver: DriverDep, caller: CallerDep, campaign_id: str, body: BodyDep
) -> Json:
    """Change the campaign's state (running, stopped, done) or result."""
    return driver.update_campaign(parse_id("campaign", campaign_id), body, caller.id)


@router.get("/campaigns/{campaign_id}/experiments")
def list_campaign_experiments(
    driver: DriverDep,
    caller: CallerDep,
    campaign_id: str,
    limit: LimitQuery = DEFAULT_LIMIT,
    before: MarkerQuery = None,
    after: MarkerQuery = None,
) -> Json:
    """The campaign's experiments, each with its round, role and refinement."""
    owned = parse_id("campaign", campaign_id)
    answer = driver.list_campaign_experiments(owned, caller.id)
    return page(answer, limit, before, after)


@router.post("/campaigns/{campaign_id}/experiments", openapi_extra=JSON_OBJECT_BODY)
def create_campaign_experiment(
    request: Request,
    driver: DriverDep,
    caller: CallerDep,
    campaign_id: str,
    body: BodyDep,
) -> JSONResponse:
    """Create an experiment of the campaign with its warm-start observations
    and chosen points, all at once."""
    owned = parse_id("campaign", campaign_id)
    driver.get_campaign(owned, caller.id)
    return idempotent(
        request,
        driver,
        caller,
        lambda: driver.create_campaign_experiment(owned, body, caller.id),
    )
