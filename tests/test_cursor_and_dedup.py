"""Pure window planning, ledger and dedup. No I/O, no fakes."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from nordpass_connector.cursor import (
    MAX_SPAN_SECONDS,
    Checkpoint,
    Ledger,
    WindowPolicy,
    clamp_to_retention,
    complete_window,
    floor_after,
    next_window,
    overlap_probe,
)
from nordpass_connector.dedup import ledger_key, select_new
from nordpass_connector.mapping import canonical_digest
from nordpass_connector.ports import Window

POLICY = WindowPolicy(lookback_seconds=600, safety_delay_seconds=60)
NOW = 1_760_000_000


def _event(ts: int, n: int = 0) -> dict[str, Any]:
    return {"type": "login", "action": "user_login_failed", "timestamp": ts, "user": {"uuid": f"u{n}"}}


def test_first_run_starts_exactly_backfill_days_back_and_ends_before_now() -> None:
    cp = Checkpoint.first_run(now=NOW, backfill_days=7)
    window = next_window(cp, now=NOW, policy=POLICY, span=MAX_SPAN_SECONDS)
    assert window == Window(NOW - 7 * 86_400, NOW - 60)


def test_unfinished_window_is_resumed_with_its_frozen_end() -> None:
    cp = Checkpoint(floor=NOW - 1000, current=Window(NOW - 1001, NOW - 500))
    assert next_window(cp, now=NOW + 3600, policy=POLICY, span=10) == Window(NOW - 1001, NOW - 500)


def test_nothing_to_read_until_time_passes_the_last_signpost() -> None:
    cp = Checkpoint(floor=NOW - 600, done_to=NOW - 60)
    assert next_window(cp, now=NOW, policy=POLICY, span=MAX_SPAN_SECONDS) is None
    assert next_window(cp, now=NOW + 1, policy=POLICY, span=MAX_SPAN_SECONDS) == Window(NOW - 601, NOW - 59)


def test_completed_window_keeps_a_trailing_overlap_for_late_events() -> None:
    cp = Checkpoint(floor=NOW - 3600)
    window = Window(NOW - 3601, NOW - 60)
    complete_window(cp, window, fetched_at=NOW, policy=POLICY)
    assert cp.floor == NOW - 600 and cp.done_to == NOW - 60 and cp.current is None
    following = next_window(cp, now=NOW + 60, policy=POLICY, span=MAX_SPAN_SECONDS)
    assert following == Window(NOW - 601, NOW)


def test_backlog_window_settles_to_its_end_and_prunes_the_ledger() -> None:
    cp = Checkpoint(floor=NOW - 7 * 86_400)
    for ts in (NOW - 7 * 86_400 + 5, NOW - 6 * 86_400, NOW - 6 * 86_400 - 1):
        cp.ledger.add(canonical_digest(_event(ts)), ts)
    window = Window(NOW - 7 * 86_400 - 1, NOW - 6 * 86_400)
    assert floor_after(cp, window, fetched_at=NOW, policy=POLICY) == window.end
    complete_window(cp, window, fetched_at=NOW, policy=POLICY)
    assert cp.floor == window.end
    assert sorted(cp.ledger.seconds()) == [window.end - 1, window.end]


def test_floor_never_moves_backwards() -> None:
    cp = Checkpoint(floor=NOW)
    complete_window(cp, Window(NOW - 1, NOW + 30), fetched_at=NOW + 31, policy=POLICY)
    assert cp.floor == NOW


def test_long_outage_is_clamped_to_the_api_reach_with_the_gap_reported() -> None:
    cp = Checkpoint(floor=NOW - 200 * 86_400)
    gap = clamp_to_retention(cp, now=NOW)
    assert gap is not None and gap.start == NOW - 200 * 86_400
    assert cp.floor == gap.end and NOW - cp.floor < MAX_SPAN_SECONDS
    assert clamp_to_retention(cp, now=NOW) is None


def test_probe_needs_empty_bounds() -> None:
    cp = Checkpoint(floor=NOW - 600, done_to=NOW - 60)
    for ts in (NOW - 300, NOW - 60, NOW - 61):
        cp.ledger.add(canonical_digest(_event(ts)), ts)
    window = next_window(cp, now=NOW + 60, policy=POLICY, span=MAX_SPAN_SECONDS)
    assert window == Window(NOW - 601, NOW)
    probe = overlap_probe(cp, window)
    assert probe is not None and probe.end == NOW - 62 and probe.known_events == 1
    cp.ledger.add(canonical_digest(_event(window.start)), window.start)
    assert overlap_probe(cp, window) is None


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2**40), st.binary(min_size=8, max_size=8)), max_size=200))
def test_ledger_round_trips_through_checkpoint_fields(entries: list[tuple[int, bytes]]) -> None:
    cp = Checkpoint(
        floor=5, current=Window(4, 9), done_to=3, newest_delivered=8, lease_owner="r", lease_until=9
    )
    for ts, digest in entries:
        cp.ledger.add(digest, ts)
    back = Checkpoint.from_fields(cp.to_fields())
    assert back.ledger.entries == cp.ledger.entries
    assert (back.floor, back.current, back.done_to, back.newest_delivered) == (5, Window(4, 9), 3, 8)


def test_only_the_counted_ledger_chunks_are_read() -> None:
    """A row may hold a chunk property beyond LedgerChunks (e.g. written by an older version):
    it must never be mistaken for part of the ledger."""
    cp = Checkpoint(floor=5)
    cp.ledger.add(b"\x01" * 8, 7)
    fields = cp.to_fields()
    assert fields["LedgerChunks"] == 1
    fields["Ledger1"] = b"\x02" * 16
    assert Checkpoint.from_fields(fields).ledger.entries == cp.ledger.entries


def test_dedup_counts_occurrences_not_distinct_values() -> None:
    burst = [_event(NOW), _event(NOW), _event(NOW + 1)]
    ledger = Ledger()
    first = select_new(burst[:1], ledger)
    assert len(first.rows) == 1
    for row in first.rows:
        ledger.add(*ledger_key(row))
    second = select_new(burst, ledger)
    assert second.duplicates == 1 and len(second.rows) == 2
    ids = [r["EventId"] for r in first.rows + second.rows]
    assert len(set(ids)) == 3 and sorted(i[-2:] for i in ids) == ["-0", "-0", "-1"]


def test_selection_order_is_independent_of_the_api_order() -> None:
    events = [_event(NOW + i % 5, i % 3) for i in range(30)]
    shuffled = events[:]
    random.Random(4).shuffle(shuffled)
    a, b = select_new(events, Ledger()), select_new(shuffled, Ledger())
    assert [r["EventId"] for r in a.rows] == [r["EventId"] for r in b.rows]
    assert a.newest == NOW + 4


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 20), st.integers(0, 2)), min_size=1, max_size=60),
    st.lists(st.floats(0, 1), min_size=1, max_size=6),
    st.randoms(use_true_random=False),
)
def test_overlapping_rereads_deliver_every_occurrence_exactly_once(
    specs: list[tuple[int, int]], fractions: list[float], rnd: random.Random
) -> None:
    """Whatever part of the events each read returns, in whatever order, the union of what is
    sent equals the source multiset and every id is unique."""
    source = [_event(NOW + ts, who) for ts, who in specs]
    ledger, sent = Ledger(), []
    for fraction in [*fractions, 1.0]:
        visible = source[: max(1, int(len(source) * fraction))]
        read = visible[:]
        rnd.shuffle(read)
        selection = select_new(read, ledger)
        for row in selection.rows:
            ledger.add(*ledger_key(row))
        sent.extend(selection.rows)
    ids = [row["EventId"] for row in sent]
    assert len(ids) == len(set(ids))
    sent_content = Counter((r["timestamp"], r["user_uuid"]) for r in sent)
    assert sent_content == Counter((e["timestamp"], e["user"]["uuid"]) for e in source)
