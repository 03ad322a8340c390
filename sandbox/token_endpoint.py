"""A stand-in for the App Service / Functions managed-identity token endpoint.

It lets the REAL `azure.identity.ManagedIdentityCredential` run offline: set the variables from
`TokenEndpoint.environment()` and the credential discovers this endpoint exactly as it discovers the
platform's one (plain http on loopback, as in Azure). Checks mirror what the platform checks: the
`X-IDENTITY-HEADER` secret, `Metadata: true`, `api-version=2019-08-01` and a `resource`.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ._uvicorn_thread import ServerThread, wait_for_interrupt

TOKEN_PATH = "/msi/token"
API_VERSION = "2019-08-01"
DEFAULT_RESOURCE = "https://monitor.azure.com"

# Variables that would make azure-identity pick another identity source (or a client secret) first.
CONFLICTING_VARIABLES = (
    "MSI_ENDPOINT",
    "MSI_SECRET",
    "IMDS_ENDPOINT",
    "IDENTITY_SERVER_THUMBPRINT",
    "AZURE_CLIENT_SECRET",
    "AZURE_FEDERATED_TOKEN_FILE",
)

# "stall": accept the request and never answer (until the client gives up), like a hung endpoint.
FailureMode = Literal["none", "error500", "expires_in_only", "stall"]


@dataclass(frozen=True)
class TokenRequest:
    """One request as received. The identity header's value is never kept, only whether it matched."""

    resource: str | None
    api_version: str | None
    client_id: str | None
    identity_header_ok: bool
    metadata_header: str | None
    status: int
    at: float


@dataclass
class _State:
    identity_header: str
    access_token: str
    lifetime: int = 3600
    failure: FailureMode = "none"
    expected_client_id: str | None = None
    requests: list[TokenRequest] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _build_app(state: _State) -> Starlette:
    async def token(request: Request) -> JSONResponse:
        q = request.query_params
        header_ok = secrets.compare_digest(
            request.headers.get("x-identity-header", ""), state.identity_header
        )
        if state.failure == "stall":
            # Poll rather than sleep once: the task ends as soon as the client hangs up.
            while not await request.is_disconnected():
                await asyncio.sleep(0.05)
        status, body = _answer(state, q, header_ok, request.headers.get("metadata"))
        with state.lock:
            state.requests.append(
                TokenRequest(
                    resource=q.get("resource"),
                    api_version=q.get("api-version"),
                    client_id=q.get("client_id"),
                    identity_header_ok=header_ok,
                    metadata_header=request.headers.get("metadata"),
                    status=status,
                    at=time.time(),
                )
            )
        return JSONResponse(body, status_code=status)

    return Starlette(routes=[Route(TOKEN_PATH, token, methods=["GET"])])


def _answer(state: _State, q: Any, header_ok: bool, metadata: str | None) -> tuple[int, dict[str, Any]]:
    if not header_ok:
        return 401, {"error": {"code": "Unauthorized", "message": "X-IDENTITY-HEADER missing or wrong"}}
    if (metadata or "").lower() != "true":
        return 400, {"error": {"code": "BadRequest", "message": "Metadata: true header required"}}
    if q.get("api-version") != API_VERSION:
        return 400, {"error": {"code": "BadRequest", "message": f"api-version must be {API_VERSION}"}}
    resource = q.get("resource")
    if not resource:
        return 400, {"error": {"code": "BadRequest", "message": "resource is required"}}
    if state.expected_client_id is not None and q.get("client_id") != state.expected_client_id:
        return 400, {"error": {"code": "BadRequest", "message": "no identity with that client_id"}}
    if state.failure == "stall":
        return 408, {"error": {"code": "Stalled", "message": "the client gave up first (scripted stall)"}}
    if state.failure == "error500":
        return 500, {"error": {"code": "InternalServerError", "message": "token service failure (scripted)"}}
    expires = int(time.time()) + state.lifetime
    if state.failure == "expires_in_only":
        # The shape azure-identity rejects: useful to prove the error path.
        return 200, {"access_token": state.access_token, "expires_in": state.lifetime}
    body: dict[str, Any] = {
        "access_token": state.access_token,
        "expires_on": expires,
        "token_type": "Bearer",
        "resource": resource,
    }
    if q.get("client_id"):
        body["client_id"] = q.get("client_id")
    return 200, body


class TokenEndpoint:
    """Managed-identity endpoint on http://127.0.0.1:<free port>/msi/token.

    Use as a context manager or call start()/stop(). `access_token` is the bearer value the
    ingestion stand-in should expect.
    """

    def __init__(
        self,
        *,
        access_token: str | None = None,
        identity_header: str | None = None,
        expected_client_id: str | None = None,
        lifetime: int = 3600,
        port: int = 0,
    ) -> None:
        self._state = _State(
            identity_header=identity_header or secrets.token_hex(16),
            access_token=access_token or "fake-mi-token-" + secrets.token_hex(12),
            lifetime=lifetime,
            expected_client_id=expected_client_id,
        )
        self._server = ServerThread(_build_app(self._state), port=port, name="token-endpoint")

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> TokenEndpoint:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> TokenEndpoint:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- facts -----------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.port}{TOKEN_PATH}"

    @property
    def access_token(self) -> str:
        return self._state.access_token

    @property
    def identity_header(self) -> str:
        return self._state.identity_header

    def environment(self) -> dict[str, str]:
        """Variables to SET for ManagedIdentityCredential. Also UNSET `CONFLICTING_VARIABLES`:
        any of them makes azure-identity choose another source (or a client secret) first."""
        return {"IDENTITY_ENDPOINT": self.url, "IDENTITY_HEADER": self.identity_header}

    # -- control ---------------------------------------------------------------------------------
    @property
    def requests(self) -> list[TokenRequest]:
        with self._state.lock:
            return list(self._state.requests)

    def set_failure(self, mode: FailureMode) -> None:
        self._state.failure = mode

    def set_expected_client_id(self, client_id: str | None) -> None:
        self._state.expected_client_id = client_id

    def rotate_token(self, token: str | None = None) -> str:
        """Issue a different bearer from now on (to test a rejected, then refreshed, token)."""
        self._state.access_token = token or "fake-mi-token-" + secrets.token_hex(12)
        return self._state.access_token

    def reset(self) -> None:
        with self._state.lock:
            self._state.requests.clear()
            self._state.failure = "none"
            self._state.expected_client_id = None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve a fake managed-identity token endpoint")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--token", default=None)
    parser.add_argument("--identity-header", default=None)
    args = parser.parse_args(argv)
    with TokenEndpoint(access_token=args.token, identity_header=args.identity_header, port=args.port) as ep:
        for key, value in ep.environment().items():
            print(f"{key}={value}", flush=True)
        print("unset " + " ".join(CONFLICTING_VARIABLES), flush=True)
        wait_for_interrupt()


if __name__ == "__main__":
    main()
