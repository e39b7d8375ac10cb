"""Speed of the service on loopback, side by side with a bare FastAPI endpoint, and what a crash loses.

Plain script, not a test:

    python benchmarks/service_speed.py [--bundle RUN/bundle] [--requests 3000] [--concurrency 8] [--latency 600]
                                       [--rounds 3] [--pg-url postgresql://user:pw@host:port/db | --no-pg]

Without --bundle it trains the small Pima model of the tests (a few seconds). Every server runs with uvicorn on
127.0.0.1, in its own process group, in the same run, on the same machine:

- service: `precimed.service.cli_commands.serve` on a fresh registry: bearer token, rate limiter (set out of the
  way), validation against the bundle's schema, scoring, the prediction row and the hash-chained audit row committed
  (group commit: one transaction and one fsync for the requests that arrived together) before the response;
- bare: a FastAPI endpoint that takes the same JSON and does the same forward pass in numpy with the bundle's
  weights (preprocessing statistics and MLP state_dicts), nothing else. Its probabilities are checked against the
  service's, so both compute the same thing;
- bare+fsync: the bare endpoint plus one SQLite row inserted and committed per request (WAL, synchronous=FULL, on the
  event loop, no batching): the least a durable answer costs on this disk, the floor under the service's
  sequential latency.

Side by side, each with the same number of uvicorn workers as its bare counterpart: 1 worker and 2 workers on
SQLite (synchronous=FULL), then 1 and 2 workers on PostgreSQL (fsync and synchronous_commit on; --pg-url names a
server on which the script may create and drop databases; without it a throwaway cluster is started with
initdb/pg_ctl from /usr/lib/postgresql/*/bin when present, else "PostgreSQL: not run"). Measured for
single-patient predict: p50 / p99 latency of sequential requests on one keep-alive connection; requests/second with
--concurrency clients and the p50 / p99 latency of those requests under that load; and the server's CPU time per
request (user + system of all its processes, from /proc), which tells a server-bound run from a client-bound one.
bare, bare+fsync and service alternate in --rounds rounds so that all see the same background load. After each
service run the audit chain is verified.

Then the crash test (1 and 2 workers on SQLite, 2 on PostgreSQL): the server's process group is killed with
SIGKILL during load; every acknowledged (HTTP 200) prediction must have its prediction row and its audit row, and
the audit chain must verify. The script exits 1 if any check fails.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import glob
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np

HERE = Path(__file__).resolve().parent
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
PREDICT = "/v1/models/pima-small/predict"


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


def bare_app():
    """The bare FastAPI app (a factory, so that `uvicorn --workers 2` can build it in each worker)."""
    from fastapi import FastAPI

    encode, forward = numpy_model(Path(os.environ["BENCH_BARE_BUNDLE"]))
    app = FastAPI()
    durable = durable_store(Path(os.environ["BENCH_BARE_DB"])) if os.environ.get("BENCH_BARE_DB") else None

    @app.post("/predict")
    async def predict(body: dict) -> dict:
        out = {"predictions": [{"patient_id": p.get("patient_id"), "probability": forward(encode(p))}
                               for p in body["patients"]]}
        if durable is not None:
            durable(json.dumps(out))
        return out

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok"}

    return app


def durable_store(path: Path):
    """One row inserted and committed per request into SQLite (WAL, synchronous=FULL: one fsync per commit) on the
    event loop: the least a durable answer costs, with nothing else (no auth, no audit, no group commit)."""
    import sqlite3

    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE IF NOT EXISTS answers (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")

    def store(text: str) -> None:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO answers (body) VALUES (?)", (text,))
        conn.execute("COMMIT")

    return store


def serve_bare(bundle_dir: Path, port: int, workers: int) -> None:
    import uvicorn

    os.environ["BENCH_BARE_BUNDLE"] = str(bundle_dir.resolve())
    if workers == 1:
        uvicorn.run(bare_app(), host="127.0.0.1", port=port, log_level="warning", access_log=False)
        return
    os.environ["PYTHONPATH"] = os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])
    uvicorn.run("service_speed:bare_app", factory=True, host="127.0.0.1", port=port, workers=workers,
                log_level="warning", access_log=False)


# ----- servers and load --------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(args: list[str], env: dict[str, str] | None = None, log: Path | None = None
          ) -> tuple[subprocess.Popen, str]:
    """A server in its own process group (so that its workers are stopped or killed with it). Its stderr goes to
    `log` when given (a server that logs every request would fill a pipe nobody reads), else to a pipe read when
    it fails to start."""
    port = free_port()
    sink = open(log, "wb") if log is not None else subprocess.PIPE  # noqa: SIM115 (the child keeps it open)
    proc = subprocess.Popen([sys.executable, *args, "--port", str(port)], env={**os.environ, **(env or {})},
                            stdout=subprocess.DEVNULL, stderr=sink, start_new_session=True)
    if log is not None:
        sink.close()
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            why = log.read_text(errors="replace") if log is not None else proc.stderr.read().decode()
            raise SystemExit(f"server {args[:3]} exited: {why[-2000:]}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.1)
    kill(proc)
    raise SystemExit("server did not start in 120 s")


def kill(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            kill(proc)
    with contextlib.suppress(ProcessLookupError):  # a worker left behind
        os.killpg(proc.pid, signal.SIGKILL)


def latencies(url: str, headers: dict[str, str], n: int) -> list[float]:
    """Milliseconds of `n` sequential requests on one keep-alive connection (after 20 unmeasured ones)."""
    times = []
    with httpx.Client(headers=headers, timeout=10) as client:
        for _ in range(20):
            client.post(url, json={"patients": [PATIENT]}).raise_for_status()
        for _ in range(n):
            t = time.perf_counter()
            client.post(url, json={"patients": [PATIENT]}).raise_for_status()
            times.append((time.perf_counter() - t) * 1000)
    return times


async def _load(url: str, headers: dict[str, str], n: int | None, concurrency: int, seconds: float | None
                ) -> dict:
    ok, errors, ids, ms = 0, 0, [], []
    sent = 0
    stop_at = time.perf_counter() + seconds if seconds else None
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(headers=headers, timeout=10, limits=limits) as client:
        async def worker() -> None:
            nonlocal ok, errors, sent
            while (n is None or sent < n) and (stop_at is None or time.perf_counter() < stop_at):
                sent += 1
                began = time.perf_counter()
                try:
                    r = await client.post(url, json={"patients": [PATIENT]})
                    ms.append((time.perf_counter() - began) * 1000)
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
    return {"ok": ok, "errors": errors, "seconds": elapsed, "ids": ids, "loaded_ms": ms}


def throughput(url: str, headers: dict[str, str], n: int, concurrency: int, pid: int) -> dict:
    """req/s, per-request latency under that load, and the server's CPU seconds (all its processes) meanwhile."""
    cpu = server_cpu(pid)
    out = asyncio.run(_load(url, headers, n, concurrency, None))
    out["cpu"] = server_cpu(pid) - cpu
    out.pop("ids")
    return out


def server_cpu(pid: int) -> float:
    """User + system CPU seconds of a server's process group so far (its workers included), from /proc."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            fields = Path(stat).read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pid:  # fields[2] is the process group (field 5 of stat)
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def batch_view(url: str, headers: dict[str, str]) -> float | None:
    """Mean audited writes per commit, from one worker's /metrics (None if not exposed)."""
    try:
        text = httpx.get(f"{url}/metrics", headers=headers, timeout=10).text
    except httpx.TransportError:
        return None
    found = dict(re.findall(r"^precimed_audit_commit_batch_units_(sum|count) ([0-9.e+]+)$", text, re.M))
    return float(found["sum"]) / float(found["count"]) if float(found.get("count", 0)) else None


# ----- PostgreSQL ----------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def postgres(url: str | None, skip: bool, work: Path) -> Iterator[tuple[str | None, str]]:
    """(server URL or None, how it was obtained): --pg-url as given, or a throwaway cluster (stopped at the end)."""
    if skip:
        yield None, "--no-pg"
        return
    if url:
        yield url, "--pg-url"
        return
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: [int(x) for x in re.findall(r"\d+", p)])
    bins = [b for b in bins if os.access(f"{b}/initdb", os.X_OK) and os.access(f"{b}/pg_ctl", os.X_OK)]
    if not bins:
        yield None, "no server (no initdb/pg_ctl under /usr/lib/postgresql/*/bin)"
        return
    run_as: list[str] = []
    base = Path(tempfile.mkdtemp(prefix="precimed-bench-pg-"))  # not under `work`: the server's user must reach it
    if os.geteuid() == 0:  # initdb refuses root
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(base, ignore_errors=True)
            yield None, "no server (running as root and there is no postgres user)"
            return
        os.chown(base, user.pw_uid, user.pw_gid)
        run_as = ["runuser", "-u", "postgres", "--"]
    os.chmod(base, 0o700)
    bin_dir, port = bins[-1], free_port()
    try:
        subprocess.run([*run_as, f"{bin_dir}/initdb", "-D", str(base / "data"), "-U", "postgres", "--auth=trust",
                        "--encoding=UTF8", "--locale=C"], check=True, capture_output=True)
        subprocess.run([*run_as, f"{bin_dir}/pg_ctl", "-D", str(base / "data"), "-l", str(base / "server.log"),
                        "-w", "-t", "60", "-o", f"-p {port} -k {base} -c listen_addresses=127.0.0.1", "start"],
                       check=True, capture_output=True)
    except (subprocess.CalledProcessError, OSError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        shutil.rmtree(base, ignore_errors=True)
        yield None, f"no server (the throwaway cluster did not start: {type(exc).__name__} {detail[-300:]!r})"
        return
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres", f"throwaway cluster ({bin_dir}, trust auth)"
    finally:
        subprocess.run([*run_as, f"{bin_dir}/pg_ctl", "-D", str(base / "data"), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


@contextlib.contextmanager
def fresh_database(server: str) -> Iterator[str]:
    """A new database on the server for one run, dropped afterwards."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from precimed.service.db import normalize_url

    url = make_url(normalize_url(server))
    name = f"precimed_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


# ----- one side-by-side run ------------------------------------------------------------------------------------------
def registry_for(work: Path, bundle: Path, db: str | None) -> tuple[Path, dict[str, str]]:
    """A fresh registry with the bundle in production and a clinician token."""
    from precimed.service import cli_commands as cli

    registry = work / f"registry-{uuid.uuid4().hex[:8]}"
    cli.registry_add(registry, bundle, name="pima-small", db=db)
    cli.registry_promote(registry, "pima-small", 1, db=db)
    _, token = cli.tokens_create(registry, "clinician", label="benchmark", db=db)
    return registry, {"Authorization": f"Bearer {token}"}


def service_cmd(registry: Path, db: str | None, workers: int) -> list[str]:
    return [str(Path(__file__).resolve()), "--serve-service", str(registry), "--workers", str(workers),
            *(["--db", db] if db else [])]


def side_by_side(args: argparse.Namespace, work: Path, bundle: Path, db: str | None, workers: int) -> dict:
    from precimed.service import cli_commands as cli

    registry, headers = registry_for(work, bundle, db)
    env = {"PRECIMED_RATE_PER_MINUTE": "1e12", "PRECIMED_RATE_BURST": "1000000000", "PRECIMED_LOG_LEVEL": "warning"}
    me = str(Path(__file__).resolve())
    bare = [me, "--serve-bare", "--bundle", str(bundle), "--workers", str(workers)]
    servers = {"service": start(service_cmd(registry, db, workers), env), "bare": start(bare, env),
               "bare+fsync": start(bare, {**env, "BENCH_BARE_DB": str(work / f"bare-{uuid.uuid4().hex[:8]}.db")})}
    paths = {"service": PREDICT, "bare": "/predict", "bare+fsync": "/predict"}
    hdrs = {"service": headers, "bare": {}, "bare+fsync": {}}
    out: dict[str, dict] = {}
    try:
        for label, (_, url) in servers.items():
            first = httpx.post(url + paths[label], json={"patients": [PATIENT]}, headers=hdrs[label], timeout=30)
            out[label] = {"probability": first.json()["predictions"][0]["probability"], "ms": [], "loaded_ms": [],
                          "ok": 0, "errors": 0, "seconds": 0.0, "cpu": 0.0}
        per_round = max(1, args.requests // args.rounds)
        for _ in range(args.rounds):  # alternate, so that all see the same background load
            for label, (_, url) in servers.items():
                out[label]["ms"] += latencies(url + paths[label], hdrs[label], max(1, args.latency // args.rounds))
            for label, (proc, url) in servers.items():
                got = throughput(url + paths[label], hdrs[label], per_round, args.concurrency, proc.pid)
                for key in ("ok", "errors", "seconds", "cpu", "loaded_ms"):
                    out[label][key] += got[key]
        out["service"]["batch"] = batch_view(servers["service"][1], headers)
    finally:
        for proc, _ in servers.values():
            stop(proc)
    for label in servers:
        row = out[label]
        ms, loaded = np.asarray(row.pop("ms")), np.asarray(row.pop("loaded_ms"))
        row.update(p50_ms=float(np.percentile(ms, 50)), p99_ms=float(np.percentile(ms, 99)), n=len(ms),
                   loaded_p50_ms=float(np.percentile(loaded, 50)), loaded_p99_ms=float(np.percentile(loaded, 99)),
                   rps=row["ok"] / row["seconds"], cpu_ms=1000 * row.pop("cpu") / max(row["ok"], 1))
    report = cli.audit_verify(registry, db=db)
    out["chain"] = {"ok": report["ok"], "rows": report["rows"]}
    out["same_probability"] = max(abs(out["service"]["probability"] - out[label]["probability"])
                                  for label in ("bare", "bare+fsync"))
    return out


# ----- the crash test ----------------------------------------------------------------------------------------------
def crash_test(args: argparse.Namespace, work: Path, bundle: Path, db: str | None, workers: int) -> dict:
    from sqlalchemy import select

    from precimed.service import cli_commands as cli
    from precimed.service.db import AuditRow, Database, PredictionRow
    from precimed.service.settings import ServiceSettings

    registry, headers = registry_for(work, bundle, db)
    env = {"PRECIMED_RATE_PER_MINUTE": "1e12", "PRECIMED_RATE_BURST": "1000000000", "PRECIMED_LOG_LEVEL": "warning"}
    proc, url = start(service_cmd(registry, db, workers), env)

    def killer() -> None:
        time.sleep(args.kill_after)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the server and all its workers at once

    threading.Thread(target=killer, daemon=True).start()
    result = asyncio.run(_load(url + PREDICT, headers, None, args.concurrency, args.kill_after + 5))
    proc.wait()
    acknowledged = set(result["ids"])
    database = Database(ServiceSettings(registry=registry, db_url=db).database_url)
    with database.session() as s:
        audited = {json.loads(d).get("prediction_id") for d in
                   s.execute(select(AuditRow.detail).where(AuditRow.action == "predict")).scalars()}
        stored = set(s.execute(select(PredictionRow.id)).scalars())
    database.dispose()
    report = cli.audit_verify(registry, db=db)
    return {"acknowledged": len(acknowledged), "missing_audit": len(acknowledged - audited),
            "missing_prediction": len(acknowledged - stored), "failed_after_kill": result["errors"],
            "chain_ok": report["ok"], "audit_rows": report["rows"]}


# ----- main --------------------------------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, help="a bundle with a numeric-feature MLP (default: train a small one)")
    ap.add_argument("--requests", type=int, default=3000, help="requests per server and setting, for req/s")
    ap.add_argument("--concurrency", type=int, default=8, help="concurrent clients for req/s")
    ap.add_argument("--latency", type=int, default=600, help="sequential requests per server and setting, for p50/p99")
    ap.add_argument("--rounds", type=int, default=3, help="bare and service alternate in this many rounds")
    ap.add_argument("--kill-after", type=float, default=2.0, help="seconds of load before SIGKILL")
    ap.add_argument("--pg-url", help="a PostgreSQL server on which databases may be created and dropped")
    ap.add_argument("--no-pg", action="store_true", help="skip the PostgreSQL runs")
    ap.add_argument("--quick", action="store_true", help="SQLite with 1 worker only, no crash test (while tuning)")
    ap.add_argument("--serve-bare", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--serve-service", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--workers", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--db", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_bare:
        serve_bare(args.bundle, args.port, args.workers)
        return
    if args.serve_service:
        from precimed.service.cli_commands import serve

        serve(args.serve_service, db=args.db, host="127.0.0.1", port=args.port, workers=args.workers,
              log_level="warning")
        return

    work = Path(tempfile.mkdtemp(prefix="precimed-bench-"))
    bundle = args.bundle
    if bundle is None:
        from precimed.config import parse_config
        from precimed.workflows import train_from_config

        print("training the small Pima model ...", file=sys.stderr)
        bundle = train_from_config(parse_config(SMALL_PIMA), work / "run", progress=False).bundle_path

    runs: dict[str, dict] = {}
    crashes: dict[str, dict] = {}
    with postgres(args.pg_url, args.no_pg, work) as (pg, pg_how):
        settings = [("SQLite, 1 worker", None, 1), ("SQLite, 2 workers", None, 2)]
        if args.quick:
            settings = settings[:1]
        elif pg:
            settings += [("PostgreSQL, 1 worker", pg, 1), ("PostgreSQL, 2 workers", pg, 2)]
        for label, server, workers in settings:
            print(f"{label} ...", file=sys.stderr)
            with fresh_database(server) if server else contextlib.nullcontext() as db:
                runs[label] = side_by_side(args, work, bundle, db, workers)
        crash_settings = [("SQLite, 1 worker", None, 1), ("SQLite, 2 workers", None, 2),
                          *([("PostgreSQL, 2 workers", pg, 2)] if pg else [])]
        for label, server, workers in [] if args.quick else crash_settings:
            print(f"crash test, {label} ...", file=sys.stderr)
            with fresh_database(server) if server else contextlib.nullcontext() as db:
                crashes[label] = crash_test(args, work, bundle, db, workers)

    print(f"\nsingle-patient predict on 127.0.0.1, {os.cpu_count()} CPU(s); sequential: p50/p99 over {args.latency} "
          f"requests one after another on one connection; under load: req/s and p50/p99 over {args.requests} requests "
          f"from {args.concurrency} concurrent clients; server CPU per request (all its processes); bare, bare+fsync "
          f"and service alternate in {args.rounds} rounds")
    print(f"{'':24}{'':11}{'sequential':>16}{'under load':>24}{'server':>10}   {'this / bare':>36}")
    print(f"{'':24}{'':11}{'p50 ms':>8}{'p99 ms':>8}{'req/s':>8}{'p50 ms':>8}{'p99 ms':>8}{'CPU ms':>10}   "
          f"{'req/s':>8}{'p50 seq':>9}{'p50 load':>9}{'CPU':>6}{'units/commit':>14}")
    for label, r in runs.items():
        s, b = r["service"], r["bare"]
        for who in ("bare", "bare+fsync", "service"):
            row = r[who]
            extra = ""
            if who != "bare":  # bare+fsync's own ratios are the floor under any durable answer
                batch = f"{s['batch']:.2f}" if who == "service" and s.get("batch") else "-"
                extra = (f"   {row['rps'] / b['rps']:>8.2f}{b['p50_ms'] / row['p50_ms']:>9.2f}"
                         f"{b['loaded_p50_ms'] / row['loaded_p50_ms']:>9.2f}{b['cpu_ms'] / row['cpu_ms']:>6.2f}"
                         f"{batch:>14}")
            print(f"{label if who == 'bare' else '':24}{who:11}{row['p50_ms']:>8.2f}{row['p99_ms']:>8.2f}"
                  f"{row['rps']:>8.0f}{row['loaded_p50_ms']:>8.2f}{row['loaded_p99_ms']:>8.2f}{row['cpu_ms']:>10.3f}"
                  f"{extra}")
    print("bare: FastAPI + the same numpy forward pass, nothing else; bare+fsync: the same plus one SQLite row "
          "committed with fsync per request (synchronous=FULL, no batching), the least a durable answer costs, so "
          "its ratios are the ceiling for any durable service; CPU: bare's server CPU per request over this one's "
          "(what the ratios would tend to with a load generator that needed no CPU)")
    if not pg:
        print(f"PostgreSQL: not run ({pg_how})")
    else:
        print(f"PostgreSQL: {pg_how}")
    for label, r in runs.items():
        print(f"{label}: same probability from both, |difference| = {r['same_probability']:.2e}; audit chain after "
              f"the run {'verifies' if r['chain']['ok'] else 'BROKEN'} ({r['chain']['rows']} rows)")
    for label, c in crashes.items():
        print(f"crash test, {label}: SIGKILL after {args.kill_after:g} s of load; {c['acknowledged']} acknowledged "
              f"predictions, {c['missing_audit']} without an audit row, {c['missing_prediction']} without a stored "
              f"prediction; audit chain {'verifies' if c['chain_ok'] else 'BROKEN'} ({c['audit_rows']} rows); "
              f"{c['failed_after_kill']} request(s) failed once the server was gone")
    print(json.dumps({"runs": runs, "crash": crashes, "work_dir": str(work)}, default=float))
    bad = [label for label, r in runs.items()
           if r["same_probability"] > 1e-5 or not r["chain"]["ok"] or any(r[w]["errors"] for w in (
               "service", "bare", "bare+fsync"))]
    bad += [label for label, c in crashes.items()
            if c["missing_audit"] or c["missing_prediction"] or not c["chain_ok"] or not c["acknowledged"]]
    if bad:
        print(f"FAILED: {bad}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
