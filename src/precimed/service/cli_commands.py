"""Plain functions the `precimed` CLI calls: serve, registry, tokens and audit.

Each opens the registry's database (migrating it first and checking its pages, as the server does), opens the
audit chain (refusing to start a new chain where one existed), does one thing, records it in the audit trail as
`cli:<os user>`, signs a checkpoint and returns plain data for the CLI to print. Errors are PrecimedError
subclasses, so the CLI prints one line and exits 2; a database error anywhere (a corrupted page, a file that went
away) becomes one too (DatabaseUnavailable), never a traceback.
"""

from __future__ import annotations

import getpass
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text
from sqlalchemy.exc import SQLAlchemyError

from precimed import jsonio
from precimed.errors import ConfigError
from precimed.limits import check_input_size
from precimed.service.app import configure_logging
from precimed.service.audit import AuditLog
from precimed.service.auth import TokenStore, check_role
from precimed.service.container import open_audit
from precimed.service.db import Database, DatabaseUnavailable, describe, redact
from precimed.service.registry import Registry
from precimed.service.settings import ServiceSettings

CLI_ROLE = "cli"


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"[:64]
    except (KeyError, OSError):
        return "cli:unknown"


@dataclass
class Opened:
    """What a command works with: settings, database, the audit log under its key, the registry and tokens."""

    settings: ServiceSettings
    database: Database
    audit: AuditLog
    registry: Registry
    tokens: TokenStore


@contextmanager
def opened(registry: Path | str, db: str | None, *, start: bool = True) -> Iterator[Opened]:
    """Open, migrate and check the database and the audit chain; on exit sign a checkpoint and close.

    `start=False` (verification) neither creates a key nor opens the chain. Any database error inside is
    DatabaseUnavailable: one line naming the database (password hidden) and the error's type."""
    settings = ServiceSettings.from_env(registry, db)
    database = Database(settings.database_url, sqlite_synchronous=settings.sqlite_synchronous)
    try:
        try:
            database.migrate()
            database.check()
            audit = open_audit(settings, database, start=start)
            yield Opened(settings, database, audit, Registry(settings.registry, database, audit),
                         TokenStore(database, audit))
            if start:
                audit.checkpoint()
        except SQLAlchemyError as exc:
            raise DatabaseUnavailable(f"database {redact(settings.database_url)}: {describe(exc)}") from None
    finally:
        database.dispose()


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
        with opened(registry, db):  # migrate, check pages, open the audit chain once, before the workers start
            pass
        uvicorn.run("precimed.service.app:app_from_env", factory=True, host=host, port=port, workers=workers,
                    access_log=False, log_level=log_level)
        return
    uvicorn.run(create_app(settings), host=host, port=port, access_log=False, log_level=log_level)


def registry_add(registry: Path | str, bundle: Path | str, *, name: str | None = None,
                 fhir_mapping: Path | str | None = None, db: str | None = None) -> dict[str, Any]:
    """Register BUNDLE (hashes verified, copied atomically) as the next version; returns the version's info."""
    with opened(registry, db) as o:
        mapping = None
        if fhir_mapping is not None:
            from precimed.bundle import load_bundle
            from precimed.service.routes.fhir import parse_mapping

            path = Path(fhir_mapping)
            if not path.is_file():
                raise ConfigError(f"{path}: no such FHIR mapping file")
            check_input_size(path)
            mapping = path.read_bytes()
            parse_mapping(mapping, load_bundle(bundle).features)
        return o.registry.add(bundle, name=name, fhir_mapping=mapping, actor=_actor(), role=CLI_ROLE).to_dict()


def registry_models(registry: Path | str, db: str | None = None) -> list[dict[str, Any]]:
    """Models with their versions and current staging / production versions."""
    with opened(registry, db) as o:
        return o.registry.list()


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
    with opened(registry, db) as o:
        o.registry.load(o.registry.info(name, version))
        return o.registry.promote(name, version, stage, actor=_actor(), role=CLI_ROLE).to_dict()


def registry_rollback(registry: Path | str, name: str, stage: str = "production",
                      db: str | None = None) -> dict[str, Any]:
    """Return STAGE of NAME to the version it held before the last promotion."""
    with opened(registry, db) as o:
        return o.registry.rollback(name, stage, actor=_actor(), role=CLI_ROLE).to_dict()


def tokens_create(registry: Path | str, role: str, label: str = "", db: str | None = None) -> tuple[str, str]:
    """A new token for ROLE: (public id, token). Print the token once; only its hash is stored. The token and its
    audit row are written in one transaction."""
    check_role(role)
    with opened(registry, db) as o:
        return o.tokens.create(role, label, actor=_actor(), actor_role=CLI_ROLE)


def tokens_revoke(registry: Path | str, token_id: str, db: str | None = None) -> None:
    """Revoke a token by its public id (tok_…), audited in the same transaction."""
    with opened(registry, db) as o:
        if not o.tokens.revoke(token_id, actor=_actor(), actor_role=CLI_ROLE):
            raise ConfigError(f"no active token {token_id!r}; `precimed tokens list` shows them")


def tokens_list(registry: Path | str, db: str | None = None) -> list[dict[str, Any]]:
    """Every token: id, role, label, created and revoked times (never the token or its hash)."""
    with opened(registry, db) as o:
        return o.tokens.list()


def parse_anchors(anchors: list[str] | None) -> list[tuple[int, str]]:
    """'SEQ:HASH' anchors recorded earlier (e.g. copied from a verification into a ticket)."""
    parsed = []
    for a in anchors or []:
        seq, _, digest = a.partition(":")
        if not seq.isdigit() or len(digest) != 64:
            raise ConfigError(f"anchor {a!r}: expected SEQ:SHA256 (as printed by `precimed audit verify`)")
        parsed.append((int(seq), digest))
    return parsed


def audit_verify(registry: Path | str, db: str | None = None, anchors: list[str] | None = None) -> dict[str, Any]:
    """Walk the audit chain and check it against its key, its checkpoint file(s) and any anchors ('SEQ:HASH'
    recorded earlier), and check stored results, stages, versions and tokens against it. Returns the report
    (`ok`, counts, head, each problem with its kind); a clean chain is checkpointed. Without the key: one line."""
    parsed = parse_anchors(anchors)
    with opened(registry, db, start=False) as o:
        return o.audit.verify(parsed).to_dict()
