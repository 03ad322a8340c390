"""The hunting queries: one YAML file each in `content/hunting-queries/`, in the Azure-Sentinel
hunting-query format (`id`, `name`, `description`, `requiredDataConnectors`, `tactics`,
`relevantTechniques`, `query`, `entityMappings`, `version`).

`deploy/build_template.py` turns each into a `savedSearches` resource in the "Hunting Queries"
category, which is what Sentinel's Hunting blade lists. Sentinel does not validate hunting
queries the way it validates analytic rules, so `load_queries` holds them to the same checks the
rules get where they apply (`content.rule_constraints`: GUID id, X.Y.Z version, name and
description length, known tactics, every technique under a listed tactic, entity mappings).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]  # PyYAML ships no stubs; only safe_load is used

from content import rule_constraints

CONTENT_DIR = Path(__file__).resolve().parent
QUERIES_DIR = CONTENT_DIR / "hunting-queries"
CATEGORY = "Hunting Queries"
REQUIRED_KEYS = (
    "id",
    "name",
    "description",
    "requiredDataConnectors",
    "tactics",
    "relevantTechniques",
    "query",
    "version",
)

# Entra ID sign-in logs, as far as the correlation query reads them (the real table has more
# columns). Declared for the Kusto analyzer when checking the query with the table present.
SIGNIN_LOGS_SCHEMA = "(TimeGenerated:datetime, UserPrincipalName:string, ResultType:string, IPAddress:string, AppDisplayName:string, Location:string)"

_CHECKS = (
    rule_constraints.check_id,
    rule_constraints.check_display_name,
    rule_constraints.check_description,
    rule_constraints.check_query,
    rule_constraints.check_tactics,
    rule_constraints.check_techniques_match_tactics,
    rule_constraints.check_entity_mappings,
    rule_constraints.check_version,
)


@dataclass(frozen=True)
class HuntingQuery:
    path: Path
    data: Mapping[str, Any]

    @property
    def key(self) -> str:
        """File stem without the `NordPass-` prefix, the name tests and the demo use."""
        return self.path.stem.removeprefix("NordPass-")

    @property
    def id(self) -> str:
        return str(self.data["id"])

    @property
    def name(self) -> str:
        return str(self.data["name"])

    @property
    def query(self) -> str:
        return str(self.data["query"]).strip()

    @property
    def description(self) -> str:
        text = str(self.data["description"]).strip()
        # Sentinel-repository YAML wraps descriptions in single quotes inside a block scalar.
        if len(text) >= 2 and text[0] == text[-1] == "'":
            text = text[1:-1].strip()
        return " ".join(text.replace("''", "'").split())

    @property
    def tactics(self) -> list[str]:
        return [str(t) for t in self.data.get("tactics") or []]

    @property
    def techniques(self) -> list[str]:
        return [str(t) for t in self.data.get("relevantTechniques") or []]

    @property
    def entity_columns(self) -> set[str]:
        return {
            str(f["columnName"])
            for mapping in self.data.get("entityMappings") or []
            for f in mapping.get("fieldMappings") or []
        }

    def tags(self) -> list[dict[str, str]]:
        """`savedSearches` tags as Sentinel solutions write them for hunting queries. Techniques
        are folded to their parent ids, as the alert-rule API does."""
        parents: list[str] = []
        for technique in self.techniques:
            parent = technique.split(".", 1)[0]
            if parent not in parents:
                parents.append(parent)
        return [
            {"name": "description", "value": self.description},
            {"name": "tactics", "value": ",".join(self.tactics)},
            {"name": "techniques", "value": ",".join(parents)},
        ]


def query_paths(directory: Path = QUERIES_DIR) -> list[Path]:
    return sorted(directory.glob("*.yaml")) if directory.is_dir() else []


def problems(data: Mapping[str, Any], source: str) -> list[str]:
    found = [f"{source}: missing {key}" for key in REQUIRED_KEYS if key not in data]
    if found:
        return found
    rule = rule_constraints.rule_from_yaml(data, source)
    return [f"{source}: {violation}" for check in _CHECKS for violation in check(rule)]


def load_queries(directory: Path = QUERIES_DIR) -> list[HuntingQuery]:
    """Every hunting query, refused (ValueError) when one breaks a check or two share an id."""
    queries: list[HuntingQuery] = []
    found: list[str] = []
    seen: set[str] = set()
    for path in query_paths(directory):
        source = f"content/hunting-queries/{path.name}"
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            found.append(f"{source}: not a YAML mapping")
            continue
        found += problems(data, source)
        if str(data.get("id")) in seen:
            found.append(f"{source}: duplicate id {data.get('id')}")
        seen.add(str(data.get("id")))
        queries.append(HuntingQuery(path, data))
    if found:
        raise ValueError("; ".join(found))
    return queries


def by_key(queries: Sequence[HuntingQuery]) -> dict[str, HuntingQuery]:
    return {q.key: q for q in queries}
