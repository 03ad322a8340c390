"""The table clients' `requests` session reads the environment once per host, with requests' rules.

Proxies and CA bundles from the environment must keep working (corporate proxies, private CAs);
what changes is only when they are read. So the settings are compared with what a plain
`requests.Session` derives on every request, and a real table client is sent through a proxy.
"""

from __future__ import annotations

import http.server
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from nordpass_connector.adapters.requests_session import EnvironmentOnceSession
from nordpass_connector.adapters.table_store import TableStore, build_table_client
from nordpass_connector.errors import CheckpointUnavailable
from sandbox.azurite import Azurite

TABLE_URL = "https://account.table.core.windows.net/checkpoints(PartitionKey='c',RowKey='d')"
ENVIRONMENTS: list[dict[str, str]] = [
    {},
    {"HTTPS_PROXY": "http://proxy.corp:3128"},
    {"https_proxy": "http://proxy.corp:3128", "NO_PROXY": ".core.windows.net"},
    {"HTTP_PROXY": "http://proxy.corp:3128", "HTTPS_PROXY": "http://tls-proxy.corp:3128"},
    {"HTTPS_PROXY": "http://proxy.corp:3128", "NO_PROXY": "localhost,127.0.0.1"},
    {"REQUESTS_CA_BUNDLE": "/etc/corp/ca.pem"},
    {"CURL_CA_BUNDLE": "/etc/corp/curl-ca.pem", "HTTPS_PROXY": "http://proxy.corp:3128"},
]
PROXY_VARIABLES = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
)


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    return monkeypatch


@pytest.mark.parametrize("environment", ENVIRONMENTS, ids=lambda e: ",".join(e) or "none")
@pytest.mark.parametrize("verify", [True, None, False, "/explicit/ca.pem"])
def test_settings_equal_what_requests_reads_on_every_request(
    clean_environment: pytest.MonkeyPatch, environment: dict[str, str], verify: Any
) -> None:
    for name, value in environment.items():
        clean_environment.setenv(name, value)
    expected = requests.Session().merge_environment_settings(TABLE_URL, {}, None, verify, None)
    session = EnvironmentOnceSession()
    for _ in range(2):  # the second call comes from what the first one resolved
        assert session.merge_environment_settings(TABLE_URL, {}, None, verify, None) == expected


def test_the_environment_is_read_once_per_host(clean_environment: pytest.MonkeyPatch) -> None:
    session = EnvironmentOnceSession()
    clean_environment.setenv("HTTPS_PROXY", "http://proxy.corp:3128")
    first = session.merge_environment_settings(TABLE_URL, {}, None, True, None)
    clean_environment.setenv("HTTPS_PROXY", "http://elsewhere.corp:3128")
    assert session.merge_environment_settings(TABLE_URL, {}, None, True, None) == first
    other = session.merge_environment_settings("https://other.example/x", {}, None, True, None)
    assert other["proxies"]["https"] == "http://elsewhere.corp:3128"
    assert not session.trust_env  # so requests itself reads nothing per request (nor .netrc)


class _RecordingProxy(http.server.ThreadingHTTPServer):
    """A forward proxy that records each request line and answers 502."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        recorded = self.lines

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self) -> None:
                recorded.append(self.requestline)
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                self.send_response(502)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_PUT = do_PATCH = do_POST = do_MERGE = _answer

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)


@pytest.fixture
def proxy() -> Iterator[_RecordingProxy]:
    server = _RecordingProxy()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_a_table_client_goes_through_the_proxy_the_environment_names(
    clean_environment: pytest.MonkeyPatch, proxy: _RecordingProxy, azurite_server: Azurite
) -> None:
    clean_environment.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.server_address[1]}")
    client = build_table_client(
        table_name=f"proxied{uuid.uuid4().hex[:8]}",
        connection_string=azurite_server.connection_string,
        retry_total=0,
    )
    with pytest.raises(CheckpointUnavailable):
        TableStore(client).load()
    # An absolute URI in the request line: the request was sent to the proxy, for Azurite.
    assert proxy.lines and all(" http://127.0.0.1:" in line for line in proxy.lines)

    clean_environment.setenv("NO_PROXY", "127.0.0.1")
    direct = build_table_client(
        table_name=f"direct{uuid.uuid4().hex[:8]}", connection_string=azurite_server.connection_string
    )
    seen = len(proxy.lines)
    assert TableStore(direct).load() is None  # straight to Azurite
    assert len(proxy.lines) == seen
