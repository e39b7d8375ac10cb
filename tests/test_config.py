from pathlib import Path

import pytest
import yaml

from precimed.config import load_config, parse_config
from precimed.errors import ConfigError

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
BASE = {
    "name": "t",
    "data": {"train": {"dataset": "pima_tr"}},
    "task": {"kind": "binary", "target": "type", "positive": "Yes"},
    "features": [{"name": "glu", "kind": "numeric", "unit": "mg/dL", "range": [20, 400]}],
}


POLICIES = {"retrain.yaml"}  # retraining policies (precimed retrain --policy), not run configs


@pytest.mark.parametrize("path", sorted(p for p in EXAMPLES.glob("*.yaml") if p.name not in POLICIES),
                         ids=lambda p: p.name)
def test_every_example_config_parses(path):
    assert load_config(path).name


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_every_example_policy_parses(name):
    from precimed.workflows.retraining import load_policy

    assert load_policy(EXAMPLES / name) is not None


def test_the_demo_recipe_is_the_example_file():
    from precimed.workflows import demo_config_path

    assert demo_config_path().read_text() == (EXAMPLES / "rotterdam-gbsg.yaml").read_text()


def test_a_typo_in_a_key_is_named(tmp_path):
    data = dict(BASE, training={"learning_rate": 0.1})
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"run.yaml: unknown key 'training.learning_rate'"):
        load_config(path)


def test_defaults_are_the_classic_64_32_network():
    cfg = parse_config(BASE)
    assert cfg.models.mlp.hidden == [64, 32]
    assert cfg.models.names is None and cfg.models.primary is None


def test_survival_task_needs_time_event_and_horizons():
    data = dict(BASE, task={"kind": "survival", "time": "t"})
    with pytest.raises(ConfigError, match="needs 'time' and 'event'"):
        parse_config(data)


def test_an_unsafe_derived_column_is_refused_when_the_config_loads():
    data = dict(BASE, data={"train": {"dataset": "pima_tr", "derive": {"x": "__import__('os').system('ls')"}}})
    with pytest.raises(ConfigError, match="not allowed|unknown function"):
        parse_config(data)


def test_missing_and_invalid_yaml_files_are_named(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_config(bad)


def test_relative_file_paths_resolve_against_the_config_folder(tmp_path):
    data = dict(BASE, data={"train": {"path": "cohort.csv"}})
    path = tmp_path / "sub" / "run.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(data))
    assert load_config(path).data.train.path == tmp_path / "sub" / "cohort.csv"
