"""Speed of the service on loopback, side by side with a bare FastAPI endpoint, and what a crash loses.

Plain script, not a test:

    python benchmarks/service_speed.py [--bundle RUN/bundle] [--requests 2000] [--concurrency 8] [--latency 500]

Without --bundle it trains the small Pima model of the tests (a few seconds). Both servers run with uvicorn, one
worker each, on 127.0.0.1, in separate processes, in the same run:

- service: `precimed.service.cli_commands.serve` on a fresh registry (SQLite, synchronous=FULL): bearer token,
  rate limiter (set out of the way), validation against the bundle's schema, predict_frame, the prediction row and
  the hash-chained audit row committed before the response;
- bare: a FastAPI endpoint that takes the same JSON and does the same forward pass in numpy with the bundle's
  weights (preprocessing statistics and MLP state_dicts), nothing else. Its probabilities are checked against the
  service's, so both compute the same thing.

Measured for single-patient predict: p50 / p99 latency of sequential requests on one keep-alive connection, and
requests/second with `--concurrency` clients over `--requests` requests (errors counted). Then the crash test:
the service is killed with SIGKILL during load; every acknowledged (HTTP 200) prediction must have its prediction
row and audit row in the database, and the audit chain must verify.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

PATIENT = {"patient_id": "bench-1", "glu": 148, "bmi": 33.6, "age": 50, "ped": 0.627}
SMALL_PIMA = {
    "name": "pima-small", "seed": 0,
    "data": {"train": {"dataset": "pima_tr"}, "test": {"dataset": "pima_te"}},
    "task": {"kind": "binary", "target": "type", "positive": "Yes"},
    "features": [{"name": "glu", "kind": "numeric", "unit": "mg/dL", "range": [20, 400]},
                 {"name": "bmi", "kind": "numeric", "unit": "kg/m2", "range": [12, 80]},
                 {"name": "age", "kind": "numeric", "unit": "years", "range": [18, 100]},
                 {"name": "ped", "kind": "numeric", "range": [0, 3]}],
    "split": {"kind": "external"},
    "models": {"mlp": {"hidden": [16, 8], "ensemble": 1}, "baselines": ["logistic"]},
    "training": {"max_epochs": 40, "patience": 8, "lr": 0.01, "batch_size": 64, "progress": False},
    "evaluation": {"bootstrap": 5, "explain": 0},
}


# ----- the bare endpoint -------------------------------------------------------------------------------------------
def numpy_model(bundle_dir: Path):
    """The bundle's preprocessing and MLP ensemble as plain numpy: x -> probability."""
    from precimed.bundle import load_bundle

    bundle = load_bundle(bundle_dir)
    pre, est = bundle.preprocessor, bundle.models["mlp"]
    steps = []
    for state in pre.encodings_:
        if state["kind"] != "numeric":
            raise SystemExit(f"the bare endpoint handles numeric features only; {state['name']} is {state['kind']}")
        steps.append((state["name"], bool(state["log"]), float(np.asarray(state["fill"]).ravel()[0]),
                      float(np.asarray(state["center"]).ravel()[0]), float(np.asarray(state["scale"]).ravel()[0]),
                      bool(state["indicator"])))
    nets = []
    for net in est.nets_:
        layers = []
        for module in [*net.body, net.head]:
            kind = type(module).__name__
            if kind == "Linear":
                layers.append(("linear", module.weight.detach().numpy().T.copy(), module.bias.detach().numpy().copy()))
            elif kind == "ReLU":
                layers.append(("relu", None, None))
            elif kind != "Dropout":
                raise SystemExit(f"the bare endpoint handles Linear/ReLU/Dropout nets; found {kind}")
        nets.append(layers)

    def encode(patient: dict) -> np.ndarray:
        row = []
        for name, log, fill, center, scale, indicator in steps:
            v = patient.get(name)
            missing = v is None
            x = fill if missing else (np.log1p(float(v)) if log else float(v))
            row.append((x - center) / scale)
            if indicator:
                row.append(1.0 if missing else 0.0)
        return np.asarray(row, dtype=np.float32)

    def forward(x: np.ndarray) -> float:
        outs = []
        for layers in nets:
            h = x
            for kind, w, b in layers:
                h = h @ w + b if kind == "linear" else np.maximum(h, 0.0)
            outs.append(1.0 / (1.0 + np.exp(-float(h[0]))))
        return float(np.mean(outs))

    return encode, forward


def serve_bare(bundle_dir: Path, port: int) -> None:
    import uvicorn
    from fastapi import FastAPI

    encode, forward = numpy_model(bundle_dir)
    app = FastAPI()

    @app.post("/predict")
    async def predict(body: dict) -> dict:
        return {"predictions": [{"patient_id": p.get("patient_id"), "probability": forward(encode(p))}
                                for p in body["patients"]]}

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok"}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


# ----- servers and load --------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(args: list[str], env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, *args, "--port", str(port)], env={**os.environ, **(env or {})},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server {args[:2]} exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("server did not start in 120 s")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def latency(url: str, headers: dict[str, str], n: int) -> dict[str, float]:
    times = []
    with httpx.Client(headers=headers, timeout=10) as client:
        for _ in range(20):
            client.post(url, json={"patients": [PATIENT]}).raise_for_status()
        for _ in range(n):
            t = time.perf_counter()
            client.post(url, json={"patients": [PATIENT]}).raise_for_status()
            times.append(time.perf_counter() - t)
    ms = np.asarray(times) * 1000
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)), "n": n}


async def _load(url: str, headers: dict[str, str], n: int | None, concurrency: int, seconds: float | None
                ) -> dict:
    ok, errors, ids = 0, 0, []
    sent = 0
    stop_at = time.perf_counter() + seconds if seconds else None
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(headers=headers, timeout=10, limits=limits) as client:
        async def worker() -> None:
            nonlocal ok, errors, sent
            while (n is None or sent < n) and (stop_at is None or time.perf_counter() < stop_at):
                sent += 1
                try:
                    r = await client.post(url, json={"patients": [PATIENT]})
                except httpx.TransportError:
                    errors += 1
                    if seconds is not None:
                        return  # the server is gone
                    continue
                if r.status_code == 200:
                    ok += 1
                    if "id" in r.json():
                        ids.append(r.json()["id"])
                else:
                    errors += 1

        t = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - t
    return {"ok": ok, "errors": errors, "seconds": elapsed, "rps": ok / elapsed, "ids": ids}


def throughput(url: str, headers: dict[str, str], n: int, concurrency: int) -> dict:
    out = asyncio.run(_load(url, headers, n, concurrency, None))
    out.pop("ids")
    return out


# ----- the crash test ----------------------------------------------------------------------------------------------
def crash_test(service_cmd: list[str], env: dict[str, str], headers: dict[str, str], registry: Path,
               concurrency: int, kill_after: float) -> dict:
    from sqlalchemy import select

    from precimed.service.audit import AuditLog
    from precimed.service.db import AuditRow, Database, PredictionRow
    from precimed.service.settings import ServiceSettings

    proc, url = start(service_cmd, env)

    def killer() -> None:
        time.sleep(kill_after)
        os.kill(proc.pid, signal.SIGKILL)

    import threading

    threading.Thread(target=killer, daemon=True).start()
    result = asyncio.run(_load(f"{url}/v1/models/pima-small/predict", headers, None, concurrency, kill_after + 5))
    proc.wait()
    acknowledged = set(result["ids"])
    db = Database(ServiceSettings(registry=registry).database_url)
    with db.session() as s:
        audited = {json.loads(d).get("prediction_id") for d in
                   s.execute(select(AuditRow.detail).where(AuditRow.action == "predict")).scalars()}
        stored = set(s.execute(select(PredictionRow.id)).scalars())
    report = AuditLog(db).verify()
    db.dispose()
    return {"acknowledged": len(acknowledged), "missing_audit": len(acknowledged - audited),
            "missing_prediction": len(acknowledged - stored), "failed_after_kill": result["errors"],
            "chain_ok": report.ok, "audit_rows": report.rows}


# ----- main --------------------------------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, help="a bundle with a numeric-feature MLP (default: train a small one)")
    ap.add_argument("--requests", type=int, default=2000, help="requests in the throughput run")
    ap.add_argument("--concurrency", type=int, default=8, help="concurrent clients in the throughput run")
    ap.add_argument("--latency", type=int, default=500, help="sequential requests for p50/p99")
    ap.add_argument("--kill-after", type=float, default=2.0, help="seconds of load before SIGKILL")
    ap.add_argument("--serve-bare", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--serve-service", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_bare:
        serve_bare(args.bundle, args.port)
        return
    if args.serve_service:
        from precimed.service.cli_commands import serve

        serve(args.serve_service, host="127.0.0.1", port=args.port, log_level="warning")
        return

    from precimed.service import cli_commands as cli

    work = Path(tempfile.mkdtemp(prefix="precimed-bench-"))
    bundle = args.bundle
    if bundle is None:
        from precimed.config import parse_config
        from precimed.workflows import train_from_config

        print("training the small Pima model ...", file=sys.stderr)
        bundle = train_from_config(parse_config(SMALL_PIMA), work / "run", progress=False).bundle_path
    registry = work / "registry"
    name = cli.registry_add(registry, bundle, name="pima-small")["name"]
    cli.registry_promote(registry, name, 1)
    _, token = cli.tokens_create(registry, "clinician", label="benchmark")
    headers = {"Authorization": f"Bearer {token}"}
    env = {"PRECIMED_RATE_PER_MINUTE": "1e12", "PRECIMED_RATE_BURST": "1000000000"}
    me = str(Path(__file__).resolve())
    service_cmd = [me, "--serve-service", str(registry)]
    bare_cmd = [me, "--serve-bare", "--bundle", str(bundle)]

    rows = {}
    for label, cmd, path, hdrs in (("service", service_cmd, "/v1/models/pima-small/predict", headers),
                                   ("bare", bare_cmd, "/predict", {})):
        proc, url = start(cmd, env)
        try:
            first = httpx.post(url + path, json={"patients": [PATIENT]}, headers=hdrs, timeout=30).json()
            rows[label] = {"probability": first["predictions"][0]["probability"],
                           **latency(url + path, hdrs, args.latency),
                           **throughput(url + path, hdrs, args.requests, args.concurrency)}
        finally:
            stop(proc)
    same = abs(rows["service"]["probability"] - rows["bare"]["probability"])
    crash = crash_test(service_cmd, env, headers, registry, args.concurrency, args.kill_after)

    print(f"\nsingle-patient predict on 127.0.0.1, one uvicorn worker each, {os.cpu_count()} CPU(s); "
          f"latency over {args.latency} sequential requests, throughput over {args.requests} requests with "
          f"{args.concurrency} concurrent clients")
    print(f"{'':10}{'p50 ms':>10}{'p99 ms':>10}{'req/s':>10}{'errors':>8}")
    for label in ("service", "bare"):
        r = rows[label]
        print(f"{label:10}{r['p50_ms']:>10.2f}{r['p99_ms']:>10.2f}{r['rps']:>10.0f}{r['errors']:>8}")
    s, b = rows["service"], rows["bare"]
    print(f"ratio service/bare: p50 latency ×{s['p50_ms'] / b['p50_ms']:.1f}, p99 ×{s['p99_ms'] / b['p99_ms']:.1f}, "
          f"throughput ×{s['rps'] / b['rps']:.2f}")
    print(f"same probability from both: |difference| = {same:.2e}")
    print(f"crash test: SIGKILL after {args.kill_after:g} s of load; {crash['acknowledged']} acknowledged predictions, "
          f"{crash['missing_audit']} without an audit row, {crash['missing_prediction']} without a stored prediction; "
          f"audit chain {'verifies' if crash['chain_ok'] else 'BROKEN'} ({crash['audit_rows']} rows); "
          f"{crash['failed_after_kill']} request(s) failed once the server was gone")
    print(json.dumps({"service": s, "bare": b, "crash": crash, "ratio_p50": s["p50_ms"] / b["p50_ms"],
                      "ratio_rps": s["rps"] / b["rps"], "work_dir": str(work)}, default=float))
    if same > 1e-5 or crash["missing_audit"] or crash["missing_prediction"] or not crash["chain_ok"] or s["errors"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
