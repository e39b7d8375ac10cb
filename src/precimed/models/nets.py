"""Pure network modules: constructors hold the architecture only."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "selu": nn.SELU,
    "leaky_relu": nn.LeakyReLU,
}


class MLP(nn.Module):
    """Feed-forward net: [Linear → (BatchNorm) → activation → Dropout] per hidden layer, then a linear head.

    The default 64-32 hidden units follow the classic disease-prediction example.
    """

    def __init__(
        self,
        n_inputs: int,
        hidden: Sequence[int] = (64, 32),
        n_outputs: int = 1,
        dropout: float = 0.1,
        activation: str = "relu",
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        width = n_inputs
        for size in hidden:
            blocks.append(nn.Linear(width, size))
            if batch_norm:
                blocks.append(nn.BatchNorm1d(size))
            blocks.append(ACTIVATIONS[activation]())
            if dropout > 0:
                blocks.append(nn.Dropout(dropout))
            width = size
        self.body = nn.Sequential(*blocks)
        self.head = nn.Linear(width, n_outputs)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))


def count_parameters(net: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


def set_threads(n: int = 1) -> None:
    """Use `n` intra-op threads: for small nets one thread is as fast and far steadier."""
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
