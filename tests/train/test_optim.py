import copy

import pytest
import torch

from precimed.models.nets import MLP
from precimed.train.optim import FlatOptimizer

CASES = [
    ("sgd", dict(lr=0.05, weight_decay=0.01, momentum=0.9), lambda p: torch.optim.SGD(p, lr=0.05, weight_decay=0.01,
                                                                                     momentum=0.9)),
    ("sgd", dict(lr=0.05), lambda p: torch.optim.SGD(p, lr=0.05)),
    ("adam", dict(lr=0.01, weight_decay=0.01), lambda p: torch.optim.Adam(p, lr=0.01, weight_decay=0.01)),
    ("adamw", dict(lr=0.01, weight_decay=0.1), lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.1)),
    ("adagrad", dict(lr=0.05, weight_decay=0.01), lambda p: torch.optim.Adagrad(p, lr=0.05, weight_decay=0.01)),
    ("rmsprop", dict(lr=0.005, momentum=0.5), lambda p: torch.optim.RMSprop(p, lr=0.005, momentum=0.5)),
    ("rmsprop", dict(lr=0.005, weight_decay=0.01), lambda p: torch.optim.RMSprop(p, lr=0.005, weight_decay=0.01)),
]


@pytest.mark.parametrize(("rule", "kwargs", "make_reference"), CASES)
def test_flat_optimizer_follows_torch_optim_step_for_step(rule, kwargs, make_reference):
    torch.manual_seed(0)
    x, y = torch.randn(64, 5), torch.randn(64, 1)
    net = MLP(5, (8, 4), 1, dropout=0.0)
    ref_net = copy.deepcopy(net)
    flat = FlatOptimizer(net, rule, **kwargs)
    ref = make_reference(ref_net.parameters())
    for _ in range(25):
        flat.zero_grad()
        torch.nn.functional.mse_loss(net(x), y).backward()
        flat.step()
        ref.zero_grad()
        torch.nn.functional.mse_loss(ref_net(x), y).backward()
        ref.step()
    for a, b in zip(net.parameters(), ref_net.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_parameters_and_gradients_live_in_one_buffer():
    net = MLP(3, (4,), 1)
    opt = FlatOptimizer(net, "adam")
    total = sum(p.numel() for p in net.parameters())
    assert opt.flat.numel() == total
    torch.nn.functional.mse_loss(net(torch.randn(5, 3)), torch.randn(5, 1)).backward()
    assert opt.grad.abs().sum() > 0


def test_lr_schedulers_drive_the_flat_optimizer():
    net = MLP(3, (4,), 1)
    opt = FlatOptimizer(net, "sgd", lr=1.0)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    opt.step()
    sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.5)


def test_unknown_optimizer_is_refused_by_name():
    with pytest.raises(ValueError, match="lbfgs"):
        FlatOptimizer(MLP(3), "lbfgs")
