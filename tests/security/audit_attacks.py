"""Helpers of the audit and database attacks (tests/security/test_audit_chain.py, test_database_health.py):
raw SQL as an attacker with write access to the database would run it, and the CLI run as a user runs it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text


def sql(db_url: str, statement: str, **params) -> list:
    """Run one statement outside the service (its own engine, committed)."""
    engine = create_engine(db_url)
    try:
        with engine.begin() as conn:
            result = conn.execute(text(statement), params)
            return list(result) if result.returns_rows else []
    finally:
        engine.dispose()


def kinds(report: dict) -> set[str]:
    return {p["kind"] for p in report["problems"]}


def verify(registry: Path) -> dict:
    from precimed.service.cli_commands import audit_verify

    return audit_verify(registry)


def run_cli(args: list[str], capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> tuple[int, str, str]:
    """`precimed ARGS` through the real entry point: (exit code, stdout, stderr)."""
    from precimed.cli import main

    monkeypatch.setattr(sys, "argv", ["precimed", *args])
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def checkpoint_lines(registry: Path) -> list[str]:
    return (registry / "audit-checkpoints.jsonl").read_text().splitlines()
