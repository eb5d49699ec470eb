"""The campaign file: an experiment spec plus the outer loop's four fields.

A campaign runs an experiment in rounds.  Each round searches inside bounds
that an evaluator refined from the round before; when the rounds are over,
the best points are trained again with fresh seeds.  The file is the
experiment spec of the first round, every key of ``ExperimentSpec`` at the
top level, with four more:

.. code-block:: yaml

    name: digits-lars
    parameters: [...]
    metrics: [...]
    seeds_per_point: 2
    job: {command: ..., converge: ...}
    rounds: {max: 3, budget: 8}        # up to 3 rounds of 8 new points each
    evaluator:                         # how round r's bounds come from r - 1
      name: kmeans                     # or package.module:ClassName
      settings: {min_cluster_size: 4}
    stop: {min_improvement: 0.5}       # stop when the best improved less
    validation: {top: 3, seeds: 10}    # re-run the 3 best points, 10 seeds

``rounds`` makes a file a campaign; without it the file is a plain
experiment (``load_campaign_or_spec`` tells the two apart).  Each round's
``observation_budget`` is ``rounds.budget``, so the file may leave
``observation_budget`` out; if it gives one, it must agree.

``stop.min_improvement`` is measured on the first optimized metric, as the
best feasible value of the campaign so far: after round r (r >= 2) the
campaign stops when that best moved by less than the stated amount in the
metric's own direction since round r - 1.  The default 0 never stops early:
every round of ``rounds.max`` runs.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

from optiloop.errors import SpecError
from optiloop.experiment import (
    ExperimentSpec,
    describe_errors,
    parse_spec,
    read_spec_file,
)

logger = logging.getLogger(__name__)

# The campaign's own top-level fields; every other key is the experiment's.
CAMPAIGN_FIELDS = ("rounds", "evaluator", "stop", "validation")

# The same ceiling the experiment puts on seeds_per_point.
MAX_SEEDS = 1000


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class RoundsSpec(_Strict):
    """How many rounds at most, and how many new points each one trains."""

    max: int = Field(ge=1)
    budget: int = Field(ge=1)


class EvaluatorSpec(_Strict):
    """The evaluator that refines the bounds between rounds."""

    name: str = Field(default="kmeans", pattern=r"\S")
    settings: dict[str, Any] = Field(default_factory=dict)


class StopSpec(_Strict):
    """Stop early when the best value improved by less than this per round."""

    min_improvement: float = Field(default=0.0, ge=0)


class ValidationSpec(_Strict):
    """How many of the best points to train again, with how many seeds each.

    ``top: 0`` skips validation; the answer is then the best point of the
    search, with the spread of its own seeds.
    """

    top: int = Field(default=3, ge=0)
    seeds: int = Field(default=10, ge=1, le=MAX_SEEDS)


class _CampaignFields(_Strict):
    rounds: RoundsSpec
    evaluator: EvaluatorSpec = Field(default_factory=EvaluatorSpec)
    stop: StopSpec = Field(default_factory=StopSpec)
    validation: ValidationSpec = Field(default_factory=ValidationSpec)

    @field_validator("evaluator", mode="before")
    @classmethod
    def _name_alone(cls, value: Any) -> Any:
        # ``evaluator: kmeans`` is short for ``evaluator: {name: kmeans}``.
        return {"name": value} if isinstance(value, str) else value


class CampaignSpec(BaseModel):
    """A validated campaign file: the first round's spec and the outer loop.

    ``experiment.observation_budget`` equals ``rounds.budget``.
    """

    model_config = ConfigDict(frozen=True)

    experiment: ExperimentSpec
    rounds: RoundsSpec
    evaluator: EvaluatorSpec = Field(default_factory=EvaluatorSpec)
    stop: StopSpec = Field(default_factory=StopSpec)
    validation: ValidationSpec = Field(default_factory=ValidationSpec)

    @property
    def name(self) -> str:
        return self.experiment.name

    def to_dict(self) -> dict[str, Any]:
        """The campaign file as plain JSON data, in the file's own layout."""
        data = self.experiment.to_dict()
        for field in CAMPAIGN_FIELDS:
            data[field] = getattr(self, field).model_dump(mode="json")
        return data


def is_campaign(data: Mapping[str, Any]) -> bool:
    """Whether a file's data is a campaign (it has ``rounds``)."""
    return "rounds" in data


def parse_campaign(
    data: Mapping[str, Any], *, check_evaluator: bool = True
) -> CampaignSpec:
    """Validate a campaign file's data; every problem names its field.

    With ``check_evaluator`` the evaluator is imported and built with its
    settings, and tried once on the first round's spec, so that a wrong
    import path or setting (a ``hard_bounds`` entry naming no parameter)
    fails now rather than after the first round.  A server passes False:
    it must never import code that a client names.
    """
    own = {key: data[key] for key in CAMPAIGN_FIELDS if key in data}
    rest = {key: value for key, value in data.items() if key not in own}
    try:
        fields = _CampaignFields.model_validate(own)
    except ValidationError as error:
        raise SpecError(describe_errors(error)) from None

    budget = rest.get("observation_budget")
    if budget is not None and budget != fields.rounds.budget:
        raise SpecError(
            f"observation_budget: a campaign's rounds each train "
            f"rounds.budget={fields.rounds.budget} new points, but the file "
            f"also sets observation_budget={budget!r}; remove "
            "observation_budget or make the two equal"
        )
    experiment = parse_spec({**rest, "observation_budget": fields.rounds.budget})
    if experiment.job is None:
        raise SpecError(
            "job: a campaign trains its rounds itself, so it needs a job; "
            "add job.command"
        )

    campaign = CampaignSpec(
        experiment=experiment,
        rounds=fields.rounds,
        evaluator=fields.evaluator,
        stop=fields.stop,
        validation=fields.validation,
    )
    if check_evaluator:
        _check_evaluator(campaign)
    return campaign


def load_campaign(path: str | Path) -> CampaignSpec:
    """Read a YAML or JSON campaign file and validate it."""
    loaded = load_campaign_or_spec(path)
    if not isinstance(loaded, CampaignSpec):
        raise SpecError(
            f"{path}: rounds: field required for a campaign; add rounds: "
            "{max: ..., budget: ...} or run the file as an experiment"
        )
    return loaded


def load_campaign_or_spec(path: str | Path) -> CampaignSpec | ExperimentSpec:
    """Read a YAML or JSON file: a campaign if it has ``rounds``, else an
    experiment spec.  Errors start with the path and name the field."""
    data = read_spec_file(path)
    stray = [key for key in CAMPAIGN_FIELDS if key in data and key != "rounds"]
    if stray and not is_campaign(data):
        raise SpecError(
            f"{path}: rounds: field required: {', '.join(stray)} belong to a "
            "campaign, which needs rounds: {max: ..., budget: ...}; add it "
            f"(or check its spelling), or remove {', '.join(stray)} to run "
            "one experiment"
        )
    try:
        if is_campaign(data):
            return parse_campaign(data)
        return parse_spec(data)
    except SpecError as error:
        raise SpecError(f"{path}: {error}") from None


def _check_evaluator(campaign: CampaignSpec) -> None:
    """Build the evaluator and refine once with no observations.

    Refining nothing keeps every bound, so the call is cheap, and it is
    where an evaluator checks its settings against the spec.  An evaluator
    with a ``check(spec)`` method is asked that too: checks that hold for
    the first round only (say, that hard limits contain the starting
    bounds) live there.
    """
    # The evaluators bring scikit-learn; import them only when checking.
    from optiloop.evaluators import load_evaluator

    evaluator_spec = campaign.evaluator
    try:
        evaluator = load_evaluator(evaluator_spec.name, evaluator_spec.settings)
        evaluator.refine(campaign.experiment, [])
        check = getattr(evaluator, "check", None)
        if callable(check):
            check(campaign.experiment)
    except SpecError as error:
        raise SpecError(_evaluator_fields(str(error))) from None


def _evaluator_fields(message: str) -> str:
    """The evaluators' messages, with their field names as a campaign file
    spells them: ``evaluator_settings.x`` is ``evaluator.settings.x`` and
    ``evaluator`` is ``evaluator.name``."""
    lines = []
    for line in message.splitlines():
        if line.startswith("evaluator_settings"):
            line = "evaluator.settings" + line.removeprefix("evaluator_settings")
        elif line.startswith("evaluator:"):
            line = "evaluator.name:" + line.removeprefix("evaluator:")
        lines.append(line)
    return "\n".join(lines)
