"""kill -9 in the middle of a stream of predictions (finding 12): every prediction the server acknowledged (HTTP 200)
has its stored row and its audit row, and the audit chain still verifies. Bounded: about 15 s.

`precimed serve` runs in a subprocess on a free loopback port against a temporary registry and SQLite database;
four client threads send predictions until the server is killed with SIGKILL after 25 acknowledgements.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import httpx

from helpers import free_port, serve_subprocess
from service.conftest import PATIENT, pima_bundles  # noqa: F401  (pima_bundles is a session fixture)

KILL_AFTER = 25  # acknowledged predictions before SIGKILL
CLIENTS = 4
START_TIMEOUT = 60.0


def _free_port() -> int:
    return free_port()


def _serve(registry: Path, port: int) -> subprocess.Popen:
    """`precimed serve` in its own process group; returns once /healthz answers."""
    return serve_subprocess(registry, port, timeout=START_TIMEOUT)


def _flood(url: str, token: str, proc: subprocess.Popen) -> tuple[list[str], int]:
    """Predictions from CLIENTS threads until the server is gone; SIGKILL after KILL_AFTER acknowledgements.
    Returns the acknowledged prediction ids and the number of requests that failed."""
    acknowledged: list[str] = []
    failed = 0
    lock = threading.Lock()
    killed = threading.Event()
    stop_at = time.monotonic() + 20

    def client() -> None:
        nonlocal failed
        with httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=5) as http:
            while time.monotonic() < stop_at:
                try:
                    r = http.post(url, json={"patients": [PATIENT]})
                except httpx.TransportError:
                    with lock:
                        failed += 1
                    if killed.is_set():
                        return
                    continue
                if r.status_code == 200:
                    with lock:
                        acknowledged.append(r.json()["id"])
                        if len(acknowledged) >= KILL_AFTER and not killed.is_set():
                            os.kill(proc.pid, signal.SIGKILL)  # mid-stream: the other clients are in flight
                            killed.set()

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return acknowledged, failed


def test_every_acknowledged_prediction_survives_kill_9_and_the_chain_verifies(tmp_path, pima_bundles, run_cli):  # noqa: F811
    from precimed.service import cli_commands as cli

    registry = tmp_path / "registry"
    cli.registry_add(registry, pima_bundles[0])
    cli.registry_promote(registry, "pima-small", 1)
    _, token = cli.tokens_create(registry, "clinician", label="crash test")
    port = _free_port()
    proc = _serve(registry, port)
    try:
        acknowledged, failed = _flood(f"http://127.0.0.1:{port}/v1/models/pima-small/predict", token, proc)
        assert proc.wait(10) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert len(acknowledged) >= KILL_AFTER and failed >= 1  # killed while the clients were still sending

    with sqlite3.connect(registry / "precimed.db") as db:
        stored = {row[0] for row in db.execute("SELECT id FROM predictions")}
        audited = {json.loads(row[0]).get("prediction_id")
                   for row in db.execute("SELECT detail FROM audit WHERE action = 'predict'")}
    assert set(acknowledged) - stored == set()
    assert set(acknowledged) - audited == set()

    code, out, err = run_cli("audit", "verify", "--registry", registry)
    assert code == 0 and "ok" in out.lower(), out + err  # a broken chain exits 2
