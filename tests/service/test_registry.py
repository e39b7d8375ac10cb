"""The registry: bundles verified and copied in atomically; versions promoted to staging or production and rolled
back; requests get the production version unless they pin one."""

from __future__ import annotations

import shutil

import pytest

from precimed.errors import ArtifactError, ConfigError
from precimed.service import cli_commands as cli
from service.conftest import PATIENT

PREDICT = "/v1/models/pima-small/predict"


def _probability(svc, **body) -> tuple[int, float]:
    r = svc.client.post(PREDICT, json={"patients": [PATIENT], **body}, headers=svc.auth("clinician"))
    assert r.status_code == 200, r.text
    return r.json()["version"], r.json()["predictions"][0]["probability"]


def test_add_list_promote_and_rollback_from_the_cli(tmp_path, pima_bundles):
    reg = tmp_path / "reg"
    one = cli.registry_add(reg, pima_bundles[0])
    two = cli.registry_add(reg, pima_bundles[1])
    assert (one["version"], two["version"]) == (1, 2) and one["name"] == "pima-small"
    assert (reg / "models" / "pima-small" / "2" / "bundle" / "metadata.json").is_file()
    cli.registry_promote(reg, "pima-small", 1)
    cli.registry_promote(reg, "pima-small", 2)
    cli.registry_promote(reg, "pima-small", 2, stage="staging")
    [model] = cli.registry_models(reg)
    assert (model["production"], model["staging"]) == (2, 2)
    assert cli.registry_rollback(reg, "pima-small")["version"] == 1
    assert cli.registry_models(reg)[0]["production"] == 1
    with pytest.raises(ConfigError, match="no earlier production version"):
        cli.registry_rollback(reg, "pima-small")
    with pytest.raises(ConfigError, match="already registered as pima-small version 1"):
        cli.registry_add(reg, pima_bundles[0])
    with pytest.raises(ConfigError, match="already in production"):
        cli.registry_promote(reg, "pima-small", 1)
    with pytest.raises(ConfigError, match="unknown stage"):
        cli.registry_promote(reg, "pima-small", 1, stage="canary")


def test_rollback_pops_back_through_the_promotion_history(tmp_path, pima_bundles):
    reg = tmp_path / "reg"
    cli.registry_add(reg, pima_bundles[0])
    cli.registry_add(reg, pima_bundles[1])
    cli.registry_add(reg, pima_bundles[0], name="other")
    for v in (1, 2, 1, 2):
        if cli.registry_models(reg)[1]["production"] != v:
            cli.registry_promote(reg, "pima-small", v)
    assert [cli.registry_rollback(reg, "pima-small")["version"] for _ in range(3)] == [1, 2, 1]
    assert [m["name"] for m in cli.registry_models(reg)] == ["other", "pima-small"]


def test_an_altered_bundle_is_refused_and_leaves_nothing_behind(tmp_path, pima_bundles):
    bad = tmp_path / "bad"
    shutil.copytree(pima_bundles[0], bad)
    (bad / "models" / "mlp.json").write_text((bad / "models" / "mlp.json").read_text().replace("1", "2", 1))
    reg = tmp_path / "reg"
    with pytest.raises(ArtifactError, match="does not match its recorded sha256"):
        cli.registry_add(reg, bad)
    assert cli.registry_models(reg) == []
    assert not any((reg / "models").iterdir())
    assert not (reg / ".incoming").exists() or not any((reg / ".incoming").iterdir())


def test_requests_get_production_unless_they_pin_a_version(svc, pima_bundles):
    cli.registry_add(svc.registry, pima_bundles[1])
    cli.registry_promote(svc.registry, "pima-small", 2, stage="staging")  # clinicians pin only staged versions
    v, p1 = _probability(svc)
    assert v == 1
    pinned, p2 = _probability(svc, version=2)
    assert pinned == 2 and p2 != p1
    promoted = svc.client.post("/v1/models/pima-small/promote", json={"version": 2}, headers=svc.auth("admin"))
    assert promoted.status_code == 200
    assert _probability(svc) == (2, p2)
    back = svc.client.post("/v1/models/pima-small/rollback", json={}, headers=svc.auth("admin"))
    assert back.status_code == 200 and back.json()["version"] == 1
    assert _probability(svc) == (1, p1)
    listing = svc.client.get("/v1/models", headers=svc.auth("data_scientist")).json()["models"][0]
    assert listing["production"] == 1 and [v["version"] for v in listing["versions"]] == [1, 2]
    assert [f["name"] for f in listing["serving"]["features"]] == ["glu", "bmi", "age", "ped"]


def test_a_model_without_production_is_404_until_pinned_in_staging(svc, pima_bundles):
    cli.registry_add(svc.registry, pima_bundles[1], name="fresh")
    r = svc.client.post("/v1/models/fresh/predict", json={"patients": [PATIENT]}, headers=svc.auth("clinician"))
    assert r.status_code == 404 and "no production version" in r.json()["message"]
    pinned = {"patients": [PATIENT], "version": 1}
    r = svc.client.post("/v1/models/fresh/predict", json=pinned, headers=svc.auth("clinician"))
    assert r.status_code == 403 and "staging or production" in r.json()["message"]
    cli.registry_promote(svc.registry, "fresh", 1, stage="staging")
    r = svc.client.post("/v1/models/fresh/predict", json=pinned, headers=svc.auth("clinician"))
    assert r.status_code == 200


def test_a_registered_bundle_altered_on_disk_is_not_served(svc, pima_bundles):
    info = cli.registry_add(svc.registry, pima_bundles[1], name="tampered")
    cli.registry_promote(svc.registry, "tampered", 1, stage="staging")
    target = svc.registry / "models" / "tampered" / str(info["version"]) / "bundle" / "preprocessor.json"
    target.write_text(target.read_text().replace("0", "1", 1))
    r = svc.client.post("/v1/models/tampered/predict", json={"patients": [PATIENT], "version": 1},
                        headers=svc.auth("clinician"))
    assert r.status_code == 503 and "verification" in r.json()["message"]
    assert "tampered v1: preprocessor.json does not match" in r.json()["message"]
    assert str(svc.registry) not in r.text  # the model and version are named, not the server's folders
    assert svc.client.post("/v1/models/tampered/promote", json={"version": 1},
                           headers=svc.auth("admin")).status_code == 503


def test_a_data_scientist_evaluates_a_version_on_a_built_in_cohort(svc):
    r = svc.client.post("/v1/models/pima-small/evaluate", json={"dataset": "no_such_cohort"},
                        headers=svc.auth("data_scientist"))
    assert r.status_code == 422
    r = svc.client.post("/v1/models/pima-small/evaluate", json={"dataset": "../etc"},
                        headers=svc.auth("data_scientist"))
    assert r.status_code == 422 and r.json()["field"] == "dataset"


def test_the_cli_creates_tokens_shown_once_and_revokes_them(svc):
    token_id, token = cli.tokens_create(svc.registry, "clinician", label="night shift")
    assert token.startswith("pmd_") and token_id.startswith("tok_")
    ok = svc.client.get("/v1/models", headers={"Authorization": f"Bearer {token}"})
    assert ok.status_code == 200
    cli.tokens_revoke(svc.registry, token_id)
    assert svc.client.get("/v1/models", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    assert token not in str(cli.tokens_list(svc.registry))
    with pytest.raises(ConfigError, match="unknown role"):
        cli.tokens_create(svc.registry, "superuser")


def test_migrations_create_exactly_the_declared_schema_and_are_idempotent(tmp_path):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from precimed.service.db import Base, Database

    db = Database(f"sqlite:///{tmp_path / 'x.db'}")
    assert db.revision() is None
    db.migrate()
    db.migrate()
    assert db.revision() == db.head() == "0004_served_one_time_index"
    with db.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    db.dispose()


def test_registry_list_prints_a_table_or_json(tmp_path, pima_bundles, capsys, monkeypatch):
    import json

    monkeypatch.setenv("COLUMNS", "160")
    reg = tmp_path / "reg"
    cli.registry_list(reg)
    assert "no models registered" in capsys.readouterr().out
    cli.registry_add(reg, pima_bundles[0])
    cli.registry_add(reg, pima_bundles[1])
    cli.registry_promote(reg, "pima-small", 2)
    cli.registry_list(reg)
    table = capsys.readouterr().out
    assert "pima-small" in table and "production" in table and "{" not in table  # a table, not a Python repr
    hashes = [v["bundle"].partition("@")[2] for v in cli.registry_models(reg)[0]["versions"]]
    assert all(h in table for h in hashes)
    assert any(line.split()[:3] == ["model", "version", "stages"] for line in table.splitlines())
    cli.registry_list(reg, as_json=True)
    listing = json.loads(capsys.readouterr().out)
    assert listing == cli.registry_models(reg)
    assert listing[0]["production"] == 2 and [v["version"] for v in listing[0]["versions"]] == [1, 2]
