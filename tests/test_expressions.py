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


def test_a_power_is_a_float_and_a_column_exponent_is_allowed():
    frame = pd.DataFrame({"scr": [0.5, 2.0], "alpha": [-0.329, -0.411]})
    out = parse("scr ** alpha").evaluate(frame, where="t")
    assert np.allclose(out, [0.5**-0.329, 2.0**-0.411])
    assert parse("2 ** 10").evaluate(FRAME, where="t") == 1024.0


def test_integer_arithmetic_that_stays_small_keeps_integers():
    assert parse("where(recur == 1, 1, 0)").evaluate(FRAME, where="t").tolist() == [1, 0, 0]
    assert parse("10 ** 0 + 3 * 4").evaluate(FRAME, where="t") == 13.0


@pytest.mark.parametrize(("text", "message"), [
    ("where(recur == 1, 1)", r"where\(\) takes 3 arguments, got 2"),
    ("cut(size, [0, 20])", r"cut\(\) takes 3 arguments, got 2"),
    ("sqrt()", r"sqrt\(\) takes 1 argument, got 0"),
    ("round(size, 1, 2)", r"round\(\) takes 1 to 2 arguments, got 3"),
    ("isin(recur, 1)", r"argument 2 of isin\(\) must be a list"),
    ("isin(recur, [rtime])", "lists may hold only constants"),
    ("[1, 2]", "a list is allowed only as"),
    ("log(x=1)", "takes no keyword arguments"),
    ("cut(size, [0, 20, 50], ['a', 'b', 'c'])", "3 edges needs 2 labels, got 3"),
])
def test_calls_are_checked_when_the_config_loads(text, message):
    with pytest.raises(ConfigError, match=message):
        parse(text, where="derived column 'z'")


def test_a_check_names_the_place_and_the_part_at_fault():
    with pytest.raises(ConfigError, match=r"^derived column 'z': expression 'rtime \+ 2 \*\* 9999' at '2 \*\* 9999'"):
        parse("rtime + 2 ** 9999", where="derived column 'z'")


def test_a_failing_step_names_the_part_and_never_the_data():
    frame = pd.DataFrame({"name": ["Alice Smith"], "age": [50]})
    with pytest.raises(ConfigError, match=r"at 'name - age': TypeError") as caught:
        parse("(name - age) > 0").evaluate(frame, where="t")
    assert "Alice" not in str(caught.value)
