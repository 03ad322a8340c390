"""Sentinel's own limits on scheduled rules (content/rule_constraints.py), on every rule in both forms.

Each rule is checked as written in `content/analytic-rules/*.yaml` and as the `alertRules` resource
that the generated templates deploy. Each constraint is shown able to fail on a deliberately broken
copy of a real rule, in the form where it can be broken.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

from content import rule_constraints as rc
from deploy import build_template as bt

RULE_PATHS = sorted(bt.RULES_DIR.glob("*.yaml"))
TEMPLATES = [bt.TEMPLATE_PATH, bt.CONTENT_TEMPLATE_PATH]


def _load(path: Path) -> dict[str, Any]:
    rule: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return rule


@pytest.mark.parametrize("path", RULE_PATHS, ids=lambda p: p.stem)
def test_every_rule_file_passes(path: Path) -> None:
    assert rc.check_yaml(_load(path), path.name) == []


@pytest.mark.parametrize("template_path", TEMPLATES, ids=lambda p: p.name)
def test_every_deployed_rule_passes(template_path: Path) -> None:
    template = json.loads(template_path.read_text(encoding="utf-8"))
    deployed = list(rc.alert_rules_in(template))
    assert len(deployed) == len(RULE_PATHS), "every rule file is deployed, and nothing else"
    problems = [f"{where}: {v}" for where, resource in deployed for v in rc.check_arm(resource, where)]
    assert problems == []


def test_both_forms_describe_the_same_rule() -> None:
    """The ARM form is read back to the same windows, trigger, mappings and overrides as the YAML."""
    template = json.loads(bt.TEMPLATE_PATH.read_text(encoding="utf-8"))
    deployed = {resource["name"]: resource for _, resource in rc.alert_rules_in(template)}
    for path in RULE_PATHS:
        source = rc.rule_from_yaml(_load(path), path.name)
        arm = rc.rule_from_arm(deployed[source.id], path.name)
        for window in ("query_frequency", "query_period"):
            assert rc.parse_duration(getattr(source, window)) == rc.parse_duration(getattr(arm, window))
        assert rc.TRIGGER_OPERATORS[str(source.trigger_operator)] == arm.trigger_operator
        for name in ("display_name", "severity", "trigger_threshold", "tactics", "entity_mappings"):
            assert getattr(source, name) == getattr(arm, name), name
        for name in ("custom_details", "alert_details_override", "event_grouping"):
            assert getattr(source, name) == getattr(arm, name), name
        assert str(source.query).strip() == arm.query


# --- every constraint can fail --------------------------------------------------------------------

Mutation = Callable[[dict[str, Any]], None]


def _set(key: str, value: Any) -> Mutation:
    return lambda rule: rule.__setitem__(key, value)


def _entity(index: int, **changes: Any) -> Mutation:
    def mutate(rule: dict[str, Any]) -> None:
        rule["entityMappings"][index].update(changes)

    return mutate


def _field(entity: int, field: int, **changes: Any) -> Mutation:
    def mutate(rule: dict[str, Any]) -> None:
        rule["entityMappings"][entity]["fieldMappings"][field].update(changes)

    return mutate


def _override(**changes: Any) -> Mutation:
    return lambda rule: rule["alertDetailsOverride"].update(changes)


def _many_custom_details(rule: dict[str, Any]) -> None:
    rule["customDetails"] = {f"Detail{i}": "EventId" for i in range(21)}


def _many_entities(rule: dict[str, Any]) -> None:
    rule["entityMappings"] = rule["entityMappings"] * 4  # 12 mappings


def _four_fields(rule: dict[str, Any]) -> None:
    fields = rule["entityMappings"][0]["fieldMappings"]
    fields.append({"identifier": "DisplayName", "columnName": "AccountName"})


def _account_by_upn_suffix_only(rule: dict[str, Any]) -> None:
    """A valid Account identifier, but not one that identifies an account."""
    rule["entityMappings"][0]["fieldMappings"] = [
        {"identifier": "UPNSuffix", "columnName": "AccountUPNSuffix"}
    ]


def _legacy_column(rule: dict[str, Any]) -> None:
    rule["query"] += "\n| extend AccountCustomEntity = AccountEmail"


# (constraint id, mutation of a valid YAML rule). The base rule maps Account, Mailbox, IP, Account.
YAML_CASES: list[tuple[str, Mutation]] = [
    ("kind", _set("kind", "NRT")),
    ("id-guid", _set("id", "not-a-guid")),
    ("display-name", _set("name", "N" * 257)),
    ("description", _set("description", "")),
    ("severity", _set("severity", "Critical")),
    ("query-length", _set("query", "x" * 10_001)),
    ("query-frequency-range", _set("queryFrequency", "4m")),
    ("query-frequency-range", _set("queryFrequency", "15d")),
    ("query-frequency-range", _set("queryFrequency", "soon")),
    ("query-period-range", _set("queryPeriod", "15d")),
    ("query-period-range", _set("queryPeriod", "2m")),
    ("period-at-least-frequency", lambda r: r.update(queryFrequency="2h", queryPeriod="1h")),
    ("long-period-frequency", lambda r: r.update(queryFrequency="30m", queryPeriod="2d")),
    ("trigger-operator", _set("triggerOperator", "gte")),
    ("trigger-threshold", _set("triggerThreshold", 10_001)),
    ("trigger-threshold", _set("triggerThreshold", -1)),
    ("trigger-threshold", _set("triggerThreshold", True)),
    ("tactics", _set("tactics", ["Recon"])),
    ("techniques-match-tactics", _set("relevantTechniques", ["T1485"])),  # Impact, not listed
    ("techniques-match-tactics", _set("relevantTechniques", ["T9999"])),
    ("techniques-match-tactics", _set("relevantTechniques", ["1078"])),
    ("entity-mappings", _set("entityMappings", [])),
    ("entity-mappings", _many_entities),
    ("entity-type", _entity(0, entityType="User")),
    ("field-mappings", _entity(1, fieldMappings=[])),
    ("field-mappings", _four_fields),
    ("entity-identifier", _field(2, 0, identifier="FullName")),  # IP has only Address
    ("entity-identifier", _field(0, 1, identifier="FullName")),  # FullName twice
    ("entity-column", _field(2, 0, columnName="Ip Address")),
    ("entity-strong-identifier", _account_by_upn_suffix_only),
    ("legacy-entity-column", _legacy_column),
    ("custom-details", _many_custom_details),
    ("custom-details", lambda r: r["customDetails"].update({"1stDetail": "EventId"})),
    ("custom-details", lambda r: r["customDetails"].update({"AVeryLongCustomDetailKey": "EventId"})),
    ("custom-details", lambda r: r["customDetails"].update({"Detail": "Event-Id"})),
    ("alert-details-placeholders", _override(alertDisplayNameFormat="{{A}} {{B}} {{C}} {{D}}")),
    ("alert-details-placeholders", _override(alertDescriptionFormat="{{A}}{{B}}{{C}}{{D}}")),
    ("alert-details-override", _override(alertDisplayNameFormat="x" * 257)),
    ("alert-details-override", _override(alertDescriptionFormat="")),
    ("event-grouping", _set("eventGroupingSettings", {"aggregationKind": "PerEntity"})),
    ("version", _set("version", "2.0")),
    ("version", _set("version", "v2.0.0")),
]


@pytest.fixture(scope="module")
def base_rule() -> dict[str, Any]:
    rule = _load(bt.RULES_DIR / "NordPass-VaultExportAfterNewIpLogin.yaml")
    assert rc.check_yaml(rule, "base") == []
    assert [m["entityType"] for m in rule["entityMappings"]][:3] == ["Account", "Mailbox", "IP"]
    return rule


@pytest.mark.parametrize(
    ("constraint", "mutate"), YAML_CASES, ids=[f"{c}-{i}" for i, (c, _) in enumerate(YAML_CASES)]
)
def test_each_constraint_fails_on_a_broken_yaml_rule(
    base_rule: dict[str, Any], constraint: str, mutate: Mutation
) -> None:
    rule = copy.deepcopy(base_rule)
    mutate(rule)
    found = {v.constraint for v in rc.check_yaml(rule, "broken.yaml")}
    assert constraint in found, found


def test_every_check_is_shown_to_fail(base_rule: dict[str, Any]) -> None:
    """No check in rc.CHECKS is without a broken rule that makes it report."""
    fired: set[str] = set()
    for _, mutate in YAML_CASES:
        rule = copy.deepcopy(base_rule)
        mutate(rule)
        parsed = rc.rule_from_yaml(rule, "broken.yaml")
        fired |= {check.__name__ for check in rc.CHECKS if list(check(parsed))}
    assert fired == {check.__name__ for check in rc.CHECKS}


# ARM-form mutations: the API's field names and ISO durations, and the `[[` literal escape.
ARM_CASES: list[tuple[str, Mutation]] = [
    ("kind", _set("kind", "Fusion")),
    ("id-guid", _set("name", "[guid('x')]")),
    ("query-frequency-range", lambda r: r["properties"].update(queryFrequency="PT4M")),
    ("query-period-range", lambda r: r["properties"].update(queryPeriod="P15D")),
    ("long-period-frequency", lambda r: r["properties"].update(queryFrequency="PT15M", queryPeriod="P2D")),
    (
        "period-at-least-frequency",
        lambda r: r["properties"].update(queryFrequency="PT2H", queryPeriod="PT1H"),
    ),
    ("trigger-operator", lambda r: r["properties"].update(triggerOperator="gt")),
    ("techniques-match-tactics", lambda r: r["properties"].update(tactics=["Impact"])),
    (
        "alert-details-placeholders",
        lambda r: r["properties"]["alertDetailsOverride"].update(
            alertDescriptionFormat="{{A}} {{B}} {{C}} {{D}}"
        ),
    ),
    (
        "entity-identifier",
        lambda r: r["properties"]["entityMappings"][2]["fieldMappings"][0].update(identifier="HostName"),
    ),
    ("version", lambda r: r["properties"].update(templateVersion="1.0")),
    ("query-length", lambda r: r["properties"].update(query="[[" + "x" * 10_001)),
]


@pytest.fixture(scope="module")
def base_resource() -> dict[str, Any]:
    template = json.loads(bt.TEMPLATE_PATH.read_text(encoding="utf-8"))
    base = next(
        resource
        for _, resource in rc.alert_rules_in(template)
        if resource["properties"]["displayName"] == "NordPass - Vault export after sign-in from a new IP"
    )
    assert rc.check_arm(base, "base") == []
    return dict(base)


@pytest.mark.parametrize(("constraint", "mutate"), ARM_CASES, ids=[c for c, _ in ARM_CASES])
def test_each_constraint_fails_on_a_broken_arm_rule(
    base_resource: dict[str, Any], constraint: str, mutate: Mutation
) -> None:
    resource = copy.deepcopy(base_resource)
    mutate(resource)
    found = {v.constraint for v in rc.check_arm(resource, "broken")}
    assert constraint in found, found


def test_the_arm_literal_escape_is_undone_before_checking(base_resource: dict[str, Any]) -> None:
    resource = copy.deepcopy(base_resource)
    resource["properties"]["query"] = "[[" + "x" * 9_999  # 10 000 characters once unescaped
    assert rc.check_arm(resource, "escaped") == []


# --- the facts behind the checks ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("5m", timedelta(minutes=5)),
        ("47h", timedelta(hours=47)),
        ("14d", timedelta(days=14)),
        ("PT5M", timedelta(minutes=5)),
        ("P2D", timedelta(days=2)),
        ("P1DT12H", timedelta(days=1, hours=12)),
        ("01:00:00", timedelta(hours=1)),
        ("2.00:00:00", timedelta(days=2)),
        ("P", None),
        ("5 minutes", None),
        (5, None),
    ],
)
def test_durations(text: object, expected: timedelta | None) -> None:
    assert rc.parse_duration(text) == expected


def test_technique_table_spot_checks() -> None:
    """Sentinel's table, not MITRE's current one: T1098 is Persistence only here."""
    assert rc.TECHNIQUE_TACTICS["T1098"] == {"Persistence"}
    assert rc.TECHNIQUE_TACTICS["T1078"] == {
        "InitialAccess",
        "Persistence",
        "PrivilegeEscalation",
        "DefenseEvasion",
    }
    assert rc.TECHNIQUE_TACTICS["T1589"] == {"Reconnaissance"}
    assert rc.TECHNIQUE_TACTICS["T1556"] == {"Persistence", "DefenseEvasion", "CredentialAccess"}
    assert set().union(*rc.TECHNIQUE_TACTICS.values()) <= rc.TACTICS


def test_the_command_line_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert rc.main([]) == 0
    assert "0 violations" in capsys.readouterr().out
    rules = tmp_path / "content" / "analytic-rules"
    rules.mkdir(parents=True)
    (tmp_path / "deploy").mkdir()
    broken = (bt.RULES_DIR / "NordPass-VaultExport.yaml").read_text(encoding="utf-8")
    (rules / "broken.yaml").write_text(broken.replace("severity: High", "severity: Urgent"), encoding="utf-8")
    assert rc.main(["--root", str(tmp_path)]) == 1
    assert "broken.yaml: [severity]" in capsys.readouterr().out
