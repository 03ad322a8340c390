"""The local storage emulator (Azurite) behind `AzureWebJobsStorage=UseDevelopmentStorage=true`.

The example settings use it, so the first local run of a new user often meets an emulator that is
not running. The table client then reports a bare connection error; here that case is recognised
(the settings point at a loopback emulator and nothing listens there) and said in those words, with
the two ways out: start Azurite, or use a real storage account.
"""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

from ..errors import CheckpointUnavailable
from ..settings import STORAGE, StorageSettings, is_loopback

# Where `UseDevelopmentStorage=true` sends table requests (the storage SDKs' fixed default).
DEVELOPMENT_TABLE_ADDRESS = ("127.0.0.1", 10002)
START_AZURITE = (
    "start Azurite (after `make setup`: `npx azurite-table --location .sandbox/azurite-local "
    f"--disableTelemetry`, which listens on port {DEVELOPMENT_TABLE_ADDRESS[1]}) or set {STORAGE} to "
    f"a real storage account's connection string (or {STORAGE}__accountName for identity-based "
    "storage)"
)


def emulator_address(storage: StorageSettings) -> tuple[str, int] | None:
    """Host and port of a local emulator's table endpoint, or None for a real storage account."""
    if storage.connection_string is None:
        return None
    pairs = {}
    for part in storage.connection_string.get_secret_value().split(";"):
        key, _, value = part.partition("=")
        pairs[key.strip().lower()] = value.strip()
    if pairs.get("usedevelopmentstorage", "").lower() == "true":
        return DEVELOPMENT_TABLE_ADDRESS
    endpoint = pairs.get("tableendpoint")
    if not endpoint:
        return None
    try:
        parts = urlsplit(endpoint)
        host, port = parts.hostname or "", parts.port
    except ValueError:
        return None
    if not is_loopback(host):
        return None
    return host, port or (443 if parts.scheme == "https" else 80)


def listens(address: tuple[str, int], timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection(address, timeout=timeout):
            return True
    except OSError:
        return False


def emulator_not_running(storage: StorageSettings) -> CheckpointUnavailable | None:
    """The error to report instead of a connection failure, when the settings point at a local
    emulator and nothing listens there; None otherwise (a real account, or the emulator is up)."""
    return nothing_listens_at(emulator_address(storage))


def nothing_listens_at(address: tuple[str, int] | None) -> CheckpointUnavailable | None:
    """As `emulator_not_running`, for an emulator address already taken from the settings."""
    if address is None or listens(address):
        return None
    host, port = address
    if address == DEVELOPMENT_TABLE_ADDRESS:
        message = (
            f"Azurite is not running: {STORAGE}=UseDevelopmentStorage=true means the local storage "
            f"emulator at {host}:{port}, and nothing answers there"
        )
    else:
        message = f"nothing answers at {host}:{port}, the local storage emulator {STORAGE} points at"
    return CheckpointUnavailable(message, action=START_AZURITE)
