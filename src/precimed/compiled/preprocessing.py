"""A fitted ``TabularPreprocessor`` compiled to array operations on a fixed feature order.

Scoring has two stages. The first turns each feature's values into *raw codes*, one float64 column per
numeric, binary, ordinal or categorical feature (a categorical's code is its category's position) and one per
allele for a genotype; NaN means missing, and an out-of-range value is NaN when the policy allows it. The
second is pure arithmetic on the whole matrix at once: gather the output columns, one-hot the categorical
codes, fill the missing with the training fill, subtract the centre, divide by the scale, add the missing
indicators. That second stage is the same element-wise arithmetic ``TabularPreprocessor.transform`` does, so
the encoded matrix is identical bit for bit (``tests/test_compiled.py``); it is also what the ONNX graph of a
bundle computes (``precimed.compiled.onnx_graph``).

The first stage checks values the way the reference path does, but it only *accepts*: a value it cannot
vouch for (a string in a numeric column, an unknown category, an out-of-range value under the "error"
policy, a column of mixed Python types) raises ``Declined``, and the caller runs the reference path, which
either scores the input or raises its own, unchanged, message. So the fast path never invents an error
message and never scores what the reference path would refuse.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from precimed.errors import SchemaError
from precimed.preprocess.encoders import genotype_counts, is_blank, value_key
from precimed.preprocess.tabular import BINARY_FALSE, BINARY_TRUE, TabularPreprocessor, binary_key

__all__ = ["CompiledPreprocessor", "Declined"]

#: the type families a categorical, binary or ordinal column may hold on the fast path (pandas' infer_dtype
#: names); within one family equal Python values give equal category keys, so factorizing is safe
_SAFE_FAMILIES = frozenset({"string", "integer", "floating", "mixed-integer-float", "boolean", "empty"})


class Declined(Exception):  # noqa: N818 - a signal between two paths, not an error a user sees
    """The fast path cannot vouch for this input; run the reference path (which scores it or says why not)."""


@dataclass(frozen=True)
class _Feature:
    """One declared feature as the first stage needs it."""

    name: str
    kind: str
    raw: int  # first raw column
    width: int  # raw columns (alleles for a genotype, else 1)
    low: float | None = None
    high: float | None = None
    log: bool = False
    codes: Mapping[str, int] = field(default_factory=dict)  # category key -> position
    ones: frozenset[str] = frozenset()
    zeros: frozenset[str] = frozenset()
    alleles: tuple[str, ...] = ()

    @property
    def guarded(self) -> bool:
        return self.low is not None or self.high is not None

    def outside(self, value: float) -> bool:
        return (self.low is not None and value < self.low) or (self.high is not None and value > self.high)


class CompiledPreprocessor:
    """``TabularPreprocessor.transform`` as two array stages; see the module docstring.

    ``names`` is the fixed feature order; ``n_raw`` the raw-code width; ``encode(raw)`` the arithmetic stage.
    The arrays ``source``, ``one_hot``, ``fill``, ``center``, ``scale`` and ``indicators`` describe that stage
    completely (the ONNX graph is built from them).
    """

    def __init__(self, pre: TabularPreprocessor) -> None:
        features: list[_Feature] = []
        source: list[int] = []
        one_hot: list[int] = []
        fill: list[float] = []
        center: list[float] = []
        scale: list[float] = []
        indicators: list[tuple[int, tuple[int, ...]]] = []  # (output column, raw columns)
        raw = 0
        for enc in pre.encodings_:
            kind = enc["kind"]
            width = len(enc["alleles"]) if kind == "genotype" else 1
            feature = _Feature(
                name=enc["name"], kind=kind, raw=raw, width=width, low=enc.get("low"), high=enc.get("high"),
                log=bool(enc.get("log")), codes={k: i for i, k in enumerate(enc.get("categories") or [])},
                ones=frozenset(BINARY_TRUE if enc.get("positive") is None else enc["positive"]),
                zeros=frozenset(BINARY_FALSE if enc.get("positive") is None else enc["negative"]),
                alleles=tuple(enc.get("alleles") or ()))
            features.append(feature)
            for j in range(len(enc["columns"])):
                if kind == "categorical":
                    source.append(raw)
                    one_hot.append(j)
                else:
                    source.append(raw + j)
                    one_hot.append(-1)
            fill += [float(v) for v in enc["fill"]]
            center += [float(v) for v in enc["center"]]
            scale += [float(v) for v in enc["scale"]]
            if enc["indicator"]:
                indicators.append((len(source), tuple(range(raw, raw + width))))
                source.append(raw)
                one_hot.append(-1)
                fill.append(0.0)
                center.append(0.0)
                scale.append(1.0)
            raw += width
        self.features = features
        self.names = [f.name for f in features]
        self.n_raw = raw
        self.n_out = len(source)
        self.feature_names_out = list(pre.feature_names_out_)
        self.source = np.asarray(source, dtype=np.int64)
        self.one_hot = np.asarray(one_hot, dtype=np.int64)
        self.fill = np.asarray(fill, dtype=np.float64)
        self.center = np.asarray(center, dtype=np.float64)
        self.scale = np.asarray(scale, dtype=np.float64)
        self.indicators = indicators
        self.log_columns = np.asarray([f.raw for f in features if f.kind == "numeric" and f.log], dtype=np.int64)
        self._hot = np.flatnonzero(self.one_hot >= 0)
        self._simple_indicators = all(len(cols) == 1 for _, cols in indicators)
        self._indicator_out = np.asarray([j for j, _ in indicators], dtype=np.int64)
        self._indicator_src = np.asarray([cols[0] for _, cols in indicators], dtype=np.int64)

    # ----- stage 2: arithmetic ------------------------------------------------------------------------------
    def encode(self, raw: np.ndarray) -> np.ndarray:
        """Raw codes (n, n_raw) float64, log already applied -> the encoded float32 matrix (n, n_out)."""
        wide = raw[:, self.source]
        if self._hot.size:
            codes = wide[:, self._hot]
            wide[:, self._hot] = np.where(np.isnan(codes), np.nan, codes == self.one_hot[self._hot])
        if self._indicator_out.size:
            if self._simple_indicators:
                wide[:, self._indicator_out] = np.isnan(raw[:, self._indicator_src])
            else:
                for j, cols in self.indicators:
                    wide[:, j] = np.isnan(raw[:, list(cols)]).any(axis=1)
        filled = np.where(np.isnan(wide), self.fill, wide)
        return ((filled - self.center) / self.scale).astype(np.float32)

    def apply_log(self, raw: np.ndarray) -> np.ndarray:
        """log1p of the log features' codes, in place (refusing negatives, as the reference does); the input of
        ``encode`` and of the ONNX graph."""
        if self.log_columns.size:
            logged = raw[:, self.log_columns]
            if (logged < 0).any():  # NaN compares False: only real negative values
                raise Declined("a log feature holds a negative value")
            raw[:, self.log_columns] = np.log1p(logged)
        return raw

    def finish(self, raw: np.ndarray) -> np.ndarray:
        """``apply_log`` then ``encode``: raw codes to the encoded float32 matrix."""
        return self.encode(self.apply_log(raw))

    # ----- stage 1: columns (bulk) ----------------------------------------------------------------------------
    def raw_columns(self, columns: Mapping[str, Any], n: int, *, out_of_range: str) -> np.ndarray:
        """Raw codes from one array (or Series) per feature, each of length ``n``; ``Declined`` if unsure."""
        raw = np.empty((n, self.n_raw), dtype=np.float64)
        for f in self.features:
            values = columns[f.name]
            if f.kind == "numeric":
                raw[:, f.raw] = self._numeric_column(f, values, out_of_range)
            elif f.kind == "genotype":
                raw[:, f.raw:f.raw + f.width] = self._genotype(f, pd.Series(np.asarray(values, dtype=object)))
            else:
                raw[:, f.raw] = self._coded_column(f, values, out_of_range)
        return raw

    @staticmethod
    def _numeric_column(f: _Feature, values: Any, out_of_range: str) -> np.ndarray:
        array = np.asarray(values)
        if array.dtype.kind not in "biuf":  # text, objects, dates: the reference path converts or refuses
            raise Declined(f"{f.name}: not a numeric array")
        x = array.astype(np.float64)
        if np.isinf(x).any():
            raise Declined(f"{f.name}: infinite value")
        if f.guarded:
            with np.errstate(invalid="ignore"):
                bad = ((x < f.low) if f.low is not None else False) | ((x > f.high) if f.high is not None else False)
            if np.any(bad):
                if out_of_range == "error":
                    raise Declined(f"{f.name}: out of range")
                x[bad] = np.nan
        return x

    def _coded_column(self, f: _Feature, values: Any, out_of_range: str) -> np.ndarray:
        """Binary 0/1, ordinal or categorical codes of a column, through its distinct values only."""
        array = values.to_numpy() if isinstance(values, pd.Series) else np.asarray(values)
        if array.dtype.kind == "O" and pd.api.types.infer_dtype(array, skipna=True) not in _SAFE_FAMILIES:
            raise Declined(f"{f.name}: mixed value types")
        if array.dtype.kind not in "biufO":
            raise Declined(f"{f.name}: unexpected dtype {array.dtype}")
        codes, uniques = pd.factorize(array, use_na_sentinel=True)
        mapped = np.array([self.code(f, u, out_of_range) for u in uniques] + [np.nan], dtype=np.float64)
        return mapped[codes]  # code -1 (missing) takes the last entry, NaN

    def code(self, f: _Feature, value: Any, out_of_range: str) -> float:
        """One value's raw code for a binary, ordinal or categorical feature (NaN when missing)."""
        if is_blank(value):
            return math.nan
        if f.kind == "binary":
            key = binary_key(value)
            if key in f.ones:
                return 1.0
            if key in f.zeros:
                return 0.0
            raise Declined(f"{f.name}: not a known binary value")
        if f.kind == "ordinal" and f.guarded:
            number = pd.to_numeric(pd.Series([value], dtype=object), errors="coerce").iloc[0]
            if not pd.isna(number) and f.outside(float(number)):
                if out_of_range == "error":
                    raise Declined(f"{f.name}: out of range")
                return math.nan
        position = f.codes.get(value_key(value))
        if position is None:
            raise Declined(f"{f.name}: unknown category")
        return float(position)

    @staticmethod
    def _genotype(f: _Feature, series: pd.Series) -> np.ndarray:
        try:
            return genotype_counts(series, f.alleles, column=f.name)
        except SchemaError:
            raise Declined(f"{f.name}: unreadable genotype") from None

    # ----- stage 1: records (a few patients) ------------------------------------------------------------------
    def raw_records(self, records: Sequence[Mapping[str, Any]], *, out_of_range: str) -> np.ndarray:
        """Raw codes from one mapping per patient (absent key = missing), value by value in Python: for a few
        patients this is far cheaper than building arrays per column."""
        raw = np.empty((len(records), self.n_raw), dtype=np.float64)
        nan = math.nan
        for i, record in enumerate(records):
            row = raw[i]
            for f in self.features:
                value = record.get(f.name)
                if f.kind == "numeric":
                    if value is None:
                        row[f.raw] = nan
                        continue
                    if isinstance(value, bool) or not isinstance(value, int | float):
                        raise Declined(f"{f.name}: not a number")
                    x = float(value)
                    if math.isinf(x):
                        raise Declined(f"{f.name}: infinite value")
                    if f.guarded and f.outside(x):
                        if out_of_range == "error":
                            raise Declined(f"{f.name}: out of range")
                        x = nan
                    row[f.raw] = x
                elif f.kind == "genotype":
                    row[f.raw:f.raw + f.width] = self._genotype(f, pd.Series([value], dtype=object))[0]
                else:
                    if isinstance(value, float) and math.isnan(value):
                        row[f.raw] = nan
                    elif value is not None and not isinstance(value, str | int | float):
                        raise Declined(f"{f.name}: unexpected value type")
                    else:
                        row[f.raw] = self.code(f, value, out_of_range)
        return raw
