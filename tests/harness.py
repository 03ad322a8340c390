"""End-to-end harness: the real connector (composition root, real adapters and SDK clients) wired to
the sandbox stand-ins, plus ground-truth helpers.

The only thing tests steer is the wall clock the connector plans windows with (`SteppedClock`):
ticks are simulated by moving it forward, everything else runs for real.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from azure.data.tables import TableClient

from nordpass_connector.composition import build_connector, run_timer_tick
from nordpass_connector.mapping import MalformedEvent, canonical_digest, event_id, occurrences, prepare
from nordpass_connector.pipeline import Connector, RunFailed, run_once
from nordpass_connector.report import RunReport
from nordpass_connector.retry import RetryPolicy
from nordpass_connector.settings import load_settings
from sandbox.azurite import Azurite
from sandbox.ingestion import IngestionStandIn
from sandbox.nordpass_sim import NordPassSimulator

FAST_RETRIES = RetryPolicy(base_delay=0.01, max_delay=0.1, max_attempts=8)
# A run that has not ended this long after its budget is reported as hung (and the test fails).
HUNG_AFTER_SECONDS = 120.0


class SteppedClock:
    """Wall clock the test moves by hand; monotonic time and sleeping stay real."""

    def __init__(self, start: float) -> None:
        self.wall = float(start)

    def now(self) -> float:
        return self.wall

    def advance(self, seconds: float) -> None:
        self.wall += seconds

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


def expected_ids(events: Iterable[Any]) -> Counter[str]:
    """Ground truth: the EventIds a perfect connector delivers for these source events."""
    digests = [canonical_digest(raw) for raw in events]
    return Counter(event_id(d, n) for d, n in zip(digests, occurrences(digests), strict=True))


def deliverable(events: Iterable[Any]) -> list[Any]:
    return [e for e in events if not isinstance(prepare(e), MalformedEvent)]


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@dataclass
class TimerRun:
    """One run through the timer's code path, as the Functions host (or the CLI) sees it."""

    report: RunReport | None  # None: the run did not end (hung) or crashed outside the pipeline
    raised: BaseException | None  # what reached the host; a failed run raises (the CLI exits 1)
    records: list[logging.LogRecord]  # everything the connector logged during the run
    seconds: float

    @property
    def exit_code(self) -> int:
        return 1 if self.raised is not None or self.report is None else 0

    @property
    def outcome(self) -> str:
        if self.report is None:
            return "hung" if self.raised is None else f"crashed ({type(self.raised).__name__})"
        return self.report.outcome

    @property
    def run_lines(self) -> list[logging.LogRecord]:
        """The run's own line(s): what the top-level connector logger wrote at INFO or ERROR (warnings
        are diagnostics beside it)."""
        return [
            r
            for r in self.records
            if r.name == "nordpass_connector" and r.levelno != logging.WARNING and r.levelno >= logging.INFO
        ]

    def one_line(self) -> logging.LogRecord:
        lines = self.run_lines
        assert len(lines) == 1, [r.getMessage()[:200] for r in lines]
        assert "Traceback" not in "".join(r.getMessage() for r in self.records)
        assert all(r.exc_info is None for r in self.records), "a traceback was logged"
        return lines[0]


@dataclass
class Sandbox:
    sim: NordPassSimulator
    ingestion: IngestionStandIn
    azurite: Azurite
    token: str
    clock: SteppedClock
    table: str = field(default_factory=lambda: f"cp{uuid.uuid4().hex[:12]}")
    overrides: dict[str, str] = field(default_factory=dict)

    def environ(self) -> dict[str, str]:
        env = {
            "NORDPASS_ENDPOINT_URL": self.sim.url,
            "NORDPASS_TOKEN": self.token,
            "DATA_COLLECTION_ENDPOINT": self.ingestion.endpoint,
            "DCR_IMMUTABLE_ID": self.ingestion.dcr_immutable_id,
            "DCR_STREAM_NAME": self.ingestion.stream_name,
            "AzureWebJobsStorage": self.azurite.connection_string,
            "CHECKPOINT_TABLE_NAME": self.table,
            "NORDPASS_RUN_BUDGET_SECONDS": "30",
        }
        env.update(self.overrides)
        return env

    @contextmanager
    def connector(self, **overrides: str) -> Iterator[Connector]:
        environ = self.environ() | overrides
        with build_connector(
            load_settings(environ), environ, clock=self.clock, retry_policy=FAST_RETRIES
        ) as c:
            yield c

    def tick(self, seconds: float = 60, **overrides: str) -> RunReport:
        """Advance the clock and run once; a failed run returns its partial report."""
        self.clock.advance(seconds)
        with self.connector(**overrides) as c:
            try:
                return run_once(c)
            except RunFailed as failure:
                return failure.report

    def timer_tick(self, seconds: float = 60, *, budget: float | None = None, **overrides: str) -> TimerRun:
        """Advance the clock and run once through `run_timer_tick` (the timer's code path, with the
        health record), capturing the connector's log lines. A run still going `HUNG_AFTER_SECONDS`
        after its budget is abandoned and reported as hung."""
        self.clock.advance(seconds)
        environ = self.environ() | overrides
        limit = float(budget or environ["NORDPASS_RUN_BUDGET_SECONDS"]) + HUNG_AFTER_SECONDS
        capture = _Lines()
        logger = logging.getLogger("nordpass_connector")
        level = logger.level
        logger.addHandler(capture)
        logger.setLevel(logging.DEBUG)
        outcome: dict[str, Any] = {}

        def call() -> None:
            try:
                outcome["report"] = run_timer_tick(
                    environ=environ, clock=self.clock, retry_policy=FAST_RETRIES
                )
            except RunFailed as failure:
                outcome["report"], outcome["raised"] = failure.report, failure
            except BaseException as other:  # the host would record whatever escaped
                outcome["raised"] = other

        started = time.monotonic()
        worker = threading.Thread(target=call, name="timer-tick", daemon=True)
        try:
            worker.start()
            worker.join(limit)
        finally:
            logger.removeHandler(capture)
            logger.setLevel(level)
        seconds = time.monotonic() - started
        if worker.is_alive():
            return TimerRun(None, None, list(capture.records), seconds)
        return TimerRun(outcome.get("report"), outcome.get("raised"), list(capture.records), seconds)

    def dead_letters(self) -> list[dict[str, Any]]:
        client = TableClient.from_connection_string(
            self.azurite.connection_string, self.table + "deadletters"
        )
        try:
            return [dict(e) for e in client.list_entities()]
        except Exception:  # the table does not exist: nothing was set aside
            return []
        finally:
            client.close()

    def health(self) -> dict[str, Any]:
        """The health row's properties as stored ({} when there is none)."""
        client = TableClient.from_connection_string(self.azurite.connection_string, self.table)
        try:
            entity = client.get_entity("checkpoint", "default.health")
        except Exception:
            return {}
        finally:
            client.close()
        return {k: getattr(v, "value", v) for k, v in entity.items()}

    def figures(self, case: str, source: Iterable[Any], runs: list[TimerRun], **extra: Any) -> dict[str, Any]:
        """Delivered / lost / duplicates / set aside / longest run against ground truth `source`
        (the deliverable events as the connector should see them). Appended as one JSON line to
        the file named by FAULT_FIGURES, if set, so before/after figures can be compared."""
        delivered = self.delivered()
        expected = expected_ids(deliverable(source))
        figures = {
            "case": case,
            "delivered": sum(delivered.values()),
            "lost": sum((expected - delivered).values()),
            # copies beyond the first, plus rows under ids no source event has (resent under new ids)
            "duplicates": sum(v - 1 for v in delivered.values() if v > 1)
            + sum(v for k, v in delivered.items() if k not in expected),
            "set_aside": len(self.dead_letters()),
            "longest_run_s": round(max((r.seconds for r in runs), default=0.0), 1),
            "runs": [f"{r.outcome}/exit {r.exit_code}" for r in runs],
            **extra,
        }
        path = os.environ.get("FAULT_FIGURES")
        if path:
            with open(path, "a", encoding="utf-8") as out:
                out.write(json.dumps(figures) + "\n")
        return figures

    def delivered(self) -> Counter[str]:
        return Counter(self.ingestion.event_id_counts())

    def assert_exactly_once(self, source: Iterable[Any]) -> None:
        """Every deliverable source event landed once: none lost, none twice, nothing invented."""
        delivered = self.delivered()
        expected = expected_ids(deliverable(source))
        assert {k: v for k, v in delivered.items() if v > 1} == {}, "duplicates delivered"
        missing, extra = set(expected) - set(delivered), set(delivered) - set(expected)
        assert not missing, f"{len(missing)} events lost"
        assert not extra, f"{len(extra)} unexpected events delivered"


@pytest.fixture
def sandbox(
    nordpass_sim: NordPassSimulator,
    ingestion: IngestionStandIn,
    azurite_server: Azurite,
    nordpass_token: str,
    managed_identity_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> Sandbox:
    # The stand-in's TLS certificate is signed by the sandbox CA; requests follows this variable,
    # so the production client is used unmodified.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", ingestion.ca_file)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    clock = SteppedClock(int(time.time()))
    nordpass_sim.now = clock.now
    return Sandbox(nordpass_sim, ingestion, azurite_server, nordpass_token, clock)
