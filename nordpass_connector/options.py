"""What one run may do: its budget, windows, lease and concurrency (`RunOptions`), and every pool
size derived from them in one place (`PoolSizes`). No SDK, no `os`."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from .windows import WindowPolicy

# The lease a run holds on the checkpoint. A live run renews it every `LEASE_RENEW_SECONDS` while
# it waits on reads and uploads (and with every commit), so it never lapses under a live run: the
# longest stretch without a renewal is one renewal period plus one table write, which the table
# client bounds at connect 5 s + read 10 s (a stalled write fails the run instead of retrying),
# plus the CPU work between two waits (well under a second). 40 s leaves 15 s of slack for that
# and for clock skew between two instances. A run killed mid-flight thus blocks others for at most
# 40 s after its last write, where budget + 60 s (105 s) blocked them before: within a 60 s
# schedule, at most one tick finds it busy.
LEASE_SECONDS = 40
LEASE_RENEW_SECONDS = 10


@dataclass(frozen=True)
class RunOptions:
    backfill_days: float
    run_budget_seconds: float
    window_policy: WindowPolicy
    max_window_events: int
    lease_seconds: int = LEASE_SECONDS
    lease_renew_seconds: float = LEASE_RENEW_SECONDS
    # Do not start reading another window with less than this left of the budget, nor with less
    # than this run's own pace says the window (and those queued before it) will take.
    min_seconds_for_window: float = 3.0
    # Batches uploaded at once. A process killed between an acknowledgement and its commit sends
    # those rows again on the next run (same EventIds), so this also bounds that duplicate.
    uploads_in_flight: int = 3
    # Backlog windows read ahead of the one being delivered (their events wait in memory).
    windows_ahead: int = 2
    # NordPass page requests at once, across the windows being read.
    fetch_concurrency: int = 32

    @property
    def pools(self) -> PoolSizes:
        # One more window reader than windows ahead: a narrowed window's remainder is read at once.
        return PoolSizes(
            page_fetchers=self.fetch_concurrency,
            window_readers=self.windows_ahead + 1,
            uploaders=self.uploads_in_flight,
        )


@dataclass(frozen=True)
class PoolSizes:
    """The run's threads and NordPass connections, each derived from the options above."""

    page_fetchers: int  # pages after the first of each window
    window_readers: int  # each reads a window's first page itself, then hands the rest out
    uploaders: int

    def __post_init__(self) -> None:
        if min(self.page_fetchers, self.window_readers, self.uploaders) < 1:
            raise ValueError(f"{self} is not a pool size: every pool needs a thread")

    @property
    def nordpass_requests(self) -> int:
        """Every thread that can send a NordPass request at once: the page pool and each window
        reader's first page. It sizes the keep-alive connections and the concurrency limit."""
        return self.page_fetchers + self.window_readers


class Pool(ThreadPoolExecutor):
    """A thread pool that knows its size, so a connector can check its pools when it is built."""

    def __init__(self, size: int, name: str) -> None:
        super().__init__(size, name)
        self.size = size
