"""The rules of an experiment, applied in this process: the in-process driver.

``LocalDriver`` is what a SigOpt server would do on receiving a request: it
validates what the caller sends, asks the optimizer for points, keeps the
observation budget and stores the outcome through ``optiloop.store``.  It
takes and returns SigOpt-shaped JSON (see ``shapes``), so ``Connection``
wraps its answers in objects and the REST service can return them as they
are.

Rules kept here:

- a spec is validated in full before anything is stored;
- every body is plain data a database stores: nested at most
  ``MAX_NESTING`` levels, with no NUL or lone surrogate in any text;
- a suggestion, or an observation with assignments of the caller's own, is
  refused once observations plus open suggestions reach the observation
  budget; a suggestion also when the optimizer has no new point left;
- an observation names exactly one of a suggestion or assignments; the
  assignments lie in the space, the values are finite, and a suggestion is
  observed once;
- a deleted experiment takes no new suggestions or observations;
- an update changes only what SigOpt lets change (an experiment's name,
  metadata, budget and bandwidth; an observation's values, failure and
  metadata) and is validated as a new spec or observation would be;
- a campaign's file is a valid campaign file (or experiment spec), though
  its evaluator is never imported here: a server must not run code that a
  client names; an experiment made for a campaign is validated as any
  other, and so are its warm-start observations and chosen points, all
  stored in one transaction.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from optiloop.campaign_spec import is_campaign, parse_campaign
from optiloop.client.shapes import (
    Json,
    best_assignments_json,
    campaign_json,
    experiment_json,
    observation_json,
    pagination_json,
    suggestion_json,
)
from optiloop.errors import (
    BandwidthError,
    BudgetSpentError,
    ExhaustedError,
    NotFoundError,
    SpecError,
)
from optiloop.experiment import (
    MAX_NAME_LENGTH,
    ExperimentSpec,
    Observation,
    Suggestion,
    check_values,
    parse_spec,
)
from optiloop.space import Assignments
from optiloop.store import (
    CampaignRole,
    CampaignState,
    ExperimentRecord,
    Store,
    SuggestionState,
)
from optiloop.store.engine import to_json

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from optiloop.optimizers.base import Optimizer

OptimizerFactory = Callable[[str], "Optimizer"]

OBSERVATION_FIELDS = (
    "suggestion",
    "assignments",
    "values",
    "value",
    "value_stddev",
    "failed",
    "metadata",
)
EXPERIMENT_UPDATE_FIELDS = (
    "name",
    "metadata",
    "observation_budget",
    "parallel_bandwidth",
)
OBSERVATION_UPDATE_FIELDS = ("values", "value", "value_stddev", "failed", "metadata")
EXPERIMENT_LIST_STATES = ("active", "deleted", "all")
SUGGESTION_STATES = ("open", "closed")
CAMPAIGN_FIELDS = ("name", "file")
CAMPAIGN_UPDATE_FIELDS = ("state", "result")
CAMPAIGN_STATES = ("running", "stopped", "done")
CAMPAIGN_EXPERIMENT_FIELDS = (
    "experiment",
    "role",
    "round",
    "refinement",
    "observations",
    "suggestions",
)
CAMPAIGN_ROLES = ("round", "validation", "grid")
WARM_START_FIELDS = ("assignments", "values", "failed", "metadata")

# Deeper JSON is refused before any rule reads it: Python's encoders and
# validators recurse once per level and give up near a thousand, and no
# spec or metadata of a real experiment needs more than a handful.
MAX_NESTING = 64

# Spreads the seeds of different experiments far apart; a prime, so that
# experiment k's seeds never line up with experiment k + 1's.
SEED_STRIDE = 1_000_003


def experiment_seed(experiment_id: int) -> int:
    """The one seed of an experiment, passed to every call of its optimizer.

    It must not change between suggestions: a Sobol strategy continues one
    scrambled sequence only while its seed stays the same.  Strategies that
    need fresh draws per call mix in how many points are already used.
    """
    return experiment_id * SEED_STRIDE


def check_plain_data(data: object) -> None:
    """Refuse what no database stores, before any rule reads ``data``.

    JSON nested deeper than ``MAX_NESTING`` levels, NUL characters (which
    PostgreSQL refuses in text) and lone surrogates (which no UTF-8
    encoder writes) answer a ``SpecError`` naming the field, in keys and
    values alike.  Walked with a list rather than recursion, so that the
    depth of the data cannot exhaust Python's stack.
    """
    pending: list[tuple[object, str, int]] = [(data, "", 0)]
    while pending:
        item, where, depth = pending.pop()
        if isinstance(item, str):
            _check_text(where or "value", item)
            continue
        if isinstance(item, Mapping):
            children = []
            for key, value in item.items():
                key_where = f"{where}.{key}" if where else str(key)
                if isinstance(key, str):
                    _check_text(f"{key_where} (a key)", key)
                children.append((value, key_where))
        elif isinstance(item, (list, tuple)):
            children = [(value, f"{where}[{i}]") for i, value in enumerate(item)]
        else:
            continue
        if depth >= MAX_NESTING:
            top = re.split(r"[.\[]", where, maxsplit=1)[0] or "request body"
            raise SpecError(
                f"{top}: nested more than {MAX_NESTING} levels deep; this "
                "server stores flatter data, so flatten it"
            )
        pending.extend((value, path, depth + 1) for value, path in children)


def _check_text(where: str, text: str) -> None:
    if "\x00" in text:
        raise SpecError(
            f"{_printable(where)}: contains a NUL character (\\u0000), which "
            "the database cannot store; remove it"
        )
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise SpecError(
            f"{_printable(where)}: contains a lone surrogate (\\ud800 to "
            "\\udfff), which is not text; send valid UTF-8"
        ) from None


def _printable(where: str) -> str:
    """A field path safe to put in an answer: a bad key shows escaped."""
    return where.encode("utf-8", "backslashreplace").decode().replace("\x00", "\\x00")


def parse_id(kind: str, raw: object) -> int:
    """An id from an int or a numeric string (SigOpt's ids are strings)."""
    if isinstance(raw, bool):
        raise NotFoundError(f"{kind} {raw!r} not found")
    # isdigit() alone takes "²" and other digits that int() refuses.
    if isinstance(raw, str) and raw.strip().isascii() and raw.strip().isdigit():
        raw = int(raw)
    if isinstance(raw, int):
        # Databases store ids as signed 64-bit integers.
        if not 0 < raw < 2**63:
            raise NotFoundError(f"{kind} {raw} not found")
        return raw
    raise NotFoundError(f"{kind} {raw!r} not found; ids are whole numbers")


def _load_optimizer(strategy: str) -> Optimizer:
    # The optimizers bring scipy and scikit-learn; import them at the first
    # suggestion, not when a connection opens.
    from optiloop.optimizers import get_optimizer

    return get_optimizer(strategy)


class LocalDriver:
    """Experiments, suggestions and observations kept in a ``Store``.

    ``optimizer_for`` maps an experiment's ``type`` to its optimizer; tests
    pass their own.  The driver may be shared between threads and its
    database between processes: a suggestion is chosen and stored in one
    transaction that holds the experiment (``Store.add_suggestion_atomically``).

    ``owner_token_id``, where a method takes it, is the server's API token
    acting; the in-process driver passes none and sees every experiment.

    ``parallel_bandwidth`` caps the open suggestions: a request beyond it
    is refused (``BandwidthError``, 409 over HTTP), so that workers sharing
    an experiment never run more points at once than it allows.  Unlike
    SigOpt, which only advises; an open suggestion left by a crashed worker
    holds its place until it is observed or deleted.  The budget caps open
    suggestions plus observations.
    """

    def __init__(
        self, store: Store, optimizer_for: OptimizerFactory | None = None
    ) -> None:
        self.store = store
        self._optimizer_for = optimizer_for or _load_optimizer

    def close(self) -> None:
        self.store.close()

    # Experiments

    def create_experiment(
        self, body: Mapping[str, Any], owner_token_id: int | None = None
    ) -> Json:
        """Validate a spec and store it as a new experiment."""
        check_plain_data(body)
        spec = parse_spec(body)
        experiment_id = self.store.create_experiment(spec, owner_token_id)
        return self.get_experiment(experiment_id)

    def get_experiment(self, experiment_id: int) -> Json:
        record = self.store.get_experiment(experiment_id)
        observations = self.store.list_observations(experiment_id)
        return experiment_json(record, observations)

    def list_experiments(
        self, state: str = "active", owner_token_id: int | None = None
    ) -> Json:
        """Experiments in ``state``: active, deleted or all.

        Reads every experiment's observations for its progress, one query
        each; fine for the hundreds of experiments a team runs, slow beyond.
        """
        if state not in EXPERIMENT_LIST_STATES:
            raise SpecError(
                f"state must be one of {list(EXPERIMENT_LIST_STATES)}, got {state!r}"
            )
        records = self.store.list_experiments(
            include_deleted=state != "active", owner_token_id=owner_token_id
        )
        chosen = [r for r in records if state == "all" or r.state == state]
        return pagination_json(
            [experiment_json(r, self.store.list_observations(r.id)) for r in chosen]
        )

    def update_experiment(self, experiment_id: int, body: Mapping[str, Any]) -> Json:
        """Change the fields SigOpt lets change; the rest of the spec stays."""
        check_plain_data(body)
        _refuse_unknown("experiment", body, EXPERIMENT_UPDATE_FIELDS, "update")
        record = self._active_experiment(experiment_id)

        # The changed spec passes every rule a new one would.
        changed = {**record.spec.to_dict(), **body}
        spec = parse_spec({k: v for k, v in changed.items() if v is not None})
        # A budget below the open suggestions is allowed: those still get
        # observed, and no new suggestion is made until the count drops.
        budget = spec.observation_budget
        observed = self.store.counts(experiment_id).observations
        if budget is not None and budget < observed:
            raise SpecError(
                f"observation_budget must be at least the {observed} "
                f"observations already stored, got {budget}"
            )
        self.store.update_experiment(experiment_id, spec)
        return self.get_experiment(experiment_id)

    def delete_experiment(self, experiment_id: int) -> None:
        self.store.delete_experiment(experiment_id)

    # Suggestions

    def create_suggestion(self, experiment_id: int) -> Json:
        """Ask the experiment's optimizer for one new point and store it."""
        spec = self._active_experiment(experiment_id).spec
        optimizer = self._optimizer_for(spec.type)

        def choose(
            observations: list[Observation], pending: list[Suggestion], made: int
        ) -> Assignments | None:
            _check_budget(experiment_id, spec, len(observations), len(pending))
            _check_bandwidth(experiment_id, spec, pending)
            points = optimizer.suggest(
                spec,
                observations,
                [suggestion.assignments for suggestion in pending],
                count=1,
                seed=experiment_seed(experiment_id),
            )
            if not points:
                return None
            # An optimizer's point is checked like a user's, so that a bug
            # in a strategy cannot store a point off the space.
            return spec.space().check_assignments(points[0])

        suggestion = self.store.add_suggestion_atomically(experiment_id, choose)
        if suggestion is None:
            raise ExhaustedError(self._exhausted_message(experiment_id, spec))
        return suggestion_json(suggestion)

    def get_suggestion(self, experiment_id: int, suggestion_id: int) -> Json:
        suggestion = self.store.get_suggestion(experiment_id, suggestion_id)
        return suggestion_json(suggestion)

    def delete_suggestion(self, experiment_id: int, suggestion_id: int) -> None:
        """Withdraw an open suggestion, so that it no longer counts as pending."""
        self.store.delete_suggestion(experiment_id, suggestion_id)

    def delete_open_suggestions(self, experiment_id: int) -> None:
        """Withdraw every open suggestion (SigOpt's ``state=open`` delete)."""
        self.store.delete_open_suggestions(experiment_id)

    def list_suggestions(self, experiment_id: int, state: str | None = None) -> Json:
        """The experiment's suggestions, all or only the open or closed ones."""
        if state is not None and state not in SUGGESTION_STATES:
            raise SpecError(
                f"state must be one of {list(SUGGESTION_STATES)} or left out, "
                f"got {state!r}"
            )
        suggestions = self.store.list_suggestions(
            experiment_id, cast(SuggestionState | None, state)
        )
        return pagination_json([suggestion_json(s) for s in suggestions])

    # Observations

    def create_observation(self, experiment_id: int, body: Mapping[str, Any]) -> Json:
        """Check and store an observation; its suggestion, if any, closes.

        ``body`` holds SigOpt's fields: ``suggestion`` or ``assignments``,
        ``values`` (or ``value`` and ``value_stddev`` for a single metric),
        ``failed`` and ``metadata``.
        """
        check_plain_data(body)
        _refuse_unknown("observation", body, OBSERVATION_FIELDS, "create")
        spec = self._active_experiment(experiment_id).spec

        suggestion_id, assignments = self._observed_point(experiment_id, spec, body)
        failed = _failed_flag(body.get("failed", False))
        values = check_values(spec, _values_field(spec, body), failed)
        metadata = _metadata_field(body.get("metadata"))

        observation = self.store.add_observation(
            experiment_id,
            assignments,
            values,
            failed=failed,
            suggestion_id=suggestion_id,
            metadata=metadata,
            budget=spec.observation_budget,
        )
        return observation_json(observation)

    def get_observation(self, experiment_id: int, observation_id: int) -> Json:
        observation = self.store.get_observation(experiment_id, observation_id)
        return observation_json(observation)

    def update_observation(
        self, experiment_id: int, observation_id: int, body: Mapping[str, Any]
    ) -> Json:
        """Correct an observation's values, failure or metadata.

        Fields left out keep their stored value; marking an observation
        failed drops its values.  Its point (suggestion, assignments) stays.
        """
        check_plain_data(body)
        _refuse_unknown("observation", body, OBSERVATION_UPDATE_FIELDS, "update")
        spec = self._active_experiment(experiment_id).spec
        stored = self.store.get_observation(experiment_id, observation_id)

        failed = _failed_flag(body.get("failed", stored.failed))
        given_values = _values_field(spec, body)
        if given_values is None and not failed:
            given_values = [
                {"name": v.name, "value": v.value, "value_stddev": v.value_stddev}
                for v in stored.values
            ]
        values = check_values(spec, given_values, failed)
        metadata = _metadata_field(body.get("metadata", stored.metadata))

        observation = self.store.update_observation(
            experiment_id, observation_id, values, failed=failed, metadata=metadata
        )
        return observation_json(observation)

    def delete_observation(self, experiment_id: int, observation_id: int) -> None:
        self.store.delete_observation(experiment_id, observation_id)

    def list_observations(self, experiment_id: int) -> Json:
        observations = self.store.list_observations(experiment_id)
        return pagination_json([observation_json(o) for o in observations])

    def best_assignments(self, experiment_id: int, ranked: int | None = None) -> Json:
        """The best feasible points: one, or the Pareto front of two metrics.

        Judged by the models' posterior means, so that one lucky mean over
        noisy seeds does not win.  ``ranked``, optiloop's extension, asks
        instead for that many feasible points, best first by the first
        optimized metric's posterior mean.
        """
        # The optimizers bring scipy; import them when first needed.
        from optiloop.optimizers import posterior_best, posterior_ranking

        spec = self.store.get_experiment(experiment_id).spec
        observations = self.store.list_observations(experiment_id)
        if ranked is None:
            best = posterior_best(spec, observations)
        else:
            best = posterior_ranking(spec, observations)[:ranked]
        return pagination_json([best_assignments_json(o) for o in best])

    # Campaigns

    def create_campaign(
        self, body: Mapping[str, Any], owner_token_id: int | None = None
    ) -> Json:
        """Store a campaign from its file; ``name`` defaults to the file's."""
        check_plain_data(body)
        _refuse_unknown("campaign", body, CAMPAIGN_FIELDS, "create")
        file = _plain_mapping("file", body.get("file"))
        if file is None:
            raise SpecError(
                "file: a campaign needs its file, the campaign file's fields "
                "as a mapping; pass file={...}"
            )
        if is_campaign(file):
            name = parse_campaign(file, check_evaluator=False).name
        else:
            name = parse_spec(file).name
        name = _campaign_name(body.get("name", name))

        campaign_id = self.store.create_campaign(name, file, owner_token_id)
        return self.get_campaign(campaign_id)

    def get_campaign(self, campaign_id: int, owner_token_id: int | None = None) -> Json:
        return campaign_json(self.store.get_campaign(campaign_id, owner_token_id))

    def list_campaigns(self, owner_token_id: int | None = None) -> Json:
        records = self.store.list_campaigns(owner_token_id)
        return pagination_json([campaign_json(record) for record in records])

    def update_campaign(
        self,
        campaign_id: int,
        body: Mapping[str, Any],
        owner_token_id: int | None = None,
    ) -> Json:
        """Change a campaign's ``state`` or ``result``; its file stays."""
        check_plain_data(body)
        _refuse_unknown("campaign", body, CAMPAIGN_UPDATE_FIELDS, "update")
        self.store.get_campaign(campaign_id, owner_token_id)
        state = body.get("state")
        if state is not None and state not in CAMPAIGN_STATES:
            raise SpecError(
                f"state must be one of {list(CAMPAIGN_STATES)}, got {state!r}"
            )
        result = _plain_mapping("result", body.get("result"))
        record = self.store.update_campaign(
            campaign_id, state=cast(CampaignState | None, state), result=result
        )
        return campaign_json(record)

    def list_campaign_experiments(
        self, campaign_id: int, owner_token_id: int | None = None
    ) -> Json:
        """The campaign's experiments in the order they were made."""
        self.store.get_campaign(campaign_id, owner_token_id)
        records = self.store.campaign_experiments(campaign_id)
        return pagination_json(
            [experiment_json(r, self.store.list_observations(r.id)) for r in records]
        )

    def create_campaign_experiment(
        self,
        campaign_id: int,
        body: Mapping[str, Any],
        owner_token_id: int | None = None,
    ) -> Json:
        """Create an experiment of a campaign, with its first rows.

        ``body``: ``experiment`` (the spec), ``role`` (round, validation or
        grid), ``round``, ``refinement`` (plain JSON), ``observations``
        (warm-start points with their values, checked as any observation
        with assignments) and ``suggestions`` (points to train, each
        ``{"assignments": ...}``, stored open).  Both lists together stay
        within the spec's observation budget.
        """
        check_plain_data(body)
        _refuse_unknown("experiment", body, CAMPAIGN_EXPERIMENT_FIELDS, "create")
        self.store.get_campaign(campaign_id, owner_token_id)
        spec_body = _plain_mapping("experiment", body.get("experiment"))
        if spec_body is None:
            raise SpecError(
                "experiment: the spec of the campaign's experiment is "
                "required; pass experiment={...}"
            )
        spec = parse_spec(spec_body)
        role = body.get("role")
        if role not in CAMPAIGN_ROLES:
            raise SpecError(f"role must be one of {list(CAMPAIGN_ROLES)}, got {role!r}")
        round_number = _round_field(body.get("round"), role)
        refinement = _plain_mapping("refinement", body.get("refinement"))

        observations = [
            _warm_start_observation(spec, index, item)
            for index, item in enumerate(_list_field(body, "observations"))
        ]
        suggestions = [
            _chosen_point(spec, index, item)
            for index, item in enumerate(_list_field(body, "suggestions"))
        ]
        budget = spec.observation_budget
        rows = len(observations) + len(suggestions)
        if budget is not None and rows > budget:
            raise SpecError(
                f"observations: {len(observations)} observations and "
                f"{len(suggestions)} suggestions pass the experiment's "
                f"observation_budget {budget}; raise the budget or send fewer"
            )

        experiment_id = self.store.create_campaign_experiment(
            campaign_id,
            spec,
            role=cast(CampaignRole, role),
            round=round_number,
            refinement=refinement,
            owner_token_id=owner_token_id,
            observations=observations,
            suggestions=suggestions,
        )
        return self.get_experiment(experiment_id)

    # Helpers

    def _active_experiment(self, experiment_id: int) -> ExperimentRecord:
        record = self.store.get_experiment(experiment_id)
        if record.state != "active":
            raise SpecError(
                f"experiment {experiment_id} is deleted: it takes no new "
                "suggestions or observations; create a new experiment"
            )
        return record

    def _observed_point(
        self, experiment_id: int, spec: ExperimentSpec, body: Mapping[str, Any]
    ) -> tuple[int | None, Assignments]:
        """The suggestion id (if any) and the checked assignments observed."""
        raw_suggestion = body.get("suggestion")
        raw_assignments = body.get("assignments")
        if raw_suggestion is not None and raw_assignments is not None:
            raise SpecError(
                "observation: give either suggestion or assignments, got both; "
                "the suggestion already carries its assignments"
            )
        if raw_suggestion is None and raw_assignments is None:
            raise SpecError(
                "observation: a suggestion or assignments is required, got "
                "neither; name the suggestion that was evaluated"
            )

        if raw_assignments is not None:
            if not isinstance(raw_assignments, Mapping):
                raise SpecError(
                    "assignments must map parameter names to values, got "
                    f"{raw_assignments!r}"
                )
            # A point of the caller's own is one more observation, so it is
            # held to the budget as a suggestion is; the store counts in the
            # transaction that stores it.
            return None, spec.space().check_assignments(raw_assignments)

        if not _looks_like_id(raw_suggestion):
            raise SpecError(
                f"suggestion must be a suggestion's id, a whole number or its "
                f"string, got {raw_suggestion!r}; pass the id the suggestion "
                "was created with"
            )

        # Checked here for a clear message before any work; the store checks
        # again in the transaction that closes the suggestion.
        suggestion_id = parse_id("suggestion", raw_suggestion)
        suggestion = self.store.get_suggestion(experiment_id, suggestion_id)
        if suggestion.state == "closed":
            raise SpecError(
                f"suggestion {suggestion_id} of experiment {experiment_id} is "
                "already closed: an observation reported it; create a new "
                "suggestion, or report the point with assignments"
            )
        return suggestion_id, suggestion.assignments

    def _exhausted_message(self, experiment_id: int, spec: ExperimentSpec) -> str:
        space = spec.space()
        suggestions = self.store.list_suggestions(experiment_id)
        observations = self.store.list_observations(experiment_id)
        seen = {space.key(s.assignments) for s in suggestions}
        seen |= {space.key(o.assignments) for o in observations}
        if spec.type == "grid":
            return (
                f"grid exhausted: all {len(seen)} points suggested for "
                f"experiment {experiment_id}; the experiment is complete"
            )
        return (
            f"the {spec.type} optimizer has no new point left for experiment "
            f"{experiment_id} after {len(seen)} distinct points"
        )


def _looks_like_id(raw: object) -> bool:
    """Whether ``raw`` is an id in form (an int or a string of digits);
    whether such an object exists is the store's to say."""
    if isinstance(raw, str):
        return raw.strip().isascii() and raw.strip().isdigit()
    return isinstance(raw, int) and not isinstance(raw, bool)


def _check_bandwidth(
    experiment_id: int, spec: ExperimentSpec, pending: Sequence[Suggestion]
) -> None:
    """Refuse a suggestion beyond ``parallel_bandwidth`` open ones."""
    if len(pending) >= spec.parallel_bandwidth:
        raise BandwidthError(
            f"parallel_bandwidth reached for experiment {experiment_id}: "
            f"{len(pending)} open suggestions >= parallel_bandwidth "
            f"{spec.parallel_bandwidth}; observe or delete an open suggestion "
            "first, or raise parallel_bandwidth"
        )


def _check_budget(
    experiment_id: int, spec: ExperimentSpec, observed: int, pending: int
) -> None:
    """Refuse a new point that could take the experiment past its budget.

    Open suggestions count: each will become an observation.
    """
    budget = spec.observation_budget
    if budget is None:
        return
    if observed + pending >= budget:
        raise BudgetSpentError(
            f"observation budget spent for experiment {experiment_id}: "
            f"{observed} observed + {pending} open suggestions "
            f">= observation_budget {budget}; observe the open suggestions or "
            "raise the budget"
        )


def _refuse_unknown(
    kind: str, body: Mapping[str, Any], allowed: Sequence[str], action: str
) -> None:
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise SpecError(
            f"{kind}.{unknown[0]}: unknown field or one that {action} cannot "
            f"set; {action} takes {list(allowed)}"
        )


def _failed_flag(raw: object) -> bool:
    if not isinstance(raw, bool):
        raise SpecError(f"failed must be true or false, got {raw!r}")
    return raw


def _values_field(
    spec: ExperimentSpec, body: Mapping[str, Any]
) -> Sequence[Mapping[str, Any]] | None:
    """``values`` as given, or built from SigOpt's single-metric ``value``."""
    values = body.get("values")
    value = body.get("value")
    value_stddev = body.get("value_stddev")
    if value is None and value_stddev is None:
        return values

    if values is not None:
        raise SpecError(
            "value: give either value or values, got both; use values for "
            "more than one metric"
        )
    if len(spec.metrics) != 1:
        names = [m.name for m in spec.metrics]
        raise SpecError(
            f"value: a lone value needs an experiment with one metric, this "
            f"one has {names}; report values=[{{name, value}}, ...]"
        )
    item: dict[str, Any] = {"name": spec.metrics[0].name, "value": value}
    if value_stddev is not None:
        item["value_stddev"] = value_stddev
    return [item]


def _campaign_name(raw: object) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise SpecError(f"name must be a non-empty string, got {raw!r}; give a name")
    if len(raw) > MAX_NAME_LENGTH:
        raise SpecError(
            f"name must be at most {MAX_NAME_LENGTH} characters, got "
            f"{len(raw)}; shorten it"
        )
    return raw


def _plain_mapping(field: str, raw: object) -> dict[str, Any] | None:
    """``raw`` as a dict of plain JSON data, or None when not given."""
    if raw is None:
        return None
    if not isinstance(raw, Mapping) or not all(isinstance(k, str) for k in raw):
        raise SpecError(f"{field} must map names to values, got {raw!r}")
    try:
        to_json(raw)
    except (TypeError, ValueError) as error:
        raise SpecError(
            f"{field} must be plain JSON data (numbers, strings, lists, dicts; "
            f"finite numbers only): {error}"
        ) from None
    return dict(raw)


def _round_field(raw: object, role: str) -> int | None:
    if raw is None:
        if role == "round":
            raise SpecError(
                "round: an experiment with role round needs its round "
                "number; pass round=1, 2, ..."
            )
        return None
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 1:
        raise SpecError(f"round must be a whole number >= 1, got {raw!r}")
    return raw


def _list_field(body: Mapping[str, Any], field: str) -> list[Any]:
    raw = body.get(field)
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise SpecError(f"{field} must be a list, got {raw!r}")
    return raw


def _warm_start_observation(
    spec: ExperimentSpec, index: int, item: object
) -> Observation:
    """A warm-start row checked as an observation with assignments."""
    where = f"observations[{index}]"
    if not isinstance(item, Mapping):
        raise SpecError(f"{where} must be an observation object, got {item!r}")
    unknown = sorted(set(item) - set(WARM_START_FIELDS))
    if unknown:
        raise SpecError(
            f"{where}.{unknown[0]}: unknown field; an observation here takes "
            f"{list(WARM_START_FIELDS)}"
        )
    try:
        assignments = _checked_point(spec, item.get("assignments"))
        failed = _failed_flag(item.get("failed", False))
        values = check_values(spec, item.get("values"), failed)
        metadata = _metadata_field(item.get("metadata"))
    except SpecError as error:
        raise SpecError(f"{where}: {error}") from None
    return Observation(assignments, values, failed, metadata=metadata)


def _chosen_point(spec: ExperimentSpec, index: int, item: object) -> Assignments:
    where = f"suggestions[{index}]"
    if not isinstance(item, Mapping) or set(item) != {"assignments"}:
        raise SpecError(f"{where} must be {{'assignments': {{...}}}}, got {item!r}")
    try:
        return _checked_point(spec, item["assignments"])
    except SpecError as error:
        raise SpecError(f"{where}: {error}") from None


def _checked_point(spec: ExperimentSpec, raw: object) -> Assignments:
    if not isinstance(raw, Mapping):
        raise SpecError(f"assignments must map parameter names to values, got {raw!r}")
    return spec.space().check_assignments(raw)


def _metadata_field(raw: object) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping) or not all(isinstance(k, str) for k in raw):
        raise SpecError(f"metadata must map names to values, got {raw!r}; pass a dict")
    try:
        to_json(raw)
    except (TypeError, ValueError) as error:
        raise SpecError(
            f"metadata must be plain JSON data (numbers, strings, lists, "
            f"dicts; finite numbers only): {error}"
        ) from None
    return dict(raw)
