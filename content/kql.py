"""Semantic KQL check of every rule, workbook and connector-page query with the real Kusto analyzer.

All queries are sent to one `node content/tools/kql-check.js` process: loading the Kusto bundle
costs more than analysing dozens of queries, so batching keeps the check to about two seconds.
The table schemas come from `nordpass_connector.schema`, the contract the connector and the DCR
use, so a rule that drifts from a table fails here.

Run `python -m content.kql` for a CI-style report (exit 1 on any error).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]  # PyYAML ships no stubs; only safe_load is used

from nordpass_connector.schema import TABLES

CONTENT_DIR = Path(__file__).resolve().parent
REPO_ROOT = CONTENT_DIR.parent
RULES_DIR = CONTENT_DIR / "analytic-rules"
WORKBOOK_PATH = CONTENT_DIR / "workbooks" / "NordPass.workbook.json"
CONNECTOR_PATH = CONTENT_DIR / "data-connectors" / "NordPass.connector.json"
CHECKER = CONTENT_DIR / "tools" / "kql-check.js"
KUSTO_PACKAGE = REPO_ROOT / "node_modules" / "@kusto" / "language-service-next"

# Values a workbook substitutes for its parameters before it runs a query. Both shapes the time
# picker produces are covered: a relative range and a custom absolute one.
WORKBOOK_PARAMETER_VALUES: Mapping[str, Sequence[str]] = {
    "TimeRange": ("> ago(1d)", "between (datetime(2025-01-01T00:00:00Z) .. datetime(2025-01-02T00:00:00Z))"),
    "TimeRange:start": ("datetime(2025-01-01T00:00:00Z)",),
    "TimeRange:end": ("datetime(2025-01-02T00:00:00Z)",),
    "TimeRange:grain": ("1h",),
    "Users": ("'*'", "'ada.lovelace@acme10.example', 'alan.turing@acme10.example'"),
    "Actions": ("'*'", "'login.user_login_failed'"),
    "Platforms": ("'*'", "'web'"),
}
_PARAMETER = re.compile(r"\{([A-Za-z][A-Za-z0-9_]*(?::[A-Za-z]+)?)\}")


class KqlCheckUnavailable(RuntimeError):
    """node or the Kusto language-service package is missing."""


@dataclass(frozen=True)
class Diagnostic:
    severity: str
    code: str
    message: str
    start: int
    length: int


@dataclass(frozen=True)
class QueryResult:
    id: str
    text: str
    diagnostics: tuple[Diagnostic, ...]
    columns: tuple[tuple[str, str], ...] | None

    @property
    def errors(self) -> tuple[Diagnostic, ...]:
        return tuple(d for d in self.diagnostics if d.severity == "Error")

    @property
    def column_names(self) -> frozenset[str]:
        return frozenset(name for name, _ in self.columns or ())


def kusto_tables() -> list[dict[str, str]]:
    """Every custom table the connector writes (events and health), from `schema.TABLES`."""
    return [{"name": table.name, "schema": table.kusto_schema()} for table in TABLES]


def rule_paths() -> list[Path]:
    return sorted(RULES_DIR.glob("*.yaml"))


def load_rule(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as fh:
        data = yaml.safe_load(fh)
    if not isinstance(data, dict):
        raise ValueError(f"{path.name}: not a YAML mapping")
    return data


def load_workbook(path: Path = WORKBOOK_PATH) -> dict[str, Any]:
    with path.open(encoding="utf-8") as fh:
        data: dict[str, Any] = json.load(fh)
    return data


def _walk_items(items: Sequence[Any], trail: str) -> Iterator[tuple[str, str]]:
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            continue
        name = str(item.get("name") or index)
        content = item.get("content") or {}
        where = f"{trail}/{name}"
        if isinstance(content.get("query"), str) and content["query"].strip():
            yield where, content["query"]
        for param in content.get("parameters") or ():
            if isinstance(param, dict) and isinstance(param.get("query"), str) and param["query"].strip():
                yield f"{where}/param:{param.get('name')}", param["query"]
        if isinstance(content.get("items"), list):
            yield from _walk_items(content["items"], where)


def workbook_queries(workbook: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(location, raw query text) for every query item and query-backed parameter."""
    return list(_walk_items(workbook.get("items") or [], "workbook"))


def parameters_in(text: str) -> set[str]:
    return set(_PARAMETER.findall(text))


def workbook_constants(workbook: Mapping[str, Any]) -> dict[str, str]:
    """Hidden text parameters with a fixed value (the per-tab pair lists): substituted as written."""
    constants: dict[str, str] = {}

    def collect(items: Sequence[Any]) -> None:
        for item in items:
            if not isinstance(item, dict):
                continue
            content = item.get("content") or {}
            for param in content.get("parameters") or ():
                if isinstance(param, dict) and param.get("type") == 1 and isinstance(param.get("value"), str):
                    constants[str(param["name"])] = param["value"]
            collect(content.get("items") or [])

    collect(workbook.get("items") or [])
    return constants


def substitute(text: str, variant: int = 0, constants: Mapping[str, str] | None = None) -> str:
    """The query as the workbook would run it, with the `variant`-th sample of each parameter."""

    def value(match: re.Match[str]) -> str:
        if constants and match.group(1) in constants:
            return constants[match.group(1)]
        samples = WORKBOOK_PARAMETER_VALUES.get(match.group(1))
        if samples is None:
            raise KeyError(f"no sample value for workbook parameter {{{match.group(1)}}}")
        return samples[min(variant, len(samples) - 1)]

    return _PARAMETER.sub(value, text)


def load_connector(path: Path = CONNECTOR_PATH) -> dict[str, Any]:
    """The data connector page's `connectorUiConfig`."""
    with path.open(encoding="utf-8") as fh:
        data: dict[str, Any] = json.load(fh)
    return data


def connector_queries(ui: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(location, KQL) for every query of the connector page: graphs, samples, last data received
    per data type and the connectivity criteria."""
    queries = [
        (f"connector/graph:{g['metricName']}", str(g["baseQuery"])) for g in ui.get("graphQueries", [])
    ]
    queries += [
        (f"connector/sample:{q['description']}", str(q["query"])) for q in ui.get("sampleQueries", [])
    ]
    queries += [
        (f"connector/lastData:{d['name']}", str(d["lastDataReceivedQuery"])) for d in ui.get("dataTypes", [])
    ]
    for i, criterion in enumerate(ui.get("connectivityCriteria", [])):
        queries += [
            (f"connector/connected:{i}.{j}", str(v)) for j, v in enumerate(criterion.get("value") or [])
        ]
    return queries


def content_queries() -> list[tuple[str, str]]:
    """Every query to check: rule queries as written, workbook queries in each parameter variant,
    and the data connector page's queries."""
    queries = [(f"rule:{p.name}", str(load_rule(p)["query"])) for p in rule_paths()]
    if CONNECTOR_PATH.exists():
        queries += connector_queries(load_connector())
    if WORKBOOK_PATH.exists():
        workbook = load_workbook()
        constants = workbook_constants(workbook)
        variants = max(len(v) for v in WORKBOOK_PARAMETER_VALUES.values())
        for where, text in workbook_queries(workbook):
            for variant in range(variants):
                queries.append((f"{where}#{variant}", substitute(text, variant, constants)))
    return queries


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        raise KqlCheckUnavailable("node is not on PATH; install Node.js 20")
    return node


def check(
    queries: Sequence[tuple[str, str]],
    *,
    tables: Sequence[Mapping[str, str]] | None = None,
    overrides: Mapping[str, Sequence[Mapping[str, str]]] | None = None,
    functions: Sequence[Mapping[str, str]] = (),
) -> list[QueryResult]:
    """Analyse `queries` ((id, text) pairs) in one node process; results in the same order.

    `tables` defaults to the connector's table contract. `overrides` gives some query ids their own
    tables (tests use a drifted schema to prove drift is caught, without a second process).
    `functions` declares stored functions (`name`, `parameters` as `(a:type=default, ...)`, `body`
    as `{ ... }`) that the queries may call, as workspace functions such as the ASIM parsers."""
    if not KUSTO_PACKAGE.exists():
        raise KqlCheckUnavailable(f"{KUSTO_PACKAGE} is missing; run `npm ci` in {REPO_ROOT}")
    items: list[dict[str, Any]] = []
    for query_id, text in queries:
        item: dict[str, Any] = {"id": query_id, "text": text}
        if overrides and query_id in overrides:
            item["tables"] = list(overrides[query_id])
        items.append(item)
    payload = {
        "tables": list(tables or kusto_tables()),
        "functions": [dict(f) for f in functions],
        "queries": items,
    }
    proc = subprocess.run(
        [_node(), str(CHECKER)],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=120,
        check=False,
    )
    # Exit 1 only means "some query has errors"; 2 (or anything else) means the check itself broke.
    if proc.returncode not in (0, 1):
        raise KqlCheckUnavailable(f"kql-check.js failed ({proc.returncode}): {proc.stderr.strip()}")
    texts = dict(queries)
    results = []
    for item in json.loads(proc.stdout):
        diagnostics = tuple(
            Diagnostic(d["severity"], d["code"], d["message"], int(d["start"]), int(d["length"]))
            for d in item["diagnostics"]
        )
        columns = None
        if item["columns"] is not None:
            columns = tuple((c["name"], c["type"]) for c in item["columns"])
        results.append(QueryResult(item["id"], texts[item["id"]], diagnostics, columns))
    return results


def main() -> int:
    results = check(content_queries())
    bad = [r for r in results if r.errors]
    for result in bad:
        for d in result.errors:
            snippet = result.text[d.start : d.start + max(d.length, 1)]
            print(f"{result.id}: {d.code} {d.message} (at {d.start}: {snippet!r})")
    print(f"{len(results)} queries analysed, {len(bad)} with errors")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
