"""Replay Rotterdam in calendar order through the service: predict, attach outcomes when they become known, check
drift and run gated retraining at every simulated year end; score five update arms on the same later patients.

    .venv/bin/python benchmarks/simulate_deployment.py --out /tmp/precimed-simulation

The champion is trained on the patients operated up to --train-until (1986) with their outcomes as known at the end
of that year, registered and put in production in a SQLite registry under OUT/registry. Each later year's patients
are POSTed in treatment-date order (batches of --batch) to /v1/models/NAME/predict with a clinician token; each
outcome is POSTed to /v1/outcomes at the first simulated moment after it became known (treatment date + follow-up,
censored at the task's 7 years). At each year end: a drift check of the year's served feature vectors against the
production model's training rows, and ``retrain_once`` (the gated champion/challenger run, audited) on the data known
then (follow-up cut at that date, later events censored); a challenger that passes every gate goes to staging and is
then promoted to production here, as an admin would with ``precimed registry promote``.

Arms, each scored on the patients of every simulated year with their final outcomes (model in place when the
patient was served): gated (what production served), never (the 1986 model throughout), always (retrained every
year end on every known row, no gates), recalibrate and finetune (the 1986 model's primary net recalibrated /
fine-tuned every year end on the last --update-years years known). Writes OUT/simulation.json, OUT/simulation.png,
OUT/table.md and prints the tables.

The parts that need the served-features store and POST /v1/outcomes go through ``Service.post_outcomes`` and
``Service.served_features``; when the installed service lacks them (checked at start), outcomes are kept in the
simulation's own ledger and the year's feature vectors are encoded locally, and the output says so.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
NAME = "rotterdam-sim"
HORIZON = 1096.0  # 3 years: the calibration horizon (observed vs predicted)


# ----- configs -----------------------------------------------------------------------------------------------------
@dataclass
class Settings:
    """Sizes of the run: the full simulation (defaults) or the smoke test's tiny one."""

    years: tuple[int, ...] = tuple(range(1987, 1994))
    train_until: int = 1986
    later_from: int = 1989          # the pooled comparison covers these years onwards
    batch: int = 50
    seed: int = 0
    n_boot: int = 200               # bootstrap replicates of the arms' CIs
    policy_bootstrap: int = 200     # paired replicates inside each retraining decision
    drift_boot: int = 50
    update_years: int = 4           # recalibrate / finetune on the last N years known
    hidden: tuple[int, ...] = (32, 16)
    ensemble: int = 3
    max_epochs: int = 100
    patience: int = 10
    finetune_epochs: int = 30
    policy: dict[str, Any] = field(default_factory=dict)


def tiny(years: tuple[int, ...] = (1987, 1988)) -> Settings:
    """Settings that run in seconds (the smoke test): tiny nets, few replicates."""
    return Settings(years=years, later_from=years[-1], n_boot=20, policy_bootstrap=20, drift_boot=5, hidden=(8,),
                    ensemble=1, max_epochs=8, patience=3, finetune_epochs=3)


def base_config() -> dict[str, Any]:
    """examples/rotterdam-temporal.yaml: its features, outcome definition and 7-year censoring."""
    from precimed.config import load_config

    return load_config(ROOT / "examples" / "rotterdam-temporal.yaml").model_dump(mode="json", exclude_none=True)


def sim_config(base: dict[str, Any], data: Path, s: Settings, *, name: str = NAME) -> Any:
    """The simulation's run config: the temporal example's features and censoring, the outcome as known at the
    file's date (sim_time, sim_event), one horizon of 1 year (the held-out patients of a retraining decision, the
    last 2 years known, have at most 2 years of follow-up, and every task horizon must lie inside it; the arms'
    3-year risks are read from the models' survival curves), mlp ensemble + cox_ph, no search."""
    from precimed.config import parse_config

    cfg = {
        "name": name, "description": "Rotterdam deployment simulation (recurrence-free survival); research use.",
        "seed": s.seed, "patient_id": "pid",
        "data": {"train": {"path": str(data)}},
        "task": {"kind": "survival", "time": "sim_time", "event": "sim_event", "time_unit": "days",
                 "censor_at": base["task"]["censor_at"], "horizons": [365]},
        "features": base["features"],
        "split": {"kind": "stratified", "test_fraction": 0.2},
        "models": {"names": ["mlp", "cox_ph"], "compare": ["mlp - cox_ph"],
                   "mlp": {"hidden": list(s.hidden), "dropout": 0.3, "ensemble": s.ensemble}},
        "training": {**base["training"], "max_epochs": s.max_epochs, "patience": s.patience, "progress": False},
        "evaluation": {"bootstrap": 20, "explain": 0, "subgroups": ["meno", "hormon"]},
    }
    return parse_config(cfg, source=f"{name} (simulation config)")


def default_policy(s: Settings) -> dict[str, Any]:
    """examples/retrain.yaml's gates; the window is every row known (the champion's own training years included)
    and the held-out patients are the last 2 years known, so the champion in production has never trained on them
    after the first decision (the 1986 champion trained on 1986, which the 1987 decision holds out)."""
    return {"window": {"time_column": "year"},
            "holdout": {"kind": "recent", "last": 2, "min_rows": 100},
            "challenger": {"kind": "retrain"}, "c_index": "harrell", "bootstrap": s.policy_bootstrap, "seed": s.seed,
            "level": 0.95,
            "gates": {"c_index_diff_lower": -0.01, "calibration_slope": [0.8, 1.2],
                      "subgroups": {"columns": ["meno", "hormon"], "max_drop": 0.05, "min_size": 30},
                      "drift": {"max_psi": 0.25, "max_domain_auroc": 0.8}}}


# ----- the cohort --------------------------------------------------------------------------------------------------
def rotterdam_timeline(base: dict[str, Any], seed: int) -> tuple[pd.DataFrame, list[str]]:
    """Every Rotterdam patient with the example's recurrence-free survival (loaded through its config), a simulated
    treatment date in their year of surgery, the final outcome and when it becomes known."""
    from precimed.config import parse_config
    from precimed.workflows._run import load_cohort
    from precimed.workflows.simulation import calendar

    cfg = parse_config(base, source="examples/rotterdam-temporal.yaml")
    cohort = load_cohort(cfg.data.train, cfg)
    features = [f["name"] for f in base["features"]]
    frame = cohort.X[features].copy()
    frame.insert(0, "pid", cohort.X.index.to_numpy())
    frame.insert(1, "year", cohort.frame["year"].to_numpy())
    frame = frame.reset_index(drop=True)
    return calendar(frame, year="year", time=cohort.y[:, 0], event=cohort.y[:, 1],
                    censor_at=cfg.task.censor_at, seed=seed), features


def write_known(timeline: pd.DataFrame, now_year: float, path: Path, features: list[str], *,
                since_year: float | None = None) -> pd.DataFrame:
    """data known at ``now_year`` (follow-up cut there) as a CSV the configs read; never the final outcome or when
    it becomes known."""
    from precimed.workflows.simulation import EVENT, TIME, TREATED, known_by

    known = known_by(timeline, now_year)
    if since_year is not None:
        known = known[known["year"] > since_year]
    known[["pid", "year", TREATED, *features, TIME, EVENT]].to_csv(path, index=False)
    return known


# ----- the service -------------------------------------------------------------------------------------------------
class Service:
    """The in-process service (TestClient on a SQLite registry) and the two calls that may not exist yet."""

    def __init__(self, registry: Path) -> None:
        from fastapi.testclient import TestClient

        from precimed.service import ServiceSettings, create_app
        from precimed.service import cli_commands as cli
        from precimed.service.container import container_of

        self.cli = cli
        self.registry = registry
        self.tokens = {role: cli.tokens_create(registry, role, label=f"simulation {role}")[1]
                       for role in ("clinician", "data_scientist")}
        self.app = create_app(ServiceSettings(registry=registry))
        self.client = TestClient(self.app)
        self.database_url = container_of(self.app).settings.database_url
        self.real_outcomes = "/v1/outcomes" in self.client.get("/openapi.json").json().get("paths", {})
        self.real_served = hasattr(cli, "served_window")
        self.ledger: list[dict[str, Any]] = []   # fallback store of outcomes when /v1/outcomes is absent

    def close(self) -> None:
        from precimed.service.container import container_of

        self.client.close()
        container_of(self.app).db.dispose()

    def _auth(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}

    def predict(self, patients: list[dict[str, Any]]) -> dict[str, Any]:
        r = self.client.post(f"/v1/models/{NAME}/predict", json={"patients": patients},
                             headers=self._auth("clinician"))
        if r.status_code != 200:
            raise RuntimeError(f"predict: HTTP {r.status_code}: {r.text[:300]}")
        return r.json()

    def post_outcomes(self, items: list[dict[str, Any]]) -> None:
        """POST /v1/outcomes (data scientist), or the ledger when the route does not exist."""
        if not items:
            return
        if not self.real_outcomes:
            self.ledger.extend(items)
            return
        r = self.client.post("/v1/outcomes", json={"outcomes": items}, headers=self._auth("data_scientist"))
        if r.status_code >= 300:
            raise RuntimeError(f"/v1/outcomes: HTTP {r.status_code}: {r.text[:300]}")

    def served_features(self, since: datetime, until: datetime, fallback: pd.DataFrame) -> pd.DataFrame:
        """The feature vectors the service stored between two wall-clock times, or ``fallback`` (the same vectors
        encoded locally) when the store does not exist."""
        if not self.real_served:
            return fallback
        return self.cli.served_window(self.registry, NAME, since=since, until=until)


# ----- the replay --------------------------------------------------------------------------------------------------
def _patient(row: pd.Series, features: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {"patient_id": str(row["pid"])}
    for f in features:
        v = row[f]
        out[f] = None if pd.isna(v) else (v.item() if hasattr(v, "item") else v)
    return out


def _year_end(year: int) -> datetime:
    return datetime(year, 12, 31, 23, 59, 59, tzinfo=UTC)


def _train(cfg: Any, out: Path) -> Path:
    from precimed.workflows.training import train_from_config

    return train_from_config(cfg, out, progress=False).bundle_path


def _arm_outputs(model: Any, pre: Any, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    Xt = pre.transform(X, out_of_range="missing")
    return model.predict_risk(Xt), 1.0 - model.predict_survival(Xt, np.array([HORIZON]))[:, 0]


def run_simulation(out: Path, s: Settings, *, echo: Any = print) -> dict[str, Any]:
    """The whole simulation; returns the simulation.json document (also written under ``out``)."""
    from precimed.bundle import load_bundle
    from precimed.errors import PrecimedError
    from precimed.jsonio import write_json
    from precimed.workflows._run import load_cohort
    from precimed.workflows.drift import drift_frames, reference_frame
    from precimed.workflows.retraining import load_policy
    from precimed.workflows.simulation import (
        EVENT,
        KNOWN_AT,
        TIME,
        TREATED,
        pooled_differences,
        score_arm,
        summary_table,
    )
    from precimed.workflows.updating import FineTuneSettings, UpdateSettings, update_model

    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=False)
    data_dir = out / "data"
    data_dir.mkdir()
    base = base_config()
    timeline, features = rotterdam_timeline(base, s.seed)
    policy = load_policy(s.policy or default_policy(s))
    last_year = s.years[-1]

    # 1. the champion: trained on what was known at the end of train_until
    champ_data = data_dir / f"known_{s.train_until}.csv"
    write_known(timeline, s.train_until + 1.0, champ_data, features)
    echo(f"training the champion on patients operated up to {s.train_until} (outcomes known at the end of "
         f"{s.train_until})")
    champ_dir = _train(sim_config(base, champ_data, s), out / "champion")
    champion = load_bundle(champ_dir)
    registry = out / "registry"
    from precimed.service import cli_commands as cli

    cli.registry_add(registry, champ_dir, name=NAME)
    cli.registry_promote(registry, NAME, 1, "production")
    svc = Service(registry)
    echo(f"service: POST /v1/outcomes {'present (real endpoint)' if svc.real_outcomes else 'ABSENT: ledger used'}; "
         f"served_window {'present (real store)' if svc.real_served else 'ABSENT: local encoding used'}")
    bundles: dict[int, Path] = {1: champ_dir}

    # final outcomes of every replayed patient (typed as the configs type them), for scoring the arms
    served_rows = timeline[timeline["year"].isin(s.years)].copy()
    final_csv = data_dir / "final_outcomes.csv"
    served_rows[["pid", "year", TREATED, *features, TIME, EVENT]].to_csv(final_csv, index=False)
    final = load_cohort(sim_config(base, final_csv, s).data.train, sim_config(base, final_csv, s))
    final_pos = {str(p): i for i, p in enumerate(final.X.index)}

    served: dict[str, dict[str, Any]] = {}      # pid -> prediction id, index, version, outputs, served_at
    outcome_log: list[dict[str, Any]] = []      # every outcome posted: pid, known_at, posted_at (simulated)
    pending = served_rows[["pid", KNOWN_AT, TIME, EVENT]].sort_values(KNOWN_AT, kind="stable")
    pending_iter = {"pos": 0, "rows": pending.to_dict("records")}

    def flush(now_year: float) -> None:
        rows = pending_iter["rows"]
        batch = []
        while pending_iter["pos"] < len(rows):
            r = rows[pending_iter["pos"]]
            if r[KNOWN_AT] > now_year or str(r["pid"]) not in served:
                break
            pending_iter["pos"] += 1
            p = served[str(r["pid"])]
            batch.append({"prediction_id": p["prediction_id"], "index": p["index"], "time": float(r[TIME]),
                          "event": int(r[EVENT])})
            outcome_log.append({"pid": str(r["pid"]), "known_at": float(r[KNOWN_AT]), "posted_at": now_year})
        for i in range(0, len(batch), 200):
            svc.post_outcomes(batch[i:i + 200])

    arms_models: dict[str, dict[int, tuple[Any, Any]]] = {"never": {}, "always": {}, "recalibrate": {},
                                                          "finetune": {}}
    primary = champion.primary
    never = (champion.models[primary], champion.preprocessor)
    current: dict[str, tuple[Any, Any]] = {"always": never, "recalibrate": never, "finetune": never}
    decisions: list[dict[str, Any]] = []
    drift_checks: list[dict[str, Any]] = []
    production = 1
    try:
        for year in s.years:
            for arm in arms_models:
                arms_models[arm][year] = never if arm == "never" else current[arm]
            rows = served_rows[served_rows["year"] == year]
            echo(f"{year}: serving {len(rows)} patients (production v{production})")
            since = datetime.now(UTC)
            encoded = []
            for i in range(0, len(rows), s.batch):
                chunk = rows.iloc[i:i + s.batch]
                flush(float(chunk[TREATED].max()))
                res = svc.predict([_patient(r, features) for _, r in chunk.iterrows()])
                for pred in res["predictions"]:
                    pid = str(pred["patient_id"])
                    served[pid] = {"prediction_id": res["id"], "index": pred["index"], "version": res["version"],
                                   "risk": pred["risk_score"],
                                   "served_at": float(chunk[TREATED].max()), "year": year}
                X = final.X.iloc[[final_pos[str(p)] for p in chunk["pid"]]]
                encoded.append(load_bundle(bundles[production]).preprocessor.transform(X, out_of_range="missing"))
            now = _year_end(year)
            # the year's end on the decimal-year scale of the treatment dates (calendar_year(now) passes year + 1 in
            # leap years: 365.99 days / 365.25)
            now_year = float(year + 1) - 1e-9
            flush(now_year)
            until = datetime.now(UTC)

            # drift of the year's served feature vectors against the production model's training rows
            prod = load_bundle(bundles[production])
            local = pd.DataFrame(np.vstack(encoded), columns=prod.metadata["feature_names_out"])
            # the encoded columns only: performance is scored below on final outcomes, not on this window
            current_frame = svc.served_features(since, until, local)[list(local.columns)]
            reference, _ = reference_frame(prod, "train", encoded=True)
            d = drift_frames(prod, reference, current_frame, encoded=True, n_boot=s.drift_boot, seed=s.seed,
                             domain_per_window=False, reference_name="production model's training rows",
                             current_name=f"served {year}")
            top = max(d["features"], key=lambda r: r["psi"])
            drift_checks.append({"year": year, "production_version": production, "n_served": len(current_frame),
                                 "source": "served_window" if svc.real_served else "local encoding",
                                 "drifting": d["drifting"], "max_psi": {"feature": top["feature"],
                                                                        "value": top["psi"]},
                                 "domain_auroc": d["domain_classifier"].get("auroc")})
            echo(f"{year}: drift vs training: drifting {d['drifting'] or 'none'}; max PSI {top['psi']:.3f} "
                 f"({top['feature']})")

            # data known at the year end; the gated decision
            known_csv = data_dir / f"known_{year}.csv"
            write_known(timeline, now_year, known_csv, features)
            run_dir = out / "retraining" / str(year)
            run_dir.parent.mkdir(exist_ok=True)
            entry: dict[str, Any] = {"year": year, "now": now.isoformat(), "champion_version": production}
            try:
                res = cli.retrain_once(registry, NAME, str(known_csv), policy, run_dir, now=now,
                                       trigger="simulation")
            except PrecimedError as exc:
                entry |= {"action": "retrain:failed", "promote": False, "error": str(exc)}
                echo(f"{year}: retraining failed: {exc}")
            else:
                import json

                doc = json.loads(Path(res["decision"]).read_text())
                entry |= {"action": res["action"], "promote": res["promote"], "summary": res["summary"],
                          "gates": res["gates"], "window": res["window"], "challenger_version": res["version"],
                          "champion_c": doc["metrics"]["champion"].get("c_harrell"),
                          "challenger_c": doc["metrics"]["challenger"].get("c_harrell"),
                          "difference_c": doc["metrics"]["difference"].get("c_harrell"),
                          "champion_slope": doc["metrics"]["champion"].get("calibration_slope"),
                          "challenger_slope": doc["metrics"]["challenger"].get("calibration_slope")}
                echo(f"{year}: retraining {res['summary']}")
                if res["promote"]:
                    cli.registry_promote(registry, NAME, res["version"], "production")
                    bundles[res["version"]] = run_dir / "challenger" / "bundle"
                    production = res["version"]
                    entry["promoted_to_production"] = True
                    echo(f"{year}: v{production} promoted to production (as an admin would: precimed registry "
                         "promote)")
            decisions.append(entry)
            if year == last_year:
                continue
            # the ungated arms, for the next year's patients
            echo(f"{year}: always-retrain on every known row; recalibrate and finetune the {s.train_until} model")
            always_cfg = sim_config(base, known_csv, s, name=f"{NAME}-always-{year}")
            always_dir = _train(always_cfg, out / "always" / str(year))
            ab = load_bundle(always_dir)
            current["always"] = (ab.models[ab.primary], ab.preprocessor)
            upd_csv = data_dir / f"update_{year}.csv"
            write_known(timeline, now_year, upd_csv, features, since_year=year - s.update_years)
            upd_cfg = sim_config(base, upd_csv, s)
            recent = load_cohort(upd_cfg.data.train, upd_cfg)
            rec = update_model(champion, recent, method="recalibrate", settings=UpdateSettings(seed=s.seed))
            current["recalibrate"] = (rec.model, rec.preprocessor)
            ft = update_model(champion, recent, method="finetune", settings=UpdateSettings(
                seed=s.seed, finetune=FineTuneSettings(max_epochs=s.finetune_epochs, patience=3)))
            current["finetune"] = (ft.model, ft.preprocessor)
        flush(float("inf"))  # the rest of the outcomes, each at the moment it becomes known (after the last year)
    finally:
        svc.close()

    # 3. scoring: each year's patients, final outcomes, the model each arm had in place when they were served
    arms = ["gated", "never", "always", "recalibrate", "finetune"]
    per_year = []
    pooled: dict[str, list[np.ndarray]] = {a: [] for a in arms}
    pooled_y: list[np.ndarray] = []
    for year in s.years:
        rows = served_rows[served_rows["year"] == year]
        idx = [final_pos[str(p)] for p in rows["pid"]]
        X, y = final.X.iloc[idx], final.y[idx]
        # gated: the risk score the service returned; its 3-year risk from the served version's own bundle (the
        # service returns the task's 1-year horizon only), checked against the served risk score
        served_risk = np.array([served[str(p)]["risk"] for p in rows["pid"]])
        served_version = np.array([served[str(p)]["version"] for p in rows["pid"]])
        gated_ep = np.empty(len(rows))
        for v in np.unique(served_version):
            b = load_bundle(bundles[int(v)])
            mask = served_version == v
            r, ep = _arm_outputs(b.models[b.primary], b.preprocessor, X[mask])
            if not np.allclose(r, served_risk[mask], rtol=1e-4, atol=1e-5):
                raise RuntimeError(f"{year}: version {v}'s bundle does not reproduce the risk scores it served")
            gated_ep[mask] = ep
        outputs = {"gated": (served_risk, gated_ep)}
        for arm in ("never", "always", "recalibrate", "finetune"):
            model, pre = arms_models[arm][year]
            outputs[arm] = _arm_outputs(model, pre, X)
        scores = {a: score_arm(y[:, 0], y[:, 1], *outputs[a], horizon=HORIZON, n_boot=s.n_boot, seed=s.seed)
                  for a in arms}
        versions = sorted({served[str(p)]["version"] for p in rows["pid"]})
        per_year.append({"year": year, "gated_versions": versions, "arms": scores})
        if year >= s.later_from:
            pooled_y.append(y)
            for a in arms:
                pooled[a].append(outputs[a][0])
    yy = np.vstack(pooled_y)
    pairs = [("gated", "never"), ("gated", "always"), ("recalibrate", "never"), ("finetune", "never"),
             ("always", "never")]
    comparison = pooled_differences(yy[:, 0], yy[:, 1], {a: np.concatenate(v) for a, v in pooled.items()}, pairs,
                                    horizon=HORIZON, n_boot=s.n_boot, seed=s.seed)
    comparison["years"] = [y for y in s.years if y >= s.later_from]

    table = summary_table(per_year, arms)
    comp_lines = ["| arm / difference | Harrell C (95% CI) |", "|---|---|"]
    for a, m in comparison["arms"].items():
        comp_lines.append(f"| {a} | {m['value']:.3f} ({m['ci_low']:.3f} to {m['ci_high']:.3f}) |")
    for k, m in comparison["differences"].items():
        comp_lines.append(f"| {k} | {m['value']:+.3f} ({m['ci_low']:+.3f} to {m['ci_high']:+.3f}) |")
    dec_lines = ["| year end | champion | action | champion C | challenger C | difference (CI) | gates |",
                 "|---|---|---|---|---|---|---|"]
    for dct in decisions:
        if "gates" not in dct:
            dec_lines.append(f"| {dct['year']} | v{dct['champion_version']} | failed | – | – | – | {dct['error']} |")
            continue
        gates = "; ".join(f"{g['name']} {g['status']}" + (f" ({g['value']:.3f})" if g["value"] is not None else "")
                          for g in dct["gates"])
        dif = dct["difference_c"]
        dec_lines.append(f"| {dct['year']} | v{dct['champion_version']} | {dct['action']}"
                         + (" → production" if dct.get("promoted_to_production") else "")
                         + f" | {dct['champion_c']['value']:.3f} | {dct['challenger_c']['value']:.3f} | "
                         f"{dif['value']:+.3f} ({dif['ci_low']:+.3f} to {dif['ci_high']:+.3f}) | {gates} |")
    early = [o for o in outcome_log if o["posted_at"] < o["known_at"]]
    doc = {
        "data": "Rotterdam tumour bank (real data; treatment dates within each year simulated, seeded)",
        "settings": {k: v for k, v in s.__dict__.items() if k != "policy"}, "policy": policy.model_dump(mode="json"),
        "service": {"outcomes_endpoint": svc.real_outcomes, "served_features_store": svc.real_served,
                    "outcomes_posted": len(outcome_log), "outcomes_posted_early": len(early),
                    "patients_served": len(served)},
        "horizon_days": HORIZON, "years": per_year, "pooled_later_years": comparison, "decisions": decisions,
        "drift": drift_checks, "seconds": time.perf_counter() - started,
        "tables": {"years": table, "pooled": "\n".join(comp_lines), "decisions": "\n".join(dec_lines)},
    }
    # for the smoke test (not written): what was posted, the arms' models, where the registry's database is
    doc |= {"_outcome_log": outcome_log, "_served": served, "_arm_models": arms_models, "_champion": champion,
            "_database_url": svc.database_url, "_registry": registry, "_timeline": timeline, "_bundles": bundles}
    write_json(out / "simulation.json", {k: v for k, v in doc.items() if not k.startswith("_")})
    (out / "table.md").write_text(f"{table}\n\n{doc['tables']['pooled']}\n\n{doc['tables']['decisions']}\n")
    plot(doc, out / "simulation.png")
    return doc


def plot(doc: dict[str, Any], path: Path) -> None:
    """Three panels: each arm's C-index by year (95% CI), the calibration slope by year, and champion vs
    challenger (held-out C with CI) at each retraining decision."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from precimed.atomic import atomic_write_bytes

    fig = Figure(figsize=(15, 4.6), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 3)
    years = [y["year"] for y in doc["years"]]
    arms = list(doc["years"][0]["arms"])
    colors = {"gated": "#0072B2", "never": "#7f7f7f", "always": "#D55E00", "recalibrate": "#009E73",
              "finetune": "#CC79A7"}
    for j, arm in enumerate(arms):
        off = (j - len(arms) / 2) * 0.08
        for ax, key in ((axes[0], "c_harrell"), (axes[1], "calibration_slope")):
            v = np.array([y["arms"][arm][key]["value"] for y in doc["years"]], dtype=float)
            lo = np.array([y["arms"][arm][key]["ci_low"] for y in doc["years"]], dtype=float)
            hi = np.array([y["arms"][arm][key]["ci_high"] for y in doc["years"]], dtype=float)
            ax.errorbar(np.array(years) + off, v, yerr=[v - lo, hi - v], marker="o", capsize=2, label=arm,
                        color=colors.get(arm))
    axes[0].set(title="Harrell C by year of surgery (final outcomes)", xlabel="year served", ylabel="C-index")
    axes[1].axhline(1.0, color="black", lw=0.8, ls=":")
    axes[1].set(title="Calibration slope (Cox, Wald 95% CI)", xlabel="year served", ylabel="slope")
    axes[0].legend(fontsize=8)
    dec = [d for d in doc["decisions"] if "champion_c" in d]
    for k, (key, color, label) in enumerate((("champion_c", "#7f7f7f", "champion"),
                                             ("challenger_c", "#0072B2", "challenger"))):
        x = np.array([d["year"] for d in dec], dtype=float) + (k - 0.5) * 0.15
        v = np.array([d[key]["value"] for d in dec], dtype=float)
        lo = np.array([d[key]["ci_low"] for d in dec], dtype=float)
        hi = np.array([d[key]["ci_high"] for d in dec], dtype=float)
        axes[2].errorbar(x, v, yerr=[v - lo, hi - v], fmt="o", capsize=3, color=color, label=label)
    for d in dec:
        axes[2].annotate("promoted" if d["promote"] else "rejected", (d["year"], axes[2].get_ylim()[0]),
                         fontsize=7, ha="center", va="bottom")
    axes[2].set(title="Retraining decisions: held-out C (last 2 years known)", xlabel="year end",
                ylabel="C-index (truncated follow-up)")
    axes[2].legend(fontsize=8)
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    atomic_write_bytes(path, buf.getvalue())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "precimed-simulation")
    p.add_argument("--policy", type=Path, default=None, help="a retraining policy YAML instead of the built-in one")
    p.add_argument("--bootstrap", type=int, default=200)
    p.add_argument("--tiny", action="store_true", help="tiny nets and 2 years (a smoke run, seconds)")
    a = p.parse_args(argv)
    s = tiny() if a.tiny else Settings(n_boot=a.bootstrap)
    if a.policy is not None:
        import yaml

        s.policy = yaml.safe_load(a.policy.read_text())
    if a.out.exists():
        print(f"{a.out} already exists; choose another --out", file=sys.stderr)
        return 2
    doc = run_simulation(a.out, s)
    print("\nPer year (each arm's model as in place when the patient was served; final outcomes):")
    print(doc["tables"]["years"])
    print(f"\nPooled {doc['pooled_later_years']['years'][0]}-{doc['pooled_later_years']['years'][-1]} "
          f"(n={doc['pooled_later_years']['n']}, events={doc['pooled_later_years']['events']}), paired bootstrap:")
    print(doc["tables"]["pooled"])
    print("\nRetraining decisions:")
    print(doc["tables"]["decisions"])
    svc = doc["service"]
    print(f"\nservice: outcomes via {'POST /v1/outcomes' if svc['outcomes_endpoint'] else 'the local ledger'}, "
          f"drift windows via {'served_window' if svc['served_features_store'] else 'local encoding'}; "
          f"{svc['outcomes_posted']} outcomes posted, {svc['outcomes_posted_early']} before their date; "
          f"{doc['seconds']:.0f} s; outputs in {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
