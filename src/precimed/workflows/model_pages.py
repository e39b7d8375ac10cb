"""What the web's model pages show of a registered bundle: its metrics with confidence intervals, its model card as
escaped HTML, and where a drift report of a version is looked for.

Why here: the service may not import the evaluation layer (docs/architecture.md), and these are the evaluation
layer's own labels and formats (metric names, "0.812 (0.780–0.843)", the card's Markdown subset), so the pages
read a bundle exactly as report.html and the model card do. Everything comes from the bundle's metadata, whose
own hash the registry checks; nothing here loads a model.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from precimed.errors import ArtifactError
from precimed.evaluate.model_card import PRIMARY_METRIC, fmt_ci, markdown_html, metric_label

CARD = "model_card.md"
DRIFT_PAGE = "drift.html"


def metric_rows(metadata: dict[str, Any], model: str | None = None) -> list[dict[str, str]]:
    """The held-out metrics of one model of the bundle (default: its primary model) as
    ``[{"key", "label", "value"}]``, value as "0.812 (0.780–0.843)" (95% bootstrap CI when the run computed one)."""
    metrics = metadata.get("metrics") or {}
    name = model or primary_model(metadata)
    task = (metadata.get("config") or {}).get("task") or {}
    unit = task.get("time_unit") if task.get("kind") == "survival" else None
    found = metrics.get(name) or {}
    return [{"key": key, "label": metric_label(key, unit), "value": fmt_ci(entry)}
            for key, entry in found.items() if isinstance(entry, (dict, int, float))]


def all_metric_rows(metadata: dict[str, Any]) -> dict[str, list[dict[str, str]]]:
    """:func:`metric_rows` of every model in the bundle's metrics, primary model first."""
    names = list(metadata.get("metrics") or {})
    primary = primary_model(metadata)
    ordered = [primary, *[n for n in names if n != primary]] if primary in names else names
    return {name: metric_rows(metadata, name) for name in ordered}


def primary_model(metadata: dict[str, Any]) -> str | None:
    """The bundle's primary model (the one served by default)."""
    primary = metadata.get("primary_model")
    if primary:
        return str(primary)
    names = list(metadata.get("metrics") or {})
    return names[0] if names else None


def headline(metadata: dict[str, Any]) -> dict[str, str] | None:
    """The task's headline metric of the primary model (AUROC, macro AUROC, RMSE or Harrell's C) with its CI."""
    task = ((metadata.get("config") or {}).get("task") or {}).get("kind")
    key = PRIMARY_METRIC.get(str(task), (None, True))[0]
    for row in metric_rows(metadata):
        if row["key"] == key:
            return row
    return None


def validation_label(metadata: dict[str, Any]) -> str:
    """Where the metrics were measured (the bundle's held-out validation data), in words."""
    data = metadata.get("validation_data") or {}
    name = data.get("name") or data.get("source") or "held-out data"
    rows = data.get("n") or data.get("rows")
    events = data.get("events")
    if not rows:
        return str(name)
    return f"{name}: {rows} patients" + (f", {events} events" if events is not None else "")


def card_html(bundle_dir: Path, metadata: dict[str, Any], label: str) -> str:
    """The bundle's model card as escaped HTML, read only if its bytes match the hash in the bundle's metadata
    (ArtifactError naming `label` and the file otherwise: a card edited after registration is never shown)."""
    expected = (metadata.get("sha256") or {}).get(CARD)
    if not expected:
        raise ArtifactError(f"{label}: the bundle has no {CARD}")
    try:
        data = (Path(bundle_dir) / CARD).read_bytes()
    except OSError:
        raise ArtifactError(f"{label}: {CARD} cannot be read") from None
    if hashlib.sha256(data).hexdigest() != expected:
        raise ArtifactError(f"{label}: {CARD} changed on disk after the bundle was registered; refusing to show it")
    return markdown_html(data.decode("utf-8", errors="replace"))


def drift_dir(registry_root: Path, name: str, version: int) -> Path:
    """Where the pages look for a version's drift report: ``<registry>-drift/<name>/<version>/`` beside the
    registry folder (``precimed drift ... --out`` refuses a folder inside the registry it reads)."""
    root = Path(registry_root)
    return root.parent / f"{root.name}-drift" / name / str(int(version))


def drift_page(registry_root: Path, name: str, version: int) -> Path | None:
    """The version's drift.html if one was written there, else None."""
    path = drift_dir(registry_root, name, version) / DRIFT_PAGE
    return path if path.is_file() else None


__all__ = ["all_metric_rows", "card_html", "drift_dir", "drift_page", "headline", "metric_rows", "primary_model",
           "validation_label"]
