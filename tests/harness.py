"""End-to-end harness: the real connector (composition root, real adapters and SDK clients) wired to
the sandbox stand-ins, plus ground-truth helpers.

The only thing tests steer is the wall clock the connector plans windows with (`SteppedClock`):
ticks are simulated by moving it forward, everything else runs for real.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest

from nordpass_connector.composition import build_connector
from nordpass_connector.mapping import MalformedEvent, canonical_digest, event_id, prepare
from nordpass_connector.pipeline import Connector, RunFailed, run_once
from nordpass_connector.report import RunReport
from nordpass_connector.retry import RetryPolicy
from nordpass_connector.settings import load_settings
from sandbox.azurite import Azurite
from sandbox.ingestion import IngestionStandIn
from sandbox.nordpass_sim import NordPassSimulator

FAST_RETRIES = RetryPolicy(base_delay=0.01, max_delay=0.1, max_attempts=8)


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
    seen: Counter[bytes] = Counter()
    ids: Counter[str] = Counter()
    for raw in events:
        digest = canonical_digest(raw)
        ids[event_id(digest, seen[digest])] += 1
        seen[digest] += 1
    return ids


def deliverable(events: Iterable[Any]) -> list[Any]:
    return [e for e in events if not isinstance(prepare(e), MalformedEvent)]


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
