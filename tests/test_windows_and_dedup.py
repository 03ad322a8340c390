"""Pure window planning, ledger and dedup. No I/O, no fakes."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from nordpass_connector.adapters.table_store import decode_checkpoint, encode_checkpoint
from nordpass_connector.checkpoint import Checkpoint
from nordpass_connector.dedup import ledger_key, select_new
from nordpass_connector.ledger import Ledger
from nordpass_connector.mapping import canonical_digest
from nordpass_connector.ports import Window
from nordpass_connector.windows import (
    MAX_HELD_WINDOWS,
    MAX_SPAN_SECONDS,
    WindowPolicy,
    clamp_to_retention,
    complete_window,
    floor_after,
    hold_window,
    next_window,
    overlap_probe,
    release_held,
    still_unreadable,
)

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
    back = decode_checkpoint(encode_checkpoint(cp))
    assert back.ledger.entries == cp.ledger.entries
    assert (back.floor, back.current, back.done_to, back.newest_delivered) == (5, Window(4, 9), 3, 8)


def test_only_the_counted_ledger_chunks_are_read() -> None:
    """A row may hold a chunk property beyond LedgerChunks (e.g. written by an older version):
    it must never be mistaken for part of the ledger."""
    cp = Checkpoint(floor=5)
    cp.ledger.add(b"\x01" * 8, 7)
    fields = encode_checkpoint(cp)
    assert fields["LedgerChunks"] == 1
    fields["Ledger1"] = b"\x02" * 16
    assert decode_checkpoint(fields).ledger.entries == cp.ledger.entries


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


# -- held windows -----------------------------------------------------------------------------------


def test_a_held_window_moves_the_floor_but_keeps_its_ledger_until_released() -> None:
    cp = Checkpoint(floor=NOW - 10_000)
    window = Window(NOW - 10_001, NOW - 5_000)  # wholly behind the lookback
    cp.ledger.add(b"\x01" * 8, NOW - 9_000)  # delivered inside it before the read went wrong
    assert hold_window(cp, window, fetched_at=NOW, now=NOW, reason="page 3 repeated page 2", policy=POLICY)
    assert cp.floor == window.end and cp.current is None and cp.done_to == window.end
    assert next_window(cp, now=NOW, policy=POLICY, span=3_600) == Window(
        window.end - 1, window.end - 1 + 3_600
    )
    assert cp.ledger.count(b"\x01" * 8) == 1, "kept: the held window still needs it for dedup"
    (held,) = cp.held
    still_unreadable(cp, held, reason="page 3 came back short")
    assert cp.held[0].attempts == 2 and cp.held[0].reason == "page 3 came back short"
    # Read at last, narrowed to its first half: the rest stays held, from one second below.
    release_held(cp, cp.held[0], Window(window.start, NOW - 7_000))
    assert [h.window for h in cp.held] == [Window(NOW - 7_001, window.end)]
    assert cp.ledger.count(b"\x01" * 8) == 0, "the released part is settled now"
    release_held(cp, cp.held[0], cp.held[0].window)
    assert cp.held == []


def test_touching_held_windows_join_and_too_many_apart_stop_the_run() -> None:
    cp = Checkpoint(floor=NOW - 100_000)
    assert hold_window(
        cp, Window(NOW - 100_001, NOW - 90_000), fetched_at=NOW, now=NOW, reason="a", policy=POLICY
    )
    assert hold_window(
        cp, Window(NOW - 90_001, NOW - 80_000), fetched_at=NOW, now=NOW + 5, reason="b", policy=POLICY
    )
    (joined,) = cp.held
    assert joined.window == Window(NOW - 100_001, NOW - 80_000) and joined.since == NOW
    start = NOW - 79_000
    for i in range(MAX_HELD_WINDOWS - 1):  # apart: settled time between them
        cp.floor = start + 2_000 * i + 1
        assert hold_window(
            cp,
            Window(start + 2_000 * i, start + 2_000 * i + 100),
            fetched_at=NOW,
            now=NOW,
            reason="c",
            policy=POLICY,
        )
    assert len(cp.held) == MAX_HELD_WINDOWS
    before = decode_checkpoint(encode_checkpoint(cp))
    assert not hold_window(
        cp, Window(NOW - 1_000, NOW - 900), fetched_at=NOW, now=NOW, reason="d", policy=POLICY
    )
    assert encode_checkpoint(cp) == encode_checkpoint(before), "nothing changed"


def test_a_held_window_beyond_the_apis_reach_is_reported_as_a_skipped_gap() -> None:
    cp = Checkpoint(floor=NOW - 86_400)
    old = Window(NOW - MAX_SPAN_SECONDS - 5_000, NOW - MAX_SPAN_SECONDS + 10_000)
    cp.floor = old.end
    assert hold_window(cp, old, fetched_at=NOW, now=NOW, reason="x", policy=POLICY)
    cp.floor = NOW - 86_400
    gap = clamp_to_retention(cp, now=NOW)
    assert gap is not None and gap.start == old.start
    (kept,) = cp.held
    assert kept.window.start == gap.end and kept.window.end == old.end
