"""The imaging recipe end to end: train → bundle → predict / explain / evaluate, through the CLI and the Python API.

Small settings (32×32 images, one or two epochs) keep each run to seconds: these tests check the plumbing, the
patient-level splits, the documents and the refusals, not model quality (the example configs and the closing
note of issue 12 hold the measured figures).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

import precimed
from precimed.data import image_sets
from precimed.data.images import read_image
from precimed.errors import ConfigError

needs_pyradiomics = pytest.mark.skipif(not image_sets.image_set_available("pyradiomics"),
                                       reason="pyradiomics image data absent: bash scripts/fetch_imaging_data.sh")
needs_backgrounds = pytest.mark.skipif(not image_sets.image_set_available("colin27"),
                                       reason="Colin27 (Debian mricron-data) absent: "
                                              "bash scripts/fetch_imaging_data.sh")

FAST = {"max_epochs": 2, "patience": 2, "progress": False}


def synthetic_config(**images) -> dict:
    return {"name": "syn-test", "seed": 0, "data": {"train": {"dataset": "synthetic_lesions"}},
            "task": {"kind": "binary", "target": "lesion_present"},
            "images": {"size": [32, 32], "window": None,
                       "synthetic": {"n": 120, "per_source": 12, "radius_px": [2, 5], "contrast": [1.0, 3.0]},
                       **images},
            "split": {"kind": "grouped", "test_fraction": 0.3},
            "models": {"names": ["resnet", "radiomics_logistic"], "resnet": {"widths": [8, 16]}},
            "training": FAST, "evaluation": {"bootstrap": 20}}


@needs_backgrounds
def test_synthetic_classification_runs_end_to_end(tmp_path: Path) -> None:
    run = precimed.train(synthetic_config(), tmp_path / "run")
    doc = run.metrics
    assert doc["view"] == "image" and doc["split"]["unit"] == "patient"
    for name in ("resnet", "radiomics_logistic"):
        auroc = doc["models"][name]["auroc"]
        assert auroc["ci_low"] <= auroc["value"] <= auroc["ci_high"]
    assert "resnet - radiomics_logistic" in doc["comparisons"]
    assert doc["bootstrap"]["resampled"] == "images"
    assert any("SYNTHETIC LESIONS" in n for n in doc["notes"])
    sal = doc["saliency"]
    assert set(sal) >= {"grad_cam", "occlusion", "random", "positive_slices"}
    assert 0 <= sal["grad_cam"]["pointing_game"] <= 1
    assert {"radius_px", "contrast"} <= set(doc["by_lesion"])
    report = (tmp_path / "run" / "report.html").read_text()
    assert "SYNTHETIC LESIONS" in report and "pointing game" in report and "data:image/png;base64" in report
    # the metrics on disk are the ones returned
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["models"]["resnet"]["auroc"]["value"] == \
        pytest.approx(doc["models"]["resnet"]["auroc"]["value"])
    bundle = precimed.load_bundle(run.bundle_path).bundle
    assert bundle.image_preprocessor is not None and set(bundle.models) == {"resnet", "radiomics_logistic"}


@pytest.fixture
def nifti_picture(tmp_path: Path) -> Path:
    import nibabel as nib

    rng = np.random.default_rng(0)
    volume = rng.normal(0.5, 0.1, (40, 40, 3)).astype(np.float32)
    volume[10:16, 20:26, 1] += 1.0
    path = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(volume, np.diag([1.0, 1.0, 2.0, 1.0])), path)
    return path


@needs_backgrounds
def test_predict_and_explain_an_image_through_the_cli(tmp_path: Path, run_cli, nifti_picture: Path) -> None:
    precimed.train(synthetic_config(), tmp_path / "run")
    bundle = tmp_path / "run" / "bundle"
    code, out, err = run_cli("predict", bundle, "--input", nifti_picture, "--output", tmp_path / "p.csv")
    assert code == 0, err
    assert "3 slice(s) scored with resnet" in out
    import pandas as pd

    table = pd.read_csv(tmp_path / "p.csv")
    assert list(table.columns) == ["image", "slice", "model", "probability"]
    assert table["probability"].between(0, 1).all() and len(table) == 3
    code, out, err = run_cli("explain", bundle, "--input", nifti_picture, "--output", tmp_path / "e.json",
                             "--plots", tmp_path / "plots", "--top", "2")
    assert code == 0, err
    rows = json.loads((tmp_path / "e.json").read_text())
    assert len(rows) == 2 and {"grad_cam_peak", "occlusion_peak", "probability"} <= set(rows[0])
    pngs = sorted(p.name for p in (tmp_path / "plots").iterdir())
    assert len(pngs) == 4 and all((tmp_path / "plots" / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    # a segmentation-only option on a classification bundle is refused in one line
    code, out, err = run_cli("predict", bundle, "--input", nifti_picture, "--output", tmp_path / "q.csv",
                             "--masks", tmp_path / "m.nii.gz")
    assert code == 2 and "segmentation bundles" in err
    # a file that is not an image
    bad = tmp_path / "notes.dcm"
    bad.write_text("not a dicom file")
    code, out, err = run_cli("predict", bundle, "--input", bad, "--output", tmp_path / "r.csv")
    assert code == 2 and "notes.dcm" in err and "Traceback" not in err + out


def segmentation_config() -> dict:
    return {"name": "seg-test", "seed": 0, "data": {"train": {"dataset": "pyradiomics"}},
            "task": {"kind": "segmentation"},
            "images": {"spacing": [10.0, 10.0], "size": [32, 32], "max_slices_per_patient": 4},
            "split": {"kind": "leave_one_patient_out"},
            "models": {"names": ["unet", "threshold"], "unet": {"channels": [4, 8]}},
            "training": {"max_epochs": 1, "patience": 1, "progress": False}, "evaluation": {"bootstrap": 20}}


@needs_pyradiomics
def test_pyradiomics_segmentation_leave_one_patient_out(tmp_path: Path, run_cli) -> None:
    run = precimed.train(segmentation_config(), tmp_path / "run")
    doc = run.metrics
    assert doc["split"] == {"kind": "leave_one_patient_out", "splits": 5, "unit": "patient"}
    for name in ("unet", "threshold"):
        per_case = doc["models"][name]["per_case"]
        assert sorted(per_case) == ["brain1", "brain2", "breast1", "lung1", "lung2"]
        assert all(0.0 <= d <= 1.0 for d in per_case.values())
        assert doc["models"][name]["dice"]["value"] == pytest.approx(np.mean(list(per_case.values())))
    assert doc["notes"][0].startswith("5 patients is a plumbing check")
    assert "plumbing check" in (tmp_path / "run" / "report.html").read_text()
    case = next(c for c in image_sets.pyradiomics_cases() if c["case"] == "breast1")
    code, out, err = run_cli("predict", run.bundle_path, "--input", case["image"], "--output", tmp_path / "p.json",
                             "--masks", tmp_path / "mask.nii.gz", "--modality", "MR")
    assert code == 0, err
    mask = read_image(tmp_path / "mask.nii.gz")
    original = read_image(case["image"])
    assert mask.array.shape == original.array.shape
    assert mask.spacing == pytest.approx(original.spacing)
    # without --modality, a file that does not say its modality is refused with the way out
    code, out, err = run_cli("predict", run.bundle_path, "--input", case["image"], "--output", tmp_path / "q.json")
    assert code == 2 and "--modality" in err


def make_manifest(folder: Path, n: int = 24, seed: int = 0) -> Path:
    """PNG pictures of two kinds (a bright disc or none), a picture label and a tabular feature per patient."""
    rng = np.random.default_rng(seed)
    rows = ["patient_id,image,label,age"]
    yy, xx = np.mgrid[:32, :32]
    for i in range(n):
        label = i % 2
        pixels = rng.normal(90, 20, (32, 32))
        if label:
            cy, cx = rng.integers(8, 24, 2)
            pixels[(yy - cy) ** 2 + (xx - cx) ** 2 <= 16] += 120
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(folder / f"img{i}.png")
        rows.append(f"p{i},img{i}.png,{label},{50 + 20 * label + int(rng.integers(-5, 5))}")
    path = folder / "manifest.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def test_manifest_of_pictures_with_tabular_features_trains_the_fusion_net(tmp_path: Path, run_cli) -> None:
    manifest = make_manifest(tmp_path)
    cfg = {"name": "fusion-test", "seed": 0, "data": {"train": {"path": str(manifest)}},
           "task": {"kind": "binary", "target": "label"},
           "features": [{"name": "age", "unit": "years", "range": [0, 120]}],
           "images": {"size": [32, 32], "window": None},
           "split": {"kind": "grouped", "test_fraction": 0.34},
           "models": {"names": ["fusion", "resnet", "radiomics_logistic"], "resnet": {"widths": [8, 16]}},
           "training": FAST, "evaluation": {"bootstrap": 20}}
    run = precimed.train(cfg, tmp_path / "run")
    assert run.metrics["data"]["all"]["patients"] == 24
    assert set(run.metrics["models"]) == {"fusion", "resnet", "radiomics_logistic"}
    assert (run.bundle_path / "preprocessor.json").is_file()  # the tabular features' fitted state
    code, out, err = run_cli("evaluate", run.bundle_path, "--data", manifest, "--out", tmp_path / "ev")
    assert code == 0, err
    doc = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert doc["models"]["fusion"]["n_patients"] == 24


def test_bad_manifests_and_configs_get_one_line_and_exit_2(tmp_path: Path, run_cli, write_config) -> None:
    manifest = make_manifest(tmp_path, n=6)
    base = {"name": "bad", "data": {"train": {"path": str(manifest)}}, "task": {"kind": "binary", "target": "label"},
            "images": {"size": [32, 32]}, "split": {"kind": "grouped"}, "training": FAST}
    cases = [
        ({**base, "split": {"kind": "stratified"}}, "splits by patient, never by slice"),
        ({**base, "models": {"names": ["logistic"]}}, "reads tabular inputs, but this is a image run"),
        ({**base, "models": {"names": ["resnet_finetuned"]}}, "needs images.pretrain"),
        ({**base, "models": {"names": ["fusion"]}}, "list them under 'features'"),
        ({**base, "data": {"train": {"dataset": "mnist"}}}, "is not an image set"),
        ({**base, "task": {"kind": "segmentation"}}, "needs a 'mask' column"),
        ({**base, "images": {"size": [8, 8]}}, "size must lie in [16, 1024]"),
        ({**base, "task": {"kind": "survival", "time": "t", "event": "e", "horizons": [1]}},
         "supports binary (slice label) and segmentation"),
    ]
    for i, (cfg, expected) in enumerate(cases):
        code, out, err = run_cli("train", write_config(cfg, f"bad{i}.yaml"), "--out", tmp_path / f"out{i}")
        assert code == 2, (expected, out, err)
        assert expected in err, (expected, err)
        assert "Traceback" not in out + err
        assert not (tmp_path / f"out{i}").exists()
    escape = tmp_path / "escape.csv"
    escape.write_text("patient_id,image,label\np1,../outside.png,1\n")
    code, out, err = run_cli("train", write_config({**base, "data": {"train": {"path": str(escape)}}}, "esc.yaml"),
                             "--out", tmp_path / "esc")
    assert code == 2 and "escape.csv" in err and "image" in err and "Traceback" not in err


def test_the_preprocessor_of_each_split_sees_only_its_training_patients(tmp_path: Path, monkeypatch) -> None:
    from precimed.preprocess.images import ImagePreprocessor
    from precimed.workflows import imaging

    seen: list[set[str]] = []
    original = ImagePreprocessor.fit

    def spy(self, volumes, modalities=None):  # noqa: ANN001, ANN202
        seen.append({v.source for v in volumes})
        return original(self, volumes, modalities)

    monkeypatch.setattr(ImagePreprocessor, "fit", spy)
    manifest = make_manifest(tmp_path, n=8)
    cfg = precimed.RunConfig.model_validate({
        "name": "lopo", "data": {"train": {"path": str(manifest)}}, "task": {"kind": "binary", "target": "label"},
        "images": {"size": [32, 32], "window": None}, "split": {"kind": "leave_one_patient_out"},
        "models": {"names": ["radiomics_logistic"]}, "training": FAST, "evaluation": {"bootstrap": 5}})
    splits = imaging.patient_splits(cfg, [f"p{i}" for i in range(8)])
    assert len(splits) == 8
    for train, test in splits:
        assert not set(train) & set(test) and len(test) == 1
    imaging.train_imaging_from_config(cfg, tmp_path / "run", progress=False)
    folds, refit = seen[:8], seen[8]
    for k, fitted in enumerate(folds):
        held = f"img{sorted(f'p{i}' for i in range(8))[k][1:]}.png"
        assert held not in fitted and len(fitted) == 7
    assert len(refit) == 8  # the bundle's preprocessor is refit on every patient after the held-out estimates


def test_an_imaging_bundle_refuses_table_rows(tmp_path: Path) -> None:
    import pandas as pd

    manifest = make_manifest(tmp_path, n=8)
    cfg = {"name": "rows", "data": {"train": {"path": str(manifest)}}, "task": {"kind": "binary", "target": "label"},
           "images": {"size": [32, 32], "window": None}, "split": {"kind": "grouped", "test_fraction": 0.25},
           "models": {"names": ["radiomics_logistic"]}, "training": FAST, "evaluation": {"bootstrap": 5}}
    run = precimed.train(cfg, tmp_path / "run")
    with pytest.raises(ConfigError, match="scores images, not table rows"):
        precimed.predict(run.bundle_path, pd.DataFrame({"age": [50]}))
    assert yaml.safe_load(yaml.safe_dump(cfg))  # the config is plain data


def write_medmnist(path: Path, seed: int = 0) -> Path:
    """A tiny file in MedMNIST's layout (the real ones download at run time, which precimed never does)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:28, :28]
    arrays = {}
    for part, n in (("train", 40), ("val", 10), ("test", 20)):
        labels = (np.arange(n) % 2).reshape(-1, 1).astype(np.uint8)
        images = rng.normal(100, 15, (n, 28, 28))
        for i in np.flatnonzero(labels[:, 0]):
            cy, cx = rng.integers(8, 20, 2)
            images[i][(yy - cy) ** 2 + (xx - cx) ** 2 <= 12] += 100
        arrays[f"{part}_images"] = np.clip(images, 0, 255).astype(np.uint8)
        arrays[f"{part}_labels"] = labels
    np.savez(path, **arrays)
    return path


def test_a_local_medmnist_copy_trains_with_its_official_split(tmp_path: Path) -> None:
    npz = write_medmnist(tmp_path / "pneumoniamnist.npz")
    cfg = {"name": "medmnist", "seed": 0, "data": {"train": {"path": str(npz)}, "test": {"path": str(npz)}},
           "task": {"kind": "binary", "target": "label", "positive": 1},
           "images": {"size": [28, 28], "window": None}, "split": {"kind": "external"},
           "models": {"names": ["resnet", "radiomics_logistic"], "resnet": {"widths": [8, 16]}},
           "training": FAST, "evaluation": {"bootstrap": 20}}
    run = precimed.train(cfg, tmp_path / "run")
    assert run.metrics["models"]["resnet"]["n_slices"] == 20  # the file's test part only
    assert run.metrics["models"]["resnet"]["n_positive"] == 10
    assert run.metrics["models"]["radiomics_logistic"]["auroc"]["value"] > 0.8
    assert any("no patient identifiers" in n for n in run.metrics["notes"])


def test_medmnist_and_class_folder_problems_are_named(tmp_path: Path) -> None:
    from precimed.data.image_collections import read_class_folders, read_medmnist
    from precimed.errors import DataError

    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(DataError, match=r"other.npz: not a MedMNIST file: the arrays \['train_images'"):
        read_medmnist(tmp_path / "other.npz", part="train")
    (tmp_path / "pickled.npz").write_bytes(b"not a zip at all")
    with pytest.raises(DataError, match="pickled.npz: not a readable .npz file"):
        read_medmnist(tmp_path / "pickled.npz", part="test")
    root = tmp_path / "MedNIST"
    for name, size in (("CXR", (16, 16)), ("HeadCT", (16, 16))):
        (root / name).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full(size, 40 * i, dtype=np.uint8)).save(root / name / f"{i}.jpeg")
    coll = read_class_folders(root)
    assert coll.classes == ["CXR", "HeadCT"] and coll.images.shape == (6, 16, 16)
    assert list(coll.labels) == [0] * 3 + [1] * 3
    Image.fromarray(np.zeros((20, 16), dtype=np.uint8)).save(root / "HeadCT" / "odd.png")
    with pytest.raises(DataError, match=r"HeadCT/odd.png: 16×20 pixels, but the first picture is 16×16"):
        read_class_folders(root)


@needs_pyradiomics
@needs_backgrounds
def test_pretraining_never_sees_the_evaluated_cases(tmp_path: Path) -> None:
    from precimed.workflows.image_cases import synthetic_cases

    cfg = precimed.RunConfig.model_validate(synthetic_config())
    everything, _ = synthetic_cases(cfg, seed=0)
    kept, provenance = synthetic_cases(cfg, seed=0, exclude=["brain1", "lung2"])
    assert {"pyradiomics:brain1", "pyradiomics:lung2"} <= {c.case for c in everything}
    assert not {"pyradiomics:brain1", "pyradiomics:lung2"} & {c.case for c in kept}
    assert "colin27" in provenance["backgrounds"]


@needs_backgrounds
def test_pretrained_then_fine_tuned_beside_scratch_on_the_same_split(tmp_path: Path) -> None:
    cfg = synthetic_config(pretrain={"synthetic": {"n": 80, "per_source": 12, "radius_px": [2, 5]},
                                     "max_epochs": 1, "freeze": ["stem"], "backbone_lr": 0.0003})
    cfg["models"] = {"names": ["resnet_finetuned", "resnet", "resnet_pretrained"], "resnet": {"widths": [8, 16]},
                     "compare": ["resnet_finetuned - resnet", "resnet_finetuned - resnet_pretrained"]}
    run = precimed.train(cfg, tmp_path / "run")
    doc = run.metrics
    assert doc["primary_model"] == "resnet_finetuned"
    assert set(doc["comparisons"]) == {"resnet_finetuned - resnet", "resnet_finetuned - resnet_pretrained"}
    assert doc["pretraining"]["images"] == 80 and doc["pretraining"]["epochs"] == 1
    n = {m["n_slices"] for m in doc["models"].values()}
    assert len(n) == 1  # every variant is scored on the same held-out images
    bundle = precimed.load_bundle(run.bundle_path).bundle
    tuned, frozen = bundle.models["resnet_finetuned"], bundle.models["resnet_pretrained"]
    assert tuned.fine_tuned_ and not frozen.fine_tuned_
    import torch

    stem = [k for k in tuned.net_.state_dict() if k.startswith("stem")][0]
    assert torch.equal(tuned.net_.state_dict()[stem], frozen.net_.state_dict()[stem])  # the frozen stem kept


def test_a_medmnist_zip_bomb_is_refused_before_unpacking(tmp_path: Path, monkeypatch) -> None:
    from precimed.data.image_collections import read_medmnist
    from precimed.errors import DataError

    path = tmp_path / "bomb.npz"
    zeros = np.zeros((2000, 64, 64), dtype=np.uint8)  # 8 MB of zeros compresses to a few kB
    np.savez_compressed(path, train_images=zeros, train_labels=np.zeros((2000, 1), dtype=np.uint8),
                        val_images=zeros[:1], val_labels=np.zeros((1, 1), dtype=np.uint8))
    assert path.stat().st_size < 100_000
    monkeypatch.setenv("PRECIMED_MAX_INPUT_BYTES", "1000000")
    with pytest.raises(DataError, match=r"bomb.npz: its arrays unpack to 8,\d{3},\d{3} bytes, over the input limit"):
        read_medmnist(path, part="train")
