"""The ASIM parsers and hunting queries as the templates deploy them: `savedSearches` in the content
deployment of both `azuredeploy.json` and `sentinel-content.json`, built from the YAML files and
nothing else, valid against the vendored `Microsoft.OperationalInsights` 2025-07-01 schema, and,
read back from the committed template, still accepted by the Kusto analyzer as functions.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from content import asim, hunting, kql
from deploy import build_template as bt
from tests.arm_lint import DEPLOYMENT, SCHEMA_PREFIX, Json, registry

PARSERS = asim.load_parsers()
QUERIES = hunting.load_queries()
TEMPLATES = [bt.TEMPLATE_PATH, bt.CONTENT_TEMPLATE_PATH]


def _content_resources(path: Path) -> list[Json]:
    template = json.loads(path.read_text(encoding="utf-8"))
    (content,) = [
        r for r in template["resources"] if r["type"] == DEPLOYMENT and "content" in r["name"].lower()
    ]
    resources: list[Json] = content["properties"]["template"]["resources"]
    return resources


def _unescape(value: Any) -> Any:
    return value[1:] if isinstance(value, str) and value.startswith("[[") else value


def _saved_searches(path: Path, category: str) -> dict[str, Json]:
    """Saved searches of one category in a template's content deployment, by resource name."""
    found = {}
    for resource in _content_resources(path):
        if resource["type"] == bt.SAVED_SEARCHES and resource["properties"]["category"] == category:
            name = resource["name"]
            # "[format('{0}/{1}', parameters('workspaceName'), 'vimAuthenticationNordPass')]"
            found[name.rsplit("'", 2)[-2]] = resource
    return found


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_every_parser_is_a_workspace_function(path: Path) -> None:
    functions = _saved_searches(path, "ASIM")
    assert set(functions) == {p.name for p in PARSERS}
    for parser in PARSERS:
        resource = functions[parser.name]
        props = resource["properties"]
        assert props["functionAlias"] == parser.name
        assert props["functionParameters"] == parser.function_parameters
        assert _unescape(props["query"]) == parser.query
        assert props["displayName"] == parser.title
        assert resource["etag"] == "*"  # a redeploy replaces the previous release's function
        if parser.filtering:
            assert "dependsOn" not in resource
        else:
            # The parameter-less parser calls its filtering parser: created after it.
            assert resource["dependsOn"] == [
                f"[resourceId('{bt.SAVED_SEARCHES}', parameters('workspaceName'), "
                f"'{parser.schema.filtering_parser}')]"
            ]


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_every_hunting_query_is_a_saved_search_in_the_hunting_category(path: Path) -> None:
    searches = _saved_searches(path, "Hunting Queries")
    assert set(searches) == {q.id for q in QUERIES}
    for query in QUERIES:
        props = searches[query.id]["properties"]
        assert props["displayName"] == query.name
        assert _unescape(props["query"]) == query.query
        tags = {t["name"]: t["value"] for t in props["tags"]}
        assert tags["tactics"].split(",") == query.tactics
        assert tags["techniques"].split(",") == sorted(
            {t.split(".")[0] for t in query.techniques}, key=[t.split(".")[0] for t in query.techniques].index
        )
        assert tags["description"] == query.description
        assert "functionAlias" not in props


def test_hunting_category_is_the_one_sentinel_lists() -> None:
    assert bt.HUNTING_CATEGORY == hunting.CATEGORY == "Hunting Queries"


def _validator() -> Any:
    from jsonschema import Draft4Validator  # type: ignore[import-untyped]

    version = bt.API_VERSIONS[bt.SAVED_SEARCHES]
    ref = f"{SCHEMA_PREFIX}{version}/Microsoft.OperationalInsights.json#/resourceDefinitions/workspaces_savedSearches"
    return Draft4Validator({"$ref": ref}, registry=registry())


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_saved_searches_validate_against_the_vendored_schema(path: Path) -> None:
    validator = _validator()
    searches = [r for r in _content_resources(path) if r["type"] == bt.SAVED_SEARCHES]
    assert len(searches) == len(PARSERS) + len(QUERIES)
    errors = [f"{r['name']}: {e.message}" for r in searches for e in validator.iter_errors(r)]
    assert not errors, errors


def test_schema_check_catches_a_broken_saved_search() -> None:
    validator = _validator()
    resource = _content_resources(bt.CONTENT_TEMPLATE_PATH)[-1]
    broken = json.loads(json.dumps(resource))
    assert not list(validator.iter_errors(resource))
    del broken["properties"]["category"]
    assert list(validator.iter_errors(broken))
    broken = json.loads(json.dumps(resource))
    broken["properties"]["tags"] = [{"name": "tactics"}]  # a tag without a value
    assert list(validator.iter_errors(broken))


def test_deployed_functions_analyse_as_written() -> None:
    """The functions exactly as the template declares them (alias, parameter string, query) are
    what the Kusto analyzer accepts and what the hunting queries and registration lines call."""
    functions = [
        {
            "name": r["properties"]["functionAlias"],
            "parameters": f"({r['properties']['functionParameters']})",
            "body": "{\n" + _unescape(r["properties"]["query"]) + "\n}",
        }
        for r in _content_resources(bt.TEMPLATE_PATH)
        if r["type"] == bt.SAVED_SEARCHES and r["properties"].get("functionAlias")
    ]
    queries = [(f["name"], f"{f['name']} | take 1") for f in functions]
    queries += [(f"register:{s.name}", s.custom_unifier()) for s in asim.SCHEMAS.values()]
    results = kql.check(queries, functions=functions)
    problems = [f"{r.id}: {d.code} {d.message}" for r in results for d in r.errors]
    assert not problems, problems
    assert all(r.columns and ("EventSchema", "string") in r.columns for r in results)
