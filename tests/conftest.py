"""Fixtures shared by every test folder: databases and real servers.

``database_url`` is a fresh database on each backend: a SQLite file, and a
new PostgreSQL database when ``OPTILOOP_TEST_POSTGRES_URL`` names a server
(``scripts/with-postgres`` and ``.ci/run`` start a throwaway one); without
it the PostgreSQL cases are skipped.

A server is ``optiloop serve`` in its own process, listening on 127.0.0.1
at a port the system found free, stopped when its test (or the session)
ends.  ``ray_cluster`` is one real Ray cluster for the session, a head and
a worker node on 127.0.0.1.  Nothing listens on any other address.
"""

from __future__ import annotations

import contextlib
import importlib.util
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
from typing import Any

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
        """A token of its own for a test: it sees only its own experiments.

        Names of tokens in use are unique, so each gets a suffix.
        """
        with Store(self.db_url) as store:
            return store.create_token(f"{name}-{uuid.uuid4().hex[:8]}")[1]


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
            "(postgresql+psycopg://user@host:port/db), or run the tests under "
            "`bash scripts/with-postgres`, which starts a throwaway one"
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


# Ray's settings that keep every socket of a test cluster on 127.0.0.1 (a
# cluster of nodes on one machine is what Ray calls a local cluster) and
# make it send no usage reports and ask for no token.  Ray reads them when
# it is imported, so they are set as the session starts.
RAY_LOOPBACK_ENV = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_AUTH_MODE": "disabled",
}


def pytest_configure(config: pytest.Config) -> None:
    # Whichever test imports Ray first (``ray.exceptions`` will do) fixes
    # its settings for the session, so they are set before any test runs.
    for name, value in RAY_LOOPBACK_ENV.items():
        os.environ.setdefault(name, value)


# Logical CPUs per node: with one CPU per run, the two nodes hold four runs.
RAY_CPUS_PER_NODE = 2


@dataclass
class RayCluster:
    """A real Ray cluster of a head and one worker node, on loopback."""

    cluster: Any
    worker: Any

    @property
    def address(self) -> str:
        address: str = self.cluster.address
        return address

    def worker_pids(self) -> set[int]:
        """The processes of the worker node: raylet, Ray workers, their jobs."""
        import psutil

        pids: set[int] = set()
        for _, process in self.worker.live_processes():
            with contextlib.suppress(psutil.NoSuchProcess):
                root = psutil.Process(process.pid)
                pids.add(root.pid)
                pids.update(p.pid for p in root.children(recursive=True))
        return pids

    def kill_worker(self) -> None:
        """SIGKILL every process of the worker node, as a lost machine."""
        self.cluster.remove_node(self.worker, allow_graceful=False)

    def add_worker(self) -> None:
        self.worker = self.cluster.add_node(num_cpus=RAY_CPUS_PER_NODE)
        self.cluster.wait_for_nodes()


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[RayCluster]:
    """One Ray cluster for the session (it takes ~10 s to start); this
    process is connected to it as a driver."""
    if importlib.util.find_spec("ray") is None:
        pytest.skip("ray is not installed: pip install -e '.[ray]'")
    saved = {name: os.environ.get(name) for name in RAY_LOOPBACK_ENV}
    os.environ.update(RAY_LOOPBACK_ENV)
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": RAY_CPUS_PER_NODE, "include_dashboard": False},
    )
    try:
        worker = cluster.add_node(num_cpus=RAY_CPUS_PER_NODE)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False)
        yield RayCluster(cluster, worker)
    finally:
        ray.shutdown()
        cluster.shutdown()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
