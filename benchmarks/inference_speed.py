"""Scoring speed of a tabular bundle: one patient in microseconds, bulk rows per second (issue 13, items 1-2).

Plain script, not a test: every figure is measured in this run, side by side with its reference.

    .venv/bin/python benchmarks/inference_speed.py [--bundle RUN/bundle] [--rows 1000000] [--calls 5000]

The bundle: --bundle, else the demo's (runs/demo/bundle, written by `make demo`: Rotterdam -> GBSG, 5-net Cox MLP
ensemble, residual MLP, Cox PH, LightGBM), else the demo's model shapes trained quickly into /tmp (said in the
output). Patients are REAL: the GBSG validation cohort harmonized as the bundle's config says; bulk rows are those
686 patients repeated to --rows (real values, repeated rows).

One patient (in-process, median and p99 of --calls calls after warm-up), for each model of the bundle:
- bare numpy: the model's arithmetic alone on the already-encoded row (for nets: each member's Linear/ReLU layers
  in a Python loop over members, the ensemble mean and the survival curve at the horizons) - no validation, no
  preprocessing: the floor a hand-written scorer would have;
- compiled: ``bundle.scorer.score_records([patient])`` - schema checks, preprocessing, model, survival curve;
- service recipe: ``workflows.patients.score(bundle, [patient])``, what the service runs per request (adds the
  request-level checks: unknown fields, ids, "nothing recorded");
- reference: ``predict_frame(bundle, one-row frame, fast=False)`` - the pandas path every output is defined by.

Bulk (rows/s from a DataFrame to the output columns, 2 threads where the path has threads):
- reference predict_frame(fast=False) on --ref-rows rows;
- compiled, numpy runtime, 1 and 2 threads; compiled, onnx runtime (the bundle's ONNX graph: preprocessing +
  model), 2 threads;
- bare onnxruntime on the nets alone (the members' layers as one ONNX graph on the encoded float32 matrix, no
  preprocessing or checks, 2 intra-op threads, whole matrix in one call and in 2048-row chunks): the issue's
  reference for the MLP; LightGBM's bare booster.predict (2 threads) and a bare X @ coef for the Cox model.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]


def quick_bundle(folder: Path) -> Path:
    """The demo's model shapes trained quickly on Rotterdam (scoring costs what the full demo's bundle costs)."""
    bundle = folder / "run" / "bundle"
    if (bundle / "metadata.json").exists():
        return bundle
    from precimed.config import parse_config
    from precimed.workflows.training import train_from_config

    config = yaml.safe_load((ROOT / "examples" / "rotterdam-gbsg.yaml").read_text())
    config["training"] = {k: v for k, v in config["training"].items() if k != "search"} | {
        "max_epochs": 15, "patience": 5, "progress": False}
    config["evaluation"] = {"bootstrap": 10, "explain": 0}
    shutil.rmtree(folder / "run", ignore_errors=True)
    return train_from_config(parse_config(config), folder / "run", progress=False).bundle_path


def timed(fn, calls: int) -> tuple[float, float]:
    """Median and p99 of one call, in microseconds."""
    for _ in range(min(200, calls)):
        fn()
    times = []
    clock = time.perf_counter_ns
    for _ in range(calls):
        t = clock()
        fn()
        times.append(clock() - t)
    times.sort()
    return statistics.median(times) / 1e3, times[int(0.99 * (len(times) - 1))] / 1e3


def rate(fn, rows: int, repeat: int = 3) -> float:
    """Best rows/s of ``repeat`` runs (after one warm-up run)."""
    fn()
    best = min(_seconds(fn) for _ in range(repeat))
    return rows / best


def _seconds(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


# ----- the bare references -------------------------------------------------------------------------------------
def bare_numpy(est, model, horizons_h0):
    """The model's arithmetic alone, written as a user would: per-member layers in a loop (nets), X @ coef
    (linear), LightGBM's predict (gbm). Returns x -> outputs."""
    if model.kind == "nets":
        members = []
        for net in est.nets_:
            modules = [*net.body, net.head] if hasattr(net, "body") else None
            if modules is None:
                return None  # the residual MLP: no hand-written floor here (its compiled form is the numpy one)
            layers = []
            for m in modules:
                kind = type(m).__name__
                if kind == "Linear":
                    layers.append((m.weight.detach().numpy().T.copy(), m.bias.detach().numpy().copy()))
                elif kind == "ReLU":
                    layers.append(None)
            members.append(layers)

        def run(x):
            outs = []
            for layers in members:
                h = x
                for layer in layers:
                    h = np.maximum(h, 0) if layer is None else h @ layer[0] + layer[1]
                outs.append(h[:, 0])
            risk = np.mean(outs, axis=0)
            if horizons_h0 is not None:
                return risk, 1 - np.exp(-np.outer(np.exp(risk.astype(float)), horizons_h0))
            return risk
        return run
    if model.kind == "linear":
        coef = np.asarray(model.coef, dtype=float)

        def run(x):
            risk = x @ (coef.T if coef.ndim == 2 else coef)
            return risk if horizons_h0 is None else (risk, 1 - np.exp(-np.outer(np.exp(risk), horizons_h0)))
        return run
    booster, iters = model.booster, model.iterations

    def run(x):
        return booster.predict(x, num_iteration=iters, raw_score=True)
    return run


def bare_nets_session(model, threads: int):
    """onnxruntime on the nets alone: (n, features) float32 -> the members' mean output, no preprocessing."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from precimed.compiled.onnx_graph import OPSET, _first, _Graph, _mean, _steps

    g = _Graph()
    out = _mean(g, _first(g, _steps(g, model.program.steps, "x")))
    g.op("Identity", out, output="y")
    n_in = model.program.steps[0].weight.shape[1] if hasattr(model.program.steps[0], "weight") else None
    graph = helper.make_graph(g.nodes, "bare", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", n_in])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n"])], g.initializers)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    proto.ir_version = 8
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    return ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])


# ----- main ---------------------------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--ref-rows", type=int, default=100_000)
    ap.add_argument("--calls", type=int, default=5000)
    args = ap.parse_args()

    from precimed.bundle import load_bundle
    from precimed.workflows._run import load_cohort
    from precimed.workflows.patients import score
    from precimed.workflows.predicting import predict_frame

    if args.bundle is not None:
        bundle_dir, origin = args.bundle, "given"
    elif (ROOT / "runs" / "demo" / "bundle" / "metadata.json").exists():
        bundle_dir, origin = ROOT / "runs" / "demo" / "bundle", "the demo's (make demo)"
    else:
        bundle_dir, origin = quick_bundle(Path("/tmp/precimed-inference")), "demo shapes, trained quickly"
    bundle = load_bundle(bundle_dir)
    if bundle.scorer is None:
        sys.exit("this benchmark scores tabular bundles")
    cfg = bundle.config
    cohort = load_cohort(cfg.data.test or cfg.data.train, cfg)
    patients = cohort.frame.reset_index(drop=True)
    names = [f.name for f in bundle.features]
    first = {k: (v.item() if hasattr(v, "item") else v) for k, v in patients.loc[0, names].items()}
    first = {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in first.items()}
    import torch

    print(f"bundle: {bundle_dir} ({origin}); models {list(bundle.models)}; {len(names)} features -> "
          f"{bundle.scorer.preprocessor.n_out} encoded columns")
    print(f"machine: {os.cpu_count()} CPUs; torch threads {torch.get_num_threads()}; patients: REAL "
          f"({cfg.data.test.label if cfg.data.test else cfg.data.train.label}, {len(patients)} rows)")
    X1 = bundle.scorer.encode_records([first])
    task = bundle.task

    print("\n== one patient, in-process (microseconds: median / p99) ==")
    print(f"{'model':<8} {'bare numpy':>16} {'compiled':>16} {'service recipe':>16} {'reference':>18} "
          f"{'compiled/bare':>14} {'reference/compiled':>19}")
    frame1 = pd.DataFrame([first])
    for name in bundle.models:
        model = bundle.scorer.models[name]
        h0 = model.h0 if task.kind == "survival" else None
        bare = bare_numpy(bundle.models[name], model, h0)
        b = timed(lambda bare=bare: bare(X1), args.calls) if bare is not None else (float("nan"),) * 2
        c = timed(lambda name=name: bundle.scorer.score_records([first], model=name), args.calls)
        s = timed(lambda name=name: score(bundle, [first], model=name), args.calls)
        r = timed(lambda name=name: predict_frame(bundle, frame1, model=name, fast=False), max(200, args.calls // 20))
        print(f"{name:<8} {b[0]:>7.1f} / {b[1]:>6.1f} {c[0]:>7.1f} / {c[1]:>6.1f} {s[0]:>7.1f} / {s[1]:>6.1f} "
              f"{r[0]:>8.1f} / {r[1]:>7.1f} {c[0] / b[0]:>13.1f}x {r[0] / c[0]:>18.0f}x")

    n = args.rows
    reps = -(-n // len(patients))
    big = pd.concat([patients] * reps, ignore_index=True).iloc[:n]
    small = big.iloc[:min(args.ref_rows, n)]
    X = bundle.scorer.encode_columns({f: big[f].to_numpy() for f in names}, n)
    print(f"\n== bulk: {n:,} rows (the real cohort repeated) -> output columns, rows/s in millions ==")
    print(f"{'model':<8} {'reference':>10} {'numpy 1t':>9} {'numpy 2t':>9} {'onnx 2t':>8} {'bare':>8} "
          f"{'bare 2048':>10} {'best/bare':>10}  bare is")
    for name in bundle.models:
        model = bundle.scorer.models[name]
        ref = rate(lambda name=name: predict_frame(bundle, small, model=name, fast=False), len(small), repeat=1)
        np1 = rate(lambda name=name: predict_frame(bundle, big, model=name, threads=1), n)
        np2 = rate(lambda name=name: predict_frame(bundle, big, model=name, threads=2), n)
        onnx2 = float("nan")
        if bundle.scorer.session(name) is not None:
            onnx2 = rate(lambda name=name: predict_frame(bundle, big, model=name, threads=2, runtime="onnx"), n)
        if model.kind == "nets":
            sess = bare_nets_session(model, 2)
            bare = rate(lambda sess=sess: sess.run(None, {"x": X}), n)
            bare_chunks = rate(lambda sess=sess: [sess.run(None, {"x": X[i:i + 2048]}) for i in range(0, n, 2048)], n)
            what = "onnxruntime on the nets alone (encoded float32 input, 2 intra-op threads)"
        elif model.kind == "gbm":
            booster, iters = model.booster, model.iterations
            bare = rate(lambda booster=booster, iters=iters: booster.predict(X, num_iteration=iters, raw_score=True,
                                                                              num_threads=2), n)
            bare_chunks = float("nan")
            what = "LightGBM booster.predict on the encoded matrix, 2 threads"
        else:
            coef = np.asarray(model.coef, dtype=float)
            bare = rate(lambda coef=coef: X @ (coef.T if coef.ndim == 2 else coef), n)
            bare_chunks = float("nan")
            what = "X @ coef on the encoded matrix (risk score only)"
        best = np.nanmax([np1, np2, onnx2])
        print(f"{name:<8} {ref / 1e6:>10.3f} {np1 / 1e6:>9.2f} {np2 / 1e6:>9.2f} {onnx2 / 1e6:>8.2f} "
              f"{bare / 1e6:>8.2f} {bare_chunks / 1e6:>10.2f} {best / bare:>10.2f}  {what}")
    print("\nreference = predict_frame(fast=False) on "
          f"{len(small):,} rows; compiled = predict_frame (checks, preprocessing, model, survival at the horizons, "
          "the output frame).")


if __name__ == "__main__":
    main()
