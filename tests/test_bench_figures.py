"""The arithmetic behind `make bench`'s freshness and cost figures: pure functions, no timing."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from bench import cost
from bench.freshness import Scenario, Scheduled, SharedClock, analyse, distribution, tick_summary
from nordpass_connector import schema
from nordpass_connector.mapping import canonical_digest, event_id

EVENT = {
    "type": "login",
    "action": "login_failed",
    "timestamp": 1_767_225_600,
    "organization_uuid": "33c922c8-9da0-447a-80d1-c22c2c64f167",
    "user": {"uuid": "a9d77bfa-7558-4495-985a-8d948aa1a138", "email": "a@example.com"},
    "initiator": "a@example.com",
    "metadata": {"ip_address": "198.51.100.7"},
}


def _scheduled(event: dict, *, arrival_lag: float, late: bool = False) -> Scheduled:
    return Scheduled(event["timestamp"], event["timestamp"] + arrival_lag, late, orjson.dumps(event))


def _id(event: dict, occurrence: int = 0) -> str:
    return event_id(canonical_digest(event), occurrence)


def test_delays_pair_identical_copies_in_order_and_count_loss_and_duplicates() -> None:
    other = EVENT | {"timestamp": EVENT["timestamp"] + 5}
    late = EVENT | {"timestamp": EVENT["timestamp"] + 9}
    schedule = [
        _scheduled(EVENT, arrival_lag=1),
        _scheduled(EVENT, arrival_lag=2),  # an identical event, a legitimate repeat
        _scheduled(other, arrival_lag=0.5),
        _scheduled(late, arrival_lag=300, late=True),
    ]
    t = EVENT["timestamp"]
    acks = [
        (_id(EVENT, 1), t + 70.0),
        (_id(EVENT, 0), t + 40.0),
        (_id(other), t + 40.0),
        (_id(other), t + 100.0),
    ]
    got = analyse(schedule, acks)
    assert got["on_time"]["count"] == 3 and got["on_time"]["max"] == 70.0
    assert got["on_time"]["p50"] == 40.0
    assert got["duplicates"] == 1  # `other` acknowledged twice
    assert (got["lost"], got["lost_late"], got["lost_on_time"]) == (1, 1, 0)
    assert got["late"] == {"count": 0}


def test_distribution_is_nearest_rank() -> None:
    values = list(range(1, 101))
    assert distribution(values) == {"count": 100, "p50": 50, "p95": 95, "p99": 99, "max": 100}
    assert distribution([]) == {"count": 0}


def test_the_schedule_keeps_late_and_on_time_lags_in_their_ranges() -> None:
    events = Scenario(60, 5, t0=1_767_225_600, late_share=0.5).events()
    assert len(events) == 300
    late = [e for e in events if e.late]
    assert 100 < len(late) < 200
    assert all(5 <= e.arrival - e.timestamp <= 900 for e in late)
    assert all(0 <= e.arrival - e.timestamp <= 2 for e in events if not e.late)
    assert all(1_767_225_601 <= e.timestamp < 1_767_225_600 + 300 for e in events)


def test_a_shared_clock_moves_every_reader(tmp_path: Path) -> None:
    writer, reader = SharedClock(tmp_path / "clock"), SharedClock(tmp_path / "clock")
    try:
        writer.set(1_000_000.0)
        assert reader.now() == pytest.approx(1_000_000.0, abs=0.5)
        writer.set(2_000_000.0)
        assert reader.now() == pytest.approx(2_000_000.0, abs=0.5)
    finally:
        writer.close()
        reader.close()


def test_billed_bytes_count_values_not_names_nulls_or_syntax() -> None:
    row = {
        "TimeGenerated": "2026-01-01T00:00:00Z",
        "timestamp": 1_767_225_600,
        "event_type": "login",
        "metadata": {"b": 1, "a": "x"},
        "OriginalUserUuid": None,
        "AdditionalFields": {},
        "user_email": "",
    }
    # 20 (datetime) + 10 digits + 5 + len('{"a":"x","b":1}')
    assert cost.billed_bytes(row) == 20 + 10 + 5 + 15
    assert cost.billed_bytes(row, datetime_chars=28) == 28 + 10 + 5 + 15
    assert cost.billed_bytes({"user_email": "é@x"}) == 4  # UTF-8 bytes


def test_flex_bills_at_least_a_second_then_rounds_up_to_100_ms() -> None:
    assert cost.billed_seconds(0.2) == 1.0
    assert cost.billed_seconds(1.0) == 1.0
    assert cost.billed_seconds(1.01) == pytest.approx(1.1)
    assert cost.billed_seconds(2.35) == pytest.approx(2.4)


def test_compute_cost_against_the_free_grant() -> None:
    ticks = [{"seconds": 0.4, "cpu_seconds": 0.1}]
    small, big = cost.compute_cost(ticks, 512), cost.compute_cost(ticks, 2048)
    # 0.5 GB x 1 s (0.4 + 3 x 0.1 stretched for 0.25 core = 0.7 s, billed 1 s) x 43,200
    assert small["gb_seconds_per_month"] == 21_600 and small["within_free_grant"]
    assert big["gb_seconds_per_month"] == 86_400 and big["usd_per_month"] == 0
    slow = cost.compute_cost([{"seconds": 1.5, "cpu_seconds": 0.1}], 2048)
    assert not slow["within_free_grant"]
    assert slow["usd_per_month"] == pytest.approx((2 * 1.5 * 43_200 - 100_000) * 0.000026, abs=0.01)


def test_smallest_safe_memory_keeps_twice_the_peak() -> None:
    assert cost.smallest_safe_memory(125) == 512
    assert cost.smallest_safe_memory(300) == 2048
    assert cost.smallest_safe_memory(1500) == 4096


def test_host_log_levels_use_the_longest_matching_category() -> None:
    levels = {"default": "Information", "Function": "Warning", "Function.f.User": "Information"}
    assert cost.host_level_for("Function.f.User", levels) == cost.HOST_LEVELS["Information"]
    assert cost.host_level_for("Function.f", levels) == cost.HOST_LEVELS["Warning"]
    assert cost.host_level_for("Host.Results", levels) == cost.HOST_LEVELS["Information"]
    assert cost.host_level_for("Functionality", levels) == cost.HOST_LEVELS["Information"]  # not a prefix


def test_app_insights_counts_only_what_host_json_lets_through() -> None:
    records = [["INFO", "nordpass_connector", 500], ["INFO", "nordpass_connector", 500]]  # 2 ticks
    everything = cost.app_insights(records, cost.HOST_LOG_LEVELS_BEFORE, ticks=2)
    quiet = cost.app_insights(records, {"default": "Warning"}, ticks=2)
    assert everything["our_records_per_tick"] == 1 and everything["host_records_per_tick"] == 10
    assert quiet["records_per_tick"] == 0 and quiet["bytes_per_tick"] == 0


def test_an_idle_tick_counts_event_uploads_apart_from_its_health_row() -> None:
    def tick(n: int, delivered: int, uploads: int) -> dict:
        return {
            "tick": n,
            "seconds": 0.2,
            "cpu_seconds": 0.05,
            "outcome": "ok",
            "nordpass_requests": 2,
            "ingestion_requests": uploads,
            "health_requests": 1,
            "delivered": delivered,
        }

    summary = tick_summary([tick(0, 100, 1), tick(1, 5, 1), tick(2, 0, 0), tick(3, 0, 0)])
    assert (summary["idle_ticks"], summary["idle_tick_max_ingestion_requests"]) == (2, 0)
    assert summary["health_requests_per_tick"] == 1.0
    assert summary["ingestion_requests_per_tick"] == round(1 / 3, 2)


def test_health_rows_are_billed_by_their_own_column_types() -> None:
    health_types = {c.name: c.type for c in schema.HEALTH_COLUMNS}
    row = {"TimeGenerated": "2026-01-01T08:26:37Z", "RunId": "abc", "EventsSent": 100, "ErrorClass": None}
    assert cost.billed_bytes(row, types=health_types) == 20 + 3 + 3
    with pytest.raises(KeyError):
        cost.billed_bytes(row)  # the events table has no RunId
    # A healthy tick's row, as the connector builds it: far smaller than the events it reports.
    assert 100 < cost.health_row_billed_bytes() < 400
