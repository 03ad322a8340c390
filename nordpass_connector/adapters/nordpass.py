"""NordPass Activity API adapter: one page of a closed window per call, on httpx.

Implements `ports.ActivitySource`. Every outcome ends in a page or in one of the connector's own
errors, never in an httpx exception:

- 401/403            -> SourceAuthError at once (retrying a revoked token only burns the rate limit);
- 429, 408, 5xx,
  timeouts, resets   -> retried with jittered backoff (``Retry-After`` honoured), within the deadline;
- 200 that is not a page (not JSON, wrong shape) -> retried twice, then SourceProtocolError;
- other statuses     -> SourceProtocolError (the request or the URL is wrong; retrying cannot help);
- retries exhausted  -> SourceUnavailable;
- no connection at all (refused, name not resolved, TLS refused) while the host has not answered yet
  in this run -> SourceUnreachable after UNREACHABLE_ATTEMPTS quick attempts.

Messages name the host, the status or cause and the page number only. The token, the headers and
the response bodies never reach an exception or a log line: a body may hold event data, and the
token is a long-lived secret.

One transport serves every thread (the reader fetches pages of a window concurrently): httpx's own,
with a cheaper stack of keep-alive connections in place of httpcore's pool (see `keepalive`).
"""

from __future__ import annotations

import errno
import json
import logging
import re
import socket
import ssl
from types import TracebackType
from typing import Any, Final

import httpx
import orjson
from pydantic import ValidationError

from .. import USER_AGENT
from ..clock import Clock
from ..errors import (
    ConfigurationError,
    SourceAuthError,
    SourceProtocolError,
    SourceUnavailable,
    SourceUnreachable,
)
from ..models import ActivityPage, PageMetadata
from ..ports import Page, Window
from ..retry import (
    Deadline,
    Retrier,
    RetryCause,
    TryAgain,
    Verdict,
    attempt_loop,
    classify_status,
    parse_retry_after,
)
from .keepalive import KeepAliveTransport

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT: Final = httpx.Timeout(connect=10.0, read=30.0, write=30.0, pool=30.0)
DEFAULT_MAX_CONNECTIONS: Final = 32
# A 200 that is not a page is most likely a proxy or maintenance page: worth a retry or two, not
# the full retry budget.
PROTOCOL_RETRIES: Final = 2
# A host that refuses every connection from the start is misconfigured or blocked far more often
# than it is down; a few quick attempts cover a blip, the next tick covers an outage.
UNREACHABLE_ATTEMPTS: Final = 3


class NordPassClient:
    """`ActivitySource` over the NordPass Activity API (POST, raw token, 1-based pages)."""

    def __init__(
        self,
        *,
        endpoint_url: str,
        token: str,
        per_page: int = 100,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
        retrier: Retrier,
        clock: Clock,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        protocol_retries: int = PROTOCOL_RETRIES,
    ) -> None:
        url = httpx.URL(endpoint_url)
        problems = []
        if url.scheme not in ("http", "https") or not url.host:
            problems.append("NORDPASS_ENDPOINT_URL must be an http(s) URL with a host")
        # httpx would put an unsendable header value into its exception text: refuse it here,
        # without echoing it.
        if not token or not token.isascii() or any(ch <= " " or ch == "\x7f" for ch in token):
            problems.append("NORDPASS_TOKEN is empty or contains spaces, control or non-ASCII characters")
        if per_page < 1:
            problems.append("the page size must be at least 1")
        if problems:
            raise ConfigurationError(problems)

        self.host = url.host if url.port is None else f"{url.host}:{url.port}"
        self.per_page = per_page
        self.timeout = timeout
        self.retrier = retrier
        self.clock = clock
        self.protocol_retries = protocol_retries
        self.max_connections = max_connections  # keep-alive connections kept (unless a transport is given)
        self._answered = False  # any HTTP answer from the host in this client's lifetime (one run)
        if transport is None:
            # One stack of keep-alive connections serves every thread (see `keepalive`).
            transport = KeepAliveTransport(url, max_idle=max_connections)
        # Requests go straight to the transport, not through an `httpx.Client`: the client's
        # per-request work (cookies, auth flow, redirect and event-hook plumbing, header merging)
        # is none of what this API needs and cost ~25 % of a page's CPU (80-200 µs of 450-900 µs,
        # measured with 1 and 16 threads). Redirects are thereby never followed: a redirect would
        # carry the token to another URL, so it is treated as an unusable answer.
        self._transport = transport
        self._url = url
        # httpx.Headers masks Authorization in its repr, so the token never shows in a debug dump.
        self._headers = httpx.Headers(
            {
                "Authorization": token,  # the raw token: NordPass expects no "Bearer " prefix
                "Content-Type": "application/json",
                "X-Source": "MSSentinel",
                "User-Agent": USER_AGENT,
                "Accept": "application/json",
                "Accept-Encoding": "gzip, deflate",
            }
        )

    # -- ActivitySource -----------------------------------------------------------------------

    def fetch_page(self, window: Window, page: int, *, deadline: Deadline) -> Page:
        if page < 1:
            raise ValueError("pages are 1-based")
        body = orjson.dumps(
            {
                "timestamp_from": window.start,
                "timestamp_to": window.end,
                "page": page,
                "per_page": self.per_page,
            }
        )
        protocol_failures = [0]  # 200s that were not a page, so far

        def attempt(n: int) -> Page:
            try:
                response = self._post(body, deadline.remaining())
            except httpx.HTTPError as exc:
                raise self._transport_failure(exc, page, n, protocol_failures) from None
            return self._answer(response, page, n, protocol_failures)

        def out_of_time(made: int, last: TryAgain | None) -> SourceUnavailable:
            after = f" (after {made} attempts, last: {last.reason})" if last is not None else ""
            return SourceUnavailable(
                f"run budget spent before page {page} could be fetched from {self.host}{after}"
            )

        def retrying(n: int, retry: TryAgain) -> None:
            log.warning(
                "nordpass: %s from %s for page %d (attempt %d); retrying", retry.reason, self.host, page, n
            )

        return attempt_loop(self.retrier, deadline, attempt, out_of_time=out_of_time, on_retry=retrying)

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> NordPassClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- helpers ------------------------------------------------------------------------------

    def _post(self, body: bytes, remaining: float) -> httpx.Response:
        """One POST, its body read and the connection returned to the pool (or closed)."""
        request = httpx.Request(
            "POST",
            self._url,
            headers=self._headers,
            content=body,
            extensions={"timeout": self._bounded(remaining)},
        )
        response = self._transport.handle_request(request)
        self._answered = True
        try:
            response.read()
        finally:
            response.close()
        return response

    def _retry(
        self, cause: RetryCause, reason: str, page: int, n: int, retry_after: float | None = None
    ) -> TryAgain:
        exhausted = SourceUnavailable(
            f"page {page} from {self.host}: {reason} on attempt {n}, no retry left within the attempt limit "
            "and the run budget"
        )
        return TryAgain(cause, reason, exhausted, retry_after=retry_after)

    def _protocol_failure(
        self, problem: str, reason: str, page: int, n: int, failures: list[int]
    ) -> TryAgain:
        """A 200 that is not a page: retried `protocol_retries` times, then SourceProtocolError."""
        failures[0] += 1
        if failures[0] > self.protocol_retries:
            raise SourceProtocolError(f"{self.host} answered page {page} with {problem}, {failures[0]} times")
        return self._retry(RetryCause.NORDPASS_PROTOCOL, reason, page, n)

    def _transport_failure(self, exc: httpx.HTTPError, page: int, n: int, failures: list[int]) -> TryAgain:
        """No usable answer at all. Only our own words and class names: the exception text may
        carry the URL."""
        if isinstance(exc, httpx.TimeoutException):
            return self._retry(RetryCause.NORDPASS_TIMEOUT, "timed out", page, n)
        if isinstance(exc, httpx.DecodingError):
            # A body whose Content-Encoding lies: the same family as a 200 that is not JSON.
            return self._protocol_failure("an undecodable body", "an undecodable body", page, n, failures)
        if isinstance(exc, httpx.ConnectError):
            why = _connect_failure(exc)
            if not self._answered and n >= UNREACHABLE_ATTEMPTS:
                raise SourceUnreachable(
                    f"could not connect to {self.host}: {why} ({n} attempts; it has not answered in this run)"
                ) from None
            return self._retry(RetryCause.NORDPASS_CONNECTION, f"connection failed ({why})", page, n)
        if isinstance(exc, httpx.RequestError):
            # The class name (RemoteProtocolError, ReadError...) cannot carry the token or event data.
            return self._retry(
                RetryCause.NORDPASS_CONNECTION, f"connection failed ({type(exc).__name__})", page, n
            )
        raise exc

    def _answer(self, response: httpx.Response, page: int, n: int, failures: list[int]) -> Page:
        """The page, or the error an answer stands for (the one status mapping here): TryAgain for
        what another attempt may fix."""
        status = response.status_code
        verdict = classify_status(status)
        if verdict is Verdict.OK:
            result = self._parse(response, page)
            if isinstance(result, Page):
                return result
            raise self._protocol_failure(
                f"HTTP {status} but {result}", f"HTTP {status} with {result}", page, n, failures
            )
        if verdict is Verdict.AUTH:
            raise SourceAuthError(f"{self.host} rejected the NordPass token (HTTP {status})")
        if verdict is Verdict.RATE_LIMITED:
            retry_after = parse_retry_after(response.headers.get("retry-after"), now=self.clock.now())
            raise self._retry(
                RetryCause.NORDPASS_RATE_LIMITED, "rate limited (HTTP 429)", page, n, retry_after
            )
        if verdict is Verdict.RETRY:
            cause = RetryCause.NORDPASS_REQUEST_TIMEOUT if status == 408 else RetryCause.NORDPASS_SERVER
            raise self._retry(cause, f"HTTP {status}", page, n)
        raise SourceProtocolError(
            f"{self.host} refused the query for page {page} with HTTP {status}; retrying the same request cannot help"
        )

    def _bounded(self, remaining: float) -> dict[str, float | None]:
        """The configured timeouts, none longer than what is left of the run budget."""

        def cap(value: float | None) -> float:
            return remaining if value is None else min(value, remaining)

        t = self.timeout
        return {"connect": cap(t.connect), "read": cap(t.read), "write": cap(t.write), "pool": cap(t.pool)}

    def _parse(self, response: httpx.Response, page: int) -> Page | str:
        """The page, or a short description of why the body is not one (no body content in it)."""
        fast = _parse_fast(response.content, page)
        if fast is not None:
            return fast
        try:
            parsed = ActivityPage.model_validate_json(response.content)
        except ValidationError as exc:
            kinds = {err["type"] for err in exc.errors(include_url=False, include_input=False)}
            if "json_invalid" not in kinds:
                return "JSON that is not a page"
            return _parse_lenient(response.content, page) or "a body that is not JSON"
        # The model defaults `data` to []; a body without it (an error object, `{}`) must not read
        # as "no more events", or an outage would look like an empty window.
        if "data" not in parsed.model_fields_set:
            return "JSON without a data array"
        meta = parsed.metadata
        return Page(number=page, events=parsed.data, total=meta.total, total_pages=meta.total_pages)


def _connect_failure(exc: httpx.ConnectError) -> str:
    """Why no connection was made, in our own words (the exception text may carry the URL)."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, socket.gaierror):
            return "the host name does not resolve"
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, ssl.SSLCertVerificationError):
            return "its TLS certificate is not trusted"
        if isinstance(cause, ssl.SSLError):
            return "the TLS handshake failed"
        if isinstance(cause, OSError) and cause.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
            return "no route to the host"
        cause = cause.__cause__ or cause.__context__
    return type(exc).__name__


def _parse_fast(content: bytes, page: int) -> Page | None:
    """The common case, about 2.5x cheaper than the model: orjson builds the event dicts and only
    the small metadata object goes through pydantic. None means "let the model decide" (orjson
    refuses integers beyond 64 bits, for instance, and the model's error wording is kept)."""
    try:
        parsed = orjson.loads(content)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(parsed, dict):
        return None
    data = parsed.get("data")
    raw_meta = parsed.get("metadata", _NO_METADATA)
    if not isinstance(data, list) or not isinstance(raw_meta, dict):
        return None
    try:
        meta = PageMetadata.model_validate(raw_meta)
    except ValidationError:
        return None
    return Page(number=page, events=data, total=meta.total, total_pages=meta.total_pages)


_NO_METADATA: Final[dict[str, Any]] = {}
# After json.loads has joined every valid surrogate pair, any surrogate code point left is lone.
_LONE_SURROGATE: Final = re.compile("[\ud800-\udfff]")


def _parse_lenient(content: bytes, page: int) -> Page | None:
    """A page that is valid JSON but not valid UTF-8 once decoded: lone surrogate escapes such as
    ``"\\ud83c"`` (half an emoji, as a JavaScript backend cutting a string writes it). orjson and
    pydantic refuse the whole page; the standard library's parser accepts it, and each lone
    surrogate is then replaced with U+FFFD, so the event is delivered and the repair counted (the
    replacement is deterministic, so a re-read yields the same EventId). None when the body is not
    JSON even so (NaN and Infinity, which JSON does not allow, are refused too)."""
    try:
        parsed = json.loads(content, parse_constant=_refuse_constant)
    except (ValueError, RecursionError):
        return None
    if not isinstance(parsed, dict) or not isinstance(parsed.get("data"), list):
        return None
    raw_meta = parsed.get("metadata", _NO_METADATA)
    if not isinstance(raw_meta, dict):
        return None
    try:
        meta = PageMetadata.model_validate(_repaired(raw_meta)[0])
    except ValidationError:
        return None
    events, repaired = [], []
    for raw in parsed["data"]:
        event, changed = _repaired(raw)
        events.append(event)
        if changed:
            repaired.append(event)
    return Page(page, events, meta.total, meta.total_pages, tuple(repaired))


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _repaired(value: Any) -> tuple[Any, bool]:
    """`value` with every lone surrogate (in keys too) replaced by U+FFFD; True if any was."""
    if isinstance(value, str):
        fixed = _LONE_SURROGATE.sub("\ufffd", value)
        return fixed, fixed != value
    if isinstance(value, list):
        items = [_repaired(v) for v in value]
        return [v for v, _ in items], any(c for _, c in items)
    if isinstance(value, dict):
        changed = False
        out = {}
        for key, item in value.items():
            new_key, key_changed = _repaired(key)
            out[new_key], item_changed = _repaired(item)
            changed = changed or key_changed or item_changed
        return out, changed
    return value, False
