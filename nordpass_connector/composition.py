"""The composition root: the only place that turns settings into real clients and adapters.

`run_timer_tick` (the Functions timer) and `python -m nordpass_connector run --once` both go through
`run_from_environment`, so the command line exercises exactly the timer's code path. `doctor` and
`status` get their clients here too (`doctor_context`, `build_store`).
"""

from __future__ import annotations

import gc
import logging
import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
from azure.core.credentials import TokenCredential
from azure.identity import DefaultAzureCredential, ManagedIdentityCredential
from azure.monitor.ingestion import LogsIngestionClient

from . import __version__
from .adapters.emulator import emulator_address
from .adapters.ingestion import IngestionHealthReporter, IngestionSink, build_logs_client
from .adapters.nordpass import NordPassClient
from .adapters.requests_session import EnvironmentOnceSession
from .adapters.server_dates import DateRecordingHooks, DateRecordingTransport, ServerDates
from .adapters.table_store import TableStore, build_table_client
from .clock import Clock, SystemClock
from .errors import (
    CheckpointBusy,
    CheckpointDamaged,
    CheckpointUnavailable,
    ConnectorError,
    SinkAuthError,
)
from .health import HealthRecord, health_row, merge_crash, merge_report, run_summary
from .options import Pool, RunOptions
from .pipeline import Connector, RunFailed, run_once
from .ports import HealthReporter, HealthStore
from .reader import ConcurrencyLimit, WindowReader
from .report import RunReport
from .retry import Deadline, Retrier, RetryLog, RetryPolicy
from .settings import Settings, StoreSettings, load_settings
from .windows import WindowPolicy

log = logging.getLogger("nordpass_connector")

# The health row is sent once the run's outcome is final, bounded three ways: the reporter's
# requests (HEALTH_ROW_TIMEOUT, one retry inside it); the wait for it (HEALTH_ROW_WAIT, which also
# covers a token request that outlasts those); and the run's own bound: nothing is sent past the
# run's budget plus HEALTH_ROW_PAST_BUDGET seconds, so a run that spent its budget on a stalled
# dependency is not held up again by its row.
HEALTH_ROW_TIMEOUT = 10.0
HEALTH_ROW_WAIT = 15.0
HEALTH_ROW_PAST_BUDGET = 10.0
HEALTH_ROW_MIN_SECONDS = 1.0

# Loggers that are chatty at INFO or, at DEBUG, able to print request details. Our own logs never
# carry secrets; these are held at WARNING so that a verbose host setting cannot make them.
_QUIET_LOGGERS = (
    "azure.core.pipeline.policies.http_logging_policy",
    # NetworkTraceLoggingPolicy: with `logging_enable=True` on any call it writes every header,
    # the bearer token included, and whole bodies at DEBUG (tests/test_secrets_never_leak.py).
    "azure.core.pipeline.policies._universal",
    "azure.identity",
    "azure.monitor.ingestion",
    "azure.data.tables",
    "httpx",
    "httpcore",
    "msal",
    "urllib3",
)


def quiet_third_party_loggers(level: int = logging.WARNING) -> dict[str, int]:
    """Hold those loggers at `level` (the command line's --log-level), never below WARNING and never
    below a level set earlier. Returns the previous levels, for a caller that restores them."""
    previous = {}
    for name in _QUIET_LOGGERS:
        logger = logging.getLogger(name)
        previous[name] = logger.level
        logger.setLevel(max(logging.WARNING, level, logger.level))
    return previous


def running_with_managed_identity(environ: Mapping[str, str]) -> bool:
    """True on Azure Functions / App Service (and in the sandbox, which stands in for it)."""
    return bool(environ.get("IDENTITY_ENDPOINT") or environ.get("MSI_ENDPOINT"))


# Token requests are bounded like every other call. The platform's identity endpoint answers in
# milliseconds; without these, azure-core's defaults (300 s read timeout, 10 retries with backoff
# up to 120 s) let one stalled get_token() hold a run for many minutes (1,205 s was seen). Here a
# stalled endpoint costs at most about 2 x 5 s: one retry covers a transient failure, `timeout`
# stops further attempts after 12 s, and the run then fails with one line (SinkAuthError).
CREDENTIAL_OPTIONS: Mapping[str, Any] = {
    "connection_timeout": 3.0,
    "read_timeout": 5.0,
    "retry_total": 1,
    "retry_backoff_factor": 0.5,
    "retry_backoff_max": 2.0,
    "timeout": 12.0,
}
# Developer credentials (Azure CLI, PowerShell, azd) run a process each; this caps each of them.
DEVELOPER_PROCESS_TIMEOUT = 10


def build_credential(
    settings: Settings | StoreSettings, environ: Mapping[str, str], *, client_id: str | None = None
) -> TokenCredential:
    wanted = client_id or settings.azure_client_id
    if running_with_managed_identity(environ):
        # Not DefaultAzureCredential in Azure: a stray AZURE_CLIENT_SECRET would silently win over
        # the managed identity. ManagedIdentityCredential does not read AZURE_CLIENT_ID on App
        # Service, so the user-assigned identity is passed explicitly.
        if wanted:
            return ManagedIdentityCredential(client_id=wanted, **CREDENTIAL_OPTIONS)
        return ManagedIdentityCredential(**CREDENTIAL_OPTIONS)
    return DefaultAzureCredential(
        managed_identity_client_id=wanted,
        exclude_interactive_browser_credential=True,
        process_timeout=DEVELOPER_PROCESS_TIMEOUT,
        **CREDENTIAL_OPTIONS,
    )


def _credential_closed_with(stack: ExitStack, credential: TokenCredential) -> TokenCredential:
    """`credential`, closed (its token session) when `stack` closes. `TokenCredential` does not
    declare `close`; both credentials `build_credential` makes have one."""
    close = getattr(credential, "close", None)
    if callable(close):
        stack.callback(close)
    return credential


def describe_identity(settings: Settings, environ: Mapping[str, str]) -> str:
    """Which identity `build_credential` asks for a token, in words (for doctor)."""
    if not running_with_managed_identity(environ):
        return "DefaultAzureCredential (no IDENTITY_ENDPOINT: not running on Azure)"
    if settings.azure_client_id:
        return "user-assigned managed identity " + settings.azure_client_id
    return "system-assigned managed identity"


def build_store(
    settings: Settings | StoreSettings, environ: Mapping[str, str], **table_options: Any
) -> TableStore:
    """The checkpoint store (checkpoint, dead letters, health record) as the run uses it; `status`
    and `doctor` build theirs here too so they look exactly where the runs write."""
    table_credential = None
    if settings.storage.connection_string is None:
        table_credential = build_credential(settings, environ, client_id=settings.storage.client_id)
    return TableStore(
        build_table_client(
            table_name=settings.checkpoint_table,
            connection_string=(
                settings.storage.connection_string.get_secret_value()
                if settings.storage.connection_string
                else None
            ),
            table_service_uri=settings.storage.table_service_uri,
            credential=table_credential,
            **table_options,
        ),
        instance=settings.instance,
        emulator=emulator_address(settings.storage),
        credential=table_credential,
    )


# doctor answers in seconds: a few quick attempts at NordPass, none at all for Azure calls.
DOCTOR_NORDPASS_POLICY = RetryPolicy(base_delay=0.5, max_delay=2.0, max_attempts=3)
DOCTOR_TABLE_CONNECT_TIMEOUT = 5.0


@dataclass(frozen=True)
class DoctorContext:
    """What doctor's checks run over: the settings and the real clients, built from them."""

    settings: Settings
    clock: Clock
    timeout: float  # per request
    identity: str  # `describe_identity`
    on_azure: bool  # a managed identity endpoint is there (else DefaultAzureCredential, a developer's)
    credential: TokenCredential
    nordpass: NordPassClient  # pages of one event, answers' Date headers recorded
    logs_client: LogsIngestionClient  # answers' Date headers recorded
    store: TableStore | ConnectorError  # or why it could not be built (a malformed connection string)
    dates: ServerDates  # filled by the NordPass and Logs Ingestion answers


@contextmanager
def doctor_context(
    settings: Settings, environ: Mapping[str, str], *, clock: Clock, timeout: float
) -> Iterator[DoctorContext]:
    """doctor's clients, built as the run's are but bounded for a check: every call within
    `timeout`, no SDK retries, one attempt at the table. Nothing is contacted here; all of them
    are closed afterwards."""
    dates = ServerDates(clock)
    with ExitStack() as stack:
        credential = _credential_closed_with(stack, build_credential(settings, environ))
        nordpass = NordPassClient(
            endpoint_url=settings.nordpass_endpoint_url,
            token=settings.nordpass_token.get_secret_value(),
            per_page=1,
            retrier=Retrier(DOCTOR_NORDPASS_POLICY, clock, RetryLog()),
            clock=clock,
            transport=DateRecordingTransport(httpx.HTTPTransport(retries=0), dates, "NordPass"),
            timeout=httpx.Timeout(timeout),
        )
        stack.callback(nordpass.close)
        hooks = DateRecordingHooks(dates, "Logs Ingestion API")
        logs_client = build_logs_client(
            settings.data_collection_endpoint,
            credential,
            connection_timeout=timeout,
            read_timeout=timeout,
            raw_request_hook=hooks.on_request,
            raw_response_hook=hooks.on_response,
        )
        stack.callback(logs_client.close)
        store: TableStore | ConnectorError
        try:
            store = build_store(
                settings,
                environ,
                retry_total=0,
                connection_timeout=min(DOCTOR_TABLE_CONNECT_TIMEOUT, timeout),
                read_timeout=timeout,
            )
            stack.callback(store.close)
        except ConnectorError as error:
            store = error
        yield DoctorContext(
            settings=settings,
            clock=clock,
            timeout=timeout,
            identity=describe_identity(settings, environ),
            on_azure=running_with_managed_identity(environ),
            credential=credential,
            nordpass=nordpass,
            logs_client=logs_client,
            store=store,
            dates=dates,
        )


YOUNG_GENERATION_OBJECTS = 50_000


@contextmanager
def relaxed_gc() -> Iterator[None]:
    """Next to no garbage-collector passes while a run holds thousands of short-lived event dicts.

    Events form no reference cycles, so reference counting frees them; the cyclic collector only
    re-scans the windows held in memory. With a young generation of 5,000 objects it ran ~100 times
    per 100k events, found almost nothing (~900 objects in the whole run) and cost ~2 µs per event.
    At 50,000 the objects a run holds at once (a few windows) stay under the threshold, so a
    backfill collects about never (measured at 100k events: GC time 0.2 s -> ~0 s, same peak RSS),
    while a run that does make cycles (retries keep exceptions and their frames) still has them
    collected. Objects that exist before the run (imports, clients) are frozen out of its scans.
    Restored afterwards.
    """
    before = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(YOUNG_GENERATION_OBJECTS, 20, 20)
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()


@contextmanager
def build_connector(
    settings: Settings,
    environ: Mapping[str, str],
    *,
    clock: Clock | None = None,
    retry_policy: RetryPolicy | None = None,
    health_store: HealthStore | None = None,
) -> Iterator[Connector]:
    """Every real object one run needs, from the settings. `health_store` replaces the table's
    health record (tests: `tests.doubles.MemoryHealthStore`)."""
    clock = clock or SystemClock()
    retry_log = RetryLog()
    retrier = Retrier(retry_policy or RetryPolicy(), clock, retry_log)
    options = options_from(settings)
    pools = options.pools
    with ExitStack() as stack:
        stack.enter_context(relaxed_gc())
        credential = _credential_closed_with(stack, build_credential(settings, environ))
        source = NordPassClient(
            endpoint_url=settings.nordpass_endpoint_url,
            token=settings.nordpass_token.get_secret_value(),
            per_page=settings.page_size,
            retrier=retrier,
            clock=clock,
            max_connections=pools.nordpass_requests,
        )
        stack.callback(source.close)
        # Uploads share one session, as the SDK's own would be shared; it reads the proxy and CA
        # variables once per run instead of on every upload (see `requests_session`).
        logs_client = build_logs_client(
            settings.data_collection_endpoint, credential, session=EnvironmentOnceSession()
        )
        stack.callback(logs_client.close)
        sink = IngestionSink(
            client=logs_client,
            rule_id=settings.dcr_immutable_id,
            stream_name=settings.dcr_stream_name,
            retrier=retrier,
        )
        health_reporter = None
        if settings.dcr_health_stream_name is not None:
            health_reporter = IngestionHealthReporter(
                logs_client,
                rule_id=settings.dcr_immutable_id,
                stream_name=settings.dcr_health_stream_name,
                clock=clock,
            )
        store = build_store(settings, environ)
        stack.callback(store.close)  # after the pools below have stopped (callbacks run last first)
        pages = stack.enter_context(Pool(pools.page_fetchers, "nordpass-page"))
        prefetcher = stack.enter_context(Pool(pools.window_readers, "nordpass-window"))
        uploader = stack.enter_context(Pool(pools.uploaders, "ingestion-upload"))
        reader = WindowReader(
            source=source,
            executor=pages,
            clock=clock,
            per_page=settings.page_size,
            max_window_events=settings.max_window_events,
            limit=ConcurrencyLimit(pools.nordpass_requests),
            retry_log=retry_log,
        )
        yield Connector(
            reader=reader,
            sink=sink,
            store=store,
            clock=clock,
            retry_log=retry_log,
            options=options,
            prefetcher=prefetcher,
            uploader=uploader,
            health_reporter=health_reporter,
            health_store=health_store or store,
        )


def options_from(settings: Settings) -> RunOptions:
    return RunOptions(
        backfill_days=settings.backfill_days,
        run_budget_seconds=settings.run_budget_seconds,
        window_policy=WindowPolicy(
            lookback_seconds=settings.lookback_seconds,
            safety_delay_seconds=settings.safety_delay_seconds,
        ),
        max_window_events=settings.max_window_events,
        uploads_in_flight=settings.upload_concurrency,
        windows_ahead=settings.windows_ahead,
        fetch_concurrency=settings.fetch_concurrency,
    )


def run_from_environment(environ: Mapping[str, str] | None = None, **overrides: Any) -> RunReport:
    """One run with settings from `environ` (default: the process environment).

    Raises ConfigurationError before anything is contacted when settings are wrong, and RunFailed
    (carrying the partial report) when the run did not finish its work. A busy run (another run
    holds the checkpoint) is not a failure: its report (outcome "busy") is returned, after one
    INFO line that says who holds the checkpoint.
    """
    environ = os.environ if environ is None else environ
    quiet_third_party_loggers()
    settings = load_settings(environ)
    with build_connector(settings, environ, **overrides) as connector:
        # The run's time bound for what comes after it: the health record and row.
        bound = Deadline.after(connector.clock, settings.run_budget_seconds + HEALTH_ROW_PAST_BUDGET)
        try:
            report = run_once(connector)
        except RunFailed as failure:
            if isinstance(failure.cause, CheckpointBusy):
                _record_health(connector, settings, failure.report, None, bound=bound)
                log.info(
                    "nordpass run busy (not a failure): %s; this run did nothing | %s",
                    failure.cause.message,
                    orjson.dumps(run_summary(failure.report)).decode(),
                )
                return failure.report
            # (With the table unavailable the record write would only fail too, after its
            # timeouts; the health row still goes to Sentinel.)
            keep_record = not isinstance(failure.cause, CheckpointUnavailable)
            # The row would go to the same API with the same token the run was just refused (or
            # could not get): it would only fail again and repeat the run's error in a WARNING.
            send_row = not isinstance(failure.cause, SinkAuthError)
            _record_health(
                connector,
                settings,
                failure.report,
                None,
                bound=bound,
                write_record=keep_record,
                send_row=send_row,
            )
            raise
        except Exception as crash:
            _record_health(connector, settings, None, crash, bound=bound)
            raise
        _record_health(connector, settings, report, None, bound=bound)
        return report


def _record_health(
    connector: Connector,
    settings: Settings,
    report: RunReport | None,
    crash: Exception | None,
    *,
    bound: Deadline,
    write_record: bool = True,
    send_row: bool = True,
) -> None:
    """The run is over and its outcome final (checkpoint committed, lease released): merge it into
    the health record beside the checkpoint, then send its health row to Sentinel.

    Best effort by design: both are advisory, and a failure of either must neither fail a run that
    delivered nor replace a failed run's own error (the caller re-raises that one).
    """
    now = connector.clock.now()
    record = _write_health_record(connector, report, crash, now=now) if write_record else None
    if connector.health_reporter is None or not send_row:
        return
    row = health_row(
        now=now,
        instance=settings.instance,
        version=__version__,
        report=report,
        record=record,
        crash_class=type(crash).__name__ if crash is not None else None,
    )
    _send_health_row(connector.health_reporter, row, wait=min(HEALTH_ROW_WAIT, bound.remaining()))


def _write_health_record(
    connector: Connector, report: RunReport | None, crash: Exception | None, *, now: float
) -> HealthRecord | None:
    """The record after this run, as written; None when it could not be read or written."""
    store = connector.health_store
    if store is None:
        return None
    try:
        # A failed read skips the write too: a record rebuilt from nothing would wipe the last
        # success time and the failure count, which matter more than one run's outcome.
        try:
            previous = HealthRecord.decode(store.read_health())
        except CheckpointDamaged as damage:
            raise damage.in_row(store.health_row_name) from None
        if report is not None:
            record = merge_report(previous, report, now=now)
        else:
            record = merge_crash(previous, run_id=None, error_class=type(crash).__name__, now=now)
        store.write_health(record.to_fields())
        return record
    except ConnectorError as error:
        log.warning("could not write the health record: %s", error.describe())
    except Exception as error:  # noqa: BLE001 - see the docstring: never mask the run's outcome
        log.warning("could not write the health record: %s", type(error).__name__)
    return None


def _send_health_row(reporter: HealthReporter, row: dict[str, Any], *, wait: float) -> None:
    """Send the run's health row, waiting at most `wait` seconds; any failure is one WARNING line
    and nothing else. Events are already delivered and committed: a row that is lost loses no
    event, and one that is sent twice repeats no event."""
    if wait < HEALTH_ROW_MIN_SECONDS:
        log.warning("health row not sent: the run has used its time (ignored; events are unaffected)")
        return
    failure: list[BaseException] = []

    def send() -> None:
        try:
            reporter.report(row, timeout=min(HEALTH_ROW_TIMEOUT, wait))
        except BaseException as error:  # noqa: BLE001 - reported below, on the run's thread
            failure.append(error)

    # A thread of its own, so that nothing (not even a stalled token request) can hold the run
    # past the wait; a send still going then ends on its own request timeouts.
    worker = threading.Thread(target=send, name="nordpass-health-row", daemon=True)
    worker.start()
    worker.join(wait)
    if worker.is_alive():
        log.warning("health row not sent: no answer within %.1f s (ignored; events are unaffected)", wait)
    elif failure:
        error = failure[0]
        reason = error.describe() if isinstance(error, ConnectorError) else type(error).__name__
        log.warning("health row not sent (ignored; events are unaffected): %s", reason)


def run_timer_tick(
    *, past_due: bool = False, environ: Mapping[str, str] | None = None, **overrides: Any
) -> RunReport:
    """The timer's whole job. A failed run raises, so the Functions host records a failure.

    `environ` and `overrides` (clock, retry policy) exist for tests; the timer passes neither."""
    if past_due:
        # Normal after downtime or a long run: the checkpoint, not the schedule, defines the work.
        log.debug("timer is past due; continuing from the checkpoint")
    # Exactly one line per run: INFO with the summary when it worked, ERROR (what failed and what
    # to do, then the same summary) when it did not. Re-raising makes the host record the failure.
    try:
        report = run_from_environment(environ, **overrides)
    except RunFailed as failure:
        log.error(
            "nordpass run failed: %s | %s",
            failure.cause.describe(),
            orjson.dumps(run_summary(failure.report)).decode(),
        )
        raise
    except ConnectorError as error:
        log.error("nordpass run failed: %s", error.describe())
        raise
    if report.outcome != "busy":  # a busy run has said so already, in its one line
        log.info("nordpass run: %s", orjson.dumps(run_summary(report)).decode())
    return report
