"""Bad input gets a clear, actionable error and loses nothing else (end to end, real components)."""

from __future__ import annotations

import pytest
from azure.data.tables import TableClient

from nordpass_connector.composition import run_from_environment
from nordpass_connector.errors import ConfigurationError, SinkAuthError, SinkConfigError, SourceAuthError
from nordpass_connector.pipeline import RunFailed, run_once
from sandbox.datagen import EventFactory
from tests.harness import FAST_RETRIES, Sandbox

DAY = 86_400


def _run_expecting_failure(sb: Sandbox) -> RunFailed:
    with sb.connector() as c, pytest.raises(RunFailed) as caught:
        run_once(c)
    return caught.value


def test_rejected_token_is_actionable_and_nothing_is_lost(
    sandbox: Sandbox, event_factory: EventFactory
) -> None:
    sb, f = sandbox, event_factory
    now = int(sb.clock.now())
    source = f.background(now - DAY, now - 61, per_minute=1)
    sb.sim.add(source)
    for status in (401, 403):
        sb.sim.configure(auth_status=status)
        failure = _run_expecting_failure(sb)
        assert isinstance(failure.cause, SourceAuthError)
        assert f"HTTP {status}" in failure.cause.message or str(status) in failure.cause.message
        assert "create a new one in the Admin Panel and update NORDPASS_TOKEN" in failure.cause.describe()
        assert sb.token not in failure.cause.describe()
        assert failure.report.outcome == "failed"
        assert failure.report.sent == 0
        sb.clock.advance(60)
    sb.sim.configure(auth_status=None)
    assert sb.tick(60).outcome == "ok"
    sb.assert_exactly_once(source)


def test_missing_settings_are_all_named_before_anything_is_contacted(sandbox: Sandbox) -> None:
    # The token and the NordPass URL stay valid: a run that reached for NordPass (or the DCR, or the
    # checkpoint table) before checking the rest would leave a request behind here.
    environ = sandbox.environ() | {"NORDPASS_PAGE_SIZE": "0"}
    for name in ("DCR_IMMUTABLE_ID", "AzureWebJobsStorage"):
        environ.pop(name)
    environ["AzureWebJobsStorage__accountName"] = ""
    nordpass_before = len(sandbox.sim.requests)
    ingestion_before = len(sandbox.ingestion.calls)
    with pytest.raises(ConfigurationError) as caught:
        run_from_environment(environ, clock=sandbox.clock, retry_policy=FAST_RETRIES)
    assert [p.split(" ", 1)[0] for p in caught.value.problems] == [
        "DCR_IMMUTABLE_ID",
        "checkpoint",
        "NORDPASS_PAGE_SIZE",
    ]
    assert len(sandbox.sim.requests) == nordpass_before
    assert len(sandbox.ingestion.calls) == ingestion_before
    # The same settings with the missing ones filled in do reach NordPass: the check above counts
    # requests the run would make.
    environ.update(
        {k: v for k, v in sandbox.environ().items() if k in ("DCR_IMMUTABLE_ID", "AzureWebJobsStorage")}
    )
    environ.pop("NORDPASS_PAGE_SIZE")
    run_from_environment(environ, clock=sandbox.clock, retry_policy=FAST_RETRIES)
    assert len(sandbox.sim.requests) > nordpass_before


def test_ingestion_403_explains_the_role_and_loses_nothing(
    sandbox: Sandbox, event_factory: EventFactory
) -> None:
    sb, f = sandbox, event_factory
    now = int(sb.clock.now())
    source = f.background(now - DAY, now - 61, per_minute=1)
    sb.sim.add(source)
    sb.ingestion.forbid(times=None)
    failure = _run_expecting_failure(sb)
    assert isinstance(failure.cause, SinkAuthError)
    assert "Monitoring Metrics Publisher" in failure.cause.describe()
    assert "30 minutes" in failure.cause.describe()
    assert failure.report.sent == 0
    assert sb.ingestion.accepted_rows == 0
    sb.ingestion.clear_faults()
    assert sb.tick(60).outcome == "ok"
    sb.assert_exactly_once(source)


def test_ingestion_404_names_the_dcr_settings(sandbox: Sandbox, event_factory: EventFactory) -> None:
    sb, f = sandbox, event_factory
    now = int(sb.clock.now())
    sb.sim.add(f.background(now - 3600, now - 61, per_minute=1))
    sb.overrides["DCR_IMMUTABLE_ID"] = "dcr-" + "f" * 32
    failure = _run_expecting_failure(sb)
    assert isinstance(failure.cause, SinkConfigError)
    assert "DCR_IMMUTABLE_ID" in failure.cause.describe()
    assert failure.report.sent == 0


def test_malformed_and_oversized_events_are_set_aside_and_the_rest_delivered(
    sandbox: Sandbox, event_factory: EventFactory
) -> None:
    sb, f = sandbox, event_factory
    now = int(sb.clock.now())
    good = f.background(now - 7200, now - 61, per_minute=2)
    huge = f.event("item_access", "items_imported", at=now - 3000, user=f.org.members[2])
    huge["metadata"] = {"blob": "x" * 1_100_000}
    millis = dict(f.event("login", "user_login_successful", at=now - 2000), timestamp=(now - 2000) * 1000)
    sb.sim.add([*good, huge])
    sb.sim.add([millis], at=now - 2000)
    sb.sim.add(["not an event object"], at=now - 1000)

    report = sb.tick(0)
    assert report.outcome == "ok", report.error
    assert report.set_aside == 3
    assert report.set_aside_reasons.get("malformed") == 2
    sb.assert_exactly_once(good)

    dead = TableClient.from_connection_string(sb.azurite.connection_string, sb.table + "deadletters")
    letters = list(dead.list_entities())
    reasons = sorted(str(e.get("Reason", "")) for e in letters)
    assert len(letters) == 3, reasons
    assert any("1,000,000" in r or "over the" in r for r in reasons)
    assert any("milliseconds" in r for r in reasons)
    assert any("not a JSON object" in r for r in reasons)

    # Set aside once: the overlap of later runs does not set them aside again or resend anything.
    again = sb.tick(60)
    assert again.outcome == "ok"
    assert again.set_aside == 0
    assert len(list(dead.list_entities())) == 3
    sb.assert_exactly_once(good)


def test_outage_longer_than_ninety_days_is_clamped_with_the_gap_reported(
    sandbox: Sandbox, event_factory: EventFactory, caplog: pytest.LogCaptureFixture
) -> None:
    sb, f = sandbox, event_factory
    now = int(sb.clock.now())
    sb.clock.advance(-120 * DAY)
    assert sb.tick(0).outcome == "ok"  # the last successful run, 120 days ago
    sb.clock.advance(120 * DAY)
    unreachable = f.background(now - 100 * DAY, now - 95 * DAY, per_minute=0.01)
    readable = f.background(now - 30 * DAY, now - 29 * DAY, per_minute=0.2)
    sb.sim.add(unreachable + readable)

    caplog.set_level("WARNING", logger="nordpass_connector")
    report = sb.tick(0)
    assert report.outcome == "ok", report.error
    assert report.skipped_gap is not None
    assert "can no longer be read and are skipped" in caplog.text
    for _ in range(5):
        if report.caught_up:
            break
        report = sb.tick(0)
    sb.assert_exactly_once(readable)
    spans = [
        r.body["timestamp_to"] - r.body["timestamp_from"] for r in sb.sim.requests if isinstance(r.body, dict)
    ]
    assert max(spans) <= 90 * DAY
