"""The `requests` session under an Azure SDK client: the environment read once per host, not per call.

azure-core's default transport sends every request through a `requests.Session` that trusts the
environment, and so re-reads it on every request: the proxy variables (urllib walks the whole of
`os.environ`, twice), `NO_PROXY` matching, the CA-bundle variables and a `.netrc` lookup. That was
about 0.2 ms of CPU per checkpoint commit, and a backfill commits after every batch.

`EnvironmentOnceSession` resolves the same settings, with the same rules, the first time a scheme
and host are used, and keeps them for the session's life (one run). What the environment asks
for still applies: HTTP(S)_PROXY / NO_PROXY, REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE. Only `.netrc`
is no longer consulted: its credentials would replace the SDK's own Authorization header.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from requests.utils import get_environ_proxies
from urllib3.util.retry import Retry


class EnvironmentOnceSession(requests.Session):
    """A session for one Azure SDK client (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self.trust_env = False  # requests' per-request reading; done here, once per host
        self._environment: dict[tuple[str, str, str | None], tuple[dict[str, str], str | None]] = {}
        # As azure-core mounts on the sessions it makes itself: retries are the SDK's job.
        adapter = HTTPAdapter(max_retries=Retry(total=False, redirect=False, raise_on_status=False))
        for prefix in ("http://", "https://"):
            self.mount(prefix, adapter)

    def merge_environment_settings(
        self, url: str, proxies: Any, stream: Any, verify: Any, cert: Any
    ) -> dict[str, Any]:
        no_proxy = proxies.get("no_proxy") if proxies is not None else None
        parts = urlsplit(url)
        key = (parts.scheme, parts.netloc, no_proxy)
        settings = self._environment.get(key)
        if settings is None:
            bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or None
            settings = self._environment[key] = (get_environ_proxies(url, no_proxy=no_proxy), bundle)
        env_proxies, bundle = settings
        if proxies is not None:
            for scheme, proxy in env_proxies.items():
                proxies.setdefault(scheme, proxy)
        if (verify is True or verify is None) and bundle:
            verify = bundle
        merged: dict[str, Any] = super().merge_environment_settings(url, proxies, stream, verify, cert)
        return merged
