import json

import numpy as np
import pandas as pd
import pytest
from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from precimed.config import FeatureConfig
from precimed.errors import (
    ArtifactError,
    ConfigError,
    DataError,
    NotFittedError,
    SchemaError,
    ValueRangeError,
)
from precimed.preprocess import TabularPreprocessor

AGE = {"name": "age", "kind": "numeric", "unit": "years", "range": [18, 100]}


def numeric(name, **extra):
    return {"name": name, "kind": "numeric", **extra}


def column(prep, out, name):
    return out[:, prep.feature_names_out_.index(name)]


@pytest.fixture
def cohort():
    """Six patients, every kind of feature, a few gaps; seeded so the numbers are stable."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "age": rng.normal(60, 10, 6).round(1),
            "crp": [1.0, 3.0, np.nan, 10.0, 0.0, 2.5],
            "sex": ["male", "female", "male", np.nan, "female", "male"],
            "smoker": ["yes", "no", "No", "Y", np.nan, "n"],
            "size": ["small", "large", np.nan, "small", "medium", "large"],
            "nyha": ["I", "III", "II", np.nan, "IV", "II"],
            "apoe": ["E3E4", "E4/E4", "./.", "E2|E3", "e3/e3", "E3/E4"],
        },
        index=pd.Index([101, 102, 103, 104, 105, 106], name="patient_id"),
    )
    features = [
        AGE,
        numeric("crp", unit="mg/L", log=True),
        {"name": "sex", "kind": "binary", "positive": ["male"]},
        {"name": "smoker", "kind": "binary"},
        {"name": "size", "kind": "categorical"},
        {"name": "nyha", "kind": "ordinal", "categories": ["I", "II", "III", "IV"]},
        {"name": "genotype", "kind": "genotype", "alleles": ["E2", "E3", "E4"]},
    ]
    frame = frame.rename(columns={"apoe": "genotype"})
    return frame, features


# --------------------------------------------------------------------------------------------------
# training statistics only
# --------------------------------------------------------------------------------------------------
def test_new_patients_are_imputed_with_the_training_median_not_their_own():
    train = pd.DataFrame({"creatinine": [0.8, 1.0, 1.6, np.nan]})
    new = pd.DataFrame({"creatinine": [np.nan, 5.0, 5.0]})
    prep = TabularPreprocessor([numeric("creatinine")], scale="none").fit(train)

    out = prep.transform(new)

    assert out[0, 0] == pytest.approx(1.0)
    assert column(prep, out, "creatinine_missing").tolist() == [1.0, 0.0, 0.0]


def test_new_patients_are_scaled_with_the_training_mean_and_standard_deviation():
    train = pd.DataFrame({"sbp": [110.0, 120.0, 130.0, 140.0]})
    prep = TabularPreprocessor([numeric("sbp")]).fit(train)
    mean, sd = 125.0, np.std([110.0, 120.0, 130.0, 140.0])

    out = prep.transform(pd.DataFrame({"sbp": [200.0]}))

    assert out[0, 0] == pytest.approx((200.0 - mean) / sd, rel=1e-6)


def test_mean_imputation_and_robust_scaling_use_the_training_rows():
    train = pd.DataFrame({"x": [1.0, 2.0, 3.0, 10.0, np.nan]})
    prep = TabularPreprocessor([numeric("x")], impute="mean", scale="robust").fit(train)
    filled = np.array([1.0, 2.0, 3.0, 10.0, 4.0])
    q25, q50, q75 = np.percentile(filled, [25, 50, 75])

    out = prep.transform(pd.DataFrame({"x": [np.nan]}))

    assert out[0, 0] == pytest.approx((4.0 - q50) / (q75 - q25))


def test_numeric_features_match_an_sklearn_imputer_and_scaler_pipeline():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(40, 3))
    X[rng.random(X.shape) < 0.2] = np.nan
    reference = make_pipeline(SimpleImputer(strategy="median"), StandardScaler()).fit(X)

    out = TabularPreprocessor(missing_indicators=False).fit(X).transform(X)

    np.testing.assert_allclose(out, reference.transform(X), rtol=1e-5, atol=1e-6)


def test_zero_is_a_value_and_missing_is_never_zero():
    train = pd.DataFrame({"pain": [0.0, 0.0, 4.0, 6.0, np.nan]})
    prep = TabularPreprocessor([numeric("pain")], scale="none").fit(train)

    out = prep.transform(train)

    assert out[:, 0].tolist() == [0.0, 0.0, 4.0, 6.0, 2.0]  # median of 0, 0, 4, 6
    assert column(prep, out, "pain_missing").tolist() == [0, 0, 0, 0, 1]


def test_a_missing_indicator_exists_only_for_features_missing_in_training():
    train = pd.DataFrame({"a": [1.0, np.nan, 3.0], "b": [1.0, 2.0, 3.0]})

    with_flags = TabularPreprocessor([numeric("a"), numeric("b")]).fit(train)
    without = TabularPreprocessor([numeric("a"), numeric("b")], missing_indicators=False).fit(train)

    assert with_flags.get_feature_names_out().tolist() == ["a", "a_missing", "b"]
    assert without.get_feature_names_out().tolist() == ["a", "b"]


def test_output_is_float32(cohort):
    frame, features = cohort
    assert TabularPreprocessor(features).fit_transform(frame).dtype == np.float32


# --------------------------------------------------------------------------------------------------
# ranges
# --------------------------------------------------------------------------------------------------
def test_out_of_range_training_values_are_recorded_and_treated_as_missing():
    train = pd.DataFrame({"age": [40.0, 430.0, 60.0, 70.0]}, index=[1, 430, 3, 4])
    prep = TabularPreprocessor([AGE], scale="none")

    out = prep.fit_transform(train)

    assert prep.range_report_ == {
        "age": {"count": 1, "low": 18.0, "high": 100.0, "unit": "years", "ids": [430], "values": [430.0]}
    }
    assert out[1, 0] == 60.0  # imputed with the median of 40, 60, 70 (430 excluded)
    assert column(prep, out, "age_missing").tolist() == [0, 1, 0, 0]


def test_out_of_range_at_transform_is_refused_by_patient_id_when_asked():
    train = pd.DataFrame({"age": [40.0, 60.0, 70.0]})
    prep = TabularPreprocessor([AGE], out_of_range="error").fit(train)

    with pytest.raises(ValueRangeError, match=r"age must lie in \[18.0, 100.0\] years.*\['p-17'\]") as caught:
        prep.transform(pd.DataFrame({"age": [50.0, 170.0]}, index=["p-1", "p-17"]))
    assert caught.value.rows == ("p-17",)


def test_out_of_range_at_fit_never_raises_even_in_error_mode():
    train = pd.DataFrame({"age": [40.0, 430.0, 70.0]})
    out = TabularPreprocessor([AGE], out_of_range="error").fit_transform(train)
    assert out.shape == (3, 2)


def test_out_of_range_at_transform_becomes_missing_by_default():
    train = pd.DataFrame({"age": [40.0, np.nan, 80.0]})
    prep = TabularPreprocessor([AGE], scale="none").fit(train)

    out = prep.transform(pd.DataFrame({"age": [170.0]}))

    assert out.tolist() == [[60.0, 1.0]]


def test_log_features_are_log1p_transformed():
    train = pd.DataFrame({"crp": [0.0, np.e - 1, np.e**2 - 1]})
    out = TabularPreprocessor([numeric("crp", log=True)], scale="none").fit_transform(train)
    np.testing.assert_allclose(out[:, 0], [0.0, 1.0, 2.0], rtol=1e-6)


def test_a_negative_value_in_a_log_feature_is_refused_naming_the_patient():
    train = pd.DataFrame({"crp": [1.0, -3.0, 2.0]}, index=["a", "b", "c"])
    with pytest.raises(ValueRangeError, match=r"crp.*log1p.*\[-3.0\].*\['b'\]"):
        TabularPreprocessor([numeric("crp", log=True)]).fit(train)


def test_infinite_values_are_refused():
    with pytest.raises(ValueRangeError, match=r"'x': infinite.*\[2\]"):
        TabularPreprocessor([numeric("x")]).fit(pd.DataFrame({"x": [1.0, np.inf]}, index=[1, 2]))


# --------------------------------------------------------------------------------------------------
# binary, categorical, ordinal, genotype
# --------------------------------------------------------------------------------------------------
def test_binary_features_use_the_declared_positive_value(cohort):
    frame, features = cohort
    prep = TabularPreprocessor(features)

    out = prep.fit_transform(frame)

    # 104 is missing: filled with the training mode (male = 1) and flagged
    assert column(prep, out, "sex").tolist() == [1, 0, 1, 1, 0, 1]
    assert column(prep, out, "sex_missing").tolist() == [0, 0, 0, 1, 0, 0]


def test_binary_features_recognise_yes_no_spellings_without_positive(cohort):
    frame, features = cohort
    prep = TabularPreprocessor(features)
    assert column(prep, prep.fit_transform(frame), "smoker").tolist() == [1, 0, 0, 1, 0, 0]


def test_binary_true_false_and_one_zero_are_recognised():
    train = pd.DataFrame({"dm": [True, False, 1, 0, "true", "0"]})
    out = TabularPreprocessor([{"name": "dm", "kind": "binary"}]).fit_transform(train)
    assert out[:, 0].tolist() == [1, 0, 1, 0, 1, 0]


def test_sex_is_not_guessed_it_must_declare_its_positive_value():
    train = pd.DataFrame({"sex": ["male", "female"]}, index=[5, 6])
    with pytest.raises(SchemaError, match=r"'sex'.*\['male', 'female'\].*patient id\(s\) \[5, 6\].*positive"):
        TabularPreprocessor([{"name": "sex", "kind": "binary"}]).fit(train)


def test_a_binary_feature_with_a_third_value_is_refused():
    train = pd.DataFrame({"sex": ["M", "F", "unknown"]}, index=[1, 2, 3])
    with pytest.raises(SchemaError, match=r"'sex'.*\['f', 'unknown'\].*\[3\]"):
        TabularPreprocessor([{"name": "sex", "kind": "binary", "positive": ["M"]}]).fit(train)


def test_a_binary_value_unseen_in_training_is_refused_at_transform():
    train = pd.DataFrame({"sex": ["M", "F"]})
    prep = TabularPreprocessor([{"name": "sex", "kind": "binary", "positive": ["M"]}]).fit(train)
    with pytest.raises(SchemaError, match=r"'sex'.*\['X'\].*\[9\]"):
        prep.transform(pd.DataFrame({"sex": ["X"]}, index=[9]))


def test_categories_are_one_hot_encoded_in_sorted_order_missing_is_all_zeros(cohort):
    frame, features = cohort
    prep = TabularPreprocessor(features)

    out = prep.fit_transform(frame)
    names = prep.feature_names_out_
    block = out[:, [names.index(n) for n in ("size_large", "size_medium", "size_small", "size_missing")]]

    assert block.tolist() == [
        [0, 0, 1, 0], [1, 0, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0], [0, 1, 0, 0], [1, 0, 0, 0]]


def test_declared_categories_keep_their_order_and_columns_even_if_unseen():
    train = pd.DataFrame({"size": ["small", "large"]})
    size = {"name": "size", "kind": "categorical", "categories": ["small", "medium", "large"]}
    prep = TabularPreprocessor([size]).fit(train)
    assert prep.get_feature_names_out().tolist() == ["size_small", "size_medium", "size_large"]


def test_an_unknown_category_names_the_column_the_value_the_patient_and_the_choices():
    train = pd.DataFrame({"size": ["small", "large"]})
    prep = TabularPreprocessor([{"name": "size", "kind": "categorical"}]).fit(train)

    with pytest.raises(SchemaError) as caught:
        prep.transform(pd.DataFrame({"size": ["small", "huge"]}, index=[16, 17]))

    assert str(caught.value).startswith(
        "column 'size': unknown category 'huge' for patient id(s) [17]; expected one of ['large', 'small']"
    )
    assert caught.value.column == "size"


def test_numeric_categories_match_whatever_their_type():
    train = pd.DataFrame({"stage": [1, 2, 3.0, "2"]})
    prep = TabularPreprocessor([{"name": "stage", "kind": "categorical", "categories": [1, 2, 3]}]).fit(train)
    assert prep.transform(train).sum(axis=0).tolist() == [1, 2, 1]


def test_ordinal_codes_follow_the_declared_order():
    train = pd.DataFrame({"nyha": ["IV", "I", "II", np.nan]})
    prep = TabularPreprocessor([{"name": "nyha", "kind": "ordinal", "categories": ["I", "II", "III", "IV"]}],
                               scale="none").fit(train)

    out = prep.transform(pd.DataFrame({"nyha": ["I", "III", "IV", np.nan]}))

    assert out[:, 0].tolist() == [0.0, 2.0, 3.0, 1.0]  # missing: training median code (II)
    assert out[:, 1].tolist() == [0.0, 0.0, 0.0, 1.0]


def test_genotypes_become_allele_counts_imputed_with_the_training_mean(cohort):
    frame, features = cohort
    prep = TabularPreprocessor(features, scale="none")

    out = prep.fit_transform(frame)
    names = prep.feature_names_out_
    wanted = ("genotype_E2", "genotype_E3", "genotype_E4", "genotype_missing")
    block = out[:, [names.index(n) for n in wanted]]

    assert block[0].tolist() == [0, 1, 1, 0]  # E3E4
    assert block[1].tolist() == [0, 0, 2, 0]  # E4/E4
    np.testing.assert_allclose(block[2], [0.2, 1.0, 0.8, 1.0], rtol=1e-6)  # ./. -> training means


def test_feature_groups_map_every_input_feature_to_its_output_columns(cohort):
    frame, features = cohort
    prep = TabularPreprocessor(features).fit(frame)

    groups = prep.feature_groups_

    assert list(groups) == [f["name"] for f in features]
    assert sorted(i for cols in groups.values() for i in cols) == list(range(len(prep.feature_names_out_)))
    assert [prep.feature_names_out_[i] for i in groups["size"]] == [
        "size_large", "size_medium", "size_small", "size_missing"]


# --------------------------------------------------------------------------------------------------
# input errors
# --------------------------------------------------------------------------------------------------
def test_a_frame_lacking_declared_columns_is_refused_naming_them(cohort):
    frame, features = cohort
    prep = TabularPreprocessor(features).fit(frame)
    with pytest.raises(SchemaError, match=r"missing column\(s\) \['crp', 'size'\]"):
        prep.transform(frame.drop(columns=["crp", "size"]))


def test_extra_columns_and_another_column_order_are_fine(cohort):
    frame, features = cohort
    prep = TabularPreprocessor(features).fit(frame)
    shuffled = frame[frame.columns[::-1]].assign(outcome=1)
    np.testing.assert_array_equal(prep.transform(shuffled), prep.transform(frame))


def test_a_non_numeric_value_in_a_numeric_column_names_column_value_and_patient():
    train = pd.DataFrame({"sodium": ["140", "n/a", "138"]}, index=[7, 8, 9])
    with pytest.raises(SchemaError, match=r"'sodium' must be numeric.*\['n/a'\].*patient id\(s\) \[8\]"):
        TabularPreprocessor([numeric("sodium")]).fit(train)


def test_fit_refuses_a_feature_without_any_observed_value():
    train = pd.DataFrame({"troponin": [np.nan, np.nan], "age": [50.0, 60.0]})
    with pytest.raises(DataError, match="'troponin' has no observed value"):
        TabularPreprocessor([numeric("troponin"), numeric("age")]).fit(train)


def test_fit_refuses_a_feature_whose_every_value_is_out_of_range():
    train = pd.DataFrame({"age": [430.0, 510.0]})
    with pytest.raises(DataError, match=r"'age' has no observed value.*outside \[18, 100\]"):
        TabularPreprocessor([AGE]).fit(train)


def test_invalid_feature_declarations_and_parameters_are_config_errors():
    train = pd.DataFrame({"x": [1.0, 2.0]})
    with pytest.raises(ConfigError, match="unknown_key"):
        TabularPreprocessor([{"name": "x", "unknown_key": 1}]).fit(train)
    with pytest.raises(ConfigError, match="impute"):
        TabularPreprocessor([numeric("x")], impute="zero").fit(train)
    with pytest.raises(ConfigError, match="listed twice"):
        TabularPreprocessor([numeric("x"), numeric("x")]).fit(train)


def test_feature_configs_and_their_dumps_give_the_same_result(cohort):
    frame, features = cohort
    configs = [FeatureConfig(**f) for f in features]
    dumps = [c.model_dump() for c in configs]
    np.testing.assert_array_equal(TabularPreprocessor(configs).fit_transform(frame),
                                  TabularPreprocessor(dumps).fit_transform(frame))


def test_transform_before_fit_says_so():
    with pytest.raises(NotFittedError, match="fit"):
        TabularPreprocessor().transform(np.ones((2, 2)))


# --------------------------------------------------------------------------------------------------
# JSON state and sklearn niceties
# --------------------------------------------------------------------------------------------------
def test_json_state_round_trip_transforms_bit_for_bit(cohort):
    frame, features = cohort
    prep = TabularPreprocessor(features, impute="mean", scale="robust").fit(frame)
    new = frame.assign(age=[30.0, 50.0, np.nan, 99.0, 18.0, 100.0])

    text = json.dumps(prep.to_state())
    reloaded = TabularPreprocessor.from_state(json.loads(text))

    assert reloaded.transform(new).tobytes() == prep.transform(new).tobytes()
    assert reloaded.get_feature_names_out().tolist() == prep.get_feature_names_out().tolist()
    assert reloaded.feature_groups_ == prep.feature_groups_
    assert reloaded.get_params() == json.loads(json.dumps(prep.get_params()))


def test_state_holds_only_plain_json_types(cohort):
    frame, features = cohort
    state = TabularPreprocessor(features).fit(frame).to_state()

    def plain(value):
        if isinstance(value, dict):
            return all(isinstance(k, str) and plain(v) for k, v in value.items())
        if isinstance(value, list):
            return all(plain(v) for v in value)
        return value is None or type(value) in (str, int, float, bool)

    assert plain(state)
    assert json.loads(json.dumps(state, allow_nan=False)) == state


def test_a_state_from_another_format_is_refused(cohort):
    frame, features = cohort
    state = TabularPreprocessor(features).fit(frame).to_state()
    with pytest.raises(ArtifactError, match="format 99"):
        TabularPreprocessor.from_state({**state, "format": 99})
    with pytest.raises(ArtifactError, match="not a preprocessor state"):
        TabularPreprocessor.from_state({"weights": []})


def test_pandas_output_keeps_the_patient_ids(cohort):
    frame, features = cohort
    prep = TabularPreprocessor(features).set_output(transform="pandas").fit(frame)

    out = prep.transform(frame)

    assert out.index.tolist() == frame.index.tolist()
    assert out.columns.tolist() == prep.feature_names_out_


def test_without_features_every_column_is_numeric_and_arrays_get_x_names():
    prep = TabularPreprocessor().fit(np.array([[1.0, np.nan], [2.0, 3.0]]))
    assert prep.get_feature_names_out().tolist() == ["x0", "x1", "x1_missing"]
    assert prep.get_feature_names_out(["a", "b"]).tolist() == ["a", "b", "b_missing"]
