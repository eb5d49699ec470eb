"""The Ray executor's arithmetic and failure kinds, on plain data.

No cluster is started here; ``test_ray_cluster.py`` runs on a real one.
"""

from __future__ import annotations

import socket
import sys

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
