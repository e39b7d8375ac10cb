"""Small configs on real cohorts that train in a second or two."""

import copy


def fast(config: dict, **training) -> dict:
    """Shrink a config so it trains in a second or two: few epochs, one net, few bootstrap replicates."""
    config = copy.deepcopy(config)
    config["training"] = {**config.get("training", {}), "max_epochs": 40, "patience": 8, "lr": 0.01,
                          "batch_size": 64, "progress": False, **training}
    config["models"] = {**config.get("models", {}), "mlp": {"hidden": [16, 8], "ensemble": 1},
                        "gbm": {"n_estimators": 30}}
    config["evaluation"] = {"bootstrap": 30}
    return config


PIMA = {
    "name": "pima-small",
    "data": {"train": {"dataset": "pima_tr"}, "test": {"dataset": "pima_te"}},
    "task": {"kind": "binary", "target": "type", "positive": "Yes"},
    "features": [
        {"name": "glu", "kind": "numeric", "unit": "mg/dL", "range": [20, 400]},
        {"name": "bmi", "kind": "numeric", "unit": "kg/m2", "range": [12, 80]},
        {"name": "age", "kind": "numeric", "unit": "years", "range": [18, 100]},
        {"name": "ped", "kind": "numeric", "range": [0, 3]},
    ],
    "split": {"kind": "external"},
}


def small_pima_bundle(folder):
    """A small Pima bundle (MLP + logistic, 5 bootstrap replicates, no explanations), trained into `folder` and
    loaded: for module-scoped fixtures of workflow tests."""
    from precimed.bundle import load_bundle
    from precimed.config import parse_config
    from precimed.workflows import train_from_config

    cfg = fast(PIMA)
    cfg["models"]["baselines"] = ["logistic"]
    cfg["evaluation"] = {"bootstrap": 5, "explain": 0}
    return load_bundle(train_from_config(parse_config(cfg), folder / "run", progress=False).bundle_path)


def free_port() -> int:
    """A TCP port nobody listens on right now (for a `precimed serve` subprocess)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_subprocess(registry, port: int, *, db: str | None = None, workers: int = 1, timeout: float = 60.0):
    """`precimed serve` in its own process group, rate limit out of the way; returns once /healthz answers
    (pytest.fail with the server's stderr if it exits or does not answer in `timeout` seconds)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import httpx
    import pytest

    env = {**os.environ, "PRECIMED_RATE_PER_MINUTE": "1e9", "PRECIMED_RATE_BURST": "1000000", "OMP_NUM_THREADS": "1"}
    args = [sys.executable, "-m", "precimed.cli", "serve", "--registry", str(registry), "--port", str(port),
            "--workers", str(workers)] + (["--db", db] if db else [])
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    stop = time.monotonic() + timeout
    while time.monotonic() < stop:
        if proc.poll() is not None:
            pytest.fail(f"precimed serve exited: {proc.stderr.read().decode()[-1500:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    pytest.fail(f"precimed serve did not answer in {timeout:.0f} s")


def run_coroutine(coro):
    """`asyncio.run(coro)` in a thread of its own: a test process that ran the browser tests has Playwright's event
    loop running in its main thread, where asyncio.run refuses to start a second one."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()
