import numpy as np
import pandas as pd
import pytest
import torch

from precimed.models.baselines import _cox_grad_hess, _cox_nll
from precimed.models.losses import cox_partial_nll


def _lifelines_breslow_nll(risk, time, event):
    """Reference: the Breslow partial likelihood written out pair by pair."""
    total = 0.0
    for i in np.flatnonzero(event):
        at_risk = time >= time[i]
        total += risk[i] - np.log(np.exp(risk[at_risk]).sum())
    return -total / event.sum()


def test_cox_loss_matches_the_breslow_partial_likelihood_with_ties():
    rng = np.random.default_rng(0)
    time = rng.integers(1, 15, size=60).astype(float)  # many ties
    event = (rng.random(60) < 0.6).astype(float)
    risk = rng.normal(size=60)
    got = cox_partial_nll(torch.tensor(risk), torch.tensor(time), torch.tensor(event)).item()
    assert got == pytest.approx(_lifelines_breslow_nll(risk, time, event), rel=1e-10)
    assert _cox_nll(risk, time, event) == pytest.approx(got, rel=1e-10)


def test_cox_loss_of_a_batch_without_events_is_zero_and_differentiable():
    risk = torch.randn(5, requires_grad=True)
    loss = cox_partial_nll(risk, torch.arange(5.0), torch.zeros(5))
    loss.backward()
    assert loss.item() == 0.0 and risk.grad is not None


def test_cox_loss_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="equal length"):
        cox_partial_nll(torch.zeros(3), torch.zeros(4), torch.zeros(3))


def test_gradient_boosting_cox_gradient_matches_autograd():
    rng = np.random.default_rng(1)
    time = rng.integers(1, 10, size=40).astype(float)
    event = (rng.random(40) < 0.5).astype(float)
    risk = rng.normal(size=40)
    r = torch.tensor(risk, requires_grad=True)
    (cox_partial_nll(r, torch.tensor(time), torch.tensor(event)) * event.sum()).backward()
    grad, hess = _cox_grad_hess(risk, time, event)
    np.testing.assert_allclose(grad, r.grad.numpy(), rtol=1e-8, atol=1e-10)
    # the diagonal Hessian: finite differences of the gradient
    eps = 1e-6
    for i in range(0, 40, 7):
        bumped = risk.copy()
        bumped[i] += eps
        numeric = (_cox_grad_hess(bumped, time, event)[0][i] - grad[i]) / eps
        assert hess[i] == pytest.approx(numeric, rel=1e-3, abs=1e-6)


def test_cox_loss_agrees_with_lifelines_at_its_optimum():
    from lifelines import CoxPHFitter

    rng = np.random.default_rng(2)
    x = rng.normal(size=200)
    t = rng.exponential(np.exp(-0.8 * x))
    e = (rng.random(200) < 0.7).astype(float)
    fit = CoxPHFitter().fit(pd.DataFrame({"x": x, "t": t, "e": e}), "t", "e")
    beta = float(fit.params_["x"])
    loss = lambda b: _cox_nll(b * x, t, e)  # noqa: E731
    assert loss(beta) <= loss(beta + 0.05) and loss(beta) <= loss(beta - 0.05)
