"""The experiment spec and the plain records that flow through optiloop.

An experiment spec has the shape of SigOpt's v1 ``experiments`` object, so the
same dict works in a YAML file, in Python (``conn.experiments().create(**spec)``)
and over REST:

.. code-block:: yaml

    name: digits-lars
    type: offline            # offline (Bayesian) | random | sobol | grid
    parameters:
      - {name: train_epochs, type: int, bounds: {min: 6, max: 20}}
      - {name: base_lr, type: double, bounds: {min: 0.5, max: 20},
         transformation: log}
      - {name: weight_decay, type: double,
         grid_pow2: {base: 1.0e-4, min: 1.0e-5, max: 4.0e-4}}
      - {name: block, type: categorical, categorical_values: [basic, wide]}
    metrics:
      - {name: eval_accuracy, objective: maximize, strategy: constraint,
         threshold: 0.97}
      - {name: converge_epoch, objective: minimize}
    observation_budget: 30
    parallel_bandwidth: 2
    seeds_per_point: 3       # optiloop's own field
    job:                     # optiloop's own field: what the runner launches
      command: python train.py --epochs {train_epochs} --seed {seed}
      metrics: {format: json}            # json | mllog | module:Class
      evaluation: {period: 1, offset: 0}
      converge: {metric: eval_accuracy, target: 0.97, as: converge_epoch,
                 stop: true}
      prune: {enabled: false}

Every rule is checked here, once, by pydantic; ``parse_spec`` turns a
failure into one ``SpecError`` whose lines each name the field, the rule, the
value and the fix.  A spec that fails creates nothing.

``grid_pow2`` is optiloop's convenience for MLPerf's rule "weight decay =
1e-4 x 2^N": it expands to the grid ``base * 2**n`` for every integer ``n``
with the value inside ``[min, max]``, both ends included (the example above
gives 1.25e-5, 2.5e-5, 5e-5, 1e-4, 2e-4 and 4e-4).
"""

from __future__ import annotations

import json
import math
import re
import string
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from optiloop.errors import SpecError
from optiloop.space import (
    Assignments,
    CategoricalParameter,
    DoubleParameter,
    GridParameter,
    IntParameter,
    Parameter,
    Space,
)

MAX_NAME_LENGTH = 100

# Experiment types: SigOpt's ``offline`` is its Bayesian optimizer; optiloop
# adds ``sobol``.
Strategy = Literal["offline", "random", "sobol", "grid"]

# Relative slack when deciding whether base * 2**n lies inside [min, max], so
# that a typed 4.0e-4 keeps 1e-4 * 2**2.
_POW2_RTOL = 1e-9

# ``package.module:Name``, the way a user names a reader of their own format.
_IMPORT_PATH = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")


def _refuse_bool(value: object) -> object:
    # pydantic reads true as 1 in a number field; a spec never means that.
    if isinstance(value, bool):
        raise ValueError(
            f"must be a number, got {str(value).lower()}; true and false are "
            "not numbers"
        )
    return value


Int = Annotated[int, BeforeValidator(_refuse_bool)]
Number = Annotated[float, BeforeValidator(_refuse_bool)]

# Item types of the lists checked for repeats.
_Item = TypeVar("_Item", str, float)

# Int bounds are read as floats; beyond 2**53 a float skips integers, so a
# bound of 1e29 would be stored as some other whole number.
MAX_EXACT_INT = 2**53


class _Strict(BaseModel):
    """Refuses unknown fields, so a typo is an error instead of a silent no-op."""

    # NaN and infinity are refused in every float field: no bound, grid
    # value, target or timeout can be infinite.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Bounds(_Strict):
    min: Number
    max: Number


class Pow2Grid(_Strict):
    """The grid ``base * 2**n`` for the integers ``n`` that land in [min, max]."""

    base: Number = Field(gt=0)
    min: Number = Field(gt=0)
    max: Number = Field(gt=0)

    def expand(self) -> list[float]:
        lowest = math.ceil(math.log2(self.min / self.base) - _POW2_RTOL)
        highest = math.floor(math.log2(self.max / self.base) + _POW2_RTOL)
        return [self.base * 2.0**n for n in range(lowest, highest + 1)]


class CategoricalValue(_Strict):
    name: str


class ParameterSpec(_Strict):
    name: str
    type: Literal["int", "double", "categorical"]
    bounds: Bounds | None = None
    transformation: Literal["none", "log"] | None = None
    grid: list[Number] | None = None
    grid_pow2: Pow2Grid | None = None
    categorical_values: list[str | CategoricalValue] | None = None

    @field_validator("name")
    @classmethod
    def _name_length(cls, name: str) -> str:
        return _check_name(name)

    @model_validator(mode="after")
    def _rules(self) -> ParameterSpec:
        if self.type == "categorical":
            self._check_categorical()
        else:
            self._check_numeric()
        return self

    @property
    def is_log(self) -> bool:
        return self.transformation == "log"

    @property
    def categories(self) -> list[str]:
        values = self.categorical_values or []
        return [v if isinstance(v, str) else v.name for v in values]

    def grid_values(self) -> list[float] | None:
        """The explicit grid, from ``grid`` or expanded from ``grid_pow2``."""
        if self.grid_pow2 is not None:
            return self.grid_pow2.expand()
        return None if self.grid is None else list(self.grid)

    def effective_bounds(self) -> Bounds:
        """The declared bounds, or the ends of the grid when none are given."""
        if self.bounds is not None:
            return self.bounds
        if self.grid_pow2 is not None:
            return Bounds(min=self.grid_pow2.min, max=self.grid_pow2.max)
        grid = self.grid_values() or [0.0]
        return Bounds(min=min(grid), max=max(grid))

    def to_parameter(self) -> Parameter:
        """The numeric parameter of ``optiloop.space`` this spec describes."""
        if self.type == "categorical":
            return CategoricalParameter(self.name, tuple(self.categories))
        grid = self.grid_values()
        if grid is not None:
            members = sorted(int(v) for v in grid) if self.type == "int" else grid
            return GridParameter(self.name, tuple(sorted(members)), self.is_log)
        bounds = self.effective_bounds()
        if self.type == "int":
            return IntParameter(self.name, int(bounds.min), int(bounds.max))
        return DoubleParameter(self.name, bounds.min, bounds.max, self.is_log)

    def _check_categorical(self) -> None:
        where = f"parameter {self.name!r}"
        for name in ("bounds", "grid", "grid_pow2", "transformation"):
            if getattr(self, name) is not None:
                raise ValueError(
                    f"{name} is not allowed on categorical {where}; "
                    "remove it or make the parameter int or double"
                )
        categories = self.categories
        for category in categories:
            _check_name(category)
        if not categories:
            raise ValueError(
                f"categorical_values must list at least one value for {where}, "
                "got none; add the categories"
            )
        repeated = _repeated(categories)
        if repeated:
            raise ValueError(
                f"categorical_values must be distinct for {where}, got "
                f"{_first_few(repeated)} more than once; list each value once"
            )

    def _check_numeric(self) -> None:
        where = f"parameter {self.name!r}"
        if self.categorical_values is not None:
            raise ValueError(
                f"categorical_values is only for categorical parameters, "
                f"{where} is {self.type}; remove it or set type: categorical"
            )
        if self.grid is not None and self.grid_pow2 is not None:
            raise ValueError(
                f"grid and grid_pow2 exclude each other on {where}; keep one"
            )
        if self.bounds is None and self.grid is None and self.grid_pow2 is None:
            raise ValueError(
                f"bounds are required for {self.type} {where}; "
                "add bounds: {min: ..., max: ...} or a grid"
            )
        if self.grid_pow2 is not None and self.type != "double":
            raise ValueError(
                f"grid_pow2 needs type double, {where} is {self.type}; set type: double"
            )
        if self.bounds is not None:
            self._check_bounds(self.bounds, where)
        if self.is_log:
            self._check_log(where)
        grid = self.grid_values()
        if grid is not None:
            self._check_grid(grid, where)

    def _check_bounds(self, bounds: Bounds, where: str) -> None:
        if not math.isfinite(bounds.max - bounds.min):
            raise ValueError(
                f"bounds of {where} are too far apart for a float, got "
                f"min={bounds.min}, max={bounds.max}; narrow them or use a log "
                "scale"
            )
        if not bounds.min < bounds.max:
            raise ValueError(
                f"bounds.min < bounds.max must hold for {where}, got "
                f"min={bounds.min}, max={bounds.max}; give a min below the max"
            )
        if self.type == "int":
            for end in ("min", "max"):
                value = getattr(bounds, end)
                if abs(value) > MAX_EXACT_INT:
                    raise ValueError(
                        f"bounds.{end} of int {where} must lie within "
                        f"+-2**53 ({MAX_EXACT_INT}), got {value}; beyond it "
                        "not every integer is exact, so narrow the bounds or "
                        "use type: double"
                    )
                if value != int(value):
                    raise ValueError(
                        f"bounds.{end} of int {where} must be an integer, got "
                        f"{value}; use whole numbers or type: double"
                    )

    def _check_log(self, where: str) -> None:
        if self.type != "double":
            raise ValueError(
                f"transformation: log needs type double, {where} is "
                f"{self.type}; set type: double or drop the transformation"
            )
        low = self.effective_bounds().min
        if low <= 0:
            raise ValueError(
                f"bounds.min > 0 must hold on a log scale for {where}, got "
                f"min={low}; raise the min above 0 or drop transformation: log"
            )

    def _check_grid(self, grid: list[float], where: str) -> None:
        if not grid:
            raise ValueError(
                f"the grid of {where} is empty; list at least one value "
                "(or widen grid_pow2's min and max)"
            )
        repeated = _repeated(grid)
        if repeated:
            raise ValueError(
                f"grid values must be distinct for {where}, got "
                f"{_first_few(repeated)} more than once; list each value once"
            )
        if self.type == "int":
            fractional = [v for v in grid if v != int(v)]
            if fractional:
                raise ValueError(
                    f"grid values of int {where} must be integers, got "
                    f"{fractional}; use whole numbers or type: double"
                )
        if self.bounds is not None:
            low, high = self.bounds.min, self.bounds.max
            outside = [v for v in grid if not low <= v <= high]
            if outside:
                raise ValueError(
                    f"grid values must lie within bounds [{low}, {high}] for "
                    f"{where}, got {outside}; remove them or widen the bounds"
                )


class MetricSpec(_Strict):
    name: str
    objective: Literal["minimize", "maximize"] = "maximize"
    strategy: Literal["optimize", "constraint", "store"] = "optimize"
    threshold: Number | None = None

    @field_validator("name")
    @classmethod
    def _name_length(cls, name: str) -> str:
        return _check_name(name)

    @model_validator(mode="after")
    def _constraint_has_threshold(self) -> MetricSpec:
        if self.strategy == "store" and self.threshold is not None:
            raise ValueError(
                f"store metric {self.name!r} is only recorded, so it takes no "
                "threshold; remove the threshold or set strategy: constraint"
            )
        if self.strategy == "constraint" and self.threshold is None:
            raise ValueError(
                f"constraint metric {self.name!r} needs a threshold; "
                "add threshold: <value> or set strategy: optimize"
            )
        return self

    def to_minimize(self, value: float) -> float:
        """The value on a scale where smaller is always better."""
        return value if self.objective == "minimize" else -value

    def threshold_met(self, value: float) -> bool:
        """Whether ``value`` meets the threshold; a value exactly at it does."""
        if self.threshold is None:
            return True
        return _meets(value, self.threshold, self.objective)


class ConvergeSpec(_Strict):
    """How the runner derives a converge epoch from per-epoch metrics.

    With ``stop: true`` the runner ends a run at the first evaluation that
    reaches the target, as an MLPerf run ends itself, so no compute is spent
    past the point where the converge epoch is known.
    """

    model_config = ConfigDict(
        extra="forbid", frozen=True, allow_inf_nan=False, populate_by_name=True
    )

    metric: str
    target: Number
    objective: Literal["minimize", "maximize"] = "maximize"
    as_: str = Field(default="converge_epoch", alias="as")
    stop: bool = False

    def reached(self, value: float) -> bool:
        """Whether ``value`` meets the target; a value exactly at it does."""
        return _meets(value, self.target, self.objective)


class MetricsSpec(_Strict):
    """Where a job's per-epoch metrics come from and how they are written.

    ``format`` is ``json`` (one JSON object per evaluation), ``mllog``
    (MLPerf's ``:::MLLOG {...}`` lines) or ``module:Class``, the import path
    of a reader of the user's own format.  ``file`` is a path template (same
    placeholders as the command) of a log file the job writes; without it the
    metrics are read from the job's stdout.
    """

    format: str = "json"
    file: str | None = None

    @field_validator("format")
    @classmethod
    def _known_format(cls, value: str) -> str:
        if value in ("json", "mllog") or _IMPORT_PATH.fullmatch(value):
            return value
        raise ValueError(
            f"format must be json, mllog or an import path module:Class, got "
            f"{value!r}; pick one of those"
        )

    def placeholders(self) -> list[str]:
        return _placeholders(self.file or "")


class EvaluationSpec(_Strict):
    """When the job evaluates: at epoch ``offset + 1``, then every ``period``.

    MLPerf ResNet-50 evaluates every 4 epochs with an offset of 0 to 3, so
    ``{period: 4, offset: 2}`` means evaluations at epochs 3, 7, 11, ...
    """

    period: Int = Field(default=1, ge=1)
    offset: Int = Field(default=0, ge=0)

    @property
    def first(self) -> int:
        return self.offset + 1

    def on_grid(self, epoch: float) -> bool:
        return epoch >= self.first and (epoch - self.first) % self.period == 0

    def next_after(self, epoch: float) -> float:
        """The first evaluation epoch strictly after ``epoch``."""
        if epoch < self.first:
            return float(self.first)
        steps = math.floor((epoch - self.first) / self.period) + 1
        return float(self.first + steps * self.period)


class PruneSpec(_Strict):
    """Stop runs that fall behind every run that reached the target.

    At each evaluation, a run is stopped when its converge metric is worse
    than the worst value, at that same epoch, of every earlier run that
    reached the target, by more than ``margin``; the rule applies only once
    ``min_reference_runs`` such runs have a value at that epoch.  Off unless
    ``enabled: true``.

    A stopped run never becomes a reference, so the bar is set by the runs
    that survived and a small margin feeds on itself.  Replaying recorded
    curves in random orders (``benchmarks/prune.py``), the defaults never
    stopped a run that would have converged on MLPerf-shaped curves:
    RN50-surrogate runs of random points of ``examples/mlperf-rn50.yaml``
    (5.0% of the epochs saved, all on diverged runs) and recorded MLPerf
    ResNet-50 runs (nothing stopped).  They are not safe where good recipes
    differ early: on the digits workload, whose first epochs swing with the
    warmup and the rate, they stopped 39% of the runs that would have
    converged.  Comparing at the same epoch also puts a run with a longer
    schedule behind shorter ones, though it may still converge.
    """

    enabled: bool = False
    margin: Number = Field(default=0.1, ge=0)
    min_reference_runs: Int = Field(default=5, ge=1)


class ResourcesSpec(_Strict):
    """What one run asks a Ray cluster for: CPUs, GPUs and custom resources.

    ``custom`` names resources the cluster's nodes advertise, such as
    ``{gaudi: 8}``; a run is placed only on a node that has all of them free.
    """

    num_cpus: Number = Field(default=1, ge=0)
    num_gpus: Number = Field(default=0, ge=0)
    custom: dict[str, Number] = Field(default_factory=dict)

    @field_validator("custom")
    @classmethod
    def _amounts(cls, custom: dict[str, float]) -> dict[str, float]:
        for name, amount in custom.items():
            if not name.strip() or amount < 0:
                raise ValueError(
                    f"custom resources need a name and an amount >= 0, got "
                    f"{name!r}: {amount}; write e.g. {{gaudi: 8}}"
                )
            if name in ("CPU", "GPU"):
                raise ValueError(
                    f"custom may not name {name}, got {name}: {amount}; ask "
                    f"for it with num_{name.lower()}s instead"
                )
        return custom


class ExecutorSpec(_Strict):
    """Where the runs go: local processes (the default) or a Ray cluster.

    ``address`` reaches a running Ray cluster (``auto``, or ``host:port`` of
    its head); left out, ``kind: ray`` starts a cluster on this machine.
    ``cluster``, ``nodes`` and ``devices`` describe what one run holds, for
    compute accounting (device-seconds are wall seconds x ``devices``).
    ``max_retries`` counts the extra attempts a run gets when the cluster
    loses it (a worker or node died); a job that fails on its own is never
    retried, and local processes have no cluster to lose them.
    """

    kind: Literal["local", "ray"] = "local"
    address: str | None = None
    cluster: str = Field(default="local", pattern=r"\S")
    nodes: Int = Field(default=1, ge=1)
    devices: Int = Field(default=1, ge=1)
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    max_retries: Int = Field(default=1, ge=0, le=100)


class JobSpec(_Strict):
    """The training job the runner launches for every seed of every point.

    ``command`` is a template: ``{name}`` is replaced by a parameter's value
    and ``{seed}`` by the run's seed.  ``evaluation`` states the evaluation
    grid; left out, every epoch is an evaluation and a run that never
    converges is reported one epoch past its last.
    """

    command: str = Field(pattern=r"\S")
    converge: ConvergeSpec | None = None
    metrics: MetricsSpec = Field(default_factory=MetricsSpec)
    evaluation: EvaluationSpec | None = None
    prune: PruneSpec | None = None
    timeout_seconds: Number | None = Field(default=None, gt=0)
    seed_base: Int = 0
    executor: ExecutorSpec | None = None

    def placeholders(self) -> list[str]:
        return _placeholders(self.command)

    @property
    def pruning(self) -> bool:
        return self.prune is not None and self.prune.enabled


class ExperimentSpec(_Strict):
    name: str = "experiment"
    type: Strategy = "offline"
    parameters: list[ParameterSpec] = Field(min_length=1)
    metrics: list[MetricSpec] = Field(min_length=1)
    observation_budget: Int | None = Field(default=None, ge=1)
    parallel_bandwidth: Int = Field(default=1, ge=1)
    seeds_per_point: Int = Field(default=1, ge=1, le=1000)
    metadata: dict[str, Any] | None = None

    @field_validator("metadata")
    @classmethod
    def _plain_json(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as error:
            raise ValueError(
                f"metadata must be plain JSON with finite numbers ({error}); "
                "store strings, numbers, lists and mappings only"
            ) from None
        return value

    job: JobSpec | None = None

    @field_validator("name")
    @classmethod
    def _name_length(cls, name: str) -> str:
        return _check_name(name)

    @model_validator(mode="before")
    @classmethod
    def _converge_direction_from_metric(cls, data: Any) -> Any:
        """Reach the converge target in the metric's own direction.

        A minimized metric (a loss) reaches its target by going down, so
        ``job.converge.objective`` defaults to the metric's objective.
        """
        if not isinstance(data, Mapping):
            return data
        job = data.get("job")
        converge = job.get("converge") if isinstance(job, Mapping) else None
        if not isinstance(converge, Mapping) or "objective" in converge:
            return data
        for metric in data.get("metrics") or []:
            if isinstance(metric, Mapping) and metric.get("name") == converge.get(
                "metric"
            ):
                objective = metric.get("objective", "maximize")
                converge = {**converge, "objective": objective}
                return {**data, "job": {**job, "converge": converge}}  # type: ignore[dict-item]
        return data

    @model_validator(mode="after")
    def _rules(self) -> ExperimentSpec:
        _refuse_repeats("parameters", [p.name for p in self.parameters])
        _refuse_repeats("metrics", [m.name for m in self.metrics])
        optimized = [m.name for m in self.metrics if m.strategy == "optimize"]
        if not optimized:
            raise ValueError(
                "metrics must include at least one with strategy: optimize, got "
                f"{_first_few([m.name for m in self.metrics])} all constraint "
                "or store; mark the metric to optimize"
            )
        if len(optimized) > 2:
            raise ValueError(
                f"metrics may optimize at most two metrics, got "
                f"{len(optimized)}: {_first_few(optimized)}; make the others "
                "constraints or stored metrics"
            )
        if self.type == "grid":
            self.space().check_grid_size()
        if self.job is not None:
            self._check_job(self.job)
        return self

    def _check_job(self, job: JobSpec) -> None:
        if "seed" in {p.name for p in self.parameters}:
            raise ValueError(
                "parameters: the name 'seed' is the job's {seed}; rename the parameter"
            )
        # Every field must fill from any point; a middle point stands in.
        samples: dict[str, object] = dict(
            self.space().from_unit([0.5] * len(self.parameters))
        )
        samples["seed"] = job.seed_base
        _check_template("job.command", job.command, samples)
        if job.metrics.file is not None:
            _check_template("job.metrics.file", job.metrics.file, samples)
        if job.pruning and job.converge is None:
            raise ValueError(
                "job.prune.enabled: true needs job.converge, since runs are "
                "compared on the converge metric; add job.converge or set "
                "enabled: false"
            )
        metric_names = [m.name for m in self.metrics]
        if job.converge is not None:
            for where, name in (
                ("job.converge.metric", job.converge.metric),
                ("job.converge.as", job.converge.as_),
            ):
                if name not in metric_names:
                    raise ValueError(
                        f"{where} names metric {name!r}, which the experiment "
                        f"does not define; metrics are {_first_few(metric_names)}; "
                        "add it "
                        "to metrics or fix the name"
                    )
            converge = job.converge
            if converge.as_ == converge.metric:
                raise ValueError(
                    f"job.converge.as must differ from job.converge.metric, both "
                    f"are {converge.metric!r}; name the converge epoch metric "
                    "apart, e.g. converge_epoch"
                )
            objective = self.metric(converge.metric).objective
            if converge.objective != objective:
                raise ValueError(
                    f"job.converge.objective is {converge.objective!r} but metric "
                    f"{converge.metric!r} is to {objective}; drop "
                    "job.converge.objective, it follows the metric"
                )

    @property
    def strategy(self) -> Strategy:
        return self.type

    def space(self) -> Space:
        return Space([p.to_parameter() for p in self.parameters])

    def metric(self, name: str) -> MetricSpec:
        for metric in self.metrics:
            if metric.name == name:
                return metric
        raise KeyError(name)

    @property
    def optimized_metrics(self) -> list[MetricSpec]:
        return [m for m in self.metrics if m.strategy == "optimize"]

    @property
    def reported_metrics(self) -> list[MetricSpec]:
        """Metrics every successful observation must report."""
        return [m for m in self.metrics if m.strategy != "store"]

    def to_dict(self) -> dict[str, Any]:
        """The spec as plain JSON-ready data, in SigOpt's field names."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


@dataclass(frozen=True)
class MetricValue:
    """One metric of one observation: the mean over seeds and its spread."""

    name: str
    value: float
    value_stddev: float | None = None


@dataclass(frozen=True)
class Suggestion:
    """A point the optimizer asked to evaluate; ``open`` until observed."""

    id: int
    experiment_id: int
    assignments: Assignments
    state: Literal["open", "closed"] = "open"
    created: datetime | None = None


@dataclass(frozen=True)
class Observation:
    """What was measured at a point; ``failed`` observations carry no values."""

    assignments: Assignments
    values: tuple[MetricValue, ...] = ()
    failed: bool = False
    id: int | None = None
    experiment_id: int | None = None
    suggestion_id: int | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    created: datetime | None = None

    def value(self, name: str) -> float | None:
        for metric_value in self.values:
            if metric_value.name == name:
                return metric_value.value
        return None

    def stddev(self, name: str) -> float | None:
        for metric_value in self.values:
            if metric_value.name == name:
                return metric_value.value_stddev
        return None


def parse_spec(data: Mapping[str, Any]) -> ExperimentSpec:
    """Validate a spec dict; every problem is reported in one SpecError."""
    try:
        return ExperimentSpec.model_validate(dict(data))
    except ValidationError as error:
        raise SpecError(describe_errors(error)) from None


def load_spec(path: str | Path) -> ExperimentSpec:
    """Read a YAML or JSON experiment file and validate it."""
    data = read_spec_file(path)
    try:
        return parse_spec(data)
    except SpecError as error:
        raise SpecError(f"{path}: {error}") from None


def read_spec_file(path: str | Path) -> dict[str, Any]:
    """The mapping of fields a YAML or JSON file holds, unvalidated; a
    SpecError starting with the path when the file cannot give one."""
    import yaml  # YAML is a superset of JSON, so one reader serves both.

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SpecError(f"{path}: no such file; check the path") from None
    except IsADirectoryError:
        raise SpecError(f"{path}: is a folder; pass the file") from None
    except UnicodeDecodeError as error:
        raise SpecError(
            f"{path}: not UTF-8 text ({error.reason} at byte {error.start}); "
            "save the file as UTF-8"
        ) from None
    except yaml.YAMLError as error:
        raise SpecError(f"{path}: not valid YAML or JSON: {error}") from None
    if not isinstance(data, dict):
        raise SpecError(
            f"{path}: the file must hold a mapping of fields (name, "
            f"parameters, metrics, ...), got {type(data).__name__}"
        )
    return data


def check_values(
    spec: ExperimentSpec,
    values: Sequence[Mapping[str, Any]] | None,
    failed: bool,
) -> tuple[MetricValue, ...]:
    """Validate an observation's ``values`` against the spec's metrics.

    A failed observation carries no values.  Otherwise each metric that is
    optimized or constrained needs one finite value; a stddev, when given,
    is finite and not negative.
    """
    if values is not None and (
        isinstance(values, str) or not isinstance(values, Sequence)
    ):
        raise SpecError(
            f"values must be a list of {{name, value}} objects, got "
            f"{type(values).__name__}; send a list, or leave values out"
        )
    if failed:
        if values:
            raise SpecError(
                "values: a failed observation carries no values, got "
                f"{len(values)}; drop values or set failed: false"
            )
        return ()
    known = {m.name for m in spec.metrics}
    checked: dict[str, MetricValue] = {}
    for index, item in enumerate(values or []):
        checked_value = _check_value(index, item, known)
        if checked_value.name in checked:
            raise SpecError(
                f"values[{index}].name: metric {checked_value.name!r} is "
                "reported twice; report each metric once"
            )
        checked[checked_value.name] = checked_value
    missing = [m.name for m in spec.reported_metrics if m.name not in checked]
    if missing:
        raise SpecError(
            f"values: a value is required for metric {missing[0]!r}, got none; "
            "report every optimized and constraint metric, or failed: true"
        )
    return tuple(checked.values())


def is_feasible(spec: ExperimentSpec, observation: Observation) -> bool:
    """Whether an observation succeeded and meets every metric threshold.

    A point at which some seed never reached the converge target is marked
    ``metadata["converged"] = False`` by the runner and is never feasible.
    """
    if observation.failed or observation.metadata.get("converged") is False:
        return False
    for metric in spec.metrics:
        if metric.threshold is None:
            continue
        value = observation.value(metric.name)
        if value is None or not metric.threshold_met(value):
            return False
    return True


def best_observations(
    spec: ExperimentSpec, observations: Sequence[Observation]
) -> list[Observation]:
    """The best feasible observations: one, or the Pareto front for two metrics.

    Ties keep the earliest observation, so the answer does not change when a
    later run merely equals the best.
    """
    feasible = [o for o in observations if is_feasible(spec, o)]
    optimized = spec.optimized_metrics
    scored = [
        (o, [m.to_minimize(o.value(m.name) or 0.0) for m in optimized])
        for o in feasible
    ]
    if not scored:
        return []
    if len(optimized) == 1:
        return [min(scored, key=lambda pair: pair[1][0])[0]]
    front = [
        o
        for o, score in scored
        if not any(_dominates(other, score) for _, other in scored)
    ]
    # Keep one observation per distinct score on the front.
    unique: dict[tuple[float, ...], Observation] = {}
    for o in front:
        key = tuple(m.to_minimize(o.value(m.name) or 0.0) for m in optimized)
        unique.setdefault(key, o)
    return list(unique.values())


def _meets(value: float, bound: float, objective: str) -> bool:
    """Whether ``value`` is at ``bound`` or on its better side."""
    return value <= bound if objective == "minimize" else value >= bound


def _dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """Whether score ``a`` is no worse than ``b`` everywhere and better once."""
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def _check_value(index: int, item: Mapping[str, Any], known: set[str]) -> MetricValue:
    where = f"values[{index}]"
    if not isinstance(item, Mapping):
        raise SpecError(
            f"{where}: each value must be an object {{name, value, "
            f"value_stddev}}, got {item!r}"
        )
    extra = sorted(set(item) - {"name", "value", "value_stddev"})
    if extra:
        raise SpecError(
            f"{where}.{extra[0]}: unknown field; a value has only name, "
            "value and value_stddev"
        )
    name = item.get("name")
    if name not in known:
        raise SpecError(
            f"{where}.name: metric {name!r} is not defined by the experiment; "
            f"metrics are {sorted(known)}"
        )
    value = _finite_number(f"{where}.value", item.get("value"))
    stddev = item.get("value_stddev")
    if stddev is not None:
        stddev = _finite_number(f"{where}.value_stddev", stddev)
        if stddev < 0:
            raise SpecError(
                f"{where}.value_stddev must be >= 0, got {stddev}; "
                "report the standard deviation over seeds"
            )
    return MetricValue(str(name), value, stddev)


def _finite_number(where: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SpecError(f"{where} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise SpecError(
            f"{where} must be finite, got {value}; report a failed observation "
            "(failed: true) for a run that diverged"
        )
    return float(value)


def _placeholders(template: str) -> list[str]:
    fields = string.Formatter().parse(template)
    return [name for _, name, _, _ in fields if name]


def fill_template(
    template: str,
    values: Mapping[str, object],
    quote: Callable[[str], str] = str,
) -> str:
    """Fill the ``{name}`` and ``{name:format}`` fields of a job template.

    Unlike ``str.format`` the field name is taken whole, so a parameter
    named ``opt[0]`` is a name, not an index; ``{{`` and ``}}`` are literal
    braces.  Each filled value goes through ``quote`` (the runner quotes
    values for the shell).
    """
    parts: list[str] = []
    for literal, name, format_spec, _ in string.Formatter().parse(template):
        parts.append(literal)
        if name is not None:
            parts.append(quote(format(values[name], format_spec or "")))
    return "".join(parts)


def _check_template(where: str, template: str, samples: Mapping[str, object]) -> None:
    """Refuse a template that ``fill_template`` could not fill from ``samples``."""
    literal_hint = "write {{ and }} for a literal brace"
    try:
        fields = list(string.Formatter().parse(template))
    except ValueError as error:
        raise ValueError(
            f"{where} is not a valid template ({error}); {literal_hint}"
        ) from None
    for _, name, format_spec, conversion in fields:
        if name is None:
            continue
        if name not in samples:
            raise ValueError(
                f"{where} uses {{{name}}}, which is neither a parameter nor "
                f"{{seed}}; known names are {sorted(samples)}; {literal_hint}"
            )
        if conversion is not None:
            raise ValueError(
                f"{where} uses {{{name}!{conversion}}}; conversions are not "
                f"supported, write {{{name}}} or {{{name}:format}}"
            )
        try:
            format(samples[name], format_spec or "")
        except (ValueError, TypeError, OverflowError) as error:
            raise ValueError(
                f"{where} formats {{{name}}} with {format_spec!r}, which does not "
                f"apply to its values ({error}); fix or drop the format"
            ) from None


def _check_name(name: str) -> str:
    if not name.strip():
        raise ValueError("name must not be empty; give a name")
    if len(name) > MAX_NAME_LENGTH:
        raise ValueError(
            f"name must be at most {MAX_NAME_LENGTH} characters, got "
            f"{len(name)} ({name[:20]!r}...); shorten it"
        )
    return name


def _refuse_repeats(field_name: str, names: list[str]) -> None:
    repeated = _repeated(names)
    if repeated:
        raise ValueError(
            f"{field_name} names must be distinct, got {_first_few(repeated)} "
            "more than once; rename or remove the copies"
        )


def _repeated(items: Sequence[_Item]) -> list[_Item]:
    """The items listed more than once, sorted; linear in the list's length."""
    return sorted(item for item, count in Counter(items).items() if count > 1)


def _first_few(items: Sequence[object], shown: int = 5) -> str:
    """``items`` for a message, the first few only: a spec may list thousands."""
    listed = repr(list(items[:shown]))
    if len(items) > shown:
        listed = f"{listed[:-1]}, ... {len(items) - shown} more]"
    return listed


def describe_errors(error: ValidationError) -> str:
    """One line per problem: where it is, then pydantic's or our wording
    (never a class name of ours, which means nothing to a user)."""
    lines = []
    for problem in error.errors():
        where = _location(problem["loc"])
        message = re.sub(r"^(Value|Assertion) error, ", "", problem["msg"])
        if problem["type"] == "extra_forbidden":
            message = "unknown field; remove it or check its spelling"
        elif problem["type"] == "missing":
            message = "field required; add it"
        elif problem["type"] == "model_type":
            message = f"should be a mapping of fields (got {problem.get('input')!r})"
        elif problem["type"] == "string_pattern_mismatch":
            message = f"should not be blank (got {problem.get('input')!r})"
        else:
            message = (
                f"{message} (got {problem.get('input')!r})"
                if problem["type"] not in ("value_error", "assertion_error")
                else message
            )
        lines.append(f"{where}: {message}" if where else message)
    return "\n".join(lines)


def _location(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif "[" in item or "-" in item:
            # pydantic names union branches like "str" or "function-after[...]".
            continue
        else:
            parts.append(f".{item}" if parts else item)
    return "".join(parts)
