"""The drift recipe: has the data a bundle meets moved away from its training data, and does the model still hold?

``precimed drift BUNDLE --reference train|FILE --current FILE --out DIR [--time-column COL] [--window 1y|N]
[--outcomes FILE]`` compares the current rows with the reference (the bundle's own training rows, re-loaded through
its config: the same source, harmonization and split, so only training rows are the reference), overall and per
time window: per-feature PSI and tests with false-discovery control, missingness and out-of-range rates, the domain
classifier, the shift of the model's outputs, and, where outcomes have arrived, performance and calibration per
window with label maturity (``evaluate.drift``). It writes ``drift.json`` and ``drift.html`` into a new folder in one
rename.

:func:`drift_frames` is the frame-level entry point: a caller that already holds the rows (a database window of the
service's stored feature vectors, a notebook) passes them as DataFrames; nothing is read from disk.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from precimed.atomic import atomic_dir
from precimed.bundle import Bundle, load_bundle
from precimed.cohort import build_cohort, split_rows, type_features
from precimed.config import FeatureConfig, SourceConfig
from precimed.data import read_table
from precimed.errors import ConfigError, DataError, SchemaError
from precimed.evaluate.drift import (
    PSI_THRESHOLD,
    binary_window_metrics,
    domain_classifier,
    feature_drift,
    prediction_shift,
    survival_window_metrics,
)
from precimed.evaluate.drift_report import drift_sections, write_page
from precimed.jsonio import write_json
from precimed.schema import examples, require_columns
from precimed.workflows._run import Echo, check_out_dir, check_outputs_apart, load_cohort, quiet

__all__ = ["drift_frames", "drift_report", "parse_window", "reference_frame", "summary_lines", "time_windows"]

_SPAN = re.compile(r"^\s*(\d+)\s*([dwmy])\s*$", re.IGNORECASE)
_ROWS = re.compile(r"^\s*(\d+)\s*(rows?)?\s*$", re.IGNORECASE)
MIN_WINDOW_ROWS = 10  # a window smaller than this is reported but not tested (no domain classifier, no metrics)


# ----- reference and current ---------------------------------------------------------------------------------------
def reference_frame(bundle: Bundle, reference: str, *, encoded: bool = False, echo: Echo = quiet
                    ) -> tuple[pd.DataFrame, str]:
    """The reference rows and their name: ``"train"`` re-loads the bundle's training rows through its config (the
    training source, harmonized as in training, and only the training side of the run's split), anything else must
    be a table file in the bundle's schema. ``encoded=True`` returns the training rows as the bundle's encoded
    columns (``metadata["feature_names_out"]``, values outside the plausible range as missing), beside the id column,
    for comparison with stored encoded feature vectors."""
    if encoded and reference == "train":
        frame, name = reference_frame(bundle, reference, echo=echo)
        X = bundle.preprocessor.transform(type_features(frame, bundle.features, where=name), out_of_range="missing")
        out = pd.DataFrame(X, columns=bundle.metadata["feature_names_out"])
        id_name = bundle.metadata["id_column"]
        out.insert(0, id_name, frame[id_name].to_numpy())
        return out, name
    if reference == "train":
        cfg = bundle.config
        echo(f"re-loading the training source {cfg.data.train.label} through the bundle's config")
        cohort = load_cohort(cfg.data.train, cfg, classes=bundle.metadata.get("classes"))
        if cfg.split.kind in ("stratified", "grouped"):
            train_rows, _ = split_rows(cohort, cfg.split, cfg.task, cfg.seed)
            cohort = cohort.subset(np.sort(train_rows), f"{cohort.name} (training rows of the {cfg.split.kind} split)")
        expected = (bundle.metadata.get("training_data") or {}).get("n")
        if expected is not None and int(expected) != len(cohort):
            raise DataError(f"--reference train: re-loading {cfg.data.train.label} gave {len(cohort)} training rows "
                            f"but the bundle was trained on {expected}; the source changed since training. Pass the "
                            "training rows as a file instead")
        return cohort.frame.reset_index(drop=True), f"training rows ({cohort.name})"
    path = Path(reference)
    if not path.is_file():
        raise ConfigError(f"--reference {reference!r}: neither 'train' (the bundle's own training rows) nor an "
                          "existing table file")
    return read_table(path), path.name


def _check_current(frame: pd.DataFrame, columns: Sequence[str], *, where: str) -> None:
    if len(frame) == 0:
        raise DataError(f"{where}: the data has no rows; a drift check needs at least one current row")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise SchemaError(f"{where}: missing column(s) {missing} that the bundle's features need; the file must be in "
                          f"the bundle's schema (the columns `precimed predict` reads)", column=missing[0])


# ----- windows -----------------------------------------------------------------------------------------------------
def parse_window(window: str | None) -> tuple[str, int] | None:
    """``"1y"`` / ``"6m"`` / ``"2w"`` / ``"30d"`` → (unit, count); ``"500"`` or ``"500 rows"`` → ("rows", 500)."""
    if window is None:
        return None
    span = _SPAN.match(str(window))
    if span:
        count = int(span.group(1))
        unit = span.group(2).lower()
    else:
        rows = _ROWS.match(str(window))
        if not rows:
            raise ConfigError(f"--window {window!r}: give a span (1y, 6m, 2w, 30d) or a number of rows (500)")
        count, unit = int(rows.group(1)), "rows"
    if count < 1:
        raise ConfigError(f"--window {window!r}: the count must be at least 1")
    return unit, count


def time_windows(frame: pd.DataFrame, time_column: str | None, window: str | None, *, where: str = "current"
                 ) -> tuple[list[tuple[str, np.ndarray]], list[str]]:
    """Split the rows of ``frame`` into windows: [(label, row positions)] in time order, and notes.

    A numeric time column is read as calendar years (1987, 1987.5): spans in years (``Ny``) or rows. Any other
    column is parsed as dates: spans in days, weeks, months or years (calendar periods), or rows. Without a time
    column, ``N`` rows makes consecutive chunks in file order; nothing makes one window of every row. Rows without a
    time are left out of the windows (counted in the notes).
    """
    spec = parse_window(window)
    notes: list[str] = []
    if time_column is None:
        if spec is None:
            return [("all rows", np.arange(len(frame)))], notes
        if spec[0] != "rows":
            raise ConfigError(f"--window {window}: a time span needs --time-column")
        return _row_chunks(np.arange(len(frame)), spec[1], lambda idx: f"rows {idx[0] + 1}–{idx[-1] + 1}"), notes
    require_columns(frame, [time_column], where=f"{where} (--time-column)")
    raw = frame[time_column]
    if pd.api.types.is_numeric_dtype(raw):
        values = raw.to_numpy(dtype=float)
        dated = False
    else:
        try:
            stamps = pd.to_datetime(raw, errors="raise", format="mixed")
        except (ValueError, TypeError) as exc:
            bad = [v for v in raw.dropna().head(200) if pd.isna(pd.to_datetime(v, errors="coerce"))]
            raise SchemaError(f"{where}: time column {time_column!r} holds neither numbers (calendar years) nor dates, "
                              f"e.g. {examples(bad or raw.dropna())} ({exc})", column=time_column) from None
        values = stamps.to_numpy(dtype="datetime64[ns]")
        dated = True
    known = ~pd.isna(values)
    if not known.all():
        notes.append(f"{int((~known).sum())} row(s) without a value in {time_column!r} are left out of the windows "
                     "(they count in the overall comparison)")
    rows = np.flatnonzero(known)
    if not rows.size:
        raise DataError(f"{where}: time column {time_column!r} has no values", column=time_column)
    order = rows[np.argsort(values[rows], kind="stable")]
    spec = spec or ("y", 1)

    def label(idx: np.ndarray) -> str:
        lo, hi = values[idx].min(), values[idx].max()
        if dated:
            a, b = (str(pd.Timestamp(v).date()) for v in (lo, hi))
        else:
            a, b = (f"{v:g}" for v in (lo, hi))
        return a if a == b else f"{a}–{b}"

    if spec[0] == "rows":
        return _row_chunks(order, spec[1], label), notes
    unit, count = spec
    if not dated:
        if unit != "y":
            raise ConfigError(f"--window {window}: the numeric time column {time_column!r} is read as calendar years; "
                              "use a span in years (1y, 2y) or a number of rows, or give dates")
        start = np.floor(values[order].min())
        key = np.floor((values[order] - start) / count).astype(np.int64)
    else:
        freq = {"d": "D", "w": "W", "m": "M", "y": "Y"}[unit]
        periods = pd.Series(pd.to_datetime(values[order])).dt.to_period(freq)
        ordinal = np.array([p.ordinal for p in periods], dtype=np.int64)
        key = (ordinal - ordinal.min()) // count
    out = []
    for k in np.unique(key):
        idx = order[key == k]
        out.append((label(idx), idx))
    return out, notes


def _row_chunks(order: np.ndarray, size: int, label: Any) -> list[tuple[str, np.ndarray]]:
    """Consecutive chunks of ``size`` rows; a last chunk under half that size joins the one before."""
    chunks = [order[i:i + size] for i in range(0, len(order), size)]
    if len(chunks) > 1 and len(chunks[-1]) < size / 2:
        tail = chunks.pop()
        chunks[-1] = np.concatenate([chunks[-1], tail])
    return [(label(c), c) for c in chunks]


# ----- outcomes ------------------------------------------------------------------------------------------------------
def _attach_outcomes(current: pd.DataFrame, outcomes: pd.DataFrame, id_name: str, labels: Sequence[str], *,
                     where: str) -> pd.DataFrame:
    """Outcomes that arrived later (a table keyed by the id column) joined onto the current rows."""
    require_columns(outcomes, [id_name, *labels], where=f"{where} (outcomes)")
    if id_name not in current.columns:
        raise SchemaError(f"--outcomes joins on the id column {id_name!r}, which the current data lacks",
                          column=id_name)
    dupes = outcomes[id_name][outcomes[id_name].duplicated()]
    if len(dupes):
        raise DataError(f"{where}: id(s) {examples(dupes.unique())} appear more than once in the outcomes",
                        column=id_name)
    unknown = ~outcomes[id_name].isin(current[id_name])
    if unknown.any():
        raise DataError(f"{where}: outcomes for {int(unknown.sum())} id(s) not in the current data, e.g. "
                        f"{examples(outcomes[id_name][unknown])}", column=id_name)
    base = current.drop(columns=[c for c in labels if c in current.columns])
    return base.merge(outcomes[[id_name, *labels]], on=id_name, how="left", validate="many_to_one")


def _labels(bundle: Bundle, frame: pd.DataFrame, id_name: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(positions of rows with an outcome, y) for the rows of ``frame``; None when the label columns are absent.

    Labels are read as in training (``cohort.build_cohort``: event coding checked, ``task.censor_at`` applied); a row
    without an outcome is one whose outcome has not arrived.
    """
    cfg = bundle.config
    if not all(c in frame.columns for c in cfg.task.label_columns):
        return None
    work = frame.copy()
    work["__position"] = np.arange(len(work))
    keep_id = id_name if id_name in work.columns else "__position"
    if not work[cfg.task.label_columns].notna().all(axis=1).any():
        return np.array([], dtype=int), np.array([])
    if cfg.task.kind == "survival":
        event = pd.to_numeric(work[cfg.task.event], errors="coerce")
        if not (event == 1).any():
            raise DataError(f"the outcome column {cfg.task.event!r} of the current data has no event (value 1); "
                            "performance cannot be assessed", column=cfg.task.event)
    cohort = build_cohort(work, SourceConfig(path=Path("current")), cfg, id_name=keep_id,
                          classes=bundle.metadata.get("classes"))
    return cohort.frame["__position"].to_numpy(dtype=int), cohort.y


# ----- model outputs -------------------------------------------------------------------------------------------------
def _inputs(bundle: Bundle, frame: pd.DataFrame, features: Sequence[FeatureConfig], encoded: bool,
            where: str) -> np.ndarray:
    if encoded:
        return frame[[f.name for f in features]].to_numpy(dtype=float)
    X = type_features(frame, list(features), where=where)
    return bundle.preprocessor.transform(X, out_of_range="missing")


def _outputs(bundle: Bundle, model: str, X: np.ndarray) -> dict[str, np.ndarray]:
    est = bundle.models[model]
    task = bundle.task
    if task.kind == "survival":
        return {"risk": est.predict_risk(X), "surv": est.predict_survival(X, np.asarray(task.horizons, dtype=float))}
    if task.kind == "binary":
        return {"proba": est.predict_proba(X)[:, 1]}
    if task.kind == "multiclass":
        return {"proba": est.predict_proba(X)}
    return {"value": est.predict(X)}


def _shown_output(bundle: Bundle, out: dict[str, np.ndarray]) -> tuple[str, np.ndarray]:
    """The output whose distribution is compared: a risk on the probability scale where there is one."""
    task = bundle.task
    if task.kind == "survival":
        h = max(task.horizons)
        return f"predicted risk at {h:g} {task.time_unit}", 1.0 - out["surv"][:, int(np.argmax(task.horizons))]
    if task.kind == "binary":
        return "predicted probability", out["proba"]
    if task.kind == "multiclass":
        return "largest class probability", out["proba"].max(axis=1)
    return "prediction", out["value"]


# ----- the recipe ----------------------------------------------------------------------------------------------------
def drift_frames(bundle: Bundle, reference_df: pd.DataFrame, current_df: pd.DataFrame, *,
                 time_column: str | None = None, window: str | None = None, outcomes: pd.DataFrame | None = None,
                 model: str | None = None, encoded: bool = False, bins: int = 10, alpha: float = 0.05,
                 psi_threshold: float = PSI_THRESHOLD, n_boot: int = 200, seed: int | None = None,
                 min_known: float | None = None, domain_per_window: bool = True, reference_name: str = "reference",
                 current_name: str = "current", echo: Echo = quiet) -> dict[str, Any]:
    """The drift document of ``current_df`` against ``reference_df`` for ``bundle`` (nothing is written).

    Both frames hold the bundle's features in the user's units, one row per patient, as ``precimed predict`` reads
    them (``encoded=True``: the bundle's encoded columns ``metadata["feature_names_out"]`` instead, e.g. feature
    vectors a service stored; drift is then computed on those columns). ``current_df`` may also hold the time
    column, the id column and the outcome columns (or pass ``outcomes``, a table keyed by the id column). Returns the
    document written as drift.json, plus private keys ``_frames`` (for the page) that :func:`drift_report` drops.
    """
    if bundle.preprocessor is None or bundle.sequence_preprocessor is not None:
        raise ConfigError(f"{bundle.path}: drift checks are for tabular bundles (one row per patient)")
    cfg = bundle.config
    name = bundle.model_named(model)
    seed = cfg.seed if seed is None else int(seed)
    id_name = bundle.metadata["id_column"]
    if encoded:
        features = [FeatureConfig(name=c, kind="numeric") for c in bundle.metadata["feature_names_out"]]
    else:
        features = bundle.features
    columns = [f.name for f in features]
    for label, frame in ((reference_name, reference_df), (current_name, current_df)):
        _check_current(frame, columns, where=label)
    if time_column is not None:
        require_columns(current_df, [time_column], where=f"{current_name} (--time-column)")
    current = current_df.reset_index(drop=True)
    if outcomes is not None:
        current = _attach_outcomes(current, outcomes, id_name, cfg.task.label_columns, where=current_name)
    reference = reference_df.reset_index(drop=True)
    windows, notes = time_windows(current, time_column, window, where=current_name)
    settings = {"bins": bins, "alpha": alpha, "psi_threshold": psi_threshold, "bootstrap": n_boot, "seed": seed,
                "time_column": time_column, "window": window, "encoded": encoded}

    echo(f"feature drift of {len(current)} current rows against {len(reference)} reference rows")
    overall = feature_drift(reference[columns], current[columns], features, bins=bins, alpha=alpha,
                            psi_threshold=psi_threshold)
    echo("domain classifier (out-of-fold AUROC)")
    dc = domain_classifier(reference[columns], current[columns], features, seed=seed, n_boot=n_boot)
    ref_out = _outputs(bundle, name, _inputs(bundle, reference, features, encoded, reference_name))
    cur_out = _outputs(bundle, name, _inputs(bundle, current, features, encoded, current_name))
    shown, ref_pred = _shown_output(bundle, ref_out)
    _, cur_pred = _shown_output(bundle, cur_out)
    pred = prediction_shift(ref_pred, cur_pred, bins=bins) | {"output": shown}

    window_docs = []
    for label, idx in windows:
        part = current.iloc[idx][columns]
        entry: dict[str, Any] = {"label": label, "n": int(len(idx))}
        if len(idx) < MIN_WINDOW_ROWS:
            entry |= {"features": [], "drifting": [], "note": f"fewer than {MIN_WINDOW_ROWS} rows: not tested"}
            window_docs.append(entry)
            continue
        echo(f"window {label}: {len(idx)} rows")
        table = feature_drift(reference[columns], part, features, bins=bins, alpha=alpha, psi_threshold=psi_threshold)
        entry["features"] = table.records()
        entry["drifting"] = table.drifting
        if domain_per_window:
            entry["domain_auroc"] = domain_classifier(reference[columns], part, features, seed=seed,
                                                      n_boot=n_boot)["auroc"]
        entry["prediction"] = {k: v for k, v in prediction_shift(ref_pred, cur_pred[idx], bins=bins).items()
                               if k != "quantiles"}
        window_docs.append(entry)

    performance = _performance(bundle, current, cur_out, windows, id_name, n_boot=n_boot, seed=seed,
                               level=cfg.evaluation.level, min_known=min_known)
    doc = {
        "bundle": bundle.ref, "model": name, "task": cfg.task.kind,
        "reference": {"name": reference_name, "n": int(len(reference))},
        "current": {"name": current_name, "n": int(len(current))},
        "settings": settings,
        "features": overall.records(), "drifting": overall.drifting,
        "domain_classifier": {k: v for k, v in dc.items() if k != "scores"},
        "prediction": pred,
        "windows": window_docs,
        "performance": performance,
        "notes": notes,
        "_frames": {"features": features, "reference": reference, "windows": [(lab, current.iloc[idx])
                                                                                 for lab, idx in windows],
                    "reference_predictions": ref_pred,
                    "window_predictions": [(lab, cur_pred[idx]) for lab, idx in windows]},
    }
    return doc


def _performance(bundle: Bundle, current: pd.DataFrame, out: dict[str, np.ndarray],
                 windows: list[tuple[str, np.ndarray]], id_name: str, *, n_boot: int, seed: int, level: float,
                 min_known: float | None) -> dict[str, Any]:
    task = bundle.task
    try:
        labelled = _labels(bundle, current, id_name)
    except DataError as exc:
        if task.kind == "survival" and "has no event" in str(exc):
            return {"available": False, "note": str(exc)}
        raise
    if labelled is None:
        return {"available": False, "note": f"the current data has no outcome column(s) {task.label_columns}: "
                                            "performance over time is not assessed (pass --outcomes when they arrive)"}
    if task.kind not in ("survival", "binary"):
        return {"available": False, "note": f"performance over time is implemented for survival and binary tasks, "
                                            f"not {task.kind}"}
    positions, y = labelled
    doc: dict[str, Any] = {"available": True, "task": task.kind, "windows": [], "notes": []}
    if task.kind == "survival":
        doc |= {"horizons": list(task.horizons), "time_unit": task.time_unit,
                "min_known": 0.8 if min_known is None else min_known}
        doc["notes"].append("a window is scored at a horizon when at least "
                            f"{100 * doc['min_known']:.0f}% of its patients had the event by then or were followed "
                            "that long; Harrell's and Uno's C and the Cox calibration slope use all follow-up "
                            "(censoring-aware)")
    else:
        doc["min_known"] = 0.9 if min_known is None else min_known
    where = {int(p): j for j, p in enumerate(positions)}
    for label, idx in windows:
        rows = np.array([where[int(i)] for i in idx if int(i) in where], dtype=int)
        if task.kind == "survival":
            if rows.size == 0:
                entry = {"label": label, "n": int(len(idx)), "events": 0, "horizons": {},
                         "note": "no outcome has arrived for this window"}
            else:
                src = positions[rows]
                entry = {"label": label} | survival_window_metrics(
                    y[rows, 0], y[rows, 1], out["risk"][src], horizons=task.horizons,
                    surv_at_horizons=out["surv"][src], n_boot=n_boot, seed=seed, level=level,
                    min_known=doc["min_known"])
                entry["n_window"] = int(len(idx))
                if len(idx) > rows.size:
                    entry["without_outcome"] = int(len(idx) - rows.size)
        else:
            yy = np.full(len(idx), np.nan)
            known_pos = [k for k, i in enumerate(idx) if int(i) in where]
            yy[known_pos] = y[[where[int(idx[k])] for k in known_pos]]
            entry = {"label": label} | binary_window_metrics(yy, out["proba"][idx], known=np.isfinite(yy),
                                                             n_boot=n_boot, seed=seed, level=level,
                                                             min_known=doc["min_known"])
        doc["windows"].append(entry)
    return doc


def drift_report(bundle_dir: Path | str, reference: str, current: Path | str, out_dir: Path | str, *,
                 time_column: str | None = None, window: str | None = None, outcomes: Path | str | None = None,
                 model: str | None = None, bins: int = 10, alpha: float = 0.05, n_boot: int = 200,
                 encoded: bool = False, overwrite: bool = False, echo: Echo = quiet) -> dict[str, Any]:
    """``precimed drift``: read the bundle, the reference and the current file, write drift.json and drift.html
    into ``out_dir`` (created in one rename; refused if it exists unless ``overwrite``)."""
    out_dir = check_out_dir(out_dir, overwrite)
    check_outputs_apart({"--out": out_dir}, {"BUNDLE": bundle_dir, "--current": current, "--outcomes": outcomes,
                                             "--reference": reference if reference != "train" else None})
    spec = parse_window(window)
    if spec is not None and spec[0] != "rows" and time_column is None:
        raise ConfigError(f"--window {window}: a time span needs --time-column (or give a number of rows)")
    if reference != "train" and not Path(reference).is_file():
        raise ConfigError(f"--reference {reference!r}: neither 'train' (the bundle's own training rows) nor an "
                          "existing table file")
    bundle = load_bundle(bundle_dir)
    current = Path(current)
    cur_frame = read_table(current)
    columns = bundle.metadata["feature_names_out"] if encoded else [f.name for f in bundle.features]
    _check_current(cur_frame, columns, where=current.name)  # before any work: a wrong file fails at once
    if time_column is not None:
        require_columns(cur_frame, [time_column], where=f"{current.name} (--time-column)")
    outcome_frame = read_table(outcomes) if outcomes is not None else None
    ref_frame, ref_name = reference_frame(bundle, reference, encoded=encoded, echo=echo)
    doc = drift_frames(bundle, ref_frame, cur_frame, time_column=time_column, window=window, outcomes=outcome_frame,
                       model=model, bins=bins, alpha=alpha, n_boot=n_boot, encoded=encoded, reference_name=ref_name,
                       current_name=current.name, echo=echo)
    return write_drift(doc, out_dir, overwrite=overwrite, title=f"Drift: {current.name} vs {ref_name}",
                       subtitle=f"{doc['task']} model {doc['model']} of {bundle.ref}", echo=echo)


def write_drift(doc: dict, out_dir: Path, *, overwrite: bool, title: str, subtitle: str, echo: Echo = quiet) -> dict:
    """Write a ``drift_frames`` document as drift.json and drift.html (atomically, the folder at once); the
    document's private ``_frames`` (what the plots draw) is taken out first. Returns the document."""
    frames = doc.pop("_frames")
    echo("writing drift.json and drift.html")
    sections = drift_sections(doc, features=frames["features"], reference=frames["reference"],
                              windows=frames["windows"], reference_predictions=frames["reference_predictions"],
                              window_predictions=frames["window_predictions"])
    with atomic_dir(out_dir, overwrite=overwrite) as tmp:
        write_json(tmp / "drift.json", doc)
        write_page(tmp / "drift.html", title, subtitle, sections)
    return doc


def _ci_text(m: dict | None) -> str:
    if not m or m.get("value") is None or m["value"] != m["value"]:
        return "–"
    lo, hi = m.get("ci_low"), m.get("ci_high")
    ci = f" ({lo:.3f}–{hi:.3f})" if lo is not None and hi is not None and lo == lo and hi == hi else ""
    return f"{m['value']:.3f}{ci}"


def summary_lines(doc: dict[str, Any]) -> list[str]:
    """A few lines for the terminal: the verdict overall and per window, and performance where scored."""
    lines = [f"{doc['current']['name']} (n={doc['current']['n']}) vs {doc['reference']['name']} "
             f"(n={doc['reference']['n']}): drifting features: {', '.join(doc['drifting']) or 'none'}; "
             f"domain classifier AUROC {_ci_text(doc['domain_classifier']['auroc'])}; "
             f"prediction PSI {doc['prediction']['psi']:.3f}"]
    for w in doc["windows"]:
        if len(doc["windows"]) > 1 or w["label"] != "all rows":
            lines.append(f"  window {w['label']} (n={w['n']}): drifting {', '.join(w['drifting']) or 'none'}"
                         + (f"; domain AUROC {_ci_text(w.get('domain_auroc'))}" if w.get("domain_auroc") else ""))
    perf = doc.get("performance") or {}
    if not perf.get("available"):
        lines.append(f"performance: {perf.get('note', 'not assessed')}")
        return lines
    for w in perf["windows"]:
        if perf["task"] == "survival":
            immature = [k for k, v in w.get("horizons", {}).items() if not v.get("mature")]
            lines.append(f"  performance {w['label']}: n={w['n']}, events={w.get('events', 0)}, Harrell's C "
                         f"{_ci_text(w.get('c_harrell'))}, Uno's C {_ci_text(w.get('c_uno'))}, calibration slope "
                         f"{_ci_text(w.get('calibration_slope'))}"
                         + (f"; immature at horizon(s) {', '.join(immature)}" if immature else ""))
        else:
            lines.append(f"  performance {w['label']}: " + (f"skipped: {w['skipped']}" if "skipped" in w else
                         f"AUROC {_ci_text(w.get('auroc'))}, calibration slope {_ci_text(w.get('calibration_slope'))}"))
    return lines
