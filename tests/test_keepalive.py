"""The NordPass client's keep-alive connections (`keepalive.ConnectionStack`) over real HTTP.

What the stack must do, whatever it saves: reuse a connection, never reuse one that the server
dropped or that sat idle past its expiry, keep no more than `max_idle` idle, serve many threads at
once, and close everything it holds.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from nordpass_connector.clock import SystemClock
from nordpass_connector.keepalive import KeepAliveTransport
from nordpass_connector.nordpass import NordPassClient
from nordpass_connector.ports import Window
from nordpass_connector.retry import Deadline, Retrier
from sandbox.datagen import EventFactory
from sandbox.nordpass_sim import NordPassSimulator

T0 = 1_750_000_000
WINDOW = Window(T0, T0 + 3600)


@pytest.fixture
def hour(nordpass_sim: NordPassSimulator, event_factory: EventFactory) -> list[dict[str, Any]]:
    events = event_factory.background(WINDOW.start, WINDOW.end, per_minute=4)  # ~240 events
    nordpass_sim.add(events)
    return events


@pytest.fixture
def transport(nordpass_sim: NordPassSimulator) -> Iterator[KeepAliveTransport]:
    made = KeepAliveTransport(httpx.URL(nordpass_sim.url), max_idle=4)
    yield made
    made.close()


def _client(sim: NordPassSimulator, retrier: Retrier, transport: KeepAliveTransport) -> NordPassClient:
    return NordPassClient(
        endpoint_url=sim.url,
        token=sim.token,
        per_page=20,
        retrier=retrier,
        clock=retrier.clock,
        transport=transport,
    )


def _deadline() -> Deadline:
    return Deadline.after(SystemClock(), 10)


def test_sequential_requests_reuse_one_connection(
    nordpass_sim: NordPassSimulator,
    nordpass_retrier: Retrier,
    transport: KeepAliveTransport,
    hour: list[Any],
) -> None:
    client = _client(nordpass_sim, nordpass_retrier, transport)
    pages = [client.fetch_page(WINDOW, n, deadline=_deadline()) for n in range(1, 11)]
    assert sum(len(p.events) for p in pages) == min(200, len(hour))
    assert transport.stack.opened == 1
    assert transport.stack.idle == 1


def test_threads_share_the_stack_and_keep_at_most_max_idle(
    nordpass_sim: NordPassSimulator,
    nordpass_retrier: Retrier,
    transport: KeepAliveTransport,
    hour: list[Any],
) -> None:
    nordpass_sim.configure(latency=0.05)
    client = _client(nordpass_sim, nordpass_retrier, transport)
    pages = -(-len(hour) // 20)
    with ThreadPoolExecutor(8) as pool:
        for _ in range(2):
            got = list(
                pool.map(lambda n: client.fetch_page(WINDOW, n, deadline=_deadline()), range(1, pages + 1))
            )
            assert sum(len(p.events) for p in got) == len(hour)
    # Up to 8 requests at once need up to 8 connections; only 4 stay open between requests, and
    # the second round reuses them instead of opening 8 more.
    assert 2 <= transport.stack.opened <= 12
    assert transport.stack.idle <= 4


def test_a_dropped_connection_is_replaced_not_reused(
    nordpass_sim: NordPassSimulator,
    nordpass_retrier: Retrier,
    transport: KeepAliveTransport,
    hour: list[Any],
) -> None:
    client = _client(nordpass_sim, nordpass_retrier, transport)
    client.fetch_page(WINDOW, 1, deadline=_deadline())
    nordpass_sim.fail_next("drop")
    assert client.fetch_page(WINDOW, 2, deadline=_deadline()).events  # retried by the client
    assert transport.stack.opened == 2
    client.fetch_page(WINDOW, 3, deadline=_deadline())
    assert transport.stack.opened == 2


def test_an_expired_connection_is_not_reused(nordpass_sim: NordPassSimulator, hour: list[Any]) -> None:
    with KeepAliveTransport(httpx.URL(nordpass_sim.url), max_idle=4, keepalive_expiry=0.05) as transport:
        request = httpx.Request("POST", nordpass_sim.url, json={"page": 1, "per_page": 5})
        for _ in range(2):
            response = transport.handle_request(request)
            response.read()
            response.close()
            time.sleep(0.15)
        assert transport.stack.opened == 2


def test_close_closes_the_idle_connections_and_refuses_more(
    nordpass_sim: NordPassSimulator, transport: KeepAliveTransport, hour: list[Any]
) -> None:
    request = httpx.Request("POST", nordpass_sim.url, json={"page": 1, "per_page": 5})
    held = transport.handle_request(request)  # its body not read yet: its connection is busy
    other = transport.handle_request(request)
    other.read()
    other.close()
    assert transport.stack.idle == 1
    transport.close()
    assert transport.stack.idle == 0
    held.read()
    held.close()  # a response closed after the stack: its connection is closed, not kept
    assert transport.stack.idle == 0
    with pytest.raises(RuntimeError):
        transport.handle_request(request)


def test_another_origin_is_refused(transport: KeepAliveTransport) -> None:
    with pytest.raises(httpx.UnsupportedProtocol):
        transport.handle_request(httpx.Request("GET", "http://127.0.0.1:1/elsewhere"))
    assert transport.stack.opened == 0
