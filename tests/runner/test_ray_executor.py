"""The Ray executor's arithmetic and failure kinds, on plain data.

No cluster is started here; ``test_ray_cluster.py`` runs on a real one.
"""

from __future__ import annotations

import http.server
import socket
import sys
import threading

import pytest

from optiloop.experiment import ExecutorSpec
from optiloop.runner.ray_executor import (
    classify_ray_error,
    placeable_runs,
    resource_request,
)

# Two live nodes and a dead one, as ray.nodes() describes them.
NODES = [
    {"Alive": True, "Resources": {"CPU": 8.0, "GPU": 4.0, "gaudi": 8.0}},
    {"Alive": True, "Resources": {"CPU": 4.0, "memory": 1e9}},
    {"Alive": False, "Resources": {"CPU": 64.0, "GPU": 8.0}},
]


@pytest.mark.parametrize(
    ("request_", "runs"),
    [
        # 8 + 4 CPUs; the dead node's 64 do not count.
        ({"CPU": 1}, 12),
        # A GPU run fits only on the first node: min(8 / 2, 4 / 1) = 4.
        ({"CPU": 2, "GPU": 1}, 4),
        # Fractions: 4 GPUs / 0.5 = 8.
        ({"GPU": 0.5}, 8),
        # One run of 8 gaudis; no run of 16 anywhere.
        ({"gaudi": 8}, 1),
        ({"gaudi": 16}, 0),
        # 3 CPUs: two on the first node, one on the second.
        ({"CPU": 3}, 3),
        ({}, sys.maxsize),
    ],
)
def test_placeable_runs_count_per_node(request_: dict[str, float], runs: int) -> None:
    assert placeable_runs(NODES, request_) == runs


def test_the_request_names_ray_resources_and_drops_zeros() -> None:
    settings = ExecutorSpec.model_validate(
        {"kind": "ray", "resources": {"num_cpus": 2, "custom": {"gaudi": 8}}}
    )
    assert resource_request(settings) == {"CPU": 2.0, "gaudi": 8.0}


def test_ray_errors_become_failure_kinds() -> None:
    errors = pytest.importorskip(
        "ray.exceptions", reason="ray is not installed: pip install -e '.[ray]'"
    )
    node = errors.NodeDiedError("Task failed because the node it was on died.\nmore")
    memory = errors.OutOfMemoryError("Task was killed due to low memory.\nmore")

    assert classify_ray_error(node) == (
        "lost",
        "its node died: Task failed because the node it was on died.",
    )
    kind, reason = classify_ray_error(errors.WorkerCrashedError())
    assert (kind, reason.startswith("its worker died: The worker died")) == (
        "lost",
        True,
    )
    assert classify_ray_error(memory) == (
        "oom",
        "out of memory: Task was killed due to low memory.",
    )


def test_an_address_where_nothing_listens_is_refused_at_once() -> None:
    from optiloop.errors import OptiloopError
    from optiloop.runner.ray_executor import _check_reachable

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Nothing listens there now; Ray itself would retry for minutes.
    with pytest.raises(
        OptiloopError, match=rf"job.executor.address: .*127.0.0.1:{port}"
    ):
        _check_reachable(f"127.0.0.1:{port}")
    _check_reachable("auto")


def test_a_port_that_is_not_ray_is_refused_at_once() -> None:
    from optiloop.errors import OptiloopError
    from optiloop.runner.ray_executor import _check_reachable

    # A web server accepts the connection, then answers as HTTP/1, not Ray.
    server = http.server.HTTPServer(
        ("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    address = f"127.0.0.1:{server.server_address[1]}"
    try:
        with pytest.raises(OptiloopError) as raised:
            _check_reachable(address)
    finally:
        server.shutdown()
        server.server_close()
    assert str(raised.value).startswith(
        f"job.executor.address: {address} accepts connections but is not a Ray cluster"
    )


@pytest.mark.parametrize(
    ("address", "loopback"),
    [
        ("127.0.0.1:6379", True),
        ("127.0.0.2:6379", True),
        ("localhost:6379", True),
        ("[::1]:6379", True),
        ("192.0.2.2:6379", False),
        ("head.example.org:6379", False),
        ("ray://127.0.0.1:10001", False),
        ("auto", False),
    ],
)
def test_loopback_addresses_are_told_apart(address: str, loopback: bool) -> None:
    from optiloop.runner.ray_executor import _is_loopback

    assert _is_loopback(address) is loopback


@pytest.mark.parametrize(
    ("request_", "field", "shortfall"),
    [
        (
            {"CPU": 1, "gaudi": 16},
            "job.executor.resources.custom.gaudi",
            "each run asks for 16 gaudi, and the largest node has 8",
        ),
        (
            {"CPU": 9},
            "job.executor.resources.num_cpus",
            "each run asks for 9 CPU, and the largest node has 8",
        ),
        # The dead node's 8 GPUs do not count.
        (
            {"GPU": 5},
            "job.executor.resources.num_gpus",
            "each run asks for 5 GPU, and the largest node has 4",
        ),
        # Each is on some node, but not both on one.
        (
            {"gaudi": 1, "memory": 1},
            "job.executor.resources",
            "each run asks for {'gaudi': 1, 'memory': 1} on one node, and no "
            "node has all of them",
        ),
    ],
)
def test_an_unplaceable_request_names_its_field(
    request_: dict[str, float], field: str, shortfall: str
) -> None:
    from optiloop.runner.ray_executor import unplaceable

    assert placeable_runs(NODES, request_) == 0
    assert unplaceable(NODES, request_) == (field, shortfall)
