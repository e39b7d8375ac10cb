"""The rule engine: conditions without eval, unknown is not false, conflicts resolved explicitly, bad files refused."""

from __future__ import annotations

import textwrap

import pytest

from precimed.errors import RuleError
from precimed.planning.conditions import evaluate_condition, parse_condition
from precimed.planning.conflicts import Proposal, resolve
from precimed.planning.factschema import load_schema
from precimed.planning.rulebook import Action, evaluate_rules, load_rules, parse_ruleset

SCHEMA = load_schema()


def cond(node):
    return parse_condition(node, schema=SCHEMA, where="test")


def ruleset(rules: str, header: str = "ruleset: {id: t, version: '1', source: test}") -> str:
    return header + "\nrules:\n" + textwrap.indent(textwrap.dedent(rules), "  ")


RULE = """\
- id: r1
  source: "test source"
  when: {fact: age, op: ">=", value: 65}
  recommend: "older"
  strength: strong
"""


@pytest.mark.parametrize(("op", "value", "expected"), [
    ("==", 70, True), ("!=", 70, False), ("<", 71, True), ("<=", 70, True), (">", 70, False), (">=", 70, True),
    ("in", [60, 70], True), ("not_in", [60, 70], False),
])
def test_every_comparison_operator_compares_the_fact_with_the_value(op, value, expected):
    assert evaluate_condition(cond({"fact": "age", "op": op, "value": value}), {"age": 70}) == (expected, set())


def test_exists_is_decided_even_when_the_fact_is_missing():
    assert evaluate_condition(cond({"fact": "age", "op": "exists"}), {}) == (False, set())
    assert evaluate_condition(cond({"fact": "age", "op": "exists", "value": False}), {}) == (True, set())


def test_in_on_a_list_fact_means_any_element_matches():
    c = cond({"fact": "medications", "op": "in", "value": ["warfarin", "apixaban"]})
    assert evaluate_condition(c, {"medications": ["metformin", "warfarin"]})[0] is True
    assert evaluate_condition(c, {"medications": ["metformin"]})[0] is False
    n = cond({"fact": "medications", "op": "not_in", "value": ["warfarin"]})
    assert evaluate_condition(n, {"medications": ["metformin"]})[0] is True


def test_brand_names_in_rules_are_read_as_the_generic_drug():
    c = cond({"fact": "medications", "op": "in", "value": ["Coumadin"]})
    assert evaluate_condition(c, {"medications": ["warfarin"]})[0] is True


def test_a_missing_fact_makes_a_leaf_unknown_not_false():
    assert evaluate_condition(cond({"fact": "age", "op": ">=", "value": 65}), {}) == (None, {"age"})


def test_all_any_not_follow_three_valued_logic():
    age = {"fact": "age", "op": ">=", "value": 65}
    preg = {"fact": "pregnant", "op": "==", "value": True}
    assert evaluate_condition(cond({"all": [age, preg]}), {"age": 70})[0] is None
    assert evaluate_condition(cond({"all": [age, preg]}), {"age": 50}) == (False, {"pregnant"})
    assert evaluate_condition(cond({"any": [age, preg]}), {"age": 70})[0] is True
    assert evaluate_condition(cond({"any": [age, preg]}), {"age": 50})[0] is None
    assert evaluate_condition(cond({"not": preg}), {})[0] is None
    assert evaluate_condition(cond({"not": preg}), {"pregnant": False})[0] is True


def test_predictions_and_their_confidence_bounds_can_be_named():
    c = cond({"prediction": "event_probability_1826days.ci_low", "op": ">=", "value": 0.3})
    assert evaluate_condition(c, {}, {"event_probability_1826days": {"value": 0.4, "ci_low": 0.31}})[0] is True
    assert evaluate_condition(c, {}, {"event_probability_1826days": {"value": 0.4, "ci_low": None}})[0] is None


def test_a_rule_with_missing_facts_is_not_evaluated_and_says_what_is_missing():
    rs = parse_ruleset(ruleset(RULE))
    ev = evaluate_rules(rs.rules, {}, missing_reasons={"age": "not recorded"})
    (o,) = ev.not_evaluated
    assert o.rule.id == "r1" and o.missing == ("age",)
    assert o.to_dict()["why"] == "missing age (not recorded)"
    assert not ev.fired and not ev.not_fired


def test_a_rule_fires_or_not_on_known_facts():
    rs = parse_ruleset(ruleset(RULE))
    assert [o.status for o in evaluate_rules(rs.rules, {"age": 70}).outcomes] == ["fired"]
    assert [o.status for o in evaluate_rules(rs.rules, {"age": 40}).outcomes] == ["not_fired"]


def test_a_rule_set_that_does_not_apply_skips_its_rules_and_says_why():
    book = load_rules()
    ev = evaluate_rules(book, {"age": 70, "colon_stage": "C"})
    applied = {r["ruleset"]: r["applied"] for r in ev.rulesets}
    assert applied["colon-adjuvant"] is True and applied["breast-adjuvant-endocrine"] is False
    assert all(o.status == "not_applicable" for o in ev.outcomes if o.rule.ruleset == "breast-adjuvant-endocrine")


def test_the_packaged_rule_sets_load_with_versions_and_sources():
    book = load_rules()
    assert {rs.id for rs in book.rulesets} >= {"breast-adjuvant-endocrine", "colon-adjuvant", "anticoagulation",
                                              "statins"}
    assert all(rs.version and rs.source for rs in book.rulesets)
    assert all(r.source and r.version for r in book.rules)


# ----- refused at load ----------------------------------------------------------------------------------------------
def test_a_yaml_syntax_error_is_refused_naming_the_line_and_the_rule(tmp_path):
    bad = ruleset(RULE + '- id: broken-rule\n  source: "x"\n  when: {fact: age, op: ">=", value: 65\n'
                  '  recommend: "y"\n  strength: strong\n')
    path = tmp_path / "bad.yaml"
    path.write_text(bad)
    with pytest.raises(RuleError, match=r"bad\.yaml line \d+: YAML syntax error in rule 'broken-rule'"):
        load_rules(path)


def test_an_unknown_fact_is_refused_naming_the_rule_and_suggesting_the_name():
    text = ruleset(RULE.replace("fact: age", "fact: agee"))
    with pytest.raises(RuleError, match=r"rule 'r1': unknown fact 'agee'.*did you mean \['age'\]"):
        parse_ruleset(text)


def test_an_unknown_operator_is_refused_naming_the_rule():
    with pytest.raises(RuleError, match=r"rule 'r1': unknown operator '=>'"):
        parse_ruleset(ruleset(RULE.replace('op: ">="', 'op: "=>"')))


@pytest.mark.parametrize(("old", "new", "message"), [
    ("value: 65", "value: sixty", "must be a finite number"),
    ('op: ">=", value: 65', 'op: in, value: 65', "needs a non-empty list"),
    ("fact: age", "fact: sex", "'>=' needs a number fact"),
    ("strength: strong", "strength: mandatory", "unknown strength"),
    ("strength: strong", "strength: strong\n  colour: red", r"unknown key\(s\) \['colour'\]"),
    ("fact: age, op", "prediction: age, op", "unknown prediction 'age'"),
])
def test_type_and_key_errors_are_refused_naming_the_rule(old, new, message):
    with pytest.raises(RuleError, match=rf"rule 'r1'.*{message}"):
        parse_ruleset(ruleset(RULE.replace(old, new)))


def test_a_categorical_value_outside_the_declared_values_is_refused():
    text = ruleset(RULE.replace('fact: age, op: ">=", value: 65', "fact: CYP2C19_phenotype, op: '==', "
                                                                 "value: Poor Metaboliser"))
    with pytest.raises(RuleError, match="must be one of"):
        parse_ruleset(text)


def test_an_unknown_action_or_drug_is_refused():
    with pytest.raises(RuleError, match="unknown action type 'stop'"):
        parse_ruleset(ruleset(RULE + "  actions: [{type: stop, drug: warfarin}]\n"))
    with pytest.raises(RuleError, match="unknown drug 'warfarine'"):
        parse_ruleset(ruleset(RULE + "  actions: [{type: avoid, drug: warfarine}]\n"))


def test_duplicate_rule_ids_and_a_missing_header_are_refused(tmp_path):
    with pytest.raises(RuleError, match="appears twice"):
        parse_ruleset(ruleset(RULE + RULE))
    with pytest.raises(RuleError, match="needs a 'ruleset"):
        parse_ruleset("rules: []")
    (tmp_path / "a.yaml").write_text(ruleset(RULE))
    (tmp_path / "b.yaml").write_text(ruleset(RULE, "ruleset: {id: u, version: '1', source: test}"))
    with pytest.raises(RuleError, match="defined in both"):
        load_rules(tmp_path)


def test_a_rule_directory_may_declare_extra_facts_in_schema_yaml(tmp_path):
    (tmp_path / "schema.yaml").write_text("version: site-1\nfacts:\n  ecog: {type: number, range: [0, 5]}\n")
    (tmp_path / "r.yaml").write_text(ruleset(RULE.replace("fact: age", "fact: ecog").replace("value: 65",
                                                                                          "value: 3")))
    book = load_rules(tmp_path)
    assert [o.status for o in evaluate_rules(book, {"ecog": 4}).outcomes] == ["fired"]


# ----- conflicts -----------------------------------------------------------------------------------------------------
def proposal(pid, kind, drug, *, instead_of=None, priority=0, strength="moderate"):
    return Proposal("rule", pid, Action(kind, drug, instead_of), pid, strength, priority, "src",
                    frozenset({drug}))


def test_an_avoid_outranks_a_preference_whatever_the_priority():
    prefer = proposal("prefer-x", "prefer_alternative", "tamoxifen", priority=99, strength="strong")
    avoid = proposal("avoid-x", "avoid", "tamoxifen", priority=0, strength="weak")
    decisions, conflicts = resolve([prefer, avoid])
    assert [d.status for d in decisions] == ["overridden", "active"]
    assert decisions[0].overridden_by == "rule avoid-x (avoid tamoxifen)"
    assert "outranks a preference" in decisions[0].reason
    assert conflicts[0]["winner"].startswith("rule avoid-x")


def test_opposite_preferences_are_ordered_by_priority_then_strength_else_unresolved():
    a = proposal("a", "prefer_alternative", "anastrozole", instead_of="tamoxifen", priority=5)
    b = proposal("b", "prefer_alternative", "tamoxifen", instead_of="anastrozole", priority=1)
    assert [d.status for d in resolve([a, b])[0]] == ["active", "overridden"]
    b2 = proposal("b", "prefer_alternative", "tamoxifen", instead_of="anastrozole", priority=5, strength="strong")
    assert [d.status for d in resolve([a, b2])[0]] == ["overridden", "active"]
    b3 = proposal("b", "prefer_alternative", "tamoxifen", instead_of="anastrozole", priority=5)
    decisions, conflicts = resolve([a, b3])
    assert [d.status for d in decisions] == ["unresolved", "unresolved"]
    assert conflicts[0]["winner"] is None


def test_an_overridden_preference_cannot_override_anything_else():
    old = proposal("old", "prefer_alternative", "levamisole", priority=20)
    new = proposal("new", "prefer_alternative", "fluorouracil", instead_of="levamisole", priority=10)
    avoid = proposal("avoid", "avoid", "levamisole")
    decisions, _ = resolve([old, new, avoid])
    assert [d.status for d in decisions] == ["overridden", "active", "active"]


def test_dose_adjustments_and_monitoring_never_conflict():
    a = proposal("a", "adjust_dose", "warfarin")
    b = proposal("b", "adjust_dose", "warfarin", priority=3)
    m = proposal("m", "monitor", "warfarin")
    assert [d.status for d in resolve([a, b, m])[0]] == ["active", "active", "active"]
