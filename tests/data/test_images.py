"""Image readers: DICOM files and series, NIfTI, NRRD, PNG; windowing; masks; manifests; one-line errors."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nibabel as nib
import nrrd
import numpy as np
import pandas as pd
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

from precimed.data import images
from precimed.data.images import (
    META_KEYS,
    WINDOW_PRESETS,
    ImageVolume,
    apply_window,
    read_dicom_bytes,
    read_image,
    read_image_table,
    read_mask,
)
from precimed.errors import ConfigError, DataError, SchemaError

CT = get_testdata_file("CT_small.dcm")


def _one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


# ------------------------------------------------------------------------------------------------ windowing


def test_window_presets_are_the_documented_values():
    assert WINDOW_PRESETS == {
        "ct_brain": (40, 80), "ct_subdural": (75, 215), "ct_lung": (-600, 1500), "ct_mediastinum": (50, 350),
        "ct_abdomen": (40, 400), "ct_bone": (400, 1800), "ct_liver": (60, 160),
    }


def test_apply_window_follows_the_dicom_linear_formula():
    x = np.array([-1000.0, 0.0, 39.5, 79.0, 79.5, 3000.0])
    out = apply_window(x, 40, 80)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [0.0, 0.0, 0.5, 1.0, 1.0, 1.0], atol=1e-6)
    assert apply_window(np.array([20.0]), 40, 80)[0] == pytest.approx((20 - 39.5) / 79 + 0.5)
    np.testing.assert_array_equal(apply_window(np.array([39.0, 40.0]), 40, 1), [0.0, 1.0])
    with pytest.raises(ConfigError, match="width >= 1"):
        apply_window(x, 40, 0.5)


# ---------------------------------------------------------------------------------------------------- DICOM


def test_ct_is_read_in_hounsfield_units_with_spacing_and_no_identifiers():
    vol = read_image(CT)
    ds = pydicom.dcmread(CT)
    assert isinstance(vol, ImageVolume)
    assert vol.array.shape == (1, 128, 128) and vol.array.dtype == np.float32
    expected = ds.pixel_array.astype(np.float32) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    np.testing.assert_array_equal(vol.array[0], expected)
    assert vol.array.min() == -896.0  # stored 128 - 1024
    assert vol.spacing == pytest.approx((5.0, 0.661468, 0.661468))
    assert vol.modality == "CT" and vol.source == "CT_small.dcm"
    assert vol.meta["rescale_intercept"] == -1024.0 and vol.meta["transfer_syntax"] == "Explicit VR Little Endian"
    assert vol.meta["origin"] == pytest.approx([-158.135803, -179.035797, -75.699997])
    assert set(vol.meta) <= META_KEYS
    text = str(vol.meta)
    for value in (str(ds.PatientName), "CompressedSamples", str(ds.PatientID), str(ds.StudyDate),
                  str(ds.SeriesInstanceUID), str(ds.StudyInstanceUID)):
        assert value not in text


def test_mr_and_rle_give_the_same_pixels_and_window_from_header():
    mr = read_image(get_testdata_file("MR_small.dcm"))
    rle = read_image(get_testdata_file("MR_small_RLE.dcm"))
    np.testing.assert_array_equal(mr.array, rle.array)
    assert mr.spacing == pytest.approx((0.8, 0.3125, 0.3125))
    assert mr.meta["window_center"] == 600.0 and mr.meta["window_width"] == 1600.0


def test_enhanced_multiframe_ct_uses_functional_groups():
    vol = read_image(get_testdata_file("eCT_Supplemental.dcm"))
    assert vol.array.shape == (2, 512, 512)
    assert vol.spacing == pytest.approx((10.0, 0.388672, 0.388672))
    assert vol.meta["frames"] == 2 and vol.meta["rescale_intercept"] == -1024.0
    assert vol.array.min() == -1024.0  # the per-frame/shared rescale intercept was applied


def test_multiframe_without_pixel_spacing_is_refused_and_read_once_spacing_is_given(tmp_path):
    src = get_testdata_file("emri_small.dcm")
    with pytest.raises(DataError, match=r"emri_small\.dcm: a 3-D image of 10 slices with no pixel spacing"):
        read_image(src)
    ds = pydicom.dcmread(src)
    ds.PixelSpacing = [0.9, 0.8]
    ds.save_as(tmp_path / "emri.dcm")
    vol = read_image(tmp_path / "emri.dcm")
    assert vol.array.shape == (10, 64, 64)
    assert vol.spacing == pytest.approx((1.2, 0.9, 0.8))  # z from SpacingBetweenSlices
    np.testing.assert_array_equal(vol.array, ds.pixel_array.astype(np.float32))


def test_compressed_syntax_decodes_or_names_the_package():
    vol = read_image(get_testdata_file("JPEG2000.dcm"))  # Pillow's OpenJPEG decodes it here
    assert vol.array.shape == (1, 1024, 256)
    try:
        read_image(get_testdata_file("JPEG-lossy.dcm"))  # 12-bit JPEG extended: Pillow cannot
    except DataError as exc:
        text = str(exc)
        assert "JPEG-lossy.dcm" in text and "JPEG Extended" in text and "pylibjpeg" in text and "\n" not in text
        assert exc.__cause__ is not None  # pydicom's own message is kept


def test_chest_cr_without_spacing_and_monochrome1_is_inverted():
    path = get_testdata_file("RG1_UNCI.dcm")
    vol = read_image(path)
    raw = pydicom.dcmread(path).pixel_array.astype(np.float32)
    assert vol.array.shape == (1, 1955, 1841) and vol.modality == "CR"
    assert vol.meta["spacing_known"] is False and vol.spacing == (1.0, 1.0, 1.0)  # PixelSpacing is 0\0 here
    assert vol.meta["inverted"] is True
    np.testing.assert_array_equal(vol.array[0], raw.max() + raw.min() - raw)


def test_rgb_dicom_becomes_luminance():
    vol = read_image(get_testdata_file("SC_rgb.dcm"))
    rgb = pydicom.dcmread(get_testdata_file("SC_rgb.dcm")).pixel_array.astype(np.float32)
    np.testing.assert_allclose(vol.array[0], rgb @ np.array([0.299, 0.587, 0.114]), atol=1e-3)


def test_extensionless_dicom_and_bytes(tmp_path):
    shutil.copy(CT, tmp_path / "IM0001")
    assert read_image(tmp_path / "IM0001").array.shape == (1, 128, 128)
    vol = read_dicom_bytes(Path(CT).read_bytes(), where="scan.dcm")
    assert vol.source == "scan.dcm" and vol.array.shape == (1, 128, 128)
    with pytest.raises(DataError, match="^upload: not a DICOM file"):
        read_dicom_bytes(b"hello, not a dicom file" * 20)


def _series(folder: Path, n: int = 4, step: float = 2.5) -> list[Path]:
    folder.mkdir(exist_ok=True)
    paths = []
    for i in range(n):
        ds = pydicom.dcmread(CT)
        ds.ImagePositionPatient = [-158.135803, -179.035797, -75.7 + step * i]
        ds.InstanceNumber = n - i  # instance numbers run against position: sorting must use position
        ds.PixelData = (ds.pixel_array + i).astype(ds.pixel_array.dtype).tobytes()
        path = folder / f"slice{(7 * i) % n}.dcm"  # file names in yet another order
        ds.save_as(path)
        paths.append(path)
    return paths


def test_series_folder_sorted_by_position_with_slice_spacing(tmp_path):
    _series(tmp_path / "series")
    (tmp_path / "series" / "README.txt").write_text("not dicom")
    vol = read_image(tmp_path / "series")
    assert vol.array.shape == (4, 128, 128)
    assert vol.spacing == pytest.approx((2.5, 0.661468, 0.661468))
    base = read_image(CT).array[0]
    for i in range(4):
        np.testing.assert_array_equal(vol.array[i], base + i)
    assert vol.source == "series" and vol.meta["files"] == 4
    assert vol.meta["origin"][2] == pytest.approx(-75.7)


def test_mixed_series_mixed_sizes_duplicates_are_refused(tmp_path):
    paths = _series(tmp_path / "mixed")
    ds = pydicom.dcmread(paths[1])
    ds.SeriesInstanceUID = "1.2.3.4"
    ds.save_as(paths[1])
    with pytest.raises(DataError) as exc:
        read_image(tmp_path / "mixed")
    assert _one_line(exc) == f"mixed series: 2 series in {tmp_path / 'mixed'}; give one series per folder"
    assert "1.2.3.4" not in str(exc.value)

    paths = _series(tmp_path / "sizes")
    ds = pydicom.dcmread(paths[2])
    ds.Rows = 64
    ds.save_as(paths[2])
    with pytest.raises(DataError, match="mixed image sizes"):
        read_image(tmp_path / "sizes")

    paths = _series(tmp_path / "dup")
    ds = pydicom.dcmread(paths[0])
    ds.ImagePositionPatient = pydicom.dcmread(paths[3]).ImagePositionPatient
    ds.save_as(paths[0])
    with pytest.raises(DataError, match="duplicate slice positions"):
        read_image(tmp_path / "dup")


def test_series_without_positions_or_spacing_is_refused(tmp_path):
    paths = _series(tmp_path / "nospace")
    for path in paths:
        ds = pydicom.dcmread(path)
        del ds.ImagePositionPatient
        del ds.SliceThickness
        del ds.SpacingBetweenSlices
        ds.save_as(path)
    with pytest.raises(DataError, match="no slice spacing"):
        read_image(tmp_path / "nospace")


@pytest.mark.parametrize("case", ["truncated", "text", "empty_folder", "no_dicom_folder", "truncated_in_folder"])
def test_bad_dicom_inputs_are_one_line_naming_the_file(tmp_path, case):
    data = Path(CT).read_bytes()
    if case == "truncated":
        target = tmp_path / "cut.dcm"
        target.write_bytes(data[: len(data) // 2])
        expected = "cut.dcm: damaged or truncated DICOM pixel data"
    elif case == "text":
        target = tmp_path / "notes.dcm"
        target.write_text("patient notes, not an image\n" * 20)
        expected = "notes.dcm: not a DICOM file"
    elif case == "empty_folder":
        target = tmp_path / "empty"
        target.mkdir()
        expected = "empty: the folder is empty"
    elif case == "no_dicom_folder":
        target = tmp_path / "other"
        target.mkdir()
        (target / "a.txt").write_text("x")
        expected = "other: no DICOM file in the folder"
    else:
        target = tmp_path / "series"
        paths = _series(target)
        paths[2].write_bytes(paths[2].read_bytes()[:300])
        expected = f"{paths[2].name}: "
    with pytest.raises(DataError) as exc:
        read_image(target)
    text = _one_line(exc)
    assert expected in text
    assert str(tmp_path) in text


def test_size_limits(tmp_path, monkeypatch):
    monkeypatch.setenv("PRECIMED_MAX_INPUT_BYTES", "1000")
    with pytest.raises(DataError, match="over the input limit of 1,000 bytes"):
        read_image(CT)
    with pytest.raises(DataError, match="over the input limit"):
        read_dicom_bytes(Path(CT).read_bytes())
    monkeypatch.delenv("PRECIMED_MAX_INPUT_BYTES")
    monkeypatch.setattr(images, "MAX_VOXELS", 1000)
    with pytest.raises(DataError, match=r"16,384 voxels .* over the limit of 1,000"):
        read_image(CT)
    nrrd.write(str(tmp_path / "v.nrrd"), np.zeros((20, 20, 5), np.int16))
    with pytest.raises(DataError, match="2,000 voxels"):
        read_image(tmp_path / "v.nrrd")


# ---------------------------------------------------------------------------------------------------- NIfTI


def test_nifti_is_transposed_to_zyx_with_spacing(tmp_path):
    data = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)  # (x, y, z)
    affine = np.diag([0.5, 0.7, 2.0, 1.0])
    affine[:3, 3] = [10, 20, 30]
    nib.save(nib.Nifti1Image(data, affine), tmp_path / "v.nii.gz")
    vol = read_image(tmp_path / "v.nii.gz")
    assert vol.array.shape == (6, 5, 4)
    assert vol.array[3, 2, 1] == data[1, 2, 3]
    assert vol.spacing == pytest.approx((2.0, 0.7, 0.5))
    assert vol.meta["origin"] == [10.0, 20.0, 30.0] and vol.meta["space"] == "RAS"
    assert vol.meta["direction"] == [[0, 0, 1], [0, 1, 0], [1, 0, 0]]


def test_nibabel_test_data():
    from nibabel.testing import data_path

    vol = read_image(os.path.join(data_path, "anatomical.nii"))
    assert vol.array.shape == (25, 41, 33) and vol.spacing == (2.0, 2.0, 2.0)
    with pytest.raises(DataError, match=r"functional\.nii: the image is 4-D.*4-D; give one volume"):
        read_image(os.path.join(data_path, "functional.nii"))


def test_broken_nifti_header(tmp_path):
    (tmp_path / "bad.nii").write_bytes(b"\x00\x01garbage" * 60)
    with pytest.raises(DataError) as exc:
        read_image(tmp_path / "bad.nii")
    assert "bad.nii: not a readable NIfTI file" in _one_line(exc)


# ----------------------------------------------------------------------------------------------------- NRRD


def test_nrrd_spacing_from_space_directions_and_transposed(tmp_path):
    data = np.random.default_rng(0).integers(0, 100, (8, 6, 3)).astype(np.int16)  # (x, y, z)
    header = {"space": "left-posterior-superior", "space directions": np.diag([0.8, -0.9, 3.0]),
              "space origin": np.array([1.0, 2.0, 3.0])}
    nrrd.write(str(tmp_path / "v.nrrd"), data, header)
    vol = read_image(tmp_path / "v.nrrd")
    assert vol.array.shape == (3, 6, 8)
    np.testing.assert_array_equal(vol.array, data.transpose(2, 1, 0))
    assert vol.spacing == pytest.approx((3.0, 0.9, 0.8))
    assert vol.meta["space"] == "LPS" and vol.meta["direction"][1] == [0.0, -1.0, 0.0]
    nrrd.write(str(tmp_path / "s.nrrd"), data, {"spacings": [0.5, 0.6, 0.7]})
    assert read_image(tmp_path / "s.nrrd").spacing == pytest.approx((0.7, 0.6, 0.5))
    nrrd.write(str(tmp_path / "d.nhdr"), data, header, detached_header=True)
    np.testing.assert_array_equal(read_image(tmp_path / "d.nhdr").array, vol.array)


def test_mask_reading_and_shape_check(tmp_path):
    image = np.zeros((8, 6, 3), np.int16)
    label = np.zeros((8, 6, 3), np.int16)
    label[2:4, 1:3, 1] = 2  # a label value other than 1
    nrrd.write(str(tmp_path / "img.nrrd"), image)
    nrrd.write(str(tmp_path / "lab.nrrd"), label)
    nrrd.write(str(tmp_path / "small.nrrd"), label[:4])
    vol = read_image(tmp_path / "img.nrrd")
    mask = read_mask(tmp_path / "lab.nrrd", vol)
    assert mask.dtype == np.uint8 and set(np.unique(mask)) == {0, 1} and mask.sum() == 4
    assert mask[1, 1:3, 2:4].all()
    with pytest.raises(DataError, match=r"small\.nrrd: the mask has shape \(3, 6, 4\).*img\.nrrd has \(3, 6, 8\)"):
        read_mask(tmp_path / "small.nrrd", vol)


# ----------------------------------------------------------------------------------------------- PNG / JPEG


def test_png_grey_rgb_and_sixteen_bit(tmp_path):
    rgb = np.zeros((5, 7, 3), np.uint8)
    rgb[..., 0] = 200
    Image.fromarray(rgb).save(tmp_path / "c.png")
    vol = read_image(tmp_path / "c.png")
    assert vol.array.shape == (1, 5, 7)
    assert vol.array[0, 0, 0] == pytest.approx(round(200 * 0.299))
    assert vol.meta["spacing_known"] is False and vol.spacing == (1.0, 1.0, 1.0)
    deep = np.full((4, 4), 40000, np.uint16)
    Image.fromarray(deep).save(tmp_path / "d.png")
    assert read_image(tmp_path / "d.png").array.max() == 40000
    Image.fromarray(rgb).save(tmp_path / "c.jpg")
    assert read_image(tmp_path / "c.jpg").meta["format"] == "jpeg"


def test_png_that_is_not_a_png(tmp_path):
    (tmp_path / "x.png").write_text("this is text")
    with pytest.raises(DataError) as exc:
        read_image(tmp_path / "x.png")
    assert "x.png: not a PNG or JPEG image" in _one_line(exc)
    (tmp_path / "y.tiff").write_text("x")
    with pytest.raises(DataError, match=r"unknown image type \('\.tiff'\)"):
        read_image(tmp_path / "y.tiff")


# ------------------------------------------------------------------------------------------------ manifests


def test_image_table_resolves_paths_inside_the_folder(tmp_path):
    (tmp_path / "img").mkdir()
    for name in ("a.png", "b.png", "a_mask.png"):
        Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "img" / name)
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("patient_id,image,mask,label,age\np1,img/a.png,img/a_mask.png,1,60\np2,img/b.png,,0,55\n")
    df = read_image_table(manifest)
    assert df["image"].tolist() == [str((tmp_path / "img" / n).resolve()) for n in ("a.png", "b.png")]
    assert df["mask"].iloc[0] == str((tmp_path / "img" / "a_mask.png").resolve()) and pd.isna(df["mask"].iloc[1])
    assert df["age"].tolist() == [60, 55] and df["label"].tolist() == [1, 0]

    (tmp_path / "t.tsv").write_text("patient_id\timage\np1\t../outside.png\n")
    with pytest.raises(DataError, match=r"row 1, column image: the path leaves the manifest's folder"):
        read_image_table(tmp_path / "t.tsv")
    (tmp_path / "abs.csv").write_text(f"patient_id,image\np1,img/a.png\np2,{tmp_path / 'img' / 'b.png'}\n")
    with pytest.raises(DataError, match=r"row 2, column image: an absolute path"):
        read_image_table(tmp_path / "abs.csv")
    (tmp_path / "missing.csv").write_text("patient_id,image\np1,img/a.png\np2,img/zz.png\np3,img/yy.png\n")
    with pytest.raises(DataError, match=r"column image: 2 file\(s\) not found, rows \[2, 3\]"):
        read_image_table(tmp_path / "missing.csv")
    (tmp_path / "cols.csv").write_text("patient,image\np1,img/a.png\n")
    with pytest.raises(SchemaError, match="patient_id"):
        read_image_table(tmp_path / "cols.csv")
