"""Tabular nets: shapes, the residual net's skip paths, and that an untrained ResidualMLP is its linear path."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from precimed.models.losses import bce_loss
from precimed.models.nets import MLP, ResidualBlock, ResidualMLP


@pytest.mark.parametrize("net_class", [MLP, ResidualMLP])
@pytest.mark.parametrize("hidden", [(), (8,), (8, 8), (16, 4)])
@pytest.mark.parametrize("n_outputs", [1, 3])
@pytest.mark.parametrize("batch_norm", [False, True])
def test_every_tabular_net_gives_one_row_of_outputs_per_patient(net_class, hidden, n_outputs, batch_norm):
    torch.manual_seed(0)
    net = net_class(5, hidden, n_outputs, dropout=0.1, activation="gelu", batch_norm=batch_norm)
    out = net(torch.randn(7, 5))
    assert out.shape == (7, n_outputs)
    net.eval()
    assert torch.isfinite(net(torch.randn(2, 5))).all()


def test_an_untrained_residual_net_is_exactly_its_linear_path():
    torch.manual_seed(0)
    net = ResidualMLP(6, (16, 16, 8), 2, dropout=0.2).eval()
    x = torch.randn(50, 6)
    with torch.no_grad():
        assert torch.equal(net.deep(x), torch.zeros(50, 2))
        assert torch.equal(net(x), net.wide(x))


def test_residual_blocks_skip_by_identity_when_the_width_holds_and_project_when_it_changes():
    net = ResidualMLP(6, (16, 16, 8))
    skips = [block.skip for block in net.blocks]
    assert isinstance(skips[0], nn.Linear) and skips[0].bias is None  # 6 → 16
    assert isinstance(skips[1], nn.Identity)  # 16 → 16
    assert isinstance(skips[2], nn.Linear)  # 16 → 8
    block = ResidualBlock(4, 4, dropout=0.0).eval()
    x = torch.randn(3, 4)
    with torch.no_grad():
        assert torch.allclose(block(x), x + block.body(x))


def test_the_deep_path_learns_although_its_head_starts_at_zero():
    torch.manual_seed(0)
    net = ResidualMLP(3, (8,), 1, dropout=0.0)
    x = torch.randn(64, 3)
    y = (x[:, 0] * x[:, 1] > 0).float()  # a signal no linear model holds
    optimizer = torch.optim.Adam(net.parameters(), lr=0.01)
    for _ in range(3):
        optimizer.zero_grad()
        bce_loss(net(x), y).backward()
        optimizer.step()
    assert net.head.weight.abs().sum() > 0
    assert net.blocks[0].body[0].weight.grad.abs().sum() > 0  # gradient reaches the blocks once the head moves


def test_the_linear_start_of_the_residual_net_is_logistic_regression():
    from sklearn.linear_model import LogisticRegression

    from precimed.train.estimators import fit_linear_path

    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 4)).astype(np.float32)
    y = (X @ np.array([1.0, -0.7, 0.4, 0.0]) + rng.logistic(size=400) > 0).astype(np.float32)
    torch.manual_seed(0)
    net = ResidualMLP(4, (8,), 1)
    fit_linear_path(net, bce_loss, torch.from_numpy(X), [torch.from_numpy(y)], l2=0.0)
    reference = LogisticRegression(C=np.inf, tol=1e-10, max_iter=10_000).fit(X, y)
    np.testing.assert_allclose(net.wide.weight.detach().numpy()[0], reference.coef_[0], atol=2e-3)
    np.testing.assert_allclose(net.wide.bias.detach().numpy(), reference.intercept_, atol=2e-3)
    assert torch.equal(net.head.weight, torch.zeros_like(net.head.weight))  # the deep path is untouched
