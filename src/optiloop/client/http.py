"""The HTTP driver: ``Connection(url=..., token=...)`` on a running server.

It sends SigOpt's requests to an optiloop server (``optiloop serve``) and
gives back the same JSON as the in-process driver, so ``Connection``, the
runner and the CLI work unchanged against a server.  The server's errors
become the same optiloop errors the in-process driver raises.

A POST that fails on the way (a dropped connection, a timeout) is sent
again with the same ``Idempotency-Key``, so a retry never creates a second
suggestion or observation.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Mapping
from typing import Any

import httpx

from optiloop import errors
from optiloop.client.shapes import Json
from optiloop.errors import OptiloopError

logger = logging.getLogger(__name__)

# A suggestion from the Bayesian optimizer takes a second or two on a large
# history; a minute leaves room for a busy server.
TIMEOUT_SECONDS = 60.0
# Sends of one POST before giving up when the connection itself fails.
POST_ATTEMPTS = 3
# Items per list request; a list is walked page by page until its end.
PAGE_LIMIT = 1000

# Fields of an observation that hold measured numbers.
MEASURED_FIELDS = ("values", "value", "value_stddev")

# The error classes a server names in its answers' ``type`` field.
ERROR_CLASSES: dict[str, type[OptiloopError]] = {
    kind.__name__: kind
    for kind in (
        errors.SpecError,
        errors.NotFoundError,
        errors.BandwidthError,
        errors.BudgetSpentError,
        errors.ExhaustedError,
        errors.StoreError,
    )
}


class HttpDriver:
    """SigOpt's requests over HTTP to an optiloop server, one token per driver.

    ``transport`` replaces the network (tests pass the app's own).
    """

    def __init__(
        self,
        url: str,
        token: str,
        *,
        timeout: float = TIMEOUT_SECONDS,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(
            base_url=f"{self.url}/v1",
            # As the sigopt client sends it: the token as the user name.
            auth=httpx.BasicAuth(token, ""),
            timeout=timeout,
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    # Experiments

    def create_experiment(self, body: Mapping[str, Any]) -> Json:
        return self._post("/experiments", body)

    def get_experiment(self, experiment_id: int) -> Json:
        return self._get(f"/experiments/{experiment_id}")

    def list_experiments(self, state: str = "active") -> Json:
        return self._list("/experiments", {"state": state})

    def delete_experiment(self, experiment_id: int) -> None:
        self._send("DELETE", f"/experiments/{experiment_id}")

    # Suggestions

    def create_suggestion(self, experiment_id: int) -> Json:
        return self._post(f"/experiments/{experiment_id}/suggestions", None)

    def get_suggestion(self, experiment_id: int, suggestion_id: int) -> Json:
        return self._get(f"/experiments/{experiment_id}/suggestions/{suggestion_id}")

    def list_suggestions(self, experiment_id: int, state: str | None = None) -> Json:
        params = {} if state is None else {"state": state}
        return self._list(f"/experiments/{experiment_id}/suggestions", params)

    def delete_suggestion(self, experiment_id: int, suggestion_id: int) -> None:
        path = f"/experiments/{experiment_id}/suggestions/{suggestion_id}"
        self._send("DELETE", path)

    def delete_open_suggestions(self, experiment_id: int) -> None:
        path = f"/experiments/{experiment_id}/suggestions"
        self._send("DELETE", path, params={"state": "open"})

    # Observations

    def create_observation(self, experiment_id: int, body: Mapping[str, Any]) -> Json:
        return self._post(f"/experiments/{experiment_id}/observations", body)

    def get_observation(self, experiment_id: int, observation_id: int) -> Json:
        path = f"/experiments/{experiment_id}/observations/{observation_id}"
        return self._get(path)

    def list_observations(self, experiment_id: int) -> Json:
        return self._list(f"/experiments/{experiment_id}/observations", {})

    def best_assignments(self, experiment_id: int, ranked: int | None = None) -> Json:
        path = f"/experiments/{experiment_id}/best_assignments"
        if ranked is not None:
            # One page, in rank order (the server does not page it by id).
            return self._get(path, {"ranked": ranked})
        return self._list(path, {})

    # Campaigns (optiloop's own routes)

    def create_campaign(self, body: Mapping[str, Any]) -> Json:
        return self._post("/campaigns", body)

    def get_campaign(self, campaign_id: int) -> Json:
        return self._get(f"/campaigns/{campaign_id}")

    def list_campaigns(self) -> Json:
        return self._list("/campaigns", {})

    def update_campaign(self, campaign_id: int, body: Mapping[str, Any]) -> Json:
        _refuse_non_json(body)
        answer: Json = self._send("PUT", f"/campaigns/{campaign_id}", json=dict(body))
        return answer

    def list_campaign_experiments(self, campaign_id: int) -> Json:
        return self._list(f"/campaigns/{campaign_id}/experiments", {})

    def create_campaign_experiment(
        self, campaign_id: int, body: Mapping[str, Any]
    ) -> Json:
        return self._post(f"/campaigns/{campaign_id}/experiments", body)

    # Requests

    def _get(self, path: str, params: Mapping[str, Any] | None = None) -> Json:
        return self._send("GET", path, params=dict(params or {}))

    def _post(self, path: str, body: Mapping[str, Any] | None) -> Json:
        """A create, sent again on a connection failure under the same key."""
        if body is not None:
            _refuse_non_json(body)
        headers = {"Idempotency-Key": str(uuid.uuid4())}
        for attempt in range(1, POST_ATTEMPTS + 1):
            try:
                return self._request(
                    "POST",
                    path,
                    json=None if body is None else dict(body),
                    headers=headers,
                )
            except _TransportFailure as failure:
                if attempt == POST_ATTEMPTS:
                    raise failure.error from None
                logger.warning(
                    "POST %s failed (%s); sending it again, attempt %d of %d",
                    path,
                    failure.error,
                    attempt + 1,
                    POST_ATTEMPTS,
                )
        raise AssertionError("unreachable: the loop returns or raises")

    def _list(self, path: str, params: Mapping[str, Any]) -> Json:
        """Every item of a list, oldest first, as the in-process driver gives."""
        items: list[Json] = []
        query = {**params, "limit": PAGE_LIMIT}
        while True:
            answer = self._get(path, query)
            items += answer["data"]
            marker = answer["paging"]["before"]
            if marker is None:
                break
            query["before"] = marker
        items.sort(key=lambda item: item["id"])
        return {
            "object": "pagination",
            "count": len(items),
            "data": items,
            "paging": {"before": None, "after": None},
        }

    def _send(self, method: str, path: str, **options: Any) -> Any:
        try:
            return self._request(method, path, **options)
        except _TransportFailure as failure:
            raise failure.error from None

    def _request(self, method: str, path: str, **options: Any) -> Any:
        """The answer's JSON; an optiloop error for a refusal, and
        ``_TransportFailure`` when no answer came."""
        try:
            answer = self._http.request(method, path, **options)
        except httpx.TransportError as error:
            raise _TransportFailure(
                OptiloopError(
                    f"could not reach the optiloop server at {self.url}: {error}; "
                    "check that 'optiloop serve' runs there"
                )
            ) from error

        if answer.status_code == 204:
            return None
        try:
            body = answer.json()
        except ValueError:
            body = {"message": answer.text}
        if answer.is_success:
            return body
        raise _error_of(answer.status_code, body, self.url)


def _refuse_non_json(body: Mapping[str, Any]) -> None:
    """Refuse what JSON cannot carry (NaN, infinity, other objects) here,
    with the in-process driver's words: the server would never see it."""

    def walk(data: Any, where: str) -> None:
        field = where.split(".")[0].split("[")[0]
        if isinstance(data, float) and not math.isfinite(data):
            if field in MEASURED_FIELDS:
                raise errors.SpecError(
                    f"{where} must be finite, got {data}; report a failed "
                    "evaluation with failed=True instead"
                )
            raise _not_plain(field, where, data)
        if isinstance(data, Mapping):
            for name, item in data.items():
                walk(item, f"{where}.{name}" if where else str(name))
        elif isinstance(data, list | tuple):
            for index, item in enumerate(data):
                walk(item, f"{where}[{index}]")
        elif not isinstance(data, str | int | float | None):
            raise _not_plain(field, where, data)

    walk(body, "")


def _not_plain(field: str, where: str, data: Any) -> errors.SpecError:
    return errors.SpecError(
        f"{field} must be plain JSON data (numbers, strings, lists, dicts; "
        f"finite numbers only): {where} is {data!r}"
    )


class _TransportFailure(Exception):
    """A request that never got an answer; carries the error to raise."""

    def __init__(self, error: OptiloopError) -> None:
        super().__init__(str(error))
        self.error = error


def _error_of(status: int, body: Any, url: str) -> OptiloopError:
    message = body.get("message") if isinstance(body, dict) else None
    message = message or f"the server answered status {status}"
    kind = ERROR_CLASSES.get(body.get("type", "") if isinstance(body, dict) else "")
    if kind is not None:
        return kind(message)
    if status == 401:
        return OptiloopError(f"the server at {url} refused the token: {message}")
    if status == 404:
        return errors.NotFoundError(message)
    if 400 <= status < 500:
        return errors.SpecError(message)
    return errors.StoreError(f"the server at {url} failed ({status}): {message}")
