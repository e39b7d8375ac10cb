"""Plain functions the `precimed` CLI calls: serve, registry, tokens and audit.

Each opens the registry's database (migrating it first, as the server does), does one thing, records it in the
audit trail as `cli:<os user>` and returns plain data for the CLI to print. Errors are PrecimedError subclasses,
so the CLI prints one line and exits 2.
"""

from __future__ import annotations

import getpass
import os
import sys
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from precimed import jsonio
from precimed.errors import ConfigError
from precimed.service.app import configure_logging
from precimed.service.audit import AuditLog
from precimed.service.auth import TokenStore, check_role
from precimed.service.db import Database
from precimed.service.registry import Registry
from precimed.service.settings import ServiceSettings

CLI_ROLE = "cli"


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"[:64]
    except (KeyError, OSError):
        return "cli:unknown"


def _open(registry: Path | str, db: str | None) -> tuple[ServiceSettings, Database, AuditLog, Registry]:
    settings = ServiceSettings.from_env(registry, db)
    database = Database(settings.database_url, sqlite_synchronous=settings.sqlite_synchronous)
    database.migrate()
    audit = AuditLog(database)
    return settings, database, audit, Registry(settings.registry, database, audit)


def serve(registry: Path | str, db: str | None = None, host: str = "127.0.0.1", port: int = 8000,
          workers: int = 1, log_level: str = "info") -> None:
    """Run the service with uvicorn (migrating the database first). Several workers share the database;
    rate limits, metrics and vital-sign episode state are per worker."""
    import uvicorn

    from precimed.service.app import create_app

    os.environ["PRECIMED_LOG_LEVEL"] = log_level
    configure_logging()
    settings = ServiceSettings.from_env(registry, db)
    if workers > 1:
        os.environ["PRECIMED_REGISTRY"] = str(Path(registry).resolve())
        if db:
            os.environ["PRECIMED_DB_URL"] = db
        Database(settings.database_url, sqlite_synchronous=settings.sqlite_synchronous).migrate()
        uvicorn.run("precimed.service.app:app_from_env", factory=True, host=host, port=port, workers=workers,
                    access_log=False, log_level=log_level)
        return
    uvicorn.run(create_app(settings), host=host, port=port, access_log=False, log_level=log_level)


def registry_add(registry: Path | str, bundle: Path | str, *, name: str | None = None,
                 fhir_mapping: Path | str | None = None, db: str | None = None) -> dict[str, Any]:
    """Register BUNDLE (hashes verified, copied atomically) as the next version; returns the version's info."""
    _, database, _, reg = _open(registry, db)
    try:
        mapping = None
        if fhir_mapping is not None:
            from precimed.bundle import load_bundle
            from precimed.service.routes.fhir import parse_mapping

            path = Path(fhir_mapping)
            if not path.is_file():
                raise ConfigError(f"{path}: no such FHIR mapping file")
            mapping = path.read_bytes()
            parse_mapping(mapping, load_bundle(bundle).features)
        return reg.add(bundle, name=name, fhir_mapping=mapping, actor=_actor(), role=CLI_ROLE).to_dict()
    finally:
        database.dispose()


def registry_models(registry: Path | str, db: str | None = None) -> list[dict[str, Any]]:
    """Models with their versions and current staging / production versions."""
    _, database, _, reg = _open(registry, db)
    try:
        return reg.list()
    finally:
        database.dispose()


def registry_list(registry: Path | str, db: str | None = None, as_json: bool = False) -> None:
    """Print the registered models: a table (one row per version: stages, task, the bundle's metadata hash, when
    registered, whether it has a FHIR mapping), or with `as_json` the full listing as JSON (registry_models)."""
    models = registry_models(registry, db)
    if as_json:
        sys.stdout.write(jsonio.dumps(models, indent=2) + "\n")
        return
    console = Console()
    if not models:
        console.print(f"no models registered in {registry}", markup=False, highlight=False)
        return
    table = Table(title=f"models in {registry}", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("model", "version", "stages", "task", "bundle", "registered", "fhir"):
        table.add_column(column, overflow="fold", no_wrap=column in ("model", "bundle"))
    for m in models:
        for i, v in enumerate(m["versions"]):
            table.add_row(Text(m["name"] if i == 0 else ""), str(v["version"]), ", ".join(v["stages"]) or "-",
                          v["task"], Text(v["bundle"].partition("@")[2] or v["bundle"]),
                          v["registered_at"][:16].replace("T", " "), "yes" if v["fhir_mapping"] else "no",
                          end_section=i == len(m["versions"]) - 1)
    console.print(table)


def registry_promote(registry: Path | str, name: str, version: int, stage: str = "production",
                     db: str | None = None) -> dict[str, Any]:
    """Put VERSION of NAME in STAGE (its bundle is re-verified first)."""
    _, database, _, reg = _open(registry, db)
    try:
        reg.load(reg.info(name, version))
        return reg.promote(name, version, stage, actor=_actor(), role=CLI_ROLE).to_dict()
    finally:
        database.dispose()


def registry_rollback(registry: Path | str, name: str, stage: str = "production",
                      db: str | None = None) -> dict[str, Any]:
    """Return STAGE of NAME to the version it held before the last promotion."""
    _, database, _, reg = _open(registry, db)
    try:
        return reg.rollback(name, stage, actor=_actor(), role=CLI_ROLE).to_dict()
    finally:
        database.dispose()


def tokens_create(registry: Path | str, role: str, label: str = "", db: str | None = None) -> tuple[str, str]:
    """A new token for ROLE: (public id, token). Print the token once; only its hash is stored."""
    check_role(role)
    _, database, audit, _ = _open(registry, db)
    try:
        token_id, token = TokenStore(database).create(role, label)
        audit.append(actor=_actor(), role=CLI_ROLE, action="token_create", detail={"token_id": token_id, "role": role})
        return token_id, token
    finally:
        database.dispose()


def tokens_revoke(registry: Path | str, token_id: str, db: str | None = None) -> None:
    """Revoke a token by its public id (tok_…)."""
    _, database, audit, _ = _open(registry, db)
    try:
        if not TokenStore(database).revoke(token_id):
            raise ConfigError(f"no active token {token_id!r}; `precimed tokens list` shows them")
        audit.append(actor=_actor(), role=CLI_ROLE, action="token_revoke", detail={"token_id": token_id})
    finally:
        database.dispose()


def tokens_list(registry: Path | str, db: str | None = None) -> list[dict[str, Any]]:
    _, database, _, _ = _open(registry, db)
    try:
        return TokenStore(database).list()
    finally:
        database.dispose()


def audit_verify(registry: Path | str, db: str | None = None, anchors: list[str] | None = None) -> dict[str, Any]:
    """Walk the audit chain; report altered, inserted or deleted rows. Anchors are 'SEQ:HASH' recorded earlier."""
    parsed = []
    for a in anchors or []:
        seq, _, digest = a.partition(":")
        if not seq.isdigit() or len(digest) != 64:
            raise ConfigError(f"anchor {a!r}: expected SEQ:SHA256 (as printed by `precimed audit verify`)")
        parsed.append((int(seq), digest))
    _, database, audit, _ = _open(registry, db)
    try:
        return audit.verify(parsed).to_dict()
    finally:
        database.dispose()
