"""What Microsoft Sentinel enforces on a scheduled analytic rule, as pure checks.

The limits are facts taken from Azure-Sentinel's detection template validation
(`.script/tests/detectionTemplateSchemaValidation`), which mirrors the model the alertRules service
validates: windows, trigger, entity mappings and their identifiers, custom details, alert detail
overrides, event grouping, the MITRE technique -> tactic table, id and version formats. A rule that
breaks one of them is rejected when the template creates it, so the whole content deployment fails.

Both forms of a rule are held to the same limits: the repository YAML (`rule_from_yaml`) and the
`Microsoft.SecurityInsights/alertRules` resource that `deploy/build_template.py` generates from it
(`rule_from_arm`). Each check returns `Violation`s named by a constraint id, so a test can show that
every constraint is able to fail.

    python -m content.rule_constraints   # check every rule file and the generated template
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

MIN_WINDOW = timedelta(minutes=5)
MAX_WINDOW = timedelta(days=14)
LONG_PERIOD = timedelta(days=2)
LONG_PERIOD_MIN_FREQUENCY = timedelta(hours=1)
MAX_QUERY_LENGTH = 10_000
MAX_NAME_LENGTH = 256
MAX_DESCRIPTION_LENGTH = 5_000
MAX_THRESHOLD = 10_000
MAX_ENTITY_MAPPINGS = 10
MAX_FIELD_MAPPINGS = 3
MAX_CUSTOM_DETAILS = 20
MAX_CUSTOM_DETAIL_KEY = 20
MAX_COLUMN_NAME = 500
MAX_PLACEHOLDERS = 3
MAX_VERSION_LENGTH = 20

SEVERITIES = frozenset({"Informational", "Low", "Medium", "High"})
TRIGGER_OPERATORS = {
    "GreaterThan": "GreaterThan",
    "LessThan": "LessThan",
    "Equal": "Equal",
    "NotEqual": "NotEqual",
    "gt": "GreaterThan",
    "lt": "LessThan",
    "eq": "Equal",
    "ne": "NotEqual",
}
AGGREGATION_KINDS = frozenset({"SingleAlert", "AlertPerResult"})
TACTICS = frozenset(
    {
        "InitialAccess",
        "Execution",
        "Persistence",
        "PrivilegeEscalation",
        "DefenseEvasion",
        "CredentialAccess",
        "Discovery",
        "LateralMovement",
        "Collection",
        "Exfiltration",
        "CommandAndControl",
        "Impact",
        "Reconnaissance",
        "ResourceDevelopment",
        "ImpairProcessControl",
        "InhibitResponseFunction",
    }
)


def _names(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Entity type -> (valid identifiers, identifier sets of which a mapping must contain one).
ENTITY_IDENTIFIERS: Mapping[str, tuple[frozenset[str], tuple[frozenset[str], ...]]] = {
    "Account": (
        _names(
            "Name FullName NTDomain DnsDomain UPNSuffix Sid AadTenantId AadUserId PUID IsDomainJoined "
            "DisplayName ObjectGuid"
        ),
        tuple(frozenset({i}) for i in ("FullName", "Sid", "Name", "AadUserId", "PUID", "ObjectGuid")),
    ),
    "AzureResource": (frozenset({"ResourceId"}), (frozenset({"ResourceId"}),)),
    "CloudApplication": (
        frozenset({"AppId", "Name", "InstanceName"}),
        (frozenset({"AppId"}), frozenset({"Name"})),
    ),
    "DNS": (frozenset({"DomainName"}), (frozenset({"DomainName"}),)),
    "File": (frozenset({"Directory", "Name"}), (frozenset({"Name"}),)),
    "FileHash": (frozenset({"Algorithm", "Value"}), (frozenset({"Algorithm", "Value"}),)),
    "Host": (
        _names(
            "DnsDomain NTDomain HostName FullName NetBiosName AzureID OMSAgentID OSFamily OSVersion "
            "IsDomainJoined"
        ),
        tuple(frozenset({i}) for i in ("FullName", "HostName", "NetBiosName", "AzureID", "OMSAgentID")),
    ),
    "IoTDevice": (
        _names(
            "DeviceId DeviceName Manufacturer Model FirmwareVersion OperatingSystem MacAddress Protocols "
            "SerialNumber Source IoTSecurityAgentId DeviceType"
        ),
        (frozenset({"DeviceId"}),),
    ),
    "IP": (frozenset({"Address"}), (frozenset({"Address"}),)),
    "Mailbox": (
        frozenset({"MailboxPrimaryAddress", "DisplayName", "Upn", "ExternalDirectoryObjectId", "RiskLevel"}),
        (frozenset({"MailboxPrimaryAddress"}),),
    ),
    "MailCluster": (
        _names(
            "NetworkMessageIds CountByDeliveryStatus CountByThreatType CountByProtectionStatus Threats "
            "Query QueryTime MailCount IsVolumeAnomaly Source ClusterSourceIdentifier ClusterSourceType "
            "ClusterQueryStartTime ClusterQueryEndTime ClusterGroup"
        ),
        (frozenset({"Query"}), frozenset({"Source"})),
    ),
    "MailMessage": (
        _names(
            "Recipient Urls Threats Sender P1Sender P1SenderDisplayName P1SenderDomain SenderIP P2Sender "
            "P2SenderDisplayName P2SenderDomain ReceivedDate NetworkMessageId InternetMessageId Subject "
            "BodyFingerprintBin1 BodyFingerprintBin2 BodyFingerprintBin3 BodyFingerprintBin4 "
            "BodyFingerprintBin5 AntispamDirection DeliveryAction DeliveryLocation Language "
            "ThreatDetectionMethods"
        ),
        (frozenset({"NetworkMessageId"}), frozenset({"Recipient"})),
    ),
    "Malware": (frozenset({"Name", "Category"}), (frozenset({"Name"}),)),
    "Process": (
        frozenset({"ProcessId", "CommandLine", "ElevationToken", "CreationTimeUtc"}),
        (frozenset({"CommandLine"}), frozenset({"ProcessId"})),
    ),
    "RegistryKey": (frozenset({"Hive", "Key"}), (frozenset({"Key"}), frozenset({"Hive"}))),
    "RegistryValue": (frozenset({"Name", "Value", "ValueType"}), (frozenset({"Name"}),)),
    "SecurityGroup": (
        frozenset({"DistinguishedName", "SID", "ObjectGuid"}),
        (frozenset({"DistinguishedName"}), frozenset({"SID"}), frozenset({"ObjectGuid"})),
    ),
    "SubmissionMail": (
        _names(
            "NetworkMessageId Timestamp Recipient Sender SenderIp Subject ReportType SubmissionId "
            "SubmissionDate Submitter"
        ),
        tuple(frozenset({i}) for i in ("SubmissionId", "NetworkMessageId", "Recipient", "Submitter")),
    ),
    "URL": (frozenset({"Url"}), (frozenset({"Url"}),)),
}

# Sentinel's own technique -> tactic table (MITRE ATT&CK enterprise, mobile and ICS ids), written
# tactic by tactic. A technique is accepted when at least one of its tactics is listed on the rule.
_TACTIC_TECHNIQUES = {
    "InitialAccess": "T1189 T1190 T1133 T1200 T1566 T1091 T1195 T1199 T1078 T0817 T0819 T0866 T0822 "
    "T0883 T0886 T0847 T0848 T0865 T0862 T0864 T0860 T1456 T1461 T1458 T1474",
    "Persistence": "T1098 T1197 T1547 T1037 T1176 T1554 T1136 T1543 T1546 T1133 T1574 T1525 T1556 "
    "T1137 T1542 T1053 T1505 T1205 T1078 T1398 T1577 T1645 T1624 T1541 T1625 T1603 T0891 T0889 T0839 "
    "T0873 T0857 T0859",
    "PrivilegeEscalation": "T1548 T1134 T1547 T1037 T1543 T1484 T1611 T1546 T1068 T1574 T1055 T1053 "
    "T1078 T1626 T1404 T1631 T0890 T0874",
    "DefenseEvasion": "T1548 T1134 T1197 T1612 T1622 T1140 T1610 T1006 T1484 T1480 T1211 T1222 T1564 "
    "T1574 T1562 T1070 T1202 T1036 T1556 T1578 T1112 T1601 T1599 T1027 T1647 T1542 T1055 T1620 T1207 "
    "T1014 T1553 T1218 T1216 T1221 T1205 T1127 T1535 T1550 T1078 T1497 T1600 T1220 T1407 T1627 T1541 "
    "T1628 T1617 T1629 T1630 T1516 T1575 T1406 T1631 T1604 T1632 T1633 T0858 T0820 T0872 T0849 T0851 "
    "T0856",
    "CredentialAccess": "T1557 T1110 T1555 T1212 T1187 T1606 T1056 T1556 T1111 T1621 T1040 T1003 T1528 "
    "T1539 T1649 T1558 T1552 T1517 T1414 T1634 T1417 T1635",
    "Discovery": "T1087 T1010 T1217 T1580 T1538 T1526 T1619 T1613 T1622 T1652 T1482 T1083 T1615 T1046 "
    "T1135 T1040 T1201 T1120 T1069 T1057 T1012 T1018 T1518 T1082 T1614 T1016 T1049 T1033 T1007 T1124 "
    "T1497 T1420 T1430 T1423 T1424 T1418 T1426 T1422 T1421 T0840 T0842 T0846 T0888 T0887",
    "LateralMovement": "T1210 T1534 T1570 T1563 T1021 T1091 T1072 T1080 T1550 T1428 T1458 T0812 T0866 "
    "T0891 T0867 T0843 T0886 T0859",
    "Execution": "T1651 T1059 T1609 T1610 T1203 T1559 T1106 T1053 T1648 T1129 T1072 T1569 T1204 T1047 "
    "T1623 T1575 T1603 T0858 T0807 T0871 T0823 T0874 T0821 T0834 T0853 T0863",
    "Collection": "T1557 T1560 T1123 T1119 T1185 T1115 T1074 T1530 T1602 T1213 T1005 T1039 T1025 T1114 "
    "T1056 T1113 T1125 T1517 T1638 T1532 T1429 T1616 T1414 T1533 T1417 T1430 T1636 T1513 T1409 T1512 "
    "T0830 T0802 T0811 T0893 T0868 T0877 T0801 T0861 T0845 T0852 T0887",
    "Exfiltration": "T1020 T1030 T1048 T1041 T1011 T1052 T1567 T1029 T1537 T1639 T1646",
    "CommandAndControl": "T1071 T1092 T1132 T1001 T1568 T1573 T1008 T1105 T1104 T1095 T1571 T1572 T1090 "
    "T1219 T1205 T1102 T1437 T1616 T1637 T1521 T1544 T1509 T1644 T1481 T0885 T0884 T0869",
    "Impact": "T1531 T1485 T1486 T1565 T1491 T1561 T1499 T1495 T1490 T1498 T1496 T1489 T1529 T1640 T1616 "
    "T1471 T1641 T1642 T1643 T1516 T1464 T1582 T0879 T0813 T0815 T0826 T0827 T0828 T0837 T0880 T0829 "
    "T0831 T0832 T0882",
    "ImpairProcessControl": "T0806 T0836 T0839 T0856 T0855",
    "InhibitResponseFunction": "T0800 T0878 T0803 T0804 T0805 T0892 T0809 T0814 T0816 T0835 T0838 T0851 "
    "T0881 T0857",
    "Reconnaissance": "T1595 T1592 T1589 T1590 T1591 T1598 T1597 T1596 T1593 T1594",
    "ResourceDevelopment": "T1650 T1583 T1586 T1584 T1587 T1585 T1588 T1608",
}


def _technique_table() -> dict[str, frozenset[str]]:
    table: dict[str, set[str]] = {}
    for tactic, techniques in _TACTIC_TECHNIQUES.items():
        for technique in techniques.split():
            table.setdefault(technique, set()).add(tactic)
    return {technique: frozenset(tactics) for technique, tactics in table.items()}


TECHNIQUE_TACTICS: Mapping[str, frozenset[str]] = _technique_table()

_TECHNIQUE = re.compile(r"^T\d{4}(\.\d{3})?$")
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_VERSION = re.compile(r"^\d+\.\d+\.\d+$")
_CUSTOM_DETAIL_KEY = re.compile(r"^[a-zA-Z]+\w*$")
_COLUMN_NAME = re.compile(r"^[a-zA-Z_]+\w*$")
_PLACEHOLDER = re.compile(r"\{\{([^{}]*)\}\}")
_SHORT_DURATION = re.compile(r"^(\d+)([mhd])$")
_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2})$")
_ISO_DURATION = re.compile(r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$")
# Entity columns of the retired mapping model; a query that still produces one must map it.
_LEGACY_ENTITY_COLUMNS = (
    "AccountCustomEntity",
    "HostCustomEntity",
    "IPCustomEntity",
    "URLCustomEntity",
    "ProcessCustomEntity",
    "FileHashCustomEntity",
)


@dataclass(frozen=True)
class Violation:
    constraint: str
    message: str

    def __str__(self) -> str:
        return f"[{self.constraint}] {self.message}"


@dataclass(frozen=True)
class ScheduledRule:
    """The fields Sentinel validates, read from either form of a rule, values as written."""

    source: str
    kind: object
    id: object
    display_name: object
    description: object
    severity: object
    query: object
    query_frequency: object
    query_period: object
    trigger_operator: object
    trigger_threshold: object
    tactics: object
    techniques: object
    entity_mappings: object
    custom_details: object
    alert_details_override: object
    event_grouping: object
    version: object
    form: str  # "yaml" (repository format) or "arm" (the API's format)


def rule_from_yaml(rule: Mapping[str, Any], source: str) -> ScheduledRule:
    """A rule file in the Azure-Sentinel repository format."""
    return ScheduledRule(
        source=source,
        kind=rule.get("kind"),
        id=rule.get("id"),
        display_name=rule.get("name"),
        description=rule.get("description"),
        severity=rule.get("severity"),
        query=rule.get("query"),
        query_frequency=rule.get("queryFrequency"),
        query_period=rule.get("queryPeriod"),
        trigger_operator=rule.get("triggerOperator"),
        trigger_threshold=rule.get("triggerThreshold"),
        tactics=rule.get("tactics"),
        techniques=rule.get("relevantTechniques"),
        entity_mappings=rule.get("entityMappings"),
        custom_details=rule.get("customDetails"),
        alert_details_override=rule.get("alertDetailsOverride"),
        event_grouping=rule.get("eventGroupingSettings"),
        version=rule.get("version"),
        form="yaml",
    )


def _unescape(value: Any) -> Any:
    """Undo ARM's `[[` literal escape (see `deploy.build_template.escape_literal`)."""
    if isinstance(value, str):
        return value[1:] if value.startswith("[[") else value
    if isinstance(value, list):
        return [_unescape(item) for item in value]
    if isinstance(value, dict):
        return {key: _unescape(item) for key, item in value.items()}
    return value


def rule_from_arm(resource: Mapping[str, Any], source: str) -> ScheduledRule:
    """An `alertRules` resource as the template deploys it (ISO durations, API field names)."""
    props = _unescape(resource.get("properties") or {})
    techniques = [*(props.get("techniques") or []), *(props.get("subTechniques") or [])]
    return ScheduledRule(
        source=source,
        kind=resource.get("kind"),
        id=resource.get("name"),
        display_name=props.get("displayName"),
        description=props.get("description"),
        severity=props.get("severity"),
        query=props.get("query"),
        query_frequency=props.get("queryFrequency"),
        query_period=props.get("queryPeriod"),
        trigger_operator=props.get("triggerOperator"),
        trigger_threshold=props.get("triggerThreshold"),
        tactics=props.get("tactics"),
        techniques=techniques or None,
        entity_mappings=props.get("entityMappings"),
        custom_details=props.get("customDetails"),
        alert_details_override=props.get("alertDetailsOverride"),
        event_grouping=props.get("eventGroupingSettings"),
        version=props.get("templateVersion"),
        form="arm",
    )


def parse_duration(value: object) -> timedelta | None:
    """`5m`/`1h`/`2d` (repository YAML), `d.hh:mm:ss` (also accepted there) or ISO 8601 (the API)."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    if match := _SHORT_DURATION.match(text):
        amount, unit = int(match.group(1)), match.group(2)
        return {"m": timedelta(minutes=amount), "h": timedelta(hours=amount), "d": timedelta(days=amount)}[
            unit
        ]
    if match := _TIMESPAN.match(text):
        days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
        return timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
    if (match := _ISO_DURATION.match(text.upper())) and text.upper() not in {"P", "PT"}:
        days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
        return timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
    return None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _length_check(
    constraint: str, field: str, value: object, maximum: int, *, required: bool = True
) -> Iterator[Violation]:
    if value is None and not required:
        return
    text = _text(value)
    if text is None or not text.strip():
        yield Violation(constraint, f"{field} is missing or empty")
    elif len(text) > maximum:
        yield Violation(constraint, f"{field} has {len(text)} characters; at most {maximum}")


# --- the checks, one per constraint ------------------------------------------------------------


def check_kind(rule: ScheduledRule) -> Iterator[Violation]:
    if rule.kind != "Scheduled":
        yield Violation("kind", f"kind is {rule.kind!r}; these checks are for Scheduled rules")


def check_id(rule: ScheduledRule) -> Iterator[Violation]:
    text = _text(rule.id)
    if text is None or not _GUID.match(text):
        yield Violation("id-guid", f"id {rule.id!r} is not a GUID")


def check_display_name(rule: ScheduledRule) -> Iterator[Violation]:
    yield from _length_check("display-name", "name", rule.display_name, MAX_NAME_LENGTH)


def check_description(rule: ScheduledRule) -> Iterator[Violation]:
    yield from _length_check("description", "description", rule.description, MAX_DESCRIPTION_LENGTH)


def check_severity(rule: ScheduledRule) -> Iterator[Violation]:
    if rule.severity not in SEVERITIES:
        yield Violation("severity", f"severity {rule.severity!r} is not one of {sorted(SEVERITIES)}")


def check_query(rule: ScheduledRule) -> Iterator[Violation]:
    yield from _length_check("query-length", "query", rule.query, MAX_QUERY_LENGTH)


def _window(rule: ScheduledRule, field: str) -> timedelta | None:
    return parse_duration(rule.query_frequency if field == "queryFrequency" else rule.query_period)


def check_windows(rule: ScheduledRule) -> Iterator[Violation]:
    for field, constraint, raw in (
        ("queryFrequency", "query-frequency-range", rule.query_frequency),
        ("queryPeriod", "query-period-range", rule.query_period),
    ):
        value = parse_duration(raw)
        if value is None:
            yield Violation(constraint, f"{field} {raw!r} is not a duration (5m, 1h, 2d or ISO 8601)")
        elif not MIN_WINDOW <= value <= MAX_WINDOW:
            yield Violation(constraint, f"{field} {raw} is outside 5 minutes .. 14 days")


def check_period_covers_frequency(rule: ScheduledRule) -> Iterator[Violation]:
    frequency, period = _window(rule, "queryFrequency"), _window(rule, "queryPeriod")
    if frequency is not None and period is not None and period < frequency:
        yield Violation(
            "period-at-least-frequency",
            f"queryPeriod {rule.query_period} is shorter than queryFrequency {rule.query_frequency}",
        )


def check_long_period_frequency(rule: ScheduledRule) -> Iterator[Violation]:
    frequency, period = _window(rule, "queryFrequency"), _window(rule, "queryPeriod")
    if frequency is None or period is None:
        return
    if period >= LONG_PERIOD and frequency < LONG_PERIOD_MIN_FREQUENCY:
        yield Violation(
            "long-period-frequency",
            f"queryPeriod {rule.query_period} is 2 days or more, so queryFrequency must be at least "
            f"1 hour (it is {rule.query_frequency})",
        )


def check_trigger(rule: ScheduledRule) -> Iterator[Violation]:
    # The repository format also takes gt/lt/eq/ne; the API only the full names.
    allowed = TRIGGER_OPERATORS if rule.form == "yaml" else set(TRIGGER_OPERATORS.values())
    if not isinstance(rule.trigger_operator, str) or rule.trigger_operator not in allowed:
        yield Violation(
            "trigger-operator",
            f"triggerOperator {rule.trigger_operator!r} is not one of {sorted(allowed)}",
        )
    threshold = rule.trigger_threshold
    if isinstance(threshold, bool) or not isinstance(threshold, int) or not 0 <= threshold <= MAX_THRESHOLD:
        yield Violation("trigger-threshold", f"triggerThreshold {threshold!r} is not an integer 0..10000")


def check_tactics(rule: ScheduledRule) -> Iterator[Violation]:
    if rule.tactics is None:
        return
    if not isinstance(rule.tactics, list):
        yield Violation("tactics", f"tactics {rule.tactics!r} is not a list")
        return
    for tactic in rule.tactics:
        if tactic not in TACTICS:
            yield Violation("tactics", f"tactic {tactic!r} is not a Sentinel tactic")


def check_techniques_match_tactics(rule: ScheduledRule) -> Iterator[Violation]:
    if rule.techniques is None:
        return
    if not isinstance(rule.techniques, list):
        yield Violation("techniques-match-tactics", f"techniques {rule.techniques!r} is not a list")
        return
    listed = set(rule.tactics) if isinstance(rule.tactics, list) else set()
    for technique in rule.techniques:
        if not isinstance(technique, str) or not _TECHNIQUE.match(technique):
            yield Violation("techniques-match-tactics", f"technique {technique!r} is not T#### or T####.###")
            continue
        tactics = TECHNIQUE_TACTICS.get(technique.split(".", 1)[0], frozenset())
        if not tactics:
            yield Violation("techniques-match-tactics", f"technique {technique} maps to no known tactic")
        elif not tactics & listed:
            yield Violation(
                "techniques-match-tactics",
                f"technique {technique} belongs to {sorted(tactics)}, none of which is in tactics "
                f"{sorted(listed)}",
            )


def check_entity_mappings(rule: ScheduledRule) -> Iterator[Violation]:
    mappings = rule.entity_mappings
    if mappings is None:
        return
    if not isinstance(mappings, list) or not 1 <= len(mappings) <= MAX_ENTITY_MAPPINGS:
        count = len(mappings) if isinstance(mappings, list) else mappings
        yield Violation("entity-mappings", f"{count!r} entity mappings; 1 to {MAX_ENTITY_MAPPINGS} allowed")
        return
    for index, mapping in enumerate(mappings):
        where = f"entityMappings[{index}]"
        entity_type = mapping.get("entityType") if isinstance(mapping, dict) else None
        if entity_type not in ENTITY_IDENTIFIERS:
            yield Violation("entity-type", f"{where}: unknown entity type {entity_type!r}")
            continue
        fields = mapping.get("fieldMappings")
        if not isinstance(fields, list) or not 1 <= len(fields) <= MAX_FIELD_MAPPINGS:
            count = len(fields) if isinstance(fields, list) else fields
            yield Violation(
                "field-mappings", f"{where} ({entity_type}): {count!r} field mappings; 1 to 3 allowed"
            )
            continue
        valid, strong = ENTITY_IDENTIFIERS[str(entity_type)]
        used: set[str] = set()
        for field in fields:
            identifier = field.get("identifier") if isinstance(field, dict) else None
            column = field.get("columnName") if isinstance(field, dict) else None
            if identifier not in valid:
                yield Violation(
                    "entity-identifier",
                    f"{where}: {identifier!r} is not an identifier of {entity_type} (valid: {sorted(valid)})",
                )
                continue
            if identifier in used:
                yield Violation("entity-identifier", f"{where}: identifier {identifier} mapped twice")
            used.add(str(identifier))
            if not isinstance(column, str) or not _COLUMN_NAME.match(column) or len(column) > MAX_COLUMN_NAME:
                yield Violation(
                    "entity-column", f"{where}: column name {column!r} is not a valid column name"
                )
        if used and not any(combo <= used for combo in strong):
            choices = "; ".join(", ".join(sorted(combo)) for combo in strong)
            yield Violation(
                "entity-strong-identifier",
                f"{where} ({entity_type}) maps {sorted(used)} but needs one of: {choices}",
            )


def check_legacy_entity_columns(rule: ScheduledRule) -> Iterator[Violation]:
    query = _text(rule.query) or ""
    mapped = {
        field.get("columnName")
        for mapping in (rule.entity_mappings if isinstance(rule.entity_mappings, list) else [])
        if isinstance(mapping, dict)
        for field in (mapping.get("fieldMappings") or [])
        if isinstance(field, dict)
    }
    for column in _LEGACY_ENTITY_COLUMNS:
        if column in query and column not in mapped:
            yield Violation(
                "legacy-entity-column", f"the query produces {column} but no entity mapping uses it"
            )


def check_custom_details(rule: ScheduledRule) -> Iterator[Violation]:
    details = rule.custom_details
    if details is None:
        return
    if not isinstance(details, dict):
        yield Violation("custom-details", f"customDetails {details!r} is not a mapping")
        return
    if len(details) > MAX_CUSTOM_DETAILS:
        yield Violation("custom-details", f"{len(details)} custom details; at most {MAX_CUSTOM_DETAILS}")
    for key, column in details.items():
        if not isinstance(key, str) or not _CUSTOM_DETAIL_KEY.match(key) or len(key) > MAX_CUSTOM_DETAIL_KEY:
            yield Violation(
                "custom-details",
                f"custom detail key {key!r}: a letter first, then letters, digits or _, at most 20 characters",
            )
        if not isinstance(column, str) or not _COLUMN_NAME.match(column) or len(column) > MAX_COLUMN_NAME:
            yield Violation("custom-details", f"custom detail {key!r} -> {column!r} is not a column name")


def check_alert_details_override(rule: ScheduledRule) -> Iterator[Violation]:
    override = rule.alert_details_override
    if override is None:
        return
    if not isinstance(override, dict):
        yield Violation("alert-details-override", f"alertDetailsOverride {override!r} is not a mapping")
        return
    for field, maximum in (
        ("alertDisplayNameFormat", MAX_NAME_LENGTH),
        ("alertDescriptionFormat", MAX_DESCRIPTION_LENGTH),
    ):
        if field not in override:
            continue
        value = override[field]
        yield from _length_check("alert-details-override", field, value, maximum)
        placeholders = _PLACEHOLDER.findall(value) if isinstance(value, str) else []
        if len(placeholders) > MAX_PLACEHOLDERS:
            yield Violation(
                "alert-details-placeholders",
                f"{field} has {len(placeholders)} {{{{column}}}} placeholders ({', '.join(placeholders)}); "
                f"at most {MAX_PLACEHOLDERS}",
            )


def check_event_grouping(rule: ScheduledRule) -> Iterator[Violation]:
    grouping = rule.event_grouping
    if grouping is None:
        return
    kind = grouping.get("aggregationKind") if isinstance(grouping, dict) else None
    if kind not in AGGREGATION_KINDS:
        yield Violation("event-grouping", f"aggregationKind {kind!r} is not SingleAlert or AlertPerResult")


def check_version(rule: ScheduledRule) -> Iterator[Violation]:
    if rule.version is None and rule.form == "arm":  # templateVersion is optional in the API
        return
    text = _text(rule.version)
    if text is None or not _VERSION.match(text) or len(text) > MAX_VERSION_LENGTH:
        yield Violation("version", f"version {rule.version!r} is not X.Y.Z (numbers)")


CHECKS: tuple[Callable[[ScheduledRule], Iterable[Violation]], ...] = (
    check_kind,
    check_id,
    check_display_name,
    check_description,
    check_severity,
    check_query,
    check_windows,
    check_period_covers_frequency,
    check_long_period_frequency,
    check_trigger,
    check_tactics,
    check_techniques_match_tactics,
    check_entity_mappings,
    check_legacy_entity_columns,
    check_custom_details,
    check_alert_details_override,
    check_event_grouping,
    check_version,
)


def violations(rule: ScheduledRule) -> list[Violation]:
    return [violation for check in CHECKS for violation in check(rule)]


def check_yaml(rule: Mapping[str, Any], source: str) -> list[Violation]:
    return violations(rule_from_yaml(rule, source))


def check_arm(resource: Mapping[str, Any], source: str) -> list[Violation]:
    return violations(rule_from_arm(resource, source))


def alert_rules_in(
    template: Mapping[str, Any], path: str = "template"
) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Every alertRules resource of a template, nested deployments included."""
    for resource in template.get("resources", []):
        if resource.get("type") == "Microsoft.SecurityInsights/alertRules":
            yield f"{path}:{resource.get('name')}", resource
        inner = (resource.get("properties") or {}).get("template")
        if resource.get("type") == "Microsoft.Resources/deployments" and isinstance(inner, dict):
            yield from alert_rules_in(inner, f"{path}/{resource.get('name')}")


def main(argv: Iterable[str] | None = None) -> int:
    import argparse

    import yaml  # type: ignore[import-untyped]

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--root", type=Path, default=Path(__file__).resolve().parent.parent, help="repository"
    )
    root: Path = parser.parse_args(list(argv) if argv is not None else None).root
    problems: list[str] = []
    count = 0
    for path in sorted((root / "content" / "analytic-rules").glob("*.yaml")):
        count += 1
        rule = yaml.safe_load(path.read_text(encoding="utf-8"))
        problems += [f"{path.name}: {v}" for v in check_yaml(rule, path.name)]
    for template_path in sorted((root / "deploy").glob("*.json")):
        template = json.loads(template_path.read_text(encoding="utf-8"))
        for where, resource in alert_rules_in(template, template_path.name):
            count += 1
            problems += [f"{where}: {v}" for v in check_arm(resource, where)]
    for line in problems:
        print(line)
    print(f"{count} rules checked, {len(problems)} violations")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
