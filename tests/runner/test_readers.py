"""Metric readers: MLPerf's MLLOG lines, JSON lines, and a user's own format."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from optiloop.errors import SpecError
from optiloop.experiment import ExperimentSpec, parse_spec
from optiloop.runner import RunResult, RunTask, summarize_point
from optiloop.runner.inner import run_experiment
from optiloop.runner.readers import MllogReader, read_lines, reader_factory


def mllog(key: str, value: Any = None, **metadata: Any) -> str:
    return ":::MLLOG " + json.dumps({"key": key, "value": value, "metadata": metadata})


def mllog_run(evals: list[tuple[int, float]], status: str | None = "success") -> str:
    """An MLPerf-style log: events among framework lines, evals as given."""
    lines = [
        "NCCL INFO Bootstrap : Using eth0",
        mllog("run_start"),
        mllog("lars_opt_base_learning_rate", 10.5),
    ]
    for epoch, accuracy in evals:
        lines += [
            mllog("eval_start", epoch_num=epoch),
            f"[rank0] Epoch[{epoch}] Batch [100]\tSpeed: 2800 samples/sec",
            mllog("eval_accuracy", accuracy, epoch_num=epoch),
            # Launchers prefix lines with the rank.
            "0: " + mllog("eval_loss", 1.0 - accuracy, epoch_num=epoch),
            mllog("eval_stop", epoch_num=epoch),
        ]
    if status is not None:
        lines.append(mllog("run_stop", status=status))
    lines.append(":::MLLOG {broken json")
    return "\n".join(lines)


def mlperf_spec(**job: Any) -> ExperimentSpec:
    return parse_spec(
        {
            "parameters": [
                {"name": "epochs", "type": "int", "bounds": {"min": 30, "max": 40}}
            ],
            "metrics": [
                {"name": "eval_accuracy", "strategy": "constraint", "threshold": 0.759},
                {"name": "converge_epoch", "objective": "minimize"},
            ],
            "seeds_per_point": 2,
            "job": {
                "command": "train",
                "metrics": {"format": "mllog"},
                "evaluation": {"period": 4, "offset": 2},
                "converge": {"metric": "eval_accuracy", "target": 0.759},
                **job,
            },
        }
    )


def mllog_result(seed: int, stdout: str, exit_code: int = 0) -> RunResult:
    task = RunTask(1, seed, "train", metrics_format="mllog")
    return RunResult(task, exit_code, stdout, "", seconds=60.0)


def test_mllog_reader_keeps_metrics_by_epoch_and_the_run_status() -> None:
    reader = read_lines("mllog", mllog_run([(3, 0.3), (7, 0.45)]).splitlines())

    assert reader.records == [
        {"epoch": 3, "eval_accuracy": 0.3, "eval_loss": 0.7},
        {"epoch": 7, "eval_accuracy": 0.45, "eval_loss": 0.55},
    ]
    assert reader.status == "success"


def test_mllog_reader_ignores_json_lines_and_json_reader_ignores_mllog() -> None:
    lines = ['{"epoch": 1, "eval_accuracy": 0.9}', mllog("eval_accuracy", 0.5)]
    assert read_lines("mllog", lines).records == []
    assert read_lines("json", lines).records == [{"epoch": 1, "eval_accuracy": 0.9}]


def test_mllog_run_converges_at_its_first_evaluation_past_the_target() -> None:
    # Evaluations at 3, 7, 11, 15: 0.762 at epoch 15 is the first >= 0.759.
    converging = mllog_run([(3, 0.31), (7, 0.52), (11, 0.74), (15, 0.762)])
    # 0.758 at epoch 15 misses; the next evaluation would be epoch 19.
    short = mllog_run([(3, 0.3), (7, 0.5), (11, 0.7), (15, 0.758)])
    outcome = summarize_point(
        mlperf_spec(), [mllog_result(0, converging), mllog_result(1, short)]
    )
    values = {v["name"]: v["value"] for v in outcome.values}

    assert not outcome.failed
    assert outcome.metadata["converge_epochs"] == [15.0, None]
    assert outcome.metadata["converged"] is False
    assert values["converge_epoch"] == pytest.approx((15 + 19) / 2)
    assert outcome.metadata["curves"][0] == [
        [3.0, 0.31],
        [7.0, 0.52],
        [11.0, 0.74],
        [15.0, 0.762],
    ]


@pytest.mark.parametrize(
    ("status", "exit_code", "failed", "reason"),
    [
        ("aborted", 0, True, "its log reports run_stop with status aborted"),
        (None, 1, True, "exited with status 1"),
        # The log's own verdict wins over a crash while tearing down.
        ("success", 1, False, None),
        (None, 0, False, None),
    ],
)
def test_run_status_decides_failure(
    status: str | None, exit_code: int, failed: bool, reason: str | None
) -> None:
    evals = [(3, 0.5), (7, 0.76)]
    clean = mllog_result(0, mllog_run(evals))
    tested = mllog_result(1, mllog_run(evals, status=status), exit_code=exit_code)
    outcome = summarize_point(mlperf_spec(), [clean, tested])

    assert outcome.failed is failed
    assert outcome.metadata.get("reason") == reason
    if failed:
        assert outcome.metadata["failed_seed"] == 1


def test_a_users_reader_plugs_in_by_import_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "csv_metrics.py").write_text(
        textwrap.dedent(
            """
            class CsvReader:
                '''Lines "METRIC,<epoch>,<accuracy>"; "DONE,<status>" ends.'''

                def __init__(self):
                    self.records = []
                    self.status = None

                def feed(self, line):
                    kind, _, rest = line.strip().partition(",")
                    if kind == "METRIC":
                        epoch, accuracy = rest.split(",")
                        self.records.append(
                            {"epoch": int(epoch), "acc": float(accuracy)}
                        )
                    elif kind == "DONE":
                        self.status = rest
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))

    reader = read_lines(
        "csv_metrics:CsvReader", ["hello", "METRIC,2,0.5", "METRIC,4,0.7", "DONE,ok"]
    )
    assert reader.records == [{"epoch": 2, "acc": 0.5}, {"epoch": 4, "acc": 0.7}]
    assert reader.status == "ok"


def test_a_reader_that_cannot_be_imported_is_named_in_the_error() -> None:
    with pytest.raises(ValueError, match="cannot import module 'no_such_module'"):
        reader_factory("no_such_module:Reader")
    with pytest.raises(ValueError, match="module 'json' has no class 'Nope'"):
        reader_factory("json:Nope")


def test_the_runner_refuses_an_unknown_reader_before_running_anything() -> None:
    spec = mlperf_spec(metrics={"format": "no_such_module:Reader"})
    with pytest.raises(SpecError, match="no_such_module"):
        run_experiment(None, 1, spec, executor=None)  # type: ignore[arg-type]


def test_mllog_reader_is_usable_alone() -> None:
    reader = MllogReader()
    reader.feed(mllog("eval_accuracy", 0.7, epoch_num=4))
    reader.feed(mllog("eval_accuracy", True, epoch_num=8))  # not a number
    assert reader.records == [{"epoch": 4, "eval_accuracy": 0.7}]
    assert reader.status is None


def test_absurdly_nested_or_negative_epoch_lines_are_skipped() -> None:
    nested = '{"epoch": 1, "acc": 0.5, "z": ' + "[" * 100_000 + "]" * 100_000 + "}"
    mllog = (
        ':::MLLOG {"key": "acc", "value": 0.5, "metadata": {"epoch_num": 1, "z": '
        + "[" * 100_000
        + "]" * 100_000
        + "}}"
    )
    json_reader = read_lines("json", [nested, '{"epoch": -5, "acc": 0.9}'])
    assert json_reader.records == []
    assert read_lines("mllog", [mllog]).records == []
