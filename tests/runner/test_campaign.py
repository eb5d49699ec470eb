"""The campaign loop end to end: real processes, the embedded store or a server.

The job (``campaign_job.py``) is a bowl with its minimum at x = 0.9,
y = 0.3, plus seed / 1000, and logs every run it makes, so each test counts
the runs really launched.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from optiloop.campaign_spec import CampaignSpec, parse_campaign
from optiloop.client import Connection
from optiloop.evaluators import KMeansEvaluator
from optiloop.experiment import MetricValue, Observation, parse_spec
from optiloop.runner.campaign import (
    CampaignEvent,
    CampaignSummary,
    ValidatedPoint,
    best_validated,
    run_campaign,
    stop_reason,
    top_points,
    warm_start_rows,
)

JOB = Path(__file__).with_name("campaign_job.py")
BUDGET = 8
SEEDS = 2


def campaign_data(runs: Path, **changes: Any) -> dict[str, Any]:
    command = (
        f"{sys.executable} {JOB} --x {{x}} --y {{y}} --seed {{seed}} --runs {runs}"
    )
    data: dict[str, Any] = {
        "name": "bowl",
        "type": "random",
        "parameters": [
            {"name": "x", "type": "double", "bounds": {"min": 0, "max": 1}},
            {"name": "y", "type": "double", "bounds": {"min": 0, "max": 1}},
        ],
        "metrics": [{"name": "loss", "objective": "minimize"}],
        "parallel_bandwidth": 2,
        "seeds_per_point": SEEDS,
        "job": {"command": command},
        "rounds": {"max": 3, "budget": BUDGET},
        # The best half of 8 points forms one cluster of 4: round 2's bounds
        # follow by hand from round 1's points.
        "evaluator": {
            "name": "kmeans",
            "settings": {"keep_fraction": 0.5, "min_cluster_size": 4},
        },
        "validation": {"top": 2, "seeds": 3},
    }
    data.update(changes)
    return data


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    return tmp_path / "runs.jsonl"


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[Connection]:
    with Connection(db=f"sqlite:///{tmp_path / 'campaign.db'}") as opened:
        yield opened


def launched(runs: Path) -> list[dict[str, Any]]:
    """Every run the job made, in order."""
    if not runs.exists():
        return []
    return [json.loads(line) for line in runs.read_text().splitlines()]


def experiments(conn: Connection, campaign_id: int) -> list[Any]:
    return list(conn.campaigns(campaign_id).experiments().fetch().data)


def observations(conn: Connection, experiment_id: int) -> list[Any]:
    return list(conn.experiments(experiment_id).observations().fetch().data)


def originals(conn: Connection, experiment_id: int) -> list[Any]:
    """A round's own observations, without its warm-start copies."""
    return [
        o
        for o in observations(conn, experiment_id)
        if "warm_start" not in (o.metadata or {})
    ]


def loss(o: Any) -> float:
    return float(o.values[0].value)


def bounds_of(experiment: Any) -> dict[str, tuple[float, float]]:
    return {p.name: (p.bounds.min, p.bounds.max) for p in experiment.parameters}


def check_complete(
    conn: Connection, summary: CampaignSummary, runs: Path, rounds: int
) -> None:
    """Each round trained exactly its budget, nothing is open, and every
    search run launched is in one stored observation."""
    listed = experiments(conn, summary.campaign_id)
    round_experiments = [e for e in listed if e.campaign["role"] == "round"]
    assert [e.campaign["round"] for e in round_experiments] == list(
        range(1, rounds + 1)
    )

    stored_points = set()
    for experiment in listed:
        open_left = conn.experiments(experiment.id).suggestions().fetch(state="open")
        assert open_left.data == []
        own = originals(conn, experiment.id)
        suggestion_ids = [o.suggestion for o in own]
        assert len(set(suggestion_ids)) == len(suggestion_ids)
        if experiment.campaign["role"] == "round":
            assert len(own) == BUDGET
            stored_points |= {(o.assignments["x"], o.assignments["y"]) for o in own}

    search_runs = {(r["x"], r["y"]) for r in launched(runs) if r["seed"] < SEEDS}
    assert search_runs == stored_points


def test_campaign_runs_rounds_then_validation(conn: Connection, runs: Path) -> None:
    campaign = parse_campaign(campaign_data(runs))
    events: list[CampaignEvent] = []
    summary = run_campaign(conn, campaign, on_event=events.append)

    assert summary.state == "done"
    assert summary.rounds == 3
    assert summary.stopped_because == "rounds.max=3 rounds run"
    check_complete(conn, summary, runs, rounds=3)

    # Validation: the 2 best distinct search points, 3 fresh seeds each.
    # Ranked by posterior mean; the seeds' spread is a thousandth of the
    # bowl's, so the posterior keeps the measured order.
    listed = experiments(conn, summary.campaign_id)
    validation = next(e for e in listed if e.campaign["role"] == "validation")
    searched = [o for e in listed[:3] for o in originals(conn, e.id) if o.assignments]
    best_two = sorted(searched, key=loss)[:2]
    validated = observations(conn, validation.id)
    assert {(o.assignments["x"], o.assignments["y"]) for o in validated} == {
        (o.assignments["x"], o.assignments["y"]) for o in best_two
    }
    validation_runs = [r for r in launched(runs) if r["seed"] >= SEEDS]
    assert sorted(r["seed"] for r in validation_runs) == [2, 2, 3, 3, 4, 4]

    # The answer: the validated mean of the bowl at the point, seeds 2, 3, 4
    # adding 0.003 on average, with the spread of seed / 1000.
    assert summary.best is not None
    x, y = summary.best.assignments["x"], summary.best.assignments["y"]
    assert summary.best.mean == pytest.approx((x - 0.9) ** 2 + (y - 0.3) ** 2 + 0.003)
    assert summary.best.std == pytest.approx(0.001)
    assert summary.best.seeds == 3
    assert summary.best.mean == min(p.mean for p in summary.validated)

    stored = conn.campaigns(summary.campaign_id).fetch()
    assert stored.state == "done"
    assert stored.result["best"]["mean"] == summary.best.mean
    assert [item["round"] for item in stored.result["round_best"]] == [1, 2, 3]
    kinds = [e.kind for e in events if e.kind != "loop"]
    assert kinds.count("round_started") == 3
    assert kinds.count("refined") == 2
    assert kinds[-3:] == ["validation_started", "validation_finished", "done"]


def test_round_2_bounds_are_the_kmeans_rule_on_round_1(
    conn: Connection, runs: Path
) -> None:
    data = campaign_data(runs, rounds={"max": 2, "budget": BUDGET})
    summary = run_campaign(conn, parse_campaign(data))
    first, second = experiments(conn, summary.campaign_id)[:2]

    # By hand: the best half of round 1 is one cluster; each bound is pushed
    # out by a margin of 0.1 when the cluster comes within 0.1 of it, else
    # moved to the cluster's edge plus the margin.
    kept = sorted(originals(conn, first.id), key=loss)[:4]
    expected = {}
    for name in ("x", "y"):
        low = min(o.assignments[name] for o in kept)
        high = max(o.assignments[name] for o in kept)
        new_low = -0.1 if low <= 0.1 else low - 0.1
        new_high = 1.1 if high >= 0.9 else high + 0.1
        expected[name] = (new_low, new_high)
    got = bounds_of(second)
    for name in ("x", "y"):
        assert got[name] == pytest.approx(expected[name])

    # The stored refinement is the same, and says why for each parameter.
    refinement = second.campaign["refinement"]
    assert refinement["from_round"] == 1
    assert refinement["bounds"]["x"]["min"] == pytest.approx(expected["x"][0])
    assert set(refinement["reasons"]) == {"x", "y"}

    # And the evaluator itself, on the stored records, agrees.
    spec = parse_spec({**data_without_campaign(data), "observation_budget": 8})
    records = [record_of(o) for o in observations(conn, first.id)]
    refined = KMeansEvaluator(keep_fraction=0.5, min_cluster_size=4).refine(
        spec, records
    )
    assert refined.bounds["y"].max == pytest.approx(expected["y"][1])


def test_warm_start_copies_what_lies_inside_the_new_bounds(
    conn: Connection, runs: Path
) -> None:
    data = campaign_data(runs, rounds={"max": 2, "budget": BUDGET})
    summary = run_campaign(conn, parse_campaign(data))
    first, second = experiments(conn, summary.campaign_id)[:2]

    (x_low, x_high), (y_low, y_high) = bounds_of(second).values()
    inside = {
        o.id
        for o in observations(conn, first.id)
        if x_low <= o.assignments["x"] <= x_high
        and y_low <= o.assignments["y"] <= y_high
    }
    copies = [
        o for o in observations(conn, second.id) if "warm_start" in (o.metadata or {})
    ]
    assert {c.metadata["warm_start"]["observation"] for c in copies} == inside
    assert 0 < len(inside) < BUDGET, "the test needs points on both sides"
    for copy in copies:
        assert copy.metadata["warm_start"]["round"] == 1
        assert "compute_seconds" not in copy.metadata

    # The copies come on top of the round's budget of new points.
    assert second.observation_budget == len(inside) + BUDGET
    assert second.campaign["refinement"]["warm_start"] == len(inside)
    assert len(launched(runs)) == 2 * BUDGET * SEEDS + 2 * 3


def stop_when(condition: Callable[[CampaignEvent], bool]) -> tuple[Any, Any]:
    """An event handler and a should_stop that turns True once an event
    meets ``condition``."""
    stopped = [False]

    def on_event(event: CampaignEvent) -> None:
        if condition(event):
            stopped[0] = True

    return on_event, lambda: stopped[0]


@pytest.mark.parametrize(
    "where",
    [
        # Mid-round 2, after its first finished seed.
        lambda e: e.kind == "loop" and e.round == 2,
        # Between rounds: when round 1 has finished.
        lambda e: e.kind == "round_finished" and e.round == 1,
        # Mid-validation, after its first finished seed.
        lambda e: e.kind == "loop" and e.round is None,
    ],
    ids=["mid-round", "between-rounds", "mid-validation"],
)
def test_continuing_a_stopped_campaign_loses_and_repeats_nothing(
    conn: Connection, runs: Path, where: Callable[[CampaignEvent], bool]
) -> None:
    campaign = parse_campaign(campaign_data(runs))
    on_event, should_stop = stop_when(where)
    stopped = run_campaign(conn, campaign, on_event=on_event, should_stop=should_stop)
    assert stopped.state == "stopped"
    assert conn.campaigns(stopped.campaign_id).fetch().state == "stopped"
    assert len(launched(runs)) < 3 * BUDGET * SEEDS + 2 * 3

    summary = run_campaign(conn, campaign, campaign_id=stopped.campaign_id)
    assert summary.state == "done"
    check_complete(conn, summary, runs, rounds=3)
    # Ctrl-C once finishes the points it started: no run is made twice.
    assert len(launched(runs)) == 3 * BUDGET * SEEDS + 2 * 3


def test_stopping_now_leaves_suggestions_open_for_the_next_run(
    conn: Connection, runs: Path
) -> None:
    campaign = parse_campaign(campaign_data(runs, rounds={"max": 2, "budget": 8}))

    def interrupt(event: CampaignEvent) -> None:
        if event.kind == "loop" and event.round == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_campaign(conn, campaign, on_event=interrupt)
    [stored] = conn.campaigns().fetch().data
    assert stored.state == "stopped"
    second = experiments(conn, stored.id)[1]
    assert conn.experiments(second.id).suggestions().fetch(state="open").data

    summary = run_campaign(conn, campaign, campaign_id=stored.id)
    check_complete(conn, summary, runs, rounds=2)


def test_a_small_improvement_ends_the_search(conn: Connection, runs: Path) -> None:
    data = campaign_data(runs, stop={"min_improvement": 100.0})
    summary = run_campaign(conn, parse_campaign(data))

    # The bowl's values are all below 2, so no round can improve by 100:
    # the search ends after round 2, the first with a round before it.
    assert summary.rounds == 2
    assert "less than stop.min_improvement=100.0" in summary.stopped_because
    assert summary.best is not None


def test_validation_off_answers_with_the_best_search_point(
    conn: Connection, runs: Path
) -> None:
    data = campaign_data(
        runs, rounds={"max": 1, "budget": 4}, validation={"top": 0, "seeds": 1}
    )
    summary = run_campaign(conn, parse_campaign(data))

    [only] = experiments(conn, summary.campaign_id)
    best = min(observations(conn, only.id), key=loss)
    assert summary.best is not None
    assert summary.best.observation_id == best.id
    assert summary.best.mean == loss(best)
    assert summary.validated == (summary.best,)
    assert "validation off" in summary.stopped_because
    assert len(launched(runs)) == 4 * SEEDS


def test_continuing_with_another_file_is_refused(conn: Connection, runs: Path) -> None:
    data = campaign_data(runs, rounds={"max": 1, "budget": 2})
    summary = run_campaign(conn, parse_campaign(data))

    changed = parse_campaign({**data, "rounds": {"max": 2, "budget": 3}})
    with pytest.raises(ValueError, match=r"^rounds: the campaign file differs"):
        run_campaign(conn, changed, campaign_id=summary.campaign_id)


def test_a_campaign_runs_against_a_server(shared_server: Any, runs: Path) -> None:
    data = campaign_data(
        runs,
        rounds={"max": 2, "budget": 4},
        evaluator={"name": "kmeans", "settings": {"min_cluster_size": 2}},
        validation={"top": 1, "seeds": 2},
    )
    token = shared_server.new_token("campaign")
    with Connection(url=shared_server.url, token=token) as remote:
        summary = run_campaign(remote, parse_campaign(data))
        listed = experiments(remote, summary.campaign_id)

    assert summary.state == "done"
    assert [e.campaign["role"] for e in listed] == ["round", "round", "validation"]
    assert summary.best is not None
    assert summary.best.seeds == 2
    assert len(launched(runs)) == 2 * 4 * SEEDS + 2


# The pure steps, on hand-made numbers.


def bowl_campaign(**changes: Any) -> CampaignSpec:
    return parse_campaign(campaign_data(Path("runs.jsonl"), **changes))


@pytest.mark.parametrize(
    ("bests", "stops"),
    [
        ([10.0], False),  # one round: nothing to compare with
        ([10.0, 9.6], True),  # improved by 0.4 < 0.5
        ([10.0, 9.5], False),  # by exactly 0.5: enough
        ([10.0, 9.0, 8.9], True),
        ([None, 9.0], False),  # from nothing feasible to something
        ([None, None], True),  # nothing feasible, nothing improved
    ],
)
def test_stop_rule_on_a_minimized_metric(
    bests: list[float | None], stops: bool
) -> None:
    campaign = bowl_campaign(
        stop={"min_improvement": 0.5}, rounds={"max": 9, "budget": 8}
    )
    assert (stop_reason(campaign, bests) is not None) is stops


def test_stop_rule_follows_a_maximized_metric() -> None:
    data = campaign_data(Path("runs.jsonl"), stop={"min_improvement": 0.01})
    data["metrics"] = [{"name": "loss", "objective": "maximize"}]
    campaign = parse_campaign(data)
    assert stop_reason(campaign, [0.90, 0.905]) is not None
    assert stop_reason(campaign, [0.90, 0.95]) is None


def test_stop_rule_ends_at_max_rounds_whatever_the_improvement() -> None:
    campaign = bowl_campaign(rounds={"max": 2, "budget": 8})
    assert stop_reason(campaign, [10.0, 1.0]) == "rounds.max=2 rounds run"
    assert stop_reason(campaign, [10.0]) is None


def observation(id: int, x: float, y: float, value: float | None) -> Observation:
    values = () if value is None else (MetricValue("loss", value, 0.1),)
    return Observation(
        {"x": x, "y": y},
        values,
        failed=value is None,
        id=id,
        experiment_id=7,
        metadata={"compute_seconds": 3.0, "seeds": [0, 1]},
    )


def test_warm_start_rows_keep_inside_points_failed_ones_too() -> None:
    spec = parse_spec(
        {
            "parameters": [
                {"name": "x", "type": "double", "bounds": {"min": 0.2, "max": 0.6}},
                {"name": "y", "type": "double", "bounds": {"min": 0, "max": 1}},
            ],
            "metrics": [{"name": "loss", "objective": "minimize"}],
        }
    )
    history = [
        observation(1, 0.1, 0.5, 1.0),  # x below the new min
        observation(2, 0.2, 0.5, 2.0),  # on the min: inside
        observation(3, 0.6, 0.5, None),  # on the max, failed: inside
        observation(4, 0.7, 0.5, 3.0),  # above the max
    ]
    rows = warm_start_rows(spec, history, {7: 1})

    assert [r["metadata"]["warm_start"]["observation"] for r in rows] == [2, 3]
    assert rows[0]["values"] == [{"name": "loss", "value": 2.0, "value_stddev": 0.1}]
    assert rows[1]["failed"] is True and "values" not in rows[1]
    assert rows[0]["metadata"] == {
        "seeds": [0, 1],
        "warm_start": {"experiment": 7, "observation": 2, "round": 1},
    }


def test_top_points_are_distinct_feasible_and_best_first() -> None:
    spec = bowl_campaign().experiment
    history = [
        observation(1, 0.5, 0.5, 0.3),
        observation(2, 0.1, 0.1, None),
        observation(3, 0.5, 0.5, 0.1),  # the same point again: ranked by id 1
        observation(4, 0.8, 0.2, 0.2),
        observation(5, 0.9, 0.3, 0.25),
    ]
    assert [o.id for o in top_points(spec, history, 2)] == [4, 5]
    assert [o.id for o in top_points(spec, history, 9)] == [4, 5, 1]
    assert math.isclose(top_points(spec, history, 1)[0].value("loss") or 0, 0.2)


def data_without_campaign(data: dict[str, Any]) -> dict[str, Any]:
    return {
        key: value
        for key, value in data.items()
        if key not in ("rounds", "evaluator", "stop", "validation")
    }


def record_of(item: Any) -> Observation:
    return Observation(
        dict(item.assignments),
        tuple(MetricValue(v.name, v.value, v.value_stddev) for v in item.values),
        failed=item.failed,
        id=item.id,
        metadata=dict(item.metadata or {}),
    )


def validated(mean: float | None, feasible: bool, meets: bool) -> ValidatedPoint:
    return ValidatedPoint(
        assignments={"x": mean},
        mean=mean,
        std=0.5,
        seeds=10,
        feasible=feasible,
        meets_thresholds=meets,
        converged_seeds=10 if feasible else 9,
        experiment_id=1,
        observation_id=1,
        search_mean=None,
        search_std=None,
        search_observation_id=None,
        round=1,
    )


def test_the_answer_prefers_points_that_converged_on_every_seed() -> None:
    metric = bowl_campaign().experiment.optimized_metrics[0]
    points = [
        validated(40.0, feasible=False, meets=True),
        validated(42.0, feasible=True, meets=True),
        validated(41.0, feasible=True, meets=True),
    ]
    assert best_validated(metric, points) == points[2]

    # None converged on every seed: the best mean that meets the thresholds.
    points = [
        validated(40.0, feasible=False, meets=False),
        validated(43.0, feasible=False, meets=True),
        validated(None, feasible=False, meets=False),
    ]
    assert best_validated(metric, points) == points[1]
    assert best_validated(metric, points[:1]) is None
