"""docs/sentinel.md's sections on ASIM and hunting say what the content does: the
registration lines are the ones the Kusto analyzer accepts (content.asim.registration_line, checked
in test_content_asim.py), every parser and hunting query is listed, and the demo column matches
what the demo plants."""

from __future__ import annotations

import re
from pathlib import Path

from content import asim, hunting
from sandbox import demo_content

SENTINEL_MD = Path(__file__).resolve().parent.parent / "docs" / "sentinel.md"
NUMBERS = {10: "Ten", 11: "Eleven", 12: "Twelve", 13: "Thirteen", 14: "Fourteen", 15: "Fifteen"}


def _section(name: str) -> str:
    text = SENTINEL_MD.read_text(encoding="utf-8")
    start = text.index(f"<!-- section:{name} -->")
    return text[start : text.index(f"<!-- /section:{name} -->")]


def test_registration_lines_are_the_checked_ones() -> None:
    text = _section("in-sentinel-asim")
    rows = dict(re.findall(r"^\s*\| `((?:Im|ASim)_\w+Custom)` \| `([^`]+)` \|", text, re.M))
    expected = {}
    for schema in asim.SCHEMAS.values():
        expected[schema.custom_filtering_unifier] = schema.registration_line()
        expected[schema.custom_parameterless_unifier] = schema.parameterless_parser
    assert rows == expected
    assert asim.SCHEMAS["Authentication"].registration_line() in text.split("```kusto", 1)[1]


def test_every_parser_is_described_with_its_schema_version() -> None:
    text = _section("in-sentinel-asim")
    for parser in asim.load_parsers():
        assert f"`{parser.name}`" in text
        assert f"{parser.schema.name} {parser.schema.version}" in text


def test_every_hunting_query_is_listed_with_what_the_demo_shows() -> None:
    text = _section("in-sentinel-hunting")
    queries = hunting.load_queries()
    assert f"{NUMBERS[len(queries)]} hunting queries" in text
    rows = {
        name: demo
        for name, demo in re.findall(r"^\| ([^|]+?) \| [^|]+ \| [^|]+ \| ([^|]+) \|$", text, re.M)
        if name not in {'Hunting query ("NordPass - …")', "---"}
    }
    assert set(rows) == {q.name.removeprefix("NordPass - ") for q in queries}
    for query in queries:
        demo = rows[query.name.removeprefix("NordPass - ")]
        if query.key in demo_content.NOT_PLANTED:
            assert demo.startswith("not in the sandbox")
            continue
        scenarios = re.findall(r"`(\w+)`", demo)
        assert scenarios, query.key
        for scenario in scenarios:
            assert query.key in demo_content.EXPECTED_HUNTING[scenario], (query.key, scenario)
