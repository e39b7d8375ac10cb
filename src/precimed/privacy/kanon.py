"""Re-identification risk: k-anonymity and l-diversity over quasi-identifiers; generalization and suppression.

An *equivalence class* is a set of rows sharing the same values on every quasi-identifier (missing
counts as a value of its own). A table is k-anonymous when every class has at least k rows; it is
(distinct) l-diverse for a sensitive column when every class holds at least l distinct values of it.
Reports give class *sizes* only, never the quasi-identifier values of a class.

:func:`achieve_k` reaches a target k in two steps: it coarsens quasi-identifiers along their
hierarchies (age: exact -> 5 -> 10 -> 20-year bands -> "*"; ZIP: 3 -> 2 -> 1 digits -> "*"; dates:
year -> decade -> "*"; any other column: as is -> "*"), greedily choosing the coarsening that leaves the
fewest rows in too-small classes, until at most ``max_suppression`` of the rows would need
suppressing; then it suppresses (drops) the rows still in classes smaller than k, and counts them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from precimed.errors import ConfigError
from precimed.privacy.safe_harbor import age_band, age_number, generalize_age, zip_prefix
from precimed.schema import require_columns

_MISSING = "(missing)"


# ------------------------------------------------------------------------------------------ hierarchies
def _map_unique(values: pd.Series, fn: Callable[[object], object]) -> pd.Series:
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    table = np.array([fn(u) for u in uniques] + [None], dtype=object)
    out = pd.Series(table[codes], index=values.index, dtype=object)
    return out.where(out.notna(), np.nan)


def _age_exact(values: pd.Series) -> pd.Series:
    return generalize_age(values)[0]


def _age_bands(width: int) -> Callable[[pd.Series], pd.Series]:
    return lambda values: _map_unique(values, lambda v: age_band(v, width))


def _zip(digits: int) -> Callable[[pd.Series], pd.Series]:
    return lambda values: _map_unique(values, lambda v: zip_prefix(v, digits))


def _date_year(values: pd.Series) -> pd.Series:
    return _map_unique(values, _year_of)


def _date_decade(values: pd.Series) -> pd.Series:
    return _map_unique(values, lambda v: None if _year_of(v) is None else f"{int(_year_of(v)) // 10 * 10}s")


def _year_of(value: object) -> str | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, int | np.integer) and 1000 <= int(value) <= 9999:
        return str(int(value))
    text = str(value).strip()
    if len(text) >= 4 and text[:4].isdigit():
        return text[:4]
    try:
        return str(pd.Timestamp(text).year)
    except (ValueError, TypeError):
        return None


def _identity(values: pd.Series) -> pd.Series:
    return values


def _any(values: pd.Series) -> pd.Series:
    """The top of every hierarchy: the attribute is withheld ("*"); missing stays missing."""
    return pd.Series(np.where(values.notna(), "*", None), index=values.index, dtype=object)


HIERARCHIES: dict[str, list[tuple[str, Callable[[pd.Series], pd.Series]]]] = {
    "age": [("age_90plus", _age_exact), ("age5", _age_bands(5)), ("age10", _age_bands(10)), ("age20", _age_bands(20)),
            ("age_any", _any)],
    "zip": [("zip3", _zip(3)), ("zip2", _zip(2)), ("zip1", _zip(1)), ("zip_any", _any)],
    "date": [("year", _date_year), ("decade", _date_decade), ("date_any", _any)],
    "none": [("none", _identity), ("any", _any)],
}

# generalization name -> (hierarchy, level)
GENERALIZATIONS: dict[str, tuple[str, int]] = {
    name: (hier, level) for hier, levels in HIERARCHIES.items() for level, (name, _) in enumerate(levels)
}


_AGE_NAME = re.compile(r"(?:.*[_\s.-])?age(?:s|d)?(?:[_\s.-].*|_?at.*|_?years?|_?yrs?)?")


def infer_hierarchy(column: str, values: pd.Series | None = None) -> str:
    """Guess a hierarchy from a column's name: age, zip, date, or none."""
    lower = column.lower()
    if "zip" in lower or "postal" in lower or "postcode" in lower:
        return "zip"
    if _AGE_NAME.fullmatch(lower):
        return "age"  # an age column is always capped, whatever text some of its values hold
    if lower.startswith("age") and (values is None or _mostly_numeric(values)):
        return "age"
    if "date" in lower or "dob" in lower or "birth" in lower or lower.endswith("_dt"):
        return "date"
    if values is not None and pd.api.types.is_datetime64_any_dtype(values):
        return "date"
    return "none"


def _mostly_numeric(values: pd.Series) -> bool:
    present = values.dropna()
    if present.empty:
        return True
    sample = present.head(200)
    return sum(age_number(v) is not None for v in sample) >= 0.9 * len(sample)


def generalize(values: pd.Series, name: str) -> pd.Series:
    """Apply a named generalization (e.g. "age10", "zip3", "year")."""
    if name not in GENERALIZATIONS:
        raise ConfigError(f"unknown generalization {name!r}; expected one of {sorted(GENERALIZATIONS)}")
    hier, level = GENERALIZATIONS[name]
    return HIERARCHIES[hier][level][1](values)


# ------------------------------------------------------------------------------------------ measurement
@dataclass
class KAnonymityReport:
    """Class sizes over the quasi-identifiers; no quasi-identifier values."""

    quasi_identifiers: list[str]
    n_records: int
    n_classes: int
    k: int
    smallest_classes: list[int]
    class_size_histogram: dict[str, int]
    records_below_target: int | None = None
    target_k: int | None = None
    l_diversity: dict[str, dict[str, int]] = field(default_factory=dict)
    generalization: dict[str, str] = field(default_factory=dict)
    suppressed_records: int = 0

    def to_dict(self) -> dict:
        return {
            "quasi_identifiers": self.quasi_identifiers,
            "n_records": self.n_records,
            "n_classes": self.n_classes,
            "k": self.k,
            "smallest_classes": self.smallest_classes,
            "class_size_histogram": self.class_size_histogram,
            "target_k": self.target_k,
            "records_below_target": self.records_below_target,
            "l_diversity": self.l_diversity,
            "generalization": self.generalization,
            "suppressed_records": self.suppressed_records,
        }

    def summary(self) -> str:
        lines = [f"k-anonymity over {self.quasi_identifiers}: k = {self.k} ({self.n_records} records, "
                 f"{self.n_classes} equivalence classes)",
                 f"  smallest class sizes: {self.smallest_classes}",
                 f"  classes by size: {self.class_size_histogram}"]
        if self.target_k is not None:
            lines.append(f"  records in classes smaller than {self.target_k}: {self.records_below_target}")
        if self.generalization:
            lines.append(f"  generalization: {self.generalization}")
        if self.suppressed_records:
            lines.append(f"  suppressed records: {self.suppressed_records}")
        for column, d in self.l_diversity.items():
            lines.append(f"  l-diversity of {column}: l = {d['l']}"
                         + (f"; records in classes below l={d['target']}: {d['records_below_target']}"
                            if "target" in d else ""))
        return "\n".join(lines)


def _keys(df: pd.DataFrame, quasi: Sequence[str]) -> pd.Series:
    """One integer class id per row (missing is a value of its own)."""
    frame = df[list(quasi)].astype(object).where(df[list(quasi)].notna(), _MISSING).astype(str)
    if len(quasi) == 1:
        return pd.Series(pd.factorize(frame.iloc[:, 0])[0], index=df.index)
    return pd.Series(frame.groupby(list(quasi), sort=False, dropna=False).ngroup().to_numpy(), index=df.index)


def class_sizes(df: pd.DataFrame, quasi: Sequence[str]) -> pd.Series:
    """Size of the equivalence class of every row."""
    keys = _keys(df, quasi)
    return keys.map(keys.value_counts())


def _histogram(sizes: np.ndarray) -> dict[str, int]:
    bins = [(1, 1), (2, 2), (3, 4), (5, 9), (10, 19), (20, 49), (50, 99), (100, None)]
    out = {}
    for low, high in bins:
        mask = sizes >= low if high is None else (sizes >= low) & (sizes <= high)
        label = f"{low}+" if high is None else (str(low) if low == high else f"{low}-{high}")
        out[label] = int(mask.sum())
    return out


def kanonymity_report(df: pd.DataFrame, quasi: Sequence[str], *, k: int | None = None,
                      sensitive: Sequence[str] = (), l_target: int | None = None,
                      smallest: int = 10) -> KAnonymityReport:
    """k (the smallest class size), the smallest class sizes, a size histogram, and l-diversity."""
    quasi = list(quasi)
    if not quasi:
        raise ConfigError("k-anonymity needs at least one quasi-identifier column")
    require_columns(df, [*quasi, *sensitive], where="k-anonymity")
    if df.empty:
        return KAnonymityReport(quasi, 0, 0, 0, [], {}, 0 if k else None, k)
    keys = _keys(df, quasi)
    counts = keys.value_counts()
    sizes = counts.to_numpy()
    report = KAnonymityReport(
        quasi_identifiers=quasi,
        n_records=len(df),
        n_classes=len(counts),
        k=int(sizes.min()),
        smallest_classes=sorted(int(s) for s in sizes)[:smallest],
        class_size_histogram=_histogram(sizes),
        target_k=k,
        records_below_target=None if k is None else int(sizes[sizes < k].sum()),
    )
    for column in sensitive:
        values = df[column].astype(object).where(df[column].notna(), _MISSING).astype(str)
        distinct = values.groupby(keys.to_numpy()).nunique()
        entry = {"l": int(distinct.min())}
        if l_target is not None:
            low = distinct[distinct < l_target].index
            entry |= {"target": l_target, "classes_below_target": int(len(low)),
                      "records_below_target": int(counts.reindex(low).sum())}
        report.l_diversity[column] = entry
    return report


# ------------------------------------------------------------------------------------------ achieving k
@dataclass
class KAnonymityResult:
    frame: pd.DataFrame
    report: KAnonymityReport
    suppressed_index: pd.Index


def achieve_k(df: pd.DataFrame, quasi: dict[str, str] | Sequence[str], k: int, *, max_suppression: float = 0.05,
              auto_generalize: bool = True, start: dict[str, int] | None = None,
              sensitive: Sequence[str] = (), l_target: int | None = None) -> KAnonymityResult:
    """Generalize then suppress rows until every equivalence class has at least `k` rows.

    `quasi` maps each quasi-identifier to a hierarchy name ("age", "zip", "date", "none"); a list
    infers hierarchies from column names. `start` gives each column's starting level (default 0,
    the first level, e.g. "age_90plus" or "zip3"). Columns are replaced by their generalized values.
    """
    if k < 1:
        raise ConfigError(f"k must be at least 1, got {k}")
    if not 0 <= max_suppression <= 1:
        raise ConfigError(f"max_suppression must lie in [0, 1], got {max_suppression}")
    if not isinstance(quasi, dict):
        quasi = {c: infer_hierarchy(c, df[c]) for c in quasi}
    for column, hier in quasi.items():
        if hier not in HIERARCHIES:
            raise ConfigError(f"unknown hierarchy {hier!r} for {column!r}; expected one of {sorted(HIERARCHIES)}")
    require_columns(df, list(quasi), where="k-anonymity")
    columns = list(quasi)
    level = {c: (start or {}).get(c, 0) for c in columns}
    cache: dict[tuple[str, int], pd.Series] = {}

    def column_at(c: str, lv: int) -> pd.Series:
        if (c, lv) not in cache:
            cache[(c, lv)] = HIERARCHIES[quasi[c]][lv][1](df[c])
        return cache[(c, lv)]

    def frame_at(levels: dict[str, int]) -> pd.DataFrame:
        return pd.DataFrame({c: column_at(c, levels[c]) for c in columns}, index=df.index)

    def below(levels: dict[str, int]) -> int:
        sizes = class_sizes(frame_at(levels), columns)
        return int((sizes < k).sum())

    budget = int(np.floor(max_suppression * len(df)))
    current = below(level)
    while auto_generalize and current > budget:
        options = []
        for c in columns:
            if level[c] + 1 < len(HIERARCHIES[quasi[c]]):
                trial = level | {c: level[c] + 1}
                options.append((below(trial), level[c], c))
        if not options:
            break
        best, _, column = min(options)
        level[column] += 1
        current = best
    generalized = frame_at(level)
    sizes = class_sizes(generalized, columns)
    suppress = sizes < k
    out = df.copy()
    for c in columns:
        out[c] = generalized[c]
    kept = out.loc[~suppress]
    report = kanonymity_report(kept, columns, k=k, sensitive=sensitive, l_target=l_target)
    report.generalization = {c: HIERARCHIES[quasi[c]][level[c]][0] for c in columns}
    report.suppressed_records = int(suppress.sum())
    return KAnonymityResult(kept, report, df.index[suppress.to_numpy()])
