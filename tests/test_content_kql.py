"""Static checks of the Sentinel content: the real Kusto analyzer on every query, and rule format.

The analyzer runs once per session over all queries (one node process), so this module stays at a
few seconds. The table schema comes from `nordpass_connector.schema`, the same contract the
connector and the DCR use.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from content import kql
from nordpass_connector.schema import COLUMNS, EVENTS, HEALTH, TABLE_NAME

OFFICIAL_IDS = {
    "283d7506-f3c6-419a-ae9c-d9afe6a15d6d": "NordPass - Declined invitation",
    "e3f2b6c9-df0c-4b36-a376-bb2762e4dbdc": "NordPass - Domain data detected in breach",
    "f72f630f-c890-49fe-b747-80f4fb3b6348": "NordPass - User deletes items in bulk",
    "0068dca4-dea0-46a3-a970-655e067a145f": "NordPass - Deleting items of deleted member",
    "693c5217-e840-427f-9661-3fa0ef266040": "NordPass - Manual invitation, suspension, or deletion",
    "800314a6-759a-4575-93e2-1e080b1d33f9": "NordPass - Activity token revocation",
    "c4d2eb42-a4ab-4db6-a270-3d2ed7e057a0": "NordPass - User data detected in breach",
    "27b261dc-68f3-489a-944f-bc252e0c1960": "NordPass - User fails authentication",
    "c7f14b43-7625-4516-b137-30b7fda65bcf": "NordPass - Vault export",
}
# Tenant-feature rules: silent or noisy unless the feature is in use, so they ship disabled.
DISABLED_BY_DEFAULT = {
    "e3f2b6c9-df0c-4b36-a376-bb2762e4dbdc",
    "c4d2eb42-a4ab-4db6-a270-3d2ed7e057a0",
    "693c5217-e840-427f-9661-3fa0ef266040",
}
MITRE_TACTICS = {
    "Reconnaissance",
    "ResourceDevelopment",
    "InitialAccess",
    "Execution",
    "Persistence",
    "PrivilegeEscalation",
    "DefenseEvasion",
    "CredentialAccess",
    "Discovery",
    "LateralMovement",
    "Collection",
    "CommandAndControl",
    "Exfiltration",
    "Impact",
}
REQUIRED_KEYS = {
    "id",
    "name",
    "description",
    "severity",
    "status",
    "enabled",
    "requiredDataConnectors",
    "queryFrequency",
    "queryPeriod",
    "triggerOperator",
    "triggerThreshold",
    "tactics",
    "relevantTechniques",
    "query",
    "entityMappings",
    "customDetails",
    "incidentConfiguration",
    "eventGroupingSettings",
    "suppressionEnabled",
    "suppressionDuration",
    "version",
    "kind",
}
ENTITY_IDENTIFIERS = {
    "Account": {"FullName", "Name", "UPNSuffix", "AadUserId", "ObjectGuid", "DisplayName", "Sid", "NTDomain"},
    "Mailbox": {"MailboxPrimaryAddress", "DisplayName", "Upn", "AadId"},
    "IP": {"Address"},
    "CloudApplication": {"AppId", "Name", "InstanceName"},
}
_SHORT_DURATION = re.compile(r"^(\d+)([mhd])$")
_ISO_DURATION = re.compile(r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?)?$")


def short_minutes(value: str) -> int:
    match = _SHORT_DURATION.match(value)
    assert match, f"{value!r} is not a Sentinel-YAML duration like 5m, 1h, 14d"
    return int(match.group(1)) * {"m": 1, "h": 60, "d": 1440}[match.group(2)]


def iso_minutes(value: str) -> int:
    match = _ISO_DURATION.match(value)
    assert match and value not in ("P", "PT"), f"{value!r} is not an ISO 8601 duration"
    days, hours, minutes = (int(g) if g else 0 for g in match.groups())
    return days * 1440 + hours * 60 + minutes


def _rules() -> list[tuple[Path, dict[str, Any]]]:
    return [(p, kql.load_rule(p)) for p in kql.rule_paths()]


RULES = _rules()
RULE_IDS = [p.stem for p, _ in RULES]


def reads_health(rule: dict[str, Any]) -> bool:
    """Connector-health rules read the health table, not events (no event time, no EventId)."""
    return bool(rule["requiredDataConnectors"][0]["dataTypes"] == [HEALTH.name])


@pytest.fixture(scope="session")
def kusto_ready() -> None:
    """The analyzer needs node and the pinned npm package; install it once if a checkout lacks it."""
    if shutil.which("node") is None:
        pytest.fail("node is required for the KQL semantic check (install Node.js 20)")
    if not kql.KUSTO_PACKAGE.exists():
        npm = shutil.which("npm")
        if npm is None:
            pytest.fail("npm is required to install @kusto/language-service-next (run `npm ci`)")
        proc = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=kql.REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if proc.returncode != 0 or not kql.KUSTO_PACKAGE.exists():
            pytest.fail(f"`npm ci` could not install @kusto/language-service-next:\n{proc.stderr[-2000:]}")


DRIFTED_SCHEMA = "(" + ", ".join(f"{c.name}:{c.type}" for c in COLUMNS if c.name != "EventId") + ")"
HEALTH_DRIFTED = {
    "name": HEALTH.name,
    "schema": "("
    + ", ".join(f"{c.name}:{c.kusto_type}" for c in HEALTH.columns if c.name != "ErrorClass")
    + ")",
}


def _mutations() -> list[tuple[str, str]]:
    _, first = RULES[0]
    return [
        # A rule naming a column the table does not have.
        ("mutated:missing-column", str(first["query"]).replace("EventTime", "EventTimeUtc", 1)),
        # Comparing the Unix-seconds column with a datetime: the classic `timestamp` mistake.
        ("mutated:type-error", f"{TABLE_NAME} | where timestamp > ago(1h)"),
        # Every rule against a schema that lost a column (checked with its own table, below).
        *((f"drift:{p.name}", str(r["query"])) for p, r in RULES),
        # The health rules against a health table that lost its error class.
        *((f"health-drift:{p.name}", str(r["query"])) for p, r in RULES if reads_health(r)),
    ]


@pytest.fixture(scope="session")
def analysed(kusto_ready: None) -> dict[str, kql.QueryResult]:
    """Content and deliberately broken queries in one node process (loading it is the slow part)."""
    mutations = _mutations()
    drifted = [
        {"name": TABLE_NAME, "schema": DRIFTED_SCHEMA},
        {"name": HEALTH.name, "schema": HEALTH.kusto_schema()},
    ]
    overrides = {query_id: drifted for query_id, _ in mutations if query_id.startswith("drift:")}
    overrides |= {
        query_id: [{"name": TABLE_NAME, "schema": EVENTS.kusto_schema()}, HEALTH_DRIFTED]
        for query_id, _ in mutations
        if query_id.startswith("health-drift:")
    }
    return {r.id: r for r in kql.check(kql.content_queries() + mutations, overrides=overrides)}


def _rule_result(analysed: dict[str, kql.QueryResult], path: Path) -> kql.QueryResult:
    return analysed[f"rule:{path.name}"]


# -- the analyzer -------------------------------------------------------------------------------


def test_content_has_rules_and_workbook_queries(analysed: dict[str, kql.QueryResult]) -> None:
    assert len(RULES) == 17
    assert sum(reads_health(r) for _, r in RULES) == 2
    workbook_ids = [i for i in analysed if i.startswith("workbook/")]
    # Every workbook query is checked under both time-picker shapes and both filter shapes.
    assert len(workbook_ids) >= 2 * 23


def test_every_query_analyses_without_errors(analysed: dict[str, kql.QueryResult]) -> None:
    failures = {
        query_id: [f"{d.code}: {d.message}" for d in result.errors]
        for query_id, result in analysed.items()
        if result.errors and not query_id.startswith(("mutated:", "drift:", "health-drift:"))
    }
    assert failures == {}


def test_analyzer_catches_a_missing_column(analysed: dict[str, kql.QueryResult]) -> None:
    """A rule that names a column the table does not have must fail with KS142 (unknown name)."""
    result = analysed["mutated:missing-column"]
    assert [d.code for d in result.errors] == ["KS142"], result.diagnostics


def test_analyzer_catches_a_type_error(analysed: dict[str, kql.QueryResult]) -> None:
    assert analysed["mutated:type-error"].errors


def test_analyzer_catches_schema_drift(analysed: dict[str, kql.QueryResult]) -> None:
    """Dropping a column from the contract breaks every rule that uses it: the check follows schema.py."""
    drift = [r for query_id, r in analysed.items() if query_id.startswith("drift:")]
    assert len(drift) == len(RULES)
    uses_event_id = [r for r in drift if "EventId" in r.text]
    assert uses_event_id
    assert all("KS142" in {d.code for d in r.errors} for r in uses_event_id)


def test_analyzer_catches_health_schema_drift(analysed: dict[str, kql.QueryResult]) -> None:
    """The health rules follow schema.HEALTH: without ErrorClass every one of them fails."""
    drift = [r for query_id, r in analysed.items() if query_id.startswith("health-drift:")]
    assert len(drift) == 2
    assert all("KS142" in {d.code for d in r.errors} for r in drift)


@pytest.mark.parametrize(("path", "rule"), RULES, ids=RULE_IDS)
def test_mapped_columns_exist_in_rule_output(
    analysed: dict[str, kql.QueryResult], path: Path, rule: dict[str, Any]
) -> None:
    columns = _rule_result(analysed, path).column_names
    assert columns, "the analyzer reported no result columns"
    for mapping in rule["entityMappings"]:
        assert mapping["entityType"] in ENTITY_IDENTIFIERS
        assert 1 <= len(mapping["fieldMappings"]) <= 3
        for field in mapping["fieldMappings"]:
            assert field["identifier"] in ENTITY_IDENTIFIERS[mapping["entityType"]]
            assert field["columnName"] in columns, f"entity column {field['columnName']} not in output"
    for key, column in rule["customDetails"].items():
        assert re.fullmatch(r"[A-Za-z][A-Za-z0-9]{0,19}", key), key
        assert column in columns, f"custom detail {key} -> {column} not in output"
    overrides = rule.get("alertDetailsOverride") or {}
    for template in overrides.values():
        for placeholder in re.findall(r"\{\{(\w+)\}\}", str(template)):
            assert placeholder in columns, f"alert detail placeholder {placeholder} not in output"


def test_workbook_parameters_all_have_sample_values() -> None:
    workbook = kql.load_workbook()
    constants = kql.workbook_constants(workbook)
    used = set().union(*(kql.parameters_in(text) for _, text in kql.workbook_queries(workbook)))
    assert used <= set(kql.WORKBOOK_PARAMETER_VALUES) | set(constants)


# -- rule format --------------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "rule"), RULES, ids=RULE_IDS)
def test_rule_format(path: Path, rule: dict[str, Any]) -> None:
    assert rule.keys() >= REQUIRED_KEYS, REQUIRED_KEYS - rule.keys()
    assert str(uuid.UUID(rule["id"])) == rule["id"]
    assert rule["name"].startswith("NordPass - ")
    assert rule["kind"] == "Scheduled"
    assert rule["status"] == "Available"
    assert isinstance(rule["enabled"], bool)
    assert rule["severity"] in {"Informational", "Low", "Medium", "High"}
    table = HEALTH.name if reads_health(rule) else TABLE_NAME
    assert rule["requiredDataConnectors"] == [
        {"connectorId": kql.load_connector()["id"], "dataTypes": [table]}
    ]
    assert table in str(rule["query"])
    assert rule["triggerOperator"] == "gt" and rule["triggerThreshold"] == 0
    assert re.fullmatch(r"\d+\.\d+\.\d+", rule["version"])
    assert rule["tactics"] and set(rule["tactics"]) <= MITRE_TACTICS
    assert rule["relevantTechniques"]
    for technique in rule["relevantTechniques"]:
        assert re.fullmatch(r"T\d{4}(\.\d{3})?", technique), technique
    assert rule["eventGroupingSettings"]["aggregationKind"] in {"AlertPerResult", "SingleAlert"}
    assert rule["entityMappings"]


@pytest.mark.parametrize(("path", "rule"), RULES, ids=RULE_IDS)
def test_rule_schedule_and_windows(path: Path, rule: dict[str, Any]) -> None:
    frequency = short_minutes(rule["queryFrequency"])
    period = short_minutes(rule["queryPeriod"])
    assert 5 <= frequency <= period <= 14 * 1440
    query = str(rule["query"])
    # The `let` values the query uses must agree with the schedule Sentinel runs it on.
    lets = dict(re.findall(r"let (\w+) = (\d+[mhd]);", query))
    if "run_frequency" in lets:
        assert short_minutes(lets["run_frequency"]) == frequency
    for name in ("lookback", "window", "history"):
        if name in lets:
            assert short_minutes(lets[name]) == period, name
    # Backfill guard: rows older than two days get TimeGenerated = receive time; EventTime decides.
    if not reads_health(rule):
        assert re.search(r"where EventTime >= ago\((lookback|window|history)\)", query)
        assert "summarize arg_min(IngestedAt, *) by EventId" in query
    assert "unixtime_seconds_todatetime" not in query


@pytest.mark.parametrize(("path", "rule"), RULES, ids=RULE_IDS)
def test_rule_incident_and_suppression(path: Path, rule: dict[str, Any]) -> None:
    incident = rule["incidentConfiguration"]
    grouping = incident["groupingConfiguration"]
    assert incident["createIncident"] is (rule["severity"] in {"High", "Medium"})
    assert grouping["enabled"] is True
    assert grouping["reopenClosedIncident"] is False
    assert grouping["matchingMethod"] in {"Selected", "AllEntities", "AnyAlert"}
    entity_types = {m["entityType"] for m in rule["entityMappings"]}
    if grouping["matchingMethod"] == "Selected":
        assert grouping["groupByEntities"] and set(grouping["groupByEntities"]) <= entity_types
    lookback = iso_minutes(grouping["lookbackDuration"])
    assert short_minutes(rule["queryFrequency"]) <= lookback <= 7 * 1440
    assert isinstance(rule["suppressionEnabled"], bool)
    assert 5 <= iso_minutes(rule["suppressionDuration"]) <= 14 * 1440


def test_rule_ids_unique_and_official_ids_kept() -> None:
    ids = [r["id"] for _, r in RULES]
    assert len(ids) == len(set(ids))
    names = {r["id"]: r["name"] for _, r in RULES}
    for official_id, official_name in OFFICIAL_IDS.items():
        assert names.get(official_id) == official_name
    assert len({r["name"] for _, r in RULES}) == len(RULES)


def test_tenant_feature_rules_disabled_and_say_why() -> None:
    for _, rule in RULES:
        if rule["id"] in DISABLED_BY_DEFAULT:
            assert rule["enabled"] is False, rule["name"]
            assert "Disabled by default because" in " ".join(str(rule["description"]).split())
        else:
            assert rule["enabled"] is True, rule["name"]


def _walk(items: list[Any]) -> Iterator[dict[str, Any]]:
    for item in items:
        yield item
        yield from _walk(item.get("content", {}).get("items", []))


def test_workbook_structure() -> None:
    workbook = kql.load_workbook()
    assert workbook["version"] == "Notebook/1.0"
    items = list(_walk(workbook["items"]))
    tabs = next(i for i in items if i["type"] == 11)
    labels = [link["linkLabel"] for link in tabs["content"]["links"]]
    assert labels == ["Admin Panel activity", "Vault activity", "Logins & vault access", "Connector health"]
    groups = {i["conditionalVisibility"]["value"]: i for i in items if i["type"] == 12}
    assert set(groups) == {"admin", "vault", "logins", "health"}
    visualizations = {i["content"].get("visualization") for i in items if i["type"] == 3}
    assert {"timechart", "barchart", "table"} <= visualizations
    params = {p["name"] for i in items if i["type"] == 9 for p in i["content"]["parameters"]}
    assert {"TimeRange", "Users", "Actions"} <= params
    health_queries = " ".join(
        i["content"]["query"] for i in _walk(groups["health"]["content"]["items"]) if i["type"] == 3
    )
    for needle in (
        "ingestion_time() - EventTime",
        "bin(ingestion_time(), 1m)",
        "GapMinutes",
        "LastEventTime",
        # The runs, from the connector's health rows: outcome over time, errors, events and lag.
        "NordPassConnectorHealth_CL",
        "by bin(TimeGenerated, {TimeRange:grain}), Outcome",
        "ErrorMessage",
        "EventsSent",
        "LagSeconds",
    ):
        assert needle in health_queries
    constants = kql.workbook_constants(workbook)
    # The official tabs' pair lists (docs/event-catalog.md): 83 admin, 44 vault, 18 login pairs.
    assert [len(constants[k].split(",")) for k in ("AdminPairs", "VaultPairs", "LoginsPairs")] == [83, 44, 18]
