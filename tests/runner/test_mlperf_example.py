"""The MLPerf example end to end: its command template, MLLOG logs, the store.

``examples/mlperf-rn50.yaml`` runs MLCommons' reference launcher
``resnet_ctl_imagenet_main.py`` from its own folder.  Here that folder is a
temporary one holding ``mllog_standin.py`` under the launcher's name, so the
command template runs unchanged and the stand-in replays recorded curves.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from optiloop.client import Connection
from optiloop.experiment import parse_spec
from optiloop.runner import LocalExecutor, run_experiment

EXAMPLE = Path(__file__).parents[2] / "examples" / "mlperf-rn50.yaml"
STANDIN = Path(__file__).with_name("mllog_standin.py")
RECORDED_RUNS = Path("/work/shared/data/mlperf-rn50-runs.json")

# Mean top-1 of a tuned MLPerf recipe at its evaluations (every 4 epochs from
# epoch 3), continued past the target as a launcher that does not stop
# itself would.
_CURVE = [
    (3, 0.312),
    (7, 0.437),
    (11, 0.514),
    (15, 0.581),
    (19, 0.640),
    (23, 0.690),
    (27, 0.727),
    (31, 0.751),
    (35, 0.760),
    (39, 0.7625),
    (43, 0.763),
]


def _with(changes: dict[int, float]) -> list[tuple[int, float]]:
    return [(epoch, changes.get(epoch, top1)) for epoch, top1 in _CURVE]


# Seed 0 reaches 0.759 at epoch 35, seed 1 at 39, seed 2 at 31.
EMBEDDED_RUNS = [
    {"evals": _CURVE, "status": "success"},
    {"evals": _with({35: 0.757}), "status": "success"},
    {"evals": _with({31: 0.7595}), "status": "success"},
]


def run_example(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, runs: list[dict[str, Any]]
) -> tuple[Any, dict[str, Any]]:
    """Run the example's job for one point; return its observation and spec."""
    spec = yaml.safe_load(EXAMPLE.read_text())
    spec.update(type="random", observation_budget=1, parallel_bandwidth=3)

    workdir = tmp_path / "rn50"
    workdir.mkdir()
    shutil.copy(STANDIN, workdir / "resnet_ctl_imagenet_main.py")
    (tmp_path / "runs.json").write_text(json.dumps(runs))
    monkeypatch.setenv("STANDIN_RUNS", str(tmp_path / "runs.json"))
    monkeypatch.setenv("STANDIN_SLEEP", "0.02")

    conn = Connection(db=f"sqlite:///{tmp_path / 'rn50.db'}")
    experiment_id = conn.experiments().create(**spec).id
    executor = LocalExecutor(slots=3, workdir=workdir)
    try:
        run_experiment(conn, experiment_id, parse_spec(spec), executor)
    finally:
        executor.shutdown()
    [observation] = conn.experiments(experiment_id).observations().fetch().data
    return observation, spec


def test_the_example_stores_the_converge_epochs_of_its_mllog_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    observation, _ = run_example(tmp_path, monkeypatch, EMBEDDED_RUNS)
    values = {v.name: v for v in observation.values}
    metadata = observation.metadata

    assert not observation.failed
    assert metadata["converge_epochs"] == [35.0, 39.0, 31.0]
    assert metadata["converged"] is True
    # Mean of 35, 39 and 31 is 35; their sample standard deviation is 4.
    assert values["converge_epoch"].value == pytest.approx(35.0)
    assert values["converge_epoch"].value_stddev == pytest.approx(4.0)
    # Every run was ended at its target: nothing after it was read.
    assert metadata["stopped_at_target"] == [0, 1, 2]
    assert [curve[-1][0] for curve in metadata["curves"]] == [35.0, 39.0, 31.0]
    # The last accuracy each run reported: its value at its converge epoch.
    top1 = (0.760 + 0.7625 + 0.7595) / 3
    assert values["eval_accuracy"].value == pytest.approx(top1)

    # Each seed's MLPerf log is kept under the name the template gives it.
    logs = sorted(p.name for p in (tmp_path / "rn50" / "logs").iterdir())
    assert [name[-7:] for name in logs] == ["-s0.log", "-s1.log", "-s2.log"]


def test_an_aborted_mllog_run_fails_the_point(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    aborted = {"evals": _with({35: 0.755, 39: 0.757, 43: 0.758}), "status": "aborted"}
    runs = [EMBEDDED_RUNS[0], EMBEDDED_RUNS[1], aborted]
    observation, _ = run_example(tmp_path, monkeypatch, runs)

    assert observation.failed
    assert observation.metadata["failed_seed"] == 2
    assert observation.metadata["reason"] == (
        "its log reports run_stop with status aborted"
    )


def _recorded_recipe() -> list[dict[str, Any]]:
    """The recorded runs of one 3.2k-batch LARS recipe, evaluated at 3, 7, ..."""
    runs = json.loads(RECORDED_RUNS.read_text())
    recipe = [
        r
        for r in runs
        if r.get("opt_name") == "lars"
        and r.get("global_batch_size") == 3264
        and r.get("evals")
        and r["evals"][0][0] == 3
    ]
    return sorted(recipe, key=lambda r: r["source"])


def _matching(runs: list[dict[str, Any]], **fields: Any) -> list[dict[str, Any]]:
    return [r for r in runs if all(r[k] == v for k, v in fields.items())]


needs_recorded_runs = pytest.mark.skipif(
    not RECORDED_RUNS.exists(),
    reason=f"{RECORDED_RUNS} (real MLPerf result logs) is not on this machine",
)


@needs_recorded_runs
def test_recorded_mlperf_runs_give_their_published_converge_epochs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recipe = _recorded_recipe()
    # Runs of this recipe converged at epoch 35 or, for a few, at 39.
    recorded = [
        _matching(recipe, conv_epoch=39)[0],
        _matching(recipe, conv_epoch=35)[0],
        _matching(recipe, conv_epoch=39)[1],
    ]
    runs = [{"evals": r["evals"], "status": r["status"]} for r in recorded]
    observation, _ = run_example(tmp_path, monkeypatch, runs)

    # The parsed logs' own converge epochs, computed apart from optiloop.
    assert observation.metadata["converge_epochs"] == [39.0, 35.0, 39.0]
    values = {v.name: v.value for v in observation.values}
    assert values["converge_epoch"] == pytest.approx((39 + 35 + 39) / 3)


@needs_recorded_runs
def test_a_recorded_aborted_mlperf_run_fails_the_point(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recipe = _recorded_recipe()
    recorded = [
        _matching(recipe, conv_epoch=35)[0],
        _matching(recipe, status="aborted")[0],
        _matching(recipe, conv_epoch=35)[1],
    ]
    runs = [{"evals": r["evals"], "status": r["status"]} for r in recorded]
    observation, _ = run_example(tmp_path, monkeypatch, runs)

    assert observation.failed
    assert observation.metadata["failed_seed"] == 1
