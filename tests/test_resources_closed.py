"""A run leaves no connection open behind it: the function host runs a tick a minute in one long-lived
process, so every client a run builds (the checkpoint table's included) is closed when the run ends."""

from __future__ import annotations

import gc
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from nordpass_connector.composition import build_connector
from nordpass_connector.pipeline import run_once
from nordpass_connector.settings import load_settings
from tests.harness import FAST_RETRIES, Sandbox


def _open_socket_inodes() -> set[str]:
    """Inodes of the sockets this process holds open (from /proc, no extra package)."""
    inodes = set()
    for fd in Path(f"/proc/{os.getpid()}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


@contextmanager
def _connections_made_by_new_threads(ports: dict[str, int]) -> Iterator[dict[str, set[str]]]:
    """Socket inodes, per port name, that this thread or a thread started inside the block connected
    to one of `ports`. A thread already running (a timer tick an earlier test abandoned as hung, a
    stand-in's server) is not the run's, even when it reaches the same session-wide Azurite."""
    names = {port: name for name, port in ports.items()}
    made: dict[str, set[str]] = {name: set() for name in ports}
    others = {t.ident for t in threading.enumerate()} - {threading.get_ident()}
    original = socket.socket.connect

    def connect(sock: socket.socket, address: Any) -> None:
        original(sock, address)
        name = names.get(address[1]) if isinstance(address, tuple) else None
        if name and threading.get_ident() not in others:
            made[name].add(os.readlink(f"/proc/self/fd/{sock.fileno()}")[8:-1])

    socket.socket.connect = connect  # type: ignore[method-assign]
    try:
        yield made
    finally:
        socket.socket.connect = original  # type: ignore[method-assign]


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="reads sockets through Linux's /proc")
def test_runs_leave_no_connection_open(sandbox: Sandbox) -> None:
    # The checkpoint table, the managed-identity endpoint, the ingestion endpoint and NordPass.
    ports = {
        "table": sandbox.azurite.ports["table"],
        "identity": urlsplit(os.environ["IDENTITY_ENDPOINT"]).port or 80,
        "ingestion": urlsplit(sandbox.ingestion.endpoint).port or 443,
        "nordpass": urlsplit(sandbox.sim.url).port or 80,
    }
    left_open: dict[str, set[str]] = {name: set() for name in ports}
    for _ in range(4):
        sandbox.clock.advance(60)
        environ = sandbox.environ()
        settings = load_settings(environ)
        with (
            _connections_made_by_new_threads(ports) as opened,
            build_connector(settings, environ, clock=sandbox.clock, retry_policy=FAST_RETRIES) as c,
        ):
            event = {"type": "t", "action": "a", "timestamp": int(sandbox.clock.now()) - 30}
            sandbox.sim.add([event])
            run_once(c)
            assert all(opened.values()), opened  # it talked to each, so the check can see them
        # A socket that only a reference cycle keeps (a retried call's exception frames) closes at
        # the next collection, as it would in the host; a client left unclosed stays reachable
        # through `c` and keeps its sockets open.
        gc.collect()
        still_open = _open_socket_inodes()
        for name in ports:
            left_open[name] |= opened[name] & still_open
    assert left_open == {name: set() for name in ports}
