"""`requiredDataConnectors` of every analytic rule and hunting query names the data connector this
repository deploys, and only data types it declares.

The one source of truth is the connector page's `id` in `content/data-connectors/
NordPass.connector.json` (`NordPassActivityConnector`), which is also the name of the deployed
`dataConnectorDefinitions` resource. Sentinel matches a content item's `connectorId` against the
connectors of the workspace to show whether the item's data source is connected, so an item that
named the official solution's connector (`NordPass`) would point at a page that is not ours, or at
nothing. Using an id of our own also keeps our page from replacing the official one when both
solutions are installed in one workspace.

`deploy/build_template.py` refuses content that breaks this, so a stale id can never ship.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]  # PyYAML ships no stubs; only safe_load is used

CONTENT_DIR = Path(__file__).resolve().parent
CONTENT_KINDS = ("analytic-rules", "hunting-queries")

# Tables of other connectors an item may read besides ours (Microsoft's ids for them).
OTHER_CONNECTORS: Mapping[str, frozenset[str]] = {"AzureActiveDirectory": frozenset({"SigninLogs"})}


def content_items(content_dir: Path = CONTENT_DIR) -> list[tuple[str, Mapping[str, Any]]]:
    """(source, YAML mapping) of every analytic rule and hunting query."""
    items: list[tuple[str, Mapping[str, Any]]] = []
    for kind in CONTENT_KINDS:
        for path in sorted((content_dir / kind).glob("*.yaml")):
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
            items.append((f"content/{kind}/{path.name}", data if isinstance(data, dict) else {}))
    return items


def _mentions(query: str, table: str) -> bool:
    return re.search(rf"\b{re.escape(table)}\b", query) is not None


def problems(item: Mapping[str, Any], source: str, connector: Mapping[str, Any]) -> list[str]:
    """What is wrong with `item`'s requiredDataConnectors, given the deployed connector page."""
    ours = str(connector["id"])
    our_types = {str(d["name"]) for d in connector.get("dataTypes", [])}
    entries = item.get("requiredDataConnectors")
    if not isinstance(entries, list) or not entries:
        return [f"{source}: requiredDataConnectors must list {ours!r}"]
    foreign = [
        f"{source}: requiredDataConnectors names {connector_id!r}; the deployed data connector is "
        f"{ours!r} (the id in content/data-connectors/), with data types {sorted(our_types)}"
        for connector_id in _foreign_connectors(entries, ours)
    ]
    if foreign:
        return foreign
    mine = [e for e in entries if isinstance(e, dict) and e.get("connectorId") == ours]
    if len(mine) != 1:
        return [f"{source}: requiredDataConnectors must name {ours!r} exactly once (found {len(mine)})"]
    declared = set(mine[0].get("dataTypes") or [])
    return _data_type_problems(declared, our_types, str(item.get("query", "")), source, ours)


def _foreign_connectors(entries: list[Any], ours: str) -> list[object]:
    """Connector ids of entries that are neither ours nor another connector an item may read."""
    found: list[object] = []
    for entry in entries:
        connector_id = entry.get("connectorId") if isinstance(entry, dict) else None
        types = set(entry.get("dataTypes") or []) if isinstance(entry, dict) else set()
        if connector_id == ours:
            continue
        other = OTHER_CONNECTORS.get(str(connector_id), frozenset())
        if not (types and types <= other):
            found.append(connector_id)
    return found


def _data_type_problems(
    declared: set[str], our_types: set[str], query: str, source: str, ours: str
) -> list[str]:
    """Our entry's data types against what the connector declares and what the query reads."""
    found: list[str] = []
    if not declared:
        found.append(f"{source}: {ours!r} lists no dataTypes")
    for table in sorted(declared - our_types):
        found.append(f"{source}: data type {table!r} is not one the {ours!r} connector declares")
    for table in sorted(our_types - declared):
        if _mentions(query, table):
            found.append(f"{source}: the query reads {table} but requiredDataConnectors does not list it")
    for table in sorted(declared & our_types):
        if not _mentions(query, table):
            found.append(f"{source}: requiredDataConnectors lists {table} but the query does not read it")
    return found


def check(items: Iterable[tuple[str, Mapping[str, Any]]], connector: Mapping[str, Any]) -> list[str]:
    return [problem for source, item in items for problem in problems(item, source, connector)]
