"""Time treatment-effect estimation for 10,000 synthetic patients (target: under a minute).

Plain script, not a test: ``python benchmarks/effects_speed.py [--n 10000] [--bootstrap 20]``.

The cohort: 8 covariates, observational treatment (the propensity depends on x2), exponential survival
where the treatment lowers the hazard when x1 > 0 and raises it otherwise, uniform censoring; the outcome
is the restricted mean survival time to a 5-year horizon. Each row of the table is one end-to-end job:
fit the learner with bootstrap refits on all patients, then predict every patient's outcome under each
arm with intervals and a recommendation. The evaluation row times the numpy side on the same patients:
horizon outcomes with censoring weights, logistic propensity, AIPW ATE, overlap, the value of three
policies with 1000 bootstrap replicates, and matched-vs-unmatched log-rank. Accuracy columns compare the
predicted effects with the planted truth (in-sample here: this is a speed benchmark; the honest, cross-fitted
evaluation is what ``precimed effects`` reports).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy.special import expit
from scipy.stats import spearmanr

from precimed.evaluate.policy import (
    aipw_scores,
    average_effects,
    horizon_outcome,
    matched_vs_unmatched,
    overlap_diagnostics,
    policy_values,
)
from precimed.train.effects import DRLearner, PropensityModel, TLearner

HORIZON = 5.0
GBM = {"n_estimators": 300, "learning_rate": 0.05, "num_leaves": 8}
MLP = {"hidden": (32, 16), "max_epochs": 100, "patience": 10, "lr": 0.003, "batch_size": 512, "dropout": 0.1}


def cohort(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 8))
    a = (rng.random(n) < expit(0.8 * X[:, 2])).astype(int)
    log_hr = np.where(X[:, 1] > 0, -0.8, 0.5)
    rate0 = 0.15 * np.exp(0.5 * X[:, 0] - 0.3 * X[:, 3])
    rate1 = rate0 * np.exp(log_hr)
    t = rng.exponential(1 / np.where(a == 1, rate1, rate0))
    c = rng.uniform(3, 15, n)
    y = np.column_stack([np.minimum(t, c), (t <= c).astype(float)])
    true = (1 - np.exp(-rate1 * HORIZON)) / rate1 - (1 - np.exp(-rate0 * HORIZON)) / rate0
    return X.astype(np.float32), y, a, true


def learner_job(name: str, model, X, y, a, true) -> dict:
    start = time.perf_counter()
    model.fit(X, y, a)
    s = model.summarize(X)
    seconds = time.perf_counter() - start
    effect = s.effects[:, 0]
    covered = np.mean((s.effect_low[:, 0] <= true) & (true <= s.effect_high[:, 0]))
    return {"job": name, "seconds": seconds, "fits": _fits(model), "spearman": spearmanr(effect, true).statistic,
            "sign": float(np.mean(np.sign(effect) == np.sign(true))), "covered": float(covered)}, s


def _fits(model) -> int:
    per = 2 if isinstance(model, TLearner) else model.inner_folds * 3 + 2  # DR: outcome x2 + propensity per fold
    return max(model.n_bootstrap, 1) * per


def evaluation_job(X, y, a, summary) -> dict:
    start = time.perf_counter()
    e = PropensityModel(2).fit(X, a).predict_proba(X)
    y_obs, w = horizon_outcome(y[:, 0], y[:, 1], HORIZON, groups=a)
    phi = aipw_scores(y_obs, w, a, e, summary.outcomes)
    average_effects(phi, 0, ["control", "treated"])
    overlap_diagnostics(e, a, ["control", "treated"])
    n = len(a)
    policies = {"model": summary.recommended, "all": np.ones(n, int), "none": np.zeros(n, int)}
    policy_values(y_obs, w, a, e, policies, phi=phi, comparisons=[("model", "all"), ("model", "none")], n_boot=1000)
    matched_vs_unmatched(y[:, 0], y[:, 1], a, summary.recommended, HORIZON)
    return {"job": "evaluation (ATE, overlap, 3 policies x 1000 bootstrap, log-rank)",
            "seconds": time.perf_counter() - start, "fits": 1}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--bootstrap", type=int, default=20)
    parser.add_argument("--skip-mlp", action="store_true")
    args = parser.parse_args()
    X, y, a, true = cohort(args.n)
    B = args.bootstrap
    common = dict(task="survival", horizon=HORIZON, n_bootstrap=B, random_state=0)
    rows = []
    t_learner = TLearner(base="gbm", base_params=GBM, **common)
    row, t_summary = learner_job(f"T-learner, gbm, {B} bootstrap refits", t_learner, X, y, a, true)
    rows.append(row)
    rows.append(evaluation_job(X, y, a, t_summary))
    row, _ = learner_job(f"DR-learner, gbm, {B} bootstrap refits", DRLearner(base="gbm", base_params=GBM, **common),
                         X, y, a, true)
    rows.append(row)
    if not args.skip_mlp:
        row, _ = learner_job(f"T-learner, mlp, {B} bootstrap refits", TLearner(base="mlp", base_params=MLP, **common),
                             X, y, a, true)
        rows.append(row)
    print(f"\ntreatment effects for {args.n:,} synthetic patients (2 arms, survival, RMST at {HORIZON:g}), "
          f"1 CPU thread per fit; target: under 60 s per job\n")
    header = f"{'job':<66} {'seconds':>8} {'fits':>5} {'spearman':>9} {'sign acc':>9} {'CI covers':>9}  target"
    print(header)
    print("-" * len(header))
    for r in rows:
        acc = (f"{r['spearman']:>9.3f} {r['sign']:>9.3f} {r['covered']:>9.3f}" if "spearman" in r
               else f"{'':>9} {'':>9} {'':>9}")
        verdict = "ok" if r["seconds"] < 60 else "SLOW"
        print(f"{r['job']:<66} {r['seconds']:>8.1f} {r['fits']:>5} {acc}  {verdict}")


if __name__ == "__main__":
    main()
