"""precimed.jsonio.dumps_plain: the fast writer for plain data gives exactly the text of the one JSON writer."""

from __future__ import annotations

import math

import numpy as np
import pytest

from precimed import jsonio
from precimed.service.audit import digest, plain_digest
from precimed.service.db import to_json, to_json_plain

CASES = [
    {"id": "a1", "predictions": [{"index": 0, "patient_id": "p-é", "probability": 0.8404341936111450,
                                  "missing": ["bmi"], "prediction_set": ["Yes"]}], "version": 3},
    {"b": 1, "a": [1, 2.5, None, True, "x"], "nested": {"z": {"y": []}}},
    {"nan": float("nan"), "inf": math.inf, "ok": 1.0},  # json refuses these: the whole value goes the long way
    {"np": np.float32(0.25), "i": np.int64(3), "arr": np.arange(3)},  # numpy: the long way
    {"np64": np.float64(0.1), "tuple": (1, 2)},  # a float subclass and a tuple: json writes them the same way
    {1: "int key", "2": "str key"},  # mixed key types cannot be sorted by json: the long way
    [], {}, "text", 0, None,
]


@pytest.mark.parametrize("value", CASES, ids=range(len(CASES)))
def test_dumps_plain_gives_the_text_of_the_one_writer(value):
    assert to_json_plain(value) == to_json(value)
    assert jsonio.dumps_plain(value) == jsonio.dumps(value, compact=True)


def test_plain_digest_is_the_digest_of_a_request_body():
    body = {"patients": [{"patient_id": "p1", "glu": 148, "bmi": 33.6, "age": 50, "ped": 0.627}], "version": None}
    assert plain_digest(body) == digest(body)


def test_dumps_plain_still_refuses_what_the_one_writer_refuses():
    with pytest.raises(TypeError, match="cannot write a object"):
        jsonio.dumps_plain({"x": object()})
