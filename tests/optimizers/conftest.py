"""Shared fixtures of the optimizer tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from threadpoolctl import threadpool_limits

from optiloop.experiment import ExperimentSpec, parse_spec


@pytest.fixture(autouse=True, scope="session")
def one_blas_thread() -> Iterator[None]:
    """Run linear algebra on one thread.

    The Gaussian-process matrices here are tens of rows; a multithreaded
    BLAS only adds synchronization, and on a busy machine its waiting
    threads made the Bayesian tests ten times slower.
    """
    with threadpool_limits(limits=1):
        yield


@pytest.fixture
def mixed_spec() -> ExperimentSpec:
    """A space with every parameter kind: int, double, log double, an
    explicit grid, a power-of-two grid and a categorical."""
    return parse_spec(
        {
            "parameters": [
                {"name": "layers", "type": "int", "bounds": {"min": 1, "max": 4}},
                {"name": "dropout", "type": "double", "bounds": {"min": 0, "max": 0.5}},
                {
                    "name": "lr",
                    "type": "double",
                    "bounds": {"min": 1e-4, "max": 1.0},
                    "transformation": "log",
                },
                {"name": "batch", "type": "int", "grid": [32, 64, 128]},
                {
                    "name": "weight_decay",
                    "type": "double",
                    "grid_pow2": {"base": 1e-4, "min": 1e-5, "max": 4e-4},
                },
                {
                    "name": "block",
                    "type": "categorical",
                    "categorical_values": ["basic", "wide", "deep"],
                },
            ],
            "metrics": [{"name": "loss", "objective": "minimize"}],
        }
    )
