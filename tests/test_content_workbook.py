"""The workbook's queries executed on a generated day of data with duckdb-kql.

The Kusto analyzer (test_content_kql.py) checks every tile. This module also runs them, with the
parameters substituted the way the workbook does, so an empty or wrongly filtered tile shows up.
`ingestion_time()` is rewritten to the local ingestion column (see content/localrun.py). The
"longest gaps" tile uses `prev()`, which duckdb-kql cannot run: it is covered by the analyzer only.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from content import kql, localrun
from sandbox import datagen
from tests.health_rows import RunLog

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


def health_day(now: datetime) -> list[dict[str, Any]]:
    """The connector's health rows for the same day: a run a minute, with a token outage of 15 runs
    in the middle (SourceAuthError)."""
    runs = RunLog(now)
    runs.every_minute(timedelta(hours=20), timedelta(minutes=615), sent=18, fetched=20)
    runs.every_minute(timedelta(minutes=614), timedelta(minutes=600), "failed")
    runs.every_minute(timedelta(minutes=599), timedelta(minutes=1), sent=18, fetched=20)
    return runs.rows


def _queries() -> list[tuple[str, str]]:
    workbook = kql.load_workbook()
    constants = kql.workbook_constants(workbook)
    return [(where, kql.substitute(text, 0, constants)) for where, text in kql.workbook_queries(workbook)]


def test_every_tile_returns_rows_on_a_day_of_data(day: tuple[list[localrun.LoadedRow], Any]) -> None:
    loaded, _ = day
    con = localrun.connect(loaded, health_day(localrun.utcnow()))
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


def test_health_tiles_show_the_outage_and_the_last_run(day: tuple[list[localrun.LoadedRow], Any]) -> None:
    """The runs tiles read NordPassConnectorHealth_CL: the outage appears by error class with the
    connector's own message and what to do, the status tile shows the run that recovered."""
    loaded, _ = day
    con = localrun.connect(loaded, health_day(localrun.utcnow()))
    workbook = kql.load_workbook()
    constants = dict(kql.workbook_constants(workbook)) | {"TimeRange": "> ago(1d)", "TimeRange:grain": "1h"}
    texts = dict(kql.workbook_queries(workbook))

    def tile(name: str) -> list[dict[str, Any]]:
        return localrun.execute(kql.substitute(texts[f"workbook/group-health/{name}"], 0, constants), con)

    [status] = tile("health-runs-status")
    assert (status["Instance"], status["LastOutcome"], status["ConsecutiveFailures"]) == ("default", "ok", 0)
    assert (status["Runs"], status["FailedRuns"], status["CaughtUp"]) == (1200, 15, True)
    assert (status["HeldWindows"], status["HeldStuck"]) == (0, False)
    assert status["MinutesSinceLastRun"] < 5
    [errors] = tile("health-runs-errors")
    assert (errors["ErrorClass"], errors["Outcome"], errors["Runs"]) == ("SourceAuthError", "failed", 15)
    assert "create a new one in the Admin Panel" in errors["LastMessage"]
    outcomes = tile("health-runs-outcomes")
    assert sum(r["Runs"] for r in outcomes if r["Outcome"] == "failed") == 15
    assert sum(r["Runs"] for r in outcomes) == 1200
    assert sum(r["Sent"] for r in tile("health-runs-events")) == 18 * 1185
    assert sum(r["Deduplicated"] for r in tile("health-runs-events")) == 0
