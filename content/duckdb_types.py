"""The DuckDB column type that stands in for each Kusto column type, in the local copies of Log
Analytics tables: the rule and hunting runners (`content.localrun`, `content.localkql`) and the Logs
Ingestion stand-in (`sandbox.ingestion`). One map, so a column lands with the same type everywhere.

It imports no DuckDB: the ingestion stand-in's count-only store (benchmarks) never loads it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final

from nordpass_connector.schema import Table

# Keys are Kusto type names; the schema writes `boolean`, hand-written tables may write `bool`.
DUCKDB_TYPES: Final[Mapping[str, str]] = {
    "string": "VARCHAR",
    "long": "BIGINT",
    "int": "INTEGER",
    "real": "DOUBLE",
    "bool": "BOOLEAN",
    "boolean": "BOOLEAN",
    "datetime": "TIMESTAMP",
    "dynamic": "JSON",
}


def column_definitions(columns: Iterable[tuple[str, str]]) -> str:
    """`"Name" TYPE, ...` for CREATE TABLE, from (name, Kusto type) pairs."""
    return ", ".join(f'"{name}" {DUCKDB_TYPES[kusto_type]}' for name, kusto_type in columns)


def table_columns(table: Table) -> str:
    """`"Name" TYPE, ...` of one of the connector's tables (`nordpass_connector.schema`)."""
    return column_definitions((c.name, c.type) for c in table.columns)
