"""A run leaves no connection open behind it: the function host runs a tick a minute in one long-lived
process, so every client a run builds (the checkpoint table's included) is closed when the run ends."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from nordpass_connector.composition import build_connector
from nordpass_connector.pipeline import run_once
from nordpass_connector.settings import load_settings
from tests.harness import FAST_RETRIES, Sandbox


def _connections_to(port: int) -> set[str]:
    """This process's established TCP sockets to 127.0.0.1:`port`, by socket inode (from /proc, no
    extra package)."""
    inodes = set()
    for fd in Path(f"/proc/{os.getpid()}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    wanted = f"0100007F:{port:04X}"
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[2] == wanted and fields[3] == "01" and fields[9] in inodes:  # 01 = ESTABLISHED
            found.add(fields[9])
    return found


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="counts sockets through Linux's /proc")
def test_runs_leave_no_connection_open(sandbox: Sandbox) -> None:
    # The checkpoint table, the managed-identity endpoint, the ingestion endpoint and NordPass.
    ports = {
        "table": sandbox.azurite.ports["table"],
        "identity": urlsplit(os.environ["IDENTITY_ENDPOINT"]).port,
        "ingestion": urlsplit(sandbox.ingestion.endpoint).port,
        "nordpass": urlsplit(sandbox.sim.url).port,
    }
    left_open: dict[str, set[str]] = {name: set() for name in ports}
    for _ in range(4):
        sandbox.clock.advance(60)
        environ = sandbox.environ()
        settings = load_settings(environ)
        before = {name: _connections_to(port) for name, port in ports.items()}
        with build_connector(settings, environ, clock=sandbox.clock, retry_policy=FAST_RETRIES) as c:
            event = {"type": "t", "action": "a", "timestamp": int(sandbox.clock.now()) - 30}
            sandbox.sim.add([event])
            run_once(c)
            # The run's own connections: open now, not before it (the sandbox's other clients,
            # and whatever an earlier test left, are not the run's to close).
            opened = {name: _connections_to(port) - before[name] for name, port in ports.items()}
            assert all(opened.values()), opened  # it talked to each, so the check can see them
        for name, port in ports.items():
            left_open[name] |= opened[name] & _connections_to(port)
    assert left_open == {name: set() for name in ports}
