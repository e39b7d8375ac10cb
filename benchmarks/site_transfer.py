"""Site transfer (issue 14, item 6): a Rotterdam-trained Cox MLP moved to GBSG, updated cheaply or not at all.

Plain script, not a test: every figure is measured in this run.

    .venv/bin/python benchmarks/site_transfer.py [--repeats 20] [--ensemble 3] [--out results.json]

The model: the demo's task (examples/rotterdam-gbsg.yaml: node-positive Rotterdam patients, recurrence-free
survival, GBSG's 84-month administrative censoring), its Cox MLP ensemble shrunk to run quickly (--ensemble nets,
no hyper-parameter search, at most 100 epochs), trained once on Rotterdam with `train_from_config`.

Each repeat splits GBSG's 686 REAL patients at random into halves, stratified on the event: the update half and the
evaluation half. Every arm is scored on the same evaluation half:

- untouched: the Rotterdam model as it is;
- recalibrated: Cox recalibration on the update half (slope of the risk score + a new Breslow baseline);
- baseline only: a new Breslow baseline on the update half (slope 1);
- fine-tuned head / fine-tuned all: the nets trained further on the update half (output layer only, or every
  layer; learning rate 1e-3, batch 64, at most 100 epochs, early stopping with patience 10), new baseline;
- GBSG-only: the same config trained from scratch (preprocessor and nets) on the update half.

Metrics at the 5-year horizon (1826 days): Harrell's C, Uno's C (truncated at 5 years), the calibration slope
(Cox regression of the outcome on the arm's risk score; 1 is ideal) and its distance from 1, the Brier score at
5 years, and observed / expected 5-year risk (Kaplan-Meier risk over the mean predicted risk; 1 is ideal) and its
distance from 1 (for the two distances and the Brier score, lower is better). Reported: each arm's mean over
repeats with the 2.5-97.5 percentile interval over repeats, and the same for the paired difference arm minus
untouched (the splits overlap, so the interval shows how much one split's answer varies; it is not a CI of the
mean, which would be far narrower).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.base import clone
from sklearn.model_selection import train_test_split

from precimed.bundle import load_bundle
from precimed.config import load_config, parse_config
from precimed.evaluate.metrics import undefined_as_nan
from precimed.evaluate.survival import kaplan_meier, survival_metrics
from precimed.jsonio import write_json
from precimed.train import catalogue
from precimed.train.updating import cox_slope
from precimed.workflows._run import load_cohort
from precimed.workflows.training import demo_config_path, train_from_config
from precimed.workflows.updating import update_model

HORIZON = 1826.0
ARMS = ["untouched", "recalibrated", "baseline only", "fine-tuned head", "fine-tuned all", "GBSG-only"]
METRICS = {"c_harrell": "Harrell C", "c_uno": "Uno C", "slope": "calib. slope", "slope_err": "abs(slope-1)",
           "brier": "Brier 5y", "oe": "O/E 5y", "oe_err": "abs(O/E-1)"}
FINETUNE = {"lr": 1e-3, "batch_size": 64, "max_epochs": 100, "patience": 10}


def run_config(ensemble: int) -> dict:
    """The demo config, shrunk: the MLP alone, no search, few epochs, a small bootstrap for the training run."""
    cfg = load_config(demo_config_path()).model_dump(mode="json", exclude_none=True)
    cfg["training"].pop("search", None)
    cfg["training"] |= {"max_epochs": 100, "patience": 10, "progress": False}
    cfg["models"] = {"names": ["mlp"], "mlp": {"hidden": [64, 32], "dropout": 0.3, "ensemble": ensemble}}
    cfg["evaluation"] = {"bootstrap": 50, "explain": 20}
    return cfg


def score(model, X, y) -> dict[str, float]:
    """The arm's metrics on the evaluation half."""
    risk = model.predict_risk(X)
    surv = model.predict_survival(X, np.array([HORIZON]))
    with undefined_as_nan():
        m = survival_metrics(y[:, 0], y[:, 1], risk, horizons=[HORIZON], surv=surv, surv_times=np.array([HORIZON]))
    times, km = kaplan_meier(y[:, 0], y[:, 1])
    observed = 1.0 - km[np.searchsorted(times, HORIZON, side="right") - 1]
    expected = float(np.mean(1.0 - surv[:, 0]))
    slope = cox_slope(risk, y[:, 0], y[:, 1])
    return {"c_harrell": m["c_harrell"], "c_uno": m["c_uno"], "slope": slope, "slope_err": abs(slope - 1.0),
            "brier": m[f"brier_{HORIZON:g}"], "oe": observed / expected, "oe_err": abs(observed / expected - 1.0)}


def summary(values: list[float]) -> tuple[float, float, float]:
    a = np.asarray(values, dtype=float)
    return float(a.mean()), float(np.percentile(a, 2.5)), float(np.percentile(a, 97.5))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--ensemble", type=int, default=3)
    parser.add_argument("--out", type=Path, help="write every repeat's metrics and the summary as JSON")
    args = parser.parse_args()
    start = time.perf_counter()
    cfg = parse_config(run_config(args.ensemble))
    with tempfile.TemporaryDirectory() as tmp:
        run = train_from_config(cfg, Path(tmp) / "run", progress=False)
        bundle = load_bundle(run.bundle_path)
        print(f"trained {bundle.ref} on Rotterdam in {time.perf_counter() - start:.0f} s "
              f"({bundle.metadata['training_data']['n']} patients, "
              f"{bundle.metadata['training_data']['events']} events)")
        gbsg = load_cohort(cfg.data.test, cfg)
        parent = bundle.models["mlp"]
        y_all = gbsg.y
        print(f"GBSG: {len(gbsg)} patients, {int(y_all[:, 1].sum())} events; {args.repeats} random halves")
        rows: list[dict[str, dict[str, float]]] = []
        for repeat in range(args.repeats):
            fit_rows, eval_rows = train_test_split(np.arange(len(gbsg)), test_size=0.5, random_state=repeat,
                                                   stratify=y_all[:, 1])
            fit_part, eval_part = gbsg.subset(np.sort(fit_rows)), gbsg.subset(np.sort(eval_rows))
            X_eval = bundle.preprocessor.transform(eval_part.X, out_of_range="missing")
            arms = {"untouched": (parent, X_eval)}
            for arm, method, extra in (("recalibrated", "recalibrate", {}),
                                       ("baseline only", "recalibrate_intercept", {}),
                                       ("fine-tuned head", "finetune", {"layers": "head"}),
                                       ("fine-tuned all", "finetune", {"layers": "all"})):
                settings = {"seed": repeat, "finetune": FINETUNE | extra}
                arms[arm] = (update_model(bundle, fit_part, method=method, settings=settings).model, X_eval)
            pre = clone(bundle.preprocessor).fit(fit_part.X)
            local = catalogue.build(cfg, "mlp", progress=False, overrides={"random_state": repeat})
            local.fit(pre.transform(fit_part.X), fit_part.y)
            arms["GBSG-only"] = (local, pre.transform(eval_part.X, out_of_range="missing"))
            rows.append({arm: score(model, X, eval_part.y) for arm, (model, X) in arms.items()})
            print(f"  repeat {repeat + 1:2d}: " + ", ".join(f"{arm} C {rows[-1][arm]['c_harrell']:.3f} "
                                                          f"slope {rows[-1][arm]['slope']:.2f}" for arm in ARMS[:2]),
                  flush=True)
    elapsed = time.perf_counter() - start
    result: dict = {"repeats": args.repeats, "ensemble": args.ensemble, "horizon_days": HORIZON,
                    "seconds": elapsed, "arms": {}, "differences": {}, "per_repeat": rows}
    header = "| arm | " + " | ".join(METRICS.values()) + " |"
    rule = "|---|" + "---|" * len(METRICS)
    print(f"\nEvaluation halves of GBSG, {args.repeats} repeats: mean (2.5-97.5 percentile over repeats)\n")
    print(header + "\n" + rule)
    for arm in ARMS:
        cells = {k: summary([r[arm][k] for r in rows]) for k in METRICS}
        result["arms"][arm] = cells
        print(f"| {arm} | " + " | ".join(f"{m:.3f} ({lo:.3f} to {hi:.3f})" for m, lo, hi in cells.values()) + " |")
    print(f"\nPaired differences arm - untouched, same evaluation rows: mean (2.5-97.5 percentile), share of "
          f"repeats > 0\n\n{header}\n{rule}")
    for arm in ARMS[1:]:
        cells = {}
        for k in METRICS:
            diffs = [r[arm][k] - r["untouched"][k] for r in rows]
            cells[k] = (*summary(diffs), float(np.mean(np.asarray(diffs) > 0)))
        result["differences"][arm] = cells
        print(f"| {arm} | " + " | ".join(f"{m:+.3f} ({lo:+.3f} to {hi:+.3f}) {share:.0%}"
                                        for m, lo, hi, share in cells.values()) + " |")
    print(f"\n{elapsed:.0f} s in all")
    if args.out is not None:
        write_json(args.out, result)
        print(f"results {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
