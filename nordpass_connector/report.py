"""The run report: one JSON line per run, safe to log (counts, times and bounds; no event content)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import orjson

from .checkpoint import Checkpoint, HeldWindow
from .isotime import iso_utc


def checkpoint_summary(checkpoint: Checkpoint | None) -> dict[str, Any] | None:
    if checkpoint is None:
        return None
    return {
        "floor": iso_utc(checkpoint.floor),
        "done_to": iso_utc(checkpoint.done_to) if checkpoint.done_to is not None else None,
        "window_in_progress": (
            [iso_utc(checkpoint.current.start), iso_utc(checkpoint.current.end)]
            if checkpoint.current
            else None
        ),
        "ledger_events": len(checkpoint.ledger),
    }


@dataclass
class RunReport:
    run_id: str
    started_at: str
    # ok | busy (another run holds the checkpoint: nothing done, not a failure) | conflict | failed
    outcome: str = "running"
    caught_up: bool = False  # False: backlog remains and the next tick continues it
    windows: int = 0
    pages: int = 0
    fetched: int = 0
    sent: int = 0
    deduplicated: int = 0
    set_aside: int = 0
    set_aside_reasons: dict[str, int] = field(default_factory=dict)  # by SetAsideCode
    repaired_events: int = 0  # events sent with broken characters replaced by U+FFFD
    ingestion_requests: int = 0
    ingestion_bytes: int = 0
    retries: dict[str, int] = field(default_factory=dict)
    checkpoint_before: dict[str, Any] | None = None
    checkpoint_after: dict[str, Any] | None = None
    newest_event: str | None = None
    lag_seconds: float | None = None
    skipped_gap: list[str] | None = None
    # Windows that could not be read consistently, still held back at the end of the run: from, to,
    # since, held_seconds, stuck (held over an hour), attempts, reason. Re-read by every run.
    held_windows: list[dict[str, Any]] = field(default_factory=list)
    duration_seconds: float = 0.0
    error: str | None = None
    error_class: str | None = None

    def count_set_aside(self, code: str, count: int = 1) -> None:
        self.set_aside += count
        # Counted by code (`ports.SetAsideCode`); the readable reasons are in the dead-letter rows.
        key = str(code)
        self.set_aside_reasons[key] = self.set_aside_reasons.get(key, 0) + count

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return orjson.dumps(self.to_dict()).decode()


def held_summary(held: list[HeldWindow], *, now: float) -> list[dict[str, Any]]:
    return [
        {
            "from": iso_utc(h.window.start),
            "to": iso_utc(h.window.end),
            "since": iso_utc(h.since),
            "held_seconds": h.held_seconds(now),
            "stuck": h.stuck(now),
            "attempts": h.attempts,
            "reason": h.reason,
        }
        for h in held
    ]
