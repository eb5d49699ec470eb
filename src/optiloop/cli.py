"""The ``optiloop`` command: run an experiment file, show its best point and status,
serve the REST API and make its tokens.

Heavy modules (the store, the optimizers, the web stack) are imported inside
the commands so that ``optiloop --help`` starts fast.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

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
    spec_file: Annotated[Path, typer.Argument(help="Experiment file (YAML or JSON).")],
    db: DbOption = DEFAULT_DB,
    observations: Annotated[
        int | None,
        typer.Option(
            min=1, help="Stop at this many observations (default: the budget)."
        ),
    ] = None,
    parallel: Annotated[
        int | None,
        typer.Option(
            min=1, help="Jobs at once (default: the spec's parallel_bandwidth)."
        ),
    ] = None,
    experiment: Annotated[
        int | None,
        typer.Option(help="Continue this experiment instead of creating one."),
    ] = None,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """Run an experiment file to its budget, then print the best point."""
    from optiloop.experiment import load_spec
    from optiloop.runner import LocalExecutor, check_runnable, run_experiment

    with _user_errors():
        spec = load_spec(spec_file)
        check_runnable(spec, observations)
        conn = _connect(db, server, token)
        where = server or db
        if experiment is None:
            experiment_id = conn.experiments().create(**spec.to_dict()).id
            console.print(
                f"Created experiment {experiment_id} ({escape(spec.name)}) "
                f"in {escape(where)}"
            )
        else:
            stored = conn.experiments(experiment).fetch()
            _refuse_other_spec(spec, stored, spec_file)
            experiment_id = stored.id
            console.print(f"Continuing experiment {experiment_id} in {escape(where)}")

        target = observations or spec.observation_budget
        executor = LocalExecutor(slots=parallel or spec.parallel_bandwidth)
        try:
            with _progress(target, spec.seeds_per_point) as on_event:
                summary = run_experiment(
                    conn, experiment_id, spec, executor, observations, on_event
                )
        finally:
            executor.shutdown()

        console.print(
            f"Experiment {experiment_id}: {summary.observation_count} observations "
            f"({summary.stopped_because})."
        )
        _print_best(conn, experiment_id)


@app.command()
def best(
    db: DbOption = DEFAULT_DB,
    experiment: ExperimentOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """Print the best feasible point of an experiment."""
    with _user_errors():
        conn = _connect(db, server, token)
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
def status(
    db: DbOption = DEFAULT_DB, server: ServerOption = None, token: TokenOption = None
) -> None:
    """List the experiments with their progress and best value."""
    with _user_errors():
        conn = _connect(db, server, token)
        table = Table("id", "name", "type", "observations", "failed", "best")
        for item in conn.experiments().fetch().data:
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


@app.command()
def report(
    out: Annotated[Path, typer.Option("--out", "-o", help="HTML file to write.")],
    db: DbOption = DEFAULT_DB,
    experiment: ExperimentOption = None,
) -> None:
    """Write one self-contained HTML report of an experiment (opens offline)."""
    from optiloop.analysis import render_report
    from optiloop.store import Store

    with _user_errors(), Store(db) as store:
        records = store.list_experiments()
        if experiment is None:
            if not records:
                raise OptiloopError("no experiment in this database; run one first")
            experiment = max(r.id for r in records)
        record = store.get_experiment(experiment)
        observations = store.list_observations(record.id)
        title = f"Experiment {record.id}: {record.spec.name}"
        html = render_report(record.spec, observations, title)
        try:
            out.write_text(html, encoding="utf-8")
        except OSError as error:
            raise OptiloopError(f"--out {out}: cannot write ({error})") from None
    console.print(
        f"Wrote {escape(str(out))}: {len(observations)} observations "
        f"of experiment {record.id}"
    )


@app.command()
def serve(
    db: DbOption = DEFAULT_DB,
    host: Annotated[
        str, typer.Option(help="Address to listen on; 0.0.0.0 for every one.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8765,
) -> None:
    """Serve SigOpt's v1 REST API over the database, for a team's workers."""
    import uvicorn

    from optiloop.service import create_app

    with _user_errors():
        application = create_app(db)
    errors.print(f"Serving {db} at http://{host}:{port}/v1", highlight=False)
    uvicorn.run(application, host=host, port=port, log_level="warning")


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


def _connect(db: str, server: str | None, token: str | None) -> Any:
    """A connection to the server when one is named, else to the database."""
    from optiloop.client import Connection

    if server is None:
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
        for value in item.values:
            spread = (
                f" ± {value.value_stddev:.3g}"
                if getattr(value, "value_stddev", None) is not None
                else ""
            )
            table.add_row(Text(value.name, style="bold"), f"{value.value:.6g}{spread}")
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
