"""A seeded ensemble of tabular nets (``MLP`` or ``ResidualMLP``) as one numpy program.

Every member of an ensemble has the same architecture, so their weights are stacked along a leading member
axis and the whole ensemble runs as one batched matrix product per layer: ``(1, n, in) @ (M, in, out)`` gives
``(M, n, out)``. Batch norm (eval mode) is folded into the linear layer before it and dropout disappears, as
in ``net.eval()``. The arithmetic is float32, like the nets; the result matches ``net(x)`` to float32
rounding (tested against torch on every activation, batch norm and both architectures).

The program is a small tree of steps that ``precimed.compiled.onnx_graph`` also walks to write the same
computation as an ONNX graph.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import erf
from torch import nn

from precimed.models.nets import MLP, ResidualBlock, ResidualMLP

__all__ = ["Activation", "Linear", "NetProgram", "Residual", "Step", "WideDeep", "compile_nets"]

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


@dataclass(frozen=True)
class Linear:
    """x @ weight + bias with member-stacked weight (M, in, out) and bias (M, 1, out) or None."""

    weight: np.ndarray
    bias: np.ndarray | None

    @property
    def side_by_side(self) -> np.ndarray:
        """The members' weights side by side, (in, M * out): a shared input's one 2-D product."""
        members, n_in, n_out = self.weight.shape
        return self.weight.transpose(1, 0, 2).reshape(n_in, members * n_out)


@dataclass(frozen=True)
class Activation:
    name: str  # relu, gelu, tanh, elu, selu, leaky_relu
    slope: float = 0.01  # leaky_relu's negative slope; elu's alpha


@dataclass(frozen=True)
class Residual:
    """skip(x) + body(x); skip None is the identity."""

    body: tuple[Step, ...]
    skip: Linear | None


@dataclass(frozen=True)
class WideDeep:
    """wide(x) + deep(x): the residual MLP's linear path beside its deep path."""

    wide: Linear
    deep: tuple[Step, ...]


Step = Linear | Activation | Residual | WideDeep


def _activation(module: nn.Module) -> Activation:
    if isinstance(module, nn.ReLU):
        return Activation("relu")
    if isinstance(module, nn.GELU):
        if module.approximate != "none":
            raise TypeError("only exact GELU is compiled")
        return Activation("gelu")
    if isinstance(module, nn.Tanh):
        return Activation("tanh")
    if isinstance(module, nn.ELU):
        return Activation("elu", float(module.alpha))
    if isinstance(module, nn.SELU):
        return Activation("selu")
    if isinstance(module, nn.LeakyReLU):
        return Activation("leaky_relu", float(module.negative_slope))
    raise TypeError(f"no compiled form for {type(module).__name__}")


def _stack(layers: list[nn.Linear], norms: list[nn.BatchNorm1d | None]) -> Linear:
    """The members' versions of one linear layer (with any batch norm after it folded in), stacked."""
    weights, biases = [], []
    for layer, norm in zip(layers, norms, strict=True):
        w = layer.weight.detach().double().numpy().T  # (in, out)
        b = layer.bias.detach().double().numpy() if layer.bias is not None else None
        if norm is not None:
            factor = norm.weight.detach().double().numpy() / np.sqrt(norm.running_var.double().numpy() + norm.eps)
            w = w * factor
            b = ((b if b is not None else 0.0) - norm.running_mean.double().numpy()) * factor \
                + norm.bias.detach().double().numpy()
        weights.append(w)
        biases.append(b)
    bias = None if biases[0] is None else np.stack(biases)[:, None, :].astype(np.float32)
    return Linear(np.stack(weights).astype(np.float32), bias)


def _sequence(members: list[list[nn.Module]]) -> tuple[Step, ...]:
    """Steps of parallel module lists (one per member, same architecture)."""
    steps: list[Step] = []
    first = members[0]
    i = 0
    while i < len(first):
        module = first[i]
        if isinstance(module, nn.Linear):
            has_norm = i + 1 < len(first) and isinstance(first[i + 1], nn.BatchNorm1d)
            steps.append(_stack([m[i] for m in members], [m[i + 1] if has_norm else None for m in members]))
            i += 2 if has_norm else 1
            continue
        if isinstance(module, nn.Dropout):
            pass
        elif isinstance(module, ResidualBlock):
            skip = None if isinstance(module.skip, nn.Identity) else _stack([m[i].skip for m in members],
                                                                            [None] * len(members))
            steps.append(Residual(_sequence([list(m[i].body) for m in members]), skip))
        else:
            steps.append(_activation(module))
        i += 1
    return tuple(steps)


@dataclass(frozen=True)
class NetProgram:
    """The ensemble's forward pass: ``run(x)`` gives (members, n, outputs) float32, as stacking ``net(x)``."""

    steps: tuple[Step, ...]
    members: int

    def run(self, x: np.ndarray) -> np.ndarray:
        return _run(self.steps, np.asarray(x, dtype=np.float32)[None])


def compile_nets(nets: list[nn.Module]) -> NetProgram:
    """The program of a list of ``MLP`` or ``ResidualMLP`` members; ``TypeError`` for anything else."""
    if not nets:
        raise TypeError("no nets to compile")
    if all(type(n) is MLP for n in nets):
        steps = _sequence([[*n.body, n.head] for n in nets])
    elif all(type(n) is ResidualMLP for n in nets):
        wide = _stack([n.wide for n in nets], [None] * len(nets))
        steps = (WideDeep(wide, _sequence([[*n.blocks, n.head] for n in nets])),)
    else:
        raise TypeError(f"no compiled form for {sorted({type(n).__name__ for n in nets})}")
    return NetProgram(steps, len(nets))


def _linear(step: Linear, h: np.ndarray) -> np.ndarray:
    members, n_in, n_out = step.weight.shape
    if h.shape[0] == 1 and members > 1:  # the shared input: one 2-D product with the members side by side
        wide = h[0] @ step.side_by_side
        out = wide.reshape(-1, members, n_out).transpose(1, 0, 2)
    else:
        out = np.matmul(h, step.weight)
    return out if step.bias is None else out + step.bias


def activate(name: str, slope: float, h: np.ndarray) -> np.ndarray:
    if name == "relu":
        return np.maximum(h, np.float32(0))
    if name == "tanh":
        return np.tanh(h)
    if name == "gelu":
        return (h * np.float32(0.5) * (np.float32(1) + erf(h * np.float32(1 / np.sqrt(2))))).astype(np.float32)
    if name == "elu":
        return np.where(h > 0, h, np.float32(slope) * np.expm1(h)).astype(np.float32)
    if name == "selu":
        return (np.float32(SELU_SCALE) * np.where(h > 0, h, np.float32(SELU_ALPHA) * np.expm1(h))).astype(np.float32)
    if name == "leaky_relu":
        return np.where(h > 0, h, np.float32(slope) * h).astype(np.float32)
    raise ValueError(name)


def _run(steps: tuple[Step, ...], h: np.ndarray) -> np.ndarray:
    for step in steps:
        if isinstance(step, Linear):
            h = _linear(step, h)
        elif isinstance(step, Activation):
            h = activate(step.name, step.slope, h)
        elif isinstance(step, Residual):
            h = (h if step.skip is None else _linear(step.skip, h)) + _run(step.body, h)
        else:
            h = _linear(step.wide, h) + _run(step.deep, h)
    return h
