import json

import numpy as np
import pandas as pd

from precimed.privacy import achieve_k, generalize, kanonymity_report


def _frame():
    return pd.DataFrame({
        "age": ["34", "36", "35", "71", "72", "93", "34", "36"],
        "zip": ["02134", "02139", "02134", "60614", "60614", "03601", "02134", "02139"],
        "sex": ["F", "F", "F", "M", "M", "F", "F", "F"],
        "dx": ["flu", "copd", "flu", "mi", "mi", "hf", "asthma", "flu"],
    })


def test_the_report_gives_class_sizes_and_never_a_value():
    df = _frame()
    report = kanonymity_report(df, ["age", "zip", "sex"], k=2, sensitive=["dx"], l_target=2)
    assert report.k == 1 and report.n_classes == 6 and report.smallest_classes[:3] == [1, 1, 1]
    assert report.records_below_target == 4 and report.class_size_histogram["1"] == 4
    assert report.l_diversity["dx"]["l"] == 1
    text = json.dumps(report.to_dict())
    assert "60614" not in text and "copd" not in text and "93" not in text


def test_hierarchies_coarsen_age_zip_and_dates():
    assert generalize(pd.Series(["34", "93", "89"]), "age10").tolist() == ["30-39", "90+", "80-89"]
    assert generalize(pd.Series(["02134", "03601"]), "zip2").tolist() == ["02", "00"]
    assert generalize(pd.Series(["2019-03-04", "1988-12-01"]), "decade").tolist() == ["2010s", "1980s"]


def test_achieve_k_generalizes_first_then_suppresses_what_remains():
    rng = np.random.default_rng(1)
    df = pd.DataFrame({"age": rng.integers(20, 90, 300).astype(str),
                       "zip": rng.choice(["02134", "02139", "02141", "60614"], 300),
                       "sex": rng.choice(["F", "M"], 300)})
    done = achieve_k(df, {"age": "age", "zip": "zip", "sex": "none"}, k=10, max_suppression=0.03)
    assert done.report.k >= 10
    assert done.frame.groupby(["age", "zip", "sex"]).size().min() >= 10
    assert done.report.suppressed_records == len(done.suppressed_index) == 300 - len(done.frame) <= 9
    assert done.report.generalization["age"] != "age_90plus"


def test_suppression_alone_when_generalization_is_off():
    done = achieve_k(_frame(), ["age", "zip", "sex"], k=2, auto_generalize=False)
    assert done.report.suppressed_records == 4 and len(done.frame) == 4 and done.report.k == 2
