"""Hostile and careless input files (finding 8, 9, 10 of issue 11): each costs one line and exit 2, never memory,
a shifted column, a traceback or an overwritten input; CSV outputs cannot start a spreadsheet formula."""

from __future__ import annotations

import io
import json
import os
import tracemalloc

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from helpers import PIMA, fast
from precimed.csvio import csv_bytes, escape_cell
from precimed.data import read_table
from precimed.errors import ConfigError, DataError
from precimed.limits import DEFAULT_MAX_INPUT_BYTES, MAX_INPUT_ENV, max_input_bytes


def _train_on(run_cli, path) -> tuple[int, str]:
    """`precimed train` on a config whose training data is ``path`` (the first thing it reads): (code, stderr)."""
    cfg = fast(PIMA)
    cfg["data"] = {"train": {"path": str(path)}, "test": {"path": str(path)}}
    config = path.parent / f"{path.name}.yaml"
    config.write_text(yaml.safe_dump(cfg))
    code, _, err = run_cli("train", config, "--out", path.parent / f"run-{path.stem}")
    assert not (path.parent / f"run-{path.stem}").exists()
    return code, err


def _one_line(code: int, err: str) -> str:
    """The CLI's answer to a user's mistake: exit 2 and one `error:` line, the last (progress lines may precede)."""
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert code == 2, err
    assert lines[-1].startswith("error:") and "Traceback" not in err, err
    assert [line for line in lines if "error" in line.lower()] == lines[-1:], err
    return lines[-1]


# ----- size limit, checked before reading -------------------------------------------------------------------------
def _sparse(path, size: int):
    """A file of ``size`` bytes that costs no disk: a small CSV head, then a hole."""
    with path.open("wb") as handle:
        handle.write(b"id,age\n1,50\n")
        handle.truncate(size)
    return path


def test_a_file_over_the_limit_is_refused_before_a_byte_is_read(tmp_path, monkeypatch):
    """A 200 MB file with the default 100 MiB limit: refused at once, with no more memory than the error."""
    big = _sparse(tmp_path / "huge.csv", 200 * 1024 * 1024)
    monkeypatch.delenv(MAX_INPUT_ENV, raising=False)
    tracemalloc.start()
    with pytest.raises(DataError) as caught:
        read_table(big)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert str(caught.value).startswith(f"{big}: the file is 209,715,200 bytes, over the input limit of 104,857,600")
    assert peak < 1_000_000  # refused before a byte was read (reading it used 840 MB before)


def test_the_size_refusal_is_one_line_and_exit_2_naming_file_size_and_limit(run_cli, tmp_path, monkeypatch):
    big = _sparse(tmp_path / "huge.csv", 5_000_000)
    monkeypatch.setenv(MAX_INPUT_ENV, "1000000")
    line = _one_line(*_train_on(run_cli, big))
    assert "huge.csv" in line and "5,000,000 bytes" in line and "1,000,000 bytes" in line and MAX_INPUT_ENV in line


def test_the_limit_applies_to_every_reader_and_defaults_to_100_mib(tmp_path, monkeypatch):
    monkeypatch.delenv(MAX_INPUT_ENV, raising=False)
    assert max_input_bytes() == DEFAULT_MAX_INPUT_BYTES == 100 * 1024 * 1024
    for name, content in (("a.csv", "id\n1\n"), ("a.json", '[{"id": 1}]'), ("a.jsonl", '{"id": 1}\n')):
        path = tmp_path / name
        path.write_text(content)
        with pytest.raises(DataError, match="over the input limit of 4 bytes"):
            read_table(path, max_bytes=4)


@pytest.mark.parametrize("value", ["lots", "-5", "0"])
def test_a_bad_limit_setting_is_a_config_error_naming_it(monkeypatch, value):
    monkeypatch.setenv(MAX_INPUT_ENV, value)
    with pytest.raises(ConfigError, match=MAX_INPUT_ENV):
        max_input_bytes()


# ----- CSV: NUL bytes, ragged rows, huge fields and numbers ------------------------------------------------------
@pytest.mark.parametrize(("content", "expected"), [
    ("id,age,sex\n1,50,f\n2,60\n3,70,m\n", "row 2 (line 3) has 2 field(s), expected 3"),
    ("id,age\n1,50\n2,60,f\n", "row 2 (line 3) has 3 field(s), expected 2"),
    ("id,age\n1,50\n2,6\x000\n", "row 2 (line 3), column 'age' holds a NUL byte"),
    ("id,note\n1,\"multi\nline\"\n2,a\x00b\n", "row 2 (line 4), column 'note' holds a NUL byte"),
    ("i\x00d,age\n1,50\n", "the header holds a NUL byte"),
])
def test_a_ragged_row_or_a_nul_byte_is_an_error_naming_the_row_never_a_shift(tmp_path, content, expected):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(DataError) as caught:
        read_table(path)
    message = str(caught.value)
    assert expected in message and message.startswith(str(path)) and "\n" not in message


def test_a_short_row_in_a_tsv_is_named_too(tmp_path):
    path = tmp_path / "bad.tsv"
    path.write_text("id\tage\tsex\n1\t50\tf\n2\t60\n")
    with pytest.raises(DataError, match=r"TSV: row 2 \(line 3\) has 2 field"):
        read_table(path)


def test_a_131_kb_field_is_one_line_and_exit_2(run_cli, tmp_path):
    path = tmp_path / "wide.csv"
    path.write_text("id,note\n1," + "x" * 131_073 + "\n")
    line = _one_line(*_train_on(run_cli, path))
    assert "wide.csv" in line and "line 2" in line and "131,072 characters" in line


def test_a_5000_digit_number_in_a_csv_is_one_line_and_exit_2(run_cli, tmp_path):
    path = tmp_path / "digits.csv"
    path.write_text("id,age\n1," + "9" * 5000 + "\n")
    line = _one_line(*_train_on(run_cli, path))
    assert "digits.csv" in line and "row 1 (line 2), column 'age' is a number with 5000 digits" in line
    assert "9" * 20 not in line  # the value itself is not echoed


def test_a_valid_csv_still_reads_with_quotes_blank_lines_and_numbers(tmp_path):
    path = tmp_path / "ok.csv"
    path.write_text('id,note,x\n1,"a, b",-1.5\n\n2,"say ""hi""",2\n')
    df = read_table(path)
    assert df["note"].tolist() == ["a, b", 'say "hi"'] and df["x"].tolist() == [-1.5, 2.0]


# ----- JSON: depth, huge integers, nested cells -------------------------------------------------------------------
@pytest.mark.parametrize(("name", "content", "expected"), [
    ("deep.json", "[" * 100_000 + "]" * 100_000, "the JSON is nested too deeply"),
    ("deep.jsonl", '{"id": ' + "[" * 100_000 + "]" * 100_000 + "}\n", "line 1 is nested too deeply"),
    ("digits.json", '[{"id": 1, "age": ' + "7" * 5000 + "}]", "an integer with 5000 digits"),
    ("digits.jsonl", '{"id": 1}\n{"id": 2, "age": -' + "7" * 5000 + "}\n", "line 2 has an integer with 5000 digits"),
    ("listcell.json", '[{"id": 1, "age": [50, 60]}]', "record 1, column 'age' is a list"),
    ("objcell.jsonl", '{"id": 1, "age": {"value": 50}}\n', "line 1, column 'age' is an object"),
])
def test_deep_json_huge_integers_and_nested_cells_are_one_line_and_exit_2(run_cli, tmp_path, name, content,
                                                                         expected):
    path = tmp_path / name
    path.write_text(content)
    line = _one_line(*_train_on(run_cli, path))
    assert name in line and expected in line and len(line) < 400


# ----- Parquet: list and struct columns ---------------------------------------------------------------------------
@pytest.mark.parametrize(("column", "kind"), [
    (pa.array([[1, 2], [3]]), "list"),
    (pa.array([{"a": 1}, {"a": 2}]), "struct"),
    (pa.array([[("k", 1)], [("k", 2)]], type=pa.map_(pa.string(), pa.int64())), "map"),
])
def test_a_parquet_list_struct_or_map_column_is_one_line_and_exit_2(run_cli, tmp_path, column, kind):
    path = tmp_path / "nested.parquet"
    pq.write_table(pa.table({"id": [1, 2], "labs": column}), path)
    line = _one_line(*_train_on(run_cli, path))
    assert "nested.parquet" in line and "column 'labs' has nested values" in line and kind in line


# ----- CSV outputs: formula cells escaped, numbers kept -----------------------------------------------------------
ATTACKS = ["=HYPERLINK(\"http://x\",\"y\")", "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(A1)", "\tleading tab", "\rcr"]


def test_every_formula_leading_text_cell_is_escaped_and_numbers_are_not(tmp_path):
    frame = pd.DataFrame({"id": ATTACKS, "note": ["ok"] * 6, "score": [-1.5, 2, -3, 0.5, 1e-3, -7],
                          "code": ["-1.5", "+2", "-0", "1e5", "-.5", "n/a"]})
    text = csv_bytes(frame).decode()
    back = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    assert back["id"].tolist() == ["'" + a for a in ATTACKS] and len(back) == 6  # the CR did not split its row
    assert back["score"].astype(float).tolist() == [-1.5, 2, -3, 0.5, 1e-3, -7]  # numeric column untouched
    assert back["code"].tolist() == ["-1.5", "+2", "-0", "1e5", "-.5", "n/a"]  # plain numbers stay numbers
    assert escape_cell(float("nan")) != escape_cell(float("nan"))  # NaN passes through as NaN


def test_write_table_the_ward_files_and_deidentified_tables_all_escape(tmp_path):
    from precimed.privacy.tables import table_bytes
    from precimed.workflows._run import write_table

    frame = pd.DataFrame({"patient_id": ["=1+1", "@x"], "risk": [-0.25, 0.5]})
    write_table(frame, tmp_path / "out.csv")
    assert (tmp_path / "out.csv").read_text().splitlines()[1:] == ["'=1+1,-0.25", "'@x,0.5"]
    assert table_bytes(frame, tmp_path / "deid.tsv").decode().splitlines()[1] == "'=1+1\t-0.25"


def test_no_csv_is_written_outside_the_one_writer():
    """Every CSV writer goes through precimed.csvio (a new `to_csv` elsewhere would skip the escaping)."""
    from pathlib import Path

    import precimed

    root = Path(precimed.__file__).parent
    offenders = [str(p.relative_to(root)) for p in root.rglob("*.py")
                 if p.name != "csvio.py" and (".to_csv(" in p.read_text() or "csv.writer(" in p.read_text())]
    assert offenders == []


# ----- outputs never overwrite inputs -----------------------------------------------------------------------------
def _args(tmp_path, kind: str) -> tuple[list, object]:
    """A command line whose output clashes with an input, and the input that must survive it."""
    cfg = tmp_path / "run.yaml"
    cfg.write_text("name: x\n")
    data = tmp_path / "patients.csv"
    data.write_text("id,age\n1,50\n")
    bundle = tmp_path / "bundle"
    bundle.mkdir(exist_ok=True)
    (bundle / "metadata.json").write_text("{}")
    patient = tmp_path / "patient.json"
    patient.write_text("{}")
    vitals = tmp_path / "vitals.jsonl"
    vitals.write_text('{"patient_id": "w1", "time": "2026-01-01T08:00:00", "pulse": 80}\n')
    cases = {
        "predict output is the input": (["predict", bundle, "--input", data, "--output", data], data),
        "predict output inside the bundle": (["predict", bundle, "--input", data, "--output",
                                              bundle / "metadata.json"], bundle / "metadata.json"),
        "explain output is the input": (["explain", bundle, "--input", data, "--output", data], data),
        "explain plots into the bundle": (["explain", bundle, "--input", data, "--output", tmp_path / "e.json",
                                           "--plots", bundle], bundle / "metadata.json"),
        "train out is the config": (["train", cfg, "--out", cfg, "--overwrite"], cfg),
        "train out holds the config": (["train", cfg, "--out", tmp_path, "--overwrite"], cfg),
        "effects out is the config": (["effects", cfg, "--out", cfg, "--overwrite"], cfg),
        "evaluate out holds the data": (["evaluate", bundle, "--data", data, "--out", tmp_path, "--overwrite"], data),
        "evaluate out is the bundle": (["evaluate", bundle, "--data", data, "--out", bundle, "--overwrite"],
                                       bundle / "metadata.json"),
        "plan out is the patient": (["plan", "--patient", patient, "--out", patient, "--overwrite"], patient),
        "monitor output is the input": (["monitor", "--input", vitals, "--output", vitals], vitals),
        "monitor scores are the input": (["monitor", "--input", vitals, "--output", tmp_path / "a.jsonl",
                                          "--scores", vitals], vitals),
        "monitor scores are the alerts": (["monitor", "--input", vitals, "--output", tmp_path / "a.jsonl",
                                           "--scores", tmp_path / "a.jsonl"], vitals),
    }
    return cases[kind]


CLASHES = ["predict output is the input", "predict output inside the bundle", "explain output is the input",
           "explain plots into the bundle", "train out is the config", "train out holds the config",
           "effects out is the config", "evaluate out holds the data", "evaluate out is the bundle",
           "plan out is the patient", "monitor output is the input", "monitor scores are the input",
           "monitor scores are the alerts"]


@pytest.mark.parametrize("kind", CLASHES)
def test_an_output_that_is_holds_or_sits_in_an_input_is_refused_and_the_input_survives(run_cli, tmp_path, kind):
    args, survivor = _args(tmp_path, kind)
    before = survivor.read_bytes()
    line = _one_line(*run_cli(*args)[::2])
    assert "never overwrites an input" in line or "same path" in line
    assert survivor.read_bytes() == before
    assert not (tmp_path / "a.jsonl").exists()


def test_a_hard_link_to_the_input_is_the_input(run_cli, tmp_path):
    data = tmp_path / "patients.csv"
    data.write_text("id,age\n1,50\n")
    os.link(data, tmp_path / "alias.csv")
    line = _one_line(*run_cli("predict", tmp_path / "b", "--input", data, "--output", tmp_path / "alias.csv")[::2])
    assert "is the same file as --input" in line and data.read_text() == "id,age\n1,50\n"


def test_json_reading_still_keeps_integers_and_nulls(tmp_path):
    path = tmp_path / "ok.json"
    path.write_text(json.dumps([{"id": 12345678901234567890, "age": None}, {"id": -5, "age": 60}]))
    df = read_table(path)
    assert df["id"].tolist() == [12345678901234567890, -5] and df["age"].isna().tolist() == [True, False]


# ----- every other file a user names is bounded too (run configs, patient files, VCFs, gzip bombs) ------------------
def test_an_oversized_run_config_is_refused_before_it_is_read(run_cli, tmp_path, monkeypatch):
    monkeypatch.setenv(MAX_INPUT_ENV, "1000")
    config = tmp_path / "big.yaml"
    config.write_text("name: x\n" + "# padding\n" * 200)
    line = _one_line(*run_cli("train", config, "--out", tmp_path / "run")[::2])
    assert "big.yaml" in line and "over the input limit of 1,000 bytes" in line


def test_an_oversized_patient_file_is_refused_by_plan(run_cli, tmp_path, monkeypatch):
    monkeypatch.setenv(MAX_INPUT_ENV, "1000")
    patient = tmp_path / "patient.json"
    patient.write_text('{"facts": {"age": 50}, "pad": "' + "x" * 2000 + '"}')
    code, _, err = run_cli("plan", "--patient", patient, "--out", tmp_path / "plan")
    line = _one_line(code, err)
    assert "patient.json" in line and "over the input limit" in line


def test_a_gzip_bomb_posing_as_a_vcf_is_one_line_naming_the_file_not_its_folder(run_cli, tmp_path, monkeypatch):
    """A 10 KB .vcf.gz that decompresses to 10 MB, against a 1 MB limit: refused while decompressing."""
    import gzip

    monkeypatch.setenv(MAX_INPUT_ENV, str(1_000_000))
    bomb = tmp_path / "bomb.vcf.gz"
    with gzip.open(bomb, "wb") as fh:
        fh.write(b"##fileformat=VCFv4.2\n" + b"#" * 10_000_000)
    assert bomb.stat().st_size < 100_000
    patient = tmp_path / "patient.json"
    patient.write_text('{"facts": {"age": 50}}')
    code, _, err = run_cli("plan", "--patient", patient, "--genotypes", bomb, "--out", tmp_path / "plan")
    line = _one_line(code, err)
    assert "bomb.vcf.gz" in line and "decompresses to more than the input limit" in line
    assert str(tmp_path) not in line


def test_the_python_api_refuses_an_output_over_its_input_too(tmp_path):
    """Not only the CLI: `precimed.workflows.predict_file` / `explain_file` (what the Python API calls) refuse
    before reading, and the input survives."""
    from precimed.errors import ConfigError
    from precimed.workflows.explaining import explain_file
    from precimed.workflows.predicting import predict_file

    data = tmp_path / "patients.csv"
    data.write_text("id,age\n1,50\n")
    with pytest.raises(ConfigError, match="never overwrites an input"):
        predict_file(tmp_path / "bundle", data, data)
    with pytest.raises(ConfigError, match="never overwrites an input"):
        explain_file(tmp_path / "bundle", data, tmp_path / "out.json", plots=tmp_path)
    assert data.read_text() == "id,age\n1,50\n"
