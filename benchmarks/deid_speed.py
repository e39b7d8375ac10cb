"""De-identification speed: a 1,000,000-row × 20-column table, and free-text notes per second.

The table has the columns a typical extract has: an MRN (200,000 distinct patients, pseudonymized),
a name, phone, e-mail, SSN and street address (identifiers, removed), birth / admission / discharge
dates (shifted per patient), ZIP and age (quasi-identifiers, generalized), sex and race (kept), six
lab values (kept) and one unlisted free-text comment column (scanned, dropped). All values are text,
as read from a CSV. Timed: ``deidentify_table`` in memory (rows/s), and the whole file path
``deidentify_file`` CSV -> Parquet (read, de-identify, write). Notes: ``redact`` on generated notes.

Run: .venv/bin/python benchmarks/deid_speed.py [--rows 1000000] [--notes 5000]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from precimed.privacy import KeyMaterial, deidentify_file, deidentify_table, generate_notes, parse_policy, redact

POLICY = {
    "patient_id": "mrn",
    "columns": {"mrn": "pseudonym", "name": "identifier", "phone": "identifier", "email": "identifier",
                "ssn": "identifier", "address": "identifier", "birth_date": "date", "admit_date": "date",
                "discharge_date": "date", "zip": "quasi", "age": "quasi", "sex": "keep", "race": "keep",
                **{f"lab{i}": "keep" for i in range(6)}},
}


def make_table(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    patients = rng.integers(0, 200_000, n)
    born = pd.Timestamp("1930-01-01") + pd.to_timedelta(rng.integers(0, 30_000, 200_000), "D")
    admit = pd.Timestamp("2015-01-01") + pd.to_timedelta(rng.integers(0, 3_000, n), "D")
    stay = pd.to_timedelta(rng.integers(0, 30, n), "D")
    first = np.array(["Maria", "John", "Wei", "Aisha", "Carlos", "Olga", "James", "Priya"])
    last = np.array(["Smith", "Garcia", "Nguyen", "Okafor", "Kowalski", "Patel", "Cohen", "Johnson"])
    df = pd.DataFrame({
        "mrn": pd.Series(patients).map(lambda p: f"{p:08d}"),
        "name": pd.Series(first[patients % 8]) + " " + pd.Series(last[patients // 8 % 8]),
        "phone": pd.Series(patients).map(lambda p: f"617-555-{p % 10000:04d}"),
        "email": pd.Series(patients).map(lambda p: f"p{p}@example.org"),
        "ssn": pd.Series(patients).map(lambda p: f"{p % 900 + 100:03d}-{p % 90 + 10:02d}-{p % 9000 + 1000:04d}"),
        "address": pd.Series(patients % 9000 + 1).astype(str) + " Oak Street",
        "birth_date": born[patients].strftime("%Y-%m-%d"),
        "admit_date": admit.strftime("%Y-%m-%d"),
        "discharge_date": (admit + stay).strftime("%Y-%m-%d"),
        "zip": pd.Series(rng.integers(1000, 99999, 200_000)[patients]).map(lambda z: f"{z:05d}"),
        "age": pd.Series(rng.integers(18, 100, n)).astype(str),
        "sex": rng.choice(["F", "M"], n),
        "race": rng.choice(["white", "black", "asian", "other"], n),
        "comment": rng.choice(["", "stable", "call back 617-555-0100", "seen by Dr. Smith"], n),
    })
    for i in range(6):
        df[f"lab{i}"] = np.round(rng.normal(100, 15, n), 1).astype(str)
    return df[[c for c in df.columns if c != "comment"] + ["comment"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--notes", type=int, default=5_000)
    args = parser.parse_args()
    key = KeyMaterial(os.urandom(32), "benchmark")
    policy = parse_policy(POLICY)

    t = time.perf_counter()
    df = make_table(args.rows)
    print(f"table: {len(df):,} rows × {df.shape[1]} columns (made in {time.perf_counter() - t:.1f} s)")

    t = time.perf_counter()
    out, report = deidentify_table(df, policy, key)
    seconds = time.perf_counter() - t
    print(f"deidentify_table (in memory): {seconds:6.1f} s  {len(df) / seconds:12,.0f} rows/s  "
          f"-> {out.shape[1]} columns, k = {report.kanonymity['k']}")

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        source, target = folder / "in.csv", folder / "out.parquet"
        df.to_csv(source, index=False)
        (folder / "policy.yaml").write_text(yaml.safe_dump(POLICY))
        key_path = folder / "keys" / "k.key"
        key_path.parent.mkdir()
        key_path.write_bytes(os.urandom(32).hex().encode())
        t = time.perf_counter()
        deidentify_file(source, target, folder / "policy.yaml", key_file=key_path)
        seconds = time.perf_counter() - t
        print(f"deidentify_file CSV -> Parquet ({source.stat().st_size / 1e6:.0f} MB): {seconds:6.1f} s  "
              f"{len(df) / seconds:12,.0f} rows/s")

    notes = [n.text for n in generate_notes(args.notes, seed=0)]
    chars = sum(map(len, notes))
    t = time.perf_counter()
    for text in notes:
        redact(text, shift_days=17)
    seconds = time.perf_counter() - t
    print(f"notes: {len(notes):,} notes ({chars / len(notes):.0f} characters each): {seconds:6.2f} s  "
          f"{len(notes) / seconds:8,.0f} notes/s  {chars / seconds / 1e6:5.2f} MB/s")


if __name__ == "__main__":
    main()
