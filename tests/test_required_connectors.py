"""Every analytic rule and hunting query names, in `requiredDataConnectors`, the data connector this
repository deploys (the connector page's `id`, which is also the deployed definition's name) and
only data types that connector declares and the workspace has (`schema.TABLES`).

The official NordPass solution's connector id is `NordPass`; ours is deliberately different (see
content/required_connectors.py), and content that names the official one is refused.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from content import kql, required_connectors
from deploy import build_template as bt
from nordpass_connector.schema import HEALTH, TABLE_NAME, TABLES
from tests.arm_lint import all_resources

UI = kql.load_connector()
ITEMS = required_connectors.content_items()
DEFINITION = "Microsoft.SecurityInsights/dataConnectorDefinitions"


def _deployed_definition_names() -> set[str]:
    template = json.loads(bt.TEMPLATE_PATH.read_text(encoding="utf-8"))
    return {r["name"] for r in all_resources(template) if r["type"] == DEFINITION}


def test_the_items_are_the_rules_and_hunting_queries() -> None:
    sources = {source.split("/")[1] for source, _ in ITEMS}
    assert sources == {"analytic-rules", "hunting-queries"}
    assert len(ITEMS) == len(kql.rule_paths()) + len(
        list((kql.CONTENT_DIR / "hunting-queries").glob("*.yaml"))
    )


@pytest.mark.parametrize(("source", "item"), ITEMS, ids=[s.rsplit("/", 1)[1] for s, _ in ITEMS])
def test_every_item_names_the_deployed_connector_and_existing_data_types(
    source: str, item: dict[str, Any]
) -> None:
    ours = [e for e in item["requiredDataConnectors"] if e["connectorId"] == UI["id"]]
    assert len(ours) == 1, item["requiredDataConnectors"]
    # The id is the deployed definition's name, not the official solution's connector.
    assert UI["id"] in _deployed_definition_names() and UI["id"] != "NordPass"
    declared = set(ours[0]["dataTypes"])
    assert declared and declared <= {d["name"] for d in UI["dataTypes"]} <= {t.name for t in TABLES}
    # Exactly the connector's tables the query reads.
    assert declared == {t.name for t in TABLES if t.name in str(item["query"])}
    # Anything else is another vendor's connector for a table that is not ours.
    for entry in item["requiredDataConnectors"]:
        if entry["connectorId"] != UI["id"]:
            assert set(entry["dataTypes"]) <= required_connectors.OTHER_CONNECTORS[entry["connectorId"]]
    assert required_connectors.problems(item, source, UI) == []


def _mutated(change: Any) -> dict[str, Any]:
    item = next(i for s, i in ITEMS if s.endswith("NordPass-VaultExport.yaml"))
    broken = copy.deepcopy(dict(item))
    change(broken)
    return broken


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda i: i["requiredDataConnectors"][0].__setitem__("connectorId", "NordPass"), "names 'NordPass'"),
        (lambda i: i.__setitem__("requiredDataConnectors", []), "must list"),
        (
            lambda i: i["requiredDataConnectors"][0].__setitem__("dataTypes", ["NordPass_CL"]),
            "'NordPass_CL' is not",
        ),
        (
            lambda i: i["requiredDataConnectors"][0].__setitem__("dataTypes", [HEALTH.name]),
            "does not list it",
        ),
        (
            lambda i: i["requiredDataConnectors"][0].__setitem__("dataTypes", [TABLE_NAME, HEALTH.name]),
            "the query does not read it",
        ),
        (
            lambda i: i["requiredDataConnectors"].append(dict(i["requiredDataConnectors"][0])),
            "exactly once (found 2)",
        ),
        (
            lambda i: i["requiredDataConnectors"].append(
                {"connectorId": "Office365", "dataTypes": ["OfficeActivity"]}
            ),
            "names 'Office365'",
        ),
    ],
    ids=["official-id", "none", "unknown-type", "missing-type", "unread-type", "twice", "unknown-connector"],
)
def test_the_check_refuses_a_broken_copy(change: Any, expected: str) -> None:
    found = required_connectors.problems(_mutated(change), "content/analytic-rules/x.yaml", UI)
    assert any(expected in problem for problem in found), found


def test_the_template_build_refuses_content_naming_another_connector(monkeypatch: pytest.MonkeyPatch) -> None:
    broken = _mutated(lambda i: i["requiredDataConnectors"][0].__setitem__("connectorId", "NordPass"))
    monkeypatch.setattr(
        required_connectors, "content_items", lambda: [("content/analytic-rules/x.yaml", broken)]
    )
    with pytest.raises(
        ValueError, match="names 'NordPass'; the deployed data connector is 'NordPassActivityConnector'"
    ):
        bt.SentinelContent.load()
