"""The checkpoint: the committed progress of one connector instance.

Progress is three things:

* ``floor``: every event with ``timestamp >= floor`` that was delivered is recorded in the ledger;
  everything older is settled, except inside held windows (below). The next window starts at
  ``floor``, so the region between ``floor`` and the last window's end is re-read on purpose (the
  trailing overlap that catches late events).
* ``ledger``: a multiset of (content digest, timestamp) of delivered events at or above ``floor``
  and inside held windows (`ledger.Ledger`).
* ``held``: windows that could not be read consistently (pages that repeat or come back short
  while the total stays the same, a total that keeps moving). Their events are *not* settled.

Beside them: the window being read (``current``, with its frozen end), the signpost of the last
completed window (``done_to``), the newest event delivered, and the lease a run holds while it
works. How windows are planned from this and how each one moves it: `windows`. How it is stored:
the table adapter (`adapters.table_store`).

Pure: no SDK, no `os`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .ledger import Ledger
from .ports import Window

STUCK_AFTER_SECONDS = 3_600  # a window held this long is reported as stuck


@dataclass(frozen=True)
class HeldWindow:
    """A window whose pages never added up: not settled, re-read at the start of every run."""

    window: Window
    since: int  # wall-clock time it was first held
    reason: str  # the last read's problem, in our own words (no event content)
    attempts: int = 1  # reads that failed so far

    def held_seconds(self, now: float) -> int:
        return max(0, int(now) - self.since)

    def stuck(self, now: float) -> bool:
        return self.held_seconds(now) >= STUCK_AFTER_SECONDS


@dataclass
class Checkpoint:
    """The committed progress of one connector instance."""

    floor: int
    ledger: Ledger = field(default_factory=Ledger)
    current: Window | None = None
    done_to: int | None = None  # signpost of the last completed window
    newest_delivered: int | None = None
    lease_owner: str = ""
    lease_until: int = 0
    held: list[HeldWindow] = field(default_factory=list)

    def held_windows(self) -> list[Window]:
        return [h.window for h in self.held]

    def prune(self) -> None:
        """Forget ledger entries that neither the overlap nor a held window needs any more."""
        self.ledger.prune_below(self.floor - 1, keep=self.held_windows())

    @classmethod
    def first_run(cls, *, now: float, backfill_days: float) -> Checkpoint:
        # +1: windows start at floor - 1, so the first one starts exactly `backfill_days` back.
        return cls(floor=int(now - backfill_days * 86_400) + 1)
