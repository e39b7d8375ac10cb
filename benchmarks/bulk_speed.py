"""Bulk scoring of a partitioned data set: one process (engine local) against a 2-worker Dask LocalCluster
(issue 13, item 4).

SYNTHETIC rows (said in the output): patients in the demo bundle's schema (Rotterdam → GBSG: age, meno, size,
grade, nodes, pgr, er, hormon; plausible ranges, independent columns), generated once into /tmp as --files
Parquet partitions (default 20 M rows across 40 files) and reused by later runs of the same size.

Without --bundle it trains the demo's model shape on Rotterdam in a few seconds (the 5-net Cox MLP ensemble,
hidden [64, 32]; fewer epochs, no search, few bootstrap replicates: the scoring cost is the same) into /tmp.

Each engine scores every partition into its own output folder with ``precimed.workflows.bulk.predict_partitions``:
- local: one process, partitions one after another (run in a child process, so its peak memory is its own);
- dask: the recipe's LocalCluster (bulk.local_cluster) of --workers single-threaded processes, given to the recipe
  by its scheduler address;
  the cluster's start-up (and each worker's import of precimed, as the local child imports it before its
  clock starts) is timed apart and not counted in the scoring time; loading the bundle is counted in both.
Peak memory is each process's high-water resident set (getrusage ru_maxrss). The two output folders are then
compared file by file (identical bytes).

Run: .venv/bin/python benchmarks/bulk_speed.py [--rows 2000000] [--files 40] [--workers 2] [--bundle RUN/bundle]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]


def peak_mib() -> float:
    """This process's peak resident memory in MiB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_partitions(rows: int, files: int, folder: Path) -> Path:
    """SYNTHETIC patients in the demo's schema, written once as ``files`` Parquet partitions."""
    done = folder / ".complete"
    if done.exists():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    sizes = np.full(files, rows // files)
    sizes[: rows % files] += 1
    start = 1
    for i, n in enumerate(sizes):
        frame = pd.DataFrame({
            "pid": np.arange(start, start + n, dtype=np.int64),
            "age": rng.integers(25, 90, n),
            "meno": rng.integers(0, 2, n),
            "size": rng.choice(np.array(["<=20", "20-50", ">50"], dtype=object), n),
            "grade": rng.integers(1, 4, n),
            "nodes": rng.integers(1, 30, n),
            "pgr": np.round(rng.lognormal(4, 1.5, n).clip(0, 5000), 1),
            "er": np.round(rng.lognormal(4, 1.5, n).clip(0, 5000), 1),
            "hormon": rng.integers(0, 2, n),
        })
        frame.to_parquet(folder / f"part-{i:04d}.parquet", index=False)
        start += n
    done.touch()
    return folder


def demo_bundle(folder: Path) -> Path:
    """The demo's model shape trained quickly on Rotterdam (scoring costs what the full demo's bundle costs)."""
    bundle = folder / "run" / "bundle"
    if (bundle / "metadata.json").exists():
        return bundle
    from precimed.config import parse_config
    from precimed.workflows.training import train_from_config

    config = yaml.safe_load((ROOT / "examples" / "rotterdam-gbsg.yaml").read_text())
    config["models"] = {"names": ["mlp"], "mlp": config["models"]["mlp"]}
    config["training"] = {k: v for k, v in config["training"].items() if k != "search"} | {
        "max_epochs": 15, "patience": 5, "progress": False}
    config["evaluation"] = {"bootstrap": 10}
    shutil.rmtree(folder / "run", ignore_errors=True)
    return train_from_config(parse_config(config), folder / "run").bundle_path


def run_local(bundle: str, pattern: str, out: str) -> None:
    """Child process: the local engine, then its time and peak memory as one JSON line."""
    from precimed.workflows.bulk import predict_partitions

    start = time.perf_counter()
    result = predict_partitions(bundle, pattern, out, engine="local", progress=False)
    print(json.dumps({"seconds": time.perf_counter() - start, "rows": result.rows, "peak_mib": peak_mib()}))


def _import_recipe() -> None:
    import precimed.workflows.bulk  # noqa: F401


def run_dask(bundle: Path, pattern: str, out: Path, workers: int) -> dict:
    from distributed import Client

    from precimed.workflows.bulk import local_cluster, predict_partitions

    start = time.perf_counter()
    with local_cluster(workers) as cluster, Client(cluster, set_as_default=False) as client:
        client.run(_import_recipe)  # as in the local child: imports are not scoring time
        startup = time.perf_counter() - start
        start = time.perf_counter()
        result = predict_partitions(bundle, pattern, out, engine="dask", scheduler=cluster.scheduler_address,
                                    progress=False)
        seconds = time.perf_counter() - start
        peaks = client.run(peak_mib)
    return {"seconds": seconds, "startup": startup, "rows": result.rows, "peaks": sorted(peaks.values()),
            "driver_mib": peak_mib()}


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=20_000_000)
    ap.add_argument("--files", type=int, default=40)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--bundle", type=Path)
    ap.add_argument("--data", type=Path, help="partition folder (default /tmp/precimed-bulk-ROWS-FILES)")
    ap.add_argument("--local-child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.local_child:
        run_local(*args.local_child)
        return
    tmp = Path(tempfile.gettempdir())
    data = make_partitions(args.rows, args.files, args.data or tmp / f"precimed-bulk-{args.rows}-{args.files}")
    bundle = args.bundle or demo_bundle(tmp / "precimed-bulk-bundle")
    pattern = str(data / "*.parquet")
    outs = Path(tempfile.mkdtemp(prefix="precimed-bulk-out-"))
    try:
        child = subprocess.run([sys.executable, __file__, "--local-child", str(bundle), pattern, str(outs / "local")],
                               check=True, capture_output=True, text=True, env=os.environ | {"OMP_NUM_THREADS": "1"})
        local = json.loads(child.stdout.strip().splitlines()[-1])
        dask = run_dask(bundle, pattern, outs / "dask", args.workers)
        same = digest(outs / "local") == digest(outs / "dask")
    finally:
        shutil.rmtree(outs, ignore_errors=True)
    part_rows = args.rows // args.files
    print(f"SYNTHETIC rows in the demo schema: {local['rows']:,} rows in {args.files} Parquet partitions "
          f"(~{part_rows:,} rows each) at {data}; bundle {bundle}; {os.cpu_count()} CPU(s) on this machine")
    print(f"{'engine':<28} {'processes':>9} {'seconds':>8} {'rows/s':>11} {'ratio':>6} {'peak MiB per process':>24}")
    lr = local["rows"] / local["seconds"]
    dr = dask["rows"] / dask["seconds"]
    print(f"{'local (reference)':<28} {1:>9} {local['seconds']:>8.1f} {lr:>11,.0f} {1.0:>6.2f} "
          f"{local['peak_mib']:>24.0f}")
    peaks = " / ".join(f"{p:.0f}" for p in dask["peaks"])
    print(f"{'dask LocalCluster':<28} {args.workers:>9} {dask['seconds']:>8.1f} {dr:>11,.0f} {dr / lr:>6.2f} "
          f"{peaks:>24}")
    print(f"dask cluster start-up {dask['startup']:.1f} s (not counted above); driver peak {dask['driver_mib']:.0f} "
          f"MiB; output files identical between engines: {'yes' if same else 'NO'}")


if __name__ == "__main__":
    main()
