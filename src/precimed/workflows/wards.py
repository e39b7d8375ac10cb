"""A ward board: per ward, each patient's latest NEWS2, level, trend, learned risk and open alert, kept in bounded
memory and ordered by urgency, plus an in-process publish/subscribe of which wards changed (for live pages).

Why here: the board is the state of the vitals stream seen per ward, built from the monitor's `Step`s (which carry
the observation's optional ``ward`` and ``bed``, see precimed.monitoring.stream); it knows nothing of HTTP or HTML,
so a web page, a CLI or a test can read it alike.

Rules
-----
* A patient joins a ward's board with the first observation that names a ward; later observations may omit it
  (the patient stays where they were) or name another ward (a transfer: the patient moves, trend and alert kept).
  Observations of a patient never placed on a ward are not on any board.
* Each observation replaces the patient's latest NEWS2 total, level, completeness, time and learned risk (None
  when that observation was scored without a model), and appends its total to the trend (the last
  ``trend_length``).
* Alert events from the monitor (its hysteresis decides them): ``alert`` opens an alert with a fresh id;
  ``escalation`` raises the open alert's level, and if it had been acknowledged the alert gets a new id and must
  be acknowledged again (an escalation is new information); ``clear`` closes it. An acknowledgement records who
  (token id and role) and when (UTC); a second one is a no-op. Acknowledgements live in memory with the board:
  the audit trail keeps them durably.
* Urgency order: NEWS2 level (high first), then the total (higher first), then the time of the latest observation
  (older first: the patient waiting longest for a review comes before one just seen).
* Bounded: at most ``max_patients`` patients (the least recently observed is forgotten first), none idle longer
  than ``max_idle_seconds``; a discharge record removes the patient at once.

Live updates: :class:`BoardHub` tells subscribers (asyncio queues, one per page stream, ``max_queue`` deep)
which ward changed. Publishing never blocks and may be called from any thread (ingestion runs in the service's
thread pool): a subscriber whose queue is full is dropped (its stream ends, the page reconnects and reloads).
A board and its hub live in one process: with several service workers each has its own.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from precimed.errors import ConfigError
from precimed.monitoring.news2 import LEVEL_RANK
from precimed.monitoring.stream import Step
from precimed.workflows.patients import MAX_IDLE_SECONDS, check_bounds

#: Observations per patient kept for the trend sparkline.
TREND_LENGTH = 12


def _now_utc() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def _timestamp(text: str) -> float:
    """Seconds since the epoch of an observation time as recorded (no offset: UTC, as the monitor reads it)."""
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        return 0.0
    if dt.tzinfo is None or dt.utcoffset() is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


@dataclass
class Alert:
    """A patient's open alert on the board."""

    id: str
    level: str
    news2: int
    time: str  # observation time that opened (or last escalated) it, as recorded
    reasons: list[str]
    escalated: bool = False
    acked_by: str | None = None  # the token id that acknowledged it
    acked_label: str | None = None  # that token's label, as shown to people
    acked_role: str | None = None
    acked_at: str | None = None  # UTC, wall clock

    @property
    def acknowledged(self) -> bool:
        return self.acked_at is not None


@dataclass
class BoardPatient:
    """One patient's row on a ward board."""

    patient_id: Hashable
    ward: str
    bed: str | None
    news2: int
    level: str
    complete: bool
    missing: list[str]
    time: str
    timestamp: float
    trend: deque[int]
    risk: float | None = None
    alert: Alert | None = None

    def urgency(self) -> tuple[int, int, float]:
        """Sort key: level (high first), total (higher first), then the older observation first."""
        return (-LEVEL_RANK[self.level], -self.news2, self.timestamp)

    def view(self) -> dict[str, Any]:
        """A plain copy for a page (taken under the board's lock, so a reader never sees a half-applied update)."""
        alert = None
        if self.alert is not None:
            a = self.alert
            alert = {"id": a.id, "level": a.level, "news2": a.news2, "time": a.time, "reasons": list(a.reasons),
                     "escalated": a.escalated, "acknowledged": a.acknowledged, "acked_by": a.acked_by,
                     "acked_label": a.acked_label, "acked_role": a.acked_role, "acked_at": a.acked_at}
        return {"patient_id": self.patient_id, "ward": self.ward, "bed": self.bed, "news2": self.news2,
                "level": self.level, "complete": self.complete, "missing": list(self.missing), "time": self.time,
                "trend": list(self.trend), "risk": self.risk, "alert": alert}


@dataclass(frozen=True)
class AckResult:
    """What an acknowledgement did: ``status`` is "acknowledged", "already" (a no-op) or "not_found"."""

    status: str
    alert: dict[str, Any] | None = None


class WardBoard:
    """Per-ward latest early-warning state of each patient; see the module docstring. Thread-safe."""

    def __init__(self, max_patients: int = 10_000, *, trend_length: int = TREND_LENGTH,
                 max_idle_seconds: float | None = MAX_IDLE_SECONDS,
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], str] = _now_utc) -> None:
        check_bounds(max_idle_seconds, max_patients=max_patients, trend_length=trend_length)
        self.max_patients = max_patients
        self.trend_length = trend_length
        self.max_idle_seconds = max_idle_seconds
        self._clock = clock
        self._wall = wall
        self._patients: OrderedDict[Hashable, BoardPatient] = OrderedDict()  # least recently observed first
        self._seen: dict[Hashable, float] = {}
        self._wards: dict[str, dict[Hashable, BoardPatient]] = {}
        self._versions: dict[str, int] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._patients)

    # ----- updates ------------------------------------------------------------------------------------------
    def apply(self, steps: Sequence[Step], discharged: Iterable[Hashable] = ()) -> set[str]:
        """Apply scored observations (in order) and discharges; return the wards whose board changed."""
        changed: set[str] = set()
        with self._lock:
            changed |= self._expire()
            for step in steps:
                changed |= self._observe(step)
            for pid in discharged:
                gone = self._drop(pid)
                if gone is not None:
                    changed.add(gone)
            for ward in changed:
                self._versions[ward] = self._versions.get(ward, 0) + 1
        return changed

    def _observe(self, step: Step) -> set[str]:
        pid = step.patient_id
        row = self._patients.get(pid)
        ward = step.ward or (row.ward if row is not None else None)
        if ward is None:
            return set()
        r = step.news2
        changed = {ward}
        if row is None:
            row = BoardPatient(pid, ward, step.bed, r.total, r.level, r.complete, list(r.missing), step.time,
                               _timestamp(step.time), deque(maxlen=self.trend_length))
            self._patients[pid] = row
            self._wards.setdefault(ward, {})[pid] = row
            while len(self._patients) > self.max_patients:
                old = next(iter(self._patients))
                gone = self._drop(old)
                if gone is not None:
                    changed.add(gone)
        else:
            if ward != row.ward:  # a transfer
                changed.add(row.ward)
                self._unplace(row)
                row.ward = ward
                self._wards.setdefault(ward, {})[pid] = row
            self._patients.move_to_end(pid)
            row.news2, row.level, row.complete, row.missing = r.total, r.level, r.complete, list(r.missing)
            row.time, row.timestamp = step.time, _timestamp(step.time)
            if step.bed is not None:
                row.bed = step.bed
        self._seen[pid] = self._clock()
        row.trend.append(r.total)
        row.risk = step.risk
        for event in step.events:
            self._event(row, event)
        return changed

    def _event(self, row: BoardPatient, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "clear":
            row.alert = None
            return
        reasons = [str(x) for x in event.get("reasons", [])]
        if kind == "alert" or row.alert is None:
            row.alert = Alert(_new_id(), str(event["level"]), int(event["news2"]), str(event["time"]), reasons,
                              escalated=kind == "escalation")
        elif kind == "escalation":
            a = row.alert
            if a.acknowledged:  # new information: it must be acknowledged again
                row.alert = Alert(_new_id(), str(event["level"]), int(event["news2"]), str(event["time"]), reasons,
                                  escalated=True)
            else:
                a.level, a.news2, a.time, a.reasons, a.escalated = (str(event["level"]), int(event["news2"]),
                                                                    str(event["time"]), reasons, True)

    def discharge(self, patient_id: Hashable) -> str | None:
        """Remove a patient; the ward they were on (None if not on a board)."""
        with self._lock:
            ward = self._drop(patient_id)
            if ward is not None:
                self._versions[ward] = self._versions.get(ward, 0) + 1
            return ward

    def acknowledge(self, ward: str, alert_id: str, *, actor: str, role: str, label: str | None = None) -> AckResult:
        """Mark the open alert `alert_id` of a patient on `ward` acknowledged by `actor` (a token id, shown as its
        `label`) now."""
        with self._lock:
            for row in self._wards.get(ward, {}).values():
                a = row.alert
                if a is not None and a.id == alert_id:
                    if a.acknowledged:
                        return AckResult("already", row.view()["alert"])
                    a.acked_by, a.acked_label, a.acked_role, a.acked_at = actor, label, role, self._wall()
                    self._versions[ward] = self._versions.get(ward, 0) + 1
                    return AckResult("acknowledged", row.view()["alert"])
        return AckResult("not_found")

    # ----- reading ------------------------------------------------------------------------------------------
    def ward(self, ward: str) -> list[dict[str, Any]]:
        """The ward's patients, most urgent first (empty for an unknown ward)."""
        with self._lock:
            self._expire()
            rows = sorted(self._wards.get(ward, {}).values(), key=BoardPatient.urgency)
            return [r.view() for r in rows]

    def version(self, ward: str) -> int:
        """A counter that grows with every change of the ward's board."""
        return self._versions.get(ward, 0)

    def wards(self) -> list[dict[str, Any]]:
        """Each ward with patients: name, patients, open alerts, unacknowledged alerts and the highest level."""
        with self._lock:
            self._expire()
            out = []
            for name in sorted(self._wards):
                rows = list(self._wards[name].values())
                if not rows:
                    continue
                top = max(rows, key=lambda r: LEVEL_RANK[r.level]).level
                alerts = [r.alert for r in rows if r.alert is not None]
                out.append({"ward": name, "patients": len(rows), "alerts": len(alerts),
                            "unacknowledged": sum(not a.acknowledged for a in alerts), "highest": top})
            return out

    # ----- internals ----------------------------------------------------------------------------------------
    def _unplace(self, row: BoardPatient) -> None:
        members = self._wards.get(row.ward)
        if members is not None:
            members.pop(row.patient_id, None)
            if not members:
                del self._wards[row.ward]

    def _drop(self, pid: Hashable) -> str | None:
        row = self._patients.pop(pid, None)
        self._seen.pop(pid, None)
        if row is None:
            return None
        self._unplace(row)
        return row.ward

    def _expire(self) -> set[str]:
        if self.max_idle_seconds is None:
            return set()
        horizon = self._clock() - self.max_idle_seconds
        changed: set[str] = set()
        while self._patients:
            pid = next(iter(self._patients))
            if self._seen.get(pid, horizon) > horizon:
                break
            gone = self._drop(pid)
            if gone is not None:
                changed.add(gone)
        return changed


def _new_id() -> str:
    return "al_" + secrets.token_hex(6)


# ------------------------------------------------------------------------------------------------ publish/subscribe


@dataclass(eq=False)
class Subscription:
    """One live stream's queue of changed ward names; `dropped` once it fell `max_queue` changes behind."""

    ward: str | None  # None: every ward
    queue: asyncio.Queue[str]
    loop: asyncio.AbstractEventLoop
    dropped: bool = False
    _wake: asyncio.Event = field(default_factory=asyncio.Event)

    def offer(self, ward: str) -> None:
        """Queue a change (on the subscriber's loop); a full queue drops the subscriber instead of waiting."""
        if self.dropped:
            return
        try:
            self.queue.put_nowait(ward)
        except asyncio.QueueFull:
            self.dropped = True
        self._wake.set()

    async def next(self, timeout: float) -> str | None:
        """The next changed ward, or None after `timeout` seconds without one (the caller sends a heartbeat).
        Raises :class:`SubscriberDropped` once the subscriber was dropped."""
        if self.dropped:
            raise SubscriberDropped("this stream fell behind and was dropped; reconnect")
        if not self.queue.empty():
            return self.queue.get_nowait()
        self._wake.clear()
        try:
            await asyncio.wait_for(self._wake.wait(), timeout)
        except TimeoutError:
            return None
        if self.dropped:
            raise SubscriberDropped("this stream fell behind and was dropped; reconnect")
        return self.queue.get_nowait() if not self.queue.empty() else None


class SubscriberDropped(Exception):
    """A live stream fell too far behind; it ends and the page reconnects."""


class BoardHub:
    """In-process publish/subscribe of ward changes; see the module docstring."""

    def __init__(self, max_queue: int = 32, max_subscribers: int = 256) -> None:
        if max_queue < 1 or max_subscribers < 1:
            raise ConfigError("max_queue and max_subscribers must be ≥ 1")
        self.max_queue = max_queue
        self.max_subscribers = max_subscribers
        self._subs: set[Subscription] = set()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._subs)

    def subscribe(self, ward: str | None) -> Subscription:
        """A new subscriber on the running event loop (call from async code); ConfigError past the limit."""
        loop = asyncio.get_running_loop()
        sub = Subscription(ward, asyncio.Queue(self.max_queue), loop)
        with self._lock:
            if len(self._subs) >= self.max_subscribers:
                raise ConfigError(f"too many live ward streams (at most {self.max_subscribers}); try again later")
            self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            self._subs.discard(sub)

    def publish(self, wards: Iterable[str]) -> int:
        """Tell the subscribers of each ward that it changed; never blocks. Returns the notifications scheduled."""
        wards = set(wards)
        if not wards:
            return 0
        with self._lock:
            subs = list(self._subs)
        sent = 0
        for sub in subs:
            for ward in wards:
                if sub.ward is not None and sub.ward != ward:
                    continue
                try:
                    sub.loop.call_soon_threadsafe(sub.offer, ward)
                    sent += 1
                except RuntimeError:  # its event loop has closed: the stream is gone
                    self.unsubscribe(sub)
                    break
        return sent


class Wards:
    """A board and its hub: apply an ingestion's result, then tell the live pages."""

    def __init__(self, board: WardBoard, hub: BoardHub) -> None:
        self.board = board
        self.hub = hub

    def apply(self, steps: Sequence[Step], discharged: Iterable[Hashable] = ()) -> set[str]:
        changed = self.board.apply(steps, discharged)
        self.hub.publish(changed)
        return changed

    def acknowledge(self, ward: str, alert_id: str, *, actor: str, role: str, label: str | None = None) -> AckResult:
        result = self.board.acknowledge(ward, alert_id, actor=actor, role=role, label=label)
        if result.status == "acknowledged":
            self.hub.publish([ward])
        return result



__all__ = ["AckResult", "Alert", "BoardHub", "BoardPatient", "SubscriberDropped", "Subscription", "WardBoard",
           "Wards"]
