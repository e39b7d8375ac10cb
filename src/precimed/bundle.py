"""The model bundle: one folder with fixed names, metadata, state files and hashes; checked on load.

bundle/
  metadata.json        task, feature schema (units, ranges), training data, metrics, versions, hashes
  preprocessor.json    fitted preprocessing state (JSON, not a pickle)
  sequence_preprocessor.json   sequence runs only: the fitted SequencePreprocessor state (JSON)
  explain_background.json      SHAP background: 100 encoded training rows with each feature's block shuffled
                               across rows, so no stored row is a real patient's record
  model_card.md        the model card
  models/<name>.json   each model's state; nets as torch state_dicts (loaded with weights_only=True),
  models/<name>.*      LightGBM boosters as their text model format
"""

from __future__ import annotations

import hashlib
import json
import platform
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

from precimed import __version__
from precimed.config import FeatureConfig, RunConfig, TaskConfig
from precimed.errors import ArtifactError, ConfigError
from precimed.jsonio import dumps, plain
from precimed.preprocess import TabularPreprocessor
from precimed.preprocess.temporal import SequencePreprocessor
from precimed.train.catalogue import class_named

BUNDLE_FORMAT = 1
SEQUENCE_STATE = "sequence_preprocessor.json"
BACKGROUND = "explain_background.json"
LIBRARIES = ("torch", "scikit-learn", "lightgbm", "lifelines", "numpy", "pandas", "pydantic")


def library_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _canonical(meta: dict) -> bytes:
    return json.dumps({k: v for k, v in meta.items() if k != "metadata_sha256"}, sort_keys=True,
                      default=str).encode()


@dataclass
class Bundle:
    """A loaded, verified bundle."""

    path: Path
    metadata: dict
    preprocessor: TabularPreprocessor
    models: dict[str, Any]
    sequence_preprocessor: SequencePreprocessor | None = None
    background: np.ndarray | None = None

    @property
    def config(self) -> RunConfig:
        return RunConfig.model_validate(self.metadata["config"])

    @property
    def task(self) -> TaskConfig:
        return TaskConfig.model_validate(self.metadata["config"]["task"])

    @property
    def features(self) -> list[FeatureConfig]:
        return [FeatureConfig.model_validate(f) for f in self.metadata["config"]["features"]]

    @property
    def primary(self) -> str:
        """The model that predictions, explanations and plans use unless another is named.

        Written by the training recipe as ``metadata["primary_model"]``; bundles written before it existed
        fall back to ``"mlp"`` when present (their deep model), else the first model.
        """
        name = self.metadata.get("primary_model")
        if name in self.models:
            return name
        return "mlp" if "mlp" in self.models else next(iter(self.models))

    @property
    def comparisons(self) -> list[tuple[str, str]]:
        """The paired comparisons the run asked for (``"a - b"``), among the models the bundle holds.

        Bundles written before comparisons were recorded compare the primary model with every other one.
        """
        recorded = self.metadata.get("comparisons")
        if recorded is None:
            return [(self.primary, name) for name in self.models if name != self.primary]
        pairs = [tuple(text.split(" - ", 1)) for text in recorded]
        return [(a, b) for a, b in pairs if a in self.models and b in self.models]

    def model_named(self, name: str | None) -> str:
        """``name`` if the bundle holds it, the primary model for None; else a ConfigError listing the choices."""
        if name is None:
            return self.primary
        if name not in self.models:
            raise ConfigError(f"model {name!r} is not in the bundle; it holds {sorted(self.models)}")
        return name

    @property
    def ref(self) -> str:
        return f"{self.metadata['name']}@{self.metadata['metadata_sha256'][:12]}"


def save_bundle(directory: Path, *, config: RunConfig, preprocessor: TabularPreprocessor, models: dict[str, Any],
                metadata: dict, sequence_preprocessor: SequencePreprocessor | None = None,
                background: np.ndarray | None = None, extra_files: dict[str, bytes] | None = None) -> Path:
    """Write a bundle into `directory`, which must not exist yet (callers write into a temporary run folder)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=False)
    (directory / "models").mkdir()
    files: dict[str, bytes] = {"preprocessor.json": dumps(preprocessor.to_state(), indent=1).encode()}
    if sequence_preprocessor is not None:
        files[SEQUENCE_STATE] = dumps(sequence_preprocessor.to_state(), indent=1).encode()
    if background is not None:
        files[BACKGROUND] = dumps({"rows": np.asarray(background, dtype=float).tolist(),
                                        "dtype": str(np.asarray(background).dtype)}).encode()
    files.update(extra_files or {})
    model_meta = {}
    for name, model in models.items():
        state, blobs = model.to_state()
        blob_names = {}
        for blob_name, data in blobs.items():
            rel = f"models/{name}.{blob_name.split('.', 1)[-1]}"
            files[rel] = data
            blob_names[blob_name] = rel
        files[f"models/{name}.json"] = dumps(state, indent=None).encode()
        model_meta[name] = {"class": type(model).__name__, "state": f"models/{name}.json", "blobs": blob_names}
    for rel, data in files.items():
        (directory / rel).write_bytes(data)
    meta = {
        "format": BUNDLE_FORMAT,
        "name": config.name,
        "precimed_version": __version__,
        "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "libraries": library_versions(),
        "config": config.model_dump(mode="json"),
        "models": model_meta,
        **metadata,
        "sha256": {rel: sha256_bytes(data) for rel, data in sorted(files.items())},
    }
    meta = plain(meta)  # NaN → null before hashing, so the hash is of exactly what is written
    meta["metadata_sha256"] = sha256_bytes(_canonical(meta))
    (directory / "metadata.json").write_text(dumps(meta, indent=2))
    return directory


def _major_minor(v: str) -> tuple[str, ...]:
    return tuple(v.split("+")[0].split(".")[:2])


def _check_versions(meta: dict, directory: Path) -> None:
    """Refuse a bundle from another precimed major version; warn when a numeric library's minor version moved."""
    if str(meta.get("precimed_version", "0")).split(".")[0] != __version__.split(".")[0]:
        raise ArtifactError(f"{directory}: written by precimed {meta.get('precimed_version')}, this is {__version__}; "
                            "retrain or load it with the matching version")
    now = library_versions()
    moved = [f"{lib} {old} → {now[lib]}" for lib, old in (meta.get("libraries") or {}).items()
             if lib in ("torch", "scikit-learn", "lightgbm", "numpy") and lib in now
             and _major_minor(old) != _major_minor(now[lib])]
    if moved:
        warnings.warn(f"{directory}: library versions differ from training ({', '.join(moved)}); predictions may "
                      "differ slightly", UserWarning, stacklevel=3)


def load_bundle(directory: Path | str) -> Bundle:
    """Load and verify a bundle; refuse it if any file was altered, added to the record, or is missing."""
    directory = Path(directory)
    meta_path = directory / "metadata.json"
    if not meta_path.is_file():
        raise ArtifactError(f"{directory}: not a precimed bundle (no metadata.json)")
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{meta_path}: unreadable metadata ({exc}); refusing to load") from None
    if meta.get("format") != BUNDLE_FORMAT:
        raise ArtifactError(f"{directory}: bundle format {meta.get('format')!r}, this precimed reads {BUNDLE_FORMAT}")
    _check_versions(meta, directory)
    if meta.get("metadata_sha256") != sha256_bytes(_canonical(meta)):
        raise ArtifactError(f"{meta_path} was altered after the bundle was written (hash mismatch); refusing to load")
    blobs: dict[str, bytes] = {}
    for rel, digest in meta["sha256"].items():
        path = directory / rel
        if not path.is_file():
            raise ArtifactError(f"{path} is missing from the bundle; refusing to load")
        data = path.read_bytes()
        if sha256_bytes(data) != digest:
            raise ArtifactError(f"{path} does not match its recorded sha256; the bundle was altered, refusing to load")
        blobs[rel] = data
    preprocessor = TabularPreprocessor.from_state(json.loads(blobs["preprocessor.json"]))
    sequence_preprocessor = None
    if SEQUENCE_STATE in blobs:
        sequence_preprocessor = SequencePreprocessor.from_state(json.loads(blobs[SEQUENCE_STATE]))
    background = None
    if BACKGROUND in blobs:
        state = json.loads(blobs[BACKGROUND])
        background = np.asarray(state["rows"], dtype=state["dtype"])
    models = {}
    for name, info in meta["models"].items():
        cls = class_named(info["class"])
        if cls is None:
            raise ArtifactError(f"{directory}: model {name!r} has unknown class {info['class']!r}")
        state = json.loads(blobs[info["state"]])
        models[name] = cls.from_state(state, {b: blobs[rel] for b, rel in info["blobs"].items()})
    return Bundle(directory, meta, preprocessor, models, sequence_preprocessor, background)
