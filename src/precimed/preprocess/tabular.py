"""TabularPreprocessor: declared clinical features to a float32 matrix, fitted on training rows only.

Per feature kind (see ``precimed.config.FeatureConfig``):

- numeric: plausible-range guard, optional log1p, impute (training median or mean), scale.
- binary: 0/1 (``positive`` values, else 1/0, true/false, yes/no, y/n), impute with the training mode.
- categorical: one-hot over the declared or the training categories; missing = all zeros.
- ordinal: codes 0..k-1 in the declared order, impute, scale.
- genotype: allele counts (``GenotypeEncoder`` parsing), impute with the training mean, scale.

A feature with missing values in the training rows also gets a ``<name>_missing`` 0/1 column
(when ``missing_indicators``). Missing is never 0 before imputation. All fitted state is plain
Python data in attributes ending in ``_``; ``to_state`` / ``from_state`` write and read it as JSON.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from pydantic import ValidationError
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import validate_data

from precimed.config import FeatureConfig
from precimed.errors import ArtifactError, ConfigError, DataError, SchemaError, ValueRangeError
from precimed.preprocess.encoders import (
    blank_mask,
    genotype_counts,
    ids_for,
    is_blank,
    require_fitted,
    value_key,
)
from precimed.preprocess.state import STATE_FORMAT, check_state
from precimed.schema import as_numeric, check_range, examples, outside_range, require_columns

__all__ = ["STATE_FORMAT", "TabularPreprocessor", "binary_key", "normalize_features"]

WHERE = "TabularPreprocessor"
BINARY_TRUE = frozenset({"1", "yes", "y", "true"})
BINARY_FALSE = frozenset({"0", "no", "n", "false"})
_MAX_LISTED = 20


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------
def jsonable(value: Any) -> Any:
    """Plain JSON data (dict, list, str, int, float, bool, None) from numpy / pandas / pydantic values."""
    if hasattr(value, "model_dump"):
        value = value.model_dump()
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray | pd.Index | pd.Series):
        return [jsonable(v) for v in value]
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return None if math.isnan(value) else float(value)
    if value is None or isinstance(value, str):
        return value
    return str(value)


def binary_key(value: object) -> str:
    """Lower-case canonical text for a binary value; True/1/1.0/"1" all give "1"."""
    if isinstance(value, bool | np.bool_):
        return "1" if value else "0"
    return value_key(value).lower()


def normalize_features(features: Sequence[Mapping[str, Any] | FeatureConfig]) -> list[dict[str, Any]]:
    """Validate feature declarations (dicts or FeatureConfig) and return them as JSON-able dicts."""
    if isinstance(features, str | Mapping) or not isinstance(features, Sequence):
        raise ConfigError(f"{WHERE}: features must be a list of feature declarations (dicts), "
                          f"got {type(features).__name__}")
    out = []
    for item in features:
        data = item.model_dump() if hasattr(item, "model_dump") else item
        if not isinstance(data, Mapping):
            raise ConfigError(f"{WHERE}: each feature must be a dict like "
                              f"{{'name': 'age', 'kind': 'numeric'}}, got {item!r}")
        try:
            feature = FeatureConfig.model_validate(dict(data))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'feature'}: {e['msg'].removeprefix('Value error, ')}"
                for e in exc.errors()
            )
            raise ConfigError(f"{WHERE}: feature {data.get('name')!r}: {problems}") from None
        out.append(jsonable(feature))
    names = [f["name"] for f in out]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"{WHERE}: features listed twice: {dupes}")
    if not out:
        raise ConfigError(f"{WHERE}: features is empty; declare at least one feature (or pass None)")
    return out


def _sorted_categories(keys: set[str]) -> list[str]:
    try:
        return sorted(keys, key=float)
    except ValueError:
        return sorted(keys)


def _bounds(feature: Mapping[str, Any]) -> tuple[float | None, float | None]:
    rng = feature.get("range")
    return (None, None) if rng is None else (float(rng[0]), float(rng[1]))


def _fmt(number: float | None) -> str:
    if number is None:
        return "-inf"
    return str(int(number)) if float(number).is_integer() else f"{number:g}"


def _centre_and_scale(filled: np.ndarray, how: str) -> tuple[list[float], list[float]]:
    if how == "standard":
        centre, scale = filled.mean(axis=0), filled.std(axis=0)
    elif how == "robust":
        q25, q50, q75 = np.percentile(filled, [25, 50, 75], axis=0)
        centre, scale = q50, q75 - q25
    else:
        centre, scale = np.zeros(filled.shape[1]), np.ones(filled.shape[1])
    scale = np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)  # constant column: leave unscaled
    return [float(c) for c in centre], [float(s) for s in scale]


class _Rows:
    """The ids of the rows being processed (patient ids for frames, positions for arrays)."""

    def __init__(self, ids: pd.Series | None, n: int) -> None:
        self.ids = ids
        self.series = ids if ids is not None else pd.Series(np.arange(n))
        self.label = "patient id(s)" if ids is not None else "row(s)"

    def of(self, mask: np.ndarray | pd.Series) -> list[object]:
        return ids_for(self.ids, mask)


# --------------------------------------------------------------------------------------------------
# the transformer
# --------------------------------------------------------------------------------------------------
class TabularPreprocessor(TransformerMixin, BaseEstimator):
    """Clean, impute, encode and scale declared features; every statistic comes from ``fit``'s rows.

    Parameters
    ----------
    features : list of dict or None, default=None
        ``FeatureConfig.model_dump()`` dicts (name, kind, unit, range, log, categories, positive,
        alleles). None: every column is a numeric feature without a range (arrays get names x0..).
    impute : {"median", "mean"}, default="median"
        Fill for numeric and ordinal features (genotype counts use the mean, binary the mode).
    missing_indicators : bool, default=True
        Add ``<name>_missing`` for each feature that had missing values in the training rows.
    scale : {"standard", "robust", "none"}, default="standard"
        Scaling of numeric, ordinal and genotype columns (binary and one-hot columns stay 0/1).
    out_of_range : {"missing", "error"}, default="missing"
        What ``transform`` does with a value outside a declared range. In ``fit`` (and
        ``fit_transform``) such values always become missing and are listed in ``range_report_``.

    Attributes
    ----------
    features_ : list of dict
        The validated declarations (generated numeric ones when ``features`` is None).
    encodings_ : list of dict
        Per feature: output ``columns``, ``fill``, ``center``, ``scale``, ``indicator`` and what
        the kind needs (``low``/``high``/``log``, ``categories``, ``positive``/``negative``, ``alleles``).
    range_report_ : dict
        ``{feature: {"count", "low", "high", "unit", "ids", "values"}}`` for features with values
        outside their range in the training rows (set to missing); ids and values: first 20.
    feature_names_out_ : list of str
    feature_groups_ : dict of str to list of int
        For each input feature, the indices of its output columns (indicator included), e.g. to sum
        SHAP contributions back to the user's features.
    n_features_in_ : int
    feature_names_in_ : ndarray of str (when fitted on a DataFrame with string column names)
    """

    def __init__(self, features=None, impute="median", missing_indicators=True, scale="standard",
                 out_of_range="missing"):
        self.features = features
        self.impute = impute
        self.missing_indicators = missing_indicators
        self.scale = scale
        self.out_of_range = out_of_range

    # -- parameters and input ----------------------------------------------------------------------
    def _check_params(self) -> None:
        choices = {"impute": ("median", "mean"), "scale": ("standard", "robust", "none"),
                   "out_of_range": ("missing", "error")}
        for param, allowed in choices.items():
            if getattr(self, param) not in allowed:
                raise ConfigError(
                    f"{WHERE}: {param} must be one of {list(allowed)}, got {getattr(self, param)!r}"
                )
        if not isinstance(self.missing_indicators, bool | np.bool_):
            raise ConfigError(
                f"{WHERE}: missing_indicators must be True or False, got {self.missing_indicators!r}"
            )

    def _input(self, X, *, fitting: bool, declared: list[dict] | None) -> tuple[pd.DataFrame, _Rows]:
        where = f"{WHERE}.{'fit' if fitting else 'transform'}"
        if isinstance(X, pd.DataFrame):
            names = [f["name"] for f in declared] if declared is not None else None
            if names is None and not fitting and hasattr(self, "feature_names_in_"):
                names = [str(n) for n in self.feature_names_in_]
            if names is not None:
                require_columns(X, names, where=where)
                twice = sorted({str(c) for c in X.columns[X.columns.duplicated()]} & set(names))
                if twice:
                    raise SchemaError(f"{where}: column(s) {twice} appear more than once", column=twice[0])
                X = X.loc[:, names]
            validate_data(self, X, skip_check_array=True, reset=fitting)
            frame = X.reset_index(drop=True)
            frame.columns = [str(c) for c in X.columns]
            repeated = sorted(set(frame.columns[frame.columns.duplicated()]))
            if repeated:
                raise SchemaError(f"{where}: column names repeat: {repeated}", column=repeated[0])
            return frame, _Rows(pd.Series(X.index), len(X))
        if declared is None:
            array = validate_data(self, X, dtype=np.float64, ensure_all_finite="allow-nan", reset=fitting)
            names = [f"x{i}" for i in range(array.shape[1])]
        else:
            if not hasattr(X, "__array__") and not hasattr(X, "shape"):
                X = np.asarray(X, dtype=object)
            array = validate_data(self, X, dtype=None, ensure_all_finite=False, reset=fitting)
            names = [f["name"] for f in declared]
            if array.shape[1] != len(names):
                raise SchemaError(f"{where}: the array has {array.shape[1]} column(s) but {len(names)} "
                                  f"features are declared ({names}); pass a DataFrame with these columns")
        return pd.DataFrame(array, columns=names), _Rows(None, array.shape[0])

    # -- fit -----------------------------------------------------------------------------------------
    def fit(self, X, y=None):
        self._fit(X)
        return self

    def fit_transform(self, X, y=None, **fit_params):
        """Fit, then transform the training rows; out-of-range training values become missing."""
        frame, rows = self._fit(X)
        return self._transform(frame, rows, fitting=True)

    def _fit(self, X) -> tuple[pd.DataFrame, _Rows]:
        self._check_params()
        declared = None if self.features is None else normalize_features(self.features)
        frame, rows = self._input(X, fitting=True, declared=declared)
        if declared is None:
            if frame.columns.duplicated().any():
                raise SchemaError(f"{WHERE}.fit: column names repeat")
            declared = jsonable([FeatureConfig(name=c).model_dump() for c in frame.columns])
        range_report: dict[str, dict[str, Any]] = {}
        encodings = []
        for j, feature in enumerate(declared):
            series = frame.iloc[:, j].rename(feature["name"])
            state = self._learn(feature, series, rows)
            raw = self._raw(feature, state, series, rows, fitting=True, report=range_report)
            encodings.append(self._learn_numbers(feature, state, raw, len(series)))
        names_out: list[str] = []
        groups: dict[str, list[int]] = {}
        for feature, state in zip(declared, encodings, strict=True):
            columns = state["columns"] + ([f"{feature['name']}_missing"] if state["indicator"] else [])
            groups[feature["name"]] = list(range(len(names_out), len(names_out) + len(columns)))
            names_out += columns
        clash = sorted({n for n in names_out if names_out.count(n) > 1})
        if clash:
            raise ConfigError(f"{WHERE}: output column name(s) {clash} would repeat; rename the features")
        self.features_ = declared
        self.encodings_ = encodings
        self.range_report_ = range_report
        self.feature_names_out_ = names_out
        self.feature_groups_ = groups
        return frame, rows

    def _learn(self, feature: dict, series: pd.Series, rows: _Rows) -> dict[str, Any]:
        """The vocabulary of a feature: categories, positive/negative values, alleles."""
        name, kind = feature["name"], feature["kind"]
        low, high = _bounds(feature)
        state: dict[str, Any] = {"name": name, "kind": kind}
        if kind in ("numeric", "ordinal"):
            state.update(low=low, high=high, unit=feature.get("unit"))
        if kind == "numeric":
            state.update(log=bool(feature.get("log")), columns=[name])
        elif kind == "binary":
            state.update(columns=[name], positive=None, negative=None)
            if feature.get("positive"):
                positive = sorted({binary_key(p) for p in feature["positive"]})
                values = series.to_numpy(dtype=object)
                keys = pd.Series(["" if is_blank(v) else binary_key(v) for v in values])
                others = sorted(set(keys) - set(positive) - {""})
                if len(others) > 1:
                    odd = keys.isin(others[1:]).to_numpy()
                    raise SchemaError(
                        f"column {name!r}: a binary feature has two values, but besides the positive "
                        f"{feature['positive']} there are {others[:5]} (e.g. {rows.label} {rows.of(odd)}); "
                        "harmonize the values first or declare the feature categorical",
                        column=name, rows=rows.of(odd),
                    )
                state.update(positive=positive, negative=others)
        elif kind in ("categorical", "ordinal"):
            declared = feature.get("categories")
            if declared:
                keys = [value_key(c) for c in declared]
                twice = sorted({k for k in keys if keys.count(k) > 1})
                if twice:
                    raise ConfigError(f"{WHERE}: feature {name!r}: categories listed twice: {twice}")
            else:
                keys = _sorted_categories({value_key(v) for v in series if not is_blank(v)})
            state["categories"] = keys
            state["columns"] = [f"{name}_{k}" for k in keys] if kind == "categorical" else [name]
        elif kind == "genotype":
            alleles = [str(a).strip() for a in feature["alleles"]]
            state.update(alleles=alleles, columns=[f"{name}_{a}" for a in alleles])
        return state

    def _learn_numbers(self, feature: dict, state: dict, raw: np.ndarray, n_rows: int) -> dict[str, Any]:
        """Fill values, centre and scale from the training rows' raw codes."""
        name, kind = feature["name"], feature["kind"]
        observed = ~np.isnan(raw).any(axis=1)
        if not observed.any():
            why = ""
            if state.get("low") is not None or state.get("high") is not None:
                why = f" (values outside [{_fmt(state['low'])}, {_fmt(state['high'])}] count as missing)"
            raise DataError(
                f"column {name!r} has no observed value in the {n_rows} training row(s){why}; "
                "nothing can be learned or imputed: drop the feature or supply data",
                column=name,
            )
        seen = raw[observed]
        if kind in ("numeric", "ordinal"):
            fill = np.median(seen, axis=0) if self.impute == "median" else seen.mean(axis=0)
        elif kind == "genotype":
            fill = seen.mean(axis=0)
        elif kind == "binary":
            fill = np.array([1.0 if seen.mean() > 0.5 else 0.0])  # the mode; a tie goes to 0
        else:  # categorical: a missing category is all zeros (plus the indicator)
            fill = np.zeros(raw.shape[1])
        filled = np.where(np.isnan(raw), fill[None, :], raw)
        how = self.scale if kind in ("numeric", "ordinal", "genotype") else "none"
        centre, scale = _centre_and_scale(filled, how)
        state.update(
            fill=[float(v) for v in fill], center=centre, scale=scale,
            indicator=bool(self.missing_indicators and not observed.all()),
        )
        return state

    # -- values --------------------------------------------------------------------------------------
    def _guard(self, state: dict, values: pd.Series, original: pd.Series, rows: _Rows, *, fitting: bool,
               report: dict | None, policy: str = "missing") -> pd.Series:
        """Out-of-range values: missing (fit, or policy "missing") or ValueRangeError (policy "error")."""
        low, high = state.get("low"), state.get("high")
        if low is None and high is None:
            return values
        mask = outside_range(values, low, high)
        if not mask.any():
            return values
        if not fitting and policy == "error":
            named = pd.Series(values.to_numpy(), name=state["name"])
            check_range(named, low, high, unit=state.get("unit") or "", ids=rows.series, where=WHERE)
        if report is not None:
            bad = mask.to_numpy()
            report[state["name"]] = {
                "count": int(bad.sum()), "low": low, "high": high, "unit": state.get("unit"),
                "ids": jsonable(examples(rows.series[bad], _MAX_LISTED)),
                "values": jsonable(examples(original[bad], _MAX_LISTED)),
            }
        return values.mask(mask)

    def _raw(self, feature: dict, state: dict, series: pd.Series, rows: _Rows, *, fitting: bool,
             report: dict | None, policy: str = "missing") -> np.ndarray:
        """The feature's codes before imputation and scaling, shape (n, k); NaN where missing."""
        name, kind = state["name"], state["kind"]
        if kind == "numeric":
            values = as_numeric(series.rename(name), where=WHERE, ids=rows.ids)
            infinite = np.isinf(values.to_numpy())
            if infinite.any():
                raise ValueRangeError(
                    f"column {name!r}: infinite value(s) for {rows.label} {rows.of(infinite)}; "
                    "a measurement cannot be infinite: fix it or leave it empty (missing)",
                    column=name, rows=rows.of(infinite),
                )
            values = self._guard(state, values, values, rows, fitting=fitting, report=report, policy=policy)
            if state["log"]:
                negative = (values < 0).to_numpy()
                if negative.any():
                    raise ValueRangeError(
                        f"column {name!r} is log-transformed (log1p) but has negative value(s) "
                        f"{examples(values[negative])} for {rows.label} {rows.of(negative)}; fix them, or "
                        "declare a range so they count as out of range",
                        column=name, rows=rows.of(negative),
                    )
                values = np.log1p(values)
            return values.to_numpy(dtype=np.float64)[:, None]
        if kind == "binary":
            return self._binary(state, series, rows)[:, None]
        if kind == "genotype":
            return genotype_counts(series, state["alleles"], column=name, ids=rows.ids)
        # categorical and ordinal
        missing = blank_mask(series)
        if kind == "ordinal" and (state["low"] is not None or state["high"] is not None):
            numbers = pd.to_numeric(pd.Series(series.to_numpy(dtype=object)), errors="coerce").astype(float)
            guarded = self._guard(state, numbers, series, rows, fitting=fitting, report=report, policy=policy)
            missing |= (guarded.isna() & numbers.notna()).to_numpy()
        keys = np.array([value_key(v) if not m else "" for v, m in zip(series, missing, strict=True)],
                        dtype=object)
        position = {k: i for i, k in enumerate(state["categories"])}
        unknown = ~missing & ~np.isin(keys, list(position))
        if unknown.any():
            values = list(dict.fromkeys(keys[unknown]))
            what = f"category {values[0]!r}" if len(values) == 1 else f"categories {values[:5]}"
            raise SchemaError(
                f"column {name!r}: unknown {what} for {rows.label} {rows.of(unknown)}; expected one of "
                f"{state['categories']}. Fix the value, or add it to the feature's categories and retrain.",
                column=name, rows=rows.of(unknown),
            )
        codes = np.array([position.get(k, -1) for k in keys], dtype=np.int64)
        if kind == "ordinal":
            out = codes.astype(np.float64)[:, None]
            out[missing] = np.nan
            return out
        out = np.zeros((len(series), len(position)), dtype=np.float64)
        out[~missing, codes[~missing]] = 1.0
        out[missing] = np.nan
        return out

    def _binary(self, state: dict, series: pd.Series, rows: _Rows) -> np.ndarray:
        name = state["name"]
        missing = blank_mask(series)
        keys = np.array([binary_key(v) if not m else "" for v, m in zip(series, missing, strict=True)],
                        dtype=object)
        if state["positive"] is None:
            ones, zeros = BINARY_TRUE, BINARY_FALSE
        else:
            ones, zeros = set(state["positive"]), set(state["negative"])
        is_one, is_zero = np.isin(keys, list(ones)), np.isin(keys, list(zeros))
        unknown = ~missing & ~is_one & ~is_zero
        if unknown.any():
            shown = list(dict.fromkeys(value_key(v) for v in series.to_numpy(dtype=object)[unknown]))[:5]
            if state["positive"] is None:
                hint = (f"values other than 1/0, true/false, yes/no, y/n need the feature's `positive` "
                        f"(the value(s) meaning 1), e.g. positive: [{shown[0]}]")
            else:
                hint = f"expected one of {sorted(ones | zeros)} (positive: {state['positive']})"
            raise SchemaError(
                f"column {name!r}: cannot map {shown} to 0/1 for {rows.label} {rows.of(unknown)}; {hint}",
                column=name, rows=rows.of(unknown),
            )
        out = is_one.astype(np.float64)
        out[missing] = np.nan
        return out

    # -- transform -----------------------------------------------------------------------------------
    def transform(self, X, *, out_of_range=None):
        """Encode new rows with the training statistics; returns a float32 array.

        ``out_of_range`` ("missing" or "error") overrides the fitted policy for this call only: the
        preprocessor is never changed by transforming, so one fitted instance can serve many threads.
        """
        require_fitted(self, "encodings_")
        policy = self.out_of_range if out_of_range is None else out_of_range
        if policy not in ("missing", "error"):
            raise ConfigError(f"out_of_range must be 'missing' or 'error', got {policy!r}")
        declared = self.features_ if self.features is not None else None
        frame, rows = self._input(X, fitting=False, declared=declared)
        return self._transform(frame, rows, fitting=False, policy=policy)

    def _transform(self, frame: pd.DataFrame, rows: _Rows, *, fitting: bool, policy: str = "missing") -> np.ndarray:
        blocks = []
        for j, (feature, state) in enumerate(zip(self.features_, self.encodings_, strict=True)):
            series = frame.iloc[:, j].rename(state["name"])  # columns arrive in feature order
            raw = self._raw(feature, state, series, rows, fitting=fitting, report=None, policy=policy)
            missing = np.isnan(raw)
            fill = np.asarray(state["fill"], dtype=np.float64)
            filled = np.where(missing, fill[None, :], raw)
            blocks.append((filled - np.asarray(state["center"])) / np.asarray(state["scale"]))
            if state["indicator"]:
                blocks.append(missing.any(axis=1, keepdims=True).astype(np.float64))
        return np.hstack(blocks).astype(np.float32) if blocks else np.empty((len(frame), 0), np.float32)

    def get_feature_names_out(self, input_features=None):
        require_fitted(self, "encodings_")
        if input_features is None:
            return np.asarray(self.feature_names_out_, dtype=object)
        given = [str(c) for c in input_features]
        names_in = getattr(self, "feature_names_in_", None)
        if names_in is not None and [str(c) for c in names_in] != given:
            raise ValueError(f"input_features is not equal to feature_names_in_: {given} != {list(names_in)}")
        if len(given) != len(self.features_):
            raise ValueError(f"input_features should have length equal to number of features "
                             f"({len(self.features_)}), got {len(given)}")
        names = []
        for feature, new in zip(self.features_, given, strict=True):
            old = feature["name"]
            names += [new + self.feature_names_out_[i][len(old):] for i in self.feature_groups_[old]]
        return np.asarray(names, dtype=object)

    # -- JSON state ----------------------------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        """The fitted preprocessor as plain JSON data (``json.dumps`` works; no pickles)."""
        require_fitted(self, "encodings_")
        names_in = getattr(self, "feature_names_in_", None)
        return jsonable({
            "format": STATE_FORMAT,
            "estimator": type(self).__name__,
            "params": self.get_params(deep=False),
            "n_features_in": self.n_features_in_,
            "feature_names_in": None if names_in is None else list(names_in),
            "features": self.features_,
            "encodings": self.encodings_,
            "range_report": self.range_report_,
            "feature_names_out": self.feature_names_out_,
            "feature_groups": self.feature_groups_,
        })

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> TabularPreprocessor:
        """Rebuild a fitted preprocessor from ``to_state()`` output; transform gives identical output."""
        expected = {"format", "estimator", "params", "n_features_in", "feature_names_in", "features",
                    "encodings", "range_report", "feature_names_out", "feature_groups"}
        check_state(state, cls, expected, "a preprocessor")
        try:
            new = cls(**state["params"])
        except TypeError as exc:
            raise ArtifactError(f"{cls.__name__}.from_state: unexpected parameters: {exc}") from None
        new.n_features_in_ = int(state["n_features_in"])
        if state["feature_names_in"] is not None:
            new.feature_names_in_ = np.asarray(state["feature_names_in"], dtype=object)
        new.features_ = [dict(f) for f in state["features"]]
        new.encodings_ = [dict(e) for e in state["encodings"]]
        new.range_report_ = dict(state["range_report"])
        new.feature_names_out_ = list(state["feature_names_out"])
        new.feature_groups_ = {k: list(v) for k, v in state["feature_groups"].items()}
        return new

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.transformer_tags.preserves_dtype = []  # always float32 out
        return tags
