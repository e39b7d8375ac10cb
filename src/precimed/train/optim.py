"""Optimizers over one flat parameter buffer: the same update rules as torch.optim, fewer kernel launches.

Small clinical nets spend most of a training step in per-tensor optimizer overhead. Rebinding every
parameter (and its gradient) as a view into one contiguous buffer lets each update rule run as a
handful of vectorized ops over all weights at once; benchmarks/train_speed.py measures the gain.
The rules follow torch.optim's documented algorithms (SGD with momentum, Adam with L2 penalty,
AdamW with decoupled weight decay, Adagrad, RMSprop); tests check them step for step against torch.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def flatten_parameters(net: nn.Module) -> tuple[Tensor, Tensor]:
    """Move every trainable parameter and its gradient into two flat buffers; return (params, grads)."""
    params = [p for p in net.parameters() if p.requires_grad]
    n = sum(p.numel() for p in params)
    flat = torch.empty(n, dtype=torch.float32)
    grad = torch.zeros(n, dtype=torch.float32)
    offset = 0
    for p in params:
        k = p.numel()
        flat[offset:offset + k].copy_(p.detach().reshape(-1))
        p.data = flat[offset:offset + k].view_as(p)
        p.grad = grad[offset:offset + k].view_as(p)
        offset += k
    return flat, grad


def unflatten_parameters(net: nn.Module) -> None:
    """Give every parameter its own storage again (so saved state holds no shared buffer)."""
    for p in net.parameters():
        p.data = p.data.clone()
        p.grad = None


class FlatOptimizer(torch.optim.Optimizer):
    """One optimizer for the five rules; its single param group works with torch's LR schedulers."""

    RULES = ("sgd", "adam", "adamw", "adagrad", "rmsprop")

    def __init__(self, net: nn.Module, rule: str, lr: float = 1e-3, weight_decay: float = 0.0,
                 momentum: float = 0.0, betas: tuple[float, float] = (0.9, 0.999), eps: float | None = None,
                 alpha: float = 0.99) -> None:
        if rule not in self.RULES:
            raise ValueError(f"unknown optimizer {rule!r}; expected one of {list(self.RULES)}")
        self.net = net
        flat, grad = flatten_parameters(net)
        self.grad = grad
        if eps is None:
            eps = 1e-10 if rule == "adagrad" else 1e-8
        super().__init__([flat], dict(lr=lr, weight_decay=weight_decay, momentum=momentum, betas=betas, eps=eps,
                                      alpha=alpha))
        self.rule = rule
        self.flat = flat
        self.steps = 0
        self.buf1 = torch.zeros_like(flat)
        self.buf2 = torch.zeros_like(flat) if rule in ("adam", "adamw") else None

    def zero_grad(self, set_to_none: bool = True) -> None:  # noqa: ARG002 - grads must stay views
        self.grad.zero_()
        if self.steps == 0:  # autograd accumulates into the existing views in place; check once
            self._rebind_grads()

    def _rebind_grads(self) -> None:
        offset = 0
        for p in self.net.parameters():
            if not p.requires_grad:
                continue
            k = p.numel()
            if p.grad is None or p.grad.data_ptr() != self.grad[offset:offset + k].data_ptr():
                p.grad = self.grad[offset:offset + k].view_as(p)
            offset += k

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        group = self.param_groups[0]
        lr, wd, eps = group["lr"], group["weight_decay"], group["eps"]
        p, g = self.flat, self.grad
        self.steps += 1
        t = self.steps
        if self.rule == "adamw":
            if wd:
                p.mul_(1 - lr * wd)
        elif wd:
            g = g.add(p, alpha=wd)
        if self.rule == "sgd":
            if group["momentum"]:
                if t == 1:
                    self.buf1.copy_(g)
                else:
                    self.buf1.mul_(group["momentum"]).add_(g)
                g = self.buf1
            p.add_(g, alpha=-lr)
        elif self.rule in ("adam", "adamw"):
            b1, b2 = group["betas"]
            self.buf1.lerp_(g, 1 - b1)
            self.buf2.mul_(b2).addcmul_(g, g, value=1 - b2)
            denom = (self.buf2.sqrt() / math.sqrt(1 - b2**t)).add_(eps)
            p.addcdiv_(self.buf1, denom, value=-lr / (1 - b1**t))
        elif self.rule == "adagrad":
            self.buf1.addcmul_(g, g, value=1.0)
            p.addcdiv_(g, self.buf1.sqrt().add_(eps), value=-lr)
        else:  # rmsprop
            a = group["alpha"]
            self.buf1.mul_(a).addcmul_(g, g, value=1 - a)
            avg = self.buf1.sqrt().add_(eps)
            if group["momentum"]:
                if self.buf2 is None:
                    self.buf2 = torch.zeros_like(p)
                self.buf2.mul_(group["momentum"]).addcdiv_(g, avg)
                p.add_(self.buf2, alpha=-lr)
            else:
                p.addcdiv_(g, avg, value=-lr)
        return None
