"""The HTML report of an imaging run: the run's caveats first, then metrics with CIs, overlays and saliency.

Built with the same page template and table helpers as the tabular report (``report.py``): one self-contained
HTML file, every figure embedded as a data URI. Sections: summary (with the plumbing-check or synthetic-data
warning), data (where the images came from, licence and citation), metrics (Dice or AUROC with patient-bootstrap
CIs; paired differences), ROC curves (classification), lesion-size / contrast bands (synthetic sets), Grad-CAM
localisation against random maps, examples of correct and wrong cases as overlays, and training curves.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from precimed.atomic import atomic_write_bytes
from precimed.evaluate import plots as pl
from precimed.evaluate.curves import roc_curve
from precimed.evaluate.report import _f, _guard, _section, _table, _template
from precimed.evaluate.segmentation import overlay_grid_png

__all__ = ["render_image_report", "write_image_report"]


def _ci(m: Mapping[str, Any] | None) -> str:
    if not m:
        return "–"
    return f"{_f(m.get('value'))} ({_f(m.get('ci_low'))} to {_f(m.get('ci_high'))})"


def _uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def _summary(doc: Mapping[str, Any]) -> dict[str, Any]:
    s = _section("summary", "Summary")
    primary = doc.get("primary_model")
    metric = "dice" if doc.get("task") == "segmentation" else "auroc"
    m = (doc.get("models") or {}).get(primary, {}).get(metric)
    split = doc.get("split", {})
    s["lead"] = (f"{doc.get('task')} of 2-D image slices; primary model {primary}: {metric.upper()} {_ci(m)}; "
                 f"split by patient ({split.get('kind')}, {split.get('splits')} split(s)); CIs resample patients.")
    s["notes"] = list(doc.get("notes") or [])
    return s


def _data(doc: Mapping[str, Any]) -> dict[str, Any]:
    s = _section("cohort", "Data")
    source = (doc.get("data") or {}).get("source") or {}
    described = (doc.get("data") or {}).get("all") or {}
    rows = [[k, str(v)] for k, v in described.items()]
    s["tables"].append(_table(["", "value"], rows, caption="images and slices"))
    for key in ("title", "licence", "citation", "file"):
        if source.get(key):
            s["notes"].append(f"{key}: {source[key]}")
    if source.get("synthetic"):
        backgrounds = ", ".join(source.get("backgrounds", []))
        s["notes"].append(f"synthetic lesions inserted into real backgrounds: {backgrounds}")
    return s


def _metrics(doc: Mapping[str, Any]) -> dict[str, Any]:
    synthetic = ((doc.get("data") or {}).get("source") or {}).get("synthetic")
    s = _section("metrics", "Metrics on held-out " + ("background volumes (synthetic lesions)" if synthetic
                                                       else "patients"))
    models = doc.get("models") or {}
    if doc.get("task") == "segmentation":
        rows = [[n, _ci(m.get("dice")), _f(m.get("dice_sd")), _f(m.get("dice_min")), _f(m.get("dice_max")),
                 str(m.get("n_cases"))] for n, m in models.items()]
        s["tables"].append(_table(["model", "mean Dice (95% CI)", "SD", "min", "max", "cases"], rows,
                                  caption="Dice per case (all voxels of the case, on its original grid)"))
        cases = sorted(next(iter(models.values()), {}).get("per_case", {}))
        if cases:
            s["tables"].append(_table(["model", *cases], [[n, *[_f(m["per_case"].get(c)) for c in cases]]
                                                          for n, m in models.items()], caption="Dice of each case"))
        keys = ["dice"]
    else:
        rows = [[n, _ci(m.get("auroc")), _ci(m.get("auprc")), _ci(m.get("brier")), str(m.get("n_slices")),
                 str(m.get("n_positive")), str(m.get("n_patients"))] for n, m in models.items()]
        s["tables"].append(_table(["model", "AUROC (95% CI)", "AUPRC", "Brier", "slices", "with lesion", "patients"],
                                  rows, caption="slice-level 'lesion present'"))
        keys = ["auroc", "auprc", "brier"]
    comps = doc.get("comparisons") or {}
    if comps:
        rows = [[k, *[_ci(v.get(m)) for m in keys]] for k, v in comps.items()]
        s["tables"].append(_table(["difference", *keys], rows, caption="paired differences (same resampled patients)"))
    return s


def _roc(outputs: Mapping[str, Any]) -> dict[str, Any]:
    s = _section("discrimination", "ROC curves (slices pooled over held-out patients)")

    def build(section: dict[str, Any]) -> None:
        y = np.asarray(outputs["y"])
        curves = {n: roc_curve(y, np.asarray(p)) for n, p in outputs["probabilities"].items()}
        section["images"].append({"src": pl.roc_plot(curves), "alt": "ROC curves"})
    return _guard(s, build)


def _bands(doc: Mapping[str, Any]) -> dict[str, Any] | None:
    by = doc.get("by_lesion")
    if not by:
        return None
    s = _section("lesion-bands", "Results by lesion size and contrast (synthetic lesions)")
    for key, bands in by.items():
        if not bands:
            continue
        if "auroc" in bands[0]:
            names = list(bands[0]["auroc"])
            rows = [[f"{b['low']:.2f}–{b['high']:.2f}", str(b["n_positive"]), *[_ci(b["auroc"][n]) for n in names]]
                    for b in bands]
            caption = f"AUROC of positives in each {key} tertile against all negatives"
        else:
            names = list(bands[0]["dice"])
            rows = [[f"{b['low']:.2f}–{b['high']:.2f}", str(b["n_positive"]), *[_f(b["dice"][n]) for n in names]]
                    for b in bands]
            caption = f"mean Dice of the images in each {key} tertile"
        s["tables"].append(_table([key, "images with a lesion", *names], rows, caption=caption))
    return s


def _saliency(doc: Mapping[str, Any]) -> dict[str, Any] | None:
    sal = doc.get("saliency")
    if not sal:
        return None
    s = _section("saliency", "Does the model look at the lesion? (Grad-CAM, occlusion, random maps)")
    rows = [[k.replace("_", "-"), _f(sal[k]["pointing_game"]), _f(sal[k]["iou"])]
            for k in ("grad_cam", "occlusion", "random") if k in sal]
    s["tables"].append(_table(["map", "pointing game", "IoU"], rows,
                              caption=f"{sal['positive_slices']} held-out slices with a lesion: share whose map peak "
                                      "falls in the lesion, and IoU of the thresholded map with the lesion"))
    return s


def _examples(examples: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, Any] | None:
    if not any(examples.values()):
        return None
    s = _section("examples", "Examples: the best and the worst held-out cases",
                 "green: expert mask; red: model's mask; heat: saliency or lesion probability")
    for kind, items in examples.items():
        if items:
            s["images"].append({"src": _uri(overlay_grid_png(list(items), columns=4, title=kind)), "alt": kind})
    return s


def _training(histories: Mapping[str, Any]) -> dict[str, Any] | None:
    usable = {n: h for n, h in histories.items() if isinstance(h, Mapping) and h.get("train_loss")}
    if not usable:
        return None
    s = _section("training", "Training curves (last split)")
    for name, h in usable.items():
        s["images"].append({"src": pl.training_plot([h], title=f"{name}"), "alt": f"training curve {name}"})
    return s


def render_image_report(*, title: str, doc: Mapping[str, Any], examples: Mapping[str, Sequence[Mapping]] | None = None,
                        histories: Mapping[str, Any] | None = None,
                        outputs: Mapping[str, Any] | None = None) -> str:
    """The report as an HTML string (see :func:`write_image_report`)."""
    sections = [_summary(doc), _data(doc), _metrics(doc)]
    if outputs is not None and doc.get("task") == "binary":
        sections.append(_roc(outputs))
    for extra in (_bands(doc), _saliency(doc), _examples(examples or {}), _training(histories or {})):
        if extra is not None:
            sections.append(extra)
    return _template().render(title=title, task=doc.get("task"), sections=sections,
                              generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"))


def write_image_report(path: str | os.PathLike[str], **arguments: Any) -> Path:
    """Write the imaging report atomically. Arguments: ``title``; ``doc`` the run's metrics.json document;
    ``examples`` {title: [...]} overlay items (image, truth, pred, saliency, caption), e.g. the highest- and
    lowest-Dice cases;
    ``histories`` {model: {"train_loss", "val_loss", "best_epoch"}}; ``outputs`` {"y", "probabilities"} for ROC."""
    html = render_image_report(**arguments)
    atomic_write_bytes(Path(path), html.encode("utf-8"))
    return Path(path)
