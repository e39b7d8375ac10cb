"""The audit trail: append-only, keyed and hash-chained, anchored outside the database by signed checkpoints.

Rows
----
Each row stores `row_hash = HMAC-SHA256(audit key, canonical JSON of its content, including prev_hash)`, and
`prev_hash` is the row_hash of the row before it (the first row links to 64 zeros). Sequence numbers run 1, 2, 3, …
with no gap, and `audit_head` holds the last seq and hash; it is updated in the same transaction as the append,
under a write lock (SQLite BEGIN IMMEDIATE, PostgreSQL SELECT … FOR UPDATE), so concurrent requests never fork the
chain. Rows are appended one at a time by `record` (inside the transaction of the change they record) or many at
a time by the service's group-commit writer through `chain` (one transaction for the requests that arrived
together); both hash a row the same way. The key lives in a file outside the database (`audit_key_file`, default
`<registry>/audit.key`, created 0600; loaded and checked by the same code as the pseudonym key): whoever can write
the database but cannot read the key cannot produce a row hash that verifies, so a row rewritten and re-hashed
(with plain SHA-256 or a guessed key) is reported as altered.

Outside the database
--------------------
An append-only JSON-lines file (`audit_checkpoints`, default `<registry>/audit-checkpoints.jsonl`, optionally
mirrored to a second file) holds the chain's genesis record (chain id, time, key id, the first row's hash) and a
checkpoint `{seq, head_hash, at, mac}` every `audit_checkpoint_every` rows, at start, after a clean verification
and at shutdown (precimed.service.checkpoints). A checkpoint is signed only after the rows since the one before
were re-checked, so a tampered head is never signed.

At start (`open_chain`) the service refuses (one line, exit 2, and a `refusal` record in the file) to begin a new
chain where one existed: the file has a genesis but the table is empty, or its first row is not the genesis's,
or the key is not the chain's key, or the table holds keyed rows but the file has no genesis.

`verify()` reports each problem by kind:

- altered: a row's content does not match its keyed hash (rewritten, re-hashed without the key, or forged)
- deleted / inserted / head: a gap, a row out of place, a table that ends before or after `audit_head`
- truncated: the table ends before the last checkpoint's seq (newest rows deleted and the head moved back)
- rewritten: the row at a checkpoint's seq does not carry the checkpoint's hash
- wiped / new_chain / no_genesis: every row deleted; a new chain where one existed; keyed rows without a genesis
- checkpoint: a checkpoint line that is unreadable, forged, out of order, or missing from one of the two files
- result: a stored prediction or plan whose digest differs from the one its audit row recorded, or which no
  audit row recorded
- stage / version: a model version or a stage that differs from the register / promote / rollback rows
- token: a token whose role or secret hash differs from its audited creation, or which is active although its
  revocation was audited, or which no audit row created

A database written before the chain was keyed is adopted at the first start: its rows (up to `legacy_seq` in the
genesis) keep their plain SHA-256 hashes, anchored by the genesis and the first checkpoint.

What is recorded: who (token id and role), when, action, model and version, the SHA-256 digest of the input,
the outcome and HTTP status, and a small detail object of ids, counts and digests. Never patient data.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn

from sqlalchemy import bindparam, event, func, select
from sqlalchemy.orm import Session

from precimed.errors import PrecimedError
from precimed.service.checkpoints import CheckpointStore, Contents
from precimed.service.db import (
    GENESIS,
    AuditHead,
    AuditRow,
    Database,
    Insert,
    ModelRow,
    PlanRow,
    PredictionRow,
    StageRow,
    TokenRow,
    VersionRow,
    current_head,
    to_json,
    to_json_plain,
    utcnow,
)

if TYPE_CHECKING:
    from precimed.workflows.privacy import KeyMaterial

log = logging.getLogger("precimed.service.audit")
HASHED = ("seq", "at", "actor", "role", "action", "model", "version", "input_digest", "outcome", "status", "detail",
          "prev_hash")
ROW_DOMAIN = "precimed/audit/row/v1"
CHAIN_OPEN = "audit_chain_open"
KINDS = ("altered", "deleted", "inserted", "head", "truncated", "rewritten", "wiped", "new_chain", "no_genesis",
         "checkpoint", "result", "stage", "version", "token")
STORED = {PredictionRow: ("predictions", "result"), PlanRow: ("plans", "plan")}
_STORED_TABLES = {model.__tablename__: spec for model, spec in STORED.items()}


_TAIL = select(*(AuditRow.__table__.c[name] for name in (*HASHED, "row_hash"))) \
    .where(AuditRow.__table__.c.seq >= bindparam("seq")).order_by(AuditRow.__table__.c.seq)


class AuditChainError(PrecimedError):
    """The audit chain cannot be continued or checked (wrong or missing key, a new chain where one existed)."""


def digest(value: Any) -> str:
    """SHA-256 of bytes, or of a value's canonical JSON (sorted keys): the same input always gives the same digest."""
    data = value if isinstance(value, bytes) else to_json(value).encode()
    return hashlib.sha256(data).hexdigest()


def plain_digest(value: Any) -> str:
    """`digest` of JSON data whose keys are all strings (a validated request body): the same digest, without the
    conversion walk (`to_json_plain`)."""
    return hashlib.sha256(to_json_plain(value).encode()).hexdigest()


def text_digest(text: str) -> str:
    """SHA-256 of stored text exactly as stored (a result or plan column)."""
    return hashlib.sha256(text.encode()).hexdigest()


def row_content(row: AuditRow) -> dict[str, Any]:
    return {name: getattr(row, name) for name in HASHED}


def content_hash(content: dict[str, Any], key: KeyMaterial) -> str:
    """HMAC-SHA256 under the audit key of a row's hashed fields (`HASHED`, including prev_hash)."""
    # the hashed fields are columns (str, int or None), so the plain writer gives to_json's text
    return key.mac(ROW_DOMAIN, to_json_plain({name: content[name] for name in HASHED}).encode()).hex()


def row_hash(row: AuditRow, key: KeyMaterial) -> str:
    """The hash a row must carry: HMAC-SHA256 under the audit key of its content and the previous row's hash."""
    return content_hash(row_content(row), key)


@dataclass(frozen=True)
class Entry:
    """What one audit row will record, prepared by the request (its detail already in stored JSON form); the seq,
    time and hashes are given by `AuditLog.chain` when the row is written."""

    actor: str
    role: str
    action: str
    model: str | None = None
    version: int | None = None
    input_digest: str | None = None
    outcome: str = "ok"
    status: int = 200
    detail: str = "{}"

    @classmethod
    def of(cls, *, actor: str, role: str, action: str, model: str | None = None, version: int | None = None,
           input_digest: str | None = None, outcome: str = "ok", status: int = 200,
           detail: dict[str, Any] | None = None) -> Entry:
        """The entry `AuditLog.record` would write for these arguments (same truncation, same detail JSON)."""
        return cls(actor=actor[:64], role=role[:32], action=action[:64], model=model, version=version,
                   input_digest=input_digest, outcome=outcome[:32], status=int(status),
                   detail=to_json_plain(detail or {}))  # details are built with str keys


def legacy_row_hash(row: AuditRow) -> str:
    """The unkeyed SHA-256 of rows written before the chain was keyed (kept byte-identical for old databases)."""
    return legacy_content_hash(row_content(row))


def legacy_content_hash(content: dict[str, Any]) -> str:
    """`legacy_row_hash` of a row's hashed fields."""
    return hashlib.sha256(json.dumps(content, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def stored_digests(rows: Iterable[Any]) -> list[list[str]]:
    """[table, id, digest] of each stored prediction or plan among `rows`, for the audit row that stores them."""
    out = []
    for row in rows:
        if isinstance(row, Insert):
            spec = _STORED_TABLES.get(row.table.name)
            if spec is not None:
                out.append([spec[0], row.values["id"], text_digest(row.values[spec[1]])])
            continue
        spec = STORED.get(type(row))
        if spec is not None:
            out.append([spec[0], row.id, text_digest(getattr(row, spec[1]))])
    return out


@dataclass
class Problem:
    seq: int | None
    kind: str  # one of KINDS
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "kind": self.kind, "message": self.message}


@dataclass
class Verification:
    """What `verify` found: ok, the number of rows, the head, the last checkpoint, and each problem."""

    rows: int
    head_seq: int
    head_hash: str
    problems: list[Problem] = field(default_factory=list)
    checkpoint_seq: int | None = None
    key_id: str | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "rows": self.rows, "head_seq": self.head_seq, "head_hash": self.head_hash,
                "checkpoint_seq": self.checkpoint_seq, "key_id": self.key_id,
                "problems": [p.to_dict() for p in self.problems]}


@dataclass
class _Walk:
    """One pass over the table: counts, ends, the hashes at wanted seqs, and what the rows say was done."""

    count: int = 0
    first: tuple[int, str] | None = None
    last_seq: int = 0
    last_hash: str = GENESIS
    hashes: dict[int, str] = field(default_factory=dict)
    stored: dict[tuple[str, str], tuple[int, str]] = field(default_factory=dict)
    versions: dict[tuple[str, int], tuple[int, str | None]] = field(default_factory=dict)
    stages: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    tokens: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    revoked: dict[str, int] = field(default_factory=dict)


class AuditLog:
    """Append to, anchor and verify the audit table of a Database under the audit key."""

    def __init__(self, db: Database, key: KeyMaterial, checkpoints: CheckpointStore | None = None, *,
                 every: int = 100) -> None:
        self.db = db
        self.key = key
        self.checkpoints = checkpoints
        self.every = every
        self.legacy_seq = 0
        self.chain_id: str | None = None
        self._anchor: tuple[int, str] | None = None  # the last checkpoint this process knows (seq, hash)
        self._anchor_lock = threading.Lock()

    @property
    def key_id(self) -> str:
        return self.key.fingerprint

    def expected_hash(self, row: AuditRow) -> str:
        """The hash `row` must carry: keyed, or plain SHA-256 for rows adopted from before the key."""
        return self.expected_content_hash(row_content(row))

    def expected_content_hash(self, content: dict[str, Any]) -> str:
        """`expected_hash` of a row's hashed fields (`HASHED`)."""
        return legacy_content_hash(content) if content["seq"] <= self.legacy_seq else content_hash(content, self.key)

    # ----- appending --------------------------------------------------------------------------------------------
    def record(self, session: Session, *, actor: str, role: str, action: str, model: str | None = None,
               version: int | None = None, input_digest: str | None = None, outcome: str = "ok",
               status: int = 200, detail: dict[str, Any] | None = None) -> AuditRow:
        """Append one row inside the caller's write transaction (so it commits with the change it records)."""
        head = current_head(session)
        row = AuditRow(seq=head.seq + 1, at=utcnow(), actor=actor[:64], role=role[:32], action=action[:64],
                       model=model, version=version, input_digest=input_digest, outcome=outcome[:32],
                       status=int(status), detail=to_json(detail or {}), prev_hash=head.row_hash)
        row.row_hash = row_hash(row, self.key)
        session.add(row)
        head.seq, head.row_hash = row.seq, row.row_hash
        session.flush()
        if self.checkpoints is not None and row.seq % self.every == 0 and not session.info.get("audit_checkpoint"):
            session.info["audit_checkpoint"] = True
            event.listen(session, "after_commit", self._checkpoint_after_commit, once=True)
        return row

    def chain(self, seq: int, prev_hash: str, entries: Iterable[Entry]) -> list[dict[str, Any]]:
        """The rows (column values) that append `entries` after the head (seq, prev_hash), each linked to the one
        before: for a writer that inserts many rows in one transaction (precimed.service.group_commit)."""
        rows = []
        at = utcnow()
        for entry in entries:
            seq += 1
            row = {"seq": seq, "at": at, "actor": entry.actor, "role": entry.role, "action": entry.action,
                   "model": entry.model, "version": entry.version, "input_digest": entry.input_digest,
                   "outcome": entry.outcome, "status": entry.status, "detail": entry.detail, "prev_hash": prev_hash}
            row["row_hash"] = prev_hash = content_hash(row, self.key)
            rows.append(row)
        return rows

    def checkpoint_due(self, first: int, last: int) -> bool:
        """Whether rows first..last, committed outside `record` (a group commit), crossed a multiple of `every`:
        the writer then signs a checkpoint (`checkpoint_quietly`)."""
        return self.checkpoints is not None and last >= first and last // self.every > (first - 1) // self.every

    def append(self, **fields: Any) -> AuditRow:
        """Append one row in its own transaction."""
        with self.db.transaction() as s:
            return self.record(s, **fields)

    def rows(self, *, after: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
        """Up to `limit` rows with seq > `after`, in order (page with the last seq seen)."""
        with self.db.session() as s:
            found = s.execute(select(AuditRow).where(AuditRow.seq > after).order_by(AuditRow.seq).limit(limit))
            return [{name: getattr(r, name) for name in (*HASHED, "row_hash")} for r in found.scalars()]

    # ----- the chain's anchors outside the database ---------------------------------------------------------------
    def open_chain(self) -> None:
        """Start-up check: continue the chain the checkpoint file describes, or begin one where none existed.

        Raises AuditChainError (after recording a refusal) where that would start a new chain over an old one."""
        if self.checkpoints is None:
            return
        with self.checkpoints.exclusive():
            self._open_chain(self.checkpoints.examine(self.key))
        self.checkpoint()

    def _open_chain(self, contents: Contents) -> None:
        """Decide, under the store's lock: continue the described chain, begin or adopt one, or refuse."""
        with self.db.session() as s:
            first = s.execute(select(AuditRow).order_by(AuditRow.seq).limit(1)).scalar_one_or_none()
            last = s.execute(select(AuditRow).order_by(AuditRow.seq.desc()).limit(1)).scalar_one_or_none()
            opened = s.execute(select(func.count()).select_from(AuditRow)
                               .where(AuditRow.action == CHAIN_OPEN)).scalar_one()
        claimed = self.checkpoints.claimed_key()
        if contents.genesis is None and claimed not in (None, self.key_id):
            self._refuse(f"the audit chain was begun under audit key {claimed}, but the key file holds key "
                         f"{self.key_id}: restore the chain's key", record=False)
        if contents.genesis is None:
            self._begin(first, last, opened)
        else:
            self._continue(contents.genesis, first)

    def adopt(self, contents: Contents) -> None:
        """Take the chain id and the legacy boundary from the genesis (for verification; no start-up checks)."""
        if contents.genesis is not None:
            self.chain_id = contents.genesis.get("chain_id")
            self.legacy_seq = int(contents.genesis.get("legacy_seq") or 0)

    def _begin(self, first: AuditRow | None, last: AuditRow | None, opened: int) -> None:
        where = self.checkpoints.paths[0] if self.checkpoints else "?"
        if last is not None and last.action == CHAIN_OPEN and last.row_hash == row_hash(last, self.key):
            legacy = int(json.loads(last.detail).get("legacy_seq") or 0)  # a start interrupted before its genesis
            self._write_genesis(json.loads(last.detail)["chain_id"], first, legacy)
            return
        if last is not None and (opened or last.row_hash != legacy_row_hash(last)):
            self._refuse(f"the audit table holds keyed rows (up to seq {last.seq}) but the checkpoint file {where} "
                         "has no genesis record: it was deleted or replaced; restore it (or its mirror)")
        legacy = last.seq if last is not None else 0
        chain_id = uuid.uuid4().hex
        self.legacy_seq = legacy
        opener = self.append(actor="precimed", role="system", action=CHAIN_OPEN,
                             detail={"chain_id": chain_id, "key_id": self.key_id, "legacy_seq": legacy})
        if legacy:
            log.warning("audit: adopted %d rows written before the chain was keyed", legacy)
        self._write_genesis(chain_id, first or opener, legacy)

    def _write_genesis(self, chain_id: str, first: AuditRow, legacy: int) -> None:
        self.chain_id, self.legacy_seq = chain_id, legacy
        self.checkpoints.append(self.key, "genesis", {"chain_id": chain_id, "at": utcnow(), "key_id": self.key_id,
                                                      "first_seq": first.seq, "first_hash": first.row_hash,
                                                      "legacy_seq": legacy})
        with self._anchor_lock:
            self._anchor = (first.seq, first.row_hash)

    def _continue(self, genesis: dict[str, Any], first: AuditRow | None) -> None:
        began = f"the audit chain {str(genesis.get('chain_id'))[:8]}… began at {genesis.get('at')}"
        if genesis.get("key_id") != self.key_id:
            self._refuse(f"{began} under audit key {genesis.get('key_id')}, but the key file holds key "
                         f"{self.key_id}: restore the chain's key", record=False)
        if first is None:
            self._refuse(f"{began}, but the audit table is empty: its rows were wiped; refusing to start a new "
                         "chain (restore the database from a backup)")
        if first.seq != genesis.get("first_seq") or first.row_hash != genesis.get("first_hash"):
            self._refuse(f"{began}, but the audit table's first row (seq {first.seq}) is not that chain's first "
                         "row: refusing to continue a replaced chain (restore the database from a backup)")
        self.chain_id = genesis.get("chain_id")
        self.legacy_seq = int(genesis.get("legacy_seq") or 0)

    def _refuse(self, reason: str, *, record: bool = True) -> NoReturn:
        """Record the refusal in the checkpoint file (not under a wrong key: it would not verify), then raise."""
        if record:
            try:
                self.checkpoints.append(self.key, "refusal", {"at": utcnow(), "reason": reason[:500]})
            except OSError as exc:
                log.error("audit: could not record the refusal: %s", type(exc).__name__)
        raise AuditChainError(reason)

    def _checkpoint_after_commit(self, _session: Session) -> None:
        self.checkpoint_quietly()

    def checkpoint_quietly(self) -> None:
        """`checkpoint()`, with a failure logged instead of raised (the rows are committed; the next one covers
        them)."""
        try:
            self.checkpoint()
        except Exception as exc:  # the rows are committed; a missed checkpoint is logged, the next one covers it
            log.error("audit: checkpoint failed: %s", type(exc).__name__)

    def checkpoint(self) -> dict[str, Any] | None:
        """Sign the current head into the checkpoint file(s), after re-checking every row since the last
        checkpoint this process knows (a tampered or moved-back head is logged, never signed)."""
        if self.checkpoints is None or self.chain_id is None:
            return None
        with self._anchor_lock:
            base = self._anchor or self._last_anchor()
            if base is None:
                return None
            newer = self.checkpoints.last_checkpoint(self.key)  # another process may have signed a later head
            if newer is not None and newer.get("chain_id") == self.chain_id and newer["seq"] > base[0]:
                base = (newer["seq"], str(newer["head_hash"]))
            head = self._check_tail(*base)
            if head is None or head[0] <= base[0]:
                self._anchor = self._anchor or base
                return None
            record = self.checkpoints.append(self.key, "checkpoint", {"chain_id": self.chain_id, "seq": head[0],
                                                                      "head_hash": head[1], "at": utcnow()})
            self._anchor = head
            return record

    def _last_anchor(self) -> tuple[int, str] | None:
        contents = self.checkpoints.examine(self.key)
        last = contents.last
        if last is not None:
            return last["seq"], last["head_hash"]
        if contents.genesis is not None:
            return int(contents.genesis["first_seq"]), str(contents.genesis["first_hash"])
        return None

    def _check_tail(self, seq: int, expected: str) -> tuple[int, str] | None:
        """(seq, hash) of the last row if the rows from `seq` on are intact and linked; None (logged) otherwise."""
        # plain tuples, not ORM objects nor SQLAlchemy rows: the writer runs this every `audit_checkpoint_every` rows
        rows = self.db.fetch_all(_TAIL, {"seq": seq})
        if not rows or rows[0][0] != seq or rows[0][-1] != expected:
            log.error("audit: the row at checkpoint seq %d is gone or changed; not signing a new checkpoint", seq)
            return None
        prev_seq, prev_hash = seq, expected
        for *content, stored_hash in rows[1:]:
            fields = dict(zip(HASHED, content, strict=True))
            if fields["seq"] != prev_seq + 1 or fields["prev_hash"] != prev_hash or \
                    stored_hash != self.expected_content_hash(fields):
                log.error("audit: row %d does not verify; not signing a new checkpoint", fields["seq"])
                return None
            prev_seq, prev_hash = fields["seq"], stored_hash
        return prev_seq, prev_hash

    # ----- verifying ----------------------------------------------------------------------------------------------
    def verify(self, anchors: Iterable[tuple[int, str]] = ()) -> Verification:
        """Walk the chain; check it against the head, the checkpoints and anchors, and check that stored results,
        stages, versions and tokens match what the audit rows say was done. A clean result is checkpointed."""
        anchors = [(int(seq), h) for seq, h in anchors]
        contents = self.checkpoints.examine(self.key) if self.checkpoints is not None else Contents()
        self.adopt(contents)
        wanted = {c["seq"] for c in contents.checkpoints} | {seq for seq, _ in anchors}
        problems: list[Problem] = []
        with self.db.session() as s:
            head = s.execute(select(AuditHead).where(AuditHead.id == 1)).scalar_one_or_none()
            walk = self._walk(s, wanted, problems)
            problems += _head_problems(head, walk)
            problems += self._anchor_problems(contents, walk, anchors)
            problems += _coverage_problems(s, walk, check_unaudited_results=self.legacy_seq == 0)
        head_seq, head_hash = (head.seq, head.row_hash) if head is not None else (0, GENESIS)
        last = contents.last
        result = Verification(walk.count, head_seq, head_hash, problems, last["seq"] if last else None, self.key_id)
        if result.ok:
            signed = self.checkpoint()
            result.checkpoint_seq = signed["seq"] if signed else result.checkpoint_seq
        return result

    def _walk(self, s: Session, wanted: set[int], problems: list[Problem]) -> _Walk:
        """Recompute every hash and link; collect what the rows record."""
        walk = _Walk()
        expected_seq, prev = 1, GENESIS
        for row in s.execute(select(AuditRow).order_by(AuditRow.seq)).scalars().yield_per(500):
            walk.count += 1
            if walk.first is None:
                walk.first = (row.seq, row.row_hash)
            gap, inserted = row.seq > expected_seq, row.seq < expected_seq
            if inserted:
                problems.append(Problem(row.seq, "inserted", f"row {row.seq} is out of sequence (expected "
                                        f"{expected_seq} or later): a row was inserted"))
            elif gap:
                missing = (f"row {expected_seq}" if row.seq == expected_seq + 1
                           else f"rows {expected_seq}–{row.seq - 1}")
                problems.append(Problem(expected_seq, "deleted", f"{missing} missing: deleted"))
            if self.expected_hash(row) != row.row_hash:
                problems.append(Problem(row.seq, "altered", f"row {row.seq} ({row.action} by {row.actor}) does "
                                        "not match its keyed hash: its content was altered, or it was re-hashed "
                                        "or written without the audit key"))
            if row.prev_hash != prev and not gap:  # after a gap the broken link is the deletion itself
                problems.append(Problem(row.seq, "altered", f"row {row.seq} does not link to the row before it: "
                                        "that row was altered and re-hashed, or inserted"))
            if not inserted:  # the rows after an inserted one still link to the row before it
                prev = row.row_hash
            walk.last_seq, walk.last_hash = row.seq, row.row_hash
            if row.seq in wanted:
                walk.hashes[row.seq] = row.row_hash
            if row.outcome == "ok":
                _note(walk, row)
            expected_seq = max(expected_seq, row.seq + 1)
        return walk

    def _anchor_problems(self, contents: Contents, walk: _Walk, anchors: list[tuple[int, str]]) -> list[Problem]:
        """The table against the genesis, the checkpoints and the anchors given by hand."""
        problems = [Problem(None, "checkpoint", message) for message in contents.problems]
        genesis = contents.genesis
        claimed = self.checkpoints.claimed_key() if self.checkpoints is not None else None
        if genesis is None and claimed not in (None, self.key_id):
            problems.append(Problem(None, "checkpoint", f"the chain was begun under audit key {claimed} but this "
                                    f"key is {self.key_id}: verify with the chain's key"))
        elif genesis is None:
            if walk.count and self.checkpoints is not None:
                problems.append(Problem(None, "no_genesis", "the audit table holds rows but no checkpoint file has a "
                                        "genesis record: the checkpoint file was deleted or replaced"))
        elif genesis.get("key_id") != self.key_id:
            problems.append(Problem(None, "checkpoint", f"the chain was begun under audit key {genesis.get('key_id')} "
                                    f"but this key is {self.key_id}"))
        elif walk.first is None:
            problems.append(Problem(None, "wiped", f"the chain began at {genesis.get('at')} but the audit table is "
                                    "empty: every row was deleted"))
        elif walk.first != (genesis.get("first_seq"), genesis.get("first_hash")):
            problems.append(Problem(walk.first[0], "new_chain", "the audit table's first row is not the first row "
                                    "of the chain the genesis record describes: a new chain was started over it"))
        for extra in contents.extra_genesis:
            problems.append(Problem(None, "new_chain", f"a second genesis record ({extra.get('at')}): a new chain "
                                    "was started where one existed"))
        for cp in sorted(contents.checkpoints, key=lambda c: c["seq"]):
            problems += _checkpoint_problem(cp, walk)
        for seq, expected in anchors:
            got = walk.hashes.get(seq)
            if got != expected:
                problems.append(Problem(seq, "altered" if got else "deleted", f"anchor: row {seq} should have hash "
                                        f"{expected[:12]}…, found {(got or 'no row')[:12]}"))
        return problems


# ----- helpers of verify ------------------------------------------------------------------------------------------
def _note(walk: _Walk, row: AuditRow) -> None:
    """Remember what an ok row says was done: stored results, versions, stages, tokens."""
    action = row.action
    interesting = action in ("register", "token_create", "token_revoke") or action.startswith(
        ("promote:", "rollback:")) or '"stored"' in row.detail
    if not interesting:
        return
    try:
        detail = json.loads(row.detail)
    except ValueError:
        return
    detail = detail if isinstance(detail, dict) else {}
    for item in detail.get("stored") or []:
        if isinstance(item, list) and len(item) == 3:
            walk.stored[(str(item[0]), str(item[1]))] = (row.seq, str(item[2]))
    if action == "register" and row.model is not None and row.version is not None:
        walk.versions[(row.model, row.version)] = (row.seq, row.input_digest)
    elif action.startswith("promote:") and row.model is not None and row.version is not None:
        walk.stages.setdefault((row.model, action.partition(":")[2]), []).append(row.version)
    elif action.startswith("rollback:") and row.model is not None:
        stack = walk.stages.setdefault((row.model, action.partition(":")[2]), [])
        if stack:
            stack.pop()
    elif action == "token_create" and isinstance(detail.get("token_id"), str):
        walk.tokens[detail["token_id"]] = (row.seq, detail)
    elif action == "token_revoke" and isinstance(detail.get("token_id"), str):
        walk.revoked[detail["token_id"]] = row.seq


def _head_problems(head: AuditHead | None, walk: _Walk) -> list[Problem]:
    if head is None:
        return [Problem(None, "head", "the audit head row is missing")]
    if head.seq > walk.last_seq:
        return [Problem(walk.last_seq + 1, "deleted", f"the head records row {head.seq} but the table ends at row "
                        f"{walk.last_seq}: row(s) deleted from the end")]
    if head.seq < walk.last_seq:
        return [Problem(head.seq + 1, "inserted", f"the table holds rows up to {walk.last_seq} beyond the head "
                        f"({head.seq}): row(s) appended outside the audit log")]
    if head.row_hash != walk.last_hash:
        return [Problem(walk.last_seq, "altered", f"the last row {walk.last_seq} does not match the head's hash")]
    return []


def _checkpoint_problem(cp: dict[str, Any], walk: _Walk) -> list[Problem]:
    seq = int(cp["seq"])
    if seq > walk.last_seq:
        return [Problem(walk.last_seq + 1, "truncated", f"checkpoint of {cp.get('at')} records row {seq}, but the "
                        f"table ends at row {walk.last_seq}: the newest rows were deleted")]
    got = walk.hashes.get(seq)
    if got is None:
        return [Problem(seq, "deleted", f"checkpoint row {seq} is missing from the table")]
    if got != cp["head_hash"]:
        return [Problem(seq, "rewritten", f"row {seq} does not carry the hash its checkpoint of {cp.get('at')} "
                        "signed: the chain was rewritten")]
    return []


def _coverage_problems(s: Session, walk: _Walk, *, check_unaudited_results: bool) -> list[Problem]:
    return (_result_problems(s, walk, check_unaudited_results) + _version_problems(s, walk)
            + _stage_problems(s, walk) + _token_problems(s, walk))


def _result_problems(s: Session, walk: _Walk, check_unaudited: bool) -> list[Problem]:
    problems = []
    for model, (table, column) in STORED.items():
        noun = "prediction" if table == "predictions" else "plan"
        for row_id, text in s.execute(select(model.id, getattr(model, column))).yield_per(500):
            audited = walk.stored.get((table, row_id))
            if audited is None:
                if check_unaudited:
                    problems.append(Problem(None, "result", f"stored {noun} {row_id} has no audit row: it was "
                                            "inserted outside the service"))
            elif audited[1] != text_digest(text):
                problems.append(Problem(audited[0], "result", f"stored {noun} {row_id} differs from the result "
                                        f"audit row {audited[0]} recorded: it was edited"))
    return problems


def _version_problems(s: Session, walk: _Walk) -> list[Problem]:
    problems = []
    found = s.execute(select(ModelRow.name, VersionRow.version, VersionRow.metadata_sha256)
                      .join(VersionRow, VersionRow.model_id == ModelRow.id))
    for name, version, sha in found:
        audited = walk.versions.get((name, version))
        if audited is None:
            problems.append(Problem(None, "version", f"{name} v{version} has no audited registration: it was "
                                    "inserted outside the registry"))
        elif audited[1] != sha:
            problems.append(Problem(audited[0], "version", f"{name} v{version}'s bundle hash differs from the one "
                                    f"registered (audit row {audited[0]}): it was changed outside the registry"))
    return problems


def _stage_problems(s: Session, walk: _Walk) -> list[Problem]:
    """Replay the stages table (promote pushes, rollback pops) and compare each top with the audited replay."""
    numbers = dict(s.execute(select(VersionRow.id, VersionRow.version)).all())
    stacks: dict[tuple[str, str], list[int]] = {}
    rows = s.execute(select(ModelRow.name, StageRow.stage, StageRow.action, StageRow.version_id)
                     .join(StageRow, StageRow.model_id == ModelRow.id).order_by(StageRow.id))
    for name, stage, action, version_id in rows:
        stack = stacks.setdefault((name, stage), [])
        if action == "promote":
            stack.append(numbers.get(version_id, -1))
        elif stack:
            stack.pop()
    problems = []
    for key in sorted(set(stacks) | set(walk.stages)):
        table = (stacks.get(key) or [None])[-1]
        audited = (walk.stages.get(key) or [None])[-1]
        if table != audited:
            problems.append(Problem(None, "stage", f"{key[0]} {key[1]} is v{table} in the stages table but "
                                    f"v{audited} by the audit trail: a stage was set outside the registry"))
    return problems


def _token_problems(s: Session, walk: _Walk) -> list[Problem]:
    problems = []
    for token in s.execute(select(TokenRow)).scalars():
        audited = walk.tokens.get(token.id)
        if audited is None:
            problems.append(Problem(None, "token", f"token {token.id} ({token.role}) has no audited creation: it "
                                    "was inserted outside the service"))
            continue
        seq, detail = audited
        if detail.get("role") != token.role:
            problems.append(Problem(seq, "token", f"token {token.id} has role {token.role!r} but was created as "
                                    f"{detail.get('role')!r} (audit row {seq}): its role was changed outside the "
                                    "service"))
        if detail.get("token_sha256") not in (None, token.token_sha256):
            problems.append(Problem(seq, "token", f"token {token.id}'s secret hash differs from the one created "
                                    f"(audit row {seq}): it was replaced outside the service"))
        if token.id in walk.revoked and token.revoked_at is None:
            problems.append(Problem(walk.revoked[token.id], "token", f"token {token.id} was revoked (audit row "
                                    f"{walk.revoked[token.id]}) but is active again"))
    return problems
