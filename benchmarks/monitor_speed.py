"""Throughput of the NEWS2 monitor: records/second through ``run_monitor`` and rows/second of
``score_news2_frame``.

Plain script, not a test: ``python benchmarks/monitor_speed.py [n_patients] [days]``. The stream is a
simulated ward (``simulate_ward``, seed 3) serialised the way a feed would arrive: dicts, or JSON lines
text. Each configuration is timed ``REPEAT`` times after one warm-up; the best run is reported. Outputs
go to in-memory text buffers, so the figures exclude disk I/O.
"""

from __future__ import annotations

import io
import json
import sys
import time

import pandas as pd

from precimed.monitoring import run_monitor, score_news2_frame, simulate_ward

REPEAT = 3


def best_seconds(fn) -> float:
    fn()
    best = float("inf")
    for _ in range(REPEAT):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def as_records(obs: pd.DataFrame) -> list[dict]:
    out = []
    for row in obs.to_dict("records"):
        rec = {}
        for k, v in row.items():
            if v is None or v is pd.NA or (isinstance(v, float) and v != v):
                continue  # not recorded: the field is absent
            if k == "time":
                v = v.isoformat()
            elif k == "on_oxygen":
                v = bool(v)
            elif hasattr(v, "item"):
                v = v.item()
            rec[k] = v
        out.append(rec)
    return out


def main() -> None:
    n_patients = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    days = float(sys.argv[2]) if len(sys.argv) > 2 else 14
    obs, _ = simulate_ward(n_patients, days, seed=3)
    records = as_records(obs)
    lines = [json.dumps(r) + "\n" for r in records]
    n = len(records)
    rows = []
    for label, data, scores in [("run_monitor, dicts, alerts only", records, False),
                                ("run_monitor, dicts, alerts + scores", records, True),
                                ("run_monitor, JSON lines, alerts only", lines, False),
                                ("run_monitor, JSON lines, alerts + scores", lines, True)]:
        secs = best_seconds(lambda data=data, scores=scores: run_monitor(
            data, io.StringIO(), io.StringIO() if scores else None))
        rows.append((label, n, secs))
    big = pd.concat([obs] * max(1, 1_000_000 // n), ignore_index=True)
    secs = best_seconds(lambda: score_news2_frame(big))
    rows.append(("score_news2_frame", len(big), secs))

    summary = run_monitor(records, io.StringIO())
    print(f"simulated ward: {n_patients} patients, {days:g} days, {n} observations, {summary['alerts']} alerts; "
          f"best of {REPEAT}")
    print(f"{'path':<44}{'rows':>10}{'seconds':>10}{'rows/s':>14}")
    for label, count, secs in rows:
        print(f"{label:<44}{count:>10,}{secs:>10.3f}{count / secs:>14,.0f}")


if __name__ == "__main__":
    main()
