"""read_table reads the user's tables by suffix and says, with the file's path, what is wrong."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from precimed.data import ACCEPTED_SUFFIXES, read_table
from precimed.errors import DataError, SchemaError


@pytest.fixture
def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "patient_id": ["p1", "p2", "p3"],
            "age": [61, 47, 70],
            "sbp": [142.5, np.nan, 118.0],
            "sex": ["f", np.nan, "m"],
        }
    )


def _write(path, text: str | bytes):
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("suffix", "write"),
    [
        (".csv", lambda df, p: df.to_csv(p, index=False)),
        (".tsv", lambda df, p: df.to_csv(p, sep="\t", index=False)),
        (".parquet", lambda df, p: df.to_parquet(p, index=False)),
        (".json", lambda df, p: df.to_json(p, orient="records")),
        (".jsonl", lambda df, p: df.to_json(p, orient="records", lines=True)),
    ],
)
def test_a_small_frame_survives_a_round_trip(tmp_path, frame, suffix, write):
    path = tmp_path / f"cohort{suffix}"
    write(frame, path)
    pd.testing.assert_frame_equal(read_table(path), frame)


def test_accepted_suffixes_are_exactly_the_documented_ones():
    assert ACCEPTED_SUFFIXES == (".csv", ".tsv", ".parquet", ".json", ".jsonl")


def test_csv_marks_only_the_four_missing_spellings_as_missing(tmp_path):
    path = _write(tmp_path / "m.csv", "note,value\n,1\nNA,2\nNaN,3\nnull,4\nNone,5\nn/a,6\n")
    df = read_table(path)
    assert df["note"].isna().tolist() == [True, True, True, True, False, False]
    assert df["note"].dropna().tolist() == ["None", "n/a"]


def test_csv_infers_numbers_but_keeps_text_and_leading_zero_codes(tmp_path):
    path = _write(
        tmp_path / "t.csv", "mrn,count,dose,flag,when\n007,1,0.5,yes,2020-01-02\n012,2,NA,no,2021-03-04\n"
    )
    df = read_table(path)
    assert df["mrn"].tolist() == ["007", "012"]
    assert df["count"].dtype == np.int64
    assert df["dose"].dtype == np.float64 and np.isnan(df.loc[1, "dose"])
    assert df["flag"].tolist() == ["yes", "no"]
    assert df["when"].tolist() == ["2020-01-02", "2021-03-04"]  # dates stay text: no parsing here


def test_csv_ignores_a_byte_order_mark(tmp_path):
    path = _write(tmp_path / "bom.csv", "\ufeffid,x\n1,2\n".encode())
    assert list(read_table(path).columns) == ["id", "x"]


def test_a_parquet_index_with_a_name_becomes_a_column(tmp_path, frame):
    path = tmp_path / "indexed.parquet"
    frame.set_index("patient_id").to_parquet(path)
    assert read_table(path)["patient_id"].tolist() == ["p1", "p2", "p3"]


def test_a_missing_file_is_named(tmp_path):
    path = tmp_path / "nowhere.csv"
    with pytest.raises(DataError, match="file not found") as caught:
        read_table(path)
    assert str(path) in str(caught.value)


def test_an_unknown_suffix_lists_the_accepted_ones(tmp_path):
    path = _write(tmp_path / "cohort.xlsx", "x")
    with pytest.raises(DataError, match=r"unknown file type \('.xlsx'\)") as caught:
        read_table(path)
    assert str(path) in str(caught.value)
    assert all(suffix in str(caught.value) for suffix in ACCEPTED_SUFFIXES)


def test_a_directory_is_not_a_table(tmp_path):
    with pytest.raises(DataError, match="is a directory"):
        read_table(tmp_path)


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("zero.csv", ""),
        ("zero.parquet", b""),
        ("header_only.csv", "id,age\n"),
        ("header_only.tsv", "id\tage\n"),
        ("blank_lines.csv", "\n\n"),
        ("empty_list.json", "[]"),
        ("blank.json", "  \n"),
        ("blank.jsonl", "\n\n"),
    ],
)
def test_a_table_without_rows_is_refused(tmp_path, name, content):
    path = _write(tmp_path / name, content)
    with pytest.raises(DataError, match=r": the file has no rows$") as caught:
        read_table(path)
    assert str(caught.value).startswith(str(path))


def test_a_parquet_file_with_zero_rows_is_refused(tmp_path, frame):
    path = tmp_path / "none.parquet"
    frame.iloc[:0].to_parquet(path)
    with pytest.raises(DataError, match="the file has no rows"):
        read_table(path)


def test_a_ragged_csv_names_the_line(tmp_path):
    path = _write(tmp_path / "ragged.csv", "id,age\n1,50\n2,60,extra\n")
    with pytest.raises(DataError, match=r"cannot parse the file as CSV: .*line 3") as caught:
        read_table(path)
    assert str(path) in str(caught.value)


def test_a_csv_that_is_not_utf8_is_refused(tmp_path):
    path = _write(tmp_path / "latin1.csv", "name\nJos\xe9\n".encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8"):
        read_table(path)


def test_broken_json_names_the_line_and_column(tmp_path):
    path = _write(tmp_path / "broken.json", '[\n{"id": 1},\n{"id": }\n]')
    with pytest.raises(DataError, match="cannot parse the JSON at line 3 column 8") as caught:
        read_table(path)
    assert str(path) in str(caught.value)


def test_json_lines_saved_as_json_get_a_hint(tmp_path):
    path = _write(tmp_path / "lines.json", '{"id": 1}\n{"id": 2}\n')
    with pytest.raises(DataError, match=r"name the file \.jsonl"):
        read_table(path)


def test_broken_json_lines_name_the_line(tmp_path):
    path = _write(tmp_path / "broken.jsonl", '{"id": 1}\n\n{"id": 2,}\n')
    with pytest.raises(DataError, match="line 3"):
        read_table(path)


@pytest.mark.parametrize(
    ("content", "found"),
    [
        ('{"id": [1, 2], "age": [50, 60]}', "found an object"),
        ('"text"', "found a string"),
    ],
)
def test_json_that_is_not_a_list_of_records_is_refused(tmp_path, content, found):
    path = _write(tmp_path / "columns.json", content)
    with pytest.raises(DataError, match=f"expected a JSON list of records.*{found}") as caught:
        read_table(path)
    assert str(path) in str(caught.value)


def test_a_json_list_of_non_objects_names_the_record(tmp_path):
    path = _write(tmp_path / "values.json", '[{"id": 1}, [2, 3]]')
    with pytest.raises(DataError, match="record 2 is a list"):
        read_table(path)


def test_a_json_line_that_is_not_an_object_names_the_line(tmp_path):
    path = _write(tmp_path / "values.jsonl", '{"id": 1}\n\n42\n')
    with pytest.raises(DataError, match="line 3 is a number"):
        read_table(path)


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("dup.csv", "id,age,age\n1,50,51\n"),
        ("dup.tsv", "id\tid\n1\t2\n"),
        ("dup.json", '[{"id": 1, "age": 50, "age": 51}]'),
        ("dup.jsonl", '{"id": 1, "id": 2}\n'),
    ],
)
def test_duplicate_column_names_are_a_schema_error_naming_the_column(tmp_path, name, content):
    path = _write(tmp_path / name, content)
    with pytest.raises(SchemaError, match="duplicate column name") as caught:
        read_table(path)
    assert str(path) in str(caught.value)
    assert caught.value.column in {"age", "id"}


def test_a_parquet_file_with_duplicate_columns_is_a_schema_error(tmp_path):
    path = tmp_path / "dup.parquet"
    pq.write_table(pa.table([pa.array([1]), pa.array([2])], names=["x", "x"]), path)
    with pytest.raises(SchemaError, match=r"duplicate column name\(s\) \['x'\]"):
        read_table(path)


def test_a_file_that_is_not_parquet_is_refused(tmp_path):
    path = _write(tmp_path / "fake.parquet", "id,age\n1,50\n")
    with pytest.raises(DataError, match="cannot read the file as Parquet") as caught:
        read_table(path)
    assert str(path) in str(caught.value)


def test_json_nulls_and_absent_keys_become_nan(tmp_path):
    path = _write(tmp_path / "gaps.json", '[{"id": "a", "sex": null}, {"id": "b", "sex": "f", "age": 50}]')
    df = read_table(path)
    assert list(df.columns) == ["id", "sex", "age"]
    assert isinstance(df.loc[0, "sex"], float) and np.isnan(df.loc[0, "sex"])
    assert np.isnan(df.loc[0, "age"]) and df.loc[1, "age"] == 50


def test_records_without_any_column_are_refused(tmp_path):
    path = _write(tmp_path / "hollow.jsonl", "{}\n{}\n")
    with pytest.raises(DataError, match="the file has no columns"):
        read_table(path)


@pytest.mark.parametrize("text", [
    "id,age,sex\n1,50,F\n2,,M\n",                          # a missing number: floats
    "\ufeffid,code\r\n1,007\r\n2,010\r\n",                  # byte-order mark, CRLF, leading-zero codes stay text
    'id,note\n1,"a, quoted\nline"\n2,"say ""hi"""\n',       # quotes, separators and newlines inside a field
    "id,x\n1,NA\n2,NaN\n3,null\n4,\n",                      # the four missing spellings: an all-missing column
    "id,x\n1,1e3\n2,-0.5\n3,+7\n",                          # exponents and signs
    "id,x\n\n1,a\n\n2,b\n",                                 # blank lines skipped
    "id,x\n1,=HYPERLINK(1)\n2,é ü 漢\n",                    # text kept as written
])
def test_the_fast_csv_path_gives_the_same_frame_as_the_exact_one(tmp_path, text):
    """A clean file goes through pyarrow, a file with a problem through the csv module: one frame either way."""
    from precimed.data.files import _read_delimited_exact

    path = tmp_path / "t.csv"
    path.write_bytes(text.encode("utf-8"))
    pd.testing.assert_frame_equal(read_table(path), _read_delimited_exact(path, ","))
