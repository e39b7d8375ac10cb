"""The model registry: bundles copied into one folder, versions and stages in the database.

    <registry>/models/<name>/<version>/bundle/          the bundle, copied and re-verified
    <registry>/models/<name>/<version>/fhir_mapping.yaml  optional: how a FHIR R4 Bundle maps to its features

`add` verifies the bundle's hashes, copies it into a temporary folder inside the registry, verifies the copy,
then renames it into place and records the version (and an audit row) in one transaction; a failure leaves
neither a folder nor a row. Stages (staging, production) are an append-only history per model: `promote` pushes
a version, `rollback` pops back to the one before. A request names a model and gets its production version,
unless it pins a version.

Loaded bundles are re-verified while they are served (`integrity_problems`, and `load` on a cache hit): at most
once per `verify_interval` seconds, each file's size, times and inode are compared with what they were when its
hash last matched, and only a file whose signature moved is hashed again. A bundle whose files changed is
dropped from the cache and refused (ArtifactError, HTTP 503) until it verifies again. Messages name the model,
version and the file inside the bundle, never a server path.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from precimed.bundle import Bundle, BundleInvalid, load_bundle, read_metadata
from precimed.errors import ArtifactError, ConfigError
from precimed.service.audit import AuditLog
from precimed.service.db import Database, ModelRow, StageRow, VersionRow, utcnow

STAGES = ("staging", "production")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
FHIR_MAPPING = "fhir_mapping.yaml"


class ModelNotFound(ArtifactError):
    """No such model or version in the registry (HTTP 404)."""


class RegistryConflict(ConfigError):
    """The change conflicts with the registry's state, e.g. the bundle is already registered (HTTP 409)."""


@dataclass(frozen=True)
class VersionInfo:
    name: str
    version: int
    path: Path
    bundle_ref: str
    metadata_sha256: str
    task: str
    registered_at: str
    registered_by: str
    stages: tuple[str, ...]
    has_fhir_mapping: bool

    @property
    def bundle_dir(self) -> Path:
        return self.path / "bundle"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "bundle": self.bundle_ref, "task": self.task,
                "stages": list(self.stages), "registered_at": self.registered_at,
                "registered_by": self.registered_by, "fhir_mapping": self.has_fhir_mapping}


@dataclass(frozen=True)
class LoadedModel:
    """A verified bundle in memory. Prediction and explanation do not change it, so requests share it unlocked."""

    info: VersionInfo
    bundle: Bundle


Signature = tuple[int, int, int, int, int]
METADATA = "metadata.json"


@dataclass
class _Watch:
    """What a loaded bundle's files looked like when their hashes last matched (see `Registry.integrity_problems`)."""

    info: VersionInfo
    hashes: dict[str, str]  # file inside the bundle → its recorded sha256 (metadata.json: checked by its own hash)
    stats: dict[str, Signature] = field(default_factory=dict)  # file → signature when its hash last matched
    checked: float = float("-inf")  # time.monotonic() of the last check
    problem: str | None = None


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME.match(name):
        raise ConfigError(f"model name {name!r}: use letters, digits, '.', '_' or '-' (at most 128, starting with a "
                          "letter or digit)")
    return name


class Registry:
    def __init__(self, root: Path, db: Database, audit: AuditLog, *, cache_size: int = 8,
                 verify_interval: float = 30.0) -> None:
        self.root = Path(root).resolve()
        self.db = db
        self.audit = audit
        self.cache_size = cache_size
        self.verify_interval = verify_interval
        self._cache: OrderedDict[tuple[str, int, str], LoadedModel] = OrderedDict()
        self._watches: dict[tuple[str, int, str], _Watch] = {}
        self._cache_lock = threading.Lock()
        self._resolved: dict[tuple[Any, ...], VersionInfo] = {}
        (self.root / "models").mkdir(parents=True, exist_ok=True)

    # ----- registering --------------------------------------------------------------------------------------
    def add(self, bundle_dir: Path | str, *, name: str | None = None, fhir_mapping: bytes | None = None,
            actor: str, role: str) -> VersionInfo:
        """Register a bundle folder as the next version of `name` (default: the bundle's own name)."""
        source = Path(bundle_dir)
        bundle = load_bundle(source)  # ArtifactError if altered or incomplete
        name = check_name(name or str(bundle.metadata["name"]))
        incoming = self.root / ".incoming"
        incoming.mkdir(exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix="add-", dir=incoming))
        try:
            _copy_verified(source, tmp / "bundle", bundle)
            try:
                copied = load_bundle(tmp / "bundle")  # the copy is what we serve: verify it too
            except BundleInvalid as exc:
                raise BundleInvalid(source, f"{exc.reason} (in the copy: the bundle changed while it was being "
                                    "registered; try again)") from None
            if copied.metadata["metadata_sha256"] != bundle.metadata["metadata_sha256"]:
                raise BundleInvalid(source, "the bundle changed while it was being registered; try again")
            mapping_sha = None
            if fhir_mapping is not None:
                (tmp / FHIR_MAPPING).write_bytes(fhir_mapping)
                mapping_sha = _sha(fhir_mapping)
            _fsync_tree(tmp)
            meta = copied.metadata
            final: Path | None = None
            committed = False
            try:
                with self.db.transaction() as s:
                    model = s.execute(select(ModelRow).where(ModelRow.name == name).with_for_update()
                                      ).scalar_one_or_none()
                    if model is None:
                        model = ModelRow(name=name, created_at=utcnow())
                        s.add(model)
                        s.flush()
                    dup = s.execute(select(VersionRow.version).where(VersionRow.model_id == model.id,
                                    VersionRow.metadata_sha256 == meta["metadata_sha256"])).scalar_one_or_none()
                    if dup is not None:
                        raise RegistryConflict(f"this bundle ({copied.ref}) is already registered as {name} "
                                               f"version {dup}")
                    version = (s.execute(select(func.max(VersionRow.version))
                                         .where(VersionRow.model_id == model.id)).scalar_one_or_none() or 0) + 1
                    target = self.root / "models" / name / str(version)
                    if target.exists():  # left by a crash between rename and commit: not a registered version
                        shutil.rmtree(target)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    s.add(VersionRow(model_id=model.id, version=version, path=str(target.relative_to(self.root)),
                                     bundle_ref=copied.ref, metadata_sha256=meta["metadata_sha256"],
                                     task=copied.task.kind, fhir_mapping_sha256=mapping_sha, registered_at=utcnow(),
                                     registered_by=actor[:64]))
                    self.audit.record(s, actor=actor, role=role, action="register", model=name, version=version,
                                      input_digest=meta["metadata_sha256"], detail={"bundle": copied.ref})
                    os.replace(tmp, target)
                    final = target
                committed = True
            except IntegrityError:  # another registration of the same model won the race
                raise RegistryConflict(f"{name} was being registered concurrently; try again") from None
            finally:
                if not committed and final is not None:
                    shutil.rmtree(final, ignore_errors=True)
            return self.info(name, version)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def set_fhir_mapping(self, name: str, version: int, mapping: bytes, *, actor: str, role: str) -> VersionInfo:
        """Replace a version's FHIR mapping (the caller has validated it against the bundle's features)."""
        info = self.info(name, version)
        target = info.path / FHIR_MAPPING
        with self.db.transaction() as s:
            row = self._version_row(s, name, version)
            row.fhir_mapping_sha256 = _sha(mapping)
            self.audit.record(s, actor=actor, role=role, action="set_fhir_mapping", model=name, version=version,
                              input_digest=row.fhir_mapping_sha256)
            tmp = target.with_suffix(".partial")
            tmp.write_bytes(mapping)
            os.replace(tmp, target)
        with self._cache_lock:
            self._resolved.clear()
        return self.info(name, version)

    def fhir_mapping(self, info: VersionInfo) -> bytes | None:
        """The version's mapping file, if it has one and it matches its recorded hash."""
        with self.db.session() as s:
            expected = self._version_row(s, info.name, info.version).fhir_mapping_sha256
        if expected is None:
            return None
        try:
            data = (info.path / FHIR_MAPPING).read_bytes()
        except OSError:
            raise ArtifactError(f"{info.name} v{info.version}: the FHIR mapping file cannot be read; refusing to "
                                "use it") from None
        if _sha(data) != expected:
            raise ArtifactError(f"{info.name} v{info.version}: the FHIR mapping file was altered; refusing to use it")
        return data

    # ----- stages -------------------------------------------------------------------------------------------
    def promote(self, name: str, version: int, stage: str = "production", *, actor: str, role: str) -> VersionInfo:
        _check_stage(stage)
        with self.db.transaction() as s:
            row = self._version_row(s, name, version)
            stack = _stage_stack(s, row.model_id, stage)
            if stack and stack[-1] == row.id:
                raise RegistryConflict(f"{name} version {version} is already in {stage}")
            s.add(StageRow(model_id=row.model_id, stage=stage, version_id=row.id, action="promote", at=utcnow(),
                           actor=actor[:64]))
            previous = self._version_number(s, stack[-1]) if stack else None
            self.audit.record(s, actor=actor, role=role, action=f"promote:{stage}", model=name, version=version,
                              detail={"previous": previous})
        return self.info(name, version)

    def rollback(self, name: str, stage: str = "production", *, actor: str, role: str) -> VersionInfo:
        """Return `stage` to the version it held before the last promotion."""
        _check_stage(stage)
        with self.db.transaction() as s:
            model = self._model_row(s, name)
            stack = _stage_stack(s, model.id, stage)
            if len(stack) < 2:
                raise RegistryConflict(f"{name} has no earlier {stage} version to roll back to")
            current, target = stack[-1], stack[-2]
            s.add(StageRow(model_id=model.id, stage=stage, version_id=target, action="rollback", at=utcnow(),
                           actor=actor[:64]))
            version = self._version_number(s, target)
            self.audit.record(s, actor=actor, role=role, action=f"rollback:{stage}", model=name, version=version,
                              detail={"from": self._version_number(s, current)})
        return self.info(name, version)

    # ----- reading ------------------------------------------------------------------------------------------
    def info(self, name: str, version: int) -> VersionInfo:
        with self.db.session() as s:
            return self._info(s, self._version_row(s, name, version))

    def resolve(self, name: str, version: int | None = None) -> VersionInfo:
        """The pinned version, or the model's production version.

        One indexed query per request (the model's newest stage row and version count) tells whether anything
        changed since the answer was cached, so a promotion from another process is seen by the next request.
        """
        stamp = self.db.fetch_one(_STAMP, {"name": name})  # the hot path: one read without the ORM
        key = (name, version, stamp)
        hit = self._resolved.get(key) if stamp is not None else None
        if hit is not None:
            return hit
        with self.db.session() as s:
            if stamp is None:
                self._model_row(s, name)  # raises ModelNotFound naming the registered models
            if version is not None:
                info = self._info(s, self._version_row(s, name, version))
            else:
                stack = _stage_stack(s, stamp[0], "production")
                if not stack:
                    raise ModelNotFound(f"model {name!r} has no production version; promote one "
                                        f"(`precimed registry promote {name} VERSION`) or pin a version")
                info = self._info(s, s.get(VersionRow, stack[-1]))
        with self._cache_lock:
            if len(self._resolved) > 1024:
                self._resolved.clear()
            self._resolved[key] = info
        return info

    def list(self) -> list[dict[str, Any]]:
        with self.db.session() as s:
            out = []
            for model in s.execute(select(ModelRow).order_by(ModelRow.name)).scalars():
                rows = s.execute(select(VersionRow).where(VersionRow.model_id == model.id)
                                 .order_by(VersionRow.version)).scalars().all()
                versions = [self._info(s, r).to_dict() for r in rows]
                current = {stage: self._version_number(s, st[-1]) if (st := _stage_stack(s, model.id, stage)) else None
                           for stage in STAGES}
                out.append({"name": model.name, "production": current["production"], "staging": current["staging"],
                            "versions": versions})
            return out

    def names(self) -> list[str]:
        with self.db.session() as s:
            return list(s.execute(select(ModelRow.name).order_by(ModelRow.name)).scalars())

    def load(self, info: VersionInfo) -> LoadedModel:
        """The verified bundle of a version: cached, its hashes checked when it is first loaded and its files
        re-checked at most every `verify_interval` seconds while it is served (ArtifactError if they changed)."""
        key = (info.name, info.version, info.metadata_sha256)
        with self._cache_lock:
            hit = self._cache.get(key)
            watch = self._watches.get(key)
        if hit is not None and watch is not None:
            problem = self._recheck(key, watch)
            if problem is None:
                with self._cache_lock:
                    if key in self._cache:
                        self._cache.move_to_end(key)
                return hit
            raise ArtifactError(f"{info.name} v{info.version}: {problem}; refusing to serve it")
        return self._load_fresh(key, info)

    def integrity_problems(self) -> list[str]:
        """One line per loaded bundle whose files changed on disk since they were verified (empty when all hold).

        Checks the bundles that are due (see `load`): a stat per file, a hash only where the stat moved. The lines
        name the model, version and file inside the bundle, never a server path, so `/readyz` may show them.
        """
        with self._cache_lock:
            watches = list(self._watches.items())
        found = []
        for key, watch in watches:
            problem = self._recheck(key, watch)
            if problem is not None:
                found.append(f"{watch.info.name} v{watch.info.version}: {problem}")
        return sorted(found)

    def metadata(self, info: VersionInfo) -> dict[str, Any]:
        """metadata.json of a version, read without loading its models (for listings); its own hash is checked."""
        try:
            return read_metadata(info.bundle_dir)
        except BundleInvalid as exc:
            raise ArtifactError(f"{info.name} v{info.version}: {exc.reason}") from None
        except OSError:
            raise ArtifactError(f"{info.name} v{info.version}: its metadata cannot be read") from None

    # ----- integrity ----------------------------------------------------------------------------------------
    def _load_fresh(self, key: tuple[str, int, str], info: VersionInfo) -> LoadedModel:
        """Load and verify a version's bundle from disk, then watch its files; errors name no server path."""
        label = f"{info.name} v{info.version}"
        try:
            bundle = load_bundle(info.bundle_dir)
        except BundleInvalid as exc:
            raise ArtifactError(f"{label}: {exc.reason}") from None
        except OSError:
            raise ArtifactError(f"{label}: its files cannot be read; refusing to serve it") from None
        if bundle.metadata["metadata_sha256"] != info.metadata_sha256:
            raise ArtifactError(f"{label}: the bundle on disk is not the one registered; refusing to serve it")
        watch = _Watch(info, {**bundle.metadata["sha256"], METADATA: info.metadata_sha256})
        problem = self._recheck(key, watch, force=True)  # hashes every file once more and records its signature
        if problem is not None:
            raise ArtifactError(f"{label}: {problem}; refusing to serve it")
        loaded = LoadedModel(info, bundle)
        with self._cache_lock:
            loaded = self._cache.setdefault(key, loaded)
            self._watches[key] = watch if self._cache[key] is loaded else self._watches.get(key, watch)
            self._cache.move_to_end(key)
            while len(self._cache) > self.cache_size:
                old, _ = self._cache.popitem(last=False)
                if (gone := self._watches.get(old)) is not None and gone.problem is None:
                    del self._watches[old]
        return loaded

    def _recheck(self, key: tuple[str, int, str], watch: _Watch, *, force: bool = False) -> str | None:
        """Re-verify `watch` if its interval has passed (or `force`); a bundle found changed leaves the cache."""
        now = time.monotonic()
        with self._cache_lock:
            if not force and now - watch.checked < self.verify_interval:
                return watch.problem
            watch.checked = now
        problem, stats = _verify_files(watch)
        with self._cache_lock:
            watch.stats.update(stats)
            watch.problem = problem
            if problem is not None:
                self._cache.pop(key, None)
                self._watches[key] = watch  # reported until the bundle verifies again
            elif key not in self._cache and self._watches.get(key) is watch:
                del self._watches[key]  # restored after a problem, and no longer served from memory
        return problem

    # ----- internals ----------------------------------------------------------------------------------------
    def _model_row(self, s: Session, name: str) -> ModelRow:
        model = s.execute(select(ModelRow).where(ModelRow.name == name)).scalar_one_or_none()
        if model is None:
            known = self.names_in(s)
            raise ModelNotFound(f"no model named {name!r} in the registry; registered: {known[:20]}")
        return model

    def names_in(self, s: Session) -> list[str]:
        return list(s.execute(select(ModelRow.name).order_by(ModelRow.name)).scalars())

    def _version_row(self, s: Session, name: str, version: int) -> VersionRow:
        model = self._model_row(s, name)
        row = s.execute(select(VersionRow).where(VersionRow.model_id == model.id, VersionRow.version == version)
                        ).scalar_one_or_none()
        if row is None:
            have = list(s.execute(select(VersionRow.version).where(VersionRow.model_id == model.id)
                                  .order_by(VersionRow.version)).scalars())
            raise ModelNotFound(f"model {name!r} has no version {version}; versions: {have}")
        return row

    def _version_number(self, s: Session, version_id: int) -> int:
        return s.execute(select(VersionRow.version).where(VersionRow.id == version_id)).scalar_one()

    def _info(self, s: Session, row: VersionRow) -> VersionInfo:
        name = s.execute(select(ModelRow.name).where(ModelRow.id == row.model_id)).scalar_one()
        stages = tuple(stage for stage in STAGES if (st := _stage_stack(s, row.model_id, stage)) and st[-1] == row.id)
        return VersionInfo(name, row.version, self.root / row.path, row.bundle_ref, row.metadata_sha256, row.task,
                           row.registered_at, row.registered_by, stages, row.fhir_mapping_sha256 is not None)


#: what tells whether a model's resolution changed: its id, newest stage row and version count (one indexed read)
_STAMP = select(ModelRow.id,
                select(func.max(StageRow.id)).where(StageRow.model_id == ModelRow.id).scalar_subquery(),
                select(func.count(VersionRow.id)).where(VersionRow.model_id == ModelRow.id).scalar_subquery()
                ).where(ModelRow.name == bindparam("name"))


def _stage_stack(s: Session, model_id: int, stage: str) -> list[int]:
    """Replay the stage history: promote pushes a version id, rollback pops; the top is the current one."""
    stack: list[int] = []
    rows = s.execute(select(StageRow.action, StageRow.version_id).where(StageRow.model_id == model_id,
                     StageRow.stage == stage).order_by(StageRow.id))
    for action, version_id in rows:
        if action == "promote":
            stack.append(version_id)
        elif stack:
            stack.pop()
    return stack


def _check_stage(stage: str) -> None:
    if stage not in STAGES:
        raise ConfigError(f"unknown stage {stage!r}; expected one of {list(STAGES)}")


def _signature(path: Path) -> Signature:
    """Size, modification and change times and inode of a file: rewriting it moves at least one of them (the change
    time even when the modification time is set back)."""
    st = os.stat(path)
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)


def _verify_files(watch: _Watch) -> tuple[str | None, dict[str, Signature]]:
    """(the first problem or None, the signatures of the files that verified). A file is hashed again only when
    its signature differs from the one recorded when it last matched."""
    folder = watch.info.bundle_dir
    verified: dict[str, Signature] = {}
    for rel, expected in watch.hashes.items():
        path = folder / rel
        try:
            sig = _signature(path)
            if watch.stats.get(rel) == sig:
                continue
            if rel == METADATA:
                ok = read_metadata(folder).get("metadata_sha256") == expected
            else:
                ok = _sha(path.read_bytes()) == expected
        except BundleInvalid:
            ok = False
        except OSError:
            return f"{rel} is missing or unreadable on disk since the bundle was loaded", verified
        if not ok:
            return f"{rel} changed on disk after the bundle was loaded and verified", verified
        verified[rel] = sig
    return None, verified


def _copy_verified(source: Path, dest: Path, bundle: Bundle) -> None:
    """Copy metadata.json and the files its hash list names (nothing else: no stray file or link) into `dest`."""
    for rel in (METADATA, *bundle.metadata["sha256"]):
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / rel, target)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _fsync_tree(folder: Path) -> None:
    """Flush the copied files to disk before the version is recorded."""
    for path in folder.rglob("*"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
