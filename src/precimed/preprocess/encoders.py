"""Small scikit-learn transformers: a range guard and a genotype encoder.

Both accept arrays or DataFrames. A DataFrame's index is the patient id: errors name the ids of the
offending rows (for arrays they name row positions). The functions doing the work
(`genotype_counts`, `infer_alleles`, `value_key`, ...) are public so that `TabularPreprocessor` and
`quality_report` parse values exactly as these transformers do.
"""

from __future__ import annotations

import math
import re
from collections.abc import Hashable, Sequence

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin
from sklearn.utils.validation import validate_data

from precimed.errors import ConfigError, NotFittedError, SchemaError
from precimed.schema import check_range, examples, outside_range

__all__ = [
    "GenotypeEncoder",
    "RangeGuard",
    "UnreadableGenotype",
    "blank_mask",
    "genotype_counts",
    "infer_alleles",
    "is_blank",
    "parse_genotype",
    "value_key",
]

# Spellings of an absent genotype call (compared after strip + lower-case).
MISSING_GENOTYPES = frozenset({"", ".", "./.", ".|.", "na", "nan", "none"})
_SEPARATORS = re.compile(r"[/|]")


# --------------------------------------------------------------------------------------------------
# shared helpers
# --------------------------------------------------------------------------------------------------
def is_blank(value: object) -> bool:
    """True for NaN / None / pd.NA and for empty or whitespace-only strings: a missing value."""
    if isinstance(value, str):
        return value.strip() == ""
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # lists, arrays: not a scalar, not missing
        return False


def blank_mask(values: pd.Series | Sequence[object]) -> np.ndarray:
    """Boolean array: which values are missing (see `is_blank`); works for any dtype."""
    items = values.to_numpy(dtype=object) if isinstance(values, pd.Series) else values
    return np.fromiter((is_blank(v) for v in items), dtype=bool, count=len(items))


def value_key(value: object) -> str:
    """A canonical text for a category value, so that 1, 1.0, "1" and " 1 " compare equal.

    Booleans give "True" / "False"; whole floats lose their ".0"; strings are stripped (case is kept).
    """
    if isinstance(value, bool | np.bool_):
        return "True" if value else "False"
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        number = float(value)
        return str(int(number)) if number.is_integer() else repr(number)
    return str(value).strip()


def ids_for(ids: pd.Series | None, mask: np.ndarray | pd.Series) -> list[object]:
    """A few example ids (or row positions when `ids` is None) where `mask` is true."""
    mask = np.asarray(mask, dtype=bool)
    if ids is None:
        return examples(np.flatnonzero(mask))
    return examples(ids.to_numpy()[mask])


def _row_label(ids: pd.Series | None) -> str:
    return "patient id(s)" if ids is not None else "row(s)"


def require_fitted(estimator: BaseEstimator, attribute: str) -> None:
    if not hasattr(estimator, attribute):
        raise NotFittedError(
            f"{type(estimator).__name__} is not fitted yet; call fit() on the training rows first"
        )


def _names_out_base(estimator: BaseEstimator, input_features: Sequence[str] | None) -> list[str]:
    """Input names for get_feature_names_out, checked the way scikit-learn checks them."""
    names_in = getattr(estimator, "feature_names_in_", None)
    n = estimator.n_features_in_
    if input_features is None:
        return [str(c) for c in names_in] if names_in is not None else [f"x{i}" for i in range(n)]
    given = [str(c) for c in input_features]
    if names_in is not None and list(map(str, names_in)) != given:
        raise ValueError(f"input_features is not equal to feature_names_in_: {given} != {list(names_in)}")
    if len(given) != n:
        raise ValueError(f"input_features should have length equal to number of features ({n}), "
                         f"got {len(given)}")
    return given


def _frame_and_ids(
    estimator: BaseEstimator, X: object, *, reset: bool
) -> tuple[pd.DataFrame, pd.Series | None]:
    """Any 2-D input as a frame with a positional index, plus the patient ids (None for arrays).

    Values are left as they are (strings stay strings); column count and names are checked
    against fit the scikit-learn way.
    """
    if isinstance(X, pd.DataFrame):
        validate_data(estimator, X, skip_check_array=True, reset=reset)
        ids = pd.Series(X.index)
        frame = X.reset_index(drop=True)
        frame.columns = [str(c) for c in X.columns]
        return frame, ids
    if not hasattr(X, "__array__") and not hasattr(X, "shape"):
        X = np.asarray(X, dtype=object)  # lists: keep NaN as NaN, not as the string "nan"
    array = validate_data(estimator, X, dtype=None, ensure_all_finite=False, reset=reset)
    frame = pd.DataFrame(array, columns=[f"x{i}" for i in range(array.shape[1])])
    return frame, None


# --------------------------------------------------------------------------------------------------
# RangeGuard
# --------------------------------------------------------------------------------------------------
class RangeGuard(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """Treat values outside a plausible range [low, high] as missing, or refuse them.

    Parameters
    ----------
    low, high : float, sequence of float, or None, default=None
        Inclusive bounds; a sequence gives one bound per column. None = unbounded on that side.
    on_violation : {"missing", "error"}, default="missing"
        What ``transform`` does with an out-of-range value: set it to NaN, or raise
        ValueRangeError naming the column and the patient ids. ``fit`` never raises; it counts.

    Attributes
    ----------
    n_out_of_range_ : ndarray of int, shape (n_features,)
        Out-of-range values per column in the rows seen by ``fit``.
    n_features_in_ : int
    feature_names_in_ : ndarray of str (only when fitted on a DataFrame with string column names)
    """

    def __init__(self, low=None, high=None, on_violation="missing"):
        self.low = low
        self.high = high
        self.on_violation = on_violation

    def _bounds(self, n_features: int) -> list[tuple[float | None, float | None]]:
        if self.on_violation not in ("missing", "error"):
            raise ConfigError(
                f"RangeGuard: on_violation must be 'missing' or 'error', got {self.on_violation!r}"
            )
        lows, highs = _per_column(self.low, n_features, "low"), _per_column(self.high, n_features, "high")
        for j, (lo, hi) in enumerate(zip(lows, highs, strict=True)):
            if lo is not None and hi is not None and lo > hi:
                raise ConfigError(f"RangeGuard: low {lo} > high {hi} for column {j}")
        return list(zip(lows, highs, strict=True))

    def fit(self, X, y=None):
        array = validate_data(
            self, X, dtype=[np.float64, np.float32], ensure_all_finite="allow-nan", reset=True
        )
        bounds = self._bounds(array.shape[1])
        self.n_out_of_range_ = np.array(
            [int(outside_range(pd.Series(array[:, j]), lo, hi).sum()) for j, (lo, hi) in enumerate(bounds)],
            dtype=np.int64,
        )
        return self

    def transform(self, X):
        require_fitted(self, "n_out_of_range_")
        ids = pd.Series(X.index) if isinstance(X, pd.DataFrame) else None
        array = validate_data(
            self, X, dtype=[np.float64, np.float32], ensure_all_finite="allow-nan", reset=False, copy=True
        )
        names = _names_out_base(self, None)
        for j, (lo, hi) in enumerate(self._bounds(array.shape[1])):
            column = pd.Series(array[:, j], name=names[j])
            mask = outside_range(column, lo, hi)
            if not mask.any():
                continue
            if self.on_violation == "error":
                row_ids = ids if ids is not None else pd.Series(np.arange(len(column)))
                check_range(column, lo, hi, unit="", ids=row_ids, where="RangeGuard")
            array[mask.to_numpy(), j] = np.nan
        return array

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags


def _per_column(bound, n_features: int, what: str) -> list[float | None]:
    if bound is None or np.isscalar(bound):
        values = [bound] * n_features
    else:
        values = list(bound)
        if len(values) != n_features:
            raise ConfigError(
                f"RangeGuard: {what} has {len(values)} value(s) but X has {n_features} column(s)"
            )
    out: list[float | None] = []
    for v in values:
        is_number = isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool)
        if v is None:
            out.append(None)
        elif is_number and not math.isnan(v):
            out.append(float(v))
        else:
            raise ConfigError(f"RangeGuard: {what} must be a number or None, got {v!r}")
    return out


# --------------------------------------------------------------------------------------------------
# genotypes
# --------------------------------------------------------------------------------------------------
class UnreadableGenotype(ValueError):
    """One genotype value cannot be read; `reason` says why (caught and reported per column)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _genotype_text(value: object) -> str | None:
    """The value as text; None when it is a missing call."""
    if isinstance(value, bool | np.bool_):
        raise UnreadableGenotype(f"a boolean ({value}) is not a genotype")
    if isinstance(value, float | np.floating) and not math.isnan(value) and float(value).is_integer():
        value = int(value)  # "12" read from a CSV as the number 12
    if is_blank(value):
        return None
    text = str(value).strip()
    return None if text.lower() in MISSING_GENOTYPES else text


def parse_genotype(value: object, alleles: Sequence[str], sep: str | None = None) -> tuple[str, str] | None:
    """Read one genotype as a pair of declared alleles; None when the call is missing.

    Accepts "E3/E4", "E3|E4", "e3e4" (matched against `alleles`, longest first), VCF "0/1" and
    "1|1". A call with a missing half ("0/.") is missing. Raises UnreadableGenotype otherwise.
    """
    text = _genotype_text(value)
    if text is None:
        return None
    lookup = {a.upper(): a for a in alleles}
    if sep is not None and sep not in text:
        parts = [text]
    else:
        parts = _SEPARATORS.split(text) if sep is None else text.split(sep)
    if len(parts) == 1:  # no separator: try every split into two declared alleles, longest first
        upper = text.upper()
        for allele in sorted(lookup, key=len, reverse=True):
            if upper.startswith(allele) and upper[len(allele):] in lookup:
                return lookup[allele], lookup[upper[len(allele):]]
        raise UnreadableGenotype(f"{text!r} is not two of the declared alleles")
    if len(parts) != 2:
        raise UnreadableGenotype(f"{text!r} does not have exactly two alleles")
    first, second = (p.strip() for p in parts)
    if first == "." or second == ".":
        return None
    unknown = [p for p in (first, second) if p.upper() not in lookup]
    if unknown:
        raise UnreadableGenotype(f"allele {unknown[0]!r} is not one of the declared alleles")
    return lookup[first.upper()], lookup[second.upper()]


def _natural_key(text: str) -> list[object]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def _unreadable_error(column: str, bad: dict[str, list[object]], n_bad: int, alleles: Sequence[str],
                      reasons: list[str], label: str, all_ids: list[object]) -> SchemaError:
    shown = list(bad)[:5]
    a, b = (list(alleles) + list(alleles))[:2] if alleles else ("A", "G")
    detail = f" ({reasons[0]})" if reasons else ""
    return SchemaError(
        f"column {column!r}: cannot read genotype(s) {shown} for {label} {all_ids[:5]}{detail}; "
        f"expected two of the alleles {list(alleles)}, written like '{a}/{b}', '{a}|{b}' or '{a}{b}' "
        f"(missing calls: './.' or empty). {n_bad} value(s) affected.",
        column=column,
        rows=all_ids[:5],
    )


def infer_alleles(values: pd.Series, *, sep: str | None = None, column: str,
                  ids: pd.Series | None = None) -> list[str]:
    """The alleles seen in a column of separated genotypes ("A/G", "0|1"), upper-cased, sorted.

    Concatenated calls ("E3E4") cannot be split without knowing the alleles: SchemaError.
    """
    seen: set[str] = set()
    bad: dict[str, list[object]] = {}
    positions = ids.to_numpy() if ids is not None else np.arange(len(values))
    for value, row in zip(values.to_numpy(), positions, strict=True):
        try:
            text = _genotype_text(value)
        except UnreadableGenotype:
            bad.setdefault(repr(value), []).append(row)
            continue
        if text is None:
            continue
        parts = text.split(sep) if sep else _SEPARATORS.split(text)
        parts = [p.strip() for p in parts]
        if len(parts) != 2 or "" in parts:
            bad.setdefault(text, []).append(row)
        else:
            seen.update(p.upper() for p in parts if p != ".")
    if bad:
        all_ids = [examples([i])[0] for rows in bad.values() for i in rows]
        raise SchemaError(
            f"column {column!r}: cannot infer the alleles from genotype(s) {list(bad)[:5]} for "
            f"{_row_label(ids)} {all_ids[:5]}; write them with a separator ('A/G', '0|1') or declare "
            "the alleles (e.g. alleles: [E2, E3, E4]).",
            column=column,
            rows=all_ids[:5],
        )
    return sorted(seen, key=_natural_key)


def genotype_counts(values: pd.Series, alleles: Sequence[str], *, sep: str | None = None, column: str,
                    ids: pd.Series | None = None) -> np.ndarray:
    """Allele counts, shape (n, len(alleles)): 0, 1 or 2 per allele; a missing call is NaN everywhere.

    Every unreadable value is collected, then one SchemaError names the column, the values, the
    patient ids and the expected alleles.
    """
    alleles = list(alleles)
    position = {a: k for k, a in enumerate(alleles)}
    out = np.zeros((len(values), len(alleles)), dtype=np.float64)
    cache: dict[Hashable, tuple[str, str] | None | UnreadableGenotype] = {}
    bad: dict[str, list[object]] = {}
    reasons: list[str] = []
    n_bad = 0
    positions = ids.to_numpy() if ids is not None else np.arange(len(values))
    for i, (value, row) in enumerate(zip(values.to_numpy(), positions, strict=True)):
        key: Hashable = ("nan",) if is_blank(value) else (type(value).__name__, value)
        if key not in cache:
            try:
                cache[key] = parse_genotype(value, alleles, sep)
            except UnreadableGenotype as exc:
                cache[key] = exc
        pair = cache[key]
        if isinstance(pair, UnreadableGenotype):
            n_bad += 1
            shown = str(value).strip() if isinstance(value, str) else value
            if shown not in bad and pair.reason not in reasons:
                reasons.append(pair.reason)
            bad.setdefault(shown, []).append(examples([row])[0])
        elif pair is None:
            out[i, :] = np.nan
        else:
            out[i, position[pair[0]]] += 1
            out[i, position[pair[1]]] += 1
    if bad:
        all_ids = [i for rows in bad.values() for i in rows]
        raise _unreadable_error(column, bad, n_bad, alleles, reasons, _row_label(ids), all_ids)
    return out


def _check_alleles(alleles: Sequence[str], where: str) -> list[str]:
    if isinstance(alleles, str) or not all(isinstance(a, str) and a.strip() for a in alleles) or not alleles:
        raise ConfigError(f"{where}: alleles must be a non-empty list of strings, e.g. ['E2', 'E3', 'E4']; "
                          f"got {alleles!r}")
    cleaned = [a.strip() for a in alleles]
    upper = [a.upper() for a in cleaned]
    dupes = sorted({a for a in upper if upper.count(a) > 1})
    if dupes:
        raise ConfigError(f"{where}: alleles listed twice (case is ignored): {dupes}")
    return cleaned


class GenotypeEncoder(TransformerMixin, BaseEstimator):
    """Genotype strings to allele counts: one column ``<col>_<allele>`` per allele, valued 0, 1 or 2.

    Reads "E3E4", "E3/E4", "E3|E4", "e3/e4" (case is ignored), VCF GT "0/1", "1|1" and REF/ALT
    letters "A/G". Missing calls ("./.", "", NaN) give NaN in every output column of that row.

    Parameters
    ----------
    alleles : list of str or None, default=None
        The declared alleles, e.g. ["E2", "E3", "E4"] or ["0", "1"]. Values are matched against
        them (longest first), so "E3E4" needs no separator. None: learn them in ``fit`` from
        separated calls ("A/G"), sorted.
    sep : str or None, default=None
        The allele separator; None accepts "/" and "|".
    encoding : {"counts", "dominant", "recessive"}, default="counts"
        "dominant": 1 if the genotype carries ``effect_allele`` at least once; "recessive": 1 if
        twice. Both give one output column ``<col>_<effect_allele>_<encoding>``.
    effect_allele : str or None, default=None
        Required by "dominant" and "recessive".

    Attributes
    ----------
    alleles_ : list of list of str
        The alleles of each input column.
    n_features_in_ : int
    feature_names_in_ : ndarray of str (only when fitted on a DataFrame with string column names)
    """

    def __init__(self, alleles=None, sep=None, encoding="counts", effect_allele=None):
        self.alleles = alleles
        self.sep = sep
        self.encoding = encoding
        self.effect_allele = effect_allele

    def _check_params(self) -> None:
        if self.encoding not in ("counts", "dominant", "recessive"):
            raise ConfigError(f"GenotypeEncoder: encoding must be 'counts', 'dominant' or 'recessive', "
                              f"got {self.encoding!r}")
        if self.encoding != "counts" and not isinstance(self.effect_allele, str):
            raise ConfigError(f"GenotypeEncoder: encoding {self.encoding!r} needs effect_allele "
                              "(the allele whose carriers are coded 1)")
        if self.sep is not None and (not isinstance(self.sep, str) or not self.sep):
            raise ConfigError(f"GenotypeEncoder: sep must be a non-empty string or None, got {self.sep!r}")

    def fit(self, X, y=None):
        self._check_params()
        frame, ids = _frame_and_ids(self, X, reset=True)
        declared = None if self.alleles is None else _check_alleles(self.alleles, "GenotypeEncoder")
        alleles_ = []
        for column in frame.columns:
            alleles = declared or infer_alleles(frame[column], sep=self.sep, column=column, ids=ids)
            if self.effect_allele is not None:
                upper = [a.upper() for a in alleles]
                if self.effect_allele.upper() not in upper:
                    if declared is not None:
                        raise ConfigError(f"GenotypeEncoder: effect_allele {self.effect_allele!r} is not one "
                                          f"of the alleles {alleles}")
                    alleles = sorted([*alleles, self.effect_allele.upper()], key=_natural_key)
            if not alleles:
                raise SchemaError(f"column {column!r}: no genotype observed, so no alleles can be learned; "
                                  "declare the alleles", column=column)
            genotype_counts(frame[column], alleles, sep=self.sep, column=column, ids=ids)  # validate
            alleles_.append(list(alleles))
        self.alleles_ = alleles_
        return self

    def _effect(self, alleles: list[str]) -> int:
        return [a.upper() for a in alleles].index(self.effect_allele.upper())

    def transform(self, X):
        require_fitted(self, "alleles_")
        frame, ids = _frame_and_ids(self, X, reset=False)
        blocks = []
        for column, alleles in zip(frame.columns, self.alleles_, strict=True):
            counts = genotype_counts(frame[column], alleles, sep=self.sep, column=column, ids=ids)
            if self.encoding == "counts":
                blocks.append(counts)
                continue
            effect = counts[:, self._effect(alleles)]
            coded = (effect >= (1 if self.encoding == "dominant" else 2)).astype(np.float64)
            coded[np.isnan(effect)] = np.nan
            blocks.append(coded[:, None])
        return np.hstack(blocks) if blocks else np.empty((len(frame), 0))

    def get_feature_names_out(self, input_features=None):
        require_fitted(self, "alleles_")
        names = []
        for base, alleles in zip(_names_out_base(self, input_features), self.alleles_, strict=True):
            if self.encoding == "counts":
                names += [f"{base}_{a}" for a in alleles]
            else:
                names.append(f"{base}_{alleles[self._effect(alleles)]}_{self.encoding}")
        return np.asarray(names, dtype=object)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.input_tags.string = True
        tags.transformer_tags.preserves_dtype = []
        return tags
