"""Gated retraining (workflows.retraining) on real Rotterdam data with fast settings: the champion is trained on the
patients operated up to 1986; the challenger on a window of later years, both scored on the most recent year held out.
Gates use the held-out rows only (no held-out patient reaches the challenger's training), a failing or not evaluable
gate blocks promotion, a policy error is one line naming the key, a failed run leaves no folder, and the simulated
clock runs the schedule without sleeping."""

from __future__ import annotations

import hashlib
import json
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from helpers import fast
from precimed.bundle import load_bundle
from precimed.config import parse_config
from precimed.data import load_dataset
from precimed.errors import ConfigError, DataError, PrecimedError
from precimed.workflows import retraining
from precimed.workflows.drift import reference_frame
from precimed.workflows.retraining import (
    SimulatedClock,
    challenge,
    load_policy,
    parse_period,
    parse_time,
    run_schedule,
)
from precimed.workflows.training import train_from_config

ROOT = Path(__file__).resolve().parents[2]
END_1990 = datetime(1990, 12, 31, tzinfo=UTC)
POLICY = {"window": {"time_column": "year", "last": 5}, "holdout": {"kind": "recent", "last": 1},
          "bootstrap": 30, "gates": {"c_index_diff_lower": -0.05, "calibration_slope": [0.5, 2.0]}}


def champion_config() -> dict:
    """examples/rotterdam-temporal.yaml trained on the years up to 1986 only, shrunk to train in seconds."""
    config = fast(yaml.safe_load((ROOT / "examples" / "rotterdam-temporal.yaml").read_text()))
    config["data"]["train"]["filter"] = "year <= 1986"
    config["models"] = {**config["models"], "names": ["mlp", "cox_ph"], "compare": ["mlp - cox_ph"]}
    config["evaluation"] |= {"explain": 0, "bootstrap": 10}
    return config


@pytest.fixture(scope="module")
def champion(tmp_path_factory) -> Path:
    return train_from_config(parse_config(champion_config()), tmp_path_factory.mktemp("champion") / "run",
                             progress=False).bundle_path


@pytest.fixture(scope="module")
def decided(champion, tmp_path_factory):
    """One full run with every kind of gate: Rotterdam up to 1990, window 1986-1990, 1990 held out."""
    policy = POLICY | {"gates": POLICY["gates"] | {"subgroups": {"columns": ["meno", "hormon"], "max_drop": 0.1},
                                                   "drift": {"max_psi": 5.0, "max_domain_auroc": 0.99}}}
    out = tmp_path_factory.mktemp("decided") / "run"
    return challenge(champion, "rotterdam", policy, out, trigger="cli:tester", now=END_1990), out


def _ids_digest(ids) -> str:
    return hashlib.sha256("\n".join(sorted(map(str, ids))).encode()).hexdigest()


def test_gates_are_computed_on_the_held_out_rows_only(decided, champion):
    decision, out = decided
    rotterdam = load_dataset("rotterdam")
    held_out = rotterdam.loc[rotterdam["year"] == 1990, "pid"]
    doc = json.loads((out / "decision.json").read_text())
    window = doc["window"]
    assert window["holdout"]["rows"] == len(held_out) == 341
    assert window["holdout"]["ids_sha256"] == _ids_digest(held_out)
    assert window["holdout"]["time_range"] == [1990.0, 1990.0]
    assert window["train"]["time_range"] == [1986.0, 1989.0]
    assert window["train"]["rows"] == int(rotterdam["year"].between(1986, 1989).sum())
    # the challenger's own config re-loads exactly its training rows: none of them is held out
    bundle = load_bundle(decision.paths["bundle"])
    train_rows, _ = reference_frame(bundle, "train")
    assert len(train_rows) == window["train"]["rows"]
    assert not set(train_rows["pid"]) & set(held_out)
    assert train_rows["year"].max() <= 1989
    # its metadata names the parent and the window by counts and digests, never by ids
    meta = bundle.metadata
    champion_ref = doc["champion"]["bundle"]
    assert meta["parent"] == champion_ref and meta["retraining"]["parent"] == champion_ref
    assert meta["retraining"]["window"]["holdout"]["ids_sha256"] == window["holdout"]["ids_sha256"]
    assert set(meta["retraining"]["window"]["holdout"]) == {"name", "rows", "ids_sha256", "events", "max_follow_up",
                                                             "time_range"}
    # both models on the same rows, paired differences with CIs
    for side in ("champion", "challenger", "difference"):
        c = doc["metrics"][side]["c_harrell"]
        assert c["ci_low"] <= c["value"] <= c["ci_high"]
    diff = doc["metrics"]["difference"]["c_harrell"]["value"]
    assert diff == pytest.approx(doc["metrics"]["challenger"]["c_harrell"]["value"]
                                 - doc["metrics"]["champion"]["c_harrell"]["value"])
    gate = next(g for g in doc["gates"] if g["name"] == "c_index_diff_lower")
    assert gate["value"] == doc["metrics"]["difference"]["c_harrell"]["ci_low"]
    assert [g["name"] for g in doc["gates"]] == ["c_index_diff_lower", "calibration_slope", "subgroups", "drift_psi",
                                                 "drift_domain_auroc"]
    assert doc["promote"] is decision.promote is all(g["status"] == "pass" for g in doc["gates"])
    assert decision.report_sha256 == hashlib.sha256((out / "decision.json").read_bytes()).hexdigest()
    # drift compares only rows the champion never saw (the training side of its split of 1978-1986)
    seen, _ = reference_frame(load_bundle(champion), "train")
    in_window = rotterdam["year"].between(1986, 1990) & rotterdam["pid"].isin(seen["pid"])
    assert 0 < in_window.sum() < (rotterdam["year"] == 1986).sum()
    assert doc["drift"]["n_current"] == window["rows"] - int(in_window.sum())
    html = (out / "retraining.html").read_text()
    assert "c_index_diff_lower" in html and "cli:tester" in html and "<img" in html
    assert sorted(p.name for p in out.iterdir()) == ["challenger", "decision.json", "retraining.html"]
    assert sorted(p.name for p in (out / "challenger").iterdir()) == ["bundle", "metrics.json", "report.html"]


def test_a_failing_gate_blocks_promotion(champion, tmp_path):
    policy = POLICY | {"gates": {"c_index_diff_lower": 0.2, "calibration_slope": [0.5, 2.0]}}
    decision = challenge(champion, "rotterdam", policy, tmp_path / "run", trigger="cli:tester", now=END_1990)
    gate = decision.gates[0]
    assert gate.name == "c_index_diff_lower" and gate.status == "fail" and gate.value < 0.2
    assert not decision.promote and decision.doc["decision"] == "reject"
    assert "c_index_diff_lower fail" in decision.doc["summary"]


def test_a_gate_that_cannot_be_computed_blocks_promotion(champion, tmp_path):
    policy = POLICY | {"gates": POLICY["gates"] | {"subgroups": {"columns": ["meno"], "max_drop": 0.5,
                                                                 "min_size": 5000}}}
    decision = challenge(champion, "rotterdam", policy, tmp_path / "run", trigger="cli:tester", now=END_1990)
    sub = next(g for g in decision.gates if g.name == "subgroups")
    assert sub.status == "not evaluable" and sub.value is None
    assert "no subgroup of ['meno'] has at least 5000 held-out rows" in sub.reason
    assert not decision.promote
    # a subgroup column the data lacks is not evaluable either (never silently true)
    policy["gates"]["subgroups"] = {"columns": ["meno", "ethnicity"], "max_drop": 0.5}
    decision = challenge(champion, "rotterdam", policy, tmp_path / "run2", trigger="cli:tester", now=END_1990)
    sub = next(g for g in decision.gates if g.name == "subgroups")
    assert sub.status == "not evaluable" and "['ethnicity'] not in the held-out rows" in sub.reason
    assert not decision.promote


def test_a_recalibrated_challenger(champion, tmp_path):
    policy = POLICY | {"challenger": {"kind": "recalibrate"}}
    decision = challenge(champion, "rotterdam", policy, tmp_path / "run", trigger="cli:tester", now=END_1990)
    bundle = load_bundle(decision.paths["bundle"])
    assert sorted(bundle.models) == ["mlp", "mlp_parent"] and bundle.metadata["update"]["method"] == "recalibrate"
    assert bundle.metadata["parent"] == decision.doc["champion"]["bundle"]
    assert decision.doc["window"]["holdout"]["rows"] == 341


@pytest.mark.parametrize(("policy", "expected"), [
    ({"holdout": {"kind": "recent", "last": 1}, "gates": {"c_index_lower": -0.01}},
     "gates.c_index_lower: unknown key; allowed here: ['c_index_diff_lower', 'calibration_slope', 'subgroups', "
     "'drift']"),
    ({"holdout": {"kind": "recent", "last": 1}, "window": {"time_column": "year"},
      "gates": {"calibration_slope": [1.2, 0.8]}}, "gates.calibration_slope: give [low, high] with 0 <= low < high"),
    ({"window": {"time_column": "year"}, "gates": {"c_index_diff_lower": -0.01}}, "holdout: required key missing"),
    ({"holdout": {"kind": "recent", "last": 1}, "window": {"time_column": "year"}, "gates": {}},
     "gates: give at least one gate"),
    ({"holdout": {"kind": "recent", "last": 1}, "gates": {"c_index_diff_lower": -0.01}},
     "holdout.kind 'recent' needs window.time_column"),
    ({"holdout": {"kind": "random", "fraction": 0.3}, "challenger": {"kind": "rebuild"},
      "gates": {"c_index_diff_lower": -0.01}}, "challenger.kind: Input should be 'retrain', 'recalibrate' or"),
    ({"holdout": {"kind": "random", "fraction": 0.3}, "filter": "year >>> 3", "gates": {"c_index_diff_lower": 0}},
     "filter: "),
])
def test_policy_errors_are_one_line_naming_the_key(tmp_path, policy, expected):
    path = tmp_path / "retrain.yaml"
    path.write_text(yaml.safe_dump(policy))
    with pytest.raises(ConfigError) as info:
        load_policy(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{path}: ") and expected in message


def test_policy_file_problems(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("gates: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_policy(bad)
    with pytest.raises(ConfigError, match="no such file"):
        load_policy(tmp_path / "missing.yaml")
    policy = load_policy(ROOT / "examples" / "retrain.yaml")
    assert policy.gates.c_index_diff_lower == -0.01 and policy.gates.calibration_slope == (0.8, 1.2)


def test_a_failed_run_leaves_nothing(champion, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("injected fault")

    monkeypatch.setattr(retraining, "train_from_config", broken)
    out = tmp_path / "run"
    with pytest.raises(PrecimedError, match="RuntimeError: injected fault"):
        challenge(champion, "rotterdam", POLICY, out, trigger="cli:tester", now=END_1990)
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_bad_data_is_one_line(champion, tmp_path):
    frame = load_dataset("rotterdam").drop(columns=["pgr"])
    path = tmp_path / "no_pgr.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(DataError, match="pgr") as info:
        challenge(champion, str(path), POLICY, tmp_path / "a", trigger="t", now=END_1990)
    assert "\n" not in str(info.value)
    with pytest.raises(DataError, match=r"no row has year <= 1970\.\d+ \(now, 1970-06-30\); year in the data: "
                                        r"1978–1993"):
        challenge(champion, "rotterdam", POLICY, tmp_path / "b", trigger="t", now=datetime(1970, 6, 30, tzinfo=UTC))
    # a window of one year with a one-year holdout leaves nothing to train on
    policy = POLICY | {"window": {"time_column": "year", "last": 1}}
    with pytest.raises(DataError, match="takes every row of the window"):
        challenge(champion, "rotterdam", policy, tmp_path / "c", trigger="t", now=END_1990)
    with pytest.raises(ConfigError, match="neither a file nor a built-in dataset"):
        challenge(champion, "no-such-data", POLICY, tmp_path / "d", trigger="t", now=END_1990)
    assert list(tmp_path.iterdir()) == [path]


def test_the_simulated_clock_runs_every_period_without_sleeping():
    clock = SimulatedClock(parse_time("1988-12-31", option="--start"))
    seen = []
    started = time.monotonic()
    runs = run_schedule(clock, lambda now: seen.append(now) or now.year, every=parse_period("1y"),
                        until=parse_time("1993-12-31", option="--until"))
    assert time.monotonic() - started < 1
    assert runs == [1988, 1989, 1990, 1991, 1992, 1993]
    assert [d.date().isoformat() for d in seen][:2] == ["1988-12-31", "1989-12-31"]
    weekly = run_schedule(SimulatedClock(datetime(2024, 1, 1)), lambda now: now, every=parse_period("7d"),
                          until=datetime(2024, 1, 31))
    assert [d.day for d in weekly] == [1, 8, 15, 22, 29]
    assert len(run_schedule(SimulatedClock(datetime(2024, 1, 1)), lambda now: now)) == 1
    for text in ("7", "3m", "0d", "weekly"):
        with pytest.raises(ConfigError, match="--every"):
            parse_period(text)
    with pytest.raises(ConfigError, match="--start 'yesterday'"):
        parse_time("yesterday", option="--start")


def test_calendar_year_stays_inside_a_leap_year():
    from datetime import datetime

    from precimed.workflows.retraining import calendar_year

    assert 1988.99 < calendar_year(datetime(1988, 12, 31, 23, 59, 59)) < 1989.0
    assert calendar_year(datetime(1990, 1, 1)) == 1990.0
