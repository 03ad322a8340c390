"""The workbook's queries executed on a generated day of data with duckdb-kql.

The Kusto analyzer (test_content_kql.py) checks every tile. This module also runs them, with the
parameters substituted the way the workbook does, so an empty or wrongly filtered tile shows up.
`ingestion_time()` is rewritten to the local ingestion column (see content/localrun.py). The
"longest gaps" tile uses `prev()`, which duckdb-kql cannot run: it is covered by the analyzer only.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from content import kql, localrun
from sandbox import datagen

NEEDS_PREV = {"workbook/group-health/health-gaps"}


@pytest.fixture(scope="module")
def day() -> tuple[list[localrun.LoadedRow], datagen.Org]:
    org = datagen.make_org(7, members=20)
    f = datagen.EventFactory(org, seed=7)
    now = localrun.utcnow()
    events = f.background(
        localrun.to_epoch(now - timedelta(hours=20)),
        localrun.to_epoch(now - timedelta(minutes=5)),
        per_minute=0.3,
    )
    return localrun.ingest(localrun.rows_from_events(events), lag=timedelta(minutes=2)), org


def _queries() -> list[tuple[str, str]]:
    workbook = kql.load_workbook()
    constants = kql.workbook_constants(workbook)
    return [(where, kql.substitute(text, 0, constants)) for where, text in kql.workbook_queries(workbook)]


def test_every_tile_returns_rows_on_a_day_of_data(day: tuple[list[localrun.LoadedRow], Any]) -> None:
    loaded, _ = day
    con = localrun.connect(loaded)
    queries = _queries()
    assert {where for where, _ in queries} >= NEEDS_PREV
    for where, text in queries:
        if where in NEEDS_PREV:
            assert "prev(" in text
            continue
        assert localrun.execute(text, con), f"{where} returned no rows"


def test_user_and_action_filters_narrow_the_tiles(day: tuple[list[localrun.LoadedRow], datagen.Org]) -> None:
    loaded, _ = day
    con = localrun.connect(loaded)
    workbook = kql.load_workbook()
    constants = dict(kql.workbook_constants(workbook))
    texts = dict(kql.workbook_queries(workbook))
    constants |= {"TimeRange": "> ago(1d)", "Users": "'*'", "Actions": "'*'"}
    tile = texts["workbook/group-admin/admin-users"]
    everyone = localrun.execute(kql.substitute(tile, 0, constants), con)
    assert len(everyone) > 1
    chosen = everyone[-1]["User"]
    constants |= {"Users": f"'{chosen}'"}
    rows = localrun.execute(kql.substitute(tile, 0, constants), con)
    assert [r["User"] for r in rows] == [chosen]
    constants |= {"Users": "'*'", "Actions": "'lock.master_validated'"}
    rows = localrun.execute(kql.substitute(texts["workbook/group-logins/logins-actions"], 0, constants), con)
    assert [r["Pair"] for r in rows] == ["lock.master_validated"]
