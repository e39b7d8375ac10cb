"""Finding 7 (uploads and the registry) and the FHIR-mapping and server-path findings: each attack is tried and its
refusal asserted.

- a bundle's hash list naming a file outside the bundle (absolute, '..', backslash, drive letter, a link out) is
  refused at verification, by the CLI and the service alike, the same way whether the named file exists or not;
- a bad upload (a pickle, a broken zip, a zip bomb, a tampered or undecodable bundle) is a 422 with one line;
- a bundle changed on disk after it was loaded is found by the periodic re-check: `integrity_problems()` names it
  and predictions answer 503 until it is restored;
- a FHIR mapping with a conversion factor that is not a finite number above 0 is a 422 naming the field;
- no response names a server folder.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import shutil
import zipfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from precimed.bundle import _canonical, load_bundle, safe_member, sha256_bytes
from precimed.errors import ArtifactError, ConfigError
from precimed.service import cli_commands as cli
from service.conftest import MAPPING, PATIENT, pima_bundles, start  # noqa: F401

UPLOAD = "/v1/models"
PREDICT = "/v1/models/pima-small/predict"
OUTSIDE = ["/etc/passwd", "/etc/no-such-file-here", "../../../../../etc/passwd", "models/../../metadata.json",
           "models\\..\\..\\secret", "C:/Windows/win.ini", "c:secret", "models//mlp.json", "./preprocessor.json", ""]


# ----- helpers ----------------------------------------------------------------------------------------------------
def _files(bundle: Path) -> dict[str, bytes]:
    return {p.relative_to(bundle).as_posix(): p.read_bytes() for p in sorted(bundle.rglob("*")) if p.is_file()}


def _rehashed(files: dict[str, bytes], edit) -> dict[str, bytes]:
    """The bundle's files after `edit(meta, files)`, with metadata_sha256 recomputed: what an attacker who writes
    the whole bundle can always do (the hash proves integrity, not origin)."""
    files = dict(files)
    meta = json.loads(files["metadata.json"])
    edit(meta, files)
    meta["metadata_sha256"] = sha256_bytes(_canonical(meta))
    files["metadata.json"] = json.dumps(meta).encode()
    return files


def _zip(files: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as z:
        for name, data in files.items():
            z.writestr(name, data)
    return buf.getvalue()


def _write(folder: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return folder


def _one_line_422(r, tmp_root: Path) -> str:
    """The refusal's message, after checking it is a 422 on one line that names no server folder."""
    assert r.status_code == 422, r.text
    message = r.json()["message"]
    assert "\n" not in message and r.json()["field"] == "body"
    assert str(tmp_root) not in r.text and "/.incoming" not in r.text
    return message


@pytest.fixture(scope="module")
def upl(tmp_path_factory, pima_bundles):  # noqa: F811
    """One service for the refused uploads (a refusal changes nothing the others see)."""
    s = start(tmp_path_factory.mktemp("uploads"), pima_bundles, rate_burst=1000)
    s.files = _files(pima_bundles[1])
    yield s
    s.client.close()
    s.container.db.dispose()


def _upload(s, data: bytes):
    return s.client.post(UPLOAD, content=data, headers={**s.auth("data_scientist"), "Content-Type": "application/zip"})


def _versions(s) -> list[int]:
    return [v["version"] for v in cli.registry_models(s.registry)[0]["versions"]]


# ----- hash-list paths --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("entry", OUTSIDE, ids=repr)
def test_a_hash_list_naming_a_file_outside_the_bundle_is_refused_by_the_service(upl, entry):
    files = _rehashed(upl.files, lambda meta, _: meta["sha256"].__setitem__(entry, "0" * 64))
    message = _one_line_422(_upload(upl, _zip(files)), upl.registry.parent)
    assert "the hash list names" in message and "only files inside the bundle" in message
    assert "missing" not in message and "does not match" not in message  # no existence or content oracle
    assert _versions(upl) == [1]


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="./\\:abc\x00 C", max_size=12))
def test_every_accepted_hash_list_name_stays_inside_the_bundle(rel):
    """Property: whatever name the check lets through is a plain relative path that resolves inside the bundle."""
    if safe_member(rel) is not None:
        return
    root = Path("/srv/bundle")
    assert (root / rel).resolve().is_relative_to(root) and (root / rel).resolve() != root
    assert not set(rel) & {"\\", ":", "\x00"} and ".." not in rel.split("/")


def test_an_existing_and_a_missing_outside_file_get_the_same_answer(upl):
    """The oracle the finding describes: today a missing file and a mismatching one answer differently."""
    answers = []
    for entry in ("/etc/passwd", "/etc/no-such-file-here"):
        files = _rehashed(upl.files, lambda meta, _, e=entry: meta["sha256"].__setitem__(e, "0" * 64))
        r = _upload(upl, _zip(files))
        answers.append((r.status_code, r.json()["message"].replace(entry, "ENTRY")))
    assert answers[0] == answers[1] and answers[0][0] == 422


@pytest.mark.parametrize("entry", ["/etc/passwd", "../outside.json", "models\\mlp.json", "D:\\x"], ids=repr)
def test_the_cli_refuses_the_same_hash_lists_with_exit_2(tmp_path, pima_bundles, run_cli, entry):  # noqa: F811
    bundle = _write(tmp_path / "bundle", _rehashed(_files(pima_bundles[0]),
                                                   lambda meta, _: meta["sha256"].__setitem__(entry, "0" * 64)))
    with pytest.raises(ArtifactError, match="the hash list names .* only files inside the bundle"):
        load_bundle(bundle)
    code, out, err = run_cli("registry", "add", bundle, "--registry", tmp_path / "reg")
    assert code == 2, (out, err)
    assert "only files inside the bundle" in err and len(err.strip().splitlines()) <= 2


def test_a_link_that_leads_out_of_the_bundle_is_refused(tmp_path, pima_bundles):  # noqa: F811
    secret = tmp_path / "secret.json"
    secret.write_text('{"guess": 1}')
    digest = sha256_bytes(secret.read_bytes())
    files = _rehashed(_files(pima_bundles[0]), lambda meta, _: meta["sha256"].__setitem__("models/extra.json", digest))
    bundle = _write(tmp_path / "bundle", {k: v for k, v in files.items() if k != "models/extra.json"})
    (bundle / "models" / "extra.json").symlink_to(secret)
    with pytest.raises(ArtifactError, match="models/extra.json is a link that leads outside the bundle"):
        load_bundle(bundle)
    with pytest.raises(ArtifactError, match="leads outside the bundle"):
        cli.registry_add(tmp_path / "reg", bundle)


def test_registering_copies_only_the_verified_files(tmp_path, pima_bundles):  # noqa: F811
    bundle = tmp_path / "bundle"
    shutil.copytree(pima_bundles[0], bundle)
    (bundle / "stray.txt").write_text("not in the hash list")
    (bundle / "link").symlink_to("/etc")
    info = cli.registry_add(tmp_path / "reg", bundle)
    copied = tmp_path / "reg" / "models" / "pima-small" / str(info["version"]) / "bundle"
    assert sorted(p.relative_to(copied).as_posix() for p in copied.rglob("*") if p.is_file()) == sorted(
        ["metadata.json", *json.loads((bundle / "metadata.json").read_text())["sha256"]])


# ----- bad uploads ------------------------------------------------------------------------------------------------
def _crc_broken(files: dict[str, bytes]) -> bytes:
    data = bytearray(_zip(files, zipfile.ZIP_STORED))
    at = data.find(b'"preprocessor') if b'"preprocessor' in data else len(data) // 3
    data[at:at + 8] = b"XXXXXXXX"  # stored member bytes changed: its CRC no longer matches
    return bytes(data)


def _lying_sizes(files: dict[str, bytes]) -> bytes:
    """A member that declares 100 bytes and inflates to 5 MB: the classic bomb that sizes alone do not catch."""
    data = bytearray(_zip({**files, "models/bomb.bin": b"\0" * 5_000_000}))
    name = b"models/bomb.bin"
    for header in (b"PK\x03\x04", b"PK\x01\x02"):
        at = data.find(header + b"")
        while at != -1:
            name_at = at + (30 if header == b"PK\x03\x04" else 46)
            if data[name_at:name_at + len(name)] == name:
                size_at = at + (22 if header == b"PK\x03\x04" else 24)
                data[size_at:size_at + 4] = (100).to_bytes(4, "little")
            at = data.find(header, at + 4)
    return bytes(data)


BAD = {
    "a pickle, not a zip": lambda f: pickle.dumps({"__reduce__": "os.system"}),
    "an empty body": lambda f: b"",
    "a truncated zip": lambda f: _zip(f)[: len(_zip(f)) // 2],
    "a member whose CRC fails": _crc_broken,
    "a zip bomb (ratio)": lambda f: _zip({**f, "models/bomb.bin": b"\0" * 5_000_000}),
    "a zip bomb (lying sizes)": _lying_sizes,
    "a tampered file": lambda f: _zip({**f, "preprocessor.json": f["preprocessor.json"].replace(b"0", b"1", 1)}),
    "a tampered metadata.json": lambda f: _zip({**f, "metadata.json": f["metadata.json"].replace(b"pima", b"pimb", 1)}),
    "metadata.json that is a pickle": lambda f: _zip({**f, "metadata.json": pickle.dumps(f)}),
    "metadata.json that is a list": lambda f: _zip({**f, "metadata.json": b"[1, 2]"}),
    "a pickle as a model's state, hashes recomputed": lambda f: _zip(_rehashed(f, _pickled_state)),
    "a model state of the wrong shape, hashes recomputed": lambda f: _zip(_rehashed(f, _wrong_state)),
    "a model of an unknown class, hashes recomputed": lambda f: _zip(_rehashed(
        f, lambda meta, _: meta["models"]["mlp"].__setitem__("class", "os.system"))),
    "a hash list that is not a mapping, hashes recomputed": lambda f: _zip(_rehashed(
        f, lambda meta, _: meta.__setitem__("sha256", ["preprocessor.json"]))),
    "a model file missing from the hash list, hashes recomputed": lambda f: _zip(_rehashed(
        f, lambda meta, _: meta["sha256"].pop("models/mlp.json"))),
    "a config that is not a run config, hashes recomputed": lambda f: _zip(_rehashed(
        f, lambda meta, _: meta.__setitem__("config", {"task": 5}))),
    "a member path with '..'": lambda f: _zip({**f, "../escape.json": b"{}"}),
}


def _pickled_state(meta: dict, files: dict[str, bytes]) -> None:
    files["models/mlp.json"] = pickle.dumps({"weights": [1, 2, 3]})
    meta["sha256"]["models/mlp.json"] = sha256_bytes(files["models/mlp.json"])


def _wrong_state(meta: dict, files: dict[str, bytes]) -> None:
    files["models/logistic.json"] = b'{"coef": "not numbers", "intercept": null}'
    meta["sha256"]["models/logistic.json"] = sha256_bytes(files["models/logistic.json"])


@pytest.mark.parametrize("attack", list(BAD))
def test_a_bad_upload_is_a_one_line_422_and_registers_nothing(upl, attack):
    r = _upload(upl, BAD[attack](upl.files))
    _one_line_422(r, upl.registry.parent)
    assert _versions(upl) == [1]
    assert not any((upl.registry / ".incoming").iterdir())


def test_a_good_upload_still_registers(upl):
    """The control for the attacks above: the same bundle, unmodified, is accepted."""
    r = _upload(upl, _zip(upl.files))
    assert r.status_code == 201, r.text
    assert _versions(upl) == [1, 2]


# ----- a bundle changed on disk after loading ---------------------------------------------------------------------
@pytest.fixture
def watched(tmp_path, pima_bundles):  # noqa: F811
    """A service that re-checks loaded bundles on every use (bundle_recheck_seconds=0), with v1 loaded."""
    s = start(tmp_path, pima_bundles, bundle_recheck_seconds=0)
    assert s.client.post(PREDICT, json={"patients": [PATIENT]}, headers=s.auth("clinician")).status_code == 200
    s.bundle = s.registry / "models" / "pima-small" / "1" / "bundle"
    yield s
    s.client.close()
    s.container.db.dispose()


def _edit_same_size_and_time(path: Path) -> None:
    """Change one byte in place and set the modification time back: size and mtime alone would miss it."""
    st = path.stat()
    data = bytearray(path.read_bytes())
    at = data.index(b"0")
    data[at:at + 1] = b"1"
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


@pytest.mark.parametrize("file", ["preprocessor.json", "models/mlp.pt", "metadata.json"])
def test_a_loaded_bundle_changed_on_disk_is_reported_and_refused_with_503(watched, file):
    original = (watched.bundle / file).read_bytes()
    _edit_same_size_and_time(watched.bundle / file)
    registry = watched.container.registry
    assert registry.integrity_problems() == [f"pima-small v1: {file} changed on disk after the bundle was loaded "
                                             "and verified"]
    r = watched.client.post(PREDICT, json={"patients": [PATIENT]}, headers=watched.auth("clinician"))
    assert r.status_code == 503 and "pima-small v1: " in r.json()["message"]  # reloading fails: why, it says
    assert str(watched.registry) not in r.text
    ready = watched.client.get("/readyz")  # the readiness route reports it too, without naming anything
    assert ready.status_code == 503 and "pima" not in ready.text and str(watched.registry) not in ready.text
    (watched.bundle / file).write_bytes(original)  # restored: served again, nothing reported
    assert registry.integrity_problems() == []
    assert watched.client.post(PREDICT, json={"patients": [PATIENT]},
                               headers=watched.auth("clinician")).status_code == 200


def test_a_deleted_bundle_file_or_folder_is_reported(watched):
    (watched.bundle / "models" / "mlp.pt").unlink()
    assert watched.container.registry.integrity_problems() == [
        "pima-small v1: models/mlp.pt is missing or unreadable on disk since the bundle was loaded"]
    shutil.rmtree(watched.registry / "models")
    r = watched.client.post(PREDICT, json={"patients": [PATIENT]}, headers=watched.auth("clinician"))
    assert r.status_code == 503 and str(watched.registry) not in r.text


def test_the_recheck_hashes_only_files_whose_signature_moved(watched, monkeypatch):
    from precimed.service import registry as registry_module

    hashed: list[int] = []
    real = registry_module._sha
    monkeypatch.setattr(registry_module, "_sha", lambda data: hashed.append(len(data)) or real(data))
    registry = watched.container.registry
    assert registry.integrity_problems() == [] and hashed == []  # unchanged: a stat per file, no hashing
    os.utime(watched.bundle / "preprocessor.json")  # touched, same content: re-hashed once, still fine
    assert registry.integrity_problems() == [] and len(hashed) == 1
    assert registry.integrity_problems() == [] and len(hashed) == 1


def test_the_recheck_waits_for_its_interval(tmp_path, pima_bundles):  # noqa: F811
    s = start(tmp_path, pima_bundles, bundle_recheck_seconds=3600)
    try:
        assert s.client.post(PREDICT, json={"patients": [PATIENT]}, headers=s.auth("clinician")).status_code == 200
        _edit_same_size_and_time(s.registry / "models" / "pima-small" / "1" / "bundle" / "preprocessor.json")
        registry = s.container.registry
        assert registry.integrity_problems() == []  # not due yet: the interval is the setting
        registry.verify_interval = 0
        assert len(registry.integrity_problems()) == 1
    finally:
        s.client.close()
        s.container.db.dispose()


# ----- FHIR mapping conversion factors ----------------------------------------------------------------------------
FACTORS = ["NaN", "Infinity", "-Infinity", "1e999", "0", "-18.016"]


@pytest.mark.parametrize("factor", FACTORS)
def test_a_mapping_with_a_factor_that_is_not_finite_and_positive_is_refused_naming_the_field(upl, factor):
    body = ('{"format": "precimed.fhir-mapping/1", "observations": [{"loinc": "2345-7", "feature": "glu", '
            f'"unit": "mg/dL", "convert": {{"mmol/L": {factor}}}}}]}}')
    r = upl.client.put("/v1/models/pima-small/versions/1/fhir-mapping", content=body,
                       headers={**upl.auth("data_scientist"), "Content-Type": "application/json"})
    assert r.status_code == 422, r.text
    assert "observations.0.convert.mmol/L" in r.json()["message"] and "\n" not in r.json()["message"]


@pytest.mark.parametrize("factor", [".nan", ".inf", "-.inf", "1e999", "1.0e+999", "0"])
def test_the_cli_refuses_the_same_factors_in_a_yaml_mapping(tmp_path, pima_bundles, factor):  # noqa: F811
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(MAPPING.read_text().replace("convert: {mmol/L: 18.016}", f"convert: {{mmol/L: {factor}}}"))
    assert mapping.read_text() != MAPPING.read_text()
    with pytest.raises(ConfigError, match=r"observations\.0\.convert\.mmol/L: Input should be"):
        cli.registry_add(tmp_path / "reg", pima_bundles[0], fhir_mapping=mapping)


def test_evaluate_takes_cohort_names_only_and_answers_alike_for_existing_and_missing_server_files(
        tmp_path, pima_bundles, monkeypatch):  # noqa: F811
    """Before: a dataset naming a file that exists where the server runs got its own 422 and a missing one another
    answer, an oracle for which files the server has. Now every non-cohort name gets the one refusal."""
    svc = start(tmp_path, pima_bundles)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "secretfile").write_text("x")
    answers = []
    for dataset in ("secretfile", "nosuchfile", "/etc/passwd", "pima/../pima"):
        r = svc.client.post("/v1/models/pima-small/evaluate", json={"dataset": dataset},
                            headers=svc.auth("data_scientist"))
        assert r.status_code == 422 and r.json()["field"] == "dataset"
        answers.append(r.json()["message"])
    assert answers[0] == answers[1] and "built-in cohort" in answers[0]
