"""One health row per run in `NordPassConnectorHealth_CL`, sent through the same DCR as the events.

The row's contract (columns and types from `schema.HEALTH`), then real runs through the composition
root against the sandbox (real LogsIngestionClient, HTTPS stand-in with both streams, Azurite,
NordPass simulator): the row of a success, a failure and a recovery; and a health stream that
refuses (500, 403), stalls, drops the connection or does not exist, which must leave event delivery
exactly-once and the run's outcome and exit unchanged, with one WARNING line.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from nordpass_connector import __version__, composition
from nordpass_connector.errors import SourceAuthError
from nordpass_connector.health import CRASH_MESSAGE, MAX_ERROR_CHARS, health_row, merge_report
from nordpass_connector.pipeline import RunFailed
from nordpass_connector.report import RunReport
from nordpass_connector.schema import HEALTH
from sandbox.datagen import EventFactory
from tests.doubles import MemoryHealthStore
from tests.harness import FAST_RETRIES, Sandbox

T0 = 1_700_000_000
HEALTH_STREAM = HEALTH.stream
PYTHON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "long": (int,),
    "real": (int, float),
    "boolean": (bool,),
    "datetime": (str,),
    "dynamic": (dict, list),
}


def _check_types(row: dict[str, Any]) -> list[str]:
    problems = []
    for column in HEALTH.columns:
        value = row[column.name]
        if value is None:
            continue
        if not isinstance(value, PYTHON_TYPES[column.type]) or (
            column.type in ("long", "real") and isinstance(value, bool)
        ):
            problems.append(f"{column.name}: {value!r} is not {column.type}")
        if column.type == "datetime":
            datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ")
    return problems


# -- the row's contract -----------------------------------------------------------------------------


def _ok_report() -> RunReport:
    r = RunReport(run_id="abc123", started_at="2023-11-14T22:12:40Z")
    r.outcome, r.caught_up, r.fetched, r.sent, r.deduplicated, r.pages = "ok", True, 12, 10, 2, 3
    r.duration_seconds, r.newest_event, r.lag_seconds = 4.2, "2023-11-14T22:12:20Z", 60.0
    r.retries = {"nordpass:429": 2, "ingestion:5xx": 1}
    r.count_set_aside("malformed", 1)
    r.checkpoint_after = {"floor": "2023-11-07T22:00:00Z", "done_to": "2023-11-14T22:11:20Z"}
    return r


def test_the_row_has_exactly_the_health_columns_with_their_types() -> None:
    ok = _ok_report()
    record = merge_report(None, ok, now=T0)
    row = health_row(now=T0, instance="eu", version="1.2.3", report=ok, record=record)
    assert tuple(row) == HEALTH.column_names
    assert _check_types(row) == []
    assert row["TimeGenerated"] == "2023-11-14T22:13:20Z"
    assert (row["RunId"], row["Instance"], row["ConnectorVersion"], row["Outcome"]) == (
        "abc123",
        "eu",
        "1.2.3",
        "ok",
    )
    assert (row["ErrorClass"], row["ErrorMessage"]) == (None, None)
    assert (row["EventsFetched"], row["EventsSent"], row["EventsDeduplicated"], row["EventsSetAside"]) == (
        12,
        10,
        2,
        1,
    )
    assert (row["Retries"], row["RetriesByCause"]) == (3, {"nordpass:429": 2, "ingestion:5xx": 1})
    assert row["CheckpointPosition"] == "2023-11-14T22:11:20Z"
    assert (row["CaughtUp"], row["ConsecutiveFailures"], row["LastSuccessTime"]) == (
        True,
        0,
        row["TimeGenerated"],
    )

    failed = RunReport(run_id="def456", started_at="2023-11-14T22:14:00Z")
    failed.outcome, failed.error_class = "failed", "SourceAuthError"
    failed.error = SourceAuthError("x" * 5000).describe()
    after = merge_report(record, failed, now=T0 + 60)
    row = health_row(now=T0 + 60, instance="eu", version="1.2.3", report=failed, record=after)
    assert _check_types(row) == []
    assert (row["Outcome"], row["ErrorClass"], row["ConsecutiveFailures"]) == ("failed", "SourceAuthError", 1)
    assert len(row["ErrorMessage"]) == MAX_ERROR_CHARS, "bounded"
    assert row["LastSuccessTime"] == "2023-11-14T22:13:20Z" and row["CaughtUp"] is False
    assert row["NewestEventTime"] == ok.newest_event, "the record remembers the newest delivered event"
    assert row["LagSeconds"] == 120.0, "lag keeps growing while runs fail"

    # The health record could not be read: failure count and last success are unknown, not zero.
    unknown = health_row(now=T0 + 60, instance="eu", version="1.2.3", report=failed, record=None)
    assert (unknown["ConsecutiveFailures"], unknown["LastSuccessTime"]) == (None, None)

    # A run that found the checkpoint held (busy): a row of its own, not a failure.
    busy = RunReport(run_id="ghi789", started_at="2023-11-14T22:15:00Z")
    busy.outcome, busy.error_class = "busy", "CheckpointBusy"
    busy.error = "CheckpointBusy: run def456 holds the checkpoint until 2023-11-14T22:16:20Z -> wait"
    held = merge_report(after, busy, now=T0 + 120)
    row = health_row(now=T0 + 120, instance="eu", version="1.2.3", report=busy, record=held)
    assert (row["Outcome"], row["ErrorClass"], row["ConsecutiveFailures"]) == ("busy", "CheckpointBusy", 1)

    # Windows NordPass did not serve consistently, and events repaired on the way.
    ok2 = _ok_report()
    ok2.repaired_events = 2
    ok2.held_windows = [
        {
            "from": "2023-11-14T20:00:00Z",
            "to": "2023-11-14T20:10:00Z",
            "since": "2023-11-14T21:00:00Z",
            "held_seconds": 4400,
            "stuck": True,
            "attempts": 9,
            "reason": "pages did not add up",
        },
        {
            "from": "2023-11-14T22:00:00Z",
            "to": "2023-11-14T22:05:00Z",
            "since": "2023-11-14T22:10:00Z",
            "held_seconds": 200,
            "stuck": False,
            "attempts": 1,
            "reason": "a page repeated",
        },
    ]
    row = health_row(
        now=T0, instance="eu", version="1.2.3", report=ok2, record=merge_report(None, ok2, now=T0)
    )
    assert _check_types(row) == []
    assert (row["RepairedEvents"], row["HeldWindows"], row["HeldStuck"]) == (2, 2, True)
    assert (row["OldestHeldFrom"], row["OldestHeldTo"], row["OldestHeldSince"]) == (
        "2023-11-14T20:00:00Z",
        "2023-11-14T20:10:00Z",
        "2023-11-14T21:00:00Z",
    )
    assert row["HeldReason"] == "pages did not add up"
    assert health_row(now=T0, instance="eu", version="1", report=ok, record=None)["HeldWindows"] == 0

    crash = health_row(
        now=T0, instance="eu", version="1.2.3", report=None, record=None, crash_class="KeyError"
    )
    assert tuple(crash) == HEALTH.column_names and _check_types(crash) == []
    assert (crash["Outcome"], crash["ErrorClass"], crash["ErrorMessage"]) == (
        "crashed",
        "KeyError",
        CRASH_MESSAGE,
    )
    assert crash["RunId"] is None


# -- real runs --------------------------------------------------------------------------------------


def run(
    sb: Sandbox, advance: float = 60, *, health_store: MemoryHealthStore | None = None, **env: str
) -> RunReport:
    sb.clock.advance(advance)
    environ = dict(os.environ) | sb.environ() | env
    return composition.run_from_environment(
        environ, clock=sb.clock, retry_policy=FAST_RETRIES, health_store=health_store
    )


def test_each_run_sends_its_row_success_failure_recovery(
    sandbox: Sandbox, event_factory: EventFactory
) -> None:
    sb, f = sandbox, event_factory
    now = int(sb.clock.now())
    sb.sim.add(f.background(now - 3600, now - 120, per_minute=1))
    first = run(sb, 0)
    [row] = sb.ingestion.health_rows()
    assert (row["RunId"], row["Outcome"], row["Instance"], row["ConnectorVersion"]) == (
        first.run_id,
        "ok",
        "default",
        __version__,
    )
    assert row["EventsSent"] == first.sent == sb.ingestion.accepted_rows > 0
    assert row["EventsFetched"] == first.fetched and row["Pages"] == first.pages
    assert row["ConsecutiveFailures"] == 0 and row["CaughtUp"] is True
    assert row["TimeGenerated"] == datetime.fromtimestamp(int(sb.clock.now()), UTC).replace(tzinfo=None)
    assert row["NewestEventTime"] is not None and row["CheckpointPosition"] is not None
    assert [c.stream for c in sb.ingestion.calls][-1] == HEALTH_STREAM, "the row goes last, after the events"

    sb.sim.configure(auth_status=401)
    for expected in (1, 2):
        with pytest.raises(RunFailed) as failed:
            run(sb)
        row = sb.ingestion.health_rows()[-1]
        assert (row["Outcome"], row["ErrorClass"], row["ConsecutiveFailures"]) == (
            "failed",
            "SourceAuthError",
            expected,
        )
        assert row["ErrorMessage"] == failed.value.cause.describe()
        assert SourceAuthError.action in row["ErrorMessage"]
        assert row["EventsSent"] == 0

    sb.sim.configure(auth_status=None)
    t = int(sb.clock.now())
    sb.sim.add(f.background(t - 60, t + 50, per_minute=5))
    recovered = run(sb)
    rows = sb.ingestion.health_rows()
    assert [r["Outcome"] for r in rows] == ["ok", "failed", "failed", "ok"]
    assert rows[-1]["RunId"] == recovered.run_id and rows[-1]["ConsecutiveFailures"] == 0
    assert len({r["RunId"] for r in rows}) == 4


def test_no_health_rows_when_turned_off(sandbox: Sandbox) -> None:
    run(sandbox, 0, DCR_HEALTH_STREAM_NAME="none")
    assert sandbox.ingestion.health_rows() == []
    assert all(c.stream != HEALTH_STREAM for c in sandbox.ingestion.calls)


def _health_calls(sb: Sandbox) -> list[Any]:
    return [c for c in sb.ingestion.calls if c.stream == HEALTH_STREAM]


def _settled_health_calls(sb: Sandbox, expected: int) -> int:
    """Health requests received. A stalled request is recorded when the client gives up on it,
    which the stand-in notices a moment after the run has moved on; wait (a little) for that."""
    for _ in range(100):
        if len(_health_calls(sb)) >= expected:
            break
        time.sleep(0.05)
    return len(_health_calls(sb))


FAULTS: dict[str, tuple[Callable[[Sandbox], object], int]] = {
    # fault on the health stream only -> health requests expected (one retry for transient ones)
    "500": (lambda sb: sb.ingestion.fail(500, times=None, stream=HEALTH_STREAM), 2),
    "403": (lambda sb: sb.ingestion.fail(403, times=None, stream=HEALTH_STREAM), 1),
    "dropped connection": (lambda sb: sb.ingestion.drop(times=None, stream=HEALTH_STREAM), 2),
    "stalled past the timeout": (lambda sb: sb.ingestion.stall(30, times=None, stream=HEALTH_STREAM), 1),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_a_failing_health_send_changes_nothing_else(
    sandbox: Sandbox,
    event_factory: EventFactory,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    fault: str,
) -> None:
    sb, f = sandbox, event_factory
    monkeypatch.setattr(composition, "HEALTH_ROW_TIMEOUT", 2.0)
    inject, expected_requests = FAULTS[fault]
    inject(sb)
    caplog.set_level(logging.INFO, logger="nordpass_connector")
    now = int(sb.clock.now())
    source = f.background(now - 3600, now - 120, per_minute=2)
    sb.sim.add(source)

    first = run(sb, 0)
    assert first.outcome == "ok" and first.sent > 0
    assert sb.ingestion.health_rows() == []
    assert _settled_health_calls(sb, expected_requests) == expected_requests
    if fault.startswith("stalled"):
        # The run came back while the stand-in was still holding the request (it never answered).
        assert {c.status for c in _health_calls(sb)} == {0}
    warnings = [
        r for r in caplog.records if r.levelno == logging.WARNING and "health row not sent" in r.getMessage()
    ]
    assert len(warnings) == 1, [r.getMessage() for r in caplog.records]
    assert "events are unaffected" in warnings[0].getMessage()
    assert "re-sent" not in warnings[0].getMessage(), "the advice is about the row, not events"

    # The next run carries on from the checkpoint: nothing lost, nothing sent twice.
    t = int(sb.clock.now())
    later = f.background(t - 50, t - 5, per_minute=3)  # readable by the next run (safety delay 60 s)
    sb.sim.add(later)
    second = run(sb)
    assert second.outcome == "ok"
    sb.assert_exactly_once(source + later)

    # A failed run stays failed with its own error, whatever happens to its row.
    sb.sim.configure(auth_status=401)
    with pytest.raises(RunFailed) as failed:
        run(sb)
    assert isinstance(failed.value.cause, SourceAuthError)
    sb.assert_exactly_once(source + later)
    assert _settled_health_calls(sb, 3 * expected_requests) == 3 * expected_requests, "one row per run"


def test_a_dcr_without_the_health_stream_is_one_warning_per_run(
    sandbox: Sandbox, event_factory: EventFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """A DCR deployed before this version has no health stream (404 InvalidStream): the events flow,
    and each run says once what to do."""
    sb = sandbox
    now = int(sb.clock.now())
    source = event_factory.background(now - 1800, now - 120, per_minute=1)
    sb.sim.add(source)
    caplog.set_level(logging.WARNING, logger="nordpass_connector")
    sb.ingestion.declare_health_stream(None)
    try:
        assert run(sb, 0).outcome == "ok"
    finally:
        sb.ingestion.declare_health_stream(HEALTH_STREAM)
    sb.assert_exactly_once(source)
    assert len(_health_calls(sb)) == 1, "a configuration answer is not retried"
    [warning] = [r.getMessage() for r in caplog.records if "health row not sent" in r.getMessage()]
    assert "SinkConfigError" in warning and "404" in warning and HEALTH_STREAM in warning
    assert "DCR_HEALTH_STREAM_NAME=none" in warning and "redeploy the template" in warning


def test_the_wait_for_a_row_is_bounded_whatever_the_reporter_does(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Even a send that never returns (say, a token request that hangs) releases the run: the row is
    abandoned after its wait with one WARNING."""
    release = threading.Event()
    started = threading.Event()

    class Hanging:
        def report(self, row: dict[str, Any], *, timeout: float) -> None:
            started.set()
            release.wait(60)

    caplog.set_level(logging.WARNING, logger="nordpass_connector")
    composition._send_health_row(Hanging(), {"Outcome": "ok"}, wait=1.2)
    assert started.is_set() and not release.is_set(), "returned while the send was still hanging"
    assert [r.getMessage() for r in caplog.records] == [
        "health row not sent: no answer within 1.2 s (ignored; events are unaffected)"
    ]
    release.set()

    # A run that has used its time (budget + HEALTH_ROW_PAST_BUDGET) does not even start a send.
    caplog.clear()
    started.clear()
    composition._send_health_row(
        Hanging(), {"Outcome": "failed"}, wait=composition.HEALTH_ROW_MIN_SECONDS / 2
    )
    assert not started.is_set()
    assert [r.getMessage() for r in caplog.records] == [
        "health row not sent: the run has used its time (ignored; events are unaffected)"
    ]


def test_a_health_record_that_cannot_be_read_still_sends_the_row(sandbox: Sandbox) -> None:
    from nordpass_connector.errors import CheckpointUnavailable

    unreadable = MemoryHealthStore(
        read_error=CheckpointUnavailable("checkpoint health read failed: ServiceResponseError")
    )
    report = run(sandbox, 0, health_store=unreadable)
    [row] = sandbox.ingestion.health_rows()
    assert (row["RunId"], row["Outcome"]) == (report.run_id, "ok")
    assert row["ConsecutiveFailures"] == 0, "a success is 0 failures in a row, record or not"
