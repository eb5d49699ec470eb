"""The figures, checked on hand-built experiments whose pictures are known.

Most tests use one parameter ``x`` whose value is different in every run,
so a line or a point of a figure can be traced back to its run through
``x``.  The metrics are ``acc`` (a constraint, at least 0.9) and ``loss``
(minimized) unless a test says otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from optiloop.analysis import (
    MAX_BEST_RUNS,
    RUN_COLORS,
    Importance,
    MetricImportance,
    NotEnoughData,
    best_so_far,
    classify_runs,
    correlation,
    history,
    importance_bars,
    metric_scatter,
    parallel_coordinates,
    pearson,
)
from optiloop.analysis.figures import MARK_COLOR, best_runs_legend
from optiloop.experiment import ExperimentSpec, MetricValue, Observation, parse_spec
from optiloop.space import Value

X: dict[str, Any] = {"name": "x", "type": "double", "bounds": {"min": 0, "max": 10}}

ACC_AND_LOSS: list[dict[str, Any]] = [
    {"name": "acc", "strategy": "constraint", "threshold": 0.9},
    {"name": "loss", "objective": "minimize"},
]


def make_spec(
    *parameters: dict[str, Any], metrics: list[dict[str, Any]] = ACC_AND_LOSS
) -> ExperimentSpec:
    return parse_spec(
        {"name": "figures", "parameters": list(parameters or [X]), "metrics": metrics}
    )


def observe(**fields: Any) -> Observation:
    """An observation: keyword ``x`` (and other parameters) and metric values.

    Metric names are those of the spec; ``converged=False`` marks a run that
    never reached its converge target, as the runner does.
    """
    metadata = {"converged": fields.pop("converged")} if "converged" in fields else {}
    metric_names = {"acc", "loss", "speed", "y"}
    values = tuple(
        MetricValue(name, float(value))
        for name, value in fields.items()
        if name in metric_names
    )
    assignments: dict[str, Value] = {
        name: value for name, value in fields.items() if name not in metric_names
    }
    return Observation(assignments=assignments, values=values, metadata=metadata)


def failed(x: float) -> Observation:
    return Observation(assignments={"x": x}, failed=True)


# Six runs whose classes are known by hand: with 0.1 of three feasible runs
# rounded up to one, only the best feasible run (x=2) is "best".
RUNS = [
    observe(x=0, acc=0.95, loss=3),  # meets acc: feasible
    observe(x=1, acc=0.80, loss=1),  # lowest loss but misses acc
    observe(x=2, acc=0.92, loss=2),  # lowest loss among feasible: best
    failed(x=3),
    observe(x=4, acc=0.90, loss=4),  # exactly at the threshold: feasible
    observe(x=5, acc=0.99, loss=2.5, converged=False),  # never converged
]
CLASSES = ["feasible", "infeasible", "best", "failed", "feasible", "infeasible"]


def test_runs_are_classified_by_the_threshold_and_the_best() -> None:
    assert classify_runs(make_spec(), RUNS) == CLASSES


def test_best_fraction_adds_the_top_feasible_runs() -> None:
    # Half of three feasible runs, rounded up, is two: loss 2 and loss 3.
    classes = classify_runs(make_spec(), RUNS, best_fraction=0.5)

    assert classes == ["best", "infeasible", "best", "failed", "feasible", "infeasible"]


def test_the_top_fraction_is_capped() -> None:
    # 0.1 of 500 feasible runs is 50; the cap keeps the best 40.
    runs = [observe(x=i, acc=0.95, loss=i) for i in range(500)]

    classes = classify_runs(make_spec(), runs)

    assert classes == ["best"] * MAX_BEST_RUNS + ["feasible"] * (500 - MAX_BEST_RUNS)


def test_two_optimized_metrics_make_the_pareto_front_best() -> None:
    spec = make_spec(
        metrics=[
            {"name": "loss", "objective": "minimize"},
            {"name": "speed", "objective": "maximize"},
        ]
    )
    runs = [
        observe(x=0, loss=1, speed=1),  # front: lowest loss
        observe(x=1, loss=2, speed=3),  # front
        observe(x=2, loss=3, speed=2),  # dominated by x=1
        observe(x=3, loss=4, speed=4),  # front: highest speed
    ]

    assert classify_runs(spec, runs) == ["best", "best", "feasible", "best"]


def colour_at(colorscale: Sequence[Sequence[Any]], position: float) -> str:
    """The colour a flat-step colour scale gives at ``position`` in [0, 1]."""
    return str([colour for stop, colour in colorscale if stop <= position][-1])


def test_parallel_coordinates_colour_every_line_by_its_class() -> None:
    figure = parallel_coordinates(make_spec(), RUNS)

    trace = figure.data[0]
    x_axis = next(d for d in trace.dimensions if d.label == "x")
    span = trace.line.cmax - trace.line.cmin
    colours = {
        x: colour_at(trace.line.colorscale, (code - trace.line.cmin) / span)
        for x, code in zip(x_axis.values, trace.line.color)
    }

    # The failed run (x=3) has no values and draws no line.
    assert colours == {
        0: RUN_COLORS["feasible"],
        1: RUN_COLORS["infeasible"],
        2: RUN_COLORS["best"],
        4: RUN_COLORS["feasible"],
        5: RUN_COLORS["infeasible"],
    }


def test_parallel_coordinates_draw_the_best_lines_last() -> None:
    figure = parallel_coordinates(make_spec(), RUNS)

    x_axis = next(d for d in figure.data[0].dimensions if d.label == "x")

    # Gray first, then blue, then orange, each in run order.
    assert list(x_axis.values) == [1, 5, 0, 4, 2]


def test_many_runs_are_thinned_but_every_best_run_is_drawn() -> None:
    # 30 feasible runs with loss = x; the top 0.1 (3 runs) are x = 0, 1, 2.
    runs = [observe(x=i, acc=0.95, loss=i) for i in range(30)]

    figure = parallel_coordinates(make_spec(), runs, max_lines=10)

    x_axis = next(d for d in figure.data[0].dimensions if d.label == "x")
    # Seven of the 27 others, evenly spaced from x = 3 to x = 29.
    assert list(x_axis.values) == [3, 7, 12, 16, 20, 25, 29, 0, 1, 2]
    assert figure.layout.title.text.endswith("(10 of 30 runs drawn)")


def test_parallel_coordinates_have_an_axis_per_parameter_and_metric() -> None:
    figure = parallel_coordinates(make_spec(), RUNS)

    labels = [d.label for d in figure.data[0].dimensions]

    assert labels == ["x", "acc", "loss"]


def test_a_log_parameter_is_drawn_in_log10_with_real_tick_labels() -> None:
    lr = {
        "name": "lr",
        "type": "double",
        "bounds": {"min": 0.01, "max": 100},
        "transformation": "log",
    }
    runs = [observe(lr=v, acc=0.95, loss=v) for v in (0.01, 1.0, 100.0)]

    figure = parallel_coordinates(make_spec(lr), runs)

    axis, loss = figure.data[0].dimensions[0], figure.data[0].dimensions[2]
    assert axis.label == "lr (log)"
    # loss equals lr in every run, which ties each line to its run.
    assert sorted(zip(loss.values, axis.values)) == [(0.01, -2), (1, 0), (100, 2)]
    # Five ticks evenly spaced in log10 space from 0.01 to 100.
    assert list(axis.tickvals) == pytest.approx([-2, -1, 0, 1, 2])
    assert list(axis.ticktext) == ["0.01", "0.1", "1", "10", "100"]


def test_a_categorical_axis_is_labelled_with_its_values() -> None:
    block = {"name": "block", "type": "categorical", "categorical_values": ["a", "b"]}
    runs = [observe(block=v, acc=0.95, loss=i) for i, v in enumerate("bab")]

    figure = parallel_coordinates(make_spec(block), runs)

    axis, loss = figure.data[0].dimensions[0], figure.data[0].dimensions[2]
    assert list(axis.ticktext) == ["a", "b"]
    assert list(axis.tickvals) == [0, 1]
    assert sorted(zip(loss.values, axis.values)) == [(0, 1), (1, 0), (2, 1)]


def test_parallel_coordinates_without_successful_runs_say_so() -> None:
    figure = parallel_coordinates(make_spec(), [failed(1.0), failed(2.0)])

    assert not figure.data
    assert "No successful observations" in figure.layout.annotations[0].text


def test_best_so_far_when_minimizing() -> None:
    # loss 9 misses acc and is skipped; the failed run keeps the best.
    runs = [
        observe(x=0, acc=0.8, loss=1),
        observe(x=1, acc=0.95, loss=5),
        observe(x=2, acc=0.95, loss=6),
        failed(x=3),
        observe(x=4, acc=0.95, loss=4),
        observe(x=5, acc=0.5, loss=0),
        observe(x=6, acc=0.95, loss=2),
    ]

    assert best_so_far(make_spec(), runs) == [None, 5, 5, 5, 4, 4, 2]


def test_best_so_far_when_maximizing() -> None:
    spec = make_spec(
        metrics=[
            {"name": "acc", "strategy": "constraint", "threshold": 0.9},
            {"name": "speed", "objective": "maximize"},
        ]
    )
    runs = [
        observe(x=0, acc=0.95, speed=1),
        observe(x=1, acc=0.95, speed=3),
        observe(x=2, acc=0.50, speed=9),
        observe(x=3, acc=0.95, speed=2),
        observe(x=4, acc=0.95, speed=4),
    ]

    assert best_so_far(spec, runs) == [1, 3, 3, 3, 4]


def test_history_marks_failed_runs_and_round_starts() -> None:
    figure = history(make_spec(), RUNS, round_starts=[2, 4])

    traces = {trace.name: trace for trace in figure.data}
    assert list(traces["failed"].x) == [4]
    # Losses span 1 to 4, so the failed row sits 5% of 3 under 1.
    assert list(traces["failed"].y) == pytest.approx([0.85])
    assert list(traces["met every threshold"].x) == [1, 3, 5]
    assert list(traces["missed a threshold"].x) == [2, 6]
    assert list(traces["best so far"].y) == [3, 3, 2, 2, 2, 2]
    # Runs are numbered from 1: index 2 is run 3, so its line is at 2.5.
    assert [shape.x0 for shape in figure.layout.shapes] == [2.5, 4.5]


def test_scatter_defaults_to_constraint_against_objective() -> None:
    figure = metric_scatter(make_spec(), RUNS)

    assert figure.layout.xaxis.title.text == "acc"
    assert figure.layout.yaxis.title.text == "loss"
    traces = {trace.name: trace for trace in figure.data}
    assert list(traces["best"].x) == [0.92]
    assert list(traces["best"].y) == [2]
    # The acc threshold is a vertical line; loss has no threshold.
    assert [(shape.x0, shape.x1) for shape in figure.layout.shapes] == [(0.9, 0.9)]


def test_scatter_of_two_optimized_metrics_draws_the_pareto_front() -> None:
    spec = make_spec(
        metrics=[
            {"name": "loss", "objective": "minimize"},
            {"name": "speed", "objective": "maximize"},
        ]
    )
    runs = [
        observe(x=0, loss=3, speed=2),
        observe(x=1, loss=1, speed=1),
        observe(x=2, loss=4, speed=4),
        observe(x=3, loss=2, speed=3),
    ]

    figure = metric_scatter(spec, runs)

    front = next(trace for trace in figure.data if trace.name == "Pareto front")
    # x is speed, y is loss; (2, 3) is dominated by (3, 2).
    assert list(zip(front.x, front.y)) == [(1, 1), (3, 2), (4, 4)]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pearson_matches_numpy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    xs = rng.normal(size=25)
    ys = 0.6 * xs + rng.normal(size=25)

    assert pearson(xs.tolist(), ys.tolist()) == pytest.approx(
        np.corrcoef(xs, ys)[0, 1], abs=1e-12
    )


def test_pearson_of_a_constant_is_undefined() -> None:
    assert pearson([1.0, 2.0, 3.0], [4.0, 4.0, 4.0]) is None
    assert pearson([1.0], [2.0]) is None


def test_correlation_title_carries_the_coefficient() -> None:
    epochs = {"name": "train_epochs", "type": "int", "bounds": {"min": 1, "max": 50}}
    spec = make_spec(epochs, metrics=[{"name": "y", "objective": "minimize"}])
    train = [40, 42, 45, 47, 50, 41]
    converge = [38, 41, 42, 46, 47, 40]
    runs = [observe(train_epochs=t, y=c) for t, c in zip(train, converge)]
    runs.append(Observation({"train_epochs": 44}, failed=True))

    figure = correlation(spec, runs, "train_epochs", "y")

    r = np.corrcoef(train, converge)[0, 1]
    assert f"Pearson r = {r:.3f}" in figure.layout.title.text
    assert "n = 6" in figure.layout.title.text


def test_correlation_of_a_log_parameter_is_taken_in_log_space() -> None:
    lr = {
        "name": "lr",
        "type": "double",
        "bounds": {"min": 0.001, "max": 10},
        "transformation": "log",
    }
    spec = make_spec(lr, metrics=[{"name": "y", "objective": "minimize"}])
    # y is exactly log10(lr), so r in log space is 1 (and less than 1 raw).
    runs = [observe(lr=10.0**k, y=k) for k in (-3, -2, -1, 0, 1)]

    figure = correlation(spec, runs, "lr", "y")

    assert "Pearson r = 1.000" in figure.layout.title.text
    assert figure.layout.xaxis.type == "log"


def test_correlation_refuses_a_categorical() -> None:
    block = {"name": "block", "type": "categorical", "categorical_values": ["a", "b"]}

    with pytest.raises(ValueError, match="categorical"):
        correlation(make_spec(block), [observe(block="a", loss=1)], "block", "loss")


def test_importance_bars_have_one_group_per_metric() -> None:
    importances: list[MetricImportance] = [
        Importance("acc", {"x": 0.75, "z": 0.25}, 10),
        Importance("loss", {"x": 0.5, "z": 0.5}, 10),
        NotEnoughData("speed", "3 observations with a value for speed, need 5"),
    ]

    figure = importance_bars(importances)

    assert [trace.name for trace in figure.data] == ["acc", "loss"]
    assert list(figure.data[0].y) == [0.75, 0.25]
    assert "speed: not enough data" in figure.layout.annotations[0].text


def test_names_reach_plotly_escaped() -> None:
    odd = {"name": "<b>x</b>", "type": "double", "bounds": {"min": 0, "max": 10}}
    runs = [observe(**{"<b>x</b>": 1.0}, acc=0.95, loss=1)]

    figure = parallel_coordinates(make_spec(odd), runs)

    assert figure.data[0].dimensions[0].label == "&lt;b&gt;x&lt;/b&gt;"


def test_correlation_colours_runs_by_the_rule() -> None:
    z = {"name": "z", "type": "double", "bounds": {"min": 0, "max": 10}}
    spec = make_spec(X, z)
    runs = [
        observe(x=1, z=2, acc=0.95, loss=0.1),  # the best: lowest loss
        observe(x=2, z=3, acc=0.93, loss=0.5),  # met every threshold
        observe(x=3, z=5, acc=0.5, loss=0.05),  # missed the accuracy
        Observation({"x": 4, "z": 6}, failed=True),
    ]

    # Two parameters: a failed run has them too, and is drawn red.
    figure = correlation(spec, runs, "x", "z")

    drawn = {t.name: (list(t.x), t.marker.color) for t in figure.data}
    assert drawn == {
        "failed": ([4.0], RUN_COLORS["failed"]),
        "missed a threshold": ([3.0], RUN_COLORS["infeasible"]),
        "met every threshold": ([2.0], RUN_COLORS["feasible"]),
        best_runs_legend(spec): ([1.0], RUN_COLORS["best"]),
    }


def test_history_without_values_says_so() -> None:
    figure = history(make_spec(), [failed(1.0), failed(2.0)])

    assert figure.layout.yaxis.title.text == "no values: every run failed"
    assert figure.layout.xaxis.dtick == 1


def test_history_labels_each_round() -> None:
    runs = [observe(x=x, acc=0.95, loss=x) for x in (1, 2, 3)]

    figure = history(make_spec(), runs, round_starts=[2], round_labels=["round 2"])

    assert [shape.x0 for shape in figure.layout.shapes] == [2.5]
    assert [a.text for a in figure.layout.annotations] == ["round 2"]


def test_an_int_axis_is_labelled_with_whole_numbers() -> None:
    # 5..30 in round steps of 10, and the ends; 2..5 at every member.
    epochs = {"name": "epochs", "type": "int", "bounds": {"min": 5, "max": 30}}
    n = {"name": "n", "type": "int", "bounds": {"min": 2, "max": 5}}
    runs = [observe(epochs=e, n=k, acc=0.95, loss=k) for e, k in [(5, 2), (30, 5)]]

    figure = parallel_coordinates(make_spec(epochs, n), runs)

    epochs_axis, n_axis = figure.data[0].dimensions[:2]
    assert list(epochs_axis.tickvals) == [5, 10, 20, 30]
    assert list(epochs_axis.ticktext) == ["5", "10", "20", "30"]
    assert list(n_axis.tickvals) == [2, 3, 4, 5]
    assert list(n_axis.ticktext) == ["2", "3", "4", "5"]


def test_a_double_axis_gets_round_ticks_and_its_ends() -> None:
    # 0.13 to 0.92: a quarter of the span (0.1975) rounds up to a step of
    # 0.2.  0.92 is 0.12 from 0.8, over half a step, so it gets a tick;
    # 0.13 is 0.07 from 0.2, under half a step, so it does not.
    rate = {"name": "rate", "type": "double", "bounds": {"min": 0.13, "max": 0.92}}
    runs = [observe(rate=r, acc=0.95, loss=r) for r in (0.13, 0.92)]

    axis = parallel_coordinates(make_spec(rate), runs).data[0].dimensions[0]

    assert list(axis.tickvals) == [0.2, 0.4, 0.6, 0.8, 0.92]
    assert list(axis.ticktext) == ["0.2", "0.4", "0.6", "0.8", "0.92"]


def test_only_metric_axes_would_show_a_range_and_it_is_hidden() -> None:
    # plotly writes a range label only on an axis without tick values.
    figure = parallel_coordinates(make_spec(), RUNS)

    trace = figure.data[0]
    ranged = [d.label for d in trace.dimensions if d.tickvals is None]
    assert ranged == ["acc", "loss"]
    assert trace.rangefont.color == "rgba(0,0,0,0)"


def test_categories_reach_the_ticks_as_plain_text() -> None:
    # plotly writes parallel-coordinates ticks as text: escaping them would
    # show "&lt;b&gt;"; the axis title is markup and stays escaped.
    kind = {
        "name": "<i>kind</i>",
        "type": "categorical",
        "categorical_values": ["<b>hi</b>", "a&b"],
    }
    runs = [observe(**{"<i>kind</i>": v}, acc=0.95, loss=1) for v in ("a&b",)]

    axis = parallel_coordinates(make_spec(kind), runs).data[0].dimensions[0]

    assert list(axis.ticktext) == ["<b>hi</b>", "a&b"]
    assert axis.label == "&lt;i&gt;kind&lt;/i&gt;"


def test_the_best_box_and_thresholds_are_not_the_failed_colour() -> None:
    figure = metric_scatter(make_spec(), RUNS)

    box = next(trace for trace in figure.data if trace.name == "best")
    assert box.marker.color == MARK_COLOR
    assert [shape.line.color for shape in figure.layout.shapes] == [MARK_COLOR]
    used = {box.marker.color, *(s.line.color for s in figure.layout.shapes)}
    assert RUN_COLORS["failed"] not in used


def test_the_legend_says_what_the_best_runs_are() -> None:
    figure = metric_scatter(make_spec(), RUNS)
    names = [trace.name.replace("<br>", " ") for trace in figure.data]
    key = parallel_coordinates(make_spec(), RUNS).layout.annotations[0].text

    top = "best runs: the top 10% of the runs that met every threshold (at most 40)"
    assert top in names
    assert "orange: best runs, the top 10% of the runs that met every" in key

    two = make_spec(
        metrics=[
            {"name": "loss", "objective": "minimize"},
            {"name": "speed", "objective": "maximize"},
        ]
    )
    assert "the Pareto front of the runs" in best_runs_legend(two).replace("<br>", " ")


def test_a_history_of_failures_has_no_best_so_far() -> None:
    figure = history(make_spec(), [failed(1.0), failed(2.0)])

    assert "best so far" not in [trace.name for trace in figure.data]
