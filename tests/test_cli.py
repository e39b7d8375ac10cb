"""End to end through the command a user types: train → bundle → predict → evaluate, and bad input."""

import json

import pandas as pd
import pytest

from helpers import PIMA, fast
from precimed.data import load_dataset


@pytest.fixture(scope="module")
def user_files(tmp_path_factory):
    """Pima as a hospital's own CSV and Parquet files (no id column: row numbers become ids)."""
    folder = tmp_path_factory.mktemp("user")
    load_dataset("pima_tr").drop(columns=["row_id"]).to_csv(folder / "train.csv", index=False)
    load_dataset("pima_te").drop(columns=["row_id"]).to_parquet(folder / "test.parquet")
    return folder


def _user_config(folder):
    cfg = fast(PIMA)
    cfg["data"] = {"train": {"path": str(folder / "train.csv")}, "test": {"path": str(folder / "test.parquet")}}
    return cfg


@pytest.fixture(scope="module")
def trained(user_files, tmp_path_factory):
    import yaml

    from precimed.config import load_config
    from precimed.workflows import train_from_config

    path = user_files / "run.yaml"
    path.write_text(yaml.safe_dump(_user_config(user_files)))
    out = tmp_path_factory.mktemp("runs") / "pima"
    train_from_config(load_config(path), out, progress=False)
    return out


def test_train_from_a_users_csv_writes_bundle_and_metrics(run_cli, user_files, write_config, tmp_path):
    code, out, err = run_cli("train", write_config(_user_config(user_files)), "--out", tmp_path / "run")
    assert code == 0, err
    doc = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert doc["task"] == "binary"
    assert doc["data"]["train"]["n"] == 200 and doc["data"]["test"]["n"] == 332
    assert doc["data"]["test"]["events"] == 109
    auroc = doc["models"]["mlp"]["auroc"]
    assert 0.7 < auroc["value"] < 0.95 and auroc["ci_low"] < auroc["value"] < auroc["ci_high"]
    assert set(doc["models"]) == {"mlp", "logistic", "gbm"}
    assert "auroc" in out and (tmp_path / "run" / "bundle" / "metadata.json").is_file()


def test_predict_scores_csv_and_json_records_identically(run_cli, trained, tmp_path):
    rows = load_dataset("pima_te").head(8).drop(columns=["row_id", "type"])
    rows.to_csv(tmp_path / "new.csv", index=False)
    (tmp_path / "new.json").write_text(rows.to_json(orient="records"))
    code, _, err = run_cli("predict", trained / "bundle", "--input", tmp_path / "new.csv",
                           "--output", tmp_path / "a.csv")
    assert code == 0, err
    assert run_cli("predict", trained / "bundle", "--input", tmp_path / "new.json", "--output",
                   tmp_path / "b.json")[0] == 0
    a = pd.read_csv(tmp_path / "a.csv")
    b = pd.read_json(tmp_path / "b.json")
    assert len(a) == 8 and a["probability"].between(0, 1).all()
    pd.testing.assert_series_equal(a["probability"], b["probability"], check_exact=False, rtol=1e-6)


def test_evaluate_a_bundle_on_another_source_writes_the_same_metrics(run_cli, trained, tmp_path):
    code, _, err = run_cli("evaluate", trained / "bundle", "--data", "pima_te", "--out", tmp_path / "ev")
    assert code == 0, err
    doc = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert doc["data"]["test"]["name"] == "pima_te" and doc["data"]["test"]["n"] == 332
    assert {"auroc", "auprc", "brier", "calibration_slope", "specificity"} <= set(doc["models"]["mlp"])


def test_datasets_lists_the_real_cohorts(run_cli):
    code, out, _ = run_cli("datasets")
    assert code == 0
    for name in ("rotterdam", "gbsg", "colon", "pbc", "pima_tr", "pima_te", "wdbc", "nhefs", "flchain", "nwtco", "ad"):
        assert name in out


# ----- bad input: one clear line, exit code 2, nothing half-written -------------------------------------------
def _one_error_line(code, err):
    assert code == 2
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert lines[-1].startswith("error:") and "Traceback" not in err
    return lines[-1]


def test_an_implausible_value_at_predict_is_refused_naming_the_patient(run_cli, trained, tmp_path):
    rows = load_dataset("pima_te").head(5).drop(columns=["row_id"])
    rows.loc[2, "age"] = 430
    rows.to_csv(tmp_path / "bad.csv", index=False)
    code, _, err = run_cli("predict", trained / "bundle", "--input", tmp_path / "bad.csv",
                           "--output", tmp_path / "o.csv")
    line = _one_error_line(code, err)
    assert "age" in line and "430" in line and "[3]" in line  # row id 3 (1-based)
    assert not (tmp_path / "o.csv").exists()


def test_out_of_range_values_can_be_treated_as_missing_when_asked(run_cli, trained, tmp_path):
    rows = load_dataset("pima_te").head(5).drop(columns=["row_id"])
    rows.loc[2, "age"] = 430
    rows.to_csv(tmp_path / "bad.csv", index=False)
    code, _, _ = run_cli("predict", trained / "bundle", "--input", tmp_path / "bad.csv", "--output",
                         tmp_path / "o.csv", "--allow-out-of-range")
    assert code == 0 and len(pd.read_csv(tmp_path / "o.csv")) == 5


def test_a_missing_column_is_named(run_cli, trained, tmp_path):
    load_dataset("pima_te").head(5).drop(columns=["glu"]).to_csv(tmp_path / "x.csv", index=False)
    line = _one_error_line(*run_cli("predict", trained / "bundle", "--input", tmp_path / "x.csv", "--output",
                                    tmp_path / "o.csv")[::2])
    assert "missing column(s) ['glu']" in line and "x.csv" in line


def test_a_wrong_dtype_names_column_value_and_row(run_cli, trained, tmp_path):
    rows = load_dataset("pima_te").head(5).astype(object)
    rows.loc[1, "bmi"] = "obese"
    rows.to_csv(tmp_path / "x.csv", index=False)
    line = _one_error_line(*run_cli("predict", trained / "bundle", "--input", tmp_path / "x.csv", "--output",
                                    tmp_path / "o.csv")[::2])
    assert "'bmi' must be numeric" in line and "obese" in line


def test_an_empty_file_is_named(run_cli, trained, tmp_path):
    (tmp_path / "empty.csv").write_text("")
    line = _one_error_line(*run_cli("predict", trained / "bundle", "--input", tmp_path / "empty.csv", "--output",
                                    tmp_path / "o.csv")[::2])
    assert "empty.csv" in line and "no rows" in line


def test_a_config_typo_is_named_and_nothing_is_written(run_cli, write_config, tmp_path):
    cfg = fast(PIMA)
    cfg["trainng"] = {"lr": 0.1}
    line = _one_error_line(*run_cli("train", write_config(cfg), "--out", tmp_path / "run")[::2])
    assert "unknown key 'trainng'" in line
    assert not (tmp_path / "run").exists()


def test_an_unknown_dataset_suggests_the_close_name(run_cli, write_config, tmp_path):
    cfg = fast(PIMA)
    cfg["data"]["train"]["dataset"] = "pima_trr"
    line = _one_error_line(*run_cli("train", write_config(cfg), "--out", tmp_path / "run")[::2])
    assert "unknown dataset 'pima_trr'" in line and "pima_tr" in line
    assert not (tmp_path / "run").exists()


def test_a_feature_the_data_lacks_is_named(run_cli, write_config, tmp_path):
    cfg = fast(PIMA)
    cfg["features"] = [*cfg["features"], {"name": "insulin", "kind": "numeric"}]
    line = _one_error_line(*run_cli("train", write_config(cfg), "--out", tmp_path / "run")[::2])
    assert "pima_tr" in line and "missing column(s) ['insulin']" in line
    assert not (tmp_path / "run").exists() and not any(tmp_path.glob(".run.partial*"))


def test_a_survival_cohort_with_no_events_is_refused(run_cli, write_config, tmp_path):
    cfg = fast({"name": "noevents", "data": {"train": {"dataset": "gbsg", "derive": {"status": "status * 0"}}},
                "task": {"kind": "survival", "time": "rfstime", "event": "status", "horizons": [365]},
                "features": [{"name": "age", "range": [18, 100]}]})
    line = _one_error_line(*run_cli("train", write_config(cfg), "--out", tmp_path / "run")[::2])
    assert "no events in column 'status'" in line and "gbsg" in line


def test_an_unknown_category_at_predict_names_patient_and_choices(run_cli, tmp_path, write_config):
    cfg = fast({"name": "colon-small", "patient_id": "id",
                "data": {"train": {"dataset": "colon", "filter": "etype == 2"}},
                "task": {"kind": "survival", "time": "time", "event": "status", "horizons": [1000]},
                "features": [{"name": "rx", "kind": "categorical"}, {"name": "age", "range": [18, 100]}]})
    assert run_cli("train", write_config(cfg), "--out", tmp_path / "run")[0] == 0
    rows = pd.DataFrame({"id": [7, 8], "rx": ["Obs", "Aspirin"], "age": [60, 70]})
    rows.to_csv(tmp_path / "x.csv", index=False)
    line = _one_error_line(*run_cli("predict", tmp_path / "run" / "bundle", "--input", tmp_path / "x.csv",
                                    "--output", tmp_path / "o.csv")[::2])
    assert "'rx'" in line and "Aspirin" in line and "[8]" in line and "Lev+5FU" in line


def test_an_existing_run_folder_is_not_overwritten_without_asking(run_cli, write_config, tmp_path):
    (tmp_path / "run").mkdir()
    line = _one_error_line(*run_cli("train", write_config(fast(PIMA)), "--out", tmp_path / "run")[::2])
    assert "already exists" in line


def test_train_writes_a_report_a_model_card_and_subgroups(trained):
    html = (trained / "report.html").read_text()
    for section in ('id="cohort"', 'id="metrics"', 'id="calibration"', 'id="decision-curve"', 'id="subgroups"',
                    'id="importance"', 'id="model-card"'):
        assert section in html
    assert "http://" not in html.replace("http://www.w3.org", "") and "https://" not in html
    doc = json.loads((trained / "metrics.json").read_text())
    assert "age" in doc["subgroups"] and isinstance(doc["subgroups"]["gaps"], list)
    assert (trained / "bundle" / "model_card.md").read_text().startswith("#")


def test_explain_gives_each_patient_contributions_in_original_units(run_cli, trained, tmp_path):
    rows = load_dataset("pima_te").head(3).drop(columns=["row_id", "type"])
    rows.to_csv(tmp_path / "p.csv", index=False)
    code, _, err = run_cli("explain", trained / "bundle", "--input", tmp_path / "p.csv", "--output",
                           tmp_path / "e.json", "--plots", tmp_path / "plots")
    assert code == 0, err
    out = json.loads((tmp_path / "e.json").read_text())
    assert len(out) == 3 and len(list((tmp_path / "plots").glob("*.png"))) == 3
    first = out[0]
    total = first["base_value"] + sum(c["contribution"] for c in first["contributions"]) + first["rest"]["contribution"]
    assert total == pytest.approx(first["prediction"], abs=1e-6)
    assert any(c["display"].startswith("glu = 148") for c in first["contributions"])


def test_messages_and_result_lines_are_printed_as_text_never_as_markup(monkeypatch, capsys):
    """Rich reads "[...]" as markup: an extra's name ('precimed[scale]') or a value from a user's file (a patient
    id "[red]x[/red]", a path with brackets) must come out exactly as written."""
    from precimed import cli
    from precimed.errors import ConfigError

    def fails(*_args, **_kwargs):
        raise ConfigError("install 'precimed[scale]'; column '[red]x[/red]' and [bold]")

    monkeypatch.setattr(cli, "app", fails)  # a command that fails with such a message
    with pytest.raises(SystemExit) as stop:
        cli.main()
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "install 'precimed[scale]'; column '[red]x[/red]' and [bold]" in " ".join(err.split())
    cli._say("patient [bold]p1[/bold] → out[1]/scored.csv")
    assert "patient [bold]p1[/bold] → out[1]/scored.csv" in capsys.readouterr().out
