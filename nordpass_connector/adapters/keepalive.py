"""Keep-alive HTTP connections to one host, for `httpx.HTTPTransport`, at a fraction of the CPU.

httpx's transport hands every request to httpcore's `ConnectionPool`. That pool re-examines every
connection it holds whenever a request starts or ends: each idle connection costs a `poll()` (is
the socket readable?) and a few Python calls, under one lock. With the 32-40 connections a backfill
keeps open, that scan cost 15-25 % of the reader's CPU (`python -m bench.fetch`) and up to 40 % of a
page in a bare fetch loop (700-870 -> 430-550 µs per page of 100 events, 1,000 pages read three
windows at a time; see the README's performance section).

`ConnectionStack` keeps the idle connections on a stack instead: a request takes the most recently
used one, checks only that one, and puts it back when its response is closed. It queues nothing and
enforces no maximum: the reader's `ConcurrencyLimit` already bounds the requests in flight, and at
most `max_idle` connections are kept between requests. Each connection also sends a request's
headers and body in one go (`CoalescingBackend`: one system call and one TLS record instead of two,
~30 µs less CPU per page). Everything else (HTTP/1.1, TLS, timeouts, the mapping of httpcore's
exceptions to httpx's) stays httpx's and httpcore's own.
"""

from __future__ import annotations

import functools
import os
import socket
import ssl
import threading
from collections.abc import Iterable, Iterator
from typing import Any

import httpcore
import httpx

# No Nagle delay on a connection's small writes (a request leaves in one write already, see
# `_CoalescingStream`; the TLS handshake still makes several).
NO_DELAY: tuple[int, int, int] = (socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def default_ssl_context() -> ssl.SSLContext:
    """httpx's default SSL context, shared by every run of this process while the variables that
    choose the CA certificates stay the same. Loading certifi's bundle costs ~17 ms of CPU, which
    is more than an idle tick's whole work (~11 ms); the Functions host runs one tick a minute in
    the same process. A context only verifies: sharing it between connections and threads is safe.
    """
    return _ssl_context(os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))


@functools.lru_cache(maxsize=4)
def _ssl_context(cert_file: str | None, cert_dir: str | None) -> ssl.SSLContext:
    return httpx.create_ssl_context()  # reads the same two variables


class ConnectionStack:
    """httpcore's request interface over a stack of connections to `origin` (see the module doc)."""

    def __init__(
        self,
        origin: httpcore.Origin,
        *,
        ssl_context: ssl.SSLContext | None,
        max_idle: int,
        keepalive_expiry: float,
        network_backend: httpcore.NetworkBackend | None = None,
    ) -> None:
        self._origin = origin
        self._ssl_context = ssl_context
        self._max_idle = max_idle
        self._keepalive_expiry = keepalive_expiry
        self._idle: list[httpcore.HTTPConnection] = []
        self._backend = CoalescingBackend(network_backend)
        self._lock = threading.Lock()
        self._closed = False
        self.opened = 0  # connections created (for tests and diagnostics)

    @property
    def idle(self) -> int:
        """Connections kept open between requests."""
        return len(self._idle)

    def handle_request(self, request: httpcore.Request) -> httpcore.Response:
        if request.url.origin != self._origin:
            raise httpcore.UnsupportedProtocol(f"this transport only serves {self._origin}")
        while True:
            connection = self._checkout()
            try:
                response = connection.handle_request(request)
            except httpcore.ConnectionNotAvailable:
                # It went away between the check and the request (closed by the server); the
                # request was not sent, so another connection may carry it.
                connection.close()
                continue
            except BaseException:
                connection.close()
                raise
            assert isinstance(response.stream, Iterable)  # the sync connection's body
            return httpcore.Response(
                status=response.status,
                headers=response.headers,
                content=_Returning(response.stream, self, connection),
                extensions=response.extensions,
            )

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()

    def __enter__(self) -> ConnectionStack:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _checkout(self) -> httpcore.HTTPConnection:
        while True:
            with self._lock:
                if self._closed:
                    raise RuntimeError("the connection stack is closed")
                connection = self._idle.pop() if self._idle else None
                if connection is None:
                    self.opened += 1
            if connection is None:
                return httpcore.HTTPConnection(
                    self._origin,
                    ssl_context=self._ssl_context,
                    keepalive_expiry=self._keepalive_expiry,
                    socket_options=[NO_DELAY],
                    network_backend=self._backend,
                )
            # Only the connection about to be used is checked: idle for too long, or closed (or
            # sent something unexpected) while it sat on the stack.
            if connection.is_available() and not connection.has_expired():
                return connection
            connection.close()

    def _checkin(self, connection: httpcore.HTTPConnection) -> None:
        with self._lock:
            if not self._closed and len(self._idle) < self._max_idle and connection.is_available():
                self._idle.append(connection)
                return
        connection.close()


class CoalescingBackend(httpcore.NetworkBackend):
    """httpcore's own sockets, each wrapped in a `_CoalescingStream`."""

    def __init__(self, sockets: httpcore.NetworkBackend | None = None) -> None:
        self._sockets = sockets or httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        return _CoalescingStream(
            self._sockets.connect_tcp(host, port, timeout, local_address, socket_options)
        )

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        return _CoalescingStream(self._sockets.connect_unix_socket(path, timeout, socket_options))

    def sleep(self, seconds: float) -> None:
        self._sockets.sleep(seconds)


class _CoalescingStream(httpcore.NetworkStream):
    """Holds what httpcore writes until it next reads, then sends it at once.

    httpcore writes a request's headers and its body separately: two sends, so two system calls,
    two TCP segments (the second one waiting for an ACK without TCP_NODELAY) and, over TLS, two
    records. An HTTP/1.1 client always reads the response after writing a request, so sending
    both at the first read changes nothing else; a failed send still raises httpcore's WriteError.
    """

    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream
        self._pending: list[bytes] = []
        self._write_timeout: float | None = None

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if buffer:
            self._pending.append(buffer)
            self._write_timeout = timeout

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        self._flush()
        return self._stream.read(max_bytes, timeout)

    def close(self) -> None:
        self._pending.clear()
        self._stream.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        self._flush()
        return _CoalescingStream(self._stream.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)

    def _flush(self) -> None:
        if self._pending:
            data = b"".join(self._pending) if len(self._pending) > 1 else self._pending[0]
            self._pending.clear()
            self._stream.write(data, self._write_timeout)


class _Returning(Iterable[bytes]):
    """A response body that gives its connection back to the stack once closed."""

    def __init__(self, stream: Iterable[bytes], stack: ConnectionStack, connection: httpcore.HTTPConnection):
        self._stream = stream
        self._stack = stack
        self._connection: httpcore.HTTPConnection | None = connection

    def __iter__(self) -> Iterator[bytes]:
        yield from self._stream

    def close(self) -> None:
        try:
            close = getattr(self._stream, "close", None)
            if close is not None:
                close()
        finally:
            # Once only: a connection on the stack twice would be handed to two requests at once.
            connection, self._connection = self._connection, None
            if connection is not None:
                self._stack._checkin(connection)


class KeepAliveTransport(httpx.HTTPTransport):
    """`httpx.HTTPTransport` for one origin, with a `ConnectionStack` in place of httpcore's pool.

    The SSL context is httpx's default (certifi, or SSL_CERT_FILE / SSL_CERT_DIR), built once per
    process (`default_ssl_context`). Retries are 0: every retry goes through the connector's Retrier, which knows the deadline.
    """

    def __init__(self, url: httpx.URL, *, max_idle: int, keepalive_expiry: float = 30.0) -> None:
        # Plain http (the local simulator) needs no context.
        ssl_context = default_ssl_context() if url.scheme == "https" else None
        # The base class builds httpcore's pool with the same context (no second certificate load)
        # or, for plain http, an unused blank one; the pool is replaced before any use.
        super().__init__(verify=ssl_context or False, retries=0)
        self._pool.close()
        self.stack = ConnectionStack(
            httpcore.Origin(url.raw_scheme, url.raw_host, url.port or (443 if url.scheme == "https" else 80)),
            ssl_context=ssl_context,
            max_idle=max_idle,
            keepalive_expiry=keepalive_expiry,
        )
        self._pool = self.stack  # type: ignore[assignment]
