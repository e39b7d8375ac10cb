"""The deployment simulation (benchmarks/simulate_deployment.py, workflows.simulation) on 2 real Rotterdam years with
tiny nets: outcomes are posted only once known, the retraining data never looks past its date, the never-retrain arm
keeps the 1986 model, every retraining decision is audited, and the service stored one feature vector per patient
served."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from precimed.workflows.simulation import EVENT, KNOWN_AT, TIME, TREATED, calendar, known_by

ROOT = Path(__file__).resolve().parents[2]


def _script():
    spec = importlib.util.spec_from_file_location("simulate_deployment", ROOT / "benchmarks" / "simulate_deployment.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    sd = _script()
    out = tmp_path_factory.mktemp("sim") / "run"
    doc = sd.run_simulation(out, sd.tiny((1987, 1988)), echo=lambda _m: None)
    return sd, out, doc


def test_known_by_cuts_follow_up_at_now():
    frame = pd.DataFrame({"year": [1980, 1980, 1981], "x": [1, 2, 3]})
    tl = calendar(frame, year="year", time=np.array([400.0, 3000.0, 100.0]), event=np.array([1, 1, 0]),
                  censor_at=2557, seed=0)
    assert tl[TIME].max() == 2557 and tl.loc[tl[TIME] == 2557, EVENT].item() == 0  # censored at 7 years
    now = 1981.0
    k = known_by(tl, now)
    assert (k[TREATED] < now).all()  # nobody treated after now
    assert (k[TREATED] + k[TIME] / 365.25 <= now + 1e-9).all()  # no follow-up past now
    late = tl[tl[KNOWN_AT] > now]["x"]
    assert (k[k["x"].isin(late)][EVENT] == 0).all()  # an outcome not yet known is censored at now


def test_no_outcome_before_its_date_and_no_hindsight(sim):
    sd, out, doc = sim
    log = doc["_outcome_log"]
    assert len(log) == len(doc["_served"]) == doc["service"]["outcomes_posted"]
    assert all(o["posted_at"] >= o["known_at"] for o in log)
    assert all(o["posted_at"] >= doc["_served"][o["pid"]]["served_at"] for o in log)
    for year in (1987, 1988):  # the retraining data of each year end: no follow-up beyond that date
        known = pd.read_csv(out / "data" / f"known_{year}.csv")
        assert known["year"].max() == year
        assert (known[TREATED] + known[TIME] / 365.25 <= year + 1.0 + 1e-6).all()
        assert KNOWN_AT not in known.columns


def test_never_arm_keeps_the_1986_model(sim):
    _, _, doc = sim
    champion = doc["_champion"]
    never = doc["_arm_models"]["never"]
    assert set(never) == {1987, 1988}
    assert all(m is champion.models[champion.primary] and p is champion.preprocessor for m, p in never.values())
    assert doc["_arm_models"]["always"][1988][0] is not champion.models[champion.primary]
    first = doc["years"][0]["arms"]  # 1987: every arm still has the 1986 model, the service served it too
    assert first["gated"]["c_harrell"] == first["never"]["c_harrell"] == first["always"]["c_harrell"]


def test_every_decision_is_audited(sim):
    from sqlalchemy import create_engine, text

    _, out, doc = sim
    assert len(doc["decisions"]) == 2
    engine = create_engine(doc["_database_url"])
    with engine.connect() as c:
        rows = c.execute(text("SELECT action, detail FROM audit WHERE action LIKE 'retrain:%' ORDER BY seq")).all()
    engine.dispose()
    assert [r[0] for r in rows] == [d["action"] for d in doc["decisions"]]
    for (_, detail), d in zip(rows, doc["decisions"], strict=True):
        detail = json.loads(detail)
        assert detail["now"] == d["now"] and detail["trigger"] == "simulation"
        if "gates" in d:
            assert {k: v["status"] for k, v in detail["gates"].items()} == {g["name"]: g["status"] for g in d["gates"]}
    saved = json.loads((out / "simulation.json").read_text())
    assert [d["year"] for d in saved["decisions"]] == [1987, 1988]
    assert (out / "simulation.png").stat().st_size > 10_000


def test_served_features_match_the_patients_posted(sim):
    sd, _, doc = sim
    if not doc["service"]["served_features_store"]:
        pytest.skip("the service has no served-features store (cli_commands.served_window) in this tree")
    from precimed.bundle import load_bundle
    from precimed.service import cli_commands as cli

    frame = cli.served_window(doc["_registry"], sd.NAME)
    served = doc["_served"]
    assert len(frame) == len(served)
    posted = {(p["prediction_id"], p["index"]): pid for pid, p in served.items()}
    got = list(zip(frame["prediction_id"], frame["index"].astype(int), strict=True))
    assert set(got) == set(posted)
    champion = load_bundle(doc["_bundles"][1])
    names = champion.metadata["feature_names_out"]
    tl = doc["_timeline"].set_index(doc["_timeline"]["pid"].astype(str))
    features = [f.name for f in champion.features]
    raw = tl.loc[[posted[k] for k in got], features]
    from precimed.workflows._run import typed_patients

    typed = typed_patients(champion, raw.reset_index(drop=True).rename_axis(None), where="test")[1]
    expected = champion.preprocessor.transform(typed, out_of_range="missing")
    np.testing.assert_allclose(frame[names].to_numpy(dtype=float), expected, rtol=1e-6, atol=1e-6)
    if doc["service"]["outcomes_endpoint"]:
        assert frame["outcome_at"].notna().all()  # every served patient's outcome was attached in the end
