"""The compiled scoring path gives the reference path's outputs (to 1e-6) on every tabular example bundle and
every model kind, and the reference path's error messages for bad input."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from helpers import fast
from precimed.bundle import load_bundle
from precimed.compiled import Declined
from precimed.compiled.nets import compile_nets
from precimed.config import parse_config
from precimed.errors import DataError, SchemaError, ValueRangeError
from precimed.models.nets import MLP, ResidualMLP
from precimed.workflows._run import load_cohort
from precimed.workflows.patients import PatientsInvalid, score
from precimed.workflows.predicting import predict_frame
from precimed.workflows.training import train_from_config

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
#: every example that trains a tabular bundle (pima-search is pima with a shared study; effects-* are effect runs)
TABULAR_EXAMPLES = ["pima", "wdbc", "nhefs", "colon", "rotterdam-gbsg", "ad"]


def _example(name: str) -> dict:
    config = fast(yaml.safe_load((EXAMPLES / f"{name}.yaml").read_text()))
    config["models"]["mlp"] = {"hidden": [16, 8], "ensemble": 3}  # a stacked ensemble, as the examples train
    config["models"]["resmlp"] = {"hidden": [8], "ensemble": 2}
    config["models"].pop("compare", None)
    config["models"]["names"] = ["mlp", "resmlp", *[m for m in config["models"].get("names", [])
                                                    if m not in ("mlp", "resmlp")]]
    config["training"].pop("search", None)
    config["evaluation"] = {"bootstrap": 5, "explain": 0}
    return config


@pytest.fixture(scope="module", params=TABULAR_EXAMPLES)
def example(request, tmp_path_factory):
    cfg = parse_config(_example(request.param), source=f"{request.param}.yaml")
    bundle_dir = train_from_config(cfg, tmp_path_factory.mktemp(request.param) / "run", progress=False).bundle_path
    cohort = load_cohort(cfg.data.test or cfg.data.train, cfg)  # harmonized as the run config says
    return load_bundle(bundle_dir), cohort.frame.reset_index(drop=True)


def _same(fast_out: pd.DataFrame, ref: pd.DataFrame, bundle=None) -> float:
    """The largest difference of the outputs: absolute for probabilities and risk scores; for a regression
    prediction (in the outcome's unit, float32) relative to max(1, |value|), since float32 resolves 6e-8 of a
    value and a net's float32 matrix products differ in their last bit between torch's and numpy's BLAS.

    Uncertainty columns: the method is the same; at most 1% of prediction sets differ (a patient exactly at the
    set threshold); a Venn-Abers bound is a step function of the score with a step at each calibration score, so
    it may differ only where the two paths' scores (equal to 1e-6) fall on either side of a step: checked row by
    row against the bundle's steps."""
    assert list(fast_out.columns) == list(ref.columns)
    assert fast_out.iloc[:, 0].tolist() == ref.iloc[:, 0].tolist() and (fast_out["model"] == ref["model"]).all()
    model = str(ref["model"].iloc[0]) if len(ref) else None
    unc = bundle.uncertainty.get(model) if bundle is not None and model is not None else None
    worst = 0.0
    for c in ref.columns[2:]:
        if c == "interval_method":
            assert (fast_out[c] == ref[c]).all()
            continue
        if c == "prediction_set":
            assert (fast_out[c] != ref[c]).mean() <= 0.01
            continue
        a, b = fast_out[c].to_numpy(float), ref[c].to_numpy(float)
        # a regression prediction is float32 in the outcome's unit: a float32 dot product of ~60 encoded features
        # whose terms partly cancel differs by a few ulps of its largest term between two summation orders (NHEFS
        # linear: 1.4e-6 kg at -1.03 kg), so half the bound per unit; an interval is the prediction +- a constant
        scale = (2.0 * np.maximum(np.maximum(1.0, np.abs(b)), np.abs(ref["prediction"].to_numpy(float)))
                 if c.startswith("prediction") else 1.0)
        gap = np.abs(a - b) / scale
        output = c.removesuffix("_lower").removesuffix("_upper")
        if output != c and unc is not None and unc.intervals[output].kind == "venn_abers":
            edges = unc.intervals[output].edges
            apart = gap > 1e-6
            fa, fb = fast_out[output].to_numpy(float)[apart], ref[output].to_numpy(float)[apart]
            assert (np.searchsorted(edges, fa) != np.searchsorted(edges, fb)).all(), c
            continue
        worst = max(worst, float(np.nanmax(gap)) if len(gap) else 0.0)
    return worst


def test_every_model_of_every_example_bundle_matches_the_reference_path(example):
    bundle, raw = example
    assert bundle.scorer is not None and set(bundle.scorer.models) == set(bundle.models)
    rng = np.random.default_rng(0)
    holes = raw.copy()
    for f in bundle.features[:6]:  # blank some cells: imputation and missing indicators take part
        holes.loc[rng.random(len(holes)) < 0.2, f.name] = np.nan
    for frame in (raw, holes):
        for name in bundle.models:
            out = predict_frame(bundle, frame, model=name)
            ref = predict_frame(bundle, frame, model=name, fast=False)
            assert _same(out, ref, bundle) <= 1e-6, name


def test_the_encoded_matrix_is_the_preprocessors_bit_for_bit(example):
    bundle, raw = example
    scorer = bundle.scorer
    columns = {f: raw[f].to_numpy() for f in scorer.features}
    typed = raw.loc[:, scorer.features]
    from precimed.cohort import type_features

    typed = type_features(raw, bundle.features, where="t")
    expected = bundle.preprocessor.transform(typed, out_of_range="missing")
    got = scorer.encode_columns(columns, len(raw), allow_out_of_range=True)
    np.testing.assert_array_equal(got, expected)


def test_records_through_the_service_recipe_match_the_reference(example):
    bundle, raw = example
    names = [f.name for f in bundle.features]
    records = [{k: (None if pd.isna(v) else (v.item() if hasattr(v, "item") else v)) for k, v in r.items()}
               for r in raw.loc[:40, names].to_dict(orient="records")]
    scored = score(bundle, records)
    ref = predict_frame(bundle, pd.DataFrame(records, columns=names), fast=False)
    from precimed.cohort import type_features

    typed = type_features(pd.DataFrame(records, columns=names), bundle.features, where="t")
    np.testing.assert_array_equal(scored.encoded, bundle.preprocessor.transform(typed, out_of_range="error"))
    for row, (_, expected) in zip(scored.rows, ref.iterrows(), strict=True):
        for column in ref.columns[2:]:
            if column in ("interval_method", "prediction_set"):
                continue  # compared by test_every_model_of_every_example_bundle_matches_the_reference_path
            assert abs(row[column] - expected[column]) <= 1e-6


# ----- bad input gets the reference path's message ------------------------------------------------------------
@pytest.fixture(scope="module")
def gbsg(tmp_path_factory):
    cfg = parse_config(_example("rotterdam-gbsg"), source="rotterdam-gbsg.yaml")
    bundle = load_bundle(train_from_config(cfg, tmp_path_factory.mktemp("rg") / "run", progress=False).bundle_path)
    cohort = load_cohort(cfg.data.test, cfg)
    return bundle, cohort.frame.iloc[:20].reset_index(drop=True)


def _message(bundle, frame, **kw):
    with pytest.raises(DataError) as fast_exc:
        predict_frame(bundle, frame, **kw)
    with pytest.raises(DataError) as ref_exc:
        predict_frame(bundle, frame, fast=False, **kw)
    assert type(fast_exc.value) is type(ref_exc.value) and str(fast_exc.value) == str(ref_exc.value)
    return fast_exc.value


def test_bad_input_gets_the_reference_message(gbsg):
    bundle, frame = gbsg
    err = _message(bundle, frame.drop(columns=["age"]))
    assert isinstance(err, SchemaError) and "missing column(s) ['age']" in str(err)
    wrong = frame.astype({"age": object})
    wrong.loc[3, "age"] = "fifty"
    assert "must be numeric" in str(_message(bundle, wrong))
    unknown = frame.astype({"size": object})
    unknown.loc[2, "size"] = "huge"
    assert "unknown category 'huge'" in str(_message(bundle, unknown))
    old = frame.copy()
    old.loc[5, "age"] = 430
    err = _message(bundle, old)
    assert isinstance(err, ValueRangeError) and "430" in str(err)
    assert "no rows" in str(_message(bundle, frame.iloc[:0]))
    # allowed out of range: the compiled path treats it as missing, exactly as the reference does
    assert _same(predict_frame(bundle, old, allow_out_of_range=True),
                 predict_frame(bundle, old, allow_out_of_range=True, fast=False), bundle) <= 1e-6


def test_the_compiled_checks_decline_rather_than_guess(gbsg):
    bundle, frame = gbsg
    scorer = bundle.scorer
    columns = {f: frame[f].to_numpy() for f in scorer.features}
    n = len(frame)
    for name, bad in [("age", np.array(["50"] * n, dtype=object)), ("age", np.full(n, np.inf)),
                      ("size", np.array(["huge"] * n, dtype=object)), ("meno", np.full(n, 7)),
                      ("size", np.array([True, "<=20"] * (n // 2), dtype=object)),  # mixed Python types
                      ("age", np.full(n, 430.0))]:
        with pytest.raises(Declined):
            scorer.score_columns({**columns, name: bad}, n, model="mlp")
    record = {f: frame.loc[0, f] for f in scorer.features}
    for name, bad in [("age", "50"), ("age", True), ("age", float("inf")), ("age", 430), ("size", "huge"),
                      ("meno", "maybe"), ("size", [1])]:
        with pytest.raises(Declined):
            scorer.score_records([{**record, name: bad}], model="mlp")


def test_service_recipe_reports_the_same_problems(gbsg):
    bundle, frame = gbsg
    record = {f.name: frame.loc[0, f.name].item() if hasattr(frame.loc[0, f.name], "item") else frame.loc[0, f.name]
              for f in bundle.features}
    with pytest.raises(PatientsInvalid) as exc:
        score(bundle, [{**record, "size": "huge"}, {**record, "age": 430}])
    fields = {p.field for p in exc.value.problems}
    assert fields == {"size", "age"}


# ----- the nets: every activation, batch norm, both architectures ---------------------------------------------
@pytest.mark.parametrize("activation", ["relu", "gelu", "tanh", "elu", "selu", "leaky_relu"])
@pytest.mark.parametrize("cls", [MLP, ResidualMLP])
@pytest.mark.parametrize("batch_norm", [False, True])
def test_net_program_matches_torch(activation, cls, batch_norm):
    torch.manual_seed(0)
    nets = []
    for _ in range(3):
        net = cls(7, (12, 5), 2, 0.3, activation, batch_norm)
        with torch.no_grad():
            for p in net.parameters():
                p.normal_(0, 0.5)
            for m in net.modules():
                if isinstance(m, torch.nn.BatchNorm1d):
                    m.running_mean.normal_(0, 1)
                    m.running_var.uniform_(0.5, 2)
        nets.append(net.eval())
    x = np.random.default_rng(1).normal(size=(50, 7)).astype(np.float32)
    with torch.no_grad():
        expected = np.stack([n(torch.from_numpy(x)).numpy() for n in nets])
    got = compile_nets(nets).run(x)
    assert got.dtype == np.float32 and got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=2e-6)


# ----- the ONNX graphs in the bundle ------------------------------------------------------------------------
ort = pytest.importorskip("onnxruntime")


def test_onnx_graphs_in_the_bundle_match_the_reference_path(example):
    bundle, raw = example
    with_graph = {name for name, info in bundle.metadata["models"].items() if info.get("onnx")}
    assert with_graph == {n for n in bundle.models if n != "gbm"}  # LightGBM has its own C predictor, no graph
    assert all(f"models/{n}.onnx" in bundle.metadata["sha256"] for n in with_graph)  # hashed like every file
    big = pd.concat([raw] * (5000 // len(raw) + 1), ignore_index=True)  # several chunks over two threads
    for name in with_graph:
        for frame in (raw, big):
            out = predict_frame(bundle, frame, model=name, runtime="onnx")
            ref = predict_frame(bundle, frame, model=name, fast=False)
            assert _same(out, ref, bundle) <= 1e-6, name
            assert list(out.dtypes) == list(ref.dtypes)


def test_chunked_threaded_numpy_path_matches(example):
    bundle, raw = example
    big = pd.concat([raw] * (5000 // len(raw) + 1), ignore_index=True)
    name = bundle.primary
    a = predict_frame(bundle, big, model=name, threads=2)
    b = predict_frame(bundle, big, model=name, threads=1)
    pd.testing.assert_frame_equal(a, b)
    assert _same(a, predict_frame(bundle, big, model=name, fast=False), bundle) <= 1e-6


def test_onnx_runtime_is_refused_in_one_line_where_there_is_no_graph(gbsg):
    from precimed.errors import ConfigError

    bundle, frame = gbsg
    with pytest.raises(ConfigError, match="LightGBM models have none"):
        predict_frame(bundle, frame, model="gbm", runtime="onnx")
    with pytest.raises(ConfigError, match="runtime must be one of"):
        predict_frame(bundle, frame, runtime="tensorrt")


def test_a_hostile_onnx_file_is_never_run(gbsg):
    """An ONNX file can name external data files or operators from other domains; check_graph refuses them
    before onnxruntime parses the file, so a crafted bundle cannot read files or load custom kernels."""
    import onnx
    from onnx import helper, numpy_helper

    from precimed.compiled.onnx_graph import check_graph
    from precimed.compiled.scorer import _session

    bundle, _ = gbsg
    good = bundle.scorer.onnx["mlp"]
    assert check_graph(good) is None
    model = onnx.load_from_string(good)
    tensor = model.graph.initializer[0]
    tensor.data_location = onnx.TensorProto.EXTERNAL
    tensor.external_data.add(key="location", value="../../../../etc/passwd")
    assert "outside the file" in check_graph(model.SerializeToString())
    model = onnx.load_from_string(good)
    model.graph.node.append(helper.make_node("MyOp", ["raw"], ["x"], domain="evil.ops"))
    assert "not one precimed writes" in check_graph(model.SerializeToString())
    model = onnx.load_from_string(good)
    model.graph.initializer.append(numpy_helper.from_array(np.zeros(1), "extra"))
    model.graph.input[0].name = "other"
    assert "inputs and outputs" in check_graph(model.SerializeToString())
    assert check_graph(b"\x00garbage") == "not an ONNX file"
    assert _session(b"\x00garbage") is None


def test_cli_predict_runtime(gbsg, tmp_path, run_cli):
    bundle, frame = gbsg
    src = tmp_path / "patients.csv"
    frame.to_csv(src, index=False)
    code, out, err = run_cli("predict", bundle.path, "--input", src, "--output", tmp_path / "onnx.csv",
                             "--runtime", "onnx")
    assert code == 0, err
    got = pd.read_csv(tmp_path / "onnx.csv")
    ref = predict_frame(bundle, pd.read_csv(src), fast=False)
    column = "event_probability_1826days"
    assert np.abs(got[column].to_numpy() - ref[column].to_numpy()).max() < 1e-6
    code, out, err = run_cli("predict", bundle.path, "--input", src, "--output", tmp_path / "x.csv",
                             "--runtime", "tensorrt")
    assert code == 2 and "runtime must be one of" in err and "Traceback" not in err
    assert not (tmp_path / "x.csv").exists()
    empty = tmp_path / "empty.csv"
    empty.write_text(",".join(frame.columns) + "\n")
    code, out, err = run_cli("predict", bundle.path, "--input", empty, "--output", tmp_path / "e.csv")
    assert code == 2 and "no rows" in err


@pytest.mark.parametrize("method", ["recalibrate", "recalibrate_intercept"])
def test_a_recalibrated_bundle_scores_compiled_like_the_reference(gbsg, tmp_path, method):
    from precimed.workflows.updating import update_bundle

    bundle, frame = gbsg
    child = load_bundle(update_bundle(bundle.path, "gbsg", tmp_path / method, method=method).bundle_path)
    name = child.primary
    assert child.scorer.models[name].kind == "recalibrated"
    assert _same(predict_frame(child, frame, model=name), predict_frame(child, frame, model=name, fast=False),
                 child) <= 1e-6
