"""Errors as SigOpt's API words them: a status, and ``{"message", "status"}``.

The sigopt client raises ``ApiException`` with the body's ``message``, so
the message is what a user reads; it names the field and the fix.  Each of
optiloop's errors maps to one status here.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from optiloop.client.local import MAX_NESTING, check_plain_data
from optiloop.errors import (
    BandwidthError,
    BudgetSpentError,
    ExhaustedError,
    NotFoundError,
    OptiloopError,
    SpecError,
    StoreError,
)

logger = logging.getLogger(__name__)

# Most specific first: the first class an error is an instance of wins.
STATUS_OF_ERROR: tuple[tuple[type[OptiloopError], int], ...] = (
    (SpecError, 400),
    (NotFoundError, 404),
    # The request was fine; the experiment's state refuses it.
    (BandwidthError, 409),
    (BudgetSpentError, 409),
    (ExhaustedError, 409),
    (StoreError, 503),
)


DATABASE_FAILED = "the database failed; the server log has the details"


class ApiError(Exception):
    """An answer other than success, raised from anywhere in a request."""

    def __init__(
        self, status: int, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


def error_body(status: int, message: str, kind: str | None = None) -> dict[str, Any]:
    """SigOpt's error body; ``type`` names optiloop's error class, if any, so
    that optiloop's HTTP driver raises the same class as the local one."""
    body: dict[str, Any] = {"message": message, "status": status}
    if kind is not None:
        body["type"] = kind
    return body


def error_response(
    status: int,
    message: str,
    headers: Mapping[str, str] | None = None,
    kind: str | None = None,
) -> JSONResponse:
    return JSONResponse(error_body(status, message, kind), status, headers=headers)


def status_of(error: OptiloopError) -> int:
    for kind, status in STATUS_OF_ERROR:
        if isinstance(error, kind):
            return status
    return 400


def describe_validation(errors: Sequence[Any]) -> str:
    """One line per problem, each naming the field where FastAPI found it."""
    lines = []
    for problem in errors:
        where = ".".join(str(part) for part in problem.get("loc", ()))
        lines.append(f"{where}: {problem.get('msg', 'invalid')}")
    return "; ".join(lines)


def install_error_handlers(app: FastAPI) -> None:
    """Answer every failure in SigOpt's shape; nothing leaks a traceback."""

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, error: ApiError) -> JSONResponse:
        return error_response(error.status, error.message, error.headers)

    @app.exception_handler(OptiloopError)
    async def _optiloop_error(request: Request, error: OptiloopError) -> JSONResponse:
        status = status_of(error)
        message = str(error)
        if status >= 500:
            # A database error carries its URL, statement and parameters:
            # the operator reads them in the log, the caller never does.
            logger.error(
                "%s %s failed in the database: %s",
                request.method,
                request.url.path,
                error,
            )
            message = DATABASE_FAILED
        return error_response(status, message, kind=type(error).__name__)

    @app.exception_handler(RequestValidationError)
    async def _invalid(
        _request: Request, error: RequestValidationError
    ) -> JSONResponse:
        return error_response(400, describe_validation(error.errors()))

    @app.exception_handler(HTTPException)
    async def _http(request: Request, error: HTTPException) -> JSONResponse:
        message = str(error.detail)
        if error.status_code == 404:
            message = f"endpoint not found: {request.method} {request.url.path}"
        elif error.status_code == 405:
            message = (
                f"{request.method} is not allowed on {request.url.path}; "
                f"allowed: {(error.headers or {}).get('Allow', 'none')}"
            )
        return error_response(error.status_code, message, error.headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, error: Exception) -> JSONResponse:
        logger.exception("%s %s failed", request.method, request.url.path)
        return error_response(500, "an unexpected server error occurred")


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """A request body as a JSON object, checked by ``check_plain_data``.

    NaN and Infinity are refused, and so are deep nesting, NUL and lone
    surrogates, in every field of every route's body.
    """

    def refuse_constant(name: str) -> float:
        raise ApiError(
            400,
            f"request body: {name} is not a JSON number; send finite numbers "
            "(a failed evaluation is reported with failed=true)",
        )

    def finite(text: str) -> float:
        # 1e999 is valid JSON that Python reads as infinity.
        number = float(text)
        if not math.isfinite(number):
            refuse_constant(text)
        return number

    try:
        data = json.loads(
            raw or b"{}", parse_constant=refuse_constant, parse_float=finite
        )
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ApiError(400, f"request body: not valid JSON: {error}") from None
    except RecursionError:
        raise ApiError(
            400,
            f"request body: nested more than {MAX_NESTING} levels deep; flatten it",
        ) from None
    if not isinstance(data, dict):
        raise ApiError(
            400,
            f"request body: must be a JSON object of fields, got {type(data).__name__}",
        )
    try:
        check_plain_data(data)
    except SpecError as error:
        raise ApiError(400, str(error)) from None
    return data
