"""Tests for the digits + LARS training workload against hand-computed values."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from optiloop.workloads import digits_lars
from optiloop.workloads.digits_lars import (
    DigitsResNet,
    Lars,
    lars_param_groups,
    learning_rate,
)


# 5 steps per epoch, 2 warmup epochs and 5 train epochs: warmup covers steps
# 0..9, the decay runs from step 10 (progress 0) to step 24 (progress 1).
def schedule_at(step: int) -> float:
    return learning_rate(
        step, steps_per_epoch=5, base_lr=2.0, warmup_epochs=2, train_epochs=5
    )


def test_schedule_starts_at_zero() -> None:
    assert schedule_at(0) == 0.0


def test_schedule_warms_up_linearly() -> None:
    assert schedule_at(5) == pytest.approx(1.0)


def test_schedule_reaches_base_at_end_of_warmup() -> None:
    assert schedule_at(10) == pytest.approx(2.0)


def test_schedule_poly2_midpoint() -> None:
    # Step 17 is halfway through the decay: (2 - 1e-4) * 0.5**2 + 1e-4.
    assert schedule_at(17) == pytest.approx(0.500075)


def test_schedule_ends_at_end_lr() -> None:
    assert schedule_at(24) == pytest.approx(1e-4)
    assert schedule_at(30) == pytest.approx(1e-4)


def test_schedule_without_warmup_starts_at_base() -> None:
    assert learning_rate(0, 5, 2.0, warmup_epochs=0, train_epochs=5) == 2.0


def one_step(
    weight: torch.Tensor,
    gradient: torch.Tensor,
    lr: float,
    weight_decay: float,
    exclude_from_lars: bool = False,
) -> torch.Tensor:
    parameter = weight.clone().requires_grad_(True)
    parameter.grad = gradient.clone()
    group = {"params": [parameter], "exclude_from_lars": exclude_from_lars}
    optimizer = Lars([group], lr=lr, momentum=0.9, weight_decay=weight_decay)
    optimizer.step()
    return parameter.detach()


def test_lars_step_uses_trust_ratio_and_weight_decay() -> None:
    # ||w|| = 5, ||g|| = 1: trust = 0.001 * 5 / (1 + 0.1 * 5) = 1 / 300.
    # Step = 2 * (1 / 300) * (g + 0.1 * w) = (1 / 150) * [0.9, 1.2].
    updated = one_step(
        torch.tensor([[3.0, 4.0]]),
        torch.tensor([[0.6, 0.8]]),
        lr=2.0,
        weight_decay=0.1,
    )
    assert updated.flatten().tolist() == pytest.approx([2.994, 3.992])


def test_lars_trust_is_one_for_zero_weights() -> None:
    updated = one_step(
        torch.zeros(1, 2),
        torch.tensor([[1.0, -2.0]]),
        lr=0.5,
        weight_decay=0.1,
    )
    assert updated.flatten().tolist() == pytest.approx([-0.5, 1.0])


def test_lars_trust_is_one_for_zero_gradient() -> None:
    # Only weight decay acts: w - 0.5 * 0.1 * w.
    updated = one_step(
        torch.tensor([[3.0, 4.0]]),
        torch.zeros(1, 2),
        lr=0.5,
        weight_decay=0.1,
    )
    assert updated.flatten().tolist() == pytest.approx([2.85, 3.8])


def test_excluded_params_get_plain_momentum_sgd() -> None:
    # No trust ratio and no weight decay even though the group has one.
    parameter = torch.tensor([1.0], requires_grad=True)
    group = {"params": [parameter], "exclude_from_lars": True}
    optimizer = Lars([group], lr=0.1, momentum=0.9, weight_decay=0.1)

    parameter.grad = torch.tensor([0.5])
    optimizer.step()
    assert parameter.item() == pytest.approx(0.95)

    # Velocity 0.9 * 0.05 + 0.1 * 0.5 = 0.095.
    optimizer.step()
    assert parameter.item() == pytest.approx(0.855)


def test_param_groups_exclude_exactly_the_1d_params() -> None:
    model = DigitsResNet()
    scaled, excluded = lars_param_groups(model)

    assert all(p.ndim > 1 for p in scaled["params"])
    assert all(p.ndim == 1 for p in excluded["params"])
    assert excluded["exclude_from_lars"] is True
    total = len(scaled["params"]) + len(excluded["params"])
    assert total == len(list(model.parameters()))


def run_workload(*flags: str) -> subprocess.CompletedProcess[str]:
    source_root = Path(digits_lars.__file__).resolve().parents[2]
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(source_root), environment.get("PYTHONPATH")])
    )
    return subprocess.run(
        [sys.executable, "-m", "optiloop.workloads.digits_lars", *flags],
        capture_output=True,
        text=True,
        env=environment,
        timeout=300,
        check=False,
    )


@pytest.mark.slow
def test_short_run_prints_one_json_line_per_epoch() -> None:
    result = run_workload("--train-epochs", "2", "--warmup-epochs", "1")

    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [record["epoch"] for record in records] == [1, 2]
    for record in records:
        assert 0.0 <= record["eval_accuracy"] <= 1.0
        assert record["train_loss"] > 0.0
        assert record["lr"] >= 0.0


@pytest.mark.slow
def test_diverging_run_exits_with_failure() -> None:
    result = run_workload(
        "--train-epochs", "2", "--warmup-epochs", "0", "--base-lr", "1e9"
    )

    assert result.returncode == 1
    assert "diverged" in result.stderr
