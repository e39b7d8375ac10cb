"""The transformers honour scikit-learn's shared estimator contract (parametrize_with_checks)."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from precimed.preprocess import GenotypeEncoder, RangeGuard, TabularPreprocessor

# sklearn's checks generate random float matrices. A float such as 0.5488 is not a genotype, so
# GenotypeEncoder refuses it (SchemaError), as it should; every check that fits on such data is
# therefore expected to fail. The same contract (fit returns self, clone, idempotent fit, column
# count checked, works in a Pipeline, pickles) is tested on genotype strings in test_encoders.py.
_FLOATS_ARE_NOT_GENOTYPES = "sklearn feeds random floats, which are not genotypes; tested on strings instead"
_GENOTYPE_CHECKS_ON_FLOATS = [
    "check_dict_unchanged",
    "check_dont_overwrite_parameters",
    "check_dtype_object",
    "check_estimators_dtypes",
    "check_estimators_fit_returns_self",
    "check_estimators_overwrite_params",
    "check_estimators_pickle",
    "check_f_contiguous_array_estimator",
    "check_fit2d_1feature",
    "check_fit2d_1sample",
    "check_fit2d_predict1d",
    "check_fit_check_is_fitted",
    "check_fit_idempotent",
    "check_fit_score_takes_y",
    "check_methods_sample_order_invariance",
    "check_methods_subset_invariance",
    "check_n_features_in",
    "check_n_features_in_after_fitting",
    "check_pipeline_consistency",
    "check_positive_only_tag_during_fit",
    "check_readonly_memmap_input",
    "check_transformer_data_not_an_array",
    "check_transformer_general",
]


def _expected_failures(estimator):
    if isinstance(estimator, GenotypeEncoder):
        return dict.fromkeys(_GENOTYPE_CHECKS_ON_FLOATS, _FLOATS_ARE_NOT_GENOTYPES)
    return {}


@parametrize_with_checks(
    [
        RangeGuard(),
        RangeGuard(low=-1.0, high=1.0),
        GenotypeEncoder(),
        TabularPreprocessor(),
        TabularPreprocessor(impute="mean", missing_indicators=False, scale="robust"),
    ],
    expected_failed_checks=_expected_failures,
)
def test_sklearn_contract(estimator, check):
    check(estimator)
