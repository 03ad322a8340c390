"""Every setting, read and validated once from a mapping (the process environment in production).

All problems are collected and reported together, each naming its setting, so a misconfigured
deployment is fixed in one pass. Secrets are held as `SecretStr` and never appear in messages.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urlsplit

from pydantic import SecretStr

from .errors import ConfigurationError
from .schema import DEFAULT_HEALTH_STREAM_NAME, DEFAULT_STREAM_NAME

log = logging.getLogger(__name__)

KNOWN_NORDPASS_HOSTS = ("api-activities.eu.nordpass.com", "api-activities.us.nordpass.com")
KEY_VAULT_PREFIX = "@microsoft.keyvault("
_DCR_ID = re.compile(r"^dcr-[0-9a-f]{32}$")
_TABLE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9]{2,62}$")
_STREAM = re.compile(r"^Custom-[A-Za-z][A-Za-z0-9_]*$")
# What a copied example or template leaves behind: "<dcr-name>", "{token}", "${NORDPASS_TOKEN}".
_BRACKETED = re.compile(r"<[^<>]*>|\{[^{}]*\}")
_DOCUMENTATION_DOMAINS = ("example.com", "example.net", "example.org")  # RFC 2606: never a service
_NIL_GUID = "00000000-0000-0000-0000-000000000000"
# Compared lower-cased with everything but letters and digits removed ("Your_Token-Here").
_TOKEN_PLACEHOLDERS = frozenset(
    {
        "changeme",
        "replaceme",
        "placeholder",
        "token",
        "yourtoken",
        "yourtokenhere",
        "tokenhere",
        "inserttokenhere",
        "nordpasstoken",
        "yournordpasstoken",
        "secret",
        "todo",
        "tbd",
        "none",
        "null",
        "undefined",
    }
)

NORDPASS_ENDPOINT_URL = "NORDPASS_ENDPOINT_URL"
NORDPASS_TOKEN = "NORDPASS_TOKEN"
DATA_COLLECTION_ENDPOINT = "DATA_COLLECTION_ENDPOINT"
DCR_IMMUTABLE_ID = "DCR_IMMUTABLE_ID"
DCR_STREAM_NAME = "DCR_STREAM_NAME"
DCR_HEALTH_STREAM_NAME = "DCR_HEALTH_STREAM_NAME"
# DCR_HEALTH_STREAM_NAME=none: no health rows (for a DCR deployed before the health table existed).
HEALTH_STREAM_OFF = "none"
AZURE_CLIENT_ID = "AZURE_CLIENT_ID"
STORAGE = "AzureWebJobsStorage"
STORAGE_ACCOUNT = "AzureWebJobsStorage__accountName"
STORAGE_TABLE_URI = "AzureWebJobsStorage__tableServiceUri"
STORAGE_CREDENTIAL = "AzureWebJobsStorage__credential"
STORAGE_CLIENT_ID = "AzureWebJobsStorage__clientId"
CHECKPOINT_TABLE_NAME = "CHECKPOINT_TABLE_NAME"
CONNECTOR_INSTANCE = "CONNECTOR_INSTANCE"
RUN_BUDGET = "NORDPASS_RUN_BUDGET_SECONDS"
LOOKBACK = "NORDPASS_LOOKBACK_SECONDS"
SAFETY_DELAY = "NORDPASS_SAFETY_DELAY_SECONDS"
BACKFILL_DAYS = "NORDPASS_BACKFILL_DAYS"
PAGE_SIZE = "NORDPASS_PAGE_SIZE"
FETCH_CONCURRENCY = "NORDPASS_FETCH_CONCURRENCY"
MAX_WINDOW_EVENTS = "NORDPASS_MAX_WINDOW_EVENTS"
WINDOWS_AHEAD = "NORDPASS_WINDOWS_AHEAD"
UPLOAD_CONCURRENCY = "NORDPASS_UPLOAD_CONCURRENCY"

#: Every setting the connector reads; the deployment template is checked against this list.
SETTING_NAMES: tuple[str, ...] = (
    NORDPASS_ENDPOINT_URL,
    NORDPASS_TOKEN,
    DATA_COLLECTION_ENDPOINT,
    DCR_IMMUTABLE_ID,
    DCR_STREAM_NAME,
    DCR_HEALTH_STREAM_NAME,
    AZURE_CLIENT_ID,
    STORAGE,
    STORAGE_ACCOUNT,
    STORAGE_TABLE_URI,
    STORAGE_CREDENTIAL,
    STORAGE_CLIENT_ID,
    CHECKPOINT_TABLE_NAME,
    CONNECTOR_INSTANCE,
    RUN_BUDGET,
    LOOKBACK,
    SAFETY_DELAY,
    BACKFILL_DAYS,
    PAGE_SIZE,
    FETCH_CONCURRENCY,
    MAX_WINDOW_EVENTS,
    WINDOWS_AHEAD,
    UPLOAD_CONCURRENCY,
)


@dataclass(frozen=True)
class StorageSettings:
    """Where the checkpoint table lives, following the Functions host's AzureWebJobsStorage rules."""

    connection_string: SecretStr | None = None
    table_service_uri: str | None = None
    client_id: str | None = None  # user-assigned identity for identity-based storage


@dataclass(frozen=True)
class StoreSettings:
    """The checkpoint table (checkpoint, dead letters, health record) and how to reach it."""

    storage: StorageSettings
    checkpoint_table: str = "nordpasscheckpoint"
    instance: str = "default"
    azure_client_id: str | None = None


@dataclass(frozen=True)
class Settings:
    nordpass_endpoint_url: str
    nordpass_token: SecretStr
    data_collection_endpoint: str
    dcr_immutable_id: str
    dcr_stream_name: str
    storage: StorageSettings
    # The DCR stream for one health row per run; None when turned off.
    dcr_health_stream_name: str | None = DEFAULT_HEALTH_STREAM_NAME
    azure_client_id: str | None = None
    checkpoint_table: str = "nordpasscheckpoint"
    instance: str = "default"
    run_budget_seconds: float = 45.0
    lookback_seconds: int = 900
    safety_delay_seconds: int = 2
    backfill_days: float = 7.0
    page_size: int = 100
    fetch_concurrency: int = 32
    max_window_events: int = 10_000
    windows_ahead: int = 2
    upload_concurrency: int = 3

    @property
    def nordpass_host(self) -> str:
        return urlsplit(self.nordpass_endpoint_url).hostname or ""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


_REAL_VALUE = {
    NORDPASS_TOKEN: "paste the token from the Admin Panel (Integrations > Events reporting > Microsoft Sentinel)",
    NORDPASS_ENDPOINT_URL: "use the URL shown next to the token in the Admin Panel",
    DATA_COLLECTION_ENDPOINT: "use the data collection rule's logs ingestion endpoint (a deployment output)",
    DCR_IMMUTABLE_ID: "use the data collection rule's immutableId (a deployment output)",
    AZURE_CLIENT_ID: "use the user-assigned identity's client id, or leave it empty",
    STORAGE_CLIENT_ID: "use the user-assigned identity's client id, or leave it empty",
    STORAGE: "use the storage account's connection string (UseDevelopmentStorage=true for Azurite)",
}


def _is_placeholder(name: str, value: str) -> bool:
    """A value that only stands for the real one: left over from an example, a template or docs."""
    if _BRACKETED.search(value):
        return True
    if name in (NORDPASS_ENDPOINT_URL, DATA_COLLECTION_ENDPOINT, STORAGE_TABLE_URI):
        try:
            host = (urlsplit(value).hostname or "").lower()
        except ValueError:
            return False  # not a URL at all: the URL check says so
        return "xxxx" in host or any(host == d or host.endswith("." + d) for d in _DOCUMENTATION_DOMAINS)
    if name == DCR_IMMUTABLE_ID:
        return value.lower() == "dcr-" + "0" * 32
    if name in (AZURE_CLIENT_ID, STORAGE_CLIENT_ID):
        return value == _NIL_GUID
    if name == NORDPASS_TOKEN:
        # One character repeated ("xxxxxxxx", "********") is a mask or a filler, not a token.
        return len(set(value)) == 1 or re.sub(r"[^a-z0-9]", "", value.lower()) in _TOKEN_PLACEHOLDERS
    return False


def _is_connection_string(value: str) -> bool:
    """The shape the storage SDK accepts (it raises a bare ValueError otherwise): key=value pairs
    naming the emulator, a table endpoint, or an account with its key or a SAS."""
    pairs = {}
    for part in value.split(";"):
        if not part.strip():
            continue
        key, sep, rest = part.partition("=")
        if not sep or not key.strip():
            return False
        pairs[key.strip().lower()] = rest.strip()
    if pairs.get("usedevelopmentstorage", "").lower() == "true":
        return True
    return "tableendpoint" in pairs or (
        "accountname" in pairs and ("accountkey" in pairs or "sharedaccesssignature" in pairs)
    )


def _sendable(token: str) -> bool:
    """Whether the token can go into an HTTP header as it is (the NordPass client refuses it too)."""
    return token.isascii() and all(" " < ch != "\x7f" for ch in token)


T = TypeVar("T", int, float)


class _Reader:
    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ
        self.problems: list[str] = []

    def text(self, name: str, *, required: bool, default: str | None = None) -> str | None:
        value = self.environ.get(name)
        if value is None or not value.strip():
            if required:
                self.problems.append(f"{name} is missing")
            return default
        value = value.strip()
        if value.lower().startswith(KEY_VAULT_PREFIX):
            self.problems.append(
                f"{name} still holds an unresolved Key Vault reference: the app could not read the "
                "secret (check the identity has 'Key Vault Secrets User' and the reference syntax)"
            )
            return None
        if _is_placeholder(name, value):
            # Never quoted: the setting may be a secret.
            hint = _REAL_VALUE.get(name, "replace it with the real value")
            self.problems.append(f"{name} holds a placeholder, not a real value: {hint}")
            return None
        return value

    def number(self, name: str, parse: Callable[[str], T], default: T, low: T, high: T) -> T:
        raw = self.text(name, required=False)
        if raw is None:
            return default
        try:
            value = parse(raw)
        except ValueError:
            self.problems.append(f"{name} must be a number, got {raw!r}")
            return default
        if not low <= value <= high:
            self.problems.append(f"{name} must be between {low} and {high}, got {value}")
            return default
        return value

    def https_url(self, name: str, value: str | None, *, allow_loopback_http: bool) -> None:
        if value is None:
            return
        parts = urlsplit(value)
        host = parts.hostname or ""
        if not host:
            self.problems.append(f"{name} must be an absolute https URL")
        elif parts.scheme == "http" and allow_loopback_http and is_loopback(host):
            return
        elif parts.scheme != "https":
            loopback = " (http is accepted only for loopback hosts)" if allow_loopback_http else ""
            self.problems.append(f"{name} must use https{loopback}")


def load_store_settings(environ: Mapping[str, str]) -> StoreSettings:
    """Only what reaching the checkpoint table needs (`status`): a broken NordPass token or DCR
    setting does not stop a person from reading the health record."""
    r = _Reader(environ)
    store = _read_store(r)
    if r.problems:
        raise ConfigurationError(r.problems)
    return store


def _read_store(r: _Reader) -> StoreSettings:
    connection_string = r.text(STORAGE, required=False)
    if connection_string is not None and not _is_connection_string(connection_string):
        r.problems.append(
            f"{STORAGE} is not a storage connection string: use UseDevelopmentStorage=true (Azurite) or "
            "the storage account's connection string (Access keys), or leave it empty for identity-based "
            "storage"
        )
    table_uri = r.text(STORAGE_TABLE_URI, required=False)
    account = r.text(STORAGE_ACCOUNT, required=False)
    if table_uri is None and account is not None:
        table_uri = f"https://{account}.table.core.windows.net"
    # Identity-based storage sends a bearer token, which the storage SDK refuses to send over http.
    r.https_url(
        STORAGE_TABLE_URI, table_uri if table_uri and account is None else None, allow_loopback_http=False
    )
    storage_given = any(r.environ.get(n, "").strip() for n in (STORAGE, STORAGE_ACCOUNT, STORAGE_TABLE_URI))
    if connection_string is None and table_uri is None and not storage_given:
        r.problems.append(
            f"checkpoint storage is not configured: set {STORAGE} (connection string) or "
            f"{STORAGE_ACCOUNT} / {STORAGE_TABLE_URI} (identity-based)"
        )
    table = (
        r.text(CHECKPOINT_TABLE_NAME, required=False, default="nordpasscheckpoint") or "nordpasscheckpoint"
    )
    if not _TABLE_NAME.match(table):
        r.problems.append(f"{CHECKPOINT_TABLE_NAME} must be 3-63 letters and digits, starting with a letter")
    instance = r.text(CONNECTOR_INSTANCE, required=False, default="default") or "default"
    storage_client_id = r.text(STORAGE_CLIENT_ID, required=False)
    azure_client_id = r.text(AZURE_CLIENT_ID, required=False)
    return StoreSettings(
        storage=StorageSettings(
            connection_string=SecretStr(connection_string) if connection_string else None,
            table_service_uri=table_uri if connection_string is None else None,
            client_id=storage_client_id,
        ),
        checkpoint_table=table,
        instance=instance,
        azure_client_id=azure_client_id,
    )


def load_settings(environ: Mapping[str, str]) -> Settings:
    """Validate every setting; raise ConfigurationError listing every problem at once."""
    r = _Reader(environ)
    endpoint = r.text(NORDPASS_ENDPOINT_URL, required=True)
    r.https_url(NORDPASS_ENDPOINT_URL, endpoint, allow_loopback_http=True)
    token = r.text(NORDPASS_TOKEN, required=True)
    if token is not None and token.lower().startswith("bearer "):
        r.problems.append(f"{NORDPASS_TOKEN} must be the raw token from the Admin Panel, without 'Bearer '")
    elif token is not None and not _sendable(token):
        r.problems.append(
            f"{NORDPASS_TOKEN} contains spaces, line breaks, control or non-ASCII characters: paste the "
            "token alone, exactly as the Admin Panel shows it"
        )
    dce = r.text(DATA_COLLECTION_ENDPOINT, required=True)
    r.https_url(DATA_COLLECTION_ENDPOINT, dce, allow_loopback_http=False)
    dcr = r.text(DCR_IMMUTABLE_ID, required=True)
    if dcr is not None and not _DCR_ID.match(dcr):
        r.problems.append(f"{DCR_IMMUTABLE_ID} must look like dcr-<32 hex digits> (the DCR's immutableId)")
    stream = r.text(DCR_STREAM_NAME, required=False, default=DEFAULT_STREAM_NAME) or DEFAULT_STREAM_NAME
    if not _STREAM.match(stream):
        r.problems.append(f"{DCR_STREAM_NAME} must be a custom stream name like {DEFAULT_STREAM_NAME}")
    health_stream: str | None = (
        r.text(DCR_HEALTH_STREAM_NAME, required=False, default=DEFAULT_HEALTH_STREAM_NAME)
        or DEFAULT_HEALTH_STREAM_NAME
    )
    if health_stream is not None and health_stream.lower() == HEALTH_STREAM_OFF:
        health_stream = None
    elif health_stream is not None and not _STREAM.match(health_stream):
        r.problems.append(
            f"{DCR_HEALTH_STREAM_NAME} must be a custom stream name like {DEFAULT_HEALTH_STREAM_NAME} "
            f"(or {HEALTH_STREAM_OFF!r} to send no health rows)"
        )
    elif health_stream == stream:
        r.problems.append(
            f"{DCR_HEALTH_STREAM_NAME} must differ from {DCR_STREAM_NAME}: health rows have their own table"
        )

    store = _read_store(r)

    budget = r.number(RUN_BUDGET, float, 45.0, 5.0, 540.0)
    lookback = r.number(LOOKBACK, int, 900, 0, 86_400)
    delay = r.number(SAFETY_DELAY, int, 2, 0, 3_600)
    backfill = r.number(BACKFILL_DAYS, float, 7.0, 0.0, 89.0)
    page_size = r.number(PAGE_SIZE, int, 100, 1, 1_000)
    concurrency = r.number(FETCH_CONCURRENCY, int, 32, 1, 64)
    window_events = r.number(MAX_WINDOW_EVENTS, int, 10_000, 100, 50_000)
    windows_ahead = r.number(WINDOWS_AHEAD, int, 2, 1, 4)
    upload_concurrency = r.number(UPLOAD_CONCURRENCY, int, 3, 1, 8)

    if r.problems:
        raise ConfigurationError(r.problems)
    assert endpoint and token and dce and dcr  # guaranteed by the checks above
    settings = Settings(
        nordpass_endpoint_url=endpoint,
        nordpass_token=SecretStr(token),
        data_collection_endpoint=dce.rstrip("/"),
        dcr_immutable_id=dcr,
        dcr_stream_name=stream,
        dcr_health_stream_name=health_stream,
        storage=store.storage,
        azure_client_id=store.azure_client_id,
        checkpoint_table=store.checkpoint_table,
        instance=store.instance,
        run_budget_seconds=budget,
        lookback_seconds=lookback,
        safety_delay_seconds=delay,
        backfill_days=backfill,
        page_size=page_size,
        fetch_concurrency=concurrency,
        max_window_events=window_events,
        windows_ahead=windows_ahead,
        upload_concurrency=upload_concurrency,
    )
    if settings.nordpass_host not in KNOWN_NORDPASS_HOSTS and not is_loopback(settings.nordpass_host):
        log.warning(
            "%s host %s is not one of the known NordPass data centers %s; continuing",
            NORDPASS_ENDPOINT_URL,
            settings.nordpass_host,
            ", ".join(KNOWN_NORDPASS_HOSTS),
        )
    return settings
