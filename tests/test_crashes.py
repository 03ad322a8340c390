"""The process dies at every step boundary; the next runs lose nothing.

A crash is a `BaseException` raised at the boundary, so none of the connector's own error handling
runs (no lease release, no further commit): from the outside it is the same as a killed process.
The next run starts from a new connector (nothing kept in memory) after the dead run's lease has
expired.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from nordpass_connector.pipeline import Connector, run_once
from sandbox.datagen import EventFactory
from tests.harness import Sandbox, deliverable, expected_ids

DAY = 86_400


class Crash(BaseException):
    """The process dies here."""


def _crash_on(
    nth: int, before: Callable[..., Any] | None, after: Callable[..., Any] | None
) -> Callable[..., Any]:
    calls = {"n": 0}

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        hit = calls["n"] == nth
        if hit and before is not None:
            raise Crash(f"before call {nth}")
        result = (after or (lambda *a, **k: None))(*args, **kwargs)
        if hit:
            raise Crash(f"after call {nth}")
        return result

    return wrapped


def _arm(c: Connector, point: str, nth: int) -> None:
    if point == "after_fetch":
        c.reader.read = _crash_on(nth, None, c.reader.read)  # type: ignore[method-assign]
    elif point == "before_upload":
        c.sink.send = _crash_on(nth, c.sink.send, c.sink.send)  # type: ignore[method-assign]
    elif point == "after_upload_before_commit":
        c.sink.send = _crash_on(nth, None, c.sink.send)  # type: ignore[method-assign]
    elif point == "during_commit_not_written":
        c.store.commit = _crash_on(nth, c.store.commit, c.store.commit)  # type: ignore[method-assign]
    elif point == "during_commit_written":
        c.store.commit = _crash_on(nth, None, c.store.commit)  # type: ignore[method-assign]
    else:  # pragma: no cover
        raise AssertionError(point)


POINTS = [
    "after_fetch",
    "before_upload",
    "after_upload_before_commit",
    "during_commit_not_written",
    "during_commit_written",
]


@pytest.mark.parametrize("point", POINTS)
@pytest.mark.parametrize("nth", [1, 3])
def test_killed_at_every_step_boundary_loses_nothing(
    sandbox: Sandbox, event_factory: EventFactory, point: str, nth: int
) -> None:
    sb, f = sandbox, event_factory
    sb.overrides["NORDPASS_MAX_WINDOW_EVENTS"] = "400"
    now = int(sb.clock.now())
    source = f.background(now - 3 * DAY, now - 61, per_minute=1)
    sb.sim.add(source)

    with sb.connector() as c:
        _arm(c, point, nth)
        with pytest.raises(Crash):
            run_once(c)
    in_flight = (
        sb.ingestion.calls[-1].records if point == "after_upload_before_commit" and sb.ingestion.calls else 0
    )

    # The dead run still holds its lease: a run inside the lease stops cleanly, one after it resumes.
    blocked = sb.tick(1)
    assert blocked.outcome == "busy"
    assert blocked.sent == 0
    for _ in range(10):
        report = sb.tick(120)
        assert report.outcome == "ok", report.error
        if report.caught_up:
            break
    assert sb.tick(900).outcome == "ok"

    delivered = sb.delivered()
    expected = expected_ids(deliverable(source))
    assert set(delivered) == set(expected), "events lost or invented"
    duplicated = {k: v for k, v in delivered.items() if v > 1}
    if point == "after_upload_before_commit":
        # The one request that was acknowledged but not committed is sent again: its rows carry
        # the same EventIds, so KQL can drop them (`summarize arg_max(...) by EventId`).
        assert 0 < len(duplicated) <= in_flight
        assert all(v == 2 for v in duplicated.values())
    else:
        assert duplicated == {}


@pytest.mark.parametrize("point", ["before_upload", "after_upload_before_commit", "during_commit_written"])
def test_killed_with_uploads_in_flight_resends_at_most_those_requests(
    sandbox: Sandbox, event_factory: EventFactory, point: str
) -> None:
    """With two uploads in flight, a killed process can leave two acknowledged batches
    uncommitted: the next run sends those rows again (same EventIds), and nothing else twice."""
    sb, f = sandbox, event_factory
    in_flight_limit = 2
    sb.overrides["NORDPASS_MAX_WINDOW_EVENTS"] = "6000"
    sb.overrides["NORDPASS_UPLOAD_CONCURRENCY"] = str(in_flight_limit)
    now = int(sb.clock.now())
    source = f.background(now - 40 * 3_600, now - 61, per_minute=5)
    sb.sim.add(source)

    with sb.connector() as c:
        _arm(c, point, 4)
        with pytest.raises(Crash):
            run_once(c)
    crash_calls = list(sb.ingestion.calls)
    # The batches of a window go out two at a time: several were sent before the crash.
    assert len(crash_calls) >= 3
    at_risk = sum(call.records for call in crash_calls[-in_flight_limit:])

    for _ in range(10):
        report = sb.tick(120)
        assert report.outcome == "ok", report.error
        if report.caught_up:
            break
    assert report.caught_up

    delivered = sb.delivered()
    assert set(delivered) == set(expected_ids(deliverable(source))), "events lost or invented"
    duplicated = {k: v for k, v in delivered.items() if v > 1}
    assert len(duplicated) <= at_risk
    assert all(v == 2 for v in duplicated.values())
    if point != "before_upload":
        assert duplicated, "an acknowledged, uncommitted batch is expected to be sent again"
