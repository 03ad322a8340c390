"""Generate `deploy/azuredeploy.json`, the template behind the Deploy to Azure button.

The template is generated rather than hand-written so that the table schema and the DCR stream
declaration come from `nordpass_connector.schema` and cannot drift from the row the connector sends,
and so that the analytic rules and the workbook in `content/` are embedded exactly as reviewed.

    python -m deploy.build_template          # write deploy/azuredeploy.json
    python -m deploy.build_template --check  # exit 1 if the committed file is stale
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from nordpass_connector import __version__ as CONNECTOR_VERSION
from nordpass_connector import schema

REPO_ROOT = Path(__file__).resolve().parent.parent
TEMPLATE_PATH = REPO_ROOT / "deploy" / "azuredeploy.json"
RELEASE_PATH = REPO_ROOT / "deploy" / "release.json"
RULES_DIR = REPO_ROOT / "content" / "analytic-rules"
WORKBOOK_PATH = REPO_ROOT / "content" / "workbooks" / "NordPass.workbook.json"

Json = dict[str, Any]

# One API version per resource type. Where `shared/arm-schemas` vendors a schema, this is that
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
    "Microsoft.SecurityInsights/alertRules": "2025-09-01",
    "Microsoft.Web/serverfarms": "2024-11-01",
    "Microsoft.Web/sites": "2024-11-01",
    "Microsoft.Web/sites/extensions": "2024-11-01",
    "Microsoft.Web/sites/basicPublishingCredentialsPolicies": "2024-11-01",
    "Microsoft.Authorization/roleAssignments": "2022-04-01",
    "Microsoft.Resources/deployments": "2022-09-01",
}

NO_SCHEMA_TYPES: dict[str, str] = {
    "Microsoft.Resources/deployments": "not vendored in shared/arm-schemas; checked by the root "
    "template schema (resourceBase) and its inner templates are validated in full",
    "Microsoft.Insights/diagnosticSettings": "not vendored in shared/arm-schemas (its only stable "
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
INSTANCE_MEMORY_MB = 2048
PYTHON_VERSION = "3.11"

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
    "AZURE_CLIENT_ID",
    "CHECKPOINT_TABLE_NAME",
)

VERIFY_KQL = (
    f"{schema.TABLE_NAME} | where TimeGenerated > ago(1d) | summarize Events = count(), "
    "LatestEvent = max(TimeGenerated), LatestIngestion = max(ingestion_time())"
)


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


def load_release() -> Json:
    release: Json = json.loads(RELEASE_PATH.read_text(encoding="utf-8"))
    if release["version"] != CONNECTOR_VERSION:
        raise ValueError(
            f"{RELEASE_PATH.name} pins version {release['version']} but nordpass_connector is "
            f"{CONNECTOR_VERSION}; run `python -m deploy.package --record` after building the release"
        )
    return release


def package_uri(release: Mapping[str, Any]) -> str:
    """The immutable, versioned GitHub release asset URL of the function zip."""
    version = release["version"]
    return (
        f"https://github.com/{release['repository']}/releases/download/v{version}/"
        f"nordpass-sentinel-connector-{version}.zip"
    )


# --- content: analytic rules and workbook ----------------------------------------------------------

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
        "description": _unquote(str(rule.get("description", "")).strip()),
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
        "tactics": list(rule.get("tactics") or []),
    }
    # The API's `techniques` takes parent technique ids only; sub-techniques (T1078.004) are
    # folded into their parent rather than rejected.
    techniques: list[str] = []
    for technique in rule.get("relevantTechniques") or []:
        parent = str(technique).split(".", 1)[0]
        if parent not in techniques:
            techniques.append(parent)
    props["techniques"] = techniques
    for key in ("entityMappings", "customDetails", "alertDetailsOverride", "eventGroupingSettings"):
        if rule.get(key):
            props[key] = rule[key]
    incident = rule.get("incidentConfiguration")
    if incident:
        incident = json.loads(json.dumps(incident))
        grouping = incident.get("groupingConfiguration")
        if grouping and "lookbackDuration" in grouping:
            grouping["lookbackDuration"] = iso_duration(
                grouping["lookbackDuration"], field="lookbackDuration", source=source
            )
        props["incidentConfiguration"] = incident
    return props


def load_rules(rules_dir: Path = RULES_DIR) -> list[tuple[str, Json]]:
    """(rule id, API properties) for every `*.yaml` rule, in file-name order."""
    if not rules_dir.is_dir():
        return []
    import yaml  # type: ignore[import-untyped]  # only needed when content exists

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
        rule_id = str(rule.get("id", ""))
        if not re.fullmatch(r"[0-9a-fA-F-]{36}", rule_id):
            raise ValueError(f"{source}: id {rule_id!r} is not a GUID")
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


# --- nested template: resources in the workspace's resource group ------------------------------


def content_template(rules: list[tuple[str, Json]], workbook: str | None) -> Json:
    """Table (always), analytic rules and workbook: they must live next to the workspace."""
    ws = p("workspaceName")
    table_id = rid("Microsoft.OperationalInsights/workspaces/tables", ws, lit(schema.TABLE_NAME))
    workspace_id = rid("Microsoft.OperationalInsights/workspaces", ws)
    parameters: Json = {"workspaceName": {"type": "string"}}
    resources: list[Json] = [
        {
            "type": "Microsoft.OperationalInsights/workspaces/tables",
            "apiVersion": api("Microsoft.OperationalInsights/workspaces/tables"),
            "name": child_name(ws, lit(schema.TABLE_NAME)),
            "properties": {
                # Analytics, not Basic: scheduled analytic rules cannot query Basic-plan tables.
                "plan": "Analytics",
                "schema": {"name": schema.TABLE_NAME, "columns": schema.table_columns()},
            },
        }
    ]
    if rules or workbook is not None:
        parameters["deploySentinelContent"] = {"type": "bool"}
    for rule_id, props in rules:
        resources.append(
            {
                "condition": x(p("deploySentinelContent")),
                "type": "Microsoft.SecurityInsights/alertRules",
                "apiVersion": api("Microsoft.SecurityInsights/alertRules"),
                "scope": x(workspace_id),
                "name": rule_id,
                "kind": "Scheduled",
                "properties": escape_literal(props),
                # The rule's query is validated against the table when the rule is saved.
                "dependsOn": [x(table_id)],
            }
        )
    if workbook is not None:
        parameters["workspaceLocation"] = {"type": "string"}
        resources.append(
            {
                "condition": x(p("deploySentinelContent")),
                "type": "Microsoft.Insights/workbooks",
                "apiVersion": api("Microsoft.Insights/workbooks"),
                "name": x(f"guid({workspace_id}, 'nordpass-workbook')"),
                "location": x(p("workspaceLocation")),
                "kind": "shared",
                "properties": {
                    "displayName": "NordPass",
                    "serializedData": escape_literal(workbook),
                    "version": "1.0",
                    "sourceId": x(workspace_id),
                    "category": "sentinel",
                },
                "dependsOn": [x(table_id)],
            }
        )
    return {
        "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
        "contentVersion": "1.0.0.0",
        "parameters": parameters,
        "resources": resources,
    }


# --- nested template: the DCR (needs the workspace's region) ------------------------------------


def dcr_template() -> Json:
    """The DCR must be in the workspace's region, which only `reference()` can tell, and
    `reference()` is not allowed in a top-level `location`; a nested deployment takes it as a
    parameter instead."""
    dcr = p("dcrName")
    dcr_id = rid("Microsoft.Insights/dataCollectionRules", dcr)
    dcr_ref = f"reference({dcr_id}, {lit(api('Microsoft.Insights/dataCollectionRules'))})"
    return {
        "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
        "contentVersion": "1.0.0.0",
        "parameters": {
            "dcrName": {"type": "string"},
            "location": {"type": "string"},
            "workspaceResourceId": {"type": "string"},
            "principalId": {"type": "string"},
            "identityResourceId": {"type": "string"},
        },
        "resources": [
            {
                "type": "Microsoft.Insights/dataCollectionRules",
                "apiVersion": api("Microsoft.Insights/dataCollectionRules"),
                "name": x(dcr),
                "location": x(p("location")),
                # Direct: the DCR gets its own logsIngestion endpoint, so no DCE is needed.
                "kind": "Direct",
                "properties": {
                    "description": "NordPass Activity API events -> " + schema.TABLE_NAME,
                    "streamDeclarations": {schema.DEFAULT_STREAM_NAME: schema.stream_declaration()},
                    "destinations": {
                        "logAnalytics": [
                            {"name": "workspace", "workspaceResourceId": x(p("workspaceResourceId"))}
                        ]
                    },
                    "dataFlows": [
                        {
                            "streams": [schema.DEFAULT_STREAM_NAME],
                            "destinations": ["workspace"],
                            # The row already carries TimeGenerated = event time; pass it through.
                            "transformKql": "source",
                            "outputStream": schema.DEFAULT_STREAM_NAME,
                        }
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
        "outputs": {
            "dcrResourceId": {"type": "string", "value": x(dcr_id)},
            "immutableId": {"type": "string", "value": x(f"{dcr_ref}.immutableId")},
            "logsIngestionEndpoint": {
                "type": "string",
                "value": x(f"{dcr_ref}.endpoints.logsIngestion"),
            },
        },
    }


# --- the main template ---------------------------------------------------------------------------


def _parameters(release: Mapping[str, Any], with_content: bool) -> Json:
    endpoint_help = (
        f"NordPass Activity API URL of your organisation's region. EU: {EU_ENDPOINT} ; US: {US_ENDPOINT}"
    )
    params: Json = {
        "workspaceName": {
            "type": "string",
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
                "description": "NordPass Activity API token. Stored only as a Key Vault secret; redeploy "
                "with a new token to rotate it (a new secret version is created)."
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
        "packageUri": {
            "type": "string",
            "defaultValue": package_uri(release),
            "metadata": {
                "description": "Immutable URL of the function package (a versioned release asset, never a "
                "branch).",
                "packageVersion": release["version"],
                "packageSha256": release["packageSha256"],
            },
        },
    }
    if with_content:
        params["deploySentinelContent"] = {
            "type": "bool",
            "defaultValue": True,
            "metadata": {
                "description": "Deploy the NordPass analytic rules and workbook into the workspace. "
                "Needs Microsoft Sentinel enabled on it."
            },
        }
    return params


def _variables(release: Mapping[str, Any]) -> Json:
    base = v("baseName")
    return {
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
        "contentDeploymentName": x(f"format('nordpass-content-{{0}}', {v('suffix')})"),
        "dcrDeploymentName": x(f"format('nordpass-dcr-{{0}}', {v('suffix')})"),
        "secretName": SECRET_NAME,
        "deploymentContainerName": DEPLOYMENT_CONTAINER,
        "deploymentContainerResourceName": child_name(
            v("storageAccountName"), "'default'", v("deploymentContainerName")
        ),
        "checkpointTableName": CHECKPOINT_TABLE_NAME,
        "streamName": schema.DEFAULT_STREAM_NAME,
        "workspaceResourceId": x(_workspace_id_expression()),
        "defaultPackageUri": package_uri(release),
        "defaultPackageSha256": release["packageSha256"],
    }


def _workspace_id_expression() -> str:
    return (
        f"resourceId({p('workspaceResourceGroup')}, 'Microsoft.OperationalInsights/workspaces', "
        f"{p('workspaceName')})"
    )


def build_template(
    rules: list[tuple[str, Json]] | None = None,
    workbook: str | None = None,
    release: Mapping[str, Any] | None = None,
) -> Json:
    release = load_release() if release is None else release
    rules = [] if rules is None else rules
    with_content = bool(rules) or workbook is not None

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
    content_deployment_id_in_ws_rg = (
        f"resourceId({p('workspaceResourceGroup')}, 'Microsoft.Resources/deployments', "
        f"{v('contentDeploymentName')})"
    )
    dcr_deployment_id = rid("Microsoft.Resources/deployments", v("dcrDeploymentName"))
    dcr_outputs = f"reference({dcr_deployment_id}, {lit(api('Microsoft.Resources/deployments'))}).outputs"
    workspace_api = lit(api("Microsoft.OperationalInsights/workspaces"))
    workspace_location = f"reference({v('workspaceResourceId')}, {workspace_api}, 'Full').location"

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
        # Unversioned on purpose: the app picks up a new secret version (rotation) by itself.
        ("NORDPASS_TOKEN", x(f"format('@Microsoft.KeyVault(SecretUri={{0}})', {secret_ref}.secretUri)")),
        ("DATA_COLLECTION_ENDPOINT", x(f"{dcr_outputs}.logsIngestionEndpoint.value")),
        ("DCR_IMMUTABLE_ID", x(f"{dcr_outputs}.immutableId.value")),
        ("DCR_STREAM_NAME", x(v("streamName"))),
        ("AZURE_CLIENT_ID", x(f"{identity_ref}.clientId")),
        ("CHECKPOINT_TABLE_NAME", x(v("checkpointTableName"))),
    ]
    if tuple(name for name, _ in app_settings) != APP_SETTING_NAMES:
        raise AssertionError("APP_SETTING_NAMES must list the app settings in template order")

    content_parameters: Json = {"workspaceName": {"value": x(p("workspaceName"))}}
    if with_content:
        content_parameters["deploySentinelContent"] = {"value": x(p("deploySentinelContent"))}
    if workbook is not None:
        content_parameters["workspaceLocation"] = {"value": x(workspace_location)}

    resources: list[Json] = [
        {
            "type": "Microsoft.ManagedIdentity/userAssignedIdentities",
            "apiVersion": api("Microsoft.ManagedIdentity/userAssignedIdentities"),
            "name": x(v("identityName")),
            "location": x(p("location")),
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
            "properties": {},
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
                # Each deployment writes a new version; the app's unversioned reference follows it.
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
        {
            "type": "Microsoft.Resources/deployments",
            "apiVersion": api("Microsoft.Resources/deployments"),
            "name": x(v("contentDeploymentName")),
            "resourceGroup": x(p("workspaceResourceGroup")),
            "properties": {
                "mode": "Incremental",
                "expressionEvaluationOptions": {"scope": "inner"},
                "parameters": content_parameters,
                "template": content_template(rules, workbook),
            },
        },
        {
            "type": "Microsoft.Resources/deployments",
            "apiVersion": api("Microsoft.Resources/deployments"),
            "name": x(v("dcrDeploymentName")),
            "properties": {
                "mode": "Incremental",
                "expressionEvaluationOptions": {"scope": "inner"},
                "parameters": {
                    "dcrName": {"value": x(v("dcrName"))},
                    "location": {"value": x(workspace_location)},
                    "workspaceResourceId": {"value": x(v("workspaceResourceId"))},
                    "principalId": {"value": x(f"{identity_ref}.principalId")},
                    "identityResourceId": {"value": x(identity_id)},
                },
                "template": dcr_template(),
            },
            # The DCR's output stream must exist as a table before the DCR can be created.
            "dependsOn": [x(identity_id), x(content_deployment_id_in_ws_rg)],
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
        # No publishing passwords: code only arrives through ARM (onedeploy) with Entra auth.
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
        {
            "type": "Microsoft.Web/sites/extensions",
            "apiVersion": api("Microsoft.Web/sites/extensions"),
            "name": child_name(v("functionAppName"), "'onedeploy'"),
            "properties": {"packageUri": x(p("packageUri")), "remoteBuild": False},
            "dependsOn": [x(site_id), x(scm_policy_id)],
        },
    ]

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
        "packageUri": {"type": "string", "value": x(p("packageUri"))},
        "packageSha256": {
            "type": "string",
            "value": x(
                f"if(equals({p('packageUri')}, {v('defaultPackageUri')}), {v('defaultPackageSha256')}, "
                "'custom packageUri: verify its SHA-256 yourself')"
            ),
        },
        "verify": {
            "type": "string",
            "value": f"Run in the workspace (the first sync can take a few minutes): {VERIFY_KQL}",
        },
    }

    return {
        "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
        "contentVersion": "1.0.0.0",
        "metadata": {
            "description": "NordPass Activity API -> Microsoft Sentinel connector (Azure Functions Flex "
            "Consumption, Logs Ingestion API, managed identity only).",
            "generator": "deploy/build_template.py (do not edit azuredeploy.json by hand)",
            "connectorVersion": CONNECTOR_VERSION,
            "packageUri": package_uri(release),
            "packageSha256": release["packageSha256"],
        },
        "parameters": _parameters(release, with_content),
        "variables": _variables(release),
        "resources": resources,
        "outputs": outputs,
    }


def render(template: Mapping[str, Any]) -> str:
    return json.dumps(template, indent=2, ensure_ascii=False) + "\n"


def generate() -> str:
    return render(build_template(load_rules(), load_workbook()))


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", action="store_true", help="fail if deploy/azuredeploy.json is stale")
    args = parser.parse_args(list(argv) if argv is not None else None)
    text = generate()
    if args.check:
        current = TEMPLATE_PATH.read_text(encoding="utf-8") if TEMPLATE_PATH.exists() else ""
        if current != text:
            print(
                f"{TEMPLATE_PATH.relative_to(REPO_ROOT)} is stale: run `python -m deploy.build_template`",
                file=sys.stderr,
            )
            return 1
        print(f"{TEMPLATE_PATH.relative_to(REPO_ROOT)} is up to date")
        return 0
    TEMPLATE_PATH.write_text(text, encoding="utf-8")
    print(f"wrote {TEMPLATE_PATH.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
