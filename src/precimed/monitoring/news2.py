"""NEWS2, the National Early Warning Score 2, as a pure function over one set of vital signs.

The bands, levels and response texts live in ``news2.yaml`` (Royal College of Physicians, NEWS2, 2017:
chart 1 scoring, chart 2 thresholds and triggers, chart 4 clinical response), loaded once and checked.

Conventions
-----------
* **Missing is missing.** A vital that is absent, ``None`` or NaN is listed in ``missing`` and its part is
  ``None``; it is never scored as normal. The total, ``single_param_3`` and the level are then computed on
  the parameters that are present and ``complete`` is False: because every part is ≥ 0, such a level is a
  lower bound of the true one (the patient may be sicker, never less sick). Callers must show
  ``complete``/``missing`` next to the level.
* **On oxygen unknown.** ``on_oxygen`` missing leaves its part ``None``. On SpO2 scale 2 the SpO2 part
  also depends on oxygen for readings ≥ 93%; there an unknown ``on_oxygen`` makes the SpO2 part ``None``
  too (below 93% both columns of the chart agree, so it is scored).
* **SpO2 scale.** ``spo2_scale`` absent means scale 1: the chart's default; scale 2 must be prescribed.
* **Between printed edges.** A value is scored as if charted at the chart's resolution (integers; 0.1 °C
  for temperature), halves rounding up: respiration rate 11.4 → 1 point, 11.5 → 0 points.
* **Impossible values** (SpO2 above 100, negative rates or pressures, temperature outside 25–45 °C, a
  consciousness other than A/C/V/P/U, a scale other than 1/2) raise
  :class:`~precimed.errors.ValueRangeError` naming the field and the patient; they are never clipped.

``score_news2`` scores one mapping; ``score_news2_frame`` scores a DataFrame with numpy (``np.digitize``
over the same band edges) and gives identical results.
"""

from __future__ import annotations

import contextlib
import math
from bisect import bisect_right
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from precimed.errors import ConfigError, SchemaError, ValueRangeError
from precimed.schema import as_numeric, examples, require_columns

#: The seven scored parameters, in chart order; ``parts`` and ``missing`` use these names.
PARAMETERS: tuple[str, ...] = ("resp_rate", "spo2", "on_oxygen", "systolic_bp", "pulse", "consciousness",
                               "temperature")
#: Numeric vitals scored by bands (SpO2 has three band sets, chosen by scale and oxygen).
NUMERIC: tuple[str, ...] = ("resp_rate", "spo2", "systolic_bp", "pulse", "temperature")
#: Clinical-risk levels of chart 2, lowest first.
LEVELS: tuple[str, ...] = ("low", "low-medium", "medium", "high")
LEVEL_RANK: dict[str, int] = {name: i for i, name in enumerate(LEVELS)}
ACVPU: tuple[str, ...] = ("A", "C", "V", "P", "U")
#: Input fields a record may carry (besides ``patient_id`` and ``time``).
FIELDS: tuple[str, ...] = ("resp_rate", "spo2", "spo2_scale", "on_oxygen", "systolic_bp", "pulse",
                           "consciousness", "temperature")
_BAND_SETS = ("resp_rate", "spo2_scale_1", "spo2_scale_2_air", "spo2_scale_2_oxygen", "systolic_bp", "pulse",
              "temperature")
_TRUE = frozenset({"true", "yes", "y", "1", "oxygen", "o2"})
_FALSE = frozenset({"false", "no", "n", "0", "air"})

# ----------------------------------------------------------------------------------------- the YAML file


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Band(_Strict):
    min: float | None = None
    max: float | None = None
    points: int = Field(ge=0, le=3)


class _Numeric(_Strict):
    label: str
    unit: str
    resolution: float = Field(gt=0)
    bands: list[_Band] = Field(min_length=1)


class _Categorical(_Strict):
    label: str
    categories: dict[str, int]


class _Level(_Strict):
    level: Literal["low", "low-medium", "medium", "high"]
    min_total: int | None = None
    single_parameter_points: int | None = None
    clinical_risk: str
    response: str


class _Range(_Strict):
    min: float
    max: float


class _Response(_Strict):
    when: str
    min_total: int | None = None
    single_parameter_points: int | None = None
    frequency: str
    interval_hours: _Range
    response: list[str] = Field(min_length=1)


class _Source(_Strict):
    citation: str
    scoring: str
    thresholds: str
    response: str


class _File(_Strict):
    name: str
    version: str
    file_version: int
    source: _Source
    parameters: dict[str, _Numeric | _Categorical]
    levels: list[_Level]
    clinical_response: list[_Response]
    validation: dict[str, _Range]


@dataclass(frozen=True)
class Rule:
    """One row of chart 2 or chart 4: applies when total ≥ ``min_total`` or any part ≥ ``single_points``;
    a row with neither applies always (the last row)."""

    min_total: int | None
    single_points: int | None
    name: str
    text: str
    frequency: str = ""
    interval_hours: tuple[float, float] = (math.nan, math.nan)

    def applies(self, total: int, max_part: int) -> bool:
        if self.min_total is not None:
            return total >= self.min_total
        if self.single_points is not None:
            return max_part >= self.single_points
        return True


@dataclass(frozen=True)
class Bands:
    """A band set compiled for lookup: ``points[bisect_right(edges, value)]``.

    ``edges`` sit half a resolution above each band's printed maximum, so a value between two printed
    edges falls where it would when rounded to the chart's resolution (halves up)."""

    label: str
    unit: str
    resolution: float
    edges: tuple[float, ...]
    points: tuple[int, ...]
    printed: tuple[tuple[float | None, float | None], ...]

    def score(self, value: float) -> int:
        return self.points[bisect_right(self.edges, value)]


@dataclass(frozen=True)
class News2Table:
    """The NEWS2 chart as loaded from its versioned YAML file."""

    name: str
    version: str
    file_version: int
    citation: str
    charts: dict[str, str]
    bands: dict[str, Bands]
    oxygen_points: int
    air_points: int
    consciousness_points: dict[str, int]
    labels: dict[str, str]
    levels: tuple[Rule, ...]
    responses: tuple[Rule, ...]
    valid: dict[str, tuple[float, float]]
    path: str

    @property
    def source(self) -> str:
        return f"{self.citation} ({self.charts['scoring']}; {self.charts['thresholds']}; {self.charts['response']})"

    def level_rule(self, total: int, max_part: int) -> Rule:
        for rule in self.levels:
            if rule.applies(total, max_part):
                return rule
        raise AssertionError("the last level rule applies always")  # checked on load

    def response_rule(self, total: int, max_part: int) -> Rule:
        for rule in self.responses:
            if rule.applies(total, max_part):
                return rule
        raise AssertionError("the last response rule applies always")  # checked on load


def _compile(name: str, spec: _Numeric, where: str) -> Bands:
    res = spec.resolution
    bands = spec.bands
    if bands[0].min is not None or bands[-1].max is not None:
        raise ConfigError(f"{where}: {name}: the first band must have no 'min' and the last no 'max'")
    edges = []
    for i, band in enumerate(bands):
        if band.min is not None and band.max is not None and band.min > band.max:
            raise ConfigError(f"{where}: {name} band {i + 1}: min {band.min} > max {band.max}")
        if i < len(bands) - 1:
            nxt = bands[i + 1]
            if band.max is None or nxt.min is None:
                raise ConfigError(f"{where}: {name}: inner bands need both 'min' and 'max' (band {i + 1})")
            if not math.isclose(nxt.min, band.max + res, abs_tol=res * 1e-6):
                raise ConfigError(f"{where}: {name}: band {i + 2} starts at {nxt.min} but band {i + 1} ends at "
                                  f"{band.max}; with resolution {res} it must start at {band.max + res:g}")
            edges.append(round(band.max + res / 2, 10))
    return Bands(spec.label, spec.unit, res, tuple(edges), tuple(b.points for b in bands),
                 tuple((b.min, b.max) for b in bands))


def _rules(specs: list[Any], kind: str, where: str) -> tuple[Rule, ...]:
    rules = []
    for i, s in enumerate(specs):
        if s.min_total is not None and s.single_parameter_points is not None:
            raise ConfigError(f"{where}: {kind} row {i + 1} sets both min_total and single_parameter_points")
        if i < len(specs) - 1 and s.min_total is None and s.single_parameter_points is None:
            raise ConfigError(f"{where}: {kind} row {i + 1} has no condition; only the last row may apply always")
        if kind == "levels":
            rules.append(Rule(s.min_total, s.single_parameter_points, s.level, s.response))
        else:
            gap = s.interval_hours
            if not 0 <= gap.min <= gap.max:
                raise ConfigError(f"{where}: clinical_response row {i + 1}: need 0 <= interval_hours.min <= max")
            rules.append(Rule(s.min_total, s.single_parameter_points, s.when, "; ".join(s.response),
                              s.frequency, (gap.min, gap.max)))
    last = rules[-1]
    if not (last.single_points is None and (last.min_total is None or last.min_total <= 0)):
        raise ConfigError(f"{where}: the last {kind} row must apply to every score")
    return tuple(rules)


def _build(data: Any, where: str) -> News2Table:
    try:
        spec = _File.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{where}: {loc}: {first['msg']} ({exc.error_count()} problem(s))") from None
    params = spec.parameters
    needed = {*_BAND_SETS, "on_oxygen", "consciousness"}
    if set(params) != needed:
        raise ConfigError(f"{where}: parameters must be exactly {sorted(needed)}; found {sorted(params)}")
    bands = {}
    for name in _BAND_SETS:
        p = params[name]
        if not isinstance(p, _Numeric):
            raise ConfigError(f"{where}: {name} needs 'bands'")
        bands[name] = _compile(name, p, where)
    oxy, cons = params["on_oxygen"], params["consciousness"]
    if not isinstance(oxy, _Categorical) or set(oxy.categories) != {"air", "oxygen"}:
        raise ConfigError(f"{where}: on_oxygen needs categories 'air' and 'oxygen'")
    if not isinstance(cons, _Categorical) or set(cons.categories) != set(ACVPU):
        raise ConfigError(f"{where}: consciousness needs categories {list(ACVPU)}")
    if sorted(level.level for level in spec.levels) != sorted(LEVELS):
        raise ConfigError(f"{where}: levels must be exactly {list(LEVELS)}")
    if set(spec.validation) != set(NUMERIC):
        raise ConfigError(f"{where}: validation must give a range for each of {list(NUMERIC)}")
    labels = {"resp_rate": params["resp_rate"].label, "spo2": "SpO2", "on_oxygen": oxy.label,
              "systolic_bp": params["systolic_bp"].label, "pulse": params["pulse"].label,
              "consciousness": cons.label, "temperature": params["temperature"].label}
    return News2Table(
        name=spec.name, version=spec.version, file_version=spec.file_version, citation=spec.source.citation,
        charts={"scoring": spec.source.scoring, "thresholds": spec.source.thresholds,
                "response": spec.source.response},
        bands=bands, oxygen_points=oxy.categories["oxygen"], air_points=oxy.categories["air"],
        consciousness_points=dict(cons.categories), labels=labels,
        levels=_rules(spec.levels, "levels", where),
        responses=_rules(spec.clinical_response, "clinical_response", where),
        valid={k: (v.min, v.max) for k, v in spec.validation.items()}, path=where,
    )


@cache
def _default_table() -> News2Table:
    text = resources.files("precimed.monitoring").joinpath("news2.yaml").read_text(encoding="utf-8")
    return _build(yaml.safe_load(text), "news2.yaml")


def load_news2_bands(path: str | Path | None = None) -> News2Table:
    """The NEWS2 chart: the shipped ``news2.yaml`` (cached) or another file with the same layout."""
    if path is None:
        return _default_table()
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read the NEWS2 table: {exc}") from None
    return _build(data, str(path))


# ------------------------------------------------------------------------------------------ scalar scoring


@dataclass(frozen=True, slots=True)
class News2Result:
    """NEWS2 for one observation set.

    ``total`` sums the parts that are present; ``parts`` maps each of :data:`PARAMETERS` to its points or
    ``None`` when not observed; when ``complete`` is False the level is a lower bound (see module doc).
    ``response`` and ``frequency`` are the chart's clinical response and minimum monitoring frequency.
    """

    total: int
    parts: dict[str, int | None]
    missing: list[str]
    complete: bool
    single_param_3: bool
    level: str
    response: str
    frequency: str


@dataclass(frozen=True, slots=True)
class Vitals:
    """One observation set after validation: floats (NaN-free; ``None`` = not observed)."""

    resp_rate: float | None
    spo2: float | None
    spo2_scale: int
    on_oxygen: bool | None
    systolic_bp: float | None
    pulse: float | None
    consciousness: str | None
    temperature: float | None


def _who(patient: Hashable | None) -> str:
    return f"patient {patient!r}" if patient is not None else "observation"


def _number(value: Any, field: str, patient: Hashable | None, table: News2Table) -> float | None:
    kind = type(value)
    if kind is float:
        if value != value:
            return None
        x = value
    elif kind is int:
        x = float(value)
    elif value is None or value is pd.NA:
        return None
    elif kind is bool or isinstance(value, np.bool_):
        raise ValueRangeError(f"{_who(patient)}: {field}={value!r} must be a number, not true/false",
                              column=field, rows=[patient] if patient is not None else ())
    elif isinstance(value, (int, float, np.integer, np.floating)):
        x = float(value)
        if x != x:
            return None
    elif isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        try:
            x = float(text)
        except ValueError:
            raise SchemaError(f"{_who(patient)}: {field}={value!r} is not a number", column=field,
                              rows=[patient] if patient is not None else ()) from None
        if x != x:
            return None
    else:
        raise SchemaError(f"{_who(patient)}: {field}={value!r} is not a number", column=field,
                          rows=[patient] if patient is not None else ())
    low, high = table.valid[field]
    if not low <= x <= high:
        unit = "°C" if field == "temperature" else "%" if field == "spo2" else ""
        raise ValueRangeError(
            f"{_who(patient)}: {field}={x:g} is impossible; it must lie in [{low:g}, {high:g}]{unit and ' ' + unit}."
            " Wrong unit or typo? Correct the record.",
            column=field, rows=[patient] if patient is not None else ())
    return x


def _oxygen(value: Any, patient: Hashable | None) -> bool | None:
    if value is None or value is pd.NA:
        return None
    if value is True or value is False:
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, (int, float, np.integer, np.floating)):
        if value != value:
            return None
        if value in (0, 1):
            return bool(value)
    elif isinstance(value, str):
        text = value.strip().lower()
        if not text or text in ("nan", "null"):
            return None
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise ValueRangeError(f"{_who(patient)}: on_oxygen={value!r} must be true (oxygen) or false (air)",
                          column="on_oxygen", rows=[patient] if patient is not None else ())


def _scale(value: Any, patient: Hashable | None) -> int:
    x = math.nan
    if value is None or value is pd.NA:
        return 1
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return 1
        with contextlib.suppress(ValueError):
            x = float(text)
    elif isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_)):
        x = float(value)
        if x != x:
            return 1
    if x == 1.0 or x == 2.0:
        return int(x)
    if isinstance(value, str) and value.strip().lower() == "nan":
        return 1
    raise ValueRangeError(f"{_who(patient)}: spo2_scale={value!r} must be 1 or 2 (scale 2 only when prescribed "
                          "for hypercapnic respiratory failure)", column="spo2_scale",
                          rows=[patient] if patient is not None else ())


def _acvpu(value: Any, patient: Hashable | None) -> str | None:
    if value is None or value is pd.NA:
        return None
    if isinstance(value, str):
        text = value.strip().upper()
        if not text:
            return None
        if text in ACVPU:
            return text
    elif isinstance(value, float) and value != value:
        return None
    raise ValueRangeError(f"{_who(patient)}: consciousness={value!r} must be one of A, C (new confusion), V, P, U",
                          column="consciousness", rows=[patient] if patient is not None else ())


def parse_vitals(obs: Mapping[str, Any], table: News2Table | None = None, *,
                 patient: Hashable | None = None) -> Vitals:
    """Validate one observation set; absent keys, ``None`` and NaN are not observed."""
    t = table or _default_table()
    if patient is None:
        patient = obs.get("patient_id")
    get = obs.get
    return Vitals(
        _number(get("resp_rate"), "resp_rate", patient, t),
        _number(get("spo2"), "spo2", patient, t),
        _scale(get("spo2_scale"), patient),
        _oxygen(get("on_oxygen"), patient),
        _number(get("systolic_bp"), "systolic_bp", patient, t),
        _number(get("pulse"), "pulse", patient, t),
        _acvpu(get("consciousness"), patient),
        _number(get("temperature"), "temperature", patient, t),
    )


def _spo2_points(t: News2Table, spo2: float | None, scale: int, oxygen: bool | None) -> int | None:
    if spo2 is None:
        return None
    b = t.bands
    if scale == 1:
        return b["spo2_scale_1"].score(spo2)
    if oxygen is True:
        return b["spo2_scale_2_oxygen"].score(spo2)
    on_air = b["spo2_scale_2_air"].score(spo2)
    if oxygen is False:
        return on_air
    return on_air if on_air == b["spo2_scale_2_oxygen"].score(spo2) else None


def vitals_parts(v: Vitals, table: News2Table | None = None) -> dict[str, int | None]:
    """Points of each parameter (``None`` when not observed), in chart order."""
    t = table or _default_table()
    b = t.bands
    return {
        "resp_rate": None if v.resp_rate is None else b["resp_rate"].score(v.resp_rate),
        "spo2": _spo2_points(t, v.spo2, v.spo2_scale, v.on_oxygen),
        "on_oxygen": None if v.on_oxygen is None else (t.oxygen_points if v.on_oxygen else t.air_points),
        "systolic_bp": None if v.systolic_bp is None else b["systolic_bp"].score(v.systolic_bp),
        "pulse": None if v.pulse is None else b["pulse"].score(v.pulse),
        "consciousness": None if v.consciousness is None else t.consciousness_points[v.consciousness],
        "temperature": None if v.temperature is None else b["temperature"].score(v.temperature),
    }


def result_from_parts(parts: dict[str, int | None], table: News2Table | None = None) -> News2Result:
    """Total, level and response from the parts (``None`` parts are missing, never 0)."""
    t = table or _default_table()
    total = 0
    top = 0
    missing = []
    for name, p in parts.items():
        if p is None:
            missing.append(name)
        else:
            total += p
            if p > top:
                top = p
    level = t.level_rule(total, top)
    response = t.response_rule(total, top)
    return News2Result(total, parts, missing, not missing, top >= 3, level.name, response.text,
                       response.frequency)


def score_news2(obs: Mapping[str, Any], table: News2Table | None = None) -> News2Result:
    """Score one observation set (keys as in :data:`FIELDS`; ``patient_id`` is used in error messages).

    >>> r = score_news2({"resp_rate": 26, "spo2": 95, "on_oxygen": True, "systolic_bp": 120, "pulse": 80,
    ...                  "consciousness": "A", "temperature": 37.0})
    >>> r.total, r.level
    (6, 'medium')
    """
    t = table or _default_table()
    return result_from_parts(vitals_parts(parse_vitals(obs, t), t), t)


# -------------------------------------------------------------------------------------- vectorized scoring


def _frame_ids(df: pd.DataFrame) -> pd.Series:
    if "patient_id" in df.columns:
        return df["patient_id"]
    return pd.Series(df.index, index=df.index, name="row")


def _raise_rows(mask: np.ndarray, values: pd.Series, ids: pd.Series, field: str, message: str,
                error: type[Exception] = ValueRangeError) -> None:
    if mask.any():
        bad_ids = ids[mask]
        label = "patient id(s)" if ids.name == "patient_id" else "row(s)"
        raise error(f"{field}: {int(mask.sum())} value(s) {message}, e.g. {examples(values[mask])} at {label} "
                    f"{examples(bad_ids)}", column=field, rows=list(bad_ids[:5]))


def _frame_number(df: pd.DataFrame, field: str, ids: pd.Series, t: News2Table) -> np.ndarray:
    col = df[field]
    if pd.api.types.is_bool_dtype(col):
        _raise_rows(col.notna().to_numpy(), col, ids, field, "are true/false, not numbers")
    x = as_numeric(col, where="score_news2_frame", ids=ids).to_numpy(dtype=float)
    low, high = t.valid[field]
    with np.errstate(invalid="ignore"):
        bad = ~np.isnan(x) & ((x < low) | (x > high))
    _raise_rows(bad, col, ids, field, f"are impossible (must lie in [{low:g}, {high:g}])")
    return x


def _frame_oxygen(col: pd.Series, ids: pd.Series) -> np.ndarray:
    """1.0 oxygen, 0.0 air, NaN unknown."""
    if pd.api.types.is_bool_dtype(col):
        return col.to_numpy(dtype=float, na_value=np.nan)
    if pd.api.types.is_numeric_dtype(col):
        out = col.to_numpy(dtype=float, na_value=np.nan)
        _raise_rows(~np.isnan(out) & (out != 0) & (out != 1), col, ids, "on_oxygen",
                    "are neither true (oxygen) nor false (air)")
        return out
    out = np.full(len(col), np.nan)
    bad = np.zeros(len(col), dtype=bool)
    for i, v in enumerate(col.to_numpy(dtype=object)):
        try:
            r = _oxygen(v, None)
        except ValueRangeError:
            bad[i] = True
            continue
        if r is not None:
            out[i] = 1.0 if r else 0.0
    _raise_rows(bad, col, ids, "on_oxygen", "are neither true (oxygen) nor false (air)")
    return out


def _frame_scale(df: pd.DataFrame, ids: pd.Series) -> np.ndarray:
    if "spo2_scale" not in df.columns:
        return np.ones(len(df))
    col = df["spo2_scale"]
    if pd.api.types.is_bool_dtype(col):
        _raise_rows(col.notna().to_numpy(), col, ids, "spo2_scale", "are true/false, not 1 or 2")
    x = pd.to_numeric(col.replace("", np.nan), errors="coerce").to_numpy(dtype=float)
    text = col.astype(str).str.strip().str.lower()
    blank = ((text == "") | (text == "nan")).to_numpy()  # as the scalar scorer: blank or "NaN" text is scale 1
    bad = (np.isnan(x) & col.notna().to_numpy() & ~blank) | (~np.isnan(x) & (x != 1) & (x != 2))
    _raise_rows(bad, col, ids, "spo2_scale", "are neither 1 nor 2")
    return np.where(np.isnan(x), 1.0, x)


def _frame_acvpu(col: pd.Series, ids: pd.Series, t: News2Table) -> np.ndarray:
    """Points per row (NaN when not observed)."""
    present = col.notna().to_numpy()
    text = col.astype(str).str.strip().str.upper()
    present &= (text != "").to_numpy()
    pts = text.map(t.consciousness_points).to_numpy(dtype=float)
    _raise_rows(present & np.isnan(pts), col, ids, "consciousness",
                "are not one of A, C (new confusion), V, P, U")
    return np.where(present, pts, np.nan)


def _lookup(b: Bands, x: np.ndarray) -> np.ndarray:
    pts = np.asarray(b.points, dtype=float)[np.digitize(x, np.asarray(b.edges))]
    return np.where(np.isnan(x), np.nan, pts)


def score_news2_frame(df: pd.DataFrame, table: News2Table | None = None) -> pd.DataFrame:
    """Score every row of ``df`` at once; identical to :func:`score_news2` row by row.

    ``df`` needs the columns ``resp_rate, spo2, on_oxygen, systolic_bp, pulse, consciousness,
    temperature`` (values may be missing; a whole column absent is a SchemaError, as it is usually a
    misnamed column); ``spo2_scale`` is optional (absent or empty → scale 1). Returns, on ``df``'s index:
    ``<parameter>_points`` (nullable Int8, <NA> = not observed) for each of :data:`PARAMETERS`, ``news2``
    (total of the present parts), ``n_missing``, ``complete``, ``single_param_3``, ``level``,
    ``response`` and ``frequency``.
    """
    t = table or _default_table()
    require_columns(df, PARAMETERS, where="score_news2_frame")
    ids = _frame_ids(df)
    b = t.bands
    x = {f: _frame_number(df, f, ids, t) for f in NUMERIC}
    oxygen = _frame_oxygen(df["on_oxygen"], ids)
    scale = _frame_scale(df, ids)
    s1 = _lookup(b["spo2_scale_1"], x["spo2"])
    s2a = _lookup(b["spo2_scale_2_air"], x["spo2"])
    s2o = _lookup(b["spo2_scale_2_oxygen"], x["spo2"])
    s2 = np.where(oxygen == 1.0, s2o, np.where(oxygen == 0.0, s2a, np.where(s2a == s2o, s2a, np.nan)))
    parts = {
        "resp_rate": _lookup(b["resp_rate"], x["resp_rate"]),
        "spo2": np.where(scale == 2.0, s2, s1),
        "on_oxygen": np.where(np.isnan(oxygen), np.nan, np.where(oxygen == 1.0, t.oxygen_points, t.air_points)),
        "systolic_bp": _lookup(b["systolic_bp"], x["systolic_bp"]),
        "pulse": _lookup(b["pulse"], x["pulse"]),
        "consciousness": _frame_acvpu(df["consciousness"], ids, t),
        "temperature": _lookup(b["temperature"], x["temperature"]),
    }
    matrix = np.column_stack([parts[p] for p in PARAMETERS]) if len(df) else np.zeros((0, len(PARAMETERS)))
    missing = np.isnan(matrix)
    total = np.where(missing, 0.0, matrix).sum(axis=1).astype(np.int64)
    top = np.where(missing, 0.0, matrix).max(axis=1, initial=0.0)

    def choose(rules: tuple[Rule, ...]) -> np.ndarray:
        conds = []
        for r in rules:
            if r.min_total is not None:
                conds.append(total >= r.min_total)
            elif r.single_points is not None:
                conds.append(top >= r.single_points)
            else:
                conds.append(np.ones(len(total), dtype=bool))
        return np.select(conds, np.arange(len(rules)), default=len(rules) - 1)

    lvl, resp = choose(t.levels), choose(t.responses)
    out = {}
    for j, p in enumerate(PARAMETERS):
        out[f"{p}_points"] = pd.arrays.IntegerArray(np.where(missing[:, j], 0, matrix[:, j]).astype(np.int8),
                                                    missing[:, j].copy())
    out["news2"] = total
    out["n_missing"] = missing.sum(axis=1).astype(np.int64)
    out["complete"] = ~missing.any(axis=1)
    out["single_param_3"] = top >= 3
    out["level"] = np.asarray([r.name for r in t.levels], dtype=object)[lvl]
    out["response"] = np.asarray([r.text for r in t.responses], dtype=object)[resp]
    out["frequency"] = np.asarray([r.frequency for r in t.responses], dtype=object)[resp]
    return pd.DataFrame(out, index=df.index)
