"""The drift and walk-forward pages: self-contained HTML with embedded plots, from documents and plain frames.

``render_page`` renders ``templates/drift.html.j2`` (jinja2, autoescape on) with the evaluation report's own
stylesheet (read from ``templates/report.html.j2``, so both pages look alike) and the same Content-Security-Policy:
every image is a PNG ``data:`` URI, the page fetches nothing.

``drift_sections`` builds the sections of ``precimed drift`` (the verdict table, one figure per drifting feature over
the time windows, the PSI heatmap, the domain classifier's AUROC, the prediction distribution, performance and
calibration over windows where outcomes exist); ``walk_forward_sections`` those of ``precimed walk-forward`` (C-index
and calibration slope per block with CIs, observed vs predicted risk, drifting features per block). The numbers come
from the documents the recipes write (drift.json, walkforward.json); nothing here computes a statistic, apart from
re-binning values for a figure.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import pandas as pd
from markupsafe import Markup
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from precimed.atomic import atomic_write_bytes
from precimed.config import FeatureConfig

from .drift import MISSING, category_labels
from .plots import PALETTE, REFERENCE, figure_uri, model_colors

__all__ = ["drift_sections", "render_page", "walk_forward_sections", "write_page"]

DPI = 100
FLAG = "#D55E00"
CALM = "#0072B2"
MAX_FEATURE_PLOTS = 24


# ----- page --------------------------------------------------------------------------------------------------------
def _shared_style() -> str:
    """The evaluation report's stylesheet, so the drift pages share its look (one stylesheet to maintain)."""
    text = (resources.files("precimed.evaluate") / "templates" / "report.html.j2").read_text(encoding="utf-8")
    found = re.search(r"<style>(.*?)</style>", text, flags=re.S)
    return found.group(1) if found else ""


def render_page(title: str, subtitle: str, sections: Sequence[Mapping[str, Any]]) -> str:
    """The HTML page: a header, a section index and the sections (title, lead, error, images, tables, notes)."""
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    template = env.from_string((resources.files("precimed.evaluate") / "templates" / "drift.html.j2")
                               .read_text(encoding="utf-8"))
    return template.render(title=title, subtitle=subtitle, sections=list(sections), style=Markup(_shared_style()),
                           generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"))


def write_page(path: Path | str, title: str, subtitle: str, sections: Sequence[Mapping[str, Any]]) -> Path:
    """Render the page and write it atomically."""
    path = Path(path)
    atomic_write_bytes(path, render_page(title, subtitle, sections).encode("utf-8"))
    return path


def _section(sid: str, title: str, lead: str = "") -> dict[str, Any]:
    return {"id": sid, "title": title, "lead": lead, "images": [], "tables": [], "notes": [], "error": None}


def _table(head: Sequence[str], rows: Sequence[Sequence[Any]], caption: str = "",
           flagged: Sequence[bool] | None = None) -> dict[str, Any]:
    cells = [[str(c) for c in r] for r in rows]
    numeric = [j > 0 and bool(cells) and all(re.match(r"^[-–−+]?[\d.]", r[j]) or r[j] in ("–", "")
                                             for r in cells if j < len(r)) for j in range(len(head))]
    return {"caption": caption, "head": list(head), "rows": cells, "numeric": numeric,
            "flagged": list(flagged or [False] * len(cells))}


def _f(x: Any, digits: int = 3) -> str:
    if x is None or isinstance(x, bool) or not isinstance(x, int | float | np.floating | np.integer):
        return "–"
    return f"{float(x):.{digits}f}" if math.isfinite(float(x)) else "–"


def _p(x: Any) -> str:
    if x is None or not isinstance(x, int | float | np.floating) or not math.isfinite(float(x)):
        return "–"
    return "<0.001" if float(x) < 0.001 else f"{float(x):.3f}"


def _ci(m: Mapping[str, Any] | None, digits: int = 3) -> str:
    if not m or m.get("value") is None or not math.isfinite(float(m["value"])):
        return "–"
    lo, hi = m.get("ci_low"), m.get("ci_high")
    if lo is None or hi is None or not (math.isfinite(float(lo)) and math.isfinite(float(hi))):
        return _f(m["value"], digits)
    return f"{float(m['value']):.{digits}f} ({float(lo):.{digits}f}–{float(hi):.{digits}f})"


def _pct(x: Any) -> str:
    return "–" if x is None or not math.isfinite(float(x)) else f"{100 * float(x):.1f}%"


# ----- figures -----------------------------------------------------------------------------------------------------
def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _value(m: Mapping[str, Any] | None, key: str = "value") -> float:
    if not m or m.get(key) is None:
        return float("nan")
    return float(m[key])


def feature_over_time_png(feature: FeatureConfig, reference: pd.Series, windows: Sequence[tuple[str, pd.Series]],
                          psi: Sequence[float], flagged: Sequence[bool], *, psi_threshold: float = 0.1,
                          reference_label: str = "reference") -> str:
    """One feature over time: its distribution in the reference and each window (box plots for numeric features,
    stacked category shares for the others, missing values as their own share) and its PSI per window."""
    labels = [reference_label, *(w for w, _ in windows)]
    fig = _figure(min(4.0 + 0.55 * len(labels), 11.0) + 3.6, 3.4)
    left, right = fig.subplots(1, 2, width_ratios=[max(len(labels), 3), 3])
    x = np.arange(len(labels))
    if feature.kind == "numeric":
        data = []
        for s in [reference, *(v for _, v in windows)]:
            values = pd.to_numeric(pd.Series(s), errors="coerce").to_numpy(dtype=float)
            data.append(values[np.isfinite(values)] if np.isfinite(values).any() else np.array([np.nan]))
        box = left.boxplot(data, positions=x, widths=0.6, showfliers=False, patch_artist=True)
        for patch, on in zip(box["boxes"], [False, *flagged], strict=True):
            patch.set_facecolor(FLAG if on else "#cfe3f1")
            patch.set_alpha(0.55)
        if feature.log:
            positive = [d[d > 0] for d in data if np.any(d > 0)]
            if positive and all(np.all(d >= 0) for d in data):
                left.set_yscale("symlog", linthresh=max(1.0, float(np.nanmin(np.concatenate(positive)))))
        left.set_ylabel(f"{feature.name}" + (f" ({feature.unit})" if feature.unit else ""))
        missing = [float(pd.Series(s).isna().mean()) for s in [reference, *(v for _, v in windows)]]
        if any(missing):  # box plots show observed values only: say how many are missing under each box
            labels = [f"{lab}\n{100 * m:.0f}% missing" for lab, m in zip(labels, missing, strict=True)]
    else:
        shares = []
        for s in [reference, *(v for _, v in windows)]:
            lab = category_labels(pd.Series(s)).fillna(MISSING)
            shares.append(lab.value_counts(normalize=True))
        cats = list(dict.fromkeys([str(c) for c in (feature.categories or [])] +
                                  sorted({c for sh in shares for c in sh.index if c != MISSING}, key=str)))
        if any(MISSING in sh.index for sh in shares):
            cats.append(MISSING)
        bottom = np.zeros(len(labels))
        for j, cat in enumerate(cats):
            vals = np.array([float(sh.get(cat, 0.0)) for sh in shares])
            left.bar(x, vals, bottom=bottom, width=0.65, color="#bbbbbb" if cat == MISSING else PALETTE[j % 8],
                     label=cat, edgecolor="white", lw=0.5)
            bottom += vals
        left.set_ylim(0, 1)
        left.set_ylabel("share of rows")
        left.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    left.set_xticks(x, labels, rotation=35, ha="right", fontsize=8)
    left.set_title(f"{feature.name}: distribution per window")
    left.grid(alpha=0.3, axis="y")
    wx = np.arange(len(windows))
    values = np.asarray(psi, dtype=float)
    right.plot(wx, values, color=CALM, lw=1.2)
    on = np.asarray(flagged, dtype=bool)
    right.scatter(wx[~on], values[~on], color=CALM, s=22, zorder=3, label="not flagged")
    right.scatter(wx[on], values[on], color=FLAG, s=30, zorder=3, label="drifting")
    right.axhline(psi_threshold, ls="--", color=REFERENCE, lw=1)
    right.set_xticks(wx, [w for w, _ in windows], rotation=35, ha="right", fontsize=8)
    right.set_ylabel("PSI vs reference")
    right.set_title("population stability index")
    top = float(np.nanmax(values, initial=0.0)) if np.isfinite(values).any() else 0.0
    right.set_ylim(0, max(1.5 * psi_threshold, 1.12 * top))
    right.grid(alpha=0.3)
    right.legend(fontsize=7, loc="upper left")
    return figure_uri(fig)


def psi_heatmap_png(features: Sequence[str], windows: Sequence[str], psi: np.ndarray, flagged: np.ndarray) -> str:
    """Features x windows: PSI as colour, drifting cells outlined."""
    psi = np.asarray(psi, dtype=float)
    fig = _figure(2.6 + 0.75 * len(windows), 1.2 + 0.32 * len(features))
    ax = fig.add_subplot()
    im = ax.imshow(np.nan_to_num(psi), cmap="Oranges", vmin=0.0, vmax=max(0.25, float(np.nanmax(psi, initial=0))),
                   aspect="auto")
    for i in range(len(features)):
        for j in range(len(windows)):
            text = "–" if not np.isfinite(psi[i, j]) else f"{psi[i, j]:.2f}"
            ax.text(j, i, text, ha="center", va="center", fontsize=7,
                    fontweight="bold" if flagged[i, j] else "normal")
            if flagged[i, j]:
                ax.add_patch(_rect(j, i))
    ax.set_xticks(np.arange(len(windows)), windows, rotation=35, ha="right", fontsize=8)
    ax.set_yticks(np.arange(len(features)), features, fontsize=8)
    ax.set_title("PSI per feature and window (bold, boxed: drifting)")
    fig.colorbar(im, ax=ax, shrink=0.8, label="PSI")
    return figure_uri(fig)


def _rect(j: int, i: int) -> Any:
    from matplotlib.patches import Rectangle

    return Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="black", lw=1.2)


def metric_over_time_png(windows: Sequence[str], series: Mapping[str, Sequence[Mapping[str, Any] | None]], *,
                         ylabel: str, title: str, ideal: float | None = None,
                         muted: Sequence[bool] | None = None) -> str:
    """One line per model (or statistic) across windows, with CI whiskers; ``muted`` windows drawn hollow."""
    fig = _figure(max(5.0, 1.6 + 0.8 * len(windows)), 3.6)
    ax = fig.add_subplot()
    colors = model_colors(list(series))
    x = np.arange(len(windows))
    k = max(len(series), 1)
    for i, (name, values) in enumerate(series.items()):
        offset = (i - (k - 1) / 2) * 0.08
        v = np.array([_value(m) for m in values])
        lo = np.array([_value(m, "ci_low") for m in values])
        hi = np.array([_value(m, "ci_high") for m in values])
        err = np.vstack([np.clip(np.nan_to_num(v - lo), 0, None), np.clip(np.nan_to_num(hi - v), 0, None)])
        ax.errorbar(x + offset, v, yerr=err, fmt="-", color=colors[name], lw=1.2, capsize=3, label=name)
        hollow = np.asarray(muted, dtype=bool) if muted is not None else np.zeros(len(x), dtype=bool)
        ax.scatter((x + offset)[~hollow], v[~hollow], color=colors[name], s=24, zorder=3)
        ax.scatter((x + offset)[hollow], v[hollow], facecolors="white", edgecolors=colors[name], s=24, zorder=3)
    if ideal is not None:
        ax.axhline(ideal, ls="--", color=REFERENCE, lw=1)
    ax.set_xticks(x, windows, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return figure_uri(fig)


def observed_predicted_png(windows: Sequence[str], entries: Mapping[str, Sequence[Mapping[str, Any] | None]], *,
                           title: str) -> str:
    """Observed (Kaplan-Meier, with CI) and mean predicted risk per window, one predicted line per model."""
    fig = _figure(max(5.0, 1.6 + 0.8 * len(windows)), 3.6)
    ax = fig.add_subplot()
    x = np.arange(len(windows))
    first = next(iter(entries.values()))
    obs = np.array([_value(e, "observed") for e in first])
    lo = np.array([_value(e, "observed_ci_low") for e in first])
    hi = np.array([_value(e, "observed_ci_high") for e in first])
    ax.errorbar(x, obs, yerr=np.vstack([np.clip(np.nan_to_num(obs - lo), 0, None),
                                        np.clip(np.nan_to_num(hi - obs), 0, None)]),
                fmt="s", color="black", capsize=3, label="observed (Kaplan-Meier, 95% CI)")
    colors = model_colors(list(entries))
    for name, values in entries.items():
        ax.plot(x, [_value(e, "predicted") for e in values], "o--", color=colors[name], lw=1, ms=4,
                label=f"{name}: mean predicted")
    ax.set_xticks(x, windows, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("risk")
    ax.set_ylim(bottom=0)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return figure_uri(fig)


def prediction_png(reference: np.ndarray, windows: Sequence[tuple[str, np.ndarray]], *, label: str,
                   reference_label: str = "reference") -> str:
    """The model's outputs: reference vs all current rows (histograms) and per window (box plots)."""
    fig = _figure(10.5, 3.4)
    left, right = fig.subplots(1, 2)
    current = np.concatenate([np.asarray(v, dtype=float) for _, v in windows]) if windows else np.array([])
    edges = np.histogram_bin_edges(np.concatenate([reference, current]), bins=30)
    left.hist(reference, bins=edges, density=True, alpha=0.5, color=CALM, label=reference_label)
    if current.size:
        left.hist(current, bins=edges, density=True, alpha=0.5, color=FLAG, label="current")
    left.set_xlabel(label)
    left.set_ylabel("density")
    left.set_title("prediction distribution")
    left.legend(fontsize=8)
    left.grid(alpha=0.3)
    data = [np.asarray(reference, dtype=float), *(np.asarray(v, dtype=float) for _, v in windows)]
    right.boxplot(data, positions=np.arange(len(data)), widths=0.6, showfliers=False)
    right.set_xticks(np.arange(len(data)), [reference_label, *(w for w, _ in windows)], rotation=35, ha="right",
                     fontsize=8)
    right.set_ylabel(label)
    right.set_title("per window")
    right.grid(alpha=0.3, axis="y")
    return figure_uri(fig)


# ----- the drift page ----------------------------------------------------------------------------------------------
def _feature_rows(records: Sequence[Mapping[str, Any]]) -> tuple[list[list[str]], list[bool]]:
    rows, flags = [], []
    for r in records:
        rows.append([r["feature"], r["kind"], _f(r["psi"]), r["test"], _f(r["statistic"]), _p(r["p_value"]),
                     _p(r["q_value"]), f"{_pct(r['missing_reference'])} → {_pct(r['missing_current'])}",
                     _p(r.get("missing_q")),
                     f"{_pct(r['out_of_range_reference'])} → {_pct(r['out_of_range_current'])}",
                     "yes: " + r["reason"] if r["drifting"] else "no"])
        flags.append(bool(r["drifting"]))
    return rows, flags


FEATURE_HEAD = ["feature", "kind", "PSI", "test", "statistic", "p", "q (BH)", "missing ref → cur", "missing q",
                "out of range ref → cur", "drifting"]


def drift_sections(doc: Mapping[str, Any], *, features: Sequence[FeatureConfig], reference: pd.DataFrame,
                   windows: Sequence[tuple[str, pd.DataFrame]], reference_predictions: np.ndarray,
                   window_predictions: Sequence[tuple[str, np.ndarray]]) -> list[dict[str, Any]]:
    """The sections of the drift page from ``drift.json``'s document and the frames it was computed on."""
    settings = doc["settings"]
    ref_name = doc["reference"]["name"]
    out = []

    s = _section("summary", "Summary")
    rows = [["bundle", doc.get("bundle", "–")], ["model", doc.get("model", "–")], ["task", doc.get("task", "–")],
            ["reference", f"{ref_name} (n = {doc['reference']['n']})"],
            ["current", f"{doc['current']['name']} (n = {doc['current']['n']})"],
            ["windows", f"{len(doc['windows'])} ({settings.get('window') or 'one window'}"
                        + (f" over {settings['time_column']})" if settings.get("time_column") else ")")],
            ["drifting features (all current rows)", ", ".join(doc["drifting"]) or "none"],
            ["domain classifier AUROC", _ci(doc["domain_classifier"]["auroc"])],
            ["prediction PSI", _f(doc["prediction"]["psi"])],
            ["rule", f"drifting = BH-adjusted test q < {settings['alpha']:g} and PSI ≥ {settings['psi_threshold']:g}"]]
    s["tables"].append(_table(["", ""], rows))
    s["notes"] += list(doc.get("notes", []))
    out.append(s)

    s = _section("features", "Feature drift: all current rows vs the reference",
                 "PSI over the reference's quantile bins (categories for non-numeric features; missing values their "
                 "own bin); Kolmogorov-Smirnov (numeric) or chi-squared (categorical) test on observed values and a "
                 "chi-squared test of the missingness rate, Benjamini-Hochberg adjusted together.")
    rows, flags = _feature_rows(doc["features"])
    s["tables"].append(_table(FEATURE_HEAD, rows, flagged=flags))
    out.append(s)

    labels = [w["label"] for w in doc["windows"]]
    names = [f.name for f in features]
    psi = np.array([[next((r["psi"] for r in w["features"] if r["feature"] == n), np.nan) for w in doc["windows"]]
                    for n in names], dtype=float)
    flagged = np.array([[next((bool(r["drifting"]) for r in w["features"] if r["feature"] == n), False)
                         for w in doc["windows"]] for n in names], dtype=bool)
    s = _section("over-time", "Drift over time",
                 "One figure per feature that drifts overall or in any window: its distribution in the reference and "
                 "each window, and its PSI per window (dashed: the PSI threshold; orange: flagged in that window).")
    if labels:
        s["images"].append({"src": psi_heatmap_png(names, labels, psi, flagged), "alt": "PSI heatmap"})
    shown = [f for f in features if f.name in doc["drifting"] or flagged[names.index(f.name)].any()]
    for f in shown[:MAX_FEATURE_PLOTS]:
        i = names.index(f.name)
        s["images"].append({"src": feature_over_time_png(
            f, reference[f.name], [(w, frame[f.name]) for w, frame in windows], psi[i], flagged[i],
            psi_threshold=settings["psi_threshold"], reference_label=ref_name), "alt": f"{f.name} over time"})
    if len(shown) > MAX_FEATURE_PLOTS:
        s["notes"].append(f"{len(shown) - MAX_FEATURE_PLOTS} more drifting features are in drift.json.")
    if not shown:
        s["notes"].append("No feature drifts, overall or in any window.")
    window_rows = [[w["label"], w["n"], ", ".join(w["drifting"]) or "none", _ci(w.get("domain_auroc")),
                    _f((w.get("prediction") or {}).get("psi"))] for w in doc["windows"]]
    s["tables"].append(_table(["window", "n", "drifting features", "domain AUROC (95% CI)", "prediction PSI"],
                              window_rows))
    out.append(s)

    s = _section("domain", "Domain classifier",
                 "Can a model tell current rows from reference rows? Gradient boosting on all features, AUROC from "
                 "out-of-fold predictions (cross_val_predict) with a stratified bootstrap CI. 0.5: indistinguishable.")
    dc = doc["domain_classifier"]
    s["tables"].append(_table(["", "AUROC (95% CI)", "reference rows", "current rows", "folds"],
                              [["all current rows", _ci(dc["auroc"]), dc["n_reference"], dc["n_current"],
                                dc["folds"]]]))
    if labels:
        s["images"].append({"src": metric_over_time_png(labels, {"domain classifier": [w.get("domain_auroc")
                                                                                      for w in doc["windows"]]},
                                                        ylabel="AUROC", title="domain classifier AUROC per window",
                                                        ideal=0.5), "alt": "domain classifier AUROC"})
    out.append(s)

    s = _section("predictions", "Prediction distribution",
                 f"{doc['prediction']['output']} of {doc.get('model', 'the model')}: reference vs current.")
    pr = doc["prediction"]
    s["tables"].append(_table(["PSI", "KS statistic", "KS p", "mean reference", "mean current"],
                              [[_f(pr["psi"]), _f(pr["ks_statistic"]), _p(pr["p_value"]), _f(pr["mean_reference"]),
                                _f(pr["mean_current"])]]))
    s["images"].append({"src": prediction_png(np.asarray(reference_predictions, dtype=float), window_predictions,
                                              label=doc["prediction"]["output"], reference_label=ref_name),
                        "alt": "prediction distribution"})
    out.append(s)

    out.append(_performance_section(doc))
    return out


def _performance_section(doc: Mapping[str, Any]) -> dict[str, Any]:
    perf = doc.get("performance") or {}
    s = _section("performance", "Performance and calibration over time",
                 "Scored only where outcomes have arrived and are mature: a survival window at a horizon when enough "
                 "of its patients had the event or were followed that long (else skipped, with the reason); C-index "
                 "(Harrell; Uno with inverse-probability-of-censoring weights) and the Cox calibration slope use each "
                 "patient's follow-up as far as it goes.")
    if not perf.get("available"):
        s["notes"].append(perf.get("note", "No outcome columns in the current data: performance is not assessed."))
        return s
    windows = perf["windows"]
    labels = [w["label"] for w in windows]
    if perf["task"] == "survival":
        s["images"].append({"src": metric_over_time_png(
            labels, {"Harrell's C": [w.get("c_harrell") for w in windows],
                     "Uno's C": [w.get("c_uno") for w in windows]},
            ylabel="C-index", title="discrimination per window", ideal=0.5), "alt": "C-index per window"})
        s["images"].append({"src": metric_over_time_png(
            labels, {"calibration slope": [w.get("calibration_slope") for w in windows]}, ylabel="slope",
            title="Cox calibration slope per window", ideal=1.0), "alt": "calibration slope per window"})
        for h in perf["horizons"]:
            key = f"{h:g}"
            entries = [w["horizons"].get(key) if w["horizons"].get(key, {}).get("mature") else None for w in windows]
            if any(e is not None for e in entries):
                s["images"].append({"src": observed_predicted_png(
                    labels, {doc.get("model", "model"): entries},
                    title=f"observed vs predicted risk at {key} {perf.get('time_unit', '')}"),
                    "alt": f"observed vs predicted at {key}"})
        rows = []
        for w in windows:
            hz = "; ".join(f"{k}: " + (f"obs {_f(v.get('observed'))} / pred {_f(v.get('predicted'))}"
                                       if v.get("mature") else "immature")
                           for k, v in w["horizons"].items())
            rows.append([w["label"], w["n"], w["events"], _ci(w.get("c_harrell")), _ci(w.get("c_uno")),
                         _ci(w.get("calibration_slope")), hz])
        s["tables"].append(_table(["window", "n", "events", "Harrell's C", "Uno's C", "calibration slope",
                                   "risk at horizon (observed KM / mean predicted)"], rows))
        for w in windows:
            if w.get("note"):
                s["notes"].append(f"{w['label']}: {w['note']}")
            for k, v in w["horizons"].items():
                if not v.get("mature"):
                    s["notes"].append(f"{w['label']}, horizon {k}: skipped as immature: {v.get('skipped')}")
    else:
        scored = [w for w in windows if "auroc" in w]
        if scored:
            labels = [w["label"] for w in windows]
            s["images"].append({"src": metric_over_time_png(
                labels, {"AUROC": [w.get("auroc") for w in windows]}, ylabel="AUROC", title="AUROC per window",
                ideal=0.5), "alt": "AUROC per window"})
            s["images"].append({"src": metric_over_time_png(
                labels, {"calibration slope": [w.get("calibration_slope") for w in windows]}, ylabel="slope",
                title="calibration slope per window", ideal=1.0), "alt": "calibration slope per window"})
        rows = [[w["label"], w["n"], w["known"], _ci(w.get("auroc")), _ci(w.get("calibration_slope")),
                 _ci(w.get("calibration_intercept")), _f(w.get("observed")), _f(w.get("predicted")),
                 w.get("skipped", "")] for w in windows]
        s["tables"].append(_table(["window", "n", "outcome known", "AUROC", "calibration slope", "intercept",
                                   "observed", "mean predicted", "skipped"], rows))
    s["notes"] += list(perf.get("notes", []))
    return s


# ----- the walk-forward page ---------------------------------------------------------------------------------------
def walk_forward_sections(doc: Mapping[str, Any], *, features: Sequence[FeatureConfig], reference: pd.DataFrame,
                          blocks: Sequence[tuple[str, pd.DataFrame]]) -> list[dict[str, Any]]:
    """The sections of the walk-forward page from ``walkforward.json``'s document and the frames it scored."""
    out = []
    labels = [b["label"] for b in doc["blocks"]]
    models = doc["models"]
    task = doc["task"]
    s = _section("summary", "Summary", doc.get("lead", ""))
    rows = [["config", doc["config"]], ["time column", doc["time_column"]],
            ["training", f"{doc['training']['label']}: n = {doc['training']['n']}"
                         + (f", {doc['training']['events']} events" if "events" in doc["training"] else "")],
            ["blocks", ", ".join(f"{b['label']} (n = {b['n']})" for b in doc["blocks"])],
            ["models", ", ".join(models) + f" (primary: {doc['primary_model']})"],
            ["confidence intervals", f"{int(100 * doc['level'])}% percentile bootstrap, {doc['bootstrap']} replicates "
                                     "per block; calibration slope: Wald CI of the Cox coefficient"]]
    s["tables"].append(_table(["", ""], rows))
    s["notes"] += list(doc.get("notes", []))
    out.append(s)

    s = _section("table", "Per block", "Each later block scored as a deployment would meet it, by the models "
                 "trained on the training years only.")
    head, rows = walk_forward_table(doc)
    s["tables"].append(_table(head, rows))
    out.append(s)

    s = _section("discrimination", "Discrimination over time")
    keys = ("c_harrell", "c_uno") if task == "survival" else ("auroc",)
    for key in keys:
        series = {m: [b["models"][m].get(key) for b in doc["blocks"]] for m in models}
        name = {"c_harrell": "Harrell's C", "c_uno": "Uno's C (IPCW)", "auroc": "AUROC"}[key]
        s["images"].append({"src": metric_over_time_png(labels, series, ylabel=name, title=f"{name} per block",
                                                        ideal=0.5), "alt": f"{name} per block"})
    out.append(s)

    s = _section("calibration", "Calibration over time",
                 "Calibration slope: " + (
                     "the coefficient of the model's linear predictor in a Cox model fitted on the block (1 ideal; "
                     "below 1: predictions too extreme)." if task == "survival" else
                     "logistic regression of the outcome on logit(p) in the block (1 ideal)."))
    series = {m: [b["models"][m].get("calibration_slope") for b in doc["blocks"]] for m in models}
    s["images"].append({"src": metric_over_time_png(labels, series, ylabel="calibration slope",
                                                    title="calibration slope per block", ideal=1.0),
                        "alt": "calibration slope per block"})
    if task == "survival":
        for h in doc["horizons"]:
            key = f"{h:g}"
            entries = {m: [b["models"][m]["horizons"].get(key) if b["models"][m]["horizons"].get(key, {}).get("mature")
                           else None for b in doc["blocks"]] for m in models}
            if any(e is not None for v in entries.values() for e in v):
                s["images"].append({"src": observed_predicted_png(
                    labels, entries, title=f"observed vs predicted risk at {key} {doc.get('time_unit', '')}"),
                    "alt": f"observed vs predicted at {key}"})
        for b in doc["blocks"]:
            for k, v in b["models"][doc["primary_model"]]["horizons"].items():
                if not v.get("mature"):
                    s["notes"].append(f"{b['label']}, horizon {k}: skipped as immature: {v.get('skipped')}")
    out.append(s)

    names = [f.name for f in features]
    psi = np.array([[next(r["psi"] for r in b["drift"]["features"] if r["feature"] == n) for b in doc["blocks"]]
                    for n in names], dtype=float)
    flagged = np.array([[next(bool(r["drifting"]) for r in b["drift"]["features"] if r["feature"] == n)
                         for b in doc["blocks"]] for n in names], dtype=bool)
    s = _section("drift", "Feature drift vs the training years",
                 "PSI and a BH-adjusted two-sample test per feature and block (drifting: q < alpha and PSI ≥ "
                 "threshold); the domain classifier's out-of-fold AUROC says how well the block can be told from the "
                 "training rows.")
    s["images"].append({"src": psi_heatmap_png(names, labels, psi, flagged), "alt": "PSI heatmap"})
    rows = [[b["label"], b["n"], ", ".join(f"{r['feature']} (PSI {r['psi']:.2f})" for r in
                                           sorted((r for r in b["drift"]["features"] if r["drifting"]),
                                                  key=lambda r: -r["psi"])) or "none",
             _ci(b["drift"]["domain_auroc"]), _f(b["drift"]["prediction"]["psi"])] for b in doc["blocks"]]
    s["tables"].append(_table(["block", "n", "drifting features", "domain AUROC (95% CI)", "prediction PSI"], rows))
    s["images"].append({"src": metric_over_time_png(labels, {"domain classifier": [b["drift"]["domain_auroc"]
                                                                                  for b in doc["blocks"]]},
                                                    ylabel="AUROC", title="domain classifier AUROC per block",
                                                    ideal=0.5), "alt": "domain classifier per block"})
    for i, f in enumerate(features):
        if flagged[i].any():
            s["images"].append({"src": feature_over_time_png(
                f, reference[f.name], [(lab, frame[f.name]) for lab, frame in blocks], psi[i], flagged[i],
                psi_threshold=doc["psi_threshold"], reference_label="training"), "alt": f"{f.name} over time"})
    for b in doc["blocks"]:
        rows, flags = _feature_rows(b["drift"]["features"])
        s["tables"].append(_table(FEATURE_HEAD, rows, caption=f"{b['label']} vs training (n = {b['n']})",
                                  flagged=flags))
    out.append(s)
    return out


def walk_forward_table(doc: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The per-block table (also printed by the CLI): n, events, the primary model's discrimination with CIs and
    calibration slope, every model's C-index, and the drifting features."""
    primary = doc["primary_model"]
    survival = doc["task"] == "survival"
    others = [m for m in doc["models"] if m != primary]
    head = ["block", "n", "events"]
    if survival:
        head += [f"{primary} Harrell's C", f"{primary} Uno's C", f"{primary} cal. slope"]
        head += [f"{m} Harrell's C" for m in others]
        head += [f"obs/pred {h:g}" for h in doc["horizons"]]
    else:
        head += [f"{primary} AUROC", f"{primary} cal. slope"] + [f"{m} AUROC" for m in others]
    head.append("drifting features")
    rows = []
    for b in doc["blocks"]:
        m = b["models"][primary]
        row = [b["label"], str(b["n"]), str(b.get("events", "–"))]
        if survival:
            row += [_ci(m.get("c_harrell")), _ci(m.get("c_uno")), _ci(m.get("calibration_slope"))]
            row += [_ci(b["models"][o].get("c_harrell")) for o in others]
            for h in doc["horizons"]:
                e = m["horizons"].get(f"{h:g}", {})
                row.append(f"{_f(e.get('observed'))}/{_f(e.get('predicted'))}" if e.get("mature") else "immature")
        else:
            row += [_ci(m.get("auroc")), _ci(m.get("calibration_slope"))]
            row += [_ci(b["models"][o].get("auroc")) for o in others]
        row.append(", ".join(b["drift"]["drifting"]) or "none")
        rows.append(row)
    return head, rows
