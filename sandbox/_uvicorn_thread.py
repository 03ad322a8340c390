"""Run an ASGI app with uvicorn in a background thread on a free loopback port.

The socket is bound here, before the thread starts, so the port is known at once and two stand-ins
never race for the same number. Shutdown is by flag, then join: nothing is killed by name.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Any

import uvicorn


class ServerThread:
    def __init__(
        self,
        app: Any,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        ssl_keyfile: Path | None = None,
        ssl_certfile: Path | None = None,
        name: str = "sandbox-server",
    ) -> None:
        self._app = app
        self._host = host
        self._requested_port = port
        self._ssl = (ssl_keyfile, ssl_certfile)
        self._name = name
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self.port = 0

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, *, timeout: float = 10.0) -> None:
        if self.running:
            return
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self._host, self._requested_port))
        self.port = sock.getsockname()[1]
        self._sock = sock
        keyfile, certfile = self._ssl
        config = uvicorn.Config(
            self._app,
            host=self._host,
            port=self.port,
            # uvicorn reports a routine "graceful shutdown exceeded" at ERROR when a keep-alive
            # client is still connected; start failures are detected by start() instead.
            log_level="critical",
            access_log=False,
            lifespan="off",
            ssl_keyfile=str(keyfile) if keyfile else None,
            ssl_certfile=str(certfile) if certfile else None,
            # A stalled request must not hold up teardown for longer than a test can afford.
            timeout_graceful_shutdown=1,
            timeout_keep_alive=30,
            server_header=False,
        )
        server = uvicorn.Server(config)
        self._server = server
        self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name=self._name, daemon=True
        )
        self._thread.start()
        end = time.monotonic() + timeout
        while not server.started:
            if not self._thread.is_alive():
                raise RuntimeError(f"{self._name} failed to start on {self._host}:{self.port}")
            if time.monotonic() > end:
                raise RuntimeError(f"{self._name} did not start within {timeout:.0f} s")
            time.sleep(0.01)

    def stop(self, *, timeout: float = 10.0) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
        if self._sock is not None:
            self._sock.close()
        self._server = self._thread = self._sock = None


def wait_for_interrupt() -> None:
    """Block the main thread while the server threads serve, until Ctrl-C (or a signal handler
    that raises KeyboardInterrupt)."""
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
