"""Longitudinal observations in long format: one row per (patient, time, variable) measurement.

The long format has the columns ``patient_id``, ``time`` (a number in the data's time unit, e.g. days
since enrolment), ``variable``, ``value`` (a number) and ``unit`` (text, or NaN for unitless values such
as 0/1 flags). It is read from

- a CSV / Parquet / JSON table already in that shape (:func:`read_observations`),
- a wide visit table with one row per visit and one column per variable (:func:`wide_to_long`),
- FHIR R4 Observation resources in one or more Bundles (:func:`observations_from_fhir`): the code is
  mapped to a variable by a declared mapping (e.g. of LOINC codes), the value and unit come from
  ``valueQuantity``, and ``effectiveDateTime`` becomes a time relative to a per-patient reference.

:func:`harmonize_units` converts every value to one unit per variable with the versioned conversion
table ``units.yaml`` shipped beside this module; a unit the table does not know is a SchemaError that
names the patient, the variable and the unit. Reading types the values and nothing more: a missing
value is not an observation (the row is left out), never 0.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from precimed.data.files import read_table
from precimed.errors import ConfigError, DataError, SchemaError
from precimed.limits import read_user_text
from precimed.schema import as_numeric, examples, require_columns

__all__ = [
    "LONG_COLUMNS",
    "TIME_UNITS",
    "Analyte",
    "UnitTable",
    "as_long",
    "convert_values",
    "harmonize_units",
    "load_unit_table",
    "loinc_mapping",
    "normalize_unit",
    "observations_from_fhir",
    "read_observations",
    "wide_to_long",
]

LONG_COLUMNS = ("patient_id", "time", "variable", "value", "unit")
TIME_UNITS: dict[str, float] = {"seconds": 1.0, "minutes": 60.0, "hours": 3600.0, "days": 86400.0,
                                "weeks": 7 * 86400.0, "years": 365.25 * 86400.0}
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
SKIPPED_STATUSES = frozenset({"entered-in-error", "cancelled"})
_UNITS_FILE = "units.yaml"


# ------------------------------------------------------------------------------------------ long format
def as_long(frame: pd.DataFrame, *, where: str = "observations",
            columns: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Check and type a long-format table; rows without a value are left out (not observed).

    ``columns`` renames the table's columns to the long names first, e.g. ``{"subject": "patient_id"}``.
    ``unit`` is optional (all NaN when absent). Returns a new frame with exactly ``LONG_COLUMNS``,
    sorted by patient, time and variable.
    """
    if columns:
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise SchemaError(f"{where}: columns {missing} named in the column mapping are not in the data; "
                              f"available: {sorted(map(str, frame.columns))[:25]}", column=missing[0])
        frame = frame.rename(columns=dict(columns))
    require_columns(frame, LONG_COLUMNS[:4], where=where)
    out = pd.DataFrame({
        "patient_id": frame["patient_id"].to_numpy(),
        "time": as_numeric(frame["time"], where=where, ids=frame["patient_id"]).to_numpy(),
        "variable": frame["variable"].to_numpy(dtype=object),
        "value": as_numeric(frame["value"], where=where, ids=frame["patient_id"]).to_numpy(),
        "unit": frame["unit"].to_numpy(dtype=object) if "unit" in frame.columns else np.full(len(frame), np.nan,
                                                                                              dtype=object),
    })
    for column in ("patient_id", "time", "variable"):
        bad = out[column].isna().to_numpy()
        if bad.any():
            rows = np.flatnonzero(bad)
            raise SchemaError(f"{where}: {int(bad.sum())} observation(s) without {column!r} (e.g. rows "
                              f"{examples(rows)}); every observation needs a patient, a time and a variable",
                              column=column, rows=rows[:5].tolist())
    infinite = np.isinf(out["time"].to_numpy()) | np.isinf(out["value"].to_numpy())
    if infinite.any():
        raise SchemaError(f"{where}: infinite time or value for patient id(s) "
                          f"{examples(out['patient_id'][infinite])}; fix the data or leave the value empty",
                          column="value", rows=out["patient_id"][infinite].head(5).tolist())
    out["variable"] = out["variable"].astype(str)
    out["unit"] = out["unit"].where(pd.notna(out["unit"]), np.nan)
    out = out[out["value"].notna()]
    return out.sort_values(["patient_id", "time", "variable"], kind="mergesort").reset_index(drop=True)


def read_observations(path: str | Path, *, columns: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Read a long-format file (CSV, TSV, Parquet, JSON records, JSON lines) via ``data.read_table``."""
    return as_long(read_table(path), where=str(path), columns=columns)


def wide_to_long(frame: pd.DataFrame, *, id_column: str, time_column: str, variables: Sequence[str],
                 units: Mapping[str, str | None] | None = None, where: str = "visits") -> pd.DataFrame:
    """A visit table (one row per visit, one column per variable) as long-format observations.

    ``units`` gives the unit each variable's column is recorded in (NaN for a variable not listed).
    Missing cells are not observations and are left out.
    """
    variables = list(variables)
    require_columns(frame, [id_column, time_column, *variables], where=where)
    units = dict(units or {})
    unknown = sorted(set(units) - set(variables))
    if unknown:
        raise ConfigError(f"{where}: units are given for {unknown}, which are not among the variables {variables}")
    ids = frame[id_column]
    blocks = []
    for name in variables:
        values = as_numeric(frame[name], where=where, ids=ids)
        blocks.append(pd.DataFrame({"patient_id": ids.to_numpy(), "time": frame[time_column].to_numpy(),
                                    "variable": name, "value": values.to_numpy(),
                                    "unit": units.get(name, np.nan)}))
    long = pd.concat(blocks, ignore_index=True) if blocks else pd.DataFrame(columns=list(LONG_COLUMNS))
    return as_long(long, where=where)


# ------------------------------------------------------------------------------------------------ FHIR
def _resources(bundles: Any) -> Iterable[tuple[str | None, dict]]:
    """(fullUrl, resource) for every entry of one Bundle or of several."""
    if isinstance(bundles, str | Path | Mapping) or hasattr(bundles, "model_dump"):
        bundles = [bundles]
    for bundle in bundles:
        data = _bundle_dict(bundle)
        if data.get("resourceType") != "Bundle":
            raise SchemaError(f"expected a FHIR Bundle, got resourceType {data.get('resourceType')!r}",
                              column="resourceType")
        for entry in data.get("entry") or []:
            resource = entry.get("resource")
            if isinstance(resource, Mapping):
                yield entry.get("fullUrl"), dict(resource)


def _bundle_dict(bundle: Any) -> dict:
    if hasattr(bundle, "model_dump"):  # fhir.resources, carebundle and other pydantic models
        return bundle.model_dump(mode="json", by_alias=True, exclude_none=True)
    if isinstance(bundle, Mapping):
        return dict(bundle)
    if isinstance(bundle, Path) or (isinstance(bundle, str) and not bundle.lstrip().startswith("{")):
        path = Path(bundle)
        if not path.is_file():
            raise DataError(f"{path}: FHIR bundle file not found")
        text = read_user_text(path, encoding="utf-8-sig")
        where = str(path)
    else:
        text, where = str(bundle), "FHIR bundle"
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{where}: not valid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None


def _patient_key(reference: str | None, aliases: Mapping[str, str]) -> str | None:
    if not reference:
        return None
    if reference in aliases:
        return aliases[reference]
    for prefix in ("urn:uuid:", "urn:oid:"):
        if reference.startswith(prefix):
            return reference[len(prefix):]
    return reference.rsplit("Patient/", 1)[-1]


def _effective(resource: Mapping) -> str | None:
    if resource.get("effectiveDateTime"):
        return resource["effectiveDateTime"]
    if resource.get("effectiveInstant"):
        return resource["effectiveInstant"]
    period = resource.get("effectivePeriod") or {}
    return period.get("start") or period.get("end")


def _timestamp(text: Any, *, where: str) -> pd.Timestamp:
    try:
        stamp = pd.Timestamp(text)
    except (ValueError, TypeError):
        raise DataError(f"{where}: {text!r} is not an ISO 8601 date or date-time") from None
    if pd.isna(stamp):
        raise DataError(f"{where}: {text!r} is not an ISO 8601 date or date-time")
    return stamp.tz_convert("UTC") if stamp.tzinfo is not None else stamp.tz_localize("UTC")


def _quantity(value_holder: Mapping) -> tuple[float | None, str | None, str | None]:
    """(value, unit, kind of value[x]) of an Observation or one of its components."""
    if "valueQuantity" in value_holder:
        q = value_holder["valueQuantity"] or {}
        unit = q.get("code") if q.get("system") == UCUM and q.get("code") else q.get("unit") or q.get("code")
        value = q.get("value")
        return (None if value is None else float(value)), unit, "valueQuantity"
    if "valueInteger" in value_holder:
        return float(value_holder["valueInteger"]), None, "valueInteger"
    if "valueBoolean" in value_holder:
        return float(bool(value_holder["valueBoolean"])), None, "valueBoolean"
    kinds = [k for k in value_holder if k.startswith("value")]
    return None, None, kinds[0] if kinds else None


def _mapped(code: Mapping | None, codes: Mapping[str, str], systems: tuple[str, ...] | None) -> str | None:
    for coding in (code or {}).get("coding") or []:
        if systems is not None and coding.get("system") not in systems:
            continue
        variable = codes.get(str(coding.get("code")))
        if variable is not None:
            return variable
    return None


def observations_from_fhir(bundles: Any, *, codes: Mapping[str, str], reference: str | Mapping[Any, Any] = "first",
                           time_unit: str = "days", systems: Sequence[str] | None = (LOINC,)) -> pd.DataFrame:
    """Long-format observations from the Observation resources of FHIR R4 Bundles.

    Parameters
    ----------
    bundles : a Bundle (dict, JSON text, path to a .json file, or a pydantic model such as fhir.resources'
        or carebundle's) or a list of them. Patients are matched across bundles by their reference.
    codes : the declared mapping from code (e.g. LOINC ``"1975-2"``) to variable name. Observations (and
        components, e.g. of a blood-pressure panel) with no mapped code are ignored.
    reference : ``"first"`` (time 0 is each patient's first mapped observation) or a mapping from
        patient id to that patient's reference date-time (e.g. enrolment); naive times are read as UTC.
    time_unit : unit of the returned ``time``: one of ``TIME_UNITS``.
    systems : code systems whose codings are looked up (default LOINC); None accepts every system.

    Observations with status entered-in-error or cancelled, or with a dataAbsentReason, are left out.
    The patient id is the subject reference without its ``Patient/`` or ``urn:uuid:`` prefix (the
    Patient's ``id`` when the bundle holds the Patient under that fullUrl). A mapped observation with
    a non-numeric value, no time or no subject is a DataError naming the patient and the code.
    """
    if time_unit not in TIME_UNITS:
        raise ConfigError(f"time_unit must be one of {list(TIME_UNITS)}, got {time_unit!r}")
    if not codes:
        raise ConfigError("codes is empty: map at least one code to a variable, e.g. {'1975-2': 'bilirubin'}")
    codes = {str(k): str(v) for k, v in codes.items()}
    system_set = None if systems is None else tuple(systems)
    resources_ = list(_resources(bundles))
    aliases = {url: str(r["id"]) for url, r in resources_ if r.get("resourceType") == "Patient" and url and r.get("id")}
    rows: list[tuple[str, pd.Timestamp, str, float, str | None]] = []
    for _, resource in resources_:
        if resource.get("resourceType") != "Observation" or resource.get("status") in SKIPPED_STATUSES:
            continue
        holders = [(resource.get("code"), resource)] + [(c.get("code"), c) for c in resource.get("component") or []]
        mapped = [(variable, holder) for code, holder in holders
                  if (variable := _mapped(code, codes, system_set)) is not None]
        if not mapped:
            continue
        patient = _patient_key((resource.get("subject") or {}).get("reference"), aliases)
        label = f"Observation {resource.get('id') or ''}".strip()
        if patient is None:
            raise DataError(f"{label} ({mapped[0][0]}) has no subject reference; its patient is unknown",
                            column="subject")
        when = _effective(resource)
        if when is None:
            raise DataError(f"{label} of patient {patient} ({mapped[0][0]}) has no effective time; it cannot be "
                            "placed in the patient's history", column="effectiveDateTime", rows=[patient])
        stamp = _timestamp(when, where=f"{label} of patient {patient}")
        for variable, holder in mapped:
            if holder.get("dataAbsentReason"):
                continue
            value, unit, kind = _quantity(holder)
            if value is None:
                if kind in (None, "valueQuantity"):
                    continue  # no value recorded: not an observation
                raise DataError(f"{label} of patient {patient}: {variable} has {kind}, not a number; map only "
                                "numeric observations (valueQuantity, valueInteger, valueBoolean)",
                                column=variable, rows=[patient])
            rows.append((patient, stamp, variable, value, unit))
    if not rows:
        return pd.DataFrame({c: pd.Series(dtype=float if c in ("time", "value") else object) for c in LONG_COLUMNS})
    table = pd.DataFrame(rows, columns=["patient_id", "stamp", "variable", "value", "unit"])
    if isinstance(reference, str):
        if reference != "first":
            raise ConfigError(f"reference must be 'first' or a mapping from patient id to a date-time, "
                              f"got {reference!r}")
        origin = table.groupby("patient_id")["stamp"].transform("min")
    else:
        refs = {str(k): _timestamp(v, where=f"reference of patient {k}") for k, v in reference.items()}
        missing = sorted(set(table["patient_id"]) - set(refs))
        if missing:
            raise SchemaError(f"no reference date-time for patient id(s) {missing[:5]}; give every patient in "
                              "the bundle a reference", column="patient_id", rows=missing[:5])
        origin = table["patient_id"].map(refs)
    table["time"] = (table["stamp"] - origin).dt.total_seconds() / TIME_UNITS[time_unit]
    return as_long(table.drop(columns="stamp"), where="FHIR observations")


# ------------------------------------------------------------------------------------------------ units
@dataclass(frozen=True)
class Analyte:
    """One analyte of the conversion table: canonical unit and (factor, offset) per normalised unit."""

    name: str
    canonical: str
    units: dict[str, tuple[float, float]]
    labels: dict[str, str]
    loinc: tuple[str, ...]
    sources: tuple[str, ...]
    description: str = ""


@dataclass(frozen=True)
class UnitTable:
    name: str
    version: str
    sources: dict[str, str]
    aliases: dict[str, str]
    analytes: dict[str, Analyte]

    def normalize(self, unit: str) -> str:
        key = normalize_unit(unit)
        return self.aliases.get(key, key)


def normalize_unit(unit: str) -> str:
    """Unit text in comparable form: no spaces, micro sign and mu as 'u', '^' as '*', lower case."""
    text = "".join(str(unit).split())
    return text.replace("\u00b5", "u").replace("\u03bc", "u").replace("^", "*").lower()


def _conversion(spec: Any, *, where: str) -> tuple[float, float]:
    if isinstance(spec, int | float) and not isinstance(spec, bool):
        return float(spec), 0.0
    if isinstance(spec, Mapping) and set(spec) <= {"factor", "offset"} and "factor" in spec:
        return float(spec["factor"]), float(spec.get("offset", 0.0))
    raise ConfigError(f"{where}: a conversion is a number or {{factor, offset}}, got {spec!r}")


def _parse_table(data: Any, *, where: str) -> UnitTable:
    if not isinstance(data, Mapping) or not {"version", "analytes", "sources"} <= set(data):
        raise ConfigError(f"{where}: a unit table needs 'version', 'sources' and 'analytes'")
    sources = {str(k): str(v) for k, v in data["sources"].items()}
    aliases = {normalize_unit(k): normalize_unit(v) for k, v in (data.get("aliases") or {}).items()}
    analytes = {}
    for name, spec in data["analytes"].items():
        cited = tuple(spec.get("source") or ())
        unknown = [s for s in cited if s not in sources]
        if not cited or unknown:
            raise ConfigError(f"{where}: analyte {name!r} must cite sources listed under 'sources' "
                              f"(unknown: {unknown})")
        units, labels = {}, {}
        for label, conv in spec["units"].items():
            key = normalize_unit(label)
            key = aliases.get(key, key)
            units[key] = _conversion(conv, where=f"{where}, {name} {label}")
            labels[key] = str(label)
        canonical = aliases.get(normalize_unit(spec["canonical"]), normalize_unit(spec["canonical"]))
        if units.get(canonical) != (1.0, 0.0):
            raise ConfigError(f"{where}: analyte {name!r}: the canonical unit {spec['canonical']!r} must convert "
                              "with factor 1 and offset 0")
        analytes[str(name)] = Analyte(str(name), canonical, units, labels, tuple(map(str, spec.get("loinc") or ())),
                                      cited, str(spec.get("description", "")))
    return UnitTable(str(data.get("name", where)), str(data["version"]), sources, aliases, analytes)


@cache
def _packaged_table() -> UnitTable:
    text = resources.files("precimed.data").joinpath(_UNITS_FILE).read_text(encoding="utf-8")
    return _parse_table(yaml.safe_load(text), where=_UNITS_FILE)


def load_unit_table(path: str | Path | None = None) -> UnitTable:
    """The conversion table: the packaged ``units.yaml`` or a user's file in the same format."""
    if path is None:
        return _packaged_table()
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: unit table not found")
    return _parse_table(yaml.safe_load(read_user_text(path)), where=str(path))


def loinc_mapping(table: UnitTable | None = None) -> dict[str, str]:
    """Default LOINC code → analyte name mapping from the table (for ``observations_from_fhir``)."""
    table = table or load_unit_table()
    return {code: name for name, analyte in table.analytes.items() for code in analyte.loinc}


def _missing_unit(unit: Any) -> bool:
    return unit is None or (isinstance(unit, float) and math.isnan(unit)) or str(unit).strip() == ""


def convert_values(values: np.ndarray | float, from_unit: str, to_unit: str, analyte: str,
                   table: UnitTable | None = None) -> np.ndarray:
    """Convert values of `analyte` from one unit to another (through the canonical unit)."""
    table = table or load_unit_table()
    if analyte not in table.analytes:
        raise SchemaError(f"analyte {analyte!r} is not in unit table {table.name} v{table.version}; "
                          f"known: {sorted(table.analytes)}", column=analyte)
    a = table.analytes[analyte]
    src, dst = table.normalize(from_unit), table.normalize(to_unit)
    for unit, text in ((src, from_unit), (dst, to_unit)):
        if unit not in a.units:
            raise SchemaError(f"unit {text!r} is not known for {analyte} in unit table {table.name} "
                              f"v{table.version}; known: {sorted(a.labels.values())}", column=analyte)
    f1, o1 = a.units[src]
    f2, o2 = a.units[dst]
    canonical = np.asarray(values, dtype=float) * f1 + o1
    return (canonical - o2) / f2


def harmonize_units(obs: pd.DataFrame, *, units: Mapping[str, str | None] | None = None,
                    analytes: Mapping[str, str] | None = None, table: UnitTable | None = None,
                    where: str = "observations") -> pd.DataFrame:
    """Express every variable in one unit; returns a new long frame with converted ``value`` and ``unit``.

    For each variable, its analyte is ``analytes.get(variable, variable)``.

    - An analyte in the table: values are converted to ``units[variable]`` (default: the analyte's
      canonical unit). A unit the table does not list for that analyte, or a missing unit, is a
      SchemaError naming the patient, the variable and the unit.
    - Any other variable with a declared unit in ``units``: every row must carry that unit (or none,
      meaning the declared one); another unit is a SchemaError (add the analyte to the table).
    - Any other variable without a declared unit (e.g. 0/1 flags): kept as is, but a variable seen
      in more than one unit is refused, since it cannot be compared across rows.
    """
    table = table or load_unit_table()
    units = dict(units or {})
    analytes = dict(analytes or {})
    unknown = sorted(a for a in analytes.values() if a not in table.analytes)
    if unknown:
        raise ConfigError(f"analytes {unknown} are not in unit table {table.name} v{table.version}; "
                          f"known: {sorted(table.analytes)}")
    require_columns(obs, LONG_COLUMNS, where=where)
    out = obs.copy()
    values = out["value"].to_numpy(dtype=float).copy()
    unit_out = out["unit"].to_numpy(dtype=object).copy()
    raw_units = out["unit"].to_numpy(dtype=object)
    codes, uniques = pd.factorize(out["unit"], use_na_sentinel=False)  # normalise each distinct unit once
    normal = np.array(["" if _missing_unit(u) else table.normalize(u) for u in uniques], dtype=object)
    norm = normal[codes] if len(uniques) else np.array([], dtype=object)
    missing_unit = norm == ""
    variables = out["variable"].to_numpy(dtype=object)
    ids = out["patient_id"]
    for variable in pd.unique(variables):
        rows = variables == variable
        analyte = analytes.get(variable, variable)
        target = units.get(variable)
        if analyte in table.analytes:
            a = table.analytes[analyte]
            dst = a.canonical if target is None else table.normalize(target)
            if dst not in a.units:
                raise ConfigError(f"{where}: {variable} is declared in {target!r}, which unit table {table.name} "
                                  f"v{table.version} does not know for {analyte}; use one of "
                                  f"{sorted(a.labels.values())}")
            bad = rows & (missing_unit | ~np.isin(norm, list(a.units)))
            if bad.any():
                shown = raw_units[bad][0]
                raise SchemaError(
                    f"{where}: patient {examples(ids[bad], 1)[0]}: {variable} in unit {shown!r}, which unit table "
                    f"{table.name} v{table.version} does not know for {analyte} (known: "
                    f"{sorted(a.labels.values())}); {int(bad.sum())} observation(s), patient id(s) "
                    f"{examples(pd.unique(ids[bad]))}. Fix the unit, or add it with its source to units.yaml",
                    column=variable, rows=examples(pd.unique(ids[bad])))
            f2, o2 = a.units[dst]
            for src in pd.unique(norm[rows]):
                sel = rows & (norm == src)
                f1, o1 = a.units[src]
                values[sel] = ((values[sel] * f1 + o1) - o2) / f2
            unit_out[rows] = a.labels[dst]
        elif target is not None:
            dst = table.normalize(target)
            bad = rows & ~missing_unit & (norm != dst)
            if bad.any():
                raise SchemaError(
                    f"{where}: patient {examples(ids[bad], 1)[0]}: {variable} in unit {raw_units[bad][0]!r}, "
                    f"but it is declared in {target!r} and unit table {table.name} v{table.version} has no "
                    f"conversion for {variable}; patient id(s) {examples(pd.unique(ids[bad]))}. Map the variable "
                    "to a known analyte or add the analyte to units.yaml",
                    column=variable, rows=examples(pd.unique(ids[bad])))
            unit_out[rows] = target
        else:
            seen = pd.unique(norm[rows & ~missing_unit])
            if len(seen) > 1 or (len(seen) == 1 and (rows & missing_unit).any()):
                raise SchemaError(f"{where}: {variable} is recorded in several units "
                                  f"{sorted({str(u) for u in raw_units[rows]})} and unit table {table.name} "
                                  f"v{table.version} has no conversion for it; declare its unit and map it to an "
                                  "analyte of units.yaml", column=variable)
    out["value"] = values
    out["unit"] = unit_out
    return out
