"""One run of the connector, top to bottom:

    load checkpoint -> plan window -> fetch pages -> map + dedup -> send -> commit -> repeat

until the backlog is delivered or the run's time budget is spent. The checkpoint is the only truth
about progress: it is committed after every acknowledged batch, a window's frozen end is kept until
the window is complete, and a conflicting writer stops the run before it sends anything more.

Three things overlap so that a backfill is bound by neither side's latency: while one window is
delivered, the next ones (`windows_ahead`) are being read, and up to `uploads_in_flight` batches of
the current window are being uploaded while the next batch is packed. Verdicts are recorded in
submission order, on this thread only, so checkpoint commits never race.

Windows that cannot be read consistently are held back (see `windows`): each run first re-reads
the held windows, then goes on with new ones, so one bad window never stops delivery and is never
skipped without a record. A run that finds the checkpoint leased by another run (a live one, or a
killed one whose lease has not expired) is busy: it does nothing and says so, which is not a
failure. A live run renews its lease while it works (see `options.LEASE_SECONDS`), so a short lease
is safe.

This module sees only the ports (`ports.py`) and pure modules; it imports no SDK and no `os`.
"""

from __future__ import annotations

import logging
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass

from .batching import pack
from .checkpoint import Checkpoint
from .clock import Clock
from .dedup import select_new
from .errors import (
    CheckpointBusy,
    CheckpointConflict,
    CheckpointError,
    ConnectorError,
    SourceUnavailable,
    WindowUnreadable,
)
from .isotime import iso_utc
from .ledger import DIGEST_BYTES
from .mapping import canonical_digest
from .options import Pool, RunOptions
from .planner import Planner, Read
from .ports import Batch, CheckpointStore, HealthReporter, HealthStore, LogSink, Window
from .progress import Progress
from .reader import FetchedWindow, WindowReader
from .report import RunReport, checkpoint_summary, held_summary
from .retry import Deadline, RetryLog
from .uploads import Uploads
from .windows import clamp_to_retention

log = logging.getLogger(__name__)


@dataclass
class Connector:
    """Everything one run needs, built by `composition` (real adapters) or by tests."""

    reader: WindowReader
    sink: LogSink
    store: CheckpointStore
    clock: Clock
    retry_log: RetryLog
    options: RunOptions
    prefetcher: Pool  # reads windows: `options.pools.window_readers` threads
    uploader: Pool  # uploads batches: `options.pools.uploaders` threads
    # Where the run's health row goes once its outcome is final (composition sends it; the run never
    # waits for it). None: no health rows.
    health_reporter: HealthReporter | None = None
    # Where the health record is merged after the run (composition). None: no record is kept.
    health_store: HealthStore | None = None

    def __post_init__(self) -> None:
        """The pools must be the sizes the options derive (`options.PoolSizes`): fewer window
        readers than windows ahead would serialise the read-ahead, and a request limit below the
        threads that can send would leave threads waiting for a slot."""
        pools = self.options.pools
        sizes = (self.prefetcher.size, self.uploader.size, self.reader.limit.ceiling)
        wanted = (pools.window_readers, pools.uploaders, pools.nordpass_requests)
        if sizes != wanted:
            raise ValueError(
                f"pools (window readers, uploaders, NordPass requests) are {sizes}, not {wanted}"
            )


class RunFailed(ConnectorError):
    """A run that did not finish its work; `report` says how far it got, `cause` why.

    A busy run (the cause is CheckpointBusy, `report.outcome` "busy") did nothing because another
    run holds the checkpoint: callers report it as such, not as a failure.
    """

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

        if not _reread_held(c, progress, report, deadline):
            for fetched in _fetched_windows(c, progress.checkpoint, deadline, wait=progress.wait):
                report.windows += 1
                report.pages += fetched.pages
                if fetched.unreadable is not None:
                    progress.hold(fetched, report)
                    continue
                progress.begin(fetched.window)
                if not _deliver(c, progress, fetched, report, deadline):
                    break  # what was sent is committed; the next run resumes this window
                progress.complete(fetched)

        report.caught_up = progress.caught_up(c.clock.now())
        progress.release()
        report.outcome = "ok"
    except ConnectorError as error:
        if isinstance(error, CheckpointBusy):
            report.outcome = "busy"
        elif isinstance(error, CheckpointConflict):
            report.outcome = "conflict"
        else:
            report.outcome = "failed"
        report.error, report.error_class = error.describe(), type(error).__name__
        if progress is not None and not isinstance(error, CheckpointError):
            progress.release_quietly()
        raise RunFailed(report, error) from error
    finally:
        report.retries = c.retry_log.snapshot()
        report.duration_seconds = round(c.clock.monotonic() - started, 3)
        if progress is not None:
            report.checkpoint_after = checkpoint_summary(progress.checkpoint)
            report.held_windows = held_summary(progress.checkpoint.held, now=c.clock.now())
            newest = progress.checkpoint.newest_delivered
            if newest is not None:
                report.newest_event = iso_utc(newest)
                report.lag_seconds = round(c.clock.now() - newest, 1)
    return report


def _deliver(
    c: Connector, progress: Progress, fetched: FetchedWindow, report: RunReport, deadline: Deadline
) -> bool:
    """Send what is new in `fetched`: map, dedup, set aside what cannot be sent, upload, record.

    False when the budget ran out first (everything acknowledged is committed). Otherwise the last
    verdict is left for the caller's next commit, which records the window's completion with it.
    """
    report.fetched += len(fetched.events)
    selection = select_new(fetched.events, progress.checkpoint.ledger)
    fetched.events.clear()  # the raw page objects are no longer needed; free them early
    report.deduplicated += selection.duplicates
    if fetched.repaired:
        repaired = {canonical_digest(event)[:DIGEST_BYTES] for event in fetched.repaired}
        report.repaired_events += sum(1 for key, _ in selection.keys if key in repaired)
    progress.set_aside_malformed(selection, fetched.window, report)

    uploads = Uploads(
        c.uploader,
        c.sink,
        progress,
        fetched.window,
        report,
        deadline=deadline,
        in_flight=c.options.uploads_in_flight,
    )
    for item in pack(selection.rows, max_body_bytes=c.sink.max_body_bytes, keys=selection.keys):
        if deadline.expired():
            uploads.settle_all()
            return False
        if isinstance(item, Batch):
            uploads.submit(item)
        else:
            progress.set_aside_rows([(item.row, item.reason, item.code)], fetched.window, report)
    uploads.settle_all(commit_last=False)
    return True


def _reread_held(c: Connector, progress: Progress, report: RunReport, deadline: Deadline) -> bool:
    """Read every held window again, oldest first; deliver and release the ones that now read
    consistently. True when the budget ran out doing so (the run then stops here)."""
    for held in list(progress.checkpoint.held):
        if deadline.remaining() <= c.options.min_seconds_for_window:
            return True
        try:
            fetched = progress.wait(c.prefetcher.submit(c.reader.read, held.window, deadline=deadline))
        except WindowUnreadable as still:
            report.pages += still.pages
            progress.still_held(held, still.reason)
            continue
        except SourceUnavailable:
            if deadline.remaining() > c.options.min_seconds_for_window:
                raise
            return True
        report.windows += 1
        report.pages += fetched.pages
        if not _deliver(c, progress, fetched, report, deadline):
            return True
        progress.release_held(held, fetched)
    return False


def _fetched_windows(
    c: Connector,
    checkpoint: Checkpoint,
    deadline: Deadline,
    *,
    wait: Callable[[Future[FetchedWindow]], FetchedWindow],
) -> Iterator[FetchedWindow]:
    """Read the windows `planner.Planner` plans, in order; while one is being delivered, up to
    `windows_ahead` more are read.

    A window that cannot be read consistently comes back with `unreadable` set and no events (the
    caller holds it back). A read that runs out of budget ends the run quietly once this run has
    handed over a window; when it has not (a source that never answers), the run fails loudly.
    """
    planner = Planner(c.options)
    first = planner.first(checkpoint, now=c.clock.now(), remaining=deadline.remaining())
    if first is None:
        return
    window, probe = first
    ahead: deque[tuple[Window, Future[FetchedWindow]]] = deque()
    ahead.append((window, c.prefetcher.submit(c.reader.read, window, deadline=deadline, probe=probe)))
    handed = 0

    def read(planned: Window) -> tuple[Window, Future[FetchedWindow]]:
        return planned, c.prefetcher.submit(c.reader.read, planned, deadline=deadline)

    try:
        while ahead:
            planned, pending = ahead.popleft()
            try:
                fetched = wait(pending)
            except WindowUnreadable as unreadable:
                fetched = FetchedWindow(
                    unreadable.window,
                    [],
                    unreadable.pages,
                    unreadable.fetched_at,
                    unreadable=unreadable.reason,
                )
            except SourceUnavailable:
                if deadline.remaining() > c.options.min_seconds_for_window or not handed:
                    raise
                return  # the budget ran out while reading ahead: not a failure, the next run goes on
            plan = planner.after(
                Read(planned, fetched.window, len(fetched.events), fetched.fetched_at),
                queued=[w for w, _ in ahead],
                now=c.clock.now(),
                remaining=deadline.remaining(),
            )
            if plan.first is not None:
                ahead.appendleft(read(plan.first))
            ahead.extend(read(w) for w in plan.then)
            handed_over = c.clock.monotonic()
            handed += 1
            yield fetched
            planner.delivered(c.clock.monotonic() - handed_over)
    finally:
        for _, pending in ahead:
            pending.cancel()
