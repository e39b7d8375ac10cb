"""Bearer tokens (stored only as SHA-256 hashes), roles and what each role may do, and a per-token rate limit.

A token is shown once, when it is created; the database keeps its SHA-256 and a public id (`tok_…`) that logs
and the audit trail use. Roles are disjoint on purpose (an administrator does not score patients):

    clinician       predict, explain, plan, vitals, FHIR predict, CDS hooks, read their own predictions and plans;
                    only versions in staging or production
    data_scientist  register models, evaluate them (any version)
    admin           tokens, promotion and rollback, audit verification, read every stored prediction and plan
    auditor         read only: audit verification and every stored prediction and plan (no scoring, no changes)
    (every role)    list models, read metrics
"""

from __future__ import annotations

import hashlib
import math
import secrets
import threading
import time
from dataclasses import dataclass

from sqlalchemy import bindparam, select, update

from precimed.errors import ConfigError
from precimed.service.audit import AuditLog
from precimed.service.db import Database, TokenRow, utcnow

ROLES = ("clinician", "data_scientist", "admin", "auditor")
ALL = frozenset(ROLES)
PERMISSIONS: dict[str, frozenset[str]] = {
    "models:read": ALL,
    "metrics": ALL,
    "predict": frozenset({"clinician"}),
    "explain": frozenset({"clinician"}),
    "plan": frozenset({"clinician"}),
    "vitals": frozenset({"clinician"}),
    "results:read": frozenset({"clinician", "admin", "auditor"}),
    "results:read_all": frozenset({"admin", "auditor"}),  # others' stored predictions and plans
    "versions:any": frozenset({"data_scientist", "admin"}),  # pin a version in neither staging nor production
    "register": frozenset({"data_scientist"}),
    "evaluate": frozenset({"data_scientist"}),
    "promote": frozenset({"admin"}),
    "tokens": frozenset({"admin"}),
    "audit": frozenset({"admin", "auditor"}),
    "outcomes": frozenset({"clinician", "data_scientist"}),  # attach outcomes to served predictions
}
TOKEN_PREFIX = "pmd_"
_LOOKUP = select(TokenRow.id, TokenRow.role, TokenRow.revoked_at).where(TokenRow.token_sha256 == bindparam("sha"))


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token's public id and its role."""

    token_id: str
    role: str

    def may(self, permission: str) -> bool:
        return self.role in PERMISSIONS[permission]


def check_role(role: str) -> str:
    if role not in ROLES:
        raise ConfigError(f"unknown role {role!r}; expected one of {list(ROLES)}")
    return role


class TokenStore:
    """Create, look up, list and revoke tokens. Creating and revoking write the token and its audit row in one
    transaction: there is never a token without the audit row that made it, nor a row without its token."""

    def __init__(self, db: Database, audit: AuditLog) -> None:
        self.db = db
        self.audit = audit

    def create(self, role: str, label: str = "", *, actor: str, actor_role: str) -> tuple[str, str]:
        """A new token for `role`, audited as made by `actor`: returns (public id, token). The token itself is
        not stored; its SHA-256 is, and the audit row records it with the role, so a role or secret swapped in
        the table later is caught by `AuditLog.verify`."""
        check_role(role)
        token_id = f"tok_{secrets.token_hex(6)}"
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        sha = hash_token(token)
        with self.db.transaction() as s:
            s.add(TokenRow(id=token_id, token_sha256=sha, role=role, label=label[:200], created_at=utcnow(),
                           revoked_at=None))
            self.audit.record(s, actor=actor, role=actor_role, action="token_create",
                              detail={"token_id": token_id, "role": role, "token_sha256": sha})
        return token_id, token

    def lookup(self, token: str) -> Principal | None:
        """The principal of a valid, unrevoked token; None otherwise.

        Every call asks the database (one indexed read on a pooled connection, without the ORM: a few microseconds
        on SQLite), so a revocation, by this process, another worker or the CLI, takes effect on the next request.
        Nothing is cached: neither the token nor its hash nor the answer."""
        if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
            return None
        row = self.db.fetch_one(_LOOKUP, {"sha": hash_token(token)})
        if row is None or row[2] is not None:
            return None
        return Principal(str(row[0]), str(row[1]))

    def revoke(self, token_id: str, *, actor: str, actor_role: str) -> bool:
        """Revoke by public id, with its audit row in the same transaction; False if there is no such active
        token (nothing is written then)."""
        with self.db.transaction() as s:
            done = s.execute(update(TokenRow).where(TokenRow.id == token_id, TokenRow.revoked_at.is_(None))
                             .values(revoked_at=utcnow()))
            if not done.rowcount:
                return False
            self.audit.record(s, actor=actor, role=actor_role, action="token_revoke", detail={"token_id": token_id})
            return True

    def list(self) -> list[dict]:
        """Every token: id, role, label, when created and revoked (never the token or its hash)."""
        with self.db.session() as s:
            rows = s.execute(select(TokenRow).order_by(TokenRow.created_at)).scalars().all()
            return [{"id": r.id, "role": r.role, "label": r.label, "created_at": r.created_at,
                     "revoked_at": r.revoked_at} for r in rows]


class RateLimiter:
    """A token bucket per key: `burst` requests at once, refilled at `per_minute` / 60 per second."""

    def __init__(self, per_minute: float, burst: int) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def allow(self, key: str) -> tuple[bool, int]:
        """(allowed, seconds to wait before retrying)."""
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return True, 0
            self._buckets[key] = (tokens, now)
            return False, max(1, math.ceil((1.0 - tokens) / self.rate))
