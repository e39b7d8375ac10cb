"""The model bundle: one folder with fixed names, metadata, state files and hashes; checked on load.

bundle/
  metadata.json        task, feature schema (units, ranges), training data, metrics, versions, hashes
  preprocessor.json    fitted preprocessing state (JSON, not a pickle)
  sequence_preprocessor.json   sequence runs only: the fitted SequencePreprocessor state (JSON)
  image_preprocessor.json      imaging runs only: the fitted ImagePreprocessor state (JSON: resampling, crop,
                               window and normalisation fitted on the training images); an imaging run without
                               tabular features has no preprocessor.json
  explain_background.json      SHAP background: 100 encoded training rows with each feature's block shuffled
                               across rows, so no stored row is a real patient's record
  model_card.md        the model card
  uncertainty.json     runs with `uncertainty:` only: each model's fitted split-conformal / Venn-Abers state
                       (precimed.evaluate.conformal); bundles without it load and score without intervals
  models/<name>.json   each model's state; nets as torch state_dicts (loaded with weights_only=True),
  models/<name>.*      LightGBM boosters as their text model format
"""

from __future__ import annotations

import hashlib
import json
import platform
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from precimed import __version__
from precimed.compiled import Scorer
from precimed.compiled.onnx_graph import onnx_graphs
from precimed.config import FeatureConfig, RunConfig, TaskConfig, parse_config
from precimed.errors import ArtifactError, ConfigError
from precimed.evaluate.conformal import Uncertainty, from_file_state, to_file_state
from precimed.jsonio import dumps, plain
from precimed.preprocess import TabularPreprocessor
from precimed.preprocess.images import ImagePreprocessor
from precimed.preprocess.temporal import SequencePreprocessor
from precimed.train.catalogue import class_named

BUNDLE_FORMAT = 1
SEQUENCE_STATE = "sequence_preprocessor.json"
IMAGE_STATE = "image_preprocessor.json"
BACKGROUND = "explain_background.json"
UNCERTAINTY = "uncertainty.json"
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
    preprocessor: TabularPreprocessor | None
    models: dict[str, Any]
    sequence_preprocessor: SequencePreprocessor | None = None
    background: np.ndarray | None = None
    image_preprocessor: ImagePreprocessor | None = None
    #: the compiled scoring path of a tabular bundle (None for sequence and imaging bundles); built at load
    scorer: Scorer | None = None
    #: each model's fitted per-patient uncertainty (``uncertainty.json``); empty for bundles without one
    uncertainty: dict[str, Uncertainty] = field(default_factory=dict)

    @property
    def config(self) -> RunConfig:
        return parse_config(self.metadata["config"], source=f"{self.path.name}/metadata.json config")

    @property
    def task(self) -> TaskConfig:
        return TaskConfig.model_validate(self.metadata["config"]["task"])

    @property
    def features(self) -> list[FeatureConfig]:
        """The bundle's features, validated once (a fresh list each call; validating them took about a tenth of a
        served prediction). Re-read when `metadata["config"]["features"]` is replaced by another list."""
        raw = self.metadata["config"]["features"]
        cached = self.__dict__.get("_features")
        if cached is None or cached[0] is not raw or len(cached[1]) != len(raw):
            cached = (raw, tuple(FeatureConfig.model_validate(f) for f in raw))
            self.__dict__["_features"] = cached
        return list(cached[1])

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


def save_bundle(directory: Path, *, config: RunConfig, preprocessor: TabularPreprocessor | None,
                models: dict[str, Any], metadata: dict, sequence_preprocessor: SequencePreprocessor | None = None,
                background: np.ndarray | None = None, extra_files: dict[str, bytes] | None = None,
                image_preprocessor: ImagePreprocessor | None = None,
                uncertainty: dict[str, Uncertainty] | None = None) -> Path:
    """Write a bundle into `directory`, which must not exist yet (callers write into a temporary run folder)."""
    directory = Path(directory)
    if preprocessor is None and image_preprocessor is None:
        raise ArtifactError("a bundle needs a tabular or an image preprocessor")
    directory.mkdir(parents=True, exist_ok=False)
    (directory / "models").mkdir()
    files: dict[str, bytes] = {}
    if preprocessor is not None:
        files["preprocessor.json"] = dumps(preprocessor.to_state(), indent=1).encode()
    if image_preprocessor is not None:
        files[IMAGE_STATE] = dumps(image_preprocessor.to_state(), indent=1).encode()
    if sequence_preprocessor is not None:
        files[SEQUENCE_STATE] = dumps(sequence_preprocessor.to_state(), indent=1).encode()
    if background is not None:
        files[BACKGROUND] = dumps({"rows": np.asarray(background, dtype=float).tolist(),
                                        "dtype": str(np.asarray(background).dtype)}).encode()
    if uncertainty:
        unknown = sorted(set(uncertainty) - set(models))
        if unknown:
            raise ArtifactError(f"uncertainty given for models {unknown} that the bundle does not hold")
        files[UNCERTAINTY] = dumps(to_file_state(uncertainty), indent=None).encode()
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
    if preprocessor is not None and sequence_preprocessor is None and image_preprocessor is None:
        for name, graph in onnx_graphs(_scorer(preprocessor, models, config.task.model_dump(),
                                                metadata.get("classes"))).items():
            files[f"models/{name}.onnx"] = graph
            model_meta[name]["onnx"] = f"models/{name}.onnx"
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


class BundleInvalid(ArtifactError):
    """A bundle that fails verification.

    `reason` names the problem by paths inside the bundle only, so a service can send it to a client without
    revealing where the server keeps its files; str() adds the folder, for the user at the command line.
    """

    def __init__(self, directory: Path, reason: str) -> None:
        super().__init__(f"{directory}: {reason}")
        self.reason = reason


def _major_minor(v: str) -> tuple[str, ...]:
    return tuple(v.split("+")[0].split(".")[:2])


def _check_versions(meta: dict, directory: Path) -> None:
    """Refuse a bundle from another precimed major version; warn when a numeric library's minor version moved."""
    if str(meta.get("precimed_version", "0")).split(".")[0] != __version__.split(".")[0]:
        raise BundleInvalid(directory, f"written by precimed {meta.get('precimed_version')}, this is "
                            f"{__version__}; retrain or load it with the matching version")
    now = library_versions()
    libraries = meta.get("libraries") if isinstance(meta.get("libraries"), dict) else {}
    moved = [f"{lib} {old} → {now[lib]}" for lib, old in libraries.items()
             if lib in ("torch", "scikit-learn", "lightgbm", "numpy") and lib in now
             and _major_minor(str(old)) != _major_minor(now[lib])]
    if moved:
        warnings.warn(f"{directory}: library versions differ from training ({', '.join(moved)}); predictions may "
                      "differ slightly", UserWarning, stacklevel=3)


class _ModelEntry(BaseModel):
    """One model's record in metadata.json: its catalogue class, its state file and its blob files."""

    class_name: str = Field(alias="class")
    state: str
    blobs: dict[str, str] = {}
    onnx: str | None = None  # the ONNX graph of preprocessing + this model (tabular bundles; not LightGBM)


class _Manifest(BaseModel):
    """The parts of metadata.json that loading relies on; everything else is kept as written."""

    model_config = ConfigDict(extra="allow")

    name: str = Field(min_length=1, max_length=256)
    sha256: dict[str, str]
    models: dict[str, _ModelEntry] = Field(min_length=1)
    config: dict[str, Any]


def _check_manifest(meta: dict, directory: Path) -> _Manifest:
    """The metadata's shape (after its own hash matched): a bundle written by hand must not crash the loader."""
    try:
        manifest = _Manifest.model_validate(meta)
        RunConfig.model_validate(meta["config"])
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"]) or "metadata"
        raise BundleInvalid(directory, f"metadata.json field {where!r}: {first['msg']}; refusing to load") from None
    for name, entry in manifest.models.items():
        named = (entry.state, *entry.blobs.values(), *([entry.onnx] if entry.onnx else []))
        missing = [rel for rel in named if rel not in manifest.sha256]
        if missing:
            raise BundleInvalid(directory, f"model {name!r} names files without a recorded hash ({missing[:3]}); "
                                "refusing to load")
    return manifest


def safe_member(rel: object) -> str | None:
    """Why `rel` is not a plain relative path inside a bundle (None when it is one).

    A hash list is attacker-controlled in an uploaded bundle: an absolute path, '..', a backslash or a drive
    letter would let it probe files outside the bundle (missing versus mismatched is an existence oracle).
    """
    if not isinstance(rel, str) or not rel or len(rel) > 255:
        return "expected a relative path of 1 to 255 characters"
    if "\\" in rel or ":" in rel or "\x00" in rel:
        return "backslashes, drive letters, colons and NUL bytes are not allowed"
    if rel.startswith("/") or PurePosixPath(rel).is_absolute() or PureWindowsPath(rel).drive:
        return "absolute paths are not allowed"
    if any(part in ("", ".", "..") for part in rel.split("/")):
        return "empty, '.' and '..' path parts are not allowed"
    return None


def _member_paths(hashes: dict[str, str], directory: Path) -> dict[str, Path]:
    """Each hash-list entry's file, after checking every name (before touching the filesystem) and that no link
    leads out of the bundle."""
    for rel in hashes:
        problem = safe_member(rel)
        if problem is not None:
            raise BundleInvalid(directory, f"the hash list names {rel[:80]!r}: {problem}; only files inside the "
                                "bundle may be listed, refusing to load")
    root = directory.resolve()
    out = {}
    for rel in hashes:
        path = directory / rel
        if not path.resolve().is_relative_to(root):
            raise BundleInvalid(directory, f"{rel} is a link that leads outside the bundle; refusing to load")
        out[rel] = path
    return out


def read_metadata(directory: Path) -> dict:
    """metadata.json as a dict, verified against its own hash (BundleInvalid otherwise)."""
    meta_path = directory / "metadata.json"
    if not meta_path.is_file() or not meta_path.resolve().is_relative_to(directory.resolve()):
        raise BundleInvalid(directory, "not a precimed bundle (no metadata.json)")
    try:
        meta = json.loads(meta_path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise BundleInvalid(directory, f"metadata.json is unreadable ({type(exc).__name__}); refusing to "
                            "load") from None
    if not isinstance(meta, dict):
        raise BundleInvalid(directory, "metadata.json is not a JSON object; refusing to load")
    if meta.get("format") != BUNDLE_FORMAT:
        raise BundleInvalid(directory, f"bundle format {str(meta.get('format'))[:20]!r}, this precimed reads "
                            f"{BUNDLE_FORMAT}")
    _check_versions(meta, directory)
    if meta.get("metadata_sha256") != sha256_bytes(_canonical(meta)):
        raise BundleInvalid(directory, "metadata.json was altered after the bundle was written (hash mismatch); "
                            "refusing to load")
    return meta


def verify_files(directory: Path | str) -> tuple[dict, dict[str, bytes]]:
    """The verified metadata and the bytes of every file its hash list names.

    Refuses (BundleInvalid) an altered metadata.json, a hash list naming anything but a plain file inside the
    bundle, and a file that is missing or does not match its hash.
    """
    directory = Path(directory)
    meta = read_metadata(directory)
    manifest = _check_manifest(meta, directory)
    blobs: dict[str, bytes] = {}
    for rel, path in _member_paths(manifest.sha256, directory).items():
        if not path.is_file():
            raise BundleInvalid(directory, f"{rel} is missing from the bundle; refusing to load")
        data = path.read_bytes()
        if sha256_bytes(data) != manifest.sha256[rel]:
            raise BundleInvalid(directory, f"{rel} does not match its recorded sha256; the bundle was altered, "
                                "refusing to load")
        blobs[rel] = data
    return meta, blobs


def _decode(what: str, directory: Path, make: Callable[[], Any]) -> Any:
    """Build one part of the bundle from its verified bytes; any failure is the bundle's (BundleInvalid).

    The hashes only prove the files are the ones the metadata lists, not that a trustworthy run wrote them: an
    uploaded bundle may hold anything, so a decoding failure of any type is turned into one line.
    """
    try:
        return make()
    except Exception as exc:  # noqa: BLE001 (untrusted content: every failure is a bad bundle)
        detail = str(exc).splitlines()[0][:160] if str(exc) else ""
        raise BundleInvalid(directory, f"{what} could not be read ({type(exc).__name__}"
                            f"{': ' + detail if detail else ''}); refusing to load") from exc


def load_bundle(directory: Path | str) -> Bundle:
    """Load and verify a bundle; refuse it if any file was altered, added to the record, or is missing."""
    directory = Path(directory)
    meta, blobs = verify_files(directory)
    if "preprocessor.json" not in blobs and IMAGE_STATE not in blobs:
        raise BundleInvalid(directory, "preprocessor.json is not in the hash list; refusing to load")
    preprocessor = None
    if "preprocessor.json" in blobs:
        preprocessor = _decode("preprocessor.json", directory,
                               lambda: TabularPreprocessor.from_state(json.loads(blobs["preprocessor.json"])))
    image_preprocessor = None
    if IMAGE_STATE in blobs:
        image_preprocessor = _decode(IMAGE_STATE, directory,
                                     lambda: ImagePreprocessor.from_state(json.loads(blobs[IMAGE_STATE])))
    sequence_preprocessor = None
    if SEQUENCE_STATE in blobs:
        sequence_preprocessor = _decode(SEQUENCE_STATE, directory,
                                        lambda: SequencePreprocessor.from_state(json.loads(blobs[SEQUENCE_STATE])))
    background = None
    if BACKGROUND in blobs:
        background = _decode(BACKGROUND, directory, lambda: _background(json.loads(blobs[BACKGROUND])))
    models = {}
    for name, info in meta["models"].items():
        cls = class_named(info["class"])
        if cls is None:
            raise BundleInvalid(directory, f"model {name!r} has unknown class {str(info['class'])[:80]!r}")
        models[name] = _decode(f"model {name!r}", directory, lambda cls=cls, info=info: cls.from_state(
            json.loads(blobs[info["state"]]), {b: blobs[rel] for b, rel in info["blobs"].items()}))
    uncertainty: dict[str, Uncertainty] = {}
    if UNCERTAINTY in blobs:
        uncertainty = _decode(UNCERTAINTY, directory, lambda: _uncertainty(json.loads(blobs[UNCERTAINTY]), models))
    bundle = Bundle(directory, meta, preprocessor, models, sequence_preprocessor, background, image_preprocessor,
                    uncertainty=uncertainty)
    if preprocessor is not None and sequence_preprocessor is None and image_preprocessor is None:
        graphs = {name: blobs[info["onnx"]] for name, info in meta["models"].items() if info.get("onnx")}
        bundle.scorer = _decode("the compiled scoring path", directory, lambda: _scorer(
            preprocessor, models, meta["config"]["task"], meta.get("classes"), graphs, uncertainty))
    return bundle


def _scorer(preprocessor: TabularPreprocessor, models: dict[str, Any], task: dict, classes: list | None,
            graphs: dict[str, bytes] | None = None, uncertainty: dict[str, Uncertainty] | None = None) -> Scorer:
    return Scorer(preprocessor, models, task=task["kind"], classes=classes, horizons=task.get("horizons") or [],
                  time_unit=task.get("time_unit") or "", onnx=graphs, uncertainty=uncertainty)


def _uncertainty(state: Any, models: dict[str, Any]) -> dict[str, Uncertainty]:
    """uncertainty.json read back; only for models the bundle holds."""
    out = from_file_state(state)
    unknown = sorted(set(out) - set(models))
    if unknown:
        raise ValueError(f"it names models {unknown[:5]} that the bundle does not hold")
    return out


def _background(state: dict) -> np.ndarray:
    """The SHAP background rows, numeric only (a dtype of 'object' would let a file smuggle arbitrary values)."""
    rows = np.asarray(state["rows"], dtype=np.dtype(state["dtype"]))
    if rows.dtype.kind not in "fiub":
        raise ValueError(f"background dtype {rows.dtype} is not numeric")
    return rows
