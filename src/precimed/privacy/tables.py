"""De-identify CSV / TSV / Parquet tables by a policy: one action per column, a report of counts.

Per role:
  identifier  the column is removed
  pseudonym   keyed HMAC-SHA256 pseudonym (missing stays missing)
  date        shifted by the patient's keyed offset (``options.dates.mode: shift``) or reduced to the year
              (``year``); birth dates of people aged 90 or over are top-coded to 90 at the row's latest
              date; dates that cannot be parsed become missing (counted)
  quasi       generalized: age over 89 -> "90+", ZIP -> 3 digits (restricted prefixes -> 000), dates -> year,
              or a coarser level (``options.generalize``); then, with ``options.k``, coarsened and rows
              suppressed until every equivalence class holds at least k rows
  text        free-text PHI replaced (precimed.privacy.notes); dates shifted with the row's patient offset
  keep        unchanged (still scanned; a pattern found there is a warning)
Columns the policy does not name are scanned and, by default, dropped (``options.unlisted``).

CSV is read as text, so kept values are written back exactly as they were. The report names columns,
actions and counts; it never holds a value, and neither do log records or error messages. The output
is written atomically and never over its input.
"""

from __future__ import annotations

import io
import logging
import warnings
from collections import Counter
from datetime import date, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from precimed.atomic import atomic_write_bytes
from precimed.csvio import csv_bytes
from precimed.errors import ConfigError, DataError, SchemaError
from precimed.privacy import dates as dt
from precimed.privacy.kanon import GENERALIZATIONS, HIERARCHIES, achieve_k, infer_hierarchy, kanonymity_report
from precimed.privacy.notes import NOTES_MODES, KnownIdentifiers, UncertainDateError, redact
from precimed.privacy.policy import ColumnAction, DeidReport, Policy, load_policy
from precimed.privacy.pseudonym import KeyMaterial, Pseudonymizer, key_file_warnings, load_key
from precimed.privacy.scan import scan_values

log = logging.getLogger("precimed.privacy")

TABLE_SUFFIXES = (".csv", ".tsv", ".parquet")
KEEP_SCAN_LIMIT = 20_000  # distinct values scanned in each kept column
_MISSING_TEXT = frozenset({"", "NA", "NaN", "nan", "null", "None", "NaT", "<NA>"})


def _missing(values: pd.Series) -> pd.Series:
    """Missing values, including the CSV spellings of missing ("", "NA", "null" ...); each distinct value once."""
    if values.dtype != object:
        return values.isna()
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    blank = np.array([isinstance(u, str) and u.strip() in _MISSING_TEXT for u in uniques] + [True], dtype=bool)
    return pd.Series(blank[codes], index=values.index)


def _changed(before: pd.Series, after: pd.Series, missing: pd.Series | None = None) -> int:
    """Non-missing input values whose output differs (a removed value counts as changed)."""
    present = ~(_missing(before) if missing is None else missing)
    a, b = before[present], after.reindex(before.index)[present]
    if a.dtype == object and b.dtype == object:
        return int((a.to_numpy() != b.to_numpy()).sum())
    b_text = b.astype(object).where(b.notna(), None).map(lambda v: None if v is None else str(v))
    return int((a.astype(str).to_numpy(dtype=object) != b_text.to_numpy(dtype=object)).sum())


def deidentify_table(df: pd.DataFrame, policy: Policy, key: KeyMaterial, *,
                     source: str = "table", output: str = "",
                     notes_mode: str | None = None) -> tuple[pd.DataFrame, DeidReport]:
    """De-identify a DataFrame by `policy` under `key`; return (new frame, report).

    `notes_mode` ("strict" or "allowlist") overrides the policy's ``options.text.mode`` for text columns.
    """
    if not isinstance(key, KeyMaterial):
        raise ConfigError("deidentify_table needs a KeyMaterial (load_key(...)); no key, no output")
    if notes_mode is not None and notes_mode not in NOTES_MODES:
        raise ConfigError(f"notes mode {notes_mode!r} is not one of {', '.join(NOTES_MODES)}")
    opts = policy.options
    notes_mode = notes_mode or opts.text.mode
    report = DeidReport("table", source, output, key.source, key.fingerprint,
                        settings={"dates": opts.dates.model_dump(), "unlisted": opts.unlisted,
                                  "text": opts.text.model_dump() | {"mode": notes_mode},
                                  "k": opts.k, "pseudonym_length": opts.pseudonym_length})
    absent = [c for c in policy.columns if c not in df.columns]
    if absent:
        report.warnings.append(f"policy column(s) {absent} are not in the table")
    pid = policy.patient_id
    needs_shift = opts.dates.mode == "shift" and any(policy.role_of(c) in ("date", "text") for c in df.columns)
    if pid is not None and pid not in df.columns:
        raise SchemaError(f"{source}: patient_id column {pid!r} is not in the table; "
                          f"columns: {sorted(map(str, df.columns))[:25]}", column=pid)
    if needs_shift and pid is None:
        raise ConfigError("date shifting needs patient_id in the policy (or options.dates.mode: year)")
    shifter = dt.DateShifter(key, opts.dates.max_shift_days)
    shifts = shifter.shifts_for(df[pid]) if (pid is not None and needs_shift) else None
    pseudo = Pseudonymizer(key, opts.pseudonym_length, opts.pseudonym_prefix)

    out: dict[str, pd.Series] = {}
    parsed_dates: dict[str, tuple[pd.Series, pd.Series, bool]] = {}
    for column in df.columns:
        if policy.role_of(column) == "date":
            parsed_dates[column] = dt.parse_dates(df[column])
    birth_columns = _birth_columns(policy, [c for c in df.columns if policy.role_of(c) == "date"])
    quasi_levels: dict[str, tuple[str, int]] = {}
    phi_counts: Counter = Counter()

    for column in df.columns:
        values = df[column]
        role = policy.role_of(column)
        missing = _missing(values)
        n_present = int((~missing).sum())
        clean = values.where(~missing, np.nan) if missing.any() else values
        if role == "identifier":
            report.columns.append(ColumnAction(column, role, "removed", n_present))
        elif role == "pseudonym":
            new = pseudo.map_series(clean)
            out[column] = new
            action = "pseudonymized (HMAC-SHA256)" + (" [patient id]" if column == pid else "")
            report.columns.append(ColumnAction(column, role, action, n_present))
        elif role == "date":
            new, action, detail = _date_column(column, values, parsed_dates, birth_columns, shifts, policy)
            out[column] = new
            report.columns.append(ColumnAction(column, role, action, _changed(values, new, missing), detail))
        elif role == "quasi":
            new, name, detail = _quasi_column(column, clean, policy, source)
            out[column] = new
            quasi_levels[column] = GENERALIZATIONS.get(name, ("none", 0))
            report.columns.append(ColumnAction(column, role, f"generalized ({name})", _changed(values, new, missing),
                                               detail))
        elif role == "text":
            new, counts = _text_column(values, shifts if opts.text.dates == "shift" else None,
                                       _row_identifiers(df, policy), mode=notes_mode,
                                       uncertain=opts.text.uncertain_dates, where=f"{source}: column {column!r}")
            uncertain = counts.pop("DATE_UNCERTAIN", 0)
            phi_counts.update(counts)
            out[column] = new
            detail = {"phi_replaced": dict(sorted(counts.items())), "mode": notes_mode}
            if uncertain:
                detail["uncertain_dates_redacted"] = uncertain
            report.columns.append(ColumnAction(column, role, "free-text PHI redacted", _changed(values, new), detail))
        elif role == "keep":
            out[column] = values
            scan = scan_values(clean, max_unique=KEEP_SCAN_LIMIT)
            report.columns.append(ColumnAction(column, role, "kept", 0))
            if scan.flagged:
                report.scans.append(scan.to_dict() | {"action": "kept (declared keep)"})
                report.warnings.append(f"kept column {column!r} matches identifier patterns "
                                       f"{sorted(scan.patterns)}; check that keeping it is intended")
        else:
            scan = scan_values(clean)
            keep = opts.unlisted == "keep_unflagged" and not scan.flagged
            action = "kept (not in policy, no pattern found)" if keep else "dropped (not in policy)"
            report.scans.append(scan.to_dict() | {"action": action})
            if keep:
                out[column] = values
            report.columns.append(ColumnAction(column, "unlisted", action, 0 if keep else n_present))

    unlisted = [c.column for c in report.columns if c.role == "unlisted"]
    if unlisted and opts.unlisted == "error":
        raise ConfigError(f"{source}: column(s) {unlisted} are not in the policy; give each a role "
                          "(identifier, pseudonym, date, quasi, text, keep)")
    result = pd.DataFrame(out, index=df.index)
    report.phi_in_text = dict(sorted(phi_counts.items()))
    report.counts = {"rows_in": len(df), "columns_in": df.shape[1]}

    quasi = [c for c in result.columns if policy.role_of(c) == "quasi"]
    if quasi:
        sensitive = [c for c in opts.sensitive if c in result.columns]
        if opts.k is not None:
            hier = {c: quasi_levels[c][0] for c in quasi}
            start = {c: quasi_levels[c][1] for c in quasi}
            done = achieve_k(result, hier, opts.k, max_suppression=opts.max_suppression,
                             auto_generalize=opts.auto_generalize, start=start, sensitive=sensitive,
                             l_target=opts.l_diversity)
            for action in report.columns:
                if action.column in quasi:
                    name = done.report.generalization[action.column]
                    if not action.action.endswith(f"({name})"):
                        action.action = f"generalized ({name}, to reach k={opts.k})"
                        action.values_changed = _changed(df.loc[done.frame.index, action.column],
                                                         done.frame[action.column])
            result = done.frame
            report.kanonymity = done.report.to_dict()
        else:
            report.kanonymity = kanonymity_report(result, quasi, sensitive=sensitive,
                                                  l_target=opts.l_diversity).to_dict()
    result = result.reset_index(drop=True)
    report.counts |= {"rows_out": len(result), "rows_suppressed": len(df) - len(result),
                      "columns_out": result.shape[1]}
    log.info("de-identified %s: %d rows in, %d out, %d columns out", source, len(df), len(result), result.shape[1])
    return result, report


def _birth_columns(policy: Policy, date_columns: list[str]) -> list[str]:
    declared = policy.options.dates.birth_columns
    if declared is not None:
        return [c for c in declared if c in date_columns]
    return [c for c in date_columns if "birth" in c.lower() or "dob" in c.lower()]


def _date_column(column: str, values: pd.Series, parsed_dates: dict, birth_columns: list[str],
                 shifts: pd.Series | None, policy: Policy) -> tuple[pd.Series, str, dict]:
    parsed, bad, with_time = parsed_dates[column]
    detail: dict[str, int] = {}
    if int(bad.sum()):
        detail["unparseable_removed"] = int(bad.sum())
    if column in birth_columns:
        reference = _row_reference(parsed_dates, exclude=column, index=values.index,
                                   default=policy.options.dates.reference_date)
        both = parsed.notna() & reference.notna()
        ages = pd.Series(np.nan, index=values.index)
        ref, bd = reference[both], parsed[both]
        ages[both] = (ref.dt.year - bd.dt.year
                               - ((ref.dt.month * 100 + ref.dt.day) < (bd.dt.month * 100 + bd.dt.day)))
        old = ages > 89
        if old.any():
            top = reference[old].map(lambda d: pd.Timestamp(dt.top_coded_birth(d.date())))
            parsed = parsed.copy()
            parsed[old] = top
            detail["top_coded_age_90_plus"] = int(old.sum())
    mode = policy.options.dates.mode
    if mode == "year":
        new = dt.years(parsed)
        return new, "year only", detail
    assert shifts is not None
    no_patient = parsed.notna() & shifts.isna()
    if no_patient.any():
        detail["no_patient_id_removed"] = int(no_patient.sum())
    shifted = dt.shift_column(parsed, shifts)
    if pd.api.types.is_datetime64_any_dtype(values):
        new = shifted
    else:
        new = dt.format_dates(shifted, with_time=with_time)
    return new, "shifted per patient", detail


def _row_reference(parsed_dates: dict, *, exclude: str, index: pd.Index, default: date | None) -> pd.Series:
    """Latest of the row's other dates (the age reference for a birth date); `default` (or today) otherwise."""
    others = [p for c, (p, _, _) in parsed_dates.items() if c != exclude]
    today = pd.Timestamp(default if default is not None else datetime.now().date())
    if not others:
        return pd.Series(today, index=index)
    latest = pd.concat(others, axis=1).max(axis=1)
    return latest.fillna(today)


def _quasi_column(column: str, clean: pd.Series, policy: Policy, source: str = "table") -> tuple[pd.Series, str, dict]:
    """`clean`: the column with every spelling of missing as NaN. A value the generalization cannot read is
    removed and counted, or (``options.unparseable: fail``) refused with the column and the first row."""
    name = policy.options.generalize.get(column, "auto")
    if name == "auto":
        hier = infer_hierarchy(column, clean)
        name = HIERARCHIES[hier][0][0]
    if name == "none":
        return clean, name, {}
    hier, level = GENERALIZATIONS[name]
    new = HIERARCHIES[hier][level][1](clean)
    bad = new.isna() & clean.notna()
    unparseable = int(bad.sum())
    if unparseable and policy.options.unparseable == "fail":
        first = int(np.flatnonzero(bad.to_numpy())[0]) + 1
        raise DataError(f"{source}: quasi column {column!r}: {unparseable} value(s) cannot be read for "
                        f"generalization ({name}), first at data row {first}; fix them or set options.unparseable: "
                        "redact")
    return new, name, ({"unparseable_removed": unparseable} if unparseable else {})


def _row_identifiers(df: pd.DataFrame, policy: Policy) -> pd.DataFrame:
    """The row's identifier and pseudonym columns (name, phone, e-mail, MRN ...): searched for in its notes."""
    columns = [c for c in df.columns if policy.role_of(c) in ("identifier", "pseudonym")]
    return df[columns]


def _text_column(values: pd.Series, shifts: pd.Series | None, identifiers: pd.DataFrame | None = None, *,
                 mode: str = "strict", uncertain: str = "redact",
                 where: str = "text column") -> tuple[pd.Series, Counter]:
    """Redact each note with its row's own identifiers; an unshiftable date fails naming the row, never the text."""
    counts: Counter = Counter()
    out = []
    shift_values = shifts.to_numpy() if shifts is not None else None
    rows = identifiers.to_numpy(dtype=object) if identifiers is not None and identifiers.shape[1] else None
    cache: dict[tuple, KnownIdentifiers] = {}
    for i, value in enumerate(values.to_numpy(dtype=object)):
        if value is None or (isinstance(value, float) and np.isnan(value)) or not str(value).strip():
            out.append(value)
            continue
        days = None
        if shift_values is not None and not np.isnan(shift_values[i]):
            days = int(shift_values[i])
        known = None
        if rows is not None:
            key = tuple(str(v) for v in rows[i])
            known = cache.get(key)
            if known is None:
                known = cache.setdefault(key, KnownIdentifiers.from_values(rows[i]))
        try:
            text, found = redact(str(value), shift_days=days, known=known, mode=mode,  # type: ignore[arg-type]
                                 uncertain=uncertain)  # type: ignore[arg-type]
        except UncertainDateError as exc:
            raise DataError(f"{where}, data row {i + 1}: {exc} (options.text.uncertain_dates: fail)") from None
        counts.update(found)
        out.append(text)
    return pd.Series(out, index=values.index, dtype=object), counts


# ------------------------------------------------------------------------------------------------ files
def read_table_text(path: Path) -> pd.DataFrame:
    """Read CSV/TSV as text (values kept exactly) or Parquet with its types; errors never quote values."""
    suffix = path.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise DataError(f"{path}: unknown table type {suffix or '(none)'}; accepted: {', '.join(TABLE_SUFFIXES)}")
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    if suffix == ".parquet":
        try:
            return pd.read_parquet(path)
        except (OSError, ValueError):
            raise DataError(f"{path}: cannot read the file as Parquet") from None
    sep = "\t" if suffix == ".tsv" else ","
    try:
        header = _raw_header(path, sep)
        duplicates = sorted({h for h in header if header.count(h) > 1})
        if duplicates:
            raise SchemaError(f"{path}: duplicate column name(s) {duplicates}; rename them", column=duplicates[0])
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)  # never shift a row's fields into the index
            return pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, na_filter=False,
                               encoding="utf-8-sig", index_col=False)
    except pd.errors.ParserWarning:
        raise DataError(f"{path}: a row has more fields than the header; fix the file (quote values with commas)") \
            from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: the file is not UTF-8 text; save it as UTF-8") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file has no rows") from None
    except pd.errors.ParserError:
        raise DataError(f"{path}: cannot parse the file as {'TSV' if sep == chr(9) else 'CSV'} "
                        "(a row has more fields than the header?)") from None


def _raw_header(path: Path, sep: str) -> list[str]:
    import csv

    with path.open(newline="", encoding="utf-8-sig") as handle:
        return next(csv.reader(handle, delimiter=sep), [])


def table_bytes(df: pd.DataFrame, path: Path) -> bytes:
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        buffer = io.BytesIO()
        try:
            df.to_parquet(buffer, index=False)
        except (ValueError, TypeError, OSError):  # pyarrow's messages may quote a value: never show them
            mixed = [c for c in df.columns if df[c].dtype == object
                     and df[c].dropna().map(type).nunique() > 1]
            raise DataError(f"{path}: cannot write Parquet; column(s) {mixed or '?'} mix value types. "
                            "Write CSV instead, or fix the input types") from None
        return buffer.getvalue()
    if suffix in (".csv", ".tsv"):
        return csv_bytes(df, sep="\t" if suffix == ".tsv" else ",")
    raise ConfigError(f"{path}: unknown output type {suffix or '(none)'}; accepted: {', '.join(TABLE_SUFFIXES)}")


def same_file(a: Path, b: Path) -> bool:
    """The two paths name one file (after resolving links, or the same inode)."""
    try:
        if a.resolve() == b.resolve():
            return True
        return a.exists() and b.exists() and a.samefile(b)
    except OSError:
        return False


def refuse_clashes(outputs: dict[str, Path | None], protected: dict[str, Path | None]) -> None:
    """Refuse an output path that names a protected file (the input, the key, the policy) or another output.

    `outputs` / `protected`: label (e.g. "--report") -> path. One line naming both labels and the path.
    """
    named_outputs = [(label, Path(p)) for label, p in outputs.items() if p is not None]
    for label, path in named_outputs:
        for other, guarded in protected.items():
            if guarded is not None and same_file(path, Path(guarded)):
                raise ConfigError(f"{label} {path} is the same file as the {other}; an output never overwrites "
                                  "its input, key or policy: choose another path")
    for i, (label, path) in enumerate(named_outputs):
        for other, second in named_outputs[i + 1:]:
            if same_file(path, second):
                raise ConfigError(f"{label} and {other} are the same file ({path}); give each its own path")


def check_paths(input_path: Path, output_path: Path, *, overwrite: bool) -> None:
    """Refuse an output that is the input (or the same file), or an existing output without overwrite."""
    if same_file(input_path, output_path):
        raise ConfigError(f"output {output_path} is the input file; the output never overwrites its input")
    if output_path.exists() and not overwrite:
        raise ConfigError(f"{output_path} already exists; choose another --out or pass --overwrite")


def deidentify_file(input: str | Path, output: str | Path, policy_path: str | Path, key_file: str | Path | None = None,
                    key_env: str | None = None, *, overwrite: bool = False,
                    notes_mode: str | None = None) -> DeidReport:
    """De-identify a CSV/TSV/Parquet file into `output` (CSV/TSV/Parquet by its suffix); return the report.

    The key is loaded before any data is read (no key, no output); the output is written in one
    atomic rename after all work succeeded, so a failure leaves no output file.
    """
    input_path, output_path = Path(input), Path(output)
    refuse_clashes({"output": output_path}, {"input": input_path, "key file": Path(key_file) if key_file else None,
                                             "policy": Path(policy_path)})
    check_paths(input_path, output_path, overwrite=overwrite)
    if output_path.suffix.lower() not in TABLE_SUFFIXES:
        raise ConfigError(f"{output_path}: output must end in {', '.join(TABLE_SUFFIXES)}")
    key = load_key(key_file, key_env)
    policy = load_policy(policy_path)
    df = read_table_text(input_path)
    result, report = deidentify_table(df, policy, key, source=input_path.name, output=output_path.name,
                                      notes_mode=notes_mode)
    report.warnings += key_file_warnings(key_file, [input_path, output_path])
    atomic_write_bytes(output_path, table_bytes(result, output_path))
    return report
