"""Shared fixtures: run the CLI in-process, small fast configs on real cohorts."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def run_cli(monkeypatch, capsys):
    """Run `precimed ARGS` in-process; return (exit code, stdout, stderr)."""
    from precimed.cli import main

    def run(*args: str) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["precimed", *map(str, args)])
        code = 0
        try:
            main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture
def write_config(tmp_path):
    def write(config: dict, name: str = "run.yaml") -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    return write


@pytest.fixture
def pg_url():
    """A fresh database on the test PostgreSQL server (``PRECIMED_TEST_PG_URL``; ``make test`` starts one) for one
    test, as a postgresql+psycopg:// URL, dropped afterwards; the test is skipped, with the reason, when no server
    is set or reachable."""
    import os
    import uuid
    import warnings

    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from precimed.service.db import normalize_url, redact

    def skip(reason: str) -> None:
        warnings.warn(f"PostgreSQL tests skipped: {reason}", UserWarning, stacklevel=2)
        pytest.skip(reason)

    server = os.environ.get("PRECIMED_TEST_PG_URL", "")
    if not server:
        skip("PRECIMED_TEST_PG_URL is not set (scripts/start_postgres.sh starts a server and prints the URL)")
    url = make_url(normalize_url(server))
    name = f"precimed_t_{uuid.uuid4().hex[:10]}"
    try:
        admin = create_engine(url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # unreachable server, bad credentials, no CREATEDB right
        skip(f"PostgreSQL at {redact(server)} not usable: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
    yield url.set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()
