"""Built-in image sets: the registry, the 5 pyradiomics cases, the InVesalius CT, and the error when absent."""

from __future__ import annotations

import gzip
import io
import plistlib
import tarfile

import numpy as np
import pytest

from precimed.data.image_sets import (
    ImageSetInfo,
    image_set_available,
    image_set_path,
    list_image_sets,
    load_case,
    pyradiomics_cases,
    read_inv3,
)
from precimed.errors import ConfigError, DataError


def test_registry_fields_are_complete():
    sets = {s.name: s for s in list_image_sets()}
    assert list(sets) == ["pyradiomics", "colin27", "invesalius_ct", "pydicom_data"]
    for info in sets.values():
        assert isinstance(info, ImageSetInfo)
        for name in ("title", "modality", "licence", "citation", "source", "get", "location"):
            assert getattr(info, name).strip(), (info.name, name)
    assert sets["pyradiomics"].licence == "BSD-3-Clause" and sets["pyradiomics"].cases == 5
    assert "Cancer Res 2017;77(21):e104" in sets["pyradiomics"].citation
    assert sets["colin27"].licence.startswith("BSD-3-Clause") and "1998;22(2):324" in sets["colin27"].citation
    assert sets["invesalius_ct"].licence.startswith("GPL-2")
    assert sets["pydicom_data"].licence == "MIT"
    assert [i["case"] for i in sets["pyradiomics"].items] == ["brain1", "brain2", "breast1", "lung1", "lung2"]
    with pytest.raises(ConfigError, match="unknown image set 'nope'"):
        image_set_path("nope")


def test_absent_set_names_the_command(tmp_path, monkeypatch):
    monkeypatch.setenv("PRECIMED_IMAGE_DATA", str(tmp_path))
    assert image_set_available("pyradiomics") is False
    with pytest.raises(DataError) as exc:
        image_set_path("pyradiomics")
    assert str(exc.value) == (f"image set 'pyradiomics' is not on this machine (looked for "
                              f"{tmp_path / 'pyradiomics-3.1.0' / 'data'}); get it with: "
                              "bash scripts/fetch_imaging_data.sh")
    with pytest.raises(DataError, match="get it with: bash scripts/fetch_imaging_data.sh"):
        pyradiomics_cases()


def test_pydicom_data_is_found():
    if not image_set_available("pydicom_data"):
        pytest.skip("pydicom-data is not installed (pip install pydicom-data)")
    assert (image_set_path("pydicom_data") / "RG1_UNCI.dcm").is_file()


def test_pyradiomics_cases_shapes_spacing_and_lesion_slices():
    if not image_set_available("pyradiomics"):
        pytest.skip("pyradiomics data absent: run bash scripts/fetch_imaging_data.sh")
    cases = pyradiomics_cases()
    assert [c["case"] for c in cases] == ["brain1", "brain2", "breast1", "lung1", "lung2"]
    assert [c["modality"] for c in cases] == ["MR", "MR", "MR", "CT", "CT"]
    shapes, lesion_slices = {}, 0
    for case in cases:
        volume, mask = load_case(case)
        assert mask.shape == volume.array.shape and mask.dtype == np.uint8 and mask.max() == 1
        assert volume.modality == case["modality"]
        shapes[case["case"]] = volume.array.shape
        lesion_slices += int(mask.any(axis=(1, 2)).sum())
        if case["case"] == "brain1":
            assert volume.spacing == pytest.approx((6.5, 0.78125, 0.78125))
    assert shapes["brain1"] == (25, 256, 256) and shapes["brain2"] == (23, 256, 256)
    assert shapes["lung1"] == (48, 512, 512) and shapes["lung2"] == (61, 512, 512)
    assert sum(s[0] for s in shapes.values()) == 178
    assert lesion_slices == 27


def test_invesalius_ct():
    if not image_set_available("invesalius_ct"):
        pytest.skip("invesalius-examples absent: apt-get install -y invesalius-examples")
    volume = read_inv3(image_set_path("invesalius_ct"))
    assert volume.array.shape == (108, 256, 256) and volume.modality == "CT"
    assert volume.spacing == pytest.approx((1.5, 0.9570312, 0.9570312))
    assert volume.array.min() == -1024.0 and volume.array.max() > 1000  # Hounsfield units: air and bone
    assert "name" not in str(volume.meta).lower()


def test_colin27_reads():
    if not image_set_available("colin27"):
        pytest.skip("mricron-data absent: apt-get install -y mricron-data")
    from precimed.data.images import read_image

    volume = read_image(image_set_path("colin27"))
    assert volume.array.ndim == 3 and volume.spacing == pytest.approx((1.0, 1.0, 1.0))


def _inv3(tmp_path, shape, data: bytes, *, dtype: str = "int16"):
    plist = plistlib.dumps({"matrix": {"dtype": dtype, "filename": "matrix.dat", "shape": list(shape)},
                            "spacing": [0.5, 0.6, 2.0], "modality": "CT", "name": "Jane Doe"})
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, payload in (("t/main.plist", plist), ("t/matrix.dat", data)):
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    path = tmp_path / "p.inv3"
    path.write_bytes(gzip.compress(raw.getvalue()))
    return path


def test_read_inv3_checks_the_plist_against_the_member(tmp_path):
    values = np.arange(2 * 3 * 4, dtype="<i2").reshape(2, 3, 4) - 5
    volume = read_inv3(_inv3(tmp_path, (2, 3, 4), values.tobytes()))
    np.testing.assert_array_equal(volume.array, values)
    assert volume.spacing == (2.0, 0.6, 0.5) and "Jane" not in str(volume.meta)
    with pytest.raises(DataError, match=r"matrix\.dat holds 48 bytes; the plist's shape \[2, 3, 5\]"):
        read_inv3(_inv3(tmp_path, (2, 3, 5), values.tobytes()))
    with pytest.raises(DataError, match="matrix dtype 'object'"):
        read_inv3(_inv3(tmp_path, (2, 3, 4), values.tobytes(), dtype="object"))
    (tmp_path / "bad.inv3").write_text("not a tar")
    with pytest.raises(DataError, match=r"bad\.inv3: not a readable InVesalius \.inv3 project"):
        read_inv3(tmp_path / "bad.inv3")
