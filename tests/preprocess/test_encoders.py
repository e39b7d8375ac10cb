import pickle

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from precimed.errors import ConfigError, NotFittedError, SchemaError, ValueRangeError
from precimed.preprocess import GenotypeEncoder, RangeGuard
from precimed.preprocess.encoders import parse_genotype

APOE = ["E2", "E3", "E4"]


def counts(encoder, values, column="apoe", index=None):
    frame = pd.DataFrame({column: values}, index=index)
    return encoder.fit(frame).transform(frame)


# --------------------------------------------------------------------------------------------------
# RangeGuard
# --------------------------------------------------------------------------------------------------
def test_range_guard_turns_implausible_values_into_missing_and_counts_them_at_fit():
    ages = pd.DataFrame({"age": [45.0, 430.0, 70.0, -2.0, np.nan]}, index=[11, 12, 13, 14, 15])

    guard = RangeGuard(low=18, high=100).fit(ages)
    out = guard.transform(ages)

    assert guard.n_out_of_range_.tolist() == [2]
    np.testing.assert_array_equal(out[:, 0], [45.0, np.nan, 70.0, np.nan, np.nan])


def test_range_guard_in_error_mode_names_the_column_and_the_patient():
    ages = pd.DataFrame({"age": [45.0, 430.0]}, index=["p-1", "p-430"])
    guard = RangeGuard(low=18, high=100, on_violation="error").fit(ages)  # fit counts, never raises

    with pytest.raises(ValueRangeError, match=r"age.*\[18.0, 100.0\].*'p-430'") as caught:
        guard.transform(ages)

    assert caught.value.column == "age"
    assert caught.value.rows == ("p-430",)


def test_range_guard_keeps_the_bounds_themselves():
    values = np.array([[18.0], [100.0]])
    np.testing.assert_array_equal(RangeGuard(low=18, high=100).fit_transform(values), values)


def test_range_guard_takes_one_bound_per_column():
    X = np.array([[5.0, 5.0], [50.0, 50.0]])

    out = RangeGuard(low=[0, 0], high=[10, 100]).fit_transform(X)

    np.testing.assert_array_equal(out, [[5.0, 5.0], [np.nan, 50.0]])


def test_range_guard_refuses_bounds_that_make_no_sense():
    with pytest.raises(ConfigError, match="low 10.0 > high 1.0"):
        RangeGuard(low=10, high=1).fit(np.ones((3, 1)))
    with pytest.raises(ConfigError, match="on_violation"):
        RangeGuard(on_violation="clip").fit(np.ones((3, 1)))


def test_range_guard_does_not_change_its_input():
    X = np.array([[1.0], [500.0]])
    RangeGuard(high=100).fit_transform(X)
    assert X[1, 0] == 500.0


# --------------------------------------------------------------------------------------------------
# GenotypeEncoder: reading genotypes
# --------------------------------------------------------------------------------------------------
def test_apoe_e3e4_without_separator_counts_one_e3_and_one_e4():
    out = counts(GenotypeEncoder(alleles=APOE), ["E3E4"])
    assert out.tolist() == [[0.0, 1.0, 1.0]]


def test_apoe_e4_homozygote_counts_two_e4():
    out = counts(GenotypeEncoder(alleles=APOE), ["E4/E4"])
    assert out.tolist() == [[0.0, 0.0, 2.0]]


@pytest.mark.parametrize("spelling", ["E3E4", "E3/E4", "E3|E4", "e3/e4", "e4e3", " E3 / E4 "])
def test_every_common_spelling_of_a_genotype_reads_the_same(spelling):
    assert counts(GenotypeEncoder(alleles=APOE), [spelling]).tolist() == [[0.0, 1.0, 1.0]]


def test_vcf_genotype_calls_count_the_alt_allele():
    out = counts(GenotypeEncoder(alleles=["0", "1"]), ["0/0", "0/1", "1|1", "1|0"], column="rs429358")
    assert out[:, 1].tolist() == [0.0, 1.0, 2.0, 1.0]
    assert out[:, 0].tolist() == [2.0, 1.0, 0.0, 1.0]


def test_ref_alt_letters_are_read_like_any_allele():
    out = counts(GenotypeEncoder(alleles=["A", "G"]), ["A/G", "g/g", "AA"], column="rs1")
    assert out.tolist() == [[1.0, 1.0], [0.0, 2.0], [2.0, 0.0]]


def test_longest_allele_is_matched_first_when_alleles_share_a_prefix():
    out = counts(GenotypeEncoder(alleles=["*1", "*17", "*2"]), ["*17*2", "*1*17"], column="cyp2c19")
    assert out.tolist() == [[0.0, 1.0, 1.0], [1.0, 1.0, 0.0]]


@pytest.mark.parametrize("missing", ["./.", ".|.", "", np.nan, None, "0/."])
def test_a_missing_call_is_missing_in_every_count_column_never_zero(missing):
    out = counts(GenotypeEncoder(alleles=["0", "1"]), ["0/1", missing], column="rs1")
    assert np.isnan(out[1]).all()


def test_an_unparseable_genotype_names_column_value_patient_and_alleles():
    frame = pd.DataFrame({"apoe": ["E3/E4", "E3/E5", "banana"]}, index=[101, 102, 103])

    with pytest.raises(SchemaError) as caught:
        GenotypeEncoder(alleles=APOE).fit(frame)

    message = str(caught.value)
    for expected in ("'apoe'", "'E3/E5'", "'banana'", "102", "103", "['E2', 'E3', 'E4']"):
        assert expected in message
    assert caught.value.column == "apoe"


def test_an_allele_outside_the_list_is_refused_at_transform_too():
    encoder = GenotypeEncoder(alleles=APOE).fit(pd.DataFrame({"apoe": ["E3/E4"]}))
    with pytest.raises(SchemaError, match=r"'E1/E3'.*patient id\(s\) \[7\].*allele 'E1' is not"):
        encoder.transform(pd.DataFrame({"apoe": ["E1/E3"]}, index=[7]))


def test_three_alleles_are_not_a_diploid_genotype():
    with pytest.raises(SchemaError, match="0/1/1"):
        counts(GenotypeEncoder(alleles=["0", "1"]), ["0/1/1"])


def test_parse_genotype_returns_the_declared_spelling():
    assert parse_genotype("e2E4", APOE) == ("E2", "E4")
    assert parse_genotype("./.", APOE) is None


# --------------------------------------------------------------------------------------------------
# GenotypeEncoder: options and output
# --------------------------------------------------------------------------------------------------
def test_output_columns_are_named_column_underscore_allele():
    encoder = GenotypeEncoder(alleles=APOE).fit(pd.DataFrame({"apoe": ["E3/E3"]}))
    assert encoder.get_feature_names_out().tolist() == ["apoe_E2", "apoe_E3", "apoe_E4"]


def test_dominant_encoding_flags_carriers_of_the_effect_allele():
    encoder = GenotypeEncoder(alleles=APOE, encoding="dominant", effect_allele="E4")
    out = counts(encoder, ["E3/E3", "E3/E4", "E4/E4", "./."])
    assert out[:3, 0].tolist() == [0.0, 1.0, 1.0]
    assert np.isnan(out[3, 0])
    assert encoder.get_feature_names_out().tolist() == ["apoe_E4_dominant"]


def test_recessive_encoding_flags_homozygotes_only():
    encoder = GenotypeEncoder(alleles=APOE, encoding="recessive", effect_allele="e4")
    assert counts(encoder, ["E3/E4", "E4/E4"])[:, 0].tolist() == [0.0, 1.0]


def test_dominant_without_an_effect_allele_is_a_config_error():
    with pytest.raises(ConfigError, match="effect_allele"):
        GenotypeEncoder(alleles=APOE, encoding="dominant").fit(pd.DataFrame({"apoe": ["E3/E4"]}))


def test_without_declared_alleles_they_are_learned_from_separated_calls():
    encoder = GenotypeEncoder().fit(pd.DataFrame({"rs1": ["A/G", "g|g", "./."]}))
    assert encoder.alleles_ == [["A", "G"]]


def test_without_declared_alleles_concatenated_calls_cannot_be_split():
    with pytest.raises(SchemaError, match="declare the alleles"):
        GenotypeEncoder().fit(pd.DataFrame({"apoe": ["E3E4"]}))


def test_each_column_of_a_frame_gets_its_own_count_columns():
    frame = pd.DataFrame({"rs1": ["0/1", "1/1"], "rs2": ["0/0", "0/1"]})
    encoder = GenotypeEncoder(alleles=["0", "1"]).fit(frame)

    assert encoder.get_feature_names_out().tolist() == ["rs1_0", "rs1_1", "rs2_0", "rs2_1"]
    assert encoder.transform(frame).tolist() == [[1, 1, 2, 0], [0, 2, 1, 1]]


# --------------------------------------------------------------------------------------------------
# GenotypeEncoder: the scikit-learn contract, on strings (sklearn's own checks feed floats)
# --------------------------------------------------------------------------------------------------
STRINGS = np.array([["E3/E4", "0/1"], ["E4/E4", "1/1"], ["E2/E3", "./."]], dtype=object)


def test_genotype_encoder_follows_the_sklearn_contract_on_string_arrays():
    encoder = GenotypeEncoder()
    assert encoder.fit(STRINGS) is encoder
    assert encoder.n_features_in_ == 2
    first = encoder.transform(STRINGS)

    np.testing.assert_array_equal(clone(encoder).fit(STRINGS).transform(STRINGS), first)
    np.testing.assert_array_equal(encoder.fit(STRINGS).transform(STRINGS), first)  # idempotent
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(encoder)).transform(STRINGS), first)
    np.testing.assert_array_equal(encoder.transform(STRINGS[::-1]), first[::-1])  # row order
    np.testing.assert_array_equal(encoder.transform(STRINGS[:1]), first[:1])  # subsets
    with pytest.raises(ValueError, match="2 features"):
        encoder.transform(STRINGS[:, :1])


def test_genotype_encoder_works_inside_a_pipeline():
    frame = pd.DataFrame({"rs1": ["0/1", "1/1", "0/0", "0/1"]})
    pipeline = make_pipeline(GenotypeEncoder(alleles=["0", "1"]), StandardScaler()).fit(frame)
    assert pipeline.transform(frame).shape == (4, 2)


def test_transform_before_fit_says_so():
    with pytest.raises(NotFittedError, match="not fitted"):
        GenotypeEncoder(alleles=APOE).transform(pd.DataFrame({"apoe": ["E3/E4"]}))
