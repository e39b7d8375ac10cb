import numpy as np
import pytest
from lifelines import KaplanMeierFitter
from lifelines.statistics import logrank_test as lifelines_logrank
from lifelines.statistics import multivariate_logrank_test
from lifelines.utils import restricted_mean_survival_time
from scipy.special import expit
from scipy.stats import chi2

from precimed.errors import DataError
from precimed.evaluate.policy import (
    aipw_scores,
    average_effects,
    chi2_sf,
    horizon_outcome,
    ipw_effects,
    km_summary,
    logrank_test,
    matched_vs_unmatched,
    overlap_diagnostics,
    policy_values,
)

TAU = 5.0


def rmst_exp(rate: np.ndarray, tau: float = TAU) -> np.ndarray:
    return (1 - np.exp(-rate * tau)) / rate


def trial(seed: int, n: int = 1500, *, confounded: bool = False):
    """Exponential survival; treatment helps when x1 > 0 and harms otherwise; x2 drives treatment if confounded."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    p = expit(1.2 * x[:, 0]) if confounded else np.full(n, 0.5)
    a = (rng.random(n) < p).astype(int)
    log_hr = np.where(x[:, 1] > 0, -1.0, 0.6)
    rate0 = 0.2 * np.exp(0.6 * x[:, 0])
    rate1 = rate0 * np.exp(log_hr)
    t_event = rng.exponential(1 / np.where(a == 1, rate1, rate0))
    t_cens = rng.uniform(2, 12, n)
    time = np.minimum(t_event, t_cens)
    event = (t_event <= t_cens).astype(float)
    propensity = np.column_stack([1 - p, p])
    mu = np.column_stack([rmst_exp(rate0), rmst_exp(rate1)])
    return time, event, a, propensity, mu


# ----- log-rank ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_two_group_logrank_matches_lifelines_with_ties(seed):
    rng = np.random.default_rng(seed)
    group = rng.integers(0, 2, 300)
    time = np.ceil(rng.exponential(10 * np.exp(0.4 * group)))  # whole days: many ties
    event = (rng.random(300) < 0.7).astype(float)

    ours = logrank_test(time, event, group)
    ref = lifelines_logrank(time[group == 0], time[group == 1], event[group == 0], event[group == 1])

    assert ours["statistic"] == pytest.approx(ref.test_statistic, rel=1e-9)
    assert ours["p_value"] == pytest.approx(ref.p_value, rel=1e-9)
    assert ours["df"] == 1


def test_three_group_logrank_matches_lifelines():
    rng = np.random.default_rng(3)
    group = rng.choice(["Obs", "Lev", "Lev+5FU"], 400)
    time = np.ceil(rng.exponential(np.where(group == "Lev+5FU", 15, 10)))
    event = (rng.random(400) < 0.6).astype(float)

    ours = logrank_test(time, event, group)
    ref = multivariate_logrank_test(time, group, event)

    assert ours["statistic"] == pytest.approx(ref.test_statistic, rel=1e-9)
    assert ours["p_value"] == pytest.approx(ref.p_value, rel=1e-9)
    assert ours["df"] == 2
    assert sum(ours["observed"].values()) == pytest.approx(sum(ours["expected"].values()))


@pytest.mark.parametrize("df", [1, 2, 3, 4, 7, 10])
def test_chi_square_tail_matches_scipy(df):
    for x in (0.0, 0.1, 1.0, 3.84, 12.0, 50.0):
        assert chi2_sf(x, df) == pytest.approx(chi2.sf(x, df), rel=1e-10, abs=1e-300)


def test_logrank_needs_two_groups_and_events():
    with pytest.raises(DataError, match="two groups"):
        logrank_test([1.0, 2.0], [1, 1], [0, 0])
    with pytest.raises(DataError, match="no events"):
        logrank_test([1.0, 2.0], [0, 0], [0, 1])


# ----- horizon outcomes -------------------------------------------------------------------------------------
def test_ipcw_means_reproduce_kaplan_meier_rmst_and_event_free_rate():
    time, event, *_ = trial(0)
    kmf = KaplanMeierFitter().fit(time, event)

    y, w = horizon_outcome(time, event, TAU, measure="rmst")
    assert (w * y).sum() / w.sum() == pytest.approx(restricted_mean_survival_time(kmf, t=TAU), rel=1e-6)
    y, w = horizon_outcome(time, event, TAU, measure="survival")
    assert (w * y).sum() / w.sum() == pytest.approx(float(kmf.survival_function_at_times(TAU).iloc[0]), rel=1e-9)
    summary = km_summary(time, event, TAU)
    assert summary["rmst"] == pytest.approx(restricted_mean_survival_time(kmf, t=TAU), rel=1e-6)


def test_patients_censored_before_the_horizon_get_no_weight():
    y, w = horizon_outcome([1.0, 2.0, 6.0, 3.0], [0, 1, 0, 0], 5.0, measure="survival")
    assert w[0] == 0 and w[3] == 0
    assert w[1] > 0 and w[2] > 0
    assert y[1] == 0 and y[2] == 1


def test_a_horizon_beyond_almost_all_follow_up_is_refused():
    time = np.r_[np.full(99, 1.0), 10.0]
    with pytest.raises(DataError, match="shorter horizon"):
        horizon_outcome(time, np.zeros(100), 5.0)


# ----- average effects ---------------------------------------------------------------------------------------
def test_aipw_ate_interval_covers_the_truth_in_most_trials():
    covered = 0
    for seed in range(40):
        time, event, a, propensity, mu = trial(seed, n=800)
        y, w = horizon_outcome(time, event, TAU, groups=a)
        phi = aipw_scores(y, w, a, propensity, np.zeros_like(mu) + y[w > 0].mean())  # crude outcome model
        ate, _ = average_effects(phi, 0, ["control", "treated"])
        est = ate["treated vs control"]
        truth = (mu[:, 1] - mu[:, 0]).mean()
        covered += est["ci_low"] <= truth <= est["ci_high"]
    assert covered >= 34  # nominal 95%: 38 of 40 expected


def test_aipw_is_doubly_robust_under_confounding():
    time, event, a, propensity, mu = trial(0, n=20000, confounded=True)
    y, w = horizon_outcome(time, event, TAU, groups=a)
    truth = (mu[:, 1] - mu[:, 0]).mean()
    wrong_e = np.full_like(propensity, 0.5)
    wrong_mu = np.zeros_like(mu)

    right_mu_only, _ = average_effects(aipw_scores(y, w, a, wrong_e, mu), 0, ["c", "t"])
    right_e_only, _ = average_effects(aipw_scores(y, w, a, propensity, wrong_mu), 0, ["c", "t"])
    naive, _ = ipw_effects(y, w, a, wrong_e, 0, ["c", "t"], n_boot=50)

    assert right_mu_only["t vs c"]["value"] == pytest.approx(truth, abs=0.08)
    assert right_e_only["t vs c"]["value"] == pytest.approx(truth, abs=0.15)
    assert abs(naive["t vs c"]["value"] - truth) > 0.3  # confounding is real


def test_ipw_effects_give_each_arm_and_contrast_with_bootstrap_interval():
    time, event, a, propensity, _ = trial(1)
    y, w = horizon_outcome(time, event, TAU, groups=a)
    contrasts, means = ipw_effects(y, w, a, propensity, 0, ["none", "drug"], n_boot=100)
    assert set(means) == {"none", "drug"}
    c = contrasts["drug vs none"]
    assert c["ci_low"] < c["value"] < c["ci_high"]
    assert c["value"] == pytest.approx(means["drug"]["value"] - means["none"]["value"])


# ----- policies ---------------------------------------------------------------------------------------------
def test_oracle_policy_beats_treating_everyone_and_no_one():
    time, event, a, propensity, mu = trial(2, n=3000)
    y, w = horizon_outcome(time, event, TAU, groups=a)
    phi = aipw_scores(y, w, a, propensity, mu)
    n = len(a)
    policies = {"oracle": (mu[:, 1] > mu[:, 0]).astype(int), "all": np.ones(n, int), "none": np.zeros(n, int)}

    res = policy_values(y, w, a, propensity, policies, phi=phi, comparisons=[("oracle", "all"), ("oracle", "none")],
                        n_boot=300, seed=0)

    for versus in ("all", "none"):
        diff = res["differences"][f"oracle - {versus}"]
        assert diff["ci_low"] > 0
        assert diff["aipw"]["ci_low"] > 0
    truth = np.where(policies["oracle"] == 1, mu[:, 1], mu[:, 0]).mean()
    v = res["values"]["oracle"]
    assert v["ci_low"] <= truth <= v["ci_high"]
    assert res["values"]["all"]["followed"] == pytest.approx(a.mean())


def test_policy_codes_must_name_arms():
    with pytest.raises(DataError, match="policy 'bad'"):
        policy_values(np.ones(3), np.ones(3), np.array([0, 1, 0]), np.full((3, 2), 0.5), {"bad": np.array([0, 2, 1])},
                      n_boot=5)


def test_matched_vs_unmatched_splits_patients_by_agreement_with_the_recommendation():
    time, event, a, _, mu = trial(4, n=2000)
    recommended = (mu[:, 1] > mu[:, 0]).astype(int)

    res = matched_vs_unmatched(time, event, a, recommended, TAU, names=["none", "drug"])

    assert res["matched"]["n"] + res["unmatched"]["n"] == 2000
    assert res["matched"]["rmst"] > res["unmatched"]["rmst"]  # following a correct recommendation helps
    assert res["logrank"]["p_value"] < 0.01
    assert set(res["by_recommendation"]) == {"none", "drug"}


# ----- overlap ----------------------------------------------------------------------------------------------
def test_overlap_of_a_randomised_trial_is_perfect():
    a = np.r_[np.zeros(50, int), np.ones(50, int)]
    out = overlap_diagnostics(np.full((100, 2), 0.5), a, ["c", "t"])
    assert out["share_outside_any"] == 0
    assert out["arms"]["t"]["effective_sample_size"] == pytest.approx(50)
    assert out["arms"]["t"]["propensity_received"]["median"] == 0.5


def test_poor_overlap_shows_in_the_share_outside_and_the_effective_sample_size():
    rng = np.random.default_rng(0)
    x = rng.normal(size=2000)
    p = expit(3 * x)
    a = (rng.random(2000) < p).astype(int)
    out = overlap_diagnostics(np.column_stack([1 - p, p]), a, ["c", "t"])
    assert out["share_outside_any"] > 0.2
    assert out["arms"]["t"]["ess_fraction"] < 0.5
    assert sum(out["arms"]["t"]["histogram_received"]) == a.sum()


def test_unadjusted_ipw_arm_means_are_the_kaplan_meier_estimates():
    time, event, a, _, _ = trial(5)
    y, w = horizon_outcome(time, event, TAU, groups=a)
    shares = np.tile(np.bincount(a) / len(a), (len(a), 1))
    _, means = ipw_effects(y, w, a, shares, 0, ["none", "drug"], n_boot=20)
    for k, name in enumerate(["none", "drug"]):
        assert means[name]["value"] == pytest.approx(km_summary(time[a == k], event[a == k], TAU)["rmst"], rel=1e-9)
