import numpy as np
import pandas as pd
import pytest

from precimed.errors import ConfigError, SchemaError
from precimed.expressions import parse

FRAME = pd.DataFrame({"recur": [1, 0, 0], "death": [0, 1, 0], "rtime": [100, 200, 300], "dtime": [500, 150, 300],
                      "size": [10.0, 35.0, np.nan]})


def test_derives_recurrence_free_survival_like_the_survival_vignette():
    event = parse("where(recur == 1, recur, death)").evaluate(FRAME, where="t")
    time = parse("where(recur == 1, rtime, dtime)").evaluate(FRAME, where="t")
    assert event.tolist() == [1, 1, 0] and time.tolist() == [100, 150, 300]


def test_cut_turns_millimetres_into_size_categories_and_keeps_missing():
    out = parse("cut(size, [0, 20, 50, 1000], ['<=20', '20-50', '>50'])").evaluate(FRAME, where="t")
    assert out.iloc[:2].tolist() == ["<=20", "20-50"] and pd.isna(out.iloc[2])


def test_boolean_operators_and_chained_comparisons():
    assert parse("(recur == 0) & (death == 1)").evaluate(FRAME, where="t").tolist() == [False, True, False]
    assert parse("150 < rtime <= 300").evaluate(FRAME, where="t").tolist() == [False, True, True]
    assert parse("recur == 1 or death == 1").evaluate(FRAME, where="t").tolist() == [True, True, False]


@pytest.mark.parametrize("text", ["__import__('os')", "rtime.__class__", "FRAME[0]", "lambda x: x", "open('f')"])
def test_anything_beyond_the_small_language_is_refused_at_parse_time(text):
    with pytest.raises(ConfigError):
        parse(text)


def test_a_syntax_error_names_the_expression():
    with pytest.raises(ConfigError, match="rtime >"):
        parse("rtime >")


def test_a_missing_column_is_named():
    with pytest.raises(SchemaError, match="nodes"):
        parse("nodes > 0").evaluate(FRAME, where="rotterdam")
