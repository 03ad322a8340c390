"""The data connector page: `Microsoft.SecurityInsights/dataConnectorDefinitions` (kind
`Customizable`), deployed with the content, validated against the vendored SecurityInsights schema,
its KQL analysed by the real Kusto parser and run with duckdb-kql over rows the connector writes.

What cannot be checked here (no Azure): how the portal renders the page, and that the
SecurityInsights resource provider accepts the definition at api-version 2025-09-01 (the schema is
the provider's published contract for that version).
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

import pytest

from content import kql, localrun
from deploy import build_template as bt
from nordpass_connector.schema import HEALTH, TABLE_NAME, TABLES
from sandbox import datagen
from tests.arm_lint import SCHEMA_PREFIX, all_resources, registry
from tests.health_rows import RunLog

DEFINITION = "Microsoft.SecurityInsights/dataConnectorDefinitions"
UI = kql.load_connector()
M = timedelta(minutes=1)


def _template_resources(path: Any) -> list[dict[str, Any]]:
    template = json.loads(path.read_text(encoding="utf-8"))
    return [r for r in all_resources(template) if r["type"] == DEFINITION]


def _schema_errors(resource: dict[str, Any]) -> list[str]:
    from jsonschema import Draft4Validator  # type: ignore[import-untyped]

    ref = f"{SCHEMA_PREFIX}{resource['apiVersion']}/Microsoft.SecurityInsights.json#/definitions/CustomizableConnectorDefinition"
    validator = Draft4Validator({"$ref": ref}, registry=registry())
    instance = {"kind": resource["kind"], "properties": resource["properties"]}
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}" for e in validator.iter_errors(instance)
    ]


# -- deployed with the content ------------------------------------------------------------------------


@pytest.mark.parametrize("path", [bt.TEMPLATE_PATH, bt.CONTENT_TEMPLATE_PATH], ids=lambda p: p.name)
def test_the_page_is_deployed_with_the_content_on_the_workspace(path: Any) -> None:
    template = json.loads(path.read_text(encoding="utf-8"))
    (content,) = [
        r
        for r in template["resources"]
        if r["type"] == "Microsoft.Resources/deployments" and "content" in r["name"]
    ]
    (page,) = [r for r in content["properties"]["template"]["resources"] if r["type"] == DEFINITION]
    assert page["apiVersion"] == bt.API_VERSIONS[DEFINITION] == "2025-09-01"
    assert page["kind"] == "Customizable"
    # An extension resource on the workspace, like the analytic rules.
    assert (
        page["scope"]
        == "[resourceId('Microsoft.OperationalInsights/workspaces', parameters('workspaceName'))]"
    )
    assert page["name"] == UI["id"] == "NordPassActivityConnector"
    assert page["properties"] == {"connectorUiConfig": UI}
    assert _template_resources(path) == [page]


def test_the_page_validates_against_the_vendored_schema_and_the_check_can_fail() -> None:
    (page,) = _template_resources(bt.TEMPLATE_PATH)
    assert _schema_errors(page) == []
    broken: list[dict[str, Any]] = []
    for mutate in (
        lambda ui: ui.pop("title"),
        lambda ui: ui.pop("connectivityCriteria"),
        lambda ui: ui["dataTypes"][0].pop("lastDataReceivedQuery"),
        lambda ui: ui["graphQueries"][0].pop("baseQuery"),
        lambda ui: ui["permissions"]["resourceProvider"][0].__setitem__("scope", "Tenant"),
        lambda ui: ui.__setitem__("instructionSteps", {"title": "not a list"}),
    ):
        copy = json.loads(json.dumps(page))
        mutate(copy["properties"]["connectorUiConfig"])
        broken.append(copy)
    wrong_kind = json.loads(json.dumps(page))
    wrong_kind["kind"] = "StaticUI"
    for resource in [*broken, wrong_kind]:
        assert _schema_errors(resource), resource["properties"]["connectorUiConfig"].keys()


# -- what the page says --------------------------------------------------------------------------------


def test_the_page_has_what_a_first_class_connector_shows() -> None:
    assert UI["title"].startswith("NordPass") and UI["publisher"]
    assert {TABLE_NAME, HEALTH.name} <= set(re.findall(r"\w+_CL", UI["descriptionMarkdown"]))
    assert "succeeded in the last 30 minutes" in UI["descriptionMarkdown"]
    # A graph per table (events per data type), plus failed runs.
    assert [g["baseQuery"].split("\n")[0] for g in UI["graphQueries"]] == [
        TABLE_NAME,
        HEALTH.name,
        HEALTH.name,
    ]
    assert len(UI["sampleQueries"]) >= 3
    assert [d["name"] for d in UI["dataTypes"]] == [t.name for t in TABLES]
    (criterion,) = UI["connectivityCriteria"]
    assert criterion["type"] == "IsConnectedQuery"
    assert [q.split("\n")[0] for q in criterion["value"]] == [HEALTH.name]
    permissions = UI["permissions"]
    (workspace,) = permissions["resourceProvider"]
    assert workspace["provider"] == "Microsoft.OperationalInsights/workspaces"
    assert workspace["requiredPermissions"]["read"] and workspace["requiredPermissions"]["write"]
    customs = " ".join(c["name"] + " " + c["description"] for c in permissions["customs"])
    for needle in ("Activity API token", "Admin Panel", "Monitoring Metrics Publisher", "Owner"):
        assert needle in customs


def test_the_instructions_deploy_a_release_and_rotate_the_token() -> None:
    steps = UI["instructionSteps"]
    text = json.dumps(steps)
    assert "Deploy to Azure" in text
    # Repository-independent: the page cannot know the fork, so it names the release route.
    assert "https://github.com/<owner>/<repo>/releases/latest/download/azuredeploy.json" in text
    assert "portal.azure.com/#create/Microsoft.Template/uri/" in text
    (label,) = [i for s in steps for i in s.get("instructions", []) if i["type"] == "CopyableLabel"]
    assert label["parameters"]["value"].startswith("az deployment group create ")
    assert (
        "--template-uri https://github.com/<owner>/<repo>/releases/latest/download/azuredeploy.json"
        in label["parameters"]["value"]
    )
    assert "workspaceName={0}" in label["parameters"]["value"] and label["parameters"]["fillWith"] == [
        "workspaceName"
    ]
    (rotate,) = [s for s in steps if "Rotate" in s["title"]]
    for needle in (
        "NORDPASS_TOKEN",
        "new version of the Key Vault secret",
        "same release template",
        "Revoke",
    ):
        assert needle in rotate["description"]
    assert not re.search(r"raw\.githubusercontent|/(blob|tree)/|/(main|master)/", text)


# -- its KQL -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def analysed() -> dict[str, kql.QueryResult]:
    return {r.id: r for r in kql.check(kql.connector_queries(UI))}


def test_every_query_of_the_page_passes_the_kusto_analyzer(analysed: dict[str, kql.QueryResult]) -> None:
    assert len(analysed) == len(UI["graphQueries"]) + len(UI["sampleQueries"]) + len(UI["dataTypes"]) + 1
    assert {i: [d.message for d in r.errors] for i, r in analysed.items() if r.errors} == {}
    for query_id, result in analysed.items():
        if query_id.startswith("connector/lastData:"):
            assert result.column_names == {"Time"}, query_id
    (connected,) = [r for i, r in analysed.items() if i.startswith("connector/connected:")]
    assert "IsConnected" in connected.column_names
    assert set(kql.connector_queries(UI)) <= set(kql.content_queries()), "the content check covers the page"


def _connected(loaded: list[localrun.LoadedRow], runs: RunLog) -> list[dict[str, Any]]:
    (query,) = UI["connectivityCriteria"][0]["value"]
    return localrun.run(query, loaded, runs.rows)


def test_connected_means_a_successful_run_in_the_last_30_minutes() -> None:
    now = localrun.utcnow()
    runs = RunLog(now)
    runs.every_minute(3 * 60 * M, 5 * M, sent=4)
    [row] = _connected([], runs)
    assert row["IsConnected"] is True and row["LastSuccessfulRun"] == now.replace(microsecond=0) - 5 * M

    # A quiet organisation: no event at all for hours, but its runs succeed. Connected.
    assert _connected([], RunLog(now)) == []
    quiet = RunLog(now)
    quiet.every_minute(60 * M, M)
    assert len(_connected([], quiet)) == 1

    # Runs failing for 35 minutes after the last success: not connected, whatever the rows say.
    failing = RunLog(now)
    failing.every_minute(3 * 60 * M, 36 * M)
    failing.every_minute(35 * M, M, "failed")
    assert _connected([], failing) == []
    # One success in the last half hour is enough (a failure streak that recovered).
    failing.run(29 * M)
    assert len(_connected([], failing)) == 1

    # Busy runs (another run held the checkpoint) do not count as success.
    stood_aside = RunLog(now)
    stood_aside.every_minute(20 * M, M, "busy")
    assert _connected([], stood_aside) == []


def test_events_alone_do_not_make_the_connector_connected() -> None:
    """The official page said "Connected" while any row from the last 7 days existed."""
    now = localrun.utcnow()
    org = datagen.make_org(7, members=10)
    events = datagen.EventFactory(org, seed=7).background(
        localrun.to_epoch(now - timedelta(hours=2)), localrun.to_epoch(now - 2 * M), per_minute=2
    )
    loaded = localrun.ingest(localrun.rows_from_events(events), lag=M)
    assert _connected(loaded, RunLog(now)) == []


def test_last_data_received_per_data_type() -> None:
    now = localrun.utcnow()
    org = datagen.make_org(7, members=10)
    events = datagen.EventFactory(org, seed=7).background(
        localrun.to_epoch(now - timedelta(hours=3)), localrun.to_epoch(now - 60 * M), per_minute=1
    )
    loaded = localrun.ingest(localrun.rows_from_events(events), lag=2 * M)
    runs = RunLog(now)
    runs.every_minute(30 * M, 3 * M)
    queries = {d["name"]: d["lastDataReceivedQuery"] for d in UI["dataTypes"]}
    [events_last] = localrun.run(queries[TABLE_NAME], loaded, runs.rows)
    newest_arrival = max(item.ingested_at for item in loaded)
    assert events_last["Time"] == newest_arrival
    [health_last] = localrun.run(queries[HEALTH.name], loaded, runs.rows)
    assert health_last["Time"] == now.replace(microsecond=0) - 3 * M
    # Nothing received: no row, which the page shows as "no data".
    assert localrun.run(queries[TABLE_NAME], [], []) == []
    assert localrun.run(queries[HEALTH.name], [], []) == []


def test_sample_and_graph_queries_return_rows_on_a_working_tenant() -> None:
    now = localrun.utcnow()
    org = datagen.make_org(7, members=20)
    factory = datagen.EventFactory(org, seed=7)
    events = factory.background(
        localrun.to_epoch(now - timedelta(hours=20)), localrun.to_epoch(now - 5 * M), per_minute=1
    )
    events += datagen.brute_force(
        factory, org.members[0], at=localrun.to_epoch(now - 30 * M), ip="203.0.113.9"
    ).events
    events += datagen.vault_export(factory, org.members[1], at=localrun.to_epoch(now - 20 * M)).events
    loaded = localrun.ingest(localrun.rows_from_events(events), lag=M)
    runs = RunLog(now)
    runs.every_minute(60 * M, 10 * M, sent=3)
    runs.every_minute(9 * M, M, "failed")
    con = localrun.connect(loaded, runs.rows)
    for sample in UI["sampleQueries"]:
        assert localrun.execute(sample["query"], con), sample["description"]
    for graph in UI["graphQueries"]:
        assert localrun.execute(graph["baseQuery"] + "\n| count", con)[0]["Count"] > 0, graph["metricName"]
    [last] = localrun.execute(UI["sampleQueries"][0]["query"], con)[:1]
    assert (last["Outcome"], last["ErrorClass"], last["ConsecutiveFailures"]) == (
        "failed",
        "SourceAuthError",
        9,
    )


def test_the_docs_show_the_connectivity_query_and_every_health_column() -> None:
    doc = (bt.REPO_ROOT / "docs" / "sentinel.md").read_text(encoding="utf-8")
    page = doc[doc.index("## The connector page") : doc.index("## The health rows and the health incident")]
    (query,) = UI["connectivityCriteria"][0]["value"]
    assert "\n".join("  " + line for line in query.split("\n")) in page
    health = doc[doc.index("## The health rows and the health incident") :]
    for column in HEALTH.columns:
        # A "|" inside a table cell is escaped, or it would split the cell.
        assert f"| `{column.name}` | {column.description.replace('|', chr(92) + '|')} |" in health
