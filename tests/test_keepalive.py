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

import httpcore
import httpx
import pytest

from nordpass_connector.adapters.keepalive import ConnectionStack, KeepAliveTransport, default_ssl_context
from nordpass_connector.adapters.nordpass import NordPassClient
from nordpass_connector.clock import SystemClock
from nordpass_connector.ports import Window
from nordpass_connector.retry import Deadline, Retrier
from sandbox.certs import CertPaths
from sandbox.datagen import EventFactory
from sandbox.ingestion import IngestionStandIn
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


class _CountingSockets(httpcore.NetworkBackend):
    """httpcore's real sockets, counting the sends made on them."""

    def __init__(self) -> None:
        self.sends: list[int] = []
        self._real = httpcore.SyncBackend()

    def connect_tcp(self, *args: Any, **kwargs: Any) -> httpcore.NetworkStream:
        stream = self._real.connect_tcp(*args, **kwargs)
        write, sends = stream.write, self.sends

        def counted(buffer: bytes, timeout: float | None = None) -> None:
            sends.append(len(buffer))
            write(buffer, timeout)

        stream.write = counted  # type: ignore[method-assign]
        return stream


def test_a_request_leaves_in_one_send(nordpass_sim: NordPassSimulator, hour: list[Any]) -> None:
    sockets = _CountingSockets()
    stack = ConnectionStack(
        httpcore.Origin(b"http", b"127.0.0.1", httpx.URL(nordpass_sim.url).port or 80),
        ssl_context=None,
        max_idle=2,
        keepalive_expiry=30,
        network_backend=sockets,
    )
    body = b'{"page": 1, "per_page": 5}'
    for _ in range(3):
        response = stack.handle_request(
            httpcore.Request(
                "POST",
                nordpass_sim.url,
                headers=[("Host", "127.0.0.1"), ("Content-Length", str(len(body)))],
                content=body,
            )
        )
        assert response.status == 401  # no token: the simulator read the whole request to say so
        response.read()
        response.close()
    # Headers and body together, once per request, over one kept-alive connection.
    assert len(sockets.sends) == 3 and all(size > len(body) for size in sockets.sends)
    assert stack.opened == 1
    stack.close()


def test_tls_with_the_ca_from_ssl_cert_file_and_an_untrusted_certificate_refused(
    ingestion: IngestionStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = httpx.URL(ingestion.endpoint + "/_sandbox/stats")
    monkeypatch.setenv("SSL_CERT_FILE", ingestion.ca_file)
    with KeepAliveTransport(url, max_idle=2) as transport:
        for _ in range(2):
            response = transport.handle_request(httpx.Request("GET", url))
            response.read()
            response.close()
            assert response.status_code == 200
        assert transport.stack.opened == 1
    monkeypatch.delenv("SSL_CERT_FILE")  # the default bundle does not know the sandbox's CA
    with KeepAliveTransport(url, max_idle=2) as transport, pytest.raises(httpx.ConnectError):
        transport.handle_request(httpx.Request("GET", url))


def test_the_ssl_context_is_built_once_per_process_and_certificate_settings(
    monkeypatch: pytest.MonkeyPatch, certs: CertPaths
) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    public = default_ssl_context()
    assert default_ssl_context() is public  # the next run of the process reuses it
    monkeypatch.setenv("SSL_CERT_FILE", str(certs.ca))
    private = default_ssl_context()
    assert private is not public and default_ssl_context() is private
    assert len(private.get_ca_certs()) == 1  # the sandbox CA alone, not the public bundle
    monkeypatch.delenv("SSL_CERT_FILE")
    assert default_ssl_context() is public
