"""`python -m nordpass_connector doctor`: check a deployment's configuration end to end.

Each check talks to the real service the connector uses, through the connector's own adapters, and
ends in PASS, FAIL (with the fix) or SKIP (it depends on a check that failed). The order follows
the path of an event: settings -> NordPass -> managed identity -> DCR -> checkpoint table -> clock.

The checks are small functions over a `DoctorContext` (settings and clients, built by the
composition root), declared in `CHECKS` with what each needs; `run_checks` runs them in order. The
adapters turn every failure into one of the connector's errors, and here they are only rendered.

Nothing printed here may contain a secret: messages are built from our own errors' `message` and
`action` (secret-free by contract), class names, status codes and service error codes, never from
third-party exception text, headers or bodies.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Generic, TypeVar

from .adapters import table_store
from .adapters.ingestion import check_streams, check_token
from .clock import Clock, SystemClock
from .composition import DoctorContext, doctor_context, quiet_third_party_loggers
from .errors import (
    ConfigurationError,
    ConnectorError,
    SinkAuthError,
    SinkConfigError,
    SinkTokenUnavailable,
    SourceUnavailable,
    SourceUnreachable,
)
from .isotime import iso_utc
from .ports import Window
from .retry import Deadline
from .settings import KNOWN_NORDPASS_HOSTS, load_settings

log = logging.getLogger(__name__)


class Verdict(StrEnum):
    PASS = "PASS"
    FAIL = "FAIL"
    SKIP = "SKIP"


PASS, FAIL, SKIP = Verdict.PASS, Verdict.FAIL, Verdict.SKIP


class CheckName(StrEnum):
    """Every check, by the name it prints under."""

    SETTINGS = "settings"
    NORDPASS = "nordpass"
    IDENTITY = "identity"
    DCR = "dcr"
    TABLE = "checkpoint table"
    CLOCK = "clock"


MAX_CLOCK_SKEW_SECONDS = 60.0

# The wording people act on. Where an error class already carries the fix, that text is used
# instead, so the runbook, the run report and doctor say the same thing.
FIX_NORDPASS_UNREACHABLE = SourceUnreachable.action
FIX_IDENTITY = SinkTokenUnavailable.action
# Off Azure the credential is DefaultAzureCredential: the fix is a sign-in, not an Azure blade.
FIX_IDENTITY_LOCALLY = (
    "sign in with `az login` as an account that has 'Monitoring Metrics Publisher' on the data "
    "collection rule (or run where a managed identity is enabled, such as the function app's console)"
)
FIX_DCR_UNREACHABLE = (
    "check DATA_COLLECTION_ENDPOINT (the DCR's logs ingestion endpoint) and that the app can reach it "
    "(DNS, firewall, private link)"
)
FIX_TABLE_UNREACHABLE = table_store.UNREACHABLE_ACTION
FIX_TABLE_CREDENTIAL = table_store.CREDENTIAL_REFUSED_ACTION
FIX_CLOCK = (
    "synchronise this machine's clock (NTP; `timedatectl set-ntp true` on Linux). Windows are "
    "planned from local time: a clock that is ahead reads windows before NordPass has their events"
)


@dataclass(frozen=True)
class Check:
    name: CheckName
    verdict: Verdict
    detail: str
    fix: str | None = None
    lines: tuple[str, ...] = ()  # extra detail lines, e.g. one per settings problem

    @property
    def passed(self) -> bool:
        return self.verdict is Verdict.PASS


# -- the runner ------------------------------------------------------------------------------------
C = TypeVar("C")


@dataclass(frozen=True)
class Step(Generic[C]):
    """One row of a check table: run `check` once every check in `needs` has passed."""

    name: CheckName
    needs: tuple[CheckName, ...]
    check: Callable[[C], Check]


def run_checks(steps: Sequence[Step[C]], ctx: C | None, *, decided: Sequence[Check] = ()) -> list[Check]:
    """Run `steps` in order over `ctx`; a step whose need did not pass is SKIPped, naming that need.

    `decided`: outcomes known before any context exists (doctor's settings: without valid settings
    there is none, `ctx` is None, and every step needing them is skipped). A step that would run
    without a context, or that needs a step not before it, is a mistake in the table: ValueError.
    """
    done = {check.name: check for check in decided}
    results: list[Check] = []
    for step in steps:
        result = done.get(step.name) or _run_step(step, ctx, done)
        done[step.name] = result
        results.append(result)
    return results


def _run_step(step: Step[C], ctx: C | None, done: Mapping[CheckName, Check]) -> Check:
    unknown = [need for need in step.needs if need not in done]
    if unknown:
        raise ValueError(f"the {step.name} check needs {', '.join(unknown)}, which does not run before it")
    failed = next((need for need in step.needs if not done[need].passed), None)
    if failed is not None:
        return Check(step.name, SKIP, f"skipped: the {failed} check did not pass")
    if ctx is None:
        raise ValueError(f"the {step.name} check has no context to run in")
    started = time.monotonic()
    result = step.check(ctx)
    log.debug("doctor: %s took %.2f s", step.name, time.monotonic() - started)
    return result


# -- the checks ------------------------------------------------------------------------------------
def settings_failed(error: ConfigurationError) -> Check:
    count = len(error.problems)
    return Check(
        CheckName.SETTINGS,
        FAIL,
        f"{count} problem{'s' if count != 1 else ''} in the settings",
        fix=error.action,
        lines=tuple(error.problems),
    )


def check_settings(ctx: DoctorContext) -> Check:
    """The settings loaded (a context exists only then): what they point at."""
    s = ctx.settings
    storage = (
        "connection string"
        if s.storage.connection_string is not None
        else f"identity-based ({s.storage.table_service_uri})"
    )
    note = (
        f"; note: {s.nordpass_host} is not a known NordPass data center"
        if s.nordpass_host not in KNOWN_NORDPASS_HOSTS
        else ""
    )
    return Check(
        CheckName.SETTINGS,
        PASS,
        f"NordPass {s.nordpass_host}, DCR {s.dcr_immutable_id} stream {s.dcr_stream_name}, table "
        f"{s.checkpoint_table} ({storage}), instance {s.instance}{note}",
    )


def check_nordpass(ctx: DoctorContext) -> Check:
    """One query: a settled minute (the connector never reads the newest seconds either), page 1,
    one event at most."""
    s = ctx.settings
    now = int(ctx.clock.now())
    window = Window(now - s.safety_delay_seconds - 60, now - s.safety_delay_seconds)
    started = ctx.clock.monotonic()
    try:
        page = ctx.nordpass.fetch_page(window, 1, deadline=Deadline.after(ctx.clock, 3 * ctx.timeout))
    except SourceUnavailable as error:
        return Check(CheckName.NORDPASS, FAIL, error.message, fix=FIX_NORDPASS_UNREACHABLE)
    except ConnectorError as error:
        return Check(CheckName.NORDPASS, FAIL, error.message, fix=error.action)
    total = f", {page.total} event(s) in it" if page.total is not None else ""
    return Check(
        CheckName.NORDPASS,
        PASS,
        f"{s.nordpass_host} accepted the token and answered a 1-minute query{total} "
        f"({ctx.clock.monotonic() - started:.2f} s)",
    )


def check_identity(ctx: DoctorContext) -> Check:
    try:
        expires_on = check_token(ctx.credential, identity=ctx.identity)
    except SinkTokenUnavailable as error:
        fix = error.action if ctx.on_azure else FIX_IDENTITY_LOCALLY
        return Check(CheckName.IDENTITY, FAIL, error.message, fix=fix)
    return Check(
        CheckName.IDENTITY,
        PASS,
        f"{ctx.identity} got a token for https://monitor.azure.com (valid until {iso_utc(expires_on)[11:]})",
    )


def check_dcr(ctx: DoctorContext) -> Check:
    """An empty upload to the events stream and to the health stream: nothing is ingested."""
    s = ctx.settings
    try:
        checked = check_streams(
            ctx.logs_client,
            rule_id=s.dcr_immutable_id,
            stream_name=s.dcr_stream_name,
            health_stream_name=s.dcr_health_stream_name,
            timeout=ctx.timeout,
        )
    except (SinkAuthError, SinkConfigError) as error:
        return Check(CheckName.DCR, FAIL, error.message, fix=error.action)
    except ConnectorError as error:
        return Check(CheckName.DCR, FAIL, error.message, fix=FIX_DCR_UNREACHABLE)
    health = (
        f"; so did health stream {s.dcr_health_stream_name} (client_request_id={checked.health_request_id})"
        if checked.health_request_id is not None
        else "; no health stream (DCR_HEALTH_STREAM_NAME=none)"
    )
    return Check(
        CheckName.DCR,
        PASS,
        f"stream {s.dcr_stream_name} of {s.dcr_immutable_id} accepted an empty upload "
        f"(client_request_id={checked.request_id}){health}",
    )


def check_table(ctx: DoctorContext) -> Check:
    """Write, read back and delete a probe row (`TableStore.probe`); never the checkpoint."""
    store = ctx.store
    if isinstance(store, ConnectorError):  # it could not even be built
        return Check(CheckName.TABLE, FAIL, store.message, fix=store.action)
    try:
        probed = store.probe()
    except ConnectorError as error:
        return Check(CheckName.TABLE, FAIL, error.message, fix=error.action)
    created = " (created the table)" if probed.created_table else ""
    return Check(CheckName.TABLE, PASS, f"table {probed.table} is writable and readable{created}")


def check_clock(ctx: DoctorContext) -> Check:
    """Local time against the `Date` headers the NordPass and Logs Ingestion answers carried."""
    seen = ctx.dates.seen
    if not seen:
        return Check(
            CheckName.CLOCK,
            SKIP,
            "skipped: neither NordPass nor the Logs Ingestion API answered with a Date header",
        )
    worst = max(seen, key=lambda d: abs(d.skew))
    if abs(worst.skew) > MAX_CLOCK_SKEW_SECONDS:
        direction = "ahead of" if worst.skew > 0 else "behind"
        return Check(
            CheckName.CLOCK,
            FAIL,
            f"local time is {abs(worst.skew):.0f} s {direction} {worst.source}'s clock "
            f"(more than {MAX_CLOCK_SKEW_SECONDS:.0f} s)",
            fix=FIX_CLOCK,
        )
    compared = " and ".join(d.source for d in seen)
    return Check(CheckName.CLOCK, PASS, f"within {abs(worst.skew):.0f} s of {compared} (Date headers)")


CHECKS: tuple[Step[DoctorContext], ...] = (
    Step(CheckName.SETTINGS, (), check_settings),
    Step(CheckName.NORDPASS, (CheckName.SETTINGS,), check_nordpass),
    Step(CheckName.IDENTITY, (CheckName.SETTINGS,), check_identity),
    Step(CheckName.DCR, (CheckName.IDENTITY,), check_dcr),
    Step(CheckName.TABLE, (CheckName.SETTINGS,), check_table),
    # Last: it judges the Date headers the NordPass and DCR answers carried. Without valid settings
    # neither service was contacted, so there is nothing to judge.
    Step(CheckName.CLOCK, (CheckName.SETTINGS,), check_clock),
)


def run_doctor(
    environ: Mapping[str, str], *, clock: Clock | None = None, timeout: float = 10.0
) -> list[Check]:
    quiet_third_party_loggers()
    try:
        settings = load_settings(environ)
    except ConfigurationError as error:
        return run_checks(CHECKS, None, decided=[settings_failed(error)])
    with doctor_context(settings, environ, clock=clock or SystemClock(), timeout=timeout) as ctx:
        return run_checks(CHECKS, ctx)


def render(checks: list[Check]) -> list[str]:
    width = max(len(c.name) for c in checks)
    out = []
    for c in checks:
        out.append(f"{c.verdict}  {c.name:<{width}}  {c.detail}")
        pad = " " * (len(c.verdict) + 2 + width + 2)
        out.extend(f"{pad}- {line}" for line in c.lines)
        if c.fix and c.verdict is FAIL:
            out.append(f"{pad}fix: {c.fix}")
    passed = sum(c.verdict is PASS for c in checks)
    failed = sum(c.verdict is FAIL for c in checks)
    skipped = sum(c.verdict is SKIP for c in checks)
    out.append(f"doctor: {passed} passed, {failed} failed, {skipped} skipped")
    return out
