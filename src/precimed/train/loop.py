"""A plain training loop over in-memory tensors, with early stopping and LR schedules.

Batches are slices of a tensor permuted once per epoch: for tabular data this is several times
faster than a DataLoader (see benchmarks/train_speed.py).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from precimed.train.optim import FlatOptimizer, unflatten_parameters

LossFn = Callable[..., Tensor]

OPTIMIZERS = FlatOptimizer.RULES

SCHEDULES: dict[str, Callable[..., object | None]] = {
    "none": lambda opt, s: None,
    "cosine": lambda opt, s: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=s.max_epochs),
    "step": lambda opt, s: torch.optim.lr_scheduler.StepLR(opt, step_size=max(1, s.max_epochs // 3), gamma=0.1),
    "plateau": lambda opt, s: torch.optim.lr_scheduler.ReduceLROnPlateau(opt, patience=max(1, s.patience // 3)),
}


@dataclass(frozen=True)
class TrainSettings:
    optimizer: str = "adamw"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 1e-4
    batch_size: int = 256
    max_epochs: int = 200
    patience: int = 20
    lr_schedule: str = "none"
    seed: int = 0


@dataclass
class History:
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    best_epoch: int | None = None
    seconds: float = 0.0


class EarlyStopping:
    """Keep the weights of the best validation epoch in memory; stop after `patience` epochs without gain."""

    def __init__(self, patience: int, min_delta: float = 0.0) -> None:
        self.patience, self.min_delta = patience, min_delta
        self.best_loss, self.best_epoch = math.inf, -1
        self.best_state: dict[str, Tensor] | None = None

    def step(self, epoch: int, loss: float, net: nn.Module) -> bool:
        """Record this epoch; return True when training should stop."""
        if not math.isfinite(loss):
            raise FloatingPointError(
                f"validation loss is {loss} at epoch {epoch}; lower the learning rate or check the inputs"
            )
        if loss < self.best_loss - self.min_delta:
            self.best_loss, self.best_epoch = loss, epoch
            self.best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        return epoch - self.best_epoch >= self.patience


def fit_net(
    net: nn.Module,
    loss_fn: LossFn,
    x_train: Tensor,
    y_train: Sequence[Tensor],
    x_val: Tensor,
    y_val: Sequence[Tensor],
    settings: TrainSettings,
    on_epoch: Callable[[int], None] | None = None,
) -> History:
    """Train `net` on (x_train, y_train), early-stopping on the validation loss; restores the best weights.

    `y_*` are tuples of tensors that `loss_fn(output, *y)` consumes (e.g. (time, event) for Cox).
    """
    torch.manual_seed(settings.seed)
    generator = torch.Generator().manual_seed(settings.seed)
    momentum = settings.momentum if settings.optimizer in ("sgd", "rmsprop") else 0.0
    optimizer = FlatOptimizer(net, settings.optimizer, lr=settings.lr, weight_decay=settings.weight_decay,
                              momentum=momentum)
    scheduler = SCHEDULES[settings.lr_schedule](optimizer, settings)
    stopper = EarlyStopping(settings.patience)
    history = History()
    n, bs = len(x_train), settings.batch_size
    start = time.perf_counter()
    for epoch in range(settings.max_epochs):
        net.train()
        perm = torch.randperm(n, generator=generator)
        xp, yp = x_train[perm], [y[perm] for y in y_train]
        total = 0.0
        for lo in range(0, n, bs):
            hi = min(lo + bs, n)
            if hi - lo < 2 and n > 1:  # a batch of one breaks batch-norm and says little
                continue
            optimizer.zero_grad()
            loss = loss_fn(net(xp[lo:hi]), *(y[lo:hi] for y in yp))
            loss.backward()
            optimizer.step()
            total += loss.item() * (hi - lo)
        history.train_loss.append(total / n)
        net.eval()
        with torch.no_grad():
            val_loss = float(loss_fn(net(x_val), *y_val))
        history.val_loss.append(val_loss)
        if scheduler is not None:
            if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                scheduler.step(val_loss)
            else:
                scheduler.step()  # type: ignore[attr-defined]
        if on_epoch is not None:
            on_epoch(epoch)
        if stopper.step(epoch, val_loss, net):
            break
    unflatten_parameters(net)
    if stopper.best_state is not None:
        net.load_state_dict(stopper.best_state)
    net.eval()
    history.best_epoch = stopper.best_epoch
    history.seconds = time.perf_counter() - start
    return history
