"""Figures for the evaluation report, each returned as a base64 PNG ``data:`` URI.

One function per plot; the deep model and every baseline share the same axes, and a model keeps its
colour across every figure (:func:`model_colors`: the Okabe-Ito palette, readable with colour-vision
deficiency). The numbers come from :mod:`precimed.evaluate.curves`; nothing here computes a metric.

Figures are drawn on matplotlib's Agg canvas directly (``Figure`` + ``FigureCanvasAgg``), never
through ``pyplot``: no window is opened, no global backend is switched for the caller's process,
and figures are not kept in pyplot's registry, so building many reports does not leak memory.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

__all__ = [
    "calibration_plot",
    "confusion_plot",
    "decision_curve_plot",
    "figure_uri",
    "importance_plot",
    "km_plot",
    "model_colors",
    "multiclass_roc_plot",
    "pr_plot",
    "regression_plot",
    "roc_plot",
    "survival_calibration_plot",
    "td_auc_plot",
    "training_plot",
]

# Okabe & Ito (2008) colour-blind safe palette; the first model (the deep model) gets blue
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442")
REFERENCE = "#7f7f7f"
DPI = 100
_STYLE = {"font.size": 9}


def model_colors(names: Sequence[str]) -> dict[str, str]:
    """A fixed colour for each model, in the order given (deep model first)."""
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(names)}


def _colors(names: Sequence[str], colors: Mapping[str, str] | None) -> dict[str, str]:
    base = model_colors(list(names))
    return {**base, **(colors or {})}


def _figure(width: float = 5.6, height: float = 4.2) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def figure_uri(fig: Figure) -> str:
    """Render ``fig`` to PNG and return it as a ``data:image/png;base64,...`` URI."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _square(ax, label_x: str, label_y: str, title: str) -> None:
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_xlabel(label_x)
    ax.set_ylabel(label_y)
    ax.set_title(title)
    ax.grid(alpha=0.3)


def _thin(x: np.ndarray, y: np.ndarray, max_points: int = 3000) -> tuple[np.ndarray, np.ndarray]:
    """Keep at most ~max_points of a monotone curve (always the end points) for a light PNG."""
    if len(x) <= max_points:
        return x, y
    keep = np.unique(np.r_[np.linspace(0, len(x) - 1, max_points).astype(int), len(x) - 1])
    return x[keep], y[keep]


def roc_plot(curves: Mapping[str, Mapping[str, np.ndarray]], *, labels: Mapping[str, str] | None = None,
             colors: Mapping[str, str] | None = None, title: str = "ROC curve") -> str:
    """ROC curves of every model (``{model: curves.roc_curve(...)}``) and the chance diagonal."""
    col = _colors(list(curves), colors)
    fig = _figure()
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], ls="--", color=REFERENCE, lw=1, label="chance")
    for name, c in curves.items():
        x, y = _thin(np.asarray(c["fpr"]), np.asarray(c["tpr"]))
        ax.plot(x, y, color=col[name], lw=1.6, label=(labels or {}).get(name, name), drawstyle="default")
    _square(ax, "1 - specificity (false positive rate)", "sensitivity (true positive rate)", title)
    ax.legend(loc="lower right", fontsize=8)
    return figure_uri(fig)


def pr_plot(curves: Mapping[str, Mapping[str, np.ndarray]], *, labels: Mapping[str, str] | None = None,
            colors: Mapping[str, str] | None = None, title: str = "Precision-recall curve") -> str:
    """Precision-recall curves (``{model: curves.pr_curve(...)}``) and the prevalence (no-skill) line."""
    col = _colors(list(curves), colors)
    fig = _figure()
    ax = fig.add_subplot()
    prevalence = next(iter(curves.values()))["prevalence"] if curves else None
    if prevalence is not None:
        ax.axhline(float(prevalence), ls="--", color=REFERENCE, lw=1, label=f"prevalence {prevalence:.2f}")
    for name, c in curves.items():
        x, y = _thin(np.asarray(c["recall"]), np.asarray(c["precision"]))
        ax.plot(x, y, color=col[name], lw=1.6, label=(labels or {}).get(name, name), drawstyle="steps-pre")
    _square(ax, "recall (sensitivity)", "precision (PPV)", title)
    ax.legend(loc="upper right", fontsize=8)
    return figure_uri(fig)


def calibration_plot(binned: Mapping[str, Mapping[str, np.ndarray]],
                     smoothed: Mapping[str, Mapping[str, np.ndarray]] | None = None, *,
                     predictions: Mapping[str, np.ndarray] | None = None,
                     colors: Mapping[str, str] | None = None, title: str = "Calibration") -> str:
    """Observed vs predicted risk: decile points with Wilson intervals, loess curves with bands.

    ``binned`` and ``smoothed`` hold :func:`~precimed.evaluate.curves.binned_calibration` and
    :func:`~precimed.evaluate.curves.smoothed_calibration` per model; with ``predictions``
    (``{model: p}``) a histogram of predicted risks is drawn under the curve.
    """
    names = list(binned)
    col = _colors(names, colors)
    fig = _figure(5.6, 5.2 if predictions else 4.4)
    if predictions:
        grid = fig.add_gridspec(2, 1, height_ratios=(4, 1))
        ax = fig.add_subplot(grid[0])
        hist = fig.add_subplot(grid[1], sharex=ax)
    else:
        ax, hist = fig.add_subplot(), None
    ax.plot([0, 1], [0, 1], ls="--", color=REFERENCE, lw=1, label="ideal")
    offsets = np.linspace(-0.006, 0.006, len(names)) if len(names) > 1 else [0.0]
    for off, name in zip(offsets, names, strict=True):
        b = binned[name]
        x = np.asarray(b["mean_predicted"]) + off
        y = np.asarray(b["observed"])
        err = np.vstack([y - np.asarray(b["ci_low"]), np.asarray(b["ci_high"]) - y])
        ax.errorbar(x, y, yerr=np.clip(err, 0, None), fmt="o", ms=3.5, color=col[name], elinewidth=0.9,
                    capsize=2, label=f"{name}: deciles (95% CI)")
        if smoothed and name in smoothed:
            s = smoothed[name]
            ax.plot(s["grid"], s["observed"], color=col[name], lw=1.6, label=f"{name}: loess")
            low, high = np.asarray(s["ci_low"]), np.asarray(s["ci_high"])
            if np.isfinite(low).any():
                ax.fill_between(s["grid"], low, high, color=col[name], alpha=0.15, lw=0)
    _square(ax, "" if hist is not None else "predicted risk", "observed event rate", title)
    ax.legend(loc="upper left", fontsize=7)
    if hist is not None:
        bins = np.linspace(0, 1, 51)
        for name in names:
            if name in predictions:
                hist.hist(predictions[name], bins=bins, histtype="step", color=col[name], lw=1.2)
        hist.set_xlabel("predicted risk")
        hist.set_ylabel("patients")
        hist.grid(alpha=0.3)
    return figure_uri(fig)


def decision_curve_plot(curves: Mapping[str, Mapping[str, np.ndarray]], *,
                        colors: Mapping[str, str] | None = None, title: str = "Decision curve") -> str:
    """Net benefit of each model (``{model: curves.decision_curve(...)}``), treat all and treat none."""
    col = _colors(list(curves), colors)
    fig = _figure()
    ax = fig.add_subplot()
    first = next(iter(curves.values()))
    t = np.asarray(first["thresholds"])
    prevalence = float(first["prevalence"])
    ax.plot(t, first["treat_all"], color="#444444", lw=1.2, ls=":", label="treat all")
    ax.plot(t, first["treat_none"], color=REFERENCE, lw=1.2, ls="--", label="treat none")
    top = prevalence
    for name, c in curves.items():
        ax.plot(c["thresholds"], c["net_benefit"], color=col[name], lw=1.6, label=name)
        top = max(top, float(np.nanmax(c["net_benefit"])))
    ax.set_ylim(-0.1 * max(top, 0.01), 1.1 * max(top, 0.01))
    ax.set_xlim(float(t.min()), float(t.max()))
    ax.set_xlabel("threshold probability")
    ax.set_ylabel("net benefit")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)
    return figure_uri(fig)


def confusion_plot(matrices: Mapping[str, np.ndarray], *, class_labels: Sequence[str] = ("0", "1"),
                   title: str = "Confusion matrix") -> str:
    """One heat map of counts (rows observed, columns predicted) per model, side by side."""
    names = list(matrices)
    k = len(class_labels)
    size = 2.0 + 0.35 * k
    fig = _figure(min(size * len(names) + 0.4, 14), size + 0.3)
    axes = fig.subplots(1, len(names), squeeze=False)[0]
    for ax, name in zip(axes, names, strict=True):
        m = np.asarray(matrices[name])
        ax.imshow(m, cmap="Blues")
        threshold = (m.min() + m.max()) / 2.0 if m.size else 0  # imshow spans min..max
        for (i, j), v in np.ndenumerate(m):
            ax.text(j, i, f"{int(v)}", ha="center", va="center", fontsize=9,
                    color="white" if v > threshold else "black")
        ax.set_xticks(range(k), class_labels, rotation=30 if k > 3 else 0, fontsize=8)
        ax.set_yticks(range(k), class_labels, fontsize=8)
        ax.set_xlabel("predicted")
        ax.set_ylabel("observed")
        ax.set_title(f"{title}: {name}" if len(names) == 1 else name)
    return figure_uri(fig)


def km_plot(groups: Mapping[str, Sequence[Mapping]], *, time_unit: str | None = None,
            horizons: Sequence[float] = (), title: str = "Kaplan-Meier by predicted risk group") -> str:
    """Kaplan-Meier curves (95% CI) by risk group, one panel per model (``{model: km_by_risk_group}``)."""
    names = list(groups)
    fig = _figure(min(4.2 * len(names) + 0.4, 14), 3.8)
    axes = fig.subplots(1, len(names), squeeze=False, sharey=True)[0]
    shades = ("#009E73", "#E69F00", "#D55E00", "#7f0000", "#440154")
    for ax, name in zip(axes, names, strict=True):
        entries = list(groups[name])
        tones = shades if len(entries) <= len(shades) else [PALETTE[i % len(PALETTE)] for i in range(len(entries))]
        for entry, tone in zip(entries, tones, strict=False):
            ax.step(entry["time"], entry["surv"], where="post", color=tone, lw=1.5,
                    label=f"{entry['label']} (n={entry['n']}, {entry['events']} events)")
            ax.fill_between(entry["time"], entry["ci_low"], entry["ci_high"], step="post", color=tone,
                            alpha=0.15, lw=0)
        for h in horizons:
            ax.axvline(h, color=REFERENCE, lw=0.8, ls=":")
        ax.set_ylim(0, 1.02)
        ax.set_xlabel(f"time ({time_unit})" if time_unit else "time")
        ax.set_title(f"{title}: {name}" if len(names) == 1 else name)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower left", fontsize=7)
    axes[0].set_ylabel("survival probability")
    return figure_uri(fig)


def td_auc_plot(curves: Mapping[str, Mapping[str, np.ndarray]], *, time_unit: str | None = None,
                horizons: Sequence[float] = (), colors: Mapping[str, str] | None = None,
                title: str = "Time-dependent AUC") -> str:
    """Cumulative/dynamic AUC(t) of every model (``{model: curves.time_dependent_auc(...)}``)."""
    col = _colors(list(curves), colors)
    fig = _figure(5.6, 3.8)
    ax = fig.add_subplot()
    ax.axhline(0.5, ls="--", color=REFERENCE, lw=1, label="chance")
    for name, c in curves.items():
        ax.plot(c["times"], c["auc"], color=col[name], lw=1.6, marker="o", ms=2.5, label=name)
    for h in horizons:
        ax.axvline(h, color=REFERENCE, lw=0.8, ls=":")
    ax.set_ylim(0.4, 1.0)
    ax.set_xlabel(f"time ({time_unit})" if time_unit else "time")
    ax.set_ylabel("AUC(t)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return figure_uri(fig)


def survival_calibration_plot(calibration: Mapping[str, Mapping[str, np.ndarray]], *, horizon: float,
                              time_unit: str | None = None, colors: Mapping[str, str] | None = None) -> str:
    """Predicted vs Kaplan-Meier event probability at a horizon, by decile (``curves.survival_calibration``)."""
    names = list(calibration)
    col = _colors(names, colors)
    fig = _figure(5.0, 4.4)
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], ls="--", color=REFERENCE, lw=1, label="ideal")
    offsets = np.linspace(-0.006, 0.006, len(names)) if len(names) > 1 else [0.0]
    top = 0.0
    for off, name in zip(offsets, names, strict=True):
        c = calibration[name]
        x = np.asarray(c["mean_predicted"])
        y = np.asarray(c["observed"])
        err = np.vstack([y - np.asarray(c["ci_low"]), np.asarray(c["ci_high"]) - y])
        ax.errorbar(x + off, y, yerr=np.clip(np.nan_to_num(err), 0, None), fmt="o-", ms=3.5, lw=1,
                    color=col[name], elinewidth=0.9, capsize=2, label=name)
        top = max(top, float(np.nanmax(np.r_[x, np.asarray(c["ci_high"])])))
    unit = f" {time_unit}" if time_unit else ""
    lim = min(1.0, top * 1.08 + 0.02)
    ax.set_xlim(0, lim)
    ax.set_ylim(0, lim)
    ax.set_xlabel(f"predicted event probability by {horizon:g}{unit}")
    ax.set_ylabel("observed: 1 - Kaplan-Meier")
    ax.set_title(f"Calibration at {horizon:g}{unit}")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    return figure_uri(fig)


def training_plot(histories: Sequence[Mapping], *, title: str = "Training curves") -> str:
    """Loss per epoch of each ensemble member: training dashed, validation solid, best epoch starred.

    Each history is ``{"train_loss": [...], "val_loss": [...], "best_epoch": int}`` (``best_epoch``
    counts from 0, as :class:`~precimed.train.loop.History` records it).
    """
    fig = _figure(5.6, 3.8)
    ax = fig.add_subplot()
    for i, h in enumerate(histories):
        tone = PALETTE[i % len(PALETTE)]
        train = np.asarray(h.get("train_loss", []), dtype=float)
        val = np.asarray(h.get("val_loss", []), dtype=float)
        member = f"member {i + 1}" if len(histories) > 1 else "model"
        if train.size:
            ax.plot(np.arange(1, train.size + 1), train, ls="--", lw=1, color=tone, alpha=0.8,
                    label=f"{member} train")
        if val.size:
            ax.plot(np.arange(1, val.size + 1), val, lw=1.4, color=tone, label=f"{member} validation")
            best = h.get("best_epoch")
            if best is not None and 0 <= int(best) < val.size:
                ax.plot(int(best) + 1, val[int(best)], marker="*", ms=11, color=tone, mec="black", mew=0.6,
                        ls="none")
    ax.plot([], [], marker="*", ms=9, color="white", mec="black", ls="none", label="best epoch (kept)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2 if len(histories) > 2 else 1)
    return figure_uri(fig)


def importance_plot(importance: Mapping[str, Mapping[str, float]], *, top: int = 15,
                    colors: Mapping[str, str] | None = None,
                    title: str = "Feature importance (mean |contribution|)") -> str:
    """Grouped horizontal bars: ``{model: {feature: mean_abs_contribution}}``, top features of the first model."""
    names = list(importance)
    col = _colors(names, colors)
    first = importance[names[0]]
    features = sorted(first, key=lambda f: -abs(float(first[f])))[:top]
    for name in names[1:]:  # features another model ranks highly are shown too
        for f in sorted(importance[name], key=lambda f: -abs(float(importance[name][f])))[:3]:
            if f not in features:
                features.append(f)
    features = features[::-1]
    fig = _figure(6.0, 1.2 + 0.32 * len(features) * max(1, len(names)) ** 0.5)
    ax = fig.add_subplot()
    height = 0.8 / len(names)
    y = np.arange(len(features))
    for i, name in enumerate(names):
        values = [abs(float(importance[name].get(f, 0.0))) for f in features]
        ax.barh(y + (i - (len(names) - 1) / 2) * height, values, height=height, color=col[name], label=name)
    ax.set_yticks(y, features, fontsize=8)
    ax.set_xlabel("mean |contribution|")
    ax.set_title(title)
    ax.grid(alpha=0.3, axis="x")
    ax.legend(fontsize=8, loc="lower right")
    return figure_uri(fig)


def regression_plot(y: np.ndarray, predictions: Mapping[str, np.ndarray],
                    binned: Mapping[str, Mapping[str, np.ndarray]] | None = None, *,
                    colors: Mapping[str, str] | None = None, max_points: int = 2000, seed: int = 0,
                    title: str = "Observed vs predicted") -> str:
    """Scatter of observed against predicted values (a random subset for large n) with decile means."""
    names = list(predictions)
    col = _colors(names, colors)
    y = np.asarray(y, dtype=float)
    fig = _figure(5.4, 4.6)
    ax = fig.add_subplot()
    rows = np.arange(len(y))
    if len(y) > max_points:
        rows = np.sort(np.random.default_rng(seed).choice(len(y), max_points, replace=False))
    lo = float(min(y.min(), *(np.min(p) for p in predictions.values())))
    hi = float(max(y.max(), *(np.max(p) for p in predictions.values())))
    ax.plot([lo, hi], [lo, hi], ls="--", color=REFERENCE, lw=1, label="ideal")
    for name in names:
        p = np.asarray(predictions[name], dtype=float)
        ax.scatter(p[rows], y[rows], s=5, alpha=0.25, color=col[name], lw=0)
        if binned and name in binned:
            b = binned[name]
            yy = np.asarray(b["observed"])
            err = np.vstack([yy - np.asarray(b["ci_low"]), np.asarray(b["ci_high"]) - yy])
            ax.errorbar(b["mean_predicted"], yy, yerr=np.clip(np.nan_to_num(err), 0, None), fmt="o-", ms=4,
                        color=col[name], capsize=2, lw=1, label=f"{name}: decile means (95% CI)")
    ax.set_xlabel("predicted")
    ax.set_ylabel("observed")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    return figure_uri(fig)


def multiclass_roc_plot(curves: Mapping[str, Sequence[Mapping[str, np.ndarray] | None]],
                        class_names: Sequence[str], *, colors: Mapping[str, str] | None = None) -> str:
    """One-vs-rest ROC curves: one panel per class, every model on each panel."""
    names = list(curves)
    col = _colors(names, colors)
    k = len(class_names)
    ncols = min(k, 4)
    nrows = int(np.ceil(k / ncols))
    fig = _figure(3.2 * ncols + 0.4, 3.1 * nrows + 0.3)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for c, ax in enumerate(axes):
        if c >= k:
            ax.set_visible(False)
            continue
        ax.plot([0, 1], [0, 1], ls="--", color=REFERENCE, lw=1)
        for name in names:
            curve = curves[name][c]
            if curve is not None:
                x, y = _thin(np.asarray(curve["fpr"]), np.asarray(curve["tpr"]))
                ax.plot(x, y, color=col[name], lw=1.4, label=name)
        _square(ax, "1 - specificity", "sensitivity", f"{class_names[c]} vs rest")
        if c == 0:
            ax.legend(fontsize=7, loc="lower right")
    return figure_uri(fig)
