"""Generate the deployment files: the Deploy to Azure template, the content-only template and the
portal form.

The templates are generated rather than hand-written so that the table schemas and the DCR stream
declarations come from `nordpass_connector.schema` and cannot drift from the rows the connector
sends, and so that the Sentinel content in `content/` is embedded exactly as reviewed (and as
Sentinel's own rule validation accepts it, see `content/rule_constraints.py`).

    python -m deploy.build_template          # write the generated files below
    python -m deploy.build_template --check  # exit 1 if a committed file is stale

| File | What |
|---|---|
| `deploy/azuredeploy.json` | The connector (identity, storage, Key Vault, tables, DCR, function app, roles) and, behind the `deploySentinelContent` switch, the Sentinel content. As committed it carries **no code package**: only a release build knows the repository, tag and SHA-256 of a package that exists. `make release` (deploy/release.py) stamps a copy that adds the pinned package. |
| `deploy/sentinel-content.json` | The tables and the Sentinel content alone, deployed into the workspace's resource group: how to (re)deploy content without touching the connector or re-entering the token. |
| `deploy/createUiDefinition.json` | The portal form of the Deploy to Azure button (see deploy/ui_definition.py). |

Resource graph (dependsOn, nested deployments included):

- identity, storage (+ deployment container, checkpoint table), Key Vault (+ secret), Application
  Insights, plan: independent;
- role assignments: the identity and their scope;
- **tables** deployment (workspace resource group): the custom tables, nothing else;
- **DCR** deployment: the identity and the tables deployment (a DCR output stream must exist as a table);
- function app: everything above except content; publishing policies and (release) onedeploy: the app;
- **content** deployment (workspace resource group, `deploySentinelContent`): the tables deployment only.

Nothing depends on content, so a rule that Sentinel rejects, or a new table that is not yet
queryable, fails the content deployment alone while ingestion is set up.

Extending: a new kind of Sentinel content is one more function in `CONTENT_BUILDERS`, under the
name the portal form and the docs use for it (it gets the loaded content and the workspace
expressions, and returns resources). A new custom table is one more
`CustomTable` in `CUSTOM_TABLES`: the tables deployment and the DCR stream declarations follow.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deploy.package import zip_name
from nordpass_connector import __version__ as CONNECTOR_VERSION
from nordpass_connector import schema

if TYPE_CHECKING:  # content/ needs PyYAML; it is imported only when content is loaded
    from content.asim import Parser
    from content.hunting import HuntingQuery

REPO_ROOT = Path(__file__).resolve().parent.parent
TEMPLATE_PATH = REPO_ROOT / "deploy" / "azuredeploy.json"
CONTENT_TEMPLATE_PATH = REPO_ROOT / "deploy" / "sentinel-content.json"
UI_DEFINITION_PATH = REPO_ROOT / "deploy" / "createUiDefinition.json"
RULES_DIR = REPO_ROOT / "content" / "analytic-rules"
WORKBOOK_PATH = REPO_ROOT / "content" / "workbooks" / "NordPass.workbook.json"
CONNECTOR_PATH = REPO_ROOT / "content" / "data-connectors" / "NordPass.connector.json"

Json = dict[str, Any]

TEMPLATE_SCHEMA = "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#"

# One API version per resource type. Where `tests/arm-schemas/` vendors a schema, this is that
# version (the tests hold us to it); the two types without a vendored schema are listed in
# NO_SCHEMA_TYPES with the reason.
API_VERSIONS: dict[str, str] = {
    "Microsoft.ManagedIdentity/userAssignedIdentities": "2024-11-30",
    "Microsoft.Storage/storageAccounts": "2026-04-01",
    "Microsoft.Storage/storageAccounts/blobServices/containers": "2026-04-01",
    "Microsoft.Storage/storageAccounts/tableServices/tables": "2026-04-01",
    "Microsoft.KeyVault/vaults": "2026-02-01",
    "Microsoft.KeyVault/vaults/secrets": "2026-02-01",
    "Microsoft.Insights/components": "2020-02-02",
    "Microsoft.Insights/workbooks": "2023-06-01",
    "Microsoft.Insights/dataCollectionRules": "2024-03-11",
    "Microsoft.Insights/diagnosticSettings": "2021-05-01-preview",
    "Microsoft.OperationalInsights/workspaces": "2025-07-01",
    "Microsoft.OperationalInsights/workspaces/tables": "2025-07-01",
    "Microsoft.OperationalInsights/workspaces/savedSearches": "2025-07-01",
    "Microsoft.SecurityInsights/alertRules": "2025-09-01",
    "Microsoft.SecurityInsights/dataConnectorDefinitions": "2025-09-01",
    "Microsoft.Web/serverfarms": "2024-11-01",
    "Microsoft.Web/sites": "2024-11-01",
    "Microsoft.Web/sites/extensions": "2024-11-01",
    "Microsoft.Web/sites/basicPublishingCredentialsPolicies": "2024-11-01",
    "Microsoft.Authorization/roleAssignments": "2022-04-01",
    "Microsoft.Resources/deployments": "2022-09-01",
}

NO_SCHEMA_TYPES: dict[str, str] = {
    "Microsoft.Resources/deployments": "not vendored in tests/arm-schemas; checked by the root "
    "template schema (resourceBase) and its inner templates are validated in full",
    "Microsoft.Insights/diagnosticSettings": "not vendored in tests/arm-schemas (its only stable "
    "schema is the 2021-05-01-preview API); checked by resourceBase and the structural lint",
}

# Built-in role definition ids. These are global constants, the same in every tenant.
ROLE_MONITORING_METRICS_PUBLISHER = "3913510d-42f4-4e42-8a64-420c390055eb"
ROLE_STORAGE_BLOB_DATA_OWNER = "b7e6dc6d-f1e8-4753-8033-0f276bb0955b"
ROLE_STORAGE_TABLE_DATA_CONTRIBUTOR = "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3"
ROLE_KEY_VAULT_SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"

# (role GUID, resource type of the scope): every role assignment the template may contain.
ALLOWED_ROLE_SCOPES: frozenset[tuple[str, str]] = frozenset(
    {
        (ROLE_MONITORING_METRICS_PUBLISHER, "Microsoft.Insights/dataCollectionRules"),
        (ROLE_STORAGE_BLOB_DATA_OWNER, "Microsoft.Storage/storageAccounts"),
        (ROLE_STORAGE_TABLE_DATA_CONTRIBUTOR, "Microsoft.Storage/storageAccounts"),
        (ROLE_KEY_VAULT_SECRETS_USER, "Microsoft.KeyVault/vaults/secrets"),
    }
)

EU_ENDPOINT = "https://api-activities.eu.nordpass.com/activities/query"
US_ENDPOINT = "https://api-activities.us.nordpass.com/activities/query"
CHECKPOINT_TABLE_NAME = "nordpasscheckpoint"
SECRET_NAME = "nordpass-token"
DEPLOYMENT_CONTAINER = "app-package"
# A timer trigger runs as a singleton, so one instance does the work; the cap only bounds cost if
# the platform scales out for any other reason. 40 is the smallest value Flex documents as accepted.
MAX_INSTANCE_COUNT = 40
# The smallest Flex size (512, 2048 or 4096 MB). Flex bills memory x execution time, at least 1 s an
# execution: at 512 MB a tick costs a quarter of what it did at 2048 MB, and the connector's peak (the
# 1M-event backfill, ~125 MB RSS; see README, Performance) fits four times over. 512 MB comes with
# 0.25 core, which only stretches a large backfill over more ticks.
INSTANCE_MEMORY_MB = 512
PYTHON_VERSION = "3.11"
# Deployment names in the content-only template (the main template adds its name suffix).
STANDALONE_TABLES_DEPLOYMENT = "nordpass-sentinel-tables"
STANDALONE_CONTENT_DEPLOYMENT = "nordpass-sentinel-content"

# Every app setting the template writes, in template order. The tests compare this with what the
# connector reads (`nordpass_connector.settings.SETTING_NAMES`).
APP_SETTING_NAMES: tuple[str, ...] = (
    "AzureWebJobsStorage__blobServiceUri",
    "AzureWebJobsStorage__queueServiceUri",
    "AzureWebJobsStorage__tableServiceUri",
    "AzureWebJobsStorage__credential",
    "AzureWebJobsStorage__clientId",
    "APPLICATIONINSIGHTS_CONNECTION_STRING",
    "NORDPASS_ENDPOINT_URL",
    "NORDPASS_TOKEN",
    "DATA_COLLECTION_ENDPOINT",
    "DCR_IMMUTABLE_ID",
    "DCR_STREAM_NAME",
    "DCR_HEALTH_STREAM_NAME",
    "AZURE_CLIENT_ID",
    "CHECKPOINT_TABLE_NAME",
)

VERIFY_KQL = (
    f"{schema.TABLE_NAME} | where TimeGenerated > ago(1d) | summarize Events = count(), "
    "LatestEvent = max(TimeGenerated), LatestIngestion = max(ingestion_time())"
)

_REPOSITORY = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}$")
_TAG = re.compile(r"^v(\d+)\.(\d+)\.(\d+)$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


# --- small helpers for ARM expressions --------------------------------------------------------


def x(expression: str) -> str:
    """Wrap an expression body as an ARM template expression string."""
    return f"[{expression}]"


def lit(value: str) -> str:
    """A single-quoted ARM string literal."""
    return "'" + value.replace("'", "''") + "'"


def p(name: str) -> str:
    return f"parameters({lit(name)})"


def v(name: str) -> str:
    return f"variables({lit(name)})"


def rid(resource_type: str, *names: str) -> str:
    return f"resourceId({', '.join([lit(resource_type), *names])})"


def api(resource_type: str) -> str:
    return API_VERSIONS[resource_type]


def ref(resource_type: str, *names: str, full: bool = False) -> str:
    suffix = ", 'Full'" if full else ""
    return f"reference({rid(resource_type, *names)}, {lit(api(resource_type))}{suffix})"


def child_name(*parts: str) -> str:
    """Name of a top-level child resource, `parent/child`, from expression bodies."""
    placeholders = "/".join(f"{{{i}}}" for i in range(len(parts)))
    return x(f"format({lit(placeholders)}, {', '.join(parts)})")


def role_definition(role_guid: str) -> str:
    return x(f"subscriptionResourceId('Microsoft.Authorization/roleDefinitions', {lit(role_guid)})")


def escape_literal(value: Any) -> Any:
    """Escape content text that ARM would otherwise evaluate as an expression.

    ARM treats any string that starts with `[` and ends with `]` as an expression; `[[` makes it a
    literal. KQL, workbook JSON or a rule description can legitimately look like that.
    """
    if isinstance(value, str):
        return "[" + value if value.startswith("[") and value.endswith("]") else value
    if isinstance(value, list):
        return [escape_literal(item) for item in value]
    if isinstance(value, dict):
        return {key: escape_literal(item) for key, item in value.items()}
    return value


# --- release pin ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReleasePin:
    """The published code package a release template installs: where it is and what it hashes to."""

    repository: str
    tag: str
    package_sha256: str

    def __post_init__(self) -> None:
        if not _REPOSITORY.match(self.repository):
            raise ValueError(f"repository {self.repository!r} is not <owner>/<name>")
        if not _TAG.match(self.tag):
            raise ValueError(f"tag {self.tag!r} is not v<major>.<minor>.<patch>")
        if not _SHA256.match(self.package_sha256):
            raise ValueError(f"package SHA-256 {self.package_sha256!r} is not 64 lowercase hex digits")

    @property
    def version(self) -> str:
        return self.tag[1:]

    def asset_url(self, file_name: str) -> str:
        """The immutable download URL of one asset of this release."""
        return f"https://github.com/{self.repository}/releases/download/{self.tag}/{file_name}"

    @property
    def package_uri(self) -> str:
        return self.asset_url(zip_name(self.version))


# --- custom tables: one entry per table, each with its DCR stream --------------------------------


@dataclass(frozen=True)
class CustomTable:
    name: str
    stream: str
    table_columns: list[dict[str, str]]
    stream_declaration: Mapping[str, object]
    description: str


CUSTOM_TABLES: tuple[CustomTable, ...] = tuple(
    CustomTable(
        name=table.name,
        stream=table.stream,
        table_columns=table.table_columns(),
        stream_declaration=table.stream_declaration(),
        description=table.description,
    )
    for table in schema.TABLES
)


# --- content: rules, workbook, connector page, ASIM parsers, hunting queries --------------------

_DURATION = re.compile(r"^(\d+)([mhd])$")
_TRIGGER_OPERATORS = {
    "gt": "GreaterThan",
    "lt": "LessThan",
    "eq": "Equal",
    "ne": "NotEqual",
    "greaterthan": "GreaterThan",
    "lessthan": "LessThan",
    "equal": "Equal",
    "notequal": "NotEqual",
}
_REQUIRED_RULE_KEYS = (
    "id",
    "name",
    "description",
    "query",
    "severity",
    "queryFrequency",
    "queryPeriod",
    "triggerOperator",
    "triggerThreshold",
)


def iso_duration(value: object, *, field: str, source: str) -> str:
    """Sentinel YAML writes `5m`/`1h`/`1d`; the API wants ISO 8601 (`PT5M`, `PT1H`, `P1D`)."""
    text = str(value).strip()
    if text.upper().startswith("P"):
        return text.upper()
    match = _DURATION.match(text.lower())
    if not match:
        raise ValueError(f"{source}: {field} {value!r} is neither `<n>m|h|d` nor ISO 8601")
    amount, unit = match.groups()
    return f"P{amount}D" if unit == "d" else f"PT{amount}{unit.upper()}"


def _unquote(text: str) -> str:
    """Sentinel-repo YAML wraps descriptions in single quotes inside a block scalar; the portal
    would show them literally."""
    if len(text) >= 2 and text[0] == text[-1] == "'":
        return text[1:-1].strip()
    return text


def _rule_properties(rule: Mapping[str, Any], source: str) -> Json:
    missing = [key for key in _REQUIRED_RULE_KEYS if key not in rule]
    if missing:
        raise ValueError(f"{source}: missing {', '.join(missing)}")
    operator = _TRIGGER_OPERATORS.get(str(rule["triggerOperator"]).lower())
    if operator is None:
        raise ValueError(f"{source}: unknown triggerOperator {rule['triggerOperator']!r}")
    props: Json = {
        "displayName": rule["name"],
        "description": _unquote(str(rule["description"]).strip()),
        "severity": rule["severity"],
        "enabled": bool(rule.get("enabled", True)),
        "query": str(rule["query"]).strip(),
        "queryFrequency": iso_duration(rule["queryFrequency"], field="queryFrequency", source=source),
        "queryPeriod": iso_duration(rule["queryPeriod"], field="queryPeriod", source=source),
        "triggerOperator": operator,
        "triggerThreshold": int(rule["triggerThreshold"]),
        "suppressionDuration": iso_duration(
            rule.get("suppressionDuration", "PT5H"), field="suppressionDuration", source=source
        ),
        "suppressionEnabled": bool(rule.get("suppressionEnabled", False)),
    }
    if rule.get("tactics"):
        props["tactics"] = list(rule["tactics"])
    techniques = _parent_techniques(rule.get("relevantTechniques") or [])
    if techniques:
        props["techniques"] = techniques
    for key in ("entityMappings", "customDetails", "alertDetailsOverride", "eventGroupingSettings"):
        if rule.get(key):
            props[key] = rule[key]
    incident = rule.get("incidentConfiguration")
    if incident:
        props["incidentConfiguration"] = _incident_configuration(incident, source)
    return props


def _parent_techniques(techniques: Iterable[object]) -> list[str]:
    """The API's `techniques` takes parent technique ids only; sub-techniques (T1078.004) are
    folded into their parent rather than rejected. First-seen order, no repeats."""
    parents: list[str] = []
    for technique in techniques:
        parent = str(technique).split(".", 1)[0]
        if parent not in parents:
            parents.append(parent)
    return parents


def _incident_configuration(incident: Json, source: str) -> Json:
    """A copy of the YAML's incidentConfiguration in the API's form."""
    incident = json.loads(json.dumps(incident))
    grouping = incident.get("groupingConfiguration")
    if grouping and "lookbackDuration" in grouping:
        grouping["lookbackDuration"] = iso_duration(
            grouping["lookbackDuration"], field="lookbackDuration", source=source
        )
    if grouping:
        # Upstream YAML writes `groupByAlertDetails: []` for "none"; the API omits them instead.
        for key in [k for k, value in grouping.items() if value == []]:
            del grouping[key]
    return incident


def load_rules(rules_dir: Path = RULES_DIR) -> list[tuple[str, Json]]:
    """(rule id, API properties) for every `*.yaml` rule, in file-name order.

    A rule that breaks a limit Sentinel enforces is refused here, before it can fail a deployment.
    """
    if not rules_dir.is_dir():
        return []
    import yaml  # type: ignore[import-untyped]  # only needed when content exists

    from content import rule_constraints

    rules: list[tuple[str, Json]] = []
    seen: set[str] = set()
    for path in sorted([*rules_dir.glob("*.yaml"), *rules_dir.glob("*.yml")]):
        rule = yaml.safe_load(path.read_text(encoding="utf-8"))
        source = f"content/analytic-rules/{path.name}"
        if not isinstance(rule, dict):
            raise ValueError(f"{source}: not a YAML mapping")
        kind = str(rule.get("kind", "Scheduled"))
        if kind != "Scheduled":
            raise ValueError(f"{source}: kind {kind!r}; only Scheduled rules are deployed")
        problems = rule_constraints.check_yaml(rule, source)
        if problems:
            raise ValueError(f"{source}: Sentinel would reject this rule: " + "; ".join(map(str, problems)))
        rule_id = str(rule["id"])
        if rule_id in seen:
            raise ValueError(f"{source}: duplicate rule id {rule_id}")
        seen.add(rule_id)
        rules.append((rule_id, _rule_properties(rule, source)))
    return rules


def load_workbook(path: Path = WORKBOOK_PATH) -> str | None:
    """The workbook's serialized JSON, compacted, or None if the content file does not exist."""
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def load_connector(path: Path = CONNECTOR_PATH) -> Json | None:
    """The data connector page's `connectorUiConfig`, or None if the content file does not exist."""
    if not path.is_file():
        return None
    data: Json = json.loads(path.read_text(encoding="utf-8"))
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9]{2,63}", str(data.get("id", ""))):
        raise ValueError(f"{path.name}: `id` must be 3-64 letters and digits (it names the resource)")
    return data


@dataclass(frozen=True)
class SentinelContent:
    """Everything that goes into the content deployment, loaded from `content/`."""

    rules: Sequence[tuple[str, Json]] = ()
    workbook: str | None = None
    connector: Json | None = None
    parsers: Sequence[Parser] = ()
    hunting_queries: Sequence[HuntingQuery] = ()

    @classmethod
    def load(cls) -> SentinelContent:
        from content import asim, hunting, required_connectors

        connector = load_connector()
        if connector is not None:
            # Rules and hunting queries name the data connector they need by the page's id.
            found = required_connectors.check(required_connectors.content_items(), connector)
            if found:
                raise ValueError("; ".join(found))
        return cls(
            rules=load_rules(),
            workbook=load_workbook(),
            connector=connector,
            parsers=asim.load_parsers(),
            hunting_queries=hunting.load_queries(),
        )


@dataclass(frozen=True)
class Workspace:
    """Expression bodies for the workspace, as seen from inside the content template."""

    name: str = field(default_factory=lambda: p("workspaceName"))
    location: str = field(default_factory=lambda: p("workspaceLocation"))

    @property
    def resource_id(self) -> str:
        return rid("Microsoft.OperationalInsights/workspaces", self.name)


def analytic_rule_resources(content: SentinelContent, workspace: Workspace) -> list[Json]:
    return [
        {
            "type": "Microsoft.SecurityInsights/alertRules",
            "apiVersion": api("Microsoft.SecurityInsights/alertRules"),
            "scope": x(workspace.resource_id),
            "name": rule_id,
            "kind": "Scheduled",
            "properties": escape_literal(props),
        }
        for rule_id, props in content.rules
    ]


def workbook_resources(content: SentinelContent, workspace: Workspace) -> list[Json]:
    if content.workbook is None:
        return []
    return [
        {
            "type": "Microsoft.Insights/workbooks",
            "apiVersion": api("Microsoft.Insights/workbooks"),
            "name": x(f"guid({workspace.resource_id}, 'nordpass-workbook')"),
            "location": x(workspace.location),
            "kind": "shared",
            "properties": {
                "displayName": "NordPass",
                "serializedData": escape_literal(content.workbook),
                "version": "1.0",
                "sourceId": x(workspace.resource_id),
                "category": "sentinel",
            },
        }
    ]


def data_connector_resources(content: SentinelContent, workspace: Workspace) -> list[Json]:
    """The connector's page under Sentinel > Data connectors. Its status comes from the
    definition's own KQL (`IsConnectedQuery` on the health rows), so no `dataConnectors` instance
    is needed; that resource is for connectors Sentinel itself runs (`HasDataConnectors`)."""
    if content.connector is None:
        return []
    return [
        {
            "type": "Microsoft.SecurityInsights/dataConnectorDefinitions",
            "apiVersion": api("Microsoft.SecurityInsights/dataConnectorDefinitions"),
            "scope": x(workspace.resource_id),
            "name": content.connector["id"],
            "kind": "Customizable",
            "properties": {"connectorUiConfig": escape_literal(content.connector)},
        }
    ]


SAVED_SEARCHES = "Microsoft.OperationalInsights/workspaces/savedSearches"
HUNTING_CATEGORY = "Hunting Queries"  # the category Sentinel's Hunting page lists
# The query language version savedSearches document as current.
SAVED_SEARCH_QUERY_VERSION = 2


def asim_parser_resources(content: SentinelContent, workspace: Workspace) -> list[Json]:
    """Each ASIM parser as a workspace function (`functionAlias` = the parser name), in the "ASIM"
    category. `etag: *` lets a redeploy replace the function a previous release created. A
    parameter-less parser calls its filtering parser, so it is created after it."""
    names = {parser.name for parser in content.parsers}
    resources = []
    for parser in content.parsers:
        resource: Json = {
            "type": SAVED_SEARCHES,
            "apiVersion": api(SAVED_SEARCHES),
            "name": child_name(workspace.name, lit(parser.name)),
            "etag": "*",
            "properties": escape_literal(
                {
                    "category": "ASIM",
                    "displayName": parser.title,
                    "query": parser.query,
                    "functionAlias": parser.name,
                    "functionParameters": parser.function_parameters,
                    "version": SAVED_SEARCH_QUERY_VERSION,
                }
            ),
        }
        called = sorted(n for n in names if n != parser.name and re.search(rf"\b{n}\b", parser.query))
        if called:
            resource["dependsOn"] = [x(rid(SAVED_SEARCHES, workspace.name, lit(n))) for n in called]
        resources.append(resource)
    return resources


def hunting_query_resources(content: SentinelContent, workspace: Workspace) -> list[Json]:
    """Each hunting query as a saved search in the "Hunting Queries" category, which Sentinel's
    Hunting page lists, with its description, tactics and techniques as tags."""
    return [
        {
            "type": SAVED_SEARCHES,
            "apiVersion": api(SAVED_SEARCHES),
            "name": child_name(workspace.name, lit(query.id)),
            "etag": "*",
            "properties": escape_literal(
                {
                    "category": HUNTING_CATEGORY,
                    "displayName": query.name,
                    "query": query.query,
                    "version": SAVED_SEARCH_QUERY_VERSION,
                    "tags": query.tags(),
                }
            ),
        }
        for query in content.hunting_queries
    ]


# Each builder turns loaded content into resources of the content deployment. They may use the
# parameters `workspaceName` and `workspaceLocation` (the template declares those that are used).
# The key is what the content switch, the portal form and the docs call that kind of content.
ContentBuilder = Callable[[SentinelContent, Workspace], list[Json]]
CONTENT_BUILDERS: Mapping[str, ContentBuilder] = {
    "analytic rules": analytic_rule_resources,
    "workbook": workbook_resources,
    "data connector page": data_connector_resources,
    "ASIM parsers (workspace functions)": asim_parser_resources,
    "hunting queries": hunting_query_resources,
}
# "analytic rules, workbook, …, and hunting queries": every text that says what the content is.
CONTENT_KINDS = ", ".join(list(CONTENT_BUILDERS)[:-1]) + " and " + list(CONTENT_BUILDERS)[-1]


def content_resources(content: SentinelContent) -> list[Json]:
    workspace = Workspace()
    return [resource for build in CONTENT_BUILDERS.values() for resource in build(content, workspace)]


# --- nested templates -----------------------------------------------------------------------------


def _inner_template(parameters: Json, resources: list[Json], outputs: Json | None = None) -> Json:
    template: Json = {
        "$schema": TEMPLATE_SCHEMA,
        "contentVersion": "1.0.0.0",
        "parameters": parameters,
        "resources": resources,
    }
    if outputs:
        template["outputs"] = outputs
    return template


def tables_template() -> Json:
    """The custom tables, alone: the DCR and the content both wait for this deployment."""
    ws = p("workspaceName")
    resources = [
        {
            "type": "Microsoft.OperationalInsights/workspaces/tables",
            "apiVersion": api("Microsoft.OperationalInsights/workspaces/tables"),
            "name": child_name(ws, lit(table.name)),
            "properties": {
                # Analytics, not Basic: scheduled analytic rules cannot query Basic-plan tables.
                "plan": "Analytics",
                "schema": {"name": table.name, "columns": table.table_columns},
            },
        }
        for table in CUSTOM_TABLES
    ]
    return _inner_template({"workspaceName": {"type": "string"}}, resources)


def content_template(resources: list[Json]) -> Json:
    """Sentinel content; it lives in the workspace's resource group."""
    parameters: Json = {"workspaceName": {"type": "string"}}
    if any("parameters('workspaceLocation')" in text for text in _strings(resources)):
        parameters["workspaceLocation"] = {"type": "string"}
    return _inner_template(parameters, resources)


def _strings(node: Any) -> Iterable[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item)
    elif isinstance(node, dict):
        for item in node.values():
            yield from _strings(item)


def dcr_template() -> Json:
    """The DCR must be in the workspace's region, which only `reference()` can tell, and
    `reference()` is not allowed in a top-level `location`; a nested deployment takes it as a
    parameter instead."""
    dcr = p("dcrName")
    dcr_id = rid("Microsoft.Insights/dataCollectionRules", dcr)
    dcr_ref = f"reference({dcr_id}, {lit(api('Microsoft.Insights/dataCollectionRules'))})"
    return _inner_template(
        {
            "dcrName": {"type": "string"},
            "location": {"type": "string"},
            "workspaceResourceId": {"type": "string"},
            "principalId": {"type": "string"},
            "identityResourceId": {"type": "string"},
        },
        [
            {
                "type": "Microsoft.Insights/dataCollectionRules",
                "apiVersion": api("Microsoft.Insights/dataCollectionRules"),
                "name": x(dcr),
                "location": x(p("location")),
                # Direct: the DCR gets its own logsIngestion endpoint, so no DCE is needed.
                "kind": "Direct",
                "properties": {
                    "description": "NordPass connector: "
                    + "; ".join(f"{t.description} -> {t.name}" for t in CUSTOM_TABLES),
                    "streamDeclarations": {t.stream: dict(t.stream_declaration) for t in CUSTOM_TABLES},
                    "destinations": {
                        "logAnalytics": [
                            {"name": "workspace", "workspaceResourceId": x(p("workspaceResourceId"))}
                        ]
                    },
                    "dataFlows": [
                        {
                            "streams": [t.stream],
                            "destinations": ["workspace"],
                            # The row already carries TimeGenerated = event time; pass it through.
                            "transformKql": "source",
                            "outputStream": t.stream,
                        }
                        for t in CUSTOM_TABLES
                    ],
                },
            },
            {
                # Undeclared or mistyped columns are dropped with HTTP 204; only DCRLogErrors shows it.
                "type": "Microsoft.Insights/diagnosticSettings",
                "apiVersion": api("Microsoft.Insights/diagnosticSettings"),
                "scope": x(dcr_id),
                "name": "nordpass-dcr-errors",
                "properties": {
                    "workspaceId": x(p("workspaceResourceId")),
                    "logs": [{"category": "LogErrors", "enabled": True}],
                },
                "dependsOn": [x(dcr_id)],
            },
            {
                "type": "Microsoft.Authorization/roleAssignments",
                "apiVersion": api("Microsoft.Authorization/roleAssignments"),
                "scope": x(dcr_id),
                "name": x(
                    f"guid({dcr_id}, {p('identityResourceId')}, {lit(ROLE_MONITORING_METRICS_PUBLISHER)})"
                ),
                "properties": {
                    "roleDefinitionId": role_definition(ROLE_MONITORING_METRICS_PUBLISHER),
                    "principalId": x(p("principalId")),
                    # Skips the directory lookup that fails while a new identity is replicating.
                    "principalType": "ServicePrincipal",
                    "description": "NordPass connector: send rows through this DCR",
                },
                "dependsOn": [x(dcr_id)],
            },
        ],
        {
            "dcrResourceId": {"type": "string", "value": x(dcr_id)},
            "immutableId": {"type": "string", "value": x(f"{dcr_ref}.immutableId")},
            "logsIngestionEndpoint": {
                "type": "string",
                "value": x(f"{dcr_ref}.endpoints.logsIngestion"),
            },
        },
    )


def nested_deployment(
    name: str, template: Json, parameters: Json, *, resource_group: str | None = None
) -> Json:
    """An inner-scoped nested deployment: its expressions see only its own parameters."""
    deployment: Json = {
        "type": "Microsoft.Resources/deployments",
        "apiVersion": api("Microsoft.Resources/deployments"),
        "name": name,
    }
    if resource_group is not None:
        deployment["resourceGroup"] = resource_group
    deployment["properties"] = {
        "mode": "Incremental",
        "expressionEvaluationOptions": {"scope": "inner"},
        "parameters": parameters,
        "template": template,
    }
    return deployment


def _workspace_location(workspace_id: str) -> str:
    workspace_api = lit(api("Microsoft.OperationalInsights/workspaces"))
    return f"reference({workspace_id}, {workspace_api}, 'Full').location"


def _content_parameters(template: Json, workspace_name: str, workspace_id: str) -> Json:
    values: Json = {"workspaceName": {"value": x(workspace_name)}}
    if "workspaceLocation" in template["parameters"]:
        values["workspaceLocation"] = {"value": x(_workspace_location(workspace_id))}
    return values


# --- the main template ---------------------------------------------------------------------------


def _parameters(release: ReleasePin | None, with_content: bool) -> Json:
    endpoint_help = (
        f"NordPass Activity API URL of your organisation's region. EU: {EU_ENDPOINT} ; US: {US_ENDPOINT}"
    )
    params: Json = {
        "workspaceName": {
            "type": "string",
            "minLength": 4,
            "maxLength": 63,
            "metadata": {"description": "Name of the Log Analytics workspace that has Microsoft Sentinel."},
        },
        "workspaceResourceGroup": {
            "type": "string",
            "defaultValue": "[resourceGroup().name]",
            "metadata": {
                "description": "Resource group of the workspace (same subscription). Defaults to this "
                "deployment's resource group."
            },
        },
        "nordPassEndpointUrl": {
            "type": "string",
            "minLength": 8,
            "metadata": {
                "description": endpoint_help,
                "knownValues": {"EU": EU_ENDPOINT, "US": US_ENDPOINT},
            },
        },
        "nordPassToken": {
            "type": "securestring",
            "minLength": 1,
            "metadata": {
                "description": "NordPass Activity API token. Stored only as a Key Vault secret. A redeploy "
                "with a new token writes a new secret version, and the app switches to it at once (its "
                "setting names that version)."
            },
        },
        "location": {
            "type": "string",
            "defaultValue": "[resourceGroup().location]",
            "metadata": {
                "description": "Region for the function app, storage, Key Vault and Application Insights. "
                "It must offer Flex Consumption. The DCR always follows the workspace's region."
            },
        },
        "namePrefix": {
            "type": "string",
            "defaultValue": "nordpass",
            "minLength": 2,
            "maxLength": 10,
            "metadata": {
                "description": "2-10 lowercase letters or digits, starting with a letter; the first part "
                "of every resource name."
            },
        },
        "nameSuffix": {
            "type": "string",
            "defaultValue": (
                "[take(uniqueString(resourceGroup().id, parameters('workspaceResourceGroup'), "
                "parameters('workspaceName')), 8)]"
            ),
            "minLength": 3,
            "maxLength": 8,
            "metadata": {
                "description": "3-8 lowercase letters or digits. The default is stable for this resource "
                "group and workspace, so redeploying updates in place; set another value to run a second "
                "connector side by side."
            },
        },
    }
    if release is not None:
        params["packageUri"] = {
            "type": "string",
            "defaultValue": release.package_uri,
            "metadata": {
                "description": f"Immutable URL of the function package: the {release.tag} release asset. "
                "Its SHA-256 is in packageSha256 (and in the release's .sha256 asset).",
                "packageVersion": release.version,
                "packageSha256": release.package_sha256,
            },
        }
    if with_content:
        params["deploySentinelContent"] = {
            "type": "bool",
            "defaultValue": True,
            "metadata": {
                "description": f"Deploy the NordPass Sentinel content into the workspace: {CONTENT_KINDS} "
                "(needs Microsoft Sentinel on it). Ingestion never waits for it: if content fails, redeploy "
                "it alone with sentinel-content.json."
            },
        }
    return params


def _variables(release: ReleasePin | None, with_content: bool) -> Json:
    base = v("baseName")
    variables: Json = {
        "suffix": x(f"toLower({p('nameSuffix')})"),
        "prefix": x(f"toLower({p('namePrefix')})"),
        "baseName": x(f"format('{{0}}-{{1}}', {v('prefix')}, {v('suffix')})"),
        "identityName": x(f"format('id-{{0}}', {base})"),
        "storageAccountName": x(
            f"take(replace(format('st{{0}}{{1}}', {v('prefix')}, {v('suffix')}), '-', ''), 24)"
        ),
        "keyVaultName": x(f"take(format('kv-{{0}}', {base}), 24)"),
        "appInsightsName": x(f"format('appi-{{0}}', {base})"),
        "planName": x(f"format('plan-{{0}}', {base})"),
        "functionAppName": x(f"format('func-{{0}}', {base})"),
        "dcrName": x(f"format('dcr-{{0}}', {base})"),
        "tablesDeploymentName": x(f"format('nordpass-tables-{{0}}', {v('suffix')})"),
        "dcrDeploymentName": x(f"format('nordpass-dcr-{{0}}', {v('suffix')})"),
        "secretName": SECRET_NAME,
        "deploymentContainerName": DEPLOYMENT_CONTAINER,
        "deploymentContainerResourceName": child_name(
            v("storageAccountName"), "'default'", v("deploymentContainerName")
        ),
        "checkpointTableName": CHECKPOINT_TABLE_NAME,
        "streamName": schema.DEFAULT_STREAM_NAME,
        "healthStreamName": schema.DEFAULT_HEALTH_STREAM_NAME,
        "workspaceResourceId": x(_workspace_id_expression()),
    }
    if with_content:
        variables["contentDeploymentName"] = x(f"format('nordpass-content-{{0}}', {v('suffix')})")
    if release is not None:
        variables["defaultPackageUri"] = release.package_uri
        variables["defaultPackageSha256"] = release.package_sha256
    return variables


def _workspace_id_expression() -> str:
    return (
        f"resourceId({p('workspaceResourceGroup')}, 'Microsoft.OperationalInsights/workspaces', "
        f"{p('workspaceName')})"
    )


def _metadata(release: ReleasePin | None) -> Json:
    metadata: Json = {
        "description": "NordPass Activity API -> Microsoft Sentinel connector (Azure Functions Flex "
        "Consumption, Logs Ingestion API, managed identity only).",
        "generator": "deploy/build_template.py (do not edit the generated files by hand)",
        "connectorVersion": CONNECTOR_VERSION,
    }
    if release is None:
        metadata["codePackage"] = (
            "None: this template as committed deploys no code. Use a release's azuredeploy.json (the "
            "Deploy to Azure button), which pins the release's package by URL and SHA-256, or deploy a "
            "locally built package after this template (python -m deploy.from_clone)."
        )
    else:
        metadata["repository"] = release.repository
        metadata["releaseTag"] = release.tag
        metadata["packageUri"] = release.package_uri
        metadata["packageSha256"] = release.package_sha256
    return metadata


def build_template(content: SentinelContent | None = None, release: ReleasePin | None = None) -> Json:
    """The Deploy to Azure template; with `release`, the stamped copy that installs that package."""
    content = SentinelContent() if content is None else content
    if release is not None and release.version != CONNECTOR_VERSION:
        raise ValueError(
            f"release {release.tag} does not match the connector version {CONNECTOR_VERSION} "
            "(nordpass_connector/__init__.py)"
        )
    extra_content = content_resources(content)
    with_content = bool(extra_content)

    identity_id = rid("Microsoft.ManagedIdentity/userAssignedIdentities", v("identityName"))
    identity_ref = ref("Microsoft.ManagedIdentity/userAssignedIdentities", v("identityName"))
    storage_id = rid("Microsoft.Storage/storageAccounts", v("storageAccountName"))
    storage_ref = ref("Microsoft.Storage/storageAccounts", v("storageAccountName"))
    container_id = rid(
        "Microsoft.Storage/storageAccounts/blobServices/containers",
        v("storageAccountName"),
        "'default'",
        v("deploymentContainerName"),
    )
    table_id = rid(
        "Microsoft.Storage/storageAccounts/tableServices/tables",
        v("storageAccountName"),
        "'default'",
        v("checkpointTableName"),
    )
    vault_id = rid("Microsoft.KeyVault/vaults", v("keyVaultName"))
    secret_id = rid("Microsoft.KeyVault/vaults/secrets", v("keyVaultName"), v("secretName"))
    secret_ref = ref("Microsoft.KeyVault/vaults/secrets", v("keyVaultName"), v("secretName"))
    appi_id = rid("Microsoft.Insights/components", v("appInsightsName"))
    appi_ref = ref("Microsoft.Insights/components", v("appInsightsName"))
    plan_id = rid("Microsoft.Web/serverfarms", v("planName"))
    site_id = rid("Microsoft.Web/sites", v("functionAppName"))
    ftp_policy_id = rid(
        "Microsoft.Web/sites/basicPublishingCredentialsPolicies", v("functionAppName"), "'ftp'"
    )
    scm_policy_id = rid(
        "Microsoft.Web/sites/basicPublishingCredentialsPolicies", v("functionAppName"), "'scm'"
    )
    tables_deployment_id = (
        f"resourceId({p('workspaceResourceGroup')}, 'Microsoft.Resources/deployments', "
        f"{v('tablesDeploymentName')})"
    )
    dcr_deployment_id = rid("Microsoft.Resources/deployments", v("dcrDeploymentName"))
    dcr_outputs = f"reference({dcr_deployment_id}, {lit(api('Microsoft.Resources/deployments'))}).outputs"

    def role_assignment(role_guid: str, scope_id: str, description: str, depends: list[str]) -> Json:
        return {
            "type": "Microsoft.Authorization/roleAssignments",
            "apiVersion": api("Microsoft.Authorization/roleAssignments"),
            "scope": x(scope_id),
            "name": x(f"guid({scope_id}, {identity_id}, {lit(role_guid)})"),
            "properties": {
                "roleDefinitionId": role_definition(role_guid),
                "principalId": x(f"{identity_ref}.principalId"),
                "principalType": "ServicePrincipal",
                "description": description,
            },
            "dependsOn": [x(identity_id), *(x(d) for d in depends)],
        }

    storage_endpoints = f"{storage_ref}.primaryEndpoints"
    app_settings: list[tuple[str, str]] = [
        ("AzureWebJobsStorage__blobServiceUri", x(f"{storage_endpoints}.blob")),
        ("AzureWebJobsStorage__queueServiceUri", x(f"{storage_endpoints}.queue")),
        ("AzureWebJobsStorage__tableServiceUri", x(f"{storage_endpoints}.table")),
        ("AzureWebJobsStorage__credential", "managedidentity"),
        ("AzureWebJobsStorage__clientId", x(f"{identity_ref}.clientId")),
        ("APPLICATIONINSIGHTS_CONNECTION_STRING", x(f"{appi_ref}.ConnectionString")),
        ("NORDPASS_ENDPOINT_URL", x(p("nordPassEndpointUrl"))),
        # Versioned on purpose: a deployment with a new token writes a new secret version, so this
        # value changes and the platform restarts the app with the new token at once. An unversioned
        # reference would keep serving the cached old token for up to a day.
        (
            "NORDPASS_TOKEN",
            x(f"format('@Microsoft.KeyVault(SecretUri={{0}})', {secret_ref}.secretUriWithVersion)"),
        ),
        ("DATA_COLLECTION_ENDPOINT", x(f"{dcr_outputs}.logsIngestionEndpoint.value")),
        ("DCR_IMMUTABLE_ID", x(f"{dcr_outputs}.immutableId.value")),
        ("DCR_STREAM_NAME", x(v("streamName"))),
        ("DCR_HEALTH_STREAM_NAME", x(v("healthStreamName"))),
        ("AZURE_CLIENT_ID", x(f"{identity_ref}.clientId")),
        ("CHECKPOINT_TABLE_NAME", x(v("checkpointTableName"))),
    ]
    if tuple(name for name, _ in app_settings) != APP_SETTING_NAMES:
        raise AssertionError("APP_SETTING_NAMES must list the app settings in template order")

    resources: list[Json] = [
        {
            "type": "Microsoft.ManagedIdentity/userAssignedIdentities",
            "apiVersion": api("Microsoft.ManagedIdentity/userAssignedIdentities"),
            "name": x(v("identityName")),
            "location": x(p("location")),
            # The resource has no settable properties, but its schema requires the object.
            "properties": {},
        },
        {
            "type": "Microsoft.Storage/storageAccounts",
            "apiVersion": api("Microsoft.Storage/storageAccounts"),
            "name": x(v("storageAccountName")),
            "location": x(p("location")),
            "sku": {"name": "Standard_LRS"},
            "kind": "StorageV2",
            "properties": {
                # Every client (host, Flex deployment, checkpoint table) uses the managed identity.
                "allowSharedKeyAccess": False,
                "defaultToOAuthAuthentication": True,
                "allowBlobPublicAccess": False,
                "allowCrossTenantReplication": False,
                "supportsHttpsTrafficOnly": True,
                "minimumTlsVersion": "TLS1_2",
                "publicNetworkAccess": "Enabled",
                "networkAcls": {"defaultAction": "Allow", "bypass": "AzureServices"},
                "encryption": {
                    "keySource": "Microsoft.Storage",
                    "requireInfrastructureEncryption": True,
                    "services": {
                        "blob": {"enabled": True, "keyType": "Account"},
                        "table": {"enabled": True, "keyType": "Account"},
                        "queue": {"enabled": True, "keyType": "Account"},
                        "file": {"enabled": True, "keyType": "Account"},
                    },
                },
            },
        },
        {
            "type": "Microsoft.Storage/storageAccounts/blobServices/containers",
            "apiVersion": api("Microsoft.Storage/storageAccounts/blobServices/containers"),
            # Via a variable: the container schema caps the name at 63 characters even when it is
            # an expression, and the inline format() is longer than that.
            "name": x(v("deploymentContainerResourceName")),
            "properties": {"publicAccess": "None"},
            "dependsOn": [x(storage_id)],
        },
        {
            "type": "Microsoft.Storage/storageAccounts/tableServices/tables",
            "apiVersion": api("Microsoft.Storage/storageAccounts/tableServices/tables"),
            "name": child_name(v("storageAccountName"), "'default'", v("checkpointTableName")),
            "dependsOn": [x(storage_id)],
        },
        {
            "type": "Microsoft.KeyVault/vaults",
            "apiVersion": api("Microsoft.KeyVault/vaults"),
            "name": x(v("keyVaultName")),
            "location": x(p("location")),
            "properties": {
                "tenantId": "[subscription().tenantId]",
                "sku": {"family": "A", "name": "standard"},
                "enableRbacAuthorization": True,
                "enableSoftDelete": True,
                # Fixed at creation. Short, because purge protection keeps the name reserved for this
                # long after a delete, and the only content is a token NordPass can reissue.
                "softDeleteRetentionInDays": 7,
                "enablePurgeProtection": True,
                "publicNetworkAccess": "Enabled",
                "networkAcls": {"defaultAction": "Allow", "bypass": "AzureServices"},
            },
        },
        {
            "type": "Microsoft.KeyVault/vaults/secrets",
            "apiVersion": api("Microsoft.KeyVault/vaults/secrets"),
            "name": child_name(v("keyVaultName"), v("secretName")),
            "properties": {
                # Each deployment writes a new version; the app setting names that version.
                "value": x(p("nordPassToken")),
                "contentType": "NordPass Activity API token",
                "attributes": {"enabled": True},
            },
            "dependsOn": [x(vault_id)],
        },
        {
            "type": "Microsoft.Insights/components",
            "apiVersion": api("Microsoft.Insights/components"),
            "name": x(v("appInsightsName")),
            "location": x(p("location")),
            "kind": "web",
            "properties": {
                "Application_Type": "web",
                "WorkspaceResourceId": x(v("workspaceResourceId")),
                "IngestionMode": "LogAnalytics",
            },
        },
        {
            "type": "Microsoft.Web/serverfarms",
            "apiVersion": api("Microsoft.Web/serverfarms"),
            "name": x(v("planName")),
            "location": x(p("location")),
            "kind": "functionapp",
            "sku": {"name": "FC1", "tier": "FlexConsumption"},
            "properties": {"reserved": True},
        },
        role_assignment(
            ROLE_STORAGE_BLOB_DATA_OWNER,
            storage_id,
            "NordPass connector: Functions host storage, timer lease and Flex deployment container",
            [storage_id],
        ),
        role_assignment(
            ROLE_STORAGE_TABLE_DATA_CONTRIBUTOR,
            storage_id,
            "NordPass connector: checkpoint table and host diagnostic events",
            [storage_id],
        ),
        role_assignment(
            ROLE_KEY_VAULT_SECRETS_USER,
            secret_id,
            "NordPass connector: resolve the NordPass token Key Vault reference",
            [secret_id],
        ),
        nested_deployment(
            x(v("tablesDeploymentName")),
            tables_template(),
            {"workspaceName": {"value": x(p("workspaceName"))}},
            resource_group=x(p("workspaceResourceGroup")),
        ),
        {
            **nested_deployment(
                x(v("dcrDeploymentName")),
                dcr_template(),
                {
                    "dcrName": {"value": x(v("dcrName"))},
                    "location": {"value": x(_workspace_location(v("workspaceResourceId")))},
                    "workspaceResourceId": {"value": x(v("workspaceResourceId"))},
                    "principalId": {"value": x(f"{identity_ref}.principalId")},
                    "identityResourceId": {"value": x(identity_id)},
                },
            ),
            # The DCR's output streams must exist as tables before the DCR can be created.
            "dependsOn": [x(identity_id), x(tables_deployment_id)],
        },
        {
            "type": "Microsoft.Web/sites",
            "apiVersion": api("Microsoft.Web/sites"),
            "name": x(v("functionAppName")),
            "location": x(p("location")),
            "kind": "functionapp,linux",
            "tags": {"nordpass-connector-version": CONNECTOR_VERSION},
            "identity": {"type": "UserAssigned", "userAssignedIdentities": {x(identity_id): {}}},
            "properties": {
                "serverFarmId": x(plan_id),
                "httpsOnly": True,
                # Without this the platform resolves Key Vault references with a system identity,
                # which this app does not have.
                "keyVaultReferenceIdentity": x(identity_id),
                "siteConfig": {
                    "appSettings": [{"name": name, "value": value} for name, value in app_settings],
                    "minTlsVersion": "1.2",
                    "scmMinTlsVersion": "1.2",
                    "ftpsState": "Disabled",
                    "http20Enabled": True,
                },
                "functionAppConfig": {
                    "deployment": {
                        "storage": {
                            "type": "blobContainer",
                            "value": x(
                                f"format('{{0}}{{1}}', {storage_endpoints}.blob, "
                                f"{v('deploymentContainerName')})"
                            ),
                            "authentication": {
                                "type": "UserAssignedIdentity",
                                "userAssignedIdentityResourceId": x(identity_id),
                            },
                        }
                    },
                    "runtime": {"name": "python", "version": PYTHON_VERSION},
                    "scaleAndConcurrency": {
                        "maximumInstanceCount": MAX_INSTANCE_COUNT,
                        "instanceMemoryMB": INSTANCE_MEMORY_MB,
                    },
                },
            },
            # The roles must exist before the host first starts: without blob access the timer
            # never fires, and an unresolved Key Vault reference reaches the code as literal text.
            "dependsOn": [
                x(plan_id),
                x(identity_id),
                x(storage_id),
                x(container_id),
                x(table_id),
                x(secret_id),
                x(appi_id),
                x(dcr_deployment_id),
                x(
                    f"extensionResourceId({storage_id}, 'Microsoft.Authorization/roleAssignments', "
                    f"guid({storage_id}, {identity_id}, {lit(ROLE_STORAGE_BLOB_DATA_OWNER)}))"
                ),
                x(
                    f"extensionResourceId({storage_id}, 'Microsoft.Authorization/roleAssignments', "
                    f"guid({storage_id}, {identity_id}, {lit(ROLE_STORAGE_TABLE_DATA_CONTRIBUTOR)}))"
                ),
                x(
                    f"extensionResourceId({secret_id}, 'Microsoft.Authorization/roleAssignments', "
                    f"guid({secret_id}, {identity_id}, {lit(ROLE_KEY_VAULT_SECRETS_USER)}))"
                ),
            ],
        },
        # No publishing passwords: code only arrives with Entra auth (ARM onedeploy, or a zip
        # deploy by someone with rights on the app).
        {
            "type": "Microsoft.Web/sites/basicPublishingCredentialsPolicies",
            "apiVersion": api("Microsoft.Web/sites/basicPublishingCredentialsPolicies"),
            "name": child_name(v("functionAppName"), "'ftp'"),
            "properties": {"allow": False},
            "dependsOn": [x(site_id)],
        },
        {
            "type": "Microsoft.Web/sites/basicPublishingCredentialsPolicies",
            "apiVersion": api("Microsoft.Web/sites/basicPublishingCredentialsPolicies"),
            "name": child_name(v("functionAppName"), "'scm'"),
            "properties": {"allow": False},
            # Serialised after the ftp policy: concurrent writes to one site can conflict.
            "dependsOn": [x(site_id), x(ftp_policy_id)],
        },
    ]
    if release is not None:
        resources.append(
            {
                "type": "Microsoft.Web/sites/extensions",
                "apiVersion": api("Microsoft.Web/sites/extensions"),
                "name": child_name(v("functionAppName"), "'onedeploy'"),
                "properties": {"packageUri": x(p("packageUri")), "remoteBuild": False},
                "dependsOn": [x(site_id), x(scm_policy_id)],
            }
        )
    if with_content:
        inner = content_template(extra_content)
        resources.append(
            {
                "condition": x(p("deploySentinelContent")),
                **nested_deployment(
                    x(v("contentDeploymentName")),
                    inner,
                    _content_parameters(inner, p("workspaceName"), v("workspaceResourceId")),
                    resource_group=x(p("workspaceResourceGroup")),
                ),
                # Content waits for the tables it queries, and nothing waits for content.
                "dependsOn": [x(tables_deployment_id)],
            }
        )

    outputs: Json = {
        "functionAppName": {"type": "string", "value": x(v("functionAppName"))},
        "dcrImmutableId": {"type": "string", "value": x(f"{dcr_outputs}.immutableId.value")},
        "logsIngestionEndpoint": {
            "type": "string",
            "value": x(f"{dcr_outputs}.logsIngestionEndpoint.value"),
        },
        "managedIdentityClientId": {"type": "string", "value": x(f"{identity_ref}.clientId")},
        "keyVaultName": {"type": "string", "value": x(v("keyVaultName"))},
        "storageAccountName": {"type": "string", "value": x(v("storageAccountName"))},
    }
    if release is not None:
        outputs["packageUri"] = {"type": "string", "value": x(p("packageUri"))}
        outputs["packageSha256"] = {
            "type": "string",
            "value": x(
                f"if(equals({p('packageUri')}, {v('defaultPackageUri')}), {v('defaultPackageSha256')}, "
                "'custom packageUri: verify its SHA-256 yourself')"
            ),
        }
    outputs["verify"] = {
        "type": "string",
        "value": f"Run in the workspace (the first sync can take a few minutes): {VERIFY_KQL}",
    }

    return {
        "$schema": TEMPLATE_SCHEMA,
        "contentVersion": "1.0.0.0",
        "metadata": _metadata(release),
        "parameters": _parameters(release, with_content),
        "variables": _variables(release, with_content),
        "resources": resources,
        "outputs": outputs,
    }


def build_content_template(content: SentinelContent | None = None) -> Json:
    """The tables and content alone, for the workspace's resource group (no connector, no token)."""
    content = SentinelContent() if content is None else content
    workspace_id = rid("Microsoft.OperationalInsights/workspaces", p("workspaceName"))
    tables_id = rid("Microsoft.Resources/deployments", lit(STANDALONE_TABLES_DEPLOYMENT))
    inner = content_template(content_resources(content))
    return {
        "$schema": TEMPLATE_SCHEMA,
        "contentVersion": "1.0.0.0",
        "metadata": {
            "description": f"NordPass Sentinel content only: the custom tables, {CONTENT_KINDS}. "
            "Deploy it into the resource group of the workspace, for example after the content part of "
            "azuredeploy.json failed. It creates no connector resource and needs no token.",
            "generator": "deploy/build_template.py (do not edit the generated files by hand)",
            "connectorVersion": CONNECTOR_VERSION,
        },
        "parameters": {
            "workspaceName": {
                "type": "string",
                "minLength": 4,
                "maxLength": 63,
                "metadata": {
                    "description": "Name of the Log Analytics workspace that has Microsoft Sentinel, in "
                    "this resource group."
                },
            }
        },
        "resources": [
            nested_deployment(
                STANDALONE_TABLES_DEPLOYMENT,
                tables_template(),
                {"workspaceName": {"value": x(p("workspaceName"))}},
            ),
            {
                **nested_deployment(
                    STANDALONE_CONTENT_DEPLOYMENT,
                    inner,
                    _content_parameters(inner, p("workspaceName"), workspace_id),
                ),
                "dependsOn": [x(tables_id)],
            },
        ],
    }


def render(document: Mapping[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def generated_files(content: SentinelContent | None = None) -> dict[Path, str]:
    """Every committed generated file and its expected text."""
    # Imported here: the form is built from this module's constants.
    from deploy import ui_definition

    content = SentinelContent.load() if content is None else content
    return {
        TEMPLATE_PATH: render(build_template(content)),
        CONTENT_TEMPLATE_PATH: render(build_content_template(content)),
        UI_DEFINITION_PATH: render(ui_definition.build_ui_definition()),
    }


def generate() -> str:
    """The committed azuredeploy.json text."""
    return render(build_template(SentinelContent.load()))


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", action="store_true", help="fail if a generated file is stale")
    args = parser.parse_args(list(argv) if argv is not None else None)
    try:
        files = generated_files()
    except ValueError as exc:
        print(f"cannot generate the deployment files: {exc}", file=sys.stderr)
        return 1
    stale = []
    for path, text in files.items():
        relative = path.relative_to(REPO_ROOT)
        if args.check:
            current = path.read_text(encoding="utf-8") if path.exists() else ""
            if current != text:
                stale.append(str(relative))
        else:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {relative}")
    if stale:
        print(f"stale: {', '.join(stale)}; run `python -m deploy.build_template`", file=sys.stderr)
        return 1
    if args.check:
        print("generated deployment files are up to date")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
