"""The one knowledge loader: every packaged file loads with its provenance, callers get copies of one cached parse,
and a broken or unsourced file is refused naming the file."""

from __future__ import annotations

import subprocess
import sys

import pytest

from precimed.errors import RuleError
from precimed.planning import knowledge_files
from precimed.planning.knowledge_files import KNOWLEDGE, knowledge_names, load_knowledge, read_yaml

PACKAGED = knowledge_names() + knowledge_names("cpic") + knowledge_names("rules")


def test_the_packaged_files_are_found():
    assert {"facts.yaml", "drugs.yaml", "renal.yaml", "cpic/TPMT.yaml", "rules/statins.yaml"} <= set(PACKAGED)


@pytest.mark.parametrize("name", PACKAGED)
def test_every_packaged_file_loads_and_names_its_source_and_version(name):
    data = load_knowledge(name)
    head = data.get("ruleset", data)
    assert head["source"] and head["version"]


def test_callers_get_copies_of_one_cached_parse():
    first = load_knowledge("renal.yaml")
    first["drugs"].clear()
    first["version"] = "changed"
    again = load_knowledge("renal.yaml")
    assert again["drugs"] and again["version"] != "changed"
    before = knowledge_files._parsed.cache_info().misses
    load_knowledge("renal.yaml")
    assert knowledge_files._parsed.cache_info().misses == before  # parsed once, not re-read


def test_a_packaged_path_goes_through_the_loader_and_a_site_file_is_read_afresh(tmp_path):
    assert read_yaml(KNOWLEDGE / "drugs.yaml") == load_knowledge("drugs.yaml")
    site = tmp_path / "schema.yaml"
    site.write_text("facts: {}\n")
    assert read_yaml(site) == {"facts": {}}
    site.write_text("facts: {ecog: {type: number}}\n")
    assert read_yaml(site) == {"facts": {"ecog": {"type": "number"}}}


def test_bad_yaml_is_refused_naming_the_file_line_and_entry(tmp_path, monkeypatch):
    monkeypatch.setattr(knowledge_files, "KNOWLEDGE", tmp_path)
    (tmp_path / "broken.yaml").write_text('version: "1"\nsource: test\nitems:\n  - id: first\n    when: {a: [1, 2\n')
    with pytest.raises(RuleError, match=r"broken\.yaml line \d+: YAML syntax error in entry 'first'"):
        load_knowledge("broken.yaml")


@pytest.mark.parametrize(("text", "message"), [
    ("source: test\nitems: []\n", "version missing at its top level"),
    ("ruleset: {id: x, version: '1'}\nrules: []\n", "source missing at its ruleset header"),
    ("- just\n- a list\n", "a knowledge file is a YAML mapping"),
])
def test_a_file_without_provenance_or_not_a_mapping_is_refused(tmp_path, monkeypatch, text, message):
    monkeypatch.setattr(knowledge_files, "KNOWLEDGE", tmp_path)
    (tmp_path / "table.yaml").write_text(text)
    with pytest.raises(RuleError, match=rf"table\.yaml: .*{message}"):
        load_knowledge("table.yaml")


@pytest.mark.parametrize("name", ["missing.yaml", "../pyproject.toml", "/etc/passwd.yaml", "cpic/../../x.yaml"])
def test_a_missing_file_or_a_name_outside_the_folder_is_refused(name):
    with pytest.raises(RuleError, match="knowledge file"):
        load_knowledge(name)


def test_importing_planning_loads_no_machine_learning_library():
    code = ("import sys, precimed.planning; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'lightgbm', 'sklearn'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
