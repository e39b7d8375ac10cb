"""How fast `read_table` reads a CSV, side by side with what a user would otherwise call, in one run.

precimed's reader checks what pandas lets through (ragged rows, NUL bytes, huge fields, over-long numbers,
leading-zero codes kept as text): a clean file goes through pyarrow's C++ reader, a file with a problem through
the csv module, which names the row and line. Prints seconds (best of 3) and ratios to `pandas.read_csv`.

    .venv/bin/python benchmarks/read_table_speed.py [ROWS]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from precimed.data import files


def best_of(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main(rows: int = 500_000) -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"patient_id": [f"p{i}" for i in range(rows)], "age": rng.integers(20, 90, rows),
                          "glucose": np.where(rng.random(rows) < 0.1, np.nan, rng.normal(120, 30, rows)),
                          "sex": rng.choice(["F", "M"], rows), "code": [f"{i % 1000:03d}" for i in range(rows)]})
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cohort.csv"
        frame.to_csv(path, index=False)
        mb = path.stat().st_size / 1e6
        pandas_s = best_of(lambda: pd.read_csv(path))
        fast_s = best_of(lambda: files.read_table(path))
        exact_s = best_of(lambda: files._read_delimited_exact(path, ","))
    print(f"{rows:,} rows x 5 columns, {mb:.1f} MB CSV (best of 3)")
    print(f"{'reader':<38}{'seconds':>9}{'MB/s':>9}{'x pandas':>10}")
    for name, seconds in (("pandas.read_csv (no checks)", pandas_s), ("precimed read_table (clean file path)", fast_s),
                          ("precimed csv-module path (any problem)", exact_s)):
        print(f"{name:<38}{seconds:>9.3f}{mb / seconds:>9.1f}{seconds / pandas_s:>10.2f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 500_000)
