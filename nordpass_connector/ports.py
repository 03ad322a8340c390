"""What the pipeline needs from the outside world, as small protocols and value types.

The adapters (`adapters/`) implement these; the pipeline only sees
these names, so it imports no SDK and tests can plug in any implementation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from .errors import SinkError
from .retry import Deadline

if TYPE_CHECKING:
    from .checkpoint import Checkpoint


@dataclass(frozen=True)
class Window:
    """A closed query window in Unix seconds. `end` is frozen when the window is planned (the
    signpost): every page of the window uses the same bounds whatever the API's inclusivity."""

    start: int
    end: int

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise ValueError("window end before start")

    @property
    def span(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class Page:
    """One page of Activity API results, as the source adapter returns it."""

    number: int
    events: list[Any]
    total: int | None = None
    total_pages: int | None = None
    # Events whose text held broken characters (lone surrogates) that were replaced with U+FFFD.
    repaired: tuple[Any, ...] = ()


class ActivitySource(Protocol):
    def fetch_page(self, window: Window, page: int, *, deadline: Deadline) -> Page:
        """One page of `window` (1-based). Retries transient failures within `deadline`; raises
        SourceAuthError, SourceUnavailable or SourceProtocolError."""
        ...


@dataclass(frozen=True)
class Batch:
    """Rows ready to upload: `body` is their JSON array, at most the sink's byte limit.

    `keys`, when not empty, is aligned with `rows`: each row's ledger entry (first 8 bytes of its
    digest, timestamp), the same as `dedup.ledger_key(row)` without parsing it back from the row.
    """

    rows: list[dict[str, Any]]
    body: bytes
    keys: list[tuple[bytes, int]] = field(default_factory=list)


class SetAsideCode(StrEnum):
    """Why an event was set aside (dead-lettered), as a fixed code beside the readable reason."""

    MALFORMED = "malformed"  # not an event object, or no usable time: cannot become a row
    OVERSIZE = "oversize"  # larger than any request may be (or refused with 413 alone)
    REFUSED = "refused"  # the Logs Ingestion API refused the record alone with a 4xx
    UNSENDABLE = "unsendable"  # the row cannot be serialised as JSON


class Rejection(NamedTuple):
    """One row the sink could not deliver and will never be able to: set it aside."""

    position: int  # index into Batch.rows
    reason: str  # readable, our own words plus the service's status and error code (no content)
    code: SetAsideCode


@dataclass
class Delivery:
    """The sink's verdict on one batch (Vector's Delivered / Rejected / Errored).

    `delivered` and `rejected` hold indices into `Batch.rows`. `error` is set when some rows were
    neither (Errored): the pipeline records what was delivered, then stops the run.
    """

    delivered: list[int] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    error: SinkError | None = None
    requests: int = 0
    bytes_sent: int = 0


class LogSink(Protocol):
    max_body_bytes: int

    def send(self, batch: Batch, *, deadline: Deadline) -> Delivery: ...


@dataclass(frozen=True)
class SetAsideRecord:
    """An event that cannot be delivered (malformed, too large, refused by the service)."""

    event_id: str
    reason: str
    window: Window
    raw_json: bytes
    code: SetAsideCode = SetAsideCode.MALFORMED


@dataclass(frozen=True)
class StoredCheckpoint:
    """The checkpoint as loaded, with the ETag that must match for the next update."""

    checkpoint: Checkpoint
    etag: str


class CheckpointStore(Protocol):
    """Where the checkpoint is kept. The store owns its stored form: a `Checkpoint` goes in and
    comes out, and every encoding limit is the store's (CheckpointTooLarge)."""

    def load(self) -> StoredCheckpoint | None:
        """None only when the checkpoint definitely does not exist; any failure raises
        CheckpointUnavailable, and a stored form that cannot be decoded CheckpointDamaged naming
        the row and the property."""
        ...

    def create(self, checkpoint: Checkpoint) -> str:
        """First write; returns the ETag. CheckpointConflict when another run created it first."""
        ...

    def commit(self, checkpoint: Checkpoint, *, etag: str) -> str:
        """ETag-conditional update; returns the new ETag. CheckpointConflict when someone else
        moved it."""
        ...

    def set_aside(self, records: list[SetAsideRecord]) -> None:
        """Keep undeliverable events for inspection (idempotent by event id)."""
        ...


class HealthStore(Protocol):
    """Where the health record is kept (beside the checkpoint): what the last runs did, for `status`
    and for the next run to merge into."""

    health_row_name: str  # where it is, to name it in errors (no account, no URL)

    def read_health(self) -> dict[str, Any] | None:
        """The record's fields, None when there is none yet; CheckpointUnavailable on failure."""
        ...

    def write_health(self, fields: dict[str, Any]) -> None:
        """Replace the record; CheckpointUnavailable on failure."""
        ...


class HealthReporter(Protocol):
    def report(self, row: dict[str, Any], *, timeout: float) -> None:
        """Deliver one health row within `timeout` seconds, with at most one retry; raises
        SinkError (never anything else) when it could not."""
        ...
