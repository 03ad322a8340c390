"""The checkpoint as one run holds it (`Progress`): loaded once, claimed with a lease, and advanced
only by ETag-conditional commits.

Everything a run records goes through here, on the run's own thread: batches delivered (their
ledger entries and the newest event time), events set aside (dead-letter rows first, then their
ledger entries, so the next window's overlap does not set them aside again), windows completed or
held back, and the lease, renewed while the run waits (`wait`). Nothing is recorded before it is
acknowledged, so any commit leaves a state the next run may resume from.

Sees only the ports and pure modules; imports no SDK and no `os`.
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import Future
from concurrent.futures import wait as wait_for
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson

from .checkpoint import Checkpoint, HeldWindow
from .clock import Clock
from .dedup import Selection, ledger_key
from .errors import CheckpointBusy, CheckpointConflict, ConnectorError, SourceProtocolError
from .isotime import iso_utc
from .options import RunOptions
from .ports import Batch, CheckpointStore, Delivery, SetAsideCode, SetAsideRecord, Window
from .reader import FetchedWindow
from .report import RunReport
from .windows import MAX_HELD_WINDOWS, complete_window, hold_window, release_held, still_unreadable

log = logging.getLogger(__name__)

T = TypeVar("T")


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
    etag: str  # of the last write: the next one must find the row unchanged since
    committed_at: float = 0.0  # monotonic time of the last commit (which renewed the lease)

    @classmethod
    def open(cls, store: CheckpointStore, clock: Clock, options: RunOptions, *, owner: str) -> Progress:
        now = clock.now()
        stored = store.load()  # CheckpointDamaged names the row and property it cannot decode
        if stored is None:
            checkpoint = Checkpoint.first_run(now=now, backfill_days=options.backfill_days)
            checkpoint.lease_owner, checkpoint.lease_until = owner, int(now) + options.lease_seconds
            log.info("no checkpoint yet: first run, backfilling %s days", options.backfill_days)
            try:
                etag = store.create(checkpoint)
            except CheckpointConflict:
                raise CheckpointBusy("another run created the checkpoint at the same moment") from None
            return cls(store, clock, options, owner, checkpoint, etag, committed_at=clock.monotonic())
        checkpoint = stored.checkpoint
        if checkpoint.lease_owner and checkpoint.lease_owner != owner and checkpoint.lease_until > now:
            raise CheckpointBusy(
                f"run {checkpoint.lease_owner} holds the checkpoint until {iso_utc(checkpoint.lease_until)}"
            )
        progress = cls(store, clock, options, owner, checkpoint, stored.etag)
        try:
            progress.commit()  # claims the lease; a concurrent claimant gets a conflict here
        except CheckpointConflict:
            raise CheckpointBusy("another run claimed the checkpoint at the same moment") from None
        return progress

    def commit(self) -> None:
        self.checkpoint.lease_owner = self.owner
        self.checkpoint.lease_until = int(self.clock.now()) + self.options.lease_seconds
        self.etag = self.store.commit(self.checkpoint, etag=self.etag)
        self.committed_at = self.clock.monotonic()

    def wait(self, future: Future[T]) -> T:
        """The future's result; meanwhile the lease is renewed every `lease_renew_seconds`.

        Renewing commits the checkpoint as it stands, which is always a state the next run may
        resume from: nothing is recorded in it before it is acknowledged.
        """
        while True:
            due = self.committed_at + self.options.lease_renew_seconds - self.clock.monotonic()
            done, _ = wait_for([future], timeout=max(0.05, due))
            if done:
                return future.result()
            if self.clock.monotonic() >= self.committed_at + self.options.lease_renew_seconds:
                self.commit()

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

    def hold(self, fetched: FetchedWindow, report: RunReport) -> None:
        """Hold back a window that could not be read, and move on past it (see `windows`)."""
        reason = fetched.unreadable or "unreadable"
        held = hold_window(
            self.checkpoint,
            fetched.window,
            fetched_at=fetched.fetched_at,
            now=self.clock.now(),
            reason=reason,
            policy=self.options.window_policy,
        )
        if not held:
            raise SourceProtocolError(
                f"window {iso_utc(fetched.window.start)}..{iso_utc(fetched.window.end)} could not be read "
                f"({reason}) and {MAX_HELD_WINDOWS} windows are held back already; stopping here rather "
                "than skip it"
            )
        self.commit()
        log.warning(
            "window %s..%s held back: %s; newer events keep flowing, and it is read again every run",
            iso_utc(fetched.window.start),
            iso_utc(fetched.window.end),
            reason,
        )

    def still_held(self, held: HeldWindow, reason: str) -> None:
        still_unreadable(self.checkpoint, held, reason=reason)
        self.commit()
        now = self.clock.now()
        log.warning(
            "window %s..%s still held back after %d reads (%s, since %s%s): %s",
            iso_utc(held.window.start),
            iso_utc(held.window.end),
            held.attempts + 1,
            _duration(held.held_seconds(now)),
            iso_utc(held.since),
            "; stuck" if held.stuck(now) else "",
            reason,
        )

    def release_held(self, held: HeldWindow, fetched: FetchedWindow) -> None:
        release_held(self.checkpoint, held, fetched.window)
        self.commit()
        log.info(
            "held-back window %s..%s read and delivered after %s",
            iso_utc(fetched.window.start),
            iso_utc(fetched.window.end),
            _duration(held.held_seconds(self.clock.now())),
        )

    def caught_up(self, now: float) -> bool:
        if self.checkpoint.current is not None or self.checkpoint.done_to is None:
            return False
        return self.checkpoint.done_to >= int(now) - self.options.window_policy.safety_delay_seconds - 120

    def release(self) -> None:
        self.checkpoint.lease_owner = ""
        self.checkpoint.lease_until = 0
        self.etag = self.store.commit(self.checkpoint, etag=self.etag)

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


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 120 else f"{seconds:.0f} s"
