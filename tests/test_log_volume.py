"""Application Insights bills every record: a healthy tick writes one line at INFO, details at DEBUG."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from nordpass_connector.composition import run_timer_tick
from sandbox.datagen import EventFactory
from sandbox.nordpass_sim import RequestRecord
from tests.harness import FAST_RETRIES, Sandbox


def _lines(caplog: pytest.LogCaptureFixture, level: int) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name.startswith("nordpass_connector") and r.levelno >= level]


def test_a_healthy_tick_logs_one_line_even_past_due_and_over_a_moving_total(
    sandbox: Sandbox, event_factory: EventFactory, caplog: pytest.LogCaptureFixture
) -> None:
    sb, f = sandbox, event_factory
    now = int(sb.clock.now())
    sb.sim.add(f.background(now - 3_600, now - 90, per_minute=5))
    assert sb.tick(0).outcome == "ok"  # the first run (backfill) is not what this test is about

    t = int(sb.clock.now())
    sb.sim.add(f.background(t, t + 57, per_minute=150))  # two pages in the new minute
    inserted: list[Any] = []

    def insert_while_paging(record: RequestRecord) -> None:
        # An event lands inside the window while its second page is requested: the total moves
        # and the reader reads the window again, which is normal over a live result set.
        if isinstance(record.body, dict) and record.body.get("page") == 2 and not inserted:
            inserted.append(f.event("login", "user_login_failed", at=t + 50, user=f.org.members[0]))
            sb.sim.add(inserted)

    sb.sim.on_request = insert_while_paging
    sb.clock.advance(60)
    caplog.set_level(logging.DEBUG, logger="nordpass_connector")
    report = run_timer_tick(past_due=True, environ=sb.environ(), clock=sb.clock, retry_policy=FAST_RETRIES)

    assert report.outcome == "ok" and inserted, "the insert hook never fired"
    lines = _lines(caplog, logging.INFO)
    assert [r.getMessage()[:14] for r in lines] == ["nordpass run: "], [r.getMessage()[:80] for r in lines]
    details = " ".join(r.getMessage() for r in _lines(caplog, logging.DEBUG))
    assert "past due" in details and "again" in details  # said, at DEBUG
    sb.assert_exactly_once(sb.sim.events())
