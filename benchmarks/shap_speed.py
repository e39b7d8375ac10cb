"""SHAP speed: precimed.evaluate.global_importance for 200 patients on a bundle-like setup.

Synthetic cohort of 10,000 rows and 30 user features (24 numeric, 4 of them with a missing
indicator; 6 categorical with 3 levels one-hot encoded: 46 model columns), binary outcome. Models:
scikit-learn's MLPClassifier (64-32 ReLU) called through predict_proba, the same network written as
a numpy function, and a logistic regression. 100 background rows, 200 explained rows.

The target: an HTML report with SHAP for 200 patients renders in under 30 s, so SHAP (including
the one-off cost of importing shap and numba compiling its maskers in a fresh process) must take
well under that. By default global_importance stays within 1.5 million model rows per call
(1 antithetic permutation pair per patient here); the table also shows more permutations, and
how far each mean |SHAP| lies from a 10-pair reference. Timings are the best of 3 runs.

Run: .venv/bin/python benchmarks/shap_speed.py
"""

from __future__ import annotations

import math
import subprocess
import sys
import time
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier

from precimed.evaluate import global_importance

N, N_NUMERIC, N_INDICATED, N_CATEGORICAL, LEVELS = 10_000, 24, 4, 6, 3
N_BACKGROUND, N_EXPLAIN = 100, 200
REPEATS = 3  # best of 3: the machine is shared, single runs are noisy
COLD = """
import time
import numpy as np
start = time.perf_counter()
import shap
from precimed.evaluate import global_importance
print(time.perf_counter() - start)
X = np.random.default_rng(0).normal(size=(50, 30))
start = time.perf_counter()
global_importance(lambda A: A.sum(axis=1), X[:40], X[40:42], {f"x{j}": [j] for j in range(30)})
print(time.perf_counter() - start)
"""


def make_data(seed: int = 0) -> tuple[np.ndarray, np.ndarray, dict[str, list[int]]]:
    rng = np.random.default_rng(seed)
    numeric = rng.normal(size=(N, N_NUMERIC))
    missing = rng.random((N, N_INDICATED)) < 0.15
    numeric[:, :N_INDICATED][missing] = 0.0  # imputed (standardized median) value
    categories = rng.integers(0, LEVELS, size=(N, N_CATEGORICAL))
    blocks, groups, column = [], {}, 0
    for j in range(N_NUMERIC):
        cols = [numeric[:, j : j + 1]]
        if j < N_INDICATED:
            cols.append(missing[:, j : j + 1].astype(float))
        blocks += cols
        groups[f"num{j}"] = list(range(column, column + len(cols)))
        column += len(cols)
    for j in range(N_CATEGORICAL):
        blocks.append(np.eye(LEVELS)[categories[:, j]])
        groups[f"cat{j}"] = list(range(column, column + LEVELS))
        column += LEVELS
    X = np.hstack(blocks).astype(np.float32)
    w = rng.normal(size=X.shape[1]) / np.sqrt(X.shape[1])
    logit = X @ w + 0.5 * np.sin(2 * X[:, 0]) + 0.4 * X[:, 1] * X[:, 2] - 1.0
    y = (rng.random(N) < 1 / (1 + np.exp(-logit))).astype(int)
    return X, y, groups


def numpy_mlp(model: MLPClassifier):
    weights = [w.astype(np.float32) for w in model.coefs_]
    biases = [b.astype(np.float32) for b in model.intercepts_]

    def predict(X: np.ndarray) -> np.ndarray:
        h = np.asarray(X, dtype=np.float32)
        for w, b in zip(weights[:-1], biases[:-1], strict=True):
            h = np.maximum(h @ w + b, 0.0)
        return 1.0 / (1.0 + np.exp(-(h @ weights[-1] + biases[-1])[:, 0]))

    return predict


def main() -> None:
    X, y, groups = make_data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        mlp = MLPClassifier((64, 32), max_iter=30, random_state=0).fit(X, y)
    logistic = LogisticRegression(max_iter=1000).fit(X, y)
    rng = np.random.default_rng(1)
    background = X[rng.choice(N, N_BACKGROUND, replace=False)]
    explain = X[rng.choice(N, N_EXPLAIN, replace=False)]
    models = {
        "sklearn MLP": lambda A: mlp.predict_proba(A)[:, 1],
        "numpy MLP": numpy_mlp(mlp),
        "logistic": lambda A: logistic.predict_proba(A)[:, 1],
    }

    cold = subprocess.run([sys.executable, "-c", COLD], capture_output=True, text=True, check=True).stdout.split()
    print(f"{len(groups)} user features, {X.shape[1]} model columns, {N_BACKGROUND} background rows, "
          f"{N_EXPLAIN} explained rows")
    print(f"one-off per fresh process: import shap {float(cold[0]):.1f} s, first call (numba compiles shap's "
          f"maskers) {float(cold[1]):.1f} s\n")
    global_importance(models["numpy MLP"], background, explain[:2], groups)  # compile in this process too
    start = time.perf_counter()
    reference = global_importance(models["numpy MLP"], background, explain, groups, max_evals=10 * 61)
    reference_seconds = time.perf_counter() - start
    header = (f"{'model':<12} {'masking':<8} {'method':<11} {'evals/row':>9} {'bg rows':>7} {'model rows':>10} "
              f"{'seconds':>8} {'ms/row':>7} {'add. gap':>8} {'err vs ref':>10}")
    print(header)
    print("-" * len(header))
    configs = [("sklearn MLP", "feature", None), ("numpy MLP", "feature", None), ("logistic", "feature", None),
               ("numpy MLP", "column", None), ("numpy MLP", "feature", 3 * 61), ("numpy MLP", "feature", 10 * 61)]
    for name, masking, max_evals in configs:
        seconds = math.inf
        for _ in range(1 if max_evals == 10 * 61 else REPEATS):
            start = time.perf_counter()
            result = global_importance(models[name], background, explain, groups, masking=masking,
                                       max_evals=max_evals, seed=2)
            seconds = min(seconds, time.perf_counter() - start)
        rows = N_EXPLAIN * result["evaluations_per_row"] * result["n_background"]
        error = "" if name == "logistic" else f"{relative_error(result['mean_abs'], reference['mean_abs']):>10.1%}"
        print(f"{name:<12} {masking:<8} {result['method']:<11} {result['evaluations_per_row']:>9} "
              f"{result['n_background']:>7} {rows / 1e6:>9.2f}M {seconds:>8.2f} {1000 * seconds / N_EXPLAIN:>7.1f} "
              f"{result['max_additivity_gap']:>8.1e} {error}")
    print(f"(reference run: {reference_seconds:.1f} s)")
    print("\nerr vs ref: sum |mean|SHAP| - reference| / sum reference, over the 30 features; the reference is")
    print("the numpy MLP with 10 permutation pairs (seed 0), itself an estimate.")


def relative_error(values: dict[str, float], reference: dict[str, float]) -> float:
    return sum(abs(values[k] - reference[k]) for k in reference) / sum(reference.values())

if __name__ == "__main__":
    main()
