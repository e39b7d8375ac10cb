"""The ward board: latest NEWS2 per patient per ward, urgency order, alerts and acknowledgement, bounded memory,
and the publish/subscribe of changes."""

from __future__ import annotations

import asyncio
import threading

import pytest

from helpers import run_coroutine
from precimed.errors import DataError
from precimed.monitoring import Monitor
from precimed.workflows.wards import BoardHub, SubscriberDropped, WardBoard, Wards

CALM = {"resp_rate": 16, "spo2": 97, "systolic_bp": 125, "pulse": 75, "consciousness": "A", "temperature": 36.8,
        "on_oxygen": False}
MEDIUM = {**CALM, "resp_rate": 22, "pulse": 112, "temperature": 38.5}  # 2 + 2 + 1 = 5: medium
HIGH = {**CALM, "resp_rate": 26, "spo2": 90, "systolic_bp": 95, "pulse": 125}  # 3 + 3 + 2 + 2 = 10: high


def obs(pid, hour, vitals=CALM, **extra):
    return {"patient_id": pid, "time": f"2026-03-01T{hour:02d}:00:00+00:00", **vitals, **extra}


def test_a_board_orders_patients_by_level_then_score_then_time():
    m, board = Monitor(strict=True), WardBoard()
    steps = [m.observe(obs("calm", 8, ward="A", bed="1")), m.observe(obs("med", 8, MEDIUM, ward="A", bed="2")),
             m.observe(obs("high", 9, HIGH, ward="A", bed="3")), m.observe(obs("med-early", 7, MEDIUM, ward="A")),
             m.observe(obs("elsewhere", 8, HIGH, ward="B")), m.observe(obs("nowhere", 8, HIGH))]
    assert board.apply(steps) == {"A", "B"}
    rows = board.ward("A")
    assert [r["patient_id"] for r in rows] == ["high", "med-early", "med", "calm"]
    assert [r["level"] for r in rows] == ["high", "medium", "medium", "low"]
    assert rows[0]["news2"] == 10 and rows[0]["bed"] == "3" and rows[0]["alert"]["level"] == "high"
    assert rows[-1]["alert"] is None
    assert [w["ward"] for w in board.wards()] == ["A", "B"]
    a = board.wards()[0]
    assert (a["patients"], a["alerts"], a["unacknowledged"], a["highest"]) == (4, 3, 3, "high")


def test_the_ward_is_sticky_a_transfer_moves_and_a_discharge_removes():
    m, board = Monitor(strict=True), WardBoard(trend_length=3)
    board.apply([m.observe(obs("p", h, ward="A" if h == 1 else None)) for h in range(1, 6)])
    (row,) = board.ward("A")
    assert row["trend"] == [0, 0, 0] and row["time"].startswith("2026-03-01T05")
    assert board.apply([m.observe(obs("p", 6, MEDIUM, ward="B", bed="7"))]) == {"A", "B"}
    assert board.ward("A") == [] and board.ward("B")[0]["bed"] == "7"
    assert board.ward("B")[0]["alert"] is not None  # the alert travels with the patient
    assert board.apply([], discharged=["p"]) == {"B"}
    assert len(board) == 0 and board.wards() == []


def test_alerts_open_escalate_clear_and_an_escalation_after_an_ack_needs_a_new_ack():
    m, board = Monitor(strict=True), WardBoard()
    board.apply([m.observe(obs("p", 8, MEDIUM, ward="A"))])
    alert = board.ward("A")[0]["alert"]
    first = board.acknowledge("A", alert["id"], actor="tok_1", role="clinician")
    assert first.status == "acknowledged" and first.alert["acked_by"] == "tok_1" and first.alert["acked_at"]
    assert board.acknowledge("A", alert["id"], actor="tok_2", role="clinician").status == "already"
    assert board.acknowledge("B", alert["id"], actor="tok_2", role="clinician").status == "not_found"
    board.apply([m.observe(obs("p", 9, HIGH))])
    escalated = board.ward("A")[0]["alert"]
    assert escalated["id"] != alert["id"] and escalated["escalated"] and not escalated["acknowledged"]
    board.apply([m.observe(obs("p", 10)), m.observe(obs("p", 11))])  # two calm complete observations clear it
    assert board.ward("A")[0]["alert"] is None


def test_memory_is_bounded_by_patients_and_idle_time():
    now = [0.0]
    m, board = Monitor(strict=True), WardBoard(max_patients=3, max_idle_seconds=60, clock=lambda: now[0])
    board.apply([m.observe(obs(f"p{i}", 8, ward="A")) for i in range(5)])
    assert [r["patient_id"] for r in board.ward("A")] == ["p2", "p3", "p4"]
    now[0] = 61.0
    assert board.ward("A") == [] and len(board) == 0


def test_a_learned_risk_is_carried_and_a_bad_ward_is_refused_naming_the_field():
    m, board = Monitor(strict=True), WardBoard()
    board.apply([m.observe(obs("p", 8, ward="A"), risk=0.37)])
    assert board.ward("A")[0]["risk"] == pytest.approx(0.37)
    for bad in ("", "<script>", "x" * 65, 5):
        with pytest.raises(DataError) as info:
            m.observe(obs("q", 8, ward=bad))
        assert info.value.column == "ward"


def test_subscribers_hear_their_ward_and_a_slow_one_is_dropped_without_blocking():
    hub = BoardHub(max_queue=2)
    m, wards = Monitor(strict=True), Wards(WardBoard(), hub)

    async def main():
        mine, other, slow = hub.subscribe("A"), hub.subscribe("B"), hub.subscribe(None)
        assert await mine.next(0.01) is None  # nothing yet: the caller sends a heartbeat
        # published from another thread, as the service's thread pool does
        t = threading.Thread(target=wards.apply, args=([m.observe(obs("p", 8, ward="A"))],))
        t.start()
        t.join()
        assert await mine.next(1.0) == "A"
        assert await other.next(0.01) is None
        for h in range(9, 13):
            wards.apply([m.observe(obs("p", h))])
        await asyncio.sleep(0)  # let the scheduled offers run
        with pytest.raises(SubscriberDropped):
            await slow.next(0.01)
        hub.unsubscribe(slow)
        assert len(hub) == 2

    run_coroutine(main())
