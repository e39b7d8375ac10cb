"""Fixtures for the service: a small trained Pima bundle, a registry with it in production, tokens per role."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from helpers import PIMA, fast


def pytest_configure(config):
    # starlette's TestClient warns that it will move from httpx to httpx2; harmless here
    config.addinivalue_line("filterwarnings", "ignore:Using `httpx`")

DATA = Path(__file__).parent / "data"
ROOT_EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
MAPPING = DATA / "pima_fhir_mapping.yaml"
PATIENT = {"patient_id": "p1", "glu": 148, "bmi": 33.6, "age": 50, "ped": 0.627}


def _train(out: Path, name: str, seed: int) -> Path:
    from precimed.config import parse_config
    from precimed.workflows import train_from_config

    cfg = fast(PIMA)
    cfg["name"] = name
    cfg["seed"] = seed
    cfg["models"]["baselines"] = ["logistic"]
    cfg["evaluation"] = {"bootstrap": 5, "explain": 0}
    return train_from_config(parse_config(cfg), out, progress=False).bundle_path


@pytest.fixture(scope="session")
def pima_bundles(tmp_path_factory) -> tuple[Path, Path]:
    """Two versions of the same small model (different seeds): enough to promote and roll back."""
    root = tmp_path_factory.mktemp("bundles")
    return _train(root / "a", "pima-small", 0), _train(root / "b", "pima-small", 1)


@dataclass
class Svc:
    app: object
    client: object
    registry: Path
    db_url: str
    tokens: dict[str, str]
    ids: dict[str, str]

    def auth(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}

    @property
    def container(self):
        """The app's service container (settings, database, registry, audit, monitors)."""
        from precimed.service.container import container_of

        return container_of(self.app)


def start(tmp_path: Path, bundles: tuple[Path, Path], db_url: str | None = None, **settings) -> Svc:
    from fastapi.testclient import TestClient

    from precimed.service import ServiceSettings, create_app
    from precimed.service import cli_commands as cli

    registry = tmp_path / "registry"
    cli.registry_add(registry, bundles[0], fhir_mapping=MAPPING, db=db_url)
    cli.registry_promote(registry, "pima-small", 1, db=db_url)
    tokens, ids = {}, {}
    for role in ("clinician", "data_scientist", "admin", "auditor"):
        ids[role], tokens[role] = cli.tokens_create(registry, role, label=f"test {role}", db=db_url)
    app = create_app(ServiceSettings(registry=registry, db_url=db_url, **settings))
    client = TestClient(app)
    from precimed.service.container import container_of

    return Svc(app, client, registry, container_of(app).settings.database_url, tokens, ids)


@pytest.fixture
def svc(tmp_path, pima_bundles) -> Svc:
    s = start(tmp_path, pima_bundles)
    yield s
    s.client.close()
    s.container.db.dispose()
