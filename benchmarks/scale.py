"""Scale: time and memory of each stage of a training run as the rows grow (issue 13, item 6).

SYNTHETIC rows (said in the output): 50 numeric features, a binary outcome from a logistic model with a few
interactions. For each size (default 10 k, 100 k, 1 M rows) one `precimed.train` run: MLP + logistic + LightGBM,
a stratified 75 / 25 split, 200 bootstrap replicates, SHAP on 200 patients. Each stage is timed from the recipe's
own progress messages, and the process's resident memory is read from /proc at each message (peak = VmHWM, the
high-water mark since the run started; every size runs in its own process so the peaks do not mix).

Prints one row per stage and size, then how each stage grows from one size to the next (time ratio ÷ row ratio:
1.0 is linear, above 1 grows faster than the rows). Run: .venv/bin/python benchmarks/scale.py [--sizes 10000,100000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

N_FEATURES = 50


def _status(key: str) -> float:
    """VmRSS / VmHWM of this process in MiB (Linux /proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def make_rows(n: int, path: Path, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, N_FEATURES)).astype(np.float32)
    w = rng.normal(size=N_FEATURES) / np.sqrt(N_FEATURES)
    logit = X @ w + 0.5 * X[:, 0] * X[:, 1] - 0.4 * np.abs(X[:, 2])
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(N_FEATURES)])
    frame.insert(0, "row_id", np.arange(1, n + 1))
    frame["outcome"] = y
    frame.to_parquet(path, index=False)


def one_size(n: int) -> list[dict]:
    """Runs in a child process: one training run on n synthetic rows; stage times and memory."""
    import precimed

    # 1 M rows × 50 float columns is ~230 MB of Parquet: over the default input limit, raised here (and said so)
    os.environ.setdefault("PRECIMED_MAX_INPUT_BYTES", str(4 * 2**30))
    folder = Path(tempfile.mkdtemp(prefix="precimed-scale-"))
    data = folder / "rows.parquet"
    make_rows(n, data)
    cfg = {"name": f"scale-{n}", "seed": 0, "patient_id": "row_id", "data": {"train": {"path": str(data)}},
           "task": {"kind": "binary", "target": "outcome"},
           "features": [{"name": f"x{i}"} for i in range(N_FEATURES)],
           "split": {"kind": "stratified", "test_fraction": 0.25},
           "models": {"names": ["mlp", "logistic", "gbm"], "mlp": {"hidden": [64, 32]}},
           "training": {"max_epochs": 20, "patience": 3, "batch_size": 1024, "progress": False},
           "evaluation": {"bootstrap": 200, "explain": 200}}
    stages: list[dict] = []
    last = {"t": time.perf_counter(), "stage": "start"}

    def echo(message: str) -> None:
        now = time.perf_counter()
        stages.append({"rows": n, "stage": last["stage"], "seconds": now - last["t"], "rss_mib": _status("VmRSS"),
                       "peak_mib": _status("VmHWM")})
        stage = "loading the rows" if message.startswith("loading") else message.split(" on ")[0].split(" with ")[0]
        last.update(t=now, stage=stage[:48])

    precimed.train(cfg, folder / "run", echo=echo, progress=False)
    echo("done")
    return stages[1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(one_size(args.child)))
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"SYNTHETIC rows × {N_FEATURES} features, binary outcome; MLP + logistic + LightGBM, "
          "200 bootstrap replicates; PRECIMED_MAX_INPUT_BYTES raised to 4 GiB for the 1 M-row file")
    results: dict[int, list[dict]] = {}
    for n in sizes:
        out = subprocess.run([sys.executable, __file__, "--child", str(n)], capture_output=True, text=True, check=True)
        results[n] = json.loads(out.stdout.strip().splitlines()[-1])
        total = sum(s["seconds"] for s in results[n])
        print(f"\n{n:,} rows: {total:.1f} s, peak {max(s['peak_mib'] for s in results[n]):.0f} MiB")
        print(f"  {'stage':50} {'seconds':>9} {'RSS MiB':>9} {'peak MiB':>9}")
        for s in results[n]:
            print(f"  {s['stage']:50} {s['seconds']:9.2f} {s['rss_mib']:9.0f} {s['peak_mib']:9.0f}")
    for small, large in zip(sizes[:-1], sizes[1:], strict=False):
        print(f"\ngrowth {small:,} → {large:,} rows (time ratio ÷ row ratio; 1.0 = linear)")
        a = {s["stage"]: s["seconds"] for s in results[small]}
        for s in results[large]:
            if s["stage"] in a and a[s["stage"]] > 0.05:
                print(f"  {s['stage']:50} {s['seconds'] / a[s['stage']] / (large / small):6.2f}")


if __name__ == "__main__":
    main()
