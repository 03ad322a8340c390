"""What a run leaves behind in the process that hosts it: nothing.

The Functions host runs tick after tick in one worker process, so every thread a run starts (page
pool, window readers, uploaders) must be gone when it returns, whether it delivered, failed or ran
out of budget mid-read, and the garbage collector must be as the host had it.
"""

from __future__ import annotations

import dataclasses
import gc
import threading
from collections.abc import Iterator

import pytest

from nordpass_connector.adapters.nordpass import NordPassClient
from nordpass_connector.composition import YOUNG_GENERATION_OBJECTS, relaxed_gc
from nordpass_connector.options import Pool, PoolSizes
from sandbox.datagen import EventFactory
from tests.harness import Sandbox

DAY = 86_400
RUN_THREADS = ("nordpass-page", "nordpass-window", "ingestion-upload")
STAND_IN_WORKER = "AnyIO worker thread"


def _threads() -> set[threading.Thread]:
    """Every thread, less the in-process stand-ins' worker pool (anyio starts those on demand to
    serve their synchronous endpoints)."""
    return {t for t in threading.enumerate() if t.name != STAND_IN_WORKER}


def _run_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith(RUN_THREADS)]


@pytest.fixture
def gc_state() -> Iterator[tuple[tuple[int, int, int], int]]:
    before = gc.get_threshold(), gc.get_freeze_count()
    yield before
    gc.set_threshold(*before[0])


def test_runs_leave_no_thread_behind_whatever_their_outcome(
    sandbox: Sandbox, event_factory: EventFactory, gc_state: tuple[tuple[int, int, int], int]
) -> None:
    sb = sandbox
    now = int(sb.clock.now())
    history = event_factory.background(now - 7 * DAY, now - 90, per_minute=0.5)
    sb.sim.add(history)
    before = _threads()

    delivered = sb.tick(0, NORDPASS_MAX_WINDOW_EVENTS="1000")  # several windows, read ahead
    assert delivered.outcome == "ok", delivered.error
    assert delivered.windows > 3 and delivered.sent == len(history)
    assert _run_threads() == [] and _threads() == before

    sb.sim.configure(auth_status=401)  # fails on its first request
    assert sb.tick(60).outcome == "failed"
    assert _run_threads() == [] and _threads() == before

    # Out of budget while pages are in flight: the reads still running are waited for (each is
    # bounded by the budget), none is left running.
    sb.sim.configure(auth_status=None, latency=2.0)
    sb.sim.add(event_factory.background(now, now + 50, per_minute=200))
    cut = sb.tick(600, NORDPASS_RUN_BUDGET_SECONDS="5", NORDPASS_PAGE_SIZE="5")
    assert not cut.caught_up and "budget" in (cut.error or "")
    assert _run_threads() == [] and _threads() == before
    assert (gc.get_threshold(), gc.get_freeze_count()) == gc_state


def test_relaxed_gc_restores_the_collector_even_when_the_run_raises(
    gc_state: tuple[tuple[int, int, int], int],
) -> None:
    during: list[tuple[int, int]] = []

    def failing_run() -> None:
        with relaxed_gc():
            during.append((gc.get_threshold()[0], gc.get_freeze_count()))
            raise RuntimeError("the run failed")

    with pytest.raises(RuntimeError):
        failing_run()
    # During the run: the large young generation, and what existed before frozen out of its scans.
    assert during[0][0] == YOUNG_GENERATION_OBJECTS and during[0][1] >= 1
    assert (gc.get_threshold(), gc.get_freeze_count()) == gc_state


# -- pool sizes: derived in one place, checked when the connector is built -------------------------


def test_every_pool_is_sized_from_the_settings_in_one_place(sandbox: Sandbox) -> None:
    with sandbox.connector(
        NORDPASS_FETCH_CONCURRENCY="7", NORDPASS_WINDOWS_AHEAD="3", NORDPASS_UPLOAD_CONCURRENCY="2"
    ) as c:
        pools = c.options.pools
        assert (pools.page_fetchers, pools.window_readers, pools.uploaders) == (7, 4, 2)
        assert pools.nordpass_requests == 7 + 4, "each window reader sends its first page itself"
        assert (c.prefetcher.size, c.uploader.size) == (4, 2)
        assert c.reader.limit.ceiling == 11
        assert isinstance(c.reader.source, NordPassClient) and c.reader.source.max_connections == 11


def test_a_connector_with_pools_other_than_its_options_say_is_refused(sandbox: Sandbox) -> None:
    with sandbox.connector() as c, Pool(1, "too-few") as small:
        with pytest.raises(ValueError, match="window readers, uploaders"):
            dataclasses.replace(c, prefetcher=small)
        with pytest.raises(ValueError, match="window readers, uploaders"):
            dataclasses.replace(c, uploader=small)
        with pytest.raises(ValueError, match="not a pool size"):
            PoolSizes(page_fetchers=0, window_readers=3, uploaders=3)
