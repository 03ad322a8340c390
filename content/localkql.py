"""What a Log Analytics workspace provides beyond its tables, stood in for locally so duckdb-kql can
run the ASIM parsers and hunting queries as written.

* **Stored functions.** The parsers are workspace functions (`savedSearches` with a
  `functionAlias`); duckdb-kql runs registered stored functions (`duckdb_kql.set_functions` /
  `functions=`), so each parser is registered with its declared parameters and its body as deployed.
  duckdb-kql takes arguments by position only, so a call with named arguments
  (`vimAuthenticationNordPass(disabled=disabled)`) is rewritten to the positional call Kusto would
  bind it to, filling the declared defaults; `positional_calls` does only that.
* **`geo_info_from_ip_address()`** is a Kusto built-in backed by a geolocation database that
  duckdb-kql does not have. Locally the call is replaced by a `let` function over the documentation
  address ranges the sandbox uses (`GEO_STAND_IN`): members sit in TEST-NET-1/2 (placed in
  Lithuania), attackers in TEST-NET-3 (placed in Brazil). In Log Analytics the real database
  answers instead (and documentation addresses resolve to nothing).
* **`ingestion_time()`** is mapped to the explicit ingestion column, as for the analytic rules
  (`content.localrun.executable_form`).
* **Other tables** (Entra ID `SigninLogs` for the correlation hunting query) are created on demand
  with only the columns a test gives them.

Nothing else in the query text changes; the unmodified text goes through the Kusto analyzer.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import duckdb_kql
from duckdb_kql.engine import schema as duckdb_schema

from content import localrun
from content.asim import Param, Parser
from content.duckdb_types import column_definitions

# Documentation prefix -> the fields of geo_info_from_ip_address() the parsers and queries read.
GEO_STAND_IN: Mapping[str, Mapping[str, Any]] = {
    "192.0.2.": {
        "country": "Lithuania",
        "state": "Vilnius County",
        "city": "Vilnius",
        "latitude": 54.69,
        "longitude": 25.28,
    },
    "198.51.100.": {
        "country": "Lithuania",
        "state": "Kaunas County",
        "city": "Kaunas",
        "latitude": 54.9,
        "longitude": 23.9,
    },
    "203.0.113.": {
        "country": "Brazil",
        "state": "Sao Paulo",
        "city": "Sao Paulo",
        "latitude": -23.55,
        "longitude": -46.63,
    },
}
_GEO_CALL = re.compile(r"\bgeo_info_from_ip_address\(")
_GEO_LOCAL = "_local_geo_info_from_ip_address"


def _geo_function() -> str:
    branches = ", ".join(
        f"ip startswith '{prefix}', dynamic({json.dumps(dict(fields))})"
        for prefix, fields in GEO_STAND_IN.items()
    )
    return f"let {_GEO_LOCAL} = (ip:string) {{ case({branches}, dynamic({{}})) }};\n"


def _with_geo_stand_in(text: str) -> str:
    if not _GEO_CALL.search(text):
        return text
    return _geo_function() + _GEO_CALL.sub(f"{_GEO_LOCAL}(", text)


def _split_args(text: str) -> list[str]:
    """Top-level comma split of an argument list (quotes, brackets and parentheses respected)."""
    args: list[str] = []
    depth, quote, start = 0, "", 0
    for i, ch in enumerate(text):
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            args.append(text[start:i].strip())
            start = i + 1
    if text[start:].strip():
        args.append(text[start:].strip())
    return args


def _closing(text: str, open_at: int) -> int:
    depth, quote = 0, ""
    for i in range(open_at, len(text)):
        ch = text[i]
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                return i
    raise ValueError(f"unbalanced parentheses after position {open_at}")


_NAMED_ARG = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s*=(?!=)\s*(.+)$", re.S)


def positional_calls(text: str, signatures: Mapping[str, Sequence[Param]]) -> str:
    """Rewrite calls of the given functions that use named arguments into positional calls."""
    if not signatures:
        return text
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, signatures)) + r")\s*\(")
    out: list[str] = []
    pos = 0
    for match in pattern.finditer(text):
        if match.start() < pos:
            continue
        open_at = match.end() - 1
        close_at = _closing(text, open_at)
        params = signatures[match.group(1)]
        args = _split_args(text[open_at + 1 : close_at])
        if not any(_NAMED_ARG.match(a) for a in args):
            continue
        values = [p.default for p in params]
        index = {p.name: i for i, p in enumerate(params)}
        for position, arg in enumerate(args):
            named = _NAMED_ARG.match(arg)
            if named:
                if named.group(1) not in index:
                    raise ValueError(f"{match.group(1)} has no parameter {named.group(1)}")
                values[index[named.group(1)]] = named.group(2).strip()
            else:
                values[position] = arg
        out.append(text[pos : match.start()])
        out.append(f"{match.group(1)}({', '.join(values)})")
        pos = close_at + 1
    out.append(text[pos:])
    return "".join(out)


def executable(text: str, parsers: Sequence[Parser] = ()) -> str:
    """The form of a query (or function body) duckdb-kql runs: see the module docstring."""
    signatures = {p.name: p.params for p in parsers}
    return _with_geo_stand_in(positional_calls(localrun.executable_form(text), signatures))


def function_definitions(parsers: Sequence[Parser]) -> tuple[str, ...]:
    """Each parser as a duckdb-kql stored-function definition, in its executable form."""
    return tuple(
        f"function {p.name}({p.function_parameters}) {{\n{executable(p.query, parsers)}\n}}" for p in parsers
    )


_translations: dict[tuple[str, tuple[str, ...], str], str] = {}


def called(text: str, parsers: Sequence[Parser]) -> list[Parser]:
    """The parsers `text` calls, directly or through another parser."""
    by_name = {p.name: p for p in parsers}
    found: dict[str, Parser] = {}
    pending = [text]
    while pending:
        current = pending.pop()
        for name, parser in by_name.items():
            if name not in found and re.search(rf"\b{name}\b", current):
                found[name] = parser
                pending.append(parser.query)
    return [p for p in parsers if p.name in found]


def execute(query: str, con: Any, parsers: Sequence[Parser] = ()) -> list[dict[str, Any]]:
    """Run `query` on a connection from `localrun.connect()` (plus any `load_table`), with the
    parsers available as stored functions; result rows as dicts."""
    # Only the functions the query reaches are registered: translating a definition costs time.
    parsers = called(query, parsers)
    definitions = function_definitions(parsers)
    text = executable(query, parsers)
    schema = duckdb_schema(con)
    # The translation depends on which tables exist (a fuzzy union drops a missing one).
    key = (text, definitions, repr(schema))
    sql = _translations.get(key)
    if sql is None:
        sql = str(duckdb_kql.to_sql(text, schema=schema, functions=list(definitions)))
        _translations[key] = sql
    relation = con.sql(sql)
    names = [d[0] for d in relation.description]
    return [dict(zip(names, values, strict=True)) for values in relation.fetchall()]


def load_table(con: Any, name: str, columns: Mapping[str, str], rows: Iterable[Mapping[str, Any]]) -> None:
    """(Re)create table `name` with `columns` (Kusto types) holding exactly `rows`."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ValueError(f"not a table name: {name!r}")
    con.execute(f'DROP TABLE IF EXISTS "{name}"')
    con.execute(f'CREATE TABLE "{name}" ({column_definitions(columns.items())})')
    records = [
        [
            json.dumps(row.get(c)) if t == "dynamic" and row.get(c) is not None else row.get(c)
            for c, t in columns.items()
        ]
        for row in rows
    ]
    if records:
        con.executemany(f'INSERT INTO "{name}" VALUES ({", ".join("?" for _ in columns)})', records)


def drop_table(con: Any, name: str) -> None:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ValueError(f"not a table name: {name!r}")
    con.execute(f'DROP TABLE IF EXISTS "{name}"')
