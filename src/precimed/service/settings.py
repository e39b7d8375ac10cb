"""Service settings: one typed object that `create_app` and `precimed serve` share.

Every knob has a safe default, so `ServiceSettings(registry=DIR)` runs with no setup: the database is a SQLite
file in the registry folder. `from_env` reads the few knobs an operator may want to change without code:
PRECIMED_DB_URL, PRECIMED_RATE_PER_MINUTE, PRECIMED_RATE_BURST, PRECIMED_MAX_BODY_BYTES, PRECIMED_MAX_IMAGE_BYTES
(a DICOM upload), PRECIMED_MAX_PATIENTS; the vital-sign monitors' PRECIMED_MAX_MONITORED_PATIENTS,
PRECIMED_MAX_VITAL_STREAMS and PRECIMED_VITALS_IDLE_HOURS; the audit trail's PRECIMED_AUDIT_KEY_FILE,
PRECIMED_AUDIT_CHECKPOINTS, PRECIMED_AUDIT_CHECKPOINTS_MIRROR and PRECIMED_AUDIT_CHECKPOINT_EVERY; and the
server-side evaluation's PRECIMED_EVALUATE_SECONDS and PRECIMED_EVALUATE_MEMORY_BYTES; and the group-commit
writer's PRECIMED_COMMIT_QUEUE and PRECIMED_COMMIT_BATCH; and the web pages' PRECIMED_SESSION_MINUTES.

The audit key and checkpoint file default to the registry folder. That keeps a fresh install working, but an
attacker who can write the folder can also read the key: in production put the key (and a mirror of the
checkpoints) where the database's writers cannot reach, e.g. a secrets mount and a second volume.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from precimed.errors import ConfigError

DB_FILE = "precimed.db"
AUDIT_KEY_FILE = "audit.key"
AUDIT_CHECKPOINTS_FILE = "audit-checkpoints.jsonl"


class ServiceSettings(BaseModel):
    """What the service needs to start; unknown keys are refused by name."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    registry: Path = Field(description="registry folder: registered bundles live under models/<name>/<version>/")
    db_url: str | None = Field(default=None, description="SQLAlchemy URL; default sqlite:///<registry>/precimed.db")
    max_body_bytes: int = Field(default=1_000_000, ge=1_024, description="largest request body (413 above)")
    max_upload_bytes: int = Field(default=256_000_000, ge=1_024, description="largest bundle upload (zip)")
    max_image_bytes: int = Field(default=64 * 2**20, ge=1_024, description="largest DICOM file sent to an imaging "
                                 "model's predict route (Content-Type: application/dicom); 413 above")
    max_patients: int = Field(default=1_000, ge=1, le=100_000, description="patients per predict/explain request")
    max_observations: int = Field(default=10_000, ge=1, description="vital-sign observations per request")
    max_monitored_patients: int = Field(default=10_000, ge=1, description="patients whose vital-sign episode state "
                                        "is kept in memory (per worker); the least recently seen is forgotten first")
    max_vital_streams: int = Field(default=16, ge=1, le=1_000, description="model × version × threshold streams "
                                   "of vital-sign monitors followed at once; the oldest goes with its patients")
    vitals_idle_hours: float = Field(default=72.0, gt=0, description="a patient with no vital signs for this long "
                                     "is forgotten by the monitors (an episode restarts)")
    rate_per_minute: float = Field(default=600.0, gt=0, description="sustained requests per minute per token")
    rate_burst: int = Field(default=60, ge=1, description="requests a token may make at once before throttling")
    sqlite_synchronous: Literal["NORMAL", "FULL", "EXTRA"] = Field(
        default="FULL", description="SQLite fsync policy; FULL keeps every acknowledged audit record on power loss")
    migrate: bool = Field(default=True, description="run `alembic upgrade head` when the app is created")
    bundle_cache: int = Field(default=8, ge=1, description="loaded bundles kept in memory")
    bundle_recheck_seconds: float = Field(default=30.0, ge=0, description="how often a loaded bundle's files are "
                                          "re-checked (size and times; re-hashed when they moved); 0: every use")
    explain_top_k: int = Field(default=5, ge=1, le=50, description="contributing features per explained patient")
    audit_key_file: Path | None = Field(default=None, description="the audit chain's HMAC key (created 0600 on "
                                        "first start); default <registry>/audit.key. Keep it out of the database")
    audit_checkpoints: Path | None = Field(default=None, description="append-only JSON-lines file of the chain's "
                                           "genesis and signed checkpoints; default "
                                           "<registry>/audit-checkpoints.jsonl")
    audit_checkpoints_mirror: Path | None = Field(default=None, description="optional second checkpoint file "
                                                  "(another volume or host mount), written alongside the first")
    audit_checkpoint_every: int = Field(default=100, ge=1, le=1_000_000,
                                        description="sign a checkpoint every N audit rows (and at start, on "
                                        "verification and at shutdown)")
    evaluate_seconds: float = Field(default=300.0, gt=0, le=86_400, description="wall and CPU time one "
                                    "server-side evaluation of an uploaded bundle may use before it is killed (422)")
    evaluate_memory_bytes: int = Field(default=8 * 2**30, ge=2**28, description="address space one server-side "
                                       "evaluation may use before it is stopped (422)")
    commit_queue: int = Field(default=256, ge=1, le=1_000_000, description="audited writes that may wait for "
                              "the group-commit writer (per worker); one more is refused with 503 and Retry-After")
    commit_batch: int = Field(default=128, ge=1, le=100_000, description="most audited writes committed together "
                              "in one transaction (one fsync) by the group-commit writer")
    integrity_check_seconds: float = Field(default=60.0, ge=0, description="how long /readyz reuses the result "
                                           "of the SQLite page check (PRAGMA quick_check); 0 checks every call")
    served_features_days: int = Field(default=3650, ge=0, le=36_500, description="days the encoded feature vector "
                                      "and outputs of each served patient are kept for drift checks (table "
                                      "served_features, purged at start and daily); 0 keeps nothing")
    session_minutes: int = Field(default=30, ge=1, le=24 * 60, description="minutes a web sign-in lasts (cookie "
                                 "precimed_session; table web_sessions) before the browser must sign in again")

    @property
    def database_url(self) -> str:
        """The database URL in use (the SQLite default lives in the registry folder)."""
        if self.db_url:
            return self.db_url
        return f"sqlite:///{(Path(self.registry).resolve() / DB_FILE).as_posix()}"

    @property
    def audit_key_path(self) -> Path:
        """Where the audit key lives (default: in the registry folder)."""
        return Path(self.audit_key_file or Path(self.registry) / AUDIT_KEY_FILE).resolve()

    @property
    def audit_checkpoint_paths(self) -> tuple[Path, ...]:
        """The checkpoint file, then its mirror if one is configured."""
        main = Path(self.audit_checkpoints or Path(self.registry) / AUDIT_CHECKPOINTS_FILE).resolve()
        mirror = self.audit_checkpoints_mirror
        return (main,) if mirror is None else (main, Path(mirror).resolve())

    @classmethod
    def from_env(cls, registry: Path | str, db_url: str | None = None, **overrides: object) -> ServiceSettings:
        """Settings for `precimed serve`: arguments first, then PRECIMED_* environment variables, then defaults."""
        env = {
            "db_url": os.environ.get("PRECIMED_DB_URL"),
            "rate_per_minute": os.environ.get("PRECIMED_RATE_PER_MINUTE"),
            "rate_burst": os.environ.get("PRECIMED_RATE_BURST"),
            "max_body_bytes": os.environ.get("PRECIMED_MAX_BODY_BYTES"),
            "max_image_bytes": os.environ.get("PRECIMED_MAX_IMAGE_BYTES"),
            "max_patients": os.environ.get("PRECIMED_MAX_PATIENTS"),
            "max_monitored_patients": os.environ.get("PRECIMED_MAX_MONITORED_PATIENTS"),
            "max_vital_streams": os.environ.get("PRECIMED_MAX_VITAL_STREAMS"),
            "vitals_idle_hours": os.environ.get("PRECIMED_VITALS_IDLE_HOURS"),
            "served_features_days": os.environ.get("PRECIMED_SERVED_FEATURES_DAYS"),
            "audit_key_file": os.environ.get("PRECIMED_AUDIT_KEY_FILE"),
            "audit_checkpoints": os.environ.get("PRECIMED_AUDIT_CHECKPOINTS"),
            "audit_checkpoints_mirror": os.environ.get("PRECIMED_AUDIT_CHECKPOINTS_MIRROR"),
            "audit_checkpoint_every": os.environ.get("PRECIMED_AUDIT_CHECKPOINT_EVERY"),
            "evaluate_seconds": os.environ.get("PRECIMED_EVALUATE_SECONDS"),
            "evaluate_memory_bytes": os.environ.get("PRECIMED_EVALUATE_MEMORY_BYTES"),
            "commit_queue": os.environ.get("PRECIMED_COMMIT_QUEUE"),
            "commit_batch": os.environ.get("PRECIMED_COMMIT_BATCH"),
            "session_minutes": os.environ.get("PRECIMED_SESSION_MINUTES"),
        }
        values: dict[str, object] = {k: v for k, v in env.items() if v not in (None, "")}
        if db_url:
            values["db_url"] = db_url
        values.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls(registry=Path(registry), **values)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise ConfigError(f"service settings: {problems}") from None
