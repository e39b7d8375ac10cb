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


def dense_layers(n_in: int, n_out: int, dropout: float, activation: str, batch_norm: bool) -> list[nn.Module]:
    """Linear → (BatchNorm) → activation → (Dropout): one hidden layer, as a flat list (so saved weights keep the
    same names in every net that uses it)."""
    layers: list[nn.Module] = [nn.Linear(n_in, n_out)]
    if batch_norm:
        layers.append(nn.BatchNorm1d(n_out))
    layers.append(ACTIVATIONS[activation]())
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    return layers


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
            blocks += dense_layers(width, size, dropout, activation, batch_norm)
            width = size
        self.body = nn.Sequential(*blocks)
        self.head = nn.Linear(width, n_outputs)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))


class ResidualBlock(nn.Module):
    """x → skip(x) + Dropout(activation((BatchNorm)(Linear(x)))).

    The skip is the identity when the block keeps the width and a bias-free linear projection when it
    changes it, so every block only has to learn a correction to what it is given.
    """

    def __init__(self, n_in: int, n_out: int, dropout: float = 0.1, activation: str = "relu",
                 batch_norm: bool = False) -> None:
        super().__init__()
        self.body = nn.Sequential(*dense_layers(n_in, n_out, dropout, activation, batch_norm))
        self.skip: nn.Module = nn.Identity() if n_in == n_out else nn.Linear(n_in, n_out, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.skip(x) + self.body(x)


class ResidualMLP(nn.Module):
    """Wide and deep: output = wide(x) + deep(x).

    ``wide`` is one linear layer from the inputs straight to the outputs: with the task's loss it is a
    linear, logistic, multinomial or Cox regression. ``deep`` is a stack of residual blocks (one per
    entry of ``hidden``) and a linear head that starts at zero, so the untrained net *is* the linear
    model and the deep path adds non-linear terms only as training finds them useful; on data whose
    signal is linear the net need not be worse than the regression. Same constructor as ``MLP``.
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
        self.wide = nn.Linear(n_inputs, n_outputs)
        blocks: list[nn.Module] = []
        width = n_inputs
        for size in hidden:
            blocks.append(ResidualBlock(width, size, dropout, activation, batch_norm))
            width = size
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(width, n_outputs)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def deep(self, x: Tensor) -> Tensor:
        """The deep path alone (zero for an untrained net)."""
        return self.head(self.blocks(x))

    def forward(self, x: Tensor) -> Tensor:
        return self.wide(x) + self.deep(x)


def count_parameters(net: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


def set_threads(n: int = 1) -> None:
    """Use `n` intra-op threads: for small nets one thread is as fast and far steadier."""
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
