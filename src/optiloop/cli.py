"""The ``optiloop`` command: run an experiment file, show its best point and status,
serve the REST API and make its tokens.

Heavy modules (the store, the optimizers, the web stack) are imported inside
the commands so that ``optiloop --help`` starts fast.
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from optiloop.errors import OptiloopError, SpecError

DEFAULT_DB = "sqlite:///optiloop.db"

app = typer.Typer(
    help="Find the hyperparameters that reach a target in the fewest epochs.",
    no_args_is_help=True,
    add_completion=False,
)
token_app = typer.Typer(help="API tokens of a server.", no_args_is_help=True)
app.add_typer(token_app, name="token")
console = Console()
errors = Console(stderr=True)

DbOption = Annotated[
    str, typer.Option("--db", help="Database URL.", envvar="OPTILOOP_DB")
]
ServerOption = Annotated[
    str | None,
    typer.Option(
        "--server",
        help="URL of an optiloop server; replaces --db.",
        envvar="OPTILOOP_SERVER",
    ),
]
TokenOption = Annotated[
    str | None,
    typer.Option(
        "--token",
        help="API token for --server ('optiloop token create').",
        envvar="OPTILOOP_TOKEN",
    ),
]
ExperimentOption = Annotated[
    int | None,
    typer.Option("--experiment", "-e", help="Experiment id (default: the newest)."),
]
ParallelOption = Annotated[
    int | None,
    typer.Option(min=1, help="Jobs at once (default: the spec's parallel_bandwidth)."),
]
CampaignOption = Annotated[
    int | None,
    typer.Option("--campaign", "-c", help="Show this campaign instead."),
]


@app.callback()
def main(
    verbose: Annotated[
        int, typer.Option("--verbose", "-v", count=True, help="-v INFO, -vv DEBUG.")
    ] = 0,
) -> None:
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)]
    logging.basicConfig(
        level=level,
        format="%(message)s",
        handlers=[RichHandler(console=errors, show_path=False)],
    )


@app.command()
def run(
    spec_file: Annotated[
        Path, typer.Argument(help="Experiment or campaign file (YAML or JSON).")
    ],
    db: DbOption = DEFAULT_DB,
    observations: Annotated[
        int | None,
        typer.Option(
            min=1, help="Stop at this many observations (default: the budget)."
        ),
    ] = None,
    parallel: ParallelOption = None,
    experiment: Annotated[
        int | None,
        typer.Option(help="Continue this experiment instead of creating one."),
    ] = None,
    server: ServerOption = None,
    token: TokenOption = None,
    campaign: Annotated[
        int | None,
        typer.Option(help="Continue this campaign instead of starting one."),
    ] = None,
) -> None:
    """Run an experiment file to its budget, then print the best point.

    A campaign file (one with rounds: ...) runs its rounds and validation
    instead.  Ctrl-C once lets the runs in progress finish and stops
    cleanly; twice stops at once.  Either way --campaign ID continues it.
    """
    from optiloop.campaign_spec import CampaignSpec, load_campaign_or_spec
    from optiloop.runner import check_runnable, make_executor, run_experiment

    with _user_errors():
        spec = load_campaign_or_spec(spec_file)
        if isinstance(spec, CampaignSpec):
            if observations is not None or experiment is not None:
                raise SpecError(
                    f"{spec_file} is a campaign, whose rounds set their own "
                    "budgets: drop --observations and --experiment (continue "
                    "a campaign with --campaign ID)"
                )
            conn = _connect(db, server, token)
            where = server or db
            _run_campaign_file(conn, spec, spec_file, campaign, parallel, where)
            return
        if campaign is not None:
            raise SpecError(
                f"--campaign continues a campaign, but {spec_file} is an "
                "experiment file (it has no rounds); pass the campaign's file"
            )
        check_runnable(spec, observations)
        conn = _connect(db, server, token)
        where = server or db
        # Before anything is stored: a cluster that cannot be reached leaves
        # no empty experiment behind.
        executor = make_executor(spec, parallel)
        try:
            experiment_id = _start_or_continue(conn, spec, spec_file, experiment, where)
        except BaseException:
            executor.shutdown()
            raise
        again = _resume_command(db, server)
        target = observations or spec.observation_budget
        summary = _run_interruptibly(
            lambda on_event, should_stop: run_experiment(
                conn,
                experiment_id,
                spec,
                executor,
                observations,
                on_event,
                should_stop=should_stop,
            ),
            executor,
            _progress(target, spec.seeds_per_point),
            again,
        )
        _report_experiment_end(conn, experiment_id, summary, again)


def _run_interruptibly(
    run: Callable[[Any, Callable[[], bool]], Any],
    executor: Any,
    progress: Any,
    again: str,
) -> Any:
    """``run(on_event, should_stop)`` with Ctrl-C as for a campaign: once
    finishes the points in progress and stops; twice stops at once."""
    interrupts = _Interrupts()
    try:
        with interrupts, progress as on_event:
            summary = run(on_event, interrupts.requested)
    except KeyboardInterrupt:
        _stop_at_once(again)
    except BaseException:
        executor.shutdown()
        raise
    executor.shutdown()
    return summary


def _stop_at_once(again: str) -> NoReturn:
    """After a second Ctrl-C: say how to continue, and end the process."""
    errors.print(
        f"[red]Stopped at once[/]: the runs in progress were ended; their "
        f"points stay open and are trained again when you continue:\n"
        f"  {escape(again)}",
        highlight=False,
    )
    sys.stdout.flush()
    sys.stderr.flush()
    # Leaving normally would wait for the job threads, and so for the jobs;
    # ending the process now lets the executor's reaper kill them.
    os._exit(130)


def _report_experiment_end(
    conn: Any, experiment_id: int, summary: Any, again: str
) -> None:
    console.print(
        f"Experiment {experiment_id}: {summary.observation_count} observations "
        f"({summary.stopped_because})."
    )
    if summary.stopped_because == "stopped on request":
        console.print(f"Nothing is lost. Continue it with:\n  {escape(again)}")
    _print_best(conn, experiment_id)


def _resume_command(db: str, server: str | None) -> str:
    """The command that continues the newest unfinished run."""
    if server is not None:
        return f"optiloop resume --server {server} --token TOKEN"
    if db != DEFAULT_DB:
        return f"optiloop resume --db {db}"
    return "optiloop resume"


def _start_or_continue(
    conn: Any,
    spec: Any,
    spec_file: Path,
    experiment: int | None,
    where: str,
) -> int:
    """A new experiment for ``spec``, or the stored one it must match."""
    if experiment is None:
        experiment_id: int = conn.experiments().create(**spec.to_dict()).id
        console.print(
            f"Created experiment {experiment_id} ({escape(spec.name)}) "
            f"in {escape(where)}"
        )
        return experiment_id

    stored = conn.experiments(experiment).fetch()
    _refuse_other_spec(spec, stored, spec_file)
    console.print(f"Continuing experiment {stored.id} in {escape(where)}")
    return int(stored.id)


@app.command()
def best(
    db: DbOption = DEFAULT_DB,
    experiment: ExperimentOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    server: ServerOption = None,
    token: TokenOption = None,
    campaign: CampaignOption = None,
) -> None:
    """Print the best feasible point of an experiment, or a campaign's
    validated answer (--campaign)."""
    with _user_errors():
        conn = _connect(db, server, token, reading=True)
        if campaign is not None:
            _print_campaign_best(conn, campaign, as_json)
            return
        if experiment is None:
            experiment_id = _newest_experiment(conn)
        else:
            experiment_id = conn.experiments(experiment).fetch().id
        if as_json:
            page = conn.experiments(experiment_id).best_assignments().fetch()
            points = [_best_as_dict(item) for item in page.data]
            typer.echo(json.dumps({"experiment": experiment_id, "best": points}))
            return
        _print_best(conn, experiment_id)


@app.command()
def resume(
    spec_file: Annotated[
        Path | None,
        typer.Argument(
            help="The experiment or campaign file that was running "
            "(default: the newest unfinished one in the database)."
        ),
    ] = None,
    db: DbOption = DEFAULT_DB,
    parallel: ParallelOption = None,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """Continue an experiment or campaign whose runner was killed.

    Stored observations are kept; points that were in flight are trained
    again from their first seed, since no result of theirs was stored; the
    budget stays exact.
    """
    from optiloop.runner import check_runnable, make_executor, run_experiment
    from optiloop.runner.resume import find_unfinished

    with _user_errors():
        wanted = None
        if spec_file is not None:
            from optiloop.campaign_spec import load_campaign_or_spec

            wanted = load_campaign_or_spec(spec_file)
        conn = _connect(db, server, token, reading=True)
        found = find_unfinished(conn, wanted)
        if found.kind == "campaign":
            _resume_campaign(conn, found, parallel)
            return
        if found.kind == "grid":
            _resume_grid(conn, found, parallel)
            return

        spec = found.spec
        check_runnable(spec)
        console.print(
            f"Resuming experiment {found.id} ({escape(found.name)}): "
            f"{found.observed}/{spec.observation_budget} observations stored, "
            f"{found.in_flight} in flight to run again"
        )
        executor = make_executor(spec, parallel)
        again = _resume_command(db, server)
        summary = _run_interruptibly(
            lambda on_event, should_stop: run_experiment(
                conn,
                found.id,
                spec,
                executor,
                on_event=on_event,
                should_stop=should_stop,
            ),
            executor,
            _progress(spec.observation_budget, spec.seeds_per_point),
            again,
        )
        _report_experiment_end(conn, found.id, summary, again)


def _resume_campaign(conn: Any, found: Any, parallel: int | None) -> None:
    from optiloop.campaign_spec import parse_campaign
    from optiloop.runner import make_executor
    from optiloop.runner.campaign import run_campaign

    campaign = parse_campaign(found.file)
    console.print(f"Resuming campaign {found.id} ({escape(found.name)})")
    summary = run_campaign(
        conn,
        campaign,
        campaign_id=found.id,
        executor_factory=lambda spec: make_executor(spec, parallel),
    )
    console.print(f"Campaign {found.id}: {summary.state} ({summary.stopped_because}).")


def _resume_grid(conn: Any, found: Any, parallel: int | None) -> None:
    from optiloop.runner import make_executor
    from optiloop.runner.grid import run_grid

    grid = found.spec
    console.print(f"Resuming grid search {found.id} ({escape(found.name)})")
    with _progress(grid.observation_budget, grid.seeds_per_point) as on_event:
        summary = run_grid(
            conn,
            grid,
            lambda spec: make_executor(spec, parallel),
            campaign_id=found.id,
            on_event=on_event,
        )
    console.print(
        f"Grid search {found.id}: {summary.observation_count}/{summary.points} "
        f"points observed ({summary.stopped_because})."
    )


@app.command()
def status(
    db: DbOption = DEFAULT_DB,
    server: ServerOption = None,
    token: TokenOption = None,
    runs_of: Annotated[
        int | None,
        typer.Option("--experiment", "-e", help="Show the runs of this experiment."),
    ] = None,
    logs: Annotated[
        bool,
        typer.Option("--logs", help="Show every run's output, not only failed runs'."),
    ] = False,
    campaign: CampaignOption = None,
) -> None:
    """List the experiments with their progress and best value.

    Below the list come the runs of the newest experiment (or of
    --experiment) that did not end well, with the end of their stderr;
    --logs shows every run, with its stdout too.  --campaign ID shows a
    campaign instead: its rounds, refinements and result.
    """
    with _user_errors():
        conn = _connect(db, server, token, reading=True)
        if campaign is not None:
            _print_campaign_status(conn, campaign)
            return
        experiments = conn.experiments().fetch().data
        if not experiments:
            console.print(
                f"No experiments in {escape(server or db)} yet; "
                "start one with: optiloop run FILE"
            )
            return
        table = Table("id", "name", "type", "observations", "failed", "best")
        for item in experiments:
            experiment = conn.experiments(item.id)
            observations = experiment.observations().fetch().data
            failed = sum(1 for o in observations if o.failed)
            budget = item.observation_budget or "-"
            best_page = experiment.best_assignments().fetch().data
            best_text = _values_text(best_page[0]) if best_page else "none feasible"
            table.add_row(
                str(item.id),
                Text(item.name),
                item.type,
                f"{len(observations)}/{budget}",
                str(failed),
                Text(best_text),
            )
        console.print(table)

        if runs_of is None:
            runs_of = _newest_experiment(conn)
        _print_run_logs(conn, runs_of, every_run=logs)


# Lines of a run's output that `optiloop status` shows.
LOG_LINES = 20


def _print_run_logs(conn: Any, experiment_id: int, every_run: bool) -> None:
    """The runs of an experiment, with the tails of their output.

    Observations stored before run records existed carry only the failing
    seed's stderr; they are shown from that.
    """
    for observation in conn.experiments(experiment_id).observations().fetch().data:
        metadata = observation.metadata or {}
        for run in _run_records(metadata, observation.failed):
            if not every_run and run.get("status") in ("ok", "pruned"):
                continue
            title = (
                f"suggestion {observation.suggestion}, seed {run.get('seed')}: "
                f"{run.get('status')}"
            )
            if run.get("reason"):
                title += f" ({run['reason']})"
            console.print(Text(title, style="bold"))
            attempts = run.get("attempts") or []
            if len(attempts) > 1:
                tries = "; ".join(
                    f"{a.get('status')} on {a.get('node')} after "
                    f"{a.get('wall_seconds', 0):.1f} s"
                    for a in attempts
                )
                console.print(Text(f"  attempts: {tries}"))
            streams = ("stdout_tail", "stderr_tail") if every_run else ("stderr_tail",)
            for stream in streams:
                lines = (run.get(stream) or "").splitlines()[-LOG_LINES:]
                if lines:
                    console.print(Text(f"  {stream.removesuffix('_tail')}:"))
                    # Soft wrap keeps each log line whole, as the job wrote it.
                    text = Text("\n".join(f"    {line}" for line in lines))
                    console.print(text, soft_wrap=True)


def _run_records(metadata: dict[str, Any], failed: bool) -> list[dict[str, Any]]:
    runs = metadata.get("runs")
    if isinstance(runs, list):
        return [run for run in runs if isinstance(run, dict)]
    if failed:
        return [
            {
                "seed": metadata.get("failed_seed"),
                "status": "failed",
                "reason": metadata.get("reason"),
                "stderr_tail": metadata.get("stderr_tail"),
            }
        ]
    return []


@app.command()
def report(
    out: Annotated[Path, typer.Option("--out", "-o", help="HTML file to write.")],
    db: DbOption = DEFAULT_DB,
    experiment: ExperimentOption = None,
    campaign: Annotated[
        int | None,
        typer.Option("--campaign", "-c", help="Report this campaign instead."),
    ] = None,
) -> None:
    """Write one self-contained HTML report of an experiment or a campaign
    (opens offline)."""
    from optiloop.store import Store

    if experiment is not None and campaign is not None:
        errors.print(
            "[red]error:[/] --experiment and --campaign: give one of them, not both",
            highlight=False,
        )
        raise typer.Exit(2)

    with _user_errors():
        _refuse_missing_database(db)
    with _user_errors(), Store(db) as store:
        if campaign is None:
            html, what = _experiment_report(store, experiment)
        else:
            html, what = _campaign_report(store, campaign)
        try:
            out.write_text(html, encoding="utf-8")
        except OSError as error:
            raise OptiloopError(f"--out {out}: cannot write ({error})") from None
    console.print(f"Wrote {escape(str(out))}: {what}")


def _refuse_missing_database(db: str) -> None:
    """A command that reads a database: opening a SQLite file that is not
    there would create an empty one and then find nothing in it."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(db)
    except ArgumentError:
        return  # the store names what is wrong with the URL
    path = url.database
    if url.get_backend_name() != "sqlite" or path in (None, "", ":memory:"):
        return
    if not Path(path).exists():
        raise OptiloopError(
            f"--db {db}: no database file at {path}; run an experiment first "
            "(optiloop run SPEC), or point --db (or OPTILOOP_DB) at an existing "
            "database"
        )


def _experiment_report(store: Any, experiment: int | None) -> tuple[str, str]:
    """The report of an experiment (default: the newest), and what it holds."""
    from optiloop.analysis import render_report

    records = store.list_experiments()
    if experiment is None:
        if not records:
            raise OptiloopError("no experiment in this database; run one first")
        experiment = max(r.id for r in records)
    record = store.get_experiment(experiment)
    observations = store.list_observations(record.id)
    title = f"Experiment {record.id}: {record.spec.name}"
    html = render_report(record.spec, observations, title)
    return html, f"{len(observations)} observations of experiment {record.id}"


def _campaign_report(store: Any, campaign_id: int) -> tuple[str, str]:
    """The report of a campaign, and what it holds.

    It is compared, as the dashboard does, with the newest grid search of
    the same space (or, for a grid search, the newest campaign).
    """
    from optiloop.analysis.report import render_campaign_report
    from optiloop.service.dashboard import (
        campaign_parts,
        compare_with_partner,
        comparison_partner,
    )

    campaign = store.get_campaign(campaign_id)
    experiments = store.campaign_experiments(campaign.id)
    parts = campaign_parts(store, experiments)
    partner = comparison_partner(store, campaign, experiments, campaign.owner_token_id)
    rounds = campaign.file.get("rounds") or {}
    html = render_campaign_report(
        campaign.name,
        parts,
        f"Campaign {campaign.id}: {campaign.name}",
        state=campaign.state,
        max_rounds=rounds.get("max"),
        result=campaign.result,
        comparison=compare_with_partner(store, campaign, parts, partner),
    )
    runs = sum(len(part.own_runs) for part in parts)
    return html, f"{len(parts)} experiments ({runs} runs) of campaign {campaign.id}"


@app.command()
def serve(
    db: DbOption = DEFAULT_DB,
    host: Annotated[
        str, typer.Option(help="Address to listen on; 0.0.0.0 for every one.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8765,
) -> None:
    """Serve SigOpt's v1 REST API over the database, for a team's workers,
    and the dashboard at / (sign in with an API token)."""
    import uvicorn

    from optiloop.service import create_app

    with _user_errors():
        application = create_app(db)
    errors.print(
        f"Serving {db}: dashboard at http://{host}:{port}/, "
        f"API at http://{host}:{port}/v1",
        highlight=False,
    )
    uvicorn.run(application, host=host, port=port, log_level="warning")


@app.command()
def grid(
    spec_file: Annotated[
        Path, typer.Argument(help="Experiment or campaign file (YAML or JSON).")
    ],
    points_per_parameter: Annotated[
        int,
        typer.Option(
            "--points-per-parameter",
            "-n",
            min=1,
            help="Values per numeric parameter; categoricals keep every value.",
        ),
    ] = 3,
    db: DbOption = DEFAULT_DB,
    parallel: ParallelOption = None,
    campaign: Annotated[
        int | None,
        typer.Option(help="Continue this grid campaign instead of starting one."),
    ] = None,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """Grid-search the file's space, stored as a campaign for 'optiloop compare'."""
    from optiloop.campaign_spec import CampaignSpec, load_campaign_or_spec
    from optiloop.optimizers.grid_points import grid_search_spec
    from optiloop.runner.executor import make_executor
    from optiloop.runner.grid import (
        create_grid_campaign,
        run_grid,
        stored_grid_spec,
    )

    with _user_errors():
        loaded = load_campaign_or_spec(spec_file)
        spec = loaded.experiment if isinstance(loaded, CampaignSpec) else loaded
        grid_spec = grid_search_spec(spec, points_per_parameter)
        conn = _connect(db, server, token)
        if campaign is not None and stored_grid_spec(conn, campaign) != grid_spec:
            raise SpecError(
                f"{spec_file} with --points-per-parameter {points_per_parameter} "
                f"describes another grid than campaign {campaign}; continue it "
                "with the file and points that started it, or drop --campaign"
            )

        points = grid_spec.observation_budget
        axes = ", ".join(
            f"{p.name}: {p.n_values}" for p in grid_spec.space().parameters
        )
        where = server or db
        if campaign is None:
            campaign = create_grid_campaign(conn, grid_spec)
            console.print(
                f"Created grid campaign {campaign} in {escape(where)}: "
                f"{points} points ({escape(axes)}) x "
                f"{grid_spec.seeds_per_point} seeds"
            )
        else:
            console.print(f"Continuing grid campaign {campaign} in {escape(where)}")
        again = f"optiloop grid {spec_file} -n {points_per_parameter}"
        again += f" --campaign {campaign}"
        if server is not None:
            again += f" --server {server}"
        elif db != DEFAULT_DB:
            again += f" --db {db}"

        interrupts = _Interrupts()
        try:
            with interrupts, _progress(points, grid_spec.seeds_per_point) as on_event:
                summary = run_grid(
                    conn,
                    grid_spec,
                    lambda s: make_executor(s, parallel),
                    campaign,
                    on_event=on_event,
                    should_stop=interrupts.requested,
                )
        except KeyboardInterrupt:
            _stop_at_once(again)

        console.print(
            f"Grid campaign {summary.campaign_id} (experiment "
            f"{summary.experiment_id}): {summary.observation_count} of "
            f"{summary.points} points observed ({summary.stopped_because})."
        )
        if not summary.finished:
            console.print(f"Continue it with:\n  {escape(again)}")
        _print_best(conn, summary.experiment_id)
        console.print(
            f"Set it beside a campaign: optiloop compare {summary.campaign_id} ID"
        )


@app.command()
def compare(
    first: Annotated[int, typer.Argument(help="A campaign id (grid searches too).")],
    second: Annotated[int, typer.Argument(help="The campaign to set beside it.")],
    db: DbOption = DEFAULT_DB,
    baseline: Annotated[
        int | None,
        typer.Option(help="Campaign the other is measured against (default: FIRST)."),
    ] = None,
    reference_value: Annotated[
        float | None,
        typer.Option(
            help="A value of the metric to measure both against, such as the "
            "converge epoch of the recipe the search started from."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Compute hours per cluster, and each campaign's gain on a baseline in percent."""
    from optiloop.analysis.compute import compare as compare_searches
    from optiloop.store import Store

    with _user_errors():
        _refuse_missing_database(db)
        if reference_value is not None and not math.isfinite(reference_value):
            raise OptiloopError(
                f"--reference-value must be a finite number, got {reference_value}"
            )
    with _user_errors(), Store(db) as store:
        if first == second:
            raise OptiloopError(
                f"compare needs two different campaigns, got {first} twice"
            )
        ids = (first, second)
        if baseline is None:
            baseline = first
        if baseline not in ids:
            raise OptiloopError(
                f"--baseline {baseline} is not one of the compared campaigns "
                f"{first} and {second}; pass one of them"
            )
        searches = [_search_record(store, campaign_id) for campaign_id in ids]
        comparison = compare_searches(searches, ids.index(baseline), reference_value)

    if as_json:
        data = {"campaigns": dict(zip(comparison.names, ids)), **comparison.to_dict()}
        typer.echo(json.dumps(data))
        return
    for table in _comparison_tables(comparison, f"campaign {baseline}"):
        console.print(table)
    for name, unmeasured in zip(comparison.names, comparison.unmeasured):
        if unmeasured:
            console.print(
                f"[yellow]{escape(name)}: {unmeasured} observations recorded no "
                "compute time[/] and are left out of its hours."
            )


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Argument(help="Who or what uses the token.")],
    db: DbOption = DEFAULT_DB,
) -> None:
    """Make an API token and print it; it is shown this once, never again."""
    from optiloop.store import Store

    with _user_errors(), Store(db) as store:
        record, secret = store.create_token(name)
    errors.print(
        f"Token {record.id} ({name}) created; it is shown only now:",
        highlight=False,
    )
    typer.echo(secret)


@token_app.command("list")
def token_list(db: DbOption = DEFAULT_DB) -> None:
    """List the API tokens: id, name, when made, and whether revoked.

    The tokens themselves are not stored, so they cannot be shown.
    """
    from optiloop.store import Store

    with _user_errors(), Store(db) as store:
        tokens = store.list_tokens()
    if not tokens:
        errors.print("No tokens yet; make one with 'optiloop token create NAME'.")
        return
    table = Table("id", "name", "created", "state")
    for token in tokens:
        created = token.created.strftime("%Y-%m-%d %H:%M UTC")
        state = "revoked" if token.revoked else "active"
        table.add_row(str(token.id), escape(token.name), created, state)
    console.print(table)


@token_app.command("revoke")
def token_revoke(
    name_or_id: Annotated[
        str, typer.Argument(help="The token's name, or its id from 'token list'.")
    ],
    db: DbOption = DEFAULT_DB,
) -> None:
    """Refuse a token from now on (401); its experiments stay stored."""
    from optiloop.store import Store

    with _user_errors(), Store(db) as store:
        record = store.revoke_token(name_or_id)
    errors.print(f"Token {record.id} ({escape(record.name)}) revoked.", highlight=False)


def _connect(
    db: str, server: str | None, token: str | None, reading: bool = False
) -> Any:
    """A connection to the server when one is named, else to the database.

    ``reading``: the command only reads what is stored, so a database file
    that is not there is an error rather than a new empty file.
    """
    from optiloop.client import Connection

    if server is None:
        if reading:
            _refuse_missing_database(db)
        if db.strip() in ("", "sqlite://", "sqlite:///", "sqlite:///:memory:"):
            raise OptiloopError(
                f"--db {db!r} names no database file, so every result would be "
                "lost when the command ends; give one, e.g. sqlite:///optiloop.db"
            )
        return Connection(db=db)
    return Connection(url=server, token=token)


def _print_best(conn: Any, experiment_id: int) -> None:
    page = conn.experiments(experiment_id).best_assignments().fetch()
    if not page.data:
        console.print(
            f"[yellow]Experiment {experiment_id} has no feasible point yet[/]: "
            "no observation succeeded and met every threshold."
        )
        return
    for item in page.data:
        table = Table(title=f"Best point of experiment {experiment_id}")
        table.add_column("name")
        table.add_column("value", justify="right")
        for name, value in dict(item.assignments).items():
            table.add_row(Text(name), Text(str(value)))
        noisy = False
        for value in item.values:
            stddev = getattr(value, "value_stddev", None)
            noisy = noisy or bool(stddev)
            spread = f" ± {stddev:.3g}" if stddev is not None else ""
            table.add_row(Text(value.name, style="bold"), f"{value.value:.6g}{spread}")
        if noisy:
            # With noisy values the pick is the models', not the raw best.
            table.caption = (
                "chosen by the models' posterior mean; values are the point's "
                "measured mean ± sd over its seeds"
            )
        console.print(table)


def _best_as_dict(item: Any) -> dict[str, Any]:
    return {
        "observation": item.id,
        "assignments": dict(item.assignments),
        "values": {
            v.name: {"value": v.value, "value_stddev": v.value_stddev}
            for v in item.values
        },
    }


def _values_text(item: Any) -> str:
    return ", ".join(f"{v.name}={v.value:.4g}" for v in item.values)


def _refuse_other_spec(spec: Any, stored: Any, spec_file: Path) -> None:
    """Refuse to continue an experiment with a file that describes another.

    The loop trains what the file says and reports it to the stored
    experiment, so the two must agree on what is searched and measured.
    """
    from optiloop.client.shapes import metric_json, parameter_json

    expected = {
        "parameters": [parameter_json(p) for p in spec.parameters],
        "metrics": [metric_json(m) for m in spec.metrics],
        "seeds_per_point": spec.seeds_per_point,
        "job": spec.to_dict().get("job"),
    }
    found = stored.to_json()
    for field, value in expected.items():
        if json.dumps(found.get(field)) != json.dumps(value):
            raise SpecError(
                f"{field}: {spec_file} differs from experiment {stored.id} as "
                "stored; continue it with the file that created it, or drop "
                "--experiment to start a new experiment"
            )


def _search_record(store: Any, campaign_id: int) -> Any:
    """A stored campaign as the compute analysis reads it."""
    from optiloop.analysis.compute import SearchRecord

    campaign = store.get_campaign(campaign_id)
    experiments = store.campaign_experiments(campaign_id)
    if not experiments:
        raise OptiloopError(
            f"campaign {campaign_id} has no experiment yet; run it before comparing"
        )
    groups = []
    for experiment in experiments:
        label = experiment.campaign_role or "round"
        if label == "round":
            label = f"round {experiment.campaign_round}"
        groups.append((label, store.list_observations(experiment.id)))
    name = f"{campaign_id}: {campaign.name}"
    return SearchRecord(name, experiments[0].spec, groups)


def _comparison_tables(comparison: Any, baseline: str) -> list[Table]:
    """The compute table and the objective table of ``optiloop compare``.

    ``baseline`` is how the objective table's header names the baseline.
    """
    compute = Table(title="Compute (device-hours)")
    compute.add_column("cluster")
    for name in comparison.names:
        compute.add_column(Text(name), justify="right")
    for row in comparison.compute:
        style = "bold" if row.cluster == "total" else None
        cells = [_hours_text(hours) for hours in row.hours]
        compute.add_row(Text(row.cluster), *cells, style=style)

    word = "reduction" if comparison.objective == "minimize" else "gain"
    objective = Table(title=f"Objective: {comparison.metric} ({comparison.objective})")
    objective.add_column("campaign")
    objective.add_column("best (mean ± sd)", justify="right")
    objective.add_column("from")
    objective.add_column(Text(f"{word} vs {baseline}"), justify="right")
    if comparison.reference_value is not None:
        objective.add_column(
            f"{word} vs {comparison.reference_value:g}", justify="right"
        )
    for row in comparison.objectives:
        if row.answer is None:
            cells = ["none feasible", "-"]
        else:
            spread = "" if row.answer.stddev is None else f" ± {row.answer.stddev:.3g}"
            source = row.answer.source
            if not row.answer.feasible:
                source += ", infeasible"
            cells = [f"{row.answer.value:.4g}{spread}", source]
        if row.name == comparison.baseline:
            cells.append("baseline")
        else:
            cells.append(_percent_text(row.versus_baseline))
        if comparison.reference_value is not None:
            cells.append(_percent_text(row.versus_reference))
        objective.add_row(Text(row.name), *cells)
    return [compute, objective]


def _hours_text(hours: float) -> str:
    return f"{hours:,.0f}" if hours >= 1000 else f"{hours:.3g}"


def _percent_text(percent: float | None) -> str:
    return "-" if percent is None else f"{percent:+.1f}%"


def _newest_experiment(conn: Any) -> int:
    experiments = conn.experiments().fetch().data
    if not experiments:
        raise OptiloopError("no experiment in this database; run one first")
    return max(e.id for e in experiments)


@contextmanager
def _user_errors() -> Iterator[None]:
    """Turn optiloop's errors into a red message and exit status 2."""
    try:
        yield
    except OptiloopError as error:
        errors.print(
            f"[red]error:[/] {escape(str(error))}", highlight=False, soft_wrap=True
        )
        raise typer.Exit(2) from None


class _progress:
    """A rich progress bar over observations, fed by the loop's events."""

    def __init__(self, total: int | None, seeds_per_point: int) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self._seeds = seeds_per_point
        self._bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[last]}"),
            console=errors,
        )
        self._task = self._bar.add_task("observations", total=total, last="")

    def __enter__(self) -> Any:
        self._bar.start()
        return self._on_event

    def __exit__(self, *_: Any) -> None:
        self._bar.stop()

    def _on_event(self, event: Any) -> None:
        if event.kind != "observed" or event.outcome is None:
            return
        outcome = event.outcome
        if outcome.failed:
            last = f"[red]suggestion {event.suggestion_id} failed[/]"
        else:
            last = escape(
                ", ".join(f"{v['name']}={v['value']:.4g}" for v in outcome.values)
            )
        self._bar.update(self._task, completed=event.observation_count, last=last)


# Campaigns (`run` with a campaign file, `best` and `status` --campaign)


def _run_campaign_file(
    conn: Any,
    campaign: Any,
    spec_file: Path,
    campaign_id: int | None,
    parallel: int | None,
    where: str,
) -> None:
    """Run or continue a campaign with progress per round; see ``run``."""
    from optiloop.runner import make_executor
    from optiloop.runner.campaign import run_campaign

    if campaign_id is None:
        campaign_id = conn.campaigns().create(file=campaign.to_dict()).id
        rounds, validation = campaign.rounds, campaign.validation
        console.print(
            f"Created campaign {campaign_id} ({escape(campaign.name)}) in "
            f"{escape(where)}: up to {rounds.max} rounds of {rounds.budget} "
            f"points x {campaign.experiment.seeds_per_point} seeds, then the "
            f"{validation.top} best points x {validation.seeds} seeds"
        )
    else:
        console.print(f"Continuing campaign {campaign_id} in {escape(where)}")
    again = f"optiloop run {spec_file} --campaign {campaign_id}"
    if where.startswith(("http://", "https://")):
        again += f" --server {where}"
    elif where != DEFAULT_DB:
        again += f" --db {where}"

    interrupts = _Interrupts()
    try:
        with interrupts, _CampaignProgress() as on_event:
            summary = run_campaign(
                conn,
                campaign,
                campaign_id=campaign_id,
                executor_factory=lambda spec: make_executor(spec, parallel),
                on_event=on_event,
                should_stop=interrupts.requested,
            )
    except KeyboardInterrupt:
        _stop_at_once(again)

    if summary.state == "stopped":
        console.print(
            f"Campaign {campaign_id} stopped ({escape(summary.stopped_because)}); "
            f"nothing is lost. Continue it with:\n  {escape(again)}"
        )
        return
    _print_campaign_result(conn, campaign_id)


class _Interrupts:
    """Ctrl-C once asks the campaign to stop cleanly; twice stops it at once."""

    def __init__(self) -> None:
        self.count = 0
        self._previous: Any = None

    def requested(self) -> bool:
        return self.count > 0

    def __enter__(self) -> _Interrupts:
        self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *_: Any) -> None:
        signal.signal(signal.SIGINT, self._previous)

    def _handle(self, signal_number: int, frame: Any) -> None:
        self.count += 1
        if self.count > 1:
            raise KeyboardInterrupt
        errors.print(
            "[yellow]Stopping[/]: the runs in progress finish and are stored, "
            "no new point starts. Ctrl-C again to stop at once.",
            highlight=False,
        )


class _CampaignProgress:
    """A progress bar per round (and for the validation), and a table of
    each refinement's bounds and reasons as it is made."""

    def __init__(self) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self._bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[last]}"),
            console=errors,
        )
        self._task: Any = None

    def __enter__(self) -> Any:
        self._bar.start()
        return self._on_event

    def __exit__(self, *_: Any) -> None:
        self._bar.stop()

    def _on_event(self, event: Any) -> None:
        if event.kind in ("round_started", "validation_started"):
            name = "validation" if event.round is None else f"round {event.round}"
            self._task = self._bar.add_task(
                name, total=event.target, completed=event.observed, last=""
            )
        elif event.kind == "loop" and event.loop.kind == "observed":
            outcome = event.loop.outcome
            if outcome is None or outcome.failed:
                last = f"[red]suggestion {event.loop.suggestion_id} failed[/]"
            else:
                last = escape(
                    ", ".join(f"{v['name']}={v['value']:.4g}" for v in outcome.values)
                )
            self._bar.update(
                self._task, completed=event.loop.observation_count, last=last
            )
        elif event.kind == "round_finished":
            self._bar.update(self._task, completed=event.observed, last="")
            self._bar.console.print(
                Text(f"Round {event.round}: {event.message}"), highlight=False
            )
        elif event.kind == "refined":
            self._bar.console.print(
                _refinement_table(
                    event.round,
                    event.refinement.summary,
                    _bounds_rows(event.refinement.bounds, event.refinement.reasons),
                )
            )


def _bounds_rows(bounds: Any, reasons: dict[str, str]) -> list[tuple[str, str, str]]:
    """(parameter, new bounds, reason) rows, from records or stored JSON."""
    rows = []
    for name, reason in reasons.items():
        new = bounds.get(name)
        if new is None:
            text = "unchanged"
        else:
            low, high, grid = (
                (new["min"], new["max"], new.get("grid"))
                if isinstance(new, dict)
                else (new.min, new.max, new.grid)
            )
            text = f"[{low:.4g}, {high:.4g}]"
            if grid is not None:
                text += " grid " + ", ".join(f"{m:.4g}" for m in grid)
        rows.append((name, text, reason))
    return rows


def _refinement_table(
    round_number: int, summary: str, rows: list[tuple[str, str, str]]
) -> Table:
    table = Table(
        title=f"Bounds of round {round_number}",
        caption=summary,
        caption_justify="left",
    )
    table.add_column("parameter")
    table.add_column("bounds")
    table.add_column("why", overflow="fold")
    for name, bounds, reason in rows:
        table.add_row(Text(name), Text(bounds), Text(reason))
    return table


def _print_campaign_result(conn: Any, campaign_id: int) -> None:
    """The campaign's rounds and its validated answer."""
    stored = conn.campaigns(campaign_id).fetch()
    result = stored.result or {}
    metric = result.get("metric", "value")

    rounds = Table(title=f"Rounds of campaign {campaign_id}")
    for column in ("round", "experiment", f"best {metric} (new points)", "so far"):
        rounds.add_column(column)
    for item in result.get("round_best", []):
        rounds.add_row(
            str(item["round"]),
            str(item["experiment"]),
            _best_text(item.get("best")),
            _best_text(item.get("best_so_far")),
        )
    console.print(rounds)

    validated = Table(title=f"Validated points of campaign {campaign_id}")
    for column in ("point", f"{metric} (validation)", "seeds", "in the search"):
        validated.add_column(column, overflow="fold")
    for item in result.get("validated", []):
        search = item.get("search", {})
        seeds = str(item.get("seeds"))
        if item.get("converged_seeds") is not None:
            seeds = f"{item['converged_seeds']} of {seeds} converged"
        validated.add_row(
            Text(_assignments_text(item["assignments"])),
            _spread_text(
                item.get("mean"), item.get("std"), item.get("meets_thresholds", True)
            ),
            seeds,
            _spread_text(search.get("mean"), search.get("std"), True),
        )
    console.print(validated)

    console.print(
        f"Campaign {campaign_id}: {stored.state} "
        f"({escape(str(result.get('stopped_because', '')))})."
    )
    best = result.get("best")
    if best is None:
        console.print("[yellow]No validated point met every threshold.[/]")
        return
    console.print(
        f"[bold]Best[/]: {escape(_assignments_text(best['assignments']))} -> "
        f"{metric} {_spread_text(best['mean'], best['std'], True)} "
        f"over {best['seeds']} seeds"
    )
    if not best.get("feasible", True):
        console.print(
            f"[yellow]{best.get('converged_seeds')} of {best['seeds']} seeds "
            "converged[/]: no validated point converged on every seed."
        )


def _print_campaign_best(conn: Any, campaign_id: int, as_json: bool) -> None:
    stored = conn.campaigns(campaign_id).fetch()
    result = stored.result or {}
    if as_json:
        answer = {
            "campaign": campaign_id,
            "state": stored.state,
            "metric": result.get("metric"),
            "best": result.get("best"),
            "validated": result.get("validated", []),
        }
        typer.echo(json.dumps(answer))
        return
    if not result:
        console.print(
            f"[yellow]Campaign {campaign_id} has no result yet[/] (it is "
            f"{stored.state}); its rounds are experiments: optiloop status "
            f"--campaign {campaign_id}"
        )
        return
    _print_campaign_result(conn, campaign_id)


def _print_campaign_status(conn: Any, campaign_id: int) -> None:
    """A campaign's experiments, the refinement of each round, its result."""
    stored = conn.campaigns(campaign_id).fetch()
    console.print(
        f"Campaign {campaign_id} ({escape(stored.name)}): {stored.state}",
        highlight=False,
    )
    table = Table("experiment", "role", "round", "observations", "warm start", "best")
    listed = conn.campaigns(campaign_id).experiments().fetch().data
    for item in listed:
        link = item.campaign or {}
        observations = conn.experiments(item.id).observations().fetch().data
        copies = sum(1 for o in observations if "warm_start" in (o.metadata or {}))
        best_page = conn.experiments(item.id).best_assignments().fetch().data
        table.add_row(
            str(item.id),
            str(link.get("role")),
            str(link.get("round") or "-"),
            f"{len(observations)}/{item.observation_budget or '-'}",
            str(copies),
            Text(_values_text(best_page[0]) if best_page else "none feasible"),
        )
    console.print(table)

    for item in listed:
        link = item.campaign or {}
        refinement = link.get("refinement") or {}
        if link.get("role") != "round" or "bounds" not in refinement:
            continue
        rows = _bounds_rows(refinement["bounds"], refinement.get("reasons", {}))
        console.print(_refinement_table(link["round"], refinement["summary"], rows))
    if stored.result:
        _print_campaign_result(conn, campaign_id)


def _best_text(value: float | None) -> str:
    return "none feasible" if value is None else f"{value:.6g}"


def _assignments_text(assignments: dict[str, Any]) -> str:
    return ", ".join(
        f"{name}={value:.4g}" if isinstance(value, float) else f"{name}={value}"
        for name, value in assignments.items()
    )


def _spread_text(mean: float | None, std: float | None, feasible: Any) -> str:
    if mean is None:
        return "failed"
    text = f"{mean:.4g}" if std is None else f"{mean:.4g} ± {std:.2g}"
    return text if feasible else f"{text} (infeasible)"
