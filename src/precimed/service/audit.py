"""The audit trail: append-only and hash-chained, so any altered, inserted or deleted row is found.

Each row stores `row_hash = SHA-256(canonical JSON of its content, including prev_hash)`, and `prev_hash` is the
row_hash of the row before it (the first row links to 64 zeros). Sequence numbers run 1, 2, 3, … with no gap,
and `audit_head` holds the last seq and hash; it is updated in the same transaction as the append, under a
write lock (SQLite BEGIN IMMEDIATE, PostgreSQL SELECT … FOR UPDATE), so concurrent requests never fork the chain.

`verify()` recomputes every hash and link and compares the end of the table with the head:

- altered row: its content no longer matches its hash (or, if the hash was recomputed too, the next row's link breaks)
- deleted row: a gap in the sequence (or, at the end, the head records a later row than the table holds)
- inserted row: a link that does not match, a sequence number out of place, or rows beyond the head

A writer who can rewrite every row *and* the head can forge a consistent chain; anchors (a seq and its hash
recorded elsewhere, e.g. printed by `precimed audit verify` into a ticket) catch that too.

What is recorded: who (token id and role), when, action, model and version, the SHA-256 digest of the input,
the outcome and HTTP status, and a small detail object of ids and counts. Never patient data.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from precimed.service.db import GENESIS, AuditHead, AuditRow, Database, current_head, to_json, utcnow

HASHED = ("seq", "at", "actor", "role", "action", "model", "version", "input_digest", "outcome", "status", "detail",
          "prev_hash")


def digest(value: Any) -> str:
    """SHA-256 of bytes, or of a value's canonical JSON (sorted keys): the same input always gives the same digest."""
    data = value if isinstance(value, bytes) else to_json(value).encode()
    return hashlib.sha256(data).hexdigest()


def row_hash(row: AuditRow) -> str:
    """The hash a row must carry: SHA-256 over its content and the previous row's hash."""
    content = {name: getattr(row, name) for name in HASHED}
    return hashlib.sha256(json.dumps(content, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass
class Problem:
    seq: int | None
    kind: str  # altered | deleted | inserted | head
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "kind": self.kind, "message": self.message}


@dataclass
class Verification:
    """What `verify` found: ok, the number of rows, the head, and each problem."""

    rows: int
    head_seq: int
    head_hash: str
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "rows": self.rows, "head_seq": self.head_seq, "head_hash": self.head_hash,
                "problems": [p.to_dict() for p in self.problems]}


class AuditLog:
    """Append to and verify the audit table of a Database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def record(self, session: Session, *, actor: str, role: str, action: str, model: str | None = None,
               version: int | None = None, input_digest: str | None = None, outcome: str = "ok",
               status: int = 200, detail: dict[str, Any] | None = None) -> AuditRow:
        """Append one row inside the caller's write transaction (so it commits with the change it records)."""
        head = current_head(session)
        row = AuditRow(seq=head.seq + 1, at=utcnow(), actor=actor[:64], role=role[:32], action=action[:64],
                       model=model, version=version, input_digest=input_digest, outcome=outcome[:32],
                       status=int(status), detail=to_json(detail or {}), prev_hash=head.row_hash)
        row.row_hash = row_hash(row)
        session.add(row)
        head.seq, head.row_hash = row.seq, row.row_hash
        session.flush()
        return row

    def append(self, **fields: Any) -> AuditRow:
        """Append one row in its own transaction."""
        with self.db.transaction() as s:
            return self.record(s, **fields)

    def rows(self, *, after: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
        with self.db.session() as s:
            found = s.execute(select(AuditRow).where(AuditRow.seq > after).order_by(AuditRow.seq).limit(limit))
            return [{name: getattr(r, name) for name in (*HASHED, "row_hash")} for r in found.scalars()]

    def verify(self, anchors: Iterable[tuple[int, str]] = ()) -> Verification:
        """Walk the chain from the first row; report every altered, inserted or deleted row."""
        problems: list[Problem] = []
        expected_seq, prev, count = 1, GENESIS, 0
        last_seq, last_hash = 0, GENESIS
        seen: dict[int, str] = {}
        with self.db.session() as s:
            head = s.execute(select(AuditHead).where(AuditHead.id == 1)).scalar_one_or_none()
            for row in s.execute(select(AuditRow).order_by(AuditRow.seq)).scalars().yield_per(500):
                count += 1
                gap = row.seq > expected_seq
                if row.seq < expected_seq:
                    problems.append(Problem(row.seq, "inserted", f"row {row.seq} is out of sequence (expected "
                                            f"{expected_seq} or later): a row was inserted"))
                elif row.seq > expected_seq:
                    gap = (f"row {expected_seq}" if row.seq == expected_seq + 1
                           else f"rows {expected_seq}–{row.seq - 1}")
                    problems.append(Problem(expected_seq, "deleted", f"{gap} missing: deleted"))
                recomputed = row_hash(row)
                if recomputed != row.row_hash:
                    problems.append(Problem(row.seq, "altered", f"row {row.seq} ({row.action} by {row.actor}) does "
                                            "not match its hash: its content was altered"))
                if row.prev_hash != prev and not gap:  # after a gap the broken link is the deletion itself
                    problems.append(Problem(row.seq, "altered", f"row {row.seq} does not link to the row before it: "
                                            "that row was altered and re-hashed, or inserted"))
                prev, last_seq, last_hash = row.row_hash, row.seq, row.row_hash
                seen[row.seq] = row.row_hash
                expected_seq = max(expected_seq, row.seq) + 1
        head_seq, head_hash = (head.seq, head.row_hash) if head is not None else (0, GENESIS)
        if head is None:
            problems.append(Problem(None, "head", "the audit head row is missing"))
        elif head_seq > last_seq:
            problems.append(Problem(last_seq + 1, "deleted", f"the head records row {head_seq} but the table ends at "
                                    f"row {last_seq}: row(s) deleted from the end"))
        elif head_seq < last_seq:
            problems.append(Problem(head_seq + 1, "inserted", f"the table holds rows up to {last_seq} beyond the head "
                                    f"({head_seq}): row(s) appended outside the audit log"))
        elif head_hash != last_hash:
            problems.append(Problem(last_seq, "altered", f"the last row {last_seq} does not match the head's hash"))
        for seq, expected in anchors:
            got = seen.get(int(seq))
            if got != expected:
                problems.append(Problem(int(seq), "altered" if got else "deleted",
                                        f"anchor: row {seq} should have hash {expected[:12]}…, found "
                                        f"{(got or 'no row')[:12]}"))
        return Verification(count, head_seq, head_hash, problems)
