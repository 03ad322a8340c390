"""Pure client-side budget for the Logs Ingestion API's per-DCR limits.

Azure Monitor allows 12,000 requests and 2 GB per minute per data collection rule and answers 429
beyond that. One connector normally stays far below (about 1 MB per request, one request in
flight), but a fast machine catching up a large backlog could approach the byte limit, and other
senders may share the DCR. Keeping under a fraction of both limits ourselves avoids the 429 storm.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

WINDOW_SECONDS = 60.0
DCR_REQUESTS_PER_MINUTE = 12_000
DCR_BYTES_PER_MINUTE = 2 * 1024**3
SHARE = 0.8  # leave room for other senders on the same DCR and for clock differences


@dataclass
class RateBudget:
    """Sliding one-minute window of requests and bytes; `delay_for` says how long to wait."""

    monotonic: Callable[[], float]
    max_requests: int = int(DCR_REQUESTS_PER_MINUTE * SHARE)
    max_bytes: int = int(DCR_BYTES_PER_MINUTE * SHARE)
    _sent: deque[tuple[float, int]] = field(default_factory=deque, repr=False)
    _bytes: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def _forget_old(self, now: float) -> None:
        while self._sent and self._sent[0][0] <= now - WINDOW_SECONDS:
            _, size = self._sent.popleft()
            self._bytes -= size

    def delay_for(self, size: int) -> float:
        """Seconds until a request of `size` bytes fits in the budget (0 when it fits now)."""
        with self._lock:
            now = self.monotonic()
            self._forget_old(now)
            if len(self._sent) < self.max_requests and self._bytes + size <= self.max_bytes:
                return 0.0
            # Wait until enough of the oldest requests leave the window.
            freed_bytes, needed = 0, self._bytes + size - self.max_bytes
            for expired, (at, sent) in enumerate(self._sent, start=1):
                freed_bytes += sent
                if freed_bytes >= needed and len(self._sent) - expired < self.max_requests:
                    return max(0.0, at + WINDOW_SECONDS - now)
            return max(0.0, self._sent[-1][0] + WINDOW_SECONDS - now)

    def record(self, size: int) -> None:
        with self._lock:
            now = self.monotonic()
            self._forget_old(now)
            self._sent.append((now, size))
            self._bytes += size
