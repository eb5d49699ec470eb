"""Readers turn a job's output, one line at a time, into per-epoch records.

A record is a dict with an ``epoch`` and the metrics measured at it, such as
``{"epoch": 8, "eval_accuracy": 0.49}``.  A reader is fed every line a job
writes, in order, and keeps what it understood; lines it does not understand
(a framework's own logs) are ignored.  Two formats ship:

- ``json``: one JSON object per evaluation, ``{"epoch": 3, "eval_accuracy":
  0.91}``; an object without ``epoch`` is numbered by its position;
- ``mllog``: MLPerf's logging format, lines holding ``:::MLLOG`` and a JSON
  event.  A numeric ``value`` with ``metadata.epoch_num`` is a metric at that
  epoch, named by the event's ``key`` (``eval_accuracy``); ``run_stop``
  carries the run's status, ``success`` or ``aborted``.

A reader of another format is any class with the ``MetricReader`` shape,
named in the spec by its import path (``job.metrics.format:
mypackage.logs:MyReader``); it is created with no arguments, once per run.
"""

from __future__ import annotations

import importlib
import json
import logging
import math
from collections.abc import Callable, Iterable
from typing import Any, Protocol, TypeGuard

logger = logging.getLogger(__name__)

MLLOG_MARK = ":::MLLOG"


class MetricReader(Protocol):
    """What the runner needs from a reader.

    ``records`` are the per-epoch records read so far, in the order the job
    wrote them; ``status`` is the run's own verdict when its output states
    one (``"success"`` or ``"aborted"``), else None, and the exit code
    decides.
    """

    records: list[dict[str, Any]]
    status: str | None

    def feed(self, line: str) -> None: ...


class JsonLinesReader:
    """One JSON object per evaluated epoch; other lines are skipped."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self.status: str | None = None

    def feed(self, line: str) -> None:
        text = line.strip()
        if not text.startswith("{"):
            return
        try:
            record = json.loads(text)
        except (json.JSONDecodeError, RecursionError):
            return
        if not isinstance(record, dict):
            return
        record.setdefault("epoch", len(self.records) + 1)
        # An epoch that is not a number (null, "one") cannot be placed.
        if is_finite_number(record["epoch"]) and record["epoch"] >= 0:
            self.records.append(record)


class MllogReader:
    """MLPerf's ``:::MLLOG {json}`` events: metrics by epoch and run status.

    Events logged at the same epoch (``eval_accuracy`` and, say,
    ``eval_loss``) merge into one record.
    """

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self.status: str | None = None

    def feed(self, line: str) -> None:
        # Launchers often prefix each line with a rank or a timestamp.
        start = line.find(MLLOG_MARK)
        if start < 0:
            return
        try:
            event = json.loads(line[start + len(MLLOG_MARK) :])
        except (json.JSONDecodeError, RecursionError):
            return
        if not isinstance(event, dict):
            return
        key = event.get("key")
        metadata = event.get("metadata")
        metadata = metadata if isinstance(metadata, dict) else {}

        if key == "run_stop":
            status = metadata.get("status")
            self.status = str(status) if status is not None else None
            return

        value = event.get("value")
        epoch = metadata.get("epoch_num")
        if (
            not isinstance(key, str)
            or not is_finite_number(value)
            or not is_finite_number(epoch)
        ):
            return
        if self.records and self.records[-1]["epoch"] == epoch:
            self.records[-1][key] = value
        else:
            self.records.append({"epoch": epoch, key: value})


def reader_factory(format: str) -> Callable[[], MetricReader]:
    """The reader class for a ``job.metrics.format`` value.

    Raises ``ValueError`` naming the format when an import path does not
    lead to a class.
    """
    if format == "json":
        return JsonLinesReader
    if format == "mllog":
        return MllogReader
    module_name, _, name = format.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(
            f"job.metrics.format: cannot import module {module_name!r} of "
            f"reader {format!r} ({error}); check the path and that the module "
            "is installed where optiloop runs"
        ) from None
    reader = getattr(module, name, None)
    if not isinstance(reader, type):
        raise ValueError(
            f"job.metrics.format: module {module_name!r} has no class {name!r}; "
            "name a class with feed(line), records and status"
        )
    return reader


def read_lines(format: str, lines: Iterable[str]) -> MetricReader:
    """A reader of ``format`` fed every line of ``lines``."""
    reader = reader_factory(format)()
    for line in lines:
        reader.feed(line)
    return reader


def is_finite_number(value: object) -> TypeGuard[float]:
    """A real number that fits a float: a 400-digit integer does not."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False
