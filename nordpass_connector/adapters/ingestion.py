"""`LogSink` on the Azure Monitor Logs Ingestion API (`azure-monitor-ingestion`).

Each batch body (built and serialised once by `batching.pack`) is gzipped and sent as one request
through `LogsIngestionClient.upload` with an IO stream: the SDK then neither re-serialises nor
re-chunks it. The outcome per batch is Vector's: rows end up delivered, rejected (with a reason, for
the dead-letter table) or, when a transient failure outlasts our retries, the delivery carries an
error and the pipeline stops the run.

Status policy (the statuses and their meaning: docs/azure-platform.md, "Logs Ingestion API"):
  204 delivered - 400 (and other 4xx) never retried as is: a request of several rows is halved,
  level by level, until each refused record is alone; only those are rejected, with the service's
  error code, and the rest is delivered - 401 one retry, then SinkAuthError - 403 a few attempts
  (role propagation), then SinkAuthError - 404 SinkConfigError - 413 split in halves and resend; a
  single row that still gets 413 is rejected - 408/429/5xx, timeouts and dropped connections retried
  with jittered backoff, honouring Retry-After, inside the run's deadline.

Isolating a refused record costs about 2 x log2(n) requests for a request of n rows (both halves
at each level; the half without it is delivered). When nothing of a batch can be delivered even in
parts of a few rows, the refusal is about the schema, not a record: the batch fails with
SinkRejected and nothing is set aside (a DCR fix lets the next run deliver all of it).

Logs carry status, error code and request ids (x-ms-client-request-id, x-ms-request-id) only:
never bodies, row contents or bearer tokens.
"""

from __future__ import annotations

import io
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import orjson
from azure.core.credentials import TokenCredential
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ServiceRequestError,
    ServiceRequestTimeoutError,
    ServiceResponseError,
    ServiceResponseTimeoutError,
)
from azure.monitor.ingestion import LogsIngestionClient
from isal import igzip

from .. import USER_AGENT
from ..batching import DEFAULT_MAX_BODY_BYTES, body_of, oversize_reason
from ..clock import Clock
from ..errors import (
    SinkAuthError,
    SinkConfigError,
    SinkError,
    SinkRejected,
    SinkTokenUnavailable,
    SinkUnavailable,
)
from ..ports import Batch, Delivery, Rejection, SetAsideCode
from ..retry import (
    Deadline,
    Retrier,
    RetryCause,
    RetryLog,
    RetryPolicy,
    TryAgain,
    Verdict,
    attempt_loop,
    classify_status,
    parse_retry_after,
)
from ..throttle import RateBudget

log = logging.getLogger(__name__)

MONITOR_SCOPE = "https://monitor.azure.com/.default"
SERVICE_REQUEST_ID = "x-ms-request-id"
NO_IDENTITY_NOTE = "no managed identity answered, and off Azure no `az login` session was found"
# A refusal is taken as systemic (a schema problem) when nothing of a batch was delivered and every
# part of one halving level was refused, with at least this many parts of at most this many rows.
SYSTEMIC_PARTS = 8
SYSTEMIC_PART_ROWS = 8
PROPAGATION_NOTE = (
    "the managed identity lacks 'Monitoring Metrics Publisher' on the data collection rule, or the role "
    "assignment has not propagated yet (this can take up to 30 minutes after deployment)"
)


def build_logs_client(
    endpoint: str,
    credential: TokenCredential,
    *,
    connection_verify: str | bool | None = None,
    connection_timeout: float = 10.0,
    read_timeout: float = 30.0,
    **client_options: Any,
) -> LogsIngestionClient:
    """A `LogsIngestionClient` configured for this connector (`client_options` go to the SDK, e.g.
    a `raw_response_hook`).

    - Timeouts are explicit: the SDK default is 300 s each, and a stalled call would eat the run.
    - azure-core's own retries are off (`retry_total=0`): `IngestionSink` retries every transient
      case itself, with jitter and inside the run's deadline. azure-core would otherwise retry on top
      (multiplying attempts), skip 408/502/429-without-Retry-After/connection errors, and wait for any
      Retry-After with no cap at all.
    (The HTTP logging policy, which logs every request's headers at INFO, is held at WARNING or
    above with the other SDK loggers by `composition.quiet_third_party_loggers`.)
    """
    if not endpoint.lower().startswith("https://"):
        raise SinkConfigError("the data collection endpoint must be an https:// URL")
    kwargs: dict[str, Any] = {
        "connection_timeout": connection_timeout,
        "read_timeout": read_timeout,
        "retry_total": 0,
        "user_agent": USER_AGENT,
    }
    if connection_verify is not None:
        kwargs["connection_verify"] = connection_verify
    return LogsIngestionClient(endpoint, credential, **kwargs, **client_options)


@dataclass(frozen=True)
class _Ok:
    pass


@dataclass(frozen=True)
class _TooLarge:
    pass


@dataclass(frozen=True)
class _Rejected:
    reason: str
    status: int
    code: str


@dataclass(frozen=True)
class _Failed:
    error: SinkError


_Outcome = _Ok | _TooLarge | _Rejected | _Failed


def _header(exc: HttpResponseError, name: str) -> str | None:
    headers = getattr(exc.response, "headers", None)
    if headers is None:
        return None
    value = headers.get(name)
    return str(value) if value is not None else None


def _error_code(exc: HttpResponseError) -> str:
    """The service's error code (never its message: a 400 message may quote the payload)."""
    code = _header(exc, "x-ms-error-code")
    if code:
        return code
    error = getattr(exc, "error", None)
    found = getattr(error, "code", None)
    return str(found) if found else "no error code"


def _request_ids(exc: Exception, client_request_id: str) -> str:
    service_id = _header(exc, SERVICE_REQUEST_ID) if isinstance(exc, HttpResponseError) else None
    return f"client_request_id={client_request_id} request_id={service_id or '-'}"


TIMED_OUT = "timed out"
LOST_CONNECTION = "lost the connection"


@dataclass(frozen=True)
class _Answer:
    """An upload that was not accepted: what the service, or the way to it, answered. Status,
    error code and request ids only, never a body or the service's message (either may quote the
    payload)."""

    status: int = 0  # 0: no HTTP answer (see `transport` and `no_token`)
    code: str = ""
    ids: str = ""
    retry_after: float | None = None
    transport: str = ""  # no answer: TIMED_OUT or LOST_CONNECTION
    error_class: str = ""  # the exception's class name, when there was no HTTP answer
    no_token: bool = False  # nothing was sent: the credential produced no token

    def describe(self) -> str:
        if self.no_token:
            return f"no token ({self.error_class})"
        if self.transport:
            return f"{self.transport} ({self.error_class})"
        return f"HTTP {self.status} ({self.code})"


def _upload(
    client: LogsIngestionClient,
    *,
    rule_id: str,
    stream: str,
    wire: bytes,
    request_id: str,
    connection_timeout: float,
    read_timeout: float,
    now: float | None,
) -> _Answer | None:
    """One POST of `wire` (a JSON array, raw or gzipped); None when it was accepted. Every Azure
    exception it can raise becomes an `_Answer` here, and nowhere else. `now` reads an HTTP-date
    Retry-After (None: the caller will not retry)."""
    try:
        client.upload(
            rule_id,
            stream,
            io.BytesIO(wire),
            request_id=request_id,
            connection_timeout=connection_timeout,
            read_timeout=read_timeout,
        )
        return None
    except HttpResponseError as exc:
        ids = _request_ids(exc, request_id)
        if exc.response is None:  # raised before any HTTP exchange: no token
            return _Answer(ids=ids, error_class=type(exc).__name__, no_token=True)
        retry_after = _retry_after(exc, now=now) if now is not None else None
        return _Answer(exc.status_code or 0, _error_code(exc), ids, retry_after)
    except (ServiceRequestTimeoutError, ServiceResponseTimeoutError) as exc:
        return _Answer(ids=_request_ids(exc, request_id), transport=TIMED_OUT, error_class=type(exc).__name__)
    except (ServiceRequestError, ServiceResponseError) as exc:
        return _Answer(
            ids=_request_ids(exc, request_id), transport=LOST_CONNECTION, error_class=type(exc).__name__
        )


def _failure(answer: _Answer, *, rule_id: str, stream: str, attempts: int) -> SinkError:
    """The error an answer stands for once no further attempt can help: the one place where a
    status (or no answer) becomes one of the connector's errors."""
    if answer.no_token:
        return SinkTokenUnavailable(
            f"no identity could get a token for the Logs Ingestion API ({answer.error_class}): {NO_IDENTITY_NOTE}"
        )
    if answer.transport:
        return SinkUnavailable(
            f"the Logs Ingestion API {answer.transport} ({answer.error_class}) after {attempts} attempt(s)"
        )
    status, code = answer.status, answer.code
    if status == 401:
        again = " twice" if attempts > 1 else ""
        return SinkAuthError(
            f"the Logs Ingestion API rejected the token{again} (401, {code}); check that the token audience "
            "is https://monitor.azure.com and the identity exists"
        )
    if status == 403:
        return SinkAuthError(
            f"ingestion into DCR {rule_id!r} stream {stream!r} was refused with 403 ({code}) on {attempts} "
            f"attempt(s): {PROPAGATION_NOTE}"
        )
    if status == 404:
        return SinkConfigError(
            f"the Logs Ingestion API answered 404 ({code}) for DCR immutable id {rule_id!r} and stream "
            f"{stream!r}: the endpoint, DCR id or stream name is wrong"
        )
    if attempts > 1:
        return SinkUnavailable(
            f"the Logs Ingestion API kept failing (last: HTTP {status}, {code}) after {attempts} attempt(s)"
        )
    return SinkUnavailable(f"the Logs Ingestion API answered HTTP {status} ({code})")


def _retry_cause(answer: _Answer) -> RetryCause:
    if answer.transport == TIMED_OUT or answer.status == 408:
        return RetryCause.INGESTION_TIMEOUT
    if answer.transport:
        return RetryCause.INGESTION_CONNECTION
    if answer.status == 429:
        return RetryCause.INGESTION_RATE_LIMITED
    return RetryCause.INGESTION_SERVER


def _retry_after(exc: HttpResponseError, *, now: float) -> float | None:
    for name in ("retry-after-ms", "x-ms-retry-after-ms"):
        value = _header(exc, name)
        if value is not None:
            try:
                return max(0.0, float(value) / 1000.0)
            except ValueError:
                pass
    return parse_retry_after(_header(exc, "Retry-After"), now=now)


class IngestionSink:
    """Sends `Batch`es to one DCR stream. `send` never raises for a delivery problem: it returns
    a `Delivery` whose `error` is SinkAuthError, SinkConfigError or SinkUnavailable."""

    def __init__(
        self,
        client: LogsIngestionClient,
        *,
        rule_id: str,
        stream_name: str,
        retrier: Retrier,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        gzip_level: int = 1,
        request_timeout: float = 30.0,
        connection_timeout: float = 10.0,
        forbidden_attempts: int = 3,
        budget: RateBudget | None = None,
    ) -> None:
        self._client = client
        self._rule_id = rule_id
        self._stream = stream_name
        self._retrier = retrier
        self.max_body_bytes = max_body_bytes
        # ISA-L's gzip (standard gzip on the wire) at level 1: ~0.8 µs per row against ~3.3 µs for
        # zlib's level 1, and a slightly better ratio (5.8x vs 5.4x on our rows). Compression only
        # saves bytes on the wire: the 1 MB limit is already met by the raw body.
        self._gzip_level = gzip_level
        self._request_timeout = request_timeout
        self._connection_timeout = connection_timeout
        self._forbidden_attempts = max(1, forbidden_attempts)
        self._budget = budget or RateBudget(retrier.clock.monotonic)

    # -- LogSink ---------------------------------------------------------------------------------
    def send(self, batch: Batch, *, deadline: Deadline) -> Delivery:
        delivery = Delivery()
        if batch.rows:
            self._send_part(batch.rows, range(len(batch.rows)), batch.body, delivery, deadline)
        return delivery

    # -- internals -------------------------------------------------------------------------------
    def _send_part(
        self,
        rows: Sequence[dict[str, Any]],
        indices: Sequence[int],
        body: bytes,
        delivery: Delivery,
        deadline: Deadline,
    ) -> bool:
        """Deliver `rows` (at `indices` of the batch); False once an error stops the batch."""
        if len(body) > self.max_body_bytes:
            # Not sent at all: Azure would answer 413 anyway.
            return self._split(rows, indices, body, delivery, deadline, status=None)
        outcome = self._post(self._encode(body), delivery, deadline, raw_size=len(body))
        if isinstance(outcome, _Ok):
            delivery.delivered.extend(indices)
            return True
        if isinstance(outcome, _Rejected):
            if len(rows) == 1:
                delivery.rejected.append(Rejection(indices[0], outcome.reason, SetAsideCode.REFUSED))
                return True
            return self._isolate(rows, indices, outcome, delivery, deadline)
        if isinstance(outcome, _TooLarge):
            return self._split(rows, indices, body, delivery, deadline, status=413)
        delivery.error = outcome.error
        return False

    def _split(
        self,
        rows: Sequence[dict[str, Any]],
        indices: Sequence[int],
        body: bytes,
        delivery: Delivery,
        deadline: Deadline,
        *,
        status: int | None,
    ) -> bool:
        if len(rows) == 1:
            if len(body) > self.max_body_bytes:
                reason = oversize_reason(len(body), self.max_body_bytes)
            else:
                reason = (
                    f"record is {len(body):,} bytes and the Logs Ingestion API refused it as too large (413)"
                )
            delivery.rejected.append(Rejection(indices[0], reason, SetAsideCode.OVERSIZE))
            return True
        # Halves keep order, so "delivered up to the first failure" stays meaningful. Re-serialising
        # here is fine: a 413 on a body we sized ourselves is rare.
        mid = len(rows) // 2
        for part_rows, part_indices in ((rows[:mid], indices[:mid]), (rows[mid:], indices[mid:])):
            if not self._send_part(part_rows, part_indices, body_of(part_rows), delivery, deadline):
                return False
        return True

    def _isolate(
        self,
        rows: Sequence[dict[str, Any]],
        indices: Sequence[int],
        refusal: _Rejected,
        delivery: Delivery,
        deadline: Deadline,
    ) -> bool:
        """Rows refused together (400): halve level by level until each refused record is alone.

        Level by level rather than depth first, so that a refusal of everything is recognised by
        its spread (every part refused, parts of a few rows each) before hundreds of records are
        tried one by one. A 413 on a part is split as usual; a transient failure stops the batch.
        """
        refused = [(rows, indices)]
        while refused:
            parts: list[tuple[Sequence[dict[str, Any]], Sequence[int]]] = []
            for part_rows, part_indices in refused:
                mid = len(part_rows) // 2
                parts += [(part_rows[:mid], part_indices[:mid]), (part_rows[mid:], part_indices[mid:])]
            refused = []
            for part_rows, part_indices in parts:
                body = body_of(part_rows)
                outcome = self._post(self._encode(body), delivery, deadline, raw_size=len(body))
                if isinstance(outcome, _Ok):
                    delivery.delivered.extend(part_indices)
                elif isinstance(outcome, _Rejected):
                    refusal = outcome
                    if len(part_rows) == 1:
                        delivery.rejected.append(
                            Rejection(part_indices[0], outcome.reason, SetAsideCode.REFUSED)
                        )
                    else:
                        refused.append((part_rows, part_indices))
                elif isinstance(outcome, _TooLarge):
                    if not self._split(part_rows, part_indices, body, delivery, deadline, status=413):
                        return False
                else:
                    delivery.error = outcome.error
                    return False
            # Nothing of the batch delivered, and every part of a level of small parts refused: the
            # service refuses everything, not a record. Set none of it aside.
            small = len(parts) >= SYSTEMIC_PARTS and max(len(r) for r, _ in parts) <= SYSTEMIC_PART_ROWS
            if small and not delivery.delivered:
                isolated = set(indices)
                delivery.rejected = [
                    r
                    for r in delivery.rejected
                    if r.code is not SetAsideCode.REFUSED or r.position not in isolated
                ]
                delivery.error = SinkRejected(
                    f"the Logs Ingestion API refused all {len(rows)} records of a request with HTTP "
                    f"{refusal.status} ({refusal.code}), even in parts of {SYSTEMIC_PART_ROWS} records or "
                    "fewer: the refusal is about the schema (the DCR's stream declaration), not a record"
                )
                return False
        return True

    def _encode(self, body: bytes) -> bytes:
        """Gzip the body; keep it raw in the rare case gzip makes it bigger than the limit."""
        compressed = igzip.compress(body, self._gzip_level, mtime=0)
        return compressed if len(compressed) <= self.max_body_bytes else body

    def _post(self, wire: bytes, delivery: Delivery, deadline: Deadline, *, raw_size: int) -> _Outcome:
        """Upload `wire` until it is accepted, refused or no attempt is left; never raises."""
        request_id = str(uuid.uuid4())  # one id across our retries, as the SDK does for its own
        refusals = {401: 0, 403: 0}

        def attempt(n: int) -> _Ok | _TooLarge | _Rejected:
            self._wait_for_budget(raw_size, deadline)
            self._budget.record(raw_size)
            delivery.requests += 1
            delivery.bytes_sent += len(wire)
            remaining = deadline.remaining()
            answer = _upload(
                self._client,
                rule_id=self._rule_id,
                stream=self._stream,
                wire=wire,
                request_id=request_id,
                connection_timeout=max(0.1, min(self._connection_timeout, remaining)),
                read_timeout=max(0.1, min(self._request_timeout, remaining)),
                now=self._retrier.clock.now(),
            )
            return _Ok() if answer is None else self._judge(answer, n, refusals)

        def out_of_time(made: int, last: TryAgain | None) -> SinkError:
            return SinkUnavailable("the run's time budget ran out before the batch was acknowledged")

        try:
            return attempt_loop(self._retrier, deadline, attempt, out_of_time=out_of_time)
        except SinkError as error:
            return _Failed(error)

    def _judge(self, answer: _Answer, n: int, refusals: dict[int, int]) -> _TooLarge | _Rejected:
        """What a failed attempt means for a batch of events: a part to split or set aside, or
        TryAgain, or the SinkError that ends the batch."""
        verdict = classify_status(answer.status) if answer.status else Verdict.RETRY
        # A refused record is reported once, when it is set aside; the requests that isolate it
        # (about 2 x log2(n)) are logged at INFO.
        level = logging.INFO if verdict is Verdict.REJECT else logging.WARNING
        if answer.no_token:
            # Nothing was sent, so there is no request id to quote: the run's ERROR line says it all.
            level = logging.DEBUG
        log.log(level, "ingestion attempt %d failed: %s %s", n, answer.describe(), answer.ids)
        if verdict is Verdict.TOO_LARGE:
            return _TooLarge()
        if verdict is Verdict.REJECT:
            reason = f"rejected by the Logs Ingestion API: HTTP {answer.status} ({answer.code})"
            return _Rejected(reason, answer.status, answer.code)
        failure = partial(_failure, answer, rule_id=self._rule_id, stream=self._stream)
        if answer.no_token or verdict is Verdict.NOT_FOUND:
            raise failure(attempts=n)
        if verdict is Verdict.AUTH:
            refusals[answer.status] += 1
            tries = refusals[answer.status]
            if answer.status == 401 and tries <= 1:
                # The bearer policy dropped its cached token on the 401: one more try fetches a new one.
                raise TryAgain(
                    RetryCause.INGESTION_UNAUTHORIZED, answer.describe(), failure(attempts=tries), wait=False
                )
            if answer.status == 403 and tries < self._forbidden_attempts:  # role propagation
                raise TryAgain(RetryCause.INGESTION_FORBIDDEN, answer.describe(), failure(attempts=tries))
            raise failure(attempts=tries)
        raise TryAgain(
            _retry_cause(answer), answer.describe(), failure(attempts=n), retry_after=answer.retry_after
        )

    def _wait_for_budget(self, raw_size: int, deadline: Deadline) -> None:
        """Stay under the DCR's per-minute limits (`throttle`); SinkUnavailable when the wait would
        outlast the run's budget."""
        while (wait := self._budget.delay_for(raw_size)) > 0:
            if wait >= deadline.remaining():
                raise SinkUnavailable("the DCR's per-minute request or byte budget is used up for this run")
            log.warning("ingestion: pausing %.1f s to stay under the DCR's per-minute limits", wait)
            self._retrier.clock.sleep(wait)


def check_upload(
    client: LogsIngestionClient, *, rule_id: str, stream_name: str, timeout: float = 10.0
) -> str:
    """Health check: POST `[]` to the stream, once (nothing is ingested). Returns the client request id.

    Surfaces at once what a real upload would hit: SinkTokenUnavailable (no token), SinkAuthError
    (401, or 403 during role propagation), SinkConfigError (404: endpoint, DCR id or stream),
    SinkUnavailable (anything else).
    """
    request_id = str(uuid.uuid4())
    answer = _upload(
        client,
        rule_id=rule_id,
        stream=stream_name,
        wire=b"[]",
        request_id=request_id,
        connection_timeout=timeout,
        read_timeout=timeout,
        now=None,
    )
    if answer is not None:
        log.warning("ingestion check of %s failed: %s %s", stream_name, answer.describe(), answer.ids)
        raise _failure(answer, rule_id=rule_id, stream=stream_name, attempts=1)
    return request_id


HEALTH_STREAM_ACTION = (
    "the data collection rule does not declare the health stream: redeploy the template of this "
    "release (it adds the stream and the NordPassConnectorHealth_CL table), or set "
    "DCR_HEALTH_STREAM_NAME=none to send no health rows"
)


def check_token(credential: TokenCredential, *, identity: str) -> int:
    """Health check: the token every upload needs; returns when it expires (epoch seconds).

    SinkTokenUnavailable when the credential gives none, naming `identity` (a description such as
    "system-assigned managed identity", never a secret) and the exception's class and status: an
    SDK message can quote the token endpoint's answer."""
    try:
        return int(credential.get_token(MONITOR_SCOPE).expires_on)
    except ClientAuthenticationError as error:
        status = f", HTTP {error.status_code}" if error.status_code else ""
        raise SinkTokenUnavailable(
            f"{identity} could not get a token for https://monitor.azure.com ({type(error).__name__}{status})"
        ) from None
    except AzureError as error:
        raise SinkTokenUnavailable(
            f"{identity}: the token endpoint could not be reached ({type(error).__name__})"
        ) from None


@dataclass(frozen=True)
class StreamsChecked:
    """Both streams of the DCR took an empty upload (`check_streams`)."""

    request_id: str  # the events stream's client request id
    health_request_id: str | None  # the health stream's; None when health rows are turned off


def check_streams(
    client: LogsIngestionClient,
    *,
    rule_id: str,
    stream_name: str,
    health_stream_name: str | None,
    timeout: float = 10.0,
) -> StreamsChecked:
    """`check_upload` for the events stream, then for the health stream (the run's health row
    goes there, through the same client). Raises as `check_upload` does; a health stream the DCR
    does not declare (404) carries HEALTH_STREAM_ACTION: redeploy, or turn health rows off."""
    request_id = check_upload(client, rule_id=rule_id, stream_name=stream_name, timeout=timeout)
    if health_stream_name is None:
        return StreamsChecked(request_id, None)
    try:
        health_id = check_upload(client, rule_id=rule_id, stream_name=health_stream_name, timeout=timeout)
    except SinkConfigError as error:
        raise SinkConfigError(error.message, action=HEALTH_STREAM_ACTION) from None
    return StreamsChecked(request_id, health_id)


HEALTH_RETRY_ACTION = "nothing to do if it clears: the next run sends its own health row"


class IngestionHealthReporter:
    """`HealthReporter` on the Logs Ingestion API: one row per run to the health stream of the same
    DCR, through the same client as the events.

    Deliberately small: the row is advisory and must never hold up or repeat event delivery, so it
    gets the short time bound its caller gives, one retry for a transient failure (5xx, 429,
    timeout, lost connection) and none for an auth or configuration answer.
    """

    def __init__(
        self,
        client: LogsIngestionClient,
        *,
        rule_id: str,
        stream_name: str,
        clock: Clock,
        retry_delay: float = 1.0,
    ) -> None:
        self._client = client
        self._rule_id = rule_id
        self._stream = stream_name
        self._clock = clock
        # Its own retry log: the run's report is final by now and must not change.
        self._retrier = Retrier(
            RetryPolicy(base_delay=retry_delay, max_delay=retry_delay, max_attempts=2), clock, RetryLog()
        )

    def report(self, row: dict[str, Any], *, timeout: float) -> None:
        body = orjson.dumps([row])
        deadline = Deadline.after(self._clock, timeout)
        request_id = str(uuid.uuid4())

        def attempt(n: int) -> None:
            answer = _upload(
                self._client,
                rule_id=self._rule_id,
                stream=self._stream,
                wire=body,
                request_id=request_id,
                connection_timeout=max(0.1, deadline.remaining()),
                read_timeout=max(0.1, deadline.remaining()),
                now=self._clock.now(),
            )
            if answer is None:
                return
            log.warning("ingestion health row attempt %d failed: %s %s", n, answer.describe(), answer.ids)
            failure = _failure(answer, rule_id=self._rule_id, stream=self._stream, attempts=n)
            if isinstance(failure, SinkConfigError):
                raise SinkConfigError(failure.message, action=HEALTH_STREAM_ACTION)
            if isinstance(failure, SinkAuthError):
                raise failure
            exhausted = SinkUnavailable(failure.message, action=HEALTH_RETRY_ACTION)
            raise TryAgain(
                RetryCause.HEALTH_ROW, answer.describe(), exhausted, retry_after=answer.retry_after
            )

        def out_of_time(made: int, last: TryAgain | None) -> SinkError:
            return SinkUnavailable(
                f"no time left for the health row ({timeout:g} s)", action=HEALTH_RETRY_ACTION
            )

        attempt_loop(self._retrier, deadline, attempt, out_of_time=out_of_time)
