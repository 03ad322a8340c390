"""One run of the connector, top to bottom:

    load checkpoint -> plan window -> fetch pages -> map + dedup -> send -> commit -> repeat

until the backlog is delivered or the run's time budget is spent. The checkpoint is the only truth
about progress: it is committed after every acknowledged batch, a window's frozen end is kept until
the window is complete, and a conflicting writer stops the run before it sends anything more.

Three things overlap so that a backfill is bound by neither side's latency: while one window is
delivered, the next ones (`windows_ahead`) are being read, and up to `uploads_in_flight` batches of
the current window are being uploaded while the next batch is packed. Verdicts are recorded in
submission order, on this thread only, so checkpoint commits never race.

This module sees only the ports (`ports.py`) and pure modules; it imports no SDK and no `os`.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from typing import Any

import orjson

from .batching import pack
from .clock import Clock
from .cursor import (
    Checkpoint,
    WindowPolicy,
    clamp_to_retention,
    complete_window,
    is_backlog,
    next_window,
    overlap_probe,
)
from .dedup import Selection, ledger_key, select_new
from .errors import (
    CheckpointConflict,
    CheckpointError,
    CheckpointUnavailable,
    ConnectorError,
    SourceUnavailable,
)
from .mapping import iso_utc
from .ports import (
    Batch,
    CheckpointStore,
    Delivery,
    LogSink,
    SetAsideCode,
    SetAsideRecord,
    StoredCheckpoint,
    Window,
)
from .reader import FetchedWindow, WindowReader
from .report import RunReport, checkpoint_summary
from .retry import Deadline, RetryLog

log = logging.getLogger(__name__)

MIN_SPAN_SECONDS = 60
# Aim new windows at 40 % of the event cap: most need no narrowing, and the windows held at once
# (one being delivered, `windows_ahead` read ahead) stay near 12,000 events: 1M events with 60 %
# took 35 s and 138 MB peak, with 40 % 37 s and 125 MB.
WINDOW_FILL_TARGET = 0.4


@dataclass(frozen=True)
class RunOptions:
    backfill_days: float
    run_budget_seconds: float
    lease_seconds: int
    window_policy: WindowPolicy
    max_window_events: int
    # Do not start reading another window with less than this left of the budget, nor with less
    # than this run's own pace says the window (and those queued before it) will take.
    min_seconds_for_window: float = 3.0
    # Batches uploaded at once. A process killed between an acknowledgement and its commit sends
    # those rows again on the next run (same EventIds), so this also bounds that duplicate.
    uploads_in_flight: int = 3
    # Backlog windows read ahead of the one being delivered (their events wait in memory).
    windows_ahead: int = 2


@dataclass
class Connector:
    """Everything one run needs, built by `composition` (real adapters) or by tests."""

    reader: WindowReader
    sink: LogSink
    store: CheckpointStore
    clock: Clock
    retry_log: RetryLog
    options: RunOptions
    prefetcher: Executor  # reads windows ahead; at least `options.windows_ahead` threads
    uploader: Executor  # uploads batches; at least `options.uploads_in_flight` threads


class RunFailed(ConnectorError):
    """A run that did not finish its work; `report` says how far it got, `cause` why."""

    def __init__(self, report: RunReport, cause: ConnectorError) -> None:
        super().__init__(cause.message, action=cause.action)
        self.report = report
        self.cause = cause
        self.retriable = cause.retriable


def run_once(connector: Connector, *, run_id: str | None = None) -> RunReport:
    """Deliver what is pending, within the time budget. Returns the report; raises RunFailed."""
    c, opts = connector, connector.options
    report = RunReport(run_id=run_id or uuid.uuid4().hex[:12], started_at=iso_utc(int(c.clock.now())))
    started = c.clock.monotonic()
    deadline = Deadline.after(c.clock, opts.run_budget_seconds)
    progress: Progress | None = None
    try:
        progress = Progress.open(c.store, c.clock, opts, owner=report.run_id)
        report.checkpoint_before = checkpoint_summary(progress.checkpoint)
        gap = clamp_to_retention(progress.checkpoint, now=c.clock.now())
        if gap is not None:
            report.skipped_gap = [iso_utc(gap.start), iso_utc(gap.end)]
            log.warning(
                "last delivered position is older than the 90 days the NordPass API serves: events "
                "from %s to %s can no longer be read and are skipped",
                *report.skipped_gap,
            )

        for fetched in _fetched_windows(c, progress.checkpoint, deadline):
            report.windows += 1
            report.pages += fetched.pages
            report.fetched += len(fetched.events)
            progress.begin(fetched.window)

            selection = select_new(fetched.events, progress.checkpoint.ledger)
            fetched.events.clear()  # the raw page objects are no longer needed; free them early
            report.deduplicated += selection.duplicates
            progress.set_aside_malformed(selection, fetched.window, report)

            uploads = Uploads(c, progress, fetched.window, report, deadline)
            out_of_time = False
            for item in pack(selection.rows, max_body_bytes=c.sink.max_body_bytes, keys=selection.keys):
                if deadline.expired():
                    out_of_time = True
                    break
                if isinstance(item, Batch):
                    uploads.submit(item)
                else:
                    progress.set_aside_rows([(item.row, item.reason, item.code)], fetched.window, report)
            if out_of_time:
                uploads.settle_all()
                break  # what was sent is committed; the next run resumes this window
            # The last verdict and the window's completion go into one commit.
            uploads.settle_all(commit_last=False)
            progress.complete(fetched)

        report.caught_up = progress.caught_up(c.clock.now())
        progress.release()
        report.outcome = "ok"
    except ConnectorError as error:
        report.outcome = "conflict" if isinstance(error, CheckpointConflict) else "failed"
        report.error, report.error_class = error.describe(), type(error).__name__
        if progress is not None and not isinstance(error, CheckpointError):
            progress.release_quietly()
        raise RunFailed(report, error) from error
    finally:
        report.retries = c.retry_log.snapshot()
        report.duration_seconds = round(c.clock.monotonic() - started, 3)
        if progress is not None:
            report.checkpoint_after = checkpoint_summary(progress.checkpoint)
            newest = progress.checkpoint.newest_delivered
            if newest is not None:
                report.newest_event = iso_utc(newest)
                report.lag_seconds = round(c.clock.now() - newest, 1)
    return report


def _fetched_windows(c: Connector, checkpoint: Checkpoint, deadline: Deadline) -> Iterator[FetchedWindow]:
    """Read windows in order; while one is being delivered, up to `windows_ahead` more are read.

    Only backlog windows (see `cursor.is_backlog`) are planned ahead: each starts where the one
    before it was planned to end, so they can be read before anything is delivered. A read that
    comes back narrowed (too many events for one window) leaves a remainder, which is read next,
    before the windows planned after it: the sequence stays contiguous and in time order.
    """
    opts = c.options
    policy = opts.window_policy
    window = next_window(checkpoint, now=c.clock.now(), policy=policy, span=policy.max_span_seconds)
    if window is None:
        return
    probe = overlap_probe(checkpoint, window)
    ahead: deque[tuple[Window, Future[FetchedWindow]]] = deque()
    ahead.append((window, c.prefetcher.submit(c.reader.read, window, deadline=deadline, probe=probe)))
    span: int | None = None  # density-based span for planned windows, known after the first read
    # This run's pace: the slowest window delivery seen (between two yields). A window planned
    # now is delivered after those already queued; starting one that cannot finish only wastes
    # reads (it would be read again by the next run), so the ramp-down follows the real pace.
    slowest_delivery = 0.0

    def read(planned: Window) -> tuple[Window, Future[FetchedWindow]]:
        return planned, c.prefetcher.submit(c.reader.read, planned, deadline=deadline)

    def plan_after(previous: Window, *, backlog: bool) -> Window | None:
        needed = max(opts.min_seconds_for_window, (len(ahead) + 2) * slowest_delivery)
        if span is None or not backlog or deadline.remaining() <= needed:
            return None
        planned = Checkpoint(floor=previous.end, done_to=previous.end)
        return next_window(planned, now=c.clock.now(), policy=policy, span=span)

    try:
        while ahead:
            planned, pending = ahead.popleft()
            try:
                fetched = pending.result()
            except SourceUnavailable:
                if deadline.remaining() > opts.min_seconds_for_window:
                    raise
                return  # the budget ran out while reading: not a failure, the next run goes on
            span = _next_span(fetched, opts)
            backlog = is_backlog(checkpoint, fetched.window, fetched_at=fetched.fetched_at, policy=policy)
            if backlog and fetched.window.end < planned.end and ahead:
                # Narrowed: the rest of the planned window goes first, before the windows after it.
                rest = Checkpoint(floor=fetched.window.end, done_to=fetched.window.end)
                remainder = next_window(
                    rest, now=c.clock.now(), policy=policy, span=planned.end - rest.floor + 1
                )
                if remainder is not None:
                    ahead.appendleft(read(remainder))
            while len(ahead) < max(1, opts.windows_ahead):
                if ahead:
                    # A window not read yet will be read at or after now: if it is backlog now, it
                    # will be then.
                    last = ahead[-1][0]
                    last_is_backlog = is_backlog(checkpoint, last, fetched_at=c.clock.now(), policy=policy)
                else:
                    last, last_is_backlog = fetched.window, backlog
                following = plan_after(last, backlog=last_is_backlog)
                if following is None:
                    break
                ahead.append(read(following))
            handed_over = c.clock.monotonic()
            yield fetched
            slowest_delivery = max(slowest_delivery, c.clock.monotonic() - handed_over)
    finally:
        for _, pending in ahead:
            pending.cancel()


def _next_span(fetched: FetchedWindow, opts: RunOptions) -> int:
    """Size the next window from this one's density, so backfills need few narrowing requests."""
    count = max(1, len(fetched.events))
    scaled = fetched.window.span * opts.max_window_events * WINDOW_FILL_TARGET / count
    return int(min(opts.window_policy.max_span_seconds, max(MIN_SPAN_SECONDS, scaled)))


class Uploads:
    """The current window's batches handed to the sink whose verdicts are not recorded yet.

    At most `uploads_in_flight` at once; verdicts are recorded oldest first. When a delivery
    carries an error, the other batches in flight are still awaited and what they delivered is
    recorded before the error is raised: an acknowledged batch is never forgotten by a failing run.
    """

    def __init__(
        self, c: Connector, progress: Progress, window: Window, report: RunReport, deadline: Deadline
    ) -> None:
        self._c, self._progress, self._window, self._report = c, progress, window, report
        self._deadline = deadline
        self._limit = max(1, c.options.uploads_in_flight)
        self._pending: deque[tuple[Batch, Future[Delivery]]] = deque()

    def submit(self, batch: Batch) -> None:
        if len(self._pending) >= self._limit:
            self._settle_oldest(commit=True)
        future = self._c.uploader.submit(self._c.sink.send, batch, deadline=self._deadline)
        self._pending.append((batch, future))

    def settle_all(self, *, commit_last: bool = True) -> None:
        while self._pending:
            self._settle_oldest(commit=commit_last or len(self._pending) > 1)

    def _settle_oldest(self, *, commit: bool) -> None:
        batch, future = self._pending.popleft()
        delivery = future.result()
        if delivery.error is None:
            self._progress.record(batch, delivery, self._window, self._report, commit=commit)
            return
        error: ConnectorError = delivery.error
        self._progress.record(batch, delivery, self._window, self._report, commit=False)
        while self._pending:
            other, later = self._pending.popleft()
            self._progress.record(other, later.result(), self._window, self._report, commit=False)
        self._progress.commit()
        raise error


@dataclass
class Progress:
    """The checkpoint as this run holds it: loaded once, then advanced only by conditional writes.

    Holding it also means holding a lease (owner + expiry) so that a second run that starts while
    this one is active stops before it sends anything.
    """

    store: CheckpointStore
    clock: Clock
    options: RunOptions
    owner: str
    checkpoint: Checkpoint
    stored: StoredCheckpoint
    pending_keys: list[tuple[bytes, int]] = field(default_factory=list)

    @classmethod
    def open(cls, store: CheckpointStore, clock: Clock, options: RunOptions, *, owner: str) -> Progress:
        now = clock.now()
        stored = store.load()
        if stored is None:
            checkpoint = Checkpoint.first_run(now=now, backfill_days=options.backfill_days)
            checkpoint.lease_owner, checkpoint.lease_until = owner, int(now) + options.lease_seconds
            log.info("no checkpoint yet: first run, backfilling %s days", options.backfill_days)
            return cls(store, clock, options, owner, checkpoint, store.create(checkpoint.to_fields()))
        try:
            checkpoint = Checkpoint.from_fields(stored.fields)
        except (KeyError, TypeError, ValueError) as error:
            raise CheckpointUnavailable(
                f"the checkpoint row is unreadable ({error}); it was not overwritten",
                action="inspect the checkpoint table; deleting the row restarts a 7-day backfill",
            ) from None
        if checkpoint.lease_owner and checkpoint.lease_owner != owner and checkpoint.lease_until > now:
            raise CheckpointConflict(
                f"run {checkpoint.lease_owner} holds the checkpoint until {iso_utc(checkpoint.lease_until)}"
            )
        progress = cls(store, clock, options, owner, checkpoint, stored)
        progress.commit()  # claims the lease; a concurrent claimant gets a conflict here
        return progress

    def commit(self) -> None:
        self.checkpoint.lease_owner = self.owner
        self.checkpoint.lease_until = int(self.clock.now()) + self.options.lease_seconds
        self.stored = self.store.commit(self.checkpoint.to_fields(), etag=self.stored.etag)

    def begin(self, window: Window) -> None:
        # Persisted with the first commit inside the window: from then on a later run resumes this
        # window with the same frozen end.
        self.checkpoint.current = window

    def record(
        self, batch: Batch, delivery: Delivery, window: Window, report: RunReport, *, commit: bool = True
    ) -> None:
        """Add a batch's verdict to the checkpoint; `commit=False` leaves the write to the caller's
        next commit (the window's completion), which must follow with nothing in between."""
        report.ingestion_requests += delivery.requests
        report.ingestion_bytes += delivery.bytes_sent
        if delivery.rejected:
            self.set_aside_rows(
                [(batch.rows[r.position], r.reason, r.code) for r in delivery.rejected], window, report
            )
        if not delivery.delivered:
            return
        add = self.checkpoint.ledger.add
        keys = batch.keys
        rows = batch.rows
        newest = self.checkpoint.newest_delivered or 0
        for index in delivery.delivered:
            digest, timestamp = keys[index] if keys else ledger_key(rows[index])
            add(digest, timestamp)
            if timestamp > newest:
                newest = timestamp
        self.checkpoint.newest_delivered = newest
        report.sent += len(delivery.delivered)
        if commit:
            self.commit()

    def set_aside_rows(
        self, rows: list[tuple[dict[str, Any], str, SetAsideCode]], window: Window, report: RunReport
    ) -> None:
        records = [
            SetAsideRecord(row["EventId"], reason, window, _row_json(row), code) for row, reason, code in rows
        ]
        self.store.set_aside(records)
        for row, reason, code in rows:
            digest, timestamp = ledger_key(row)
            self.checkpoint.ledger.add(digest, timestamp)
            report.count_set_aside(code)
            log.warning("event %s set aside: %s", row["EventId"], reason)
        self.commit()

    def set_aside_malformed(self, selection: Selection, window: Window, report: RunReport) -> None:
        if not selection.malformed:
            return
        records = []
        for event_id, event in selection.malformed:
            raw = json.dumps(event.raw, sort_keys=True, separators=(",", ":"), default=repr).encode()
            records.append(
                SetAsideRecord(
                    event_id, f"malformed event: {event.reason}", window, raw, SetAsideCode.MALFORMED
                )
            )
        self.store.set_aside(records)
        for event_id, event in selection.malformed:
            # A malformed event has no usable time; it is remembered at the window's end so the
            # overlap of the next window does not set it aside again.
            self.checkpoint.ledger.add(event.digest, window.end)
            report.count_set_aside(SetAsideCode.MALFORMED)
            log.warning("event %s set aside: malformed event (%s)", event_id, event.reason)
        self.commit()

    def complete(self, fetched: FetchedWindow) -> None:
        complete_window(
            self.checkpoint, fetched.window, fetched_at=fetched.fetched_at, policy=self.options.window_policy
        )
        self.commit()

    def caught_up(self, now: float) -> bool:
        if self.checkpoint.current is not None or self.checkpoint.done_to is None:
            return False
        return self.checkpoint.done_to >= int(now) - self.options.window_policy.safety_delay_seconds - 120

    def release(self) -> None:
        self.checkpoint.lease_owner = ""
        self.checkpoint.lease_until = 0
        self.stored = self.store.commit(self.checkpoint.to_fields(), etag=self.stored.etag)

    def release_quietly(self) -> None:
        """Best effort after a failure: free the lease so the next tick need not wait it out."""
        try:
            self.release()
        except ConnectorError as error:
            log.info("could not release the checkpoint lease after a failed run: %s", error.message)


def _row_json(row: dict[str, Any]) -> bytes:
    """The row as stored in the dead-letter table; never fails (a row may be unserialisable)."""
    try:
        return orjson.dumps(row, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        return json.dumps(row, sort_keys=True, separators=(",", ":"), default=repr).encode()
