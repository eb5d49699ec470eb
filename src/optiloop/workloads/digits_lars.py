"""Train a small residual network on handwritten digits with LARS.

This is a miniature of the large-batch ImageNet recipe (ResNet + LARS +
warmup + polynomial decay) that runs in seconds on a CPU, so that its
hyperparameters can be tuned for real instead of against a made-up formula.

Data: the 1,797 8x8 handwritten digits bundled with scikit-learn (no
download), scaled to [0, 1] and split once into 1,347 training and 450
validation images.  The split is stratified and fixed: the seed changes only
the initial weights and the order of the training batches.

Model: a conv stem, three residual basic blocks with batch normalisation,
global average pooling and a linear classifier (about 80k weights).

Optimizer: LARS (layer-wise adaptive rate scaling).  Each weight tensor gets
its own trust ratio ``eta * ||w|| / (||g|| + wd * ||w||)`` so that a step
changes it by roughly ``lr * eta`` of its norm, whatever the scale of its
gradient.  Batch-norm parameters and biases (all 1-D tensors) are trained
with plain momentum SGD: no trust ratio and no weight decay.

Schedule: per step, a linear warmup from 0 to the base learning rate, then a
quadratic (power 2) polynomial decay down to ``end_lr`` at the last step.

Output contract: after every epoch the program evaluates on the validation
split and writes one JSON line to stdout, e.g.
``{"epoch": 1, "eval_accuracy": 0.91, "train_loss": 0.3, "lr": 1.9}``.
Everything else goes to stderr.  If the training loss stops being finite the
run has diverged: it says so on stderr and exits with status 1.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn
from torch.nn import functional

logger = logging.getLogger(__name__)

VALIDATION_SIZE = 450

# The split must not move with --seed, otherwise seeds would measure
# different validation sets rather than different training runs.
SPLIT_RANDOM_STATE = 0

LARS_ETA = 0.001

END_LR = 1e-4

DIVERGED_EXIT_STATUS = 1


def learning_rate(
    step: int,
    steps_per_epoch: int,
    base_lr: float,
    warmup_epochs: int,
    train_epochs: int,
    end_lr: float = END_LR,
) -> float:
    """Return the learning rate for a 0-based global training step.

    Linear warmup from 0 (at step 0) towards ``base_lr`` over the warmup
    epochs, then ``(base_lr - end_lr) * (1 - progress) ** 2 + end_lr`` where
    progress runs from 0 at the first step after warmup to 1 at the last
    step of training (and stays at 1 beyond it).
    """
    warmup_steps = warmup_epochs * steps_per_epoch
    total_steps = train_epochs * steps_per_epoch

    if step < warmup_steps:
        return base_lr * step / warmup_steps

    last_step = total_steps - 1
    decay_steps = max(1, last_step - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return (base_lr - end_lr) * (1.0 - progress) ** 2 + end_lr


class Lars(torch.optim.Optimizer):
    """LARS with heavy-ball momentum.

    For a weight tensor ``w`` with gradient ``g`` one step is::

        trust = eta * ||w|| / (||g|| + wd * ||w||)   (1 if either norm is 0)
        velocity = momentum * velocity + lr * trust * (g + wd * w)
        w = w - velocity

    Groups flagged ``exclude_from_lars`` (meant for batch-norm parameters and
    biases) skip both the trust ratio and the weight decay::

        velocity = momentum * velocity + lr * g
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        eta: float = LARS_ETA,
    ) -> None:
        if lr < 0.0 or momentum < 0.0 or weight_decay < 0.0 or eta <= 0.0:
            raise ValueError("lr, momentum and weight_decay must be >= 0, eta > 0")
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "weight_decay": weight_decay,
            "eta": eta,
            "exclude_from_lars": False,
        }
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(  # type: ignore[override]
        self, closure: Callable[[], float] | None = None
    ) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()

        for group in self.param_groups:
            for weight in group["params"]:
                if weight.grad is None:
                    continue
                update = self._update_direction(weight, group)
                self._apply_momentum(weight, update * group["lr"], group)

        return loss

    @staticmethod
    def _update_direction(weight: torch.Tensor, group: dict[str, Any]) -> torch.Tensor:
        gradient = weight.grad
        assert gradient is not None
        if group["exclude_from_lars"]:
            return gradient

        decay = group["weight_decay"]
        weight_norm = torch.linalg.vector_norm(weight)
        gradient_norm = torch.linalg.vector_norm(gradient)
        both_positive = (weight_norm > 0) & (gradient_norm > 0)
        trust = torch.where(
            both_positive,
            group["eta"] * weight_norm / (gradient_norm + decay * weight_norm),
            torch.ones_like(weight_norm),
        )
        return trust * (gradient + decay * weight)

    def _apply_momentum(
        self, weight: torch.Tensor, scaled_update: torch.Tensor, group: dict[str, Any]
    ) -> None:
        state = self.state[weight]
        if "velocity" not in state:
            state["velocity"] = torch.zeros_like(weight)
        velocity = state["velocity"]
        velocity.mul_(group["momentum"]).add_(scaled_update)
        weight.sub_(velocity)


def lars_param_groups(model: nn.Module) -> list[dict[str, Any]]:
    """Split parameters into LARS-scaled weights and plain 1-D parameters."""
    weights = [p for p in model.parameters() if p.ndim > 1]
    one_dimensional = [p for p in model.parameters() if p.ndim <= 1]
    return [
        {"params": weights},
        {"params": one_dimensional, "exclude_from_lars": True},
    ]


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and an identity (or 1x1) shortcut."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(
            in_channels, out_channels, 3, stride=stride, padding=1, bias=False
        )
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)

        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        hidden = functional.relu(self.bn1(self.conv1(inputs)))
        hidden = self.bn2(self.conv2(hidden))
        return functional.relu(hidden + self.shortcut(inputs))


class DigitsResNet(nn.Module):
    """8x8 stem, then blocks at 8x8, 4x4 and 2x2, pooled into a linear head."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1, bias=False),
            nn.BatchNorm2d(16),
            nn.ReLU(),
        )
        self.blocks = nn.Sequential(
            BasicBlock(16, 16, stride=1),
            BasicBlock(16, 32, stride=2),
            BasicBlock(32, 64, stride=2),
        )
        self.head = nn.Linear(64, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.blocks(self.stem(images))
        pooled = features.mean(dim=(2, 3))
        return self.head(pooled)


def load_split() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return train images, train labels, validation images, validation labels."""
    digits = load_digits()
    # Pixel intensities are integers 0..16.
    images = (digits.images / 16.0).astype(np.float32)[:, None, :, :]
    labels = digits.target.astype(np.int64)

    train_x, val_x, train_y, val_y = train_test_split(
        images,
        labels,
        test_size=VALIDATION_SIZE,
        stratify=labels,
        random_state=SPLIT_RANDOM_STATE,
    )
    return (
        torch.from_numpy(train_x),
        torch.from_numpy(train_y),
        torch.from_numpy(val_x),
        torch.from_numpy(val_y),
    )


@torch.no_grad()
def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    model.eval()
    predictions = model(images).argmax(dim=1)
    return float((predictions == labels).float().mean())


def write_epoch_record(epoch: int, accuracy: float, loss: float, lr: float) -> None:
    record = {
        "epoch": epoch,
        "eval_accuracy": round(accuracy, 6),
        "train_loss": round(loss, 6),
        "lr": lr,
    }
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


def train(args: argparse.Namespace) -> int:
    """Run the whole training; return the process exit status."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)

    train_x, train_y, val_x, val_y = load_split()
    if not 2 <= args.batch_size <= len(train_x):
        logger.error("--batch-size must be in [2, %d]", len(train_x))
        return 2

    # Incomplete final batches are dropped so every step sees a full batch.
    steps_per_epoch = len(train_x) // args.batch_size

    model = DigitsResNet()
    optimizer = Lars(
        lars_param_groups(model),
        lr=0.0,
        momentum=args.momentum,
        weight_decay=args.weight_decay,
    )
    shuffle_generator = torch.Generator().manual_seed(args.seed)

    step = 0
    lr = 0.0
    for epoch in range(1, args.train_epochs + 1):
        started = time.perf_counter()
        model.train()
        order = torch.randperm(len(train_x), generator=shuffle_generator)
        loss_sum = 0.0

        for batch in range(steps_per_epoch):
            indices = order[batch * args.batch_size : (batch + 1) * args.batch_size]
            lr = learning_rate(
                step,
                steps_per_epoch,
                args.base_lr,
                args.warmup_epochs,
                args.train_epochs,
            )
            for group in optimizer.param_groups:
                group["lr"] = lr

            loss = functional.cross_entropy(model(train_x[indices]), train_y[indices])
            loss_value = loss.item()
            if not math.isfinite(loss_value):
                logger.error(
                    "diverged: loss %s at epoch %d step %d", loss_value, epoch, step
                )
                return DIVERGED_EXIT_STATUS

            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss_value
            step += 1

        accuracy = evaluate(model, val_x, val_y)
        write_epoch_record(epoch, accuracy, loss_sum / steps_per_epoch, lr)
        logger.info("epoch %d took %.3f s", epoch, time.perf_counter() - started)

    return 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-epochs", type=int, default=15)
    parser.add_argument("--warmup-epochs", type=int, default=2)
    parser.add_argument("--base-lr", type=float, default=2.0)
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(message)s"
    )
    return train(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
