"""Checks for `deploy/azuredeploy.json`: drift, structural lint, the column contract, the vendored
ARM schemas and checkov.

ARM itself is not reachable here, so these tests stand in for `az deployment group validate` and
arm-ttk: every expression target must exist, ordering must be explicit, roles and settings must be
exactly the intended ones, and the one table contract must hold end to end.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import types
import typing
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from deploy import build_template as bt
from nordpass_connector import __version__ as CONNECTOR_VERSION
from nordpass_connector import schema
from nordpass_connector.models import EventRow

REPO = Path(__file__).resolve().parent.parent
SCHEMAS = (REPO / ".." / "shared" / "arm-schemas").resolve()
SCHEMA_PREFIX = "https://schema.management.azure.com/schemas/"

Json = dict[str, Any]

# What the connector and the Functions host read; the template must set exactly these.
EXPECTED_APP_SETTINGS = {
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
}
# Read by the Functions host only, so absent from the connector's own list.
HOST_ONLY_SETTINGS = {
    "AzureWebJobsStorage__blobServiceUri",
    "AzureWebJobsStorage__queueServiceUri",
    "APPLICATIONINSIGHTS_CONNECTION_STRING",
}
# Connector settings with safe defaults, deliberately left to the operator.
OPTIONAL_CONNECTOR_SETTINGS = {
    "CONNECTOR_INSTANCE",
    "NORDPASS_RUN_BUDGET_SECONDS",
    "NORDPASS_LOOKBACK_SECONDS",
    "NORDPASS_SAFETY_DELAY_SECONDS",
    "NORDPASS_BACKFILL_DAYS",
    "NORDPASS_PAGE_SIZE",
    "NORDPASS_FETCH_CONCURRENCY",
    "NORDPASS_MAX_WINDOW_EVENTS",
    "NORDPASS_WINDOWS_AHEAD",
    "NORDPASS_UPLOAD_CONCURRENCY",
}
# Alternative ways to address storage; the connector needs one of them.
STORAGE_ADDRESS_SETTINGS = {
    "AzureWebJobsStorage",
    "AzureWebJobsStorage__accountName",
    "AzureWebJobsStorage__tableServiceUri",
}

# Built-in role GUID -> (role name, resource type it may be scoped to).
EXPECTED_ROLES = {
    "3913510d-42f4-4e42-8a64-420c390055eb": (
        "Monitoring Metrics Publisher",
        "Microsoft.Insights/dataCollectionRules",
    ),
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": ("Storage Blob Data Owner", "Microsoft.Storage/storageAccounts"),
    "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3": (
        "Storage Table Data Contributor",
        "Microsoft.Storage/storageAccounts",
    ),
    "4633458b-17de-408a-b874-0445c86b69e6": ("Key Vault Secrets User", "Microsoft.KeyVault/vaults/secrets"),
}

# `$schema` identifiers inside embedded content: never fetched at deployment, so not code delivery.
SCHEMA_IDENTIFIER_URLS = {
    "https://github.com/Microsoft/Application-Insights-Workbooks/blob/master/schema/workbook.json",
}

# Resource types that exist outside the template (the user's workspace).
EXTERNAL_TYPES = {"Microsoft.OperationalInsights/workspaces"}


# --- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def template() -> Json:
    data: Json = json.loads(bt.TEMPLATE_PATH.read_text(encoding="utf-8"))
    return data


def _sample_rule() -> tuple[str, Json]:
    return (
        "00000000-0000-4000-8000-000000000001",
        bt._rule_properties(
            {
                "id": "00000000-0000-4000-8000-000000000001",
                "name": "Sample",
                "description": "'Sample rule'",
                "severity": "Medium",
                "query": "[NordPassEventLogs_CL]",
                "queryFrequency": "5m",
                "queryPeriod": "1d",
                "triggerOperator": "gt",
                "triggerThreshold": 0,
                "relevantTechniques": ["T1078.004", "T1078"],
                "incidentConfiguration": {
                    "createIncident": True,
                    "groupingConfiguration": {
                        "enabled": False,
                        "reopenClosedIncident": False,
                        "lookbackDuration": "5h",
                        "matchingMethod": "AllEntities",
                    },
                },
            },
            "sample.yaml",
        ),
    )


def _variants() -> dict[str, Callable[[], Json]]:
    """The committed template plus the shapes content can take (none, rules only, rules+workbook)."""
    release = {"repository": "example/repo", "version": CONNECTOR_VERSION, "packageSha256": "0" * 64}
    return {
        "committed": lambda: json.loads(bt.TEMPLATE_PATH.read_text(encoding="utf-8")),
        "no-content": lambda: bt.build_template([], None, release),
        "rules-only": lambda: bt.build_template([_sample_rule()], None, release),
        "rules-and-workbook": lambda: bt.build_template(
            [_sample_rule()], json.dumps({"version": "Notebook/1.0", "items": []}), release
        ),
    }


@pytest.fixture(params=list(_variants()), scope="module")
def variant(request: pytest.FixtureRequest) -> Json:
    return _variants()[request.param]()


# --- expression helpers -----------------------------------------------------------------------


def is_expression(value: str) -> bool:
    return value.startswith("[") and value.endswith("]") and not value.startswith("[[")


def iter_strings(node: Any, *, skip_nested_templates: bool = True) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, list):
        for item in node:
            yield from iter_strings(item, skip_nested_templates=skip_nested_templates)
    elif isinstance(node, dict):
        for key, item in node.items():
            yield key
            if skip_nested_templates and key == "template" and isinstance(item, dict) and "resources" in item:
                continue
            yield from iter_strings(item, skip_nested_templates=skip_nested_templates)


def split_args(text: str) -> list[str]:
    """Split an ARM argument list at top-level commas, respecting quotes and parentheses."""
    args: list[str] = []
    depth, quoted, start = 0, False, 0
    i = 0
    while i < len(text):
        ch = text[i]
        if quoted:
            if ch == "'":
                if i + 1 < len(text) and text[i + 1] == "'":
                    i += 1
                else:
                    quoted = False
        elif ch == "'":
            quoted = True
        elif ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif ch == "," and depth == 0:
            args.append(text[start:i].strip())
            start = i + 1
        i += 1
    tail = text[start:].strip()
    if tail:
        args.append(tail)
    return args


def find_calls(expression: str, function: str) -> list[list[str]]:
    """Argument lists of every `function(...)` call in an expression (not `xfunction(...)`)."""
    calls: list[list[str]] = []
    for match in re.finditer(rf"(?<![A-Za-z0-9_.]){function}\(", expression):
        start = match.end()
        depth, quoted, i = 1, False, start
        while i < len(expression) and depth:
            ch = expression[i]
            if quoted:
                if ch == "'":
                    quoted = False
            elif ch == "'":
                quoted = True
            elif ch == "(":
                depth += 1
            elif ch == ")":
                depth -= 1
            i += 1
        calls.append(split_args(expression[start : i - 1]))
    return calls


def unquote(arg: str) -> str | None:
    return arg[1:-1].replace("''", "'") if len(arg) >= 2 and arg[0] == arg[-1] == "'" else None


def name_segments(name: str, variables: Json | None = None) -> tuple[str, ...]:
    """A resource name as a tuple of segment expressions, comparable with resourceId() arguments."""
    if not is_expression(name):
        return tuple(f"'{part}'" for part in name.split("/"))
    body = name[1:-1]
    var = re.fullmatch(r"variables\('([^']+)'\)", body)
    if var and variables and "/" in str(variables.get(var.group(1), "")):
        return name_segments(variables[var.group(1)], variables)
    fmt = find_calls(body, "format")
    if body.startswith("format(") and fmt:
        pattern = unquote(fmt[0][0])
        assert pattern is not None
        segments: list[str] = []
        for part in pattern.split("/"):
            placeholder = re.fullmatch(r"\{(\d+)\}", part)
            segments.append(fmt[0][1 + int(placeholder.group(1))] if placeholder else f"'{part}'")
        return tuple(segments)
    return (body,)


class Key(typing.NamedTuple):
    type: str
    names: tuple[str, ...]
    resource_group: str | None = None
    scope: str | None = None


def resource_key(resource: Json, variables: Json | None = None) -> Key:
    rg = resource.get("resourceGroup")
    return Key(
        resource["type"],
        name_segments(resource["name"], variables),
        rg[1:-1] if isinstance(rg, str) and is_expression(rg) else rg,
        resource["scope"][1:-1] if "scope" in resource else None,
    )


def key_from_resource_id(args: list[str]) -> Key:
    for index, arg in enumerate(args):
        literal = unquote(arg)
        if literal and re.fullmatch(r"[A-Za-z]+\.[A-Za-z.]+(/[A-Za-z]+)+", literal):
            resource_group = args[index - 1] if index >= 1 else None
            return Key(literal, tuple(args[index + 1 :]), resource_group)
    raise AssertionError(f"resourceId without a type: {args}")


def resolve(expression_body: str, keys: dict[Key, Json]) -> Key | None:
    """The template resource a resourceId()/extensionResourceId() expression points at."""
    body = expression_body.strip()
    if body.startswith("extensionResourceId("):
        scope, rtype, name = find_calls(body, "extensionResourceId")[0]
        rtype_literal = unquote(rtype)
        for key in keys:
            if key.type == rtype_literal and key.scope == scope and key.names == (name,):
                return key
        return None
    if body.startswith("resourceId("):
        wanted = key_from_resource_id(find_calls(body, "resourceId")[0])
        for key in keys:
            same_group = wanted.resource_group is None or key.resource_group == wanted.resource_group
            if key.type == wanted.type and key.names == wanted.names and same_group:
                return key
        return None
    return None


def scopes(tmpl: Json, path: str = "root") -> Iterator[tuple[str, Json]]:
    """The template and every inner-scoped nested template, each with its own parameters."""
    yield path, tmpl
    for resource in tmpl.get("resources", []):
        if resource["type"] == "Microsoft.Resources/deployments":
            props = resource["properties"]
            assert props.get("expressionEvaluationOptions", {}).get("scope") == "inner", (
                "nested templates must use inner scope so their expressions are self-contained"
            )
            yield from scopes(props["template"], f"{path}/{resource['name']}")


def all_resources(tmpl: Json) -> Iterator[Json]:
    for _, scope in scopes(tmpl):
        yield from scope["resources"]


# --- drift ------------------------------------------------------------------------------------


def test_committed_template_is_generated_output() -> None:
    assert bt.TEMPLATE_PATH.read_text(encoding="utf-8") == bt.generate(), (
        "deploy/azuredeploy.json is stale: run `python -m deploy.build_template`"
    )


def test_check_mode_reports_drift(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stale = tmp_path / "azuredeploy.json"
    stale.write_text("{}\n", encoding="utf-8")
    monkeypatch.setattr(bt, "TEMPLATE_PATH", stale)
    monkeypatch.setattr(bt, "REPO_ROOT", tmp_path)
    assert bt.main(["--check"]) == 1
    assert bt.main([]) == 0
    assert bt.main(["--check"]) == 0


# --- structural lint ----------------------------------------------------------------------------


def test_parameters_and_variables_exist_and_are_used(variant: Json) -> None:
    for path, tmpl in scopes(variant):
        params = set(tmpl.get("parameters", {}))
        variables = set(tmpl.get("variables", {}))
        used_params: set[str] = set()
        used_vars: set[str] = set()
        body = {k: v for k, v in tmpl.items() if k != "resources"}
        strings = [*iter_strings(body), *iter_strings(tmpl.get("resources", []))]
        for text in strings:
            if not is_expression(text):
                continue
            used_params.update(re.findall(r"parameters\('([^']+)'\)", text))
            used_vars.update(re.findall(r"variables\('([^']+)'\)", text))
        assert used_params <= params, f"{path}: unknown parameters {used_params - params}"
        assert used_vars <= variables, f"{path}: unknown variables {used_vars - variables}"
        assert params <= used_params, f"{path}: unused parameters {params - used_params}"
        assert variables <= used_vars, f"{path}: unused variables {variables - used_vars}"


def test_resource_ids_and_references_resolve(variant: Json) -> None:
    for path, tmpl in scopes(variant):
        keys = {resource_key(r, tmpl.get("variables")): r for r in tmpl["resources"]}
        variables = tmpl.get("variables", {})
        for text in iter_strings(tmpl["resources"]):
            if not is_expression(text):
                continue
            body = text[1:-1]
            for args in find_calls(body, "resourceId"):
                key = key_from_resource_id(args)
                if key.type in EXTERNAL_TYPES:
                    continue
                assert resolve(f"resourceId({', '.join(args)})", keys), f"{path}: {text} points nowhere"
            for args in find_calls(body, "extensionResourceId"):
                assert resolve(f"extensionResourceId({', '.join(args)})", keys), f"{path}: {text}"
            for args in find_calls(body, "reference"):
                target = args[0]
                var = re.fullmatch(r"variables\('([^']+)'\)", target)
                if var:
                    assert var.group(1) in variables
                    target = variables[var.group(1)][1:-1]
                if target.startswith("resourceId("):
                    ref_key = key_from_resource_id(find_calls(target, "resourceId")[0])
                    if ref_key.type not in EXTERNAL_TYPES:
                        assert resolve(target, keys), f"{path}: reference to missing resource in {text}"
                else:
                    raise AssertionError(f"{path}: reference() by bare name is ambiguous: {text}")
                assert len(args) >= 2, f"{path}: reference() without apiVersion: {text}"


def _dependency_closure(key: Key, keys: dict[Key, Json]) -> set[Key]:
    seen: set[Key] = set()
    stack = [key]
    while stack:
        current = stack.pop()
        for dep in keys[current].get("dependsOn", []):
            target = resolve(dep[1:-1], keys)
            if target is not None and target not in seen:
                seen.add(target)
                stack.append(target)
    return seen


def test_depends_on_targets_exist_and_ordering_is_complete(variant: Json) -> None:
    for path, tmpl in scopes(variant):
        keys = {resource_key(r, tmpl.get("variables")): r for r in tmpl["resources"]}
        for key, resource in keys.items():
            for dep in resource.get("dependsOn", []):
                assert is_expression(dep), f"{path}: dependsOn by bare name is ambiguous: {dep}"
                assert resolve(dep[1:-1], keys), f"{path}: {resource['name']} depends on missing {dep}"
            closure = _dependency_closure(key, keys)
            assert key not in closure, f"{path}: dependency cycle through {resource['name']}"
            needed: set[Key] = set()
            # Anything reference()d in the resource body (its own dependsOn excluded).
            body = {k: v for k, v in resource.items() if k != "dependsOn"}
            for text in iter_strings(body):
                if not is_expression(text):
                    continue
                for args in find_calls(text[1:-1], "reference"):
                    target = resolve(args[0], keys)
                    if target is not None:
                        needed.add(target)
            # The scope of an extension resource, and any parent defined in this template.
            if key.scope:
                target = resolve(key.scope, keys)
                if target is not None:
                    needed.add(target)
            segments = key.type.split("/")
            for depth in range(2, len(segments)):
                parent = Key("/".join(segments[:depth]), key.names[: depth - 1])
                match = next((k for k in keys if k.type == parent.type and k.names == parent.names), None)
                if match is not None:
                    needed.add(match)
            missing = needed - closure
            assert not missing, f"{path}: {resource['name']} must depend on {sorted(k.type for k in missing)}"


def test_role_assignments_are_exactly_the_intended_ones(variant: Json) -> None:
    found: list[tuple[str, str]] = []
    for path, tmpl in scopes(variant):
        keys = {resource_key(r, tmpl.get("variables")): r for r in tmpl["resources"]}
        for resource in tmpl["resources"]:
            if resource["type"] != "Microsoft.Authorization/roleAssignments":
                continue
            props = resource["properties"]
            match = re.fullmatch(
                r"\[subscriptionResourceId\('Microsoft\.Authorization/roleDefinitions', '([0-9a-f-]{36})'\)\]",
                props["roleDefinitionId"],
            )
            assert match, f"{path}: role definition must be a literal built-in GUID"
            role = match.group(1)
            assert role in EXPECTED_ROLES, f"{path}: unexpected role {role}"
            scope = resolve(resource["scope"][1:-1], keys)
            assert scope is not None, f"{path}: role scope is not a resource of this template"
            assert scope.type == EXPECTED_ROLES[role][1], f"{path}: {EXPECTED_ROLES[role][0]} on {scope.type}"
            assert props["principalType"] == "ServicePrincipal"
            principal = props["principalId"]
            assert (
                "Microsoft.ManagedIdentity/userAssignedIdentities" in principal
                or principal == "[parameters('principalId')]"
            ), f"{path}: roles go to the user-assigned identity only"
            assert resource["name"].startswith("[guid("), "role assignment names must be deterministic"
            found.append((role, scope.type))
    assert sorted(found) == sorted((g, t) for g, (_, t) in EXPECTED_ROLES.items())
    assert {(g, t) for g, (_, t) in EXPECTED_ROLES.items()} == bt.ALLOWED_ROLE_SCOPES


def test_dcr_principal_is_the_user_assigned_identity(template: Json) -> None:
    dcr_deployment = next(
        r
        for r in template["resources"]
        if r["type"] == "Microsoft.Resources/deployments" and "dcr" in r["name"]
    )
    principal = dcr_deployment["properties"]["parameters"]["principalId"]["value"]
    assert principal.startswith("[reference(resourceId('Microsoft.ManagedIdentity/userAssignedIdentities'")
    assert principal.endswith(".principalId]")


def test_no_secret_in_plain_text(variant: Json) -> None:
    text = json.dumps(variant)
    for forbidden in (
        "listKeys",
        "listSecrets",
        "listCredential",
        "listAccountSas",
        "listServiceSas",
        "AccountKey",
        "SharedAccessKey",
        "SharedAccessSignature",
        "DefaultEndpointsProtocol",
        "WEBSITE_RUN_FROM_PACKAGE",
        "newGuid",
        "utcNow",
    ):
        assert forbidden.lower() not in text.lower(), f"template mentions {forbidden}"
    for path, tmpl in scopes(variant):
        for name, param in tmpl.get("parameters", {}).items():
            if param["type"].lower() in {"securestring", "secureobject"}:
                assert "defaultValue" not in param, f"{path}: secure parameter {name} has a default"
                for output in tmpl.get("outputs", {}).values():
                    assert name not in json.dumps(output), f"{path}: {name} leaks into outputs"
    token_uses = [s for s in iter_strings(variant["resources"]) if "parameters('nordPassToken')" in s]
    assert token_uses == ["[parameters('nordPassToken')]"]
    secret = next(r for r in variant["resources"] if r["type"] == "Microsoft.KeyVault/vaults/secrets")
    assert secret["properties"]["value"] == "[parameters('nordPassToken')]"
    assert variant["parameters"]["nordPassToken"]["type"] == "securestring"


def _app_settings(tmpl: Json) -> dict[str, str]:
    site = next(r for r in tmpl["resources"] if r["type"] == "Microsoft.Web/sites")
    return {s["name"]: s["value"] for s in site["properties"]["siteConfig"]["appSettings"]}


def test_app_settings_are_exactly_what_the_connector_and_host_read(template: Json) -> None:
    settings = _app_settings(template)
    assert set(settings) == EXPECTED_APP_SETTINGS
    assert tuple(settings) == bt.APP_SETTING_NAMES
    token = settings["NORDPASS_TOKEN"]
    # Unversioned reference: a new secret version (rotation) is picked up without a redeploy.
    assert token.startswith("[format('@Microsoft.KeyVault(SecretUri={0})'")
    assert token.endswith(".secretUri)]") and "WithVersion" not in token
    assert settings["AzureWebJobsStorage__credential"] == "managedidentity"
    assert settings["DCR_STREAM_NAME"] == "[variables('streamName')]"
    assert template["variables"]["streamName"] == schema.DEFAULT_STREAM_NAME
    assert template["variables"]["checkpointTableName"] == "nordpasscheckpoint"
    for flex_forbidden in ("FUNCTIONS_WORKER_RUNTIME", "FUNCTIONS_EXTENSION_VERSION", "AzureWebJobsStorage"):
        assert flex_forbidden not in settings


def test_app_settings_match_connector_setting_names(template: Json) -> None:
    try:
        from nordpass_connector import settings as connector_settings
    except ImportError as exc:  # pragma: no cover - depends on parallel work
        pytest.skip(f"nordpass_connector.settings is not importable ({exc}); the integrator wires this")
    names = getattr(connector_settings, "SETTING_NAMES", None)
    if names is None:
        pytest.skip("nordpass_connector.settings.SETTING_NAMES is missing; the integrator wires this")
    connector_names = set(names)
    template_names = set(_app_settings(template))
    unknown = template_names - HOST_ONLY_SETTINGS - connector_names
    assert not unknown, f"template sets settings nobody reads: {unknown}"
    required = connector_names - OPTIONAL_CONNECTOR_SETTINGS - STORAGE_ADDRESS_SETTINGS
    assert required <= template_names, (
        f"connector settings the template does not set: {required - template_names}"
    )
    assert template_names & STORAGE_ADDRESS_SETTINGS & connector_names, (
        "no storage address the connector reads"
    )


def test_no_moving_urls_and_package_pinned_to_version(variant: Json) -> None:
    text = json.dumps(variant).replace("\\/", "/")
    for url in set(re.findall(r"https?://[^\s\"'\\]+", text)):
        if url in SCHEMA_IDENTIFIER_URLS:
            continue
        assert "raw.githubusercontent.com" not in url, url
        assert not re.search(r"/(blob|tree|refs/heads|archive)/", url), url
        assert not re.search(r"/(main|master|develop|latest)(/|$)", url), url
    default = variant["parameters"]["packageUri"]["defaultValue"]
    version = CONNECTOR_VERSION
    assert re.fullmatch(
        rf"https://github\.com/[\w.-]+/[\w.-]+/releases/download/v{re.escape(version)}/"
        rf"nordpass-sentinel-connector-{re.escape(version)}\.zip",
        default,
    ), default
    assert "latest" not in default
    sha = variant["parameters"]["packageUri"]["metadata"]["packageSha256"]
    assert sha == "" or re.fullmatch(r"[0-9a-f]{64}", sha)


def test_api_versions_are_the_pinned_ones(variant: Json) -> None:
    for resource in all_resources(variant):
        assert resource["apiVersion"] == bt.API_VERSIONS[resource["type"]], resource["type"]


def _schema_file(resource_type: str, version: str) -> tuple[Path, str]:
    namespace, *segments = resource_type.split("/", 1)[0], *resource_type.split("/")[1:]
    file_name = namespace
    if namespace == "Microsoft.Insights" and segments[0] in {"components", "workbooks"}:
        file_name = "Microsoft.Insights.Application"
    return SCHEMAS / version / f"{file_name}.json", "_".join(segments)


def _load_schema(path: Path) -> Json:
    data: Json = json.loads(path.read_text(encoding="utf-8-sig"))
    return data


needs_schemas = pytest.mark.skipif(
    not SCHEMAS.is_dir(), reason=f"vendored ARM schemas not found at {SCHEMAS} (../shared/arm-schemas)"
)


@needs_schemas
def test_api_versions_have_a_vendored_schema(template: Json) -> None:
    for resource in all_resources(template):
        rtype, version = resource["type"], resource["apiVersion"]
        if rtype in bt.NO_SCHEMA_TYPES:
            continue
        if rtype == "Microsoft.SecurityInsights/alertRules":
            data = _load_schema(SCHEMAS / version / "Microsoft.SecurityInsights.json")
            assert "ScheduledAlertRule" in data["definitions"]
            continue
        path, definition = _schema_file(rtype, version)
        assert path.is_file(), f"{rtype}@{version}: no vendored schema {path}"
        assert definition in _load_schema(path)["resourceDefinitions"], f"{rtype}@{version}"


# --- the column contract ----------------------------------------------------------------------


def _row_model_type(annotation: Any) -> str:
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        annotation = args[0] if len(args) == 1 else annotation
    origin = typing.get_origin(annotation) or annotation
    if annotation is Any or origin in (dict, list):
        return "dynamic"
    return {datetime: "datetime", int: "long", str: "string", float: "real", bool: "boolean"}.get(origin, "?")


def contract_problems(
    stream: list[dict[str, str]],
    table: list[dict[str, str]],
    columns: list[tuple[str, str]],
    row: list[tuple[str, str]],
) -> list[str]:
    """Differences between the DCR stream declaration, the table, schema.COLUMNS and the row model
    (name, order, case and type; the table spells datetime as dateTime)."""
    views = {
        "DCR stream": [(c["name"], c["type"]) for c in stream],
        "table": [(c["name"], "datetime" if c["type"] == "dateTime" else c["type"]) for c in table],
        "schema.COLUMNS": columns,
        "EventRow": row,
    }
    problems: list[str] = []
    reference = views["schema.COLUMNS"]
    for label, view in views.items():
        if view != reference:
            problems.append(f"{label} differs from schema.COLUMNS: {sorted(set(view) ^ set(reference))}")
    for c in table:
        if c["type"] == "datetime":
            problems.append(f"table column {c['name']}: write dateTime (the ARM table schema's spelling)")
    return problems


def _contract_views(template: Json) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    content = next(r for r in template["resources"] if r["name"] == "[variables('contentDeploymentName')]")
    table = next(
        r
        for r in content["properties"]["template"]["resources"]
        if r["type"] == "Microsoft.OperationalInsights/workspaces/tables"
    )
    dcr_deployment = next(r for r in template["resources"] if r["name"] == "[variables('dcrDeploymentName')]")
    dcr = next(
        r
        for r in dcr_deployment["properties"]["template"]["resources"]
        if r["type"] == "Microsoft.Insights/dataCollectionRules"
    )
    stream = dcr["properties"]["streamDeclarations"][schema.DEFAULT_STREAM_NAME]["columns"]
    return stream, table["properties"]["schema"]["columns"]


def _schema_and_row() -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    columns: list[tuple[str, str]] = [(c.name, str(c.type)) for c in schema.COLUMNS]
    hints = typing.get_type_hints(EventRow)
    row = [(name, _row_model_type(hints[name])) for name in EventRow.model_fields]
    return columns, row


def test_stream_table_schema_and_row_model_are_one_contract(template: Json) -> None:
    stream, table = _contract_views(template)
    columns, row = _schema_and_row()
    assert contract_problems(stream, table, columns, row) == []
    assert {c["name"]: c["type"] for c in table}["TimeGenerated"] == "dateTime"
    assert {c["name"]: c["type"] for c in stream}["TimeGenerated"] == "datetime"


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(
            lambda s, t, c, r: s.__setitem__(1, {**s[1], "name": s[1]["name"].upper()}), id="stream-case"
        ),
        pytest.param(lambda s, t, c, r: t.__setitem__(2, {**t[2], "type": "long"}), id="table-type"),
        pytest.param(lambda s, t, c, r: s.pop(), id="stream-missing-column"),
        pytest.param(lambda s, t, c, r: t.append({"name": "Extra", "type": "string"}), id="table-extra"),
        pytest.param(lambda s, t, c, r: r.__setitem__(1, (r[1][0], "string")), id="row-type"),
        pytest.param(lambda s, t, c, r: c.__setitem__(0, ("timegenerated", "datetime")), id="schema-case"),
        pytest.param(lambda s, t, c, r: t.__setitem__(0, {**t[0], "type": "datetime"}), id="table-spelling"),
        pytest.param(lambda s, t, c, r: s.reverse(), id="stream-order"),
    ],
)
def test_contract_check_catches_any_difference(template: Json, mutate: Callable[..., object]) -> None:
    stream, table = (json.loads(json.dumps(v)) for v in _contract_views(template))
    columns, row = _schema_and_row()
    mutate(stream, table, columns, row)
    assert contract_problems(stream, table, columns, row)


def test_dcr_is_direct_pass_through_with_error_logs(template: Json) -> None:
    dcr_deployment = next(r for r in template["resources"] if r["name"] == "[variables('dcrDeploymentName')]")
    inner = dcr_deployment["properties"]["template"]["resources"]
    dcr = next(r for r in inner if r["type"] == "Microsoft.Insights/dataCollectionRules")
    assert dcr["kind"] == "Direct"
    (flow,) = dcr["properties"]["dataFlows"]
    assert flow == {
        "streams": [schema.DEFAULT_STREAM_NAME],
        "destinations": ["workspace"],
        "transformKql": "source",
        "outputStream": f"Custom-{schema.TABLE_NAME}",
    }
    diag = next(r for r in inner if r["type"] == "Microsoft.Insights/diagnosticSettings")
    assert diag["properties"]["logs"] == [{"category": "LogErrors", "enabled": True}]
    assert dcr_deployment["properties"]["parameters"]["location"]["value"].endswith("'Full').location]")


def test_hardening_properties(template: Json) -> None:
    by_type = {r["type"]: r for r in template["resources"]}
    storage = by_type["Microsoft.Storage/storageAccounts"]["properties"]
    assert storage["allowSharedKeyAccess"] is False
    assert storage["allowBlobPublicAccess"] is False
    assert storage["supportsHttpsTrafficOnly"] is True
    assert storage["minimumTlsVersion"] == "TLS1_2"
    vault = by_type["Microsoft.KeyVault/vaults"]["properties"]
    assert vault["enableRbacAuthorization"] is True
    assert vault["enableSoftDelete"] is True and vault["enablePurgeProtection"] is True
    site = by_type["Microsoft.Web/sites"]
    assert site["kind"] == "functionapp,linux"
    assert site["identity"]["type"] == "UserAssigned"
    assert (
        site["properties"]["keyVaultReferenceIdentity"]
        == site["properties"]["functionAppConfig"]["deployment"]["storage"]["authentication"][
            "userAssignedIdentityResourceId"
        ]
    )
    config = site["properties"]["functionAppConfig"]
    assert config["runtime"] == {"name": "python", "version": "3.11"}
    assert config["deployment"]["storage"]["authentication"]["type"] == "UserAssignedIdentity"
    assert config["scaleAndConcurrency"]["instanceMemoryMB"] == 2048
    plan = by_type["Microsoft.Web/serverfarms"]
    assert plan["sku"] == {"name": "FC1", "tier": "FlexConsumption"}
    assert plan["properties"]["reserved"] is True
    onedeploy = by_type["Microsoft.Web/sites/extensions"]
    assert onedeploy["name"].endswith("'onedeploy')]")
    assert onedeploy["properties"] == {"packageUri": "[parameters('packageUri')]", "remoteBuild": False}
    appi = by_type["Microsoft.Insights/components"]["properties"]
    assert appi["WorkspaceResourceId"] == "[variables('workspaceResourceId')]"
    for param in ("nordPassEndpointUrl", "nordPassToken", "workspaceName"):
        assert "defaultValue" not in template["parameters"][param]
    endpoint_meta = json.dumps(template["parameters"]["nordPassEndpointUrl"])
    assert bt.EU_ENDPOINT in endpoint_meta and bt.US_ENDPOINT in endpoint_meta
    assert "allowedValues" not in template["parameters"]["nordPassEndpointUrl"]
    assert {"functionAppName", "dcrImmutableId", "logsIngestionEndpoint", "managedIdentityClientId"} <= set(
        template["outputs"]
    )


def test_content_files_are_all_embedded(template: Json) -> None:
    content = next(r for r in template["resources"] if r["name"] == "[variables('contentDeploymentName')]")
    inner = content["properties"]["template"]["resources"]
    rules = [r for r in inner if r["type"] == "Microsoft.SecurityInsights/alertRules"]
    files = (
        sorted([*bt.RULES_DIR.glob("*.yaml"), *bt.RULES_DIR.glob("*.yml")]) if bt.RULES_DIR.is_dir() else []
    )
    assert len(rules) == len(files)
    workbooks = [r for r in inner if r["type"] == "Microsoft.Insights/workbooks"]
    assert len(workbooks) == (1 if bt.WORKBOOK_PATH.is_file() else 0)
    for rule in rules:
        assert rule["kind"] == "Scheduled"
        assert re.fullmatch(r"[0-9a-f-]{36}", rule["name"])


def test_rule_conversion_and_literal_escaping() -> None:
    _, props = _sample_rule()
    assert props["queryFrequency"] == "PT5M" and props["queryPeriod"] == "P1D"
    assert props["triggerOperator"] == "GreaterThan"
    assert props["techniques"] == ["T1078"]
    assert props["description"] == "Sample rule"
    assert props["incidentConfiguration"]["groupingConfiguration"]["lookbackDuration"] == "PT5H"
    assert bt.escape_literal(props)["query"] == "[[NordPassEventLogs_CL]"
    with pytest.raises(ValueError, match="queryFrequency"):
        bt.iso_duration("soon", field="queryFrequency", source="x.yaml")


# --- JSON-schema validation against the vendored ARM schemas ------------------------------------


def _registry() -> Any:
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT4

    def retrieve(uri: str) -> Resource[Any]:
        if not uri.startswith(SCHEMA_PREFIX):
            raise LookupError(uri)
        contents = _load_schema(SCHEMAS / uri[len(SCHEMA_PREFIX) :].split("#", 1)[0])
        if uri.startswith(SCHEMA_PREFIX + "2019-04-01/deploymentTemplate.json"):
            # The root schema's resource union references the non-vendored autogeneratedResources.json;
            # each resource is validated on its own below instead.
            contents = json.loads(json.dumps(contents))
            contents["definitions"]["resource"] = {"$ref": "#/definitions/resourceBase"}
        return DRAFT4.create_resource(contents)

    return Registry(retrieve=retrieve)  # type: ignore[call-arg]


def _allowed_leaf(resource: Json, error: Any) -> bool:
    """The documented false positives of the vendored schemas, and nothing else."""
    path = list(error.absolute_path)
    if resource["type"] == "Microsoft.Insights/dataCollectionRules" and error.validator == "enum":
        value = error.instance
        if path == ["kind"] and value == "Direct":
            return True
        if "streams" in path and isinstance(value, str) and value.startswith("Custom-"):
            return True
    return False


# Child types whose schema is a oneOf over literal name patterns (`.../onedeploy` vs `.../MSDeploy`,
# `.../ftp` vs `.../scm`): an expression-valued name satisfies every branch, so the oneOf reports
# "valid under each of". Documented for sites/extensions; publishing-credential policies are the
# same schema construct. Their `properties` are validated separately (see schema_errors).
NAME_ONEOF_TYPES = {
    "Microsoft.Web/sites/extensions": None,
    "Microsoft.Web/sites/basicPublishingCredentialsPolicies": "CsmPublishingCredentialsPoliciesEntityProperties",
}


def _error_allowed(resource: Json, error: Any) -> bool:
    if error.validator in {"oneOf", "anyOf"}:
        if not error.context:
            return (
                resource["type"] in NAME_ONEOF_TYPES
                and is_expression(resource["name"])
                and not error.absolute_path
                and "is valid under each of" in error.message
            )
        branches: dict[Any, list[Any]] = {}
        for sub in error.context:
            branches.setdefault(sub.relative_schema_path[0], []).append(sub)
        return any(all(_error_allowed(resource, sub) for sub in subs) for subs in branches.values())
    return _allowed_leaf(resource, error)


def schema_errors(resource: Json, registry: Any) -> list[str]:
    from jsonschema import Draft4Validator  # type: ignore[import-untyped]

    rtype, version = resource["type"], resource["apiVersion"]
    if rtype in bt.NO_SCHEMA_TYPES:
        return []
    if rtype == "Microsoft.SecurityInsights/alertRules":
        # No resourceDefinitions for Sentinel; validate {kind, properties} against the definition.
        ref = f"{SCHEMA_PREFIX}{version}/Microsoft.SecurityInsights.json#/definitions/ScheduledAlertRule"
        instance = {"kind": resource["kind"], "properties": resource["properties"]}
    else:
        path, definition = _schema_file(rtype, version)
        ref = f"{SCHEMA_PREFIX}{path.relative_to(SCHEMAS).as_posix()}#/resourceDefinitions/{definition}"
        instance = resource
    validator = Draft4Validator({"$ref": ref}, registry=registry)
    problems: list[str] = []
    properties_definition = NAME_ONEOF_TYPES.get(rtype)
    if properties_definition:
        props_ref = f"{ref.split('#', 1)[0]}#/definitions/{properties_definition}"
        props_validator = Draft4Validator({"$ref": props_ref}, registry=registry)
        problems += [
            f"{rtype} properties: {e.message[:300]}"
            for e in props_validator.iter_errors(resource["properties"])
        ]
    return problems + [
        f"{rtype} {'/'.join(map(str, e.absolute_path))}: {e.message[:300]}"
        for e in validator.iter_errors(instance)
        if not _error_allowed(resource, e)
    ]


@needs_schemas
def test_templates_validate_against_vendored_root_schema(variant: Json) -> None:
    from jsonschema import Draft4Validator

    registry = _registry()
    root = Draft4Validator({"$ref": f"{SCHEMA_PREFIX}2019-04-01/deploymentTemplate.json#"}, registry=registry)
    for path, tmpl in scopes(variant):
        errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message[:300]}" for e in root.iter_errors(tmpl)]
        assert not errors, f"{path}: {errors}"


@needs_schemas
def test_resources_validate_against_vendored_schemas(variant: Json) -> None:
    registry = _registry()
    errors = [err for resource in all_resources(variant) for err in schema_errors(resource, registry)]
    assert not errors, "\n".join(errors)


@needs_schemas
def test_schema_allow_list_is_narrow(template: Json) -> None:
    """The allow-list must not hide real mistakes next to the known false positives."""
    registry = _registry()
    dcr = next(r for r in all_resources(template) if r["type"] == "Microsoft.Insights/dataCollectionRules")
    broken = json.loads(json.dumps(dcr))
    broken["kind"] = "Sideways"
    assert schema_errors(broken, registry)
    broken = json.loads(json.dumps(dcr))
    broken["properties"]["dataFlows"][0]["streams"] = ["NordPass"]
    assert schema_errors(broken, registry)
    table = next(
        r for r in all_resources(template) if r["type"] == "Microsoft.OperationalInsights/workspaces/tables"
    )
    broken = json.loads(json.dumps(table))
    broken["properties"]["schema"]["columns"][0]["type"] = "datetime"
    assert schema_errors(broken, registry)


# --- checkov --------------------------------------------------------------------------------------

CHECKOV_VERSION = "3.3.30"
CHECKOV_VENV = REPO / ".venv-checkov"


def _checkov() -> Path:
    exe = CHECKOV_VENV / "bin" / "checkov"
    if exe.exists():
        return exe
    try:
        subprocess.run([sys.executable, "-m", "venv", str(CHECKOV_VENV)], check=True, capture_output=True)
        subprocess.run(
            [str(CHECKOV_VENV / "bin" / "pip"), "install", "-q", f"checkov=={CHECKOV_VERSION}"],
            check=True,
            capture_output=True,
            timeout=900,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        shutil.rmtree(CHECKOV_VENV, ignore_errors=True)
        pytest.skip(f"could not install checkov=={CHECKOV_VERSION} into {CHECKOV_VENV} (no network?): {exc}")
    return exe


@pytest.mark.slow
def test_checkov_has_no_unreviewed_findings() -> None:
    import yaml  # type: ignore[import-untyped]

    skips = (
        yaml.safe_load((REPO / "deploy" / "checkov-skips.yaml").read_text(encoding="utf-8"))["skips"] or []
    )
    for skip in skips:
        assert str(skip.get("reason", "")).strip(), f"checkov skip {skip.get('id')} has no reason"
    skipped = {skip["id"] for skip in skips}
    exe = _checkov()
    env = {**os.environ, "BC_SKIP_MAPPING": "TRUE"}
    result = subprocess.run(
        [
            str(exe),
            "-f",
            "deploy/azuredeploy.json",
            "--framework",
            "arm",
            "--compact",
            "--skip-download",
            "-o",
            "json",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.stdout.strip(), result.stderr[-2000:]
    report = json.loads(result.stdout)
    report = report[0] if isinstance(report, list) else report
    assert report["summary"]["parsing_errors"] == 0
    assert report["summary"]["resource_count"] > 0
    failed = {check["check_id"] for check in report["results"]["failed_checks"]}
    assert failed <= skipped, f"unreviewed checkov findings: {sorted(failed - skipped)}"
    assert skipped <= failed, f"stale entries in deploy/checkov-skips.yaml: {sorted(skipped - failed)}"


# --- the lint itself must bite ------------------------------------------------------------------


def _break_depends_on(t: Json) -> None:
    site = next(r for r in t["resources"] if r["type"] == "Microsoft.Web/sites")
    site["dependsOn"] = [d for d in site["dependsOn"] if "dcrDeploymentName" not in d]


def _break_variable(t: Json) -> None:
    site = next(r for r in t["resources"] if r["type"] == "Microsoft.Web/sites")
    site["properties"]["siteConfig"]["appSettings"][0]["value"] = "[variables('nope')]"


def _break_role(t: Json) -> None:
    role = next(r for r in t["resources"] if r["type"] == "Microsoft.Authorization/roleAssignments")
    role["properties"]["roleDefinitionId"] = (
        "[subscriptionResourceId('Microsoft.Authorization/roleDefinitions', "
        "'8e3af657-a8ff-443c-a75c-2fe8c4bcb635')]"
    )


def _break_secret(t: Json) -> None:
    t["outputs"]["leak"] = {
        "type": "string",
        "value": "[listKeys(variables('storageAccountName'), '2026-04-01')]",
    }


def _break_url(t: Json) -> None:
    t["parameters"]["packageUri"]["defaultValue"] = "https://raw.githubusercontent.com/x/y/main/function.zip"


def _break_reference(t: Json) -> None:
    site = next(r for r in t["resources"] if r["type"] == "Microsoft.Web/sites")
    site["properties"]["serverFarmId"] = "[resourceId('Microsoft.Web/serverfarms', variables('dcrName'))]"


@pytest.mark.parametrize(
    ("breaker", "check"),
    [
        (_break_depends_on, test_depends_on_targets_exist_and_ordering_is_complete),
        (_break_variable, test_parameters_and_variables_exist_and_are_used),
        (_break_role, test_role_assignments_are_exactly_the_intended_ones),
        (_break_secret, test_no_secret_in_plain_text),
        (_break_url, test_no_moving_urls_and_package_pinned_to_version),
        (_break_reference, test_resource_ids_and_references_resolve),
    ],
)
def test_lint_catches_mistakes(
    template: Json, breaker: Callable[[Json], None], check: Callable[[Json], None]
) -> None:
    broken = json.loads(json.dumps(template))
    breaker(broken)
    with pytest.raises(AssertionError):
        check(broken)
