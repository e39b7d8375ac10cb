"""Property-based fuzz of the CLI's file readers (finding 12): any bytes under a table suffix give a DataFrame
or the project's own error, never another exception (a traceback for the user).

Bounded: about 220 examples in all, no deadline, derandomized so that a run is repeatable.
"""

from __future__ import annotations

import io
import json
import string
import tempfile
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from precimed.data import read_table
from precimed.errors import PrecimedError

FUZZ = settings(max_examples=45, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
TRICKY = ["", "NA", "null", "007", "-1.5", "1e308", "1e999", "=1+1", "\x00", "\r", "\n", '"', "'", ",", "\t",
          "9" * 120, "é", "\ufeff", " ", "nan", "inf", "-", "+", "@"]


def _read(suffix: str, data: bytes) -> pd.DataFrame | None:
    """read_table on ``data`` saved as a file with ``suffix``: a frame, or None for a PrecimedError."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"fuzz{suffix}"
        path.write_bytes(data)
        try:
            frame = read_table(path)
        except PrecimedError as exc:
            message = str(exc)
            assert message.startswith(str(path)) and "\n" not in message.replace(str(path), ""), message
            return None
    assert isinstance(frame, pd.DataFrame) and len(frame) > 0 and frame.shape[1] > 0
    return frame


cells = st.one_of(st.sampled_from(TRICKY), st.text(alphabet=string.printable + "é\x00", max_size=12),
                  st.integers(-10**25, 10**25).map(str), st.floats(allow_nan=True).map(str))


@st.composite
def delimited(draw, sep: str) -> bytes:
    """A table-like text: a header and rows of varying width, cells sometimes quoted, odd line endings."""
    width = draw(st.integers(1, 5))
    rows = draw(st.lists(st.lists(cells, min_size=max(width - 1, 0), max_size=width + 1), min_size=0, max_size=6))
    header = draw(st.lists(st.sampled_from(["id", "age", "", "x", "id", "na me", "\x00"]), min_size=width,
                           max_size=width))
    end = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    quote = draw(st.booleans())

    def line(row: list[str]) -> str:
        return sep.join(f'"{c}"' if quote and draw(st.booleans()) else c for c in row)

    return (end.join(line(r) for r in [header, *rows]) + draw(st.sampled_from(["", end]))).encode(
        draw(st.sampled_from(["utf-8", "latin-1", "utf-16"])), errors="replace")


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-10**30, 10**30), st.floats(), st.sampled_from(TRICKY)),
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.sampled_from(["id", "age", "x", ""]), inner, max_size=4)),
    max_leaves=12)


@st.composite
def json_documents(draw) -> bytes:
    """Mostly lists of records with odd values, sometimes any JSON value, sometimes cut short or deeply nested."""
    records = draw(st.one_of(st.lists(st.dictionaries(st.sampled_from(["id", "age", "x"]), json_values, max_size=4),
                                      max_size=5), json_values))
    text = json.dumps(records)
    mutation = draw(st.sampled_from(["none", "truncate", "deep", "bigint", "nan"]))
    if mutation == "truncate":
        text = text[: draw(st.integers(0, len(text)))]
    elif mutation == "deep":
        depth = draw(st.integers(500, 60_000))
        text = f'[{{"id": {"[" * depth}{"]" * depth}}}]'
    elif mutation == "bigint":
        text = f'[{{"id": {"9" * draw(st.integers(15, 6000))}}}]'
    elif mutation == "nan":
        text = '[{"id": NaN, "age": Infinity}]'
    return text.encode()


@st.composite
def parquet_files(draw) -> bytes:
    """A small Parquet file, sometimes with nested or odd columns, sometimes damaged."""
    n = draw(st.integers(0, 4))
    kinds = {
        "int": lambda: pa.array(draw(st.lists(st.integers(-2**63, 2**63 - 1), min_size=n, max_size=n))),
        "text": lambda: pa.array(draw(st.lists(st.one_of(st.none(), st.sampled_from(TRICKY)), min_size=n,
                                               max_size=n)), type=pa.string()),
        "float": lambda: pa.array(draw(st.lists(st.floats(), min_size=n, max_size=n))),
        "list": lambda: pa.array([[1, 2]] * n, type=pa.list_(pa.int64())),
        "struct": lambda: pa.array([{"a": 1}] * n, type=pa.struct([("a", pa.int64())])),
        "binary": lambda: pa.array([b"\x00\xff"] * n, type=pa.binary()),
        "null": lambda: pa.nulls(n),
    }
    chosen = draw(st.lists(st.sampled_from(sorted(kinds)), min_size=1, max_size=3))
    names = draw(st.lists(st.sampled_from(["id", "age", "x", "id"]), min_size=len(chosen), max_size=len(chosen)))
    buffer = io.BytesIO()
    pq.write_table(pa.table([kinds[k]() for k in chosen], names=names), buffer)
    data = buffer.getvalue()
    damage = draw(st.sampled_from(["none", "truncate", "flip"]))
    if damage == "truncate":
        data = data[: draw(st.integers(0, len(data)))]
    elif damage == "flip" and data:
        i = draw(st.integers(0, len(data) - 1))
        data = data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1:]
    return data


@FUZZ
@given(data=delimited(","))
def test_any_csv_gives_a_frame_or_a_precimed_error(data):
    _read(".csv", data)


@FUZZ
@given(data=delimited("\t"))
def test_any_tsv_gives_a_frame_or_a_precimed_error(data):
    _read(".tsv", data)


@FUZZ
@given(data=json_documents())
def test_any_json_gives_a_frame_or_a_precimed_error(data):
    _read(".json", data)


@FUZZ
@given(data=json_documents().map(lambda b: b.replace(b"}, {", b"}\n{").lstrip(b"[").rstrip(b"]")))
def test_any_json_lines_give_a_frame_or_a_precimed_error(data):
    _read(".jsonl", data)


@settings(FUZZ, max_examples=40)
@given(data=st.one_of(parquet_files(), st.binary(max_size=300)))
def test_any_parquet_bytes_give_a_frame_or_a_precimed_error(data):
    _read(".parquet", data)
