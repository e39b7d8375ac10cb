"""A DICOM file sent to an imaging model's predict route (Content-Type: application/dicom): scored slice by slice,
stored and fetched like a JSON prediction, de-identified before anything is hashed or kept (no name, ID, date or UID
of the file reaches the database, the registry folder, the logs or the answer), bounded by max_image_bytes, and every
bad file answered with one 422 line."""

from __future__ import annotations

import hashlib
import io
import logging
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import create_engine, inspect, text

from service.conftest import PATIENT, start

BINARY, SEG = "img-binary", "img-seg"
DICOM = {"Content-Type": "application/dicom"}
# what the uploaded file says about its patient: none of it may be kept anywhere
NAME, PID, OTHER_ID, INSTITUTION = "Quillfeather^Zenobia", "PIDQ7734521X", "OTHERID99173", "Saint Wibbly Infirmary"
BIRTH, STUDY_DATE = "19510329", "19870605"
IDENTIFIERS = [NAME, "Quillfeather", "Zenobia", PID, OTHER_ID, INSTITUTION, BIRTH, STUDY_DATE]


# ----- the file and the bundles --------------------------------------------------------------------------------
def _ct(**changes) -> tuple[bytes, list[str]]:
    """pydicom-data's CT_small.dcm with recognisable identifiers; its bytes and the UIDs it carries."""
    import pydicom
    from pydicom.data import get_testdata_file

    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.PatientName, ds.PatientID, ds.OtherPatientIDs = NAME, PID, OTHER_ID
    ds.InstitutionName, ds.PatientBirthDate, ds.StudyDate, ds.SeriesDate = INSTITUTION, BIRTH, STUDY_DATE, STUDY_DATE
    for key, value in changes.items():
        if value is None:
            delattr(ds, key)
        else:
            setattr(ds, key, value)
    uids = [str(ds.SOPInstanceUID), str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID),
            str(ds.FrameOfReferenceUID)]
    out = io.BytesIO()
    ds.save_as(out)
    return out.getvalue(), uids


@pytest.fixture(scope="module")
def ct() -> tuple[bytes, list[str]]:
    return _ct()


def _config(name: str, kind: str, model: str):
    from precimed.config import parse_config

    task = {"kind": kind, "target": "lesion_present"} if kind == "binary" else {"kind": kind}
    return parse_config({"name": name, "data": {"train": {"dataset": "pyradiomics"}}, "task": task,
                         "images": {"size": [32, 32], "window": None}, "split": {"kind": "grouped"},
                         "models": {"names": [model]}})


@pytest.fixture(scope="module")
def image_bundles(tmp_path_factory) -> dict[str, Path]:
    """A slice classifier (SmallResNet, 1 epoch) and a threshold segmenter on random 32 x 32 CT-like volumes."""
    from precimed.bundle import save_bundle
    from precimed.data.images import ImageVolume
    from precimed.models.image_baselines import ThresholdSegmenter
    from precimed.preprocess.images import ImagePreprocessor
    from precimed.train.imaging import ImageClassifier

    rng = np.random.default_rng(0)
    volumes = [ImageVolume(rng.normal(size=(4, 32, 32)).astype(np.float32), (1.0, 1.0, 1.0), f"v{i}", "CT",
                           {"format": "synthetic", "spacing_known": True}) for i in range(2)]
    pre = ImagePreprocessor(size=(32, 32), window=None).fit(volumes, ["CT", "CT"])
    X = np.concatenate([pre.transform(v, modality="CT") for v in volumes])
    net = ImageClassifier(widths=(4, 8), max_epochs=1, batch_size=8, random_state=0)
    net.fit(X, np.array([0, 1] * 4), groups=np.repeat(["a", "b"], 4))
    seg = ThresholdSegmenter().fit(X, (X[:, 0] > 1.0).astype(np.uint8))
    root = tmp_path_factory.mktemp("image-bundles")
    return {
        BINARY: save_bundle(root / BINARY, config=_config(BINARY, "binary", "resnet"), preprocessor=None,
                            image_preprocessor=pre, models={"resnet": net}, metadata={"primary_model": "resnet"}),
        SEG: save_bundle(root / SEG, config=_config(SEG, "segmentation", "threshold"), preprocessor=None,
                         image_preprocessor=pre, models={"threshold": seg}, metadata={"primary_model": "threshold"}),
    }


def _start(tmp_path, pima_bundles, image_bundles, **settings):
    from precimed.service import cli_commands as cli

    registry = tmp_path / "registry"
    for name, folder in image_bundles.items():
        cli.registry_add(registry, folder)
        cli.registry_promote(registry, name, 1)
    return start(tmp_path, pima_bundles, **settings)


@pytest.fixture
def isvc(tmp_path, pima_bundles, image_bundles):
    s = _start(tmp_path, pima_bundles, image_bundles)
    yield s
    s.client.close()
    s.container.db.dispose()


@pytest.fixture
def isvc_unlimited(tmp_path, pima_bundles, image_bundles):
    """The same service without a rate limit in the way: a property test sends many files quickly."""
    s = _start(tmp_path, pima_bundles, image_bundles, rate_per_minute=1_000_000, rate_burst=1_000_000)
    yield s
    s.client.close()
    s.container.db.dispose()


def _predict(s, name: str, data: bytes, role: str = "clinician", query: str = "", headers: dict | None = None):
    return s.client.post(f"/v1/models/{name}/predict{query}", content=data,
                         headers={**s.auth(role), **DICOM, **(headers or {})})


# ----- scoring, storing, fetching ------------------------------------------------------------------------------
def test_a_dicom_file_is_scored_slice_by_slice_stored_and_fetched_by_its_maker(isvc, ct, image_bundles):
    from precimed.bundle import load_bundle
    from precimed.data.images import read_dicom_bytes
    from precimed.workflows.image_serving import predict_volume

    r = _predict(isvc, BINARY, ct[0])
    assert r.status_code == 200, r.text
    out = r.json()
    assert set(out) == {"id", "model", "version", "bundle", "stage", "submodel", "task", "slices"}
    assert (out["model"], out["version"], out["stage"], out["submodel"], out["task"]) == (
        BINARY, 1, "production", "resnet", "binary")
    # de-identification leaves the pixels alone: the same probability as the identified file read directly
    table, _ = predict_volume(load_bundle(image_bundles[BINARY]), read_dicom_bytes(ct[0]))
    assert [s["slice"] for s in out["slices"]] == [0] and out["slices"][0]["model"] == "resnet"
    assert out["slices"][0]["probability"] == pytest.approx(float(table["probability"][0]), abs=1e-6)
    assert set(out["slices"][0]) == {"slice", "model", "probability"}

    got = isvc.client.get(f"/v1/predictions/{out['id']}", headers=isvc.auth("clinician"))
    assert got.status_code == 200
    assert {k: v for k, v in got.json().items() if k != "created_at"} == out
    assert isvc.client.get(f"/v1/predictions/{out['id']}", headers=isvc.auth("admin")).status_code == 200
    with isvc.container.db.session() as session:
        row = session.execute(text("SELECT kind, model, version FROM predictions WHERE id = :i"),
                              {"i": out["id"]}).one()
    assert tuple(row) == ("predict_image", BINARY, 1)


def test_a_segmenter_answers_lesion_pixels_and_area_in_mm2(isvc, ct):
    out = _predict(isvc, SEG, ct[0]).json()
    assert out["task"] == "segmentation" and out["submodel"] == "threshold"
    (row,) = out["slices"]
    assert set(row) == {"slice", "model", "lesion_pixels", "lesion_area_mm2", "max_probability"}
    assert row["lesion_pixels"] > 0
    assert row["lesion_area_mm2"] == pytest.approx(row["lesion_pixels"] * 0.661468 ** 2)  # CT_small's pixel spacing


def test_version_and_model_are_query_parameters_of_an_upload(isvc, ct):
    r = _predict(isvc, BINARY, ct[0], query="?version=1&model=resnet")
    assert r.status_code == 200 and r.json()["stage"] == "pinned" and r.json()["submodel"] == "resnet"
    r = _predict(isvc, BINARY, ct[0], query="?model=unet")
    assert r.status_code == 422 and r.json()["field"] == "model" and "['resnet']" in r.json()["message"]
    r = _predict(isvc, BINARY, ct[0], query="?version=7")
    assert r.status_code == 404 and "version 7" in r.json()["message"]
    assert _predict(isvc, BINARY, ct[0], query="?version=0").status_code == 422
    # a JSON request names them in its body; in the query they are refused rather than ignored
    r = isvc.client.post("/v1/models/pima-small/predict?version=1", json={"patients": [PATIENT]},
                         headers=isvc.auth("clinician"))
    assert r.status_code == 422 and r.json()["field"] == "version" and "in the body" in r.json()["message"]


def test_only_a_role_that_may_predict_uploads(isvc, ct):
    assert isvc.client.post(f"/v1/models/{BINARY}/predict", content=ct[0], headers=DICOM).status_code == 401
    for role in ("auditor", "data_scientist", "admin"):
        r = _predict(isvc, BINARY, ct[0], role=role)
        assert r.status_code == 403 and role in r.json()["message"]


# ----- the wrong kind of input for the model --------------------------------------------------------------------
def test_a_tabular_model_refuses_a_dicom_file_and_an_imaging_model_refuses_json(isvc, ct):
    r = _predict(isvc, "pima-small", ct[0])
    assert r.status_code == 415
    assert r.json()["message"].startswith("model pima-small scores table rows; send JSON patients")
    for route in ("predict", "explain"):
        r = isvc.client.post(f"/v1/models/{BINARY}/{route}", json={"patients": [PATIENT]},
                             headers=isvc.auth("clinician"))
        assert r.status_code == 422, r.text
        assert r.json()["message"].startswith(f"model {BINARY} scores images; send the DICOM file as "
                                              "application/dicom")


# ----- bad files ------------------------------------------------------------------------------------------------
def _no_pixels() -> bytes:
    return _ct(PixelData=None)[0]


def _compressed() -> bytes:
    """A JPEG-LS file (no decoder for it is installed here) with the same identifiers written into it."""
    import pydicom
    from pydicom.data import get_testdata_file

    ds = pydicom.dcmread(get_testdata_file("MR_small_jpeg_ls_lossless.dcm"))
    ds.PatientName, ds.PatientID, ds.Modality = NAME, PID, "CT"  # CT: the bundle was fitted on CT only
    out = io.BytesIO()
    ds.save_as(out)
    return out.getvalue()


def _huge_header(ct: bytes) -> bytes:
    """A small file whose header declares 4096 × 4096 × 8 frames: refused before any pixel is decoded."""
    import pydicom

    ds = pydicom.dcmread(io.BytesIO(ct))
    ds.Rows, ds.Columns, ds.NumberOfFrames = 4096, 4096, 8
    out = io.BytesIO()
    ds.save_as(out)
    return out.getvalue()


@pytest.mark.parametrize(("case", "expected"), [
    ("not dicom", "is not a DICOM file"),
    ("huge", "declares 134,217,728 voxels"),
    ("empty", "is empty"),
    ("truncated", "truncated"),
    ("no pixel data", "holds no pixel data"),
    ("compressed", "install pyjpegls"),
])
def test_a_bad_file_is_one_422_line_naming_the_problem(isvc, ct, case, expected):
    data = {"not dicom": b"PatientName=" + NAME.encode() + b"\n" * 400, "empty": b"",
            "truncated": ct[0][: len(ct[0]) - 20_000], "no pixel data": _no_pixels(),
            "compressed": _compressed(), "huge": _huge_header(ct[0]) if case == "huge" else b""}[case]
    r = _predict(isvc, BINARY, data)
    assert r.status_code == 422, r.text
    message = r.json()["message"]
    assert expected in message and r.json()["field"] == "body"
    assert "\n" not in message and "Traceback" not in r.text
    assert not [s for s in IDENTIFIERS + ct[1] if s in r.text]


# ----- nothing identifying is kept -----------------------------------------------------------------------------
def _everything_stored(s) -> str:
    """Every row of every table of the service database, as text."""
    engine = create_engine(s.db_url)
    try:
        with engine.connect() as conn:
            return "\n".join(repr(tuple(row)) for table in inspect(engine).get_table_names()
                             for row in conn.execute(text(f'SELECT * FROM "{table}"')))
    finally:
        engine.dispose()


def test_no_name_id_date_or_uid_of_the_file_is_stored_logged_or_answered(isvc, ct, caplog, recwarn):
    from precimed.workflows import dicom_upload

    caplog.set_level(logging.DEBUG)
    data, uids = ct
    answers = [_predict(isvc, name, data) for name in (BINARY, SEG, "pima-small")]
    answers.append(_predict(isvc, BINARY, _no_pixels()))  # a rejected upload is audited too
    assert [a.status_code for a in answers] == [200, 200, 415, 422]
    made = answers[0].json()["id"]
    answers.append(isvc.client.get(f"/v1/predictions/{made}", headers=isvc.auth("clinician")))
    assert isvc.client.get("/v1/audit/verify", headers=isvc.auth("auditor")).json()["ok"] is True

    stored = _everything_stored(isvc)
    assert made in stored and "predict_image" in stored  # the rows are there...
    secrets = IDENTIFIERS + uids
    assert [s for s in secrets if s in stored] == []  # ...without the file's identifiers
    files = [p for p in isvc.registry.rglob("*") if p.is_file() and "models" not in p.relative_to(isvc.registry).parts]
    assert any(p.name.startswith("precimed.db") for p in files)
    for p in files:  # the database file (and its journal), the audit checkpoints, the key files
        content = p.read_bytes()
        assert [s for s in secrets if s.encode() in content] == [], p.name
    logged = caplog.text + "\n".join(str(w.message) for w in recwarn)
    assert "predict" in caplog.text and [s for s in secrets if s in logged] == []
    assert [s for s in secrets if any(s in a.text for a in answers)] == []

    # what is stored is the digest of the de-identified file (same per-process key), not of the upload
    with isvc.container.db.session() as session:
        digest = session.execute(text("SELECT input_digest FROM predictions WHERE id = :i"), {"i": made}).scalar()
    clean = dicom_upload.deidentified_dicom(data)
    assert digest == hashlib.sha256(clean).hexdigest() != hashlib.sha256(data).hexdigest()
    assert [s for s in secrets if s.encode() in clean] == []


# ----- limits --------------------------------------------------------------------------------------------------
def test_the_image_limit_is_its_own_setting_enforced_before_the_body_is_read(tmp_path, pima_bundles, image_bundles,
                                                                            ct, monkeypatch):
    from precimed.service import ServiceSettings

    assert ServiceSettings(registry=tmp_path).max_image_bytes == 64 * 2**20
    monkeypatch.setenv("PRECIMED_MAX_IMAGE_BYTES", "5000")
    assert ServiceSettings.from_env(tmp_path).max_image_bytes == 5000
    s = _start(tmp_path, pima_bundles, image_bundles, max_image_bytes=20_000, max_body_bytes=2_048)
    try:
        data = ct[0]
        assert len(data) > 20_000
        r = _predict(s, BINARY, data)  # declared length over the limit
        assert r.status_code == 413
        assert r.json()["message"].startswith("DICOM file larger than 20000 bytes")
        assert "PRECIMED_MAX_IMAGE_BYTES" in r.json()["message"]

        def chunks():  # no Content-Length: stopped while streaming
            for i in range(0, len(data), 4096):
                yield data[i:i + 4096]

        r = s.client.post(f"/v1/models/{BINARY}/predict", content=chunks(), headers={**s.auth("clinician"), **DICOM})
        assert r.status_code == 413 and "20000" in r.json()["message"]
        # the image limit is the predict route's only: elsewhere a DICOM body keeps max_body_bytes
        r = s.client.post("/v1/vitals", content=data[:10_000], headers={**s.auth("clinician"), **DICOM})
        assert r.status_code == 413 and "2048 bytes" in r.json()["message"]
        # and a JSON body on the predict route too
        r = s.client.post(f"/v1/models/{BINARY}/predict", content=b" " * 10_000,
                          headers={**s.auth("clinician"), "Content-Type": "application/json"})
        assert r.status_code == 413 and "2048 bytes" in r.json()["message"]
        # a request that says both JSON and DICOM is not an image upload
        r = s.client.post(f"/v1/models/{BINARY}/predict", content=data[:10_000],
                          headers=[("Authorization", f"Bearer {s.tokens['clinician']}"),
                                   ("Content-Type", "application/json"), ("Content-Type", "application/dicom")])
        assert r.status_code == 413
    finally:
        s.client.close()
        s.container.db.dispose()


def test_the_openapi_document_lists_both_media_types_and_keeps_the_json_schema(isvc):
    spec = isvc.client.get("/openapi.json").json()
    op = spec["paths"]["/v1/models/{name}/predict"]["post"]
    content = op["requestBody"]["content"]
    assert content["application/json"]["schema"] == {"$ref": "#/components/schemas/PatientsIn"}
    assert content["application/dicom"]["schema"] == {"type": "string", "format": "binary"}
    assert {p["name"] for p in op["parameters"] if p["in"] == "query"} == {"version", "model"}
    assert op["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/PredictionOut"}
    assert "slices" in spec["components"]["schemas"]["StoredPrediction"]["properties"]


def test_damaged_files_never_make_the_service_fail(isvc_unlimited, ct):
    isvc = isvc_unlimited
    """Bytes of the CT file overwritten, and the file cut, at places hypothesis picks: 200 or one 422 line."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    data = ct[0]
    statuses: set[int] = set()

    @given(edits=st.lists(st.tuples(st.integers(0, 1_600), st.integers(0, 255)), min_size=1, max_size=6),
           cut=st.one_of(st.none(), st.integers(0, len(data))))
    @settings(max_examples=60, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def run(edits, cut):
        damaged = bytearray(data)
        for at, value in edits:
            damaged[at] = value
        r = _predict(isvc, BINARY, bytes(damaged[:cut]))
        statuses.add(r.status_code)
        assert r.status_code in (200, 422), r.text[:300]
        if r.status_code == 422:
            assert "\n" not in r.json()["message"] and r.json()["field"] == "body"

    run()
    assert 422 in statuses


def test_a_file_whose_transfer_syntax_is_not_one_is_a_422_not_a_500(isvc, ct):
    """Found by the property test: a transfer syntax UID that names no transfer syntax made pydicom raise
    ValueError while reading the pixels."""
    import io

    import pydicom

    data, _ = ct
    syntax = str(pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True).file_meta.TransferSyntaxUID).encode()
    other = b"1.2.840.10008.5.1.4.1.1.2"[:len(syntax)].ljust(len(syntax), b"9")  # a UID that names no syntax
    buf = io.BytesIO(data.replace(syntax, other, 1))
    r = _predict(isvc, BINARY, buf.getvalue())
    assert r.status_code == 422, r.text[:300]
