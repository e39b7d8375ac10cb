import base64
import itertools
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from precimed.errors import ConfigError, DataError
from precimed.evaluate import (
    background_sample,
    beeswarm_or_bar_png,
    describe_rows,
    explain_rows,
    global_importance,
    waterfall_png,
)

PNG = b"\x89PNG\r\n\x1a\n"
SIZES = ["<=20", "20-50", ">50"]


def encoded_cohort(n: int = 160, seed: int = 0):
    """Raw rows and their encoding as a preprocessor would make it.

    Columns: age (standardized), lactate (standardized, median-imputed) + lactate_missing, size one-hot (3),
    smoker (0/1).
    """
    rng = np.random.default_rng(seed)
    age = rng.integers(25, 90, size=n).astype(float)
    lactate = np.round(rng.gamma(2.0, 1.0, size=n), 1)
    lactate[rng.random(n) < 0.2] = np.nan
    size = rng.choice(SIZES, size=n)
    smoker = rng.choice(["yes", "no"], size=n)
    frame = pd.DataFrame({"age": age, "lactate": lactate, "size": size, "smoker": smoker},
                         index=pd.Index([f"p{i}" for i in range(n)], name="patient_id"))
    filled = np.where(np.isnan(lactate), np.nanmedian(lactate), lactate)
    X = np.column_stack([
        (age - 60) / 15, (filled - 2) / 1.4, np.isnan(lactate),
        *(size == s for s in SIZES), smoker == "yes",
    ]).astype(np.float32)
    groups = {"age": [0], "lactate": [1, 2], "size": [3, 4, 5], "smoker": [6]}
    return frame, X, groups


COEF = np.array([0.8, 0.5, 0.9, -0.4, 0.1, 0.7, 0.6])


def linear(X: np.ndarray) -> np.ndarray:
    return X.astype(np.float64) @ COEF - 1.0


def nonlinear(X: np.ndarray) -> np.ndarray:
    X = X.astype(np.float64)
    logit = 0.8 * X[:, 0] + 0.6 * X[:, 1] * X[:, 6] + 1.2 * X[:, 2] - 0.5 * X[:, 3] + 0.7 * X[:, 5] * X[:, 0]
    return 1.0 / (1.0 + np.exp(-logit))


def brute_force_shapley(f, x: np.ndarray, background: np.ndarray, groups: dict) -> np.ndarray:
    """Shapley values of the user features: a coalition takes x's columns, the rest a background row's."""
    blocks = list(groups.values())
    k = len(blocks)

    def value(coalition: tuple[int, ...]) -> float:
        rows = background.copy()
        for j in coalition:
            rows[:, blocks[j]] = x[blocks[j]]
        return float(f(rows).mean())

    phi = np.zeros(k)
    for j in range(k):
        others = [i for i in range(k) if i != j]
        for size in range(k):
            weight = math.factorial(size) * math.factorial(k - size - 1) / math.factorial(k)
            for s in itertools.combinations(others, size):
                phi[j] += weight * (value(tuple(sorted((*s, j)))) - value(s))
    return phi


# ----- values -------------------------------------------------------------------------------------


@pytest.mark.parametrize("max_evals", [None, 9])  # 4 features: exact by default; 9 evaluations: permutation
def test_a_linear_model_gets_coef_times_distance_from_the_background_mean_summed_over_a_features_columns(max_evals):
    frame, X, groups = encoded_cohort()
    background, rows = X[:100], X[100:130]

    result = global_importance(linear, background, rows, groups, max_evals=max_evals, seed=1)

    per_column = (rows - background.mean(axis=0)) * COEF
    expected = np.column_stack([per_column[:, cols].sum(axis=1) for cols in groups.values()])
    assert result["method"] == ("exact" if max_evals is None else "permutation")
    assert result["features"] == ["age", "lactate", "size", "smoker"]
    np.testing.assert_allclose(result["values"], expected, atol=1e-5)
    np.testing.assert_allclose(result["base_value"], linear(background).mean(), atol=1e-9)


def test_one_hot_and_indicator_columns_are_summed_back_onto_the_users_feature():
    _, X, groups = encoded_cohort()

    joint = global_importance(linear, X[:100], X[100:120], groups)
    separate = global_importance(linear, X[:100], X[100:120], groups, masking="column")

    assert separate["values"].shape == (20, 4)
    np.testing.assert_allclose(joint["values"], separate["values"], atol=1e-5)


def test_exact_values_match_a_brute_force_shapley_computation_on_a_model_with_interactions():
    _, X, groups = encoded_cohort()
    background, rows = X[:40], X[100:103]

    result = global_importance(nonlinear, background, rows, groups)

    assert result["method"] == "exact"
    for i in range(3):
        np.testing.assert_allclose(result["values"][i], brute_force_shapley(nonlinear, rows[i], background, groups),
                                   atol=1e-6)


def test_contributions_add_up_to_the_prediction_and_estimates_are_seeded():
    _, X, groups = encoded_cohort()

    first = global_importance(nonlinear, X[:100], X[100:140], groups, max_evals=9, seed=3)
    again = global_importance(nonlinear, X[:100], X[100:140], groups, max_evals=9, seed=3)

    assert first["method"] == "permutation"
    assert first["max_additivity_gap"] < 1e-9
    np.testing.assert_allclose(first["base_value"] + first["values"].sum(axis=1), nonlinear(X[100:140]), atol=1e-9)
    np.testing.assert_array_equal(first["values"], again["values"])
    assert list(first["mean_abs"].values()) == sorted(first["mean_abs"].values(), reverse=True)


def test_the_default_budget_explains_many_rows_with_fewer_evaluations_and_a_smaller_background():
    _, X, groups = encoded_cohort(n=400)

    few = global_importance(nonlinear, X[:100], X[100:105], groups, max_model_rows=50_000)
    many = global_importance(nonlinear, X[:100], X[100:400], groups, max_model_rows=50_000)

    assert (few["method"], few["evaluations_per_row"], few["n_background"]) == ("exact", 16, 100)
    assert many["method"] == "permutation" and many["evaluations_per_row"] == 9
    assert many["n_background"] == 20
    assert many["max_additivity_gap"] < 1e-9


def test_bad_inputs_say_what_to_pass():
    _, X, groups = encoded_cohort()
    with pytest.raises(ConfigError, match="exactly once"):
        global_importance(linear, X[:50], X[50:55], {"age": [0], "size": [3, 4, 5]})
    with pytest.raises(DataError, match="one score per row"):
        global_importance(lambda A: np.column_stack([A[:, 0], A[:, 0]]), X[:50], X[50:55], groups)
    with pytest.raises(ConfigError, match="at least"):
        global_importance(linear, X[:50], X[50:55], groups, max_evals=5)
    with pytest.raises(DataError, match="NaN"):
        global_importance(linear, X[:50], np.where(X[50:55] > 1, np.nan, X[50:55]), groups)


# ----- individual patients ------------------------------------------------------------------------


def test_a_patients_explanation_shows_original_values_with_units_directions_and_adds_up():
    frame, X, groups = encoded_cohort()
    patients = frame.iloc[100:104]

    rows = explain_rows(nonlinear, X[:100], X[100:104], patients, groups, top_k=2,
                        units={"age": "years", "lactate": "mmol/L"})

    assert [r["row"] for r in rows] == ["p100", "p101", "p102", "p103"]
    for row, (_, raw) in zip(rows, patients.iterrows(), strict=True):
        assert len(row["contributions"]) == 2 and row["rest"]["n_features"] == 2
        total = row["base_value"] + sum(c["contribution"] for c in row["contributions"]) + row["rest"]["contribution"]
        assert total == pytest.approx(row["prediction"], abs=1e-9)
        assert abs(row["additivity_gap"]) < 1e-9
        assert abs(row["contributions"][0]["contribution"]) >= abs(row["contributions"][1]["contribution"])
        for c in row["contributions"]:
            assert c["direction"] == ("raises risk" if c["contribution"] > 0 else "lowers risk")
            if c["feature"] == "age":
                assert c["display"] == f"age = {int(raw['age'])} years" and c["value"] == int(raw["age"])
            if c["feature"] == "size":
                assert c["display"] == f"size = {raw['size']}"


def test_a_missing_value_is_shown_as_missing_not_as_the_imputed_number():
    frame, X, groups = encoded_cohort()
    missing = np.flatnonzero(frame["lactate"].isna().to_numpy())[:3]

    importance = global_importance(linear, X[:100], X[missing], groups)
    rows = describe_rows(importance, frame.iloc[missing], top_k=4, units={"lactate": "mmol/L"}, scale="log-hazard")

    for row in rows:
        lactate = next(c for c in row["contributions"] if c["feature"] == "lactate")
        assert lactate["display"] == "lactate = missing" and lactate["value"] is None
        assert lactate["direction"] in ("raises risk", "lowers risk")


def test_rows_and_raw_values_must_line_up():
    frame, X, groups = encoded_cohort()
    with pytest.raises(DataError, match="same order"):
        explain_rows(linear, X[:50], X[50:55], frame.iloc[50:54], groups)
    importance = global_importance(linear, X[:50], X[50:55], groups)
    with pytest.raises(DataError, match="missing column"):
        describe_rows(importance, frame.iloc[50:55].drop(columns="size"))


# ----- background and plots -----------------------------------------------------------------------


def test_the_stored_background_keeps_each_features_values_but_no_patients_row():
    _, X, groups = encoded_cohort(n=400)

    background = background_sample(X, groups, n=100, seed=0)

    assert background.shape == (100, X.shape[1])
    np.testing.assert_array_equal(background[:, 3:6].sum(axis=1), 1.0)  # one-hot blocks stay one-hot
    assert not (background[:, None, :] == X[None, :, :]).all(axis=2).any(axis=1).all()
    drawn = background_sample(X, groups, n=100, seed=0, shuffle=False)
    for cols in groups.values():  # the same values per feature, in another order
        assert sorted(map(tuple, background[:, cols])) == sorted(map(tuple, drawn[:, cols]))


def test_plots_are_png_images():
    frame, X, groups = encoded_cohort()
    deep = global_importance(nonlinear, X[:60], X[100:160], groups)
    lin = global_importance(lambda A: 1 / (1 + np.exp(-linear(A))), X[:60], X[100:160], groups)
    rows = describe_rows(deep, frame.iloc[100:160], top_k=3, units={"age": "years"}, rows=[5, 0])
    row = rows[1]

    assert [r["row"] for r in rows] == ["p105", "p100"]

    for uri in (beeswarm_or_bar_png({"mlp": deep, "logistic": lin}),
                beeswarm_or_bar_png({"mlp": deep}, kind="beeswarm", frame=frame.iloc[100:160])):
        assert uri.startswith("data:image/png;base64,")
        assert base64.b64decode(uri.split(",", 1)[1]).startswith(PNG)
    assert waterfall_png(row, title="patient p100").startswith(PNG)
    with pytest.raises(ConfigError, match="kind"):
        beeswarm_or_bar_png({"mlp": deep}, kind="pie")


def test_importing_evaluate_loads_neither_torch_nor_shap():
    code = "import sys, precimed.evaluate; print('torch' in sys.modules, 'shap' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
