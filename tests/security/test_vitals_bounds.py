"""The vitals monitor in bounded memory (finding 8) and strict about its fields (finding 10); no Host echo on a
trailing-slash redirect (finding 10)."""

from __future__ import annotations

import io
import json
import tracemalloc

import pytest

from precimed.errors import DataError
from precimed.monitoring import Monitor, run_monitor
from precimed.workflows.patients import VitalsMonitors
from service.conftest import pima_bundles, start  # noqa: F401  (pima_bundles is a session fixture)

CALM = {"resp_rate": 16, "spo2": 97, "systolic_bp": 120, "pulse": 72, "consciousness": "A", "temperature": 37.0,
        "on_oxygen": False}
SICK = {"resp_rate": 26, "spo2": 91, "systolic_bp": 95, "pulse": 125, "consciousness": "A", "temperature": 38.5,
        "on_oxygen": False}


def obs(pid: str, hour: int = 8, **vitals) -> dict:
    return {"patient_id": pid, "time": f"2026-03-01T{hour:02d}:00:00+00:00", **(vitals or CALM)}


def kinds(result) -> list[str]:
    return [e["event"] for e in result.events]


# ----- the service's monitors ---------------------------------------------------------------------------------
def test_a_flood_of_patient_ids_is_held_in_bounded_memory():
    """Twelve times more distinct ids than the bound: the bound is kept, and so is the memory (a few hundred
    bytes a patient; the attack's 160,000 ids held 186 MB before)."""
    monitors = VitalsMonitors(max_patients=500)
    monitors.ingest([obs("warm-up")])
    tracemalloc.start()
    for start_id in range(0, 6_000, 500):
        assert monitors.ingest([obs(f"id{i}") for i in range(start_id, start_id + 500)]).error is None
        assert len(monitors) <= 500
    held, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(monitors) == 500
    assert held < 500 * 1_000, f"{held:,} bytes held for 500 patients"


def test_the_least_recently_seen_patient_is_forgotten_first():
    monitors = VitalsMonitors(max_patients=3)
    assert kinds(monitors.ingest([obs("a", **SICK)])) == ["alert"]
    monitors.ingest([obs("b"), obs("c")])
    assert kinds(monitors.ingest([obs("a", 9, **SICK)])) == []  # a was seen: its episode stays open
    monitors.ingest([obs("d")])  # evicts b, the least recently seen, not a
    assert kinds(monitors.ingest([obs("a", 10, **SICK)])) == [] and len(monitors) == 3


def test_a_discharge_drops_the_patients_state_at_once():
    monitors = VitalsMonitors(max_patients=10)
    assert kinds(monitors.ingest([obs("w1", **SICK)])) == ["alert"]
    done = monitors.ingest([{"patient_id": "w1", "event": "discharge"}])
    assert done.error is None and done.discharged == ["w1"] and done.handled == 1 and len(monitors) == 0
    # readmitted and still sick: a new episode, so a new alert (without the discharge: nothing)
    assert kinds(monitors.ingest([obs("w1", 12, **SICK)])) == ["alert"]


@pytest.mark.parametrize(("record", "field"), [
    ({"patient_id": "w1", "event": "discharge", "pulse": 80}, "pulse"),
    ({"patient_id": "w1", "event": "transfer"}, "event"),
    ({"event": "discharge"}, "patient_id"),
])
def test_a_malformed_discharge_is_refused_naming_the_field(record, field):
    done = VitalsMonitors().ingest([obs("w1"), record])
    assert done.handled == 1 and isinstance(done.error, DataError) and done.error.column == field


def test_an_idle_patient_is_forgotten_after_the_idle_limit():
    now = [0.0]
    monitors = VitalsMonitors(max_patients=100, max_idle_seconds=3600, clock=lambda: now[0])
    monitors.ingest([obs("old", **SICK)])
    now[0] = 1800.0
    monitors.ingest([obs("recent")])
    now[0] = 3601.0
    monitors.ingest([obs("new")])
    assert len(monitors) == 2  # old expired; recent (idle 1,801 s) and new kept
    assert kinds(monitors.ingest([obs("old", 9, **SICK)])) == ["alert"]


def test_client_chosen_thresholds_cannot_multiply_the_monitors():
    """One stream per model, version and threshold; 200 thresholds keep at most max_streams streams, and the
    patients of a forgotten stream are forgotten with it (the patient bound still holds)."""
    monitors = VitalsMonitors(max_patients=50, max_streams=4)
    for i in range(200):
        stream = ("model", 1, i / 1000)
        monitors.ingest([obs(f"p{i}-{j}") for j in range(5)], stream=stream, risk_fn=lambda rows: [0.0] * len(rows),
                        risk_threshold=i / 1000)
        assert monitors.streams <= 4 and len(monitors) <= 20
    assert monitors.streams == 4 and len(monitors) == 20


@pytest.mark.parametrize("field", ["systolic", "heart_rate", "note", "age"])
def test_an_unknown_field_is_refused_by_name_not_ignored(field):
    record = {**obs("w1"), field: 120}
    done = VitalsMonitors().ingest([obs("w0"), record])
    assert done.handled == 1 and isinstance(done.error, DataError) and done.error.column == field
    assert field in str(done.error) and len(VitalsMonitors()) == 0


# ----- the command line's stream ------------------------------------------------------------------------------
def test_a_replayed_stream_follows_at_most_max_patients_and_honours_discharges():
    lines = [json.dumps(obs(f"p{i}")) for i in range(50)]
    lines += [json.dumps(obs("p49", 9, **SICK)), json.dumps({"patient_id": "p49", "event": "discharge"}),
              json.dumps(obs("p49", 10, **SICK))]
    alerts = io.StringIO()
    summary = run_monitor(lines, alerts, max_patients=10)
    assert summary["patients"] == 10 and summary["evicted"] == 40 and summary["discharged"] == 1
    assert [json.loads(x)["event"] for x in alerts.getvalue().splitlines()] == ["alert", "alert"]


def test_the_cli_monitor_takes_max_patients_and_a_discharge(run_cli, tmp_path):
    vitals = tmp_path / "vitals.jsonl"
    vitals.write_text("\n".join(json.dumps(r) for r in [obs("a", **SICK), {"patient_id": "a", "event": "discharge"},
                                                        obs("b"), obs("c"), obs("a", 9, **SICK)]) + "\n")
    code, _, err = run_cli("monitor", "--input", vitals, "--output", tmp_path / "alerts.jsonl", "--max-patients", "2")
    assert code == 0, err
    assert "'discharged': 1" in err and "'evicted': 1" in err and "'patients': 2" in err
    assert len((tmp_path / "alerts.jsonl").read_text().splitlines()) == 2


@pytest.mark.parametrize("line", ['{"patient_id": ' + "[" * 100_000 + "]" * 100_000 + "}",
                                  '{"patient_id": "w1", "time": "2026-03-01T08:00:00", "pulse": ' + "9" * 5000 + "}"])
def test_a_deep_or_huge_number_vitals_line_is_one_line_and_exit_2(run_cli, tmp_path, line):
    vitals = tmp_path / "vitals.jsonl"
    vitals.write_text(json.dumps(obs("w0")) + "\n" + line + "\n")
    code, _, err = run_cli("monitor", "--input", vitals, "--output", tmp_path / "alerts.jsonl")
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: line 2: not a record"), err


def test_a_monitor_state_per_patient_is_small():
    monitor = Monitor()
    tracemalloc.start()
    for i in range(5_000):
        monitor.observe(obs(f"id{i}"))
    held, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(monitor) == 5_000 and held / 5_000 < 600  # bytes per patient (was about 1,160)


# ----- over HTTP ----------------------------------------------------------------------------------------------
@pytest.fixture
def service(tmp_path, pima_bundles):  # noqa: F811
    s = start(tmp_path, pima_bundles, max_monitored_patients=5)
    yield s
    s.client.close()
    s.container.db.dispose()


def test_http_an_unknown_observation_field_is_422_naming_it(service):
    r = service.client.post("/v1/vitals", json={"observations": [obs("w1"), {**obs("w2"), "sbp": 120}]},
                            headers=service.auth("clinician"))
    assert r.status_code == 422
    body = r.json()
    assert body["field"] == "sbp" and "unknown field 'sbp'" in body["message"] and body["accepted"] == 1


def test_http_a_discharge_ends_the_episode_and_the_state(service):
    post = lambda o: service.client.post("/v1/vitals", json={"observations": o},  # noqa: E731
                                         headers=service.auth("clinician"))
    assert [e["event"] for e in post([obs("w1", **SICK)]).json()["alerts"]] == ["alert"]
    r = post([{"patient_id": "w1", "event": "discharge"}])
    assert r.status_code == 200 and r.json()["accepted"] == 1 and len(service.container.vitals) == 0
    assert [e["event"] for e in post([obs("w1", 12, **SICK)]).json()["alerts"]] == ["alert"]


def test_http_a_flood_of_ids_keeps_the_configured_number(service):
    r = service.client.post("/v1/vitals", json={"observations": [obs(f"f{i}") for i in range(500)]},
                            headers=service.auth("clinician"))
    assert r.status_code == 200 and r.json()["accepted"] == 500 and len(service.container.vitals) == 5


@pytest.mark.parametrize("path", ["/v1/vitals/", "/healthz/", "/v1/models/"])
def test_http_a_trailing_slash_never_redirects_to_the_host_header(service, path):
    r = service.client.request("POST" if "vitals" in path else "GET", path, headers={
        "Host": "evil.example", **service.auth("clinician")}, follow_redirects=False)
    assert r.status_code == 404 and "location" not in r.headers
    assert "evil.example" not in r.text


def test_the_service_bounds_come_from_its_settings(tmp_path, pima_bundles):  # noqa: F811
    """The patient, stream and idle bounds are operator settings (PRECIMED_MAX_VITAL_STREAMS, …), not constants."""
    from precimed.service.settings import ServiceSettings

    svc = start(tmp_path, pima_bundles, max_monitored_patients=7, max_vital_streams=3, vitals_idle_hours=0.5)
    vitals = svc.container.vitals
    assert (vitals.max_patients, vitals.max_streams, vitals.max_idle_seconds) == (7, 3, 1800.0)
    assert ServiceSettings(registry=tmp_path).max_vital_streams == 16  # the documented defaults
    assert ServiceSettings(registry=tmp_path).vitals_idle_hours == 72.0
