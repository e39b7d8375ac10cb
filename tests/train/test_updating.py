"""Cheaper updates (precimed.train.updating): recalibration recovers a planted miscalibration, round-trips through
its state, and fine-tuning changes only the layers it was given while lowering the loss on the new rows.

Real data: Pima (binary, regression on BMI) and Rotterdam -> GBSG (survival). The miscalibration is planted by
distorting a real model's predictions with a known intercept and slope; recalibrating the distorted model on the
rows the undistorted model was fitted on must give back the inverse distortion, because an unpenalised logistic /
Cox / least-squares fit is already calibrated (slope 1, intercept 0) on its own training rows.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from precimed.data import load_dataset
from precimed.errors import ConfigError, DataError
from precimed.models.baselines import CoxPHBaseline, LinearBaseline, LogisticBaseline
from precimed.models.losses import bce_loss
from precimed.train.catalogue import class_named
from precimed.train.estimators import NeuralRiskModel, ResidualRiskModel, cox_partial_nll_2d
from precimed.train.updating import RecalibratedModel, cox_slope, fine_tune, frozen_layers

PIMA_FEATURES = ["npreg", "glu", "bp", "skin", "ped", "age"]
BREAST = ["age", "meno", "grade", "nodes", "pgr", "er", "hormon"]


def _standardise(*frames, columns, log=()):
    arrays = []
    for frame in frames:
        X = frame[columns].astype(float).to_numpy()
        for j in (columns.index(c) for c in log):
            X[:, j] = np.log1p(X[:, j])
        arrays.append(X)
    mean, sd = arrays[0].mean(axis=0), arrays[0].std(axis=0)
    return [((X - mean) / sd).astype(np.float32) for X in arrays]


@pytest.fixture(scope="module")
def pima():
    tr, te = load_dataset("pima_tr"), load_dataset("pima_te")
    X_tr, X_te = _standardise(tr, te, columns=PIMA_FEATURES)
    return X_tr, (tr["type"] == "Yes").to_numpy(float), X_te, (te["type"] == "Yes").to_numpy(float), tr, te


@pytest.fixture(scope="module")
def breast():
    """Rotterdam (recurrence, node-positive) to train on, GBSG (recurrence-free survival) as the new site."""
    rot = load_dataset("rotterdam")
    rot = rot[rot["nodes"] > 0]
    gbsg = load_dataset("gbsg")
    X_rot, X_gbsg = _standardise(rot, gbsg, columns=BREAST, log=("nodes", "pgr", "er"))
    y_rot = np.column_stack([rot["rtime"], rot["recur"]]).astype(float)
    y_gbsg = np.column_stack([gbsg["rfstime"], gbsg["status"]]).astype(float)
    return X_rot, y_rot, X_gbsg, y_gbsg


def _distorted(base, task, a, b):
    """A fitted RecalibratedModel set by hand: the base model's output moved by a known intercept and slope."""
    model = RecalibratedModel(base, task=task)
    model.a_, model.b_, model.n_features_in_ = a, b, base.n_features_in_
    if task == "binary":
        model.classes_ = base.classes_
    if task == "survival":
        model.base_times_, model.base_cumhaz_ = base.base_times_, base.base_cumhaz_
    return model


# ----- recalibration ------------------------------------------------------------------------------------------
def test_logistic_recalibration_recovers_a_planted_intercept_and_slope(pima):
    X, y, *_ = pima
    logistic = LogisticBaseline(C=1e8).fit(X, y)  # unpenalised: calibrated on its own rows
    distorted = _distorted(logistic, "binary", a=0.8, b=2.5)  # logit' = 0.8 + 2.5 * logit: far too extreme
    fixed = RecalibratedModel(distorted, task="binary").fit(X, y)
    assert fixed.b_ == pytest.approx(1 / 2.5, abs=1e-3) and fixed.a_ == pytest.approx(-0.8 / 2.5, abs=1e-3)
    np.testing.assert_allclose(fixed.predict_proba(X), logistic.predict_proba(X), atol=1e-4)
    shifted = RecalibratedModel(_distorted(logistic, "binary", a=-1.2, b=1.0), task="binary",
                                intercept_only=True).fit(X, y)
    assert shifted.b_ == 1.0 and shifted.a_ == pytest.approx(1.2, abs=1e-4)


def test_cox_recalibration_recovers_a_planted_slope_and_the_baseline_alone_changes_nothing_on_own_rows(breast):
    _, _, X, y = breast  # GBSG: a Cox model fitted here is calibrated here
    cox = CoxPHBaseline(penalizer=1e-8).fit(X, y)
    distorted = _distorted(cox, "survival", a=0.0, b=2.0)
    fixed = RecalibratedModel(distorted, task="survival").fit(X, y)
    assert fixed.b_ == pytest.approx(0.5, abs=2e-3)
    assert cox_slope(cox.predict_risk(X), y[:, 0], y[:, 1]) == pytest.approx(1.0, abs=2e-3)
    grid = np.array([365.0, 1096.0, 1826.0])
    np.testing.assert_allclose(fixed.predict_survival(X, grid), cox.predict_survival(X, grid), atol=2e-3)
    baseline_only = RecalibratedModel(cox, task="survival", intercept_only=True).fit(X, y)
    assert baseline_only.b_ == 1.0
    np.testing.assert_allclose(baseline_only.predict_survival(X, grid), cox.predict_survival(X, grid), atol=1e-12)


def test_linear_recalibration_recovers_a_planted_intercept_and_slope(pima):
    *_, tr, _ = pima
    X, = _standardise(tr, columns=PIMA_FEATURES)
    y = tr["bmi"].to_numpy(float)
    ols = LinearBaseline().fit(X, y)
    fixed = RecalibratedModel(_distorted(ols, "regression", a=3.0, b=2.0), task="regression").fit(X, y)
    assert fixed.b_ == pytest.approx(0.5, abs=1e-6) and fixed.a_ == pytest.approx(-1.5, abs=1e-5)
    np.testing.assert_allclose(fixed.predict(X), ols.predict(X), atol=1e-6)


def test_recalibration_on_a_new_site_moves_the_calibration_slope_to_one(breast):
    X_rot, y_rot, X_gbsg, y_gbsg = breast
    net = NeuralRiskModel(task="survival", hidden=(16,), max_epochs=30, patience=5, lr=0.01, batch_size=128,
                          random_state=1).fit(X_rot, y_rot)
    update, held = np.arange(0, len(X_gbsg), 2), np.arange(1, len(X_gbsg), 2)
    fixed = RecalibratedModel(net, task="survival").fit(X_gbsg[update], y_gbsg[update])
    before = cox_slope(net.predict_risk(X_gbsg[update]), *y_gbsg[update].T)
    assert fixed.b_ == pytest.approx(before, rel=1e-9)  # the recalibration slope is the calibration slope
    assert cox_slope(fixed.predict_risk(X_gbsg[update]), *y_gbsg[update].T) == pytest.approx(1.0, abs=1e-6)
    # ranking is the base model's: a positive slope changes no order
    order = np.argsort(net.predict_risk(X_gbsg[held]))
    np.testing.assert_array_equal(np.argsort(fixed.predict_risk(X_gbsg[held])), order)


@pytest.mark.parametrize("task", ["binary", "survival"])
def test_a_recalibrated_net_round_trips_through_its_state(pima, breast, task):
    if task == "binary":
        X, y, X_new, y_new, *_ = pima
    else:
        X, y, X_new, y_new = breast
    net = NeuralRiskModel(task=task, hidden=(8,), max_epochs=10, lr=0.01, ensemble=2).fit(X, y)
    model = RecalibratedModel(net, task=task).fit(X_new, y_new)
    again = RecalibratedModel(model, task=task, intercept_only=True).fit(X_new, y_new)  # nested: a wrapper of one
    state, blobs = again.to_state()
    assert set(blobs) == {"base.base.mlp.pt"}
    loaded = class_named("RecalibratedModel").from_state(state, blobs)
    if task == "binary":
        np.testing.assert_array_equal(loaded.predict_proba(X_new), again.predict_proba(X_new))
    else:
        grid = np.array([500.0, 1500.0])
        np.testing.assert_array_equal(loaded.predict_survival(X_new, grid), again.predict_survival(X_new, grid))


def test_recalibration_refuses_what_it_cannot_fit(pima, breast):
    X, y, *_ = pima
    logistic = LogisticBaseline().fit(X, y)
    with pytest.raises(ConfigError, match="recalibration covers"):
        RecalibratedModel(logistic, task="multiclass").fit(X, y)
    with pytest.raises(ConfigError, match="base must be a fitted precimed model"):
        RecalibratedModel(None, task="binary").fit(X, y)
    with pytest.raises(DataError, match="single class"):
        RecalibratedModel(logistic, task="binary").fit(X, np.zeros(len(X)))
    with pytest.raises(DataError, match="5 encoded feature.*takes 6"):
        RecalibratedModel(logistic, task="binary").fit(X[:, :5], y)
    _, _, Xg, yg = breast
    cox = CoxPHBaseline().fit(Xg, yg)
    with pytest.raises(DataError, match="no events"):
        RecalibratedModel(cox, task="survival").fit(Xg, np.column_stack([yg[:, 0], np.zeros(len(yg))]))
    with pytest.raises(DataError, match="0 sample"):
        RecalibratedModel(cox, task="survival").fit(Xg[:0], yg[:0])


# ----- fine-tuning ---------------------------------------------------------------------------------------------
def _cox_loss(model, X, y):
    risk = torch.as_tensor(model.predict_risk(X), dtype=torch.float32)[:, None]
    return float(cox_partial_nll_2d(risk, torch.as_tensor(y[:, 0]), torch.as_tensor(y[:, 1])))


@pytest.mark.parametrize("cls", [NeuralRiskModel, ResidualRiskModel])
def test_fine_tuning_the_head_changes_only_the_head_and_lowers_the_loss_on_the_new_site(breast, cls):
    X_rot, y_rot, X_gbsg, y_gbsg = breast
    parent = cls(task="survival", hidden=(16, 8), ensemble=2, max_epochs=40, patience=8, lr=0.01, batch_size=128,
                 random_state=2).fit(X_rot, y_rot)
    before = {k: v.clone() for k, v in parent.nets_[0].state_dict().items()}
    tuned = fine_tune(parent, X_gbsg, y_gbsg, layers="head", lr=0.01, max_epochs=30, patience=30)
    assert tuned.freeze == ("hidden1", "hidden2") and len(tuned.nets_) == 2
    for member, (old, new) in enumerate(zip(parent.nets_, tuned.nets_, strict=True)):
        old_sd, new_sd = old.state_dict(), new.state_dict()
        head = {k for k in new_sd if k.startswith(("head.", "wide."))}
        for key in old_sd:
            if key not in head:
                assert torch.equal(old_sd[key], new_sd[key]), (member, key)
        if tuned.histories_[member].best_epoch >= 0:
            assert any(not torch.equal(old_sd[k], new_sd[k]) for k in head)
    for key, value in parent.nets_[0].state_dict().items():  # the parent is not touched
        assert torch.equal(before[key], value)
    assert _cox_loss(tuned, X_gbsg, y_gbsg) < _cox_loss(parent, X_gbsg, y_gbsg)
    # a new Breslow baseline on the new rows: the mean predicted 5-year risk follows GBSG, not Rotterdam
    assert not np.array_equal(tuned.base_cumhaz_, parent.base_cumhaz_)


def test_fine_tuning_the_last_layers_keeps_frozen_batch_norm_statistics_and_dropout_off(pima):
    X, y, X_new, y_new, *_ = pima
    parent = NeuralRiskModel(task="binary", hidden=(16, 8), batch_norm=True, dropout=0.3, max_epochs=30, lr=0.01,
                             batch_size=32).fit(X, y)
    assert frozen_layers(parent, 2) == ["hidden1"] and frozen_layers(parent, "all") == []
    tuned = fine_tune(parent, X_new, y_new, layers=2, lr=0.01, max_epochs=20, patience=20)
    old, new = parent.nets_[0].state_dict(), tuned.nets_[0].state_dict()
    for key in ("body.0.weight", "body.0.bias", "body.1.weight", "body.1.bias", "body.1.running_mean",
                "body.1.running_var", "body.1.num_batches_tracked"):  # hidden1: Linear and its batch norm
        assert torch.equal(old[key], new[key]), key
    assert not torch.equal(old["body.5.running_mean"], new["body.5.running_mean"])  # hidden2's statistics moved

    def loss(model):
        p = torch.as_tensor(model.predict_proba(X_new)[:, 1]).clamp(1e-7, 1 - 1e-7)
        return float(bce_loss(torch.logit(p), torch.as_tensor(y_new)))

    assert loss(tuned) < loss(parent)


def test_fine_tuning_without_improvement_keeps_the_parents_weights(pima):
    X, y, X_new, y_new, *_ = pima
    parent = NeuralRiskModel(task="binary", hidden=(8,), max_epochs=20, lr=0.01).fit(X, y)
    tuned = fine_tune(parent, X_new, y_new, lr=1e-12, max_epochs=2, patience=1)  # steps too small to gain
    assert tuned.histories_[0].best_epoch == -1
    np.testing.assert_array_equal(tuned.predict_proba(X_new), parent.predict_proba(X_new))


def test_fine_tuning_refuses_a_wrong_start_with_one_line(pima, breast):
    X, y, X_new, y_new, *_ = pima
    parent = NeuralRiskModel(task="binary", hidden=(8, 4), max_epochs=5, lr=0.01).fit(X, y)
    with pytest.raises(DataError, match="5 encoded feature.*takes 6"):
        fine_tune(parent, X_new[:, :5], y_new)
    with pytest.raises(ConfigError, match=r"layers must be 'all', 'head' or a number of last layers from 1 to 3"):
        fine_tune(parent, X_new, y_new, layers=4)
    with pytest.raises(ConfigError, match="leaves no layer to train"):
        NeuralRiskModel(task="binary", hidden=(8, 4), freeze=("hidden1", "hidden2", "head")).fit(
            X_new, y_new, init_state=parent.to_state())
    with pytest.raises(ConfigError, match=r"cannot freeze \['body'\]"):
        NeuralRiskModel(task="binary", hidden=(8, 4), freeze=("body",)).fit(X_new, y_new, init_state=parent.to_state())
    with pytest.raises(ConfigError, match="do not fit this net"):
        NeuralRiskModel(task="binary", hidden=(8,)).fit(X_new, y_new, init_state=parent.to_state())
    with pytest.raises(ConfigError, match="starting model has 1 ensemble member.*this one 2"):
        NeuralRiskModel(task="binary", hidden=(8, 4), ensemble=2).fit(X_new, y_new, init_state=parent.to_state())
    with pytest.raises(ConfigError, match="has no weights to fine-tune"):
        fine_tune(LogisticBaseline().fit(X, y), X_new, y_new)
    with pytest.raises(DataError, match="0 sample"):
        fine_tune(parent, X_new[:0], y_new[:0])
    _, _, Xg, yg = breast
    cox_net = NeuralRiskModel(task="survival", hidden=(8,), max_epochs=5).fit(Xg, yg)
    with pytest.raises(DataError, match="no events"):
        fine_tune(cox_net, Xg, np.column_stack([yg[:, 0], np.zeros(len(yg))]))


def test_a_fine_tuned_model_round_trips_and_old_states_without_freeze_still_load(pima):
    X, y, X_new, y_new, *_ = pima
    parent = NeuralRiskModel(task="binary", hidden=(8,), max_epochs=10, lr=0.01).fit(X, y)
    tuned = fine_tune(parent, X_new, y_new, layers="head", lr=0.01, max_epochs=5)
    state, blobs = tuned.to_state()
    assert state["params"]["freeze"] == ["hidden1"]
    loaded = NeuralRiskModel.from_state(state, blobs)
    np.testing.assert_array_equal(loaded.predict_proba(X_new), tuned.predict_proba(X_new))
    old_state, old_blobs = parent.to_state()
    del old_state["params"]["freeze"]  # a state written before fine-tuning existed
    assert NeuralRiskModel.from_state(old_state, old_blobs).get_params() == parent.get_params() | {"hidden": [8]}
