"""The delivery guarantees, proven end to end on real local components.

NordPass simulator over real HTTP, the real LogsIngestionClient against the HTTPS stand-in with the
real ManagedIdentityCredential against the token endpoint, and Azurite for the checkpoint. Each
scenario compares what landed with the simulator's ground truth: zero loss, zero duplicates unless
the scenario says otherwise.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import pytest

from nordpass_connector.errors import CheckpointConflict
from nordpass_connector.pipeline import RunFailed, run_once
from sandbox.datagen import EventFactory, brute_force
from sandbox.ingestion import Fault
from sandbox.nordpass_sim import RequestRecord
from tests.harness import Sandbox

DAY = 86_400


def test_first_run_backfills_seven_days_then_steady_ticks_lose_nothing(
    sandbox: Sandbox, event_factory: EventFactory
) -> None:
    sb, f = sandbox, event_factory
    now = int(sb.clock.now())
    older = f.background(now - 9 * DAY, now - 7 * DAY - 5, per_minute=0.2)
    history = f.background(now - 7 * DAY, now - 90, per_minute=0.5)
    sb.sim.add(older + history)

    report = sb.tick(0)
    assert report.outcome == "ok", report.error
    assert report.checkpoint_before is None or report.checkpoint_before["done_to"] is None
    sb.assert_exactly_once(history)  # nothing older than 7 days, everything inside
    assert report.sent == len(history)

    source = list(history)
    arrivals: list[dict[str, Any]] = []

    def arrive_during_paging(record: RequestRecord) -> None:
        # New events keep arriving while the connector pages (timestamps at "now").
        if isinstance(record.body, dict) and not arrivals:
            fresh = f.background(int(sb.clock.now()) - 20, int(sb.clock.now()), per_minute=30)
            arrivals.extend(fresh)
            sb.sim.add(fresh)

    sb.sim.on_request = arrive_during_paging
    for tick in range(6):
        t = int(sb.clock.now())
        new = f.background(t, t + 59, per_minute=20)
        late = f.background(t - 300, t - 240, per_minute=10)  # minutes behind
        burst_event = f.event("login", "user_login_failed", at=t + 30, user=f.org.members[tick])
        burst = [burst_event, dict(burst_event), dict(burst_event)]  # identical-content burst
        sb.sim.add(new + burst)
        source += new + burst
        report = sb.tick(60)
        assert report.outcome == "ok", report.error
        sb.sim.add(late)  # shows up after the tick that covered its time
        source += late
    source += arrivals
    for _ in range(3):
        assert sb.tick(300).outcome == "ok"  # let the lookback settle everything
    sb.assert_exactly_once(source)
    assert arrivals, "the paging hook never fired"


@pytest.mark.parametrize("order", ["asc", "desc", "shuffled-but-stable"])
@pytest.mark.parametrize(
    ("from_inclusive", "to_inclusive"), [(True, True), (False, False), (True, False), (False, True)]
)
def test_any_sort_order_and_bound_inclusivity(
    sandbox: Sandbox, event_factory: EventFactory, order: str, from_inclusive: bool, to_inclusive: bool
) -> None:
    sb, f = sandbox, event_factory
    sb.sim.configure(order=order, from_inclusive=from_inclusive, to_inclusive=to_inclusive)
    sb.overrides["NORDPASS_MAX_WINDOW_EVENTS"] = "150"  # many windows, many shared boundaries
    now = int(sb.clock.now())
    source = f.background(now - 2 * DAY, now - 61, per_minute=0.6)
    # Pile events onto a few seconds so window edges land on busy seconds.
    for second in range(now - 2 * DAY, now - 60, 7_200):
        source += [
            f.event("item_access", "item_viewed", at=second, user=f.org.members[i % 9]) for i in range(12)
        ]
    sb.sim.add(source)
    for _ in range(8):
        report = sb.tick(0)
        assert report.outcome == "ok", report.error
        if report.caught_up:
            break
    assert report.windows >= 1
    t = int(sb.clock.now())
    late = f.background(t - 400, t - 100, per_minute=6)
    sb.sim.add(late)
    for _ in range(3):
        assert sb.tick(120).outcome == "ok"
    sb.assert_exactly_once(source + late)


def test_faults_on_both_sides_at_twenty_percent_catch_up_with_nothing_lost(
    sandbox: Sandbox, event_factory: EventFactory
) -> None:
    sb, f = sandbox, event_factory
    sb.sim.configure(
        fault_rate=0.2,
        fault_seed=3,
        fault_kinds=("429", "429-retry-after", "500", "502", "503", "slow", "drop"),
        retry_after="0",
        slow_seconds=0.2,
    )
    for status in (429, 500, 502, 503):
        sb.ingestion.fail(status, times=None, rate=0.04)
    sb.ingestion.add_fault(Fault("status", 429, retry_after="0", times=None, rate=0.04))
    sb.ingestion.add_fault(Fault("drop", times=None, rate=0.04))
    sb.overrides["NORDPASS_MAX_WINDOW_EVENTS"] = "2000"
    now = int(sb.clock.now())
    source = f.background(now - 3 * DAY, now - 61, per_minute=3)
    sb.sim.add(source)
    outcomes = Counter()
    for _ in range(25):
        report = sb.tick(0)
        outcomes[report.outcome] += 1
        if report.outcome == "ok" and report.caught_up:
            break
    sb.sim.configure(fault_rate=0.0)
    sb.ingestion.clear_faults()
    assert sb.tick(120).outcome == "ok"
    sb.assert_exactly_once(source)
    retried = sb.sim.requests
    assert any(r.fault for r in retried), "no NordPass fault was injected"
    assert any(c.status != 204 for c in sb.ingestion.calls) or outcomes["failed"], "no ingestion fault"


def test_two_runs_at_once_one_stops_cleanly_and_nothing_is_sent_twice(
    sandbox: Sandbox, event_factory: EventFactory
) -> None:
    sb, f = sandbox, event_factory
    now = int(sb.clock.now())
    source = f.background(now - DAY, now - 61, per_minute=3)
    sb.sim.add(source)
    sb.sim.configure(latency=0.02)

    # Both runs read the same checkpoint before either claims it: the ETag decides.
    both_loaded = threading.Barrier(2, timeout=20)
    results: dict[str, Any] = {}

    def run(name: str) -> None:
        with sb.connector() as c:
            real_load = c.store.load

            def load_then_wait() -> Any:
                stored = real_load()
                both_loaded.wait()
                return stored

            c.store.load = load_then_wait  # type: ignore[method-assign]
            try:
                results[name] = run_once(c, run_id=name)
            except RunFailed as failure:
                results[name] = failure

    threads = [threading.Thread(target=run, args=(n,)) for n in ("run-a", "run-b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    failures = [r for r in results.values() if isinstance(r, RunFailed)]
    assert len(failures) == 1, results
    assert isinstance(failures[0].cause, CheckpointConflict)
    assert failures[0].report.sent == 0
    assert "another run" in failures[0].cause.action

    # And a run that starts while another holds the lease stops before sending anything.
    sb.sim.add(f.background(now, now + 50, per_minute=20))
    sb.clock.advance(120)
    with sb.connector() as holder, sb.connector() as late:
        started = threading.Event()
        original = holder.sink.send

        def slow_send(*args: Any, **kwargs: Any) -> Any:
            started.set()
            return original(*args, **kwargs)

        holder.sink.send = slow_send  # type: ignore[method-assign]
        t = threading.Thread(target=lambda: results.__setitem__("holder", run_once(holder, run_id="holder")))
        t.start()
        assert started.wait(20)
        with pytest.raises(RunFailed) as caught:
            run_once(late, run_id="late")
        t.join(60)
    assert isinstance(caught.value.cause, CheckpointConflict)
    assert caught.value.report.sent == 0
    assert sb.tick(600).outcome == "ok"
    sb.assert_exactly_once(sb.sim.events())


def test_identical_failed_logins_in_one_second_are_distinct_rows(
    sandbox: Sandbox, event_factory: EventFactory
) -> None:
    sb, f = sandbox, event_factory
    now = int(sb.clock.now())
    attack = brute_force(f, f.org.members[0], at=now - 600, ip="198.51.100.23", attempts=6).events
    twin = f.event("login", "user_login_failed", at=now - 300, user=f.org.members[1])
    source = attack + [twin, dict(twin)]
    sb.sim.add(source)
    assert sb.tick(0).outcome == "ok"
    rows = [r for r in sb.ingestion.rows() if r["timestamp"] == now - 300]
    assert len(rows) == 2
    assert {r["EventId"][-2:] for r in rows} == {"-0", "-1"}
    sb.assert_exactly_once(source)
