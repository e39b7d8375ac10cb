import os
import pickle
import stat

import pytest

from precimed.errors import ConfigError
from precimed.privacy import KeyMaterial, Pseudonymizer, load_key, load_policy, new_key_file, parse_policy
from precimed.privacy.pseudonym import normalize_id

from .conftest import ISSUE_POLICY, KEY_BYTES


def test_the_issue_policy_form_parses(write_policy):
    policy = load_policy(write_policy(ISSUE_POLICY))
    assert policy.patient_id == "mrn"
    assert policy.role_of("glucose") == "keep" and policy.role_of("unknown") is None
    assert policy.quasi_columns == ["zip", "age"]


@pytest.mark.parametrize("bad", [
    {"columns": {"a": "keep"}, "colums": {}},                      # typo at the top
    {"columns": {"a": "secret"}},                                   # unknown role
    {"columns": {"a": "keep"}, "options": {"k": 5, "kk": 1}},       # typo in options
    {"patient_id": "mrn", "columns": {"mrn": "keep"}},              # a patient id kept in clear
    {"columns": {"d": "date"}},                                     # shifting dates needs a patient id
])
def test_policies_with_unknown_keys_or_contradictions_are_refused(bad, write_policy):
    with pytest.raises(ConfigError, match="invalid policy"):
        load_policy(write_policy(bad))


def test_a_key_never_shows_in_repr_str_format_or_pickle():
    key = KeyMaterial(KEY_BYTES, "test")
    for text in (repr(key), str(key), f"{key}", f"{key!r}"):
        assert KEY_BYTES.decode() not in text and key.fingerprint in text
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(key)


def test_no_key_means_no_output_and_short_keys_are_refused(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="no key"):
        load_key()
    with pytest.raises(ConfigError, match="not found"):
        load_key(tmp_path / "missing.key")
    monkeypatch.delenv("PRECIMED_TEST_KEY", raising=False)
    with pytest.raises(ConfigError, match="not set"):
        load_key(key_env="PRECIMED_TEST_KEY")
    (tmp_path / "short.key").write_text("tooshort")
    with pytest.raises(ConfigError, match="at least 16") as err:
        load_key(tmp_path / "short.key")
    assert "tooshort" not in str(err.value)


def test_the_same_key_from_a_file_or_a_variable_gives_the_same_pseudonyms(key_file, monkeypatch):
    monkeypatch.setenv("PRECIMED_TEST_KEY", KEY_BYTES.decode())
    from_file, from_env = load_key(key_file), load_key(key_env="PRECIMED_TEST_KEY")
    assert from_file == from_env
    assert Pseudonymizer(from_file)("00123") == Pseudonymizer(from_env)("00123")


def test_pseudonyms_are_keyed_stable_and_normalized(key):
    other = KeyMaterial(b"another-key-0123456789abcdef", "other")
    p = Pseudonymizer(key)
    assert p("00123") == p(" 00123 ") and len(p("00123")) == 20
    assert p("00123") != Pseudonymizer(other)("00123")
    assert p(12345) == p("12345") == p(12345.0)            # CSV text, Parquet int, float column
    assert p(None) is None and p(float("nan")) is None and normalize_id("NA") is None


def test_new_key_files_are_private_and_never_overwritten(tmp_path):
    path = new_key_file(tmp_path / "k.key")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600 and len(load_key(path).fingerprint) == 8
    with pytest.raises(ConfigError, match="never overwritten"):
        new_key_file(path)


def test_options_for_generalization_must_name_quasi_columns():
    with pytest.raises(ConfigError, match="not a quasi column"):
        parse_policy({"columns": {"a": "keep"}, "options": {"generalize": {"a": "zip3"}}})
