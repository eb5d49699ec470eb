"""SigOpt's paging of list answers: newest first, ``before`` and ``after``.

A list answer carries at most ``limit`` items, newest (highest id) first.
``paging.before`` is the marker to pass as ``before`` for the next, older
page; ``paging.after`` the marker for newer items.  The sigopt client's
``iterate_pages()`` follows ``before`` until it is null.
"""

from __future__ import annotations

from typing import Any

from optiloop.client.shapes import Json

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


def page(answer: Json, limit: int, before: int | None, after: int | None) -> Json:
    """One page of a driver's list answer, which holds every item."""
    newest_first: list[dict[str, Any]] = sorted(
        answer["data"], key=lambda item: item["id"], reverse=True
    )

    if after is not None:
        # The ``limit`` items just newer than the marker, still newest first.
        newer = [item for item in newest_first if item["id"] > after]
        chosen = newer[-limit:]
    elif before is not None:
        older = [item for item in newest_first if item["id"] < before]
        chosen = older[:limit]
    else:
        chosen = newest_first[:limit]

    ids = [item["id"] for item in newest_first]
    has_older = bool(chosen) and ids[-1] < chosen[-1]["id"]
    has_newer = bool(chosen) and ids[0] > chosen[0]["id"]
    return {
        "object": "pagination",
        "count": len(newest_first),
        "data": chosen,
        "paging": {
            "before": str(chosen[-1]["id"]) if has_older else None,
            "after": str(chosen[0]["id"]) if has_newer else None,
        },
    }
