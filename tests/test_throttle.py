"""The client-side budget for the per-DCR Logs Ingestion limits: pure, and wired into the sink."""

from __future__ import annotations

import pytest
from azure.monitor.ingestion import LogsIngestionClient

from nordpass_connector.errors import SinkUnavailable
from nordpass_connector.retry import Retrier
from nordpass_connector.throttle import DCR_BYTES_PER_MINUTE, DCR_REQUESTS_PER_MINUTE, RateBudget
from sandbox.ingestion import IngestionStandIn
from tests.test_sink import deadline, make_rows, one_batch, sink_for


class Ticks:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_defaults_stay_under_the_documented_dcr_limits() -> None:
    budget = RateBudget(Ticks())
    assert budget.max_requests < DCR_REQUESTS_PER_MINUTE
    assert budget.max_bytes < DCR_BYTES_PER_MINUTE


def test_request_limit_waits_until_the_oldest_request_leaves_the_minute() -> None:
    clock = Ticks()
    budget = RateBudget(clock, max_requests=3, max_bytes=10**9)
    for step in range(3):
        assert budget.delay_for(10) == 0.0
        budget.record(10)
        clock.t += 5 * (step + 1)  # requests at 1000, 1005, 1015; now 1030
    assert budget.delay_for(10) == pytest.approx(30.0)  # the one at 1000 leaves at 1060
    clock.t = 1060.0
    assert budget.delay_for(10) == 0.0


def test_byte_limit_waits_until_enough_bytes_leave_the_minute() -> None:
    clock = Ticks()
    budget = RateBudget(clock, max_requests=100, max_bytes=1000)
    budget.record(600)
    clock.t += 10
    budget.record(300)
    clock.t += 10
    assert budget.delay_for(100) == 0.0
    assert budget.delay_for(500) == pytest.approx(40.0)  # needs the 600 from t=1000 gone
    assert budget.delay_for(1000) == pytest.approx(50.0)  # needs both gone


def test_sink_waits_for_the_budget_and_gives_up_at_the_deadline(
    logs_client: LogsIngestionClient, ingestion: IngestionStandIn, fast_retrier: Retrier
) -> None:
    budget = RateBudget(fast_retrier.clock.monotonic, max_requests=1, max_bytes=10**9)
    sink = sink_for(logs_client, ingestion, fast_retrier, budget=budget)
    first = sink.send(one_batch(make_rows(3)), deadline=deadline())
    assert first.error is None
    assert sorted(first.delivered) == [0, 1, 2]
    second = sink.send(one_batch(make_rows(3, start=10)), deadline=deadline(2.0))
    assert isinstance(second.error, SinkUnavailable)
    assert "per-minute" in second.error.message
    assert second.delivered == []
    assert len(ingestion.calls) == 1
