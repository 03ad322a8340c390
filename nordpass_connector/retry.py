"""Retries: which outcomes are worth another attempt, how long to wait, and the one attempt loop.

Every adapter that retries (the NordPass client, the ingestion sink and its health reporter) goes
through `attempt_loop`, with the same policy: every wait is jittered, honours `Retry-After` and
never outlives the run's time budget, and every retry is counted under a typed `RetryCause`.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from enum import Enum, StrEnum
from typing import TypeVar

from .clock import Clock

T = TypeVar("T")


class RetryCause(StrEnum):
    """Why a request was tried again; the value is how reports and health rows count it."""

    NORDPASS_RATE_LIMITED = "nordpass:429"  # the reader halves its request limit on these
    NORDPASS_SERVER = "nordpass:5xx"
    NORDPASS_REQUEST_TIMEOUT = "nordpass:408"
    NORDPASS_TIMEOUT = "nordpass:timeout"
    NORDPASS_CONNECTION = "nordpass:connection"
    NORDPASS_PROTOCOL = "nordpass:protocol"
    INGESTION_RATE_LIMITED = "ingestion:429"
    INGESTION_SERVER = "ingestion:5xx"
    INGESTION_TIMEOUT = "ingestion:timeout"
    INGESTION_CONNECTION = "ingestion:connection"
    INGESTION_UNAUTHORIZED = "ingestion:401"
    INGESTION_FORBIDDEN = "ingestion:403"
    HEALTH_ROW = "health"


class Verdict(Enum):
    OK = "ok"
    RETRY = "retry"  # transient: 5xx, 408, timeouts, dropped connections
    RATE_LIMITED = "rate_limited"  # 429: wait Retry-After or back off
    AUTH = "auth"  # 401/403
    NOT_FOUND = "not_found"  # 404: configuration
    TOO_LARGE = "too_large"  # 413: split, never resend as is
    REJECT = "reject"  # other 4xx: the request itself is wrong


def classify_status(status: int) -> Verdict:
    if 200 <= status < 300:
        return Verdict.OK
    if status == 429:
        return Verdict.RATE_LIMITED
    if status in (401, 403):
        return Verdict.AUTH
    if status == 404:
        return Verdict.NOT_FOUND
    if status == 413:
        return Verdict.TOO_LARGE
    if status == 408 or status >= 500:
        return Verdict.RETRY
    return Verdict.REJECT


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """Seconds to wait from a `Retry-After` header (delta-seconds or HTTP-date), or None."""
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)


@dataclass(frozen=True)
class RetryPolicy:
    base_delay: float = 0.5
    max_delay: float = 20.0
    max_attempts: int = 8

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Full-jitter exponential backoff for the given 1-based failed attempt."""
        ceiling = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        return rng.uniform(ceiling / 2, ceiling)

    def wait(self, attempt: int, *, retry_after: float | None, rng: random.Random) -> float:
        if retry_after is not None:
            # A little jitter on top so that parallel callers do not return in lockstep.
            return retry_after + rng.uniform(0, min(1.0, self.base_delay))
        return self.backoff(attempt, rng)


@dataclass
class RetryLog:
    """Thread-safe tally of retries by cause, e.g. ``{"nordpass:429": 3, "ingestion:timeout": 1}``."""

    counts: Counter[RetryCause] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, cause: RetryCause) -> None:
        with self._lock:
            self.counts[cause] += 1

    def count(self, cause: RetryCause) -> int:
        with self._lock:
            return self.counts[cause]

    def total(self) -> int:
        with self._lock:
            return sum(self.counts.values())

    def snapshot(self) -> dict[str, int]:
        """Counts by the causes' text, as reports and health rows store them."""
        with self._lock:
            return {str(cause): n for cause, n in sorted(self.counts.items())}


@dataclass
class Deadline:
    """The moment (on the monotonic clock) by which the run must be wrapping up."""

    clock: Clock
    at: float

    @classmethod
    def after(cls, clock: Clock, seconds: float) -> Deadline:
        return cls(clock, clock.monotonic() + seconds)

    def remaining(self) -> float:
        return self.at - self.clock.monotonic()

    def expired(self) -> bool:
        return self.remaining() <= 0


@dataclass
class Retrier:
    """Decides, and waits, before another attempt: bounded by attempts and by the deadline."""

    policy: RetryPolicy
    clock: Clock
    log: RetryLog
    rng: random.Random = field(default_factory=random.Random)

    def pause(
        self, attempt: int, *, cause: RetryCause, deadline: Deadline, retry_after: float | None = None
    ) -> bool:
        """Sleep before attempt ``attempt + 1``; False when no attempt is left or time would run out."""
        if attempt >= self.policy.max_attempts:
            return False
        delay = self.policy.wait(attempt, retry_after=retry_after, rng=self.rng)
        if delay >= deadline.remaining():
            return False
        self.log.record(cause)
        self.clock.sleep(delay)
        return True


class TryAgain(Exception):
    """Raised by an attempt that failed in a way another attempt may fix."""

    def __init__(
        self,
        cause: RetryCause,
        reason: str,
        exhausted: Exception,
        *,
        retry_after: float | None = None,
        wait: bool = True,
    ) -> None:
        super().__init__(reason)
        self.cause = cause
        self.reason = reason  # our own words (no secret, no content), for log lines and errors
        # Raised when no attempt is left (attempts or time): the adapter's own error, in its words.
        self.exhausted = exhausted
        self.retry_after = retry_after  # what the service asked for, in seconds
        self.wait = wait  # False: try again at once (e.g. with a refreshed token), counted all the same


def attempt_loop(
    retrier: Retrier,
    deadline: Deadline,
    attempt: Callable[[int], T],
    *,
    out_of_time: Callable[[int, TryAgain | None], Exception],
    on_retry: Callable[[int, TryAgain], None] | None = None,
) -> T:
    """Call `attempt(n)` (n = 1, 2, ...) until it returns, and return what it returned.

    An attempt raises `TryAgain` for a failure another attempt may fix, and anything else for one
    it cannot. Between attempts the retrier waits (backoff with jitter, or the service's
    `Retry-After`). When the retrier allows no further attempt, the last `TryAgain.exhausted` is
    raised; when the deadline has passed before an attempt, `out_of_time(attempts made, last
    TryAgain or None)`. `on_retry` runs after each wait."""
    made = 0
    last: TryAgain | None = None
    while True:
        if deadline.remaining() <= 0:
            raise out_of_time(made, last)
        made += 1
        try:
            return attempt(made)
        except TryAgain as failed:
            last = failed
        if not last.wait:
            retrier.log.record(last.cause)
        elif not retrier.pause(made, cause=last.cause, deadline=deadline, retry_after=last.retry_after):
            raise last.exhausted
        if on_retry is not None:
            on_retry(made, last)
