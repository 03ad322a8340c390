"""Checks for the generated deployment templates: drift, structural lint, the column contract, the
dependency graph (content never blocks ingestion), token rotation, hygiene, the vendored ARM
schemas and checkov.

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
from tests.arm_lint import (
    DEPLOYMENT,
    REPO,
    SCHEMA_PREFIX,
    SCHEMAS,
    Json,
    Key,
    all_resources,
    dependency_graph,
    find_calls,
    is_expression,
    iter_strings,
    key_from_resource_id,
    load_schema,
    registry,
    resolve,
    resource_key,
    scopes,
)
from tests.row_models import EventRow

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
    "DCR_HEALTH_STREAM_NAME",
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

# A release as `make release` stamps it (any SHA-256 will do for structure; the release tests use a
# real build).
PIN = bt.ReleasePin("example/nordpass-sentinel-connector", f"v{CONNECTOR_VERSION}", "ab" * 32)


@pytest.fixture(scope="module")
def template() -> Json:
    """The committed template (no code package)."""
    data: Json = json.loads(bt.TEMPLATE_PATH.read_text(encoding="utf-8"))
    return data


@pytest.fixture(scope="module")
def stamped() -> Json:
    """The committed content, stamped for a release."""
    return bt.build_template(bt.SentinelContent.load(), PIN)


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


def _sample_content(with_workbook: bool) -> bt.SentinelContent:
    workbook = json.dumps({"version": "Notebook/1.0", "items": []}) if with_workbook else None
    return bt.SentinelContent(rules=[_sample_rule()], workbook=workbook)


def _variants() -> dict[str, Callable[[], Json]]:
    """The committed template, the stamped release template, and the shapes content can take."""
    return {
        "committed": lambda: json.loads(bt.TEMPLATE_PATH.read_text(encoding="utf-8")),
        "stamped": lambda: bt.build_template(bt.SentinelContent.load(), PIN),
        "no-content": lambda: bt.build_template(bt.SentinelContent(), PIN),
        "rules-only": lambda: bt.build_template(_sample_content(False)),
        "rules-and-workbook": lambda: bt.build_template(_sample_content(True), PIN),
    }


def _content_variants() -> dict[str, Callable[[], Json]]:
    return {
        "content-only-committed": lambda: json.loads(bt.CONTENT_TEMPLATE_PATH.read_text(encoding="utf-8")),
        "content-only-rules": lambda: bt.build_content_template(_sample_content(False)),
    }


@pytest.fixture(params=list(_variants()), scope="module")
def variant(request: pytest.FixtureRequest) -> Json:
    """Every shape of the main template."""
    return _variants()[request.param]()


@pytest.fixture(params=[*_variants(), *_content_variants()], scope="module")
def any_template(request: pytest.FixtureRequest) -> Json:
    """Every shape of both templates, for the checks that apply to any template."""
    return {**_variants(), **_content_variants()}[request.param]()


# --- drift ------------------------------------------------------------------------------------


def test_committed_files_are_generated_output() -> None:
    files = bt.generated_files()
    assert set(files) == {bt.TEMPLATE_PATH, bt.CONTENT_TEMPLATE_PATH, bt.UI_DEFINITION_PATH}
    for path, text in files.items():
        assert path.read_text(encoding="utf-8") == text, (
            f"{path.relative_to(REPO)} is stale: run `python -m deploy.build_template`"
        )


def test_check_mode_reports_drift(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TEMPLATE_PATH", "CONTENT_TEMPLATE_PATH", "UI_DEFINITION_PATH"):
        monkeypatch.setattr(bt, name, tmp_path / getattr(bt, name).name)
    monkeypatch.setattr(bt, "REPO_ROOT", tmp_path)
    assert bt.main(["--check"]) == 1  # missing
    assert bt.main([]) == 0
    assert bt.main(["--check"]) == 0
    bt.CONTENT_TEMPLATE_PATH.write_text("{}\n", encoding="utf-8")
    assert bt.main(["--check"]) == 1  # one stale file is enough


def test_a_rule_sentinel_would_reject_stops_generation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = tmp_path / "analytic-rules"
    rules.mkdir()
    source = sorted(bt.RULES_DIR.glob("*.yaml"))[0].read_text(encoding="utf-8")
    broken = re.sub(r"(?m)^queryPeriod: .*$", "queryPeriod: 3d", source)
    broken = re.sub(r"(?m)^queryFrequency: .*$", "queryFrequency: 5m", broken)
    (rules / "broken.yaml").write_text(broken, encoding="utf-8")
    with pytest.raises(ValueError, match=r"long-period-frequency"):
        bt.load_rules(rules)


# --- structural lint ----------------------------------------------------------------------------


def test_parameters_and_variables_exist_and_are_used(any_template: Json) -> None:
    for path, tmpl in scopes(any_template):
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


def test_resource_ids_and_references_resolve(any_template: Json) -> None:
    for path, tmpl in scopes(any_template):
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


def test_depends_on_targets_exist_and_ordering_is_complete(any_template: Json) -> None:
    for path, tmpl in scopes(any_template):
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
    assert settings["AzureWebJobsStorage__credential"] == "managedidentity"
    assert settings["DCR_STREAM_NAME"] == "[variables('streamName')]"
    assert template["variables"]["streamName"] == schema.DEFAULT_STREAM_NAME
    assert settings["DCR_HEALTH_STREAM_NAME"] == "[variables('healthStreamName')]"
    assert template["variables"]["healthStreamName"] == schema.DEFAULT_HEALTH_STREAM_NAME
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
        if "/<owner>/<repo>/" in url:
            # Guidance text on the connector page (how to reach a release), never fetched by ARM:
            # a placeholder cannot be deployed from, so it moves nothing.
            assert url.startswith("https://github.com/<owner>/<repo>/releases/"), url
            continue
        assert "raw.githubusercontent.com" not in url, url
        assert not re.search(r"/(blob|tree|refs/heads|archive)/", url), url
        assert not re.search(r"/(main|master|develop|latest)(/|$)", url), url
    onedeploy = [r for r in variant["resources"] if r["type"] == "Microsoft.Web/sites/extensions"]
    if "packageUri" not in variant["parameters"]:
        # Not a release build: no package at all, rather than a placeholder one.
        assert not onedeploy
        assert "packageSha256" not in json.dumps(variant)
        assert variant["metadata"]["codePackage"].startswith("None:")
        return
    default = variant["parameters"]["packageUri"]["defaultValue"]
    version = CONNECTOR_VERSION
    assert re.fullmatch(
        rf"https://github\.com/[\w.-]+/[\w.-]+/releases/download/v{re.escape(version)}/"
        rf"nordpass-sentinel-connector-{re.escape(version)}\.zip",
        default,
    ), default
    assert "latest" not in default
    sha = variant["parameters"]["packageUri"]["metadata"]["packageSha256"]
    assert re.fullmatch(r"[0-9a-f]{64}", sha), "a release template pins a real SHA-256"
    assert variant["metadata"]["packageSha256"] == variant["variables"]["defaultPackageSha256"] == sha
    assert variant["metadata"]["packageUri"] == variant["variables"]["defaultPackageUri"] == default
    assert [r["properties"]["packageUri"] for r in onedeploy] == ["[parameters('packageUri')]"]


def test_committed_template_has_no_release_pin(template: Json) -> None:
    """The repository's template names no repository, tag or checksum it cannot know."""
    text = json.dumps(template)
    for needle in ("packageUri", "packageSha256", "releases/download", "your-org", "OWNER/REPO"):
        assert needle not in text, needle
    assert "Microsoft.Web/sites/extensions" not in {r["type"] for r in template["resources"]}


def test_stamped_template_differs_from_committed_only_by_the_release_pin(
    template: Json, stamped: Json
) -> None:
    """Stamping adds the package (parameter, variables, onedeploy, outputs, metadata) and nothing else."""
    stripped = json.loads(json.dumps(stamped))
    del stripped["parameters"]["packageUri"]
    del stripped["variables"]["defaultPackageUri"], stripped["variables"]["defaultPackageSha256"]
    del stripped["outputs"]["packageUri"], stripped["outputs"]["packageSha256"]
    stripped["resources"] = [
        r for r in stripped["resources"] if r["type"] != "Microsoft.Web/sites/extensions"
    ]
    for key in ("repository", "releaseTag", "packageUri", "packageSha256"):
        del stripped["metadata"][key]
    committed = json.loads(json.dumps(template))
    del committed["metadata"]["codePackage"]
    assert stripped == committed
    assert stamped["metadata"]["repository"] == PIN.repository
    assert stamped["metadata"]["releaseTag"] == PIN.tag


@pytest.mark.parametrize(
    ("repository", "tag", "sha", "message"),
    [
        ("example", "v0.1.0", "ab" * 32, "repository"),
        ("a/b/c", "v0.1.0", "ab" * 32, "repository"),
        ("example/repo", "0.1.0", "ab" * 32, "tag"),
        ("example/repo", "v0.1", "ab" * 32, "tag"),
        ("example/repo", "v0.1.0", "", "SHA-256"),
        ("example/repo", "v0.1.0", "AB" * 32, "SHA-256"),
    ],
)
def test_release_pin_refuses_malformed_values(repository: str, tag: str, sha: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        bt.ReleasePin(repository, tag, sha)


def test_release_pin_must_match_the_connector_version() -> None:
    other = bt.ReleasePin("example/repo", "v99.0.0", "ab" * 32)
    with pytest.raises(ValueError, match="does not match the connector version"):
        bt.build_template(bt.SentinelContent(), other)


def test_api_versions_are_the_pinned_ones(any_template: Json) -> None:
    for resource in all_resources(any_template):
        assert resource["apiVersion"] == bt.API_VERSIONS[resource["type"]], resource["type"]


# Sentinel types have no resourceDefinitions: their {kind, properties} has a definition of its own.
SENTINEL_DEFINITIONS = {
    "Microsoft.SecurityInsights/alertRules": "ScheduledAlertRule",
    "Microsoft.SecurityInsights/dataConnectorDefinitions": "CustomizableConnectorDefinition",
}


def _schema_file(resource_type: str, version: str) -> tuple[Path, str]:
    namespace, *segments = resource_type.split("/", 1)[0], *resource_type.split("/")[1:]
    file_name = namespace
    if namespace == "Microsoft.Insights" and segments[0] in {"components", "workbooks"}:
        file_name = "Microsoft.Insights.Application"
    return SCHEMAS / version / f"{file_name}.json", "_".join(segments)


def test_api_versions_have_a_vendored_schema(template: Json) -> None:
    for resource in all_resources(template):
        rtype, version = resource["type"], resource["apiVersion"]
        if rtype in bt.NO_SCHEMA_TYPES:
            continue
        if rtype in SENTINEL_DEFINITIONS:
            data = load_schema(SCHEMAS / version / "Microsoft.SecurityInsights.json")
            assert SENTINEL_DEFINITIONS[rtype] in data["definitions"]
            continue
        path, definition = _schema_file(rtype, version)
        assert path.is_file(), f"{rtype}@{version}: no vendored schema {path}"
        assert definition in load_schema(path)["resourceDefinitions"], f"{rtype}@{version}"


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
    tables = next(r for r in template["resources"] if r["name"] == "[variables('tablesDeploymentName')]")
    table = next(
        r
        for r in tables["properties"]["template"]["resources"]
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


def test_health_stream_table_schema_and_row_are_one_contract(template: Json) -> None:
    """The same for the health table: DCR stream = table = schema.HEALTH = the row the connector sends."""
    from nordpass_connector.health import health_row

    tables = next(r for r in template["resources"] if r["name"] == "[variables('tablesDeploymentName')]")
    (table,) = [
        r
        for r in tables["properties"]["template"]["resources"]
        if r["type"] == "Microsoft.OperationalInsights/workspaces/tables"
        and r["properties"]["schema"]["name"] == schema.HEALTH_TABLE_NAME
    ]
    dcr_deployment = next(r for r in template["resources"] if r["name"] == "[variables('dcrDeploymentName')]")
    dcr = next(
        r
        for r in dcr_deployment["properties"]["template"]["resources"]
        if r["type"] == "Microsoft.Insights/dataCollectionRules"
    )
    stream = dcr["properties"]["streamDeclarations"][schema.DEFAULT_HEALTH_STREAM_NAME]["columns"]
    columns = [(c.name, str(c.type)) for c in schema.HEALTH_COLUMNS]
    row = health_row(now=0, instance="i", version="v", report=None, record=None, crash_class="E")
    row_view = [(name, dict(columns).get(name, "?")) for name in row]  # types: test_health_in_sentinel.py
    assert contract_problems(stream, table["properties"]["schema"]["columns"], columns, row_view) == []
    assert table["properties"]["plan"] == "Analytics", "scheduled rules cannot read Basic tables"


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
    # One pass-through flow per table: events, and the one health row per run.
    assert dcr["properties"]["dataFlows"] == [
        {
            "streams": [stream],
            "destinations": ["workspace"],
            "transformKql": "source",
            "outputStream": f"Custom-{table}",
        }
        for stream, table in (
            (schema.DEFAULT_STREAM_NAME, schema.TABLE_NAME),
            (schema.DEFAULT_HEALTH_STREAM_NAME, schema.HEALTH_TABLE_NAME),
        )
    ]
    assert set(dcr["properties"]["streamDeclarations"]) == {
        schema.DEFAULT_STREAM_NAME,
        schema.DEFAULT_HEALTH_STREAM_NAME,
    }
    diag = next(r for r in inner if r["type"] == "Microsoft.Insights/diagnosticSettings")
    assert diag["properties"]["logs"] == [{"category": "LogErrors", "enabled": True}]
    assert dcr_deployment["properties"]["parameters"]["location"]["value"].endswith("'Full').location]")


def test_hardening_properties(stamped: Json) -> None:
    template = stamped
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
    assert config["scaleAndConcurrency"]["instanceMemoryMB"] == 512  # the smallest Flex size (bench/cost.py)
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


@pytest.mark.parametrize("path", [bt.TEMPLATE_PATH, bt.CONTENT_TEMPLATE_PATH], ids=lambda p: p.name)
def test_content_files_are_all_embedded(path: Path) -> None:
    template = json.loads(path.read_text(encoding="utf-8"))
    (content,) = [
        r for r in template["resources"] if r["type"] == DEPLOYMENT and "content" in r["name"].lower()
    ]
    inner = content["properties"]["template"]["resources"]
    rules = [r for r in inner if r["type"] == "Microsoft.SecurityInsights/alertRules"]
    files = (
        sorted([*bt.RULES_DIR.glob("*.yaml"), *bt.RULES_DIR.glob("*.yml")]) if bt.RULES_DIR.is_dir() else []
    )
    assert len(rules) == len(files)
    workbooks = [r for r in inner if r["type"] == "Microsoft.Insights/workbooks"]
    assert len(workbooks) == (1 if bt.WORKBOOK_PATH.is_file() else 0)
    connectors = [r for r in inner if r["type"] == "Microsoft.SecurityInsights/dataConnectorDefinitions"]
    assert len(connectors) == (1 if bt.CONNECTOR_PATH.is_file() else 0)
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


def schema_errors(resource: Json, schema_registry: Any) -> list[str]:
    from jsonschema import Draft4Validator  # type: ignore[import-untyped]

    rtype, version = resource["type"], resource["apiVersion"]
    if rtype in bt.NO_SCHEMA_TYPES:
        return []
    if rtype in SENTINEL_DEFINITIONS:
        # No resourceDefinitions for Sentinel; validate {kind, properties} against the definition.
        definition = SENTINEL_DEFINITIONS[rtype]
        ref = f"{SCHEMA_PREFIX}{version}/Microsoft.SecurityInsights.json#/definitions/{definition}"
        instance = {"kind": resource["kind"], "properties": resource["properties"]}
    else:
        path, definition = _schema_file(rtype, version)
        ref = f"{SCHEMA_PREFIX}{path.relative_to(SCHEMAS).as_posix()}#/resourceDefinitions/{definition}"
        instance = resource
    validator = Draft4Validator({"$ref": ref}, registry=schema_registry)
    problems: list[str] = []
    properties_definition = NAME_ONEOF_TYPES.get(rtype)
    if properties_definition:
        props_ref = f"{ref.split('#', 1)[0]}#/definitions/{properties_definition}"
        props_validator = Draft4Validator({"$ref": props_ref}, registry=schema_registry)
        problems += [
            f"{rtype} properties: {e.message[:300]}"
            for e in props_validator.iter_errors(resource["properties"])
        ]
    return problems + [
        f"{rtype} {'/'.join(map(str, e.absolute_path))}: {e.message[:300]}"
        for e in validator.iter_errors(instance)
        if not _error_allowed(resource, e)
    ]


def test_templates_validate_against_vendored_root_schema(any_template: Json) -> None:
    from jsonschema import Draft4Validator

    schema_registry = registry()
    root = Draft4Validator(
        {"$ref": f"{SCHEMA_PREFIX}2019-04-01/deploymentTemplate.json#"}, registry=schema_registry
    )
    for path, tmpl in scopes(any_template):
        errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message[:300]}" for e in root.iter_errors(tmpl)]
        assert not errors, f"{path}: {errors}"


def test_resources_validate_against_vendored_schemas(any_template: Json) -> None:
    schema_registry = registry()
    errors = [
        err for resource in all_resources(any_template) for err in schema_errors(resource, schema_registry)
    ]
    assert not errors, "\n".join(errors)


def test_schema_allow_list_is_narrow(template: Json) -> None:
    """The allow-list must not hide real mistakes next to the known false positives."""
    schema_registry = registry()
    dcr = next(r for r in all_resources(template) if r["type"] == "Microsoft.Insights/dataCollectionRules")
    broken = json.loads(json.dumps(dcr))
    broken["kind"] = "Sideways"
    assert schema_errors(broken, schema_registry)
    broken = json.loads(json.dumps(dcr))
    broken["properties"]["dataFlows"][0]["streams"] = ["NordPass"]
    assert schema_errors(broken, schema_registry)
    table = next(
        r for r in all_resources(template) if r["type"] == "Microsoft.OperationalInsights/workspaces/tables"
    )
    broken = json.loads(json.dumps(table))
    broken["properties"]["schema"]["columns"][0]["type"] = "datetime"
    assert schema_errors(broken, schema_registry)


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


# --- content never blocks ingestion ---------------------------------------------------------------

TABLE_TYPE = "Microsoft.OperationalInsights/workspaces/tables"


def content_isolation_problems(tmpl: Json) -> list[str]:
    """Connector resources that wait (directly, through nesting or through reference()) for Sentinel
    content, and content that does not wait for every custom table."""
    graph = dependency_graph(tmpl)
    content = graph.content()
    tables = {node for node in graph.resources if node.key.type == TABLE_TYPE}
    problems: list[str] = []
    for node in graph.resources:
        if node in content:
            continue
        blockers = graph.closure(node) & content
        if blockers:
            names = sorted({b.key.type for b in blockers})
            problems.append(f"{node.scope}: {node.key.type} {node.key.names} waits for content {names}")
    for node in content:
        if node.key.type in {"Microsoft.SecurityInsights/alertRules", DEPLOYMENT}:
            missing = tables - graph.closure(node) - graph.inside(node)
            if missing or not tables:
                problems.append(
                    f"{node.scope}: {node.key.type} {node.key.names} does not wait for the tables"
                )
    return problems


def test_content_never_blocks_ingestion(any_template: Json) -> None:
    assert content_isolation_problems(any_template) == []


def test_the_real_templates_have_both_sides_of_the_graph(template: Json) -> None:
    """The isolation check above is only meaningful if content and connector are both there."""
    graph = dependency_graph(template)
    content = graph.content()
    content_types = {node.key.type for node in content}
    assert {"Microsoft.SecurityInsights/alertRules", "Microsoft.Insights/workbooks"} <= content_types
    connector_types = {node.key.type for node in graph.resources if node not in content}
    assert {
        "Microsoft.ManagedIdentity/userAssignedIdentities",
        "Microsoft.Storage/storageAccounts",
        "Microsoft.KeyVault/vaults",
        "Microsoft.KeyVault/vaults/secrets",
        TABLE_TYPE,
        "Microsoft.Insights/dataCollectionRules",
        "Microsoft.Web/sites",
        "Microsoft.Authorization/roleAssignments",
    } <= connector_types
    # The DCR waits for the tables; so does the site, through the DCR.
    (dcr,) = [n for n in graph.resources if n.key.type == "Microsoft.Insights/dataCollectionRules"]
    (site,) = [n for n in graph.resources if n.key.type == "Microsoft.Web/sites"]
    tables = {n for n in graph.resources if n.key.type == TABLE_TYPE}
    assert tables <= graph.closure(dcr) and tables <= graph.closure(site)
    # Only the content deployment is switchable, and nothing else is conditional.
    conditional = [r["name"] for r in all_resources(template) if "condition" in r]
    assert conditional == ["[variables('contentDeploymentName')]"]
    (content_deployment,) = [r for r in template["resources"] if r["name"] == conditional[0]]
    assert content_deployment["condition"] == "[parameters('deploySentinelContent')]"


def test_content_only_template_deploys_tables_and_content_and_asks_for_nothing_else() -> None:
    tmpl = json.loads(bt.CONTENT_TEMPLATE_PATH.read_text(encoding="utf-8"))
    assert set(tmpl["parameters"]) == {"workspaceName"}
    assert "defaultValue" not in tmpl["parameters"]["workspaceName"]
    types_ = {r["type"] for r in all_resources(tmpl)}
    assert types_ <= {
        DEPLOYMENT,
        TABLE_TYPE,
        "Microsoft.SecurityInsights/alertRules",
        "Microsoft.Insights/workbooks",
        "Microsoft.SecurityInsights/dataConnectorDefinitions",
        "Microsoft.OperationalInsights/workspaces/savedSearches",
    }
    assert TABLE_TYPE in types_
    main = json.loads(bt.TEMPLATE_PATH.read_text(encoding="utf-8"))

    def inner(t: Json, marker: str) -> Json:
        (deployment,) = [r for r in t["resources"] if r["type"] == DEPLOYMENT and marker in r["name"]]
        template: Json = deployment["properties"]["template"]
        return template

    # The same nested templates as the main one: one source of truth for tables and content.
    assert inner(tmpl, "tables") == inner(main, "tables")
    assert inner(tmpl, "content") == inner(main, "content")


def _content_deployment(t: Json) -> Json:
    return next(r for r in t["resources"] if r["name"] == "[variables('contentDeploymentName')]")


def _break_site_waits_for_content(t: Json) -> None:
    site = next(r for r in t["resources"] if r["type"] == "Microsoft.Web/sites")
    site["dependsOn"].append(
        "[resourceId(parameters('workspaceResourceGroup'), 'Microsoft.Resources/deployments', "
        "variables('contentDeploymentName'))]"
    )


def _break_dcr_reads_content_outputs(t: Json) -> None:
    dcr = next(r for r in t["resources"] if r["name"] == "[variables('dcrDeploymentName')]")
    dcr["properties"]["parameters"]["location"]["value"] = (
        "[reference(resourceId(parameters('workspaceResourceGroup'), 'Microsoft.Resources/deployments', "
        "variables('contentDeploymentName')), '2022-09-01').outputs.location.value]"
    )


def _break_table_inside_content(t: Json) -> None:
    """The previous design: the table in the content deployment, the DCR waiting for it."""
    tables = next(r for r in t["resources"] if r["name"] == "[variables('tablesDeploymentName')]")
    content = _content_deployment(t)
    content["properties"]["template"]["resources"] += tables["properties"]["template"]["resources"]
    tables["properties"]["template"]["resources"] = []


def _break_content_without_tables(t: Json) -> None:
    del _content_deployment(t)["dependsOn"]


@pytest.mark.parametrize(
    "breaker",
    [
        _break_site_waits_for_content,
        _break_dcr_reads_content_outputs,
        _break_table_inside_content,
        _break_content_without_tables,
    ],
)
def test_content_isolation_check_can_fail(template: Json, breaker: Callable[[Json], None]) -> None:
    broken = json.loads(json.dumps(template))
    breaker(broken)
    assert content_isolation_problems(broken)


# --- a new token takes effect at once -------------------------------------------------------------

SECRET_REF = (
    "reference(resourceId('Microsoft.KeyVault/vaults/secrets', variables('keyVaultName'), "
    "variables('secretName')), '2026-02-01')"
)


def test_token_setting_names_the_secret_version(variant: Json) -> None:
    """A redeploy with a new token writes a new secret version; the app setting names that version,
    so the setting changes and the app restarts with the new token at once (an unversioned reference
    is re-read only about once a day)."""
    token = _app_settings(variant)["NORDPASS_TOKEN"]
    assert token == f"[format('@Microsoft.KeyVault(SecretUri={{0}})', {SECRET_REF}.secretUriWithVersion)]"
    keys = {resource_key(r, variant["variables"]): r for r in variant["resources"]}
    (call,) = find_calls(token[1:-1], "reference")
    secret_key = resolve(call[0], keys)
    assert secret_key is not None
    secret = keys[secret_key]
    assert secret["properties"]["value"] == "[parameters('nordPassToken')]", (
        "the referenced secret holds the token"
    )
    site = next(r for r in variant["resources"] if r["type"] == "Microsoft.Web/sites")
    assert f"[{call[0]}]" in site["dependsOn"], "the site reads the version only after writing it"
    assert site["properties"]["keyVaultReferenceIdentity"].startswith(
        "[resourceId('Microsoft.ManagedIdentity/userAssignedIdentities'"
    )


def _break_unversioned_token(t: Json) -> None:
    site = next(r for r in t["resources"] if r["type"] == "Microsoft.Web/sites")
    for setting in site["properties"]["siteConfig"]["appSettings"]:
        if setting["name"] == "NORDPASS_TOKEN":
            setting["value"] = setting["value"].replace(".secretUriWithVersion", ".secretUri")


# --- hygiene: no placeholder values ---------------------------------------------------------------

# Empty objects that are the required shape, not a stand-in for "nothing".
ALLOWED_EMPTY_OBJECTS = {
    # The schema requires `properties`; a user-assigned identity has none to set.
    ("Microsoft.ManagedIdentity/userAssignedIdentities", ("properties",)),
    # ARM's shape for assigning an identity: {<identity resource id>: {}}.
    ("Microsoft.Web/sites", ("identity", "userAssignedIdentities", "*")),
}


def hygiene_problems(tmpl: Json) -> list[str]:
    """Blank strings, empty arrays and empty objects anywhere in a template (nested ones included)."""
    problems: list[str] = []
    for scope_path, scope in scopes(tmpl):
        for section in ("metadata", "parameters", "variables", "outputs"):
            problems += _placeholders(
                scope.get(section, {"present": True}), f"{scope_path}.{section}", None, ()
            )
        for resource in scope["resources"]:
            body = dict(resource)
            if resource["type"] == DEPLOYMENT:  # the inner template is walked as its own scope
                body["properties"] = {k: v for k, v in resource["properties"].items() if k != "template"}
            problems += _placeholders(body, f"{scope_path}:{resource['type']}", resource["type"], ())
    return problems


def _placeholders(node: Any, where: str, rtype: str | None, path: tuple[str, ...]) -> Iterator[str]:
    """The blank strings, empty arrays and (not allowed) empty objects in `node`, depth first."""
    if isinstance(node, str) and not node.strip():
        yield f"{where}: blank string"
    elif isinstance(node, list):
        if not node:
            yield f"{where}: empty array"
        for index, item in enumerate(node):
            yield from _placeholders(item, f"{where}[{index}]", rtype, (*path, str(index)))
    elif isinstance(node, dict):
        if not node and not _empty_object_allowed(rtype, path):
            yield f"{where}: empty object"
        for key, item in node.items():
            yield from _placeholders(item, f"{where}.{key}", rtype, (*path, key))


def _empty_object_allowed(rtype: str | None, path: tuple[str, ...]) -> bool:
    return any(
        rtype == t and len(p) == len(path) and all(a in ("*", b) for a, b in zip(p, path, strict=True))
        for t, p in ALLOWED_EMPTY_OBJECTS
    )


def test_no_placeholder_values(any_template: Json) -> None:
    assert hygiene_problems(any_template) == []


def _break_blank_string(t: Json) -> None:
    t["parameters"]["namePrefix"]["defaultValue"] = ""


def _break_empty_array(t: Json) -> None:
    rule = next(r for r in all_resources(t) if r["type"] == "Microsoft.SecurityInsights/alertRules")
    rule["properties"]["incidentConfiguration"]["groupingConfiguration"]["groupByAlertDetails"] = []


def _break_empty_properties(t: Json) -> None:
    table = next(
        r for r in t["resources"] if r["type"] == "Microsoft.Storage/storageAccounts/tableServices/tables"
    )
    table["properties"] = {}


@pytest.mark.parametrize("breaker", [_break_blank_string, _break_empty_array, _break_empty_properties])
def test_hygiene_check_can_fail(stamped: Json, breaker: Callable[[Json], None]) -> None:
    broken = json.loads(json.dumps(stamped))
    breaker(broken)
    assert hygiene_problems(broken)


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
        (_break_unversioned_token, test_token_setting_names_the_secret_version),
    ],
)
def test_lint_catches_mistakes(
    stamped: Json, breaker: Callable[[Json], None], check: Callable[[Json], None]
) -> None:
    broken = json.loads(json.dumps(stamped))
    breaker(broken)
    with pytest.raises(AssertionError):
        check(broken)
