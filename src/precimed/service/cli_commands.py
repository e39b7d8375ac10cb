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


# ----- gated retraining (`precimed retrain`) ------------------------------------------------------------------------
RETRAIN_PROMOTED = "retrain:promoted_to_staging"
RETRAIN_REJECTED = "retrain:rejected"
RETRAIN_FAILED = "retrain:failed"


def _run_folder(out: Path, now: Any) -> Path:
    """One folder per run, named by the run's time: 1990-12-31, or 2024-05-06T101500 when not at midnight."""
    stamp = now.strftime("%Y-%m-%d") if (now.hour, now.minute, now.second) == (0, 0, 0) else \
        now.strftime("%Y-%m-%dT%H%M%S")
    return out / stamp


def _gate_detail(decision: Any) -> dict[str, Any]:
    return {g.name: {"status": g.status, "value": g.value, "threshold": g.threshold} for g in decision.gates}


def _window_detail(doc: dict[str, Any]) -> dict[str, Any]:
    """The data window for the audit row: counts, time range and id digests (never an id)."""
    w = doc["window"]
    part = ("rows", "events", "time_range", "ids_sha256")
    return {"rows": w["rows"], "time_column": w.get("time_column"), "time_range": w.get("time_range"),
            "train": {k: w["train"].get(k) for k in part}, "holdout": {k: w["holdout"].get(k) for k in part}}


def retrain_once(registry: Path | str, name: str, data: str, policy: Any, run_dir: Path | str, *, now: Any,
                 trigger: str, db: str | None = None, echo: Any = None) -> dict[str, Any]:
    """One gated retraining run of NAME's production champion; returns what happened.

    The challenger is registered and put in staging only when every gate holds; production is never touched. One
    audit row records the outcome (promoted_to_staging, rejected or failed) with the gate values, the data window
    (counts, time range, id digests), the trigger and the SHA-256 of decision.json. A failure before registration
    leaves the registry as it was; the failure is audited (the error's type and the SHA-256 of its message, which
    may quote data) and re-raised."""
    from precimed.workflows.retraining import challenge

    run_dir = Path(run_dir)
    if run_dir.exists():
        raise ConfigError(f"{run_dir} already exists; a retraining run writes a new folder (choose another --out)")
    actor = _actor()
    base = {"trigger": trigger, "started_by": actor, "now": now.isoformat(), "out": str(run_dir)}
    with opened(registry, db) as o:
        stage, champion, registered = "resolve", None, None
        try:
            champion = o.registry.resolve(name)
            o.registry.load(champion)  # the champion's bundle re-verified before it is used
            stage = "challenge"
            decision = challenge(champion.bundle_dir, data, policy, run_dir, trigger={"by": trigger, "user": actor},
                                 now=now, echo=echo or (lambda _m: None))
            version = champion.version
            if decision.promote:
                stage = "register"
                registered = o.registry.add(decision.paths["bundle"], name=name, actor=actor, role=CLI_ROLE)
                stage = "promote"
                o.registry.promote(name, registered.version, "staging", actor=actor, role=CLI_ROLE)
                version = registered.version
        except BaseException as exc:
            import hashlib

            detail = base | {"stage": stage, "error": type(exc).__name__,
                             "error_sha256": hashlib.sha256(str(exc).encode()).hexdigest(),
                             "champion": None if champion is None else {"version": champion.version,
                                                                        "bundle": champion.bundle_ref},
                             "registered_version": None if registered is None else registered.version}
            o.audit.append(actor=actor, role=CLI_ROLE, action=RETRAIN_FAILED, model=name,
                           version=None if champion is None else champion.version, outcome="failed", status=500,
                           detail=detail)
            raise
        action = RETRAIN_PROMOTED if decision.promote else RETRAIN_REJECTED
        detail = base | {"champion": {"version": champion.version, "bundle": champion.bundle_ref},
                         "challenger": {"version": registered.version if registered else None,
                                        "bundle": decision.doc["challenger"]["bundle"],
                                        "kind": decision.doc["challenger"]["kind"]},
                         "gates": _gate_detail(decision), "window": _window_detail(decision.doc),
                         "report_sha256": decision.report_sha256}
        o.audit.append(actor=actor, role=CLI_ROLE, action=action, model=name, version=version,
                       input_digest=decision.report_sha256, outcome="promoted" if decision.promote else "rejected",
                       detail=detail)
    return {"now": now.isoformat(), "action": action, "promote": decision.promote, "champion": champion.version,
            "version": registered.version if registered else None, "summary": decision.doc["summary"],
            "gates": [g.to_dict() for g in decision.gates], "window": _window_detail(decision.doc),
            "out": str(run_dir), "report": str(decision.paths["report"]), "decision": str(decision.paths["decision"])}


def retrain(registry: Path | str, name: str, data: str, policy: Path | str, *, out: Path | str | None = None,
            db: str | None = None, every: str | None = None, clock: str = "system", start: str | None = None,
            until: str | None = None, echo: Any = None, on_result: Any = None) -> list[dict[str, Any]]:
    """`precimed retrain`: one gated retraining run now, or (``every``) one per period.

    ``clock="simulated"`` replays the past from ``start`` without sleeping; each run's ``now`` is the simulated time
    and sees only the rows whose time column is at or before it. With the system clock the schedule sleeps between
    runs (Ctrl-C stops it; cron calling `precimed retrain` once per period is the other way). Every run writes
    OUT/<time of the run>/. A single run's failure is raised (one line, exit 2); a scheduled run's failure is
    recorded (audit row, result with ``action`` retrain:failed) and the schedule goes on. ``on_result`` is called
    with each run's result as it finishes."""
    from precimed.errors import PrecimedError
    from precimed.service.registry import check_name
    from precimed.workflows.retraining import (
        SimulatedClock,
        SystemClock,
        load_policy,
        parse_period,
        parse_time,
        run_schedule,
    )

    check_name(name)
    parsed = load_policy(policy)  # a policy error is one line before anything runs or is audited
    period = parse_period(every) if every is not None else None
    if clock not in ("system", "simulated"):
        raise ConfigError(f"--clock {clock!r}: choose system or simulated")
    first = parse_time(start, option="--start") if start is not None else None
    last = parse_time(until, option="--until") if until is not None else None
    if clock == "simulated" and first is None:
        raise ConfigError("--clock simulated needs --start (the simulated time of the first run)")
    if last is not None and period is None:
        raise ConfigError("--until ends a schedule; give --every too")
    if first is not None and last is not None and last < first:
        raise ConfigError(f"--until {until} is before --start {start}")
    out_dir = Path(out) if out is not None else Path("runs") / f"retrain-{name}"
    ticker = SimulatedClock(first) if clock == "simulated" else SystemClock()
    trigger = "schedule" if period is not None else _actor()

    def job(now: Any) -> dict[str, Any]:
        try:
            result = retrain_once(registry, name, data, parsed, _run_folder(out_dir, now), now=now, trigger=trigger,
                                  db=db, echo=echo)
        except PrecimedError as exc:
            if period is None:
                raise
            result = {"now": now.isoformat(), "action": RETRAIN_FAILED, "promote": False, "error": str(exc)}
        if on_result is not None:
            on_result(result)
        return result

    return run_schedule(ticker, job, every=period, start=first, until=last)


# ----- served feature vectors (`precimed drift --current-db`) --------------------------------------------------------
SERVED_READ = "served_window_read"


def _utc_bound(value: Any, option: str) -> str | None:
    """A window bound (date, ISO 8601 time or datetime; naive means UTC) as stored-time text, None if not given."""
    if value is None or value == "":
        return None
    import pandas as pd

    from precimed.service.served import cutoff

    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError):
        raise ConfigError(f"{option} {str(value)[:40]!r}: not a date or time; give e.g. 2026-01-31 or "
                          "2026-01-31T08:00:00Z") from None
    if pd.isna(stamp):
        raise ConfigError(f"{option}: not a date or time")
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return cutoff(0, stamp.to_pydatetime())


def served_window(registry: Path | str, name: str, *, since: Any = None, until: Any = None,
                  version: int | None = None, db: str | None = None) -> Any:
    """The served rows of model NAME created in [since, until) (all versions unless `version`) as a DataFrame: the
    encoded columns named as the bundle's `feature_names_out`, `created_at` (UTC), `prediction_id`, `index`,
    `model`, `version`, the outputs (`output_<name>`), the outcome in the task's label columns and `outcome_at`.
    `frame.attrs["bundles"]` maps each version to its registered bundle folder. The read is audited
    ("served_window_read": the bounds and the row count). A window spanning versions whose encoded features differ
    is one line asking for `version`."""
    from precimed.config import TaskConfig
    from precimed.errors import DataError
    from precimed.service.registry import check_name
    from precimed.service.served import window_frame, window_rows

    check_name(name)
    lo, hi = _utc_bound(since, "--since"), _utc_bound(until, "--until")
    if lo is not None and hi is not None and hi <= lo:
        raise ConfigError(f"--until {until} is not after --since {since}")
    with opened(registry, db) as o:
        rows = window_rows(o.database, name, since=lo, until=hi, version=version)
        versions = sorted({int(r.version) for r in rows}) or [version or o.registry.resolve(name).version]
        infos = {v: o.registry.info(name, v) for v in versions}
        metas = {v: o.registry.metadata(info) for v, info in infos.items()}
        names = {v: list(m["feature_names_out"]) for v, m in metas.items()}
        if len({tuple(n) for n in names.values()}) > 1:
            raise DataError(f"served rows of {name} in this window come from versions {versions} whose encoded "
                            "features differ; read one version at a time (--version)")
        last = versions[-1]
        frame = window_frame(rows, names[last], TaskConfig.model_validate(metas[last]["config"]["task"]))
        o.audit.append(actor=_actor(), role=CLI_ROLE, action=SERVED_READ, model=name, version=version,
                       detail={"since": lo, "until": hi, "rows": len(rows), "versions": versions})
    frame.attrs["bundles"] = {v: str(info.bundle_dir) for v, info in infos.items()}
    frame.attrs["window"] = {"model": name, "since": lo, "until": hi, "version": version}
    return frame


def drift_from_db(registry: Path | str, name: str, out: Path | str, *, bundle: Path | str | None = None,
                  since: Any = None, until: Any = None, version: int | None = None, db: str | None = None,
                  reference: str = "train", window: str | None = None, model: str | None = None, n_boot: int = 200,
                  overwrite: bool = False, echo: Any = None) -> dict[str, Any]:
    """`precimed drift --current-db REGISTRY --model-name NAME`: drift of the service's own traffic (the served
    window, encoded feature vectors) against the reference's encoded rows, per time window of `created_at`, with
    performance where outcomes were attached; writes drift.json and drift.html like `precimed drift`. The bundle is
    BUNDLE if given, else the registered bundle of `version` (default: the newest version in the window). An
    empty window is one line (DataError, exit 2)."""
    from precimed.bundle import load_bundle
    from precimed.errors import DataError
    from precimed.workflows._run import check_out_dir, check_outputs_apart
    from precimed.workflows.drift import parse_window
    from precimed.workflows.drift_frames_report import drift_report_frame

    say = echo or (lambda _m: None)
    out_dir = check_out_dir(out, overwrite)
    check_outputs_apart({"--out": out_dir}, {"BUNDLE": bundle, "--current-db": registry,
                                             "--reference": reference if reference != "train" else None})
    parse_window(window)
    frame = served_window(registry, name, since=since, until=until, version=version, db=db)
    bounds = frame.attrs["window"]
    label = (f"{name} served" + (f" v{version}" if version is not None else "")
             + f" [{bounds['since'] or 'start'}, {bounds['until'] or 'now'})")
    if len(frame) == 0:
        raise DataError(f"{label}: no served rows in this window of {registry}; nothing to compare (widen "
                        "--since/--until, or check served_features_days)")
    versions = sorted(int(v) for v in frame["version"].unique())
    chosen = Path(bundle) if bundle is not None else Path(frame.attrs["bundles"][version or versions[-1]])
    say(f"{len(frame)} served rows of {name} (versions {versions}); bundle "
        f"{chosen if bundle is not None else 'v' + str(version or versions[-1])}")
    return drift_report_frame(load_bundle(chosen), frame, out_dir, current_name=label, reference=reference,
                              encoded=True, time_column="created_at", window=window, model=model, n_boot=n_boot,
                              source={"registry": str(registry), **bounds, "versions": versions},
                              subtitle="encoded feature vectors stored by the service", overwrite=overwrite,
                              echo=say)
