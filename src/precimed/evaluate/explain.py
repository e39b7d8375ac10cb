"""SHAP explanations of any model given as a plain callable, summed back onto the user's features.

Models arrive as ``predict_fn(X) -> 1-D score`` on the preprocessed matrix (float columns from
``TabularPreprocessor``); nothing here imports torch. Which score to explain:

* binary: the predicted PROBABILITY of the event. Contributions are then in probability units
  (shown as percentage points) and add up from the average predicted risk to this patient's
  predicted risk, which is what a clinician reads. (A logit would be more additive for the model
  but is not a number a patient view can show.)
* survival: the log-hazard ratio (``predict_risk``); contributions are in log-hazard units.
* regression: the prediction itself. Multiclass: explain one class's probability at a time.

Method. Each user feature is one player: its output columns (the one-hot block of a categorical
feature, a value and its ``<name>_missing`` indicator) are switched between the patient's and a
background row's values together, so the model never sees impossible inputs (two categories at
once, a value flagged missing while present). The value of a coalition is the mean prediction over
the background rows (an interventional, "independent" masker), so each patient's contributions add
up exactly to ``prediction - base_value``, where ``base_value`` is the mean prediction over the
background. For a model that is additive over features, the contribution of a feature equals the
sum of the per-column SHAP values of its columns (``masking="column"`` computes those instead and
sums them). shap's ``ExactExplainer`` runs when every coalition fits in the budget of model
evaluations, otherwise ``PermutationExplainer`` with antithetic permutations (see
:func:`global_importance`).

Plots are drawn with matplotlib's object API on an Agg canvas (no pyplot state, safe in a server).
"""

from __future__ import annotations

import base64
import io
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd

from precimed.errors import ConfigError, DataError
from precimed.schema import require_columns

__all__ = [
    "background_sample",
    "beeswarm_or_bar_png",
    "describe_rows",
    "explain_rows",
    "global_importance",
    "waterfall_png",
]

Scale = Literal["probability", "log-hazard", "value"]
SCALES = ("probability", "log-hazard", "value")
MAX_BACKGROUND = 100
MIN_BACKGROUND = 20
MAX_MODEL_ROWS = 1_500_000  # model rows one call may evaluate by default: a few seconds for an MLP ensemble
_PERMUTATIONS = 10  # at most this many antithetic permutation pairs per row


# ---------------------------------------------------------------------------------------------
# checks


def _matrix(X: object, name: str) -> np.ndarray:
    try:
        arr = np.asarray(X)
        if arr.dtype.kind not in "fiub":
            arr = arr.astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{name} must be a numeric matrix (the preprocessed features): {exc}", column=name) from None
    if arr.ndim != 2 or arr.shape[0] == 0:
        raise DataError(f"{name} must be a 2-D matrix with at least one row, got shape {arr.shape}.", column=name)
    bad = ~np.isfinite(arr.astype(np.float64))
    if bad.any():
        rows = np.flatnonzero(bad.any(axis=1))
        raise DataError(
            f"{name} has NaN or infinite values in {rows.size} row(s) (rows {rows[:5].tolist()}); pass the "
            "preprocessed matrix (imputed and encoded), not raw data.",
            column=name,
            rows=rows.tolist(),
        )
    return arr


def _blocks(groups: Mapping[str, Sequence[int]], n_columns: int) -> tuple[list[str], list[list[int]]]:
    if not isinstance(groups, Mapping) or not groups:
        raise ConfigError("groups must map each user feature to its output columns, e.g. preprocessor.feature_groups_.")
    names = [str(k) for k in groups]
    blocks = [[int(c) for c in cols] for cols in groups.values()]
    seen = [c for cols in blocks for c in cols]
    if any(not cols for cols in blocks):
        empty = [name for name, cols in zip(names, blocks, strict=True) if not cols]
        raise ConfigError(f"groups: feature(s) {empty} have no output columns.")
    if sorted(seen) != list(range(n_columns)):
        twice = sorted({c for c in seen if seen.count(c) > 1})
        missing = sorted(set(range(n_columns)) - set(seen))
        outside = sorted(c for c in set(seen) if not 0 <= c < n_columns)
        raise ConfigError(
            f"groups must cover each of the {n_columns} matrix columns exactly once; columns listed twice: "
            f"{twice[:10]}, not listed: {missing[:10]}, out of range: {outside[:10]}. Pass the groups of the "
            "preprocessor that made the matrix (feature_groups_)."
        )
    return names, blocks


def _scores(predict_fn: Callable[[np.ndarray], np.ndarray], X: np.ndarray) -> np.ndarray:
    out = np.asarray(predict_fn(X), dtype=np.float64)
    if out.ndim == 2 and out.shape[1] == 1:
        out = out[:, 0]
    if out.shape != (X.shape[0],):
        raise DataError(
            f"predict_fn must return one score per row (shape ({X.shape[0]},)), got shape {out.shape}. For a "
            "binary model pass lambda X: model.predict_proba(X)[:, 1]; for survival model.predict_risk."
        )
    if not np.isfinite(out).all():
        raise DataError("predict_fn returned NaN or infinite scores; check the model and its inputs.")
    return out


# ---------------------------------------------------------------------------------------------
# background


def background_sample(
    X: np.ndarray, groups: Mapping[str, Sequence[int]], *, n: int = MAX_BACKGROUND, seed: int = 0,
    shuffle: bool = True,
) -> np.ndarray:
    """Up to ``n`` background rows for SHAP, drawn from ``X`` (preprocessed training rows).

    With ``shuffle`` (the default), each feature's block of columns is permuted across the drawn rows
    independently, so every stored row mixes several patients: each feature keeps its distribution
    (a one-hot block stays a valid one-hot block), but no row is a real patient's record. This is
    the sample to store in a model bundle. Seeded.
    """
    X = _matrix(X, "X")
    _, blocks = _blocks(groups, X.shape[1])
    if int(n) < 1:
        raise ConfigError(f"n must be a positive number of rows, got {n}.")
    rng = np.random.default_rng(seed)
    take = rng.choice(X.shape[0], size=min(int(n), X.shape[0]), replace=False)
    out = X[np.sort(take)].copy()
    if shuffle:
        for cols in blocks:
            out[:, cols] = out[rng.permutation(out.shape[0])][:, cols]
    return out


# ---------------------------------------------------------------------------------------------
# SHAP values


class _Coalitions:
    """Rows coded as one integer per player (the index of that player's block values in a table).

    shap's maskers and explainers then see one column per user feature; ``decode`` turns coded
    rows back into model inputs by looking each block up. Identical blocks share a code, so shap
    skips players whose value equals every background row's.
    """

    def __init__(self, rows: np.ndarray, blocks: list[list[int]]) -> None:
        self.blocks = blocks
        self.n_columns = rows.shape[1]
        self.dtype = rows.dtype
        self.tables = []
        self.codes = np.empty((rows.shape[0], len(blocks)), dtype=np.float64)
        for j, cols in enumerate(blocks):
            table, inverse = np.unique(rows[:, cols], axis=0, return_inverse=True)
            self.tables.append(table)
            self.codes[:, j] = inverse.ravel()

    def decode(self, codes: np.ndarray) -> np.ndarray:
        index = np.asarray(codes).astype(np.int64)
        out = np.empty((index.shape[0], self.n_columns), dtype=self.dtype)
        for j, cols in enumerate(self.blocks):
            out[:, cols] = self.tables[j][index[:, j]]
        return out


def _plan(n_rows: int, n_background: int, players: int, max_evals: int | None,
          max_model_rows: int) -> tuple[str, int, int]:
    """(method, coalitions evaluated per row, background rows) within the model-row budget.

    Each coalition costs one model call per background row, so a call costs about
    ``n_rows * evaluations * n_background`` model rows. Exact when all ``2 ** players`` coalitions
    fit (and players <= 12); else antithetic permutations, as many pairs as fit, 1 to 10. When
    even one pair does not fit, the background shrinks (not below 20 rows).
    """
    pair = 2 * players + 1
    if int(max_model_rows) < 1:
        raise ConfigError(f"max_model_rows must be a positive number of model rows, got {max_model_rows}.")
    if max_evals is not None:
        if int(max_evals) >= 2**players:
            return "exact", 2**players, n_background
        if int(max_evals) < pair:
            raise ConfigError(f"max_evals={max_evals} is too low for {players} features: the permutation method "
                              f"needs at least 2 * features + 1 = {pair} (or 2 ** features = {2**players} for exact).")
        return "permutation", int(max_evals) // pair * pair, n_background  # whole antithetic pairs
    affordable = int(max_model_rows) // max(1, n_rows * n_background)
    if players <= 12 and 2**players <= affordable:
        return "exact", 2**players, n_background
    pairs = min(_PERMUTATIONS, affordable // pair)
    if pairs >= 1:
        return "permutation", pairs * pair, n_background
    smaller = max(MIN_BACKGROUND, int(max_model_rows) // max(1, n_rows * pair))
    return "permutation", pair, min(n_background, smaller)


def _shap(
    predict_fn: Callable[[np.ndarray], np.ndarray], background: np.ndarray, explain: np.ndarray,
    blocks: list[list[int]], *, seed: int, method: str, evals: int,
) -> tuple[np.ndarray, float]:
    """(values (n, players), base value) for the players ``blocks``."""
    with warnings.catch_warnings():  # shap's own deprecation notices at import, nothing a user can act on
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        import shap  # slow import: only when explaining

    space = _Coalitions(np.vstack([explain, background]), blocks)
    coded_explain, coded_background = space.codes[: len(explain)], space.codes[len(explain):]

    def model(codes: np.ndarray) -> np.ndarray:
        return _scores(predict_fn, space.decode(codes))

    masker = shap.maskers.Independent(coded_background, max_samples=len(coded_background))
    if method == "exact":
        result = shap.explainers.Exact(model, masker)(coded_explain, max_evals=evals, silent=True)
    else:
        state = np.random.get_state()  # shap's Permutation seeds numpy's global generator
        try:
            explainer = shap.explainers.Permutation(model, masker, seed=seed)
            result = explainer(coded_explain, max_evals=evals, silent=True)
        finally:
            np.random.set_state(state)
    values = np.asarray(result.values, dtype=np.float64).reshape(len(explain), len(blocks))
    base = float(np.mean(np.asarray(result.base_values, dtype=np.float64)))
    return values, base


def global_importance(
    predict_fn: Callable[[np.ndarray], np.ndarray],
    X_background: np.ndarray,
    X_explain: np.ndarray,
    groups: Mapping[str, Sequence[int]],
    *,
    seed: int = 0,
    max_evals: int | None = None,
    max_model_rows: int = MAX_MODEL_ROWS,
    masking: Literal["feature", "column"] = "feature",
) -> dict[str, Any]:
    """SHAP contributions of each user feature for each row of ``X_explain``, and their mean |.|.

    ``predict_fn`` maps the preprocessed matrix to one score per row (see the module notes for which
    score per task); ``groups`` maps each user feature to its columns (``feature_groups_``) and must
    cover every column once. ``X_background`` is capped at 100 rows (a seeded sample beyond that).

    Cost: each row costs (coalitions evaluated) x (background rows) model rows. ``max_evals`` fixes
    the coalitions per row (exact when it reaches ``2 ** features``; otherwise at least
    ``2 * features + 1``, one antithetic permutation pair). By default they are chosen to stay within
    ``max_model_rows`` for the whole call: exact when all coalitions fit (up to 12 features), else
    as many permutation pairs as fit, from 1 to 10, shrinking the background (not below 20 rows)
    when even one pair does not. Few rows are explained precisely; a global summary over hundreds
    of rows uses fewer permutations per row (its mean |contribution| averages the noise out).
    ``masking="column"`` explains each column separately and sums them per feature. Seeded.

    Returns ``{"features": [names, in groups order], "values": (n, features) array, "mean_abs":
    {feature: mean |contribution|} (largest first), "base_value": mean score over the background,
    "prediction": (n,) scores, "max_additivity_gap": max |base + sum - prediction|, "method":
    "exact" | "permutation", "evaluations_per_row", "n_background", "masking"}``. Values are exact
    Shapley values of the sampled background for "exact", unbiased estimates for "permutation"; the
    contributions of each row add up to its prediction either way.
    """
    background = _matrix(X_background, "X_background")
    explain = _matrix(X_explain, "X_explain")
    if background.shape[1] != explain.shape[1]:
        raise DataError(
            f"X_background has {background.shape[1]} columns but X_explain has {explain.shape[1]}; both must "
            "come from the same preprocessor."
        )
    names, blocks = _blocks(groups, explain.shape[1])
    if masking not in ("feature", "column"):
        raise ConfigError(f"masking must be 'feature' or 'column', got {masking!r}.")
    players = blocks if masking == "feature" else [[c] for c in range(explain.shape[1])]
    method, evals, n_background = _plan(explain.shape[0], min(background.shape[0], MAX_BACKGROUND), len(players),
                                        max_evals, max_model_rows)
    if background.shape[0] > n_background:
        rng = np.random.default_rng(seed)
        background = background[np.sort(rng.choice(background.shape[0], n_background, replace=False))]
    values, base = _shap(predict_fn, background, explain, players, seed=seed, method=method, evals=evals)
    if masking == "column":
        values = np.column_stack([values[:, cols].sum(axis=1) for cols in blocks])
    prediction = _scores(predict_fn, explain)
    gap = float(np.max(np.abs(base + values.sum(axis=1) - prediction)))
    mean_abs = np.abs(values).mean(axis=0)
    order = np.argsort(-mean_abs, kind="stable")
    return {
        "features": names,
        "values": values,
        "mean_abs": {names[j]: float(mean_abs[j]) for j in order},
        "base_value": base,
        "prediction": prediction,
        "max_additivity_gap": gap,
        "method": method,
        "evaluations_per_row": evals,
        "n_background": int(background.shape[0]),
        "masking": masking,
    }


# ---------------------------------------------------------------------------------------------
# individual patients


def _is_missing(value: object) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, float | np.floating):
        return bool(np.isnan(value))
    return isinstance(value, str) and not value.strip()


def _plain(value: object) -> object:
    if _is_missing(value):
        return None
    value = value.item() if isinstance(value, np.generic) else value
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return int(value)
    return value if isinstance(value, bool | int | float | str) else str(value)


def _display(feature: str, value: object, unit: str | None) -> str:
    if value is None:
        return f"{feature} = missing"
    text = f"{value:.4g}" if isinstance(value, float) else str(value)
    return f"{feature} = {text} {unit}" if unit else f"{feature} = {text}"


def _direction(contribution: float, scale: str) -> str:
    noun = "the prediction" if scale == "value" else "risk"
    if contribution > 0:
        return f"raises {noun}"
    if contribution < 0:
        return f"lowers {noun}"
    return "no effect"


def describe_rows(
    importance: Mapping[str, Any],
    frame: pd.DataFrame,
    *,
    top_k: int = 5,
    units: Mapping[str, str | None] | None = None,
    scale: Scale = "probability",
    rows: Sequence[int] | None = None,
) -> list[dict[str, Any]]:
    """Per-patient explanations from a :func:`global_importance` result and the patients' raw rows.

    ``frame`` holds the original typed values of the explained rows, in the same order (one column
    per user feature), so a contribution can be shown as "age = 63 years"; ``units`` maps features to
    units. Each row gives ``{"row": frame index label, "prediction", "base_value", "scale",
    "contributions": top_k [{"feature", "value", "display", "contribution", "direction"}] by
    |contribution|, "rest": {"n_features", "contribution"} (the other features together),
    "additivity_gap": prediction - base_value - sum of all contributions}``. A missing value is
    shown as "missing": its contribution is that of being missing (imputed value and indicator).
    ``rows`` (positions among the explained rows) describes only those patients, e.g. a few
    waterfalls from a global run over 200 patients.
    """
    if scale not in SCALES:
        raise ConfigError(f"scale must be one of {list(SCALES)}, got {scale!r}.")
    if int(top_k) < 1:
        raise ConfigError(f"top_k must be at least 1, got {top_k}.")
    names = list(importance["features"])
    values = np.asarray(importance["values"], dtype=np.float64)
    if not isinstance(frame, pd.DataFrame) or len(frame) != values.shape[0]:
        got = len(frame) if isinstance(frame, pd.DataFrame) else type(frame).__name__
        raise DataError(f"frame must be a DataFrame with the {values.shape[0]} explained rows, in order; got {got}.")
    require_columns(frame, names, where="describe_rows")
    units = dict(units or {})
    base = float(importance["base_value"])
    positions = range(values.shape[0]) if rows is None else [int(i) for i in rows]
    bad = [i for i in positions if not 0 <= i < values.shape[0]]
    if bad:
        raise DataError(f"rows {bad[:5]} are not positions among the {values.shape[0]} explained rows.")
    out = []
    for i in positions:
        row = values[i]
        order = np.argsort(-np.abs(row), kind="stable")
        top, others = order[: int(top_k)], order[int(top_k):]
        contributions = []
        for j in top:
            value = _plain(frame[names[j]].iloc[i])
            contributions.append({
                "feature": names[j],
                "value": value,
                "display": _display(names[j], value, units.get(names[j])),
                "contribution": float(row[j]),
                "direction": _direction(float(row[j]), scale),
            })
        prediction = float(importance["prediction"][i])
        label = frame.index[i]
        out.append({
            "row": label.item() if isinstance(label, np.generic) else label,
            "prediction": prediction,
            "base_value": base,
            "scale": scale,
            "contributions": contributions,
            "rest": {"n_features": int(others.size), "contribution": float(row[others].sum())},
            "additivity_gap": float(prediction - base - row.sum()),
        })
    return out


def explain_rows(
    predict_fn: Callable[[np.ndarray], np.ndarray],
    X_background: np.ndarray,
    X_rows: np.ndarray,
    frame: pd.DataFrame,
    groups: Mapping[str, Sequence[int]],
    *,
    top_k: int = 5,
    units: Mapping[str, str | None] | None = None,
    scale: Scale = "probability",
    seed: int = 0,
    max_evals: int | None = None,
    max_model_rows: int = MAX_MODEL_ROWS,
) -> list[dict[str, Any]]:
    """Explain individual patients: :func:`global_importance` on ``X_rows``, then :func:`describe_rows`.

    ``X_rows`` is ``preprocessor.transform(frame)``; ``frame`` the same patients' raw typed rows.
    """
    if not isinstance(frame, pd.DataFrame) or len(frame) != len(X_rows):
        raise DataError("frame must be a DataFrame holding the raw values of the rows of X_rows, in the same order.")
    importance = global_importance(predict_fn, X_background, X_rows, groups, seed=seed, max_evals=max_evals,
                                   max_model_rows=max_model_rows)
    return describe_rows(importance, frame, top_k=top_k, units=units, scale=scale)


# ---------------------------------------------------------------------------------------------
# plots


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def _unit_label(scale: str) -> str:
    return {"probability": "percentage points of predicted risk", "log-hazard": "log hazard ratio",
            "value": "units of the prediction"}[scale]


def _factor(scale: str) -> float:
    return 100.0 if scale == "probability" else 1.0


def beeswarm_or_bar_png(
    importances: Mapping[str, Mapping[str, Any]],
    *,
    kind: Literal["bar", "beeswarm"] = "bar",
    model: str | None = None,
    frame: pd.DataFrame | None = None,
    max_features: int = 12,
    scale: Scale = "probability",
) -> str:
    """A ``data:image/png;base64,...`` URI of a SHAP summary plot.

    ``kind="bar"``: mean |contribution| per feature, one bar per model (``importances`` maps model
    names to :func:`global_importance` results on the same scale), features ordered by their mean
    over models. ``kind="beeswarm"``: one dot per patient and feature for ``model`` (default: the
    first), x = contribution, features ordered by mean |contribution|; with ``frame`` (the explained
    rows' raw values, in order) dots are coloured by the feature's value (rank: low blue, high red;
    grey for missing or non-numeric values). Probability contributions are shown in percentage points.
    """
    if not importances:
        raise ConfigError("importances is empty; pass {model name: global_importance(...) result}.")
    if scale not in SCALES:
        raise ConfigError(f"scale must be one of {list(SCALES)}, got {scale!r}.")
    factor = _factor(scale)
    if kind == "bar":
        features = sorted(
            {f for imp in importances.values() for f in imp["mean_abs"]},
            key=lambda f: -np.mean([imp["mean_abs"].get(f, 0.0) for imp in importances.values()]),
        )[: int(max_features)]
        fig = _figure(7.0, 1.2 + 0.38 * len(features) * max(1.0, 0.6 * len(importances)))
        ax = fig.add_subplot()
        height = 0.8 / len(importances)
        ypos = np.arange(len(features))[::-1]
        for m, (name, imp) in enumerate(importances.items()):
            widths = [factor * imp["mean_abs"].get(f, 0.0) for f in features]
            ax.barh(ypos + 0.4 - height * (m + 0.5), widths, height=height, label=name)
        ax.set_yticks(ypos, features)
        ax.set_xlabel(f"mean |SHAP contribution| ({_unit_label(scale)})")
        if len(importances) > 1:
            ax.legend(frameon=False, loc="lower right")
        ax.spines[["top", "right"]].set_visible(False)
    elif kind == "beeswarm":
        name = model if model is not None else next(iter(importances))
        if name not in importances:
            raise ConfigError(f"model {name!r} is not among the importances {list(importances)}.")
        imp = importances[name]
        names = list(imp["features"])
        values = factor * np.asarray(imp["values"], dtype=np.float64)
        order = [names.index(f) for f in list(imp["mean_abs"])[: int(max_features)]]
        if frame is not None and len(frame) != values.shape[0]:
            raise DataError(f"frame must hold the {values.shape[0]} explained rows in order; got {len(frame)}.")
        fig = _figure(7.5, 1.4 + 0.42 * len(order))
        ax = fig.add_subplot()
        from matplotlib import colormaps

        cmap = colormaps["coolwarm"]
        scatter = None
        for pos, j in enumerate(order):
            y = len(order) - 1 - pos
            x = values[:, j]
            colors = np.tile(np.array([[0.6, 0.6, 0.6, 0.8]]), (x.size, 1))
            if frame is not None and names[j] in frame.columns:
                raw = pd.to_numeric(frame[names[j]].reset_index(drop=True), errors="coerce").to_numpy(float)
                known = ~np.isnan(raw)
                if known.sum() > 1:
                    ranks = pd.Series(raw[known]).rank(pct=True).to_numpy()
                    colors[known] = cmap(ranks)
            scatter = ax.scatter(x, y + _swarm_offsets(x), c=colors, s=9, linewidths=0)
        ax.axvline(0.0, color="0.5", linewidth=0.8)
        ax.set_yticks(np.arange(len(order))[::-1], [names[j] for j in order])
        ax.set_xlabel(f"SHAP contribution ({_unit_label(scale)})")
        ax.set_title(f"{name}: contribution of each feature for each patient", fontsize=10)
        ax.spines[["top", "right"]].set_visible(False)
        if frame is not None and scatter is not None:
            from matplotlib.cm import ScalarMappable

            bar = fig.colorbar(ScalarMappable(cmap=cmap), ax=ax, pad=0.01, aspect=30)
            bar.set_ticks([0, 1], labels=["low", "high"])
            bar.set_label("feature value")
    else:
        raise ConfigError(f"kind must be 'bar' or 'beeswarm', got {kind!r}.")
    return "data:image/png;base64," + base64.b64encode(_png(fig)).decode("ascii")


def _swarm_offsets(x: np.ndarray, width: float = 0.38, bins: int = 60) -> np.ndarray:
    """Vertical offsets that pile dots with similar x into a symmetric swarm (deterministic)."""
    if x.size == 0 or np.ptp(x) == 0:
        bin_of = np.zeros(x.size, dtype=np.int64)
    else:
        bin_of = np.minimum(((x - x.min()) / np.ptp(x) * bins).astype(np.int64), bins - 1)
    offsets = np.zeros(x.size)
    counts = np.bincount(bin_of, minlength=bins)
    step = width / max(1, counts.max() // 2)
    for b in np.flatnonzero(counts > 1):
        members = np.flatnonzero(bin_of == b)
        k = np.arange(members.size)
        offsets[members] = np.where(k % 2 == 0, 1, -1) * ((k + 1) // 2) * step
    return offsets


def waterfall_png(explanation_row: Mapping[str, Any], *, title: str | None = None) -> bytes:
    """PNG bytes of a waterfall for one patient (an item of :func:`explain_rows`/:func:`describe_rows`).

    Starts at the average prediction (base value) at the bottom, adds the other features together,
    then each top feature (largest at the top) and ends at the patient's prediction; red bars raise
    the score, blue bars lower it. Probabilities are shown in percent.
    """
    scale = explanation_row.get("scale", "value")
    factor = _factor(scale)
    base = float(explanation_row["base_value"])
    prediction = float(explanation_row["prediction"])
    steps = [(c["display"], float(c["contribution"])) for c in explanation_row["contributions"]][::-1]
    rest = explanation_row.get("rest") or {"n_features": 0, "contribution": 0.0}
    if rest["n_features"]:
        steps.insert(0, (f"{rest['n_features']} other feature(s)", float(rest["contribution"])))
    fig = _figure(8.0, 1.8 + 0.45 * len(steps))
    ax = fig.add_subplot()
    unit = " pp" if scale == "probability" else ""
    fmt = (lambda v: f"{v:.1f}%") if scale == "probability" else (lambda v: f"{v:.3g}")
    ends = np.cumsum([base] + [c for _, c in steps])
    lo, hi = factor * float(ends.min()), factor * float(ends.max())
    span = max(hi - lo, 1e-9)
    for y, (_, c) in enumerate(steps):
        left = factor * ends[y]
        ax.barh(y, factor * c, left=left, color="#d6604d" if c > 0 else "#4393c3", height=0.6)
        tip = left + factor * c
        ax.text(tip + (0.015 * span if c >= 0 else -0.015 * span), y, f"{factor * c:+.3g}{unit}", va="center",
                ha="left" if c >= 0 else "right", fontsize=8)
    ax.set_yticks(range(len(steps)), [label for label, _ in steps])
    ax.set_ylim(-0.6, len(steps) - 0.4)
    ax.set_xlim(lo - 0.18 * span, hi + 0.18 * span)
    ax.axvline(factor * base, color="0.45", linestyle="--", linewidth=0.8)
    ax.axvline(factor * prediction, color="0.1", linewidth=0.8)
    top = ax.get_xaxis_transform()
    ax.text(factor * base, 1.01, f"average\n{fmt(factor * base)}", transform=top, ha="center", va="bottom",
            fontsize=8, color="0.35")
    ax.text(factor * prediction, 1.01, f"this patient\n{fmt(factor * prediction)}", transform=top, ha="center",
            va="bottom", fontsize=8, fontweight="bold")
    ax.set_xlabel("predicted risk" if scale == "probability" else _unit_label(scale))
    if title:
        fig.suptitle(title, fontsize=10)
    ax.spines[["top", "right"]].set_visible(False)
    return _png(fig)
