"""Prediction is pure: requests share one loaded bundle with no lock, and concurrent predictions and explanations
give exactly what the same calls give one after another."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from service.conftest import PATIENT, start

THREADS = 16


def _jobs(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """Mixed work: predictions with and without out-of-range values (allowed or refused) and explanations."""
    rng = np.random.default_rng(seed)
    jobs = []
    for j in range(n):
        patients = [{"patient_id": f"p{j}-{i}", "glu": float(rng.integers(60, 200)), "bmi": float(rng.uniform(18, 45)),
                     "age": int(rng.integers(21, 80)), "ped": float(rng.uniform(0.1, 1.5))} for i in range(3)]
        kind = ("predict", "allowed", "refused", "explain")[j % 4]
        if kind in ("allowed", "refused"):
            patients[1]["glu"] = 900.0  # outside [20, 400]: missing when allowed, a 422 problem when not
        jobs.append({"kind": kind, "patients": patients[:2] if kind == "explain" else patients})
    return jobs


def _run(bundle, job: dict[str, Any]) -> tuple[str, Any]:
    from precimed.workflows.patients import PatientsInvalid, score

    try:
        if job["kind"] == "explain":
            return "ok", score(bundle, job["patients"], explain_top_k=2).rows
        return "ok", score(bundle, job["patients"], allow_out_of_range=job["kind"] == "allowed").rows
    except PatientsInvalid as exc:
        return "invalid", [(p.field, p.indices) for p in exc.problems]


def test_concurrent_scoring_on_one_loaded_bundle_matches_sequential_scoring(svc):
    registry = svc.container.registry
    loaded = registry.load(registry.resolve("pima-small"))
    assert not hasattr(loaded, "lock")
    bundle = loaded.bundle
    jobs = _jobs(48)
    sequential = [_run(bundle, job) for job in jobs]
    assert {status for status, _ in sequential} == {"ok", "invalid"}
    assert all(status == "ok" for (status, _), job in zip(sequential, jobs, strict=True) if job["kind"] != "refused")
    with ThreadPoolExecutor(THREADS) as pool:
        for _ in range(3):
            assert list(pool.map(lambda job: _run(bundle, job), jobs)) == sequential
    assert [_run(bundle, job) for job in jobs] == sequential  # and nothing was left changed in the bundle


def test_concurrent_requests_get_the_same_answers_as_sequential_ones(tmp_path, pima_bundles):
    # 68 requests from one token: a burst allowance above that, so the rate limiter never answers 429 here
    svc = start(tmp_path, pima_bundles, rate_burst=1_000)

    def probability(glu: int, allow: bool) -> tuple[int, Any]:
        body = {"patients": [{**PATIENT, "glu": glu}], "allow_out_of_range": allow}
        r = svc.client.post("/v1/models/pima-small/predict", json=body, headers=svc.auth("clinician"))
        return r.status_code, r.json()["predictions"][0]["probability"] if r.status_code == 200 else r.json()["field"]

    calls = [(60 + 7 * i, False) for i in range(20)] + [(500 + i, True) for i in range(10)] + [(500, False)] * 4
    sequential = [probability(*c) for c in calls]
    assert sequential[-1] == (422, "glu") and sequential[20][0] == 200
    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(lambda c: probability(*c), calls)) == sequential
