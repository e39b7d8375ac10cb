"""Per-patient uncertainty on real cohorts: nominal level, empirical coverage on held-out rows (95% bootstrap CI),
mean prediction-set size or interval width, and the row counts.

Each run is the example config (examples/pima.yaml, wdbc.yaml, nhefs.yaml, rotterdam-gbsg.yaml) with an
``uncertainty: {level, calibration_fraction}`` section added: the calibration rows leave the training rows before
anything is fitted, and coverage is measured on the config's held-out rows (Pima.te, the WDBC and NHEFS test
splits, GBSG for Rotterdam). No synthetic data. The Rotterdam run drops its Optuna search by default (minutes
instead of an hour; ``--search`` keeps it).

Run: .venv/bin/python benchmarks/conformal_coverage.py [--level 0.9] [--only pima,wdbc] [--quick] [--search]
``--quick`` shrinks the nets (one member, 40 epochs) and the bootstrap to 200 for a smoke run.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import yaml

from precimed.config import parse_config
from precimed.workflows.training import train_from_config

ROOT = Path(__file__).resolve().parent.parent
RUNS = {"pima": "pima.yaml", "wdbc": "wdbc.yaml", "nhefs": "nhefs.yaml", "rotterdam-gbsg": "rotterdam-gbsg.yaml"}


def _config(name: str, *, level: float, fraction: float, quick: bool, search: bool) -> dict:
    path = ROOT / "examples" / RUNS[name]
    config = yaml.safe_load(path.read_text())
    config["uncertainty"] = {"level": level, "calibration_fraction": fraction}
    config.setdefault("training", {})["progress"] = False
    config["evaluation"] = {**config.get("evaluation", {}), "explain": 0}
    if not search:
        config["training"].pop("search", None)
    if quick:
        config["training"].update(max_epochs=40, patience=8)
        for net in ("mlp", "resmlp"):
            if net in config.get("models", {}):
                config["models"][net] = {**config["models"][net], "ensemble": 1}
        config["evaluation"]["bootstrap"] = 200
    return config


def _ci(m: dict) -> str:
    if not math.isfinite(m["ci_low"]):
        return f"{m['value']:.3f}"
    return f"{m['value']:.3f} [{m['ci_low']:.3f}, {m['ci_high']:.3f}]"


def _rows(name: str, doc: dict) -> list[list[str]]:
    rows = []
    n_test = doc["data"]["test"]["n"]
    for model, rep in doc["uncertainty"].items():
        m = rep["metrics"]
        base = [name, model, f"{rep['level']:g}"]
        if doc["task"] in ("binary", "multiclass"):
            width = next(v for k, v in m.items() if k.startswith("mean_width"))
            rows.append(base + ["class in set", _ci(m["coverage"]), f"set size {m['mean_set_size']['value']:.2f}, "
                                f"empty {m['empty_sets']['value']:.2f}; VA width {width['value']:.3f}",
                                str(rep["n_calibration"]), str(n_test)])
        elif doc["task"] == "regression":
            rows.append(base + ["y in interval", _ci(m["coverage"]), f"width {m['mean_width']['value']:.2f}",
                                str(rep["n_calibration"]), str(n_test)])
        else:
            for key in [k for k in m if k.startswith("coverage ")]:
                out = key.removeprefix("coverage ")
                rows.append(base + [f"IPCW status@{out.removeprefix('event_probability_')} in set", _ci(m[key]),
                                    f"set size {m['mean_set_size ' + out]['value']:.2f}; VA width "
                                    f"{m['mean_width ' + out]['value']:.3f}; observed risk "
                                    f"{m['observed_risk ' + out]['value']:.3f} vs mean VA "
                                    f"[{m['mean_lower ' + out]['value']:.3f}, {m['mean_upper ' + out]['value']:.3f}]",
                                    str(rep["n_calibration"]), str(n_test)])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--level", type=float, default=0.9)
    parser.add_argument("--calibration-fraction", type=float, default=0.2)
    parser.add_argument("--only", default=",".join(RUNS))
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--search", action="store_true")
    args = parser.parse_args()
    header = ["data", "model", "level", "what is covered", "coverage [95% CI]", "size / width", "n_cal", "n_test"]
    table = []
    for name in args.only.split(","):
        cfg = parse_config(_config(name, level=args.level, fraction=args.calibration_fraction, quick=args.quick,
                                   search=args.search), source=RUNS[name], base_dir=ROOT / "examples")
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            result = train_from_config(cfg, Path(tmp) / "run", progress=False)
        print(f"# {name}: trained and checked in {time.perf_counter() - start:.0f} s "
              f"({cfg.evaluation.bootstrap} bootstrap replicates)", flush=True)
        rows = _rows(name, result.metrics)
        for row in rows:
            print(" | ".join(row), flush=True)
        table.extend(rows)
    print()
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in table:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
