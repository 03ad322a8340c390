"""Azurite (the Azure Storage emulator) for tests and the demo, on a free loopback port.

The pinned `azurite@3.35.0` (the last release that runs on node 20) is installed into
`<repo>/node_modules` from `package.json` only when missing. Each service runs as its own process,
started with telemetry off, and is stopped by the PID recorded here - never by name.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

AZURITE_VERSION = "3.35.0"
REPO_ROOT = Path(__file__).resolve().parent.parent
ACCOUNT_NAME = "devstoreaccount1"
# The public, documented emulator key: it opens nothing outside the local emulator.
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

Service = Literal["table", "blob"]


class AzuriteUnavailable(RuntimeError):
    """Azurite cannot be installed or started; the message is one actionable line."""


def azurite_bin(service: Service, *, root: Path = REPO_ROOT) -> Path:
    return root / "node_modules" / ".bin" / f"azurite-{service}"


def ensure_installed(*, root: Path = REPO_ROOT, timeout: float = 300.0) -> None:
    """`npm install` from the repo's package.json/package-lock.json if Azurite is not there yet."""
    if all(azurite_bin(s, root=root).exists() for s in ("table", "blob")):
        return
    npm = shutil.which("npm")
    if npm is None:
        raise AzuriteUnavailable("npm not found: install node 20 + npm, then run `npm ci` in the repo root")
    cmd = [npm, "ci" if (root / "package-lock.json").exists() else "install", "--no-audit", "--no-fund"]
    try:
        done = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise AzuriteUnavailable(
            f"`{' '.join(cmd[1:])}` timed out after {timeout:.0f} s (registry unreachable?)"
        ) from exc
    if done.returncode != 0 or not azurite_bin("table", root=root).exists():
        last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise AzuriteUnavailable(f"npm could not install azurite@{AZURITE_VERSION}: {last[0]}")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _wait_port(host: str, port: int, proc: subprocess.Popen[bytes], timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.05)
    return False


@dataclass
class Azurite:
    """Azurite services on free ports. `location=None` keeps data in memory only."""

    services: tuple[Service, ...] = ("table",)
    location: Path | None = None
    host: str = "127.0.0.1"
    root: Path = REPO_ROOT
    ports: dict[str, int] = field(default_factory=dict)
    pids: dict[str, int] = field(default_factory=dict)
    _procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict, repr=False)

    def start(self, *, timeout: float = 20.0) -> Azurite:
        ensure_installed(root=self.root)
        for service in self.services:
            if service not in self._procs:
                self._start_one(service, timeout)
        return self

    def _start_one(self, service: Service, timeout: float) -> None:
        for _ in range(3):  # a free port can be taken between probing and binding: try another
            port = free_port(self.host)
            cmd = [
                str(azurite_bin(service, root=self.root)),
                "--silent",
                "--disableTelemetry",
                "--skipApiVersionCheck",
                f"--{service}Host",
                self.host,
                f"--{service}Port",
                str(port),
            ]
            if self.location is None:
                cmd.append("--inMemoryPersistence")
            else:
                self.location.mkdir(parents=True, exist_ok=True)
                cmd += ["--location", str(self.location)]
            proc = subprocess.Popen(
                cmd,
                cwd=self.root,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                start_new_session=True,  # so stop() can signal exactly this process group
            )
            if _wait_port(self.host, port, proc, timeout):
                self._procs[service] = proc
                self.ports[service] = port
                self.pids[service] = proc.pid
                return
            self._kill(proc)
        raise AzuriteUnavailable(f"azurite-{service} did not become ready on {self.host}")

    def stop(self) -> None:
        for service, proc in list(self._procs.items()):
            self._kill(proc)
            del self._procs[service]
            self.pids.pop(service, None)

    @staticmethod
    def _kill(proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            try:
                # SIGINT, not SIGTERM: Azurite saves a persisted (--location) database only on its
                # SIGINT shutdown; SIGTERM exits at once and loses the last few seconds of writes.
                os.killpg(proc.pid, signal.SIGINT)
                proc.wait(timeout=5)
            except ProcessLookupError:
                pass
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        if proc.stderr is not None:
            proc.stderr.close()

    def __enter__(self) -> Azurite:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def endpoint(self, service: Service) -> str:
        return f"http://{self.host}:{self.ports[service]}/{ACCOUNT_NAME}"

    @property
    def connection_string(self) -> str:
        """The explicit form (`UseDevelopmentStorage=true` only knows the default ports)."""
        parts = [
            "DefaultEndpointsProtocol=http",
            f"AccountName={ACCOUNT_NAME}",
            f"AccountKey={ACCOUNT_KEY}",
        ]
        if "table" in self.ports:
            parts.append(f"TableEndpoint={self.endpoint('table')}")
        if "blob" in self.ports:
            parts.append(f"BlobEndpoint={self.endpoint('blob')}")
        return ";".join(parts) + ";"
