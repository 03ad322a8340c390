"""`make demo`: the connector's real timer function, end to end, on the local sandbox.

    python -m sandbox.demo [--fresh] [--state-dir .sandbox]       # sandbox, several ticks
    python -m sandbox.demo --keep-running                          # ...then keep the stand-ins up
    python -m sandbox.demo --settings local.settings.json          # real NordPass + Azure, one tick

Sandbox mode starts the stand-ins (managed-identity token endpoint, HTTPS Logs Ingestion stand-in
with a file-backed DuckDB, Azurite with persisted tables, the NordPass simulator with a seeded
organisation), points the process environment at them exactly as the Functions host would set app
settings, and calls the decorated timer function several times: first the 7-day backfill, then
"live" ticks with new background activity and the scripted incidents, then a final tick that drains
what is left. Time is real; only the safety delay is shortened so a live tick sees events seconds
old instead of a minute old.

At the end it checks delivery against the simulator's ground truth (every generated EventId exactly
once), runs each analytic rule's KQL over the landed rows with duckdb-kql, reads the connector's
health rows (one per tick, in `NordPassConnectorHealth_CL`) and the status its Sentinel connector
page would show, prints a short summary and writes `report.html` (inline SVG, no scripts) plus
`summary.json` into the state folder.

State lives in one folder: a second run reuses it (the checkpoint in Azurite, the landed rows, the
events the simulator served, so the ground truth still covers every run); `--fresh` clears it.

`--keep-running` starts the stand-ins again on that state once the demo is done, writes their
settings to `<state>/local.settings.json`, prints the `doctor` / `status` / `run --once` commands
that use it and waits for Ctrl-C or SIGTERM, then stops them.
"""

from __future__ import annotations

import argparse
import errno
import gzip
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from nordpass_connector import mapping
from nordpass_connector.errors import SettingsFileError
from nordpass_connector.schema import TABLE_NAME
from nordpass_connector.settings_file import read_values

from . import datagen, demo_content
from .azurite import Azurite, AzuriteUnavailable, azurite_bin, ensure_installed
from .ingestion import IngestionStandIn
from .nordpass_sim import NordPassSimulator
from .token_endpoint import CONFLICTING_VARIABLES, TokenEndpoint

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_STATE_DIR = REPO_ROOT / ".sandbox"
DAY = 86_400
BACKFILL_DAYS = 7
STALE_AFTER_DAYS = 80
STATE_VERSION = 1
CHECKPOINT_TABLE = "nordpassdemo"
INGESTION_TABLE = "_demo_ingestion"  # per-EventId arrival time, the stand-in for ingestion_time()
RUN_PREFIX = "nordpass run: "
RUN_FAILED_PREFIX = "nordpass run failed: "
CHROMIUM = "/usr/bin/chromium"
# Headless, and nothing that reaches off the machine (the network here is closed).
CHROMIUM_HEADLESS_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)

# Everything the demo owns inside the state folder; `--fresh` removes exactly these, because the
# folder is shared (.sandbox/ also holds other tools' caches).
STATE_ITEMS = (
    "azurite",
    "certs",
    "ingestion.duckdb",
    "ingestion.duckdb.wal",
    "nordpass-events.jsonl.gz",
    "demo-state.json",
    "summary.json",
    "report.html",
    "report.png",
    "local.settings.json",
)
# Written by --keep-running: the stand-ins' settings, for doctor, status and run --once.
SETTINGS_FILE = "local.settings.json"

# The rules each scripted incident exists to trigger (file stems without the "NordPass-" prefix).
EXPECTED_RULES: dict[str, tuple[str, ...]] = {
    "brute_force": ("UserFailsAuthentication",),
    "password_spray": ("PasswordSpray",),
    "failures_then_success": ("FailuresThenSuccessFromSameIp",),
    "bulk_deletion": ("UserDeletesItemsInBulk",),
    "vault_export": ("VaultExport",),
    "token_revocation": ("ActivityTokenRevocation",),
    "breach_finding": ("UserDataDetectedInBreach", "DomainDataDetectedInBreach"),
    # Planted for the hunting queries (sandbox.demo_content.EXPECTED_HUNTING); where a rule also
    # sees them, it is listed.
    "slow_brute_force": (),
    "off_hours_admin": (),
    "factor_change_then_export": ("VaultExport",),
    "external_sharing_burst": (),
    "bulk_mfa_reset": ("AdminMfaOrMasterPasswordChange",),
    "secret_harvesting": (),
}

log = logging.getLogger("sandbox.demo")


class DemoError(Exception):
    """A problem the person running the demo can fix; the message is one line saying how."""


@dataclass(frozen=True)
class DemoConfig:
    state_dir: Path = DEFAULT_STATE_DIR
    fresh: bool = False
    seed: int = 7
    members: int = 40
    per_minute: float = 8.0  # history rate: about 11,500 events a day for 44 people
    history_days: float = 7.5  # a little more than the backfill, so the cut-off is visible
    live_ticks: int = 4
    tick_interval: float = 3.0
    live_per_minute: float = 240.0  # busy on purpose, so each live tick has something to carry
    safety_delay: int = 2
    port_base: int = 0
    max_backfill_ticks: int = 6
    screenshot: bool = False


# -- small helpers -------------------------------------------------------------------------------


def _fmt(n: float | int | None) -> str:
    if n is None:
        return "-"
    return f"{n:,.0f}"


def _utc(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _out(line: str = "") -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def shown(path: Path) -> str:
    """A path as a person at this prompt types it: relative to the working directory when inside it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def expected_ids(events: Iterable[Any]) -> Counter[str]:
    """The EventIds a perfect connector delivers for these source events (same rule as the
    connector: content digest + occurrence index among identical events)."""
    # Malformed events are set aside by the connector, never delivered.
    digests = [p.digest for p in map(mapping.prepare, events) if isinstance(p, mapping.PreparedEvent)]
    return Counter(mapping.event_id(d, n) for d, n in zip(digests, mapping.occurrences(digests), strict=True))


def check_port_free(port: int, what: str) -> None:
    if port == 0:
        return
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise DemoError(
                    f"port {port} ({what}) is already in use: stop whatever listens there, "
                    "or pass --port-base 0 to let the demo pick free ports"
                ) from exc
            raise


def preflight(root: Path = REPO_ROOT) -> None:
    """Missing tools are reported before anything starts, one line each, with the fix."""
    if shutil.which("node") is None:
        raise DemoError(
            "node is missing: install Node.js 20 with npm (e.g. `apt-get install nodejs npm`), then rerun `make demo`"
        )
    if not azurite_bin("table", root=root).exists() and shutil.which("npm") is None:
        raise DemoError("npm is missing: install npm (Node.js 20), then rerun `make demo` (it runs `npm ci`)")


def install_azurite() -> None:
    """`npm ci` once, before anything starts, so a registry problem is the only thing reported."""
    if azurite_bin("table").exists():
        return
    _out("sandbox: installing the pinned Azurite from npm (once)...")
    try:
        ensure_installed()
    except AzuriteUnavailable as exc:
        detail = str(exc)
        # npm's last line is usually only "A complete log of this run can be found in ...".
        reason = "" if "complete log" in detail else f" ({detail})"
        raise DemoError(
            f"npm could not install Azurite{reason}: is the npm registry reachable (`npm ping`)? "
            "Fix that and rerun `make demo`"
        ) from exc


# -- the simulated tenant's event history ----------------------------------------------------------


@dataclass
class DemoState:
    """What a later run needs to extend the same history (kept in demo-state.json)."""

    version: int
    seed: int
    members: int
    expected_from: int  # events at or after this second are in the first run's backfill
    generated_to: int  # every event before this second has been generated
    runs: int = 0
    # Incidents of earlier runs, so an alert on one of them is not mistaken for background noise.
    incidents: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class ScriptedIncident:
    name: str
    description: str
    run: int
    tick: int
    event_ids: list[str]
    emails: list[str]
    ips: list[str]
    start: int
    end: int
    detected_by: list[str] = field(default_factory=list)
    hunted_by: list[str] = field(default_factory=list)


class EventHistory:
    """Every event the simulator serves, appended to a gzip JSON-lines file as it is generated, so a
    later run (or a test) recomputes the ground truth without keeping a second copy anywhere."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.events: list[dict[str, Any]] = []

    def load(self) -> None:
        if not self.path.exists():
            return
        with gzip.open(self.path, "rb") as fh:
            self.events = [orjson.loads(line) for line in fh.read().splitlines() if line]

    def append(self, events: Sequence[dict[str, Any]]) -> None:
        if not events:
            return
        self.events.extend(events)
        # One gzip member per append: gzip readers concatenate members, and an interrupted demo
        # leaves every earlier batch readable.
        with gzip.open(self.path, "ab", compresslevel=1) as fh:
            fh.write(b"\n".join(orjson.dumps(e) for e in events) + b"\n")


def read_events(path: Path) -> list[dict[str, Any]]:
    history = EventHistory(path)
    history.load()
    return history.events


# -- running the real timer function ---------------------------------------------------------------


class RunReportCapture(logging.Handler):
    """The timer function logs its run report as one JSON line (as it does in Azure, where the host
    collects it); the demo reads it from there instead of reaching into the connector."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.reports: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith(RUN_PREFIX):
            self.reports.append(json.loads(message[len(RUN_PREFIX) :]))
        elif message.startswith(RUN_FAILED_PREFIX):
            # `<ErrorClass>: <what happened> -> <what to do> | {summary}`; a run that failed before
            # it had a report logs the first part alone.
            cause, _, summary = message[len(RUN_FAILED_PREFIX) :].rpartition(" | ")
            try:
                self.reports.append(json.loads(summary))
            except ValueError:
                cause = message[len(RUN_FAILED_PREFIX) :]
                self.reports.append(
                    {"outcome": "failed", "error": cause, "error_class": cause.split(":", 1)[0]}
                )


@contextmanager
def captured_reports() -> Iterator[RunReportCapture]:
    logger = logging.getLogger("nordpass_connector")
    capture = RunReportCapture()
    previous = logger.level
    logger.addHandler(capture)
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    try:
        yield capture
    finally:
        logger.removeHandler(capture)
        logger.setLevel(previous)


def timer_function() -> Callable[[Any], None]:
    """The user function behind the app's one timer trigger, found the way the host indexes it.

    get_functions() may run only once per process (a second call raises), so it is cached."""
    global _TIMER
    if _TIMER is None:
        # Indexing logs a harmless "Auth level is not applied to non http function app" warning.
        logging.disable(logging.WARNING)
        try:
            import function_app

            functions = function_app.app.get_functions()
        finally:
            logging.disable(logging.NOTSET)
        timers = [
            f
            for f in functions
            if (t := f.get_trigger()) is not None and t.get_binding_name() == "timerTrigger"
        ]
        if len(timers) != 1:
            raise DemoError(f"function_app.py should define exactly one timer function, found {len(timers)}")
        _TIMER = timers[0].get_user_function()
    return _TIMER


_TIMER: Callable[[Any], None] | None = None


def call_timer(capture: RunReportCapture) -> dict[str, Any]:
    """One tick: the host's call, with the host's argument. A failed run raises, as in Azure."""
    from azure.functions.timer import TimerRequest

    before = len(capture.reports)
    raised: Exception | None = None
    try:
        timer_function()(TimerRequest(past_due=False, schedule_status={}, schedule={}))
    except Exception as exc:  # the host records any exception as a failed invocation
        raised = exc
    report = capture.reports[-1] if len(capture.reports) > before else {"outcome": "failed"}
    if raised is not None and not report.get("error"):
        report["error"] = f"{type(raised).__name__}: {raised}"
        report.setdefault("error_class", type(raised).__name__)
    return report


# -- the sandbox run --------------------------------------------------------------------------------


@dataclass
class TickLine:
    tick: int
    phase: str
    new_events: int
    outcome: str
    sent: int
    windows: int
    pages: int
    fetched: int
    deduplicated: int
    requests: int
    lag_seconds: float | None
    caught_up: bool
    seconds: float
    error: str | None = None

    @classmethod
    def from_report(
        cls, report: dict[str, Any], *, tick: int, phase: str, new_events: int, seconds: float
    ) -> TickLine:
        """One line of the tick table from the run report the timer logged."""
        return cls(
            tick=tick,
            phase=phase,
            new_events=new_events,
            outcome=str(report.get("outcome", "failed")),
            sent=int(report.get("sent") or 0),
            windows=int(report.get("windows") or 0),
            pages=int(report.get("pages") or 0),
            fetched=int(report.get("fetched") or 0),
            deduplicated=int(report.get("deduplicated") or 0),
            requests=int(report.get("ingestion_requests") or 0),
            lag_seconds=report.get("lag_seconds"),
            caught_up=bool(report.get("caught_up")),
            seconds=seconds,
            error=report.get("error"),
        )


@dataclass
class DemoResult:
    mode: str
    run: int
    state_dir: str
    generated: int  # events the simulator holds, all runs
    older_than_backfill: int  # generated but older than the first backfill: correctly never fetched
    expected: int  # events that must land (ground truth)
    delivered: int  # rows with an EventId in the store
    delivered_expected: int  # expected EventIds that landed exactly once
    missing: int
    duplicates: int
    unexpected: int
    this_run_generated: int
    this_run_sent: int
    ticks: list[TickLine]
    windows: int
    pages: int
    ingestion_requests: int
    final_lag_seconds: float | None
    incidents: list[ScriptedIncident]
    rules: list[dict[str, Any]]
    run_reports: list[dict[str, Any]]  # the timer's own JSON run reports, one per tick
    health: list[dict[str, Any]]  # this run's rows of NordPassConnectorHealth_CL, one per tick
    connector_page: dict[str, Any]  # what the connector page's connectivity query says
    report_path: str
    seconds: float
    started_at: str
    asim: dict[str, Any] = field(default_factory=dict)  # what the ASIM parsers return (demo_content)
    hunting: list[dict[str, Any]] = field(default_factory=list)  # hunting query results (demo_content)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _apply_environment(values: dict[str, str]) -> dict[str, str | None]:
    previous = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    return previous


def _restore_environment(previous: dict[str, str | None]) -> None:
    for key, value in previous.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def prepare_state_dir(cfg: DemoConfig) -> None:
    cfg.state_dir.mkdir(parents=True, exist_ok=True)
    if cfg.fresh:
        for name in STATE_ITEMS:
            path = cfg.state_dir / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()


def load_state(cfg: DemoConfig) -> DemoState | None:
    path = cfg.state_dir / "demo-state.json"
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        state = DemoState(**data)
    except (ValueError, TypeError):
        return None
    if state.version != STATE_VERSION or state.seed != cfg.seed or state.members != cfg.members:
        return None
    if not (cfg.state_dir / "nordpass-events.jsonl.gz").exists():
        return None
    if time.time() - state.generated_to > STALE_AFTER_DAYS * DAY:
        # Past the Activity API's 90-day reach the connector rightly skips a gap, which the ground
        # truth would count as missing; a state that old is simply started over.
        return None
    return state


def save_state(cfg: DemoConfig, state: DemoState) -> None:
    path = cfg.state_dir / "demo-state.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(state), indent=2), encoding="utf-8")
    tmp.replace(path)


def _shift_to_end_at(events: list[dict[str, Any]], end: int) -> None:
    """Move an incident in time so its last event happens at `end` (spacing kept)."""
    delta = end - max(int(e["timestamp"]) for e in events)
    for e in events:
        e["timestamp"] = int(e["timestamp"]) + delta


def build_incidents(factory: datagen.EventFactory, run: int) -> list[datagen.Incident]:
    """One of each scripted incident, built with the generator's own incident functions.

    The people rotate between runs: a rule alerts once per account while the account's earlier
    alert is still in its window, so a second demo run within the hour needs new victims."""
    org = factory.org
    staff = org.staff
    shift = (run - 1) * 7

    def person(i: int) -> datagen.Person:
        return staff[(i + shift) % len(staff)]

    def attacker_ip() -> str:
        return f"{ATTACKER_NET}{factory.rng.randrange(1, 255)}"

    spray_users = [person(4 + i) for i in range(min(12, len(staff) - 4))]
    return [
        datagen.brute_force(factory, person(0), at=0, ip=attacker_ip()),
        datagen.password_spray(factory, spray_users, at=0, ip=attacker_ip()),
        datagen.failures_then_success(factory, person(len(staff) - 1), at=0, ip=attacker_ip()),
        datagen.bulk_deletion(factory, person(1), at=0),
        datagen.vault_export(factory, person(2), at=0),
        datagen.token_revocation(factory, org.admins[(run - 1) % len(org.admins)], at=0),
        datagen.breach_finding(factory, person(3), at=0),
        *demo_content.live_scenarios(factory, run),
    ]


def _incident_record(incident: datagen.Incident, run: int, tick: int) -> ScriptedIncident:
    ids = list(expected_ids(incident.events))
    emails: set[str] = set()
    ips: set[str] = set()
    for e in incident.events:
        emails.add(e["user"]["email"])
        if isinstance(e.get("initiator"), str):
            emails.add(e["initiator"])
        ip = e.get("metadata", {}).get("ip_address")
        if ip:
            ips.add(ip)
    stamps = [int(e["timestamp"]) for e in incident.events]
    return ScriptedIncident(
        incident.name,
        incident.description,
        run,
        tick,
        ids,
        sorted(emails),
        sorted(ips),
        min(stamps),
        max(stamps),
    )


@dataclass
class StandIns:
    """The four local services the connector talks to, as started for one demo (or kept running)."""

    token: TokenEndpoint
    ingestion: IngestionStandIn
    azurite: Azurite
    sim: NordPassSimulator
    sim_token: str

    def app_settings(self, cfg: DemoConfig) -> dict[str, str]:
        """What the Functions host would set as app settings to point the connector at them."""
        return {
            "NORDPASS_ENDPOINT_URL": self.sim.url,
            "NORDPASS_TOKEN": self.sim_token,
            "DATA_COLLECTION_ENDPOINT": self.ingestion.endpoint,
            "DCR_IMMUTABLE_ID": self.ingestion.dcr_immutable_id,
            "DCR_STREAM_NAME": self.ingestion.stream_name,
            "DCR_HEALTH_STREAM_NAME": str(self.ingestion.health_stream_name),
            "AzureWebJobsStorage": self.azurite.connection_string,
            "CHECKPOINT_TABLE_NAME": CHECKPOINT_TABLE,
            "NORDPASS_SAFETY_DELAY_SECONDS": str(cfg.safety_delay),
            "NORDPASS_BACKFILL_DAYS": str(BACKFILL_DAYS),
            # The real ManagedIdentityCredential finds the local token endpoint through these...
            **self.token.environment(),
            # ...and the real LogsIngestionClient trusts the stand-in's certificate through this.
            "REQUESTS_CA_BUNDLE": self.ingestion.ca_file,
        }


def start_stand_ins(stack: ExitStack, cfg: DemoConfig) -> StandIns:
    """Start the stand-ins on the state folder's data; `stack` stops them."""
    port = (lambda i: cfg.port_base + i) if cfg.port_base else (lambda i: 0)
    token = TokenEndpoint(port=port(2))
    stack.enter_context(token)
    ingestion = IngestionStandIn(
        cfg.state_dir / "certs",
        expected_token=token.access_token,
        db_path=cfg.state_dir / "ingestion.duckdb",
        port=port(1),
    )
    stack.enter_context(ingestion)
    azurite = Azurite(services=("table",), location=cfg.state_dir / "azurite")
    try:
        azurite.start()
    except AzuriteUnavailable as exc:
        raise DemoError(f"Azurite did not start: {exc}; `make setup` reinstalls it") from exc
    stack.callback(azurite.stop)
    sim_token = "demo-" + os.urandom(12).hex()
    sim = NordPassSimulator(token=sim_token, seed=cfg.seed, port=port(0))
    _out(
        f"sandbox: NordPass simulator {sim.start().url} | ingestion {ingestion.endpoint} | "
        f"token endpoint {token.url} | azurite table :{azurite.ports['table']}"
    )
    stack.callback(sim.stop)
    return StandIns(token, ingestion, azurite, sim, sim_token)


@dataclass(frozen=True)
class _Seeded:
    """This run's start of the tenant's history: the state to save and what was generated."""

    state: DemoState
    generated: list[dict[str, Any]]
    planted: list[datagen.Incident]  # scenarios only history can hold
    note: str


def _start_history(
    cfg: DemoConfig, history: EventHistory, factory: datagen.EventFactory, anchor: int
) -> _Seeded:
    """A first run: `history_days` of activity ending at `anchor`, the last BACKFILL_DAYS in full."""
    start = anchor - int(cfg.history_days * DAY)
    backfill_start = anchor - BACKFILL_DAYS * DAY
    # A quiet ten minutes around the backfill's cut-off, so "inside the backfill" does not
    # depend on the exact second the first tick plans its first window.
    generated = factory.background(start, backfill_start - 300, per_minute=cfg.per_minute / 4)
    generated += factory.background(backfill_start + 300, anchor, per_minute=cfg.per_minute)
    # Scenarios only history can hold (a brute force over days, admin work last night).
    planted = demo_content.history_scenarios(factory, anchor)
    generated += [event for incident in planted for event in incident.events]
    state = DemoState(STATE_VERSION, cfg.seed, cfg.members, backfill_start, anchor, 0)
    history.append(generated)
    note = (
        f"{_fmt(len(generated))} events over {cfg.history_days:g} days (backfill: the last {BACKFILL_DAYS})"
    )
    return _Seeded(state, generated, planted, note)


def _extend_history(
    cfg: DemoConfig, history: EventHistory, factory: datagen.EventFactory, now: int, state: DemoState
) -> _Seeded:
    """A later run: the activity of the time the demo was off, up to `now`."""
    history.load()
    from_earlier_runs = len(history.events)
    gap = max(0, now - state.generated_to)
    # A long pause between demo runs becomes "the connector was off": bound the catch-up.
    rate = min(cfg.per_minute, 100_000 / max(1.0, gap / 60))
    generated = factory.background(state.generated_to, now, per_minute=rate)
    history.append(generated)
    state.generated_to = now
    note = f"{_fmt(from_earlier_runs)} events from earlier runs, {_fmt(len(generated))} new while the demo was off"
    return _Seeded(state, generated, [], note)


class _Ticker:
    """Runs the timer function once per call and keeps each tick's line; also records when each
    EventId first landed (the report's freshness chart)."""

    def __init__(self, capture: RunReportCapture, ingestion: IngestionStandIn) -> None:
        self.capture = capture
        self.ingestion = ingestion
        self.lines: list[TickLine] = []

    def __call__(self, phase: str, new_events: int) -> TickLine:
        t0 = time.monotonic()
        report = call_timer(self.capture)
        stamp = datetime.now(UTC).replace(tzinfo=None)
        self.ingestion.store.sql(
            f'INSERT INTO {INGESTION_TABLE} SELECT DISTINCT t."EventId", ? FROM {TABLE_NAME} t '
            f'WHERE t."EventId" IS NOT NULL AND NOT EXISTS '
            f'(SELECT 1 FROM {INGESTION_TABLE} d WHERE d."EventId" = t."EventId")',
            [stamp],
        )
        line = TickLine.from_report(
            report,
            tick=len(self.lines) + 1,
            phase=phase,
            new_events=new_events,
            seconds=round(time.monotonic() - t0, 1),
        )
        self.lines.append(line)
        _out(_tick_text(line))
        return line


def _backfill(tick: _Ticker, cfg: DemoConfig, run: int, new_events: int) -> None:
    """The first run's backfill (a later run's catch-up): ticks until caught up or failing."""
    if cfg.max_backfill_ticks < 1:
        return
    phase = "backfill" if run == 1 else "catch-up"
    line = tick(phase, new_events)
    if line.outcome in ("busy", "conflict"):
        raise DemoError(
            "the checkpoint is still leased by an earlier demo run that was interrupted: wait about "
            "40 seconds for the lease to expire and rerun, or rerun with --fresh"
        )
    if line.caught_up or line.outcome != "ok":
        return
    _until_caught_up(tick, phase, cfg.max_backfill_ticks - 1)


def _until_caught_up(tick: _Ticker, phase: str, most: int) -> None:
    """At most `most` ticks with nothing new, stopping at the first caught up or failing one."""
    for _ in range(most):
        line = tick(phase, 0)
        if line.caught_up or line.outcome != "ok":
            break


@dataclass(frozen=True)
class _GroundTruth:
    """What should have landed (every event since the first backfill's start) against what did."""

    expected: Counter[str]
    delivered: Counter[str]
    older: int  # generated but older than the first backfill: correctly never fetched

    @classmethod
    def of(cls, events: Sequence[dict[str, Any]], expected_from: int, landed: dict[str, int]) -> _GroundTruth:
        expected_events = [e for e in events if int(e.get("timestamp", 0)) >= expected_from]
        return cls(expected_ids(expected_events), Counter(landed), len(events) - len(expected_events))

    @property
    def exactly_once(self) -> int:
        return sum(1 for k, n in self.expected.items() if self.delivered.get(k, 0) == n)

    @property
    def missing(self) -> int:
        return sum(max(0, n - self.delivered.get(k, 0)) for k, n in self.expected.items())

    @property
    def duplicates(self) -> int:
        expected = self.expected
        return sum(max(0, n - expected.get(k, 0)) for k, n in self.delivered.items() if k in expected)

    @property
    def unexpected(self) -> int:
        return sum(n for k, n in self.delivered.items() if k not in self.expected)


def run_sandbox(cfg: DemoConfig) -> DemoResult:
    started = time.monotonic()
    started_wall = time.time()
    started_at = _utc(started_wall)
    preflight()
    for offset, what in enumerate(("NordPass simulator", "Logs Ingestion stand-in", "token endpoint")):
        check_port_free(cfg.port_base + offset if cfg.port_base else 0, what)
    install_azurite()
    prepare_state_dir(cfg)
    state = load_state(cfg)
    if state is None and not cfg.fresh:
        # A state folder from another seed/size, or half of one: start over rather than mix.
        prepare_state_dir(DemoConfig(state_dir=cfg.state_dir, fresh=True))
    history = EventHistory(cfg.state_dir / "nordpass-events.jsonl.gz")
    org = datagen.make_org(cfg.seed, members=cfg.members)

    with ExitStack() as stack:
        _out(
            f"sandbox: state in {shown(cfg.state_dir)}"
            f"{' (fresh)' if state is None else f' (run {state.runs + 1}, reused)'}"
        )
        stand_ins = start_stand_ins(stack, cfg)
        sim, ingestion = stand_ins.sim, stand_ins.ingestion

        # -- the tenant's history: generated once, extended on later runs ---------------------
        now = int(time.time())
        run = 1 if state is None else state.runs + 1
        factory = datagen.EventFactory(org, seed=cfg.seed * 1000 + run)
        if state is None:
            seeded = _start_history(cfg, history, factory, now)
        else:
            seeded = _extend_history(cfg, history, factory, now, state)
        state, generated, planted, note = seeded.state, seeded.generated, seeded.planted, seeded.note
        state.runs = run
        save_state(cfg, state)
        sim.add(history.events)
        _out(
            f"sandbox: seeded {org.domain}: {len(org.members)} members, {len(org.admins)} admins, "
            f"{len(org.msp_admins)} MSP admin; {note}"
        )

        previous = _apply_environment(stand_ins.app_settings(cfg))
        removed = {
            k: os.environ.pop(k) for k in (*CONFLICTING_VARIABLES, "CURL_CA_BUNDLE") if k in os.environ
        }
        stack.callback(os.environ.update, removed)
        stack.callback(_restore_environment, previous)

        ingestion.store.sql(
            f'CREATE TABLE IF NOT EXISTS {INGESTION_TABLE} ("EventId" VARCHAR, "IngestedAt" TIMESTAMP)'
        )
        incidents = build_incidents(factory, run)
        schedule = {
            i: [k for k in range(len(incidents)) if k * cfg.live_ticks // len(incidents) == i]
            for i in range(cfg.live_ticks)
        }
        # The history's scenarios land with the backfill, the first tick.
        records: list[ScriptedIncident] = [_incident_record(i, run, 1) for i in planted]
        this_run_generated = len(generated)
        capture = stack.enter_context(captured_reports())
        tick = _Ticker(capture, ingestion)
        ticks = tick.lines

        _out("")
        # -- 1. first run: the 7-day backfill (or, later, the catch-up), until caught up -------
        _backfill(tick, cfg, run, this_run_generated)
        # -- 2. live ticks: new activity and the scripted incidents arrive between ticks ---------
        last = int(time.time())
        for i in range(cfg.live_ticks):
            time.sleep(cfg.tick_interval)
            now = int(time.time())
            fresh = factory.background(last, now, per_minute=cfg.live_per_minute)
            last = now
            for k in schedule[i]:
                incident = incidents[k]
                # The incident has just finished: its last event is one second old.
                _shift_to_end_at(incident.events, now - 1)
                fresh.extend(incident.events)
                records.append(_incident_record(incident, run, len(ticks) + 1))
            history.append(fresh)
            sim.add(fresh)
            this_run_generated += len(fresh)
            tick("live", len(fresh))
        state.generated_to = max(state.generated_to, last)
        state.incidents = [*state.incidents, *(asdict(r) for r in records)][-50:]
        save_state(cfg, state)
        # -- 3. drain: nothing new; wait out the safety delay so the newest events are readable --
        time.sleep(cfg.safety_delay + 1.0)
        _until_caught_up(tick, "drain", 3)

        truth = _GroundTruth.of(history.events, state.expected_from, ingestion.event_id_counts())
        # Close the stand-in now: its DuckDB file is read below for rules and charts.
        stack.close()

    db_path = cfg.state_dir / "ingestion.duckdb"
    from . import report_html

    con = report_html.open_landed(db_path)
    try:
        earlier = [ScriptedIncident(**i) for i in state.incidents if i.get("run") != run]
        rules = run_rules(con, [*records, *earlier], run=run)
        asim_view = demo_content.run_asim(con, [*records, *earlier], run=run)
        hunting = demo_content.run_hunting(con, [*records, *earlier], run=run, attribute=attribute)
        data = report_html.collect(con)
        health = report_html.health_rows(con, since=int(started_wall))
        page = connector_page_status(con)
    finally:
        con.close()
    report_path = cfg.state_dir / "report.html"
    result = DemoResult(
        mode="sandbox",
        run=run,
        state_dir=str(cfg.state_dir),
        generated=len(history.events),
        older_than_backfill=truth.older,
        expected=sum(truth.expected.values()),
        delivered=sum(truth.delivered.values()),
        delivered_expected=truth.exactly_once,
        missing=truth.missing,
        duplicates=truth.duplicates,
        unexpected=truth.unexpected,
        this_run_generated=this_run_generated,
        this_run_sent=sum(t.sent for t in ticks),
        ticks=ticks,
        windows=sum(t.windows for t in ticks),
        pages=sum(t.pages for t in ticks),
        ingestion_requests=sum(t.requests for t in ticks),
        final_lag_seconds=ticks[-1].lag_seconds if ticks else None,
        incidents=records,
        rules=rules,
        run_reports=list(capture.reports),
        health=health,
        connector_page=page,
        report_path=str(report_path),
        seconds=0.0,
        started_at=started_at,
        asim=asim_view,
        hunting=hunting,
    )
    result.seconds = round(time.monotonic() - started, 1)
    report_path.write_text(report_html.render(result.to_dict(), data), encoding="utf-8")
    (cfg.state_dir / "summary.json").write_text(
        json.dumps(result.to_dict(), indent=2, default=str), encoding="utf-8"
    )
    if cfg.screenshot:
        screenshot(report_path, cfg.state_dir / "report.png")
    return result


def _tick_text(t: TickLine) -> str:
    lag = f"{t.lag_seconds:,.0f} s" if t.lag_seconds is not None else "-"
    state = "caught up" if t.caught_up else "backlog left"
    text = (
        f"tick {t.tick:>2}  {t.phase:<9} +{_fmt(t.new_events):>7} new   sent {_fmt(t.sent):>7}   "
        f"windows {t.windows:>3}   pages {_fmt(t.pages):>5}   lag {lag:>9}   {t.seconds:>5.1f} s  {state}"
    )
    if t.outcome != "ok":
        text += f"  [{t.outcome}: {t.error or 'see the log above'}]"
    return text


# -- analytic rules over the landed rows -----------------------------------------------------------


def _flatten_values(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        if value[:1] in "[{":
            try:
                yield from _flatten_values(json.loads(value))
                return
            except ValueError:
                pass
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _flatten_values(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _flatten_values(v)


def _row_times(row: dict[str, Any]) -> list[float]:
    return [v.replace(tzinfo=UTC).timestamp() for v in row.values() if isinstance(v, datetime)]


ATTACKER_NET = "203.0.113."  # datagen puts members in TEST-NET-1/2 and attackers in TEST-NET-3
_EVENT_ID = re.compile(mapping.EVENT_ID_PATTERN)


def attribute(row: dict[str, Any], incidents: Sequence[ScriptedIncident]) -> ScriptedIncident | None:
    """Which scripted incident an alert row is about: by EventId when the rule projects one, else by
    the accounts and addresses it names at the incident's time. None: background activity."""
    values = set(_flatten_values(list(row.values())))
    row_ids = {v for v in values if _EVENT_ID.fullmatch(v)}
    if row_ids:
        # The rule names the events it is about: nothing else decides (live background activity
        # by the same people, seconds apart, must not be mistaken for the incident).
        return next((i for i in incidents if row_ids & set(i.event_ids)), None)
    attacker_ips = {v for v in values if v.startswith(ATTACKER_NET)}
    if attacker_ips:
        # Each attack comes from its own address, which no background event uses.
        return next((i for i in incidents if attacker_ips & set(i.ips)), None)
    times = _row_times(row)
    for incident in incidents:
        # The row's time span (one time, or first/last of an aggregate) meets the incident's.
        in_time = not times or (min(times) <= incident.end + 5 and max(times) >= incident.start - 5)
        if values & set(incident.emails) and in_time:
            return incident
    return None


def run_rules(con: Any, incidents: Sequence[ScriptedIncident], *, run: int) -> list[dict[str, Any]]:
    """Each rule's query from its YAML, run as written (ingestion_time() mapped to the arrival
    column by content.localrun), over everything that landed, as if the rule ran right now.

    Each alert row is attributed to this run's scripted incidents ("scripted"), an earlier run's
    ("earlier": a rule re-reading the last hour sees those too) or to neither ("background")."""
    import duckdb_kql

    from content import kql, localrun

    results: list[dict[str, Any]] = []
    for path in kql.rule_paths():
        rule = kql.load_rule(path)
        key = path.stem.removeprefix("NordPass-")
        entry: dict[str, Any] = {
            "rule": key,
            "name": str(rule.get("name", key)),
            "severity": rule.get("severity"),
        }
        try:
            relation = duckdb_kql.query(con, localrun.executable_form(str(rule["query"])))
            names = [d[0] for d in relation.description]
            rows = [dict(zip(names, values, strict=True)) for values in relation.fetchall()]
        except (duckdb_kql.KqlUnsupportedError, duckdb_kql.KqlSyntaxError) as exc:
            entry.update(status="not runnable locally", reason=str(exc).splitlines()[0][:160], hits=0)
            results.append(entry)
            continue
        except Exception as exc:  # a rule that fails here is reported, the demo goes on
            entry.update(
                status="error", reason=f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}", hits=0
            )
            results.append(entry)
            continue
        found = demo_content.attribute_hits(
            rows, incidents, key, run=run, attribute=attribute, by=_detected_by
        )
        entry.update(status="ran", hits=len(rows), attributed=found)
        results.append(entry)
    return results


def _detected_by(incident: ScriptedIncident) -> list[str]:
    return incident.detected_by


def connector_page_status(con: Any) -> dict[str, Any]:
    """The connector page's own connectivity query (content/data-connectors), run on the landed
    health rows: "Connected" means a successful run in its window."""
    import duckdb_kql

    from content import kql, localrun

    (query,) = kql.load_connector()["connectivityCriteria"][0]["value"]
    relation = duckdb_kql.query(con, localrun.executable_form(query))
    names = [d[0] for d in relation.description]
    rows = [dict(zip(names, values, strict=True)) for values in relation.fetchall()]
    if not rows:
        return {"connected": False, "last_successful_run": None}
    last = rows[0]["LastSuccessfulRun"]
    return {
        "connected": bool(rows[0]["IsConnected"]),
        "last_successful_run": last.replace(tzinfo=UTC).timestamp(),
    }


# -- output ----------------------------------------------------------------------------------------


def print_summary(result: DemoResult) -> None:
    ok = result.missing == 0 and result.duplicates == 0 and result.unexpected == 0
    verdict = "every generated event delivered exactly once" if ok else "DELIVERY MISMATCH"
    rule_names = {r["rule"]: r["name"].removeprefix("NordPass - ") for r in result.rules}
    _out("")
    _out(f"== summary (sandbox run {result.run}) " + "=" * 60)
    _out(f"events     {_fmt(result.expected)} expected, {_fmt(result.delivered)} delivered: {verdict}")
    _out(
        f"           missing {result.missing}, duplicates {result.duplicates}, unexpected {result.unexpected}; "
        f"{_fmt(result.older_than_backfill)} older than the 7-day backfill, rightly not fetched"
    )
    _out(f"this run   {_fmt(result.this_run_generated)} generated, {_fmt(result.this_run_sent)} sent")
    lag = f"{result.final_lag_seconds:,.0f} s" if result.final_lag_seconds is not None else "-"
    _out(
        f"connector  {len(result.ticks)} ticks, {_fmt(result.windows)} windows, {_fmt(result.pages)} pages, "
        f"{_fmt(result.ingestion_requests)} ingestion requests; lag at the end {lag}"
    )
    ran = sum(1 for r in result.rules if r["status"] == "ran")
    skipped = [r for r in result.rules if r["status"] != "ran"]
    _out(f"rules      {len(result.rules)} analytic rules, {ran} ran locally with duckdb-kql")
    width = max((len(i.name) for i in result.incidents), default=10)
    for incident in result.incidents:
        fired = ", ".join(rule_names.get(k, k) for k in incident.detected_by) or "no rule fired"
        _out(f"  {incident.name:<{width}}  -> {fired}")
    background = [
        f"{rule_names[r['rule']]} ({r['attributed']['background']})"
        for r in result.rules
        if r["status"] == "ran" and r.get("attributed", {}).get("background")
    ]
    if background:
        _out(f"  {'background':<{width}}  -> {'; '.join(background)}")
    earlier = sum(int(r.get("attributed", {}).get("earlier", 0)) for r in result.rules)
    if earlier:
        _out(
            f"  {'earlier runs':<{width}}  -> {earlier} alerts on incidents of earlier demo runs (still in the rules' window)"
        )
    for r in skipped:
        _out(f"  {rule_names[r['rule']]}: {r['status']} ({r.get('reason', '')})")
    for line in demo_content.summary_lines(result.to_dict(), width):
        _out(line)
    print_health(result)
    _out(f"report     {shown(Path(result.report_path))}")
    _out(f"took       {result.seconds:.0f} s")


def print_health(result: DemoResult) -> None:
    """The health rows the runs sent to Sentinel, one line each, and the connector page's status."""
    outcomes = Counter(h["Outcome"] for h in result.health)
    counts = ", ".join(f"{n} {outcome}" for outcome, n in sorted(outcomes.items()))
    _out(
        f"health     {len(result.health)} rows in NordPassConnectorHealth_CL ({counts or 'none'}), one per tick"
    )
    for h in result.health:
        lag = "-" if h["LagSeconds"] is None else f"{h['LagSeconds']:,.0f} s"
        failures = "-" if h["ConsecutiveFailures"] is None else h["ConsecutiveFailures"]
        line = (
            f"  {datetime.fromtimestamp(h['TimeGenerated'], UTC):%H:%M:%S}  {h['Outcome']:<8} "
            f"sent {_fmt(h['EventsSent']):>7}   lag {lag:>9}   failures in a row {failures}"
        )
        _out(line + (f"   {h['ErrorClass']}" if h["ErrorClass"] else ""))
    page = result.connector_page
    if page.get("connected"):
        when = datetime.fromtimestamp(page["last_successful_run"], UTC).strftime("%H:%M:%S UTC")
        _out(f"  connector page: Connected (a successful run at {when})")
    else:
        _out("  connector page: Disconnected (no successful run in the last 30 minutes)")


def screenshot(html: Path, png: Path) -> None:
    if not Path(CHROMIUM).exists():
        raise DemoError(
            f"{CHROMIUM} is missing: install it with `apt-get install -y chromium` (or drop --screenshot)"
        )
    with ExitStack() as stack:
        import tempfile

        profile = stack.enter_context(tempfile.TemporaryDirectory(prefix="demo-chromium-"))
        subprocess.run(
            [
                CHROMIUM,
                *CHROMIUM_HEADLESS_FLAGS,
                f"--user-data-dir={profile}",
                "--hide-scrollbars",
                "--window-size=1280,2700",
                f"--screenshot={png}",
                html.resolve().as_uri(),
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )


# -- keeping the stand-ins up -------------------------------------------------------------------------


def keep_running(cfg: DemoConfig) -> None:
    """After the demo, the stand-ins again on its state (checkpoint, health record, landed rows), with
    a settings file for `doctor`, `status` and `run --once`, until Ctrl-C or SIGTERM."""
    with ExitStack() as stack:
        _out("")
        stand_ins = start_stand_ins(stack, cfg)
        stand_ins.sim.add(read_events(cfg.state_dir / "nordpass-events.jsonl.gz"))
        settings = cfg.state_dir / SETTINGS_FILE
        write_settings_file(settings, stand_ins.app_settings(cfg))
        python = shown(Path(sys.executable))
        _out(f"sandbox: the stand-ins keep running; their settings are in {shown(settings)}:")
        for command in ("doctor", "status", "run --once"):
            _out(f"  {python} -m nordpass_connector {command} --settings {shown(settings)}")
        _out("sandbox: press Ctrl-C to stop them")
        wait_for_stop()
    _out("sandbox: stand-ins stopped")


def write_settings_file(path: Path, values: dict[str, str]) -> None:
    """A local.settings.json, readable by its owner only: it holds the simulator's token and the
    token endpoint's identity header (sandbox secrets, but secrets)."""
    document = {"IsEncrypted": False, "Values": {"FUNCTIONS_WORKER_RUNTIME": "python", **values}}
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(json.dumps(document, indent=2) + "\n")


def wait_for_stop() -> None:
    """Block until SIGINT (Ctrl-C) or SIGTERM; the caller then stops everything in order."""
    stop = threading.Event()

    def request_stop(signum: int, frame: object) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stop.wait(1.0):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# -- real configuration ----------------------------------------------------------------------------


def run_real(settings_file: Path) -> int:
    """One tick of the same timer function with the Values of a local.settings.json."""
    try:
        values = read_values(settings_file)
    except SettingsFileError as exc:
        raise DemoError(f"{exc.message}: {exc.action}") from None
    os.environ.update(values)
    _out(
        f"real configuration from {settings_file}: one tick of the timer function against NordPass and Azure"
    )
    # As `run --once`: the SDKs' warnings (azure-identity's 13-line credential report) stay out;
    # the run's own ERROR line names the cause and the fix.
    from nordpass_connector.composition import quiet_third_party_loggers

    quiet_third_party_loggers(logging.ERROR)
    with captured_reports() as capture:
        report = call_timer(capture)
    line = TickLine.from_report(
        report, tick=1, phase="real", new_events=0, seconds=float(report.get("duration_seconds") or 0)
    )
    if line.outcome != "ok":
        # The ERROR line above already says what failed and what to do; not a second time.
        cause = report.get("error_class") or "see the log above"
        _out(f"run failed: {cause} (the ERROR line above says what happened and what to do)")
        return 1
    _out(_tick_text(line))
    _out(
        f"fetched {_fmt(line.fetched)}, deduplicated {_fmt(line.deduplicated)}, sent {_fmt(line.sent)} in "
        f"{_fmt(line.requests)} requests; newest event {report.get('newest_event') or '-'}; "
        f"{'caught up' if line.caught_up else 'backlog left for the next tick'}"
    )
    return 0


# -- command line ------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    d = DemoConfig()
    p = argparse.ArgumentParser(
        prog="python -m sandbox.demo", description=__doc__.splitlines()[0] if __doc__ else None
    )
    p.add_argument(
        "--settings", type=Path, help="run one tick against the real services in this local.settings.json"
    )
    p.add_argument(
        "--state-dir", type=Path, default=d.state_dir, help="sandbox state folder (default .sandbox)"
    )
    p.add_argument("--fresh", action="store_true", help="clear the sandbox state first")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--members", type=int, default=d.members)
    p.add_argument(
        "--per-minute", type=float, default=d.per_minute, help="background events per minute in the history"
    )
    p.add_argument("--live-ticks", type=int, default=d.live_ticks)
    p.add_argument("--tick-interval", type=float, default=d.tick_interval, help="seconds between live ticks")
    p.add_argument(
        "--port-base",
        type=int,
        default=d.port_base,
        help="simulator on N, ingestion N+1, token N+2 (0: free ports)",
    )
    p.add_argument("--screenshot", action="store_true", help="also render report.png with headless Chromium")
    p.add_argument(
        "--keep-running",
        action="store_true",
        help="afterwards keep the stand-ins up (until Ctrl-C) and write their settings to "
        f"<state-dir>/{SETTINGS_FILE} for doctor, status and run --once",
    )
    return p


def _configure_logging() -> None:
    root = logging.getLogger()
    if root.handlers:  # embedded (a test, another tool): their logging setup stays as it is
        return
    # The run reports are read from INFO records (see RunReportCapture); the terminal shows only
    # warnings and errors, the tick lines say the rest.
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _configure_logging()
    try:
        if args.settings is not None:
            if args.keep_running:
                raise DemoError(
                    "--keep-running keeps the sandbox's stand-ins up: it does not go with --settings"
                )
            return run_real(args.settings)
        if args.live_ticks < 1:
            raise DemoError("--live-ticks must be at least 1 (the scripted incidents arrive in live ticks)")
        cfg = DemoConfig(
            state_dir=args.state_dir.resolve(),
            fresh=args.fresh,
            seed=args.seed,
            members=max(16, args.members),
            per_minute=args.per_minute,
            live_ticks=args.live_ticks,
            tick_interval=args.tick_interval,
            port_base=args.port_base,
            screenshot=args.screenshot,
        )
        result = run_sandbox(cfg)
    except DemoError as exc:
        sys.stderr.write(f"demo: {exc}\n")
        return 2
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            sys.stderr.write(
                "demo: a port the demo needs is already in use: stop the other program or use --port-base 0\n"
            )
            return 2
        raise
    except KeyboardInterrupt:
        sys.stderr.write("demo: interrupted; state kept (rerun to continue, or add --fresh)\n")
        return 130
    print_summary(result)
    ok = (
        result.missing == 0
        and result.duplicates == 0
        and result.unexpected == 0
        and all(t.outcome == "ok" for t in result.ticks)
    )
    if args.keep_running:
        try:
            keep_running(cfg)
        except DemoError as exc:
            sys.stderr.write(f"demo: {exc}\n")
            return 2
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
