"""The task: harmonize a source, type the declared features, derive labels, split by patient.

A built-in cohort and a user's file take the same path: rename → derive → filter → type → label.
Rows are never dropped silently: every exclusion is counted in `Cohort.notes` with example ids.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from precimed import expressions
from precimed.config import FeatureConfig, RunConfig, SourceConfig, SplitConfig, TaskConfig
from precimed.errors import ConfigError, DataError, SchemaError
from precimed.schema import as_numeric, examples, require_columns

ROW_ID = "row_id"


@dataclass
class Cohort:
    """Typed features (index = patient id), the label array and what happened on the way."""

    name: str
    X: pd.DataFrame
    y: np.ndarray | None
    frame: pd.DataFrame
    id_name: str
    notes: list[str] = field(default_factory=list)
    classes: list[str] | None = None

    def __len__(self) -> int:
        return len(self.X)

    def subset(self, rows: np.ndarray, name: str | None = None) -> Cohort:
        return Cohort(name or self.name, self.X.iloc[rows], None if self.y is None else self.y[rows],
                      self.frame.iloc[rows], self.id_name, list(self.notes), self.classes)

    def describe(self, task: TaskConfig) -> dict:
        """Name, size and outcome counts, as recorded in metrics.json and the bundle."""
        out: dict = {"name": self.name, "n": len(self), "patients": int(self.X.index.nunique())}
        if self.y is not None:
            if task.kind == "survival":
                out["events"] = int(self.y[:, 1].sum())
                out["median_follow_up"] = float(np.median(self.y[:, 0]))
            elif task.kind == "binary":
                out["events"] = int(self.y.sum())
            elif task.kind == "multiclass" and self.classes:
                counts = np.bincount(self.y.astype(int), minlength=len(self.classes))
                out["class_counts"] = dict(zip(self.classes, counts.tolist(), strict=True))
        if self.notes:
            out["notes"] = list(self.notes)
        return out


def harmonize(raw: pd.DataFrame, source: SourceConfig, *, where: str) -> tuple[pd.DataFrame, list[str]]:
    """Apply the source's renames, derived columns and filter; report excluded rows."""
    notes: list[str] = []
    missing = [c for c in source.rename if c not in raw.columns]
    if missing:
        raise SchemaError(f"{where}: rename names column(s) {missing} that the data lacks; "
                          f"available: {sorted(map(str, raw.columns))[:25]}", column=missing[0])
    frame = raw.rename(columns=source.rename).copy()
    for name, text in source.derive.items():
        value = expressions.parse(text).evaluate(frame, where=f"{where}, derived column {name!r}")
        frame[name] = value.values if isinstance(value, pd.Series) else value
    if source.filter:
        keep = expressions.parse(source.filter).evaluate(frame, where=f"{where}, filter")
        keep = pd.Series(keep, index=frame.index).fillna(False).astype(bool)
        dropped = int((~keep).sum())
        if dropped:
            notes.append(f"{dropped} of {len(frame)} rows excluded by filter {source.filter!r}")
        frame = frame[keep.to_numpy()]
        if frame.empty:
            raise DataError(f"{where}: the filter {source.filter!r} keeps no rows")
    return frame, notes


def type_features(frame: pd.DataFrame, features: list[FeatureConfig], *, where: str) -> pd.DataFrame:
    """Select the declared features and give each its dtype (numeric → float; others → object)."""
    require_columns(frame, [f.name for f in features], where=where)
    ids = pd.Series(frame.index, index=frame.index)
    out = {}
    for f in features:
        col = frame[f.name]
        if f.kind == "numeric":
            out[f.name] = as_numeric(col, where=where, ids=ids)
        else:
            out[f.name] = col.astype(object).where(col.notna(), np.nan)
    return pd.DataFrame(out, index=frame.index)


def _labels(frame: pd.DataFrame, task: TaskConfig, classes: list[str] | None, *, where: str
            ) -> tuple[np.ndarray, np.ndarray, list[str] | None]:
    """Return (y, rows with a usable label, classes)."""
    ids = pd.Series(frame.index, index=frame.index)
    require_columns(frame, task.label_columns, where=f"{where} (outcome)")
    if task.kind == "survival":
        t = as_numeric(frame[task.time], where=where, ids=ids)
        e = as_numeric(frame[task.event], where=where, ids=ids)
        ok = t.notna() & e.notna()
        bad_event = ok & ~e.isin([0, 1])
        if bad_event.any():
            raise SchemaError(f"{where}: event column {task.event!r} must be 0/1, got {examples(e[bad_event])} "
                              f"for patient id(s) {examples(ids[bad_event])}", column=task.event)
        negative = ok & (t < 0)
        if negative.any():
            raise SchemaError(f"{where}: time column {task.time!r} has negative values {examples(t[negative])} "
                              f"for patient id(s) {examples(ids[negative])}", column=task.time)
        t, e = t.to_numpy(), e.to_numpy()
        if task.censor_at is not None:
            late = t > task.censor_at
            e = np.where(late, 0.0, e)
            t = np.where(late, task.censor_at, t)
        y = np.column_stack([t, e])
        return y, ok.to_numpy(), None
    target = frame[task.target]
    ok = target.notna()
    if task.kind == "regression":
        return as_numeric(target, where=where, ids=ids).to_numpy(), ok.to_numpy(), None
    if task.kind == "binary":
        if task.positive is not None:
            values = target.astype(str) if isinstance(task.positive, str) else target
            return (values == task.positive).astype(float).to_numpy(), ok.to_numpy(), None
        seen = set(target[ok].unique().tolist())
        if not seen <= {0, 1}:
            raise ConfigError(f"{where}: binary target {task.target!r} holds {sorted(map(str, seen))[:6]}; "
                              "set task.positive to the value that means the outcome occurred")
        return target.astype(float).to_numpy(), ok.to_numpy(), None
    values = target.astype(str)
    if classes is None:
        classes = task.classes or sorted(values[ok].unique().tolist())
    unknown = ok & ~values.isin(classes)
    if unknown.any():
        raise SchemaError(f"{where}: target {task.target!r} has class(es) {examples(values[unknown].unique())} "
                          f"not among {classes} (patient id(s) {examples(ids[unknown])})", column=task.target)
    codes = values.map({c: i for i, c in enumerate(classes)}).to_numpy(dtype=float, na_value=np.nan)
    return codes, ok.to_numpy(), classes


def build_cohort(raw: pd.DataFrame, source: SourceConfig, cfg: RunConfig, *, id_name: str,
                 with_labels: bool = True, classes: list[str] | None = None) -> Cohort:
    """Harmonize `raw` and return the typed cohort; rows without an outcome are excluded and counted."""
    where = source.label
    if raw.empty:
        raise DataError(f"{where}: the data has no rows")
    frame, notes = harmonize(raw, source, where=where)
    if id_name not in frame.columns:
        raise SchemaError(f"{where}: patient id column {id_name!r} not found; set 'patient_id' in the config "
                          f"to one of {sorted(map(str, frame.columns))[:25]}", column=id_name)
    frame = frame.set_index(id_name, drop=False)
    frame.index.name = id_name
    y = None
    if with_labels:
        y, ok, classes = _labels(frame, cfg.task, classes, where=where)
        if not ok.all():
            notes.append(f"{int((~ok).sum())} rows without an outcome excluded "
                         f"(patient id(s) {examples(frame.index[~ok])})")
            frame, y = frame[ok], y[ok]
        if len(frame) == 0:
            raise DataError(f"{where}: no row has an outcome in {cfg.task.label_columns}")
        if cfg.task.kind == "survival" and y[:, 1].sum() == 0:
            raise DataError(f"{where}: no events in column {cfg.task.event!r} among {len(y)} rows; "
                            "a survival model can be neither fitted nor evaluated", column=cfg.task.event)
    X = type_features(frame, cfg.features, where=where)
    return Cohort(where, X, y, frame, id_name, notes, classes)


def split_rows(cohort: Cohort, split: SplitConfig, task: TaskConfig, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of (train, test): stratified on the outcome, or grouped so no patient is on both sides."""
    # scikit-learn is imported when a split is made, not with the module: the monitor and plan commands read
    # cohorts' neighbours without training anything and must start fast (start-up time, not an import cycle)
    from sklearn.model_selection import GroupShuffleSplit, train_test_split

    rows = np.arange(len(cohort))
    if split.kind == "grouped":
        groups = cohort.frame[split.group].to_numpy() if split.group else cohort.X.index.to_numpy()
        splitter = GroupShuffleSplit(n_splits=1, test_size=split.test_fraction, random_state=seed)
        train, test = next(splitter.split(rows, groups=groups))
        return train, test
    y = cohort.y
    strata = None
    if y is not None:
        strata = y[:, 1] if task.kind == "survival" else (y if task.kind in ("binary", "multiclass") else None)
    return tuple(train_test_split(rows, test_size=split.test_fraction, random_state=seed, stratify=strata))
