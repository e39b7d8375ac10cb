import numpy as np
import pytest
from scipy.special import expit
from scipy.stats import spearmanr
from sklearn.base import clone

from precimed.errors import ConfigError, DataError
from precimed.evaluate.policy import horizon_outcome
from precimed.train.effects import (
    DRLearner,
    PropensityModel,
    TLearner,
    arm_order,
    as_labels,
    cross_fit,
    ipcw_horizon_outcome,
    summarize_draws,
)

TAU = 5.0
FAST_GBM = {"n_estimators": 200, "learning_rate": 0.05, "num_leaves": 4}
FAST_MLP = {"hidden": (16,), "max_epochs": 60, "patience": 10, "lr": 0.01, "batch_size": 128, "dropout": 0.0}


def survival_data(seed: int, n: int = 1600, *, confounded: bool = True):
    """Treatment lowers the hazard (log HR -1) when x1 > 0 and raises it (+0.7) otherwise; x2 drives treatment."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    p = expit(0.7 * X[:, 2]) if confounded else np.full(n, 0.5)
    a = (rng.random(n) < p).astype(int)
    log_hr = np.where(X[:, 1] > 0, -1.0, 0.7)
    rate0 = 0.2 * np.exp(0.5 * X[:, 0])
    rate1 = rate0 * np.exp(log_hr)
    t = rng.exponential(1 / np.where(a == 1, rate1, rate0))
    c = rng.uniform(2, 12, n)
    y = np.column_stack([np.minimum(t, c), (t <= c).astype(float)])
    true = (1 - np.exp(-rate1 * TAU)) / rate1 - (1 - np.exp(-rate0 * TAU)) / rate0
    return X, y, a, true


def binary_data(seed: int, n: int = 2000):
    """Risk of the event; the drug lowers it by a lot when x0 > 0 and raises it a little otherwise."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    a = rng.integers(0, 2, n)
    logit0 = -0.5 + 0.5 * X[:, 1]
    logit1 = logit0 + np.where(X[:, 0] > 0, -1.5, 0.5)
    y = (rng.random(n) < expit(np.where(a == 1, logit1, logit0))).astype(float)
    return X, y, a, expit(logit1) - expit(logit0)


@pytest.fixture(scope="module")
def surv():
    return survival_data(0)


def test_t_learner_on_boosting_recovers_who_benefits(surv):
    X, y, a, true = surv
    model = TLearner(task="survival", base="gbm", base_params=FAST_GBM, horizon=TAU, n_bootstrap=5)
    model.fit(X[:1200], y[:1200], a[:1200])

    effect = model.predict_effects(X[1200:])[:, 0]

    assert np.mean(np.sign(effect) == np.sign(true[1200:])) > 0.8
    assert spearmanr(effect, true[1200:]).statistic > 0.6
    assert model.arms_ == ["0", "1"] and model.control_ == 0


def test_dr_learner_on_boosting_recovers_the_sign_under_confounding(surv):
    X, y, a, true = surv
    model = DRLearner(task="survival", base="gbm", base_params=FAST_GBM, horizon=TAU, n_bootstrap=5)
    model.fit(X[:1200], y[:1200], a[:1200])

    effect = model.predict_effects(X[1200:])[:, 0]

    assert np.mean(np.sign(effect) == np.sign(true[1200:])) > 0.7
    assert spearmanr(effect, true[1200:]).statistic > 0.4
    outcomes = model.predict_outcomes(X[1200:])
    assert outcomes.min() >= 0 and outcomes.max() <= TAU  # RMST stays within [0, horizon]


def test_t_learner_on_the_project_net_finds_who_benefits_from_the_drug():
    X, y, a, true = binary_data(1)
    model = TLearner(task="binary", base="mlp", base_params=FAST_MLP, n_bootstrap=3, random_state=0)
    model.fit(X[:1500], y[:1500], a[:1500])

    effect = model.predict_effects(X[1500:])[:, 0]  # risk difference: negative = the drug helps

    assert model.measure_ == "risk" and not model.higher_is_better_
    assert np.mean(np.sign(effect) == np.sign(true[1500:])) > 0.75
    assert set(model.recommend(X[1500:][X[1500:, 0] > 1])) == {"1"}  # clear benefit: recommend the drug


def test_dr_learner_on_the_project_net_with_known_probabilities():
    X, y, a, true = binary_data(2)
    model = DRLearner(task="binary", base="mlp", base_params=FAST_MLP, n_bootstrap=2, known_probabilities=[0.5, 0.5])
    model.fit(X[:1500], y[:1500], a[:1500])
    effect = model.predict_effects(X[1500:])[:, 0]
    assert spearmanr(effect, true[1500:]).statistic > 0.3


def test_survival_rmst_of_the_net_matches_integrating_its_curve():
    X, y, a, _ = survival_data(3, n=600)
    model = TLearner(task="survival", base="mlp", base_params=FAST_MLP, horizon=TAU, n_bootstrap=0).fit(X, y, a)
    net = model.replicates_[0][0]
    grid = np.linspace(0, TAU, 20001)
    surv = net.predict_survival(X[:5], grid)
    numeric = (surv[:, :-1] * np.diff(grid)).sum(axis=1)  # left Riemann sum of a right-continuous step function
    np.testing.assert_allclose(model.predict_outcomes(X[:5])[:, 0], numeric, rtol=2e-3)


def test_three_arms_give_contrasts_against_the_control_with_intervals():
    rng = np.random.default_rng(4)
    n = 900
    X = rng.normal(size=(n, 3))
    arm = rng.choice(["Obs", "Lev", "Lev+5FU"], n)
    rate = 0.2 * np.exp(0.4 * X[:, 0] - 0.8 * (arm == "Lev+5FU"))
    t = rng.exponential(1 / rate)
    y = np.column_stack([np.minimum(t, 8.0), (t <= 8.0).astype(float)])

    model = TLearner(task="survival", base="gbm", base_params=FAST_GBM, horizon=TAU, control="Obs", n_bootstrap=8)
    model.fit(X, y, arm)
    s = model.summarize(X)

    assert model.arms_ == ["Obs", "Lev", "Lev+5FU"]
    assert s.contrasts == ["Lev vs Obs", "Lev+5FU vs Obs"]
    assert s.effects.shape == s.effect_low.shape == (n, 2)
    assert np.all(s.effect_low <= s.effects + 1e-9) and np.all(s.effects <= s.effect_high + 1e-9)
    assert s.effects[:, 1].mean() > 0.3  # Lev+5FU helps everyone
    assert np.mean(s.recommended == 2) > 0.7
    assert set(np.unique(s.recommended_cautious)) <= {0, 1, 2}


def test_cautious_recommendation_stays_on_control_unless_the_interval_excludes_no_benefit():
    draws = np.array([[[1.0, 1.5]], [[1.0, 0.8]], [[1.0, 1.4]]])  # (replicates, 1 patient, 2 arms)
    s = summarize_draws(draws, ["c", "t"], 0, higher_is_better=True)
    assert s.recommended[0] == 1  # the mean favours t
    assert s.recommended_cautious[0] == 0  # but one refit does not
    sure = summarize_draws(draws + np.array([0.0, 1.0]), ["c", "t"], 0, higher_is_better=True)
    assert sure.recommended_cautious[0] == 1


def test_no_bootstrap_means_one_fit_and_no_interval():
    X, y, a, _ = survival_data(5, n=500)
    model = TLearner(task="survival", base="gbm", base_params=FAST_GBM, horizon=TAU, n_bootstrap=0).fit(X, y, a)
    s = model.summarize(X)
    assert len(model.replicates_) == 1
    assert np.isnan(s.effect_low).all()


def test_learners_follow_the_sklearn_parameter_contract():
    model = DRLearner(task="binary", base="gbm", n_bootstrap=3)
    copy = clone(model).set_params(n_bootstrap=7)
    assert copy.get_params()["n_bootstrap"] == 7 and model.n_bootstrap == 3
    assert not hasattr(copy, "replicates_")


def test_propensity_model_known_and_logistic():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(3000, 2))
    a = (rng.random(3000) < expit(2 * X[:, 0])).astype(int)
    known = PropensityModel(2, known_probabilities=[0.3, 0.7]).fit(X, a).predict_proba(X[:3])
    np.testing.assert_allclose(known, [[0.3, 0.7]] * 3)
    fitted = PropensityModel(2, clip=0.05).fit(X, a).predict_proba(X)
    assert fitted.min() >= 0.05 and fitted.max() <= 0.95
    assert np.corrcoef(fitted[:, 1], expit(2 * X[:, 0]))[0, 1] > 0.95
    with pytest.raises(ConfigError, match="positive numbers summing to 1"):
        PropensityModel(2, known_probabilities=[0.3, 0.3]).fit(X, a)


def test_training_and_evaluation_weight_the_horizon_outcome_the_same_way(surv):
    _, y, a, _ = surv
    for measure in ("rmst", "survival"):
        ours = ipcw_horizon_outcome(y, TAU, measure, a)
        theirs = horizon_outcome(y[:, 0], y[:, 1], TAU, measure=measure, groups=a)
        np.testing.assert_allclose(ours[0], theirs[0])
        np.testing.assert_allclose(ours[1], theirs[1])


def test_arm_labels_and_order():
    assert as_labels([1.0, 0, "Obs"]).tolist() == ["1", "0", "Obs"]
    assert arm_order(np.array(["b", "a", "c"]), control="c") == (["c", "a", "b"], 0)
    assert arm_order(np.array(["b", "a"]), arms=["b", "a"], control="a") == (["b", "a"], 1)
    with pytest.raises(ConfigError, match="control arm 'x'"):
        arm_order(np.array(["a", "b"]), control="x")
    with pytest.raises(DataError, match="not among the arms"):
        arm_order(np.array(["a", "b", "z"]), arms=["a", "b"])


def test_bad_inputs_are_refused_with_a_reason():
    X, y, a, _ = survival_data(6, n=300)
    with pytest.raises(ConfigError, match="horizon"):
        TLearner(task="survival", base="gbm").fit(X, y, a)
    with pytest.raises(ConfigError, match="measure 'risk'"):
        TLearner(task="survival", base="gbm", horizon=TAU, measure="risk").fit(X, y, a)
    with pytest.raises(ConfigError, match="unknown model .forest.; choose from"):
        TLearner(task="survival", base="forest", horizon=TAU, n_bootstrap=0).fit(X, y, a)
    X_nan = X.copy()
    X_nan[0, 0] = np.nan
    with pytest.raises(DataError, match="NaN"):
        TLearner(task="survival", base="gbm", horizon=TAU).fit(X_nan, y, a)
    with pytest.raises(DataError, match="at least two arms"):
        TLearner(task="survival", base="gbm", horizon=TAU).fit(X, y, np.zeros(300))
    y_no_events = y.copy()
    y_no_events[a == 1, 1] = 0
    with pytest.raises(DataError, match="arm '1' has no events"):
        TLearner(task="survival", base="gbm", horizon=TAU, n_bootstrap=0).fit(X, y_no_events, a)


def test_cross_fitting_scores_every_patient_from_the_other_folds():
    X, y, a, true = survival_data(7, n=900)
    learners = {"t": TLearner(task="survival", base="gbm", base_params=FAST_GBM, horizon=TAU, n_bootstrap=2),
                "dr": DRLearner(task="survival", base="gbm", base_params=FAST_GBM, horizon=TAU, n_bootstrap=2)}

    cf = cross_fit(learners, X, y, a, folds=3, random_state=0)

    assert sorted(np.unique(cf.fold).tolist()) == [0, 1, 2]
    for f in range(3):  # every fold holds both arms
        assert set(cf.codes[cf.fold == f].tolist()) == {0, 1}
    assert cf.draws["t"].shape == (2, 900, 2) and cf.draws["dr"].shape == (2, 900, 2)
    assert cf.propensity.shape == (900, 2) and np.all((cf.propensity > 0) & (cf.propensity < 1))
    assert spearmanr(cf.summary("t").effects[:, 0], true).statistic > 0.5


def test_cross_fitting_keeps_a_patients_rows_in_one_fold():
    X, y, a, _ = survival_data(8, n=600)
    groups = np.repeat(np.arange(300), 2)
    learners = {"t": TLearner(task="survival", base="gbm", base_params=FAST_GBM, horizon=TAU, n_bootstrap=0)}
    cf = cross_fit(learners, X, y, a, folds=3, groups=groups)
    for g in range(300):
        assert len(set(cf.fold[groups == g].tolist())) == 1
