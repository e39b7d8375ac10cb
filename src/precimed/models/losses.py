"""Losses: functions first, picked by task by an explicit mapping."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def cox_partial_nll(risk: Tensor, time: Tensor, event: Tensor) -> Tensor:
    """Negative Cox partial log-likelihood (Breslow ties), averaged over observed events.

    `risk` is the log-hazard ratio. Tied event times share one risk set, as in Breslow's method.
    A batch with no events contributes zero loss (with a graph, so backward still works).
    """
    if not (risk.ndim == 1 and risk.shape == time.shape == event.shape):
        raise ValueError(
            f"risk, time and event must be 1-D and of equal length; got {tuple(risk.shape)}, "
            f"{tuple(time.shape)}, {tuple(event.shape)}"
        )
    n_events = event.sum()
    if n_events == 0:
        return risk.sum() * 0.0
    order = torch.argsort(time, descending=True)
    risk_s, time_s, event_s = risk[order], time[order], event[order].to(risk.dtype)
    log_cum = torch.logcumsumexp(risk_s, dim=0)
    # Breslow: every subject tied at a time uses the risk set of the last row of that tie block.
    _, inverse, counts = torch.unique_consecutive(time_s, return_inverse=True, return_counts=True)
    last_of_block = torch.cumsum(counts, 0) - 1
    log_risk_set = log_cum[last_of_block[inverse]]
    return -((risk_s - log_risk_set) * event_s).sum() / n_events


def bce_loss(logits: Tensor, target: Tensor, pos_weight: Tensor | None = None) -> Tensor:
    return F.binary_cross_entropy_with_logits(logits.squeeze(-1), target, pos_weight=pos_weight)


def ce_loss(logits: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
    return F.cross_entropy(logits, target.long(), weight=weight)


def mse_loss(pred: Tensor, target: Tensor) -> Tensor:
    return F.mse_loss(pred.squeeze(-1), target)
