"""The campaign file: its four fields, defaults, and errors that name the field."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from optiloop.campaign_spec import (
    CampaignSpec,
    load_campaign,
    load_campaign_or_spec,
    parse_campaign,
)
from optiloop.errors import SpecError
from optiloop.experiment import ExperimentSpec

EXAMPLES = Path(__file__).parents[1] / "examples"

CAMPAIGN: dict[str, Any] = {
    "name": "small",
    "parameters": [
        {"name": "lr", "type": "double", "bounds": {"min": 0.1, "max": 1}},
        {"name": "depth", "type": "int", "bounds": {"min": 1, "max": 8}},
    ],
    "metrics": [{"name": "loss", "objective": "minimize"}],
    "job": {"command": "train --lr {lr} --depth {depth} --seed {seed}"},
    "rounds": {"max": 3, "budget": 12},
}


def campaign_with(**changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(CAMPAIGN)
    data.update(changes)
    return data


def test_defaults_and_the_round_budget() -> None:
    campaign = parse_campaign(CAMPAIGN)

    assert campaign.name == "small"
    assert campaign.experiment.observation_budget == 12
    assert campaign.evaluator.name == "kmeans"
    assert campaign.evaluator.settings == {}
    assert campaign.stop.min_improvement == 0.0
    assert (campaign.validation.top, campaign.validation.seeds) == (3, 10)


def test_the_file_form_reads_back_the_same() -> None:
    campaign = parse_campaign(
        campaign_with(
            evaluator={"name": "kmeans", "settings": {"min_cluster_size": 4}},
            stop={"min_improvement": 0.5},
            validation={"top": 2, "seeds": 5},
        )
    )
    data = campaign.to_dict()

    assert data["rounds"] == {"max": 3, "budget": 12}
    assert data["evaluator"] == {"name": "kmeans", "settings": {"min_cluster_size": 4}}
    assert data["observation_budget"] == 12
    assert parse_campaign(data) == campaign


def test_an_evaluator_may_be_named_alone() -> None:
    campaign = parse_campaign(campaign_with(evaluator="kmeans"))
    assert campaign.evaluator.name == "kmeans"


def test_an_equal_observation_budget_is_accepted() -> None:
    campaign = parse_campaign(campaign_with(observation_budget=12))
    assert campaign.experiment.observation_budget == 12


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"rounds": None}, r"^rounds: "),
        ({"rounds": {"max": 0, "budget": 5}}, r"^rounds\.max: .*greater than or"),
        ({"rounds": {"max": 2}}, r"^rounds\.budget: field required"),
        ({"rounds": {"max": 2, "budget": 5, "size": 1}}, r"^rounds\.size: unknown"),
        ({"stop": {"min_improvement": -1}}, r"^stop\.min_improvement: "),
        ({"stop": {"patience": 2}}, r"^stop\.patience: unknown field"),
        ({"validation": {"seeds": 0}}, r"^validation\.seeds: "),
        ({"validation": {"top": -1}}, r"^validation\.top: "),
        ({"evaluator": {"name": ""}}, r"^evaluator\.name: should not be blank"),
        (
            {"rounds": "three"},
            r"^rounds: should be a mapping of fields \(got 'three'\)",
        ),
        ({"observation_budget": 7}, r"^observation_budget: .*rounds\.budget=12"),
        ({"job": None}, r"^job: a campaign .* needs a job"),
        ({"parameters": []}, r"^parameters: "),
    ],
)
def test_bad_fields_are_named(changes: dict[str, Any], message: str) -> None:
    data = campaign_with(**changes)
    for key, value in changes.items():
        if value is None:
            del data[key]
    with pytest.raises(SpecError, match=message):
        parse_campaign(data)


def test_a_misspelled_rounds_is_named_not_the_fields_it_explains(
    tmp_path: Path,
) -> None:
    data = campaign_with(evaluator={"name": "kmeans"}, validation={"top": 2})
    data["roundz"] = data.pop("rounds")
    path = tmp_path / "campaign.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")

    with pytest.raises(SpecError) as raised:
        load_campaign_or_spec(path)

    message = str(raised.value)
    assert message.startswith(f"{path}: rounds: field required")
    assert "evaluator, validation belong to a campaign" in message


def test_missing_rounds_names_the_field() -> None:
    data = campaign_with()
    del data["rounds"]
    with pytest.raises(SpecError, match=r"^rounds: field required; add it"):
        parse_campaign(data)


@pytest.mark.parametrize(
    ("evaluator", "message"),
    [
        ({"name": "nowhere.at_all:Evaluator"}, r"^evaluator\.name: cannot import"),
        ({"name": "kmeans:"}, r"^evaluator\.name: "),
        (
            {"name": "kmeans", "settings": {"keep_fraction": 2}},
            r"^evaluator\.settings\.keep_fraction: ",
        ),
        (
            {"name": "kmeans", "settings": {"clusters": 3}},
            r"^evaluator\.settings\.clusters: unknown setting",
        ),
        (
            {"name": "kmeans", "settings": {"hard_bounds": {"width": {"min": 0}}}},
            r"^evaluator\.settings\.hard_bounds\.width: .*no numeric parameter",
        ),
        (
            {"name": "kmeans", "settings": {"hard_bounds": {"depth": {"min": 2}}}},
            r"^evaluator\.settings\.hard_bounds\.depth: the limits \[2, none\] "
            r"do not contain the parameter's bounds \[1, 8\]",
        ),
    ],
)
def test_the_evaluator_is_checked_when_the_file_loads(
    evaluator: dict[str, Any], message: str
) -> None:
    with pytest.raises(SpecError, match=message):
        parse_campaign(campaign_with(evaluator=evaluator))


def test_a_server_skips_importing_the_evaluator() -> None:
    data = campaign_with(evaluator={"name": "nowhere.at_all:Evaluator"})
    campaign = parse_campaign(data, check_evaluator=False)
    assert campaign.evaluator.name == "nowhere.at_all:Evaluator"


def test_files_tell_campaigns_from_experiments(tmp_path: Path) -> None:
    import yaml

    campaign_file = tmp_path / "campaign.yaml"
    campaign_file.write_text(yaml.safe_dump(CAMPAIGN))
    spec_data = {k: v for k, v in CAMPAIGN.items() if k != "rounds"}
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(spec_data))

    assert isinstance(load_campaign_or_spec(campaign_file), CampaignSpec)
    assert isinstance(load_campaign_or_spec(spec_file), ExperimentSpec)
    with pytest.raises(SpecError, match=r"spec\.yaml: rounds: field required"):
        load_campaign(spec_file)


def test_file_errors_start_with_the_path(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("rounds: {max: 2, budget: 0}\n")
    with pytest.raises(SpecError, match=r"broken\.yaml: rounds\.budget: "):
        load_campaign_or_spec(broken)
    with pytest.raises(SpecError, match="no such file"):
        load_campaign_or_spec(tmp_path / "missing.yaml")


@pytest.mark.parametrize(
    "name", ["digits-lars-campaign.yaml", "rn50-surrogate-campaign.yaml"]
)
def test_example_campaigns_load(name: str) -> None:
    campaign = load_campaign(EXAMPLES / name)
    assert campaign.rounds.max >= 2
    assert campaign.experiment.job is not None
