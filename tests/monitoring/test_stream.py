"""The vitals stream: NEWS2 per record, alert hysteresis, learned risk, bad records."""

from __future__ import annotations

import io
import json
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from precimed.errors import ConfigError, DataError
from precimed.monitoring import FEATURES, Monitor, RecordError, run_monitor, simulate_ward, window_features

NORMAL = {"resp_rate": 16, "spo2": 97, "spo2_scale": 1, "on_oxygen": False, "systolic_bp": 125, "pulse": 72,
          "consciousness": "A", "temperature": 36.8}
RED = {"resp_rate": 26}                                        # a single 3: low-medium
MEDIUM = {"resp_rate": 26, "pulse": 95, "temperature": 38.5}   # 3 + 1 + 1 = 5
HIGH = {"resp_rate": 26, "systolic_bp": 88, "pulse": 95}       # 3 + 3 + 1 = 7
START = datetime(2024, 3, 1, 8, 0)


def rec(hour: float, pid: str = "P1", **vitals) -> dict:
    return {"patient_id": pid, "time": (START + timedelta(hours=hour)).isoformat(), **NORMAL, **vitals}


def events(monitor: Monitor, records: list[dict]) -> list[tuple[str, str]]:
    out = []
    for r in records:
        out += [(e["event"], e["level"]) for e in monitor.observe(r).events]
    return out


def test_one_alert_per_episode_however_long_it_lasts():
    stream = [rec(0), rec(1, **RED), rec(2, **RED), rec(3, **RED), rec(4, **RED)]
    assert events(Monitor(), stream) == [("alert", "low-medium")]


def test_a_rising_level_within_an_episode_escalates_and_a_falling_one_is_quiet():
    stream = [rec(0, **RED), rec(1, **MEDIUM), rec(2, **HIGH), rec(3, **MEDIUM), rec(4, **HIGH)]
    assert events(Monitor(), stream) == [("alert", "low-medium"), ("escalation", "medium"), ("escalation", "high")]


def test_two_consecutive_low_observations_clear_and_the_next_rise_alerts_again():
    stream = [rec(0, **MEDIUM), rec(1), rec(2, **RED), rec(3), rec(4), rec(5, **RED)]
    assert events(Monitor(), stream) == [("alert", "medium"), ("clear", "low"), ("alert", "low-medium")]


def test_clear_after_is_configurable():
    stream = [rec(0, **RED), rec(1), rec(2), rec(3)]
    assert events(Monitor(clear_after=3), stream) == [("alert", "low-medium"), ("clear", "low")]
    assert events(Monitor(clear_after=1), stream[:2]) == [("alert", "low-medium"), ("clear", "low")]


def test_incomplete_low_observations_do_not_clear_an_episode():
    quiet_but_unknown = {"spo2": None}
    stream = [rec(0, **RED), rec(1, **quiet_but_unknown), rec(2, **quiet_but_unknown), rec(3)]
    assert events(Monitor(), stream) == [("alert", "low-medium")]
    assert events(Monitor(), [*stream, rec(4)])[-1] == ("clear", "low")


def test_alert_level_medium_ignores_a_single_3():
    stream = [rec(0, **RED), rec(1, **MEDIUM)]
    assert events(Monitor(alert_level="medium"), stream) == [("alert", "medium")]


def test_patients_have_separate_episodes():
    stream = [rec(0, "A", **RED), rec(0.5, "B", **RED), rec(1, "A", **RED), rec(1.5, "B")]
    m = Monitor()
    got = [(e["patient_id"], e["event"]) for r in stream for e in m.observe(r).events]
    assert got == [("A", "alert"), ("B", "alert")]


def test_an_alert_explains_itself():
    step = Monitor().observe(rec(0, resp_rate=26, on_oxygen=True, temperature=None))
    (alert,) = step.events
    assert alert["event"] == "alert" and alert["news2"] == 5 and alert["level"] == "medium"
    assert "resp_rate 26/min scores 3" in alert["reasons"]
    assert "on oxygen scores 2" in alert["reasons"]
    assert any("not recorded: temperature" in r for r in alert["reasons"])
    assert alert["complete"] is False and alert["missing"] == ["temperature"]
    assert alert["time"] == "2024-03-01T08:00:00" and alert["patient_id"] == "P1"
    assert "risk" not in alert
    json.dumps(alert)


def test_out_of_order_times_are_rejected_naming_patient_and_times():
    m = Monitor()
    m.observe(rec(2))
    with pytest.raises(DataError, match="P1") as info:
        m.observe(rec(1))
    assert "2024-03-01T09:00:00" in str(info.value) and "2024-03-01T10:00:00" in str(info.value)
    m.observe(rec(2))  # the same time again is accepted
    m.observe(rec(1, pid="P2"))  # another patient's clock is independent


def test_times_with_and_without_offsets_cannot_be_mixed():
    m = Monitor()
    m.observe({**rec(0), "time": "2024-03-01T08:00:00+01:00"})
    with pytest.raises(DataError, match="offset"):
        m.observe({**rec(1), "time": "2024-03-01T09:00:00"})


@pytest.mark.parametrize("bad", [None, "yesterday", "2024-13-01T00:00"])
def test_a_missing_or_unreadable_time_is_a_data_error(bad):
    with pytest.raises(DataError, match="time"):
        Monitor().observe({**rec(0), "time": bad})


def test_monitor_arguments_are_checked():
    with pytest.raises(ConfigError):
        Monitor(window=timedelta(0))
    with pytest.raises(ConfigError):
        Monitor(alert_level="low")
    with pytest.raises(ConfigError):
        Monitor(clear_after=0)


# --------------------------------------------------------------------------------------------- risk


def test_a_learned_risk_above_threshold_alerts_even_when_news2_is_low():
    seen = []

    def risk_fn(rows: pd.DataFrame):
        seen.append(rows)
        return np.full(len(rows), 0.8)

    step = Monitor(risk_fn=risk_fn, risk_threshold=0.7).observe(rec(0))
    (alert,) = step.events
    assert alert["risk"] == pytest.approx(0.8) and alert["level"] == "low"
    assert any("learned risk 0.80" in r for r in alert["reasons"])
    assert list(seen[0].columns) == list(FEATURES)


def test_risk_fn_must_return_one_probability_per_row():
    with pytest.raises(ConfigError, match="probabilities"):
        Monitor(risk_fn=lambda rows: np.full(len(rows), 3.0)).observe(rec(0))
    with pytest.raises(ConfigError, match="value"):
        Monitor(risk_fn=lambda rows: np.zeros(2)).observe(rec(0))


def test_the_monitor_gives_risk_fn_the_same_features_as_window_features():
    obs, _ = simulate_ward(25, 4, seed=11)
    rows = []
    monitor = Monitor(risk_fn=lambda r: (rows.append(r), np.zeros(len(r)))[1])
    for record in obs.to_dict("records"):
        monitor.observe(record)
    streamed = pd.concat(rows, ignore_index=True)
    batch = window_features(obs).reset_index(drop=True)
    pd.testing.assert_frame_equal(streamed, batch, rtol=1e-9, atol=1e-12)


# ----------------------------------------------------------------------------------------- run_monitor


def lines(records: list[dict]) -> list[str]:
    return [json.dumps(r) + "\n" for r in records]


def test_run_monitor_writes_alerts_and_scores_as_json_lines():
    stream = [rec(0), rec(1, **RED), rec(2, **HIGH), rec(3), rec(4)]
    alerts, scores = io.StringIO(), io.StringIO()
    summary = run_monitor(lines(stream), alerts, scores)
    got = [json.loads(x) for x in alerts.getvalue().splitlines()]
    assert [e["event"] for e in got] == ["alert", "escalation", "clear"]
    score_lines = [json.loads(x) for x in scores.getvalue().splitlines()]
    assert [s["news2"] for s in score_lines] == [0, 3, 7, 0, 0]
    assert score_lines[1]["parts"]["resp_rate"] == 3
    assert summary["records"] == 5 and summary["patients"] == 1
    assert (summary["alerts"], summary["escalations"], summary["clears"]) == (1, 1, 1)
    assert summary["levels"] == {"low": 3, "low-medium": 1, "medium": 0, "high": 1}


def test_run_monitor_reads_an_open_text_stream_and_skips_blank_lines():
    text = "".join(lines([rec(0, **RED)])) + "\n   \n" + "".join(lines([rec(1, **HIGH)]))
    alerts = io.StringIO()
    summary = run_monitor(io.StringIO(text), alerts)
    assert summary["records"] == 2 and summary["escalations"] == 1


def test_a_bad_record_stops_the_run_naming_line_and_field_and_keeps_earlier_alerts_valid():
    stream = lines([rec(0, **RED), rec(1, **HIGH), rec(2, spo2=104), rec(3, **RED)])
    alerts = io.StringIO()
    with pytest.raises(RecordError, match="line 3") as info:
        run_monitor(stream, alerts)
    assert info.value.line == 3 and info.value.column == "spo2"
    assert "spo2" in str(info.value) and "P1" in str(info.value)
    written = [json.loads(x) for x in alerts.getvalue().splitlines()]
    assert [e["event"] for e in written] == ["alert", "escalation"]
    assert alerts.getvalue().endswith("\n")


def test_malformed_json_names_its_line():
    stream = [*lines([rec(0)]), "\n", '{"patient_id": "P1", "time": \n']
    with pytest.raises(RecordError, match="line 3: not valid JSON") as info:
        run_monitor(stream, io.StringIO())
    assert info.value.line == 3


def test_an_out_of_order_record_in_a_stream_names_its_line():
    with pytest.raises(RecordError, match="line 2: field time") as info:
        run_monitor(lines([rec(5), rec(1)]), io.StringIO())
    assert info.value.column == "time"


def test_a_record_that_is_not_an_object_is_refused():
    with pytest.raises(RecordError, match="line 1"):
        run_monitor(["[1, 2]\n"], io.StringIO())


def test_batched_risk_gives_the_same_output_as_one_record_at_a_time():
    obs, _ = simulate_ward(20, 3, seed=5)
    records = obs.to_dict("records")

    def risk_fn(rows: pd.DataFrame) -> np.ndarray:
        z = 0.3 * rows["resp_rate_last"].fillna(16) - 6 + 0.2 * rows["news2"]
        return 1 / (1 + np.exp(-z.to_numpy()))

    outs = []
    for batch_size in (1, 64):
        alerts, scores = io.StringIO(), io.StringIO()
        run_monitor(records, alerts, scores, batch_size=batch_size, risk_fn=risk_fn, risk_threshold=0.3)
        outs.append((alerts.getvalue(), scores.getvalue()))
    assert outs[0] == outs[1]
    assert '"risk"' in outs[0][1]


def test_a_bad_record_after_a_batch_still_writes_the_records_before_it():
    records = [rec(h) for h in range(5)] + [rec(6, pulse=-3)]
    scores = io.StringIO()
    with pytest.raises(RecordError, match="line 6"):
        run_monitor(records, io.StringIO(), scores, batch_size=4, risk_fn=lambda r: np.zeros(len(r)))
    assert len(scores.getvalue().splitlines()) == 5
