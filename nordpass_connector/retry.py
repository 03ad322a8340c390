"""Pure retry decisions: which outcomes are worth another attempt, and how long to wait.

Both adapters (NordPass client and ingestion sink) use the same policy so that every wait is
jittered, honours `Retry-After` and never outlives the run's time budget.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from enum import Enum

from .clock import Clock


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

    counts: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, cause: str) -> None:
        with self._lock:
            self.counts[cause] += 1

    def count(self, cause: str) -> int:
        with self._lock:
            return self.counts[cause]

    def total(self) -> int:
        with self._lock:
            return sum(self.counts.values())

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(sorted(self.counts.items()))


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
        self, attempt: int, *, cause: str, deadline: Deadline, retry_after: float | None = None
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
