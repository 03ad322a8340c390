"""The planner on its own: which windows a run reads, in what order, how far ahead. Pure: plain
values in, windows out; no threads, no clock, no fakes."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from nordpass_connector.checkpoint import Checkpoint
from nordpass_connector.options import RunOptions
from nordpass_connector.planner import MIN_SPAN_SECONDS, WINDOW_FILL_TARGET, Next, Planner, Read
from nordpass_connector.ports import Window
from nordpass_connector.windows import MAX_SPAN_SECONDS, WindowPolicy

NOW = 1_760_000_000
DAY = 86_400
POLICY = WindowPolicy(lookback_seconds=900, safety_delay_seconds=2)
EVENTS = 10_000


def options(**changes: object) -> RunOptions:
    values: dict[str, object] = {
        "backfill_days": 7,
        "run_budget_seconds": 45,
        "window_policy": POLICY,
        "max_window_events": EVENTS,
        "windows_ahead": 2,
        "min_seconds_for_window": 3.0,
    }
    return RunOptions(**(values | changes))  # type: ignore[arg-type]


def backfill() -> Checkpoint:
    return Checkpoint.first_run(now=NOW, backfill_days=7)


def test_the_first_window_is_the_checkpoints_next_one_with_its_probe() -> None:
    first = Planner(options()).first(backfill(), now=NOW, remaining=45)
    assert first == (Window(NOW - 7 * DAY, NOW - 2), None), "a first run reads 7 days in one request"

    # A caught-up checkpoint: the re-read part of the window is counted first (the overlap probe).
    cp = Checkpoint(floor=NOW - 900, done_to=NOW - 62)
    window, probe = Planner(options()).first(cp, now=NOW, remaining=45) or (None, None)
    assert window == Window(NOW - 901, NOW - 2)
    assert probe is not None and probe.end == NOW - 62 and probe.known_events == 0


def test_no_first_window_without_new_time_or_without_budget() -> None:
    caught_up = Checkpoint(floor=NOW - 900, done_to=NOW - 2)
    assert Planner(options()).first(caught_up, now=NOW, remaining=45) is None
    assert Planner(options()).first(backfill(), now=NOW, remaining=3.0) is None
    assert Planner(options()).first(backfill(), now=NOW, remaining=3.01) is not None


def test_an_unfinished_window_is_resumed_as_it_was_frozen() -> None:
    cp = Checkpoint(floor=NOW - DAY, current=Window(NOW - DAY - 1, NOW - DAY + 600))
    assert Planner(options()).first(cp, now=NOW, remaining=45) == (
        Window(NOW - DAY - 1, NOW - DAY + 600),
        None,
    )


def test_a_backlog_read_plans_windows_ahead_sized_by_its_density() -> None:
    planner = Planner(options())
    read = Window(NOW - 7 * DAY, NOW - 7 * DAY + 3_600)
    plan = planner.after(Read(read, read, 2_000, NOW), queued=[], now=NOW, remaining=40)
    span = int(3_600 * EVENTS * WINDOW_FILL_TARGET / 2_000)
    assert planner.span == span == 7_200
    # Each starts one second below where the one before it ends (that end becomes the floor).
    assert plan == Next(
        None,
        (Window(read.end - 1, read.end - 1 + span), Window(read.end + span - 2, read.end + 2 * span - 2)),
    )


def test_the_span_stays_between_a_minute_and_the_apis_ninety_days() -> None:
    planner = Planner(options(windows_ahead=1))
    dense = Window(NOW - 7 * DAY, NOW - 7 * DAY + 10)
    planner.after(Read(dense, dense, 50_000, NOW), queued=[], now=NOW, remaining=40)
    assert planner.span == MIN_SPAN_SECONDS
    empty = Window(NOW - 7 * DAY, NOW - 6 * DAY)
    planner.after(Read(empty, empty, 0, NOW), queued=[], now=NOW, remaining=40)
    assert planner.span == MAX_SPAN_SECONDS


def test_a_narrowed_read_has_its_remainder_read_before_the_windows_queued_after_it() -> None:
    planner = Planner(options())
    planned = Window(NOW - 7 * DAY, NOW - 6 * DAY)
    narrowed = Window(planned.start, planned.start + 1_000)
    queued = [Window(planned.end - 1, planned.end + 5_000)]
    plan = planner.after(Read(planned, narrowed, 8_000, NOW), queued=queued, now=NOW, remaining=40)
    assert plan.first == Window(narrowed.end - 1, planned.end), "the rest of the planned window, no more"
    assert plan.then == (), "two windows are queued already"


def test_a_narrowed_read_with_nothing_queued_plans_from_where_it_stopped() -> None:
    planner = Planner(options(windows_ahead=1))
    planned = Window(NOW - 7 * DAY, NOW - 6 * DAY)
    narrowed = Window(planned.start, planned.start + 1_000)
    plan = planner.after(Read(planned, narrowed, 8_000, NOW), queued=[], now=NOW, remaining=40)
    assert plan.first is None
    assert plan.then == (Window(narrowed.end - 1, narrowed.end - 1 + 500),)


def test_nothing_is_planned_ahead_of_a_window_inside_the_lookback() -> None:
    planner = Planner(options())
    live = Window(NOW - 600, NOW - 2)
    assert planner.after(Read(live, live, 10, NOW), queued=[], now=NOW, remaining=40) == Next()


def test_planning_stops_at_the_newest_settled_second() -> None:
    planner = Planner(options(windows_ahead=4))
    read = Window(NOW - 5_000, NOW - 4_000)
    plan = planner.after(Read(read, read, 1, NOW), queued=[], now=NOW, remaining=40)
    assert plan.then == (Window(read.end - 1, NOW - 2),), "one window up to now - safety delay, then nothing"


def test_the_runs_pace_limits_how_far_ahead_it_reads() -> None:
    planner = Planner(options(windows_ahead=3))
    planner.delivered(4.0)  # the slowest window took 4 s to deliver
    read = Window(NOW - 7 * DAY, NOW - 7 * DAY + 3_600)
    # Each further window needs (windows ahead + 2) x 4 s of budget: 8 s, 12 s, 16 s.
    assert len(planner.after(Read(read, read, 2_000, NOW), queued=[], now=NOW, remaining=8.0).then) == 0
    assert len(planner.after(Read(read, read, 2_000, NOW), queued=[], now=NOW, remaining=12.5).then) == 2
    assert len(planner.after(Read(read, read, 2_000, NOW), queued=[], now=NOW, remaining=99).then) == 3
    planner.delivered(1.0)
    assert planner.slowest_delivery == 4.0, "the slowest delivery is kept"


@settings(max_examples=200, deadline=None)
@given(
    st.integers(60, 30 * DAY),
    st.integers(0, 60_000),
    st.integers(1, 4),
    st.booleans(),
    st.integers(1, 10_000),
)
def test_windows_read_in_order_cover_time_without_gaps(
    span: int, events: int, ahead: int, narrowed: bool, cut: int
) -> None:
    """Whatever a read finds, the windows read after it (remainder, queued, then planned) start at
    or before the previous end and never reach past the newest settled second."""
    planner = Planner(options(windows_ahead=ahead))
    planned = Window(NOW - 60 * DAY, NOW - 60 * DAY + span)
    read = Window(planned.start, planned.start + min(cut, span)) if narrowed else planned
    queued = [Window(planned.end - 1, planned.end + 3_600)] if narrowed else []
    plan = planner.after(Read(planned, read, events, NOW), queued=queued, now=NOW, remaining=40)
    order = [read, *([plan.first] if plan.first else []), *queued, *plan.then]
    for before, after in itertools.pairwise(order):
        assert after.start <= before.end, (before, after)
        assert after.end > before.end or after == queued[0]
    assert all(w.end <= NOW - POLICY.safety_delay_seconds for w in order)
    assert len(queued) + len(plan.then) + (plan.first is not None) <= max(ahead, len(queued) + 1)
