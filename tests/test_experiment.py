"""The experiment spec: every refusal names its field, and valid specs parse."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from optiloop.errors import SpecError
from optiloop.experiment import (
    MetricValue,
    Observation,
    best_observations,
    check_values,
    is_feasible,
    load_spec,
    parse_spec,
)

BASE: dict[str, Any] = {
    "name": "base",
    "parameters": [
        {"name": "lr", "type": "double", "bounds": {"min": 0.1, "max": 1.0}},
        {"name": "epochs", "type": "int", "bounds": {"min": 1, "max": 10}},
    ],
    "metrics": [
        {"name": "acc", "strategy": "constraint", "threshold": 0.9},
        {"name": "loss", "objective": "minimize"},
    ],
}


def spec_with(path: str, value: Any) -> dict[str, Any]:
    """BASE with one field replaced, addressed as "parameters.0.bounds"."""
    spec = copy.deepcopy(BASE)
    *parents, last = path.split(".")
    node: Any = spec
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    node[int(last) if last.isdigit() else last] = value
    return spec


REFUSALS = [
    pytest.param(
        spec_with("parameters.0.bounds", {"min": 1.0, "max": 0.1}),
        r"parameters\[0\]: bounds.min < bounds.max must hold for parameter 'lr'",
        id="min-above-max",
    ),
    pytest.param(
        spec_with("parameters.0.bounds", {"min": 0.5, "max": 0.5}),
        r"bounds.min < bounds.max must hold for parameter 'lr', got min=0.5",
        id="min-equals-max",
    ),
    pytest.param(
        spec_with(
            "parameters.0",
            {
                "name": "lr",
                "type": "double",
                "transformation": "log",
                "bounds": {"min": 0.0, "max": 1.0},
            },
        ),
        r"bounds.min > 0 must hold on a log scale for parameter 'lr', got min=0.0",
        id="log-nonpositive",
    ),
    pytest.param(
        spec_with(
            "parameters.0",
            {
                "name": "lr",
                "type": "double",
                "bounds": {"min": 0, "max": 1},
                "grid": [0.5, 2.0],
            },
        ),
        r"grid values must lie within bounds \[0.0, 1.0\] for parameter 'lr', "
        r"got \[2.0\]",
        id="grid-outside-bounds",
    ),
    pytest.param(
        spec_with(
            "parameters.0",
            {"name": "lr", "type": "double", "grid": [0.5, 0.25, 0.5]},
        ),
        r"grid values must be distinct for parameter 'lr', got \[0.5\]",
        id="grid-duplicated",
    ),
    pytest.param(
        spec_with("parameters.1.bounds", {"min": 1.5, "max": 10}),
        r"bounds.min of int parameter 'epochs' must be an integer, got 1.5",
        id="int-fractional-bounds",
    ),
    pytest.param(
        spec_with(
            "metrics",
            [{"name": "loss", "objective": "minimize"}],
        )
        | {
            "job": {
                "command": "train --lr {lr} --epochs {epochs}",
                "converge": {"metric": "acc", "target": 0.9},
            }
        },
        r"job.converge.metric names metric 'acc', which the experiment does not "
        r"define",
        id="threshold-on-unknown-metric",
    ),
    pytest.param(
        spec_with(
            "metrics",
            [{"name": "acc", "strategy": "constraint", "threshold": 0.9}],
        ),
        r"metrics must include at least one with strategy: optimize",
        id="no-optimized-metric",
    ),
    pytest.param(
        spec_with(
            "parameters.0",
            {"name": "opt", "type": "categorical", "categorical_values": []},
        ),
        r"categorical_values must list at least one value for parameter 'opt'",
        id="empty-categorical",
    ),
    pytest.param(
        spec_with("parameters.0.name", "p" * 101),
        r"parameters\[0\]\.name: name must be at most 100 characters, got 101",
        id="parameter-name-too-long",
    ),
    pytest.param(
        spec_with("metrics.1.name", "m" * 101),
        r"metrics\[1\]\.name: name must be at most 100 characters",
        id="metric-name-too-long",
    ),
    pytest.param(
        spec_with("metrics.0", {"name": "acc", "strategy": "constraint"}),
        r"constraint metric 'acc' needs a threshold",
        id="constraint-without-threshold",
    ),
    pytest.param(
        spec_with("parameters.1.name", "lr"),
        r"parameters names must be distinct, got \['lr'\]",
        id="repeated-parameter",
    ),
    pytest.param(
        spec_with("observation_budget", 0),
        r"observation_budget: Input should be greater than or equal to 1",
        id="budget-zero",
    ),
    pytest.param(
        spec_with("parameters.0.boundz", {"min": 0, "max": 1}),
        r"parameters\[0\]\.boundz: unknown field",
        id="unknown-field",
    ),
    pytest.param(
        spec_with("job", {"command": "train --lr {learning_rate}"}),
        r"job.command uses \{learning_rate\}, which is neither a parameter",
        id="unknown-placeholder",
    ),
    pytest.param(
        spec_with(
            "parameters.0",
            {
                "name": "wd",
                "type": "double",
                "grid_pow2": {"base": 1e-4, "min": 3e-5, "max": 4e-5},
            },
        ),
        r"the grid of parameter 'wd' is empty",
        id="empty-pow2-grid",
    ),
    pytest.param(
        spec_with("job", {"command": "train", "metrics": {"format": "csv"}}),
        r"job.metrics.format: format must be json, mllog or an import path "
        r"module:Class, got 'csv'",
        id="unknown-metrics-format",
    ),
    pytest.param(
        spec_with("job", {"command": "train", "metrics": {"file": "logs/{run}.log"}}),
        r"job.metrics.file uses \{run\}, which is neither a parameter nor "
        r"\{seed\}",
        id="unknown-metrics-file-placeholder",
    ),
    pytest.param(
        spec_with("job", {"command": "train", "evaluation": {"period": 0}}),
        r"job.evaluation.period: Input should be greater than or equal to 1 "
        r"\(got 0\)",
        id="evaluation-period-zero",
    ),
    pytest.param(
        spec_with("job", {"command": "train", "evaluation": {"offset": -1}}),
        r"job.evaluation.offset: Input should be greater than or equal to 0",
        id="evaluation-offset-negative",
    ),
    pytest.param(
        spec_with("job", {"command": "train", "prune": {"enabled": True}}),
        r"job.prune.enabled: true needs job.converge",
        id="prune-without-converge",
    ),
    pytest.param(
        spec_with(
            "job",
            {"command": "train", "prune": {"enabled": True, "margin": -0.1}},
        ),
        r"job.prune.margin: Input should be greater than or equal to 0",
        id="prune-negative-margin",
    ),
]


@pytest.mark.parametrize(("spec", "message"), REFUSALS)
def test_bad_spec_is_refused_with_the_field_named(
    spec: dict[str, Any], message: str
) -> None:
    with pytest.raises(SpecError, match=message):
        parse_spec(spec)


def test_pow2_grid_expands_to_the_mlperf_weight_decays() -> None:
    spec = spec_with(
        "parameters.0",
        {
            "name": "wd",
            "type": "double",
            "grid_pow2": {"base": 1.0e-4, "min": 1.0e-5, "max": 4.0e-4},
        },
    )
    parameter = parse_spec(spec).space()["wd"]

    # 1e-4 * 2**n for n = -3 .. 2: 1e-5 is below 1.25e-5, and 4e-4 is the max.
    expected = [1.25e-5, 2.5e-5, 5e-5, 1e-4, 2e-4, 4e-4]
    assert parameter.values() == pytest.approx(expected, rel=1e-12)  # type: ignore[union-attr]


def test_names_in_any_script_round_trip() -> None:
    names = ["学习率", "λ_decay", "épochs"]
    spec = copy.deepcopy(BASE)
    for parameter, name in zip(spec["parameters"], names, strict=False):
        parameter["name"] = name
    spec["metrics"][1]["name"] = "损失"
    parsed = parse_spec(spec)

    assert [p.name for p in parsed.parameters] == names[:2]
    assert parse_spec(parsed.to_dict()).to_dict() == parsed.to_dict()
    assert parsed.to_dict()["metrics"][1]["name"] == "损失"


def test_yaml_file_loads_and_bad_file_names_the_path(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(
        "parameters: [{name: x, type: int, bounds: {min: 0, max: 3}}]\n"
        "metrics: [{name: y, objective: minimize}]\n",
        encoding="utf-8",
    )
    assert load_spec(good).space()["x"].n_values == 4

    bad = tmp_path / "bad.yaml"
    bad.write_text("parameters: []\nmetrics: [{name: y}]\n", encoding="utf-8")
    with pytest.raises(SpecError, match=r"bad.yaml: parameters: List should have"):
        load_spec(bad)


def observation(acc: float, loss: float, **kwargs: Any) -> Observation:
    values = (MetricValue("acc", acc), MetricValue("loss", loss))
    return Observation(assignments={"lr": 0.5, "epochs": 3}, values=values, **kwargs)


def test_threshold_exactly_at_its_value_counts_as_met() -> None:
    spec = parse_spec(BASE)
    assert is_feasible(spec, observation(acc=0.9, loss=1.0))
    assert not is_feasible(spec, observation(acc=0.8999999, loss=1.0))


def test_minimized_threshold_direction() -> None:
    spec = parse_spec(
        spec_with(
            "metrics.0",
            {
                "name": "acc",
                "objective": "minimize",
                "strategy": "constraint",
                "threshold": 0.9,
            },
        )
    )
    assert is_feasible(spec, observation(acc=0.9, loss=1.0))
    assert is_feasible(spec, observation(acc=0.5, loss=1.0))
    assert not is_feasible(spec, observation(acc=0.95, loss=1.0))


@pytest.mark.parametrize(
    ("objective", "best_loss"), [("minimize", 1.0), ("maximize", 3.0)]
)
def test_best_follows_the_objective(objective: str, best_loss: float) -> None:
    spec = parse_spec(spec_with("metrics.1.objective", objective))
    observations = [
        observation(acc=0.95, loss=2.0, id=1),
        observation(acc=0.95, loss=1.0, id=2),
        observation(acc=0.95, loss=3.0, id=3),
        # Better on loss either way, but it misses the threshold or failed.
        observation(acc=0.5, loss=0.1, id=4),
        observation(acc=0.5, loss=9.0, id=5),
        Observation(assignments={"lr": 0.5, "epochs": 3}, failed=True, id=6),
    ]
    [best] = best_observations(spec, observations)
    assert best.value("loss") == best_loss


def test_unconverged_point_is_never_best() -> None:
    spec = parse_spec(BASE)
    converged = observation(acc=0.95, loss=5.0, id=1)
    unconverged = observation(acc=0.95, loss=1.0, id=2, metadata={"converged": False})
    assert best_observations(spec, [converged, unconverged]) == [converged]


def test_two_objectives_give_the_pareto_front() -> None:
    spec = parse_spec(spec_with("metrics.0", {"name": "acc", "objective": "maximize"}))
    points = [(0.9, 1.0), (0.95, 2.0), (0.85, 2.0), (0.9, 1.5)]
    observations = [observation(acc=a, loss=b, id=i) for i, (a, b) in enumerate(points)]
    front = best_observations(spec, observations)
    # (0.85, 2.0) and (0.9, 1.5) are dominated by (0.9, 1.0).
    assert sorted(o.id for o in front if o.id is not None) == [0, 1]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            [{"name": "acc", "value": float("nan")}, {"name": "loss", "value": 1}],
            r"values\[0\].value must be finite, got nan",
        ),
        (
            [{"name": "acc", "value": 0.9}, {"name": "loss", "value": float("inf")}],
            r"values\[1\].value must be finite, got inf",
        ),
        (
            [{"name": "acc", "value": 0.9}],
            r"values: a value is required for metric 'loss'",
        ),
        (
            [{"name": "acc", "value": 0.9}, {"name": "lost", "value": 1}],
            r"values\[1\].name: metric 'lost' is not defined",
        ),
        (
            [
                {"name": "acc", "value": 0.9, "value_stddev": -1},
                {"name": "loss", "value": 1},
            ],
            r"values\[0\].value_stddev must be >= 0",
        ),
        (
            [{"name": "acc", "value": "high"}, {"name": "loss", "value": 1}],
            r"values\[0\].value must be a number",
        ),
    ],
)
def test_bad_values_are_refused(values: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(SpecError, match=message):
        check_values(parse_spec(BASE), values, failed=False)


@pytest.mark.parametrize("values", [True, 3, "acc", {"name": "acc"}])
@pytest.mark.parametrize("failed", [True, False])
def test_values_that_are_not_a_list_are_refused(values: Any, failed: bool) -> None:
    with pytest.raises(SpecError, match="values must be a list of"):
        check_values(parse_spec(BASE), values, failed=failed)


def test_job_fields_for_mlperf_runs_parse() -> None:
    spec = parse_spec(
        spec_with(
            "job",
            {
                "command": "train --lr {lr} --seed {seed}",
                "metrics": {"format": "mllog", "file": "logs/{lr}-{seed}.log"},
                "evaluation": {"period": 4, "offset": 2},
                "converge": {
                    "metric": "acc",
                    "target": 0.9,
                    "as": "loss",
                    "stop": True,
                },
                "prune": {"enabled": True},
            },
        )
    )
    job = spec.job
    assert job is not None and job.evaluation is not None
    assert job.converge is not None and job.converge.stop
    assert job.pruning
    # Every 4 epochs from epoch 3: 3, 7, 11, ...
    assert [job.evaluation.on_grid(e) for e in (2, 3, 5, 7, 11)] == [
        False,
        True,
        False,
        True,
        True,
    ]
    assert job.evaluation.next_after(1) == 3
    assert job.evaluation.next_after(7) == 11
    assert job.evaluation.next_after(8) == 11


def test_a_job_reads_json_on_stdout_unless_told_otherwise() -> None:
    job = parse_spec(spec_with("job", {"command": "train"})).job
    assert job is not None
    assert (job.metrics.format, job.metrics.file) == ("json", None)
    assert job.evaluation is None and not job.pruning


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        pytest.param(
            spec_with(
                "parameters.0",
                {"name": "lr", "type": "double", "grid": [0.5, float("inf")]},
            ),
            r"parameters\[0\]\.grid\[1\]: Input should be a finite number",
            id="infinite-grid-value",
        ),
        pytest.param(
            spec_with(
                "parameters.0",
                {
                    "name": "wd",
                    "type": "double",
                    "grid_pow2": {"base": float("nan"), "min": 1e-5, "max": 4e-4},
                },
            ),
            r"parameters\[0\]\.grid_pow2\.base: Input should be a finite number",
            id="nan-pow2-base",
        ),
        pytest.param(
            spec_with(
                "metrics.1", {"name": "mem", "strategy": "store", "threshold": 10}
            ),
            r"store metric 'mem' is only recorded, so it takes no threshold",
            id="threshold-on-store-metric",
        ),
        pytest.param(
            spec_with("metadata", {"note": float("nan")}),
            r"metadata: metadata must be plain JSON with finite numbers",
            id="nan-in-metadata",
        ),
        pytest.param(
            spec_with(
                "parameters.0",
                {
                    "name": "opt",
                    "type": "categorical",
                    "categorical_values": ["sgd", ""],
                },
            ),
            r"parameters\[0\]: name must not be empty",
            id="empty-category",
        ),
    ],
)
def test_non_finite_and_meaningless_values_are_refused(
    spec: dict[str, Any], message: str
) -> None:
    with pytest.raises(SpecError, match=message):
        parse_spec(spec)


@pytest.mark.parametrize(
    ("command", "message"),
    [
        ("train {}", r"job.command uses \{\}, which is neither a parameter"),
        ("train {lr:.3q}", r"job.command formats \{lr\} with '.3q'"),
        ("train {lr!r}", r"conversions are not supported"),
        ("train } {seed}", r"not a valid template .*write \{\{ and \}\}"),
        ('echo {"epoch": 1}', r"write \{\{ and \}\} for a literal brace"),
    ],
)
def test_job_templates_that_cannot_fill_are_refused(command: str, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        parse_spec(spec_with("job", {"command": command}))


def test_a_parameter_named_seed_is_refused_with_a_job() -> None:
    spec = spec_with("parameters.1.name", "seed") | {"job": {"command": "t {seed}"}}
    with pytest.raises(SpecError, match=r"the name 'seed' is the job's \{seed\}"):
        parse_spec(spec)


def test_converge_direction_follows_the_metric() -> None:
    spec = spec_with(
        "metrics.0",
        {
            "name": "acc",
            "objective": "minimize",
            "strategy": "constraint",
            "threshold": 0.1,
        },
    )
    job: dict[str, Any] = {
        "command": "t",
        "converge": {"metric": "acc", "target": 0.1, "as": "loss"},
    }
    parsed = parse_spec(spec | {"job": job})
    assert parsed.job is not None and parsed.job.converge is not None
    assert parsed.job.converge.objective == "minimize"

    contrary = {**job, "converge": {**job["converge"], "objective": "maximize"}}
    with pytest.raises(SpecError, match=r"job.converge.objective is 'maximize'"):
        parse_spec(spec | {"job": contrary})


def test_converge_epoch_cannot_replace_its_own_metric() -> None:
    job = {"command": "t", "converge": {"metric": "acc", "target": 0.9, "as": "acc"}}
    with pytest.raises(SpecError, match=r"job.converge.as must differ"):
        parse_spec(BASE | {"job": job})


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        pytest.param(
            spec_with("parameters.0.bounds", {"min": -1e308, "max": 1e308}),
            r"bounds of parameter 'lr' are too far apart for a float",
            id="bounds-overflow",
        ),
        pytest.param(
            spec_with("job", {"command": "   "}),
            r"job.command: should not be blank \(got '   '\)",
            id="blank-command",
        ),
        pytest.param(
            spec_with("seeds_per_point", 10**20),
            r"seeds_per_point: Input should be less than or equal to 1000",
            id="absurd-seeds",
        ),
        pytest.param(
            spec_with(
                "parameters.1",
                {
                    "name": "n",
                    "type": "int",
                    "bounds": {"min": 10**6, "max": 2 * 10**6},
                },
            )
            | {"job": {"command": "echo {n:c}"}},
            r"job.command formats \{n\} with 'c'",
            id="format-overflow",
        ),
    ],
)
def test_specs_that_would_break_at_run_time_are_refused(
    spec: dict[str, Any], message: str
) -> None:
    with pytest.raises(SpecError, match=message):
        parse_spec(spec)


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("observation_budget", "observation_budget"),
        ("parallel_bandwidth", "parallel_bandwidth"),
        ("seeds_per_point", "seeds_per_point"),
        ("parameters.1.bounds.min", "parameters[1].bounds.min"),
        ("parameters.0.bounds.max", "parameters[0].bounds.max"),
        ("metrics.0.threshold", "metrics[0].threshold"),
    ],
)
def test_true_and_false_are_not_numbers(path: str, field: str) -> None:
    with pytest.raises(SpecError) as refused:
        parse_spec(spec_with(path, True))

    assert f"{field}: must be a number, got true" in str(refused.value)


def test_int_bounds_beyond_two_to_the_53_are_refused() -> None:
    with pytest.raises(SpecError, match=r"bounds.max of int parameter 'epochs' "):
        parse_spec(spec_with("parameters.1.bounds.max", 1e29))
    with pytest.raises(SpecError, match=r"bounds.min .* within \+-2\*\*53"):
        parse_spec(spec_with("parameters.1.bounds.min", -(2**53) - 2))

    widest = parse_spec(spec_with("parameters.1.bounds", {"min": 0, "max": 2**53}))
    assert widest.parameters[1].to_parameter().high == 2**53  # type: ignore[union-attr]


def test_repeats_are_found_and_listed_briefly_in_long_lists() -> None:
    values = [f"v{i}" for i in range(20_000)] + ["v7", "v3", "v19999"] + ["v8"] * 3
    categorical = {"name": "c", "type": "categorical", "categorical_values": values}

    with pytest.raises(SpecError) as refused:
        parse_spec(spec_with("parameters.1", categorical))

    message = str(refused.value)
    # Sorted as strings: v19999, v3, v7, v8; all four listed, no more.
    assert "got ['v19999', 'v3', 'v7', 'v8'] more than once" in message

    many = [{"name": f"m{i}", "objective": "minimize"} for i in range(5_000)]
    with pytest.raises(SpecError) as repeated:
        parse_spec(spec_with("metrics", many + many[:8]))
    message = str(repeated.value)
    assert "got ['m0', 'm1', 'm2', 'm3', 'm4', ... 3 more] more than once" in message

    with pytest.raises(SpecError) as too_many:
        parse_spec(spec_with("metrics", many))
    message = str(too_many.value)
    assert (
        "at most two metrics, got 5000: ['m0', 'm1', 'm2', 'm3', 'm4', ... " in message
    )
    assert len(message) < 300
