"""`python -m nordpass_connector doctor`: check a deployment's configuration end to end.

Each check talks to the real service the connector uses, through the connector's own adapters, and
ends in PASS, FAIL (with the fix) or SKIP (it depends on a check that failed). The order follows
the path of an event: settings -> NordPass -> managed identity -> DCR -> checkpoint table -> clock.

Nothing printed here may contain a secret: messages are built from our own errors' `message` and
`action` (secret-free by contract), class names, status codes and service error codes, never from
third-party exception text, headers or bodies.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
from azure.core.credentials import TokenCredential
from azure.core.exceptions import AzureError, ClientAuthenticationError
from azure.core.pipeline import PipelineResponse

from .adapters import table_store
from .adapters.ingestion import build_logs_client, check_upload
from .adapters.nordpass import NordPassClient
from .clock import Clock, SystemClock
from .composition import (
    build_credential,
    build_store,
    quiet_third_party_loggers,
    running_with_managed_identity,
)
from .errors import (
    ConfigurationError,
    ConnectorError,
    SinkAuthError,
    SinkConfigError,
    SinkTokenUnavailable,
    SourceAuthError,
    SourceUnavailable,
    SourceUnreachable,
)
from .isotime import iso_utc
from .ports import Window
from .retry import Deadline, Retrier, RetryLog, RetryPolicy
from .settings import KNOWN_NORDPASS_HOSTS, Settings, load_settings

log = logging.getLogger(__name__)

PASS, FAIL, SKIP = "PASS", "FAIL", "SKIP"
MONITOR_SCOPE = "https://monitor.azure.com/.default"
MAX_CLOCK_SKEW_SECONDS = 60.0
PROBE_PARTITION = "doctor"

# The wording people act on. Where an error class already carries the fix, that text is used
# instead, so the runbook, the run report and doctor say the same thing.
FIX_NORDPASS_UNREACHABLE = SourceUnreachable.action
FIX_IDENTITY = SinkTokenUnavailable.action
FIX_DCR_UNREACHABLE = (
    "check DATA_COLLECTION_ENDPOINT (the DCR's logs ingestion endpoint) and that the app can reach it "
    "(DNS, firewall, private link)"
)
FIX_TABLE_UNREACHABLE = table_store.UNREACHABLE_ACTION
FIX_TABLE_FORBIDDEN = table_store.FORBIDDEN_ACTION
FIX_TABLE_CREDENTIAL = table_store.CREDENTIAL_REFUSED_ACTION
FIX_CLOCK = (
    "synchronise this machine's clock (NTP; `timedatectl set-ntp true` on Linux). Windows are "
    "planned from local time: a clock that is ahead reads windows before NordPass has their events"
)


@dataclass(frozen=True)
class Check:
    name: str
    verdict: str
    detail: str
    fix: str | None = None
    lines: tuple[str, ...] = ()  # extra detail lines, e.g. one per settings problem

    @property
    def passed(self) -> bool:
        return self.verdict == PASS


@dataclass
class _ServerDate:
    """A `Date` response header with the local times around the exchange."""

    source: str
    server: float
    sent: float
    received: float

    @property
    def skew(self) -> float:
        """Local minus server time; the exchange's midpoint absorbs the round trip."""
        return (self.sent + self.received) / 2 - self.server


@dataclass
class _Dates:
    clock: Clock
    seen: list[_ServerDate] = field(default_factory=list)

    def add(self, source: str, header: str | None, sent: float, received: float) -> None:
        if not header:
            return
        try:
            server = parsedate_to_datetime(header).timestamp()
        except (TypeError, ValueError):
            return
        # Keep one per source: the first answer is enough to judge the clock.
        if all(d.source != source for d in self.seen):
            self.seen.append(_ServerDate(source, server, sent, received))


class _DateRecordingTransport(httpx.BaseTransport):
    """Wraps the NordPass client's transport to note each response's `Date` header, so the clock
    check needs no request of its own."""

    def __init__(self, inner: httpx.BaseTransport, dates: _Dates) -> None:
        self._inner = inner
        self._dates = dates

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        sent = self._dates.clock.now()
        response = self._inner.handle_request(request)
        self._dates.add("NordPass", response.headers.get("date"), sent, self._dates.clock.now())
        return response

    def close(self) -> None:
        self._inner.close()


@dataclass
class Doctor:
    environ: Mapping[str, str]
    clock: Clock = field(default_factory=SystemClock)
    timeout: float = 10.0
    nordpass_attempts: int = 3
    checks: list[Check] = field(default_factory=list)
    _settings: Settings | None = None
    _credential: TokenCredential | None = None
    _dates: _Dates | None = None

    def run(self) -> list[Check]:
        quiet_third_party_loggers()
        self._dates = _Dates(self.clock)
        self.checks = []
        self._step("settings", None, self._check_settings)
        self._step("nordpass", "settings", self._check_nordpass)
        self._step("identity", "settings", self._check_identity)
        self._step("dcr", "identity", self._check_dcr)
        self._step("checkpoint table", "settings", self._check_table)
        # Without valid settings neither service was contacted, so there is no Date header to judge.
        self._step("clock", "settings", self._check_clock)
        close = getattr(self._credential, "close", None)
        if callable(close):
            close()
        return self.checks

    def _step(self, name: str, needs: str | None, check: Callable[[], Check]) -> None:
        if needs is not None:
            earlier = next(c for c in self.checks if c.name == needs)
            if not earlier.passed:
                self.checks.append(Check(name, SKIP, f"skipped: the {needs} check did not pass"))
                return
        started = time.monotonic()
        result = check()
        log.debug("doctor: %s took %.2f s", name, time.monotonic() - started)
        self.checks.append(result)

    @property
    def settings(self) -> Settings:
        assert self._settings is not None  # every caller runs after the settings check passed
        return self._settings

    # -- settings ----------------------------------------------------------------------------
    def _check_settings(self) -> Check:
        try:
            settings = load_settings(self.environ)
        except ConfigurationError as error:
            count = len(error.problems)
            return Check(
                "settings",
                FAIL,
                f"{count} problem{'s' if count != 1 else ''} in the settings",
                fix=error.action,
                lines=tuple(error.problems),
            )
        self._settings = settings
        storage = (
            "connection string"
            if settings.storage.connection_string is not None
            else f"identity-based ({settings.storage.table_service_uri})"
        )
        notes = []
        if settings.nordpass_host not in KNOWN_NORDPASS_HOSTS:
            notes.append(f"; note: {settings.nordpass_host} is not a known NordPass data center")
        return Check(
            "settings",
            PASS,
            f"NordPass {settings.nordpass_host}, DCR {settings.dcr_immutable_id} stream "
            f"{settings.dcr_stream_name}, table {settings.checkpoint_table} ({storage}), instance "
            f"{settings.instance}" + "".join(notes),
        )

    # -- NordPass ----------------------------------------------------------------------------
    def _check_nordpass(self) -> Check:
        s = self.settings
        assert self._dates is not None
        retrier = Retrier(
            RetryPolicy(base_delay=0.5, max_delay=2.0, max_attempts=self.nordpass_attempts),
            self.clock,
            RetryLog(),
        )
        transport = _DateRecordingTransport(httpx.HTTPTransport(retries=0), self._dates)
        now = int(self.clock.now())
        # A settled minute (the connector never reads the newest 60 s either), one event at most.
        window = Window(now - s.safety_delay_seconds - 60, now - s.safety_delay_seconds)
        started = time.monotonic()
        try:
            with NordPassClient(
                endpoint_url=s.nordpass_endpoint_url,
                token=s.nordpass_token.get_secret_value(),
                per_page=1,
                retrier=retrier,
                clock=self.clock,
                transport=transport,
                timeout=httpx.Timeout(self.timeout),
            ) as client:
                page = client.fetch_page(window, 1, deadline=Deadline.after(self.clock, 3 * self.timeout))
        except SourceAuthError as error:
            return Check("nordpass", FAIL, error.message, fix=SourceAuthError.action)
        except SourceUnavailable as error:
            return Check("nordpass", FAIL, error.message, fix=FIX_NORDPASS_UNREACHABLE)
        except ConnectorError as error:
            return Check("nordpass", FAIL, error.message, fix=error.action)
        total = f", {page.total} event(s) in it" if page.total is not None else ""
        return Check(
            "nordpass",
            PASS,
            f"{s.nordpass_host} accepted the token and answered a 1-minute query{total} "
            f"({time.monotonic() - started:.2f} s)",
        )

    # -- managed identity ---------------------------------------------------------------------
    def _check_identity(self) -> Check:
        s = self.settings
        managed = running_with_managed_identity(self.environ)
        who = (
            ("user-assigned managed identity " + s.azure_client_id)
            if managed and s.azure_client_id
            else "system-assigned managed identity"
            if managed
            else "DefaultAzureCredential (no IDENTITY_ENDPOINT: not running on Azure)"
        )
        try:
            credential = build_credential(s, self.environ)
            token = credential.get_token(MONITOR_SCOPE)
        except ClientAuthenticationError as error:
            status = f", HTTP {error.status_code}" if error.status_code else ""
            return Check(
                "identity",
                FAIL,
                f"{who} could not get a token for https://monitor.azure.com ({type(error).__name__}{status})",
                fix=FIX_IDENTITY,
            )
        except AzureError as error:
            return Check(
                "identity",
                FAIL,
                f"{who}: the token endpoint could not be reached ({type(error).__name__})",
                fix=FIX_IDENTITY,
            )
        self._credential = credential
        valid = iso_utc(int(token.expires_on))[11:]
        return Check(
            "identity", PASS, f"{who} got a token for https://monitor.azure.com (valid until {valid})"
        )

    # -- DCR ----------------------------------------------------------------------------------
    def _check_dcr(self) -> Check:
        s = self.settings
        assert self._credential is not None and self._dates is not None
        dates = self._dates
        sent = self.clock.now()

        def note_date(response: PipelineResponse[Any, Any]) -> None:
            headers = response.http_response.headers
            dates.add("Logs Ingestion API", headers.get("Date"), sent, self.clock.now())

        # The production client, plus a hook that reads the Date header for the clock check.
        client = build_logs_client(
            s.data_collection_endpoint,
            self._credential,
            connection_timeout=self.timeout,
            read_timeout=self.timeout,
            raw_response_hook=note_date,
        )
        try:
            with client:
                request_id = check_upload(
                    client, rule_id=s.dcr_immutable_id, stream_name=s.dcr_stream_name, timeout=self.timeout
                )
        except SinkAuthError as error:
            return Check("dcr", FAIL, error.message, fix=error.action)
        except SinkConfigError as error:
            return Check("dcr", FAIL, error.message, fix=SinkConfigError.action)
        except ConnectorError as error:
            return Check("dcr", FAIL, error.message, fix=FIX_DCR_UNREACHABLE)
        return Check(
            "dcr",
            PASS,
            f"stream {s.dcr_stream_name} of {s.dcr_immutable_id} accepted an empty upload "
            f"(client_request_id={request_id})",
        )

    # -- checkpoint table ---------------------------------------------------------------------
    def _check_table(self) -> Check:
        s = self.settings
        try:
            # One attempt, short timeouts: a doctor should answer in seconds, not retry a dead port.
            store = build_store(
                s,
                self.environ,
                retry_total=0,
                connection_timeout=min(5.0, self.timeout),
                read_timeout=self.timeout,
            )
            try:
                probed = store.probe()
            finally:
                store.close()
        except ConnectorError as error:
            return Check("checkpoint table", FAIL, error.message, fix=error.action)
        where = " (created the table)" if probed.created_table else ""
        return Check("checkpoint table", PASS, f"table {s.checkpoint_table} is writable and readable{where}")

    # -- clock --------------------------------------------------------------------------------
    def _check_clock(self) -> Check:
        assert self._dates is not None
        seen = self._dates.seen
        if not seen:
            return Check(
                "clock",
                SKIP,
                "skipped: neither NordPass nor the Logs Ingestion API answered with a Date header",
            )
        worst = max(seen, key=lambda d: abs(d.skew))
        compared = " and ".join(d.source for d in seen)
        if abs(worst.skew) > MAX_CLOCK_SKEW_SECONDS:
            direction = "ahead of" if worst.skew > 0 else "behind"
            return Check(
                "clock",
                FAIL,
                f"local time is {abs(worst.skew):.0f} s {direction} {worst.source}'s clock "
                f"(more than {MAX_CLOCK_SKEW_SECONDS:.0f} s)",
                fix=FIX_CLOCK,
            )
        return Check("clock", PASS, f"within {abs(worst.skew):.0f} s of {compared} (Date headers)")


def run_doctor(
    environ: Mapping[str, str], *, clock: Clock | None = None, timeout: float = 10.0
) -> list[Check]:
    return Doctor(environ, clock=clock or SystemClock(), timeout=timeout).run()


def render(checks: list[Check]) -> list[str]:
    width = max(len(c.name) for c in checks)
    out = []
    for c in checks:
        out.append(f"{c.verdict}  {c.name:<{width}}  {c.detail}")
        pad = " " * (len(c.verdict) + 2 + width + 2)
        out.extend(f"{pad}- {line}" for line in c.lines)
        if c.fix and c.verdict == FAIL:
            out.append(f"{pad}fix: {c.fix}")
    passed = sum(c.verdict == PASS for c in checks)
    failed = sum(c.verdict == FAIL for c in checks)
    skipped = sum(c.verdict == SKIP for c in checks)
    out.append(f"doctor: {passed} passed, {failed} failed, {skipped} skipped")
    return out
