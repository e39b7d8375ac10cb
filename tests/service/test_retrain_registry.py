"""`precimed retrain` against a registry, through the CLI: a promoted challenger lands in staging (production
untouched) with its audit row; a rejected one leaves the registry as it was; a fault injected mid-run leaves the
registry as it was and is audited as retrain:failed; the audit chain still verifies; the simulated schedule runs
one retraining per period, each seeing only the rows up to its simulated now."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from helpers import fast
from precimed.config import parse_config
from precimed.service import cli_commands as cli
from precimed.workflows import retraining
from precimed.workflows.training import train_from_config

ROOT = Path(__file__).resolve().parents[2]
NAME = "rotterdam"
LENIENT = {"window": {"time_column": "year", "last": 5}, "holdout": {"kind": "recent", "last": 1},
           "bootstrap": 30, "gates": {"c_index_diff_lower": -0.2, "calibration_slope": [0.3, 3.0]}}
STRICT = LENIENT | {"gates": {"c_index_diff_lower": 0.3}}


@pytest.fixture(scope="module")
def champion(tmp_path_factory) -> Path:
    """The Rotterdam temporal config trained on 1978-1986 only, shrunk to train in seconds."""
    config = fast(yaml.safe_load((ROOT / "examples" / "rotterdam-temporal.yaml").read_text()))
    config["data"]["train"]["filter"] = "year <= 1986"
    config["models"] = {**config["models"], "names": ["mlp", "cox_ph"], "compare": ["mlp - cox_ph"]}
    config["evaluation"] |= {"explain": 0, "bootstrap": 10}
    return train_from_config(parse_config(config), tmp_path_factory.mktemp("champion") / "run",
                             progress=False).bundle_path


@pytest.fixture
def registry(tmp_path, champion) -> Path:
    reg = tmp_path / "registry"
    cli.registry_add(reg, champion, name=NAME)
    cli.registry_promote(reg, NAME, 1)
    return reg


def _policy(tmp_path: Path, policy: dict) -> Path:
    path = tmp_path / "retrain.yaml"
    path.write_text(yaml.safe_dump(policy))
    return path


def _state(reg: Path) -> list[dict]:
    """Versions and stages, without timestamps."""
    return [{"name": m["name"], "production": m["production"], "staging": m["staging"],
             "versions": [(v["version"], v["bundle"], tuple(v["stages"])) for v in m["versions"]]}
            for m in cli.registry_models(reg)]


def _audit(reg: Path) -> list[dict]:
    with cli.opened(reg, None, start=False) as o:
        return o.audit.rows()


def _retrain_rows(reg: Path) -> list[dict]:
    return [r for r in _audit(reg) if r["action"].startswith("retrain:")]


def test_a_promoted_challenger_lands_in_staging_not_production(run_cli, registry, tmp_path):
    code, out, err = run_cli("retrain", registry, NAME, "--data", "rotterdam", "--policy", _policy(tmp_path, LENIENT),
                             "--out", tmp_path / "runs", "--clock", "simulated", "--start", "1990-12-31")
    assert code == 0, err
    assert "promoted to staging as v2" in out
    state = _state(registry)[0]
    assert state["production"] == 1 and state["staging"] == 2
    assert [v[2] for v in state["versions"]] == [("production",), ("staging",)]
    rows = _retrain_rows(registry)
    assert len(rows) == 1
    row = rows[0]
    assert row["action"] == "retrain:promoted_to_staging" and row["version"] == 2 and row["outcome"] == "promoted"
    detail = json.loads(row["detail"])
    run = tmp_path / "runs" / "1990-12-31"
    decision = json.loads((run / "decision.json").read_text())
    assert row["input_digest"] == detail["report_sha256"]
    assert detail["report_sha256"] == __import__("hashlib").sha256((run / "decision.json").read_bytes()).hexdigest()
    assert detail["gates"]["c_index_diff_lower"] == {
        "status": "pass", "threshold": -0.2, "value": decision["metrics"]["difference"]["c_harrell"]["ci_low"]}
    assert detail["window"]["holdout"]["rows"] == 341 and detail["window"]["time_range"] == [1986.0, 1990.0]
    assert len(detail["window"]["train"]["ids_sha256"]) == 64
    assert detail["trigger"].startswith("cli:") and detail["now"].startswith("1990-12-31")
    assert detail["champion"]["version"] == 1 and detail["challenger"]["version"] == 2
    # the registered version is the challenger bundle the run wrote
    assert state["versions"][1][1] == decision["challenger"]["bundle"]
    # the register and promote:staging rows came first, written by the registry itself
    actions = [r["action"] for r in _audit(registry)]
    assert actions[-3:] == ["register", "promote:staging", "retrain:promoted_to_staging"]
    code, out, _ = run_cli("audit", "verify", "--registry", registry)
    assert code == 0 and "audit chain ok" in out


def test_a_rejected_challenger_leaves_the_registry_as_it_was(run_cli, registry, tmp_path):
    before = _state(registry)
    code, out, err = run_cli("retrain", registry, NAME, "--data", "rotterdam", "--policy", _policy(tmp_path, STRICT),
                             "--out", tmp_path / "runs", "--clock", "simulated", "--start", "1990-12-31")
    assert code == 0, err
    assert "rejected" in out
    assert _state(registry) == before
    rows = _retrain_rows(registry)
    assert [r["action"] for r in rows] == ["retrain:rejected"] and rows[0]["version"] == 1
    detail = json.loads(rows[0]["detail"])
    assert detail["gates"]["c_index_diff_lower"]["status"] == "fail"
    assert detail["challenger"]["version"] is None
    assert (tmp_path / "runs" / "1990-12-31" / "challenger" / "bundle").is_dir()  # kept for review, not registered
    code, out, _ = run_cli("audit", "verify", "--registry", registry)
    assert code == 0 and "audit chain ok" in out


def test_a_fault_mid_run_leaves_the_registry_as_it_was(run_cli, registry, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("injected fault while training the challenger")

    monkeypatch.setattr(retraining, "train_from_config", broken)
    before = _state(registry)
    files_before = sorted(p.relative_to(registry) for p in (registry / "models").rglob("*"))
    code, out, err = run_cli("retrain", registry, NAME, "--data", "rotterdam", "--policy",
                             _policy(tmp_path, LENIENT), "--out", tmp_path / "runs", "--clock", "simulated",
                             "--start", "1990-12-31")
    assert code == 2
    errors = [line for line in err.splitlines() if line.startswith("error:")]  # the other lines are progress
    assert errors == ["error: the retraining run failed: RuntimeError: injected fault while training the challenger"]
    assert _state(registry) == before
    assert sorted(p.relative_to(registry) for p in (registry / "models").rglob("*")) == files_before
    assert not (tmp_path / "runs" / "1990-12-31").exists()
    rows = _retrain_rows(registry)
    assert [r["action"] for r in rows] == ["retrain:failed"] and rows[0]["outcome"] == "failed"
    detail = json.loads(rows[0]["detail"])
    assert detail["stage"] == "challenge" and detail["error"] == "RetrainingError"
    assert detail["registered_version"] is None and detail["champion"]["version"] == 1
    code, out, _ = run_cli("audit", "verify", "--registry", registry)
    assert code == 0 and "audit chain ok" in out


def test_the_simulated_schedule_respects_each_periods_cut_off(run_cli, registry, tmp_path):
    before = _state(registry)
    code, out, err = run_cli("retrain", registry, NAME, "--data", "rotterdam", "--policy", _policy(tmp_path, STRICT),
                             "--out", tmp_path / "runs", "--every", "1y", "--clock", "simulated",
                             "--start", "1988-12-31", "--until", "1990-12-31")
    assert code == 0, err
    assert "3 runs: 0 promoted_to_staging, 3 rejected, 0 failed" in out
    runs = sorted((tmp_path / "runs").iterdir())
    assert [p.name for p in runs] == ["1988-12-31", "1989-12-31", "1990-12-31"]
    for year, run in zip((1988, 1989, 1990), runs, strict=True):
        doc = json.loads((run / "decision.json").read_text())
        window = doc["window"]
        assert window["time_range"] == [year - 4.0, float(year)]  # nothing later than the simulated now
        assert window["holdout"]["time_range"] == [float(year), float(year)]
        assert window["train"]["time_range"][1] == year - 1
        assert doc["trigger"]["by"] == "schedule"
    rows = _retrain_rows(registry)
    assert [json.loads(r["detail"])["now"][:10] for r in rows] == ["1988-12-31", "1989-12-31", "1990-12-31"]
    assert {json.loads(r["detail"])["trigger"] for r in rows} == {"schedule"}
    assert _state(registry) == before


def test_bad_options_are_one_line_before_anything_runs(run_cli, registry, tmp_path):
    policy = _policy(tmp_path, LENIENT)
    cases = [
        (["--every", "7", "--clock", "simulated", "--start", "1990-01-01"], "--every '7'"),
        (["--clock", "simulated"], "--clock simulated needs --start"),
        (["--clock", "later"], "--clock 'later'"),
        (["--until", "1990-01-01"], "--until ends a schedule"),
    ]
    for extra, expected in cases:
        code, _, err = run_cli("retrain", registry, NAME, "--data", "rotterdam", "--policy", policy,
                               "--out", tmp_path / "runs", *extra)
        assert code == 2 and expected in err and len(err.strip().splitlines()) == 1, (extra, err)
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(LENIENT | {"gates": {"calibration_slope": [2, 1]}}))
    code, _, err = run_cli("retrain", registry, NAME, "--data", "rotterdam", "--policy", bad)
    assert code == 2 and "gates.calibration_slope" in err and len(err.strip().splitlines()) == 1
    assert _retrain_rows(registry) == []  # nothing ran, nothing to audit
