"""Record ids: UUID version 7, unique, and in creation order (so a new row's index entry goes on the last page)."""

from __future__ import annotations

import time
import uuid

from precimed.service.routes import common
from precimed.service.routes.common import new_id


def test_new_id_is_a_uuid7_of_32_hex_characters() -> None:
    found = new_id()
    assert len(found) == 32 and int(found, 16) >= 0
    parsed = uuid.UUID(found)
    assert parsed.version == 7 and parsed.variant == uuid.RFC_4122


def test_new_id_carries_the_creation_millisecond() -> None:
    before = time.time_ns() // 1_000_000
    found = new_id()
    after = time.time_ns() // 1_000_000
    assert before <= int(found[:12], 16) <= after


def test_ids_of_later_milliseconds_sort_later(monkeypatch) -> None:
    clock = iter(range(1_700_000_000_000_000_000, 1_700_000_001_000_000_000, 1_000_000))  # one id per millisecond
    monkeypatch.setattr(common.time, "time_ns", lambda: next(clock))
    ids = [new_id() for _ in range(500)]
    assert ids == sorted(ids)


def test_ids_within_one_millisecond_are_unique_and_random() -> None:
    ids = [new_id() for _ in range(20_000)]
    assert len(set(ids)) == len(ids)
    # the random part varies in every one of its bits (a constant or counter-like part would not)
    tails = [int(i, 16) & ((1 << 62) - 1) for i in ids[:2000]]
    ones = [sum(t >> bit & 1 for t in tails) for bit in range(62)]
    assert all(700 < n < 1300 for n in ones)
