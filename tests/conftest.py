"""Fixtures shared by every test folder: databases and real servers.

``database_url`` is a fresh database on each backend: a SQLite file, and a
new PostgreSQL database when ``OPTILOOP_TEST_POSTGRES_URL`` names a server
(``.ci/run`` starts one); without it the PostgreSQL cases are skipped.

A server is ``optiloop serve`` in its own process, listening on 127.0.0.1
at a port the system found free, stopped when its test (or the session)
ends.  Nothing listens on any other address.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from optiloop.store import Store

POSTGRES_URL_VARIABLE = "OPTILOOP_TEST_POSTGRES_URL"

# uvicorn starts in about a second; a loaded CI machine may take longer.
START_TIMEOUT_SECONDS = 60.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@contextmanager
def running_server(db_url: str, log: Path) -> Iterator[str]:
    """Serve ``db_url``; yield the server's base URL (without ``/v1``)."""
    port = free_port()
    command = [
        str(Path(sys.executable).with_name("optiloop")),
        "serve",
        "--db",
        db_url,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    url = f"http://127.0.0.1:{port}"
    with log.open("w") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
    try:
        _wait_until_up(url, process, log)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_until_up(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"optiloop serve exited early:\n{log.read_text()}")
        try:
            # Any answer (401 without a token) means the server is up.
            httpx.get(f"{url}/v1/experiments", timeout=1.0)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"optiloop serve did not start in time:\n{log.read_text()}")


ServerStarter = Callable[[str, Path], AbstractContextManager[str]]


@dataclass(frozen=True)
class SharedServer:
    url: str
    db_url: str

    def new_token(self, name: str = "test") -> str:
        """A token of its own for a test: it sees only its own experiments."""
        with Store(self.db_url) as store:
            return store.create_token(name)[1]


@pytest.fixture(scope="session")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SharedServer]:
    """One server for the session; tests keep apart by each using a new token."""
    folder = tmp_path_factory.mktemp("server")
    db_url = f"sqlite:///{folder / 'shared.db'}"
    with running_server(db_url, folder / "server.log") as url:
        yield SharedServer(url, db_url)


@pytest.fixture
def start_server() -> ServerStarter:
    """``with start_server(db_url, log_path) as url:`` serves one database."""
    return running_server


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A new, empty database on each backend; dropped afterwards."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.db'}"
        return

    server_url = os.environ.get(POSTGRES_URL_VARIABLE)
    if not server_url:
        pytest.skip(
            f"PostgreSQL case: set {POSTGRES_URL_VARIABLE} to a server URL "
            "(postgresql+psycopg://user@host:port/db); .ci/run starts one"
        )
    with _postgres_database(server_url) as url:
        yield url


@contextmanager
def _postgres_database(server_url: str) -> Iterator[str]:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"optiloop_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f"CREATE DATABASE {name}"))
    try:
        yield (
            make_url(server_url)
            .set(database=name)
            .render_as_string(hide_password=False)
        )
    finally:
        with admin.connect() as connection:
            connection.execute(text(f"DROP DATABASE {name} WITH (FORCE)"))
        admin.dispose()
