"""Speed of the web patient page: prediction + explanation + plan in one form POST, beside the API's three calls.

Plain script, not a test:

    python benchmarks/web_patient_speed.py [--bundle RUN/bundle] [--requests 200] [--rounds 3]

Bundle: --bundle, else the demo's runs/demo/bundle when `make demo` wrote it, else the small Pima model of the tests
with per-patient uncertainty (trained here in a few seconds). It is registered in a fresh registry (production), a
clinician token is made, and `precimed serve` is started on 127.0.0.1 in its own process group (rate limit out of
the way, OMP_NUM_THREADS=1), one worker, SQLite with its audit trail and group commit, as a clinic would run it.

Measured in the same run, on one keep-alive connection each, sequential requests after 20 unmeasured ones:

- web (htmx): sign in with the token (session cookie), GET the form, then POST the form with `HX-Request: true`
  (what the page does in a browser): validation, prediction, SHAP explanation, plan, the prediction and plan stored
  and audited in one group commit, the result fragment rendered (risk, interval, waterfall SVG, cohort table, plan);
- web (no JS): the same POST answered with the whole page;
- API: POST /v1/models/{name}/predict, POST /v1/models/{name}/explain and POST /v1/plans for the same patient, one
  after the other (three round trips, three audited commits): the time a client of the API waits for the same
  information.

The rounds alternate web and API so both see the same background load. Also printed: the cost of drawing the
waterfall with matplotlib (PNG as precimed.evaluate.explain.waterfall_png, and SVG) against the page's template
geometry, in this process. Target: web p50 < 300 ms.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import service_speed  # the same folder: the small Pima run, how a server is started and stopped
from service_speed import start, stop

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "runs" / "demo" / "bundle"
PIMA_PATIENT = {"glu": 148, "bmi": 33.6, "age": 50, "ped": 0.627}
SMALL_PIMA = {**service_speed.SMALL_PIMA, "uncertainty": {"level": 0.9}}  # with the intervals the page shows
FACTS = {"sex": "female", "medications": ["warfarin", "amiodarone"]}
FACT_LINES = "sex = female\nmedications = warfarin, amiodarone"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def bundle_dir(given: str | None, work: Path) -> tuple[Path, str]:
    """The bundle to serve and where it came from."""
    if given:
        return Path(given), given
    if (DEMO / "metadata.json").is_file():
        return DEMO, "runs/demo/bundle (make demo)"
    from precimed.config import parse_config
    from precimed.workflows import train_from_config

    print("no --bundle and no runs/demo/bundle: training the small Pima model (a few seconds)")
    return train_from_config(parse_config(SMALL_PIMA), work / "pima", progress=False).bundle_path, \
        "small Pima model trained now"


def patient_for(bundle_path: Path) -> dict:
    """A typical patient: the Pima example, else each feature's training median (numbers) or first category."""
    from precimed.bundle import load_bundle

    bundle = load_bundle(bundle_path)
    names = [f.name for f in bundle.features]
    if set(names) == set(PIMA_PATIENT):
        return dict(PIMA_PATIENT)
    out = {}
    states = {s["name"]: s for s in bundle.preprocessor.encodings_}
    for f in bundle.features:
        s = states[f.name]
        if f.kind == "numeric":
            out[f.name] = round(float(s["fill"][0]) if not s.get("log") else float(np.expm1(s["fill"][0])), 3)
        elif f.kind == "binary":
            out[f.name] = (s.get("positive") or ["1"])[0]
        elif f.kind in ("categorical", "ordinal"):
            out[f.name] = s["categories"][0]
    return out


def serve(registry: Path, log: Path) -> tuple[subprocess.Popen, str]:
    """`precimed serve` on a free port, one worker, its log in a file (service_speed.start)."""
    env = {"PRECIMED_RATE_PER_MINUTE": "1e9", "PRECIMED_RATE_BURST": "1000000", "OMP_NUM_THREADS": "1"}
    return start(["-m", "precimed.cli", "serve", "--registry", str(registry), "--workers", "1"], env, log=log)


def signed_in(url: str, token: str) -> httpx.Client:
    client = httpx.Client(base_url=url, timeout=30)
    page = client.get("/signin")
    r = client.post("/signin", data={"token": token, "csrf_token": CSRF.search(page.text).group(1)})
    if r.status_code != 303 or "precimed_session" not in client.cookies:
        raise SystemExit(f"sign-in failed: {r.status_code}")
    return client


def web_times(client: httpx.Client, name: str, patient: dict, n: int, *, htmx: bool) -> list[float]:
    page = client.get(f"/patients/{name}")
    page.raise_for_status()
    data = {"csrf_token": CSRF.search(page.text).group(1), "patient_id": "bench-1", "facts": FACT_LINES,
            **{k: str(v) for k, v in patient.items()}}
    headers = {"HX-Request": "true"} if htmx else {}
    times = []
    for i in range(n + 20):
        t = time.perf_counter()
        r = client.post(f"/patients/{name}", data=data, headers=headers)
        elapsed = (time.perf_counter() - t) * 1000
        if r.status_code != 200 or "Why: the features" not in r.text or "<h3>Plan</h3>" not in r.text:
            raise SystemExit(f"web POST answered {r.status_code}: {r.text[:400]}")
        if i >= 20:
            times.append(elapsed)
    return times


def api_times(url: str, token: str, name: str, patient: dict, n: int) -> list[float]:
    body = {"patients": [{"patient_id": "bench-1", **patient}]}
    plan = {"patient_id": "bench-1", "facts": FACTS, "model": name, "model_input": patient}
    times = []
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as client:
        for i in range(n + 20):
            t = time.perf_counter()
            for path, payload in ((f"/v1/models/{name}/predict", body), (f"/v1/models/{name}/explain", body),
                                  ("/v1/plans", plan)):
                client.post(path, json=payload).raise_for_status()
            elapsed = (time.perf_counter() - t) * 1000
            if i >= 20:
                times.append(elapsed)
    return times


def drawing_costs(bundle_path: Path, patient: dict, n: int = 30) -> dict[str, float]:
    """Median milliseconds to draw one patient's waterfall: matplotlib PNG / SVG against the page's geometry."""
    import io

    from precimed.bundle import load_bundle
    from precimed.evaluate.explain import waterfall_png
    from precimed.service.web.pages_patient import waterfall_svg
    from precimed.workflows.patient_view import patient_view

    bundle = load_bundle(bundle_path)
    view = patient_view(bundle, patient, plan=False)
    row = view.explanation

    def timed(fn) -> float:
        fn()
        out = []
        for _ in range(n):
            t = time.perf_counter()
            fn()
            out.append((time.perf_counter() - t) * 1000)
        return float(np.median(out))

    def svg() -> bytes:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(8, 3))
        steps = view.waterfall
        ax.barh(range(len(steps)), [s.delta for s in steps], left=[s.start for s in steps])
        ax.set_yticks(range(len(steps)), [s.label for s in steps])
        buf = io.BytesIO()
        fig.savefig(buf, format="svg")
        plt.close(fig)
        return buf.getvalue()

    return {"matplotlib PNG (evaluate.explain.waterfall_png)": timed(lambda: waterfall_png(row)),
            "matplotlib SVG (bars and labels only)": timed(svg),
            "page template geometry (pages_patient.waterfall_svg)": timed(lambda: waterfall_svg(view))}


def summary(times: list[float]) -> str:
    a = np.asarray(times)
    return (f"p50 {np.percentile(a, 50):7.1f} ms   p99 {np.percentile(a, 99):7.1f} ms   mean {a.mean():7.1f} ms   "
            f"n={len(a)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", help="a bundle folder (default: runs/demo/bundle, else a small Pima model)")
    parser.add_argument("--requests", type=int, default=200, help="measured requests per round and path")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    from precimed.service import cli_commands as cli

    with tempfile.TemporaryDirectory(prefix="precimed-web-bench-") as tmp:
        work = Path(tmp)
        bundle, origin = bundle_dir(args.bundle, work)
        patient = patient_for(bundle)
        registry = work / "registry"
        info = cli.registry_add(registry, bundle)
        name = info["name"]
        cli.registry_promote(registry, name, 1)
        _, token = cli.tokens_create(registry, "clinician", label="web benchmark")
        print(f"bundle: {origin}; model {name}; patient {patient}; plan facts {FACTS}")
        print(f"machine: {os.cpu_count()} CPU(s), Python {sys.version.split()[0]}")
        proc, url = serve(registry, work / "serve.log")
        try:
            web = signed_in(url, token)
            runs: dict[str, list[float]] = {"web (htmx fragment)": [], "web (no JS, whole page)": [],
                                            "API predict + explain + plan (3 calls)": []}
            for _ in range(args.rounds):
                runs["web (htmx fragment)"] += web_times(web, name, patient, args.requests, htmx=True)
                runs["API predict + explain + plan (3 calls)"] += api_times(url, token, name, patient, args.requests)
                runs["web (no JS, whole page)"] += web_times(web, name, patient, args.requests, htmx=False)
            web.close()
        finally:
            stop(proc)
        print(f"\nround trip, {args.rounds} rounds x {args.requests} sequential requests, one keep-alive connection:")
        for label, times in runs.items():
            print(f"  {label:42s} {summary(times)}")
        p50 = float(np.percentile(runs["web (htmx fragment)"], 50))
        print(f"target web p50 < 300 ms: {'met' if p50 < 300 else 'NOT met'} ({p50:.1f} ms)")
        print("\ndrawing one waterfall in this process (median of 30):")
        for label, ms in drawing_costs(bundle, patient).items():
            print(f"  {label:55s} {ms:8.3f} ms")


if __name__ == "__main__":
    main()
